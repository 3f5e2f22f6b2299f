"""The ordered concurrent chain: imgpkg's precedence without imgpkg's waiting.

imgpkg asks its sources one after another, so every source that has to time out (a metadata
server off-cloud) adds its whole timeout to every lookup. :class:`Chain` starts every resolver
at once, in one task group, each under its own timeout, and then *reads* the answers in
precedence order: as soon as every resolver above the first one with a credential has finished
without one, that credential is returned and whatever is still running is cancelled. The result
is the same as the sequential walk; the cost is the slowest resolver that has to be waited for,
not the sum.

A resolver is any object with a ``name`` and an ``async resolve(resource)``. Optional attributes
refine how the chain treats it:

``timeout``
    seconds it may take (default :data:`DEFAULT_RESOLVER_TIMEOUT`).
``cache_key(resource)``
    for resolvers that do I/O: a hashable key such that every resource with that key gets the
    same answer (``None``: do not cache this one). Concurrent lookups of one key share one
    in-flight call (single-flight), and answers are kept until the credential's ``expires_at``
    or for ``cache_ttl`` seconds (default :data:`DEFAULT_CACHE_TTL`).
``claims(resource)``
    a pure, cheap predicate: ``False`` means "not my host", and the resolver is not even
    started (the trace says ``no match``). The cloud resolvers use it, so that a Docker Hub
    lookup costs no task per cloud.
``explain(resource)``
    a short, secret-free note on *why* it matched, shown in the trace.
``disable_hint``
    how a user turns the source off, shown when it times out or fails.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import anyio

from ._credentials import Credential
from ._errors import ConfigError, ResolverUnavailableError
from ._resource import Resource
from ._singleflight import SingleFlightCache

__all__ = [
    "DEFAULT_CACHE_TTL",
    "DEFAULT_RESOLVER_TIMEOUT",
    "Chain",
    "Outcome",
    "Resolution",
    "Resolver",
    "TraceEntry",
]

DEFAULT_RESOLVER_TIMEOUT = 10.0
"""Seconds a resolver without its own ``timeout`` attribute may take."""
DEFAULT_CACHE_TTL = 300.0
"""Seconds a cached answer without ``expires_at`` stays fresh."""
EXPIRY_MARGIN = 30.0
"""Credentials are dropped from the cache this many seconds before they expire."""


@runtime_checkable
class Resolver(Protocol):
    """A source of credentials. ``None`` means "no opinion, ask the next source"."""

    name: str

    async def resolve(self, resource: Resource) -> Credential | None: ...


class Outcome(enum.StrEnum):
    """What one resolver did during one resolution."""

    MATCHED = "matched"
    NO_MATCH = "no match"
    SKIPPED = "skipped"
    TIMED_OUT = "timed out"
    UNAVAILABLE = "unavailable"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One resolver's part in a resolution; ``duration`` is in seconds."""

    resolver: str
    outcome: Outcome
    duration: float
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    """The chain's answer: the credential, which source gave it, and how every source fared.

    When no source matched, ``credential`` is anonymous and ``source`` is ``None``.
    """

    resource: Resource
    credential: Credential
    source: str | None
    trace: tuple[TraceEntry, ...]


class _Slot:
    __slots__ = ("config_error", "credential", "detail", "done", "duration", "outcome")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.outcome = Outcome.SKIPPED
        self.credential: Credential | None = None
        self.detail: str | None = None
        self.duration = 0.0
        self.config_error: ConfigError | None = None


def _seconds(value: float) -> str:
    return f"{value:g} s"


class Chain:
    """Resolvers in precedence order, run concurrently, answered in order.

    ``timeout`` bounds a whole :meth:`resolve` (seconds); each resolver is also bounded by its
    own ``timeout`` attribute. Answers of caching resolvers are kept per chain, so build a chain
    once and reuse it.
    """

    def __init__(
        self,
        resolvers: Iterable[Resolver],
        *,
        timeout: float | None = None,
        cache_size: int = 4096,
    ) -> None:
        self.resolvers: tuple[Resolver, ...] = tuple(resolvers)
        for resolver in self.resolvers:
            if not isinstance(getattr(resolver, "name", None), str) or not callable(
                getattr(resolver, "resolve", None)
            ):
                raise TypeError(f"{resolver!r} is not a resolver (needs .name and .resolve())")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self._caches = [
            SingleFlightCache[Credential | None](maxsize=cache_size) for _ in self.resolvers
        ]

    def __repr__(self) -> str:
        names = ", ".join(r.name for r in self.resolvers)
        return f"Chain([{names}], timeout={self.timeout!r})"

    async def resolve(self, resource: Resource | str) -> Resolution:
        """Resolve credentials for an image reference or :class:`Resource`.

        Raises :class:`~asyncauth.ConfigError` if a source that had to be consulted found the
        user's configuration broken; every other failure is recorded in the trace.
        """
        resource = Resource.parse(resource)
        slots = [_Slot() for _ in self.resolvers]
        deadline = None if self.timeout is None else anyio.current_time() + self.timeout
        decided = len(slots)
        async with anyio.create_task_group() as tg:
            for index, resolver in enumerate(self.resolvers):
                claims = getattr(resolver, "claims", None)
                if claims is not None and not claims(resource):
                    slots[index].outcome, slots[index].detail = Outcome.NO_MATCH, "not its host"
                    slots[index].done.set()
                    continue
                tg.start_soon(self._run, index, resolver, resource, slots[index], deadline)
            for index, slot in enumerate(slots):
                await slot.done.wait()
                if slot.config_error is not None or slot.outcome is Outcome.MATCHED:
                    decided = index
                    break
            tg.cancel_scope.cancel()

        if decided == len(slots):
            return Resolution(resource, Credential.anonymous(), None, self._trace(slots, decided))
        winner = slots[decided]
        if winner.config_error is not None:
            raise winner.config_error
        assert winner.credential is not None
        return Resolution(
            resource, winner.credential, self.resolvers[decided].name, self._trace(slots, decided)
        )

    def _trace(self, slots: Sequence[_Slot], decided: int) -> tuple[TraceEntry, ...]:
        entries = []
        for index, (resolver, slot) in enumerate(zip(self.resolvers, slots, strict=True)):
            if index <= decided:
                entries.append(TraceEntry(resolver.name, slot.outcome, slot.duration, slot.detail))
            else:
                winner = self.resolvers[decided].name
                entries.append(
                    TraceEntry(
                        resolver.name,
                        Outcome.SKIPPED,
                        slot.duration,
                        f"not needed: {winner} comes first",
                    )
                )
        return tuple(entries)

    async def _run(
        self,
        index: int,
        resolver: Resolver,
        resource: Resource,
        slot: _Slot,
        deadline: float | None,
    ) -> None:
        own = float(getattr(resolver, "timeout", None) or DEFAULT_RESOLVER_TIMEOUT)
        limit, by_chain = own, False
        if deadline is not None and deadline - anyio.current_time() < own:
            limit, by_chain = max(0.0, deadline - anyio.current_time()), True
        hint = getattr(resolver, "disable_hint", None)
        started = time.perf_counter()
        try:
            with anyio.move_on_after(limit) as scope:
                credential = await self._call(index, resolver, resource)
            if scope.cancelled_caught:
                slot.outcome = Outcome.TIMED_OUT
                slot.detail = (
                    f"the chain's deadline ({_seconds(self.timeout or 0)}) passed"
                    if by_chain
                    else f"no answer within {_seconds(own)}"
                ) + (f"; {hint}" if hint else "")
            elif credential is None:
                slot.outcome = Outcome.NO_MATCH
            else:
                slot.outcome, slot.credential = Outcome.MATCHED, credential
                explain = getattr(resolver, "explain", None)
                if callable(explain):
                    slot.detail = explain(resource)  # pure and cheap by contract
        except ConfigError as exc:
            slot.outcome, slot.detail, slot.config_error = Outcome.ERROR, str(exc), exc
        except ResolverUnavailableError as exc:
            slot.outcome, slot.detail = Outcome.UNAVAILABLE, str(exc)
        except Exception as exc:
            slot.outcome = Outcome.ERROR
            slot.detail = f"{type(exc).__name__}: {exc}" + (f"; {hint}" if hint else "")
        finally:
            # Also when cancelled: the trace then shows how long a skipped resolver ran.
            slot.duration = time.perf_counter() - started
        slot.done.set()

    async def _call(self, index: int, resolver: Resolver, resource: Resource) -> Credential | None:
        cache_key = getattr(resolver, "cache_key", None)
        key: Hashable | None = cache_key(resource) if callable(cache_key) else None
        if key is None:
            return await resolver.resolve(resource)
        ttl = float(getattr(resolver, "cache_ttl", DEFAULT_CACHE_TTL))

        def ttl_of(credential: Credential | None) -> float:
            if credential is not None and credential.expires_at is not None:
                return min(ttl, credential.expires_at - EXPIRY_MARGIN - time.time())
            return ttl

        return await self._caches[index].get(key, lambda: resolver.resolve(resource), ttl_of)
