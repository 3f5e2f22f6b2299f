"""distribution over https with a certificate from a private CA and Basic auth (Harbor-like).

One for the whole session (the ``tls_registry`` fixture, a plugin of ``tests/conftest.py``): the
private CA cases of ``create_client``, its proxy tunnel (``CONNECT``) and its certificate errors.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from .peers.accounts import PeerAccounts
from .peers.images import OCIImage, PushedImage, push_image_http
from .peers.registry import Htpasswd, RegistryServer
from .peers.tls import PrivateCA, make_private_ca


@contextmanager
def tls_registry_with(
    workdir: Path, ca: PrivateCA, accounts: PeerAccounts, image: OCIImage
) -> Iterator[tuple[RegistryServer, PushedImage]]:
    """The registry, running, with ``image`` pushed as ``harbor/app`` by the writer."""
    with RegistryServer(
        workdir,
        auth=Htpasswd(accounts.users),
        tls=(ca.server_certificate, ca.server_key),
    ) as registry:
        with httpx.Client(
            base_url=registry.url,
            auth=accounts.writer,
            verify=ssl.create_default_context(cafile=str(ca.ca_certificate)),
            trust_env=False,
        ) as seeder:
            pushed = push_image_http(seeder, image, "harbor/app")
        yield registry, pushed


@pytest.fixture(scope="session")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    return make_private_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def tls_registry(
    tmp_path_factory: pytest.TempPathFactory,
    private_ca: PrivateCA,
    peer_accounts: PeerAccounts,
    oci_image: OCIImage,
) -> Iterator[tuple[RegistryServer, PushedImage]]:
    """distribution over https with a certificate from a private CA, Basic auth (Harbor-like)."""
    with tls_registry_with(
        tmp_path_factory.mktemp("tls-registry"), private_ca, peer_accounts, oci_image
    ) as running:
        yield running
