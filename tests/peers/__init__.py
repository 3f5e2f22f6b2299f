"""Real test peers: a CNCF distribution registry, a strict token issuer, test images.

Why: ``asyncauth`` is only as correct as the registries and issuers it talks to are strict, so
its tests run against the real Debian ``docker-registry`` (distribution 2.8), a token issuer that
implements what auth.docker.io-style issuers do, and images pushed with the real ``skopeo``.
Everything binds 127.0.0.1; every process is killed on exit.

Import with ``from .peers import ...`` from a test module (``tests`` is a package); the fixtures
are a plugin: ``pytest_plugins = ["tests.peers.fixtures"]`` in the module (or the root conftest).
"""

from __future__ import annotations

from ._tools import PeerError, PeerUnavailableError
from .accounts import SEEDED_REPOSITORY_COUNT, PeerAccounts, default_policy
from .images import (
    OCI_MANIFEST,
    OCIImage,
    PushedImage,
    bearer,
    build_oci_layout,
    push_image_http,
    seed_repositories,
    skopeo_push,
    write_auth_file,
)
from .registry import Htpasswd, RegistryServer, TokenAuth, write_htpasswd
from .token_issuer import (
    FULL_ACCESS,
    PULL_ONLY,
    IssuerPolicy,
    Scope,
    TokenIssuer,
    TokenRequest,
    libtrust_key_id,
    new_signing_key,
)

__all__ = [
    "FULL_ACCESS",
    "OCI_MANIFEST",
    "PULL_ONLY",
    "SEEDED_REPOSITORY_COUNT",
    "Htpasswd",
    "IssuerPolicy",
    "OCIImage",
    "PeerAccounts",
    "PeerError",
    "PeerUnavailableError",
    "PushedImage",
    "RegistryServer",
    "Scope",
    "TokenAuth",
    "TokenIssuer",
    "TokenRequest",
    "bearer",
    "build_oci_layout",
    "default_policy",
    "libtrust_key_id",
    "new_signing_key",
    "push_image_http",
    "seed_repositories",
    "skopeo_push",
    "write_auth_file",
    "write_htpasswd",
]
