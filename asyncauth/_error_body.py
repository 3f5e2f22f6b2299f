"""The error body of the distribution API, read so that a failure can say what the registry said.

A registry that refuses a request answers ``{"errors": [{"code": "MANIFEST_UNKNOWN", "message":
"manifest unknown", "detail": ...}]}``. The code tells a missing tag (``MANIFEST_UNKNOWN``) from a
missing repository (``NAME_UNKNOWN``) or a refusal (``DENIED``), which the status alone (404, 401)
does not. The body is the registry's text, so it is read with limits: only a small body is
parsed, only a few entries, only codes of the spec's shape, and messages are redacted and cut.
``detail`` is never shown (it is free-form JSON, and may echo the request).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ._redact import redact

MAX_ERROR_BODY = 16 * 1024
"""Bytes of an error body that are read and parsed; a larger one is not looked at (the spec's
bodies are a few hundred bytes, and a registry's error page should not cost memory or time)."""
MAX_ERRORS = 4
"""Entries of ``errors`` shown: enough for every real answer, bounded for a hostile one."""
_MESSAGE_LIMIT = 120
_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class RegistryError:
    """One entry of a registry's ``errors``: its code, and its message fit to be shown."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code} ({self.message})" if self.message else self.code


def registry_errors(body: bytes) -> tuple[RegistryError, ...]:
    """The errors a registry reported in ``body``; empty when it is not such a body (never
    raises: an unreadable error body must not hide the status it came with)."""
    if len(body) > MAX_ERROR_BODY:
        return ()
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
        return ()
    entries = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return ()
    return tuple(_entries(entries[: MAX_ERRORS * 4]))[:MAX_ERRORS]


def _entries(entries: Iterable[object]) -> Iterable[RegistryError]:
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        code, message = entry.get("code"), entry.get("message")
        if isinstance(code, str) and _CODE.fullmatch(code):
            shown = _shown(message) if isinstance(message, str) else ""
            yield RegistryError(code, shown)


def _shown(message: str) -> str:
    """A message on one line, without control characters (a terminal would obey them)."""
    printable = "".join(c if c.isprintable() else " " for c in message[: _MESSAGE_LIMIT * 4])
    return redact(printable, limit=_MESSAGE_LIMIT)


def describe(status: int, errors: Iterable[RegistryError]) -> str:
    """``404 MANIFEST_UNKNOWN (manifest unknown)``: the status with what the registry said."""
    said = "; ".join(map(str, errors))
    return f"{status} {said}" if said else str(status)
