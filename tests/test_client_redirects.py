"""Blob downloads that redirect to object storage work through create_client() on every transport.

distribution with its ``redirect`` storage middleware answers blob reads with a 307 to
``<baseurl>/<path in storage>``, as registries in front of S3 or a CDN do; a strict loopback
object store (tests/peers/blob_store.py) serves that path and refuses a ``GET`` that carries a
body. Before the fix, trio's default transport (httpx2's bridge) raised ``RequestNotRead`` on
every redirect, and aiohttp's sent the redirected ``GET`` with an empty chunked body.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from asyncauth import Chain, FlagsResolver, create_client, create_sync_client

from ._transport_choice import every_transport, force_transport
from .peers.accounts import PeerAccounts
from .peers.blob_store import BlobStore, StoreRequest
from .peers.images import OCIImage, push_image_http
from .peers.registry import Htpasswd, RegistryServer


@dataclass(frozen=True)
class RedirectingRegistry:
    registry: RegistryServer
    store: BlobStore
    blob_url: str
    blob: bytes


@pytest.fixture(scope="module")
def redirecting(
    tmp_path_factory: pytest.TempPathFactory, peer_accounts: PeerAccounts, oci_image: OCIImage
) -> Iterator[RedirectingRegistry]:
    registry = RegistryServer(
        tmp_path_factory.mktemp("redirecting"), auth=Htpasswd(peer_accounts.users)
    )
    with BlobStore(registry.storage_path) as store:
        registry.extra_config = store.registry_redirect()
        with registry:
            with httpx.Client(
                base_url=registry.url, auth=peer_accounts.writer, trust_env=False
            ) as seeder:
                push_image_http(seeder, oci_image, "redirect/app")
            yield RedirectingRegistry(
                registry,
                store,
                f"{registry.url}/v2/redirect/app/blobs/{oci_image.layer_digest}",
                oci_image.blobs[oci_image.layer_digest],
            )


def reader(accounts: PeerAccounts) -> Chain:
    user, password = accounts.reader
    return Chain([FlagsResolver(username=user, password=password, environ={})])


def assert_clean_reads(requests: list[StoreRequest], methods: list[str]) -> None:
    """The store saw exactly these reads, none with a body or the registry's credentials."""
    assert [r.method for r in requests] == methods
    for request in requests:
        assert "transfer-encoding" not in request.headers, request.headers
        assert request.headers.get("content-length", "0") == "0", request.headers
        assert "authorization" not in request.headers  # a cross-origin redirect drops it


@every_transport
async def test_blob_download_follows_the_redirect_to_storage(
    transport: str,
    environ: pytest.MonkeyPatch,
    redirecting: RedirectingRegistry,
    peer_accounts: PeerAccounts,
    oci_image: OCIImage,
) -> None:
    force_transport(environ, transport)
    seen = len(redirecting.store.requests)
    async with create_client(chain=reader(peer_accounts)) as http:
        assert http.transport_name == transport
        response = await http.get(redirecting.blob_url)
        assert response.status_code == 200, response.text
        assert response.history[-1].status_code == 307  # after the 401 that asked for Basic
        assert response.url.port == httpx.URL(redirecting.store.url).port
        assert response.content == redirecting.blob
        async with http.stream("GET", redirecting.blob_url) as streamed:
            digest = hashlib.sha256()
            async for chunk in streamed.aiter_bytes():
                digest.update(chunk)
        assert f"sha256:{digest.hexdigest()}" == oci_image.layer_digest
        head = await http.head(redirecting.blob_url)
        assert head.status_code == 200
        assert head.headers["Content-Length"] == str(len(redirecting.blob))
    assert_clean_reads(redirecting.store.requests[seen:], ["GET", "GET", "HEAD"])


def test_sync_blob_download_follows_the_redirect(
    environ: pytest.MonkeyPatch, redirecting: RedirectingRegistry, peer_accounts: PeerAccounts
) -> None:
    seen = len(redirecting.store.requests)
    with create_sync_client(chain=reader(peer_accounts)) as http:
        response = http.get(redirecting.blob_url)
    assert response.status_code == 200
    assert response.content == redirecting.blob
    assert_clean_reads(redirecting.store.requests[seen:], ["GET"])
