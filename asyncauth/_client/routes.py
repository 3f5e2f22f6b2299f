"""One route of a client: the transport for one proxy (or none), with insecure hosts split off.

httpx decides which proxy a request takes (``proxy=``, or ``HTTP_PROXY``/``HTTPS_PROXY``/
``ALL_PROXY``/``NO_PROXY`` when ``trust_env``) and builds one transport per proxy through
``_init_proxy_transport``, plus one without a proxy through ``_init_transport``. An insecure
registry (no TLS verification) could not be a mount of its own without losing that choice: a
mount for ``https://registry.lab`` outranks ``all://`` and would bypass the proxy. So each route
holds a verifying transport and, when there are insecure registries, a non-verifying one for the
same proxy, and picks between them by host; httpx keeps choosing the proxy.

Every route also names the host (and proxy) in its connection errors
(:mod:`asyncauth._http.errors`), and marks each response that came through a proxy with it
(:data:`~asyncauth._registry.hops.VIA`): a forwarding proxy can answer in the registry's place.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import anyio
import httpx

from .._http.errors import authority, named
from .._registry.hops import DEADLINE, VIA
from .._resource import split_host_port

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_NO_RESPONSE = "disconnected without sending a response"


class InsecureHosts:
    """``host[:port]`` registries reached over https without certificate verification.

    A registry without a port matches every port of its host, as ``mounts={"https://host": ...}``
    did before.
    """

    def __init__(self, registries: Iterable[str]) -> None:
        self._ports: dict[str, set[int | None]] = {}
        for registry in registries:
            host, port = split_host_port(registry)
            self._ports.setdefault(host.strip("[]").lower(), set()).add(port)

    def __bool__(self) -> bool:
        return bool(self._ports)

    def __contains__(self, url: object) -> bool:
        if not isinstance(url, httpx.URL) or url.scheme != "https":
            return False
        ports = self._ports.get(url.host.lower())
        return ports is not None and (None in ports or (url.port or 443) in ports)


class _Routing:
    """What both route classes share: the two transports, and which one a request takes."""

    def __init__(
        self, verified: Any, *, proxy: httpx.Proxy | None, insecure: InsecureHosts, unverified: Any
    ) -> None:
        self.verified = verified
        self.unverified = unverified
        self.proxy = proxy
        self._insecure = insecure
        self._via = None if proxy is None else authority(proxy.url)

    def _marked(self, response: httpx.Response) -> httpx.Response:
        """``response``, marked with the proxy it came through (if it did)."""
        if self._via is not None:
            response.extensions = {**response.extensions, VIA: self._via}
        return response

    def _pick(self, request: httpx.Request) -> Any:
        if self.unverified is not None and request.url in self._insecure:
            return self.unverified
        return self.verified

    def _retry_or_raise(
        self, exc: httpx.TransportError, request: httpx.Request, attempt: int
    ) -> None:
        """Return when the request may go once more (:meth:`_stale`); else raise ``exc``,
        renamed to say which host (and proxy) failed."""
        if self._stale(exc, request, attempt):
            return
        renamed = named(exc, request, self.proxy)
        if renamed is exc:
            raise exc
        raise renamed from exc

    def _stale(self, exc: httpx.TransportError, request: httpx.Request, attempt: int) -> bool:
        """A kept-alive connection the peer had closed (proxies such as tinyproxy close after
        each request without saying so): an idempotent request with a replayable body is sent
        once more, on a fresh connection, as urllib3, aiohttp and Go's net/http do. Not on a
        transport that does so itself (aiohttp's), which would make it twice."""
        dropped = isinstance(exc, httpx.ReadError) or (
            isinstance(exc, httpx.RemoteProtocolError) and _NO_RESPONSE in str(exc)
        )
        return (
            attempt == 0
            and dropped
            and request.method in _IDEMPOTENT
            and isinstance(request.stream, httpx.ByteStream)
            and not getattr(self._pick(request), "retries_dropped_connections", False)
        )

    def __repr__(self) -> str:
        via = "" if self.proxy is None else f" via {self.proxy.url}"
        return f"<{type(self).__name__} {type(self.verified).__name__}{via}>"


class TransportRoute(_Routing, httpx.AsyncBaseTransport):
    """The transports behind one proxy (or none): verifying, and non-verifying for ``insecure``."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        deadline = request.extensions.get(DEADLINE)
        if deadline is None:
            return await self._send(request)
        with anyio.move_on_after(max(deadline - time.monotonic(), 0.0)):
            return await self._send(request)
        where = request.url.netloc.decode("ascii", "replace")
        raise httpx.ReadTimeout(
            f"{where}: no answer within what was left of the request's timeout (the whole "
            "exchange is bounded, not each read)",
            request=request,
        )

    async def _send(self, request: httpx.Request) -> httpx.Response:
        for attempt in (0, 1):
            try:
                return self._marked(await self._pick(request).handle_async_request(request))
            except httpx.TransportError as exc:
                self._retry_or_raise(exc, request, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        try:
            await self.verified.aclose()
        finally:
            if self.unverified is not None:
                await self.unverified.aclose()


class SyncTransportRoute(_Routing, httpx.BaseTransport):
    """:class:`TransportRoute` for ``httpx.Client``."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in (0, 1):
            try:
                return self._marked(self._pick(request).handle_request(request))
            except httpx.TransportError as exc:
                self._retry_or_raise(exc, request, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        try:
            self.verified.close()
        finally:
            if self.unverified is not None:
                self.unverified.close()
