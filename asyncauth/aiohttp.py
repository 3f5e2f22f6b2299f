"""The registry handshake as an `aiohttp <https://docs.aiohttp.org/>`_ client middleware.

::

    import aiohttp
    from asyncauth.aiohttp import RegistryAuthMiddleware

    async with aiohttp.ClientSession(middlewares=(RegistryAuthMiddleware(),)) as session:
        async with session.get("https://ghcr.io/v2/org/app/manifests/1.0") as response:
            ...

The same handshake as :class:`asyncauth.RegistryAuth` (one flow, its caches and its rules; see
docs/handshake.md), driven from inside aiohttp's middleware chain (aiohttp ≥ 3.12). Requests to a
known registry are authorised from the caches with a few dictionary lookups; the flow runs only to
learn a challenge, resolve a credential, fetch a token, or answer a 401.

Importing this module requires aiohttp (``pip install 'asyncauth[aiohttp]'``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, TypedDict, Unpack

import aiohttp

from ._chain import Chain
from ._registry.aiohttp_driver import (
    REDIRECTS,
    TIMEOUTS,
    Exchange,
    is_hop,
    note_redirect,
    pass_through,
    replayable,
    reply,
    run,
    run_effects,
    total_timeout,
    via,
)
from ._registry.auth import RegistryAuth, RegistryAuthBase
from ._registry.flow import after, request_flow, wants_after
from ._registry.handshake import Errand, Route, Stats
from ._registry.messages import Call, need_of
from ._registry.prefetch import by_registry, needs_for, prefetch_flow
from ._registry.target import target_of
from ._resource import Resource
from ._stores.protocol import TokenStore

if TYPE_CHECKING:
    from aiohttp.client_middlewares import ClientHandlerType

__all__ = ["RegistryAuthMiddleware", "RegistryAuthOptions"]


class RegistryAuthOptions(TypedDict, total=False):
    """The keyword options of :class:`asyncauth.RegistryAuth`, which the middleware shares."""

    insecure_registries: Iterable[str]
    headers: Mapping[str, str] | None
    client_id: str
    credential_ttl: float
    token_cache_size: int | None
    token_cache_bytes: int
    max_token_response: int
    offline_token: bool
    token_store: TokenStore | None
    anonymous_fallback: bool


class RegistryAuthMiddleware:
    """Authenticates an ``aiohttp.ClientSession``'s requests to OCI/Docker registries.

    ``chain`` and the keyword options are :class:`asyncauth.RegistryAuth`'s. ``auth=`` instead
    shares an existing ``RegistryAuth`` (httpx or httpx2): its challenges, credentials and tokens
    serve httpx clients and aiohttp sessions alike. One middleware is meant to serve every session
    and task of an event loop; its caches and single-flight tables are what make a thousand
    concurrent requests cost one 401 per registry and one token request per scope.

    * Token requests and the ``GET /v2/`` ping go through the request's own session (connector,
      proxy, cookie jar, trace configs, ``ssl=``) but not through its middlewares.
    * Timeouts: the session's ``timeout`` bounds each request's whole handshake (its ``total``,
      else the longest of its other bounds): waiting for a token another request is fetching,
      the ping and the token request, a ``Retry-After`` pause (aiohttp does not show a
      middleware the request's own ``timeout=``, which bounds the request as usual).
    * Redirects: aiohttp follows them after the middleware returns, and each hop passes through
      the middleware again. A hop that leaves the registry's origin is passed through untouched:
      no credential goes with it, and a 401 from there is the caller's.
    * Errors are aiohttp's for the network, and asyncauth's for the handshake
      (:class:`~asyncauth.AuthenticationError`, :class:`~asyncauth.InsecureTransportError`...).
      When the handshake's time runs out it raises ``aiohttp.ServerTimeoutError`` naming the
      wait; when the request fetching a token for this one failed in the transport,
      ``aiohttp.ClientConnectionError``. No httpx type crosses this middleware.
    """

    def __init__(
        self,
        chain: Chain | None = None,
        *,
        auth: RegistryAuthBase | None = None,
        **options: Unpack[RegistryAuthOptions],
    ) -> None:
        if auth is not None and (chain is not None or options):
            raise TypeError(
                "RegistryAuthMiddleware: auth= shares that RegistryAuth's chain and options; "
                "pass either auth= or a chain and options, not both"
            )
        self._auth = auth if auth is not None else RegistryAuth(chain, **options)
        self._handshake = self._auth._handshake

    def __repr__(self) -> str:
        return f"RegistryAuthMiddleware(auth={self._auth!r})"

    @property
    def auth(self) -> RegistryAuthBase:
        """The ``RegistryAuth`` whose state this middleware uses (pass it to httpx clients too)."""
        return self._auth

    @property
    def stats(self) -> Stats:
        """Counters: token requests, challenges learnt, retries, credential resolutions."""
        return self._auth.stats

    def clear(self) -> None:
        """Forget learnt challenges, tokens and credentials (e.g. after a ``docker login``)."""
        self._auth.clear()

    async def prefetch(
        self,
        references: Iterable[str | Resource],
        *,
        push: bool = False,
        session: aiohttp.ClientSession | None = None,
        base_url: str | None = None,
    ) -> None:
        """Fetch the tokens of many repositories in as few token requests as the server allows,
        so that the session's later requests for them need none. As
        :meth:`asyncauth.RegistryAuth.prefetch`; ``session`` carries the ping and the token
        requests (its connector, proxy, TLS and timeout; not its middlewares): pass the session
        the requests will be sent with; by default a plain ``aiohttp.ClientSession()`` for the
        duration of the call.
        """
        if session is None:
            async with aiohttp.ClientSession() as own:
                await self.prefetch(references, push=push, session=own, base_url=base_url)
            return
        shaking = self._handshake
        for base, resources in by_registry(references, base_url, self._auth.registry_url):
            target = target_of(base, shaking.settings.insecure)
            needs = needs_for(target, resources, push=push)
            flow = prefetch_flow(target, base, needs, shaking.settings)
            errand = Errand.within(None, TIMEOUTS)
            exchange = Exchange(None, None, errand, shaking.settings.insecure, session=session)
            await run_effects(shaking, flow, exchange)

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """Authorise ``request`` (from its route's decision when it has one) and send it."""
        if is_hop(request):
            return await pass_through(request, handler)
        shaking = self._handshake
        url = request.url
        key = (url.scheme, url.raw_authority, request.method, url.raw_path, url.raw_query_string)
        route = shaking.routes.get(key)
        if route is None or (value := route.authorization(shaking)) is None:
            target = shaking.target(key[:2], str(url))
            route = shaking.route(key, target, request.method, url.path, url.raw_query_string)
            if route is None:
                return await self._cold(request, handler)
            value = route.value
        headers = request.headers
        for name, header in shaking.extra or ():
            headers[name] = header
        if value:
            headers["Authorization"] = value
        response = await handler(request)
        status = response.status
        if status >= 400 and wants_after(status, route.key is not None):
            return await self._after(request, handler, route, response)
        if status in REDIRECTS:
            note_redirect(request, response)
        elif route.watch and not shaking.limits.observe(route.target.origin, response.headers.get):
            route.watch = False  # no rate limit reported: not read again until rechecked
        return response

    def _exchange(self, request: aiohttp.ClientRequest, handler: ClientHandlerType) -> Exchange:
        errand = Errand.within(total_timeout(request.session.timeout), TIMEOUTS)
        return Exchange(request, handler, errand, self._handshake.settings.insecure)

    async def _cold(
        self, request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """Everything the warm path cannot do: the whole flow."""
        shaking = self._handshake
        url = request.url
        target = shaking.target((url.scheme, url.raw_authority), str(url))
        need = need_of(target.registry, request.method, url.path, url.raw_query_string)
        call = Call(request.method, str(url), target, need, replayable(request))
        flow = request_flow(call, shaking.settings)
        response = await run(shaking, flow, self._exchange(request, handler))
        key = (url.scheme, url.raw_authority, request.method, url.raw_path, url.raw_query_string)
        shaking.route(key, target, request.method, url.path, url.raw_query_string)
        return response

    async def _after(
        self,
        request: aiohttp.ClientRequest,
        handler: ClientHandlerType,
        route: Route,
        response: aiohttp.ClientResponse,
    ) -> aiohttp.ClientResponse:
        """A 401, a "not now" (429, 503) or a cached token's 400/403 to a request sent from its
        route: retry once, or say why it was refused."""
        shaking = self._handshake
        sent = request.headers.get("Authorization")
        call = route.call(request.method, str(request.url), replayable(request), sent)
        flow = after(
            call,
            reply(response, proxy=via(request)),
            shaking.settings,
            shaking.extra or (),
            authorized=bool(route.value),
        )
        exchange = self._exchange(request, handler)
        exchange.response = response
        return await run(shaking, flow, exchange)
