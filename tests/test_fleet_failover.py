"""A fleet whose Redis master dies mid-run: Redis Sentinel and Redis Cluster fail over for real.

Eight worker processes (asyncio, trio and sync clients; tests/_fleet_worker.py) configure the
store through ``ASYNCAUTH_TOKEN_STORE`` and ask the token registry for the twenty seeded
repositories in three phases. After the first, the master is killed (SIGKILL); the second runs
while the sentinels, or the cluster, promote a replica; the third runs on the new master. The
store is only a cache: no request may fail, and once the new master serves, the fleet shares
again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ._assertions import assert_hidden
from ._fleet import MODES, Worker, finish, new_key, start_fleet, store_environ
from ._secrets import secret
from .peers.accounts import PeerAccounts
from .peers.images import PushedImage
from .peers.redis import RedisCluster, RedisSentinels, RedisServer
from .peers.registry import RegistryServer
from .peers.token_issuer import TokenIssuer

PAST_THE_PAUSE = 1.3
"""Seconds past a store's pause after a failure (1 s), so that the next call asks it again."""


@pytest.fixture
def fleet_env(monkeypatch: pytest.MonkeyPatch, peer_accounts: PeerAccounts) -> None:
    monkeypatch.setenv("FLEET_USER", peer_accounts.writer[0])
    monkeypatch.setenv("FLEET_PASSWORD", peer_accounts.writer[1])


@pytest.fixture
def phases(
    token_registry: RegistryServer, seeded_repositories: list[PushedImage]
) -> list[list[str]]:
    urls = [token_registry.url + image.manifest_path for image in seeded_repositories]
    return [urls[:6], urls[6:13], urls[13:]]


def _run(
    url: str, phases: list[list[str]], between: Callable[[int], None]
) -> list[dict[str, object]]:
    """The fleet through ``phases``; ``between(i)`` runs after phase ``i`` in every worker."""
    specs = [{"mode": mode, "phases": phases, "concurrency": 4} for mode in MODES]
    workers: list[Worker] = start_fleet(specs, store_environ(url, new_key()))
    try:
        for phase in range(len(phases) - 1):
            for worker in workers:
                assert worker.next()["phase"] == phase
            between(phase)
            for worker in workers:
                worker.go()
    except BaseException:
        for worker in workers:
            worker.close()
        raise
    return finish(workers)


def _assert_no_failed_request(results: list[dict[str, object]], requests: int) -> None:
    for result in results:
        assert result["failures"] == [], result["failures"]
    assert sum(result["statuses"].get("200", 0) for result in results) == requests  # type: ignore[attr-defined]


def _tokens(issuer: TokenIssuer, urls: list[str]) -> list[int]:
    counts = issuer.scope_counts()
    names = [url.split("/v2/")[1].split("/manifests/")[0] for url in urls]
    return [counts.get(f"repository:{name}:pull", 0) for name in names]


def test_a_sentinel_failover_mid_run_fails_no_request_and_the_fleet_shares_through_the_new_master(
    tmp_path: Path, phases: list[list[str]], token_issuer: TokenIssuer, fleet_env: None
) -> None:
    password = secret("pw-sentinel-MASTER-17")
    killed: list[RedisServer] = []
    with RedisSentinels(tmp_path / "sentinel", password=password) as group:

        def between(phase: int) -> None:
            if phase == 0:
                killed.append(group.kill_primary())  # phase 1 runs while the sentinels vote
            else:
                group.wait_failover(killed[0])
                time.sleep(PAST_THE_PAUSE)

        results = _run(group.url, phases, between)
        new_master = group.primary()
        assert new_master is not killed[0]
        kept = set(new_master.keys("asyncauth:t:*"))
    _assert_no_failed_request(results, 8 * 20)
    assert _tokens(token_issuer, phases[0]) == [1] * len(phases[0])
    assert _tokens(token_issuer, phases[2]) == [1] * len(phases[2])  # shared again
    assert len(kept) >= len(phases[2])  # written to, and read from, the new master
    # One outage in each process, and one "answers again" once the new master serves.
    assert [result["store_failed"] for result in results] == [1] * 8
    assert [result["store_back"] for result in results] == [1] * 8
    warnings = json.dumps([result["warnings"] for result in results])
    assert "Unable to establish a connection to 127.0.0.1" in warnings  # the cause, named
    assert_hidden(warnings, password, where="the workers' warnings")


def test_a_cluster_master_killed_mid_run_fails_no_request_and_its_replica_takes_its_slots(
    tmp_path: Path, phases: list[list[str]], token_issuer: TokenIssuer, fleet_env: None
) -> None:
    with RedisCluster(tmp_path / "cluster", replicas=1) as cluster:
        killed: list[RedisServer] = []

        def between(phase: int) -> None:
            if phase == 0:
                killed.append(cluster.kill_master())  # phase 1 runs while a replica takes over
            else:
                cluster.wait_failover()
                time.sleep(PAST_THE_PAUSE)

        results = _run(cluster.url, phases, between)
        assert killed[0] not in cluster.masters()
        kept = len(cluster.keys("asyncauth:t:*"))
    _assert_no_failed_request(results, 8 * 20)
    assert _tokens(token_issuer, phases[0]) == [1] * len(phases[0])
    assert _tokens(token_issuer, phases[2]) == [1] * len(phases[2])
    assert kept >= len(phases[2])
