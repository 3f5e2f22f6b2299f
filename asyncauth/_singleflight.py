"""The one single-flight, expiring store: a value is computed once however many ask for it.

A pipeline copying 1,000 images asks for the same credential (and the same token) 1,000 times at
once; without this, that is 1,000 helper processes, metadata requests or token requests. The chain,
the credential helpers and the handshake all keep what they compute here.

Tasks (asyncio or trio) ``await acquire(key)``; there is no blocking twin: sync callers run
their lookups on one background event loop (:mod:`asyncauth._registry.background`). In-flight
computations are kept *per event loop*: a task only ever waits on an event of its own loop, so one
store can serve several loops (an ``httpx.AsyncClient`` in one thread, the background loop in
another). Values are shared by everybody, read from any thread (the warm path peeks without a
loop); a lock guards the tables and is never held while waiting.

A forked child starts with no computation in flight and fresh locks (``os.register_at_fork``):
the parent's in-flight entries belong to event loops that do not exist in the child, and a lock
another thread held at the fork would never be released there.

A failure is shared with every waiter as a copy of its own (one exception object raised in many
tasks would gather all their tracebacks).

Bounds. ``maxsize`` bounds how many values are kept, and ``budget`` (with ``cost``) how many bytes
they take: a value several keys hold (a token that covers many scopes) is counted once. When a
bound is passed, values whose time has run out go first, then the least recently used.

The asker that finds nothing *leads*: it gets a :class:`Lead` and must end it with exactly one of
:meth:`Lead.settle` (waiters get the value), :meth:`Lead.fail` (waiters raise the error; nothing
is cached) or :meth:`Lead.abandon` (the leader was cancelled or interrupted: waiters look again
and one of them takes over). :meth:`SingleFlightCache.get` does all of that around a coroutine.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import itertools
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterator
from typing import Any, Final, Generic, TypeVar

import anyio
import anyio.lowlevel

V = TypeVar("V")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""What :meth:`SingleFlightCache.peek` answers for a key without a fresh value."""


class _Flight:
    __slots__ = ("abandoned", "error", "event", "value")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.value: Any = MISSING
        self.error: Exception | None = None
        self.abandoned = False


class Lead(Generic[V]):
    """The duty to compute ``key``'s value for everyone waiting on it; end it exactly once."""

    __slots__ = ("_cache", "_done", "_flight", "_slot", "key")

    def __init__(self, cache: SingleFlightCache[V], slot: tuple[object, Hashable], flight: _Flight):
        self._cache = cache
        self._slot = slot
        self._flight = flight
        self._done = False
        self.key = slot[1]

    def settle(self, value: V, ttl: float) -> None:
        """Hand ``value`` to the waiters and keep it for ``ttl`` seconds (``<= 0``: do not)."""
        self._cache.put(self.key, value, ttl)
        self._end(value=value)

    def fail(self, error: Exception) -> None:
        """Make every waiter raise ``error``; nothing is cached."""
        self._end(error=error)

    def abandon(self) -> None:
        """Give up without an answer (cancelled): waiters look again, one of them leads."""
        self._end(abandoned=True)

    @contextlib.contextmanager
    def computing(self) -> Iterator[None]:
        """Around the computation: an ``Exception`` fails the waiters, anything else (a
        cancellation) abandons the lead to them."""
        try:
            yield
        except Exception as exc:
            self.fail(exc)
            raise
        except BaseException:
            self.abandon()
            raise

    def _end(
        self, *, value: Any = MISSING, error: Exception | None = None, abandoned: bool = False
    ) -> None:
        if self._done:
            return
        self._done = True
        flight = self._flight
        flight.value, flight.error, flight.abandoned = value, error, abandoned
        with self._cache._lock:
            if self._cache._flights.get(self._slot) is flight:
                del self._cache._flights[self._slot]
        flight.event.set()


class SingleFlightCache(Generic[V]):
    """A bounded LRU of expiring values whose misses are computed once per loop (or thread set).

    ``maxsize`` bounds the values kept (``None``: no count bound); ``budget`` the bytes they
    take as ``cost(key, value)`` counts them: ``(bytes of the key's entry, bytes of the value)``,
    a value held under several keys counted once. Past a bound, expired values go first, then
    the least recently used. ``clock`` (monotonic seconds) is replaceable for tests.
    """

    def __init__(
        self,
        *,
        maxsize: int | None = 4096,
        budget: int | None = None,
        cost: Callable[[Hashable, V], tuple[int, int]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if maxsize is not None and maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        if budget is not None and (budget < 1 or cost is None):
            raise ValueError("a budget must be at least 1 byte, and needs a cost")
        self._maxsize = maxsize
        self._budget = budget
        self._cost = cost
        self._clock = clock
        self._lock = threading.Lock()
        self._values: OrderedDict[Hashable, tuple[float, V, int]] = OrderedDict()
        """key -> (deadline, value, bytes of the key's entry)."""
        self._held: dict[int, list[int]] = {}
        """id(value) -> [how many keys hold it, its bytes]: a shared value is counted once."""
        self.bytes = 0
        """What the values kept take, as ``cost`` counts (0 without one)."""
        self._expiries: list[tuple[float, int, Hashable]] = []
        """A heap of (deadline, tie-breaker, key): what to drop first when a bound is passed.
        Entries whose key was dropped or kept again since are stale and skipped."""
        self._ties = itertools.count()
        self.version = 0
        """Bumped whenever a value is added, replaced or removed: a reader that remembered what
        it found (the aiohttp middleware's routes) may use it without a lookup while the version
        is the same and the value's :meth:`deadline` has not passed."""
        self._flights: dict[tuple[object, Hashable], _Flight] = {}
        _CACHES.add(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._flights = {}

    def __len__(self) -> int:
        return len(self._values)

    # --- values ---------------------------------------------------------------------------

    def peek(self, key: Hashable) -> V | _Missing:
        """The fresh value of ``key``, or :data:`MISSING`; computes nothing."""
        with self._lock:
            return self._fresh(key)

    def _fresh(self, key: Hashable) -> V | _Missing:
        item = self._values.get(key)
        if item is None:
            return MISSING
        if item[0] <= self._clock():
            self._drop(key)
            self.version += 1
            return MISSING
        self._values.move_to_end(key)
        return item[1]

    def deadline(self, key: Hashable) -> float | None:
        """When ``key``'s value stops being fresh (on ``clock``), or ``None`` if there is none."""
        with self._lock:
            item = self._values.get(key)
            return None if item is None else item[0]

    def put(self, key: Hashable, value: V, ttl: float) -> None:
        """Keep ``value`` for ``ttl`` seconds (``<= 0``: do not), computed elsewhere."""
        if ttl <= 0:
            return
        with self._lock:
            item = self._values.get(key)
            if item is not None and (item[1] is value or item[1] == value):
                # The same again (a challenge learnt anew): a later deadline for the value
                # readers already hold, and no new version, so nothing they built on it is
                # thrown away (the warm path rechecks deadlines when they pass).
                value = item[1]
            else:
                self.version += 1
            if item is not None:
                self._drop(key)
            self._add(key, value, self._clock() + ttl)
            self._shrink()

    def invalidate(self, key: Hashable) -> None:
        with self._lock:
            self.version += 1
            if key in self._values:
                self._drop(key)

    def discard(self, key: Hashable, value: V) -> bool:
        """Drop ``key`` if ``value`` is still what it holds (not a value put since); whether
        it was dropped. One step under the lock: no other thread's value is dropped instead."""
        with self._lock:
            item = self._values.get(key)
            if item is None or item[1] is not value:
                return False
            self.version += 1
            self._drop(key)
            return True

    def clear(self) -> None:
        with self._lock:
            self.version += 1
            self._values.clear()
            self._held.clear()
            self._expiries.clear()
            self.bytes = 0

    # --- bounds (under the lock) ----------------------------------------------------------

    def _add(self, key: Hashable, value: V, deadline: float) -> None:
        entry = 0
        if self._cost is not None:
            entry, size = self._cost(key, value)
            held = self._held.get(id(value))
            if held is None:
                self._held[id(value)] = [1, size]
                self.bytes += size
            else:
                held[0] += 1
            self.bytes += entry
        self._values[key] = (deadline, value, entry)
        heapq.heappush(self._expiries, (deadline, next(self._ties), key))

    def _drop(self, key: Hashable) -> None:
        _, value, entry = self._values.pop(key)
        if self._cost is not None:
            self.bytes -= entry
            held = self._held[id(value)]
            held[0] -= 1
            if held[0] == 0:
                del self._held[id(value)]
                self.bytes -= held[1]

    def _over(self) -> bool:
        return (self._maxsize is not None and len(self._values) > self._maxsize) or (
            self._budget is not None and self.bytes > self._budget
        )

    def _shrink(self) -> None:
        """Drop values until the bounds hold: expired ones first, then the least recently used."""
        expiries, values = self._expiries, self._values
        now = self._clock()
        while self._over():
            if expiries and expiries[0][0] <= now:
                deadline, _, key = heapq.heappop(expiries)
                item = values.get(key)
                if item is not None and item[0] == deadline:
                    self._drop(key)
                continue
            self._drop(next(iter(values)))
        if len(expiries) > 2 * len(values) + 64:  # mostly stale: rebuild
            self._expiries = [(item[0], next(self._ties), k) for k, item in values.items()]
            heapq.heapify(self._expiries)

    # --- single flight --------------------------------------------------------------------

    def _claim(self, context: object, key: Hashable) -> Any:
        """The value, a :class:`Lead`, or the :class:`_Flight` to wait for (under the lock)."""
        slot = (context, key)
        with self._lock:
            value = self._fresh(key)
            if value is not MISSING:
                return value
            flight = self._flights.get(slot)
            if flight is not None:
                return flight
            flight = self._flights[slot] = _Flight()
        return Lead(self, slot, flight)

    def lead_now(self, key: Hashable) -> Lead[V] | None:
        """The lead for ``key`` when it has no fresh value and nobody in this event loop is
        computing it; ``None`` otherwise (never waits: for work that may be left to others)."""
        got = self._claim(anyio.lowlevel.current_token(), key)
        return got if isinstance(got, Lead) else None

    async def acquire(self, key: Hashable, *, wait: float | None = None) -> V | Lead[V]:
        """The value of ``key``, or a :class:`Lead` when this task must compute it.

        ``wait`` bounds the time spent waiting for another task's computation (``TimeoutError``
        when it runs out); ``None`` waits as long as the computation takes.
        """
        context = anyio.lowlevel.current_token()
        deadline = None if wait is None else anyio.current_time() + wait
        while True:
            got = self._claim(context, key)
            if not isinstance(got, _Flight):
                return got  # type: ignore[no-any-return]
            remaining = None if deadline is None else deadline - anyio.current_time()
            with anyio.move_on_after(remaining) as scope:
                await got.event.wait()
            if scope.cancelled_caught:
                raise TimeoutError(f"waited {wait:g} s for a computation made by another caller")
            if not got.abandoned:
                return self._outcome(got)

    @staticmethod
    def _outcome(flight: _Flight) -> V:
        if flight.error is not None:
            raise _copy(flight.error)
        return flight.value  # type: ignore[no-any-return]

    async def get(
        self,
        key: Hashable,
        compute: Callable[[], Awaitable[V]],
        ttl_of: Callable[[V], float],
    ) -> V:
        """The value of ``key``, computed by ``await compute()`` once for all concurrent askers.

        ``ttl_of(value)`` says how long it stays fresh. A failure is shared with the tasks that
        were waiting, never cached; a cancelled computation is taken over by a waiter.
        """
        got = await self.acquire(key)
        if not isinstance(got, Lead):
            return got
        with got.computing():
            value = await compute()
        got.settle(value, ttl_of(value))
        return value


def _copy(error: Exception) -> Exception:
    """A fresh copy of ``error`` for one waiter (the original if it cannot be copied)."""
    try:
        fresh = copy.copy(error)
    except Exception:  # an exception type that cannot be rebuilt from its args
        return error
    fresh.__cause__, fresh.__traceback__ = error.__cause__, None
    return fresh


_CACHES: weakref.WeakSet[SingleFlightCache[Any]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cache in list(_CACHES):
        cache._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
