"""The one translation between ``httpx`` and its fork ``httpx2``: requests, responses, errors.

The two packages have the same API under two module names, but their ``Request``, ``Response``,
byte streams and exceptions are different classes, so neither accepts the other's objects. Two
places need to cross over, in opposite directions:

* :class:`~asyncauth._transports.httpx2.Httpx2Transport` -- an ``httpx`` client over httpx2's
  connection pool (``httpx`` requests go in, ``httpx2`` responses come back);
* :mod:`asyncauth._transports.aws` -- aiobotocore's ``httpx2`` client over a caller's ``httpx``
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
    """``httpx`` or ``httpx2``: the package whose ``Request``/``Response`` ``message`` is."""
    return sys.modules[type(message).__module__.partition(".")[0]]


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


@functools.cache
def _stream_class(into: ModuleType) -> type:
    """An ``into.AsyncByteStream`` that reads another module's stream (or response) across."""

    class Across(into.AsyncByteStream):  # type: ignore[name-defined, misc]
        def __init__(self, source: Any, chunks: Any, errors: ModuleType, request: Any) -> None:
            self._source = source
            self._chunks = chunks
            self._errors = errors
            self._request = request

        async def __aiter__(self) -> AsyncIterator[bytes]:
            try:
                async for chunk in self._chunks:
                    yield chunk
            except self._errors.HTTPError as exc:
                raise error_into(exc, into, self._request) from exc

        async def aclose(self) -> None:
            close = getattr(self._source, "aclose", None)
            if close is not None:
                await close()

    return Across


def request_into(request: Any, into: ModuleType) -> Any:
    """``request`` as a request of ``into``; an in-memory body is copied, any other streamed."""
    source = module_of(request)
    if isinstance(request.stream, source.ByteStream):
        # read(), not .content: a redirect's request shares its predecessor's stream unread.
        body: dict[str, Any] = {"content": request.read()}
    else:
        body = {"stream": _stream_class(into)(request.stream, request.stream, source, None)}
    return into.Request(
        request.method,
        str(request.url),
        headers=request.headers.raw,
        extensions=_extensions(request.extensions, REQUEST_EXTENSIONS),
        **body,
    )


def response_into(response: Any, into: ModuleType, request: Any) -> Any:
    """``response`` as a response of ``into`` to ``request``; the body is streamed across raw
    (still encoded), and an error while reading it arrives as ``into``'s error."""
    stream = _stream_class(into)(response, response.aiter_raw(), module_of(response), request)
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
