"""A fleet makes one ``GetAuthorizationToken`` per ECR registry through the shared store, and
keeps to its budget of one call per second per region however many registries it needs.

moto serves ECR in this process (``ThreadedMotoServer``), so the calls are counted where they
arrive: in moto's own handler. moto answers like AWS but for one field: its ``expiresAt`` is a
fixed date in 2015, which no cache may keep (tests/test_iaas_ecr.py proves ours does not); here
the handler's answer gets AWS's twelve hours instead, so that there is something to share.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._assertions import assert_hidden
from ._fleet import finish, new_key, start_fleet, store_environ
from .peers.clouds import ECR_ACCOUNT
from .peers.redis import RedisServer

PRIVATE = f"{ECR_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/team/app:1.0"
MOTO_PASSWORD = f"{ECR_ACCOUNT}-auth-token"


@pytest.fixture
def ecr_calls(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The GetAuthorizationToken calls moto answers during the test (their times)."""
    from moto.ecr.responses import ECRResponse

    calls: list[float] = []
    original = ECRResponse.get_authorization_token

    def counted(self: ECRResponse) -> Any:
        calls.append(dt.datetime.now(dt.UTC).timestamp())
        result = original(self)
        for item in result.result["authorizationData"]:  # type: ignore[index]
            item["expiresAt"] = dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)
        return result

    monkeypatch.setattr(ECRResponse, "get_authorization_token", counted)
    return calls


@pytest.fixture
def ecr_fleet_env(
    moto_server: str, cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What every worker's environment holds: AWS keys, moto's endpoint, ECR as the only cloud."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAASYNCAUTHTEST001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t/" * 5)
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", f"http://{moto_server}")
    monkeypatch.setenv("IMGPKG_ACTIVE_KEYCHAINS", "ecr")
    for name, value in cloud_env.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


def test_eight_processes_make_one_get_authorization_token_call(
    redis_server: RedisServer, ecr_calls: list[float], ecr_fleet_env: None
) -> None:
    modes = ["asyncio", "trio"] * 4
    specs = [{"mode": mode, "resolve": PRIVATE} for mode in modes]
    results = finish(start_fleet(specs, store_environ(redis_server.url, new_key())))
    expected = hashlib.sha256(MOTO_PASSWORD.encode()).hexdigest()
    assert [result["source"] for result in results] == ["ecr"] * 8, results[0]["trace"]
    assert [result["password_sha256"] for result in results] == [expected] * 8
    assert len(ecr_calls) == 1
    assert_hidden(redis_server.contents().decode("latin-1"), MOTO_PASSWORD, where="Redis")


def test_without_the_store_each_process_calls(ecr_calls: list[float], ecr_fleet_env: None) -> None:
    specs = [{"mode": mode, "resolve": PRIVATE} for mode in ("asyncio", "trio")]
    results = finish(start_fleet(specs, store_environ(None)))
    assert [result["source"] for result in results] == ["ecr"] * 2
    assert len(ecr_calls) == 2


ACCOUNTS = ("111111111111", "222222222222", "333333333333")
"""Three ECR registries of one region: three calls, which the budget spaces a second apart."""


def test_eight_processes_needing_three_registries_make_three_calls_a_second_apart(
    redis_server: RedisServer, ecr_calls: list[float], ecr_fleet_env: None
) -> None:
    references = [f"{a}.dkr.ecr.eu-west-1.amazonaws.com/team/app:1.0" for a in ACCOUNTS]
    specs = [{"mode": mode, "resolve_all": references} for mode in ["asyncio", "trio"] * 4]
    results = finish(start_fleet(specs, store_environ(redis_server.url, new_key())))
    for result in results:
        for account, reference in zip(ACCOUNTS, references, strict=True):
            password = hashlib.sha256(f"{account}-auth-token".encode()).hexdigest()
            assert result["resolved"][reference] == ["ecr", password]
    assert len(ecr_calls) == 3  # one per registry, for the whole fleet
    gaps = [later - earlier for earlier, later in itertools.pairwise(ecr_calls)]
    # A slot is one second of the store's lease; a call arrives at moto a few milliseconds
    # after its slot began, so two calls are a second apart give or take those milliseconds.
    assert min(gaps) > 0.8, gaps
