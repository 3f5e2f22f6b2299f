"""The third driver: the handshake's flow carried out inside an aiohttp client middleware.

The flow (:mod:`~asyncauth._registry.flow`) speaks httpx's request and response types. Only the
cold path (learning a challenge, resolving a credential, fetching a token) and a 401 need it, so
this driver does not teach the flow aiohttp: it shows the flow an httpx *mirror* of the aiohttp
request, carries the headers the flow sets on the mirror over to the real request when the flow
sends it, and shows the flow each aiohttp answer as an httpx response with no body. The warm path
(:mod:`asyncauth.aiohttp`) touches none of this.

* The request itself goes through ``handler``: the rest of the session's middleware chain and
  its connection.
* The ``GET /v2/`` ping and token requests go through the session that sent the request
  (connector, proxy, cookie jar, trace configs, timeout) with ``middlewares=()``: not through
  this middleware again (it would wait for itself) nor the caller's others, as httpx's auth flow
  yields its token requests past the auth.
* Token responses are read undecoded (``auto_decompress=False``) through the
  :class:`~asyncauth._registry.bodies.BoundedDecoder`: the size limit counts decoded bytes.
* A token request's body (a refresh token) is a one-shot payload: aiohttp replays a 307/308's
  body unless it is consumed, so the second write is refused.

Redirects. aiohttp follows them *outside* the middleware chain: each hop is a new request that
passes through every middleware again. A hop to another origin must be passed through untouched
(issue 11 #1: its 401 teaches nothing and gets nothing), so a registry answer that redirects
elsewhere leaves a mark in the task's context, keyed by the redirect loop's timer, which every
hop of one ``session.request`` call shares (the one private aiohttp attribute read here,
``ClientRequest._timer``; without it the mark falls back to the next hop's origin).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from types import ModuleType
from typing import Any, Final

import aiohttp
import httpx
from aiohttp.client_middlewares import ClientHandlerType
from aiohttp.payload import BytesPayload
from yarl import URL

from .bodies import BoundedDecoder
from .drivers import END, resume
from .effects import Flow, Send
from .flow import NOT_FORWARDED, Handshake
from .streams import ReplayRefusedError

REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_FRAMING = frozenset({"host", "content-length", "transfer-encoding"})

_next_hop: ContextVar[tuple[object, tuple[str, str | None, int | None]] | None] = ContextVar(
    "asyncauth_aiohttp_next_hop", default=None
)
"""(the redirect loop's timer, or ``None``; the origin it was redirected to), per task."""


def _loop_key(request: aiohttp.ClientRequest) -> object:
    return getattr(request, "_timer", None)


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return url.scheme, url.host, url.port


def is_hop(request: aiohttp.ClientRequest) -> bool:
    """Whether ``request`` follows a redirect that led away from a registry (and takes the mark)."""
    mark = _next_hop.get()
    if mark is None:
        return False
    key, origin = mark
    if (key is None and origin == _origin(request.url)) or (
        key is not None and key is _loop_key(request)
    ):
        _next_hop.set(None)
        return True
    return False


def note_redirect(
    request: aiohttp.ClientRequest, response: aiohttp.ClientResponse, *, hop: bool = False
) -> None:
    """Mark the next hop of a redirect that leaves the registry's origin (every next hop of a
    redirect that left it already: ``hop``)."""
    location = response.headers.get("Location") or response.headers.get("URI")
    if location is None:
        return  # aiohttp does not follow it
    try:
        following = _origin(response.url.join(URL(location)))
    except ValueError:
        following = ("", None, None)  # aiohttp refuses it; mark it anyway
    if hop or following != _origin(request.url):
        _next_hop.set((_loop_key(request), following))


async def pass_through(
    request: aiohttp.ClientRequest, handler: ClientHandlerType
) -> aiohttp.ClientResponse:
    """A redirect's hop: sent as aiohttp built it, its answer returned as it is."""
    response = await handler(request)
    if response.status in REDIRECTS:
        note_redirect(request, response, hop=True)
    return response


def forwarded(headers: Mapping[str, str] | None) -> Iterator[tuple[str, str]]:
    """The chain's extra headers (Docker config ``HttpHeaders``) that a registry request carries."""
    for name, value in (headers or {}).items():
        if name.lower() not in NOT_FORWARDED:
            yield name, value


def replayable(request: aiohttp.ClientRequest) -> bool:
    """A body that can be sent twice (the first try may be the probe that learns the challenge)."""
    return isinstance(request.body, bytes | BytesPayload)


def _timeout(timeout: aiohttp.ClientTimeout) -> dict[str, float | None]:
    """The session's timeout as httpx's ``timeout`` extension, so that a wait for another task's
    token is bounded as this request's own token request would be (``budget`` sums the parts)."""
    if timeout.total is not None:
        return {"connect": timeout.total, "read": 0.0, "write": 0.0, "pool": 0.0}
    connect = timeout.sock_connect if timeout.sock_connect is not None else timeout.connect
    return {"connect": connect, "read": timeout.sock_read, "write": 0.0, "pool": 0.0}


def mirror(http: ModuleType, request: aiohttp.ClientRequest) -> httpx.Request:
    """The request as the flow reads it (method, URL, headers, body kind, timeout)."""
    extensions = {"timeout": _timeout(request.session.timeout)}
    headers = list(request.headers.items())
    if replayable(request):
        made: httpx.Request = http.Request(
            request.method, str(request.url), headers=headers, extensions=extensions
        )
    else:
        stream = http.AsyncByteStream()  # never read: it only says "cannot be sent twice"
        made = http.Request(
            request.method, str(request.url), headers=headers, stream=stream, extensions=extensions
        )
    return made


def view(http: ModuleType, response: aiohttp.ClientResponse) -> httpx.Response:
    """An aiohttp answer as the flow reads it: status, headers, URL and redirect history."""
    request = http.Request(response.method, str(response.url))
    shown: httpx.Response = http.Response(
        response.status, headers=response.raw_headers, request=request
    )
    if response.history:
        shown.history = [view(http, hop) for hop in response.history]
    return shown


class OneShotPayload(BytesPayload):
    """A token request's body: written once; aiohttp will not replay it after a 307/308."""

    _sent = False

    @property
    def consumed(self) -> bool:
        return self._sent

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        if self._sent:
            raise _replay_refused()
        self._sent = True
        await super().write_with_length(writer, content_length)


def _replay_refused() -> ReplayRefusedError:
    return ReplayRefusedError(
        "a token request's body (it holds a secret) would be sent again after a redirect; refused"
    )


class Exchange:
    """Carries out the flow's :class:`Send` effects for one request on its aiohttp session."""

    def __init__(
        self,
        http: ModuleType,
        request: aiohttp.ClientRequest,
        handler: ClientHandlerType,
        mirrored: httpx.Request,
        handshake: Handshake,
    ) -> None:
        self.http = http
        self.request = request
        self.handler = handler
        self.mirrored = mirrored
        self.handshake = handshake
        self.response: aiohttp.ClientResponse | None = None
        """The latest answer to the request itself: what the middleware returns."""

    async def send(self, effect: Send) -> Any:
        if effect.request is self.mirrored:
            return await self._send_request()
        if effect.read_limit is None:
            return await self._ping(effect.request)
        return await self._token(effect.request, effect.read_limit)

    async def _send_request(self) -> httpx.Response:
        headers = self.request.headers
        for name, value in forwarded(self.handshake.headers):
            headers[name] = value
        authorization = self.mirrored.headers.get("Authorization")
        if authorization is not None:
            headers["Authorization"] = authorization
        self.release()
        self.response = await self.handler(self.request)
        return view(self.http, self.response)

    def release(self) -> None:
        if self.response is not None:
            self.response.release()
            self.response = None

    def _options(self, outgoing: httpx.Request) -> dict[str, Any]:
        headers = [(k, v) for k, v in outgoing.headers.multi_items() if k.lower() not in _FRAMING]
        ssl = self.request.ssl
        return {
            "headers": headers,
            "middlewares": (),
            "ssl": True if isinstance(ssl, aiohttp.Fingerprint) else ssl,
        }

    async def _ping(self, outgoing: httpx.Request) -> httpx.Response:
        url = URL(str(outgoing.url), encoded=True)
        session = self.request.session
        async with session.request(outgoing.method, url, **self._options(outgoing)) as response:
            return view(self.http, response)

    async def _token(self, outgoing: httpx.Request, limit: int) -> tuple[httpx.Response, bytes]:
        url = URL(str(outgoing.url), encoded=True)
        body = outgoing.content
        payload = OneShotPayload(body) if body else None
        session = self.request.session
        options = self._options(outgoing)
        try:
            async with session.request(
                outgoing.method, url, data=payload, auto_decompress=False, **options
            ) as response:
                decoder = BoundedDecoder(response.headers.getall("Content-Encoding", ()), limit)
                parts = [decoder.feed(chunk) async for chunk in response.content.iter_any()]
                parts.append(decoder.finish())
                return view(self.http, response), b"".join(parts)
        except aiohttp.ClientPayloadError as exc:
            if payload is not None and payload.consumed:
                raise _replay_refused() from exc
            raise


async def drive(flow: Flow, exchange: Exchange) -> None:
    """Run ``flow`` to its end: requests through ``exchange``, other effects awaited here; an
    effect's error is thrown into the flow where it asked (as :func:`drivers.steps` does)."""
    value: Any = None
    error: Exception | None = None
    try:
        while (effect := resume(flow, value, error)) is not END:
            error = None
            try:
                if isinstance(effect, Send):
                    value = await exchange.send(effect)
                else:
                    value = await effect.run(*effect.args)
            except Exception as exc:
                error = exc
    finally:
        flow.close()
