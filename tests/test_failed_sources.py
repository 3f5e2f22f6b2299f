"""A failing credential source is never silently anonymous (issue 9).

When a source above the answer failed (crashed, timed out, is not installed) and the registry
then refuses the request, the user learns which sources failed and why: from ``RegistryAuth``,
from ``asyncauth.resolve()`` and from the ``asyncauth`` command. Against the real registry.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest

import asyncauth
from asyncauth import (
    AuthenticationError,
    Chain,
    Credential,
    FlagsResolver,
    RegistryAuth,
    ResolverError,
    Resource,
)

from ._assertions import assert_hidden
from .peers.accounts import PeerAccounts
from .peers.images import PushedImage
from .peers.registry import RegistryServer
from .peers.token_issuer import TokenIssuer
from .test_client import run

ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


class Broken:
    """A source that fails, the way a vault or a credential helper does."""

    name = "vault"

    async def resolve(self, resource: Resource) -> Credential | None:
        raise ResolverError("vault.internal:8200 refused the connection")


class Hung:
    name = "metadata"
    timeout = 0.2

    async def resolve(self, resource: Resource) -> Credential | None:
        await anyio.sleep(10)
        return None


def chain_with_failures(*lower: asyncauth.Resolver) -> Chain:
    return Chain([Broken(), Hung(), *lower])


async def test_a_bearer_registry_refusing_names_every_failed_source(
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
) -> None:
    url = token_registry.url + token_registry_image.manifest_path
    auth = RegistryAuth(chain_with_failures())
    async with httpx.AsyncClient(auth=auth, headers=ACCEPT, timeout=30.0) as http:
        with pytest.raises(AuthenticationError) as caught:
            await http.get(url)
    message = str(caught.value)
    assert f"{token_registry.host}/peers/app" in message  # the registry and the repository
    assert "vault error (ResolverError: vault.internal:8200 refused the connection)" in message
    assert "metadata timed out (no answer within 0.2 s)" in message


async def test_a_basic_registry_refusing_names_every_failed_source(
    htpasswd_registry: RegistryServer, htpasswd_registry_image: PushedImage
) -> None:
    url = htpasswd_registry.url + htpasswd_registry_image.manifest_path
    async with httpx.AsyncClient(
        auth=RegistryAuth(chain_with_failures()), headers=ACCEPT, timeout=30.0
    ) as http:
        with pytest.raises(AuthenticationError, match="vault error") as caught:
            await http.get(url)
    assert f"{htpasswd_registry.host}/peers/app" in str(caught.value)


async def test_a_lower_source_that_works_is_used_and_nothing_is_raised(
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    user, password = peer_accounts.writer
    flags = FlagsResolver(username=user, password=password, environ={})
    url = token_registry.url + token_registry_image.manifest_path
    async with httpx.AsyncClient(
        auth=RegistryAuth(chain_with_failures(flags)), headers=ACCEPT, timeout=30.0
    ) as http:
        assert (await http.get(url)).status_code == 200


def test_a_sync_client_says_the_same(
    token_registry: RegistryServer, token_registry_image: PushedImage, token_issuer: TokenIssuer
) -> None:
    url = token_registry.url + token_registry_image.manifest_path
    auth = RegistryAuth(chain_with_failures())
    with (
        httpx.Client(auth=auth, headers=ACCEPT) as http,
        pytest.raises(AuthenticationError, match="metadata timed out"),
    ):
        http.get(url)


def _crashing_helper(tmp_path: Path, registry: str, secret: str) -> dict[str, str]:
    """A Docker config whose helper for ``registry`` crashes (and prints a secret-ish word)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-crash"
    helper.write_text(f"#!/bin/sh\necho 'keychain locked: password={secret}'\nexit 3\n")
    helper.chmod(0o755)
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text(json.dumps({"credHelpers": {registry: "crash"}}))
    return {
        "DOCKER_CONFIG": str(docker),
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "IMGPKG_ENABLE_IAAS_AUTH": "false",
    }


async def test_resolve_raises_instead_of_answering_anonymous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = _crashing_helper(tmp_path, "registry.example.com", "hunter2-SECRET")
    with pytest.raises(AuthenticationError, match="docker-config error") as caught:
        await asyncauth.resolve("registry.example.com/team/app", environ=environ)
    assert "exited with status 3" in str(caught.value)
    assert_hidden(str(caught.value), "hunter2-SECRET", where="AuthenticationError")
    # The chain itself still answers with the whole trace, for `explain`.
    resolution = await asyncauth.default_chain(environ=environ).resolve("registry.example.com/a")
    assert resolution.credential.is_anonymous
    assert [entry.resolver for entry in resolution.failures] == ["docker-config"]


def test_the_token_command_fails_instead_of_printing_an_anonymous_token(
    tmp_path: Path, token_registry: RegistryServer, token_issuer: TokenIssuer
) -> None:
    environ = _crashing_helper(tmp_path, token_registry.host, "hunter2-SECRET")
    result = run(["token", f"{token_registry.host}/peers/app"], environ, tmp_path)
    assert result.returncode == 1, result.stdout
    assert result.stdout == ""
    assert "docker-config error" in result.stderr
    assert "docker-credential-crash exited with status 3" in result.stderr
    assert_hidden(result.stderr, "hunter2-SECRET", where="stderr")
