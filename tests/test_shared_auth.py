"""One ``RegistryAuth`` for a whole program: async clients, sync clients, threads, event loops.

Against the real registry and token issuer. Written with the public API only, so the same file
shows the old core's failures: a sync request sharing the auth with an async one waited for the
resolver timeout under asyncio and went out anonymous under trio.
"""

from __future__ import annotations

import time
from collections.abc import Hashable

import anyio
import anyio.to_thread
import httpx
import pytest

from asyncauth import Chain, Credential, MemoryTokenStore, RegistryAuth, Resource

from ._assertions import assert_hidden
from ._fakes import Fixed
from .peers.accounts import PeerAccounts
from .peers.images import PushedImage
from .peers.registry import RegistryServer
from .peers.token_issuer import TokenIssuer

ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


class SlowCaching:
    """An I/O-like resolver (the chain caches and single-flights it) that takes 0.4 s."""

    name = "slow"
    timeout = 5.0
    cache_ttl = 60.0

    def __init__(self, credential: Credential) -> None:
        self.credential = credential
        self.calls = 0

    def cache_key(self, resource: Resource) -> Hashable | None:
        return resource.registry

    async def resolve(self, resource: Resource) -> Credential | None:
        self.calls += 1
        await anyio.sleep(0.4)
        return self.credential


async def test_one_auth_shared_by_an_async_and_a_sync_client(
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    resolver = SlowCaching(Credential(*peer_accounts.writer))
    auth = RegistryAuth(Chain([resolver]))
    url = token_registry.url + token_registry_image.manifest_path
    statuses: dict[str, int] = {}

    def sync_get() -> None:
        with httpx.Client(auth=auth, headers=ACCEPT, timeout=30.0) as http:
            statuses["sync"] = http.get(url).status_code

    started = time.monotonic()
    async with httpx.AsyncClient(auth=auth, headers=ACCEPT, timeout=30.0) as http:

        async def async_get() -> None:
            statuses["async"] = (await http.get(url)).status_code

        async with anyio.create_task_group() as tg:
            tg.start_soon(async_get)
            await anyio.sleep(0.1)  # the async lookup is in flight when the thread asks
            tg.start_soon(anyio.to_thread.run_sync, sync_get)
    took = time.monotonic() - started
    assert statuses == {"async": 200, "sync": 200}
    # Two 0.4 s lookups at most (one per event loop); the old core waited 5 s (the timeout).
    assert took < 3.0, f"the shared auth took {took:.1f} s"
    assert resolver.calls <= 2


def test_one_auth_shared_by_sync_clients_in_many_threads_and_an_event_loop(
    token_registry: RegistryServer,
    seeded_repositories: list[PushedImage],
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    """Threads and a thread running its own event loop, at once: one token per repository."""
    from concurrent.futures import ThreadPoolExecutor

    auth = RegistryAuth(Chain([SlowCaching(Credential(*peer_accounts.writer))]))
    urls = [token_registry.url + image.manifest_path for image in seeded_repositories[:10]]

    def sync_gets(offset: int) -> list[int]:
        with httpx.Client(auth=auth, headers=ACCEPT, timeout=30.0) as http:
            return [http.get(urls[(offset + i) % 10]).status_code for i in range(10)]

    async def async_gets() -> list[int]:
        async with httpx.AsyncClient(auth=auth, headers=ACCEPT, timeout=30.0) as http:
            return [(await http.get(url)).status_code for url in urls]

    with ThreadPoolExecutor(9) as pool:
        futures = [pool.submit(sync_gets, i) for i in range(8)]
        futures.append(pool.submit(anyio.run, async_gets))
        results = [f.result(timeout=60) for f in futures]
    assert all(statuses == [200] * 10 for statuses in results)
    # One token per repository per event loop at most (threads share one loop's worth).
    assert 10 <= token_issuer.total <= 20


# --- the token-store protocol ---------------------------------------------------------------


class BrokenStore(MemoryTokenStore):
    """A shared store whose backend is down: every call fails."""

    async def get(self, name: str) -> bytes | None:
        raise ConnectionError("store down")

    async def lease(self, name: str, ttl: float) -> bool:
        raise ConnectionError("store down")


async def test_auths_sharing_a_token_store_ask_the_token_server_once(
    token_registry: RegistryServer,
    seeded_repositories: list[PushedImage],
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    """Two auths (as two processes would) share tokens through the store: one token per scope."""
    store = MemoryTokenStore()
    credential = Credential(*peer_accounts.writer)
    auths = [RegistryAuth(Chain([Fixed(credential)]), token_store=store) for _ in range(4)]
    urls = [token_registry.url + image.manifest_path for image in seeded_repositories[:5]]
    statuses: list[int] = []

    async def get(auth: RegistryAuth, url: str) -> None:
        async with httpx.AsyncClient(auth=auth, headers=ACCEPT, timeout=30.0) as http:
            statuses.append((await http.get(url)).status_code)

    async with anyio.create_task_group() as tg:
        for auth in auths:
            for url in urls:
                tg.start_soon(get, auth, url)
    assert statuses == [200] * 20
    assert token_issuer.total == 5
    assert_hidden(repr(store), *peer_accounts.writer)
    # Warm requests never ask the store.
    before = store.gets
    async with httpx.AsyncClient(auth=auths[0], headers=ACCEPT, timeout=30.0) as http:
        assert (await http.get(urls[0])).status_code == 200
    assert store.gets == before


async def test_a_broken_token_store_slows_nothing_down_to_a_failure(
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = RegistryAuth(
        Chain([Fixed(Credential(*peer_accounts.writer))]), token_store=BrokenStore()
    )
    url = token_registry.url + token_registry_image.manifest_path
    async with httpx.AsyncClient(auth=auth, headers=ACCEPT, timeout=30.0) as http:
        assert (await http.get(url)).status_code == 200
    assert token_issuer.total == 1
    assert "shared token store failed (ConnectionError)" in caplog.text


def test_a_sync_client_uses_the_token_store_too(
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    store = MemoryTokenStore()
    credential = Credential(*peer_accounts.writer)
    url = token_registry.url + token_registry_image.manifest_path
    for _ in range(3):
        auth = RegistryAuth(Chain([Fixed(credential)]), token_store=store)
        with httpx.Client(auth=auth, headers=ACCEPT, timeout=30.0) as http:
            assert http.get(url).status_code == 200
    assert token_issuer.total == 1
