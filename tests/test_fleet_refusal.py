"""Refusal is fleet-wide: a token the registry refuses dies in the shared store too.

The real parts: ``redis-server``, the Debian ``docker-registry`` in token mode and the project's
strict token issuer, which rotates its signing key (the registry, restarted on the same port and
storage, trusts only the new key: every token handed out before is refused with
``401 error="invalid_token"``, as after a real rotation or revocation). The fleet tests run eight
worker processes (async clients under asyncio and trio, sync clients) that hold every token when
the key rotates. The registry's log counts the refused tokens (``invalid token``) per request's
``User-Agent`` (a worker) and repository (one token each).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncauth import (
    Chain,
    Credential,
    FlagsResolver,
    MemoryTokenStore,
    RedisTokenStore,
    RegistryAuth,
    TokenStore,
)
from asyncauth._registry.scope import ScopeSet
from asyncauth._registry.tokencache import (
    TokenCache,
    TokenLead,
    _decode,
    _encode,
    token_cache_key,
)
from asyncauth._registry.tokens import Token
from asyncauth._stores.protocol import DEFAULT_LEASE_TIME

from ._drivers import open_client
from ._fleet import MODES, Worker, finish, new_key, start_fleet, store_environ
from .peers.accounts import PeerAccounts, default_policy
from .peers.images import OCIImage, bearer, seed_repositories
from .peers.redis import RedisServer
from .peers.registry import RegistryServer
from .peers.token_issuer import Scope, TokenIssuer

REPOSITORIES = 12
ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
_REFUSED = re.compile(
    r'msg="error authorizing context: invalid token".* http\.request\.useragent="?([^" ]*)'
    r'.* vars\.name="?([^" ]*)'
)
"""distribution's line for a token it refused (not a request without one: a challenge)."""


class Rotating:
    """An issuer and the registry that trusts it, both this test's own (the key rotates)."""

    def __init__(self, issuer: TokenIssuer, registry: RegistryServer, urls: list[str]) -> None:
        self.issuer, self.registry, self.urls = issuer, registry, urls
        self._mark = 0

    def rotate(self) -> None:
        """A new signing key, trusted alone from now on; the registry's log is read from here."""
        self.issuer.rotate_key()
        self.registry.restart()
        self._mark = self.registry.log_path.stat().st_size
        self.issuer.reset()

    def refused(self) -> Counter[tuple[str, str]]:
        """The tokens the registry refused since the rotation, per (User-Agent, repository)."""
        with self.registry.log_path.open("rb") as log:
            log.seek(self._mark)
            text = log.read().decode()
        return Counter((agent, repository) for agent, repository in _REFUSED.findall(text))

    def repository(self, url: str) -> str:
        return url.split("/v2/")[1].split("/manifests/")[0]


@pytest.fixture
def rotating(
    tmp_path: Path, peer_accounts: PeerAccounts, oci_image: OCIImage
) -> Iterator[Rotating]:
    with (
        TokenIssuer(tmp_path / "issuer", policy=default_policy(peer_accounts)) as issuer,
        RegistryServer(tmp_path / "registry", auth=issuer.registry_auth()) as registry,
    ):
        names = [f"rotate/repo-{i:02d}" for i in range(REPOSITORIES)]

        def headers(repository: str) -> dict[str, str]:
            return bearer(issuer.mint("seeder", [Scope.repository(repository, "pull", "push")]))

        images = seed_repositories(registry.url, oci_image, names, headers=headers)
        issuer.reset()
        yield Rotating(issuer, registry, [registry.url + image.manifest_path for image in images])


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def fleet_env(monkeypatch: pytest.MonkeyPatch, peer_accounts: PeerAccounts) -> None:
    monkeypatch.setenv("FLEET_USER", peer_accounts.writer[0])
    monkeypatch.setenv("FLEET_PASSWORD", peer_accounts.writer[1])


def _rotated_mid_run(rotating: Rotating, url: str | None) -> list[dict[str, object]]:
    """Eight workers get every repository once (every token cached, and shared when there is a
    store); the key rotates; then they get every repository twice more (two passes: one
    request per token in flight at a time in each process). Returns their results."""
    specs = []
    for index, mode in enumerate(MODES):
        order = list(rotating.urls)
        random.Random(index).shuffle(order)
        phases = [order, order, order]
        specs.append({"mode": mode, "phases": phases, "concurrency": 4, "agent": f"w{index}"})
    workers: list[Worker] = start_fleet(specs, store_environ(url, new_key()))
    try:
        for worker in workers:
            assert worker.next()["phase"] == 0
        rotating.rotate()
        for phase in (0, 1):
            for worker in workers:
                if phase:
                    assert worker.next()["phase"] == 1
                worker.go()
    except BaseException:
        for worker in workers:
            worker.close()
        raise
    return finish(workers)


def _statuses(results: list[dict[str, object]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for result in results:
        assert result["failures"] == [], result["failures"]
        total.update(result["statuses"])  # type: ignore[arg-type]
    return total


def _every_process_once_per_token(rotating: Rotating) -> dict[tuple[str, str], int]:
    return {
        (f"w{index}", rotating.repository(url)): 1
        for index in range(len(MODES))
        for url in rotating.urls
    }


def test_after_a_key_rotation_each_process_pays_one_refused_request_per_shared_token(
    rotating: Rotating, redis_server: RedisServer, fleet_env: None
) -> None:
    results = _rotated_mid_run(rotating, redis_server.url)
    assert _statuses(results) == {"200": len(MODES) * 3 * REPOSITORIES}
    refused = rotating.refused()
    assert dict(refused) == _every_process_once_per_token(rotating), refused.most_common(5)
    # The refused tokens left Redis: one new token per scope for the whole fleet.
    assert rotating.issuer.total == REPOSITORIES, rotating.issuer.summary()
    assert set(rotating.issuer.scope_counts().values()) == {1}


def test_after_a_key_rotation_without_a_store_each_process_fetches_anew_once_per_token(
    rotating: Rotating, fleet_env: None
) -> None:
    results = _rotated_mid_run(rotating, None)
    assert _statuses(results) == {"200": len(MODES) * 3 * REPOSITORIES}
    refused = rotating.refused()
    assert dict(refused) == _every_process_once_per_token(rotating), refused.most_common(5)
    assert rotating.issuer.total == len(MODES) * REPOSITORIES


# -- one process: what the store keeps after a refusal ----------------------------------------


def _auth(
    accounts: PeerAccounts, store: TokenStore | None, *, user: tuple[str, str] | None = None
) -> RegistryAuth:
    username, password = user or accounts.writer
    chain = Chain([FlagsResolver(username=username, password=password)])
    return RegistryAuth(chain, token_store=store if store is not None else False)


async def test_a_refused_token_written_back_to_redis_is_never_sent_again(
    rotating: Rotating,
    redis_server: RedisServer,
    peer_accounts: PeerAccounts,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = RedisTokenStore(redis_server.url, encryption_key=new_key())
    url = rotating.urls[0]
    async with httpx.AsyncClient(auth=_auth(peer_accounts, store), headers=ACCEPT) as http:
        assert (await http.get(url)).status_code == 200
        [where] = redis_server.keys("asyncauth:t:*")
        redis_server.cli("COPY", where, "tenant:copy")  # kept by someone with write access
        rotating.rotate()
        assert (await http.get(url)).status_code == 200  # refused once, then a new token
    assert sum(rotating.refused().values()) == 1
    assert rotating.issuer.total == 1
    redis_server.cli("COPY", "tenant:copy", where, "REPLACE")  # the refused value written back
    async with httpx.AsyncClient(auth=_auth(peer_accounts, store), headers=ACCEPT) as http:
        assert (await http.get(url)).status_code == 200  # a cold miss: the store is asked
    assert sum(rotating.refused().values()) == 1  # the written-back token was not sent
    assert rotating.issuer.total == 2  # it was a miss: a new token, for the fleet
    assert caplog.text.count("older than one already seen or refused") == 1
    await store.aclose()


async def test_redis_drops_a_refused_value_but_keeps_one_written_since(
    redis_server: RedisServer,
) -> None:
    """Two store objects are two processes: both held the value when the registry refused it;
    the first found out, dropped it and wrote a new one; the second finds out later."""
    key = new_key()
    first, second = (RedisTokenStore(redis_server.url, encryption_key=key) for _ in range(2))
    name = first.name(b"refused")
    where = f"asyncauth:t:{name.rpartition(':')[2]}"
    await first.set(name, b"token 1", 600)
    assert await second.get(name) == b"token 1"
    redis_server.cli("COPY", where, "tenant:copy")
    await first.forget(name, b"token 0")  # not a value it holds: nothing happens
    assert redis_server.keys("asyncauth:t:*") == [where]
    await first.forget(name, b"token 1")
    assert redis_server.keys("asyncauth:t:*") == []
    assert await first.get(name) is None
    await first.set(name, b"token 2", 600)
    await second.forget(name, b"token 1")  # late: the newer value stays
    assert await second.get(name) == b"token 2"
    redis_server.cli("COPY", "tenant:copy", where, "REPLACE")  # the refused value written back
    assert await first.get(name) is None
    assert await second.get(name) is None
    fresh = RedisTokenStore(redis_server.url, encryption_key=key)  # a process that saw neither
    assert await fresh.get(name) == b"token 1"  # cannot tell: its request is refused once...
    await fresh.forget(name, b"token 1")
    assert redis_server.keys("asyncauth:t:*") == []  # ...and the value is gone
    redis_server.cli("COPY", "tenant:copy", where, "REPLACE")
    assert await fresh.get(name) is None  # and written back once more, a miss there too
    for store in (first, second, fresh):
        await store.aclose()


class WithoutForget:
    """A third-party store written before ``forget``: the five methods and ``lease_time``, over
    a backend several of them share, as processes share a server."""

    lease_time = DEFAULT_LEASE_TIME

    def __init__(self, backend: MemoryTokenStore) -> None:
        self._backend = backend

    def name(self, material: bytes) -> str:
        return self._backend.name(material)

    async def get(self, name: str) -> bytes | None:
        return await self._backend.get(name)

    async def set(self, name: str, value: bytes, ttl: float) -> None:
        await self._backend.set(name, value, ttl)

    async def lease(self, name: str, ttl: float) -> bool:
        return await self._backend.lease(name, ttl)

    async def release(self, name: str) -> None:
        await self._backend.release(name)


async def test_a_store_without_forget_costs_each_process_one_refusal_per_token(
    rotating: Rotating, peer_accounts: PeerAccounts
) -> None:
    backend = MemoryTokenStore()
    auths = [_auth(peer_accounts, WithoutForget(backend)) for _ in range(2)]
    urls = rotating.urls[:3]
    async with (
        httpx.AsyncClient(auth=auths[0], headers={**ACCEPT, "User-Agent": "p0"}) as p0,
        httpx.AsyncClient(auth=auths[1], headers={**ACCEPT, "User-Agent": "p1"}) as p1,
    ):
        for http in (p0, p1):
            for url in urls:
                assert (await http.get(url)).status_code == 200
        assert rotating.issuer.total == len(urls)  # p1 read p0's tokens from the store
        rotating.rotate()
        for http in (p0, p1, p0, p1):
            for url in urls:
                assert (await http.get(url)).status_code == 200
    agents = ("p0", "p1")
    assert rotating.refused() == {(a, rotating.repository(u)): 1 for a in agents for u in urls}
    assert rotating.issuer.total == len(urls)  # the first refusal's fetch replaced each value


async def test_every_driver_pays_one_refusal_per_token_with_a_shared_store(
    driver: str, rotating: Rotating, peer_accounts: PeerAccounts
) -> None:
    """Two auths share a ``MemoryTokenStore`` (it forgets); the warm path's 401 (the request
    sent from a remembered route) goes through each driver."""
    store = MemoryTokenStore()
    urls = rotating.urls[:3]
    async with (
        open_client(driver, _auth(peer_accounts, store)) as first,
        open_client(driver, _auth(peer_accounts, store)) as second,
    ):
        for http in (first, second):
            for url in urls:
                assert (await http.get(url)).status == 200
        assert rotating.issuer.total == len(urls)
        rotating.rotate()
        for http in (first, second, first, second):
            for url in urls:
                assert (await http.get(url)).status == 200
    refused = rotating.refused()
    assert Counter(repository for _, repository in refused.elements()) == {
        rotating.repository(url): 2 for url in urls
    }
    assert rotating.issuer.total == len(urls)


async def test_a_refusal_while_redis_does_not_answer_costs_one_bounded_wait(
    rotating: Rotating,
    redis_server: RedisServer,
    peer_accounts: PeerAccounts,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = RedisTokenStore(redis_server.url, encryption_key=new_key(), timeout=0.5)
    url = rotating.urls[0]
    try:
        async with httpx.AsyncClient(auth=_auth(peer_accounts, store), headers=ACCEPT) as http:
            assert (await http.get(url)).status_code == 200
            rotating.rotate()
            redis_server.pause()  # SIGSTOP: no answer at all
            started = time.monotonic()
            assert (await http.get(url)).status_code == 200
            assert time.monotonic() - started < 10.0  # generous: the store's 0.5 s, once
    finally:
        redis_server.resume()
    assert sum(rotating.refused().values()) == 1
    assert rotating.issuer.total == 1
    failed = [r for r in caplog.records if "shared token store failed" in r.getMessage()]
    assert len(failed) == 1
    assert failed[0].levelno == logging.WARNING
    await store.aclose()


async def test_a_push_right_granted_since_is_picked_up_by_the_retry_with_a_store(
    rotating: Rotating, oci_image: OCIImage, peer_accounts: PeerAccounts
) -> None:
    """``insufficient_scope`` drops the token for the fleet too, as a retry without a store
    fetches anew: a right granted since is picked up, not refused until the token expires."""
    store = MemoryTokenStore()
    url = rotating.urls[0].rsplit("/", 1)[0] + "/granted"
    put = {"content": oci_image.manifest, "headers": {"Content-Type": oci_image.media_type}}
    reader = _auth(peer_accounts, store, user=peer_accounts.reader)
    async with httpx.AsyncClient(auth=reader) as http:
        assert (await http.put(url, **put)).status_code == 401  # pull only, so far
    rotating.issuer.policy = dataclasses.replace(rotating.issuer.policy, permissions={})
    another = _auth(peer_accounts, store, user=peer_accounts.reader)  # the token is in the store
    async with httpx.AsyncClient(auth=another) as http:
        assert (await http.put(url, **put)).status_code == 201
    assert rotating.issuer.total == 3  # first try and its retry, the other's retry


# -- the token cache: which token a refusal drops -----------------------------------------------


def _token(access: str) -> Token:
    now = time.time()
    return Token(access, now + 600, now)


async def test_a_late_refusal_of_a_replaced_token_keeps_the_new_one_here_and_in_the_store() -> None:
    """Two requests were sent with token 1; the first one's refusal dropped it and its retry
    kept token 2; the second one's refusal (of token 1) arrives after that."""
    store = MemoryTokenStore()
    cache = TokenCache(shared=store)
    key = token_cache_key(
        "registry.test", "svc", ScopeSet.of("repository:a/b:pull"), Credential("u", "p")
    )
    name = store.name(key.material())
    first, second = _token("t1-refused"), _token("t2-new")
    lead = await cache.acquire(key, None)
    assert isinstance(lead, TokenLead)
    await cache.keep(lead, first)
    await cache.forget(key, first.authorization)
    assert cache.fresh(key) is None
    assert await store.get(name) is None  # gone for the fleet too: the retry cannot read it back
    lead = await cache.acquire(key, None)
    assert isinstance(lead, TokenLead)
    await cache.keep(lead, second)
    await cache.forget(key, first.authorization)
    assert cache.fresh(key) is second
    assert await store.get(name) == _encode(second)


@given(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
)
def test_a_stored_token_re_encodes_to_the_very_value_the_store_gave(
    access: str, expires_at: float, issued_at: float
) -> None:
    """A refusal tells the store the value as the token cache encodes it again: it must be the
    value the store gave out, byte for byte, or the store could not find it."""
    value = _encode(Token(access, expires_at, issued_at))
    decoded = _decode(value)
    assert decoded is not None
    assert _encode(decoded) == value
