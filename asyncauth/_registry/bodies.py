"""Reading a token server's answer without letting it choose how much memory we spend.

A token response is a few hundred bytes of JSON. A hostile server can still send gigabytes, or
493 bytes of ``Content-Encoding: gzip, gzip`` that inflate to half a gigabyte in one call to a
decompressor. :class:`BoundedDecoder` is pure: fed the raw bytes, it inflates at most as much
as the limit allows (zlib's ``max_length``), counts the *decoded* bytes, and raises
:class:`BodyTooLargeError` the moment the limit is passed. One layer of ``gzip`` or ``deflate``
is accepted (what servers send when asked ``Accept-Encoding: gzip``); anything else is refused.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from .._errors import TokenResponseError

ACCEPT_ENCODING = "gzip, deflate"
"""What token requests ask for: the encodings :class:`BoundedDecoder` inflates itself."""

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class BodyTooLargeError(TokenResponseError):
    """The decoded body passed the limit; nothing more of it is kept."""


def _encodings(values: Iterable[str]) -> list[str]:
    found = [part.strip().lower() for value in values for part in value.split(",")]
    return [name for name in found if name and name != "identity"]


class BoundedDecoder:
    """Raw chunks in, at most ``limit`` decoded bytes out (``feed``, then ``finish``)."""

    __slots__ = ("_inflater", "_limit", "_size", "_zlib_deflate")

    def __init__(self, content_encoding: Iterable[str], limit: int) -> None:
        encodings = _encodings(content_encoding)
        if len(encodings) > 1 or (encodings and encodings[0] not in _WBITS):
            raise TokenResponseError(
                "token response: Content-Encoding must be identity, gzip or deflate (one layer), "
                f"not {', '.join(encodings)[:60]!r}"
            )
        self._limit = limit
        self._size = 0
        self._inflater = zlib.decompressobj(_WBITS[encodings[0]]) if encodings else None
        self._zlib_deflate = bool(encodings) and encodings[0] == "deflate"

    def feed(self, chunk: bytes) -> bytes:
        """The decoded bytes of ``chunk``; raises once the total passes the limit."""
        if self._inflater is None:
            return self._count(chunk)
        out = [self._count(self._inflate(chunk))]
        while self._inflater.unconsumed_tail:
            out.append(self._count(self._inflate(self._inflater.unconsumed_tail)))
        return b"".join(out)

    def finish(self) -> bytes:
        """What the decompressor still holds (bounded too)."""
        if self._inflater is None:
            return b""
        return self._count(self._inflater.flush(self._room()))

    def _room(self) -> int:
        return self._limit - self._size + 1  # one more than allowed, to notice the overflow

    def _inflate(self, data: bytes) -> bytes:
        assert self._inflater is not None
        try:
            return self._inflater.decompress(data, self._room())
        except zlib.error:
            if not (self._zlib_deflate and self._size == 0):
                raise TokenResponseError("token response: the compressed body is corrupt") from None
        # "deflate" is zlib-wrapped by the RFC, raw in some servers: accept both.
        self._inflater, self._zlib_deflate = zlib.decompressobj(-zlib.MAX_WBITS), False
        return self._inflate(data)

    def _count(self, data: bytes) -> bytes:
        self._size += len(data)
        if self._size > self._limit:
            raise BodyTooLargeError(f"token response is larger than {self._limit} bytes")
        return data
