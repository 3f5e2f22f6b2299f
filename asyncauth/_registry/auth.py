"""``RegistryAuth``: the registry token handshake as an ``httpx.Auth``.

How one request is authorised (see docs/handshake.md for the full story):

1. The registry's challenge is learnt once per origin (the first request's 401, or a ``GET /v2/``
   ping when the request body cannot be replayed). Concurrent first requests share that one
   discovery, so a thousand requests to a new registry cause one 401, not a thousand.
2. The credential for the request's repository comes from the chain (cached per repository).
3. Bearer: a token for the scope inferred from the request (``pull`` for GET/HEAD, ``pull,push``
   for writes...) is taken from the cache or fetched once for all concurrent askers, then sent
   *before* the request goes out. A registry token is sent verbatim with no exchange.
   Basic: username/password go to the registry itself (same host only).
4. A 401 on an authorised request (``invalid_token``, ``insufficient_scope``) drops the token,
   widens the scope from the challenge, fetches once more and retries once; the next 401 is
   returned to the caller.

The protocol logic is one synchronous generator (:meth:`RegistryAuth._flow`) that yields
*effects* — send this request, resolve this resource, acquire this cache entry — and is driven
by :meth:`~RegistryAuth.async_auth_flow` (anyio primitives: asyncio and trio) and
:meth:`~RegistryAuth.sync_auth_flow` (threads). Token requests are yielded to httpx like any
other request, so they go through the caller's client: its transport, proxies, TLS settings and
event hooks.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import anyio
import httpx

from .._chain import Chain, Resolution
from .._credentials import Credential
from .._errors import AsyncAuthError, AuthenticationError, InsecureTransportError
from .._net import is_loopback
from .._resource import Resource, normalise_registry
from .._singleflight import MISSING, SingleFlightCache
from .challenge import WWW_AUTHENTICATE, Challenge, parse_challenges, select_challenge
from .scope import ScopeSet, infer_scopes, repository_from_path
from .tokens import (
    DEFAULT_CLIENT_ID,
    OAUTH_FALLBACK_STATUSES,
    Token,
    TokenKey,
    TokenResponseError,
    basic_authorization,
    build_token_request,
    parse_token_response,
    token_cache_key,
)

__all__ = ["RegistryAuth", "RegistryAuthBase"]

log = logging.getLogger("asyncauth.registry")

T = TypeVar("T")

MAX_TOKEN_RESPONSE = 1 << 20
"""Bytes a token response may have; a token server that sends more is not one."""
TOKEN_MARGIN = 10.0
"""Seconds before expiry at which a cached token is no longer sent."""
_RETRY_ERRORS = frozenset({"invalid_token", "insufficient_scope"})
_SYNC_LOOP = threading.Lock()
"""Sync clients run the (async) chain with ``anyio.run``, one short event loop per lookup.
Two threads' loops must not share the chain's single-flight events (an event set in one loop
never wakes a task in another), so those loops take turns. Lookups are cached per repository,
so the turns are rare."""


# --- where a request goes -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """The registry a request is for, and what may be sent to it."""

    origin: str
    """``scheme://host:port`` — challenges are learnt per origin."""
    registry: str
    """Normalised ``host[:port]`` as in :class:`Resource` (Docker Hub is ``index.docker.io``)."""
    plain_http: bool
    may_send_credentials: bool
    """False for plain http to a host that is neither loopback nor opted in."""

    @classmethod
    def of(cls, url: httpx.URL, insecure: frozenset[str]) -> _Target:
        host = url.host
        bracketed = f"[{host}]" if ":" in host else host
        hostport = bracketed if url.port is None else f"{bracketed}:{url.port}"
        try:
            registry = normalise_registry(hostport)
        except AsyncAuthError:
            registry = hostport.lower()
        default_port = 443 if url.scheme == "https" else 80
        origin = f"{url.scheme}://{bracketed}:{url.port or default_port}"
        plain = url.scheme != "https"
        allowed = not plain or is_loopback(host) or registry in insecure or hostport in insecure
        return cls(origin, registry, plain, allowed)


# --- effects the flow asks its driver for --------------------------------------------------


@dataclass(slots=True)
class _Send:
    request: httpx.Request
    read_limit: int | None = None
    """If set, the driver reads the body (at most this many bytes) and answers with it too."""


@dataclass(slots=True)
class _Resolve:
    resource: Resource


@dataclass(slots=True)
class _Headers:
    """Ask for the Docker config's ``HttpHeaders`` (read once, on first use)."""


_MISSING: Any = object()


class _Flight:
    """One in-flight computation that other askers wait for.

    ``event`` is an ``anyio.Event`` for async askers and a ``threading.Event`` for sync ones;
    both have a synchronous ``set()``, which is all the leader needs.
    """

    __slots__ = ("error", "event")

    def __init__(self, event: Any) -> None:
        self.event = event
        self.error: BaseException | None = None


class _Table(Generic[T]):
    """Values that are computed once however many ask: tokens, or challenges per origin.

    ``lookup`` returns a usable value or ``_MISSING``. Async and sync askers keep separate
    in-flight tables (an anyio event cannot be awaited from a thread), over the same values.
    """

    def __init__(self, lookup: Callable[[Hashable], T]) -> None:
        self.lookup = lookup
        self.async_flights: dict[Hashable, _Flight] = {}
        self.sync_flights: dict[Hashable, _Flight] = {}
        self.sync_lock = threading.Lock()


@dataclass(slots=True)
class _Acquire:
    table: _Table[Any]
    key: Hashable


@dataclass(slots=True)
class _Lead:
    """The asker that must compute the value; :meth:`release` wakes the others."""

    flights: dict[Hashable, _Flight]
    key: Hashable
    flight: _Flight
    lock: threading.Lock | None = None

    def release(self, error: BaseException | None = None) -> None:
        """Wake the waiters: with an ``Exception`` they raise it, otherwise they look again."""
        if self.lock is not None:
            with self.lock:
                self._release(error)
        else:
            self._release(error)

    def _release(self, error: BaseException | None) -> None:
        if self.flights.get(self.key) is self.flight:
            del self.flights[self.key]
        # Failures are shared; a cancellation is the leader's own business: waiters look again
        # and one of them takes over.
        self.flight.error = error if isinstance(error, Exception) else None
        self.flight.event.set()


_Effect = _Send | _Resolve | _Acquire | _Headers


@dataclass(slots=True)
class _Open:
    """A registry that answered without a challenge: nothing to do until it sends a 401."""


_OPEN = _Open()


# --- the auth -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Stats:
    """Counters for tests, benchmarks and debugging."""

    token_requests: int = 0
    challenges: int = 0
    retries: int = 0
    resolutions: int = 0


class RegistryAuthBase:
    """The handshake, whichever httpx module's ``Auth`` it plugs into (see :class:`RegistryAuth`).

    ``_http`` is that module: ``httpx`` here, ``httpx2`` in :mod:`asyncauth.httpx2`.
    """

    _http: ModuleType = httpx
    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        chain: Chain | None = None,
        *,
        insecure_registries: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
        client_id: str = DEFAULT_CLIENT_ID,
        credential_ttl: float = 60.0,
        token_cache_size: int = 4096,
        max_token_response: int = MAX_TOKEN_RESPONSE,
        offline_token: bool = False,
    ) -> None:
        self._chain = chain
        self._offline_token = offline_token
        self._insecure = frozenset(normalise_registry(r) for r in insecure_registries)
        self._headers: dict[str, str] | None = None if headers is None else dict(headers)
        self._headers_from_config = headers is None
        self._client_id = client_id
        self._credential_ttl = credential_ttl
        self._max_token_response = max_token_response
        self._challenges: dict[str, Challenge | _Open] = {}
        self._targets: dict[tuple[str, bytes], _Target] = {}
        self._tokens = SingleFlightCache[Token](maxsize=token_cache_size)
        self._refresh_tokens: dict[tuple[str, str, str], str] = {}
        # Only its value store is used here: the flows' single-flight is _Table's (it also
        # serves sync askers, which an anyio event cannot).
        self._resolutions = SingleFlightCache[Resolution](maxsize=4096)
        self._discovery: _Table[Challenge | _Open] = _Table(
            lambda origin: self._challenges.get(origin, _MISSING)  # type: ignore[call-overload]
        )
        self._token_table: _Table[Token] = _Table(self._fresh_token)
        self._resolution_table: _Table[Resolution] = _Table(self._cached_resolution)
        self.stats = _Stats()

    def __repr__(self) -> str:
        chain = self._chain if self._chain is not None else "default_chain()"
        return f"RegistryAuth(chain={chain!r}, insecure_registries={sorted(self._insecure)!r})"

    @property
    def chain(self) -> Chain:
        if self._chain is None:
            from .._defaults import default_chain

            self._chain = default_chain()
        return self._chain

    def clear(self) -> None:
        """Forget learnt challenges, tokens and credentials (e.g. after a ``docker login``)."""
        self._challenges.clear()
        if self._headers_from_config:
            self._headers = None
        self._tokens.clear()
        self._refresh_tokens.clear()
        self._resolutions.clear()

    # --- drivers ---------------------------------------------------------------------------

    def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        return self._drive_async(self._flow(request))

    async def _drive_async(
        self, flow: Generator[_Effect, Any, None]
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Carry out the flow's effects with anyio: requests are yielded to the sender."""
        value: Any = None
        try:
            while True:
                try:
                    effect = flow.send(value)
                except StopIteration:
                    return
                if isinstance(effect, _Send):
                    response = yield effect.request
                    if effect.read_limit is None:
                        value = response
                    else:
                        value = (
                            response,
                            await _aread_limited(self._http, response, effect.read_limit),
                        )
                elif isinstance(effect, _Resolve):
                    value = await self._resolve_async(effect.resource)
                elif isinstance(effect, _Headers):
                    value = await self._config_headers()
                else:
                    value = await _acquire_async(effect.table, effect.key)
        finally:
            flow.close()

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        flow = self._flow(request)
        value: Any = None
        try:
            while True:
                try:
                    effect = flow.send(value)
                except StopIteration:
                    return
                if isinstance(effect, _Send):
                    response = yield effect.request
                    if effect.read_limit is None:
                        value = response
                    else:
                        value = (response, _read_limited(self._http, response, effect.read_limit))
                elif isinstance(effect, _Resolve):
                    value = self._resolve_sync(effect.resource)
                elif isinstance(effect, _Headers):
                    with _SYNC_LOOP:
                        # Another thread may have read them while this one waited its turn.
                        value = self._headers
                        if value is None:
                            value = anyio.run(self._config_headers)
                else:
                    value = _acquire_sync(effect.table, effect.key)
        finally:
            flow.close()

    async def bearer_token(
        self,
        client: httpx.AsyncClient,
        reference: str | Resource,
        *,
        push: bool = False,
        base_url: str | None = None,
    ) -> str:
        """The ``Authorization`` value this auth would send for ``reference`` (pull or push).

        Uses ``client`` to reach the registry (a ``GET /v2/`` ping learns the challenge) and the
        token server. ``base_url`` defaults to :meth:`registry_url`. Returns ``""`` when the
        registry needs no authorisation.
        """
        resource = Resource.parse(reference)
        if resource.repository is None:
            raise AsyncAuthError(f"{resource}: a token is for a repository, not a registry")
        base = base_url or self.registry_url(resource)
        url = httpx.URL(f"{base}/v2/{resource.repository}/manifests/x")
        request = client.build_request("PUT" if push else "GET", url)
        # The same driver as for httpx, with this client as the sender (and no auth on it).
        drive = self._drive_async(self._flow(request, only_authorize=True))
        try:
            outgoing = await drive.__anext__()
            while True:
                response = await client.send(outgoing, auth=None, stream=True)
                try:
                    outgoing = await drive.asend(response)
                finally:
                    await response.aclose()
        except StopAsyncIteration:
            return str(request.headers.get("Authorization", ""))
        finally:
            await drive.aclose()

    def registry_url(self, resource: Resource) -> str:
        """``https://host[:port]`` — or ``http://`` for loopback and insecure registries.

        A guess without I/O; :func:`asyncauth.client.registry_base_url` asks the registry.
        """
        if resource.registry == "index.docker.io":
            return "https://registry-1.docker.io"
        if is_loopback(resource.host) or resource.registry in self._insecure:
            return f"http://{resource.registry}"
        return f"https://{resource.registry}"

    async def _config_headers(self) -> dict[str, str]:
        from .._sources.docker.resolver import DockerConfigResolver

        headers: dict[str, str] = {}
        for resolver in self.chain.resolvers:
            if isinstance(resolver, DockerConfigResolver):
                headers = await resolver.http_headers()
                break
        self._headers = headers
        return headers

    # --- credentials ------------------------------------------------------------------------

    def _fresh_token(self, key: Hashable) -> Token:
        token = self._tokens.peek(key)
        return _MISSING if token is MISSING else token  # type: ignore[return-value]

    def _cached_resolution(self, resource: Hashable) -> Resolution:
        resolution = self._resolutions.peek(resource)
        return _MISSING if resolution is MISSING else resolution  # type: ignore[return-value]

    def _keep_resolution(self, resolution: Resolution) -> None:
        ttl = self._credential_ttl
        expires_at = resolution.credential.expires_at
        if expires_at is not None:
            ttl = min(ttl, expires_at - time.time() - TOKEN_MARGIN)
        self._resolutions.put(resolution.resource, resolution, ttl)

    async def _resolve_async(self, resource: Resource) -> Resolution:
        got = await _acquire_async(self._resolution_table, resource)
        if not isinstance(got, _Lead):
            return got
        try:
            resolution = await self.chain.resolve(resource)
        except BaseException as exc:
            got.release(exc)
            raise
        self.stats.resolutions += 1
        self._keep_resolution(resolution)
        got.release()
        return resolution

    def _resolve_sync(self, resource: Resource) -> Resolution:
        got = _acquire_sync(self._resolution_table, resource)
        if not isinstance(got, _Lead):
            return got
        try:
            with _SYNC_LOOP:
                resolution = anyio.run(self.chain.resolve, resource)
        except BaseException as exc:
            got.release(exc)
            raise
        self.stats.resolutions += 1
        self._keep_resolution(resolution)
        got.release()
        return resolution

    # --- the protocol, as one generator of effects ----------------------------------------

    def _flow(
        self, request: httpx.Request, *, only_authorize: bool = False
    ) -> Generator[_Effect, Any, None]:
        url = request.url
        target = self._targets.get((url.scheme, url.netloc))
        if target is None:
            target = _Target.of(url, self._insecure)
            if len(self._targets) < 1024:
                self._targets[(url.scheme, url.netloc)] = target
        headers = self._headers
        if headers is None:
            headers = yield _Headers()
        for name, value in headers.items():
            if name.lower() not in ("authorization", "host", "content-length"):
                request.headers[name] = value
        path = url.path
        scopes = infer_scopes(request.method, path, url.query)
        resource = Resource(target.registry, repository_from_path(path))
        replayable = isinstance(request.stream, self._http.ByteStream)

        # Fast paths first: once a registry is known, a request costs dictionary lookups.
        got = self._challenges.get(target.origin)
        if got is None:
            got = yield _Acquire(self._discovery, target.origin)
        response: httpx.Response | None = None
        if isinstance(got, _Lead):
            # We discover the registry's challenge for everyone waiting on this origin.
            try:
                probe = request if replayable and not only_authorize else _ping(self._http, request)
                response = yield _Send(probe)
                known = self._learn(target, response)
            finally:
                # Waiters look again rather than share a failure: their own requests may fare
                # better, and one of them takes over the discovery.
                got.release()
            if probe is request and response.status_code != 401:
                return
            if probe is not request:
                response = None
        else:
            known = got
        if isinstance(known, _Open):
            if only_authorize:
                return
            response = yield _Send(request)
            if response.status_code != 401:
                return
            known = self._learn(target, response)
            if isinstance(known, _Open) or not replayable:
                return
        challenge = known
        resolution: Resolution = self._cached_resolution(resource)
        if resolution is _MISSING:
            resolution = yield _Resolve(resource)
        authorized = yield from self._authorize(request, target, challenge, scopes, resolution)
        if only_authorize:
            return
        if not authorized and response is not None:
            return  # we have nothing to add: the 401 stands
        response = yield _Send(request)
        if response.status_code != 401 or not authorized or not replayable:
            return
        # One retry: a stale or too narrow token. Widen the scope from the new challenge.
        retry = (
            select_challenge(parse_challenges(response.headers.get_list(WWW_AUTHENTICATE)))
            if response.headers.get(WWW_AUTHENTICATE)
            else None
        )
        if retry is None or not retry.is_bearer or not challenge.is_bearer:
            return
        if retry.error not in _RETRY_ERRORS and retry.error is not None:
            return
        self.stats.retries += 1
        if retry.realm and retry.realm != challenge.realm:
            return  # a different token server: do not send credentials there unasked
        try:
            widened = scopes | retry.scopes
        except AsyncAuthError:
            widened = scopes  # a malformed scope parameter: ask for what the request needs
        self._drop_token(target, challenge, scopes, resolution.credential)
        authorized = yield from self._authorize(request, target, challenge, widened, resolution)
        if authorized:
            yield _Send(request)

    def _learn(self, target: _Target, response: httpx.Response) -> Challenge | _Open:
        """Record what a registry's answer says about its authentication."""
        if response.status_code != 401:
            self._challenges.setdefault(target.origin, _OPEN)
            return self._challenges[target.origin]
        self.stats.challenges += 1
        chosen = select_challenge(parse_challenges(response.headers.get_list(WWW_AUTHENTICATE)))
        if chosen is None:
            self._challenges[target.origin] = _OPEN
            return _OPEN
        if chosen.is_bearer:
            # Keep realm and service: the scope is per request.
            params = {k: v for k, v in chosen.params.items() if k in ("realm", "service")}
            chosen = Challenge("bearer", params)
        else:
            chosen = Challenge("basic", {})
        self._challenges[target.origin] = chosen
        log.debug("learnt %s challenge for %s", chosen.scheme, target.origin)
        return chosen

    def _authorize(
        self,
        request: httpx.Request,
        target: _Target,
        challenge: Challenge,
        scopes: ScopeSet,
        resolution: Resolution,
    ) -> Generator[_Effect, Any, bool]:
        """Set ``Authorization`` on ``request``; False when there is nothing to send."""
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
            request.headers["Authorization"] = f"Bearer {credential.registry_token}"
            return True
        if challenge.is_basic:
            if credential.kind != "basic":
                return False
            request.headers["Authorization"] = basic_authorization(
                credential.username or "", credential.password or ""
            )
            return True
        token = yield from self._token(target, challenge, scopes, resolution)
        request.headers["Authorization"] = token.authorization
        return True

    def _token_key(
        self, target: _Target, challenge: Challenge, scopes: ScopeSet, credential: Credential
    ) -> TokenKey:
        return token_cache_key(target.registry, challenge.service, scopes, credential)

    def _drop_token(
        self, target: _Target, challenge: Challenge, scopes: ScopeSet, credential: Credential
    ) -> None:
        self._tokens.invalidate(self._token_key(target, challenge, scopes, credential))

    def _token(
        self, target: _Target, challenge: Challenge, scopes: ScopeSet, resolution: Resolution
    ) -> Generator[_Effect, Any, Token]:
        key = self._token_key(target, challenge, scopes, resolution.credential)
        fresh = self._fresh_token(key)
        if fresh is not _MISSING:
            return fresh
        got = yield _Acquire(self._token_table, key)
        if not isinstance(got, _Lead):
            return got  # type: ignore[no-any-return]
        try:
            token = yield from self._fetch(target, challenge, scopes, resolution)
        except BaseException as exc:
            got.release(exc)
            raise
        # Kept until issued_at + lifetime minus the margin (Token.remaining is on the wall clock).
        self._tokens.put(key, token, token.remaining(time.time(), TOKEN_MARGIN))
        got.release()
        return token

    def _fetch(
        self, target: _Target, challenge: Challenge, scopes: ScopeSet, resolution: Resolution
    ) -> Generator[_Effect, Any, Token]:
        credential = resolution.credential
        service = challenge.service or ""
        refresh_key = (target.registry, service, credential.fingerprint)
        refresh = self._refresh_tokens.get(refresh_key)
        asked = credential
        if refresh is not None and credential.kind in ("basic", "identity_token"):
            asked = Credential(username=credential.username, identity_token=refresh)
        # A plain-http realm only for a plain-http registry, and then only if credentials may go
        # there (loopback, opted in) or there are none to send.
        allow_http = target.plain_http and (target.may_send_credentials or asked.is_anonymous)
        description = build_token_request(
            challenge, scopes, asked, client_id=self._client_id, allow_http=allow_http
        )
        self.stats.token_requests += 1
        first = _to_request(self._http, description)
        if self._offline_token and asked.kind == "basic":
            # Ask for a refresh token too (docker's offline_token), so that later tokens are
            # fetched with it rather than with the password.
            first.url = first.url.copy_merge_params(
                {"offline_token": "true", "client_id": self._client_id}
            )
        response, body = yield _Send(first, self._max_token_response)
        if asked.kind == "identity_token" and response.status_code in OAUTH_FALLBACK_STATUSES:
            description = build_token_request(
                challenge,
                scopes,
                asked,
                client_id=self._client_id,
                oauth_fallback=True,
                allow_http=allow_http,
            )
            self.stats.token_requests += 1
            response, body = yield _Send(
                _to_request(self._http, description), self._max_token_response
            )
        if response.status_code != 200:
            if refresh is not None:
                self._refresh_tokens.pop(refresh_key, None)
            realm_host = urlsplit(challenge.realm or "").netloc
            source = resolution.source or "no source (anonymous)"
            hint = (
                "the credentials were refused"
                if response.status_code in (401, 403)
                else "the token server failed"
            )
            raise AuthenticationError(
                f"{target.registry}: token server {realm_host} answered "
                f"{response.status_code} for scope {scopes or '(none)'} with "
                f"{credential.kind} credentials from {source}: {hint}"
            )
        if body is None:
            raise TokenResponseError(
                f"token response from {urlsplit(challenge.realm or '').netloc} is larger "
                f"than {self._max_token_response} bytes"
            )
        token: Token = parse_token_response(body, received_at=time.time())
        if token.refresh_token:
            self._refresh_tokens[refresh_key] = token.refresh_token
        return token


class RegistryAuth(RegistryAuthBase, httpx.Auth):
    """Authenticates requests to OCI/Docker registries; for async and sync httpx clients.

    >>> client = httpx.AsyncClient(auth=RegistryAuth())  # doctest: +SKIP
    >>> await client.get("https://ghcr.io/v2/org/app/manifests/1.0")  # doctest: +SKIP

    ``chain`` decides the credentials (default: :func:`asyncauth.default_chain`, built on first
    use). ``insecure_registries`` (``host[:port]``) may receive credentials over plain http;
    loopback hosts always may. ``headers`` are added to every registry request (Docker config's
    ``HttpHeaders``; by default they are read from the chain's :class:`DockerConfigResolver`,
    if it has one). ``credential_ttl`` bounds how long a resolved credential is reused.
    ``offline_token=True`` asks token servers for a refresh token along with the first token
    fetched with a password; later tokens are then fetched with it (docker's behaviour).

    One instance is meant to be shared by all clients and tasks of a program: its caches and
    single-flight tables are what make a thousand concurrent requests cost one token request
    per scope.
    """


# --- helpers of the drivers ------------------------------------------------------------------


def _ping(http: ModuleType, request: httpx.Request) -> httpx.Request:
    url = request.url.copy_with(path="/v2/", query=None, fragment=None)
    headers = {k: v for k, v in request.headers.items() if k.lower() in ("user-agent",)}
    ping: httpx.Request = http.Request("GET", url, headers=headers, extensions=request.extensions)
    return ping


def _to_request(http: ModuleType, description: Any) -> httpx.Request:
    request: httpx.Request = http.Request(
        description.method,
        description.url,
        headers=list(description.headers),
        content=description.body,
    )
    return request


class _TooLargeError(Exception):
    pass


@functools.cache
def _limited_streams(http: ModuleType) -> tuple[type[Any], type[Any]]:
    """Body streams that fail past a size, subclassing ``http``'s own stream types (httpx
    checks the type of ``response.stream`` before iterating it)."""

    class LimitedAsyncStream(http.AsyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, stream: Any, limit: int) -> None:
            self._stream, self._limit = stream, limit

        async def __aiter__(self) -> AsyncIterator[bytes]:
            size = 0
            async for chunk in self._stream:
                size += len(chunk)
                if size > self._limit:
                    raise _TooLargeError
                yield chunk

        async def aclose(self) -> None:
            await self._stream.aclose()

    class LimitedSyncStream(http.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, stream: Any, limit: int) -> None:
            self._stream, self._limit = stream, limit

        def __iter__(self) -> Iterator[bytes]:
            size = 0
            for chunk in self._stream:
                size += len(chunk)
                if size > self._limit:
                    raise _TooLargeError
                yield chunk

        def close(self) -> None:
            self._stream.close()

    return LimitedAsyncStream, LimitedSyncStream


async def _aread_limited(http: ModuleType, response: httpx.Response, limit: int) -> bytes | None:
    """The body, read the normal way (so httpx keeps it for the response history), or
    ``None`` past ``limit`` raw bytes — a hostile server cannot exhaust memory."""
    response.stream = _limited_streams(http)[0](response.stream, limit)
    try:
        body = await response.aread()
    except _TooLargeError:
        await response.aclose()
        return None
    return body if len(body) <= limit else None  # a body read before it reached us


def _read_limited(http: ModuleType, response: httpx.Response, limit: int) -> bytes | None:
    response.stream = _limited_streams(http)[1](response.stream, limit)
    try:
        body = response.read()
    except _TooLargeError:
        response.close()
        return None
    return body if len(body) <= limit else None


async def _acquire_async(table: _Table[T], key: Hashable) -> T | _Lead:
    while True:
        value = table.lookup(key)
        if value is not _MISSING:
            return value
        flight = table.async_flights.get(key)
        if flight is None:
            flight = _Flight(anyio.Event())
            table.async_flights[key] = flight
            return _Lead(table.async_flights, key, flight)
        await flight.event.wait()
        if flight.error is not None:
            raise flight.error


def _acquire_sync(table: _Table[T], key: Hashable) -> T | _Lead:
    while True:
        with table.sync_lock:
            value = table.lookup(key)
            if value is not _MISSING:
                return value
            flight = table.sync_flights.get(key)
            if flight is None:
                flight = _Flight(threading.Event())
                table.sync_flights[key] = flight
                return _Lead(table.sync_flights, key, flight, table.sync_lock)
        flight.event.wait()
        if flight.error is not None:
            raise flight.error
