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
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import aiohttp
import httpx
from yarl import URL

from ._chain import Chain
from ._registry.aiohttp_driver import (
    REDIRECTS,
    Exchange,
    drive,
    forwarded,
    is_hop,
    mirror,
    note_redirect,
    pass_through,
    replayable,
    view,
)
from ._registry.aiohttp_warm import MAX_ROUTES, Route, RouteKey, route_for
from ._registry.auth import RegistryAuth, RegistryAuthBase
from ._registry.call import Call, need_of
from ._registry.challenge import Challenge
from ._registry.flow import Stats
from ._registry.target import Target
from ._resolution import Resolution
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
    token_cache_size: int
    max_token_response: int
    offline_token: bool
    token_store: TokenStore | None


class RegistryAuthMiddleware:
    """Authenticates an ``aiohttp.ClientSession``'s requests to OCI/Docker registries.

    ``chain`` and the keyword options are :class:`asyncauth.RegistryAuth`'s. ``auth=`` instead
    shares an existing ``RegistryAuth`` (httpx or httpx2): its challenges, credentials and tokens
    serve httpx clients and aiohttp sessions alike. One middleware is meant to serve every session
    and task of an event loop; its caches and single-flight tables are what make a thousand
    concurrent requests cost one 401 per registry and one token request per scope.

    * Token requests and the ``GET /v2/`` ping go through the request's own session (connector,
      proxy, cookie jar, trace configs, ``ssl=``) but not through its middlewares.
    * Timeouts: a request's total timeout bounds all of it, token requests included; a token
      request on its own is bounded by the session's ``timeout`` (aiohttp does not show a
      middleware the request's own ``timeout=``).
    * Redirects: aiohttp follows them after the middleware returns, and each hop passes through
      the middleware again. A hop that leaves the registry's origin is passed through untouched:
      no credential goes with it, and a 401 from there is the caller's.
    * Errors are aiohttp's for the network, and asyncauth's for the handshake
      (:class:`~asyncauth.AuthenticationError`, :class:`~asyncauth.InsecureTransportError`...).
      Waiting past the budget for a token another request is fetching raises
      ``aiohttp.ServerTimeoutError``.
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
        self._http = self._auth._http
        self._targets: dict[tuple[str, str], Target] = {}
        self._routes: dict[RouteKey, Route] = {}

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

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if is_hop(request):
            return await pass_through(request, handler)
        url = request.url
        key = (url.scheme, url.raw_authority, request.method, url.raw_path, url.raw_query_string)
        route = self._routes.get(key)
        if route is None or (value := route.authorization(self._handshake)) is None:
            route = self._route(key, request)
            if route is None:
                return await self._cold(request, handler)
            value = route.value
        headers = self._handshake.headers
        if headers:
            for name, header in forwarded(headers):
                request.headers[name] = header
        request.headers["Authorization"] = value
        response = await handler(request)
        status = response.status
        if status == 401:
            call = Call(mirror(self._http, request), route.target, route.need, replayable(request))
            call.challenge, call.resolution = route.challenge, route.resolution
            return await self._after(request, handler, call, response)
        if status in REDIRECTS:
            note_redirect(request, response)
        return response

    def _route(self, key: RouteKey, request: aiohttp.ClientRequest) -> Route | None:
        """A route's decision from the handshake's caches, remembered for its next requests;
        ``None`` when the flow must run (something to learn, resolve or fetch)."""
        handshake = self._handshake
        if handshake.headers is None:
            return None
        url = request.url
        target = self._targets.get(key[:2]) or self._target(url)
        challenge = handshake.challenges.peek(target.origin)
        if not isinstance(challenge, Challenge):
            return None
        query = url.raw_query_string.encode("ascii", "replace")
        need = need_of(target.registry, request.method, url.path, query)
        resolution = handshake.resolutions.peek(need.resource)
        if not isinstance(resolution, Resolution):
            return None
        route = route_for(handshake, target, need, challenge, resolution)
        if route is not None:
            if len(self._routes) >= MAX_ROUTES:
                self._routes.clear()
            self._routes[key] = route
        return route

    def _target(self, url: URL) -> Target:
        """The registry at ``url``'s origin, computed as the httpx drivers do (same cache keys)."""
        target = self._handshake.target(httpx.URL(f"{url.scheme}://{url.raw_authority}/"))
        if len(self._targets) < 1024:
            self._targets[(url.scheme, url.raw_authority)] = target
        return target

    async def _cold(
        self, request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """Everything the warm path cannot do: the whole flow, through the driver."""
        mirrored = mirror(self._http, request)
        exchange = Exchange(self._http, request, handler, mirrored, self._handshake)
        return await self._run(exchange, self._handshake.flow(mirrored))

    async def _after(
        self,
        request: aiohttp.ClientRequest,
        handler: ClientHandlerType,
        call: Call,
        response: aiohttp.ClientResponse,
    ) -> aiohttp.ClientResponse:
        """A 401 to a request sent from the caches: retry once, or say why it was refused."""
        exchange = Exchange(self._http, request, handler, call.request, self._handshake)
        exchange.response = response
        return await self._run(exchange, self._handshake.after(call, view(self._http, response)))

    async def _run(self, exchange: Exchange, flow: Any) -> aiohttp.ClientResponse:
        try:
            await drive(flow, exchange)
        except httpx.TimeoutException as exc:  # a wait for another request's token
            exchange.release()
            raise aiohttp.ServerTimeoutError(str(exc)) from None
        except BaseException:
            exchange.release()
            raise
        response = exchange.response
        if response is None:  # pragma: no cover - every path of the flow sends the request
            raise RuntimeError("the handshake ended without sending the request")
        if response.status in REDIRECTS:
            note_redirect(exchange.request, response)
        return response
