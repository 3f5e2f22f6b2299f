"""Prefetch against the real registry (CNCF distribution) and the strict token issuer.

``prefetch`` runs on the driver of the client it is given (httpx, httpx2, the aiohttp
middleware); the requests that follow it go through every driver of the one flow
(tests/_drivers.py), and must need no token request. Token requests are counted at the issuer,
401s by the client.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from asyncauth import AsyncAuthError, Chain, Credential, MemoryTokenStore
from asyncauth._registry.auth import RegistryAuth

from ._drivers import ACCEPT, httpx2_twin, open_client
from ._fakes import Fixed
from ._transport_choice import clear_proxy_environment
from .peers.accounts import PeerAccounts
from .peers.images import OCIImage, PushedImage
from .peers.registry import RegistryServer
from .peers.token_issuer import TokenIssuer


def auth_for(user: tuple[str, str], **options: Any) -> RegistryAuth:
    return RegistryAuth(Chain([Fixed(Credential(*user))]), **options)


async def prefetch(driver: str, auth: RegistryAuth, references: list[str], **kw: Any) -> None:
    """``prefetch`` on ``driver``'s own client (the sync httpx driver shares an async one's)."""
    if driver == "aiohttp":
        import aiohttp

        from asyncauth.aiohttp import RegistryAuthMiddleware

        async with aiohttp.ClientSession() as session:
            await RegistryAuthMiddleware(auth=auth).prefetch(references, session=session, **kw)
    elif driver == "httpx2":
        import httpx2

        async with httpx2.AsyncClient(timeout=30.0) as client2:
            await httpx2_twin(auth).prefetch(references, client=client2, **kw)
    else:
        async with httpx.AsyncClient(timeout=30.0) as client:
            await auth.prefetch(references, client=client, **kw)


async def test_one_token_request_for_twenty_repositories_and_none_for_their_requests(
    driver: str,
    token_registry: RegistryServer,
    seeded_repositories: list[PushedImage],
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    auth = auth_for(peer_accounts.reader)
    references = [f"{image.registry}/{image.repository}" for image in seeded_repositories]
    await prefetch(driver, auth, references)
    assert token_issuer.total == 1
    (asked,) = token_issuer.requests()
    assert sorted(asked.scopes) == sorted(
        f"repository:{r.repository}:pull" for r in seeded_repositories
    )
    await prefetch(driver, auth, references)  # all fresh: nothing to ask
    async with open_client(driver, auth) as http:
        for image in seeded_repositories:
            response = await http.get(token_registry.url + image.manifest_path, headers=ACCEPT)
            assert response.status == 200
            assert response.headers["Docker-Content-Digest"] == image.digest
    assert token_issuer.total == 1
    assert http.statuses == [200] * len(seeded_repositories)  # no 401, no token request
    assert (auth.stats.token_requests, auth.stats.challenges) == (1, 1)
    assert len({id(item[1]) for item in auth._tokens._tokens._values.values()}) == 1  # stored once


async def test_a_server_that_grants_one_scope_per_request_gets_one_per_missing_scope(
    driver: str,
    token_registry: RegistryServer,
    seeded_repositories: list[PushedImage],
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    """As Harbor and cesanta/docker_auth did: the batch's token names only the first scope, so
    each other repository is asked for on its own, once; then the requests need nothing."""
    token_issuer.policy = dataclasses.replace(token_issuer.policy, max_scopes=1)
    images = seeded_repositories[:5]
    auth = auth_for(peer_accounts.reader)
    await prefetch(driver, auth, [f"{image.registry}/{image.repository}" for image in images])
    assert [len(request.scopes) for request in token_issuer.requests()] == [5, 1, 1, 1, 1]
    async with open_client(driver, auth) as http:
        for image in images:
            response = await http.get(token_registry.url + image.manifest_path, headers=ACCEPT)
            assert response.status == 200
    assert token_issuer.total == 5
    assert http.unauthorized == 0


async def test_push_prefetch_serves_pulls_and_pushes_with_one_token(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    seeded_repositories: list[PushedImage],
    oci_image: OCIImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    images = seeded_repositories[:2]
    auth = auth_for(peer_accounts.writer)
    references = [f"{image.registry}/{image.repository}" for image in images]
    await prefetch(driver, auth, references, push=True)
    (asked,) = token_issuer.requests()
    assert sorted(asked.scopes) == sorted(f"repository:{i.repository}:pull,push" for i in images)
    async with open_client(driver, auth) as http:
        for image in images:
            pulled = await http.get(token_registry.url + image.manifest_path, headers=ACCEPT)
            assert pulled.status == 200
            started = await http.request(
                "POST", f"{token_registry.url}/v2/{image.repository}/blobs/uploads/"
            )
            assert started.status == 202, started.body
    assert token_issuer.total == 1
    assert http.unauthorized == 0


async def test_a_pull_only_user_prefetching_push_asks_again_once_per_repository(
    token_registry: RegistryServer,
    seeded_repositories: list[PushedImage],
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    """The issuer grants the reader pull only: the batch's token lacks push, each repository is
    asked for once more on its own (still pull only: kept, no loop), and pulls need nothing."""
    images = seeded_repositories[:3]
    auth = auth_for(peer_accounts.reader)
    async with httpx.AsyncClient(timeout=30.0, headers=ACCEPT) as client:
        references = [f"{image.registry}/{image.repository}" for image in images]
        await auth.prefetch(references, push=True, client=client)
        assert [len(r.scopes) for r in token_issuer.requests()] == [3, 1, 1, 1]
        for image in images:
            url = token_registry.url + image.manifest_path
            assert (await client.get(url, auth=auth)).status_code == 200
    assert token_issuer.total == 4


async def test_prefetched_tokens_reach_the_other_processes_through_a_shared_store(
    token_registry: RegistryServer,
    seeded_repositories: list[PushedImage],
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    """One auth prefetches; another sharing its store (another process, as far as the cache
    knows) finds every token there and asks the token server for none."""
    store = MemoryTokenStore()
    images = seeded_repositories[:4]
    async with httpx.AsyncClient(timeout=30.0, headers=ACCEPT) as client:
        first = auth_for(peer_accounts.reader, token_store=store)
        await first.prefetch([f"{i.registry}/{i.repository}" for i in images], client=client)
        second = auth_for(peer_accounts.reader, token_store=store)
        for image in images:
            url = token_registry.url + image.manifest_path
            assert (await client.get(url, auth=second)).status_code == 200
    assert token_issuer.total == 1
    assert second.stats.token_requests == 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # 6,000 real token requests take ~15 s;
# what is kept does not depend on the event loop (the cache is the same under trio)
async def test_six_thousand_repositories_twice_cost_six_thousand_token_requests(
    token_registry: RegistryServer,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    """The cache used to hold 4,096 tokens: a pipeline cycling over 6,000 repositories fetched
    every token again on every pass. Bounded by memory, it keeps them all (about 8 MiB)."""
    auth = auth_for(peer_accounts.reader)
    names = [f"{token_registry.host}/cycle/repo-{i:04d}" for i in range(6000)]
    async with httpx.AsyncClient(timeout=30.0) as client:
        for _ in range(2):
            for name in names:
                assert (await auth.bearer_token(client, name)).startswith("Bearer ")
    assert token_issuer.count(method="GET") == 6000
    assert len(auth._tokens) == 6000
    assert auth._tokens.bytes < 16 << 20


async def test_token_cache_size_still_bounds_the_count(
    token_registry: RegistryServer, token_issuer: TokenIssuer, peer_accounts: PeerAccounts
) -> None:
    auth = auth_for(peer_accounts.reader, token_cache_size=2)
    async with httpx.AsyncClient(timeout=30.0) as client:
        for name in ("a", "b", "c", "a"):
            await auth.bearer_token(client, f"{token_registry.host}/bounded/{name}")
    assert token_issuer.total == 4  # "a" was the least recently used when "c" came
    assert len(auth._tokens) == 2


@pytest.mark.parametrize(
    ("anyio_backend", "kind"), [("asyncio", "httpx"), ("trio", "httpx"), ("asyncio", "aiohttp")]
)
async def test_without_a_client_prefetch_uses_a_plain_one_of_its_own(
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    token_registry: RegistryServer,
    seeded_repositories: list[PushedImage],
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    """``prefetch(references)`` as the issue names it: no client or session given."""
    clear_proxy_environment(monkeypatch)  # the plain client reads proxies from the environment
    auth = auth_for(peer_accounts.reader)
    references = [f"{image.registry}/{image.repository}" for image in seeded_repositories]
    if kind == "aiohttp":
        from asyncauth.aiohttp import RegistryAuthMiddleware

        await RegistryAuthMiddleware(auth=auth).prefetch(references)
    else:
        await auth.prefetch(references)
    assert token_issuer.total == 1
    async with open_client("httpx", auth) as http:
        for image in seeded_repositories:
            response = await http.get(token_registry.url + image.manifest_path, headers=ACCEPT)
            assert response.status == 200
    assert token_issuer.total == 1


async def test_prefetch_refuses_a_base_url_for_several_registries_and_a_bare_registry() -> None:
    auth = auth_for(("u", "p"))
    async with httpx.AsyncClient() as client:
        with pytest.raises(AsyncAuthError, match="base_url= names one registry"):
            await auth.prefetch(
                ["one.example/a", "two.example/b"], client=client, base_url="http://x"
            )
        with pytest.raises(AsyncAuthError, match="a token is for a repository"):
            await auth.prefetch(["one.example"], client=client)
