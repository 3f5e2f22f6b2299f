"""Ready-made httpx clients: ``RegistryAuth``, extra CA certificates, insecure registries.

imgpkg's ``--registry-ca-cert-path`` (Harbor with a private CA) and insecure registries are
transport settings, not auth; these helpers put both in one place so that users do not have to
assemble an ``ssl.SSLContext`` and per-host mounts by hand.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import anyio.lowlevel
import certifi
import httpx

from ._chain import Chain
from ._errors import ConfigError
from ._net import is_loopback
from ._registry.auth import RegistryAuth
from ._resource import DOCKER_HUB, Resource, normalise_registry

__all__ = [
    "DEFAULT_LIMITS",
    "RegistryClient",
    "create_client",
    "create_sync_client",
    "registry_base_url",
    "ssl_context",
]

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
) -> tuple[RegistryAuth, ssl.SSLContext | bool, list[str]]:
    insecure = [normalise_registry(r) for r in insecure_registries]
    if auth is None:
        auth = RegistryAuth(chain, insecure_registries=insecure)
    elif chain is not None:
        raise TypeError("pass chain= or auth=, not both")
    tls: ssl.SSLContext | bool = ssl_context(ca_cert_paths) if verify else False
    kwargs.setdefault("follow_redirects", True)  # blobs redirect to storage
    return auth, tls, insecure


DEFAULT_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=64)
"""Connection limits of :func:`create_client`: keep every connection it opens alive.

httpx's default keeps 20 of 100 alive, so a pipeline running more than 20 requests at once
keeps opening and closing connections (and TLS sessions); see docs/benchmarks.md."""

log = logging.getLogger("asyncauth.client")


class RegistryClient(httpx.AsyncClient):
    """The ``httpx.AsyncClient`` :func:`create_client` returns; it says which transport it uses."""

    transport_name: str = "httpx"

    def __repr__(self) -> str:
        return f"<RegistryClient transport={self.transport_name!r} auth={self.auth!r}>"


def _running_library() -> str | None:
    """``"asyncio"``, ``"trio"``, or ``None`` outside an event loop."""
    try:
        backend = anyio.lowlevel.current_token().backend_class.__name__
    except RuntimeError:  # anyio's NoEventLoopError
        return None
    return {"AsyncIOBackend": "asyncio", "TrioBackend": "trio"}.get(backend, backend)


def _transport_factory(
    limits: httpx.Limits, trust_env: bool
) -> tuple[str, Callable[[ssl.SSLContext | bool], httpx.AsyncBaseTransport]]:
    """The fastest transport installed for the running event loop.

    Measured here (docs/benchmarks.md): under asyncio aiohttp's pool (``asyncauth[fast]``) is
    fastest, then httpx2's, then httpx's own; under trio (no aiohttp) httpx2's, then httpx's.
    httpx 0.28's pool loses most of its throughput beyond a few dozen concurrent requests.
    """
    library = _running_library()
    if library == "asyncio":
        try:
            from httpx_aiohttp import AiohttpTransport
        except ImportError:
            pass
        else:

            def aiohttp(tls: ssl.SSLContext | bool) -> httpx.AsyncBaseTransport:
                transport: httpx.AsyncBaseTransport = AiohttpTransport(
                    verify=tls, limits=limits, trust_env=trust_env
                )
                return transport

            return "aiohttp", aiohttp
    if library is not None:
        try:
            from ._transports.httpx2 import Httpx2Transport
        except ImportError:
            pass
        else:

            def httpx2(tls: ssl.SSLContext | bool) -> httpx.AsyncBaseTransport:
                return Httpx2Transport(verify=tls, limits=limits, trust_env=trust_env)

            return "httpx2", httpx2

    def default(tls: ssl.SSLContext | bool) -> httpx.AsyncBaseTransport:
        return httpx.AsyncHTTPTransport(verify=tls, limits=limits, trust_env=trust_env)

    return "httpx", default


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

    ``ca_cert_paths`` are trusted in addition to the system store (imgpkg's
    ``--registry-ca-cert-path``). ``insecure_registries`` (``host[:port]``) are reached without
    TLS verification and may receive credentials over plain http. ``verify=False`` turns TLS
    verification off everywhere. Other keyword arguments go to ``httpx.AsyncClient``.
    """
    auth, tls, insecure = _settings(
        chain, auth, ca_cert_paths, verify, insecure_registries, httpx_kwargs
    )
    limits = httpx_kwargs.pop("limits", DEFAULT_LIMITS)
    trust_env = httpx_kwargs.get("trust_env", True)
    mounts: dict[str, httpx.AsyncBaseTransport | None] = dict(httpx_kwargs.pop("mounts", {}))
    transport = httpx_kwargs.pop("transport", None)
    if transport is None:
        name, make = _transport_factory(limits, trust_env)
        transport = make(tls)
    else:
        name = type(transport).__name__
        make = lambda tls: httpx.AsyncHTTPTransport(  # noqa: E731
            verify=tls, limits=limits, trust_env=trust_env
        )
    for registry in insecure:
        mounts.setdefault(f"https://{registry}", make(False))
    client = RegistryClient(auth=auth, transport=transport, mounts=mounts, **httpx_kwargs)
    client.transport_name = name
    log.debug("create_client: %s transport (event loop: %s)", name, _running_library())
    return client


def create_sync_client(
    *,
    chain: Chain | None = None,
    auth: RegistryAuth | None = None,
    ca_cert_paths: Iterable[str | os.PathLike[str]] = (),
    verify: bool = True,
    insecure_registries: Iterable[str] = (),
    **httpx_kwargs: Any,
) -> httpx.Client:
    """:func:`create_client` for synchronous code: an ``httpx.Client``."""
    auth, tls, insecure = _settings(
        chain, auth, ca_cert_paths, verify, insecure_registries, httpx_kwargs
    )
    mounts: dict[str, httpx.BaseTransport | None] = dict(httpx_kwargs.pop("mounts", {}))
    httpx_kwargs.setdefault("limits", DEFAULT_LIMITS)
    for registry in insecure:
        mounts.setdefault(f"https://{registry}", httpx.HTTPTransport(verify=False))
    return httpx.Client(auth=auth, verify=tls, mounts=mounts, **httpx_kwargs)


async def registry_base_url(
    client: httpx.AsyncClient, resource: Resource, *, insecure_registries: Iterable[str] = ()
) -> str:
    """The registry's base URL, as docker decides it: https, except that loopback and insecure
    registries fall back to plain http when they do not speak TLS.

    Costs one ``GET /v2/`` (without credentials) for loopback and insecure registries only.
    """
    if resource.registry == DOCKER_HUB:
        return "https://registry-1.docker.io"
    https = f"https://{resource.registry}"
    insecure = {normalise_registry(r) for r in insecure_registries}
    if not is_loopback(resource.host) and resource.registry not in insecure:
        return https
    try:
        await client.get(f"{https}/v2/", auth=None, follow_redirects=False)
    except httpx.TransportError:  # aiohttp's transport reports TLS failures as ConnectTimeout
        return f"http://{resource.registry}"
    return https
