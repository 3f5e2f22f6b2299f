"""Where a ``RegistryAuth`` keeps its tokens: the one place that knows how a token is cached.

* Access tokens, per :class:`TokenKey` (registry, service, scopes,
  credential), kept until :data:`~asyncauth._credentials.EXPIRY_MARGIN` before they expire, and
  fetched once however many requests (tasks, event loops) miss at the same time.
* OAuth2 refresh tokens a token server handed out, per (registry, service, credential), used in
  place of the password for later fetches.
* Optionally a :class:`~asyncauth.TokenStore` shared with other processes: asked
  only on a miss, after this process's own single-flight, so a warm request never touches it
  (its rules, leases and failures are :mod:`asyncauth._stores.shared`'s).

The handshake's state (:mod:`~asyncauth._registry.handshake`) asks it when a flow yields
``AwaitToken``: :meth:`TokenCache.acquire` gives a token, or a :class:`TokenLead` whose holder
fetches and ends it with :meth:`TokenCache.keep`, ``fail`` or ``abandon`` (and then
:meth:`TokenCache.release`, which hands the fleet's lease on). The warm path peeks with
:meth:`TokenCache.fresh` (no I/O).
A prefetch claims many keys at once (:meth:`TokenCache.claim`: the leads nobody holds, without
waiting) and keeps one token under all those it covers (:meth:`TokenCache.keep_many`).

**Bounds.** Tokens are bounded by memory: :data:`TOKEN_CACHE_BYTES` by default, as
:func:`token_cost` estimates it, a token kept under many keys (a prefetch's) counted once; and,
when ``maxsize`` is given (``RegistryAuth(token_cache_size=...)``), by count. Past a bound,
expired tokens go first, then the least recently used.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Final

from .._credentials import EXPIRY_MARGIN, Credential
from .._singleflight import MISSING, Lead, SingleFlightCache
from .._stores.protocol import TokenStore
from .._stores.shared import SharedStore
from .._stores.shared import shared as shared_store
from .scope import ScopeSet
from .tokens import Token

log = logging.getLogger("asyncauth.tokens")

TOKEN_CACHE_BYTES: Final = 64 << 20
"""The default memory budget of one ``RegistryAuth``'s tokens (64 MiB): about 50,000 tokens
of 400 characters each, or about 100,000 prefetched keys (see :func:`token_cost`)."""
KEY_BYTES: Final = 600
"""What one cached key costs besides its names: the key, its scope set and scope, the table's
slot, deadline and expiry order (measured with ``tracemalloc`` on CPython 3.11)."""
TOKEN_BYTES: Final = 300
"""What one token costs besides its text: the object, its times, its string's header."""
REFRESH_CACHE_SIZE: Final = 4096
"""Refresh tokens kept (one per registry, service and credential: few)."""


@dataclass(frozen=True, slots=True)
class TokenKey:
    """What a cached token is valid for: a registry's service, a scope set, one credential.

    Keys compare by the credential's value; ``repr`` shows only its kind and user name.
    :meth:`material` is what a shared store derives its (keyed) name from.
    """

    registry: str
    service: str
    scopes: ScopeSet
    credential: Credential
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Computed once: the warm path looks a key up on every request.
        fields = (self.registry, self.service, self.scopes, self.credential)
        object.__setattr__(self, "_hash", hash(fields))

    def __hash__(self) -> int:
        return self._hash

    def material(self) -> bytes:
        """Unambiguous bytes of the whole key, secrets included: hash with a key, never show."""
        head = "\x00".join((self.registry, self.service, self.scopes.form_value()))
        return b"token\x00%d:%s" % (len(head), head.encode()) + self.credential.material()


def token_cost(key: Hashable, token: Token) -> tuple[int, int]:
    """Bytes of ``key``'s entry and of ``token`` (an estimate within ~20 % of what
    ``tracemalloc`` measures): the cache counts a token once however many keys hold it."""
    assert isinstance(key, TokenKey)
    names = len(key.registry) + len(key.service)
    for scope in key.scopes:
        names += len(scope.type) + len(scope.name) + 16 * len(scope.actions)
    refresh = len(token.refresh_token) if token.refresh_token else 0
    return KEY_BYTES + names, TOKEN_BYTES + len(token.access_token) + refresh


def token_cache_key(
    registry: str, service: str | None, scopes: ScopeSet, credential: Credential
) -> TokenKey:
    """The cache key for a token: ``(registry, service, scope set, credential)``.

    ``registry`` is the normalised ``host[:port]`` (``Resource.registry``); it is lower-cased
    here so that spelling does not split the cache. ``ScopeSet`` is canonical, so the same
    access asked for in any order gives the same key.
    """
    return TokenKey(registry.lower(), service or "", scopes, credential)


@dataclass(slots=True)
class TokenLead:
    """The duty to fetch one token for everyone waiting: ``keep``, ``fail`` or ``abandon``."""

    lead: Lead[Token]
    shared_name: str | None = None
    """The name under which a shared store will keep the token, when there is a store."""
    held: bool = False
    """Whether this process holds the fleet's lease on ``shared_name`` (and must give it back)."""

    @property
    def key(self) -> TokenKey:
        return self.lead.key  # type: ignore[return-value]

    def fail(self, error: Exception) -> None:
        """The fetch failed for a reason every waiter with this key shares (refused credentials)."""
        self.lead.fail(error)

    def abandon(self) -> None:
        """The fetch was interrupted (cancelled, transport error): a waiter takes over."""
        self.lead.abandon()


def _encode(token: Token) -> bytes:
    """The token as the shared store keeps it; canonical (``_encode(_decode(v)) == v`` for
    every value it made), so that a refused token is told to the store as the very value the
    store gave out."""
    expires_at, issued_at = float(token.expires_at), float(token.issued_at)
    return json.dumps({"v": 1, "a": token.access_token, "e": expires_at, "i": issued_at}).encode()


def _decode(value: bytes) -> Token | None:
    try:
        data = json.loads(value)
        if data.get("v") != 1:
            return None
        return Token(str(data["a"]), float(data["e"]), float(data["i"]))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


class TokenCache:
    """Access and refresh tokens of one ``RegistryAuth``; safe to share between threads and
    event loops."""

    def __init__(
        self,
        *,
        maxsize: int | None = None,
        budget: int = TOKEN_CACHE_BYTES,
        shared: TokenStore | None = None,
    ) -> None:
        self._tokens = SingleFlightCache[Token](maxsize=maxsize, budget=budget, cost=token_cost)
        self._refresh = SingleFlightCache[str](maxsize=REFRESH_CACHE_SIZE)
        self.shared = shared
        self._store: SharedStore | None = None if shared is None else shared_store(shared)

    def fresh(self, key: TokenKey) -> Token | None:
        """A token still good for :data:`EXPIRY_MARGIN` seconds, or ``None`` (no I/O)."""
        token = self._tokens.peek(key)
        return None if token is MISSING else token  # type: ignore[return-value]

    @property
    def version(self) -> int:
        """Changes whenever a token is kept, dropped or expires (see ``SingleFlightCache``)."""
        return self._tokens.version

    def deadline(self, key: TokenKey) -> float | None:
        """When the token for ``key`` stops being fresh (``time.monotonic``), if there is one."""
        return self._tokens.deadline(key)

    async def acquire(self, key: TokenKey, wait: float | None) -> Token | TokenLead:
        """A token, or the lead to fetch it; ``wait`` bounds waiting for another fetch."""
        got = await self._tokens.acquire(key, wait=wait)
        if not isinstance(got, Lead):
            return got
        if self._store is None:
            return TokenLead(got)
        return await self._from_shared(got, wait)

    async def keep(self, lead: TokenLead, token: Token) -> None:
        """Hand ``token`` to the waiters and keep it (here, and in the shared store)."""
        ttl = token.remaining(time.time(), EXPIRY_MARGIN)
        lead.lead.settle(token, ttl)
        if self._store is not None and lead.shared_name is not None:
            await self._store.publish(lead.shared_name, _encode(token), ttl)
            await self.release(lead)

    async def release(self, lead: TokenLead) -> None:
        """Give the fleet's lease back after a fetch that failed, so another process may try
        at once instead of when the lease runs out."""
        if self._store is not None and lead.shared_name is not None and lead.held:
            lead.held = False
            await self._store.release(lead.shared_name)

    async def forget(self, key: TokenKey, refused: str | None = None) -> None:
        """Drop the token the registry refused for ``key`` (``refused``: the ``Authorization``
        value it refused; ``None``: whatever is kept), unless a token kept since replaced it.

        Here at once; then, with a shared store, there too (:meth:`SharedStore.forget`): this
        process never takes that value from the store again, and a store that can forget drops
        it for the fleet. So no retry reads the refused token back, and each process pays at
        most one refused request per refused token.
        """
        token = self.fresh(key)
        if token is None or (refused is not None and token.authorization != refused):
            return  # gone already, or replaced by another request's retry: keep that one
        if not self._tokens.discard(key, token) or self._store is None:
            return
        await self._store.forget(self._store.name(key.material()), _encode(token))

    def claim(self, keys: Iterable[TokenKey]) -> dict[TokenKey, TokenLead]:
        """The leads for those of ``keys`` that have no fresh token and that no request of this
        event loop is fetching, without waiting (a prefetch leaves the others to their
        fetchers). The shared store is not asked: a prefetch's one request replaces many."""
        leads: dict[TokenKey, TokenLead] = {}
        for key in keys:
            if key not in leads and (lead := self._tokens.lead_now(key)) is not None:
                leads[key] = TokenLead(lead)
        return leads

    async def keep_many(self, leads: Iterable[TokenLead], token: Token) -> None:
        """Keep one ``token`` under the key of every lead (stored once, however many keys) and
        hand it to their waiters; with a shared store, publish it under each key's name."""
        ttl = token.remaining(time.time(), EXPIRY_MARGIN)
        kept = list(leads)
        for lead in kept:
            lead.lead.settle(token, ttl)
        if self._store is not None and kept:
            value = _encode(token)
            for lead in kept:
                await self._store.publish(self._store.name(lead.key.material()), value, ttl)

    @property
    def bytes(self) -> int:
        """What the tokens kept take, as :func:`token_cost` estimates it."""
        return self._tokens.bytes

    def __len__(self) -> int:
        return len(self._tokens)

    def refresh_token(self, registry: str, service: str, credential: Credential) -> str | None:
        found = self._refresh.peek((registry, service, credential))
        return None if found is MISSING else found  # type: ignore[return-value]

    def keep_refresh_token(
        self, registry: str, service: str, credential: Credential, value: str | None
    ) -> None:
        """Remember (or, with ``None``, forget) the refresh token for later fetches."""
        key = (registry, service, credential)
        if value is None:
            self._refresh.invalidate(key)
        else:
            self._refresh.put(key, value, float("inf"))

    def clear(self) -> None:
        self._tokens.clear()
        self._refresh.clear()

    async def _from_shared(self, lead: Lead[Token], wait: float | None) -> Token | TokenLead:
        """Ask the shared store: its token, or the lead to fetch one (for the whole fleet when
        the lease is ours)."""
        assert self._store is not None
        name = self._store.name(lead.key.material())  # type: ignore[attr-defined]
        try:
            claim = await self._store.claim(name, _shared_token, wait=wait)
        except BaseException:
            lead.abandon()
            raise
        if claim.value is None:
            return TokenLead(lead, name, held=claim.held)
        token = claim.value
        lead.settle(token, token.remaining(time.time(), EXPIRY_MARGIN))
        return token


def _shared_token(value: bytes) -> Token | None:
    """A token from the shared store that is still good for the margin, else ``None``."""
    token = _decode(value)
    if token is None:
        log.warning("the shared token store returned a value that is not a token; ignored")
        return None
    return token if token.remaining(time.time(), EXPIRY_MARGIN) > 0 else None
