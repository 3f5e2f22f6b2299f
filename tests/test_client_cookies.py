"""Cookies on create_client()'s clients: kept and sent back as httpx does, on every transport.

The clients keep their cookies in a jar that skips responses setting none (a CPU saving: see
``asyncauth._client._ClientCookies``); these tests prove that nothing else changes, against a real
loopback HTTP server that sets a cookie on one path and echoes the ``Cookie`` header on another.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from asyncauth import Chain, create_client, create_sync_client

from ._transport_choice import clear_proxy_environment, every_transport, force_transport


class _Cookies(BaseHTTPRequestHandler):
    """``/set`` sets ``session=abc``, ``/set2`` sets it with ``Set-Cookie2`` only (RFC 2965,
    which the standard library's default policy ignores), ``/echo`` answers the ``Cookie``
    header it got, anything else answers plainly."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b""
        self.send_response(200)
        if self.path == "/set":
            self.send_header("Set-Cookie", "session=abc; Path=/")
        elif self.path == "/set2":
            self.send_header("Set-Cookie2", 'other=1; Version="1"; Path="/"')
        elif self.path == "/echo":
            body = (self.headers.get("Cookie") or "").encode()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def cookie_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Cookies)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _cookies(text: str) -> set[str]:
    return {part.strip() for part in text.split(";") if part.strip()}


@every_transport
async def test_cookies_are_kept_and_sent_back_on_every_transport(
    transport: str, monkeypatch: pytest.MonkeyPatch, cookie_server: str
) -> None:
    clear_proxy_environment(monkeypatch)
    force_transport(monkeypatch, transport)
    async with create_client(chain=Chain([]), cookies={"given": "1"}) as http:
        assert http.transport_name == transport
        assert (await http.get(f"{cookie_server}/echo")).text == "given=1"
        await http.get(f"{cookie_server}/plain")
        await http.get(f"{cookie_server}/set")
        assert http.cookies["session"] == "abc"
        await http.get(f"{cookie_server}/plain")  # a response without cookies keeps them
        assert _cookies((await http.get(f"{cookie_server}/echo")).text) == {
            "given=1",
            "session=abc",
        }
        http.cookies = {"replaced": "2"}
        assert (await http.get(f"{cookie_server}/echo")).text == "replaced=2"


def test_sync_client_keeps_cookies_as_httpx_does(
    monkeypatch: pytest.MonkeyPatch, cookie_server: str
) -> None:
    clear_proxy_environment(monkeypatch)
    jar = httpx.Cookies({"given": "1"})
    with create_sync_client(chain=Chain([]), cookies=jar) as http, httpx.Client() as plain:
        for client in (http, plain):
            client.cookies = jar
            client.get(f"{cookie_server}/set")
            client.get(f"{cookie_server}/set2")
            client.get(f"{cookie_server}/plain")
        assert dict(http.cookies) == dict(plain.cookies) == {"given": "1", "session": "abc"}
        assert _cookies(http.get(f"{cookie_server}/echo").text) == {"given=1", "session=abc"}
