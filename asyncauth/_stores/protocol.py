"""The token-store protocol: where tokens are shared beyond one process.

Every :class:`~asyncauth.RegistryAuth` keeps its tokens in process, and that is all most programs
need. A fleet (many processes, many machines) shares them through a :class:`TokenStore` passed
as ``RegistryAuth(token_store=...)``: on a miss, the process asks the store before the token
server, and the first process to miss takes a short lease so that the others wait for its token
instead of asking too. The store is never on the warm path.

The protocol is deliberately small (five methods, and one optional) so that a backend is easy to
write and easy to check. Its contract:

* ``name(material)`` turns key material into the name values are kept under. The material holds
  secrets (it identifies a credential): a store must derive names with a keyed hash (HMAC) and
  never keep or show the material itself.
* Values are serialised tokens (and the fleet's small backoff entries): a store must keep them
  confidential (encrypt) where others can read its backend, and drop them after ``ttl`` seconds.
* ``lease(name, ttl)`` is set-if-absent with expiry: ``True`` for the one caller that got it.
  ``release(name)`` gives back a lease this store object took (and only such a lease: a backend
  shared by processes must not delete a lease another process has taken since); it is called
  after the token was stored, and after a failed fetch so that another process may try at once.
* Every method must be bounded in time. A failure (exception) is treated as a miss: the caller
  fetches the token itself, so a broken store slows a fleet down but never fails a request.
* ``lease_time`` (seconds, a positive number) says how long a lease lasts: the longest a fleet
  waits for a process that died while fetching. Every store declares it (a class attribute will
  do); a class that subclasses :class:`TokenStore` inherits :data:`DEFAULT_LEASE_TIME`. A store
  without it is refused when it is handed to ``RegistryAuth`` or a chain, not at its first use.
* ``forget(name, value)`` (optional: the :class:`Forgetting` capability) is called when the
  registry refused a token that came from the store or went to it (``401 invalid_token``: keys
  rotated, token revoked); ``value`` is that token's value, as ``get`` gave it or ``set`` kept
  it. The store drops it unless a newer value replaced it since (compare and delete); a store
  that others can write to should also refuse it, and older values under ``name``, when they
  are written back (:class:`~asyncauth.RedisTokenStore` seals a generation into each value for
  that). Then no process reads the refused token back, and each pays at most one refused
  request for it. Like every method, it is bounded, and a failure is a miss.

  A store without ``forget`` still works: each process remembers what it was refused and takes
  that value for a miss, so its retry fetches a new token and ``set`` replaces the refused one
  for the fleet. Each process still pays at most one refused request per refused token; what it
  lacks is the store's own memory: until the new value is set, a process that never held the
  refused token may read it once (and pay that one refusal), and a refused value written back
  later is used by every process that has not refused it itself.

:class:`~asyncauth.MemoryTokenStore` (:mod:`.memory`) is the reference implementation, and
:class:`~asyncauth.RedisTokenStore` the backend for fleets of processes and machines.
"""

from __future__ import annotations

import math
from typing import Final, Protocol, runtime_checkable

DEFAULT_LEASE_TIME: Final = 10.0
"""Seconds a process holds the fleet-wide lease while it fetches, unless its store says else;
the lease expires by itself if the process dies."""


@runtime_checkable
class TokenStore(Protocol):
    """A store shared by processes; see the module documentation for the contract.

    A store may also define ``async forget(name, value)``: the registry refused that value's
    token, so the store drops it unless a newer one replaced it. A store without it still
    works: each process takes a value it was refused for a miss, and the new token's ``set``
    replaces it (docs/fleet.md, "When a registry refuses a shared token").
    """

    lease_time: float = DEFAULT_LEASE_TIME
    """Seconds a lease lasts (declared by every store; inherited by subclasses)."""

    def name(self, material: bytes) -> str:
        """A keyed-hash name for ``material`` (which holds secrets)."""
        ...

    async def get(self, name: str) -> bytes | None:
        """The value kept under ``name``, or ``None``."""
        ...

    async def set(self, name: str, value: bytes, ttl: float) -> None:
        """Keep ``value`` under ``name`` for ``ttl`` seconds."""
        ...

    async def lease(self, name: str, ttl: float) -> bool:
        """Take the lease on ``name`` for ``ttl`` seconds unless someone holds it."""
        ...

    async def release(self, name: str) -> None:
        """Give the lease on ``name`` back (early; it expires anyway)."""
        ...


@runtime_checkable
class Forgetting(Protocol):
    """A :class:`TokenStore` that drops a value its registry refused, for the whole fleet (the
    optional ``forget`` of the contract; a store without it gets the default described there).
    """

    async def forget(self, name: str, value: bytes) -> None:
        """``value`` under ``name`` was refused: drop it unless a newer value replaced it."""
        ...


def lease_time_of(store: object) -> float:
    """``store.lease_time``, checked: a store must declare it, as a positive finite number.

    Called when a store is handed over (``RegistryAuth``, a chain), so that a store written
    before ``lease_time`` was part of the protocol is refused at once, naming the rule.
    """
    try:
        lease_time = store.lease_time  # type: ignore[attr-defined]
    except AttributeError:
        raise TypeError(
            f"{type(store).__name__} has no lease_time: a TokenStore declares how long its "
            f"leases last, in seconds (a class attribute will do; asyncauth's stores use "
            f"{DEFAULT_LEASE_TIME:g}), or subclasses asyncauth.TokenStore"
        ) from None
    number = isinstance(lease_time, int | float) and not isinstance(lease_time, bool)
    if not number or not 0 < lease_time < math.inf:
        raise ValueError(f"{type(store).__name__}.lease_time must be a positive number")
    return float(lease_time)
