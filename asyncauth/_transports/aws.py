"""An aiobotocore HTTP session class whose requests go through the caller's httpx transport.

aiobotocore (>= 3.9) has an httpx backend, ``HttpxSession``, that runs under trio as well as
asyncio. It builds its own ``AsyncClient``; :func:`session_class` returns a subclass that builds
it on the caller's transport instead. aiobotocore prefers the ``httpx2`` fork when it is
installed, while a caller's transport is an ``httpx`` one, so between the two sits a small bridge
that copies each request and response across (bodies here are a few hundred bytes).

What this reaches: the AWS API calls of clients created with ``AioConfig(http_session_cls=...)``.
What it does not: aiobotocore's credential providers (IMDS, container, SSO, STS) build their own
``HttpxSession`` and so use aiobotocore's client, not the caller's transport.

The subclass overrides ``HttpxSession._make_async_client`` and reads its ``_timeout``; both are
aiobotocore internals, pinned by the ``aws`` extra's version range and by the tests.

Import this module only where aiobotocore is installed (the ``aws`` extra).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import aiobotocore.httpxsession  # type: ignore[import-untyped]
import httpx
from aiobotocore.httpxsession import HttpxSession

from . import BorrowedTransport

__all__ = ["bridge_transport", "session_class"]

_BOTO_HTTPX: ModuleType = aiobotocore.httpxsession.httpx  # httpx2, or httpx as a fallback
_KEPT_REQUEST_EXTENSIONS = ("timeout",)  # not "target": stand-ins and proxies want origin-form
_KEPT_RESPONSE_EXTENSIONS = ("http_version", "reason_phrase")


def _translated(exc: httpx.HTTPError, into: ModuleType) -> Exception:
    """The same failure as an exception of ``into``, which aiobotocore maps as its own."""
    cls = getattr(into, type(exc).__name__, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = into.TransportError if isinstance(exc, httpx.TransportError) else into.HTTPError
    return cls(str(exc))


def bridge_transport(transport: httpx.AsyncBaseTransport, into: ModuleType = _BOTO_HTTPX) -> Any:
    """``transport`` as a transport of the ``into`` module (``httpx2``), never closing it."""
    if into is httpx:
        return BorrowedTransport(transport)

    class Bridge(into.AsyncBaseTransport):  # type: ignore[name-defined, misc]
        async def handle_async_request(self, request: Any) -> Any:
            body = await request.aread()
            outgoing = httpx.Request(
                request.method,
                str(request.url),
                headers=request.headers.raw,
                content=body,
                extensions={
                    k: request.extensions[k]
                    for k in _KEPT_REQUEST_EXTENSIONS
                    if k in request.extensions
                },
            )
            try:
                response = await transport.handle_async_request(outgoing)
                try:
                    raw = b"".join([chunk async for chunk in response.aiter_raw()])
                finally:
                    await response.aclose()
            except httpx.HTTPError as exc:
                raise _translated(exc, into) from exc
            return into.Response(
                response.status_code,
                headers=response.headers.raw,
                content=raw,
                extensions={
                    k: response.extensions[k]
                    for k in _KEPT_RESPONSE_EXTENSIONS
                    if k in response.extensions
                },
            )

        async def aclose(self) -> None:
            """Do nothing: the transport's owner closes it."""

    return Bridge()


def session_class(transport: httpx.AsyncBaseTransport) -> type[HttpxSession]:
    """An ``HttpxSession`` subclass bound to ``transport``, for ``AioConfig(http_session_cls=)``."""
    bridged = bridge_transport(transport)

    class TransportSession(HttpxSession):  # type: ignore[misc]
        def _make_async_client(self) -> Any:
            # Proxies, TLS and pool limits are the transport's business now.
            return _BOTO_HTTPX.AsyncClient(
                transport=bridged,
                timeout=self._timeout,
                trust_env=False,
                follow_redirects=False,
            )

    return TransportSession
