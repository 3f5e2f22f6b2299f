"""httpx-aiohttp's transport, with httpx's exception kinds and replayable request bodies.

httpx-aiohttp 0.2 maps aiohttp's exceptions through a table in which the first, widest match
wins, so a refused connection, a DNS failure and an untrusted certificate all reach the caller
as ``httpx.ConnectTimeout`` — code that retries timeouts retries a certificate error forever,
and nobody can tell which host failed. It also hands aiohttp the request's stream whenever the
request's bytes were not read into it, which is the case for every request httpx builds to
follow a redirect: aiohttp then sends the redirected ``GET`` with ``Transfer-Encoding: chunked``
and an empty body, which object stores that serve blob downloads may refuse.

:class:`AiohttpTransport` keeps httpx-aiohttp's pool and request handling and fixes both at the
edges: a body httpx holds in memory is read before the request is handed over, and each aiohttp
exception becomes the httpx exception httpx's own transport raises for the same failure.

Import it only where httpx-aiohttp is installed (``pip install 'asyncauth[fast]'``).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import aiohttp
import httpx
import httpx_aiohttp


def _reason(error: aiohttp.ClientConnectorError) -> str:
    """The failure without aiohttp's "Cannot connect to host ..." wrapper (callers add the host)."""
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return str(error.certificate_error)
    return str(error.os_error) or type(error.os_error).__name__


def httpx_error(error: BaseException, request: httpx.Request) -> httpx.TransportError:
    """The httpx exception for aiohttp's ``error`` (an ``aiohttp.ClientError`` or timeout).

    Ordered from the narrowest class to the widest: aiohttp's hierarchy nests connector errors
    (refused, DNS, TLS, proxy) inside connection errors, and timeouts inside those.
    """
    mapped: httpx.TransportError
    if isinstance(error, aiohttp.ClientConnectorError):
        mapped = httpx.ConnectError(_reason(error), request=request)
    elif isinstance(error, aiohttp.ClientHttpProxyError):
        answer = f"the proxy answered {error.status} {error.message}"
        mapped = httpx.ProxyError(answer, request=request)
    elif isinstance(error, aiohttp.ClientResponseError):  # a status line or header unparsed
        mapped = httpx.RemoteProtocolError(error.message, request=request)
    elif isinstance(error, aiohttp.ConnectionTimeoutError):
        mapped = httpx.ConnectTimeout("timed out connecting", request=request)
    elif isinstance(error, aiohttp.ServerTimeoutError):
        mapped = httpx.ReadTimeout("timed out reading the response", request=request)
    elif isinstance(error, aiohttp.ServerDisconnectedError):
        mapped = httpx.RemoteProtocolError(
            "Server disconnected without sending a response.", request=request
        )
    elif isinstance(error, aiohttp.ClientPayloadError):
        mapped = httpx.RemoteProtocolError(str(error), request=request)
    elif isinstance(error, aiohttp.ServerFingerprintMismatch):
        mapped = httpx.ConnectError(str(error), request=request)
    elif isinstance(error, aiohttp.ClientConnectionError):
        mapped = httpx.ReadError(str(error) or type(error).__name__, request=request)
    elif isinstance(error, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        mapped = httpx.UnsupportedProtocol(str(error), request=request)
    elif isinstance(error, aiohttp.ClientError):
        mapped = httpx.TransportError(str(error) or type(error).__name__, request=request)
    else:  # TimeoutError (aiohttp's overall timeout)
        mapped = httpx.TimeoutException(str(error) or "timed out", request=request)
    return mapped


class _MappedStream(httpx.AsyncByteStream):
    """The response body, with aiohttp's read errors as httpx's (a server hanging up mid-body is
    a protocol error, not a connect timeout)."""

    CHUNK_SIZE = 64 * 1024

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(self.CHUNK_SIZE):
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise httpx_error(exc, self._request) from exc

    async def aclose(self) -> None:
        await self._response.__aexit__(None, None, None)


def _basic(auth: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")


class AiohttpTransport(httpx_aiohttp.AiohttpTransport):
    """httpx-aiohttp's transport (same arguments and pool), with httpx's exception kinds.

    The request itself is sent here rather than by the parent class, which would also send
    proxy credentials through aiohttp's deprecated ``BasicAuth``: they go as a
    ``Proxy-Authorization`` header, on the request for an http URL and on the ``CONNECT``
    for an https one.
    """

    retries_dropped_connections = True
    """aiohttp sends an idempotent request once more when a kept-alive connection was dropped,
    so a :class:`~asyncauth._client.routes.TransportRoute` must not do it a second time."""

    def _headers(self, request: httpx.Request) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """The request's headers and, for a proxy, the ``CONNECT``'s."""
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.lower() != b"transfer-encoding"  # aiohttp frames the body itself
        ]
        proxy_headers: dict[str, str] = {}
        if self.proxy is not None:
            proxy_headers.update(self.proxy.headers)
            if self.proxy.auth is not None:
                if request.url.scheme == "https":
                    proxy_headers["Proxy-Authorization"] = _basic(self.proxy.auth)
                else:
                    headers.append(("Proxy-Authorization", _basic(self.proxy.auth)))
        return headers, proxy_headers

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        headers, proxy_headers = self._headers(request)
        data: bytes | httpx.AsyncByteStream | None
        if isinstance(request.stream, httpx.ByteStream):
            # A redirect's request shares its predecessor's stream without having read it:
            # send its bytes (none for a GET), not an empty chunked body.
            data = request.read() or None
        else:
            assert isinstance(request.stream, httpx.AsyncByteStream)
            data = request.stream
        timeout = request.extensions.get("timeout", {})
        try:
            response = await self.client.request(
                request.method,
                str(request.url),
                headers=headers,
                data=data,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                    connect=timeout.get("pool"),
                ),
                server_hostname=request.extensions.get("sni_hostname"),
                proxy=str(self.proxy.url) if self.proxy is not None else None,
                proxy_headers=proxy_headers or None,
            ).__aenter__()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise httpx_error(exc, request) from exc
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_MappedStream(response, request),
            request=request,
            extensions=extensions,
        )
