"""The one translation between ``httpx`` and its fork ``httpx2``: requests, responses, errors.

The two packages have the same API under two module names, but their ``Request``, ``Response``,
byte streams and exceptions are different classes, so neither accepts the other's objects. Two
places need to cross over, in opposite directions:

* :class:`~asyncauth._client.httpx2_transport.Httpx2Transport` -- an ``httpx`` client over httpx2's
  connection pool (``httpx`` requests go in, ``httpx2`` responses come back);
* :mod:`asyncauth._sources.sdk.aws` -- aiobotocore's ``httpx2`` client over a caller's ``httpx``
  transport (the other way round).

Every function here takes the module to translate *into*, so both directions share one
implementation. Bodies are streamed across in both directions (a blob upload or download never
sits in memory whole); only the request and response extensions listed below cross over.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any, Final

REQUEST_EXTENSIONS: Final = ("timeout", "sni_hostname")
"""Carried across. Not ``target``: aiobotocore sets an absolute-form target for proxies, and an
origin server (or a stand-in) wants origin-form; the receiving client derives it from the URL."""
RESPONSE_EXTENSIONS: Final = ("http_version", "reason_phrase", "network_stream")


def module_of(message: object) -> ModuleType:
    """``httpx`` or ``httpx2``: the package whose ``Request``/``Response`` ``message`` is (or
    subclasses: asyncauth's own token requests do)."""
    for cls in type(message).__mro__:
        root = cls.__module__.partition(".")[0]
        if root in ("httpx", "httpx2"):
            return sys.modules[root]
    raise TypeError(f"not an httpx or httpx2 message: {type(message).__name__}")


def error_into(exc: Exception, into: ModuleType, request: Any) -> Exception:
    """``exc`` (an ``HTTPError`` of one module) as the same-named ``RequestError`` of ``into``.

    Callers catch ``into``'s classes: a ``ConnectTimeout`` must stay a ``ConnectTimeout``. A
    name ``into`` lacks (or that is not a request error there) becomes its ``TransportError``.
    """
    cls = getattr(into, type(exc).__name__, None)
    if not (isinstance(cls, type) and issubclass(cls, into.RequestError)):
        cls = into.TransportError
    return cls(str(exc), request=request)  # type: ignore[no-any-return]


def _extensions(extensions: dict[str, Any], kept: tuple[str, ...]) -> dict[str, Any]:
    return {key: extensions[key] for key in kept if key in extensions}


@functools.lru_cache(maxsize=1024)
def _url_into(into: ModuleType, url: str) -> Any:
    """``url`` parsed by ``into``. URLs are immutable and a pipeline asks for the same few
    again and again (manifests, tags), and parsing one costs about as much as the rest of the
    crossing, so each is parsed once."""
    return into.URL(url)


@functools.cache
def _stream_class(into: ModuleType) -> type:
    """An ``into.AsyncByteStream`` that reads another module's byte stream across."""

    class Across(into.AsyncByteStream):  # type: ignore[name-defined, misc]
        def __init__(self, source: Any, errors: ModuleType, request: Any) -> None:
            self._source = source
            self._errors = errors
            self._request = request
            self._closed = False

        async def __aiter__(self) -> AsyncIterator[bytes]:
            try:
                async for chunk in self._source:
                    if chunk:
                        yield chunk
            except self._errors.HTTPError as exc:
                raise error_into(exc, into, self._request) from exc

        async def aclose(self) -> None:
            if not self._closed:
                self._closed = True
                close = getattr(self._source, "aclose", None)
                if close is not None:
                    await close()

    return Across


def request_into(request: Any, into: ModuleType) -> Any:
    """``request`` as a request of ``into``, with the same headers (already complete: the
    receiving module adds none, as the sending module's own transport would not); an in-memory
    body is copied, any other streamed."""
    source = module_of(request)
    body: bytes | None = None
    if isinstance(request.stream, source.ByteStream):
        # read(), not .content: a redirect's request shares its predecessor's stream unread.
        body = request.read()
        stream = into.ByteStream(body)
    else:
        stream = _stream_class(into)(request.stream, source, None)
    outgoing = into.Request(
        request.method,
        _url_into(into, str(request.url)),
        headers=request.headers.raw,
        stream=stream,
        extensions=_extensions(request.extensions, REQUEST_EXTENSIONS),
    )
    if body is not None:
        outgoing.read()  # in memory already: .content works, as on the request it copies
    return outgoing


def response_into(response: Any, into: ModuleType, request: Any) -> Any:
    """``response`` as a response of ``into`` to ``request``; its byte stream is read across
    raw (still encoded) and closed with it, and an error while reading it arrives as
    ``into``'s error. The transport's stream itself, not the response's ``aiter_raw()``: nobody
    sees the response it came in, so its bookkeeping would only cost time."""
    stream = _stream_class(into)(response.stream, module_of(response), request)
    return into.Response(
        response.status_code,
        headers=response.headers.raw,
        stream=stream,
        extensions=_extensions(response.extensions, RESPONSE_EXTENSIONS),
    )


async def send_across(transport: Any, via: ModuleType, request: Any) -> Any:
    """Send ``request`` (of one module) on ``transport`` (a transport of ``via``, the other);
    answer in the request's module. The one place both directions go through."""
    origin = module_of(request)
    outgoing = request_into(request, via)
    try:
        response = await transport.handle_async_request(outgoing)
    except via.HTTPError as exc:
        raise error_into(exc, origin, request) from exc
    return response_into(response, origin, request)
