"""Pytest fixtures over the cloud stand-ins: ``pytest_plugins = ["tests.peers.cloud_fixtures"]``.

Why a module of its own: a plugin module must not be imported before pytest registers it, while
the test modules import the stand-ins themselves from :mod:`tests.peers.clouds`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._tools import PeerError, PeerUnavailableError, free_port, require_tool, stop_process
from .clouds import MotoProxy, isolate_cloud_env
from .workload_identity import MotoIAM, start_moto_iam

__all__ = ["cloud_env", "moto_iam", "moto_proxy", "moto_server"]


@pytest.fixture
def cloud_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """:func:`isolate_cloud_env` as a fixture: the clean ``environ`` for the resolvers."""
    return isolate_cloud_env(monkeypatch, tmp_path)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's server on loopback (ECR ``GetAuthorizationToken``); yields ``127.0.0.1:port``."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - a missing test dependency must fail, loudly
        raise PeerUnavailableError("moto's server is needed: pip install 'moto[server]'") from exc
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_iam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoIAM]:
    """moto in a process of its own, recording every request, with IAM enforcement on demand
    (both switches are process-wide: the shared :func:`moto_server` must not see them)."""
    yield from start_moto_iam(tmp_path_factory.mktemp("moto-iam"))


@pytest.fixture(scope="session")
def moto_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoProxy]:
    """moto in proxy mode: an HTTPS-intercepting proxy that answers AWS APIs itself.

    Clients reach it with ``HTTPS_PROXY`` and trust its CA (``ca_file``); it serves AWS hosts
    without any traffic leaving the machine. This is how a program that cannot be given an
    endpoint URL (``docker-credential-ecr-login``) is pointed at moto.
    """
    require_tool("openssl")
    proxy = shutil.which("moto_proxy", path=os.path.dirname(sys.executable))
    if proxy is None:
        raise PeerUnavailableError("moto_proxy is needed: pip install 'moto[server]'")
    import moto.moto_proxy

    ca_file = str(Path(moto.moto_proxy.__file__).parent / "ca.crt")
    port = free_port()
    log = tmp_path_factory.mktemp("moto-proxy") / "moto_proxy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [proxy, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise PeerError(
                        f"moto_proxy did not start: {log.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.1)
        yield MotoProxy(f"http://127.0.0.1:{port}", ca_file)
    finally:
        stop_process(process)
