"""The handshake's driver for aiohttp: the flow carried out inside a client middleware.

The flow (:mod:`~asyncauth._registry.flow`) speaks no HTTP library; this driver builds aiohttp's
requests from what it yields and shows it aiohttp's answers as
:class:`~asyncauth._registry.messages.Reply` values. The warm path (:mod:`asyncauth.aiohttp`)
needs none of it: only learning a challenge, resolving a credential, fetching a token or a 401.

* The request itself (:class:`Transmit`) goes through ``handler``: the rest of the session's
  middleware chain and its connection.
* The ``GET /v2/`` ping and token requests go through the session that sent the request
  (connector, proxy, cookie jar, trace configs) but not through its middlewares (this one would
  wait for itself; httpx's auth flow likewise yields its token requests past the auth). Each
  is bounded by what is left of the request's time (``ClientTimeout(total=...)``).
* Every hop of a token request — the first and each redirect — passes a per-request middleware
  that checks its destination before it is sent
  (:func:`~asyncauth._registry.target.check_destination`).
* Token responses are read undecoded (``auto_decompress=False``) through the
  :class:`~asyncauth._registry.bodies.BoundedDecoder`: the size limit counts decoded bytes.
* A token request's body (a refresh token) is a one-shot payload: aiohttp replays a 307/308's
  body unless it is consumed, so the second write is refused.

Redirects. aiohttp follows them *outside* the middleware chain: each hop is a new request that
passes through every middleware again. A hop to another origin must be passed through untouched
(its 401 teaches nothing and gets nothing), so a registry answer that redirects elsewhere leaves
a mark in the task's context, keyed by the redirect loop's timer, which every hop of one
``session.request`` call shares (the one private aiohttp attribute read here,
``ClientRequest._timer``; without it the mark falls back to the next hop's origin).
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any, Final

import aiohttp
from aiohttp.client_middlewares import ClientHandlerType
from aiohttp.payload import BytesPayload, IOBasePayload
from yarl import URL

from .bodies import BoundedDecoder
from .handshake import Errand, Handshake, Interrupted, TimedOut
from .messages import Fetch, Ping, Reply, Sending, Transmit
from .streams import ReplayRefusedError
from .target import Target, check_destination

REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_FRAMING = frozenset({"host", "content-length", "transfer-encoding"})
TIMEOUTS: Final = (aiohttp.ServerTimeoutError, TimeoutError)

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


def replayable(request: aiohttp.ClientRequest) -> bool:
    """A body that can be sent twice (the first try may be the probe that learns the challenge;
    a 401 to an upload whose token expired is tried once more): bytes or a str, or a seekable
    file (aiohttp writes a file's payload again from where it started)."""
    body = request.body
    if isinstance(body, bytes | BytesPayload):
        return True
    if not isinstance(body, IOBasePayload) or body.consumed:
        return False
    try:  # the payload's file: aiohttp names it only privately (aiohttp 3.12 to 3.14)
        return bool(getattr(body, "_value", None).seekable())  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):  # not a file after all, or a closed one
        return False


def via(request: aiohttp.ClientRequest) -> str | None:
    """The ``host:port`` of the proxy a plain-http ``request`` goes through, if any."""
    proxy = request.proxy
    if proxy is None or request.url.scheme != "http":
        return None
    host = f"[{proxy.host}]" if proxy.host and ":" in proxy.host else proxy.host
    return f"{host}:{proxy.port}"


def total_timeout(timeout: aiohttp.ClientTimeout) -> float | None:
    """The session's timeout as one bound for a request's whole handshake."""
    if timeout.total is not None:
        return float(timeout.total)
    given = [t for t in (timeout.connect, timeout.sock_connect, timeout.sock_read) if t]
    return float(max(given)) if given else None


def reply(
    response: aiohttp.ClientResponse, body: bytes | None = None, proxy: str | None = None
) -> Reply:
    """An aiohttp answer as the flow reads it (``proxy``: the one it came through)."""
    return Reply(
        response.status,
        str(response.url),
        tuple((name.lower(), value) for name, value in response.headers.items()),
        tuple(str(hop.url) for hop in response.history),
        body,
        time.time(),
        proxy,
    )


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


def _guard(target: Target, insecure: frozenset[str]) -> Any:
    """A per-request middleware: every hop of a token request is checked before it is sent."""

    async def guard(
        request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        check_destination(target, str(request.url), insecure, carries=False)
        return await handler(request)

    return guard


class Exchange:
    """Sends what one request's flow yields, on the request's own aiohttp session (or, for a
    flow that sends no request of the caller's, a prefetch, on ``session``)."""

    def __init__(
        self,
        request: aiohttp.ClientRequest | None,
        handler: ClientHandlerType | None,
        errand: Errand,
        insecure: frozenset[str],
        *,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.request = request
        self.handler = handler
        self.errand = errand
        self.insecure = insecure
        self.response: aiohttp.ClientResponse | None = None
        """The latest answer to the request itself: what the middleware returns."""
        if request is not None:
            self.session: aiohttp.ClientSession = request.session
            ssl, headers = request.ssl, request.headers
        else:
            assert session is not None
            self.session, ssl, headers = session, True, session.headers
        self.ssl = True if isinstance(ssl, aiohttp.Fingerprint) else ssl
        self.agent = [(k, v) for k, v in headers.items() if k.lower() == "user-agent"]

    async def send(self, effect: Sending) -> Reply:
        if isinstance(effect, Transmit):
            return await self._transmit(effect)
        if isinstance(effect, Ping):
            return await self._ping(effect)
        return await self._token(effect)

    async def _transmit(self, effect: Transmit) -> Reply:
        assert self.request is not None
        assert self.handler is not None
        headers = self.request.headers
        for name, value in effect.headers:
            headers[name] = value
        self.release()
        self.response = await self.handler(self.request)
        return reply(self.response, proxy=via(self.request))

    def release(self) -> None:
        if self.response is not None:
            self.response.release()
            self.response = None

    def _options(self, middlewares: tuple[Any, ...] = ()) -> dict[str, Any]:
        options: dict[str, Any] = {"middlewares": middlewares, "ssl": self.ssl}
        remaining = self.errand.remaining()
        if remaining is not None:  # else (a prefetch) the session's own timeout bounds each
            options["timeout"] = aiohttp.ClientTimeout(total=remaining)
        return options

    async def _ping(self, effect: Ping) -> Reply:
        """``GET /v2/`` at the request's own origin, through the request's own proxy (for a
        prefetch, which has no request, the session's)."""
        request = self.request
        proxied: dict[str, Any] = {}
        if request is not None:
            proxied = {
                "proxy": request.proxy,
                "proxy_auth": request.proxy_auth,
                "proxy_headers": request.proxy_headers,
            }
        async with self.session.request(
            "GET", URL(effect.url, encoded=True), headers=self.agent, **proxied, **self._options()
        ) as response:
            return reply(response, proxy=None if request is None else via(request))

    async def _token(self, effect: Fetch) -> Reply:
        described = effect.request
        headers = [(k, v) for k, v in described.headers if k.lower() not in _FRAMING]
        payload = OneShotPayload(described.body) if described.body else None
        options = self._options((_guard(effect.target, self.insecure),))
        try:
            async with self.session.request(
                described.method,
                URL(described.url, encoded=True),
                data=payload,
                headers=headers,
                auto_decompress=False,
                **options,
            ) as response:
                decoder = BoundedDecoder(
                    response.headers.getall("Content-Encoding", ()), effect.limit
                )
                parts = [decoder.feed(chunk) async for chunk in response.content.iter_any()]
                parts.append(decoder.finish())
                return reply(response, b"".join(parts))
        except aiohttp.ClientPayloadError as exc:
            if payload is not None and payload.consumed:
                raise _replay_refused() from exc
            raise


async def run(handshake: Handshake, flow: Any, exchange: Exchange) -> aiohttp.ClientResponse:
    """Run ``flow`` to its end, its requests sent through ``exchange``; the last answer to the
    request itself."""
    try:
        await run_effects(handshake, flow, exchange)
    except BaseException:
        exchange.release()
        raise
    response = exchange.response
    if response is None:  # pragma: no cover - every path of the flow sends the request
        raise RuntimeError("the handshake ended without sending the request")
    assert exchange.request is not None
    if response.status in REDIRECTS:
        note_redirect(exchange.request, response)
    return response


async def run_effects(handshake: Handshake, flow: Any, exchange: Exchange) -> None:
    """Run ``flow`` to its end, its requests sent through ``exchange``. Handshake failures that
    are timeouts or transport errors arrive as aiohttp's (``ServerTimeoutError``,
    ``ClientConnectionError``)."""
    steps = handshake.steps(flow, exchange.errand)
    value: Reply | None = None
    error: Exception | None = None
    try:
        while True:
            try:
                effect = await (steps.asend(value) if error is None else steps.athrow(error))
            except StopAsyncIteration:
                break
            except TimedOut as exc:
                raise aiohttp.ServerTimeoutError(str(exc)) from None
            except Interrupted as exc:
                raise aiohttp.ClientConnectionError(str(exc)) from None
            value, error = None, None
            try:
                value = await exchange.send(effect)
            except Exception as exc:
                error = exc
    finally:
        await steps.aclose()
