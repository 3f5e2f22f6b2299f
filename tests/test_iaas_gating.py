"""IaaS gating and host claims: which clouds run, and which registries each one claims.

Pure functions: no network, no SDK. The claims decide whether a lookup for Docker Hub can ever
reach a metadata server, so both directions are pinned: every documented host shape is claimed,
and look-alikes (suffix attacks, extra labels, other ports) are not.
"""

from __future__ import annotations

import pytest

from asyncauth import Chain, ConfigError, Credential, Resource, default_chain
from asyncauth._chain import Bounded, Caching, Claiming, Explaining, Hinting
from asyncauth._defaults import CLOUDS, active_keychains, iaas_enabled, iaas_resolvers
from asyncauth._sources.azure import claims_azure, is_azure_host
from asyncauth._sources.cloud import CloudSettings, claimable_host, disable_hint
from asyncauth._sources.ecr import ECRHost, claims_ecr, ecr_host
from asyncauth._sources.github import claims_github
from asyncauth._sources.google import claims_google, is_google_host
from tests._assertions import assert_hidden

# --- IMGPKG_ENABLE_IAAS_AUTH ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("", True), ("true", True), ("TRUE", True), ("false", False), ("False", False)],
)
def test_enable_variable(value: str | None, expected: bool) -> None:
    environ = {} if value is None else {"IMGPKG_ENABLE_IAAS_AUTH": value}
    assert iaas_enabled(environ) is expected


@pytest.mark.parametrize("value", ["yes", "0", "1", "off", "ture"])
def test_enable_variable_rejects_anything_else(value: str) -> None:
    with pytest.raises(ConfigError, match="IMGPKG_ENABLE_IAAS_AUTH"):
        iaas_enabled({"IMGPKG_ENABLE_IAAS_AUTH": value})


def test_explicit_argument_wins_over_the_variable() -> None:
    assert iaas_enabled({"IMGPKG_ENABLE_IAAS_AUTH": "false"}, True) is True
    assert iaas_enabled({"IMGPKG_ENABLE_IAAS_AUTH": "true"}, False) is False
    # The variable is not consulted at all, so its typo does not matter then.
    assert iaas_enabled({"IMGPKG_ENABLE_IAAS_AUTH": "maybe"}, False) is False


# --- IMGPKG_ACTIVE_KEYCHAINS ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ("ecr", "gke", "aks", "github")),
        ("", ("ecr", "gke", "aks", "github")),
        ("ecr", ("ecr",)),
        ("github,ecr", ("github", "ecr")),
        (" aks , GKE ", ("aks", "gke")),
        ("ecr,ecr,gke,", ("ecr", "gke")),
    ],
)
def test_active_keychains(value: str | None, expected: tuple[str, ...]) -> None:
    environ = {} if value is None else {"IMGPKG_ACTIVE_KEYCHAINS": value}
    assert active_keychains(environ) == expected


@pytest.mark.parametrize("value", ["gcr", "ecr,acr", "gke,random-name"])
def test_unknown_keychain_is_a_config_error_listing_the_known_ones(value: str) -> None:
    with pytest.raises(ConfigError, match=r"IMGPKG_ACTIVE_KEYCHAINS.*known: ecr, gke, aks, github"):
        active_keychains({"IMGPKG_ACTIVE_KEYCHAINS": value})


def test_iaas_resolvers_follow_the_keychain_order() -> None:
    resolvers = iaas_resolvers(environ={"IMGPKG_ACTIVE_KEYCHAINS": "github,aks,ecr"})
    assert [r.name for r in resolvers] == ["github", "azure", "ecr"]
    assert [r.name for r in iaas_resolvers(environ={})] == ["ecr", "google", "azure", "github"]


def test_iaas_off_builds_no_resolver() -> None:
    assert iaas_resolvers(environ={"IMGPKG_ENABLE_IAAS_AUTH": "false"}) == []
    assert iaas_resolvers(environ={}, iaas=False) == []
    assert len(iaas_resolvers(environ={"IMGPKG_ENABLE_IAAS_AUTH": "false"}, iaas=True)) == 4


def test_iaas_resolvers_validate_both_variables() -> None:
    with pytest.raises(ConfigError, match="IMGPKG_ENABLE_IAAS_AUTH"):
        iaas_resolvers(environ={"IMGPKG_ENABLE_IAAS_AUTH": "nope"})
    with pytest.raises(ConfigError, match="IMGPKG_ACTIVE_KEYCHAINS"):
        iaas_resolvers(environ={"IMGPKG_ACTIVE_KEYCHAINS": "gcr"})


def test_every_cloud_resolver_has_a_timeout_and_says_how_to_turn_it_off() -> None:
    for resolver in iaas_resolvers(environ={}, timeout=3.0):
        assert 0 < resolver.timeout <= 3.0  # type: ignore[attr-defined]
        hint = resolver.disable_hint  # type: ignore[attr-defined]
        assert "IMGPKG_ENABLE_IAAS_AUTH=false" in hint
        assert "IMGPKG_ACTIVE_KEYCHAINS" in hint


def test_keychains_given_in_code_are_checked_too() -> None:
    assert [r.name for r in iaas_resolvers(environ={}, keychains=["GitHub", " ecr"])] == [
        "github",
        "ecr",
    ]
    with pytest.raises(ConfigError, match="keychains names an unknown keychain 'acr'"):
        iaas_resolvers(environ={}, keychains=["acr"])


@pytest.mark.parametrize("keychain", sorted(CLOUDS))
def test_each_registered_cloud_declares_its_capabilities(keychain: str) -> None:
    resolver = CLOUDS[keychain](CloudSettings(environ={}, timeout=2.0))
    assert f"leave {keychain!r} out of IMGPKG_ACTIVE_KEYCHAINS" in resolver.disable_hint  # type: ignore[attr-defined]
    for capability in (Bounded, Claiming, Explaining, Hinting):
        assert capability in type(resolver).__mro__, capability.__name__
    assert resolver.name == "github" or Caching in type(resolver).__mro__


class _QuayResolver(Bounded, Claiming, Hinting):
    """A cloud that did not exist: what a contributor adds in one new module."""

    name = "quay"
    timeout = 1.0
    disable_hint = disable_hint("quay")

    def __init__(self, settings: CloudSettings) -> None:
        self.token = settings.environ.get("QUAY_TOKEN")

    def claims(self, resource: Resource) -> bool:
        return claimable_host(resource) == "quay.io"

    async def resolve(self, resource: Resource) -> Credential | None:
        return Credential(username="$oauthtoken", password=self.token) if self.token else None


async def test_adding_a_cloud_is_one_registration_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CLOUDS, "quay", _QuayResolver)  # the one line in asyncauth/_defaults.py
    environ = {"QUAY_TOKEN": "quay-secret"}
    assert active_keychains(environ)[-1] == "quay"
    resolution = await default_chain(environ=environ).resolve("quay.io/org/app")
    assert (resolution.source, resolution.credential.password) == ("quay", "quay-secret")
    only = {**environ, "IMGPKG_ACTIVE_KEYCHAINS": "quay"}
    assert [r.name for r in iaas_resolvers(environ=only)] == ["quay"]
    off = await Chain(iaas_resolvers(environ={**only, "IMGPKG_ENABLE_IAAS_AUTH": "false"})).resolve(
        "quay.io/org/app"
    )
    assert off.source is None


# --- host claims ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com", ECRHost("123456789012", "us-east-1")),
        (
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
            ECRHost("123456789012", "us-gov-west-1", fips=True),
        ),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", ECRHost("123456789012", "cn-north-1")),
        ("123456789012.dkr-ecr.eu-west-3.on.aws", ECRHost("123456789012", "eu-west-3")),
        ("123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov", ECRHost("123456789012", "us-iso-east-1")),
        ("public.ecr.aws", ECRHost(None, "us-east-1", public=True)),
    ],
)
def test_ecr_hosts(host: str, expected: ECRHost) -> None:
    assert ecr_host(host) == expected


@pytest.mark.parametrize(
    "host",
    [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
        "evil.123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "12345678901.dkr.ecr.us-east-1.amazonaws.com",
        "123456789012.dkr.ecr.us-east-1.amazonaws.org",
        "123456789012.dkr.ecr..amazonaws.com",
        "dkr.ecr.us-east-1.amazonaws.com",
        "public.ecr.aws.evil.example",
        "ecr.aws",
    ],
)
def test_ecr_look_alikes_are_not_claimed(host: str) -> None:
    assert ecr_host(host) is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("gcr.io", True),
        ("us.gcr.io", True),
        ("eu.gcr.io", True),
        ("marketplace.gcr.io", True),
        ("us-docker.pkg.dev", True),
        ("europe-west1-docker.pkg.dev", True),
        ("pkg.dev", False),
        ("evilgcr.io", False),
        ("gcr.io.evil.example", False),
        ("a.b.gcr.io", False),
        ("docker.pkg.dev.evil.example", False),
        ("gcr.iox", False),
    ],
)
def test_google_hosts(host: str, expected: bool) -> None:
    assert is_google_host(host) is expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("myregistry.azurecr.io", True),
        ("my-registry-abc123.azurecr.io", True),
        ("myregistry.azurecr.cn", True),
        ("myregistry.azurecr.de", True),
        ("myregistry.azurecr.us", True),
        ("azurecr.io", False),
        ("myregistry.azurecr.io.evil.example", False),
        ("myregistry.azurecr.com", False),
        ("a.myregistry.azurecr.io", False),
        ("myregistry-azurecr.io", False),
    ],
)
def test_azure_hosts(host: str, expected: bool) -> None:
    assert is_azure_host(host) is expected


@pytest.mark.parametrize(
    "reference",
    [
        "gcr.io:5000/p/app",
        "myregistry.azurecr.io:8443/app",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com:5000/app",
        "ghcr.io:5000/o/app",
    ],
)
def test_only_the_https_port_is_claimed(reference: str) -> None:
    resource = Resource.parse(reference)
    assert not claims_google(resource)
    assert not claims_azure(resource)
    assert claims_ecr(resource) is None
    assert not claims_github(resource)


def test_explicit_https_port_is_claimed() -> None:
    assert claims_google(Resource.parse("gcr.io:443/p/app"))
    assert claims_github(Resource.parse("ghcr.io:443/o/app"))


def test_host_claims_are_case_insensitive_through_resource_parsing() -> None:
    assert claims_azure(Resource.parse("MyRegistry.AzureCR.io/app"))


# --- GitHub --------------------------------------------------------------------------------------


async def test_github_token_for_ghcr_only() -> None:
    from asyncauth._sources.github import GitHubResolver

    token = "ghp_" + "s3cr3t" * 6
    resolver = GitHubResolver(environ={"GITHUB_TOKEN": token, "GITHUB_ACTOR": "octocat"})
    credential = await resolver.resolve(Resource.parse("ghcr.io/octo/app"))
    assert credential is not None
    assert (credential.username, credential.password) == ("octocat", token)
    assert await resolver.resolve(Resource.parse("docker.io/octo/app")) is None
    assert await resolver.resolve(Resource.parse("ghcr.io.evil.example/octo/app")) is None
    assert_hidden(repr(resolver) + repr(credential) + str(credential), token, where="repr")
    assert "GITHUB_TOKEN" in (resolver.explain(Resource.parse("ghcr.io/octo/app")) or "")


async def test_github_without_token_has_no_opinion_and_actor_defaults() -> None:
    from asyncauth._sources.github import GitHubResolver

    assert await GitHubResolver(environ={}).resolve(Resource.parse("ghcr.io/o/a")) is None
    assert (
        await GitHubResolver(environ={"GITHUB_TOKEN": ""}).resolve(Resource.parse("ghcr.io/o/a"))
        is None
    )
    credential = await GitHubResolver(environ={"GITHUB_TOKEN": "t"}).resolve(
        Resource.parse("ghcr.io/o/a")
    )
    assert credential is not None
    assert credential.username == "unset"


_WITHOUT_SDKS = """
import importlib.abc, sys

class NoSDKs(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("aiobotocore", "botocore", "azure") or name.startswith(
            "google.auth"
        ):
            raise ImportError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoSDKs())

import anyio
import asyncauth
from asyncauth import Chain
from asyncauth._sources import azure, ecr, github, google

async def main():
    chain = Chain(asyncauth.iaas_resolvers(environ={}))
    hub = await chain.resolve("alpine")
    assert [e.outcome.value for e in hub.trace] == ["no match"] * 4, hub.trace
    for reference in ("123456789012.dkr.ecr.us-east-1.amazonaws.com/a", "gcr.io/p/a",
                      "r.azurecr.io/a"):
        trace = (await chain.resolve(reference)).trace
        entry = next(e for e in trace if e.outcome.value != "no match")
        print(entry.resolver, entry.outcome.value, entry.detail)

anyio.run(main)
loaded = [m for m in sys.modules if m.split(".")[0] in ("aiobotocore", "botocore", "azure")]
assert not loaded, loaded
"""


def test_without_any_sdk_everything_imports_and_clouds_are_unavailable() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_SDKS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert [line.split(" ", 2)[:2] for line in lines] == [
        ["ecr", "unavailable"],
        ["google", "unavailable"],
        ["azure", "unavailable"],
    ]
    assert "pip install 'asyncauth[aws]'" in lines[0]
    assert "pip install 'asyncauth[gcp]'" in lines[1]
    assert "pip install 'asyncauth[azure]'" in lines[2]
