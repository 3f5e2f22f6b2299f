"""Every use of azure-core and azure-identity internals, behind one fence: an azure-core
``AsyncHttpTransport`` over httpx, so azure-identity's ``aio`` credentials run under trio as well
as asyncio and on the caller's transport.

azure-core's default async transport is aiohttp (asyncio-only) and its sleeps default to
``asyncio.sleep``; this adapter sends through the resolver's httpx client and sleeps with anyio,
never longer than ``max_sleep`` (azure-core honours any ``Retry-After`` a server sends, uncapped).
Token responses are small, so each one is read whole (at most
:data:`~asyncauth._http.MAX_CLOUD_ANSWER_BYTES`) before it is handed over; streaming is
not supported.

Private touch points, verified against azure-core 1.31.0 and 1.41.0 with azure-identity 1.26.0
and 1.27.0 (1.19-1.25 send legacy ``pipeline.transport`` requests, which this adapter refuses),
pinned by ``tests/test_sdk_fences.py``; the ``azure`` extra allows :data:`VERIFIED`:

* ``azure.core.rest._http_response_impl_async.AsyncHttpResponseImpl``: the response handed
  back, built with the keywords ``request``, ``internal_response``, ``block_size``,
  ``status_code``, ``reason``, ``content_type``, ``headers``, ``stream_download_generator``;
* ``AsyncHttpTransport.send(request, **config)`` with the keys ``connection_timeout``,
  ``read_timeout`` and ``stream``, and ``sleep(duration)`` for every retry pause;
* relied on, not touched: ``ChainedTokenCredential`` marks its members as in a chain
  (``azure.identity._internal.within_credential_chain``), which keeps the VM metadata probe
  short (one attempt, 1 s connect timeout) instead of minutes of retries;
* credentials' ``retry_total``/``retry_backoff_max`` keywords reach azure-core's ``RetryPolicy``.

Import this module only where azure-identity is installed (the ``azure`` extra).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import anyio
import httpx
from azure.core.exceptions import (
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import AsyncHttpTransport
from azure.core.rest import AsyncHttpResponse, HttpRequest
from azure.core.rest._http_response_impl_async import AsyncHttpResponseImpl
from azure.core.utils import case_insensitive_dict

from ..._http import request_limited
from ..._http.retry import RETRY_AFTER_CAP

VERIFIED: Final = {"azure-core": ("1.31.0", "1.42"), "azure-identity": ("1.26.0", "1.28")}
"""Distribution -> [lowest verified, first unverified minor): the touch points above hold here."""
DEFAULT_MAX_SLEEP: Final = RETRY_AFTER_CAP
"""Seconds one azure-core pause (backoff or ``Retry-After``) may last at most: the one cap."""

# httpx has already decoded the body, so these no longer describe what is handed over.
_DROPPED_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class _Consumed:
    """Stands in for the library response: httpx's response is already read and closed."""

    async def close(self) -> None:
        return None


def _stream_of(body: bytes) -> Any:
    async def stream_download_generator(**_: Any) -> AsyncIterator[bytes]:
        yield body

    return stream_download_generator


def _request_content(request: HttpRequest) -> bytes | None:
    content = request.content
    if content is None:
        return None
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode()
    if isinstance(content, dict):  # form fields, which azure-core leaves to the transport
        return urlencode(content, doseq=True).encode()
    raise TypeError(f"HttpxAzureTransport cannot send a {type(content).__name__} body")


def _timeout(config: dict[str, Any], default: httpx.Timeout) -> httpx.Timeout:
    connect = config.pop("connection_timeout", None)
    read = config.pop("read_timeout", None)
    if connect is None and read is None:
        return default
    return httpx.Timeout(
        default.read if read is None else float(read),
        connect=default.connect if connect is None else float(connect),
    )


class HttpxAzureTransport(AsyncHttpTransport):  # type: ignore[type-arg]
    """Sends azure-core ``rest`` requests on an httpx client the caller owns and closes.

    Several credentials may share one instance; :meth:`close` leaves the client open.
    """

    def __init__(self, client: httpx.AsyncClient, *, max_sleep: float = DEFAULT_MAX_SLEEP) -> None:
        self._client = client
        self.max_sleep = max_sleep
        self.requests = 0
        """How many requests went out, for tests and traces."""

    async def __aenter__(self) -> HttpxAzureTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        return None

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def sleep(self, duration: float) -> None:
        """azure-core's retry pause, capped: a ``Retry-After: 3600`` must not stall a lookup."""
        await anyio.sleep(min(max(duration, 0.0), self.max_sleep))

    async def send(self, request: HttpRequest, **config: Any) -> AsyncHttpResponse:
        if not isinstance(request, HttpRequest):
            raise TypeError("HttpxAzureTransport sends azure.core.rest.HttpRequest only")
        stream = bool(config.pop("stream", False))
        if stream:
            raise ValueError("HttpxAzureTransport does not stream responses")
        timeout = _timeout(config, self._client.timeout)
        self.requests += 1
        where = "{} {}".format(request.method, urlsplit(request.url)._replace(query="").geturl())
        try:
            response, body = await request_limited(
                self._client,
                request.method,
                request.url,
                headers=dict(request.headers),
                content=_request_content(request),
                timeout=timeout,
            )
        except httpx.ConnectTimeout as exc:
            raise ServiceRequestTimeoutError(f"{where}: {exc!s}", error=exc) from exc
        except httpx.TimeoutException as exc:
            raise ServiceResponseTimeoutError(f"{where}: {exc!s}", error=exc) from exc
        except (httpx.ConnectError, httpx.UnsupportedProtocol, httpx.ProxyError) as exc:
            raise ServiceRequestError(f"{where}: {exc!s}", error=exc) from exc
        except httpx.HTTPError as exc:
            raise ServiceResponseError(f"{where}: {exc!s}", error=exc) from exc

        headers = case_insensitive_dict(
            (k, v) for k, v in response.headers.items() if k.lower() not in _DROPPED_HEADERS
        )
        result = AsyncHttpResponseImpl(
            request=request,
            internal_response=_Consumed(),
            block_size=max(len(body), 1),
            status_code=response.status_code,
            reason=response.reason_phrase,
            content_type=response.headers.get("content-type"),
            headers=headers,
            stream_download_generator=_stream_of(body),
        )
        await result.read()
        return result
