"""A registry's rate limit through every driver: its headers, its 429s, one warning, the CLI.

The registry is the real Debian ``docker-registry`` in token mode with the strict issuer. In
front of it, :class:`~tests.peers.ratelimiter.RateLimiter` plays the rate limiter distribution
does not have (a strict stand-in: it adds Docker Hub's headers to manifest answers and answers
429 while throttled; every other answer is the registry's own).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from asyncauth import Chain, Credential, RateLimit, RateLimitedError, RegistryAuth, rate_limit

from ._drivers import ACCEPT, open_client
from ._fakes import Fixed
from .peers.accounts import PeerAccounts
from .peers.images import PushedImage
from .peers.ratelimiter import RateLimiter
from .peers.registry import RegistryServer
from .peers.token_issuer import TokenIssuer
from .test_cli import _documented_fields, _fields


@pytest.fixture
def limiter(token_registry: RegistryServer) -> Iterator[RateLimiter]:
    with RateLimiter(token_registry.url) as limiter:
        yield limiter


def _auth(peer_accounts: PeerAccounts) -> RegistryAuth:
    return RegistryAuth(Chain([Fixed(Credential(*peer_accounts.writer))]))


def _url(limiter: RateLimiter, image: PushedImage) -> str:
    return limiter.url + image.manifest_path


async def test_a_429_to_a_manifest_get_is_tried_once_more_after_its_retry_after(
    driver: str,
    limiter: RateLimiter,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    auth = _auth(peer_accounts)
    async with open_client(driver, auth) as client:
        assert (await client.get(_url(limiter, token_registry_image))).status == 200
        ends = limiter.throttle(1.0, retry_after="1")
        answer = await client.get(_url(limiter, token_registry_image))
    assert answer.status == 200
    assert limiter.statuses() == [401, 200, 429, 200]
    assert limiter.requests()[-1].at >= ends - 0.05  # tried again once the pause was over
    assert token_issuer.total == 1


async def test_a_retry_after_past_the_timeout_is_a_rate_limited_error_at_once(
    driver: str,
    limiter: RateLimiter,
    token_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    async with open_client(driver, _auth(peer_accounts), seconds=2.0) as client:
        assert (await client.get(_url(limiter, token_registry_image))).status == 200
        limiter.throttle(60.0)
        started = time.monotonic()
        with pytest.raises(RateLimitedError) as caught:
            await client.get(_url(limiter, token_registry_image))
    assert time.monotonic() - started < 1.5  # not waited for
    error = caught.value
    assert str(error).startswith(
        f"{limiter.host}: backing off for 5 s more, since {limiter.host} answered 429 "
        "(Retry-After: 60) to a request of this process; that is more than the "
    )
    assert (error.registry, error.wait) == (limiter.host, 60.0)
    assert limiter.statuses() == [401, 200, 429]


async def test_a_second_429_after_the_wait_is_a_rate_limited_error_with_the_limit(
    driver: str,
    limiter: RateLimiter,
    token_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    async with open_client(driver, _auth(peer_accounts)) as client:
        assert (await client.get(_url(limiter, token_registry_image))).status == 200
        limiter.throttle(30.0, retry_after="1")
        with pytest.raises(RateLimitedError) as caught:
            await client.get(_url(limiter, token_registry_image))
    assert str(caught.value) == (
        f"{limiter.host}: the registry answered 429 (Retry-After: 1) again after the wait it "
        "asked for; its rate limit: 99 of 100 left in a 21600 s window (counted against "
        "127.0.0.1)"
    )
    assert caught.value.rate_limit == RateLimit(100, 99, 21600.0, "127.0.0.1")
    assert limiter.statuses() == [401, 200, 429, 429]


async def test_while_the_registry_is_paused_other_requests_wait_instead_of_asking(
    driver: str,
    limiter: RateLimiter,
    seeded_repositories: list[PushedImage],
    token_registry: RegistryServer,
    peer_accounts: PeerAccounts,
) -> None:
    """One request's 429 pauses the registry for the whole ``RegistryAuth``: a warm request
    that comes during the pause goes back to the flow and waits, it does not spend a request."""
    auth = _auth(peer_accounts)
    first, second = (_url(limiter, image) for image in seeded_repositories[:2])
    pauses = auth._handshake.pauses
    recorded = threading.Event()  # set where the pause is recorded (a background loop, maybe)
    record = pauses.record

    async def recording(*args: Any) -> Any:
        pause = await record(*args)
        recorded.set()
        return pause

    pauses.record = recording  # type: ignore[method-assign]
    async with open_client(driver, auth) as client:
        for url in (first, second):
            assert (await client.get(url)).status == 200
        ends = limiter.throttle(1.0, retry_after="2")
        statuses: list[int] = []

        async def get(url: str) -> None:
            statuses.append((await client.get(url)).status)

        async with anyio.create_task_group() as tg:
            tg.start_soon(get, first)
            await anyio.to_thread.run_sync(recorded.wait)
            tg.start_soon(get, second)
    assert statuses == [200, 200]
    answered = limiter.requests()
    assert [seen.status for seen in answered].count(429) == 1
    assert all(seen.at >= ends for seen in answered[-2:])


async def test_one_warning_when_less_than_ten_percent_is_left_per_registry_per_window(
    driver: str,
    limiter: RateLimiter,
    token_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter.remaining = 12
    caplog.set_level(logging.WARNING, logger="asyncauth")
    async with open_client(driver, _auth(peer_accounts)) as client:
        for _ in range(8):  # 11, 10, 9 (warned), 8, ... 4 left
            assert (await client.get(_url(limiter, token_registry_image))).status == 200
    warnings = [r.getMessage() for r in caplog.records if "rate limit" in r.getMessage()]
    assert warnings == [
        f"http://{limiter.host}: the registry's rate limit is nearly used up: 9 of 100 left "
        "in a 21600 s window (counted against 127.0.0.1) (warned once per window)"
    ]


async def test_a_route_whose_answer_reports_no_limit_is_read_again_once_looked_up_again(
    driver: str,
    limiter: RateLimiter,
    token_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The warm path reads a manifest route's answers for rate-limit headers until one reports
    none (saving the lookups on registries that never send them); a new token, credential or
    challenge in the process makes the route look again, and then it warns."""
    limiter.remaining, limiter.reports = 5, False
    caplog.set_level(logging.WARNING, logger="asyncauth")
    auth = _auth(peer_accounts)
    async with open_client(driver, auth) as client:
        for _ in range(3):  # learnt, then warm without a report: no longer read
            assert (await client.get(_url(limiter, token_registry_image))).status == 200
        limiter.reports = True
        assert (await client.get(_url(limiter, token_registry_image))).status == 200
        assert [r for r in caplog.records if "rate limit" in r.getMessage()] == []
        auth.clear()  # what a new token does to every route: it is looked up again
        assert (await client.get(_url(limiter, token_registry_image))).status == 200
    warnings = [r.getMessage() for r in caplog.records if "rate limit" in r.getMessage()]
    assert len(warnings) == 1
    assert "nearly used up: 1 of 100 left" in warnings[0]  # on the 401 its flow met first


# -- rate_limit(response) on each library's responses -----------------------------------------


def test_rate_limit_reads_httpx_and_httpx2_responses(
    limiter: RateLimiter, token_registry_image: PushedImage
) -> None:
    import httpx2

    url = _url(limiter, token_registry_image)  # anonymous: a 401 reports the limit too
    expected = RateLimit(100, 100, 21600.0, "127.0.0.1")
    assert rate_limit(httpx.get(url, headers=ACCEPT)) == expected
    assert rate_limit(httpx2.get(url, headers=ACCEPT)) == expected
    assert rate_limit(httpx.get(limiter.url + "/v2/")) is None


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_rate_limit_reads_an_aiohttp_response(
    limiter: RateLimiter, token_registry_image: PushedImage
) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.get(_url(limiter, token_registry_image), headers=ACCEPT) as response,
    ):
        assert rate_limit(response) == RateLimit(100, 100, 21600.0, "127.0.0.1")


# -- the CLI ----------------------------------------------------------------------------------


def _manifest_json(
    reference: str, host: str, peer_accounts: PeerAccounts, home: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    environ = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "IMGPKG_ENABLE_IAAS_AUTH": "false",
        "IMGPKG_REGISTRY_HOSTNAME_0": host,
        "IMGPKG_REGISTRY_USERNAME_0": peer_accounts.reader[0],
        "IMGPKG_REGISTRY_PASSWORD_0": peer_accounts.reader[1],
    }
    return subprocess.run(
        [sys.executable, "-m", "asyncauth", "manifest", "--json", *options, reference],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_manifest_json_shows_the_rate_limit(
    tmp_path: Path,
    limiter: RateLimiter,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    limited = _manifest_json(f"{limiter.host}/peers/app:v1", limiter.host, peer_accounts, tmp_path)
    assert limited.returncode == 0, limited.stderr
    assert _fields(json.loads(limited.stdout)) == _documented_fields("manifest") - {"rate_limit"}
    assert json.loads(limited.stdout)["rate_limit"] == {
        "limit": 100,
        "remaining": 99,
        "window": 21600.0,
        "source": "127.0.0.1",
        "reset": None,
    }
    plain = _manifest_json(
        token_registry_image.reference, token_registry.host, peer_accounts, tmp_path
    )
    assert json.loads(plain.stdout)["rate_limit"] is None


def test_the_cli_names_a_rate_limit_that_does_not_fit_its_timeout(
    tmp_path: Path,
    limiter: RateLimiter,
    token_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    limiter.throttle(60.0)
    reference = f"{limiter.host}/peers/app:v1"
    result = _manifest_json(reference, limiter.host, peer_accounts, tmp_path, "--timeout", "2")
    assert result.returncode == 1
    error = json.loads(result.stderr)["error"]
    assert error["type"] == "RateLimitedError"
    assert f"{limiter.host} answered 429 (Retry-After: 60)" in error["message"]
    # The CLI's GET /v2/ (which scheme?), then the manifest: the first request to the registry,
    # which learns its challenge, is paused for too.
    assert [(seen.path, seen.status) for seen in limiter.requests()] == [
        ("/v2/", 429),
        ("/v2/peers/app/manifests/v1", 429),
    ]
