"""The registry handshake as one synchronous generator: decisions here, I/O in the drivers.

:meth:`Handshake.flow` takes a request and yields *effects*: :class:`Send` (a request for the
caller's client to send; the driver answers with the response, or with ``(response, body)``) and
:class:`Do` (other I/O: resolve a credential, wait for a token another task is fetching, sleep).
The same flow is driven by the async httpx driver, the sync one and the aiohttp middleware, so
every rule below holds for all of them:

1. The registry's challenge is learnt once per origin (the first request's 401, or a
   ``GET /v2/`` ping when the body cannot be replayed), by one request for all concurrent ones,
   and only from an answer of that origin: a 401 that comes back from a redirect's target
   teaches nothing and gets nothing.
2. The credential comes from the chain (cached per repository, computed once).
3. Bearer: a token for the request's scope is fetched once for all concurrent askers and sent
   up front; Basic goes to the registry itself. See :mod:`~asyncauth._registry.target` for where
   credentials may go and :mod:`~asyncauth._registry.tokens` for what is sent.
4. A 401 on an authorised request (``invalid_token``, ``insufficient_scope``) drops the token,
   widens the scope from the challenge and retries once. A final 401 is returned, or raised as
   :class:`~asyncauth.AuthenticationError` when the user must learn why (refused Basic
   credentials, sources that failed and might have had the right credential).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Final

import httpx

from .._chain import Chain, Resolution
from .._credentials import EXPIRY_MARGIN
from .._errors import AsyncAuthError, AuthenticationError, InsecureTransportError
from .._resource import Resource
from .._singleflight import MISSING, Lead, SingleFlightCache
from . import background, refusals
from .challenge import WWW_AUTHENTICATE, Challenge, parse_challenges, select_challenge
from .effects import Do, Effect, Flow, Send
from .fetch import TokenFetch
from .scope import ScopeSet, infer_scopes, repository_from_path
from .target import Target, origin_of
from .tokencache import TokenCache, TokenLead, token_cache_key
from .tokens import Token

log = logging.getLogger("asyncauth.registry")

CHALLENGE_TTL = 3600.0
"""Seconds a learnt challenge is trusted before the registry is asked again."""
_RETRY_ERRORS = frozenset({"invalid_token", "insufficient_scope"})
_NOT_FORWARDED = frozenset({"authorization", "host", "content-length"})


class _Open:
    """A registry that answered without a challenge: nothing to do until it sends a 401."""

    def __repr__(self) -> str:
        return "OPEN"


OPEN: Final = _Open()


@dataclass(slots=True)
class Stats:
    """Counters for tests, benchmarks and debugging."""

    token_requests: int = 0
    challenges: int = 0
    retries: int = 0
    resolutions: int = 0


@dataclass(slots=True)
class Options:
    """What a ``RegistryAuth`` was configured with (see its docstring)."""

    insecure: frozenset[str]
    client_id: str
    credential_ttl: float
    max_token_response: int
    offline_token: bool
    headers: dict[str, str] | None
    stats: Stats = field(default_factory=Stats)


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


class Handshake:
    """The state one ``RegistryAuth`` shares between all its requests, and the flow over it."""

    def __init__(
        self, http: ModuleType, chain: Callable[[], Chain], options: Options, tokens: TokenCache
    ) -> None:
        self.http = http
        self._chain = chain
        self.options = options
        self.tokens = tokens
        self.stats = options.stats
        self.challenges = SingleFlightCache[Challenge | _Open](maxsize=1024)
        self.resolutions = SingleFlightCache[Resolution](maxsize=4096)
        self._targets: dict[tuple[str, str], Target] = {}
        self.headers = options.headers
        self._fetch = TokenFetch(http, options)

    # --- I/O the drivers run --------------------------------------------------------------

    async def resolve(self, resource: Resource) -> Resolution:
        return await self.resolutions.get(
            resource, lambda: self._resolve_now(self._chain().resolve(resource)), self._ttl
        )

    def resolve_blocking(self, resource: Resource) -> Resolution:
        def compute() -> Resolution:
            return background.run(self._resolve_now, self._chain().resolve(resource))

        return self.resolutions.get_blocking(resource, compute, self._ttl)

    async def _resolve_now(self, pending: Awaitable[Resolution]) -> Resolution:
        resolution = await pending
        self.stats.resolutions += 1
        log.debug("credential for %s from %s", resolution.resource, resolution.source or "none")
        return resolution

    def _ttl(self, resolution: Resolution) -> float:
        ttl = self.options.credential_ttl
        expires_at = resolution.credential.expires_at
        if expires_at is not None:
            ttl = min(ttl, expires_at - time.time() - EXPIRY_MARGIN)
        return ttl

    async def load_headers(self) -> dict[str, str]:
        if self.headers is None:
            self.headers = await self._chain().http_headers()
        return self.headers

    def load_headers_blocking(self) -> dict[str, str]:
        if self.headers is None:
            self.headers = background.run(self._chain().http_headers)
        return self.headers

    # --- the flow ---------------------------------------------------------------------------

    def target(self, url: httpx.URL) -> Target:
        key = (url.scheme, url.netloc.decode("ascii", "replace"))
        target = self._targets.get(key)
        if target is None:
            target = Target.of(url, self.options.insecure)
            if len(self._targets) < 1024:
                self._targets[key] = target
        return target

    def flow(self, request: httpx.Request, *, only_authorize: bool = False) -> Flow:
        """Authorise ``request`` and send it (``only_authorize``: set its header, send nothing)."""
        target = self.target(request.url)
        headers = self.headers
        if headers is None:
            headers = yield Do(self.load_headers, self.load_headers_blocking)
        for name, value in headers.items():
            if name.lower() not in _NOT_FORWARDED:
                request.headers[name] = value
        url = request.url
        scopes = infer_scopes(request.method, url.path, url.query)
        resource = Resource(target.registry, repository_from_path(url.path))
        replayable = isinstance(request.stream, self.http.ByteStream)
        known: Challenge | _Open | None
        cached = self.challenges.peek(target.origin)
        first: httpx.Response | None = None
        if isinstance(cached, Challenge | _Open):
            known = cached
        else:
            known, first = yield from self._discover(request, target, replayable, only_authorize)
            if known is None:
                return  # the request went out as the probe and needs nothing more
        if known is OPEN:
            if only_authorize:
                return
            first = yield Send(request)
            known = self._learn(target, first)
            if known is OPEN or not replayable:
                return
        assert isinstance(known, Challenge)
        yield from self._authorized(
            request, target, known, scopes, resource, first, replayable, only_authorize
        )

    def _discover(
        self, request: httpx.Request, target: Target, replayable: bool, only_authorize: bool
    ) -> Generator[Effect, Any, tuple[Challenge | _Open | None, httpx.Response | None]]:
        """Learn ``target``'s challenge, once for everyone asking at the same time."""
        got = yield Do(self.challenges.acquire, self.challenges.acquire_blocking, (target.origin,))
        if not isinstance(got, Lead):
            return got, None
        probe = request if replayable and not only_authorize else self._ping(request)
        try:
            response = yield Send(probe)
            known = self._learn(target, response)
        finally:
            got.abandon()  # waiters look again: their own requests may fare better
        if probe is not request:
            return known, None
        if known is OPEN or not self._refused_by(target, response):
            return None, response
        return known, response

    def _ping(self, request: httpx.Request) -> httpx.Request:
        url = request.url.copy_with(path="/v2/", query=None, fragment=None)
        headers = {k: v for k, v in request.headers.items() if k.lower() == "user-agent"}
        ping: httpx.Request = self.http.Request(
            "GET", url, headers=headers, extensions=request.extensions
        )
        return ping

    @staticmethod
    def _refused_by(target: Target, response: httpx.Response) -> bool:
        """A 401 from the registry itself (not from a host a redirect led to)."""
        return response.status_code == 401 and origin_of(response.url) == target.origin

    def _learn(self, target: Target, response: httpx.Response) -> Challenge | _Open:
        """Record what the registry's own answer says about its authentication."""
        if not self._refused_by(target, response):
            if response.status_code == 401:
                log.debug("ignored a 401 from %s: not %s", origin_of(response.url), target.origin)
            known: Challenge | _Open = OPEN
        else:
            self.stats.challenges += 1
            values = response.headers.get_list(WWW_AUTHENTICATE)
            chosen = select_challenge(parse_challenges(values))
            if chosen is None:
                known = OPEN
            elif chosen.is_bearer:  # keep realm and service: the scope is per request
                known = Challenge(
                    "bearer", {k: v for k, v in chosen.params.items() if k in ("realm", "service")}
                )
            else:
                known = Challenge("basic", {})
            log.debug("learnt %r for %s", known, target.origin)
        self.challenges.put(target.origin, known, CHALLENGE_TTL)
        return known

    def _authorized(
        self,
        request: httpx.Request,
        target: Target,
        challenge: Challenge,
        scopes: ScopeSet,
        resource: Resource,
        first: httpx.Response | None,
        replayable: bool,
        only_authorize: bool,
    ) -> Flow:
        resolution = self.resolutions.peek(resource)
        if resolution is MISSING:
            resolution = yield Do(self.resolve, self.resolve_blocking, (resource,))
        assert isinstance(resolution, Resolution)
        authorized = yield from self._authorize(request, target, challenge, scopes, resolution)
        if only_authorize:
            refusals.refuse_failed_anonymous(resolution, target)
            return
        if not authorized and first is not None:
            refusals.explain_refusal(resolution, challenge, target, sent=False)
            return  # nothing to add: the 401 stands
        response = yield Send(request)
        if not self._refused_by(target, response):
            return
        if authorized and replayable and challenge.is_bearer:
            response = yield from self._retry(
                request, target, challenge, scopes, resolution, response
            )
            if response is None or not self._refused_by(target, response):
                return
        refusals.explain_refusal(resolution, challenge, target, sent=authorized)

    def _retry(
        self,
        request: httpx.Request,
        target: Target,
        challenge: Challenge,
        scopes: ScopeSet,
        resolution: Resolution,
        response: httpx.Response,
    ) -> Generator[Effect, Any, httpx.Response | None]:
        """One more try after ``invalid_token``/``insufficient_scope``, with a widened scope."""
        values = response.headers.get_list(WWW_AUTHENTICATE)
        retry = select_challenge(parse_challenges(values)) if values else None
        if retry is None or not retry.is_bearer:
            return None
        if retry.error is not None and retry.error not in _RETRY_ERRORS:
            return None
        self.stats.retries += 1
        if retry.realm and retry.realm != challenge.realm:
            return None  # a different token server: do not send credentials there unasked
        try:
            widened = scopes | retry.scopes
        except AsyncAuthError:
            widened = scopes  # a malformed scope parameter: ask for what the request needs
        key = token_cache_key(target.registry, challenge.service, scopes, resolution.credential)
        self.tokens.forget(key)
        if (yield from self._authorize(request, target, challenge, widened, resolution)):
            again: httpx.Response = yield Send(request)
            return again
        return None

    def _authorize(
        self,
        request: httpx.Request,
        target: Target,
        challenge: Challenge,
        scopes: ScopeSet,
        resolution: Resolution,
    ) -> Generator[Effect, Any, bool]:
        """Set ``Authorization`` on ``request``; ``False`` when there is nothing to send."""
        credential = resolution.credential
        if credential.is_anonymous and challenge.is_basic:
            return False
        if not credential.is_anonymous and not target.may_send_credentials:
            raise InsecureTransportError(
                f"{target.registry}: refusing to send credentials from {resolution.source} "
                "over plain http to a host that is not loopback; use https, or list the "
                "registry in insecure_registries= if you really mean it"
            )
        if credential.kind == "registry_token":
            value = self._fetch.bearer(credential, resolution, target)
        elif challenge.is_basic:
            basic = self._fetch.basic(credential)
            if basic is None:
                return False
            value = basic
        else:
            token = yield from self._token(request, target, challenge, scopes, resolution)
            value = token.authorization
        request.headers["Authorization"] = value
        return True

    def _token(
        self,
        request: httpx.Request,
        target: Target,
        challenge: Challenge,
        scopes: ScopeSet,
        resolution: Resolution,
    ) -> Generator[Effect, Any, Token]:
        key = token_cache_key(target.registry, challenge.service, scopes, resolution.credential)
        token = self.tokens.fresh(key)
        if token is not None:
            return token
        got = yield Do(_acquire, _acquire_blocking, (self.tokens, key, budget(request), target))
        if not isinstance(got, TokenLead):
            return got  # type: ignore[no-any-return]
        try:
            token = yield from self._fetch.token(
                request, target, challenge, scopes, resolution, self.tokens
            )
        except (AuthenticationError, AsyncAuthError) as exc:
            got.fail(exc)  # every waiter with this credential would be refused the same way
            raise
        finally:
            got.abandon()  # interrupted (cancelled, a transport error): a waiter takes over
        yield Do(self.tokens.keep, self.tokens.keep_blocking, (got, token))
        return token


async def _acquire(
    tokens: TokenCache, key: Any, wait: float | None, target: Target
) -> Token | TokenLead:
    try:
        return await tokens.acquire(key, wait=wait)
    except TimeoutError:
        raise refusals.waited(target, wait) from None


def _acquire_blocking(
    tokens: TokenCache, key: Any, wait: float | None, target: Target
) -> Token | TokenLead:
    try:
        return tokens.acquire_blocking(key, wait=wait)
    except TimeoutError:
        raise refusals.waited(target, wait) from None
