"""``RegistryAuth``: the registry token handshake as an ``httpx.Auth`` (and an ``httpx2.Auth``).

The flow (:mod:`~asyncauth._registry.flow`) decides and the handshake's state
(:mod:`~asyncauth._registry.handshake`) keeps what was learnt; this module is the driver for the
httpx family: it builds that library's requests from the flow's (:class:`Transmit`,
:class:`Ping`, :class:`Fetch`), shows the flow each response as a
:class:`~asyncauth._registry.messages.Reply`, and raises that library's exceptions.

* ``async_auth_flow`` (``httpx.AsyncClient``) runs the flow's effects in the caller's task.
* ``sync_auth_flow`` (``httpx.Client``) runs them on the one background event loop
  (:mod:`~asyncauth._registry.background`) and sends the requests from the caller's thread:
  there is no blocking copy of any step.
* Requests to a known registry take the warm path (:class:`~asyncauth._registry.handshake.Route`):
  no flow at all unless the registry answers 401.

Token requests and pings are yielded to httpx like any other request, so they go through the
caller's client: its transport, proxies, TLS settings and event hooks. Each carries the
request's *remaining* time as its timeout, and its body is read within it: a request's timeout
bounds the whole handshake (see docs/handshake.md, "Every wait has a bound").
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncGenerator, Generator, Iterable, Mapping
from types import ModuleType
from typing import Any, Final, Literal

import anyio
import httpx

from .._chain import Chain
from .._errors import AsyncAuthError
from .._net import is_loopback
from .._resource import DOCKER_HUB, Resource, normalise_registry
from .._stores.environ import chosen_store
from .._stores.protocol import TokenStore
from . import background, hops
from .flow import Settings, after, request_flow, wants_after
from .handshake import Errand, Handshake, Interrupted, Route, Stats, TimedOut
from .messages import Call, Fetch, Ping, Reply, Sending, Transmit, need_of
from .prefetch import by_registry, needs_for, prefetch_flow
from .streams import bound, keep_replayable, replayable, token_request, within
from .tokencache import TOKEN_CACHE_BYTES, TokenCache
from .tokens import DEFAULT_CLIENT_ID

MAX_TOKEN_RESPONSE = 1 << 20
"""Decoded bytes a token response may have; a token server that sends more is not one."""
DESTINATION: Final = hops.DESTINATION
_UPLOADS: Final = frozenset({"PUT", "POST", "PATCH"})


def total_timeout(request: Any) -> float | None:
    """A request's whole time: the longest of its client's timeouts (connect, read, write,
    pool). httpx bounds each phase (and each read) on its own; the handshake bounds the whole."""
    timeout = request.extensions.get("timeout")
    if not isinstance(timeout, Mapping):
        return None
    parts = [timeout.get(k) for k in ("connect", "read", "write", "pool")]
    given = [float(p) for p in parts if p is not None]
    return max(given) if given else None


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
        token_cache_size: int | None = None,
        token_cache_bytes: int = TOKEN_CACHE_BYTES,
        max_token_response: int = MAX_TOKEN_RESPONSE,
        offline_token: bool = False,
        token_store: TokenStore | Literal[False] | None = None,
        anonymous_fallback: bool = False,
    ) -> None:
        self._chain = chain
        settings = Settings(
            insecure=frozenset(normalise_registry(r) for r in insecure_registries),
            client_id=client_id,
            max_token_response=max_token_response,
            offline_token=offline_token,
            anonymous_fallback=anonymous_fallback,
        )
        self._tokens = TokenCache(
            maxsize=token_cache_size, budget=token_cache_bytes, shared=chosen_store(token_store)
        )
        self._handshake = Handshake(
            lambda: self.chain,
            settings,
            self._tokens,
            credential_ttl=credential_ttl,
            headers=None if headers is None else dict(headers),
        )
        self._timeouts = (self._http.TimeoutException,)

    def __repr__(self) -> str:
        chain = self._chain if self._chain is not None else "default_chain()"
        insecure = sorted(self._handshake.settings.insecure)
        return f"RegistryAuth(chain={chain!r}, insecure_registries={insecure!r})"

    @property
    def chain(self) -> Chain:
        """The chain that decides the credentials (:func:`~asyncauth.default_chain` by default,
        built on first use)."""
        if self._chain is None:
            from .._defaults import default_chain

            store = self.token_store
            self._chain = default_chain(token_store=False if store is None else store)
        return self._chain

    @property
    def stats(self) -> Stats:
        """Counters: token requests, challenges learnt, retries, credential resolutions."""
        return self._handshake.stats

    @property
    def token_store(self) -> TokenStore | None:
        """The store tokens are shared through with other processes, if any."""
        return self._tokens.shared

    def clear(self) -> None:
        """Forget learnt challenges, tokens and credentials (e.g. after a ``docker login``)."""
        self._handshake.clear()

    # -- httpx's entry points ---------------------------------------------------------------

    def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """httpx's entry point for ``AsyncClient``: the warm path when the request's route is
        known, else the flow, its effects run in the caller's task."""
        if request.method in _UPLOADS:
            keep_replayable(self._http, request)
        route = self._warm(request)
        if route is None:
            call = self._call(request)
            return self._cold_async(request, request_flow(call, self._settings), call.target.origin)
        return self._warm_async(request, route)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        """httpx's entry point for ``Client``: the warm path, else the flow, its effects run on
        the background event loop while this thread sends the requests."""
        if request.method in _UPLOADS:
            keep_replayable(self._http, request)
        route = self._warm(request)
        if route is None:
            call = self._call(request)
            return self._cold_sync(request, request_flow(call, self._settings), call.target.origin)
        return self._warm_sync(request, route)

    @property
    def _settings(self) -> Settings:
        return self._handshake.settings

    # -- the warm path ----------------------------------------------------------------------

    def _warm(self, request: httpx.Request) -> Route | None:
        """Authorise ``request`` from its route's decision, without I/O; ``None`` if the flow
        must run. A few comparisons once a registry is known."""
        shaking = self._handshake
        url = request.url
        key = (url.scheme, url.netloc, request.method, url.raw_path)
        route = shaking.routes.get(key)
        if route is None or (value := route.authorization(shaking)) is None:
            route = self._remember(request)
            if route is None:
                return None
            value = route.value
        self._set(request, route.target.origin, shaking.extra or (), value)
        return route

    def _remember(self, request: httpx.Request) -> Route | None:
        """The decision for ``request``'s route from the caches, kept for its next requests
        (after a flow has run, so that the next request is warm at once)."""
        shaking = self._handshake
        url = request.url
        key = (url.scheme, url.netloc, request.method, url.raw_path)
        target = shaking.target(key[:2], str(url))
        return shaking.route(key, target, request.method, url.path, _query(url))

    @staticmethod
    def _set(
        request: httpx.Request, origin: str, extra: tuple[tuple[str, str], ...], value: str
    ) -> None:
        if extra:
            for name, header in extra:
                request.headers[name] = header
            hops.mark(request, origin, tuple(name for name, _ in extra))
        if value:
            request.headers["Authorization"] = value

    async def _warm_async(
        self, request: httpx.Request, route: Route
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        response = yield request
        status = response.status_code
        if status >= 400 and wants_after(status, route.key is not None):
            flow = self._after(request, route, response)
            rest = self._cold_async(request, flow, route.target.origin)
            try:
                outgoing = await rest.__anext__()
                while True:
                    outgoing = await rest.asend((yield outgoing))
            except StopAsyncIteration:
                return
            finally:
                await rest.aclose()
        else:
            self._observe(route, response)

    def _warm_sync(
        self, request: httpx.Request, route: Route
    ) -> Generator[httpx.Request, httpx.Response]:
        response = yield request
        status = response.status_code
        if status >= 400 and wants_after(status, route.key is not None):
            flow = self._after(request, route, response)
            yield from self._cold_sync(request, flow, route.target.origin)
        else:
            self._observe(route, response)

    def _observe(self, route: Route, response: httpx.Response) -> None:
        """A manifest answer's rate-limit headers (where Docker Hub sends them): a warning when
        nearly used up. Other warm answers are not read, nor those of a route whose last answer
        reported none (see :attr:`Route.watch`)."""
        if route.watch and not self._handshake.limits.observe(
            route.target.origin, response.headers.get
        ):
            route.watch = False  # no rate limit reported: not read again until rechecked

    def _after(self, request: httpx.Request, route: Route, response: httpx.Response) -> Any:
        sent = request.headers.get("Authorization")
        call = route.call(request.method, str(request.url), replayable(self._http, request), sent)
        extra = self._handshake.extra or ()
        return after(call, _reply(response), self._settings, extra, authorized=bool(route.value))

    # -- the cold path: the flow, through the handshake's steps ------------------------------

    def _call(self, request: httpx.Request) -> Call:
        url = request.url
        target = self._handshake.target((url.scheme, url.netloc), str(url))
        need = need_of(target.registry, request.method, url.path, _query(url))
        return Call(request.method, str(url), target, need, replayable(self._http, request))

    def _errand(self, request: httpx.Request) -> Errand:
        return Errand.within(total_timeout(request), self._timeouts)

    async def _cold_async(
        self, request: httpx.Request, flow: Any, origin: str
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        errand = self._errand(request)
        steps = self._handshake.steps(flow, errand)
        reply: Reply | None = None
        error: Exception | None = None
        try:
            while True:
                try:
                    effect = await (steps.asend(reply) if error is None else steps.athrow(error))
                except StopAsyncIteration:
                    self._remember(request)
                    return
                except (TimedOut, Interrupted) as exc:
                    raise self._native_error(exc, request) from None
                reply, error = None, None
                response = yield self._outgoing(effect, request, errand, origin)
                try:
                    reply = await self._reply_async(effect, response, errand)
                except Exception as exc:
                    error = exc
        finally:
            await steps.aclose()

    def _cold_sync(
        self, request: httpx.Request, flow: Any, origin: str
    ) -> Generator[httpx.Request, httpx.Response]:
        errand = self._errand(request)
        steps = self._handshake.steps(flow, errand)
        reply: Reply | None = None
        error: Exception | None = None
        try:
            while True:
                try:
                    effect = background.run(_step, steps, reply, error)
                except (TimedOut, Interrupted) as exc:
                    raise self._native_error(exc, request) from None
                if effect is None:
                    self._remember(request)
                    return
                reply, error = None, None
                response = yield self._outgoing(effect, request, errand, origin)
                try:
                    reply = self._reply_sync(effect, response, errand)
                except Exception as exc:
                    error = exc
        finally:
            background.run(steps.aclose)

    def _native_error(self, exc: Exception, request: httpx.Request) -> Exception:
        """A library-neutral failure of the handshake as this library's exception."""
        http = self._http
        cls = http.ReadTimeout if isinstance(exc, TimedOut) else http.TransportError
        error: Exception = cls(str(exc), request=request)
        return error

    # -- the flow's requests as httpx's, httpx's responses as the flow's --------------------

    def _outgoing(
        self, effect: Sending, request: httpx.Request, errand: Errand, origin: str
    ) -> httpx.Request:
        """The httpx request for ``effect``: the caller's own with headers set, or a new one
        that takes what is left of the caller's time."""
        if isinstance(effect, Transmit):
            added = []
            for name, value in effect.headers:
                request.headers[name] = value
                if name != "Authorization":
                    added.append(name)
            if added:
                hops.mark(request, origin, tuple(added))  # for the registry's origin only
            return request
        timeout = _remaining_timeout(request, errand)
        if isinstance(effect, Ping):
            agent = [(k, v) for k, v in request.headers.items() if k.lower() == "user-agent"]
            ping: httpx.Request = self._http.Request(
                "GET",
                effect.url,
                headers=agent,
                extensions={"timeout": timeout, hops.DEADLINE: errand.deadline},
            )
            return ping
        extensions = {
            "timeout": timeout,
            DESTINATION: (effect.target, self._settings.insecure),
            hops.DEADLINE: errand.deadline,
        }
        return token_request(self._http, effect.request, extensions)

    async def _reply_async(
        self, effect: Sending, response: httpx.Response, errand: Errand
    ) -> Reply:
        if not isinstance(effect, Fetch):
            return _reply(response)
        bound(self._http, response, effect.limit, errand.deadline)
        with anyio.move_on_after(errand.remaining()) as scope:
            await response.aread()
        if scope.cancelled_caught:
            await response.aclose()
            raise self._http.ReadTimeout(
                f"the token server {response.url.host} did not finish its answer within the "
                "request's timeout",
                request=response.request,
            )
        return _reply(response, within(response.content, effect.limit))

    def _reply_sync(self, effect: Sending, response: httpx.Response, errand: Errand) -> Reply:
        if not isinstance(effect, Fetch):
            return _reply(response)
        bound(self._http, response, effect.limit, errand.deadline)
        return _reply(response, within(response.read(), effect.limit))

    # -- other entry points -----------------------------------------------------------------

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
        registry needs no authorisation. Raises :class:`~asyncauth.AuthenticationError` when the
        answer would be anonymous only because sources failed.
        """
        value, _ = await self._authorized(client, reference, push=push, base_url=base_url)
        return value

    async def _authorized(
        self,
        client: httpx.AsyncClient,
        reference: str | Resource,
        *,
        push: bool = False,
        base_url: str | None = None,
    ) -> tuple[str, Call]:
        """:meth:`bearer_token`, and the call as the flow left it: its resolution, and what
        ``anonymous_fallback`` made of it (``asyncauth explain --anonymous-fallback`` shows)."""
        resource = Resource.parse(reference)
        if resource.repository is None:
            raise AsyncAuthError(f"{resource}: a token is for a repository, not a registry")
        base = base_url or self.registry_url(resource)
        url = httpx.URL(f"{base}/v2/{resource.repository}/manifests/x")
        request = client.build_request("PUT" if push else "GET", url)
        errand = self._errand(request)
        call = self._call(request)
        flow = request_flow(call, self._settings, only_authorize=True)
        await self._drive(client, flow, request, errand, call.target.origin)
        return errand.authorization or "", call

    async def prefetch(
        self,
        references: Iterable[str | Resource],
        *,
        push: bool = False,
        client: httpx.AsyncClient | None = None,
        base_url: str | None = None,
    ) -> None:
        """Fetch the tokens of many repositories in as few token requests as the server allows,
        so that later requests for them need none.

        Each registry's challenge is learnt where unknown (one ``GET /v2/``), then its
        repositories' scopes are asked for together: pull, and with ``push=True`` pull and push
        (kept for both kinds of request). Tokens already fresh are not asked for again. Where
        the server grants fewer scopes than asked, the rest are asked for one at a time, once.

        ``client`` carries the ping and the token requests: pass the client the requests will
        be sent with (its transport, proxies, TLS and timeouts, as for ``bearer_token``); by
        default a plain ``AsyncClient()`` of this auth's httpx module, for the duration of the
        call. ``base_url`` is the registry's URL when every reference is on one registry
        (default: :meth:`registry_url`). Each request it makes is bounded by the client's
        timeout; the whole is not (wrap it in ``anyio.fail_after`` for that). See
        docs/handshake.md.
        """
        if client is None:
            async with self._http.AsyncClient() as own:
                await self.prefetch(references, push=push, client=own, base_url=base_url)
            return
        for base, resources in by_registry(references, base_url, self.registry_url):
            request = client.build_request("GET", f"{base}/v2/")
            target = self._handshake.target((request.url.scheme, request.url.netloc), base)
            needs = needs_for(target, resources, push=push)
            flow = prefetch_flow(target, base, needs, self._settings)
            errand = Errand.within(None, self._timeouts)
            await self._drive(client, flow, request, errand, target.origin)

    async def _drive(
        self,
        client: httpx.AsyncClient,
        flow: Any,
        request: httpx.Request,
        errand: Errand,
        origin: str,
    ) -> None:
        """Run a flow that sends no request of the caller's (``bearer_token``, ``prefetch``):
        its pings and token requests go through ``client``, past its auth."""
        steps = self._handshake.steps(flow, errand)
        reply: Reply | None = None
        try:
            while True:
                try:
                    effect = await steps.asend(reply)
                except StopAsyncIteration:
                    return
                except (TimedOut, Interrupted) as exc:
                    raise self._native_error(exc, request) from None
                outgoing = self._outgoing(effect, request, errand, origin)
                response = await client.send(outgoing, auth=None, stream=True)
                try:
                    reply = await self._reply_async(effect, response, errand)
                finally:
                    await response.aclose()
        finally:
            await steps.aclose()

    def registry_url(self, resource: Resource) -> str:
        """``https://host[:port]`` — or ``http://`` for loopback and insecure registries.

        A guess without I/O; :func:`asyncauth._client.registry_base_url` asks the registry.
        """
        if resource.registry == DOCKER_HUB:
            return "https://registry-1.docker.io"
        if is_loopback(resource.host) or resource.registry in self._settings.insecure:
            return f"http://{resource.registry}"
        return f"https://{resource.registry}"


def _query(url: httpx.URL) -> str:
    return url.query.decode("ascii", "replace")


def _reply(response: httpx.Response, body: bytes | None = None) -> Reply:
    """``response`` as the flow reads it (``history``: the URLs a redirect led through)."""
    return Reply(
        response.status_code,
        str(response.url),
        tuple((name.lower(), value) for name, value in response.headers.multi_items()),
        tuple(str(hop.request.url) for hop in response.history),
        body,
        time.time(),
        _via(response),
    )


def _via(response: httpx.Response) -> str | None:
    """The ``host:port`` of the proxy a plain-http ``response`` came through, if one is known:
    the route of a :func:`~asyncauth.create_client` client names it; on another transport, a
    connection whose peer is not the URL's host and port (httpx's own, httpx2's) shows it. A
    proxy on the same port as a registry named by a host name is not seen."""
    url = response.url
    if url.scheme != "http":
        return None  # through a proxy, https is a tunnel: nothing in it is the proxy's
    named = response.extensions.get(hops.VIA)
    if named is not None:
        return str(named)
    stream = response.extensions.get("network_stream")
    try:
        peer = None if stream is None else stream.get_extra_info("server_addr")
    except Exception:  # diagnostics only: a closed socket, a transport without the information
        return None
    if not isinstance(peer, tuple) or len(peer) < 2:
        return None
    address, port = str(peer[0]), peer[1]
    if port == (url.port or 80) and not _other_address(url.host, address):
        return None
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _other_address(host: str, address: str) -> bool:
    """Whether ``host`` is an IP address other than ``address`` (a name cannot be compared)."""
    try:
        return ipaddress.ip_address(host) != ipaddress.ip_address(address)
    except ValueError:
        return False


def _remaining_timeout(request: httpx.Request, errand: Errand) -> dict[str, float | None]:
    """The request's timeout for a request of its handshake: each phase at most what is left."""
    given = request.extensions.get("timeout")
    given = given if isinstance(given, Mapping) else {}
    left = errand.remaining()
    phases: dict[str, float | None] = {}
    for phase in ("connect", "read", "write", "pool"):
        value = given.get(phase)
        phases[phase] = left if value is None else (value if left is None else min(value, left))
    return phases


async def _step(steps: AsyncGenerator[Sending, Any], reply: Any, error: Exception | None) -> Any:
    """One step of ``steps`` on the background loop; ``None`` once they have ended."""
    try:
        return await (steps.asend(reply) if error is None else steps.athrow(error))
    except StopAsyncIteration:
        return None


class RegistryAuth(RegistryAuthBase, httpx.Auth):
    """Authenticates requests to OCI/Docker registries; for async and sync httpx clients.

    >>> client = httpx.AsyncClient(auth=RegistryAuth())  # doctest: +SKIP
    >>> await client.get("https://ghcr.io/v2/org/app/manifests/1.0")  # doctest: +SKIP

    ``chain`` decides the credentials (default: :func:`asyncauth.default_chain`, built on first
    use). ``insecure_registries`` (``host[:port]``) may receive credentials over plain http;
    loopback hosts always may. ``headers`` are added to every registry request (Docker config's
    ``HttpHeaders``; by default the chain's header sources are asked, once). ``credential_ttl``
    bounds how long a resolved credential is reused. ``offline_token=True`` asks token servers
    for a refresh token along with the first token fetched with a password; later tokens are
    then fetched with it (docker's behaviour). ``token_store`` shares tokens with other
    processes (see :class:`~asyncauth.TokenStore`, :class:`~asyncauth.RedisTokenStore`); tokens
    are always kept in process too. By default the store ``ASYNCAUTH_TOKEN_STORE`` and
    ``ASYNCAUTH_TOKEN_STORE_KEY`` describe is used, if they are set (read now); ``False`` opts
    out. The default chain shares cloud credentials through the same store.
    ``anonymous_fallback=True``: when a token server refuses the credential of a *pull*, the
    pull is tried once anonymously (public images of a registry whose login went stale); never
    a push or a delete. The DEBUG log says when it happens.
    ``token_cache_bytes`` bounds the memory the tokens take (64 MiB by default; a token
    :meth:`prefetch` kept for many repositories counts once), ``token_cache_size`` (if given)
    their number; past a bound, expired tokens go first, then the least recently used.

    Each request's timeout bounds its whole handshake: the longest of its client's timeouts
    (connect, read, write, pool), from when the handshake starts; waiting for a token another
    request is fetching, a token server's ``Retry-After`` and the token request itself count
    against it (``httpx.ReadTimeout`` when it runs out).

    One instance is meant to be shared by all clients, tasks, event loops and threads of a
    program: its caches and single-flight tables are what make a thousand concurrent requests
    cost one token request per scope.
    """
