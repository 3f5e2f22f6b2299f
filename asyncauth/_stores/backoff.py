"""A fleet's backoff from a registry: one small, bounded entry in the shared token store.

A registry that answers one process "not now" (429, or 503 with ``Retry-After``) has answered
the whole fleet: Docker Hub and ECR count an account's or an address's requests, not a
process's. So the process that got the answer records the pause in the store, under a name
derived from the registry's origin, and every process reads it before it sends that registry
anything from its flow, and waits until then (see :mod:`asyncauth._registry.pauses`).

The entry is a value like a token's: :class:`~asyncauth.RedisTokenStore` seals it (AES-GCM,
bound to its name), so nobody without the fleet's key can write one that opens. It is bounded
all the same, in size and in time, against a value kept longer than it should be (a TTL
changed by hand, an old value written back) and against a writer with the key that asks for
too much:

* it holds its own end and when it was recorded; a reader caps the end at
  ``min(recorded, now) + RETRY_AFTER_CAP`` (the one retry policy's cap on any ``Retry-After``,
  :mod:`asyncauth._http.retry`), so an entry that says "for a year" stops nobody for more than
  the cap, and an old one stops nobody at all;
* a value larger than :data:`MAX_ENTRY` bytes, or that is not an entry, is no pause (a miss);
* it lives in the store only as long as the pause (its TTL).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Final

from .._http.retry import RETRY_AFTER_CAP
from .shared import SharedStore

MAX_ENTRY: Final = 512
"""Bytes of the largest backoff entry read (one is about 100): a larger value is no pause."""
_WHO: Final = re.compile(r"[\x20-\x7e]{1,96}")


@dataclass(frozen=True, slots=True)
class FleetPause:
    """A pause some process of the fleet recorded for a registry: until ``until`` (wall clock),
    because of a ``status`` answer it got at ``recorded_at``; ``by`` names that process
    (``host pid N``: never a secret)."""

    until: float
    status: int
    recorded_at: float
    by: str


def material(origin: str) -> bytes:
    """The key material of ``origin``'s entry (the store turns it into a keyed name)."""
    return b"backoff\x00" + origin.encode("utf-8", "replace")


def this_process() -> str:
    """How an entry names the process that recorded it."""
    return f"{socket.gethostname()[:64]} pid {os.getpid()}"


def encode(pause: FleetPause) -> bytes:
    data = {"v": 1, "u": pause.until, "s": pause.status, "a": pause.recorded_at, "b": pause.by}
    return json.dumps(data).encode()


def decode(value: bytes, *, now: float, cap: float = RETRY_AFTER_CAP) -> FleetPause | None:
    """The pause in ``value``, its end capped (see the module docs); ``None`` when it is not an
    entry, too large, or already over."""
    if len(value) > MAX_ENTRY:
        return None
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("v") != 1:
        return None
    until, recorded = _seconds(data.get("u")), _seconds(data.get("a"))
    status, by = data.get("s"), data.get("b")
    if until is None or recorded is None or not isinstance(status, int):
        return None
    if not isinstance(by, str) or not _WHO.fullmatch(by) or not 100 <= status <= 599:
        return None
    end = min(until, min(recorded, now) + cap)
    return FleetPause(end, status, recorded, by) if end > now else None


def _seconds(value: object) -> float | None:
    """A finite number of seconds (since the epoch), or ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


async def read(fleet: SharedStore, origin: str) -> FleetPause | None:
    """The fleet's pause for ``origin``, if one is on (a failing store: none)."""
    name = fleet.name(material(origin))
    return await fleet.fetch(name, lambda value: decode(value, now=time.time()))


async def record(fleet: SharedStore, origin: str, pause: FleetPause) -> None:
    """Share ``pause`` with the fleet for as long as it lasts (capped here too)."""
    now = time.time()
    ttl = min(pause.until - now, RETRY_AFTER_CAP)
    if ttl > 0:
        await fleet.publish(fleet.name(material(origin)), encode(pause), ttl)


__all__ = ["MAX_ENTRY", "FleetPause", "decode", "encode", "material", "read", "record"]
