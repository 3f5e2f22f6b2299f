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

from .._chain import Chain
from .._credentials import EXPIRY_MARGIN
from .._errors import AsyncAuthError, InsecureTransportError
from .._resolution import Resolution
from .._resource import Resource
from .._singleflight import Lead, SingleFlightCache
from . import background, hops, refusals
from .call import Call, Need, budget, need_of
from .challenge import WWW_AUTHENTICATE, Challenge, parse_challenges, select_challenge
from .effects import Do, Effect, Flow, Send
from .fetch import TokenFetch
from .scope import ScopeSet
from .target import Target, origin_of
from .tokencache import TokenCache, TokenKey, TokenLead, token_cache_key
from .tokens import Token

log = logging.getLogger("asyncauth.registry")

CHALLENGE_TTL = 3600.0
"""Seconds a learnt challenge is trusted before the registry is asked again."""
_RETRY_ERRORS = frozenset({"invalid_token", "insufficient_scope"})
NOT_FORWARDED = frozenset({"authorization", "host", "content-length"})


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

    def _call(
        self,
        request: httpx.Request,
        headers: Mapping[str, str],
        target: Target,
        need: Need | None = None,
    ) -> Call:
        added = tuple(name for name in headers if name.lower() not in NOT_FORWARDED)
        if added:
            for name in added:
                request.headers[name] = headers[name]
            hops.mark(request, target.origin, added)  # for the registry's origin only
        if need is None:
            url = request.url
            need = need_of(target.registry, request.method, url.path, url.query)
        return Call(request, target, need, isinstance(request.stream, self.http.ByteStream))

    def warm(self, request: httpx.Request) -> Call | None:
        """Authorise ``request`` from what is known already, without I/O; ``None`` if it cannot.

        The common case once a registry is known: a few dictionary lookups, no effects.
        """
        headers = self.headers
        if headers is None:
            return None
        url = request.url
        target = self.target(url)
        challenge = self.challenges.peek(target.origin)
        if not isinstance(challenge, Challenge):
            return None
        need = need_of(target.registry, request.method, url.path, url.query)
        resolution = self.resolutions.peek(need.resource)
        if not isinstance(resolution, Resolution):
            return None
        call = self._call(request, headers, target, need)
        call.challenge, call.resolution = challenge, resolution
        value = self.authorization(target, challenge, resolution, need.scopes)
        if not isinstance(value, str):
            return None
        request.headers["Authorization"] = value
        if log.isEnabledFor(logging.DEBUG):  # the warm path formats nothing unless asked to
            log.debug("%s %s: authorised from cache", request.method, need.resource)
        return call

    def flow(self, request: httpx.Request, *, only_authorize: bool = False) -> Flow:
        """Authorise ``request`` and send it (``only_authorize``: set its header, send nothing)."""
        warm = self.warm(request)
        if warm is not None:
            if not only_authorize:
                yield from self._send_authorized(warm, authorized=True)
            return
        headers = self.headers
        if headers is None:
            headers = yield Do(self.load_headers, self.load_headers_blocking)
        call = self._call(request, headers, self.target(request.url))
        cached = self.challenges.peek(call.target.origin)
        known = cached if isinstance(cached, Challenge | _Open) else None
        first: httpx.Response | None = None
        if known is None:
            known, first = yield from self._discover(call, only_authorize)
            if known is None:
                return  # the request went out as the probe and needs nothing more
        if known is OPEN:
            if only_authorize:
                return
            first = yield Send(request)
            known = self._learn(call.target, first)
            if known is OPEN or not call.replayable:
                return
        assert isinstance(known, Challenge)
        call.challenge = known
        resolution = self.resolutions.peek(call.need.resource)
        if not isinstance(resolution, Resolution):
            resolution = yield Do(self.resolve, self.resolve_blocking, (call.need.resource,))
        call.resolution = resolution
        authorized = yield from self._authorize(call, call.need.scopes)
        if only_authorize:
            refusals.refuse_failed_anonymous(resolution)
        elif not authorized and first is not None:
            refusals.explain_refusal(call, sent=False)  # nothing to add: the 401 stands
        else:
            yield from self._send_authorized(call, authorized)

    def _discover(
        self, call: Call, only_authorize: bool
    ) -> Generator[Effect, Any, tuple[Challenge | _Open | None, httpx.Response | None]]:
        """Learn the registry's challenge, once for everyone asking at the same time."""
        origin = call.target.origin
        got = yield Do(self.challenges.acquire, self.challenges.acquire_blocking, (origin,))
        if not isinstance(got, Lead):
            return got, None
        request = call.request
        probe = request if call.replayable and not only_authorize else self._ping(request)
        try:
            response = yield Send(probe)
            known = self._learn(call.target, response)
        finally:
            got.abandon()  # waiters look again: their own requests may fare better
        if probe is not request:
            return known, None
        if known is OPEN or not self._refused_by(call.target, response):
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
        known: Challenge | _Open = OPEN
        if self._refused_by(target, response):
            self.stats.challenges += 1
            chosen = select_challenge(parse_challenges(response.headers.get_list(WWW_AUTHENTICATE)))
            if chosen is not None and chosen.is_bearer:  # keep realm and service only
                kept = {k: v for k, v in chosen.params.items() if k in ("realm", "service")}
                known = Challenge("bearer", kept)
            elif chosen is not None:
                known = Challenge("basic", {})
            log.debug("learnt %r for %s", known, target.origin)
        elif response.status_code == 401:
            log.debug("ignored a 401 from %s: not %s", origin_of(response.url), target.origin)
        self.challenges.put(target.origin, known, CHALLENGE_TTL)
        return known

    def _send_authorized(self, call: Call, authorized: bool) -> Flow:
        """Send the request; on the registry's 401, retry once or say why it was refused."""
        response = yield Send(call.request)
        yield from self.after(call, response, authorized)

    def after(self, call: Call, response: httpx.Response, authorized: bool = True) -> Flow:
        """What follows the registry's answer to an authorised request (nothing unless a 401)."""
        if not self._refused_by(call.target, response):
            return
        assert call.challenge is not None
        if authorized and call.replayable and call.challenge.is_bearer:
            again = yield from self._retry(call, response)
            if again is None or not self._refused_by(call.target, again):
                return
        refusals.explain_refusal(call, sent=authorized)

    def _retry(
        self, call: Call, response: httpx.Response
    ) -> Generator[Effect, Any, httpx.Response | None]:
        """One more try after ``invalid_token``/``insufficient_scope``, with a widened scope."""
        values = response.headers.get_list(WWW_AUTHENTICATE)
        retry = select_challenge(parse_challenges(values)) if values else None
        if retry is None or not retry.is_bearer:
            return None
        if retry.error is not None and retry.error not in _RETRY_ERRORS:
            return None
        self.stats.retries += 1
        assert call.challenge is not None
        assert call.resolution is not None
        if retry.realm and retry.realm != call.challenge.realm:
            return None  # a different token server: do not send credentials there unasked
        scopes = call.need.scopes
        try:
            widened = scopes | retry.scopes
        except AsyncAuthError:
            widened = scopes  # a malformed scope parameter: ask for what the request needs
        registry, service = call.target.registry, call.challenge.service
        self.tokens.forget(token_cache_key(registry, service, scopes, call.resolution.credential))
        if (yield from self._authorize(call, widened)):
            again: httpx.Response = yield Send(call.request)
            return again
        return None

    def authorization(
        self, target: Target, challenge: Challenge, resolution: Resolution, scopes: ScopeSet
    ) -> str | bool | TokenKey:
        """What can be said without I/O: the header value, ``False`` (nothing to send) or the key
        of a token to fetch first (public: the aiohttp middleware's warm path has no Call)."""
        credential = resolution.credential
        if credential.is_anonymous and challenge.is_basic:
            return False
        if not credential.is_anonymous and not target.may_send_credentials:
            raise InsecureTransportError(
                f"{target.registry}: refusing to send credentials from "
                f"{resolution.source} over plain http to a host that is not loopback; use "
                "https, or list the registry in insecure_registries= if you really mean it"
            )
        if credential.kind == "registry_token":
            return self._fetch.bearer(credential, resolution, target)
        if challenge.is_basic:
            return self._fetch.basic(credential) or False
        key = token_cache_key(target.registry, challenge.service, scopes, credential)
        token = self.tokens.fresh(key)
        return key if token is None else token.authorization

    def _authorize(self, call: Call, scopes: ScopeSet) -> Generator[Effect, Any, bool]:
        """Set ``Authorization`` on the request; ``False`` when there is nothing to send."""
        assert call.challenge is not None
        assert call.resolution is not None
        value = self.authorization(call.target, call.challenge, call.resolution, scopes)
        if value is False:
            return False
        if isinstance(value, TokenKey):
            token = yield from self._token(call, value, scopes)
            value = token.authorization
        call.request.headers["Authorization"] = str(value)
        return True

    def _token(self, call: Call, key: TokenKey, scopes: ScopeSet) -> Generator[Effect, Any, Token]:
        wait = budget(call.request)
        try:
            got = yield Do(self.tokens.acquire, self.tokens.acquire_blocking, (key, wait))
        except TimeoutError:  # another request's fetch outlasted this request's own budget
            raise refusals.waited(call.target, wait) from None
        if not isinstance(got, TokenLead):
            log.debug("token for %s %s: fetched by another request", call.need.resource, scopes)
            return got  # type: ignore[no-any-return]
        log.debug("token for %s %s: fetching", call.need.resource, scopes)
        try:
            token = yield from self._fetch.token(call, scopes, self.tokens)
        except Exception as exc:
            if isinstance(exc, AsyncAuthError):
                got.fail(exc)  # every waiter with this credential would be refused the same way
            else:
                got.abandon()  # a transport error: a waiter takes over
            yield Do(self.tokens.release, self.tokens.release_blocking, (got,))
            raise
        except BaseException:
            got.abandon()  # cancelled: a waiter takes over (the fleet's lease runs out by itself)
            raise
        try:
            yield Do(self.tokens.keep, self.tokens.keep_blocking, (got, token))
        finally:
            got.abandon()  # nothing once kept; a flow closed before keeping hands the lead on
        return token
