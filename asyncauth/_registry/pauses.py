"""What the handshake's state knows of registries' rate limits: pauses, and the low-quota warning.

* :class:`Pauses`: a registry that answered "not now" (429, or 503 with ``Retry-After``) is left
  alone until the time it asked for (capped by the one retry policy): by every request of this
  ``RegistryAuth`` (a warm route goes back to the flow, which waits), and, with a token store,
  by every process of the fleet (:mod:`asyncauth._stores.backoff`). A wait never outlasts the
  request's deadline: then :class:`~asyncauth.RateLimitedError` names the pause and where it
  came from.
* :class:`LimitWatch`: one WARNING when a registry's answers say less than 10 % of its rate
  limit is left, once per registry per window (not per request).

Both are the state's (:mod:`~asyncauth._registry.handshake`): the flow only says what it saw
(:class:`~asyncauth._registry.messages.Backoff`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import anyio

from .._errors import RateLimitedError
from .._http.retry import DEFAULT_RETRY, retry_after_seconds
from .._ratelimit import from_headers
from .._stores import backoff
from .._stores.shared import SharedStore

log = logging.getLogger("asyncauth.registry")

DEFAULT_WINDOW: Final = 3600.0
"""Seconds between two low-quota warnings for a registry that gives neither window nor reset."""
MAX_REGISTRIES: Final = 1024
"""Registries remembered (pauses, warnings); past it the oldest are forgotten."""


@dataclass(frozen=True, slots=True)
class Pause:
    """Leave a registry alone until ``until`` (``time.monotonic()``); ``reason`` says why and
    where from, for the error a request that cannot wait that long gets."""

    until: float
    reason: str
    asked: float | None = None
    """The seconds the registry asked for (its ``Retry-After``), if it said."""


def _bounded_put(table: dict[str, Pause] | dict[str, float], key: str, value: object) -> None:
    table.pop(key, None)
    table[key] = value  # type: ignore[assignment]
    while len(table) > MAX_REGISTRIES:
        del table[next(iter(table))]


class Pauses:
    """The pauses of one ``RegistryAuth``, shared with the fleet through ``fleet`` (if any).

    :meth:`paused` is for the warm path (no I/O); :attr:`version` changes whenever a pause is
    recorded, so a warm route knows to look again.
    """

    def __init__(self, fleet: SharedStore | None) -> None:
        self.fleet = fleet
        self.version = 0
        self._pauses: dict[str, Pause] = {}
        self._lock = threading.Lock()

    def paused(self, origin: str) -> bool:
        """Whether ``origin`` is paused now, as this process knows (no I/O)."""
        pause = self._pauses.get(origin)
        return pause is not None and time.monotonic() < pause.until

    def _keep(self, origin: str, pause: Pause) -> Pause:
        """Keep ``pause`` unless a longer one is on; the one that is on."""
        with self._lock:
            known = self._pauses.get(origin)
            if known is not None and known.until >= pause.until:
                return known
            _bounded_put(self._pauses, origin, pause)
            self.version += 1
        return pause

    async def current(self, origin: str, registry: str) -> Pause | None:
        """The pause on ``origin`` now: this process's, or the fleet's (read from the store)."""
        now = time.monotonic()
        pause = self._pauses.get(origin)
        if self.fleet is not None:
            shared = await backoff.read(self.fleet, origin)
            if shared is not None and (pause is None or pause.until < now + _left(shared)):
                pause = self._keep(origin, _from_fleet(shared, registry))
        return pause if pause is not None and pause.until > now else None

    async def record(self, origin: str, registry: str, status: int, asked: str | None) -> Pause:
        """The registry answered ``status`` with ``Retry-After: asked`` (or none): pause it as
        the retry policy says (shared with the fleet when it gave a time), and return the pause
        that is on now (the fleet's, when longer)."""
        wall = time.time()
        seconds = DEFAULT_RETRY.delay(1, asked, now=wall)
        told = f"Retry-After: {asked}" if asked is not None else "no Retry-After"
        reason = f"{registry} answered {status} ({told}) to a request of this process"
        own = Pause(time.monotonic() + seconds, reason, retry_after_seconds(asked, now=wall))
        on = await self.current(origin, registry)
        if on is not None and on.until >= own.until:
            return on
        kept = self._keep(origin, own)
        if self.fleet is not None and asked is not None and kept is own:
            pause = backoff.FleetPause(wall + seconds, status, wall, backoff.this_process())
            await backoff.record(self.fleet, origin, pause)
        return kept

    @staticmethod
    async def wait(pause: Pause, registry: str, remaining: float | None) -> None:
        """Wait ``pause`` out, or raise :class:`~asyncauth.RateLimitedError` at once when it
        ends after the request's deadline (``remaining`` seconds from now)."""
        seconds = pause.until - time.monotonic()
        if seconds <= 0:
            return
        if remaining is not None and seconds > remaining:
            raise RateLimitedError(
                f"{registry}: backing off for {seconds:.3g} s more, since {pause.reason}; "
                f"that is more than the {remaining:.3g} s left of this request's timeout",
                registry=registry,
                wait=pause.asked,
            )
        log.debug("%s: waiting %.3g s, since %s", registry, seconds, pause.reason)
        await anyio.sleep(seconds)

    def clear(self) -> None:
        with self._lock:
            self._pauses.clear()
            self.version += 1


def _left(shared: backoff.FleetPause) -> float:
    return shared.until - time.time()


def _from_fleet(shared: backoff.FleetPause, registry: str) -> Pause:
    ago = max(time.time() - shared.recorded_at, 0.0)
    reason = (
        f"{registry} answered {shared.status} to {shared.by} {ago:.2g} s ago (a backoff of "
        "the fleet, shared through the token store)"
    )
    return Pause(time.monotonic() + _left(shared), reason, shared.until - shared.recorded_at)


class LimitWatch:
    """One WARNING per registry per window when its answers say its rate limit is nearly used
    up (less than 10 % left): the user learns before the limit is hit, not from every request.
    """

    def __init__(self) -> None:
        self._quiet_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def observe(
        self,
        where: str,
        header: Callable[[str], str | None],
        origin_of: Callable[[str], str] | None = None,
    ) -> bool:
        """Read an answer's rate-limit headers (``header(name)``); warn if it is time to.
        Whether the answer reported a rate limit (a warm route stops reading answers that
        report none until it is looked up again).

        ``where`` is the answer's origin, or (with ``origin_of``) its URL, read only when there
        is something to warn about: most answers carry no rate limit."""
        limit = from_headers(header)
        if limit is None or not limit.low:
            return limit is not None
        origin = where if origin_of is None else origin_of(where)
        now = time.monotonic()
        with self._lock:
            if self._quiet_until.get(origin, 0.0) > now:
                return True
            quiet = limit.window or limit.reset or DEFAULT_WINDOW
            _bounded_put(self._quiet_until, origin, now + quiet)
        log.warning(
            "%s: the registry's rate limit is nearly used up: %s (warned once per window)",
            origin,
            limit.describe(),
        )
        return True


__all__ = ["DEFAULT_WINDOW", "LimitWatch", "Pause", "Pauses"]
