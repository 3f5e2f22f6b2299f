"""Pytest fixtures over the real peers; load with ``pytest_plugins = ["tests.peers.fixtures"]``.

Why session scope: a registry starts in ~0.1 s and a skopeo push takes ~0.1 s, but a suite with
hundreds of handshake tests under two event loops would still pay that thousands of times. So
the processes, the seeded images and the issuer are shared by the whole session, and the
function-scoped ``token_issuer`` fixture gives each test a clean view: counters reset and the
default policy restored before *and* after the test, so a test that changes the policy cannot
leak it into the next one.

Tests that need a registry of their own (different configuration, to stop it, to corrupt it)
use ``RegistryServer``/``TokenIssuer`` directly with ``tmp_path``.

When a test fails, the tail of the log of every registry it used and the issuer's recent
requests are attached to the report (sections "registry log" / "token issuer requests").
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from .accounts import SEEDED_REPOSITORY_COUNT, PeerAccounts, default_policy
from .images import OCIImage, PushedImage, bearer, build_oci_layout, seed_repositories, skopeo_push
from .registry import Htpasswd, RegistryServer
from .token_issuer import Scope, TokenIssuer

__all__ = [
    "htpasswd_registry",
    "htpasswd_registry_image",
    "oci_image",
    "open_registry",
    "open_registry_image",
    "peer_accounts",
    "seeded_repositories",
    "session_token_issuer",
    "token_issuer",
    "token_registry",
    "token_registry_image",
]


@pytest.fixture(scope="session")
def peer_accounts() -> PeerAccounts:
    """The accounts of the session peers."""
    return PeerAccounts.generate()


@pytest.fixture(scope="session")
def _peers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("peers")


@pytest.fixture(scope="session")
def session_token_issuer(_peers_dir: Path, peer_accounts: PeerAccounts) -> Iterator[TokenIssuer]:
    """The running issuer shared by the session. Prefer ``token_issuer``, which resets it."""
    with TokenIssuer(_peers_dir / "issuer", policy=default_policy(peer_accounts)) as issuer:
        yield issuer


@pytest.fixture
def token_issuer(
    session_token_issuer: TokenIssuer, peer_accounts: PeerAccounts
) -> Iterator[TokenIssuer]:
    """The session issuer with counters reset and the default policy, restored after the test.

    Change the policy with ``token_issuer.policy = dataclasses.replace(token_issuer.policy, ...)``.
    """
    session_token_issuer.policy = default_policy(peer_accounts)
    session_token_issuer.reset()
    yield session_token_issuer
    session_token_issuer.policy = default_policy(peer_accounts)
    session_token_issuer.reset()


@pytest.fixture(scope="session")
def token_registry(_peers_dir: Path, session_token_issuer: TokenIssuer) -> Iterator[RegistryServer]:
    """distribution in token mode, trusting ``session_token_issuer``."""
    with RegistryServer(
        _peers_dir / "registry-token", auth=session_token_issuer.registry_auth()
    ) as registry:
        yield registry


@pytest.fixture(scope="session")
def htpasswd_registry(_peers_dir: Path, peer_accounts: PeerAccounts) -> Iterator[RegistryServer]:
    """distribution with Basic auth for ``peer_accounts.writer`` and ``.reader``."""
    with RegistryServer(
        _peers_dir / "registry-htpasswd", auth=Htpasswd(peer_accounts.users)
    ) as registry:
        yield registry


@pytest.fixture(scope="session")
def open_registry(_peers_dir: Path) -> Iterator[RegistryServer]:
    """distribution without auth (anyone may pull and push)."""
    with RegistryServer(_peers_dir / "registry-open") as registry:
        yield registry


@pytest.fixture(scope="session")
def oci_image(_peers_dir: Path) -> OCIImage:
    """The test image as an OCI layout on disk, tag ``v1``."""
    return build_oci_layout(_peers_dir / "oci-layout", tag="v1")


@pytest.fixture(scope="session")
def token_registry_image(
    token_registry: RegistryServer,
    session_token_issuer: TokenIssuer,
    oci_image: OCIImage,
    peer_accounts: PeerAccounts,
) -> PushedImage:
    """``peers/app:v1`` in ``token_registry``, pushed by skopeo as the writer (the token GET
    with Basic it performs is the first proof the issuer works). Issuer counters are reset."""
    pushed = skopeo_push(oci_image, token_registry.host, "peers/app", creds=peer_accounts.writer)
    session_token_issuer.reset()
    return pushed


@pytest.fixture(scope="session")
def htpasswd_registry_image(
    htpasswd_registry: RegistryServer, oci_image: OCIImage, peer_accounts: PeerAccounts
) -> PushedImage:
    """``peers/app:v1`` in ``htpasswd_registry``, pushed by skopeo with Basic credentials."""
    return skopeo_push(oci_image, htpasswd_registry.host, "peers/app", creds=peer_accounts.writer)


@pytest.fixture(scope="session")
def open_registry_image(open_registry: RegistryServer, oci_image: OCIImage) -> PushedImage:
    """``peers/app:v1`` in ``open_registry``, pushed by skopeo anonymously."""
    return skopeo_push(oci_image, open_registry.host, "peers/app")


@pytest.fixture(scope="session")
def seeded_repositories(
    token_registry: RegistryServer, session_token_issuer: TokenIssuer, oci_image: OCIImage
) -> list[PushedImage]:
    """``SEEDED_REPOSITORY_COUNT`` repositories ``many/repo-00`` … in ``token_registry``, each
    holding ``oci_image`` as ``v1``; pushed over httpx with minted tokens, so the issuer's
    counters are untouched."""

    def headers(repository: str) -> dict[str, str]:
        return bearer(
            session_token_issuer.mint("seeder", [Scope.repository(repository, "pull", "push")])
        )

    names = [f"many/repo-{i:02d}" for i in range(SEEDED_REPOSITORY_COUNT)]
    return seed_repositories(token_registry.url, oci_image, names, headers=headers)


# -- failure reports ------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the logs of the peers a failing test used; passing tests stay quiet."""
    report = yield
    if report.failed and isinstance(item, pytest.Function):
        seen: set[int] = set()
        for value in list(item.funcargs.values()):
            if id(value) in seen:
                continue
            seen.add(id(value))
            if isinstance(value, RegistryServer):
                report.sections.append(
                    (f"registry log {value!r} (tail)", value.log_tail(30) or "(empty)")
                )
            elif isinstance(value, TokenIssuer):
                errors = "\n".join(value.errors[-3:])
                text = value.summary() + (f"\nissuer errors:\n{errors}" if errors else "")
                report.sections.append((f"token issuer requests {value!r}", text))
    return report
