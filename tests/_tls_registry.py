"""distribution over https with a certificate from a private CA and Basic auth (Harbor-like).

Shared by the test modules that need it (each starts its own, module-scoped): the private CA
cases of ``create_client``, its proxy tunnel (``CONNECT``) and its certificate errors.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from .peers.accounts import PeerAccounts
from .peers.images import OCIImage, PushedImage, push_image_http
from .peers.registry import Htpasswd, RegistryServer
from .peers.tls import PrivateCA


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
