"""Credentials do not follow redirects to another origin (issue 11 #1, #5, and HttpHeaders).

httpx follows redirects inside the auth flow, so the answer the handshake reads may come from
wherever the registry sent the request. These registries redirect to a second loopback origin
that plays the attacker: it asks for credentials (#1), or receives a token request's replayed
POST body (#5), or the Docker config's ``HttpHeaders``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from asyncauth import AsyncAuthError, Chain, Credential, RegistryAuth, create_sync_client

from .._assertions import assert_hidden
from .._fakes import Fixed
from .._secrets import secret
from .._transport_choice import every_transport
from .conftest import client_on
from .peers import (
    Reply,
    Server,
    basic_forms,
    bearer_challenge,
    everything,
    redirect,
    token_reply,
)

USER = "alice"
PASSWORD = secret("pw-REDIRECT-secret-1", user=USER)
IDENTITY_TOKEN = secret("idt-REDIRECT-refresh-2")
HEADER_VALUE = secret("hdr-REDIRECT-secret-3")
MANIFEST = "/v2/org/app/manifests/v1"


@every_transport
async def test_a_401_from_a_redirect_target_gets_no_credentials(
    transport: str, environ: pytest.MonkeyPatch, registry: Server, elsewhere: Server
) -> None:
    """#1: a registry with no challenge yet redirects its first request (registry.k8s.io does)
    to a host that answers 401 with a Bearer challenge of its own: that host learns nothing."""
    registry.route("/v2/", lambda seen: redirect(elsewhere.url + seen.path))
    elsewhere.route("/token", token_reply())
    elsewhere.route("/v2/", bearer_challenge(elsewhere.url + "/token"))
    async with client_on(environ, transport, Credential(USER, PASSWORD)) as http:
        for _ in range(2):  # and the first answer did not poison the registry's challenge
            response = await http.get(registry.url + MANIFEST)
            assert response.status_code == 401
            assert response.url.port == elsewhere.port
    assert [s.path for s in elsewhere.seen] == [MANIFEST, MANIFEST]
    assert all("authorization" not in s.headers for s in elsewhere.seen + registry.seen)
    assert_hidden(everything(elsewhere.seen), *basic_forms(USER, PASSWORD), where="target")


@every_transport
async def test_a_refresh_token_is_not_replayed_by_a_307(
    transport: str,
    environ: pytest.MonkeyPatch,
    registry: Server,
    realm: Server,
    elsewhere: Server,
) -> None:
    """#5: the token server answers the identity token's POST with a 307 to another origin;
    httpx would re-send the body (the refresh token) there."""
    registry.route("/v2/", bearer_challenge(realm.url + "/token"))
    realm.route("/token", redirect(elsewhere.url + "/steal", 307))
    elsewhere.route("/steal", token_reply("stolen-TOKEN"))
    credential = Credential(identity_token=IDENTITY_TOKEN)
    async with client_on(environ, transport, credential) as http:
        with pytest.raises((AsyncAuthError, httpx.HTTPError)) as caught:
            await http.get(registry.url + MANIFEST)
    assert_hidden(str(caught.value) + repr(caught.value), IDENTITY_TOKEN)
    assert_hidden(everything(elsewhere.seen), IDENTITY_TOKEN, where="redirect target")
    assert [s.method for s in realm.seen] == ["POST"]  # and not asked again by GET with it
    assert IDENTITY_TOKEN in realm.seen[0].body.decode()  # it did go where it belongs
    assert all("stolen-TOKEN" not in s.text() for s in registry.seen)


@every_transport
async def test_docker_config_headers_do_not_follow_a_redirect_to_another_origin(
    transport: str, environ: pytest.MonkeyPatch, registry: Server, elsewhere: Server
) -> None:
    """Docker config ``HttpHeaders`` are for the registry: a blob redirect to storage elsewhere
    must not carry them (httpx itself strips only ``Authorization``)."""
    registry.route("/v2/org/app/blobs/", lambda seen: redirect(elsewhere.url + "/object", 307))
    registry.route("/v2/", Reply(200, body=b"{}"))
    elsewhere.route("/object", Reply(200, body=b"blob"))
    headers = {"X-Meta-Secret": HEADER_VALUE, "User-Agent": "asyncauth-test"}
    # headers= is what the Docker config's HttpHeaders become
    auth = {"headers": headers}
    async with client_on(environ, transport, Credential(USER, PASSWORD), auth=auth) as http:
        response = await http.get(f"{registry.url}/v2/org/app/blobs/sha256:{'a' * 64}")
    assert response.status_code == 200
    assert response.content == b"blob"
    assert registry.seen[-1].headers.get("x-meta-secret") == HEADER_VALUE  # sent where it belongs
    assert_hidden(everything(elsewhere.seen), HEADER_VALUE, where="redirect target")


@every_transport
async def test_docker_config_headers_stay_on_a_same_origin_redirect(
    transport: str, environ: pytest.MonkeyPatch, registry: Server
) -> None:
    registry.route("/v2/org/app/blobs/", lambda seen: redirect(registry.url + "/object", 307))
    registry.route("/object", Reply(200, body=b"blob"))
    registry.route("/v2/", Reply(200, body=b"{}"))
    auth = {"headers": {"X-Meta": "kept"}}
    async with client_on(environ, transport, Credential(USER, PASSWORD), auth=auth) as http:
        response = await http.get(f"{registry.url}/v2/org/app/blobs/sha256:{'a' * 64}")
    assert response.status_code == 200
    assert registry.seen[-1].path == "/object"
    assert registry.seen[-1].headers.get("x-meta") == "kept"


def test_docker_config_headers_stay_home_with_the_sync_client_too(
    environ: pytest.MonkeyPatch, registry: Server, elsewhere: Server
) -> None:
    registry.route("/v2/org/app/blobs/", lambda seen: redirect(elsewhere.url + "/object", 307))
    registry.route("/v2/", Reply(200, body=b"{}"))
    elsewhere.route("/object", Reply(200, body=b"blob"))
    auth = RegistryAuth(
        Chain([Fixed(Credential(USER, PASSWORD))]), headers={"X-Meta": HEADER_VALUE}
    )
    with create_sync_client(auth=auth) as http:
        response = http.get(f"{registry.url}/v2/org/app/blobs/sha256:{'a' * 64}")
    assert response.content == b"blob"
    assert registry.seen[-1].headers.get("x-meta") == HEADER_VALUE
    assert_hidden(everything(elsewhere.seen), HEADER_VALUE, where="redirect target")


@pytest.mark.parametrize("module", ["httpx", "httpx2"])
async def test_a_refresh_token_is_not_replayed_by_a_307_whatever_the_transport(
    module: str,
) -> None:
    """#5 on a transport that reads request bodies into memory (``request.read()``, as
    ``httpx.MockTransport`` does): httpx then keeps the body as a replayable copy, and its
    redirect carried the refresh token to the other origin. The token request now keeps its
    one-shot body whoever reads it. A hand-built client, so no hook of ours is involved."""
    import importlib

    http = importlib.import_module(module)
    auth_class = RegistryAuth
    if module == "httpx2":
        from asyncauth.httpx2 import RegistryAuth as auth_class  # type: ignore[assignment]
    bodies: dict[str, list[bytes]] = {}

    def handler(request: Any) -> Any:
        host = request.url.host
        bodies.setdefault(host, []).append(request.read())
        if host == "registry.example.com":
            challenge = 'Bearer realm="https://auth.example.com/token",service="s"'
            return http.Response(401, headers={"WWW-Authenticate": challenge})
        if host == "auth.example.com":
            return http.Response(307, headers={"Location": "https://steal.example.net/t"})
        return http.Response(200, json={"token": "stolen-TOKEN"})

    auth = auth_class(Chain([Fixed(Credential(identity_token=IDENTITY_TOKEN))]))
    transport = http.MockTransport(handler)
    async with http.AsyncClient(transport=transport, auth=auth, follow_redirects=True) as client:
        with pytest.raises((AsyncAuthError, http.HTTPError)) as caught:
            await client.get("https://registry.example.com" + MANIFEST)
    assert_hidden(str(caught.value), IDENTITY_TOKEN)
    assert IDENTITY_TOKEN in bodies["auth.example.com"][0].decode()  # it went where it belongs
    stolen = b"".join(bodies.get("steal.example.net", []))
    assert IDENTITY_TOKEN.encode() not in stolen
