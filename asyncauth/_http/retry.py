"""The one retry policy for answers that say "not now": token servers and cloud APIs alike.

HTTP 429 and 503 (and AWS's throttling codes, which the ECR resolver reads as the same) mean
"not now" rather than "no": the call is made again, at most :data:`MAX_ATTEMPTS` times in all.
Each pause is an exponential back-off with jitter, from :data:`BACKOFF` up to
:data:`MAX_BACKOFF`, or the server's ``Retry-After`` when it asks for longer, honoured up to
:data:`RETRY_AFTER_CAP` -- one cap for every caller (the token fetch, the clouds' own calls,
azure-core's pauses). A refusal (401, 403, access denied) is never retried: asking again with
the same identity cannot change the answer. The caller's own bound still holds over the whole:
a token request's deadline, a cloud lookup's timeout.
"""

from __future__ import annotations

import email.utils
import math
import re
import secrets
import time
from dataclasses import dataclass
from typing import Final

RETRY_STATUSES: Final = frozenset({429, 503})
"""HTTP statuses that mean "not now" rather than "no": retried with backoff."""
MAX_ATTEMPTS: Final = 3
"""Tries of one call in all, when the server keeps answering "not now"."""
BACKOFF: Final = 0.5
"""Seconds of the first pause's ceiling (the pause is jittered between half of it and all)."""
MAX_BACKOFF: Final = 2.0
"""The ceiling of any back-off pause, in seconds."""
RETRY_AFTER_CAP: Final = 5.0
"""The longest ``Retry-After`` honoured, in seconds; longer ones wait this long."""

_DELTA_SECONDS = re.compile(r"[0-9]+")
_LONGEST_DELTA: Final = 999_999_999.0
"""What a delta-seconds value of ten digits or more reads as (it is capped anyway)."""


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` (delta-seconds or an HTTP date) as seconds from ``now``; ``None`` if absent
    or unreadable. Never negative; the caller caps it."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and _DELTA_SECONDS.fullmatch(text):
        return float(int(text)) if len(text) < 10 else _LONGEST_DELTA
    try:
        when = email.utils.parsedate_to_datetime(text)
        seconds = when.timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries: ``attempts`` in all, exponential backoff with jitter from ``backoff``
    seconds up to ``max_backoff``, and a server's ``Retry-After`` honoured up to
    ``max_retry_after`` seconds. The defaults are this module's constants (:data:`DEFAULT_RETRY`);
    tests and callers with their own needs build another."""

    attempts: int = MAX_ATTEMPTS
    backoff: float = BACKOFF
    max_backoff: float = MAX_BACKOFF
    max_retry_after: float = RETRY_AFTER_CAP

    def delay(
        self, attempt: int, retry_after: str | None = None, *, now: float | None = None
    ) -> float:
        """Seconds to wait after the ``attempt``-th (1-based) "not now" answer."""
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** min(attempt - 1, 30))
        backoff = ceiling * (0.5 + 0.5 * secrets.SystemRandom().random())
        asked = retry_after_seconds(retry_after, now=now)
        if asked is None:
            return backoff
        return max(backoff, min(asked, self.max_retry_after))


DEFAULT_RETRY: Final = RetryPolicy()
"""The policy every caller uses unless it is given another."""
