"""create_client: private CAs (imgpkg's --registry-ca-cert-path, Harbor), insecure registries,
the httpx2 flavour of RegistryAuth, and the `token`/`manifest` commands, against real registries.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from asyncauth import (
    Chain,
    ConfigError,
    FlagsResolver,
    create_client,
    create_sync_client,
)

from ._assertions import assert_hidden
from .peers.accounts import PeerAccounts
from .peers.images import OCIImage, PushedImage
from .peers.registry import RegistryServer
from .peers.tls import PrivateCA
from .peers.token_issuer import TokenIssuer

ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


def flags(accounts: PeerAccounts) -> Chain:
    user, password = accounts.writer
    return Chain([FlagsResolver(username=user, password=password, environ={})])


async def test_private_ca_is_trusted_in_addition_to_the_system_store(
    tls_registry: tuple[RegistryServer, PushedImage],
    private_ca: PrivateCA,
    peer_accounts: PeerAccounts,
) -> None:
    registry, image = tls_registry
    async with create_client(
        chain=flags(peer_accounts), ca_cert_paths=[private_ca.ca_certificate]
    ) as http:
        response = await http.get(registry.url + image.manifest_path, headers=ACCEPT)
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == image.digest


async def test_without_the_ca_the_certificate_is_refused(
    tls_registry: tuple[RegistryServer, PushedImage], peer_accounts: PeerAccounts
) -> None:
    registry, image = tls_registry
    async with create_client(chain=flags(peer_accounts)) as http:
        # ConnectError on every transport (httpx-aiohttp alone used to say ConnectTimeout).
        with pytest.raises(httpx.ConnectError) as caught:
            await http.get(registry.url + image.manifest_path)
    assert str(caught.value).startswith(f"{registry.host}: ")
    assert "certificate verify failed" in str(caught.value)
    # The reason sits in the exception chain (trio wraps it one level deeper than asyncio).
    chain: list[BaseException] = []
    error: BaseException | None = caught.value
    while error is not None and len(chain) < 10:
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert any(isinstance(e, ssl.SSLCertVerificationError) for e in chain)


async def test_insecure_registry_skips_verification_for_that_host_only(
    tls_registry: tuple[RegistryServer, PushedImage], peer_accounts: PeerAccounts
) -> None:
    registry, image = tls_registry
    async with create_client(
        chain=flags(peer_accounts), insecure_registries=[registry.host]
    ) as http:
        response = await http.get(registry.url + image.manifest_path, headers=ACCEPT)
    assert response.status_code == 200
    async with create_client(
        chain=flags(peer_accounts), insecure_registries=["127.0.0.1:1"]
    ) as http:
        with pytest.raises(httpx.TransportError):
            await http.get(registry.url + image.manifest_path)


def test_sync_client_with_private_ca(
    tls_registry: tuple[RegistryServer, PushedImage],
    private_ca: PrivateCA,
    peer_accounts: PeerAccounts,
) -> None:
    registry, image = tls_registry
    with create_sync_client(
        chain=flags(peer_accounts), ca_cert_paths=[str(private_ca.ca_certificate)]
    ) as http:
        assert http.get(registry.url + image.manifest_path, headers=ACCEPT).status_code == 200


def test_missing_or_non_pem_ca_files_are_config_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match=str(missing)):
        create_client(ca_cert_paths=[missing])
    not_pem = tmp_path / "key.der"
    not_pem.write_bytes(b"\x30\x82\x01\x0a garbage")
    with pytest.raises(ConfigError, match="not a PEM file"):
        create_client(ca_cert_paths=[not_pem])
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=str(broken)):
        create_client(ca_cert_paths=[broken])


# --- httpx2 ---------------------------------------------------------------------------------


async def test_httpx2_async_client(
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    import httpx2

    from asyncauth.httpx2 import RegistryAuth

    counts: list[int] = []

    async def hook(response: httpx2.Response) -> None:
        counts.append(response.status_code)

    auth = RegistryAuth(flags(peer_accounts))
    async with httpx2.AsyncClient(auth=auth, headers=ACCEPT, event_hooks={"response": [hook]}) as c:
        for _ in range(3):
            response = await c.get(token_registry.url + token_registry_image.manifest_path)
            assert response.status_code == 200
    assert token_issuer.total == 1
    assert counts == [401, 200, 200, 200, 200]  # challenge, token, then three pulls


def test_httpx2_sync_client(
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    import httpx2

    from asyncauth.httpx2 import RegistryAuth

    with httpx2.Client(auth=RegistryAuth(flags(peer_accounts)), headers=ACCEPT) as client:
        assert client.get(token_registry.url + token_registry_image.manifest_path).is_success
    assert token_issuer.total == 1


# --- the commands ---------------------------------------------------------------------------


def run(args: list[str], env: dict[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "IMGPKG_ENABLE_IAAS_AUTH": "false",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "asyncauth", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def env_for(registry: RegistryServer, credential: tuple[str, str]) -> dict[str, str]:
    return {
        "IMGPKG_REGISTRY_HOSTNAME_0": registry.host,
        "IMGPKG_REGISTRY_USERNAME_0": credential[0],
        "IMGPKG_REGISTRY_PASSWORD_0": credential[1],
    }


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_token_command(
    tmp_path: Path,
    backend: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    env = env_for(token_registry, peer_accounts.writer)
    ref = f"{token_registry.host}/peers/app"
    result = run(["--backend", backend, "token", "--push", ref], env, tmp_path)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token_issuer.decode(token)["access"] == [
        {"type": "repository", "name": "peers/app", "actions": ["pull", "push"]}
    ]
    assert_hidden(result.stdout + result.stderr, peer_accounts.writer[1], where="token output")
    # ...and curl-style use of it works against the real registry.
    response = httpx.get(
        token_registry.url + token_registry_image.manifest_path,
        headers={"Authorization": f"Bearer {token}", **ACCEPT},
    )
    assert response.status_code == 200


def test_token_command_with_a_wrong_password(
    tmp_path: Path, token_registry: RegistryServer, token_issuer: TokenIssuer
) -> None:
    env = env_for(token_registry, ("alice", "wrong-SECRET"))
    result = run(["token", f"{token_registry.host}/peers/app"], env, tmp_path)
    assert result.returncode == 1
    assert "AuthenticationError" in result.stderr
    assert "401" in result.stderr
    assert_hidden(result.stderr, "wrong-SECRET", where="stderr")


def test_manifest_command(
    tmp_path: Path,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    env = env_for(token_registry, peer_accounts.reader)
    result = run(["manifest", token_registry_image.reference], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [token_registry_image.digest, token_registry_image.media_type]
    by_digest = f"{token_registry.host}/peers/app@{token_registry_image.digest}"
    result = run(["manifest", "--json", by_digest], env, tmp_path)
    assert json.loads(result.stdout)["digest"] == token_registry_image.digest


def test_manifest_command_with_a_private_ca(
    tmp_path: Path,
    tls_registry: tuple[RegistryServer, PushedImage],
    private_ca: PrivateCA,
    peer_accounts: PeerAccounts,
) -> None:
    registry, image = tls_registry
    env = env_for(registry, peer_accounts.writer)
    ca = str(private_ca.ca_certificate)
    result = run(["manifest", "--ca-cert", ca, image.reference], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [image.digest, image.media_type]
    result = run(["manifest", "--insecure-registry", registry.host, image.reference], env, tmp_path)
    assert result.returncode == 0, result.stderr
    # Without the CA the certificate is refused, and said so: no fallback to http, which this
    # TLS-only registry answers with 400.
    result = run(["manifest", image.reference], env, tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"asyncauth: ConnectError: {registry.host}: ")
    assert "certificate verify failed" in result.stderr


def test_manifest_command_not_found(
    tmp_path: Path, token_registry: RegistryServer, peer_accounts: PeerAccounts
) -> None:
    env = env_for(token_registry, peer_accounts.reader)
    result = run(["manifest", f"{token_registry.host}/peers/app:missing"], env, tmp_path)
    assert result.returncode == 1
    assert "404" in result.stderr


# --- which transport ------------------------------------------------------------------------


async def test_create_client_picks_the_fastest_transport_for_the_loop(
    anyio_backend: str,
) -> None:
    async with create_client() as client:
        expected = "aiohttp" if anyio_backend == "asyncio" else "httpx2"
        assert client.transport_name == expected
        assert f"transport={expected!r}" in repr(client)


def test_create_client_outside_a_loop_and_with_a_transport_of_ones_own() -> None:
    assert create_client().transport_name == "httpx"
    mine = httpx.AsyncHTTPTransport()
    client = create_client(transport=mine)
    assert client.transport_name == "AsyncHTTPTransport"
    assert client._transport is mine


async def test_the_picked_transport_carries_the_whole_handshake(
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    oci_image: OCIImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    """aiohttp's transport under asyncio, the httpx2 bridge under trio: pulls, a streamed push,
    token requests and the 401 all go through it."""
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        sent += 1
        yield oci_image.manifest[:10]
        yield oci_image.manifest[10:]

    async with create_client(chain=flags(peer_accounts), headers=ACCEPT) as http:
        url = token_registry.url + token_registry_image.manifest_path
        response = await http.get(url)
        assert response.status_code == 200
        assert response.content == oci_image.manifest
        response = await http.put(
            f"{token_registry.url}/v2/peers/app/manifests/bridged",
            content=body(),
            headers={"Content-Type": oci_image.media_type},
        )
        assert response.status_code == 201, response.text
        async with http.stream("GET", url) as streamed:
            assert b"".join([chunk async for chunk in streamed.aiter_bytes()]) == oci_image.manifest
    assert sent == 1
    assert token_issuer.scope_counts() == {
        "repository:peers/app:pull": 1,
        "repository:peers/app:pull,push": 1,
    }
