"""The ordered concurrent chain: imgpkg's precedence without imgpkg's waiting.

imgpkg asks its sources one after another, so every source that has to time out (a metadata
server off-cloud) adds its whole timeout to every lookup. :class:`Chain` starts every resolver
at once, in one task group, each under its own timeout, and then *reads* the answers in
precedence order: as soon as every resolver above the first one with a credential has finished
without one, that credential is returned and whatever is still running is cancelled. The result
is the same as the sequential walk; the cost is the slowest resolver that has to be waited for,
not the sum.

A resolver is any object with a ``name`` and an ``async resolve(resource)``. It may also offer
the *capabilities* below, each a small runtime-checkable protocol; the chain looks them up once,
when it is built, and a resolver that declares a capability by subclassing its protocol cannot
misspell it (the methods are abstract). A public attribute that is a near miss of a capability's
name (``cache_kye``) is refused when the chain is built, so a typo never silently turns a
capability off.

:class:`Bounded` (``timeout``)
    seconds it may take (default :data:`DEFAULT_RESOLVER_TIMEOUT`).
:class:`Caching` (``cache_key(resource)`` and ``cache_ttl``)
    for resolvers that do I/O: every resource with the same key gets the same answer (``None``:
    do not cache this one). Concurrent lookups of one key share one call, and answers are kept
    until the credential's ``expires_at`` or for ``cache_ttl`` seconds. A subclass of
    :class:`Caching` inherits ``cache_ttl`` (:data:`DEFAULT_CACHE_TTL`); a resolver that has a
    ``cache_key`` without subclassing declares ``cache_ttl`` itself, or the chain refuses it.
:class:`Claiming` (``claims(resource)``)
    a pure, cheap predicate: ``False`` means "not my host", and the resolver is not even
    started (the trace says ``no match``). The cloud resolvers use it.
:class:`Explaining` (``explain(resource)``)
    a short, secret-free note on *why* it matched, shown in the trace.
:class:`Hinting` (``disable_hint``)
    how a user turns the source off, shown when it times out or fails.
:class:`HeaderSource` (``async http_headers()``)
    headers to send with every registry request (the Docker config's ``HttpHeaders``); the
    handshake asks :meth:`Chain.http_headers`, never a source directly.
:class:`Sharing` (``token_store``, with ``cache_key``)
    a caching resolver whose answers a fleet shares through a :class:`~asyncauth.TokenStore`:
    on a miss the chain asks the store first, and one process of the fleet resolves for all
    (:mod:`asyncauth._stores.credentials`). ``None`` turns it off.
"""

from __future__ import annotations

import difflib
import functools
import logging
import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import anyio

from ._credentials import EXPIRY_MARGIN, Credential
from ._errors import ConfigError, ResolverUnavailableError
from ._groups import TaskGroup
from ._resolution import Outcome, Resolution, TraceEntry
from ._resource import Resource
from ._singleflight import SingleFlightCache
from ._stores import credentials as fleet
from ._stores.protocol import TokenStore, lease_time_of

log = logging.getLogger("asyncauth.chain")

DEFAULT_RESOLVER_TIMEOUT = 10.0
"""Seconds a resolver without its own ``timeout`` may take."""
DEFAULT_CACHE_TTL = 300.0
"""Seconds a cached answer without ``expires_at`` stays fresh."""


@runtime_checkable
class Resolver(Protocol):
    """A source of credentials. ``None`` means "no opinion, ask the next source"."""

    name: str

    async def resolve(self, resource: Resource) -> Credential | None:
        """The credential for ``resource``, an anonymous one to stop the chain (a decision),
        or ``None`` to let the next source answer."""
        ...


@runtime_checkable
class Bounded(Protocol):
    """A resolver with its own time limit, in seconds."""

    timeout: float


@runtime_checkable
class Caching(Protocol):
    """A resolver whose answers the chain keeps (per key) and computes once for all askers."""

    cache_ttl: float = DEFAULT_CACHE_TTL
    """Seconds an answer without ``expires_at`` stays fresh."""

    @abstractmethod
    def cache_key(self, resource: Resource) -> Hashable | None:
        """Resources with equal keys get equal answers; ``None``: do not cache this one."""


@runtime_checkable
class Claiming(Protocol):
    """A resolver that serves some hosts only, and says so without I/O."""

    @abstractmethod
    def claims(self, resource: Resource) -> bool:
        """``False``: not one of its hosts; the chain does not start it."""


@runtime_checkable
class Explaining(Protocol):
    """A resolver that can say, without secrets, why it matched."""

    @abstractmethod
    def explain(self, resource: Resource) -> str | None:
        """Why it matched ``resource`` (which key, file or variable), for ``asyncauth explain``
        and the trace; ``None`` when it has nothing to add. Never a secret."""


@runtime_checkable
class Hinting(Protocol):
    """A resolver that can tell a user how to turn it off."""

    disable_hint: str


@runtime_checkable
class HeaderSource(Protocol):
    """A source of headers for every registry request (Docker config ``HttpHeaders``)."""

    @abstractmethod
    async def http_headers(self) -> Mapping[str, str]:
        """The headers to add to every registry request (never ``Authorization``)."""


@runtime_checkable
class Sharing(Protocol):
    """A caching resolver whose answers may be shared by a fleet (``None``: not shared)."""

    token_store: TokenStore | None


_CAPABILITIES = ("timeout", "cache_key", "cache_ttl", "claims", "explain", "disable_hint",
                 "token_store")  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Member:
    """A resolver with its capabilities looked up once, when the chain is built."""

    resolver: Resolver
    name: str
    timeout: float
    cache_key: Callable[[Resource], Hashable | None] | None
    cache_ttl: float
    claims: Callable[[Resource], bool] | None
    explain: Callable[[Resource], str | None] | None
    hint: str | None
    store: TokenStore | None

    @classmethod
    def of(cls, resolver: Resolver) -> _Member:
        if not isinstance(resolver, Resolver) or not isinstance(resolver.name, str):
            raise TypeError(f"{resolver!r} is not a resolver (needs .name and .resolve())")
        _refuse_near_misses(resolver)
        timeout = resolver.timeout if isinstance(resolver, Bounded) else None
        store = resolver.token_store if isinstance(resolver, Sharing) else None
        caching = _caching(resolver)
        if store is not None:
            if caching is None:
                raise TypeError(f"resolver {resolver.name!r} has a token_store but no cache_key")
            lease_time_of(store)
        return cls(
            resolver,
            resolver.name,
            float(timeout or DEFAULT_RESOLVER_TIMEOUT),
            None if caching is None else caching.cache_key,
            DEFAULT_CACHE_TTL if caching is None else float(caching.cache_ttl),
            resolver.claims if isinstance(resolver, Claiming) else None,
            resolver.explain if isinstance(resolver, Explaining) else None,
            resolver.disable_hint if isinstance(resolver, Hinting) else None,
            store,
        )


def _caching(resolver: Resolver) -> Caching | None:
    """The resolver as a :class:`Caching` one, ``None`` if it has no ``cache_key``; one with a
    ``cache_key`` but no ``cache_ttl`` is refused (its answers' lifetime would be a guess)."""
    if isinstance(resolver, Caching):
        return resolver
    if hasattr(resolver, "cache_key"):
        raise TypeError(
            f"resolver {resolver.name!r} has a cache_key but no cache_ttl: a caching resolver "
            f"says how long its answers stay fresh, in seconds (the usual is "
            f"{DEFAULT_CACHE_TTL:g}), or subclasses asyncauth.Caching"
        )
    return None


def _refuse_near_misses(resolver: object) -> None:
    """A misspelt capability (``cache_kye``) would silently do nothing: refuse it loudly."""
    names = [n for n in dir(resolver) if not n.startswith("_") and n not in _CAPABILITIES]
    for name in names:
        close = difflib.get_close_matches(name, _CAPABILITIES, n=1, cutoff=0.8)
        if close:
            raise TypeError(
                f"resolver {getattr(resolver, 'name', resolver)!r} has {name!r}: "
                f"did you mean {close[0]!r}? (a misspelt capability would be ignored)"
            )


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
    own ``timeout``. Answers of caching resolvers are kept per chain, so build a chain once and
    reuse it (from any number of tasks, event loops and threads).
    """

    def __init__(
        self,
        resolvers: Iterable[Resolver],
        *,
        timeout: float | None = None,
        cache_size: int = 4096,
    ) -> None:
        self.resolvers: tuple[Resolver, ...] = tuple(resolvers)
        self._members = tuple(_Member.of(resolver) for resolver in self.resolvers)
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self._caches = [
            SingleFlightCache[Credential | None](maxsize=cache_size) for _ in self.resolvers
        ]
        self._header_sources = tuple(r for r in self.resolvers if isinstance(r, HeaderSource))

    def __repr__(self) -> str:
        names = ", ".join(r.name for r in self.resolvers)
        return f"Chain([{names}], timeout={self.timeout!r})"

    async def http_headers(self) -> dict[str, str]:
        """Headers the sources want on every registry request; earlier sources win."""
        headers: dict[str, str] = {}
        for source in reversed(self._header_sources):
            headers.update(await source.http_headers())
        return headers

    async def resolve(self, resource: Resource | str) -> Resolution:
        """Resolve credentials for an image reference or :class:`Resource`.

        Raises :class:`~asyncauth.ConfigError` if a source that had to be consulted found the
        user's configuration broken; every other failure is recorded in the trace. An interrupt
        (``KeyboardInterrupt``, ``SystemExit``) in any source is raised as itself, never in an
        exception group (:mod:`asyncauth._groups`).
        """
        resource = Resource.parse(resource)
        slots = [_Slot() for _ in self._members]
        deadline = None if self.timeout is None else anyio.current_time() + self.timeout
        decided = len(slots)
        async with TaskGroup() as tg:
            for index, member in enumerate(self._members):
                if member.claims is not None and not member.claims(resource):
                    slots[index].outcome, slots[index].detail = Outcome.NO_MATCH, "not its host"
                    slots[index].done.set()
                    continue
                tg.start_soon(self._run, index, member, resource, slots[index], deadline)
            for index, slot in enumerate(slots):
                await slot.done.wait()
                if slot.config_error is not None or slot.outcome is Outcome.MATCHED:
                    decided = index
                    break
            tg.cancel_scope.cancel()

        trace = self._trace(slots, decided)
        if decided == len(slots):
            log.debug("%s: no source answered (anonymous)", resource)
            return Resolution(resource, Credential.anonymous(), None, trace)
        winner = slots[decided]
        if winner.config_error is not None:
            raise winner.config_error
        assert winner.credential is not None
        source = self._members[decided].name
        log.debug("%s: %s answered with %s", resource, source, winner.credential.redacted())
        return Resolution(resource, winner.credential, source, trace)

    def _trace(self, slots: Sequence[_Slot], decided: int) -> tuple[TraceEntry, ...]:
        entries = []
        for index, (member, slot) in enumerate(zip(self._members, slots, strict=True)):
            if index <= decided:
                entries.append(TraceEntry(member.name, slot.outcome, slot.duration, slot.detail))
            else:
                winner = self._members[decided].name
                detail = f"not needed: {winner} comes first"
                entries.append(TraceEntry(member.name, Outcome.SKIPPED, slot.duration, detail))
        return tuple(entries)

    async def _run(
        self,
        index: int,
        member: _Member,
        resource: Resource,
        slot: _Slot,
        deadline: float | None,
    ) -> None:
        limit, by_chain = member.timeout, False
        if deadline is not None and deadline - anyio.current_time() < member.timeout:
            limit, by_chain = max(0.0, deadline - anyio.current_time()), True
        hint = f"; {member.hint}" if member.hint else ""
        started = time.perf_counter()
        try:
            with anyio.move_on_after(limit) as scope:
                credential = await self._call(index, member, resource)
            if scope.cancelled_caught:
                slot.outcome = Outcome.TIMED_OUT
                slot.detail = (
                    f"the chain's deadline ({_seconds(self.timeout or 0)}) passed"
                    if by_chain
                    else f"no answer within {_seconds(member.timeout)}"
                ) + hint
            else:
                if credential is None:
                    slot.outcome = Outcome.NO_MATCH
                else:
                    slot.outcome, slot.credential = Outcome.MATCHED, credential
                if member.explain is not None:
                    # Pure and cheap by contract; for "no match" it may say what was looked at.
                    slot.detail = member.explain(resource)
        except ConfigError as exc:
            slot.outcome, slot.detail, slot.config_error = Outcome.ERROR, str(exc), exc
        except ResolverUnavailableError as exc:
            slot.outcome, slot.detail = Outcome.UNAVAILABLE, str(exc)
        except Exception as exc:
            slot.outcome = Outcome.ERROR
            slot.detail = f"{type(exc).__name__}: {exc}{hint}"
        finally:
            # Also when cancelled: the trace then shows how long a skipped resolver ran.
            slot.duration = time.perf_counter() - started
        slot.done.set()

    def _call(
        self, index: int, member: _Member, resource: Resource
    ) -> Awaitable[Credential | None]:
        key = None if member.cache_key is None else member.cache_key(resource)
        if key is None:
            return member.resolver.resolve(resource)
        ttl = member.cache_ttl

        def ttl_of(credential: Credential | None) -> float:
            if credential is not None and credential.expires_at is not None:
                return min(ttl, credential.expires_at - EXPIRY_MARGIN - time.time())
            return ttl

        compute: Callable[[], Awaitable[Credential | None]]
        compute = functools.partial(member.resolver.resolve, resource)
        if member.store is not None:
            shared = (member.store, (member.name, key), compute, ttl_of, member.timeout)
            compute = fleet.sharing(*shared)
        return self._caches[index].get(key, compute, ttl_of)
