"""Azure: managed identity and service principals from stand-ins, the ACR exchange via transport.

azure-identity reads ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` (App Service) from ``os.environ``
when a credential is built, so those tests set the process environment (``monkeypatch``). The
ACR login server and Azure AD are reached through the pluggable transport, which sends each host
to its loopback stand-in and refuses every other host.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import httpx
import pytest

from asyncauth import Chain, Outcome, Resource
from asyncauth._sources.azure import ACR_USERNAME, AzureResolver
from tests._assertions import assert_hidden

from .peers.clouds import (
    ACRRegistry,
    AppServiceMSI,
    AzureAD,
    AzureStackMetadata,
    FailingTransport,
    RoutingTransport,
    closed_port,
)

REGISTRY = "myregistry.azurecr.io"
IMAGE = f"{REGISTRY}/team/app:1.0"
PUBLIC_AUDIENCE = "https://management.core.windows.net/"


@pytest.fixture
def msi(cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AppServiceMSI:
    stand_in = AppServiceMSI().start()
    monkeypatch.setenv("IDENTITY_ENDPOINT", stand_in.endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", stand_in.identity_header)
    yield stand_in  # type: ignore[misc]
    stand_in.stop()


def _write(path: Path, config: dict[str, object]) -> str:
    path.write_text(json.dumps(config))
    return str(path)


async def test_app_service_managed_identity_and_the_exchange(msi: AppServiceMSI) -> None:
    with ACRRegistry(REGISTRY, accepted=lambda: {msi.access_token}) as acr:
        routes = {REGISTRY: acr.address, "127.0.0.1": msi.address}
        async with RoutingTransport(routes) as transport:
            resolution = await Chain([AzureResolver(environ={}, transport=transport)]).resolve(
                IMAGE
            )
    credential = resolution.credential
    assert resolution.source == "azure"
    assert credential.username == ACR_USERNAME
    assert credential.identity_token == acr.refresh_token
    assert credential.expires_at == acr.expires_at
    (token_request,) = msi.seen
    assert token_request.headers["x-identity-header"] == msi.identity_header
    assert token_request.query["resource"] == [PUBLIC_AUDIENCE]
    (exchange,) = acr.seen
    form = exchange.form()
    assert form == {
        "grant_type": "access_token",
        "service": REGISTRY,
        "access_token": msi.access_token,
    }
    assert transport.calls == [
        "GET http://127.0.0.1/msi/token",
        f"POST https://{REGISTRY}/oauth2/exchange",
    ]


async def test_the_app_service_stand_in_is_as_strict_as_the_real_one() -> None:
    with AppServiceMSI() as msi:
        async with httpx.AsyncClient(base_url=msi.url) as client:
            good = {"api-version": "2019-08-01", "resource": PUBLIC_AUDIENCE}
            header = {"X-IDENTITY-HEADER": msi.identity_header}
            assert (await client.get(msi.PATH, params=good)).status_code == 401
            wrong = {"X-IDENTITY-HEADER": "guess"}
            assert (await client.get(msi.PATH, params=good, headers=wrong)).status_code == 401
            old = {**good, "api-version": "2017-09-01"}
            assert (await client.get(msi.PATH, params=old, headers=header)).status_code == 400
            no_resource = {"api-version": "2019-08-01"}
            assert (
                await client.get(msi.PATH, params=no_resource, headers=header)
            ).status_code == 400
            assert (await client.get("/other", params=good, headers=header)).status_code == 404
            assert (await client.get(msi.PATH, params=good, headers=header)).status_code == 200


async def test_the_cloud_follows_the_registry_domain(msi: AppServiceMSI) -> None:
    registry = "myregistry.azurecr.cn"
    with ACRRegistry(registry, accepted=lambda: {msi.access_token}) as acr:
        async with RoutingTransport({registry: acr.address, "127.0.0.1": msi.address}) as transport:
            credential = await AzureResolver(environ={}, transport=transport).resolve(
                Resource.parse(f"{registry}/app")
            )
    assert credential is not None
    assert msi.seen[0].query["resource"] == ["https://management.core.chinacloudapi.cn/"]


async def test_config_file_service_principal_with_a_client_secret(
    cloud_env: dict[str, str], tmp_path: Path
) -> None:
    tenant, client_id, secret = "72f988bf-0000-0000-0000-2d7cd011db47", "app-id", "sp-secret-value"
    config = _write(
        tmp_path / "azure.json",
        {
            "cloud": "AzurePublicCloud",
            "tenantId": tenant,
            "aadClientId": client_id,
            "aadClientSecret": secret,
            "subscriptionId": "sub",
            "location": "westeurope",
        },
    )
    with (
        AzureAD(tenant=tenant, client_id=client_id, client_secret=secret) as aad,
        ACRRegistry(REGISTRY, accepted=lambda: {aad.access_token}) as acr,
    ):
        routes = {"login.microsoftonline.com": aad.address, REGISTRY: acr.address}
        async with RoutingTransport(routes) as transport:
            environ = {"IMGPKG_REGISTRY_AZURE_CR_CONFIG": config}
            resolver = AzureResolver(environ=environ, transport=transport)
            resolution = await Chain([resolver]).resolve(IMAGE)
    assert resolution.credential.identity_token == acr.refresh_token
    assert aad.seen[0].form()["scope"] == PUBLIC_AUDIENCE + "/.default"
    assert acr.seen[0].form()["tenant"] == tenant
    assert f"client secret from {config}" in (resolution.trace[0].detail or "")
    assert_hidden(repr(resolution) + repr(resolver) + repr(resolver.config), secret, where="repr")


async def test_config_file_user_assigned_managed_identity(
    msi: AppServiceMSI, tmp_path: Path
) -> None:
    config = _write(
        tmp_path / "azure.json",
        {"useManagedIdentityExtension": True, "userAssignedIdentityID": "client-guid"},
    )
    with ACRRegistry(REGISTRY, accepted=lambda: {msi.access_token}) as acr:
        async with RoutingTransport({REGISTRY: acr.address, "127.0.0.1": msi.address}) as transport:
            credential = await AzureResolver(config=config, transport=transport).resolve(
                Resource.parse(IMAGE)
            )
    assert credential is not None
    assert msi.seen[0].query["client_id"] == ["client-guid"]
    assert "tenant" not in acr.seen[0].form()


async def test_azure_stack_endpoints_come_from_the_resource_manager(
    cloud_env: dict[str, str], tmp_path: Path
) -> None:
    tenant, client_id, secret = "stack-tenant", "stack-app", "stack-secret"
    audience = "https://management.stack.example/0b1c2d3e"
    config = _write(
        tmp_path / "azure.json",
        {
            "cloud": "AzureStackCloud",
            "resourceManagerEndpoint": "https://management.stack.example/",
            "tenantId": tenant,
            "aadClientId": client_id,
            "aadClientSecret": secret,
        },
    )
    with (
        AzureStackMetadata(login="https://login.stack.example/", audience=audience) as stack,
        AzureAD(tenant=tenant, client_id=client_id, client_secret=secret) as aad,
        ACRRegistry(REGISTRY, accepted=lambda: {aad.access_token}) as acr,
    ):
        routes = {
            "management.stack.example": stack.address,
            "login.stack.example": aad.address,
            REGISTRY: acr.address,
        }
        async with RoutingTransport(routes) as transport:
            credential = await AzureResolver(config=config, transport=transport).resolve(
                Resource.parse(IMAGE)
            )
    assert credential is not None
    assert aad.seen[0].form()["scope"] == audience + "/.default"


async def test_a_refused_exchange_is_traced_without_the_azure_ad_token(msi: AppServiceMSI) -> None:
    with ACRRegistry(REGISTRY, accepted=set) as acr:
        async with RoutingTransport({REGISTRY: acr.address, "127.0.0.1": msi.address}) as transport:
            resolution = await Chain([AzureResolver(environ={}, transport=transport)]).resolve(
                IMAGE
            )
    entry = resolution.trace[0]
    assert entry.outcome is Outcome.ERROR
    assert "HTTP 401" in (entry.detail or "")
    assert "IMGPKG_ACTIVE_KEYCHAINS" in (entry.detail or "")
    assert_hidden(repr(resolution), msi.access_token, msi.identity_header, where="trace")


async def test_a_wrong_client_secret_is_an_error_without_the_secret(
    cloud_env: dict[str, str], tmp_path: Path
) -> None:
    config = _write(
        tmp_path / "azure.json",
        {"tenantId": "t", "aadClientId": "a", "aadClientSecret": "the-wrong-secret"},
    )
    with AzureAD(tenant="t", client_id="a", client_secret="the-right-one") as aad:
        async with RoutingTransport({"login.microsoftonline.com": aad.address}) as transport:
            resolution = await Chain([AzureResolver(config=config, transport=transport)]).resolve(
                IMAGE
            )
    entry = resolution.trace[0]
    assert entry.outcome is Outcome.ERROR
    assert "client secret" in (entry.detail or "")
    assert_hidden(repr(resolution), "the-wrong-secret", "the-right-one", where="trace")


async def test_no_azure_identity_is_no_opinion_after_a_short_probe(
    cloud_env: dict[str, str],
) -> None:
    """Off Azure: azure-identity probes the VM metadata endpoint (refused here) and gives up."""
    async with RoutingTransport({"169.254.169.254": f"127.0.0.1:{closed_port()}"}) as transport:
        chain = Chain([AzureResolver(environ={}, transport=transport)])
        started = time.perf_counter()
        resolution = await chain.resolve(IMAGE)
        elapsed = time.perf_counter() - started
        assert resolution.trace[0].outcome is Outcome.NO_MATCH
        probes = len(transport.calls)
        await chain.resolve(f"{REGISTRY}/other")  # the "no" is cached per registry
        assert len(transport.calls) == probes
    assert probes >= 1
    assert all(call.endswith("/metadata/identity/oauth2/token") for call in transport.calls)
    assert elapsed < 1.5


async def test_secrets_stay_out_of_reprs_traces_and_logs(
    msi: AppServiceMSI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="asyncauth")
    with ACRRegistry(REGISTRY, accepted=lambda: {msi.access_token}) as acr:
        async with RoutingTransport({REGISTRY: acr.address, "127.0.0.1": msi.address}) as transport:
            resolver = AzureResolver(environ={}, transport=transport)
            resolution = await Chain([resolver]).resolve(IMAGE)
    assert resolution.credential.identity_token == acr.refresh_token
    shown = " ".join(
        [repr(resolution), str(resolution.credential), repr(resolver), caplog.text]
        + [str(entry) for entry in resolution.trace]
    )
    assert_hidden(shown, acr.refresh_token, msi.access_token, msi.identity_header, where="output")


async def test_other_hosts_cost_nothing() -> None:
    transport = FailingTransport()
    resolver = AzureResolver(environ={}, transport=transport)
    for reference in ("alpine", f"{REGISTRY}.evil.example/x", "azurecr.io/x", "x.azurecr.com/y"):
        assert await resolver.resolve(Resource.parse(reference)) is None
    assert transport.calls == []


async def test_without_the_azure_extra_acr_is_unavailable(
    cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity", None)
    resolution = await Chain([AzureResolver(environ={}, transport=FailingTransport())]).resolve(
        IMAGE
    )
    assert resolution.trace[0].outcome is Outcome.UNAVAILABLE
    assert "pip install 'asyncauth[azure]'" in (resolution.trace[0].detail or "")
