"""What kind of address a host is: the facts every "may this go there?" rule is built on.

Credentials may go over plain http to loopback only; a token realm on a private or link-local
address is refused unless the registry is on the same kind of address. Both rules start here.
Host names are never resolved: a name is judged by what it is written as.
"""

from __future__ import annotations

import enum
import ipaddress


class AddressKind(enum.StrEnum):
    """Where an address points, from most to least contained."""

    LOOPBACK = "loopback"
    UNSPECIFIED = "unspecified"
    LINK_LOCAL = "link-local"
    PRIVATE = "private"
    PUBLIC = "public"


def address_kind(host: str) -> AddressKind:
    """The kind of ``host`` (an IP literal, bracketed or not, or a name).

    ``localhost`` is loopback. Other names are public: what a name resolves to is decided
    elsewhere (DNS), and ``evil.localhost`` is not guaranteed to stay on this machine.
    """
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return AddressKind.LOOPBACK
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return AddressKind.PUBLIC
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return AddressKind.LOOPBACK
    if address.is_unspecified:
        return AddressKind.UNSPECIFIED
    if address.is_link_local:
        return AddressKind.LINK_LOCAL
    if not address.is_global:
        return AddressKind.PRIVATE  # RFC 1918, ULA, shared, reserved, documentation ranges...
    return AddressKind.PUBLIC


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 and ``::1`` (brackets allowed); never other names."""
    return address_kind(host) is AddressKind.LOOPBACK
