"""Refusal is fleet-wide: a token the registry refuses dies in the shared store too.

The real parts: ``redis-server``, the Debian ``docker-registry`` in token mode and the project's
strict token issuer, which rotates its signing key (the registry, restarted on the same port and
storage, trusts only the new key: every token handed out before is refused with
``401 error="invalid_token"``, as after a real rotation or revocation). Eight worker processes
(async clients under asyncio and trio, sync clients) hold every token when the key rotates. The
registry's access log counts the refused requests of each process (its ``User-Agent``) for each
repository (one token each).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._fleet import MODES, Worker, finish, new_key, start_fleet, store_environ
from .peers.accounts import PeerAccounts, default_policy
from .peers.images import OCIImage, bearer, seed_repositories
from .peers.redis import RedisServer
from .peers.registry import RegistryServer
from .peers.token_issuer import Scope, TokenIssuer

REPOSITORIES = 12
_ACCESS = re.compile(r'"GET /v2/(\S+)/manifests/\S+ HTTP/[\d.]+" (\d{3}) \S+ "[^"]*" "([^"]*)"')


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
        """The registry's 401s since the rotation, per (worker, repository)."""
        with self.registry.log_path.open("rb") as log:
            log.seek(self._mark)
            text = log.read().decode()
        return Counter(
            (agent, repository)
            for repository, status, agent in _ACCESS.findall(text)
            if status == "401"
        )


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
        (f"w{index}", url.split("/v2/")[1].split("/manifests/")[0]): 1
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
