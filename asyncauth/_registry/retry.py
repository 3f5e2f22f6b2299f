"""How long to wait before asking a server again: one policy for token servers and clouds.

``429``/``503`` are retried at most :data:`MAX_ATTEMPTS` times; the server's ``Retry-After``
(seconds or an HTTP date) is honoured up to :data:`RETRY_AFTER_CAP`, else the wait backs off
exponentially from half a second. The caller's deadline bounds every wait.
"""

from __future__ import annotations

import email.utils
from typing import Final

MAX_ATTEMPTS: Final = 3
"""Tries of one request when the server answers 429 or 503."""
RETRY_AFTER_CAP: Final = 5.0
"""The longest ``Retry-After`` honoured, in seconds; longer ones wait this long."""
RETRY_STATUSES: Final = frozenset({429, 503})


def retry_delay(retry_after: str | None, attempt: int, *, now: float) -> float:
    """Seconds to wait before try ``attempt + 1``: ``retry_after`` (a ``Retry-After`` value;
    ``now`` is the wall clock it is read against when it is a date), capped at
    :data:`RETRY_AFTER_CAP`, else an exponential back-off from half a second."""
    value = (retry_after or "").strip()
    backoff = min(0.5 * 2.0**attempt, RETRY_AFTER_CAP)
    if value.isascii() and value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        moment = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return backoff
    return min(max(float(moment) - now, 0.0), RETRY_AFTER_CAP)
