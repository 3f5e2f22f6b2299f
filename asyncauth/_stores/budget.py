"""A fleet's call budget: at most one call per interval under one name, across every process.

Some APIs limit an account, not a process: ECR's ``GetAuthorizationToken`` is documented at
about one call per second per account and region. A fleet sharing its answers through the store
already makes one call per registry, but a cold fleet that needs many registries of one region
(or renews them all at once) would still make its calls together. So each call first takes a
*slot*: the store's lease on the budget's name, held for the interval and never given back
(it expires by itself); a process that does not get it polls until it does.

The store's rules hold: a failing store (or one that does not answer in time) gives the call
its slot, since a budget is a courtesy to the API and never the reason a lookup fails; a lease
set by hand without an expiry, or a longer one, is taken over (:class:`~asyncauth.RedisTokenStore`
does that), so nobody can hold a fleet's calls up for longer than one interval.
"""

from __future__ import annotations

import secrets
from typing import Final

import anyio

from .protocol import TokenStore
from .shared import FAILED, shared

POLL: Final = 0.05
"""Seconds between two tries for a slot (jittered up to twice that)."""


def budget_material(api: str, scope: str) -> bytes:
    """The key material of one budget: the API and what its limit counts (a region...)."""
    return b"budget\x00" + api.encode() + b"\x00" + scope.encode()


async def take_slot(store: TokenStore, material: bytes, interval: float, wait: float) -> bool:
    """Take the next slot of the budget ``material`` names (one call per ``interval``
    seconds, fleet-wide), waiting at most ``wait`` seconds; ``False`` when none came free."""
    fleet = shared(store)
    name = fleet.name(material)
    with anyio.move_on_after(wait):
        while True:
            got = await fleet.call("lease", name, interval)
            if got is FAILED or got:
                return True
            await anyio.sleep(POLL * (1 + secrets.SystemRandom().random()))
    return False


__all__ = ["POLL", "budget_material", "take_slot"]
