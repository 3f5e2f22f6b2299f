"""A fleet of processes shares its tokens through Redis: one token request per scope.

Eight worker processes (async clients under asyncio and trio, sync clients), the real registry and
token issuer, and a real ``redis-server`` (or a three-node Redis Cluster) started here. The
issuer is one server, so it counts the token requests of the whole fleet. Workers configure the
store the way a fleet would, through ``ASYNCAUTH_TOKEN_STORE``/``ASYNCAUTH_TOKEN_STORE_KEY``.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from asyncauth import Chain, FlagsResolver, RedisTokenStore, RegistryAuth

from ._assertions import assert_hidden
from ._fleet import MODES, finish, new_key, start_fleet, store_environ
from .peers.accounts import PeerAccounts
from .peers.images import OCIImage, PushedImage, bearer, seed_repositories
from .peers.redis import RedisCluster, RedisServer
from .peers.registry import RegistryServer
from .peers.token_issuer import Scope, TokenIssuer

REPOSITORIES = 50


@pytest.fixture(scope="module")
def fleet_images(
    token_registry: RegistryServer, session_token_issuer: TokenIssuer, oci_image: OCIImage
) -> list[PushedImage]:
    """``fleet/repo-00`` ... ``fleet/repo-49`` in the token registry (pushed with minted tokens,
    so the issuer's counters are untouched)."""

    def headers(repository: str) -> dict[str, str]:
        return bearer(
            session_token_issuer.mint("seeder", [Scope.repository(repository, "pull", "push")])
        )

    names = [f"fleet/repo-{i:02d}" for i in range(REPOSITORIES)]
    return seed_repositories(token_registry.url, oci_image, names, headers=headers)


@pytest.fixture
def fleet_urls(token_registry: RegistryServer, fleet_images: list[PushedImage]) -> list[str]:
    return [token_registry.url + image.manifest_path for image in fleet_images]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def fleet_env(monkeypatch: pytest.MonkeyPatch, peer_accounts: PeerAccounts) -> None:
    monkeypatch.setenv("FLEET_USER", peer_accounts.writer[0])
    monkeypatch.setenv("FLEET_PASSWORD", peer_accounts.writer[1])


def _specs(urls: list[str], **extra: object) -> list[dict[str, object]]:
    """Eight workers, each asking for every repository in its own order."""
    specs = []
    for index, mode in enumerate(MODES):
        order = list(urls)
        random.Random(index).shuffle(order)
        specs.append({"mode": mode, "phases": [order], "concurrency": 8, **extra})
    return specs


def _statuses(results: list[dict[str, object]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for result in results:
        assert result["failures"] == [], result["failures"]
        for status, count in result["statuses"].items():  # type: ignore[attr-defined]
            total[status] = total.get(status, 0) + count
    return total


def test_without_the_store_every_process_asks_for_every_scope(
    fleet_urls: list[str], token_issuer: TokenIssuer, fleet_env: None
) -> None:
    results = finish(start_fleet(_specs(fleet_urls), store_environ(None)))
    assert _statuses(results) == {"200": 8 * REPOSITORIES}
    assert token_issuer.total == 8 * REPOSITORIES


def _fleet_through(
    url: str, fleet_urls: list[str], token_issuer: TokenIssuer, key: str
) -> list[dict[str, object]]:
    results = finish(start_fleet(_specs(fleet_urls), store_environ(url, key)))
    assert _statuses(results) == {"200": 8 * REPOSITORIES}
    assert token_issuer.total == REPOSITORIES, token_issuer.summary()
    assert set(token_issuer.scope_counts().values()) == {1}
    assert all(result["store_failed"] == 0 for result in results)
    return results


def test_a_fleet_sharing_redis_asks_once_per_scope_and_leaves_no_secret_in_it(
    redis_server: RedisServer,
    fleet_urls: list[str],
    fleet_images: list[PushedImage],
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
    fleet_env: None,
) -> None:
    """(A sync test: the fleet's processes run both event loops themselves.)"""
    key = new_key()
    _fleet_through(redis_server.url, fleet_urls, token_issuer, key)

    async def canary() -> str:
        """One more process, here: its token comes from Redis; it is the secret to look for."""
        store = RedisTokenStore(redis_server.url, encryption_key=key)
        credential = dict(zip(("username", "password"), peer_accounts.writer, strict=True))
        auth = RegistryAuth(Chain([FlagsResolver(**credential)]), token_store=store)
        async with httpx.AsyncClient(timeout=30.0) as client:
            base = fleet_urls[0].split("/v2/")[0]
            value = await auth.bearer_token(client, fleet_images[0].reference, base_url=base)
        await store.aclose()
        return value.split(" ")[1]

    token = anyio.run(canary)
    assert token_issuer.total == REPOSITORIES  # the canary came from the store
    contents = redis_server.contents()
    assert len(redis_server.keys("asyncauth:t:*")) == REPOSITORIES
    assert redis_server.keys("asyncauth:l:*") == []  # every lease given back
    text = contents.decode("latin-1")
    assert_hidden(text, token, token.split(".")[2], peer_accounts.writer[1], where="Redis")


def test_the_fleet_on_a_three_node_redis_cluster(
    tmp_path: Path, fleet_urls: list[str], token_issuer: TokenIssuer, fleet_env: None
) -> None:
    with RedisCluster(tmp_path / "cluster") as cluster:
        _fleet_through(cluster.url, fleet_urls, token_issuer, new_key())
        keys = cluster.keys("asyncauth:t:*")
        assert len(keys) == REPOSITORIES
        # The values are spread over the nodes: this was a cluster, not one server.
        assert all(node.keys("asyncauth:t:*") for node in cluster.nodes)


def test_redis_killed_paused_restarted_and_flushed_mid_run_fails_no_request(
    redis_server: RedisServer, fleet_urls: list[str], token_issuer: TokenIssuer, fleet_env: None
) -> None:
    """Five phases of ten repositories each; Redis is broken and mended between them."""
    phases = [fleet_urls[i : i + 10] for i in range(0, REPOSITORIES, 10)]
    specs = [{"mode": mode, "phases": phases, "concurrency": 8} for mode in MODES]
    workers = start_fleet(specs, store_environ(redis_server.url, new_key()))

    def between(phase: int) -> None:
        for worker in workers:
            assert worker.next()["phase"] == phase
        if phase == 0:
            redis_server.kill()
        elif phase == 1:
            redis_server.start()  # empty, like a restarted cache
            time.sleep(1.3)  # past the pause after a failure: the next call probes
        elif phase == 2:
            redis_server.pause()
        elif phase == 3:
            redis_server.resume()
            redis_server.cli("FLUSHALL")
            time.sleep(1.3)
        for worker in workers:
            worker.go()

    try:
        for phase in range(4):
            between(phase)
    except BaseException:
        redis_server.resume()
        for worker in workers:
            worker.close()
        raise
    results = finish(workers)
    assert _statuses(results) == {"200": 8 * REPOSITORIES}
    counts = token_issuer.scope_counts()
    for phase in (0, 2, 4):  # Redis up: one token per scope for the whole fleet
        for url in phases[phase]:
            repository = url.split("/v2/")[1].split("/manifests/")[0]
            assert counts[f"repository:{repository}:pull"] == 1, (phase, repository)
    # One warning per outage (killed, paused) in each process, and one "answers again" each.
    assert [result["store_failed"] for result in results] == [2] * 8, results[0]["warnings"]
    assert [result["store_back"] for result in results] == [2] * 8


def test_a_worker_killed_while_holding_the_lease_holds_the_others_up_no_longer_than_it(
    redis_server: RedisServer, fleet_urls: list[str], token_issuer: TokenIssuer, fleet_env: None
) -> None:
    lease = 3.0
    environ = store_environ(f"{redis_server.url}?lease={lease:g}", new_key())
    # The others start first and wait at a gate (started processes, nothing asked yet).
    others = start_fleet([{"mode": m, "phases": [[], fleet_urls[:1]]} for m in MODES[1:]], environ)
    for worker in others:
        assert worker.next()["phase"] == 0
    token_issuer.policy = dataclasses.replace(token_issuer.policy, delay=lease + 1)
    [holder] = start_fleet([{"mode": "asyncio", "phases": [fleet_urls[:1]]}], environ)
    deadline = time.monotonic() + 30
    while not redis_server.keys("asyncauth:l:*"):  # the holder took the lease and is fetching
        assert time.monotonic() < deadline, "the first worker never took the lease"
        time.sleep(0.02)
    taken = time.time()
    token_issuer.policy = dataclasses.replace(token_issuer.policy, delay=0.0)
    holder.kill()
    holder.close()
    for worker in others:
        worker.go()
    results = finish(others)
    assert _statuses(results) == {"200": 7}
    finished = max(float(result["finished_at"]) for result in results)  # type: ignore[arg-type]
    assert finished - taken < lease + 2.0, f"the others finished {finished - taken:.1f} s later"
    time.sleep(max(0.0, taken + lease + 1.5 - time.time()))  # the killed fetch is answered too
    # The dead holder's request and one successor's: the others waited for its token.
    assert token_issuer.total == 2, token_issuer.summary()
