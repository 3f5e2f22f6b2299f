"""Google: Application Default Credentials from a strict GCE metadata stand-in and a token endpoint.

google-auth reads ``GCE_METADATA_HOST`` once, when it is first imported, so the test that uses the
variables (the way a GKE pod is configured) runs in a fresh interpreter per event loop; the other
tests route google-auth's requests through the pluggable transport instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest

from asyncauth import Chain, ConfigError, Outcome, Resource
from asyncauth._sources.google import USERNAME, GoogleResolver
from tests._assertions import assert_hidden

from .peers.clouds import (
    FailingTransport,
    GCEMetadata,
    GoogleOAuth,
    RoutingTransport,
    service_account_key,
)

GAR = "us-docker.pkg.dev/project/repo/app:1"


def _metadata_host() -> str:
    """Where google-auth will fetch metadata: fixed when it was first imported."""
    from google.auth.compute_engine import _metadata

    return str(_metadata._GCE_METADATA_HOST)


def _gce_routes(gce: GCEMetadata) -> dict[str, str]:
    return {"169.254.169.254": gce.address, _metadata_host(): gce.address}


async def test_token_from_the_metadata_server_through_the_transport(
    cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GCE_METADATA_IP")
    with GCEMetadata() as gce:
        async with RoutingTransport(_gce_routes(gce)) as transport:
            chain = Chain([GoogleResolver(transport=transport)])
            resolution = await chain.resolve(GAR)
            calls = len(transport.calls)
            # One token serves every Google registry: no second lookup.
            again = await chain.resolve("gcr.io/project/other")
            assert len(transport.calls) == calls
    credential = resolution.credential
    assert resolution.source == "google"
    assert (credential.username, credential.password) == (USERNAME, gce.access_token)
    assert again.credential == credential
    assert credential.expires_at is not None
    assert abs(credential.expires_at - (time.time() + gce.expires_in)) < 30
    token_requests = gce.requests(GCEMetadata.ROOT + "instance/service-accounts/default/token")
    assert len(token_requests) == 1
    assert all(seen.headers.get("metadata-flavor") == "Google" for seen in gce.seen)


async def test_the_gce_stand_in_is_as_strict_as_the_real_one() -> None:
    with GCEMetadata() as gce:
        async with httpx.AsyncClient(base_url=gce.url) as client:
            flavour = {"Metadata-Flavor": "Google"}
            token_path = GCEMetadata.ROOT + "instance/service-accounts/default/token"
            for response in (
                await client.get(token_path),
                await client.get(token_path, headers={**flavour, "X-Forwarded-For": "1.2.3.4"}),
                await client.get(GCEMetadata.ROOT + "nope", headers=flavour),
                await client.get(token_path, headers=flavour),
            ):
                assert response.headers["metadata-flavor"] == "Google"
                assert response.headers["content-type"]
            assert (await client.get(token_path)).status_code == 403
            assert (await client.get(GCEMetadata.ROOT + "nope", headers=flavour)).status_code == 404


_CHILD = """
import hashlib, json, sys
import anyio
from asyncauth import Chain
from asyncauth._sources.google import GoogleResolver

async def main():
    resolution = await Chain([GoogleResolver()]).resolve(sys.argv[2])
    credential = resolution.credential
    print(json.dumps({
        "source": resolution.source,
        "username": credential.username,
        "password_sha256": hashlib.sha256((credential.password or "").encode()).hexdigest(),
        "trace": [entry.outcome.value for entry in resolution.trace],
    }))

anyio.run(main, backend=sys.argv[1])
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_token_from_gce_metadata_host_variables_in_a_fresh_process(
    backend: str, tmp_path: Path
) -> None:
    """GCE_METADATA_HOST / GCE_METADATA_IP as a pod sets them, no transport, each event loop."""
    with GCEMetadata() as gce:
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("GOOGLE_", "GCE_", "CLOUDSDK_", "AWS_", "AZURE_"))
        }
        environment |= {
            "GCE_METADATA_HOST": gce.address,
            "GCE_METADATA_IP": gce.address,
            "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
            "NO_PROXY": "*",
        }
        import subprocess

        done = subprocess.run(
            [sys.executable, "-c", _CHILD, backend, GAR],
            capture_output=True,
            text=True,
            env=environment,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout)
    assert answer["source"] == "google"
    assert answer["username"] == USERNAME
    assert answer["password_sha256"] == hashlib.sha256(gce.access_token.encode()).hexdigest()
    assert answer["trace"] == ["matched"]
    assert gce.requests(GCEMetadata.ROOT + "instance/service-accounts/default/token")


async def test_service_account_key_file(
    cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = tmp_path / "key.json"
    public_key = service_account_key(key_file, token_uri="https://oauth2.googleapis.com/token")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    with GoogleOAuth(public_key) as oauth:
        routes = {"oauth2.googleapis.com": oauth.address}
        async with RoutingTransport(routes) as transport:
            credential = await GoogleResolver(transport=transport).resolve(Resource.parse(GAR))
    assert credential is not None
    assert (credential.username, credential.password) == (USERNAME, oauth.access_token)
    assert transport.calls == ["POST https://oauth2.googleapis.com/token"]


async def test_off_google_cloud_is_no_opinion_after_one_short_probe(
    cloud_env: dict[str, str],
) -> None:
    """No ADC file, no metadata server: one probe (refused here), then a cached "no"."""
    nowhere = os.environ["GCE_METADATA_IP"]
    async with RoutingTransport({"127.0.0.1": nowhere}) as transport:
        chain = Chain([GoogleResolver(transport=transport)])
        started = time.perf_counter()
        first = await chain.resolve(GAR)
        elapsed = time.perf_counter() - started
        assert first.trace[0].outcome is Outcome.NO_MATCH
        assert transport.calls == ["GET http://127.0.0.1/"]
        await chain.resolve("gcr.io/p/app")
        assert len(transport.calls) == 1
    assert elapsed < 1.5


async def test_a_rejected_grant_is_traced_without_secrets(
    cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = tmp_path / "key.json"
    service_account_key(key_file, token_uri="https://oauth2.googleapis.com/token")
    private_key = json.loads(key_file.read_text())["private_key"]
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    with GoogleOAuth(reject=True) as oauth:
        async with RoutingTransport({"oauth2.googleapis.com": oauth.address}) as transport:
            resolution = await Chain([GoogleResolver(transport=transport)]).resolve(GAR)
    entry = resolution.trace[0]
    assert entry.outcome is Outcome.ERROR
    assert "invalid_grant" in (entry.detail or "")
    assert "IMGPKG_ACTIVE_KEYCHAINS" in (entry.detail or "")
    marker = private_key.splitlines()[1]
    assert_hidden(repr(resolution), marker, *oauth.assertions, where="trace")


async def test_secrets_stay_out_of_reprs_traces_and_logs(
    cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="asyncauth")
    monkeypatch.delenv("GCE_METADATA_IP")
    with GCEMetadata() as gce:
        async with RoutingTransport(_gce_routes(gce)) as transport:
            resolver = GoogleResolver(transport=transport)
            resolution = await Chain([resolver]).resolve(GAR)
    assert resolution.credential.password == gce.access_token
    shown = " ".join(
        [repr(resolution), str(resolution.credential), repr(resolver), caplog.text]
        + [str(entry) for entry in resolution.trace]
    )
    assert_hidden(shown, gce.access_token, where="output")


async def test_other_hosts_cost_nothing() -> None:
    transport = FailingTransport()
    resolver = GoogleResolver(transport=transport)
    for reference in ("alpine", "gcr.io.evil.example/x", "quay.io/a/b", "pkg.dev/x"):
        assert await resolver.resolve(Resource.parse(reference)) is None
    assert transport.calls == []


async def test_without_the_gcp_extra_google_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "google.auth", None)
    resolution = await Chain([GoogleResolver(transport=FailingTransport())]).resolve(GAR)
    assert resolution.trace[0].outcome is Outcome.UNAVAILABLE
    assert "pip install 'asyncauth[gcp]'" in (resolution.trace[0].detail or "")


async def test_a_timed_out_lookup_abandons_its_thread_cleanly(
    cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """google-auth blocks in a worker thread; on timeout the lookup returns at once."""
    from .peers.clouds import BlackHole

    key_file = tmp_path / "key.json"
    service_account_key(key_file, token_uri="https://oauth2.googleapis.com/token")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    with BlackHole() as hole:
        routes = {"oauth2.googleapis.com": f"127.0.0.1:{hole.port}"}
        async with RoutingTransport(routes) as transport:
            chain = Chain([GoogleResolver(transport=transport, timeout=0.5)])
            started = time.perf_counter()
            resolution = await chain.resolve(GAR)
            elapsed = time.perf_counter() - started
            await anyio.sleep(0.1)
    assert resolution.trace[0].outcome is Outcome.TIMED_OUT
    assert 0.4 < elapsed < 1.5


@pytest.mark.parametrize("content", [None, "{not json", '{"type": "martian"}'])
async def test_an_unusable_credentials_file_is_a_config_error(
    cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None
) -> None:
    key_file = tmp_path / "key.json"
    if content is not None:
        key_file.write_text(content)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    with pytest.raises(ConfigError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        await Chain([GoogleResolver(transport=FailingTransport())]).resolve(GAR)
