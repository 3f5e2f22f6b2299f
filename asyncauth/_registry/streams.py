"""Body streams of token requests and responses, for whichever httpx module the driver speaks.

httpx checks the *type* of a stream (its ``SyncByteStream``/``AsyncByteStream``) before it
iterates one, and httpx2 has its own copies of those classes, so each class here is made once
per module and serves both the sync and the async driver.

* :func:`bound` swaps a token response's stream for one that inflates and counts through a
  :class:`~asyncauth._registry.bodies.BoundedDecoder`: the body is read the normal way
  (``aread``/``read``, so httpx keeps it for the response history) and cannot grow past the limit.
  It also ends the read when the request's deadline has passed between two chunks (what a
  sync client can do: its reads block).
* :func:`token_request` builds a token request; a POST's body (a refresh token, or a password)
  can be sent once. httpx re-sends a 307/308's body by itself when it follows a redirect, and a
  transport that reads a request's body into memory (``request.read()``, as
  ``httpx.MockTransport`` does) would make it replayable: the request is of a class whose
  ``read`` keeps the one-shot stream, so a second hop's send fails instead of carrying the
  secret to whatever host the redirect names.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from types import ModuleType
from typing import Any

import httpx

from .._errors import AsyncAuthError, TokenResponseError
from .bodies import BodyTooLargeError, BoundedDecoder
from .tokens import TokenRequest


class ReplayRefusedError(AsyncAuthError):
    """A token request's body was about to be sent a second time (a redirect): refused."""


class _Drain:
    """Ends a refused body's stream cleanly when that costs little.

    A body refused half-way (too large once decoded, corrupt) leaves the transport's async
    generators suspended if its stream is abandoned, and trio warns about each of them when
    they are collected. So after a refusal the rest of the raw body is read and dropped, at most
    ``limit`` raw bytes of it (a compression bomb is small: nothing to read), and the refusal is
    raised at its end; a raw body larger than that is abandoned at once.
    """

    __slots__ = ("_drained", "_error", "_limit")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._drained = 0
        self._error: TokenResponseError | None = None

    def decode(self, decoder: BoundedDecoder, chunk: bytes) -> bytes:
        if self._error is None:
            try:
                return decoder.feed(chunk)
            except TokenResponseError as exc:
                self._error = exc
                return b""
        self._drained += len(chunk)
        if self._drained > self._limit:
            raise self._error
        return b""

    def finish(self, decoder: BoundedDecoder) -> bytes:
        if self._error is not None:
            raise self._error
        return decoder.finish()


@functools.cache
def _bounded_stream(http: ModuleType) -> type[Any]:
    """A response stream of ``http``'s kind that decodes through a bounded decoder."""

    class BoundedStream(http.SyncByteStream, http.AsyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(
            self, raw: Any, decoder: BoundedDecoder, limit: int, deadline: float | None
        ) -> None:
            self._raw, self._decoder = raw, decoder
            self._drain = _Drain(limit)
            self._deadline = deadline

        def _in_time(self) -> None:
            if self._deadline is not None and time.monotonic() > self._deadline:
                raise http.ReadTimeout(
                    "the token server did not finish its answer within the request's timeout"
                )

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._raw:
                self._in_time()
                yield self._drain.decode(self._decoder, chunk)
            yield self._drain.finish(self._decoder)

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self._raw:
                self._in_time()
                yield self._drain.decode(self._decoder, chunk)
            yield self._drain.finish(self._decoder)

        def close(self) -> None:
            self._raw.close()

        async def aclose(self) -> None:
            await self._raw.aclose()

    return BoundedStream


@functools.cache
def _one_shot(http: ModuleType) -> tuple[type[Any], type[Any]]:
    """A one-shot body stream of ``http``'s kind, and a request class that keeps it one-shot."""

    class OneShotStream(http.SyncByteStream, http.AsyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, body: bytes) -> None:
            self._body: bytes | None = body

        def _take(self) -> bytes:
            body, self._body = self._body, None
            if body is None:
                raise ReplayRefusedError(
                    "a token request's body (it holds a secret) would be sent again after a "
                    "redirect; refused"
                )
            return body

        def __iter__(self) -> Iterator[bytes]:
            yield self._take()

        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield self._take()

    class OneShotRequest(http.Request):  # type: ignore[name-defined,misc]
        """A request whose body is read (by a transport, a hook) without becoming replayable."""

        def read(self) -> bytes:
            if not hasattr(self, "_content"):
                self._content = b"".join(self.stream)
            return self._content

        async def aread(self) -> bytes:
            if not hasattr(self, "_content"):
                self._content = b"".join([part async for part in self.stream])
            return self._content

    return OneShotStream, OneShotRequest


@functools.cache
def _rewinding(http: ModuleType) -> type[Any]:
    """A request body stream of ``http``'s kind over a seekable file, read from where the file
    stood when the request entered the handshake, each time the request is sent.

    httpx streams a file through an ``IteratorByteStream``, which reads on from wherever the
    file is: sent a second time (after the probe, or a 401 with a fresh token) it would send
    nothing after a ``Content-Length`` that promised the whole file. Sync only, as httpx's
    own stream for a file is (an ``AsyncClient`` refuses a sync file)."""

    class RewindingStream(http.SyncByteStream):  # type: ignore[name-defined,misc]
        CHUNK_SIZE = 65_536

        def __init__(self, file: Any, start: int) -> None:
            self._file, self._start = file, start

        def __iter__(self) -> Iterator[bytes]:
            self._file.seek(self._start)
            while chunk := self._file.read(self.CHUNK_SIZE):
                yield chunk

    return RewindingStream


def keep_replayable(http: ModuleType, request: httpx.Request) -> None:
    """Before ``request`` is first sent: make a seekable file's body one that can be sent
    again (:func:`_rewinding`). Other bodies are left as they are."""
    stream = request.stream
    if isinstance(stream, http.ByteStream):
        return
    file = getattr(stream, "_stream", None)  # httpx's IteratorByteStream over a file
    if file is None or not hasattr(file, "read"):
        return
    try:
        if not file.seekable():
            return
        start = file.tell()
    except (AttributeError, OSError, ValueError):  # not a file, or a closed one
        return
    request.stream = _rewinding(http)(file, start)


def replayable(http: ModuleType, request: httpx.Request) -> bool:
    """Whether ``request``'s body can be sent twice: bytes or a str (httpx's ``ByteStream``),
    or a seekable file (after :func:`keep_replayable`)."""
    return isinstance(request.stream, http.ByteStream | _rewinding(http))


def bound(http: ModuleType, response: httpx.Response, limit: int, deadline: float | None) -> None:
    """Make ``response`` decode its own body, at most ``limit`` decoded bytes of it, and stop
    reading it once ``deadline`` (``time.monotonic()``) has passed."""
    decoder = BoundedDecoder(response.headers.get_list("content-encoding"), limit)
    if "content-encoding" in response.headers:
        del response.headers["content-encoding"]  # httpx must not decode a second time
    response.stream = _bounded_stream(http)(response.stream, decoder, limit, deadline)


def token_request(
    http: ModuleType, description: TokenRequest, extensions: Mapping[str, Any]
) -> httpx.Request:
    """The httpx request for ``description``; a body is sent at most once (see above)."""
    headers = list(description.headers)
    if description.body is None:
        made: httpx.Request = http.Request(
            description.method, description.url, headers=headers, extensions=dict(extensions)
        )
        return made
    one_shot, request_class = _one_shot(http)
    posted: httpx.Request = request_class(
        description.method,
        description.url,
        headers=headers,
        content=description.body,  # sets Host and Content-Length
        extensions=dict(extensions),
    )
    posted.stream = one_shot(description.body)
    del posted._content  # the body is the one-shot stream's, and read from it once
    return posted


def within(body: bytes, limit: int) -> bytes:
    """``body``, unless it is over ``limit`` (a response whose body was read before it reached
    the flow, such as one a test transport built in memory)."""
    if len(body) > limit:
        raise BodyTooLargeError(f"token response is larger than {limit} bytes")
    return body
