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
* Optionally, a ``lease_time`` attribute (seconds, default 10) says how long a lease lasts: the
  longest a fleet waits for a process that died while fetching.

:class:`~asyncauth.RedisTokenStore` is the backend for fleets of processes and machines.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class TokenStore(Protocol):
    """A store shared by processes; see the module documentation for the contract."""

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


class MemoryTokenStore:
    """A :class:`TokenStore` in this process: shares tokens between several ``RegistryAuth``.

    Useful when a program builds more than one auth (one per client, per tenant...) and as the
    reference implementation of the protocol. Values never leave the process, so they are kept
    as they are; names are keyed with a random per-instance key all the same.
    """

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._values: dict[str, tuple[float, bytes]] = {}
        self._leases: dict[str, float] = {}
        self.gets = 0
        """How many ``get`` calls reached the store (for tests and benchmarks)."""

    def __repr__(self) -> str:
        return f"MemoryTokenStore({len(self._values)} values)"

    def name(self, material: bytes) -> str:
        return hmac.new(self._key, material, hashlib.sha256).hexdigest()

    async def get(self, name: str) -> bytes | None:
        self.gets += 1
        item = self._values.get(name)
        if item is None or item[0] <= time.monotonic():
            self._values.pop(name, None)
            return None
        return item[1]

    async def set(self, name: str, value: bytes, ttl: float) -> None:
        if ttl > 0:
            self._values[name] = (time.monotonic() + ttl, value)

    async def lease(self, name: str, ttl: float) -> bool:
        now = time.monotonic()
        if self._leases.get(name, 0.0) > now:
            return False
        self._leases[name] = now + ttl
        return True

    async def release(self, name: str) -> None:
        self._leases.pop(name, None)
