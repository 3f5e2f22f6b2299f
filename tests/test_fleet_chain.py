"""The chain's side of a fleet: resolvers that share their answers through a token store.

Separate chains stand for separate processes (each has its own per-resolver cache); the store is
a real Redis, so what crosses between them is what would cross between machines.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable, Iterator
from pathlib import Path

import anyio
import pytest

from asyncauth import (
    AzureResolver,
    Caching,
    Chain,
    Credential,
    MemoryTokenStore,
    RedisTokenStore,
    Resource,
    Sharing,
)
from asyncauth._stores.shared import shared

from ._assertions import assert_hidden
from ._fleet import new_key
from .peers.clouds import ACRRegistry, AppServiceMSI, RoutingTransport
from .peers.redis import RedisServer

REGISTRY = "myregistry.azurecr.io"


class CloudLike(Caching, Sharing):
    """A slow cloud call, one answer per registry, shared when given a store."""

    name = "cloudlike"
    timeout = 5.0

    def __init__(self, store: object, *, expires_in: float = 3600.0) -> None:
        self.token_store = store  # type: ignore[assignment]
        self.calls = 0
        self.expires_in = expires_in

    def cache_key(self, resource: Resource) -> Hashable | None:
        return ("cloudlike", resource.registry)

    async def resolve(self, resource: Resource) -> Credential | None:
        self.calls += 1
        await anyio.sleep(0.2)
        return Credential("AWS", f"pw-CLOUD-{self.calls}", expires_at=_now() + self.expires_in)


def _now() -> float:
    import time

    return time.time()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisTokenStore]:
    store = RedisTokenStore(redis_server.url, encryption_key=new_key())
    yield store
    await store.aclose()


async def test_chains_sharing_a_store_call_the_cloud_once_per_key(
    store: RedisTokenStore, redis_server: RedisServer
) -> None:
    resolvers = [CloudLike(store) for _ in range(6)]
    answers: list[Credential] = []

    async def resolve(resolver: CloudLike, reference: str) -> None:
        answers.append((await Chain([resolver]).resolve(reference)).credential)

    async with anyio.create_task_group() as tg:
        for resolver in resolvers:
            for reference in ("r1.example/a", "r1.example/b", "r2.example/a"):
                tg.start_soon(resolve, resolver, reference)
    assert sum(r.calls for r in resolvers) == 2  # one per registry for all six "processes"
    assert len({a.password for a in answers if "r1" in str(a)}) <= 1
    assert len({(a.password, a.expires_at) for a in answers}) == 2
    assert_hidden(redis_server.contents().decode("latin-1"), "pw-CLOUD-1", where="Redis")


async def test_an_answer_about_to_expire_is_not_shared(store: RedisTokenStore) -> None:
    first, second = CloudLike(store, expires_in=5.0), CloudLike(store, expires_in=5.0)
    await Chain([first]).resolve("r1.example/a")
    await Chain([second]).resolve("r1.example/a")
    assert (first.calls, second.calls) == (1, 1)  # within the margin: never kept


async def test_without_a_store_or_with_a_failing_one_every_chain_calls(
    tmp_path: Path,
) -> None:
    down = RedisTokenStore(RedisServer(tmp_path / "none").url, encryption_key=new_key())
    for store in (None, down):
        resolvers = [CloudLike(store) for _ in range(3)]
        for resolver in resolvers:
            assert (await Chain([resolver]).resolve("r1.example/a")).source == "cloudlike"
        assert [r.calls for r in resolvers] == [1, 1, 1]
    assert shared(down).failing
    await down.aclose()


def test_a_store_without_a_cache_key_or_a_misspelt_one_is_refused() -> None:
    class NoKey(Sharing):
        name = "nokey"

        def __init__(self) -> None:
            self.token_store = MemoryTokenStore()

        async def resolve(self, resource: Resource) -> Credential | None:
            return None

    with pytest.raises(TypeError, match="has a token_store but no cache_key"):
        Chain([NoKey()])

    class Misspelt(NoKey):
        token_stor = None

    with pytest.raises(TypeError, match="did you mean 'token_store'"):
        Chain([Misspelt()])


async def test_acr_refresh_tokens_are_shared(
    store: RedisTokenStore,
    redis_server: RedisServer,
    cloud_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three "processes" with managed identity: one Azure AD token, one ACR exchange."""
    msi = AppServiceMSI().start()
    monkeypatch.setenv("IDENTITY_ENDPOINT", msi.endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", msi.identity_header)
    try:
        with ACRRegistry(REGISTRY, accepted=lambda: {msi.access_token}) as acr:
            routes = {REGISTRY: acr.address, "127.0.0.1": msi.address}
            async with RoutingTransport(routes) as transport:
                credentials = []
                for _ in range(3):
                    resolver = AzureResolver(environ={}, transport=transport, token_store=store)
                    resolution = await Chain([resolver]).resolve(f"{REGISTRY}/team/app:1.0")
                    credentials.append(resolution.credential)
        assert len(acr.seen) == 1
        assert len(msi.seen) == 1
        assert {c.identity_token for c in credentials} == {acr.refresh_token}
        assert {c.expires_at for c in credentials} == {acr.expires_at}
        contents = redis_server.contents().decode("latin-1")
        assert_hidden(contents, acr.refresh_token, msi.access_token, where="Redis")
    finally:
        msi.stop()
