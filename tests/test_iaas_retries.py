"""Cloud credential APIs that say "slow down": bounded retries, Retry-After honoured and capped.

ECR throttles ``GetAuthorizationToken`` at about one call per second; an ACR login server or Azure
AD may answer 429 or 503 under load. Each is played by its strict stand-in, which checks every
request as the real service does and answers the first ones with a throttle, then normally.
A refusal (401, 403, access denied) is an answer, never retried.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from asyncauth import Chain, Outcome
from asyncauth._http.retry import RetryPolicy
from asyncauth._sources.azure import AzureResolver
from asyncauth._sources.ecr import ECRResolver
from tests._assertions import assert_hidden

from .peers.clouds import ACRRegistry, AppServiceMSI, AzureAD, ECRPublic, Reply, RoutingTransport

PUBLIC = "public.ecr.aws/org/app"
REGISTRY = "myregistry.azurecr.io"
FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02, max_retry_after=0.5)
"""A policy that keeps the give-up tests short; the recovery tests use the default one."""

THROTTLES = {
    "ThrottlingException": Reply.json(400, {"__type": "ThrottlingException", "message": "Rate"}),
    "TooManyRequestsException": Reply.json(429, {"__type": "TooManyRequestsException"}),
    "bare 429": Reply.text(429, "Too Many Requests"),
    "503": Reply.text(503, "Service Unavailable"),
}


@pytest.fixture
def aws_public(cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAASYNCAUTHRETRY01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "retry-secret-value")


async def _ecr(public: ECRPublic, monkeypatch: pytest.MonkeyPatch, **options: object) -> Chain:
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR_PUBLIC", public.url)
    return Chain([ECRResolver(environ={}, **options)])  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", sorted(THROTTLES))
async def test_ecr_recovers_from_throttling(
    aws_public: None, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    with ECRPublic(first=[THROTTLES[kind]] * 2) as public:
        resolution = await (await _ecr(public, monkeypatch)).resolve(PUBLIC)
    assert resolution.source == "ecr"
    assert resolution.credential.password == public.password
    assert len(public.seen) == 3  # two throttled, one answered


async def test_ecr_honours_retry_after(aws_public: None, monkeypatch: pytest.MonkeyPatch) -> None:
    throttle = Reply.text(429, "slow down", **{"Retry-After": "1"})
    with ECRPublic(first=[throttle]) as public:
        chain = await _ecr(public, monkeypatch)
        started = time.perf_counter()
        resolution = await chain.resolve(PUBLIC)
        elapsed = time.perf_counter() - started
    assert resolution.source == "ecr"
    assert len(public.seen) == 2
    assert 0.9 <= elapsed < 3.0, f"{elapsed:.2f} s"


async def test_ecr_gives_up_after_the_policy_and_says_so(
    aws_public: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ECRPublic(first=[THROTTLES["ThrottlingException"]] * 10) as public:
        resolution = await (await _ecr(public, monkeypatch, retry=FAST)).resolve(PUBLIC)
    entry = resolution.trace[0]
    assert entry.outcome is Outcome.ERROR
    assert "throttled; gave up after 3 attempts" in (entry.detail or "")
    assert len(public.seen) == 3
    assert_hidden(repr(resolution), "retry-secret-value", where="trace")


@pytest.mark.parametrize(
    "refusal",
    [
        Reply.json(400, {"__type": "AccessDeniedException", "message": "no"}),
        Reply.json(403, {"__type": "UnrecognizedClientException"}),
        Reply.text(401, "Unauthorized"),
    ],
    ids=["AccessDenied", "403", "401"],
)
async def test_ecr_never_retries_a_refusal(
    aws_public: None, monkeypatch: pytest.MonkeyPatch, refusal: Reply
) -> None:
    with ECRPublic(first=[refusal]) as public:
        resolution = await (await _ecr(public, monkeypatch)).resolve(PUBLIC)
    assert resolution.trace[0].outcome is Outcome.ERROR
    assert len(public.seen) == 1


# --- ACR ------------------------------------------------------------------------------------------


@pytest.fixture
def msi(cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AppServiceMSI:
    stand_in = AppServiceMSI().start()
    monkeypatch.setenv("IDENTITY_ENDPOINT", stand_in.endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", stand_in.identity_header)
    yield stand_in  # type: ignore[misc]
    stand_in.stop()


async def _acr(msi: AppServiceMSI, first: list[Reply], **options: object) -> tuple[object, int]:
    with ACRRegistry(REGISTRY, accepted=lambda: {msi.access_token}, first=first) as acr:
        routes = {REGISTRY: acr.address, "127.0.0.1": msi.address}
        async with RoutingTransport(routes) as transport:
            resolver = AzureResolver(environ={}, transport=transport, **options)  # type: ignore[arg-type]
            resolution = await Chain([resolver]).resolve(f"{REGISTRY}/team/app")
        return (resolution, acr.refresh_token), len(acr.seen)


async def test_acr_exchange_recovers_from_429_with_retry_after(msi: AppServiceMSI) -> None:
    started = time.perf_counter()
    (resolution, refresh_token), exchanges = await _acr(
        msi, [Reply.json(429, {"errors": []}, **{"Retry-After": "1"})]
    )
    elapsed = time.perf_counter() - started
    assert resolution.credential.identity_token == refresh_token  # type: ignore[attr-defined]
    assert exchanges == 2
    assert 0.9 <= elapsed < 4.0, f"{elapsed:.2f} s"


async def test_acr_exchange_recovers_from_503(msi: AppServiceMSI) -> None:
    (resolution, refresh_token), exchanges = await _acr(msi, [Reply.text(503, "busy")] * 2)
    assert resolution.credential.identity_token == refresh_token  # type: ignore[attr-defined]
    assert exchanges == 3


async def test_acr_retry_after_is_capped(msi: AppServiceMSI) -> None:
    """``Retry-After: 3600`` is honoured up to the policy's cap (0.5 s here), not an hour."""
    started = time.perf_counter()
    throttle = Reply.json(429, {"errors": []}, **{"Retry-After": "3600"})
    (resolution, _), exchanges = await _acr(msi, [throttle], retry=FAST)
    elapsed = time.perf_counter() - started
    assert resolution.source == "azure"  # type: ignore[attr-defined]
    assert exchanges == 2
    assert 0.45 <= elapsed < 3.0, f"{elapsed:.2f} s"


@pytest.mark.parametrize("status", [401, 403])
async def test_acr_never_retries_a_refusal(msi: AppServiceMSI, status: int) -> None:
    (resolution, _), exchanges = await _acr(msi, [Reply.json(status, {"errors": []})])
    entry = resolution.trace[0]  # type: ignore[attr-defined]
    assert entry.outcome is Outcome.ERROR
    assert f"HTTP {status}" in (entry.detail or "")
    assert exchanges == 1


async def test_acr_gives_up_after_the_policy(msi: AppServiceMSI) -> None:
    (resolution, _), exchanges = await _acr(msi, [Reply.text(503, "busy")] * 10, retry=FAST)
    entry = resolution.trace[0]  # type: ignore[attr-defined]
    assert "throttled; gave up after 3 attempts" in (entry.detail or "")
    assert exchanges == 3


# --- Azure AD (azure-identity's own retry policy, held to our bounds) ----------------------------


async def test_azure_ad_retry_after_is_capped_by_the_transport(
    cloud_env: dict[str, str], tmp_path: Path
) -> None:
    """azure-core honours any Retry-After; the resolver's transport caps every pause."""
    tenant, client_id, secret = "retry-tenant", "retry-app", "retry-sp-secret"
    config = tmp_path / "azure.json"
    config.write_text(
        json.dumps({"tenantId": tenant, "aadClientId": client_id, "aadClientSecret": secret})
    )
    throttle = Reply.json(429, {"error": "throttled"}, **{"Retry-After": "3600"})
    with (
        AzureAD(tenant=tenant, client_id=client_id, client_secret=secret, first=[throttle]) as aad,
        ACRRegistry(REGISTRY, accepted=lambda: {aad.access_token}) as acr,
    ):
        routes = {"login.microsoftonline.com": aad.address, REGISTRY: acr.address}
        async with RoutingTransport(routes) as transport:
            resolver = AzureResolver(config=config, transport=transport, retry=FAST)
            started = time.perf_counter()
            resolution = await Chain([resolver]).resolve(f"{REGISTRY}/team/app")
            elapsed = time.perf_counter() - started
    assert resolution.credential.identity_token == acr.refresh_token
    assert len(aad.seen) == 2
    assert 0.45 <= elapsed < 4.0, f"{elapsed:.2f} s"


async def test_azure_ad_never_retries_a_wrong_secret(
    cloud_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "azure.json"
    config.write_text(json.dumps({"tenantId": "t", "aadClientId": "a", "aadClientSecret": "bad"}))
    with AzureAD(tenant="t", client_id="a", client_secret="good") as aad:
        async with RoutingTransport({"login.microsoftonline.com": aad.address}) as transport:
            resolver = AzureResolver(config=config, transport=transport)
            resolution = await Chain([resolver]).resolve(f"{REGISTRY}/team/app")
    assert resolution.trace[0].outcome is Outcome.ERROR
    assert len(aad.seen) == 1
