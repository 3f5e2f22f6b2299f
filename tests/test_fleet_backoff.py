"""A fleet backs off together: one process's 429 makes every process wait for that registry.

Real parts: a ``redis-server`` started here, the Debian ``docker-registry`` in token mode with the
strict issuer, and eight worker processes (asyncio, trio, sync: tests/_fleet.py). distribution
has no rate limiter, so :class:`~tests.peers.ratelimiter.RateLimiter` stands in front of it as
one (strict: it answers 429 while throttled and passes everything else to the registry).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncauth import Chain, FlagsResolver, RateLimitedError, RedisTokenStore, RegistryAuth
from asyncauth._http.retry import RETRY_AFTER_CAP
from asyncauth._stores import backoff
from asyncauth._stores.backoff import MAX_ENTRY, FleetPause

from ._budget import per_example_budget
from ._fleet import MODES, Worker, finish, new_key, start_fleet, store_environ
from .peers.accounts import PeerAccounts
from .peers.images import PushedImage
from .peers.ratelimiter import RateLimiter
from .peers.redis import RedisServer
from .peers.registry import RegistryServer
from .peers.token_issuer import TokenIssuer

ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
THROTTLE = 4.0
"""Seconds the stand-in answers 429 (with ``Retry-After: 4``, under the 5 s cap)."""


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def limiter(token_registry: RegistryServer) -> Iterator[RateLimiter]:
    with RateLimiter(token_registry.url) as limiter:
        yield limiter


@pytest.fixture
def fleet_env(monkeypatch: pytest.MonkeyPatch, peer_accounts: PeerAccounts) -> None:
    monkeypatch.setenv("FLEET_USER", peer_accounts.writer[0])
    monkeypatch.setenv("FLEET_PASSWORD", peer_accounts.writer[1])


def _until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait for something another process does (it has no way to tell this one)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _two_phases(limiter: RateLimiter, images: list[PushedImage]) -> list[dict[str, object]]:
    """Worker i reads repository i (warming up), then, when told, repository 8 + i (a new one:
    its flow runs, and asks the fleet whether the registry is paused before it sends)."""
    urls = [limiter.url + image.manifest_path for image in images]
    return [
        {"mode": mode, "phases": [[urls[i]], [urls[8 + i]]], "concurrency": 1}
        for i, mode in enumerate(MODES)
    ]


def _run_throttled(
    workers: list[Worker], limiter: RateLimiter, first_paused: Callable[[], bool]
) -> tuple[float, list[dict[str, object]]]:
    """Phase 0 everywhere; then the registry throttles, worker 0 meets it, and once
    ``first_paused()`` the others go on. When the throttle ended, and the workers' results."""
    try:
        for worker in workers:
            assert worker.next() == {"phase": 0}
        ends = limiter.throttle(THROTTLE, retry_after=f"{THROTTLE:g}")
        workers[0].go()
        _until(first_paused, "the first process to meet the 429")
        for worker in workers[1:]:
            worker.go()
        return ends, finish(workers)
    finally:
        for worker in workers:
            worker.close()


def _all_ok(results: list[dict[str, object]]) -> None:
    for result in results:
        assert result["failures"] == [], result["failures"]
        assert result["statuses"] == {"200": 2}, result["statuses"]


def test_a_429_seen_by_one_process_makes_the_fleet_wait_instead_of_spending_requests(
    redis_server: RedisServer,
    limiter: RateLimiter,
    seeded_repositories: list[PushedImage],
    token_issuer: TokenIssuer,
    fleet_env: None,
) -> None:
    environ = store_environ(redis_server.url, new_key())
    workers = start_fleet(_two_phases(limiter, seeded_repositories), environ)
    values = lambda: len(redis_server.keys("asyncauth:t:*"))  # noqa: E731
    # Phase 0 leaves 8 tokens; worker 0 then keeps its new token, and records the backoff.
    ends, results = _run_throttled(workers, limiter, lambda: values() == 8 + 2)
    _all_ok(results)
    answered = limiter.requests()
    assert [seen.status for seen in answered].count(429) == 1  # worker 0's, and no other
    after_it = answered[[seen.status for seen in answered].index(429) + 1 :]
    assert len(after_it) == 8  # worker 0's retry, and the seven others' requests
    assert all(seen.at >= ends - 0.05 for seen in after_it), [s.at - ends for s in after_it]


def test_without_a_store_each_process_spends_its_own_request_on_the_limit(
    limiter: RateLimiter, seeded_repositories: list[PushedImage], fleet_env: None
) -> None:
    workers = start_fleet(_two_phases(limiter, seeded_repositories), store_environ(None))
    _, results = _run_throttled(workers, limiter, lambda: 429 in limiter.statuses())
    _all_ok(results)  # each waited its own Retry-After, and tried once more
    assert limiter.statuses().count(429) == 8


def test_a_token_servers_429_is_shared_through_the_lease_not_asked_again_by_each_process(
    redis_server: RedisServer,
    token_registry: RegistryServer,
    seeded_repositories: list[PushedImage],
    token_issuer: TokenIssuer,
    fleet_env: None,
) -> None:
    """The one process that holds a scope's lease meets the token server's 429, waits its
    ``Retry-After`` and asks again; the others wait for the token it then shares."""
    token_issuer.policy = dataclasses.replace(token_issuer.policy, throttle_first=5)
    urls = [token_registry.url + image.manifest_path for image in seeded_repositories[:5]]
    specs = [{"mode": mode, "phases": [urls], "concurrency": 5} for mode in MODES]
    results = finish(start_fleet(specs, store_environ(redis_server.url, new_key())))
    for result in results:
        assert result["failures"] == [], result
        assert result["statuses"] == {"200": 5}, result
    assert token_issuer.count(status=429) == 5
    assert token_issuer.total == 10, token_issuer.summary()
    assert set(token_issuer.scope_counts().values()) == {2}  # a 429, then the token


# -- one process and another, in this one -----------------------------------------------------


def _auth(peer_accounts: PeerAccounts, store: RedisTokenStore | None) -> RegistryAuth:
    user, password = peer_accounts.writer
    chain = Chain([FlagsResolver(username=user, password=password)])
    return RegistryAuth(chain, token_store=store if store is not None else False)


@pytest.fixture
async def two_stores(redis_server: RedisServer) -> AsyncIterator[list[RedisTokenStore]]:
    """Two store objects with one key: what two processes of a fleet hold."""
    key = new_key()
    stores = [RedisTokenStore(redis_server.url, encryption_key=key) for _ in range(2)]
    yield stores
    for store in stores:
        await store.aclose()


async def test_a_fleet_backoff_past_the_callers_timeout_is_an_error_naming_it_and_its_source(
    two_stores: list[RedisTokenStore],
    limiter: RateLimiter,
    seeded_repositories: list[PushedImage],
    peer_accounts: PeerAccounts,
) -> None:
    first, second = (limiter.url + image.manifest_path for image in seeded_repositories[:2])
    limiter.throttle(THROTTLE, retry_after=f"{THROTTLE:g}")
    one, other = (_auth(peer_accounts, store) for store in two_stores)
    async with httpx.AsyncClient(auth=one, timeout=1.0, headers=ACCEPT) as http:
        with pytest.raises(RateLimitedError):  # recorded for the fleet, too long to wait here
            await http.get(first)
    asked = len(limiter.requests())
    async with httpx.AsyncClient(auth=other, timeout=1.0, headers=ACCEPT) as http:
        started = time.monotonic()
        with pytest.raises(RateLimitedError) as caught:
            await http.get(second)
    assert time.monotonic() - started < 1.0  # at once: the wait could not fit
    assert len(limiter.requests()) == asked  # the registry was not asked
    message = str(caught.value)
    assert message.startswith(f"{limiter.host}: backing off for ")
    assert f"since {limiter.host} answered 429 to " in message
    assert f"pid {os.getpid()}" in message
    assert "(a backoff of the fleet, shared through the token store)" in message
    assert caught.value.registry == limiter.host


async def test_without_a_store_another_auth_is_not_held_back(
    limiter: RateLimiter, seeded_repositories: list[PushedImage], peer_accounts: PeerAccounts
) -> None:
    first, second = (limiter.url + image.manifest_path for image in seeded_repositories[:2])
    limiter.throttle(THROTTLE, retry_after=f"{THROTTLE:g}")
    for url in (first, second):
        async with httpx.AsyncClient(auth=_auth(peer_accounts, None), timeout=1.0) as http:
            with pytest.raises(RateLimitedError, match="to a request of this process"):
                await http.get(url, headers=ACCEPT)
    assert limiter.statuses() == [429, 429]  # each asked the registry itself


async def test_a_year_long_backoff_stops_the_fleet_no_longer_than_the_cap(
    two_stores: list[RedisTokenStore],
    redis_server: RedisServer,
    limiter: RateLimiter,
    seeded_repositories: list[PushedImage],
    peer_accounts: PeerAccounts,
) -> None:
    """Written with the fleet's key (a buggy or hostile member) for a year, kept by Redis for
    a year: a reader caps it at when it was recorded plus ``RETRY_AFTER_CAP``."""
    hostile, store = two_stores
    origin = f"http://{limiter.host}"
    name = hostile.name(backoff.material(origin))
    year = 365 * 86400.0
    recorded = time.time() - RETRY_AFTER_CAP + 3.0  # three seconds of the cap are left
    entry = FleetPause(time.time() + year, 429, recorded, "hostile")
    await hostile.set(name, backoff.encode(entry), year)
    first, second = (limiter.url + image.manifest_path for image in seeded_repositories[:2])
    async with httpx.AsyncClient(auth=_auth(peer_accounts, store), timeout=30.0) as http:
        for url in (first, second):
            assert (await http.get(url, headers=ACCEPT)).status_code == 200
    arrived = [seen.at for seen in limiter.requests()]
    assert recorded + RETRY_AFTER_CAP - 0.05 <= arrived[0] <= recorded + RETRY_AFTER_CAP + 1.0
    [key] = [k for k in redis_server.keys("asyncauth:t:*") if k.endswith(name.rpartition(":")[2])]
    assert int(redis_server.cli("PTTL", key)) > (year - 60) * 1000  # Redis keeps it: ignored


async def test_a_backoff_value_written_without_the_key_is_no_pause(
    two_stores: list[RedisTokenStore],
    redis_server: RedisServer,
    limiter: RateLimiter,
    seeded_repositories: list[PushedImage],
    peer_accounts: PeerAccounts,
) -> None:
    store = two_stores[0]
    digest = store.name(backoff.material(f"http://{limiter.host}")).rpartition(":")[2]
    entry = FleetPause(time.time() + 3600, 429, time.time(), "tenant")
    redis_server.cli("SET", f"asyncauth:t:{digest}", last=backoff.encode(entry))
    async with httpx.AsyncClient(auth=_auth(peer_accounts, store), timeout=30.0) as http:
        started = time.monotonic()
        url = limiter.url + seeded_repositories[0].manifest_path
        assert (await http.get(url, headers=ACCEPT)).status_code == 200
    assert time.monotonic() - started < 2.0  # no pause: it does not open


# -- the entry, pure --------------------------------------------------------------------------

NOW = 1_700_000_000.0


def test_an_entry_reads_back_and_ends_when_it_said() -> None:
    entry = FleetPause(NOW + 3, 429, NOW, "host pid 1")
    assert backoff.decode(backoff.encode(entry), now=NOW + 1) == entry
    assert backoff.decode(backoff.encode(entry), now=NOW + 3) is None


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"[]",
        b'{"v": 2}',
        b'{"v": 1, "u": 1e999, "s": 429, "a": 1, "b": "x"}',
        b'{"v": 1, "u": "soon", "s": 429, "a": 1, "b": "x"}',
        b'{"v": 1, "u": 1700000003, "s": true, "a": 1700000000, "b": "x"}',
        b'{"v": 1, "u": 1700000003, "s": 429, "a": 1700000000, "b": "\\n"}',
        b'{"v": 1, "u": 1700000003, "s": 429, "a": 1700000000, "b": "x", "pad": "'
        + b"x" * MAX_ENTRY
        + b'"}',
    ],
)
def test_what_is_not_an_entry_is_no_pause(value: bytes) -> None:
    assert backoff.decode(value, now=NOW) is None


@given(
    until=st.floats(allow_nan=True, allow_infinity=True) | st.integers(),
    recorded=st.floats(allow_nan=True, allow_infinity=True) | st.integers(),
    status=st.integers(),
    by=st.text(max_size=120),
    junk=st.binary(max_size=600),
)
@per_example_budget()
def test_any_entry_pauses_no_longer_than_the_cap_from_when_it_was_recorded(
    until: float, recorded: float, status: int, by: str, junk: bytes
) -> None:
    for value in (backoff.encode(FleetPause(until, status, recorded, by)), junk):  # type: ignore[arg-type]
        pause = backoff.decode(value, now=NOW)
        if pause is not None:
            assert NOW < pause.until <= min(pause.recorded_at, NOW) + RETRY_AFTER_CAP
