"""The transports :func:`asyncauth.create_client` can pick, and what each of them can carry.

Measured here (docs/benchmarks.md): under asyncio aiohttp's pool (``asyncauth[fast]``) is
fastest, then httpx2's, then httpx's own; under trio (no aiohttp) httpx2's, then httpx's. httpx
0.28's pool loses most of its throughput beyond a few dozen concurrent requests.

Not every transport carries every client: aiohttp speaks neither HTTP/2 nor SOCKS, and this
module does not hand it an https proxy (httpx-aiohttp does not pass the proxy's TLS settings
on). A kind that cannot carry what the client asks for raises :class:`Unsupported` while httpx
builds the client's routes, and the caller moves on to the next kind, so that the transport the
client reports is the one that carries its requests.
"""

from __future__ import annotations

import importlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio.lowlevel
import httpx

from .routes import InsecureHosts, SyncTransportRoute, TransportRoute


class Unsupported(Exception):
    """This kind of transport cannot carry what the client asks for; the message says what."""


@dataclass(frozen=True)
class TransportSettings:
    """What httpx passes to ``_init_transport``/``_init_proxy_transport``."""

    verify: ssl.SSLContext | str | bool
    cert: Any
    trust_env: bool
    http1: bool
    http2: bool
    limits: httpx.Limits

    def common(self) -> dict[str, Any]:
        """The arguments every transport constructor takes the same way."""
        return {"verify": self.verify, "cert": self.cert, "trust_env": self.trust_env}

    def pool(self) -> dict[str, Any]:
        """:meth:`common`, and the HTTP versions and pool limits of httpx-style transports."""
        return {**self.common(), "http1": self.http1, "http2": self.http2, "limits": self.limits}


_Build = Callable[[TransportSettings, httpx.Proxy | None], httpx.AsyncBaseTransport]


@dataclass(frozen=True)
class TransportKind:
    name: str
    proxy_schemes: frozenset[str]
    http2: bool
    build: _Build

    def route(
        self, settings: TransportSettings, proxy: httpx.Proxy | None, insecure: InsecureHosts
    ) -> TransportRoute:
        """The route for ``proxy``: this kind's transport, verifying and (for ``insecure``) not."""
        if proxy is not None and proxy.url.scheme not in self.proxy_schemes:
            raise Unsupported(f"{self.name} cannot use a {proxy.url.scheme}:// proxy")
        if settings.http2 and not self.http2:
            raise Unsupported(f"{self.name} does not speak HTTP/2")
        unverified = None
        if insecure and settings.verify is not False:
            unverified = self.build(_without_verification(settings), proxy)
        return TransportRoute(
            self.build(settings, proxy), proxy=proxy, insecure=insecure, unverified=unverified
        )


def _without_verification(settings: TransportSettings) -> TransportSettings:
    return TransportSettings(
        False, settings.cert, settings.trust_env, settings.http1, settings.http2, settings.limits
    )


def sync_route(
    settings: TransportSettings, proxy: httpx.Proxy | None, insecure: InsecureHosts
) -> SyncTransportRoute:
    """The route of an ``httpx.Client``: httpx's own transport is the only synchronous one."""

    def build(settings: TransportSettings) -> httpx.BaseTransport:
        return httpx.HTTPTransport(
            verify=settings.verify,
            cert=settings.cert,
            trust_env=settings.trust_env,
            http1=settings.http1,
            http2=settings.http2,
            limits=settings.limits,
            proxy=proxy,
        )

    unverified = None
    if insecure and settings.verify is not False:
        unverified = build(_without_verification(settings))
    return SyncTransportRoute(
        build(settings), proxy=proxy, insecure=insecure, unverified=unverified
    )


def running_library() -> str | None:
    """``"asyncio"``, ``"trio"``, or ``None`` outside an event loop."""
    try:
        backend = anyio.lowlevel.current_token().backend_class.__name__
    except RuntimeError:  # anyio's NoEventLoopError
        return None
    return {"AsyncIOBackend": "asyncio", "TrioBackend": "trio"}.get(backend, backend)


def _aiohttp(settings: TransportSettings, proxy: httpx.Proxy | None) -> httpx.AsyncBaseTransport:
    from .aiohttp_transport import AiohttpTransport

    return AiohttpTransport(**settings.common(), limits=settings.limits, proxy=proxy)


def _httpx2(settings: TransportSettings, proxy: httpx.Proxy | None) -> httpx.AsyncBaseTransport:
    import httpx2

    from .httpx2_transport import Httpx2Transport

    outgoing = None
    if proxy is not None:
        outgoing = httpx2.Proxy(
            str(proxy.url),
            auth=proxy.auth,
            headers=proxy.headers.raw,
            ssl_context=proxy.ssl_context,
        )
    return Httpx2Transport(**settings.pool(), proxy=outgoing)


def _httpx(settings: TransportSettings, proxy: httpx.Proxy | None) -> httpx.AsyncBaseTransport:
    return httpx.AsyncHTTPTransport(**settings.pool(), proxy=proxy)


_EVERY_PROXY = frozenset({"http", "https", "socks5", "socks5h"})
AIOHTTP = TransportKind("aiohttp", frozenset({"http"}), http2=False, build=_aiohttp)
HTTPX2 = TransportKind("httpx2", _EVERY_PROXY, http2=True, build=_httpx2)
HTTPX = TransportKind("httpx", _EVERY_PROXY, http2=True, build=_httpx)


def _installed(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def preferred_kinds(library: str | None) -> list[TransportKind]:
    """The kinds installed for ``library``'s event loop, fastest first; httpx's own is last."""
    kinds = []
    if library == "asyncio" and _installed("httpx_aiohttp"):
        kinds.append(AIOHTTP)
    if library is not None and _installed("httpx2"):
        kinds.append(HTTPX2)
    kinds.append(HTTPX)
    return kinds
