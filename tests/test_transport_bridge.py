"""The one httpx <-> httpx2 bridge, both ways, against a real loopback HTTP server.

``Httpx2Transport`` puts an ``httpx`` client on httpx2's pool; the AWS fence puts aiobotocore's
``httpx2`` client on a caller's ``httpx`` transport. Both go through
``asyncauth._http.bridge``: bodies stream across in both directions (a chunked upload
arrives whole, a gzip answer is decoded once), extensions such as the timeout cross over, and a
failure arrives as the *receiving* module's exception of the same name.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import httpx2
import pytest

from asyncauth._client.httpx2_transport import Httpx2Transport
from asyncauth._sources.sdk.aws import bridge_transport

from .peers.clouds import BlackHole, closed_port

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, every byte value


class _Echo(BaseHTTPRequestHandler):
    """``POST /echo`` answers the body it read (chunked or not); ``GET /gzip`` a gzip body."""

    protocol_version = "HTTP/1.1"

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
                if size == 0:
                    return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, body: bytes, **headers: str) -> None:
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self._body()
        self._reply(body, X_Chunked=self.headers.get("Transfer-Encoding", "no"))

    def do_GET(self) -> None:
        self._reply(gzip.compress(PAYLOAD), Content_Encoding="gzip")

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def _chunks() -> AsyncIterator[bytes]:
    for start in range(0, len(PAYLOAD), 65536):
        yield PAYLOAD[start : start + 65536]


# --- httpx client on httpx2's pool --------------------------------------------------------------


async def test_httpx_over_httpx2_streams_both_ways(echo: str) -> None:
    async with httpx.AsyncClient(transport=Httpx2Transport()) as client:
        response = await client.post(f"{echo}/echo", content=_chunks())
        assert response.headers["x-chunked"] == "chunked"
        assert response.content == PAYLOAD
        async with client.stream("GET", f"{echo}/gzip") as streamed:
            received = b"".join([chunk async for chunk in streamed.aiter_bytes()])
        assert received == PAYLOAD
        assert streamed.http_version == "HTTP/1.1"


async def test_httpx_over_httpx2_errors_are_httpx_errors() -> None:
    async with httpx.AsyncClient(transport=Httpx2Transport()) as client:
        with pytest.raises(httpx.ConnectError) as raised:
            await client.get(f"http://127.0.0.1:{closed_port()}/")
        assert raised.value.request.url.port is not None
        with BlackHole() as hole, pytest.raises(httpx.ReadTimeout):
            await client.get(hole.url, timeout=httpx.Timeout(5.0, read=0.3))


# --- httpx2 client (aiobotocore's) on a caller's httpx transport -------------------------------


class _Counting(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()


async def test_httpx2_over_httpx_streams_both_ways_and_leaves_the_transport_open(
    echo: str,
) -> None:
    transport = _Counting()
    async with httpx2.AsyncClient(transport=bridge_transport(transport, httpx2)) as client:
        response = await client.post(f"{echo}/echo", content=PAYLOAD)
        assert response.content == PAYLOAD
        assert response.headers["x-chunked"] == "no"
        response = await client.get(f"{echo}/gzip")
        assert response.content == PAYLOAD
        assert isinstance(response, httpx2.Response)
    assert not transport.closed  # the caller's transport: its owner closes it
    await transport.aclose()


async def test_httpx2_over_httpx_errors_are_httpx2_errors() -> None:
    async with httpx.AsyncHTTPTransport() as transport:
        bridged = bridge_transport(transport, httpx2)
        async with httpx2.AsyncClient(transport=bridged) as client:
            with pytest.raises(httpx2.ConnectError):
                await client.get(f"http://127.0.0.1:{closed_port()}/")
            with BlackHole() as hole, pytest.raises(httpx2.ReadTimeout):
                await client.get(hole.url, timeout=httpx2.Timeout(5.0, read=0.3))


def test_bridge_transport_is_the_callers_own_when_aiobotocore_uses_httpx() -> None:
    transport = httpx.AsyncHTTPTransport()
    borrowed = bridge_transport(transport, httpx)
    assert isinstance(borrowed, httpx.AsyncBaseTransport)
    assert borrowed.transport is transport


async def test_a_crossed_request_has_the_senders_headers_only_and_a_readable_body() -> None:
    """The receiving module adds no header of its own (its ``content=`` path would add
    ``Content-Length``/``Host`` and rebuild the headers): what arrives is what httpx prepared, and
    an in-memory body is readable as ``.content`` on the other side, as on the original."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=request.content)

    bridged = bridge_transport(httpx.MockTransport(handler), httpx2)
    async with httpx2.AsyncClient(transport=bridged) as client:
        sent = client.build_request("PUT", "http://registry.test/v2/a/blobs/uploads/x?digest=d")
        response = await client.send(sent)
        assert response.content == b""
        posted = await client.post("http://registry.test/echo", content=b"payload")
        assert posted.content == b"payload"
    assert [r.headers.raw for r in seen[:1]] == [sent.headers.raw]
    assert seen[0].headers["content-length"] == "0"  # the sender's, once
    assert seen[1].content == b"payload"
    assert [k for k, _ in seen[1].headers.raw].count(b"Content-Length") == 1
