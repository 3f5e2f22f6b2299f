"""The clouds inside the default chain: every cloud from its stand-in, free off-cloud lookups,
and a chain whose clouds all hang costing the longest timeout, not the sum.

``iaas_chain`` is ``default_chain(transport=...)`` once that takes the argument, and the same
order built by hand until then.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from asyncauth import Chain, Outcome
from asyncauth._sources.azure import ACR_USERNAME, AzureResolver
from asyncauth._sources.ecr import ECRResolver
from asyncauth._sources.google import USERNAME as GOOGLE_USERNAME
from asyncauth._sources.google import GoogleResolver

from .peers.clouds import (
    ECR_ACCOUNT,
    ACRRegistry,
    AppServiceMSI,
    BlackHole,
    ECRPublic,
    FailingTransport,
    GCEMetadata,
    RoutingTransport,
    iaas_chain,
    service_account_key,
)

ECR = f"{ECR_ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com/team/app:1"
GAR = "europe-west1-docker.pkg.dev/project/repo/app"
ACR = "myregistry.azurecr.io/team/app"
GHCR = "ghcr.io/octo/app"
NOT_CLOUDS = (
    "alpine",
    "docker.io/library/alpine:3.20",
    "quay.io/org/app",
    "localhost:5000/app",
    "registry.example:8443/team/app",
    "gcr.io.evil.example/app",
    "myregistry.azurecr.io.evil.example/app",
    f"{ECR_ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com.evil.example/app",
    "ghcr.io.evil.example/app",
)


def _metadata_host() -> str:
    from google.auth.compute_engine import _metadata

    return str(_metadata._GCE_METADATA_HOST)


async def test_every_cloud_resolves_from_its_stand_in_through_the_default_chain(
    moto_server: str, cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAASYNCAUTHTEST002")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "chain-secret")
    monkeypatch.delenv("GCE_METADATA_IP")
    environ = {**cloud_env, "GITHUB_TOKEN": "ghs_chaintoken", "GITHUB_ACTOR": "octocat"}
    with GCEMetadata() as gce, AppServiceMSI() as msi:
        monkeypatch.setenv("IDENTITY_ENDPOINT", msi.endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", msi.identity_header)
        with ACRRegistry("myregistry.azurecr.io", accepted=lambda: {msi.access_token}) as acr:
            routes = {
                "api.ecr.us-west-2.amazonaws.com": moto_server,
                "169.254.169.254": gce.address,
                _metadata_host(): gce.address,
                "127.0.0.1": msi.address,
                "myregistry.azurecr.io": acr.address,
            }
            async with RoutingTransport(routes) as transport:
                chain = iaas_chain(environ, transport=transport)
                ecr, gar, acr_resolution, ghcr = [
                    await chain.resolve(reference) for reference in (ECR, GAR, ACR, GHCR)
                ]
                cloud_calls = len(transport.calls)
                for reference in NOT_CLOUDS:
                    resolution = await chain.resolve(reference)
                    assert resolution.source is None
                assert len(transport.calls) == cloud_calls  # not one more request
    assert (ecr.source, ecr.credential.username) == ("ecr", "AWS")
    assert ecr.credential.password == f"{ECR_ACCOUNT}-auth-token"
    assert (gar.source, gar.credential.username) == ("google", GOOGLE_USERNAME)
    assert gar.credential.password == gce.access_token
    assert (acr_resolution.source, acr_resolution.credential.username) == ("azure", ACR_USERNAME)
    assert acr_resolution.credential.identity_token == acr.refresh_token
    assert (ghcr.source, ghcr.credential.password) == ("github", "ghs_chaintoken")
    # The trace names every source in imgpkg's order: env, the clouds, then the rest.
    names = [entry.resolver for entry in ecr.trace]
    assert names[:5] == ["env", "ecr", "google", "azure", "github"]


async def test_hosts_no_cloud_claims_resolve_with_zero_network_calls(
    cloud_env: dict[str, str],
) -> None:
    transport = FailingTransport()
    chain = iaas_chain(cloud_env, transport=transport)
    for reference in NOT_CLOUDS:
        resolution = await chain.resolve(reference)
        assert resolution.source is None
        clouds = [e for e in resolution.trace if e.resolver in ("ecr", "google", "azure", "github")]
        assert [e.outcome for e in clouds] == [Outcome.NO_MATCH] * 4
    assert transport.calls == []


async def test_an_off_cloud_docker_hub_lookup_costs_next_to_nothing(
    cloud_env: dict[str, str],
) -> None:
    transport = FailingTransport()
    chain = iaas_chain(cloud_env, transport=transport)
    await chain.resolve("alpine")  # warm-up: imports, first task group
    rounds = 200
    started = time.perf_counter()
    for _ in range(rounds):
        await chain.resolve("docker.io/library/alpine")
    per_lookup = (time.perf_counter() - started) / rounds
    assert transport.calls == []
    assert per_lookup < 0.01, f"{per_lookup * 1e3:.2f} ms per lookup"


async def test_env_credentials_beat_the_clouds_and_the_clouds_beat_flags(
    cloud_env: dict[str, str],
) -> None:
    environ = {
        **cloud_env,
        "GITHUB_TOKEN": "ghs_from_github",
        "IMGPKG_REGISTRY_HOSTNAME": "ghcr.io",
        "IMGPKG_REGISTRY_USERNAME": "bot",
        "IMGPKG_REGISTRY_PASSWORD": "from-env",
        "IMGPKG_USERNAME": "flag-user",
        "IMGPKG_PASSWORD": "from-flags",
    }
    chain = iaas_chain(environ, transport=FailingTransport())
    assert (await chain.resolve(GHCR)).credential.password == "from-env"
    without_env = {k: v for k, v in environ.items() if not k.startswith("IMGPKG_REGISTRY_")}
    chain = iaas_chain(without_env, transport=FailingTransport())
    resolution = await chain.resolve(GHCR)
    assert (resolution.source, resolution.credential.password) == ("github", "ghs_from_github")
    assert (await chain.resolve("quay.io/a/b")).credential.password == "from-flags"


async def test_iaas_can_be_turned_off(cloud_env: dict[str, str]) -> None:
    environ = {**cloud_env, "GITHUB_TOKEN": "ghs_x", "IMGPKG_ENABLE_IAAS_AUTH": "false"}
    resolution = await iaas_chain(environ, transport=FailingTransport()).resolve(GHCR)
    assert resolution.source is None
    assert "github" not in [entry.resolver for entry in resolution.trace]
    only_github = {**cloud_env, "GITHUB_TOKEN": "ghs_x", "IMGPKG_ACTIVE_KEYCHAINS": "github"}
    resolution = await iaas_chain(only_github, transport=FailingTransport()).resolve(GHCR)
    assert [e.resolver for e in resolution.trace][:2] == ["env", "github"]


async def test_clouds_that_all_hang_cost_the_longest_timeout_not_the_sum(
    cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ECR (1 s), Google (1.5 s) and Azure (2 s) each wait on a socket that never answers.

    Run one after another (as imgpkg does) they would cost 4.5 s; run concurrently the chain
    costs about 2 s, and the trace says which cloud timed out and how to turn it off.
    """
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAASYNCAUTHTEST003")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hang-secret")
    key_file = tmp_path / "key.json"
    service_account_key(key_file, token_uri="https://oauth2.googleapis.com/token")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    with BlackHole() as hole:
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"{hole.url}/msi/token")
        monkeypatch.setenv("IDENTITY_HEADER", "hang-header")
        nowhere = f"127.0.0.1:{hole.port}"
        routes = {
            "api.ecr.us-west-2.amazonaws.com": nowhere,
            "oauth2.googleapis.com": nowhere,
            "127.0.0.1": nowhere,
        }
        async with RoutingTransport(routes) as transport:
            resolvers = [
                ECRResolver(environ={}, transport=transport, timeout=1.0),
                GoogleResolver(transport=transport, timeout=1.5),
                AzureResolver(environ={}, transport=transport, timeout=2.0),
            ]
            results = []
            for reference in (ECR, GAR, ACR):
                started = time.perf_counter()
                # Each lookup asks every cloud, and only the one that claims the host waits.
                resolution = await Chain(resolvers).resolve(reference)
                results.append((resolution, time.perf_counter() - started))

            # All three at once: one task group, three hanging clouds.
            started = time.perf_counter()
            async with anyio.create_task_group() as group:
                for reference in (ECR, GAR, ACR):
                    group.start_soon(Chain(resolvers).resolve, reference)
            together = time.perf_counter() - started

    for (resolution, elapsed), (name, limit, keychain) in zip(
        results, [("ecr", 1.0, "ecr"), ("google", 1.5, "gke"), ("azure", 2.0, "aks")], strict=True
    ):
        entry = next(e for e in resolution.trace if e.resolver == name)
        assert entry.outcome is Outcome.TIMED_OUT
        assert f"no answer within {limit:g} s" in (entry.detail or "")
        assert "IMGPKG_ENABLE_IAAS_AUTH=false" in (entry.detail or "")
        assert f"leave {keychain!r} out of IMGPKG_ACTIVE_KEYCHAINS" in (entry.detail or "")
        assert limit - 0.1 <= elapsed < limit + 1.0
    assert 1.9 <= together < 3.3, f"{together:.2f} s for three hanging clouds"


async def test_concurrent_lookups_of_one_registry_share_one_request(
    cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAASYNCAUTHTEST004")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "flight-secret")
    with ECRPublic() as public:
        monkeypatch.setenv("AWS_ENDPOINT_URL_ECR_PUBLIC", public.url)
        async with RoutingTransport({"127.0.0.1": public.address}) as transport:
            chain = iaas_chain(cloud_env, transport=transport)
            async with anyio.create_task_group() as group:
                for index in range(50):
                    group.start_soon(chain.resolve, f"public.ecr.aws/org/app{index}")
    assert len(public.seen) == 1
