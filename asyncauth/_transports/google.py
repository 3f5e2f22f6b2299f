"""A google-auth ``Request`` that sends through an httpx client owned by the event loop.

google-auth is synchronous: it reads files, signs JWTs and makes HTTP requests with blocking
calls, so :class:`~asyncauth.sources.google.GoogleResolver` runs it in a worker thread
(``anyio.to_thread.run_sync``). Its requests must not block that thread on a second HTTP stack,
though: they hop back to the event loop (``anyio.from_thread.run``) and go out through the
resolver's httpx client, on the caller's transport. One stack, under asyncio and trio alike.

Import this module only where google-auth is installed (the ``gcp`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import anyio.from_thread
import google.auth.exceptions
import google.auth.transport
import httpx

__all__ = ["HttpxGoogleRequest", "HttpxGoogleResponse"]


def _where(method: str, url: str) -> str:
    """``METHOD scheme://host/path`` without the query, which may carry parameters of a grant."""
    parts = urlsplit(url)
    return f"{method} {parts.scheme}://{parts.netloc}{parts.path}"


class HttpxGoogleResponse(google.auth.transport.Response):
    """A fully read response, as google-auth expects (it reads ``data`` more than once)."""

    def __init__(self, status: int, headers: httpx.Headers, data: bytes) -> None:
        self._status = status
        self._headers = headers
        self._data = data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> httpx.Headers:
        """Case-insensitive, as google-auth looks up ``metadata-flavor`` in lower case."""
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class HttpxGoogleRequest(google.auth.transport.Request):
    """Call it from a worker thread started by anyio; it sends on the event loop's client.

    After :meth:`close` every call fails at once with ``TransportError``: a lookup that timed out
    abandons its worker thread, and this stops that thread from sending anything more.
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client
        self._closed = False
        self.requests = 0
        """How many requests went out, for tests and traces."""

    def close(self) -> None:
        self._closed = True

    async def _send(
        self,
        method: str,
        url: str,
        body: bytes | str | None,
        headers: Mapping[str, str] | None,
        timeout: float | None,  # noqa: ASYNC109 - google-auth's per-request timeout, for httpx
    ) -> HttpxGoogleResponse:
        content = body.encode() if isinstance(body, str) else body
        extra: dict[str, Any] = {} if timeout is None else {"timeout": httpx.Timeout(timeout)}
        response = await self._client.request(
            method, url, content=content, headers=dict(headers or {}), **extra
        )
        return HttpxGoogleResponse(response.status_code, response.headers, response.content)

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> HttpxGoogleResponse:
        if self._closed:
            raise google.auth.exceptions.TransportError(  # type: ignore[no-untyped-call]
                f"{_where(method, url)}: the lookup that made this request has finished"
            )
        self.requests += 1
        try:
            return anyio.from_thread.run(self._send, method, url, body, headers, timeout)
        except httpx.HTTPError as exc:
            # The message names the exception and where, never headers or bodies.
            raise google.auth.exceptions.TransportError(  # type: ignore[no-untyped-call]
                f"{_where(method, url)}: {type(exc).__name__}: {exc}"
            ) from exc
        except RuntimeError as exc:  # the event loop has gone (an abandoned thread)
            raise google.auth.exceptions.TransportError(  # type: ignore[no-untyped-call]
                f"{_where(method, url)}: the event loop is gone ({exc})"
            ) from exc
