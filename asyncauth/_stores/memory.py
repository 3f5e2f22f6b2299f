"""The token store of one process: :class:`MemoryTokenStore`, the protocol's reference.

It shares tokens between several ``RegistryAuth`` objects of one program, and shows in a few
lines what the contract in :mod:`.protocol` asks of a backend.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from .protocol import DEFAULT_LEASE_TIME


class MemoryTokenStore:
    """A :class:`~asyncauth.TokenStore` in this process, shared by several ``RegistryAuth``.

    Useful when a program builds more than one auth (one per client, per tenant...) and as the
    reference implementation of the protocol. Values never leave the process, so they are kept
    as they are; names are keyed with a random per-instance key all the same.
    """

    lease_time: float = DEFAULT_LEASE_TIME
    """Seconds a lease lasts (see :class:`~asyncauth.TokenStore`)."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._values: dict[str, tuple[float, bytes]] = {}
        self._leases: dict[str, float] = {}
        self.gets = 0
        """How many ``get`` calls reached the store (for tests and benchmarks)."""

    def __repr__(self) -> str:
        return f"MemoryTokenStore({len(self._values)} values)"

    def name(self, material: bytes) -> str:
        """An HMAC of ``material`` with this store's random key."""
        return hmac.new(self._key, material, hashlib.sha256).hexdigest()

    async def get(self, name: str) -> bytes | None:
        """The value under ``name`` while it is fresh, else ``None``."""
        self.gets += 1
        item = self._values.get(name)
        if item is None or item[0] <= time.monotonic():
            self._values.pop(name, None)
            return None
        return item[1]

    async def set(self, name: str, value: bytes, ttl: float) -> None:
        """Keep ``value`` for ``ttl`` seconds (not at all when ``ttl <= 0``)."""
        if ttl > 0:
            self._values[name] = (time.monotonic() + ttl, value)

    async def forget(self, name: str, value: bytes) -> None:
        """Drop ``value`` under ``name`` (its registry refused it) unless another replaced it."""
        item = self._values.get(name)
        if item is not None and item[1] == value:
            del self._values[name]

    async def lease(self, name: str, ttl: float) -> bool:
        """Take the lease on ``name`` for ``ttl`` seconds unless another holds it."""
        now = time.monotonic()
        if self._leases.get(name, 0.0) > now:
            return False
        self._leases[name] = now + ttl
        return True

    async def release(self, name: str) -> None:
        """Give the lease on ``name`` back."""
        self._leases.pop(name, None)
