"""An ``httpx`` transport that runs on httpx2's connection pool.

httpx 0.28's own pool slows down badly as concurrency grows (see docs/benchmarks.md: a few dozen
requests per second at 256 concurrent requests on this machine, where httpx2's pool keeps
hundreds), and under trio there is no aiohttp to fall back on. httpx2 is the maintained fork with
the same API under another module name, but its ``Request``/``Response`` are other classes, so
an ``httpx.AsyncClient`` cannot use its transport directly. :class:`Httpx2Transport` copies each
request across and streams each response back, so users keep their ``httpx.AsyncClient`` (and
``RegistryAuth``, event hooks, ...) and get httpx2's pool underneath.

Import it only where httpx2 is installed (``pip install 'asyncauth[httpx2]'``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2

__all__ = ["Httpx2Transport"]

_REQUEST_EXTENSIONS = ("timeout", "sni_hostname")
_RESPONSE_EXTENSIONS = ("http_version", "reason_phrase", "network_stream")


def _translated(exc: Exception, request: httpx.Request) -> httpx.HTTPError:
    """httpx2's exception as httpx's of the same name (callers catch httpx's classes)."""
    cls = getattr(httpx, type(exc).__name__, None)
    if not (isinstance(cls, type) and issubclass(cls, httpx.RequestError)):
        cls = httpx.TransportError
    return cls(str(exc), request=request)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: Any, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx2.HTTPError as exc:
            raise _translated(exc, self._request) from exc

    async def aclose(self) -> None:
        await self._response.aclose()


class Httpx2Transport(httpx.AsyncBaseTransport):
    """httpx's transport interface over ``httpx2.AsyncHTTPTransport`` (same arguments)."""

    def __init__(
        self,
        *,
        verify: Any = True,
        limits: httpx.Limits | None = None,
        trust_env: bool = True,
        http2: bool = False,
        **kwargs: Any,
    ) -> None:
        limits = limits or httpx.Limits()
        self._inner = httpx2.AsyncHTTPTransport(
            verify=verify,
            limits=httpx2.Limits(
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
            ),
            trust_env=trust_env,
            http2=http2,
            **kwargs,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content: Any = request.stream
        if isinstance(content, httpx.ByteStream):
            # read(), not .content: a redirect's request shares its predecessor's stream unread.
            content = request.read()
        outgoing = httpx2.Request(
            request.method,
            str(request.url),
            headers=request.headers.raw,
            content=content,
            extensions={
                k: request.extensions[k] for k in _REQUEST_EXTENSIONS if k in request.extensions
            },
        )
        try:
            response = await self._inner.handle_async_request(outgoing)
        except httpx2.HTTPError as exc:
            raise _translated(exc, request) from exc
        return httpx.Response(
            response.status_code,
            headers=response.headers.raw,
            stream=_ResponseStream(response, request),
            extensions={
                k: response.extensions[k] for k in _RESPONSE_EXTENSIONS if k in response.extensions
            },
        )

    async def aclose(self) -> None:
        await self._inner.aclose()
