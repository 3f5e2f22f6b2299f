"""Developer tasks. ``nox -s tests`` is what CI and the README run.

Sessions: tests (whole suite, every async test under asyncio and trio), lint (ruff),
typecheck (mypy --strict), docs (mkdocs --strict), bench (benchmarks/).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

SYSTEM_PACKAGES = Path(__file__).parent / "system-packages.txt"


def system_tools(*uses: str) -> dict[str, str]:
    """Program -> Debian package, for the rows of system-packages.txt marked with ``uses``.

    The list is the one .ci/run installs from and the suite's ``require_tool`` checks against;
    tests/test_system_packages.py validates its format strictly, so this reader can be plain.
    """
    tools: dict[str, str] = {}
    for line in SYSTEM_PACKAGES.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#") and fields[2] in uses:
            tools[fields[0]] = fields[1]
    return tools


def ensure_system_tools(session: nox.Session, tools: dict[str, str]) -> None:
    """Install the Debian packages of missing tools (as root, or through sudo)."""
    missing = sorted({pkg for tool, pkg in tools.items() if shutil.which(tool) is None})
    if not missing:
        return
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            session.error(f"the tests need these Debian packages: {' '.join(missing)}")
        prefix = ["sudo"]
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run(*prefix, "apt-get", "update", "-qq", external=True, env=env)
    session.run(*prefix, "apt-get", "install", "-y", "-qq", *missing, external=True, env=env)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite; every async test runs under asyncio and under trio."""
    ensure_system_tools(session, system_tools("tests"))
    session.install("-e", ".[test]")
    # Property tests: a fixed seed and bounded counts (the "ci" profile in tests/conftest.py).
    env = {"ASYNCAUTH_HYPOTHESIS_PROFILE": "ci"}
    session.run("python", "-m", "pytest", *session.posargs, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]", "mypy")
    session.run("mypy", "asyncauth")


@nox.session
def docs(session: nox.Session) -> None:
    session.install("-e", ".", "mkdocs", "mkdocstrings[python]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


# What the benchmarks compare asyncauth with (bench session only, never the package's deps).
BENCH_PEERS = [
    "httpx-aiohttp",  # httpx on aiohttp's transport
    "aiohttp",  # the limit: raw aiohttp with pre-fetched tokens
    "oras",  # oras-py
    "aioregistry",
    "docker-registry-client-async",
    "matplotlib",  # the plot
]


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: medians and ratios measured in one run; results under benchmarks/results/.

    ``nox -s bench`` is the full run (under 10 minutes on 2 cores; it also rewrites the table in
    docs/benchmarks.md), ``nox -s bench -- --quick`` a smoke run (under 2 minutes).
    """
    ensure_system_tools(session, system_tools("tests", "bench"))
    session.install("-e", ".[test,all]", *BENCH_PEERS)
    session.run("python", "-m", "benchmarks", *session.posargs)
