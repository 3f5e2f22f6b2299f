"""Issue 11 #10, the handshake's share: host globs that cannot backtrack, 63-character labels,
per-process fingerprints, and bounded retries of a throttled token server (never of a refusal).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from asyncauth import AsyncAuthError, AuthenticationError, Credential, Resource

from .._secrets import secret
from .._transport_choice import every_transport
from .conftest import client_on
from .peers import Reply, Seen, Server, token_registry

USER = "alice"
PASSWORD = secret("pw-SMALL-secret-1", user=USER)
MANIFEST = "/v2/org/app/manifests/v1"


def _python(code: str, timeout: float = 15.0) -> str:
    """Run ``code`` in a fresh interpreter; a run past ``timeout`` fails the test (a match that
    backtracks cannot be interrupted inside this process)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout} s")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


GLOB_MATCH = """
import time
from asyncauth import Resource
from asyncauth._patterns import RegistryPattern
pattern = RegistryPattern.parse("*a*a*a*a*a*a*a*a*a*a*a*a*b.example.com", what="test")
resource = Resource.parse("a" * 60 + ".example.com/app")
started = time.perf_counter()
print(pattern.matches(resource), time.perf_counter() - started)
"""


def test_a_host_glob_with_many_stars_does_not_backtrack() -> None:
    matched, seconds = _python(GLOB_MATCH).split()
    assert matched == "False"
    assert float(seconds) < 1.0


@pytest.mark.parametrize("where", ["pattern", "reference"])
def test_host_labels_longer_than_63_characters_are_refused(where: str) -> None:
    from asyncauth._patterns import RegistryPattern

    host = f"{'a' * 64}.example.com"
    parse = {
        "pattern": lambda: RegistryPattern.parse(host, what="test"),
        "reference": lambda: Resource.parse(f"{host}/app"),
    }[where]
    with pytest.raises(AsyncAuthError, match="host name"):
        parse()
    RegistryPattern.parse(f"{'a' * 63}.example.com", what="test")  # 63 is fine
    Resource.parse(f"{'a' * 63}.example.com/app")


FINGERPRINT = """
from asyncauth import Credential
print(Credential("alice", "pw-fingerprint").fingerprint)
"""


def test_credential_fingerprints_are_salted_per_process() -> None:
    """The same credential has one fingerprint in a process and another in the next, and it is
    not a plain hash anyone could check a guessed password against."""
    first, second = _python(FINGERPRINT).strip(), _python(FINGERPRINT).strip()
    assert first != second
    credential = Credential("alice", "pw-fingerprint")
    assert credential.fingerprint == Credential("alice", "pw-fingerprint").fingerprint
    plain = [
        hashlib.sha256(data).hexdigest()[:16]
        for data in (credential.material(), b"alice:pw-fingerprint", b"pw-fingerprint")
    ]
    assert credential.fingerprint not in plain


class Throttled:
    """A token server that answers with ``statuses`` in turn, then a token."""

    def __init__(self, *statuses: tuple[int, str]) -> None:
        self.statuses: Iterator[tuple[int, str]] = iter(statuses)
        self.times: list[float] = []

    def __call__(self, seen: Seen) -> Reply:
        self.times.append(time.monotonic())
        status, retry_after = next(self.statuses, (200, ""))
        if status == 200:
            return Reply(200, body=b'{"token": "issued-TOKEN"}')
        headers = [("Retry-After", retry_after)] if retry_after else []
        return Reply(status, headers, b"slow down")


@every_transport
async def test_429_and_503_from_the_token_server_are_retried(
    transport: str, environ: pytest.MonkeyPatch, registry: Server, realm: Server
) -> None:
    throttled = Throttled((503, "0"), (429, "1"))
    registry.route("/v2/", token_registry(realm.url + "/token"))
    realm.route("/token", throttled)
    async with client_on(environ, transport, Credential(USER, PASSWORD)) as http:
        response = await http.get(registry.url + MANIFEST)
    assert response.status_code == 200
    assert len(throttled.times) == 3
    assert throttled.times[2] - throttled.times[1] >= 0.9  # Retry-After: 1 was honoured


@every_transport
@pytest.mark.parametrize("status", [429, 503])
async def test_a_throttled_token_request_gives_up_after_three_tries(
    transport: str, status: int, environ: pytest.MonkeyPatch, registry: Server, realm: Server
) -> None:
    throttled = Throttled(*[(status, "0")] * 10)
    registry.route("/v2/", token_registry(realm.url + "/token"))
    realm.route("/token", throttled)
    async with client_on(environ, transport, Credential(USER, PASSWORD)) as http:
        with pytest.raises(AuthenticationError, match=f"answered {status}"):
            await http.get(registry.url + MANIFEST)
    assert len(throttled.times) == 3


@every_transport
@pytest.mark.parametrize("status", [401, 403])
async def test_a_refusal_from_the_token_server_is_never_retried(
    transport: str, status: int, environ: pytest.MonkeyPatch, registry: Server, realm: Server
) -> None:
    throttled = Throttled(*[(status, "0")] * 10)
    registry.route("/v2/", token_registry(realm.url + "/token"))
    realm.route("/token", throttled)
    async with client_on(environ, transport, Credential(USER, PASSWORD)) as http:
        with pytest.raises(AuthenticationError, match="credentials were refused"):
            await http.get(registry.url + MANIFEST)
    assert len(throttled.times) == 1  # a refused password is not asked again


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_retry_after_is_capped_at_five_seconds(
    anyio_backend: str, environ: pytest.MonkeyPatch, registry: Server, realm: Server
) -> None:
    """One run is enough: the cap is the same number on every transport (and costs 5 s)."""
    throttled = Throttled((503, "3600"))
    registry.route("/v2/", token_registry(realm.url + "/token"))
    realm.route("/token", throttled)
    async with client_on(environ, "httpx", Credential(USER, PASSWORD), timeout=30.0) as http:
        response = await http.get(registry.url + MANIFEST)
    assert response.status_code == 200
    assert 4.5 <= throttled.times[1] - throttled.times[0] < 15


def test_retry_delay_reads_seconds_and_dates_and_caps_both() -> None:
    from datetime import UTC, datetime
    from email.utils import format_datetime

    from asyncauth._http.retry import DEFAULT_RETRY, RETRY_AFTER_CAP

    def retry_delay(value: str | None, attempt: int, now: float | None = None) -> float:
        return DEFAULT_RETRY.delay(attempt + 1, value, now=now)

    now = 1_700_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 2, UTC), usegmt=True)
    far = format_datetime(datetime.fromtimestamp(now + 3600, UTC), usegmt=True)
    assert retry_delay("2", 0, now=now) == 2
    assert retry_delay(date, 0, now=now) == pytest.approx(2)
    assert retry_delay(far, 0, now=now) == RETRY_AFTER_CAP == 5
    assert retry_delay("99999999999", 0) == 5
    assert 0.25 <= retry_delay("soon", 0) <= 0.5  # back-off
    assert 1 <= retry_delay(None, 10) <= 2  # the back-off's own ceiling


def test_token_servers_and_clouds_follow_one_retry_policy() -> None:
    """One policy, one cap: the token fetch and the clouds import the same numbers, and
    azure-core's pauses are capped at the same ``Retry-After`` cap."""
    from asyncauth._http import retry
    from asyncauth._registry import flow, handshake
    from asyncauth._sources import azure, cloud, ecr
    from asyncauth._sources.sdk import azure as azure_fence

    assert flow.MAX_ATTEMPTS == retry.DEFAULT_RETRY.attempts == retry.MAX_ATTEMPTS
    assert handshake.DEFAULT_RETRY is retry.DEFAULT_RETRY
    assert cloud.retrying.__defaults__ == (retry.DEFAULT_RETRY,)
    assert ecr.ECRResolver().retry is azure.AzureResolver().retry is retry.DEFAULT_RETRY
    assert retry.DEFAULT_RETRY.max_retry_after == azure_fence.DEFAULT_MAX_SLEEP
    assert retry.DEFAULT_RETRY.max_retry_after == retry.RETRY_AFTER_CAP
