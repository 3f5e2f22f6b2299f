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

**How a host is judged** (:func:`asyncauth._net.canonical_host`, then
:func:`~asyncauth._net.address_kind`): by the address the machine will connect to, never by a
DNS lookup.

* An IPv4 address in any form the OS resolver (``inet_aton``) reads is that address:
  ``127.1``, ``0x7f.1``, ``0177.0.0.1``, ``2130706433`` are 127.0.0.1 (loopback), ``10.1`` is
  10.0.0.1 (private), ``2852039166`` is 169.254.169.254 (link-local); one trailing dot is
  ignored. An IPv6 literal is its address (an IPv4-mapped one, ``::ffff:a.b.c.d``, is the IPv4
  address; a zone id is kept).
* A name is public, except ``localhost`` and names under ``.localhost`` (loopback: RFC 6761,
  and systemd-resolved resolves them there, so a public registry's realm may not point at
  one); but only ``localhost`` itself may receive credentials in cleartext. An
  internationalised name is judged by its IDNA A-label (``bücher.de`` is ``xn--bcher-kva.de``).
* Refused outright (:class:`~asyncauth._net.NonCanonicalHostError`, an
  :class:`InsecureTransportError`), before anything is sent: a host with a non-ASCII character
  read as a dot (``127。0。0。1``: httpx, httpx2 and yarl turn it into ``127.0.0.1``), a
  non-ASCII label that IDNA rewrites rather than encodes (full-width digits or letters), a host
  ending in a number that is no IPv4 address (``1.2.3.4.5``, ``256.1.1.1``), an empty label,
  a character no host name has (``%``, space), and a realm URL whose host httpx reads
  differently from how it is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import urlsplit

import httpx

from .._errors import AsyncAuthError, InsecureTransportError
from .._net import AddressKind, NonCanonicalHostError, address_kind, canonical_host, is_loopback
from .._resource import normalise_registry


def _hostport(host: str, port: int | None) -> str:
    bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return bracketed if port is None else f"{bracketed}:{port}"


def host_of(url: httpx.URL) -> str:
    """``url``'s host as httpx shows it (``bücher.de``), or as it is sent (ASCII) when httpx
    cannot show it: ``.host`` raises ``idna.IDNAError`` for an A-label that decodes to nothing
    (``xn--a``)."""
    try:
        return url.host
    except UnicodeError:  # idna.IDNAError
        return url.raw_host.decode("ascii")


def origin_of(url: httpx.URL) -> str:
    """``scheme://host:port`` with the default port written out: what "same origin" compares."""
    default = 443 if url.scheme == "https" else 80
    return f"{url.scheme}://{_hostport(host_of(url), None)}:{url.port or default}"


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
        """The target of a request to ``url``; :class:`NonCanonicalHostError` for a host
        :func:`~asyncauth._net.canonical_host` refuses (nothing has been sent yet)."""
        host = host_of(url)
        canonical = canonical_host(url.raw_host.decode("ascii"))
        hostport = _hostport(host, url.port)
        try:
            registry = normalise_registry(hostport)
        except AsyncAuthError:
            registry = hostport.lower()
        plain = url.scheme != "https"
        allowed = not plain or is_loopback(canonical) or registry in insecure
        return cls(origin_of(url), registry, host, plain, allowed, address_kind(canonical))


@lru_cache(maxsize=1024)
def check_destination(target: Target, url: str, insecure: frozenset[str], *, carries: bool) -> None:
    """Raise :class:`InsecureTransportError` unless a token request to ``url`` is allowed.

    ``carries`` says whether the request carries a credential: an anonymous token request may
    go over plain http to a plain-http registry's realm, but it may never pivot inward. (Whether
    an https registry may have a plain-http realm at all is the challenge's business:
    ``build_token_request`` refuses it.) The host is judged as the module says: canonical form
    first, then its kind, then whether httpx (which builds the request) reads the same host.
    Pure, so a destination that passed is remembered (a refusal is not: it raises again).
    """
    where = _destination(target, url)
    kind = address_kind(where.host)
    if kind is not AddressKind.PUBLIC and kind is not target.kind:
        raise InsecureTransportError(
            f"{target.registry}: refusing the token server {where.shown}: it is on a {kind} "
            f"address and the registry on a {target.kind} one; a realm may point only to an "
            "address of the registry's own kind (docs/handshake.md, 'Where credentials go')"
        )
    _check_httpx_reads(target, url, where)
    if not carries or where.scheme == "https" or is_loopback(where.host):
        return
    if not _listed(insecure, where):
        raise InsecureTransportError(
            f"{target.registry}: refusing to send credentials over plain http to the token "
            f"server {where.shown}: it is neither loopback nor listed in insecure_registries"
        )


class _Destination(NamedTuple):
    scheme: str
    written: str
    """The host as the URL spells it (lower case)."""
    host: str
    """:func:`~asyncauth._net.canonical_host` of it."""
    port: int | None
    shown: str
    """``scheme://host:port`` as written, for messages (no user-info)."""


def _destination(target: Target, url: str) -> _Destination:
    """``url``'s parts, refused unless it is an absolute http(s) URL with a canonical host."""
    try:
        parts = urlsplit(url)
        written, port = parts.hostname or "", parts.port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not written:
        # The flow checks only URLs httpx built; anything else is refused, never guessed at.
        raise InsecureTransportError(
            f"{target.registry}: refusing a token server address that is not an absolute "
            "http(s) URL"
        )
    try:
        host = canonical_host(written)
    except NonCanonicalHostError as exc:
        raise NonCanonicalHostError(f"{target.registry}: token server: {exc}") from None
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    return _Destination(parts.scheme, written, host, port, shown)


def _check_httpx_reads(target: Target, url: str, where: _Destination) -> None:
    """Refuse unless httpx, which builds the request from ``url``, reads the scheme, host and
    port that were judged: where two URL parsers differ, the check would judge one host and
    the request go to another."""
    default = 443 if where.scheme == "https" else 80
    try:
        sent = httpx.URL(url)
        same = (
            sent.scheme == where.scheme
            and canonical_host(sent.raw_host.decode("ascii")) == where.host
            and (sent.port or default) == (where.port or default)
        )
    except (httpx.InvalidURL, NonCanonicalHostError, UnicodeError):
        same = False
    if not same:
        raise NonCanonicalHostError(
            f"{target.registry}: refusing the token server {where.shown}: httpx does not read "
            f"its address as {where.host} port {where.port or default}, as it is written"
        )


def _listed(insecure: frozenset[str], where: _Destination) -> bool:
    """Whether the realm's host (as written, or as the address it denotes) is listed."""
    for candidate in dict.fromkeys((where.written, where.host)):
        try:
            if normalise_registry(_hostport(candidate, where.port)) in insecure:
                return True
        except (AsyncAuthError, ValueError):
            if candidate in insecure:
                return True
    return False


@lru_cache(maxsize=1024)
def origin_of_text(url: str) -> str:
    """:func:`origin_of` for a URL as text (what drivers hand the flow), read as httpx reads it."""
    try:
        return origin_of(httpx.URL(url))
    except httpx.InvalidURL:
        return ""  # the origin of nothing: never the registry's


def target_of(url: str, insecure: frozenset[str]) -> Target:
    """The :class:`Target` of a request's URL as text (see :meth:`Target.of`)."""
    return Target.of(httpx.URL(url), insecure)
