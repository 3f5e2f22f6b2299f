"""Run a test on every transport ``create_client()`` may pick, under each event loop it runs on.

``create_client()`` picks by two inputs: the running event loop and which packages are
installed (aiohttp's transport under asyncio only). :func:`force_transport` makes the faster
packages unimportable for one test (``sys.modules[name] = None`` is how Python spells "not
installed"), so the real selection code picks the transport under test; every test then checks
``client.transport_name`` to prove it did.
"""

from __future__ import annotations

import sys

import pytest

_FASTER = {"aiohttp": (), "httpx2": ("httpx_aiohttp",), "httpx": ("httpx_aiohttp", "httpx2")}

every_transport = pytest.mark.parametrize(
    ("anyio_backend", "transport"),
    [
        ("asyncio", "aiohttp"),
        ("asyncio", "httpx2"),
        ("asyncio", "httpx"),
        ("trio", "httpx2"),
        ("trio", "httpx"),
    ],
)
"""Parametrises ``anyio_backend`` (overriding conftest's) and ``transport`` together: aiohttp's
transport cannot run under trio, so that pair is not a case rather than a skipped one."""

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def force_transport(monkeypatch: pytest.MonkeyPatch, transport: str) -> None:
    """Make the transports faster than ``transport`` look uninstalled for this test."""
    for module in _FASTER[transport]:
        monkeypatch.setitem(sys.modules, module, None)


def clear_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variable in either spelling (urllib reads both, lower case first)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The test's environment, without any proxy variable it did not set itself."""
    clear_proxy_environment(monkeypatch)
    return monkeypatch
