"""The registry handshake as a sans-IO state machine: answers in, effects out.

:func:`request_flow` takes a :class:`~asyncauth._registry.messages.Call` (a request described as
data) and is a generator of effects (:mod:`~asyncauth._registry.messages`): it yields what it
needs sent or looked up, and is sent back the answers. It reads no clock (a reply says when it
arrived), touches no global or cache (learning is an effect too), holds no callable and does no
I/O, so one file of tests drives it through the whole handshake with canned replies, and every
driver (httpx and httpx2, async and sync, the aiohttp middleware) runs the same rules:

1. The registry's challenge is learnt once per origin (the first request's 401, or a
   ``GET /v2/`` ping when the request's body cannot be sent twice), by one request for all
   concurrent ones, and only from an answer of that origin: a 401 that comes back from a
   redirect's target teaches nothing and gets nothing.
2. The credential comes from the chain (:class:`Resolve`; cached per repository).
3. Bearer: a token for the request's scope is fetched once for all concurrent askers
   (:class:`AwaitToken`) and sent up front; Basic goes to the registry itself. Where
   credentials may go is :mod:`~asyncauth._registry.target`'s; what is sent,
   :mod:`~asyncauth._registry.tokens`'.
4. A token request answered ``429``/``503`` is tried again (at most :data:`MAX_ATTEMPTS`
   tries) after the server's capped ``Retry-After`` (:class:`Sleep`, which the request's own
   deadline bounds); ``401``/``403`` never are.
5. A 401 to an authorised request (``invalid_token``, ``insufficient_scope``) drops the token,
   widens the scope from the challenge and retries once; a body that cannot be sent again (a
   one-shot stream) is an :class:`~asyncauth.AuthenticationError` saying so instead. A final
   401 is returned, or raised as :class:`~asyncauth.AuthenticationError` when the user must
   learn why.
6. A ``400`` or ``403`` without a challenge to a request that carried a *cached* token drops
   it and tries once more with a fresh one (:func:`stale_token`: ``public.ecr.aws`` answers an
   expired token so, and a cache that waits for a 401 would serve it until it "expires").
7. A token server that refuses the credential of a pull (401/403) is asked once more,
   anonymously, when ``anonymous_fallback`` is on (never for a push or a delete); the call's
   :attr:`~asyncauth._registry.messages.Call.fallback` and the log say so.
8. A 401 that a forwarding proxy gave in the registry's place (a plain-http answer through a
   proxy, without the registry's ``Docker-Distribution-API-Version``) is nobody's challenge: it
   is raised as the proxy's refusal, and nothing is sent in answer to it.
9. The registry's own "not now" to the request (429, or 503 with ``Retry-After``) pauses the
   registry for everyone (:class:`Backoff`: this ``RegistryAuth``, and the fleet through a
   token store); a GET or HEAD is tried once more after the pause, if it fits in the request's
   time, and a second "not now" is a :class:`~asyncauth.RateLimitedError` (:func:`not_now`).
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode, urlsplit, urlunsplit

from .._credentials import Credential
from .._errors import (
    AsyncAuthError,
    AuthenticationError,
    InsecureTransportError,
    RateLimitedError,
    TokenResponseError,
)
from .._http.retry import MAX_ATTEMPTS, RETRY_STATUSES, retry_after_seconds
from .._ratelimit import from_headers
from .._resolution import Resolution
from .bodies import ACCEPT_ENCODING
from .challenge import WWW_AUTHENTICATE, Challenge, parse_challenges, select_challenge
from .messages import (
    LEAD,
    OPEN,
    AwaitChallenge,
    AwaitToken,
    Backoff,
    Call,
    DropToken,
    Effect,
    Fetch,
    Headers,
    KeepRefresh,
    KeepToken,
    Known,
    Learn,
    Ping,
    Reply,
    Resolve,
    Sleep,
    TokenDuty,
    Transmit,
)
from .refusals import (
    explain_refusal,
    fallen_back,
    not_replayable,
    proxy_refusal,
    refuse_failed_anonymous,
    token_refused,
)
from .scope import ScopeSet
from .target import Target, check_destination, origin_of_text
from .tokencache import TokenKey, token_cache_key
from .tokens import (
    HEADER_SAFE,
    OAUTH_FALLBACK_STATUSES,
    Token,
    TokenRequest,
    basic_authorization,
    build_token_request,
    parse_token_response,
)

log = logging.getLogger("asyncauth.registry")

_RETRY_ERRORS = frozenset({"invalid_token", "insufficient_scope"})
STALE_TOKEN_STATUSES: Final = frozenset({400, 403})
"""Answers without a challenge that, to a request carrying a cached token, may mean the token
went stale (``public.ecr.aws``: 400; registries that say "denied: token expired": 403)."""
_PULLS: Final = frozenset({"GET", "HEAD"})
_REFUSALS: Final = frozenset({401, 403})

Pairs = tuple[tuple[str, str], ...]
Flow = Generator[Effect, Any, str | None]
"""A flow: yields effects, is sent their answers; returns the ``Authorization`` value it
settled on (``None`` when it sent none)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What a ``RegistryAuth`` was configured with that the flow needs (see its docstring)."""

    insecure: frozenset[str]
    client_id: str
    max_token_response: int
    offline_token: bool
    anonymous_fallback: bool = False


# -- pure decisions --------------------------------------------------------------------------


def refused_by(target: Target, reply: Reply) -> bool:
    """A 401 from the registry itself (not from a host a redirect led to)."""
    return reply.status == 401 and origin_of_text(reply.url) == target.origin


def learn(target: Target, reply: Reply) -> Known:
    """What the registry's own answer says about its authentication (a forwarding proxy's 401
    in its place is raised: see :func:`~asyncauth._registry.refusals.proxy_refusal`)."""
    not_the_proxys(target, reply)
    if not refused_by(target, reply):
        if reply.status == 401:
            log.debug("ignored a 401 from %s: not %s", origin_of_text(reply.url), target.origin)
        return OPEN
    chosen = select_challenge(parse_challenges(reply.header_list("www-authenticate")))
    if chosen is not None and chosen.is_bearer:  # keep realm and service only
        kept = {k: v for k, v in chosen.params.items() if k in ("realm", "service")}
        return Challenge("bearer", kept)
    return OPEN if chosen is None else Challenge("basic", {})


def authorization(
    target: Target, challenge: Challenge, resolution: Resolution, scopes: ScopeSet
) -> str | TokenKey | None:
    """What can be decided without I/O: the header value, ``None`` (nothing to send) or the
    key of a token to get first. Shared by the flow and the warm path."""
    credential: Credential = resolution.credential
    if credential.is_anonymous and challenge.is_basic:
        return None
    if not credential.is_anonymous and not target.may_send_credentials:
        raise InsecureTransportError(
            f"{target.registry}: refusing to send credentials from "
            f"{resolution.source} over plain http to a host that is not loopback; use "
            "https, or list the registry in insecure_registries= if you really mean it"
        )
    if credential.kind == "registry_token":
        return _bearer(credential, resolution, target)
    if challenge.is_basic:
        if credential.kind != "basic":
            return None
        return basic_authorization(credential.username or "", credential.password or "")
    return token_cache_key(target.registry, challenge.service, scopes, credential)


def _bearer(credential: Credential, resolution: Resolution, target: Target) -> str:
    """A registry token as a header, refused (without echoing it) if no header can hold it."""
    token = credential.registry_token or ""
    if not HEADER_SAFE.fullmatch(token):
        raise AuthenticationError(
            f"{target.registry}: the registry token from {resolution.source or 'no source'} "
            "has characters a header cannot carry (whitespace or a line break?); not sent"
        )
    return f"Bearer {token}"


def not_the_proxys(target: Target, reply: Reply) -> None:
    """Raise when ``reply`` is a forwarding proxy's 401, not the registry's."""
    refusal = proxy_refusal(target.registry, reply)
    if refusal is not None:
        raise refusal


def stale_token(call: Call, reply: Reply) -> TokenKey | None:
    """The cached token ``reply`` may say is stale: a 400 or 403 from the registry, without a
    challenge, to a request that carried a token it did not fetch itself (a token fetched just
    now is not stale: its refusal stands)."""
    if reply.status not in STALE_TOKEN_STATUSES or call.carried is None:
        return None
    if reply.header_list("www-authenticate") or origin_of_text(reply.url) != call.target.origin:
        return None
    return call.carried


def wants_after(status: int, carried: bool) -> bool:
    """Whether a warm route's answer needs :func:`after`: a 401, a "not now" (429, 503:
    :func:`not_now`), or (``carried``: the request carried a cached token) one of
    :data:`STALE_TOKEN_STATUSES`. Cheap: the warm path asks."""
    return status == 401 or status in RETRY_STATUSES or (carried and status in STALE_TOKEN_STATUSES)


def ping_url(url: str) -> str:
    """The registry's ``/v2/`` at ``url``'s origin."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/v2/", "", ""))


def _with(extra: Pairs, value: str | None) -> Pairs:
    return extra if value is None else (*extra, ("Authorization", value))


# -- the flow --------------------------------------------------------------------------------


def request_flow(call: Call, settings: Settings, *, only_authorize: bool = False) -> Flow:
    """Authorise ``call``'s request and send it (``only_authorize``: decide, send nothing)."""
    extra: Pairs = yield Headers()
    known = yield AwaitChallenge(call.target.origin)
    first: Reply | None = None
    if known is LEAD:
        known, first = yield from _discover(call, extra, only_authorize)
        if known is None:  # the request went out as the probe: only a "not now" is left
            assert first is not None
            yield from after(call, first, settings, extra, authorized=False)
            return None
    if known is OPEN:
        if only_authorize:
            return None
        first = yield Transmit(extra)
        known = yield from _learnt(call.target, first, already=OPEN)
        if known is OPEN or not call.replayable:
            return None
    assert isinstance(known, Challenge)
    call.challenge = known
    call.resolution = resolution = yield Resolve(call.need.resource)
    value = yield from _authorize(call, settings, call.need.scopes)
    if only_authorize:
        refuse_failed_anonymous(resolution)
        return value
    if value is None and first is not None:
        explain_refusal(call, sent=False)  # nothing to add: the 401 stands
        return None
    call.sent = value
    reply = yield Transmit(_with(extra, value))
    yield from after(call, reply, settings, extra, authorized=value is not None)
    return value


def after(
    call: Call, reply: Reply, settings: Settings, extra: Pairs, *, authorized: bool
) -> Generator[Effect, Any, None]:
    """What follows the registry's answer to a request sent authorised as decided (nothing,
    unless it is the registry's 401, its "not now" (:func:`not_now`, first), or a stale cached
    token's 400/403). ``call.challenge`` is ``None`` for a registry known to be open: its 401 is
    learnt, and the request is authorised and sent again if it can be."""
    reply = yield from not_now(call, reply, extra)
    not_the_proxys(call.target, reply)
    if not refused_by(call.target, reply):
        if stale_token(call, reply) is not None:
            yield from _renew(call, reply, settings, extra)
        return
    if call.challenge is None:
        known = yield from _learnt(call.target, reply, already=OPEN)
        if not isinstance(known, Challenge) or not call.replayable:
            return
        call.challenge = known
        call.resolution = yield Resolve(call.need.resource)
        value = yield from _authorize(call, settings, call.need.scopes)
        if value is None:
            explain_refusal(call, sent=False)
            return
        call.sent = value
        reply = yield Transmit(_with(extra, value))
        if not refused_by(call.target, reply):
            return
    elif authorized and call.challenge.is_bearer and call.fallback is None:
        again = yield from _retry(call, reply, settings, extra)
        if again is None or not refused_by(call.target, again):
            return
    explain_refusal(call, sent=authorized)


def _discover(
    call: Call, extra: Pairs, only_authorize: bool
) -> Generator[Effect, Any, tuple[Known | None, Reply | None]]:
    """Learn the registry's challenge for everyone asking at the same time: with the request
    itself when its body can be sent again, else with a ping."""
    itself = call.replayable and not only_authorize
    reply = yield (Transmit(extra) if itself else Ping(ping_url(call.url)))
    known = learn(call.target, reply)
    yield Learn(call.target.origin, known)
    if not itself:
        return known, None
    if known is OPEN or not refused_by(call.target, reply):
        return None, reply
    return known, reply


def _learnt(target: Target, reply: Reply, *, already: Known) -> Generator[Effect, Any, Known]:
    """Learn from ``reply`` when it says something new (an open registry now asking)."""
    known = learn(target, reply)
    if known is not already:
        yield Learn(target.origin, known)
    return known


def _retry(
    call: Call, reply: Reply, settings: Settings, extra: Pairs
) -> Generator[Effect, Any, Reply | None]:
    """One more try after ``invalid_token``/``insufficient_scope``, with a widened scope."""
    values = reply.header_list("www-authenticate")
    retry = select_challenge(parse_challenges(values)) if values else None
    if retry is None or not retry.is_bearer:
        return None
    if retry.error is not None and retry.error not in _RETRY_ERRORS:
        return None
    assert call.challenge is not None
    assert call.resolution is not None
    if retry.realm and retry.realm != call.challenge.realm:
        return None  # a different token server: do not send credentials there unasked
    scopes = call.need.scopes
    try:
        widened = scopes | retry.scopes
    except AsyncAuthError:
        widened = scopes  # a malformed scope parameter: ask for what the request needs
    credential = call.resolution.credential
    yield DropToken(
        token_cache_key(call.target.registry, call.challenge.service, scopes, credential),
        call.sent,
    )
    if not call.replayable:
        raise not_replayable(call)
    value = yield from _authorize(call, settings, widened)
    if value is None:
        return None
    call.sent = value
    again: Reply = yield Transmit(_with(extra, value))
    return again


def _renew(
    call: Call, reply: Reply, settings: Settings, extra: Pairs
) -> Generator[Effect, Any, None]:
    """Drop the cached token a 400/403 may call stale (:func:`stale_token`) and, if the body
    can be sent again, send the request once more with a fresh token; its answer is final."""
    key = stale_token(call, reply)
    assert key is not None
    yield DropToken(key, call.sent)
    if not call.replayable:
        return  # the answer stands; the next request fetches a fresh token
    log.debug(
        "%s: %d without a challenge to a cached token: dropped it, one more try with a fresh one",
        call.need.resource,
        reply.status,
    )
    call.carried = None
    value = yield from _authorize(call, settings, key.scopes)
    call.sent = value
    again: Reply = yield Transmit(_with(extra, value))
    not_the_proxys(call.target, again)
    if refused_by(call.target, again):
        explain_refusal(call, sent=value is not None)


def _authorize(
    call: Call, settings: Settings, scopes: ScopeSet
) -> Generator[Effect, Any, str | None]:
    """The ``Authorization`` value for ``scopes``; ``None`` when there is nothing to send."""
    assert call.challenge is not None
    assert call.resolution is not None
    value = authorization(call.target, call.challenge, call.resolution, scopes)
    if not isinstance(value, TokenKey):
        return value
    got = yield AwaitToken(value)
    if isinstance(got, Token):
        log.debug("token for %s %s: from another request", call.need.resource, scopes)
        call.carried = value
        return got.authorization
    assert isinstance(got, TokenDuty)
    call.carried = None
    log.debug("token for %s %s: fetching", call.need.resource, scopes)
    token = yield from fetch_token(call, settings, scopes, got.refresh_token)
    yield KeepToken(value, token)
    return token.authorization


# -- the registry's "not now" ----------------------------------------------------------------


def asks_to_wait(target: Target, reply: Reply) -> bool:
    """The registry itself (not a host a redirect led to) answered "not now": 429, or 503 with
    a ``Retry-After`` (a 503 without one is an outage page, not a pause)."""
    if reply.status != 429 and (reply.status != 503 or reply.header("retry-after") is None):
        return False
    return origin_of_text(reply.url) == target.origin


def not_now(call: Call, reply: Reply, extra: Pairs) -> Generator[Effect, Any, Reply]:
    """The registry's "not now" to ``call``'s request: a :class:`Backoff` (the registry is
    paused as it asked, for the fleet too), and for a GET or HEAD one more try once the pause is
    over; that try's answer, or :class:`~asyncauth.RateLimitedError` if it is "not now" again.
    Any other answer, and one to another method, is returned as it is.

    The retry is the request as it was last sent (``extra`` set again, its ``Authorization``
    kept): a pause short enough to wait out is shorter than a token's margin.
    """
    if not asks_to_wait(call.target, reply):
        return reply
    target = call.target
    retried = call.method in _PULLS and call.replayable
    asked = reply.header("retry-after")
    yield Backoff(target.registry, target.origin, reply.status, asked, wait=retried)
    if not retried:
        return reply
    again: Reply = yield Transmit(extra)
    if not asks_to_wait(target, again):
        return again
    asked_again = again.header("retry-after")
    yield Backoff(target.registry, target.origin, again.status, asked_again, wait=False)
    limit = from_headers(again.header)
    told = f"Retry-After: {asked_again}" if asked_again is not None else "no Retry-After"
    said = f"; its rate limit: {limit.describe()}" if limit is not None else ""
    raise RateLimitedError(
        f"{target.registry}: the registry answered {again.status} ({told}) again after the "
        f"wait it asked for{said}",
        registry=target.registry,
        wait=retry_after_seconds(asked_again, now=again.received_at),
        rate_limit=limit,
    )


# -- one token -------------------------------------------------------------------------------


def fetch_token(
    call: Call, settings: Settings, scopes: ScopeSet, refresh: str | None
) -> Generator[Effect, Any, Token]:
    """Fetch a token for ``scopes`` with the call's credential (or the refresh token a token
    server handed out for it, which is forgotten once refused)."""
    target, challenge, resolution = call.target, call.challenge, call.resolution
    assert challenge is not None
    assert resolution is not None
    credential: Credential = resolution.credential
    service = challenge.service or ""
    asked = credential
    if refresh is not None and credential.kind in ("basic", "identity_token"):
        # The refresh token in place of the secret; a password stays for the GET fallback.
        asked = Credential(credential.username, credential.password, identity_token=refresh)
    reply, by_get = yield from _exchange(target, challenge, scopes, asked, settings)
    if refresh is not None and (by_get or reply.status != 200):
        yield KeepRefresh(target.registry, service, credential, None)
    if reply.status != 200:
        reply = yield from _refused(call, settings, scopes, reply)
    if reply.body is None:  # pragma: no cover - drivers always read a token response
        raise TokenResponseError("token response: the body was not read")
    token = parse_token_response(reply.body, received_at=reply.received_at)
    log.debug(
        "token for %s %s from %s: %s, %.0f s",
        target.registry,
        scopes or "(no scope)",
        urlsplit(challenge.realm or "").hostname,
        credential.kind if call.fallback is None else "anonymous (fallback)",
        token.lifetime,
    )
    if token.refresh_token and call.fallback is None:
        yield KeepRefresh(target.registry, service, credential, token.refresh_token)
    return token


def pulls_only(scopes: ScopeSet) -> bool:
    """Whether ``scopes`` ask to pull repositories and for nothing else."""
    return len(scopes) > 0 and all(
        scope.type == "repository" and set(scope.actions) == {"pull"} for scope in scopes
    )


def _may_go_anonymous(call: Call, settings: Settings, scopes: ScopeSet, status: int) -> bool:
    """``anonymous_fallback``'s rule: a pull (GET/HEAD asking ``pull`` only), whose credential
    the token server refused (401/403), goes anonymous once; a push or a delete never does."""
    assert call.resolution is not None
    return (
        settings.anonymous_fallback
        and status in _REFUSALS
        and call.fallback is None
        and call.method in _PULLS
        and not call.resolution.credential.is_anonymous
        and pulls_only(scopes)
    )


def _refused(
    call: Call, settings: Settings, scopes: ScopeSet, reply: Reply
) -> Generator[Effect, Any, Reply]:
    """A token server's refusal: raised, unless ``anonymous_fallback`` allows one anonymous try
    (:func:`_may_go_anonymous`); then its answer (a token), or both refusals raised."""
    target, challenge, resolution = call.target, call.challenge, call.resolution
    assert challenge is not None
    assert resolution is not None
    credential = resolution.credential
    refused = token_refused(target, challenge, scopes, credential, resolution, reply.status)
    if not _may_go_anonymous(call, settings, scopes, reply.status):
        raise refused
    call.fallback = fallen_back(resolution, challenge, reply.status)
    log.debug("%s: %s", call.need.resource, call.fallback.trace[-1].detail)
    anonymous = Credential.anonymous()
    answer, _ = yield from _exchange(target, challenge, scopes, anonymous, settings)
    if answer.status != 200:
        raise AuthenticationError(
            f"{refused}; the anonymous try (anonymous_fallback) was refused too ({answer.status})"
        )
    return answer


def _exchange(
    target: Target, challenge: Challenge, scopes: ScopeSet, asked: Credential, settings: Settings
) -> Generator[Effect, Any, tuple[Reply, bool]]:
    """The token request, and the GET fallback of an OAuth2 POST the server refused (see
    :data:`~asyncauth._registry.tokens.OAUTH_FALLBACK_STATUSES`); whether it came to that."""
    build: dict[str, Any] = dict(client_id=settings.client_id, allow_http=target.plain_http)
    request = _described(build_token_request(challenge, scopes, asked, **build), asked, settings)
    reply = yield from _send_token(target, request, asked, settings)
    by_get = asked.kind == "identity_token" and reply.status in OAUTH_FALLBACK_STATUSES
    if by_get:
        fallback = build_token_request(challenge, scopes, asked, oauth_fallback=True, **build)
        reply = yield from _send_token(
            target, _described(fallback, asked, settings), asked, settings
        )
    for hop in (*reply.history, reply.url):  # where a client that follows redirects went
        check_destination(target, hop, settings.insecure, carries=False)
    return reply, by_get


def _described(request: TokenRequest, asked: Credential, settings: Settings) -> TokenRequest:
    """The request with what every token request asks for: the encodings the bounded decoder
    inflates, and (``offline_token``, with a password) a refresh token for later fetches."""
    url = request.url
    if settings.offline_token and asked.kind == "basic":
        query = urlencode({"offline_token": "true", "client_id": settings.client_id})
        url = f"{url}&{query}" if "?" in url else f"{url}?{query}"
    headers = (*request.headers, ("Accept-Encoding", ACCEPT_ENCODING))
    return TokenRequest(request.method, url, headers, request.body)


def _send_token(
    target: Target, request: TokenRequest, asked: Credential, settings: Settings
) -> Generator[Effect, Any, Reply]:
    check_destination(target, request.url, settings.insecure, carries=not asked.is_anonymous)
    host = urlsplit(request.url).hostname
    for attempt in range(MAX_ATTEMPTS):
        reply: Reply = yield Fetch(request, settings.max_token_response, target)
        if reply.status not in RETRY_STATUSES or attempt == MAX_ATTEMPTS - 1:
            break
        reason = f"the token server {host} answered {reply.status} and asked to wait"
        yield Sleep(attempt + 1, reply.header("retry-after"), reason)
    return reply


__all__ = [
    "LEAD",
    "OPEN",
    "STALE_TOKEN_STATUSES",
    "WWW_AUTHENTICATE",
    "Flow",
    "Settings",
    "after",
    "asks_to_wait",
    "authorization",
    "fetch_token",
    "learn",
    "not_now",
    "not_the_proxys",
    "ping_url",
    "pulls_only",
    "refused_by",
    "request_flow",
    "stale_token",
    "wants_after",
]
