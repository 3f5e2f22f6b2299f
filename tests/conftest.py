"""Every async test runs twice: under asyncio and under trio.

``anyio_mode = "auto"`` (pyproject.toml) hands every ``async def test_*`` to anyio's pytest
plugin, so no test can forget its marker; this fixture gives it both backends.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

# These machines are shared and noisy: a property test is about inputs, not speed, so neither
# a slow draw nor a slow example may fail it.
settings.register_profile("asyncauth", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("asyncauth")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# Real peers (registry, token issuer, images) as session fixtures; the secret scan over every
# test (tests/_secret_scan.py); pytester, to prove that scan.
pytest_plugins = [
    "tests.peers.fixtures",
    "tests.peers.cloud_fixtures",
    "tests._secret_scan",
    "pytester",
]
