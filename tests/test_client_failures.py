"""Connection failures keep their kind and name the host; no http fallback hides a bad certificate.

Against real servers on loopback: a port nobody listens on, a name that cannot resolve
(``.invalid`` is reserved for that), and distribution over https with a certificate from a
private CA. Each case runs on every transport create_client may pick, under asyncio and trio.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from asyncauth import Resource, create_client, create_sync_client
from asyncauth._client import registry_base_url

from ._transport_choice import every_transport, force_transport
from .peers._tools import free_port
from .peers.accounts import PeerAccounts
from .peers.images import PushedImage
from .peers.registry import RegistryServer
from .peers.tls import PrivateCA

UNRESOLVABLE = "registry.invalid:5000"


def assert_connect_error(error: BaseException, where: str) -> None:
    """httpx's kind for a failure to connect, never a timeout, and the message names ``where``."""
    assert type(error) is httpx.ConnectError, repr(error)
    assert str(error).startswith(f"{where}: "), str(error)


# --- error kinds ----------------------------------------------------------------------------


@every_transport
async def test_refused_unresolvable_and_untrusted_are_connect_errors_naming_the_host(
    transport: str, environ: pytest.MonkeyPatch, tls_registry: tuple[RegistryServer, PushedImage]
) -> None:
    force_transport(environ, transport)
    registry, _ = tls_registry
    closed = free_port()
    async with create_client(timeout=20) as http:
        assert http.transport_name == transport
        with pytest.raises(httpx.ConnectError) as refused:
            await http.get(f"http://127.0.0.1:{closed}/v2/")
        with pytest.raises(httpx.ConnectError) as unresolvable:
            await http.get(f"https://{UNRESOLVABLE}/v2/")
        with pytest.raises(httpx.ConnectError) as untrusted:
            await http.get(f"{registry.url}/v2/")
        with pytest.raises(httpx.ConnectError) as default_port:
            await http.get("https://registry.invalid/v2/")
    assert_connect_error(refused.value, f"127.0.0.1:{closed}")
    assert_connect_error(unresolvable.value, UNRESOLVABLE)
    assert_connect_error(untrusted.value, registry.host)
    assert "certificate verify failed" in str(untrusted.value)
    assert_connect_error(default_port.value, "registry.invalid:443")


def test_sync_client_names_the_host_too(tls_registry: tuple[RegistryServer, PushedImage]) -> None:
    registry, _ = tls_registry
    closed = free_port()
    with create_sync_client(timeout=20, trust_env=False) as http:
        with pytest.raises(httpx.ConnectError) as refused:
            http.get(f"http://127.0.0.1:{closed}/v2/")
        with pytest.raises(httpx.ConnectError) as untrusted:
            http.get(f"{registry.url}/v2/")
    assert_connect_error(refused.value, f"127.0.0.1:{closed}")
    assert_connect_error(untrusted.value, registry.host)
    assert "certificate verify failed" in str(untrusted.value)


NOT_TLS = "TLS handshake failed"
"""How a connect error begins its reason when the server's first answer is not TLS."""


def assert_not_tls(error: BaseException, where: str) -> None:
    """A ConnectError naming ``where`` that says the TLS handshake failed, with OpenSSL's own
    words and what they mean (trio's transports used to say only ``ConnectError``)."""
    assert_connect_error(error, where)
    text = str(error)
    assert text.startswith(f"{where}: {NOT_TLS}: "), text
    assert "WRONG_VERSION_NUMBER" in text, text
    assert "the server's answer is not TLS (plain HTTP on this port?)" in text, text


@every_transport
async def test_https_to_a_plain_http_registry_says_the_handshake_failed_and_why(
    transport: str, environ: pytest.MonkeyPatch, htpasswd_registry: RegistryServer
) -> None:
    """A real distribution registry serving plain http, asked over https: every transport
    names the host and gives the TLS failure (under trio it was ``127.0.0.1:P: ConnectError``)."""
    force_transport(environ, transport)
    assert htpasswd_registry.url.startswith("http://")
    async with create_client(timeout=20) as http:
        assert http.transport_name == transport
        with pytest.raises(httpx.ConnectError) as caught:
            await http.get(f"https://{htpasswd_registry.host}/v2/")
    assert_not_tls(caught.value, htpasswd_registry.host)


def test_https_to_a_plain_http_registry_from_the_sync_client(
    htpasswd_registry: RegistryServer,
) -> None:
    with (
        create_sync_client(timeout=20, trust_env=False) as http,
        pytest.raises(httpx.ConnectError) as caught,
    ):
        http.get(f"https://{htpasswd_registry.host}/v2/")
    assert_not_tls(caught.value, htpasswd_registry.host)


class HostileServer:
    """A loopback TCP server that misbehaves in one way per port (no real server does this on
    purpose, so a stand-in): it cuts the body short, hangs up, answers garbage, or stays silent.
    """

    ANSWERS: ClassVar[dict[str, bytes | None]] = {
        "truncated body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
        "hang-up": b"",
        "not http": b"NOT HTTP AT ALL\r\n\r\n",
        "silence": None,
    }

    def __init__(self) -> None:
        self._sockets: list[socket.socket] = []
        self._held: list[socket.socket] = []
        self.ports: dict[str, int] = {}

    def __enter__(self) -> HostileServer:
        for behaviour, answer in self.ANSWERS.items():
            listener = socket.create_server(("127.0.0.1", 0))
            self._sockets.append(listener)
            self.ports[behaviour] = listener.getsockname()[1]
            threading.Thread(target=self._serve, args=(listener, answer), daemon=True).start()
        return self

    def _serve(self, listener: socket.socket, answer: bytes | None) -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # closed
            connection.recv(65536)
            if answer is None:
                self._held.append(connection)  # never answered, closed at exit
                continue
            connection.sendall(answer)
            connection.close()

    def __exit__(self, *exc_info: object) -> None:
        for each in self._sockets + self._held:
            each.close()


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


@every_transport
async def test_broken_responses_keep_httpx_kinds(
    transport: str, environ: pytest.MonkeyPatch, hostile: HostileServer
) -> None:
    """A body cut short, a hang-up and garbage are protocol errors, silence a read timeout, on
    every transport (aiohttp's used to say ConnectTimeout or a bare TransportError)."""
    force_transport(environ, transport)
    expected: dict[str, type[httpx.TransportError]] = {
        "truncated body": httpx.RemoteProtocolError,
        "hang-up": httpx.RemoteProtocolError,
        "not http": httpx.RemoteProtocolError,
        "silence": httpx.ReadTimeout,
    }
    async with create_client(timeout=1.0) as http:
        assert http.transport_name == transport
        for behaviour, kind in expected.items():
            with pytest.raises(httpx.TransportError) as caught:
                await http.get(f"http://127.0.0.1:{hostile.ports[behaviour]}/v2/")
            assert type(caught.value) is kind, (behaviour, caught.value)


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listener never accepts and whose queue is full: Linux drops further SYNs,
    so connecting to it times out (a black-holed host, on loopback)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    queued = []
    for _ in range(3):
        waiting = socket.socket()
        waiting.setblocking(False)
        waiting.connect_ex(("127.0.0.1", port))
        queued.append(waiting)
    yield port
    for each in [*queued, listener]:
        each.close()


@every_transport
async def test_a_connect_timeout_is_a_connect_timeout_naming_the_host(
    transport: str, environ: pytest.MonkeyPatch, full_backlog: int
) -> None:
    force_transport(environ, transport)
    async with create_client(timeout=0.5) as http:
        assert http.transport_name == transport
        with pytest.raises(httpx.ConnectTimeout) as caught:
            await http.get(f"http://127.0.0.1:{full_backlog}/v2/")
    assert str(caught.value) == f"127.0.0.1:{full_backlog}: timed out connecting"


# --- registry_base_url: the http fallback ---------------------------------------------------


@every_transport
async def test_base_url_of_a_tls_registry(
    transport: str,
    environ: pytest.MonkeyPatch,
    tls_registry: tuple[RegistryServer, PushedImage],
    private_ca: PrivateCA,
) -> None:
    force_transport(environ, transport)
    registry, image = tls_registry
    resource = Resource.parse(image.reference)
    async with create_client(ca_cert_paths=[private_ca.ca_certificate]) as http:
        assert http.transport_name == transport
        assert await registry_base_url(http, resource) == registry.url
    async with create_client(insecure_registries=[registry.host]) as http:
        base = await registry_base_url(http, resource, insecure_registries=[registry.host])
        assert base == registry.url


@every_transport
async def test_base_url_does_not_fall_back_past_a_certificate_error(
    transport: str, environ: pytest.MonkeyPatch, tls_registry: tuple[RegistryServer, PushedImage]
) -> None:
    """The registry speaks TLS; over http it would answer 400, hiding why https failed."""
    force_transport(environ, transport)
    registry, image = tls_registry
    async with create_client() as http:
        assert http.transport_name == transport
        with pytest.raises(httpx.ConnectError) as caught:
            await registry_base_url(http, Resource.parse(image.reference))
    assert_connect_error(caught.value, registry.host)
    assert "certificate verify failed" in str(caught.value)


@every_transport
async def test_base_url_falls_back_to_http_for_a_plain_loopback_registry(
    transport: str, environ: pytest.MonkeyPatch, htpasswd_registry: RegistryServer
) -> None:
    force_transport(environ, transport)
    async with create_client() as http:
        assert http.transport_name == transport
        base = await registry_base_url(http, Resource.parse(f"{htpasswd_registry.host}/peers/app"))
    assert base == htpasswd_registry.url


@every_transport
async def test_base_url_reports_the_https_error_when_http_fails_too(
    transport: str, environ: pytest.MonkeyPatch
) -> None:
    force_transport(environ, transport)
    closed = free_port()
    async with create_client() as http:
        assert http.transport_name == transport
        with pytest.raises(httpx.ConnectError) as caught:
            await registry_base_url(http, Resource.parse(f"127.0.0.1:{closed}/peers/app"))
    assert_connect_error(caught.value, f"127.0.0.1:{closed}")
    assert caught.value.request.url.scheme == "https"


# --- the commands -----------------------------------------------------------------------------


def run(args: list[str], registry: RegistryServer, accounts: PeerAccounts, home: Path) -> str:
    """The command's stderr; it must exit 1 (a failure, not a usage error)."""
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "IMGPKG_ENABLE_IAAS_AUTH": "false",
        "IMGPKG_REGISTRY_HOSTNAME_0": registry.host,
        "IMGPKG_REGISTRY_USERNAME_0": accounts.reader[0],
        "IMGPKG_REGISTRY_PASSWORD_0": accounts.reader[1],
    }
    done = subprocess.run(
        [sys.executable, "-m", "asyncauth", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    return done.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_commands_report_the_untrusted_certificate(
    tmp_path: Path,
    backend: str,
    tls_registry: tuple[RegistryServer, PushedImage],
    peer_accounts: PeerAccounts,
) -> None:
    registry, image = tls_registry
    for command in (["manifest", image.reference], ["token", f"{registry.host}/harbor/app"]):
        stderr = run(["--backend", backend, *command], registry, peer_accounts, tmp_path)
        assert stderr.startswith(f"asyncauth: ConnectError: {registry.host}: "), stderr
        assert "certificate verify failed" in stderr
        assert "400" not in stderr
        assert "needs no authorisation" not in stderr


class ForgetfulServer:
    """Keeps a connection open after answering (no ``Connection: close``), then hangs up on the
    next request without a word: what tinyproxy and some load balancers do to kept-alive
    connections."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = 0
        self.methods: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(connection,), daemon=True).start()

    def _one(self, connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)  # the first request on this connection is answered...
            self.requests += 1
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            data = connection.recv(65536)  # ...the next one is read and dropped
            if data:
                self.methods.append(data.split(b" ", 1)[0].decode())

    def close(self) -> None:
        self.listener.close()


@every_transport
async def test_a_kept_alive_connection_the_peer_dropped_is_retried_once_for_a_get(
    transport: str, environ: pytest.MonkeyPatch
) -> None:
    force_transport(environ, transport)
    server = ForgetfulServer()
    try:
        async with create_client(timeout=5.0) as http:
            assert http.transport_name == transport
            for _ in range(3):
                assert (await http.get(f"http://127.0.0.1:{server.port}/v2/")).text == "ok"
            # A POST is not replayed on a fresh connection: its failure is the caller's.
            if transport != "aiohttp":  # aiohttp retries on its own, and only idempotent ones
                with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                    await http.post(f"http://127.0.0.1:{server.port}/v2/", content=b"x")
    finally:
        server.close()
    assert server.requests >= 3
