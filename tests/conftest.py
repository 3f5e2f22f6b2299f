"""Every async test runs twice: under asyncio and under trio.

``anyio_mode = "auto"`` (pyproject.toml) hands every ``async def test_*`` to anyio's pytest
plugin, so no test can forget its marker; this fixture gives it both backends.
"""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# Real peers (registry, token issuer, images) as session fixtures.
pytest_plugins = ["tests.peers.fixtures"]
