"""Ready-made httpx clients: ``RegistryAuth``, extra CA certificates, insecure registries.

imgpkg's ``--registry-ca-cert-path`` (Harbor with a private CA) and insecure registries are
transport settings, not auth; these helpers put both in one place so that users do not have to
assemble an ``ssl.SSLContext`` and per-host mounts by hand.

The transport picking lives beside them in this package: :mod:`.kinds` (which transports there
are and what each can carry), :mod:`.routes` (one :class:`~.routes.TransportRoute` per proxy,
insecure hosts split off) and the two transports asyncauth adapts, :mod:`.aiohttp_transport`
(httpx-aiohttp's) and :mod:`.httpx2_transport` (httpx2's pool under an httpx client).
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable, Iterable
from http.cookiejar import CookieJar
from typing import Any, TypeVar

import certifi
import httpx

from .._chain import Chain
from .._errors import ConfigError
from .._http.errors import certificate_error
from .._net import is_loopback
from .._registry.auth import RegistryAuth
from .._registry.hops import guard_hop, guard_hop_async
from .._resource import DOCKER_HUB, Resource, normalise_registry
from .kinds import (
    TransportKind,
    TransportSettings,
    Unsupported,
    preferred_kinds,
    running_library,
    sync_route,
)
from .routes import InsecureHosts

_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


def ssl_context(ca_cert_paths: Iterable[str | os.PathLike[str]] = ()) -> ssl.SSLContext:
    """A verifying TLS context trusting the system store, certifi's bundle and ``ca_cert_paths``.

    Each path must be a readable PEM file with at least one certificate; otherwise
    :class:`~asyncauth.ConfigError` names it.
    """
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=certifi.where())
    for path in ca_cert_paths:
        name = os.fspath(path)
        try:
            with open(name, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise ConfigError(f"CA certificate {name}: cannot be read ({exc.strerror})") from None
        if _PEM_CERTIFICATE not in data:
            raise ConfigError(f"CA certificate {name}: not a PEM file with a CERTIFICATE block")
        try:
            context.load_verify_locations(cadata=data.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(
                f"CA certificate {name}: not a valid PEM certificate ({exc})"
            ) from None
    return context


def _settings(
    chain: Chain | None,
    auth: RegistryAuth | None,
    ca_cert_paths: Iterable[str | os.PathLike[str]],
    verify: bool,
    insecure_registries: Iterable[str],
    kwargs: dict[str, Any],
    strip_hook: Callable[[httpx.Request], Any],
) -> list[str]:
    """Fill in what both clients are built with (auth, TLS, defaults, the hook that keeps the
    handshake's added headers on the registry's origin); the insecure hosts."""
    insecure = [normalise_registry(r) for r in insecure_registries]
    if auth is None:
        auth = RegistryAuth(chain, insecure_registries=insecure)
    elif chain is not None:
        raise TypeError("pass chain= or auth=, not both")
    tls: ssl.SSLContext | bool = ssl_context(ca_cert_paths) if verify else False
    kwargs.setdefault("follow_redirects", True)  # blobs redirect to storage
    kwargs.setdefault("limits", DEFAULT_LIMITS)
    kwargs["auth"], kwargs["verify"] = auth, tls
    hooks = dict(kwargs.get("event_hooks") or {})
    hooks["request"] = [*hooks.get("request", ()), strip_hook]
    kwargs["event_hooks"] = hooks
    return insecure


_C = TypeVar("_C", "RegistryClient", "SyncRegistryClient")


def _on_own_transport(cls: type[_C], insecure: list[str], kwargs: dict[str, Any]) -> _C | None:
    """The client on a caller's own ``transport=``, or ``None`` when there is none."""
    transport = kwargs.get("transport")
    if transport is None:
        return None
    limits = kwargs["limits"]
    unverified = (
        (lambda: httpx.AsyncHTTPTransport(verify=False, limits=limits))
        if isinstance(transport, httpx.AsyncBaseTransport)
        else (lambda: httpx.HTTPTransport(verify=False, limits=limits))
    )
    name = _own_transport(kwargs, insecure, unverified)
    client = cls(**kwargs)
    client.transport_name = name
    return client


DEFAULT_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=64)
"""Connection limits of :func:`create_client`: keep every connection it opens alive.

httpx's default keeps 20 of 100 alive, so a pipeline running more than 20 requests at once
keeps opening and closing connections (and TLS sessions); see docs/benchmarks.md."""

log = logging.getLogger("asyncauth.client")

_RouteFor = Callable[[TransportSettings, httpx.Proxy | None], Any]
"""Gives the transport for one route (``None``: no proxy) with the client's settings."""


class _ClientCookies(httpx.Cookies):
    """The client's cookie jar; it hands over only the responses that set a cookie.

    httpx gives every response to ``http.cookiejar``, which builds urllib-style request and
    response objects (an ``email.message`` of every header) before it finds no ``Set-Cookie``
    header: about 30 µs of CPU per request, a few percent of a warm pipeline's (see
    docs/benchmarks.md). Without ``Set-Cookie`` or ``Set-Cookie2`` the jar would change nothing,
    so those responses, nearly all of a registry's, are not handed over.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


class _Routed:
    """httpx's two transport hooks, answered by ``route_for`` (see :class:`RegistryClient`).

    A mixin in front of ``httpx.AsyncClient`` or ``httpx.Client``: the hooks have the same
    signatures in both, only the transport classes differ. It also keeps the client's cookies
    in a :class:`_ClientCookies` jar (through httpx's own ``cookies`` property, which httpx's
    code reads and writes).
    """

    transport_name: str = "httpx"

    def __init__(self, *, route_for: _RouteFor | None = None, **kwargs: Any) -> None:
        self._route_for = route_for
        super().__init__(**kwargs)
        self.cookies = kwargs.get("cookies")

    @property
    def cookies(self) -> httpx.Cookies:
        return self._client_cookies

    @cookies.setter
    def cookies(
        self, cookies: httpx.Cookies | CookieJar | dict[str, str] | list[tuple[str, str]] | None
    ) -> None:
        self._client_cookies = _ClientCookies(cookies)

    def _init_transport(
        self,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        transport: Any = None,
    ) -> Any:
        if transport is not None or self._route_for is None:
            hook = super()._init_transport  # type: ignore[misc]
            return hook(verify, cert, trust_env, http1, http2, limits, transport)
        return self._route_for(
            TransportSettings(verify, cert, trust_env, http1, http2, limits), None
        )

    def _init_proxy_transport(
        self,
        proxy: httpx.Proxy,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> Any:
        if self._route_for is None:
            hook = super()._init_proxy_transport  # type: ignore[misc]
            return hook(proxy, verify, cert, trust_env, http1, http2, limits)
        return self._route_for(
            TransportSettings(verify, cert, trust_env, http1, http2, limits), proxy
        )

    def __repr__(self) -> str:
        auth = getattr(self, "auth", None)
        return f"<{type(self).__name__} transport={self.transport_name!r} auth={auth!r}>"


class RegistryClient(_Routed, httpx.AsyncClient):
    """The ``httpx.AsyncClient`` :func:`create_client` returns; it says which transport it uses.

    httpx itself decides which proxy each request takes (``proxy=``, or the environment's
    ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY`` with ``trust_env``) and asks the
    client for one transport per proxy through ``_init_transport``/``_init_proxy_transport``
    (the hooks httpx-aiohttp's own client overrides too). This client answers with
    ``route_for``'s transports instead of httpx's, so every proxy rule httpx has applies to the
    picked transport and none is copied here.
    """


class SyncRegistryClient(_Routed, httpx.Client):
    """:class:`RegistryClient` for synchronous code (httpx's own transport, the only sync one)."""


def _own_transport(
    httpx_kwargs: dict[str, Any], insecure: list[str], unverified: Callable[[], Any]
) -> str:
    """A caller's own ``transport=`` is theirs to set up, proxies included (httpx ignores the
    environment's then); only the insecure registries get mounts of their own."""
    if httpx_kwargs.get("proxy") is not None:
        raise TypeError(
            "pass transport= or proxy=, not both: httpx would send every request through a "
            "proxy transport of its own and never use yours"
        )
    mounts = dict(httpx_kwargs.get("mounts") or {})
    for registry in insecure:
        mounts.setdefault(f"https://{registry}", unverified())
    httpx_kwargs["mounts"] = mounts
    return type(httpx_kwargs["transport"]).__name__


def create_client(
    *,
    chain: Chain | None = None,
    auth: RegistryAuth | None = None,
    ca_cert_paths: Iterable[str | os.PathLike[str]] = (),
    verify: bool = True,
    insecure_registries: Iterable[str] = (),
    **httpx_kwargs: Any,
) -> RegistryClient:
    """An ``httpx.AsyncClient`` that authenticates to registries, on the fastest transport.

    Called inside a running event loop it picks the fastest transport installed for it: under
    asyncio aiohttp's (``asyncauth[fast]``), else httpx2's pool (``asyncauth[httpx2]``, also
    under trio), else httpx's own — which is also the choice outside a running loop. Pass
    ``transport=`` to choose yourself; ``repr(client)`` and ``client.transport_name`` say which
    was picked. ``limits`` defaults to :data:`DEFAULT_LIMITS`.

    Proxies work as in ``httpx.AsyncClient``, on whichever transport is picked: ``proxy=``
    sends everything through one proxy; otherwise, unless ``trust_env=False``, ``HTTP_PROXY``,
    ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` apply with httpx's own precedence and
    matching (httpx computes the routes, this only supplies their transports). Token requests
    take the same routes. A proxy the fastest transport cannot use (aiohttp: anything but
    ``http://``), or ``http2=True`` for aiohttp, moves the whole client to the next transport,
    and ``transport_name`` says which. With your own ``transport=`` the proxy is yours to set
    up: httpx then ignores the environment, and ``proxy=`` is refused (httpx would send every
    request through a transport of its own instead of yours).

    Connection failures have httpx's kinds on every transport: ``httpx.ConnectError`` for a
    refused connection, a failed DNS lookup or an untrusted certificate (its message then says
    ``certificate verify failed``), ``httpx.ConnectTimeout`` only for a timeout; the message
    starts with the ``host:port`` (and proxy) that failed.

    ``ca_cert_paths`` are trusted in addition to the system store (imgpkg's
    ``--registry-ca-cert-path``). ``insecure_registries`` (``host[:port]``) are reached without
    TLS verification (through the same proxy as any other host) and may receive credentials
    over plain http. ``verify=False`` turns TLS verification off everywhere. Other keyword
    arguments go to ``httpx.AsyncClient``.
    """
    insecure = _settings(
        chain, auth, ca_cert_paths, verify, insecure_registries, httpx_kwargs, guard_hop_async
    )
    own = _on_own_transport(RegistryClient, insecure, httpx_kwargs)
    if own is not None:
        return own
    hosts = InsecureHosts(insecure)
    library = running_library()
    *faster, last = preferred_kinds(library)
    for kind in faster:
        try:
            client = _client_on(kind, hosts, **httpx_kwargs)
        except Unsupported as exc:
            log.debug("create_client: not on %s: %s", kind.name, exc)
            continue
        break
    else:
        client = _client_on(last, hosts, **httpx_kwargs)
    log.debug("create_client: %s transport (event loop: %s)", client.transport_name, library)
    return client


def _client_on(kind: TransportKind, hosts: InsecureHosts, **kwargs: Any) -> RegistryClient:
    """A client whose every route is on ``kind``; :class:`Unsupported` if one cannot be."""

    def route_for(
        settings: TransportSettings, proxy: httpx.Proxy | None
    ) -> httpx.AsyncBaseTransport:
        return kind.route(settings, proxy, hosts)

    client = RegistryClient(route_for=route_for, **kwargs)
    client.transport_name = kind.name
    return client


def create_sync_client(
    *,
    chain: Chain | None = None,
    auth: RegistryAuth | None = None,
    ca_cert_paths: Iterable[str | os.PathLike[str]] = (),
    verify: bool = True,
    insecure_registries: Iterable[str] = (),
    **httpx_kwargs: Any,
) -> SyncRegistryClient:
    """:func:`create_client` for synchronous code: an ``httpx.Client`` on httpx's transport,
    with the same proxies, insecure registries and connection error messages."""
    insecure = _settings(
        chain, auth, ca_cert_paths, verify, insecure_registries, httpx_kwargs, guard_hop
    )
    own = _on_own_transport(SyncRegistryClient, insecure, httpx_kwargs)
    if own is not None:
        return own
    hosts = InsecureHosts(insecure)

    def route_for(settings: TransportSettings, proxy: httpx.Proxy | None) -> httpx.BaseTransport:
        return sync_route(settings, proxy, hosts)

    return SyncRegistryClient(route_for=route_for, **httpx_kwargs)


async def registry_base_url(
    client: httpx.AsyncClient, resource: Resource, *, insecure_registries: Iterable[str] = ()
) -> str:
    """The registry's base URL, as docker decides it: https, except that loopback and insecure
    registries fall back to plain http when they do not speak TLS.

    Costs one ``GET /v2/`` (without credentials) for loopback and insecure registries, two when
    https fails. A registry that does speak TLS but whose certificate is not trusted gets no
    fallback: its certificate error is raised, not hidden behind what its TLS port answers to
    plain http (400). When http fails too, the https error is raised: it is the one that says
    what to fix.
    """
    if resource.registry == DOCKER_HUB:
        return "https://registry-1.docker.io"
    https = f"https://{resource.registry}"
    insecure = {normalise_registry(r) for r in insecure_registries}
    if not is_loopback(resource.host) and resource.registry not in insecure:
        return https
    try:
        await client.get(f"{https}/v2/", auth=None, follow_redirects=False)
    except httpx.TransportError as exc:
        if certificate_error(exc) is not None:
            raise
        https_error = exc
    else:
        return https
    http = f"http://{resource.registry}"
    try:
        await client.get(f"{http}/v2/", auth=None, follow_redirects=False)
    except httpx.TransportError:
        pass
    else:
        return http
    raise https_error  # outside the handler: the http failure is not made its context
