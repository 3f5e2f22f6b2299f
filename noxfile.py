"""Developer tasks. ``nox -s tests`` is what CI and the README run.

Sessions: tests (whole suite, every async test under asyncio and trio), lint (ruff),
typecheck (mypy --strict), docs (mkdocs --strict), bench (benchmarks/).
"""

from __future__ import annotations

import os
import shutil

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

# Real peers the tests talk to, by the Debian package that brings them.
SYSTEM_TOOLS = {
    "docker-registry": "docker-registry",
    "skopeo": "skopeo",
    "docker-credential-pass": "golang-docker-credential-helpers",
    "docker-credential-ecr-login": "amazon-ecr-credential-helper",
    "pass": "pass",
    "gpg": "gnupg",
    "openssl": "openssl",  # moto's proxy mode (the ECR cross-check) shells out to it
}


def ensure_system_tools(session: nox.Session, tools: dict[str, str] = SYSTEM_TOOLS) -> None:
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
    ensure_system_tools(session)
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


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
    session.install("mkdocs")
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
BENCH_SYSTEM_TOOLS = {"ab": "apache2-utils", **SYSTEM_TOOLS}


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: medians and ratios measured in one run; results under benchmarks/results/.

    ``nox -s bench`` is the full run (under 10 minutes on 2 cores; it also rewrites the table in
    docs/benchmarks.md), ``nox -s bench -- --quick`` a smoke run (under 2 minutes).
    """
    ensure_system_tools(session, BENCH_SYSTEM_TOOLS)
    session.install("-e", ".[test,all]", *BENCH_PEERS)
    session.run("python", "-m", "benchmarks", *session.posargs)
