"""Where a request goes, and where credentials may follow it: the destination rules, pure.

Credentials go only to the registry itself (Basic, same origin) or to the token realm the
registry's own challenge names, and only when:

* **no cleartext**: plain http carries credentials only to a loopback host or to one the user
  listed in ``insecure_registries`` — the registry and its realm alike;
* **no pivot inward**: a realm on a loopback, private, link-local or unspecified address is
  accepted only when the registry itself is on the same kind of address (a loopback registry may
  use a loopback token server on another port); a public registry may never point its realm
  there (server-side request forgery into a metadata service or the local network). The same rule
  holds for every host a token request is redirected to.

Host names are judged as written (see :mod:`asyncauth._net`); nothing is resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from .._errors import AsyncAuthError, InsecureTransportError
from .._net import AddressKind, address_kind, is_loopback
from .._resource import normalise_registry


def _hostport(host: str, port: int | None) -> str:
    bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return bracketed if port is None else f"{bracketed}:{port}"


def origin_of(url: httpx.URL) -> str:
    """``scheme://host:port`` with the default port written out: what "same origin" compares."""
    default = 443 if url.scheme == "https" else 80
    return f"{url.scheme}://{_hostport(url.host, None)}:{url.port or default}"


@dataclass(frozen=True, slots=True)
class Target:
    """The registry a request is for, and what may be sent to it."""

    origin: str
    """``scheme://host:port`` — challenges are learnt per origin."""
    registry: str
    """Normalised ``host[:port]`` as in :class:`~asyncauth.Resource`."""
    host: str
    plain_http: bool
    may_send_credentials: bool
    """False for plain http to a host that is neither loopback nor listed as insecure."""
    kind: AddressKind

    @classmethod
    def of(cls, url: httpx.URL, insecure: frozenset[str]) -> Target:
        hostport = _hostport(url.host, url.port)
        try:
            registry = normalise_registry(hostport)
        except AsyncAuthError:
            registry = hostport.lower()
        plain = url.scheme != "https"
        allowed = not plain or is_loopback(url.host) or registry in insecure
        return cls(origin_of(url), registry, url.host, plain, allowed, address_kind(url.host))


def check_destination(target: Target, url: str, insecure: frozenset[str], *, carries: bool) -> None:
    """Raise :class:`InsecureTransportError` unless a token request to ``url`` is allowed.

    ``carries`` says whether the request carries a credential: an anonymous token request may
    go over plain http to a plain-http registry's realm, but it may never pivot inward. (Whether
    an https registry may have a plain-http realm at all is the challenge's business:
    ``build_token_request`` refuses it.)
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        host, parts = "", None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        # The flow checks only URLs httpx built; anything else is refused, never guessed at.
        raise InsecureTransportError(
            f"{target.registry}: refusing a token server address that is not an absolute "
            "http(s) URL"
        )
    kind = address_kind(host)
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    if kind is not AddressKind.PUBLIC and kind is not target.kind:
        raise InsecureTransportError(
            f"{target.registry}: refusing the token server {shown}: it is on a {kind} address "
            f"and the registry on a {target.kind} one; a realm may point only to an address "
            "of the registry's own kind (docs/handshake.md, 'Where credentials go')"
        )
    if not carries or parts.scheme == "https" or is_loopback(host):
        return
    try:
        named = normalise_registry(_hostport(host, parts.port))
    except (AsyncAuthError, ValueError):
        named = host
    if named not in insecure:
        raise InsecureTransportError(
            f"{target.registry}: refusing to send credentials over plain http to the token "
            f"server {shown}: it is neither loopback nor listed in insecure_registries"
        )


def origin_of_text(url: str) -> str:
    """:func:`origin_of` for a URL as text (what drivers hand the flow): ``scheme://host:port``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{_hostport(parts.hostname or '', None)}:{port or default}"


def target_of(url: str, insecure: frozenset[str]) -> Target:
    """The :class:`Target` of a request's URL as text (see :meth:`Target.of`)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    hostport = _hostport(host, port)
    try:
        registry = normalise_registry(hostport)
    except AsyncAuthError:
        registry = hostport.lower()
    plain = parts.scheme.lower() != "https"
    allowed = not plain or is_loopback(host) or registry in insecure
    return Target(origin_of_text(url), registry, host, plain, allowed, address_kind(host))
