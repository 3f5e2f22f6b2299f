"""A :class:`~asyncauth.TokenStore` as its users see it: bounded, fault-tolerant, leased.

Everything in the library that asks a shared store (the token cache for access tokens, the chain
for cloud credentials) goes through :func:`shared`, which gives one :class:`SharedStore` per store
object. That is where the fleet's rules live, once:

* **A failing store is a miss.** Every call is bounded by :data:`SHARED_TIMEOUT`; an exception or
  a timeout makes the caller fetch for itself. The first failure warns (once per outage, however
  many auths and chains share the store) and says why when the store said so safely (a
  :class:`StoreUnavailable`); for :data:`RETRY_AFTER_FAILURE` seconds after a
  failure the store is not asked at all, so an outage costs requests nothing but the direct
  fetch, and the first call after that pause probes it. Recovery is logged.
* **Fleet-wide single flight.** :meth:`SharedStore.claim` answers a value some process stored,
  or a lease: the one caller in the fleet that gets the lease fetches and publishes, the others
  poll for its value. A lease expires (after the store's ``lease_time``), so
  a holder that dies holds nobody up for longer than that; a waiter whose patience runs out
  fetches for itself. After taking a lease the value is looked up once more: a holder that
  published and released between a waiter's two calls must not cause a second fetch.
* **A refused value is never read back.** :meth:`SharedStore.forget` (a token the registry
  refused) remembers the value in this process, whatever the store can do, so that reading it
  again is a miss and the fetch that follows replaces it for the fleet; a store that can forget
  (:class:`~asyncauth._stores.protocol.Forgetting`) is told too, and drops it for everyone.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

import anyio

from .protocol import Forgetting, TokenStore, lease_time_of

log = logging.getLogger("asyncauth.tokens")

V = TypeVar("V")

SHARED_TIMEOUT: Final = 5.0
"""Seconds one call to a shared store may take before it counts as a miss (a safety net: a store
bounds its own calls, :class:`~asyncauth.RedisTokenStore` at 2 s per command)."""
FIRST_CALL_TIMEOUT: Final = 15.0
"""The bound of a process's first calls to a store, until one has answered: they may load the
store's client library and connect (a busy machine starting many processes takes seconds)."""
RETRY_AFTER_FAILURE: Final = 1.0
"""Seconds a store that failed is left alone before one call probes it again."""
MAX_REFUSED: Final = 4096
"""Refused values a process remembers per store (past it, the oldest are forgotten)."""
_POLL: Final = 0.01
_MAX_POLL: Final = 0.1


class StoreUnavailable(ConnectionError):
    """A store failed; ``cause`` says why in words the store made safe to log (no password, no
    key, no value): the warning shows it. Any other exception is shown by its type alone, since
    nobody vouches for its message.

    ``wrong_type``: the failure was a value of another type under the name (something else
    wrote it); the reader makes that a miss rather than an outage.
    """

    def __init__(self, message: str, *, cause: str) -> None:
        super().__init__(message)
        self.cause = cause
        self.wrong_type = False


class _Failed:
    __slots__ = ()

    def __repr__(self) -> str:
        return "FAILED"


FAILED: Final = _Failed()
"""What :meth:`SharedStore.call` answers when the store failed or is being left alone."""


@dataclass(frozen=True, slots=True)
class Claim(Generic[V]):
    """What the fleet said about one name: its value, or the duty to fetch it.

    ``held``: this process holds the fleet's lease, and must publish (or release) when done.
    Without a value and without the lease the caller fetches anyway (the store failed, or the
    holder took too long), and must not release a lease it does not hold.
    """

    value: V | None
    held: bool = False


class SharedStore:
    """One store's calls, outage state and leases; get it with :func:`shared`."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store
        self.lease_time = lease_time_of(store)
        self._lock = threading.Lock()
        self._down_until: float | None = None
        self._answered = False
        self.forgets = isinstance(store, Forgetting) and callable(store.forget)
        """Whether the store drops refused values itself (else only this process knows)."""
        self._refused: dict[tuple[str, bytes], None] = {}  # (name, digest): oldest first

    def __repr__(self) -> str:
        return f"SharedStore({self.store!r})"

    @property
    def failing(self) -> bool:
        """Whether the last call failed (the store is in an outage)."""
        return self._down_until is not None

    def name(self, material: bytes) -> str:
        return self.store.name(material)

    async def call(self, method: str, *args: object) -> object:
        """``store.<method>(*args)``, bounded; :data:`FAILED` when it failed or was skipped."""
        down_until = self._down_until
        if down_until is not None and time.monotonic() < down_until:
            return FAILED
        try:
            with anyio.fail_after(SHARED_TIMEOUT if self._answered else FIRST_CALL_TIMEOUT):
                result: object = await getattr(self.store, method)(*args)
        except Exception as exc:
            self._failed(exc)
            return FAILED
        self._answered = True
        if self._down_until is not None:
            self._recovered()
        return result

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            first = self._down_until is None
            self._down_until = time.monotonic() + RETRY_AFTER_FAILURE
        if first:
            log.warning(
                "shared token store failed (%s); fetching tokens directly until it answers: %r",
                exc.cause if isinstance(exc, StoreUnavailable) else type(exc).__name__,
                self.store,
            )

    def _recovered(self) -> None:
        with self._lock:
            was_down, self._down_until = self._down_until is not None, None
        if was_down:
            log.warning("shared token store answers again: %r", self.store)

    async def fetch(self, name: str, decode: Callable[[bytes], V | None]) -> V | None:
        """The decoded value under ``name``, or ``None`` (absent, unusable, refused here, or a
        failure)."""
        value = await self.call("get", name)
        if not isinstance(value, bytes) or self._was_refused(name, value):
            return None
        return decode(value)

    async def forget(self, name: str, value: bytes) -> None:
        """``value`` under ``name`` was refused by its registry: from now on it is a miss here
        (so the next fetch replaces it for the fleet), and a store that can forget drops it."""
        with self._lock:
            self._refused[(name, _digest(value))] = None
            while len(self._refused) > MAX_REFUSED:
                del self._refused[next(iter(self._refused))]
        if self.forgets:
            await self.call("forget", name, value)

    def _was_refused(self, name: str, value: bytes) -> bool:
        if not self._refused:
            return False
        with self._lock:
            if (name, _digest(value)) not in self._refused:
                return False
        log.debug("the shared store gave back a value its registry refused; a miss")
        return True

    async def claim(
        self, name: str, decode: Callable[[bytes], V | None], *, wait: float | None
    ) -> Claim[V]:
        """A stored value, or the lease to fetch it for the fleet (see the module docs).

        ``wait`` is the caller's own patience (seconds); half of it at most is spent here (store
        calls included), so that a fetch of its own still fits in the rest.
        """
        limit = 1.5 * self.lease_time if wait is None else min(1.5 * self.lease_time, wait / 2)
        with anyio.move_on_after(None if wait is None else wait / 2):
            return await self._claim(name, decode, anyio.current_time() + limit)
        log.debug("the shared store took too long to answer; fetching")
        return Claim(None)

    async def _claim(
        self, name: str, decode: Callable[[bytes], V | None], deadline: float
    ) -> Claim[V]:
        pause = _POLL
        while True:
            value = await self.fetch(name, decode)
            if value is not None:
                return Claim(value)
            got = await self.call("lease", name, self.lease_time)
            if got is FAILED:
                return Claim(None)  # the store is down: fetch directly
            if got:
                value = await self.fetch(name, decode)
                if value is None:
                    return Claim(None, held=True)
                await self.release(name)
                return Claim(value)
            if anyio.current_time() >= deadline:
                log.debug("the fleet's lease on a token outlasted our patience; fetching")
                return Claim(None)
            await anyio.sleep(pause)
            pause = min(pause * 1.5, _MAX_POLL)

    async def publish(self, name: str, value: bytes, ttl: float) -> None:
        """Keep ``value`` for the fleet for ``ttl`` seconds (nothing when ``ttl <= 0``)."""
        if ttl > 0:
            await self.call("set", name, value, ttl)

    async def release(self, name: str) -> None:
        """Give the lease back; also when cancelled (bounded all the same)."""
        with anyio.CancelScope(shield=True):
            await self.call("release", name)


def _digest(value: bytes) -> bytes:
    """What a refused value is remembered by (not the value itself: it holds a token)."""
    return hashlib.blake2b(value, digest_size=16).digest()


_SHARED: weakref.WeakKeyDictionary[object, SharedStore] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def shared(store: TokenStore) -> SharedStore:
    """The one :class:`SharedStore` of ``store`` in this process (so one outage, one warning)."""
    with _SHARED_LOCK:
        try:
            found = _SHARED.get(store)
            if found is None:
                found = _SHARED[store] = SharedStore(store)
        except TypeError:  # a store that cannot be weakly referenced or hashed: its own state
            return SharedStore(store)
        return found
