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

from collections.abc import AsyncIterator

import aiohttp
import httpx
import httpx_aiohttp


def _reason(error: aiohttp.ClientConnectorError) -> str:
    """The failure without aiohttp's "Cannot connect to host ..." wrapper (callers add the host)."""
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return str(error.certificate_error)
    return str(error.os_error) or type(error.os_error).__name__


def httpx_error(error: BaseException, request: httpx.Request) -> httpx.TransportError | None:
    """The httpx exception for aiohttp's ``error`` (``None`` when it is not aiohttp's).

    Ordered from the narrowest class to the widest: aiohttp's hierarchy nests connector errors
    (refused, DNS, TLS, proxy) inside connection errors, and timeouts inside those.
    """
    mapped: httpx.TransportError
    if isinstance(error, aiohttp.ClientConnectorError):
        mapped = httpx.ConnectError(_reason(error), request=request)
    elif isinstance(error, aiohttp.ClientHttpProxyError):
        answer = f"the proxy answered {error.status} {error.message}"
        mapped = httpx.ProxyError(answer, request=request)
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
    elif isinstance(error, TimeoutError):
        mapped = httpx.TimeoutException("timed out", request=request)
    else:
        return None
    return mapped


def _aiohttp_cause(exc: BaseException) -> BaseException:
    """The aiohttp exception httpx-aiohttp wrapped (its table raises ``... from exc``)."""
    if isinstance(exc, httpx.TransportError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


class _MappedStream(httpx.AsyncByteStream):
    """The response body, with aiohttp's read errors as httpx's (a server hanging up mid-body is
    a protocol error, not a connect timeout)."""

    def __init__(self, inner: httpx.AsyncByteStream, request: httpx.Request) -> None:
        self._inner = inner
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except (httpx.TransportError, aiohttp.ClientError, TimeoutError) as exc:
            cause = _aiohttp_cause(exc)
            mapped = httpx_error(cause, self._request)
            if mapped is None:
                raise
            raise mapped from cause

    async def aclose(self) -> None:
        await self._inner.aclose()


class AiohttpTransport(httpx_aiohttp.AiohttpTransport):
    """httpx-aiohttp's transport (same arguments) with httpx's exception kinds."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if isinstance(request.stream, httpx.ByteStream):
            # A redirect's request shares its predecessor's in-memory stream without having read
            # it; reading it here lets the parent class send its bytes (none for a GET) instead
            # of an empty chunked body.
            request.read()
        try:
            response = await super().handle_async_request(request)
        except (httpx.TransportError, aiohttp.ClientError, TimeoutError) as exc:
            cause = _aiohttp_cause(exc)
            mapped = httpx_error(cause, request)
            if mapped is None:
                raise
            raise mapped from cause
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _MappedStream(response.stream, request)
        return response
