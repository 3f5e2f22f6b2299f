"""A token response cannot choose how much memory it costs (issue 11 #3).

The limit on a token response (``max_token_response``, 1 MiB) counts *decoded* bytes, and one
layer of gzip or deflate is all a token server may use: ``gzip, gzip`` is how 493 bytes became a
459 MB allocation.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib

import pytest

from asyncauth import Credential, TokenResponseError

from .._secrets import secret
from .._transport_choice import every_transport
from .conftest import client_on
from .peers import Reply, Server, bearer_challenge

USER = "alice"
PASSWORD = secret("pw-BODIES-secret-1", user=USER)
MANIFEST = "/v2/org/app/manifests/v1"
INFLATED = 64 << 20
"""What the bomb inflates to: 64 MiB, which the old code allocated (twice) before it failed."""


def _token_json(size: int) -> bytes:
    return b'{"token": "' + b"a" * size + b'", "expires_in": 300}'


BOMB = gzip.compress(gzip.compress(_token_json(INFLATED), 9), 9)
BIG = gzip.compress(_token_json(2 << 20), 9)


def serve_token(registry: Server, realm: Server, body: bytes, encoding: str) -> None:
    registry.route("/v2/", lambda seen: _registry(seen, realm))
    headers = [("Content-Type", "application/json"), ("Content-Encoding", encoding)]
    realm.route("/token", Reply(200, headers, body))


def _registry(seen: object, realm: Server) -> Reply:
    headers = getattr(seen, "headers", {})
    if headers.get("authorization") == "Bearer issued-TOKEN":
        return Reply(200, body=b"{}")
    return bearer_challenge(realm.url + "/token")


@every_transport
async def test_a_gzip_gzip_bomb_is_refused_without_inflating_it(
    transport: str, environ: pytest.MonkeyPatch, registry: Server, realm: Server
) -> None:
    assert len(BOMB) < 2048
    serve_token(registry, realm, BOMB, "gzip, gzip")
    async with client_on(environ, transport, Credential(USER, PASSWORD)) as http:
        tracemalloc.start()
        try:
            with pytest.raises(TokenResponseError) as caught:
                await http.get(registry.url + MANIFEST)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 8 << 20, f"{peak} bytes allocated for a {len(BOMB)}-byte answer"
    assert "Content-Encoding" in str(caught.value)  # refused for what it is, not for its size
    assert all("authorization" not in s.headers for s in registry.seen)


@every_transport
async def test_the_size_limit_counts_decoded_bytes(
    transport: str, environ: pytest.MonkeyPatch, registry: Server, realm: Server
) -> None:
    """2 MiB of token in 2 KiB of gzip: over the 1 MiB limit, refused, never sent on."""
    assert len(BIG) < 8192
    serve_token(registry, realm, BIG, "gzip")
    async with client_on(environ, transport, Credential(USER, PASSWORD)) as http:
        with pytest.raises(TokenResponseError, match="larger than 1048576 bytes"):
            await http.get(registry.url + MANIFEST)
    assert all("authorization" not in s.headers for s in registry.seen)


@every_transport
@pytest.mark.parametrize(
    ("encoding", "encode"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("identity", bytes)],
)
async def test_one_layer_of_compression_is_read(
    transport: str,
    environ: pytest.MonkeyPatch,
    registry: Server,
    realm: Server,
    encoding: str,
    encode: object,
) -> None:
    body = json.dumps({"token": "issued-TOKEN", "expires_in": 300}).encode()
    serve_token(registry, realm, encode(body), encoding)  # type: ignore[operator]
    async with client_on(environ, transport, Credential(USER, PASSWORD)) as http:
        response = await http.get(registry.url + MANIFEST)
    assert response.status_code == 200
    assert realm.seen[0].headers["accept-encoding"] == "gzip, deflate"
