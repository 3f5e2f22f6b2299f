"""Every async test runs twice: under asyncio and under trio.

``anyio_mode = "auto"`` (pyproject.toml) hands every ``async def test_*`` to anyio's pytest
plugin, so no test can forget its marker; this fixture gives it both backends.
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
