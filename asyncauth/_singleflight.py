"""A bounded, expiring cache whose misses are computed once however many tasks ask.

A pipeline copying 1,000 images asks for the same registry's credentials 1,000 times at once;
without this, that is 1,000 helper processes or metadata requests. The first asker (the leader)
computes; the others wait on an event. If the leader is cancelled (its chain found a better
answer, or its own timeout hit), the waiters are not stranded: one of them takes over. Failures
are shared with the tasks that were waiting but never cached.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import anyio

__all__ = ["SingleFlightCache"]

V = TypeVar("V")


class _Flight(Generic[V]):
    __slots__ = ("abandoned", "done", "error", "value")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: V | None = None
        self.error: Exception | None = None
        self.abandoned = False


class SingleFlightCache(Generic[V]):
    """``await cache.get(key, compute, ttl_of)``: cached, or computed once for all askers.

    ``ttl_of(value)`` says how many seconds a value stays fresh (``<= 0``: do not cache).
    At most ``maxsize`` values are kept; the least recently used goes first.
    """

    def __init__(self, *, maxsize: int = 4096, clock: Callable[[], float] = time.monotonic):
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._maxsize = maxsize
        self._clock = clock
        self._values: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._flights: dict[Hashable, _Flight[V]] = {}

    def __len__(self) -> int:
        return len(self._values)

    def peek(self, key: Hashable) -> tuple[bool, V | None]:
        """``(True, value)`` if ``key`` holds a fresh value, without computing anything."""
        item = self._values.get(key)
        if item is None:
            return False, None
        if item[0] <= self._clock():
            del self._values[key]
            return False, None
        self._values.move_to_end(key)
        return True, item[1]

    def put(self, key: Hashable, value: V, ttl: float) -> None:
        """Keep ``value`` for ``ttl`` seconds (``<= 0``: do not), computed elsewhere."""
        if ttl <= 0:
            return
        self._values[key] = (self._clock() + ttl, value)
        self._values.move_to_end(key)
        while len(self._values) > self._maxsize:
            self._values.popitem(last=False)

    def invalidate(self, key: Hashable) -> None:
        self._values.pop(key, None)

    def clear(self) -> None:
        self._values.clear()

    async def get(
        self,
        key: Hashable,
        compute: Callable[[], Awaitable[V]],
        ttl_of: Callable[[V], float],
    ) -> V:
        while True:
            hit, value = self.peek(key)
            if hit:
                return value  # type: ignore[return-value]
            flight = self._flights.get(key)
            if flight is None:
                break
            await flight.done.wait()
            if flight.abandoned:
                continue  # the leader was cancelled: someone (maybe us) computes again
            if flight.error is not None:
                raise flight.error
            return flight.value  # type: ignore[return-value]

        flight = _Flight[V]()
        self._flights[key] = flight
        try:
            value = await compute()
        except Exception as exc:
            flight.error = exc
            raise
        except BaseException:
            flight.abandoned = True
            raise
        else:
            flight.value = value
            self.put(key, value, ttl_of(value))
        finally:
            del self._flights[key]
            flight.done.set()
        return value
