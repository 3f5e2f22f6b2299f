"""The suite's secrets, registered so that one scan can prove none of them leaked.

A test that makes up a password, identity token, refresh token or registry token registers it
(``secret(value)`` returns the value, so ``PASSWORD = secret("pw-...")`` reads naturally); the
common accounts in ``tests/peers/accounts.py`` register theirs. The scan (``tests/conftest.py``)
then looks for every registered value, and for its base64 forms, in every ``asyncauth`` log
record (captured at DEBUG for the whole run), in the text and ``repr`` of exceptions a test
raised, and in captured stdout/stderr.

Only *inputs* are registered. Values a program prints by design (an access token minted for
``asyncauth token``, a token a test server hands out to be echoed back) are not secrets here.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterable

_MIN_LENGTH = 6
"""Shorter values match by accident (and no real secret is that short)."""

_lock = threading.Lock()
_secrets: dict[str, str] = {}
"""Every form of every registered secret -> a label that does not contain it."""


def _b64(text: str) -> list[str]:
    raw = base64.b64encode(text.encode()).decode()
    url = base64.urlsafe_b64encode(text.encode()).decode()
    return sorted({raw, raw.rstrip("="), url, url.rstrip("=")})


def secret(value: str, *, user: str | None = None) -> str:
    """Register ``value`` (and ``b64(value)``, ``b64(user:value)``); return it unchanged."""
    if len(value) < _MIN_LENGTH:
        raise ValueError(f"a test secret must be at least {_MIN_LENGTH} characters long")
    with _lock:
        number = len({label for label in _secrets.values()}) + 1
        label = f"secret #{number}"
        forms = [value, *_b64(value)]
        if user is not None:
            forms += _b64(f"{user}:{value}")
        for form in forms:
            _secrets.setdefault(form, label)
    return value


def registered() -> dict[str, str]:
    with _lock:
        return dict(_secrets)


def leaks(text: str, known: dict[str, str] | None = None) -> list[str]:
    """Labels of the registered secrets found in ``text`` (never the values)."""
    known = registered() if known is None else known
    return sorted({label for form, label in known.items() if form in text})


def scan(texts: Iterable[tuple[str, str]]) -> list[str]:
    """``where: secret #n`` for each (where, text) that holds a registered secret."""
    known = registered()
    found = []
    for where, text in texts:
        found += [f"{where}: {label}" for label in leaks(text, known)]
    return found
