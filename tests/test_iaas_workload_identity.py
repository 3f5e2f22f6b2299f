"""Workload identity end to end: EKS IRSA and AKS workload identity, from the token file on.

IRSA: the kubelet's token file -> STS ``AssumeRoleWithWebIdentity`` -> ECR
``GetAuthorizationToken``, both at a moto server of its own (:class:`MotoIAM`) that records every
request and, after the STS call (unsigned, as on AWS), enforces IAM: the ECR call is accepted
only when signed with the temporary credentials STS issued, for a role whose policy allows it.

AKS: the token file -> Entra ID's token endpoint (a strict stand-in, reached through
``AZURE_AUTHORITY_HOST``) -> the ACR exchange (the ACR stand-in). The SDKs read ``os.environ``,
so each test sets the process environment as EKS's and AKS's webhooks do (``monkeypatch``).

Each test proves the file was read (its content arrives at STS / Entra, and a rotated file is
read on the next lookup) and counts every exchange.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from asyncauth import Chain, Credential, Outcome, Resource, default_chain
from asyncauth._http.retry import RetryPolicy
from asyncauth._sources.azure import ACR_USERNAME, AzureResolver
from asyncauth._sources.ecr import ECRResolver
from tests._secrets import secret

from .peers.clouds import ECR_ACCOUNT, ACRRegistry, RoutingTransport, closed_port
from .peers.workload_identity import (
    AZURE_EXCHANGE_AUDIENCE,
    PUBLIC_MANAGEMENT_SCOPE,
    STS_AUDIENCE,
    EntraWorkloadIdentity,
    MotoIAM,
    OIDCIssuer,
    STSWebIdentity,
)

REGION = "eu-west-1"
PRIVATE = f"{ECR_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team/app:1.0"
MOTO_PASSWORD = f"{ECR_ACCOUNT}-auth-token"  # what moto answers for that registry id
ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
WEB_IDENTITY = "AssumeRoleWithWebIdentity"
SERVICE_ACCOUNT = "system:serviceaccount:ci:puller"
FIFO_RESCUE = 8.0
"""Seconds after which a test's FIFO gets a writer: a lookup that opened it on the event loop's
thread (where no timeout can fire) then fails its test instead of hanging the suite."""


@pytest.fixture(scope="module")
def issuer() -> OIDCIssuer:
    """The cluster's service-account issuer (EKS's and AKS's OIDC issuer alike)."""
    return OIDCIssuer()


@contextmanager
def fifo_in_place_of(path: Path) -> Iterator[None]:
    """``path`` becomes a FIFO nobody writes to: opening it for reading blocks until a writer
    comes, and the SDKs open token files on the event loop's thread."""
    path.unlink()
    os.mkfifo(path)
    done = threading.Event()

    def rescue() -> None:
        if done.wait(FIFO_RESCUE):
            return
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            return

    thread = threading.Thread(target=rescue, name="fifo-rescue", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


# --- EKS IRSA -----------------------------------------------------------------------------------


@dataclass
class IRSA:
    """One pod's IRSA setup: the role, the token file and what it holds."""

    role_arn: str
    file: Path
    token: str


@pytest.fixture(scope="module")
def irsa_roles(moto_iam: MotoIAM) -> dict[str, str]:
    """Two IAM roles at moto: one may call GetAuthorizationToken, one may do nothing."""
    return {
        "puller": moto_iam.create_role("irsa-puller", actions=["ecr:GetAuthorizationToken"]),
        "nothing": moto_iam.create_role("irsa-nothing", actions=[]),
    }


@pytest.fixture
def irsa(
    cloud_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    moto_iam: MotoIAM,
    irsa_roles: dict[str, str],
    issuer: OIDCIssuer,
) -> Iterator[IRSA]:
    """The environment EKS's pod identity webhook injects, plus where STS and ECR are (moto);
    moto's recording emptied and IAM enforced from the second request on."""
    token_file = tmp_path / "eks.amazonaws.com" / "serviceaccount" / "token"
    token_file.parent.mkdir(parents=True)
    token = secret(issuer.token(subject=SERVICE_ACCOUNT, audience=STS_AUDIENCE))
    token_file.write_text(token)
    webhook = {
        "AWS_ROLE_ARN": irsa_roles["puller"],
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_STS_REGIONAL_ENDPOINTS": "regional",
    }
    for name, value in {
        **webhook,
        "AWS_ENDPOINT_URL_STS": moto_iam.url,
        "AWS_ENDPOINT_URL_ECR": moto_iam.url,
    }.items():
        monkeypatch.setenv(name, value)
    moto_iam.reset_recording()
    moto_iam.enforce_iam_after(1)  # AssumeRoleWithWebIdentity is unsigned, as on AWS
    try:
        yield IRSA(irsa_roles["puller"], token_file, token)
    finally:
        moto_iam.enforce_iam_after(None)


async def test_irsa_token_file_to_sts_to_ecr_at_moto(
    irsa: IRSA, moto_iam: MotoIAM, cloud_env: dict[str, str]
) -> None:
    resolution = await default_chain(environ=cloud_env).resolve(PRIVATE)
    assert resolution.source == "ecr"
    assert resolution.credential == Credential(username="AWS", password=MOTO_PASSWORD)
    sts, ecr = moto_iam.recorded()  # two exchanges, in this order, nothing else
    assert sts.target == WEB_IDENTITY
    form = sts.form()
    assert form["WebIdentityToken"] == irsa.token  # the file's content reached STS
    assert form["RoleArn"] == irsa.role_arn
    assert "authorization" not in sts.headers
    assert ecr.target == ECR_TARGET
    assert json.loads(ecr.body) == {"registryIds": [ECR_ACCOUNT]}
    # Signed with temporary credentials (moto, enforcing IAM, accepted them: they are the ones
    # STS issued for the role, whose policy allows the call).
    assert ecr.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=ASIA")
    assert f"/{REGION}/ecr/aws4_request" in ecr.headers["authorization"]
    assert ecr.headers["x-amz-security-token"]


async def test_irsa_reads_a_rotated_token_file_on_the_next_lookup(
    irsa: IRSA, moto_iam: MotoIAM, issuer: OIDCIssuer
) -> None:
    """The kubelet rewrites the file before the token expires: each lookup reads it anew."""
    resolver = ECRResolver(environ={})
    first = await resolver.resolve(Resource.parse(PRIVATE))
    rotated = secret(issuer.token(subject=SERVICE_ACCOUNT, audience=STS_AUDIENCE))
    irsa.file.write_text(rotated)
    moto_iam.enforce_iam_after(1)
    second = await resolver.resolve(Resource.parse(PRIVATE))
    assert first == second == Credential(username="AWS", password=MOTO_PASSWORD)
    recorded = moto_iam.recorded()
    assert [r.target for r in recorded] == [WEB_IDENTITY, ECR_TARGET] * 2
    assert [recorded[0].form()["WebIdentityToken"], recorded[2].form()["WebIdentityToken"]] == [
        irsa.token,
        rotated,
    ]


async def test_irsa_moto_enforces_the_roles_policy(
    irsa: IRSA, irsa_roles: dict[str, str], moto_iam: MotoIAM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proof above counts only if moto really checks: a role without the permission is
    refused, as that role (the ECR call was signed with its temporary credentials)."""
    monkeypatch.setenv("AWS_ROLE_ARN", irsa_roles["nothing"])
    resolution = await Chain([ECRResolver(environ={})]).resolve(PRIVATE)
    entry = resolution.trace[0]
    assert entry.outcome is Outcome.ERROR
    assert "GetAuthorizationToken failed" in (entry.detail or "")
    assert "assumed-role/irsa-nothing/" in (entry.detail or "")
    assert "not authorized to perform: ecr:GetAuthorizationToken" in (entry.detail or "")
    assert [r.target for r in moto_iam.recorded()] == [WEB_IDENTITY, ECR_TARGET]


async def test_irsa_a_missing_token_file_is_named_by_its_variable(
    irsa: IRSA, moto_iam: MotoIAM
) -> None:
    irsa.file.unlink()
    resolution = await Chain([ECRResolver(environ={})]).resolve(PRIVATE)
    entry = resolution.trace[0]
    assert entry.outcome is Outcome.ERROR
    assert f"AWS_WEB_IDENTITY_TOKEN_FILE ({irsa.file}): no such file" in (entry.detail or "")
    assert moto_iam.recorded() == []


async def test_irsa_a_fifo_in_place_of_the_token_file_is_refused_at_once(
    irsa: IRSA, moto_iam: MotoIAM
) -> None:
    with fifo_in_place_of(irsa.file):
        started = time.monotonic()
        resolution = await Chain([ECRResolver(environ={})]).resolve(PRIVATE)
        elapsed = time.monotonic() - started
    entry = resolution.trace[0]
    assert entry.outcome is Outcome.ERROR
    assert f"AWS_WEB_IDENTITY_TOKEN_FILE ({irsa.file}): not a regular file" in (entry.detail or "")
    assert elapsed < FIFO_RESCUE / 2
    assert moto_iam.recorded() == []


async def test_irsa_an_sts_refusal_is_reported_as_sts_not_ecr(
    irsa: IRSA, moto_iam: MotoIAM, issuer: OIDCIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token from another cluster: STS refuses it (moto accepts any token, so STS is a strict
    stand-in here). The error names STS and its code -- not GetAuthorizationToken, never sent."""
    other_cluster = OIDCIssuer("https://oidc.other-cluster.test/id/0")
    irsa.file.write_text(
        secret(other_cluster.token(subject=SERVICE_ACCOUNT, audience=STS_AUDIENCE))
    )
    with STSWebIdentity(issuer=issuer, role_arn=irsa.role_arn) as sts:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.url)
        resolution = await Chain([ECRResolver(environ={})]).resolve(PRIVATE)
    detail = resolution.trace[0].detail or ""
    assert resolution.trace[0].outcome is Outcome.ERROR
    assert f"STS {WEB_IDENTITY} failed: InvalidIdentityToken" in detail
    assert "GetAuthorizationToken" not in detail
    assert len(sts.seen) == 1  # a refusal is not retried
    assert moto_iam.recorded() == []


async def test_irsa_an_unreachable_sts_is_an_error_naming_it_not_a_timeout(
    irsa: IRSA, moto_iam: MotoIAM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore's STS client made 5 attempts with up to 60 s timeouts and 15 s of pauses: the
    lookup timed out (or, luckier, blamed ECR). Now it is held to the resolver's retry policy."""
    sts = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts)
    resolver = ECRResolver(environ={}, retry=RetryPolicy(attempts=1))
    resolution = await Chain([resolver]).resolve(PRIVATE)
    entry = resolution.trace[0]
    assert entry.outcome is Outcome.ERROR
    assert (
        f"STS {WEB_IDENTITY} (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE): "
        f'EndpointConnectionError: Could not connect to the endpoint URL: "{sts}/"'
    ) in (entry.detail or "")
    assert entry.duration < 5
    assert moto_iam.recorded() == []


async def test_the_sts_stand_in_is_as_strict_as_the_real_one(issuer: OIDCIssuer) -> None:
    role = "arn:aws:iam::123456789012:role/irsa"
    good = {
        "Action": WEB_IDENTITY,
        "Version": "2011-06-15",
        "RoleArn": role,
        "RoleSessionName": "s",
        "WebIdentityToken": issuer.token(subject=SERVICE_ACCOUNT, audience=STS_AUDIENCE),
    }
    cases = {
        "InvalidAction": {**good, "Action": "AssumeRole"},
        "MissingParameter": {k: v for k, v in good.items() if k != "WebIdentityToken"},
        "AccessDenied": {**good, "RoleArn": role + "-other"},
        "InvalidIdentityToken": {
            **good,
            "WebIdentityToken": issuer.token(subject=SERVICE_ACCOUNT, audience="other"),
        },
        "ExpiredTokenException": {
            **good,
            "WebIdentityToken": issuer.token(
                subject=SERVICE_ACCOUNT, audience=STS_AUDIENCE, lifetime=-60
            ),
        },
    }
    with STSWebIdentity(issuer=issuer, role_arn=role) as sts:
        async with httpx.AsyncClient(base_url=sts.url) as client:
            for code, form in cases.items():
                answer = await client.post("/", data=form)
                assert answer.status_code in (400, 403), code
                assert f"<Code>{code}</Code>" in answer.text
            answer = await client.post("/", data=good)
    assert answer.status_code == 200
    assert "<AccessKeyId>ASIA" in answer.text


# --- AKS workload identity ----------------------------------------------------------------------

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "5b9e3f1c-4d2a-4c7e-9f00-1a2b3c4d5e6f"
AUTHORITY = "login.entra.test"
"""``AZURE_AUTHORITY_HOST``'s host here: not the default, so only honouring it reaches Entra."""
REGISTRY = "myregistry.azurecr.io"
IMAGE = f"{REGISTRY}/team/app:1.0"
TOKEN_URL = f"POST https://{AUTHORITY}/{TENANT}/oauth2/v2.0/token"
EXCHANGE_URL = f"POST https://{REGISTRY}/oauth2/exchange"


@dataclass
class AKS:
    """One pod's workload identity: the token file, Entra, the registry, and the routes to them."""

    file: Path
    token: str
    entra: EntraWorkloadIdentity
    acr: ACRRegistry

    @property
    def routes(self) -> dict[str, str]:
        return {AUTHORITY: self.entra.address, REGISTRY: self.acr.address}


@pytest.fixture
def aks(
    cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, issuer: OIDCIssuer
) -> Iterator[AKS]:
    """The environment AKS's workload identity webhook injects; Entra and ACR stand-ins."""
    token_file = tmp_path / "azure" / "tokens" / "azure-identity-token"
    token_file.parent.mkdir(parents=True)
    token = secret(issuer.token(subject=SERVICE_ACCOUNT, audience=AZURE_EXCHANGE_AUDIENCE))
    token_file.write_text(token)
    webhook = {
        "AZURE_CLIENT_ID": CLIENT_ID,
        "AZURE_TENANT_ID": TENANT,
        "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
        "AZURE_AUTHORITY_HOST": f"https://{AUTHORITY}/",
    }
    for name, value in webhook.items():
        monkeypatch.setenv(name, value)
    entra = EntraWorkloadIdentity(
        tenant=TENANT, client_id=CLIENT_ID, issuer=issuer, subject=SERVICE_ACCOUNT
    )
    with entra, ACRRegistry(REGISTRY, accepted=lambda: {entra.access_token}) as acr:
        yield AKS(token_file, token, entra, acr)


async def test_aks_federated_token_to_entra_to_acr(aks: AKS, cloud_env: dict[str, str]) -> None:
    async with RoutingTransport(aks.routes) as transport:
        resolution = await default_chain(environ=cloud_env, transport=transport).resolve(IMAGE)
    assert resolution.source == "azure"
    credential = resolution.credential
    assert (credential.username, credential.identity_token) == (ACR_USERNAME, aks.acr.refresh_token)
    assert credential.expires_at == aks.acr.expires_at
    assert transport.calls == [TOKEN_URL, EXCHANGE_URL]  # one each, nothing else
    (token_request,) = aks.entra.seen
    assert token_request.form() == {
        "client_assertion": aks.token,  # the file's content
        "client_assertion_type": EntraWorkloadIdentity.ASSERTION_TYPE,
        "client_id": CLIENT_ID,
        "grant_type": "client_credentials",
        "scope": PUBLIC_MANAGEMENT_SCOPE,
    }
    (exchange,) = aks.acr.seen
    assert exchange.form() == {
        "grant_type": "access_token",
        "service": REGISTRY,
        "access_token": aks.entra.access_token,
        "tenant": TENANT,
    }


async def test_aks_reads_a_rotated_token_file_on_the_next_lookup(
    aks: AKS, issuer: OIDCIssuer
) -> None:
    async with RoutingTransport(aks.routes) as transport:
        resolver = AzureResolver(environ={}, transport=transport)
        first = await resolver.resolve(Resource.parse(IMAGE))
        rotated = secret(issuer.token(subject=SERVICE_ACCOUNT, audience=AZURE_EXCHANGE_AUDIENCE))
        aks.file.write_text(rotated)
        second = await resolver.resolve(Resource.parse(IMAGE))
    assert first is not None
    assert first == second
    assert aks.entra.assertions == [aks.token, rotated]
    assert transport.calls == [TOKEN_URL, EXCHANGE_URL] * 2


async def test_aks_lookup_logs_no_warning(aks: AKS, caplog: pytest.LogCaptureFixture) -> None:
    """AKS sets AZURE_CLIENT_ID and AZURE_TENANT_ID for workload identity; azure-identity's
    EnvironmentCredential took them for an incomplete service principal and logged a WARNING on
    every lookup."""
    caplog.set_level(logging.INFO)
    async with RoutingTransport(aks.routes) as transport:
        credential = await AzureResolver(environ={}, transport=transport).resolve(
            Resource.parse(IMAGE)
        )
    assert credential is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []


async def test_aks_an_entra_refusal_names_its_code(aks: AKS, issuer: OIDCIssuer) -> None:
    """A token for another service account matches no federated credential (AADSTS70021)."""
    aks.file.write_text(
        secret(
            issuer.token(
                subject="system:serviceaccount:ci:intruder", audience=AZURE_EXCHANGE_AUDIENCE
            )
        )
    )
    async with RoutingTransport(aks.routes) as transport:
        resolution = await Chain([AzureResolver(environ={}, transport=transport)]).resolve(IMAGE)
    entry = resolution.trace[0]
    assert entry.outcome is Outcome.ERROR
    assert "WorkloadIdentityCredential: ClientAuthenticationError: invalid_request AADSTS70021" in (
        entry.detail or ""
    )
    assert transport.calls == [TOKEN_URL]  # refused once, not retried; no exchange


async def test_aks_a_missing_token_file_is_named_by_its_variable(aks: AKS) -> None:
    aks.file.unlink()
    async with RoutingTransport(aks.routes) as transport:
        resolution = await Chain([AzureResolver(environ={}, transport=transport)]).resolve(IMAGE)
    entry = resolution.trace[0]
    assert entry.outcome is Outcome.ERROR
    assert f"AZURE_FEDERATED_TOKEN_FILE ({aks.file}): no such file" in (entry.detail or "")
    assert transport.calls == []


async def test_aks_a_fifo_in_place_of_the_token_file_is_refused_at_once(aks: AKS) -> None:
    with fifo_in_place_of(aks.file):
        async with RoutingTransport(aks.routes) as transport:
            started = time.monotonic()
            resolution = await Chain([AzureResolver(environ={}, transport=transport)]).resolve(
                IMAGE
            )
            elapsed = time.monotonic() - started
    entry = resolution.trace[0]
    assert entry.outcome is Outcome.ERROR
    assert f"AZURE_FEDERATED_TOKEN_FILE ({aks.file}): not a regular file" in (entry.detail or "")
    assert elapsed < FIFO_RESCUE / 2
    assert transport.calls == []


async def test_the_entra_stand_in_is_as_strict_as_the_real_one(issuer: OIDCIssuer) -> None:
    token = issuer.token(subject=SERVICE_ACCOUNT, audience=AZURE_EXCHANGE_AUDIENCE)
    good = {
        "client_assertion": token,
        "client_assertion_type": EntraWorkloadIdentity.ASSERTION_TYPE,
        "client_id": CLIENT_ID,
        "grant_type": "client_credentials",
        "scope": PUBLIC_MANAGEMENT_SCOPE,
    }
    stranger = OIDCIssuer(issuer.url)  # the same issuer URL, another key
    path = f"/{TENANT}/oauth2/v2.0/token"
    cases: list[tuple[str, dict[str, str], int, str, int | None]] = [
        (f"/{TENANT}-other/oauth2/v2.0/token", good, 400, "invalid_request", 90002),
        (path, {**good, "grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        (path, {**good, "client_id": "another-app"}, 400, "unauthorized_client", 700016),
        (path, {**good, "scope": "https://management.core.windows.net//user_impersonation"},
         400, "invalid_scope", 70011),
        (path, {**good, "scope": "https://vault.azure.net/.default"},
         400, "invalid_resource", 500011),
        (path, {k: v for k, v in good.items() if k != "client_assertion"},
         401, "invalid_client", 7000218),
        (path, {k: v for k, v in good.items() if k != "client_assertion_type"},
         400, "invalid_request", 900144),
        (path, {**good, "client_assertion_type": "urn:other"}, 400, "invalid_request", None),
        (path, {**good, "client_assertion": stranger.token(
            subject=SERVICE_ACCOUNT, audience=AZURE_EXCHANGE_AUDIENCE)},
         401, "invalid_client", 700027),
        (path, {**good, "client_assertion": issuer.token(
            subject=SERVICE_ACCOUNT, audience=AZURE_EXCHANGE_AUDIENCE, issuer="https://x.test")},
         400, "invalid_request", 700211),
        (path, {**good, "client_assertion": issuer.token(
            subject=SERVICE_ACCOUNT, audience=STS_AUDIENCE)}, 400, "invalid_request", 70021),
        (path, {**good, "client_assertion": issuer.token(
            subject=SERVICE_ACCOUNT, audience=AZURE_EXCHANGE_AUDIENCE, lifetime=-60)},
         401, "invalid_client", 700024),
    ]  # fmt: skip
    entra = EntraWorkloadIdentity(
        tenant=TENANT, client_id=CLIENT_ID, issuer=issuer, subject=SERVICE_ACCOUNT
    )
    with entra:
        async with httpx.AsyncClient(base_url=entra.url) as client:
            for url, form, status, error, code in cases:
                answer = await client.post(url, data=form)
                assert (answer.status_code, answer.json()["error"]) == (status, error), form
                assert answer.json().get("error_codes") == (None if code is None else [code])
            as_json = await client.post(path, json=good)
            assert as_json.json()["error_codes"] == [900144]  # a form, or nothing
            answer = await client.post(path, data=good)
    assert answer.status_code == 200
    assert answer.json()["access_token"] == entra.access_token
