"""What kind of address a host is: the facts every "may this go there?" rule is built on.

Credentials may go over plain http to loopback only; a token realm on a private or link-local
address is refused unless the registry is on the same kind of address. Both rules start here.

A host is judged by the address the machine will connect to, which is not always what the text
looks like: the OS resolver (``inet_aton``) reads ``127.1``, ``0x7f.1``, ``2130706433`` and
``0177.0.0.1`` as 127.0.0.1; the URL libraries (httpx, httpx2, yarl) read ``127。0。0。1``
(ideographic full stops, U+3002) as 127.0.0.1, and yarl reads 127.0.0.1 written in full-width
digits (U+FF10-U+FF19) as 127.0.0.1 too. :func:`canonical_host` therefore normalises what the
resolver reads as an address and refuses what some library would rewrite into something else;
:func:`address_kind` judges the result.
Names are never resolved: a name is judged by what it is written as (``evil.localhost`` is a
name like any other).
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
import unicodedata

import idna

from ._errors import InsecureTransportError
from ._redact import redact


class AddressKind(enum.StrEnum):
    """Where an address points, from most to least contained."""

    LOOPBACK = "loopback"
    UNSPECIFIED = "unspecified"
    LINK_LOCAL = "link-local"
    PRIVATE = "private"
    PUBLIC = "public"


class NonCanonicalHostError(InsecureTransportError):
    """A host written so that the resolver or a URL library may read it as another host.

    ``127。0。0。1`` (ideographic full stops), ``localhost`` with a full-width ``l`` (U+FF4C),
    ``1.2.3.4.5`` (a number that is no address) and the like: refused before anything is sent,
    because what was checked would not be where the request goes.
    """


MAX_HOST_LENGTH = 255
"""The longest host judged (a DNS name has at most 253 characters; an IPv6 literal with a zone
id a few more); longer ones are refused without being parsed."""

_IDNA_DOTS = frozenset("\u3002\uff0e\uff61")
"""What IDNA (httpx, yarl, idna) splits labels on besides ``.``: ideographic and full-width
full stops."""
_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_NUMBER = re.compile(r"[0-9]+|0x[0-9a-f]*")
"""A label the resolver and the WHATWG URL standard read as a number: a host ending in one is
an IPv4 address or nothing."""
_ZONE = re.compile(r"[A-Za-z0-9._~-]+")
_DIGITS = {8: frozenset("01234567"), 10: frozenset("0123456789"), 16: frozenset("0123456789abcdef")}


def _escaped(character: str) -> str:
    if "!" <= character <= "~":
        return character
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else ascii(character)[1:-1]


def _printable(text: str) -> str:
    return "".join(_escaped(c) for c in text)


def _refuse(host: str, why: str) -> NonCanonicalHostError:
    """The error for ``host``: escaped (no space, control or bidi character reaches a log, and
    ``127\\u30020\\u30020\\u30021`` shows what was wrong), clipped, token-like words masked."""
    printable = _printable(host[:80])
    clipped = printable[:77] + "..." if len(printable) > 80 else printable
    shown = redact(clipped, limit=len(clipped))
    return NonCanonicalHostError(
        f"refusing the host '{shown}': {why} (docs/handshake.md, 'Where credentials go')"
    )


@functools.lru_cache(maxsize=1024)
def canonical_host(host: str) -> str:
    """``host`` as the machine will read it, or :class:`NonCanonicalHostError`.

    * an IPv4 address in any form ``inet_aton`` accepts (one to four parts, each decimal,
      octal with a leading ``0`` or hex with ``0x``) becomes its dotted quad: ``0x7f.1`` ->
      ``127.0.0.1``; a host whose last label is a number but that is no such address
      (``1.2.3.4.5``, ``256.1.1.1``, ``08.1.1.1``) is refused;
    * an IPv6 literal (brackets optional, zone id kept) becomes its compressed form;
    * a name becomes lower case, one trailing dot dropped; an internationalised name becomes its
      IDNA A-label form (``bücher.de`` -> ``xn--bcher-kva.de``).

    Refused: an empty or over-long host, an empty label, characters no host name has (``%``,
    space, ``@``...), any non-ASCII character read as a dot (U+3002, U+FF0E, U+FF61, which IDNA
    splits labels on; U+2024 and others whose compatibility form holds a ``.``), and any non-ASCII
    label that IDNA would rewrite rather than just encode (full-width digits and letters, the
    Kelvin sign U+212A, soft hyphens): httpx, httpx2 and yarl do not all read those the same way,
    and yarl maps them onto plain ASCII, so what a check sees would not be where the request
    goes.
    """
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not bare:
        raise _refuse(host, "it is empty")
    if len(bare) > MAX_HOST_LENGTH:
        raise _refuse(host, f"it is longer than {MAX_HOST_LENGTH} characters")
    if ":" in bare:
        return _canonical_ipv6(host, bare)
    ascii_host = bare if bare.isascii() else _a_labels(host, bare)
    return _canonical_ascii(host, ascii_host.lower())


def _canonical_ipv6(host: str, bare: str) -> str:
    """RFC 6874 writes the zone separator ``%25``; a bare ``%`` is read too (as yarl does)."""
    address_text, separator, zone = bare.partition("%25" if "%25" in bare else "%")
    try:
        address = ipaddress.IPv6Address(address_text)
    except ValueError:
        raise _refuse(host, "it is neither an IPv6 address nor a host name") from None
    if not separator:
        return address.compressed
    if not _ZONE.fullmatch(zone):
        raise _refuse(host, "its IPv6 zone id is empty or has characters a zone id cannot have")
    return f"{address.compressed}%{zone}"


def _a_labels(host: str, bare: str) -> str:
    """The ASCII form of an internationalised host, refused unless it is one the clients agree
    on: every non-ASCII label a real U-label that IDNA encodes without changing it."""
    for character in bare:
        if not character.isascii() and (
            character in _IDNA_DOTS or "." in unicodedata.normalize("NFKC", character)
        ):
            name = unicodedata.name(character, "unnamed")
            raise _refuse(
                host,
                f"it contains U+{ord(character):04X} ({name}), which URL libraries read as '.'",
            )
    labels = []
    for label in bare.split("."):
        labels.append(label if label.isascii() else _a_label(host, label))
    return ".".join(labels)


def _a_label(host: str, label: str) -> str:
    """One non-ASCII label's A-label, if httpx (strict IDNA 2008) and yarl (UTS 46 mapping)
    both encode it, to the same thing, and without rewriting it."""
    try:
        mapped = idna.encode(label, uts46=True).decode("ascii")  # what yarl sends
    except (idna.IDNAError, UnicodeError):
        raise _refuse(host, "it is not a valid internationalised host name (IDNA)") from None
    lowered = label.lower()
    try:
        strict = idna.encode(lowered).decode("ascii")  # what httpx and httpx2 send
        unchanged = strict == mapped and idna.decode(strict) == lowered
    except (idna.IDNAError, UnicodeError):
        unchanged = False
    if not unchanged or not mapped.startswith("xn--"):
        shown = _printable(label[:63])
        raise _refuse(
            host,
            f"IDNA rewrites its label '{shown}' as '{_printable(mapped[:63])}' (full-width or "
            "other compatibility characters); write the host as the registry's own name",
        )
    return mapped


def _canonical_ascii(host: str, lowered: str) -> str:
    name = lowered[:-1] if lowered.endswith(".") else lowered
    labels = name.split(".")
    if not all(labels):
        raise _refuse(host, "it has an empty label ('..', or a leading or second trailing dot)")
    if not _NAME.fullmatch(name):
        raise _refuse(host, "it has characters a host name cannot have")
    if not _NUMBER.fullmatch(labels[-1]):
        return name
    address = ipv4_shorthand(labels)
    if address is None:
        raise _refuse(host, "it ends in a number but is not an IPv4 address")
    return str(address)


def ipv4_shorthand(parts: list[str]) -> ipaddress.IPv4Address | None:
    """The address ``inet_aton`` reads from ``parts`` (the host split on dots), or None.

    ``a.b.c.d`` as usual; ``a.b.c`` puts ``c`` in the last 16 bits, ``a.b`` puts ``b`` in the
    last 24, and ``a`` alone is all 32. Each part is decimal, octal (leading ``0``) or hex
    (``0x``, at least one digit); every part but the last is at most 255.
    """
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_inet_number(part) for part in parts]
    *head, last = numbers
    if last is None or any(n is None or n > 255 for n in head):
        return None
    if last >= 1 << (8 * (5 - len(parts))):
        return None
    value = last
    for index, number in enumerate(head):
        value |= (number or 0) << (24 - 8 * index)
    return ipaddress.IPv4Address(value)


def _inet_number(part: str) -> int | None:
    if part[:2] in ("0x", "0X"):
        digits, base = part[2:].lower(), 16
    elif len(part) > 1 and part.startswith("0"):
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    if not digits or not set(digits) <= _DIGITS[base]:
        return None
    return int(digits, base)


def address_kind(host: str) -> AddressKind:
    """The kind of ``host`` (an IP literal, bracketed or not, or a name), read as
    :func:`canonical_host` reads it; a host it refuses raises :class:`NonCanonicalHostError`.

    ``localhost`` is loopback, and so is every name under ``.localhost``: RFC 6761 reserves
    them for loopback and systemd-resolved and nss-myhostname resolve them there, so a realm on
    one may point inward. Other names are public: what a name resolves to is decided elsewhere
    (DNS). Which hosts may receive credentials in cleartext is :func:`is_loopback`'s, stricter.
    """
    host = canonical_host(host)
    if host == "localhost" or host.endswith(".localhost"):
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
    """``localhost``, 127.0.0.0/8 in any form the resolver reads (``127.1``) and ``::1``
    (brackets allowed); never other names (``evil.localhost`` included), and never a host
    :func:`canonical_host` refuses: this decides who may receive credentials in cleartext."""
    try:
        canonical = canonical_host(host)
    except NonCanonicalHostError:
        return False
    if canonical.endswith(".localhost"):
        return False  # not guaranteed to stay on this machine (a resolver may ask DNS)
    return address_kind(canonical) is AddressKind.LOOPBACK
