"""One request as the flow sees it: what it is about, and what has been decided for it."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from .._resolution import Resolution
from .._resource import Resource
from .challenge import Challenge
from .scope import ScopeSet, infer_scopes, repository_from_path
from .target import Target


@dataclass(frozen=True, slots=True)
class Need:
    """What a request is about: its repository (as a resource) and the scopes it needs."""

    resource: Resource
    scopes: ScopeSet


@functools.lru_cache(maxsize=4096)
def need_of(registry: str, method: str, path: str, query: bytes) -> Need:
    """:class:`Need` from a request's line; cached, as requests repeat the same few routes."""
    return Need(Resource(registry, repository_from_path(path)), infer_scopes(method, path, query))


@dataclass(slots=True)
class Call:
    """One request on its way through the flow, and what has been decided about it."""

    request: httpx.Request
    target: Target
    need: Need
    replayable: bool
    challenge: Challenge | None = None
    resolution: Resolution | None = None


def budget(request: httpx.Request) -> float | None:
    """How long waiting for another task's token may take: what this request's own token
    request could take (its client's timeouts), so that no wait is unbounded."""
    timeout = request.extensions.get("timeout")
    if not isinstance(timeout, Mapping):
        return None
    parts = [timeout.get(k) for k in ("connect", "write", "read", "pool")]
    if any(p is None for p in parts):
        return None
    return float(sum(parts))  # type: ignore[arg-type]
