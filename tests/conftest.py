"""Every async test runs twice: under asyncio and under trio.

``anyio_mode = "auto"`` (pyproject.toml) hands every ``async def test_*`` to anyio's pytest
plugin, so no test can forget its marker; :func:`pytest_generate_tests` gives it both backends
(and a test that takes ``driver``, every driver of the handshake each backend can run).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# These machines are shared and noisy: a property test is about inputs, not speed, so neither
# a slow draw nor a slow example may fail it.
settings.register_profile("asyncauth", deadline=None, suppress_health_check=[HealthCheck.too_slow])
# CI (noxfile.py's tests session sets ASYNCAUTH_HYPOTHESIS_PROFILE=ci): the same examples on
# every run, so a red build is the code's doing and can be replayed; a bounded count for tests
# without their own max_examples. Time per example is bounded by tests/_budget.py, not deadline.
settings.register_profile(
    "ci",
    parent=settings.get_profile("asyncauth"),
    derandomize=True,
    max_examples=100,
    database=None,
    print_blob=True,
)
settings.load_profile(os.environ.get("ASYNCAUTH_HYPOTHESIS_PROFILE", "asyncauth"))


BACKENDS = ("asyncio", "trio")
DRIVERS = {
    "asyncio": ("httpx", "httpx-sync", "httpx2", "aiohttp"),
    "trio": ("httpx", "httpx-sync", "httpx2"),
}
"""The handshake's drivers each backend can run (tests/_drivers.py): aiohttp is asyncio-only, so
a test that takes ``driver`` has no trio/aiohttp case at all (absent, not skipped). A test that
takes ``task_driver`` runs the drivers whose requests are tasks (not threads): what cancelling a
request means needs one."""


@pytest.fixture
def anyio_backend() -> str:
    """Replaced by :func:`pytest_generate_tests`' parameters for every async test."""
    return "asyncio"


def _parametrized_by_mark(metafunc: pytest.Metafunc) -> bool:
    """The test chose its backends itself (``@pytest.mark.parametrize("anyio_backend", ...)``)."""
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else names
        if "anyio_backend" in names:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Backends (and drivers) for each async test; a module that can run under some backends
    only (aiohttp: asyncio) says so with ``ANYIO_BACKENDS``, and has no case for the others."""
    if "anyio_backend" not in metafunc.fixturenames or _parametrized_by_mark(metafunc):
        return
    backends = getattr(metafunc.module, "ANYIO_BACKENDS", BACKENDS)
    for name, tasks_only in (("driver", False), ("task_driver", True)):
        if name in metafunc.fixturenames:
            pairs = [
                (backend, driver)
                for backend in backends
                for driver in DRIVERS[backend]
                if not (tasks_only and driver == "httpx-sync")
            ]
            metafunc.parametrize(("anyio_backend", name), pairs)
            return
    metafunc.parametrize("anyio_backend", backends)


# Real peers (registry, token issuer, images, the TLS registry) as session fixtures; `environ`
# without proxy variables; the secret scan over every test (tests/_secret_scan.py); pytester,
# to prove that scan.
pytest_plugins = [
    "tests.peers.fixtures",
    "tests.peers.cloud_fixtures",
    "tests._tls_registry",
    "tests._transport_choice",
    "tests._secret_scan",
    "pytester",
]
