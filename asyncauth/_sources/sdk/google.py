"""Every use of google-auth beyond its public API, behind one fence; and the ``Request`` that
sends google-auth's requests through an httpx client owned by the event loop.

google-auth is synchronous: it reads files, signs JWTs and makes HTTP requests with blocking
calls, so :class:`~asyncauth._sources.google.GoogleResolver` runs it in a worker thread
(``anyio.to_thread.run_sync``). Its requests must not block that thread on a second HTTP stack,
though: they hop back to the event loop (``anyio.from_thread.run``) and go out through the
resolver's httpx client, on the caller's transport. One stack, under asyncio and trio alike.

The adapter uses google-auth's public transport interface only. What is private is *behaviour*
the resolver mirrors, so that its cheap off-cloud probe agrees with what ADC would decide; each
item is pinned by ``tests/test_sdk_fences.py`` against google-auth's
``google.auth.compute_engine._metadata`` (verified on 2.45.0, 2.47.0, 2.50.0, 2.55.0, 2.60.0 and
2.63.0; before 2.45 the address was read once, at import), and :data:`VERIFIED` is the ``gcp``
extra's range:

* the probe's address: ``GCE_METADATA_IP``, else ``169.254.169.254``, read per call
  (google-auth's ``_metadata._get_metadata_ip_root``);
* the probe asks and expects ``Metadata-Flavor: Google`` (``_METADATA_FLAVOR_HEADER``);
* the fallback: the DMI product name file starts with ``Google``
  (``_GCE_PRODUCT_NAME_FILE``, ``detect_gce_residency_linux``).

google-auth's own retries (not ours): token endpoints up to 6 attempts on 408/429/500/503/504
with exponential backoff from 1 s; metadata requests up to 5 attempts. They sleep in the worker
thread, so the resolver's timeout bounds them.

Import this module only where google-auth is installed (the ``gcp`` extra).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import anyio.from_thread
import anyio.to_thread
import google.auth.exceptions
import google.auth.transport
import httpx

from ..._http import request_limited

VERIFIED: Final = {"google-auth": ("2.45.0", "2.64")}
"""Distribution -> [lowest verified, first unverified minor): the mirrored behaviour holds here."""

METADATA_IP_VARIABLE: Final = "GCE_METADATA_IP"
DEFAULT_METADATA_IP: Final = "169.254.169.254"
PRODUCT_NAME_FILE: Final = "/sys/class/dmi/id/product_name"
FLAVOR_HEADER: Final = "Metadata-Flavor"
FLAVOR: Final = "Google"


def _product_name_says_google() -> bool:
    """google-auth's fallback residency check: the machine's DMI product name says Google."""
    try:
        with open(PRODUCT_NAME_FILE, encoding="utf-8") as file:
            return file.read(256).strip().startswith(FLAVOR)
    except (OSError, ValueError):
        return False


async def metadata_server_answers(client: httpx.AsyncClient, *, limit: float) -> bool:
    """One short probe where google-auth would ping, judged the way google-auth judges it.

    ``limit`` (seconds) bounds the probe (google-auth's own ping waits 3 s, three times).
    """
    ip = os.environ.get(METADATA_IP_VARIABLE) or DEFAULT_METADATA_IP
    try:
        response = await client.get(f"http://{ip}/", headers={FLAVOR_HEADER: FLAVOR}, timeout=limit)
    except httpx.HTTPError:
        return await anyio.to_thread.run_sync(_product_name_says_google, abandon_on_cancel=True)
    return response.status_code == 200 and response.headers.get(FLAVOR_HEADER) == FLAVOR


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
        response, body = await request_limited(
            self._client, method, url, content=content, headers=dict(headers or {}), **extra
        )
        return HttpxGoogleResponse(response.status_code, response.headers, body)

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
