"""The token-store protocol: where tokens are shared beyond one process.

Every :class:`~asyncauth.RegistryAuth` keeps its tokens in process, and that is all most programs
need. A fleet (many processes, many machines) shares them through a :class:`TokenStore` passed
as ``RegistryAuth(token_store=...)``: on a miss, the process asks the store before the token
server, and the first process to miss takes a short lease so that the others wait for its token
instead of asking too. The store is never on the warm path.

The protocol is deliberately small (five methods) so that a backend is easy to write and easy to
check. Its contract:

* ``name(material)`` turns key material into the name values are kept under. The material holds
  secrets (it identifies a credential): a store must derive names with a keyed hash (HMAC) and
  never keep or show the material itself.
* Values are serialised tokens: a store must keep them confidential (encrypt) where others can
  read its backend, and drop them after ``ttl`` seconds.
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
    """A store shared by processes; see the module documentation for the contract."""

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
