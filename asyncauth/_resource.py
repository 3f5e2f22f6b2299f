"""Image references: what a credential is asked for.

``Resource.parse`` follows the grammar docker and go-containerregistry use (a first path component
is a registry when it contains a ``.`` or ``:``, is ``localhost``, or is an IPv6 literal) and
normalises Docker Hub the way every client does, so that ``alpine``, ``docker.io/alpine`` and
``index.docker.io/library/alpine`` are the same resource and meet the same credentials.

Parsing is strict: a resource decides which secret is sent where, so anything ambiguous (a URL
scheme, an empty path segment, upper-case repository names) is rejected with a message that says
what is wrong, rather than guessed at.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ._errors import InvalidReferenceError
from ._grammar import COMPONENT_RE, LABEL_RE
from ._redact import without_userinfo

DOCKER_HUB = "index.docker.io"
"""The canonical name of Docker Hub's registry, as docker's own config file spells it."""

_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_MAX_PATH = 255


def split_host_port(registry: str) -> tuple[str, int | None]:
    """Split a normalised ``host[:port]`` (``[v6]:port`` for IPv6) into host and port."""
    if registry.startswith("["):
        host, _, rest = registry.partition("]")
        return host + "]", int(rest[1:]) if rest else None
    host, colon, port = registry.rpartition(":")
    if not colon:
        return registry, None
    return host, int(port)


def _parse_port(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= 65535:
        raise InvalidReferenceError(f"{what}: port {text!r} is not a number from 1 to 65535")
    return int(text)


def normalise_registry(text: str, *, what: str | None = None) -> str:
    """Validate a ``host[:port]`` and return its canonical spelling.

    Host names are case-insensitive and are lower-cased; ports lose leading zeros; IPv6 literals
    are compressed; the Docker Hub aliases become :data:`DOCKER_HUB`.
    """
    what = what or f"registry {without_userinfo(text)!r}"
    if "@" in text:
        raise InvalidReferenceError(
            f"{what}: a registry name must not carry a user name or password (user:password@)"
        )
    if not text:
        raise InvalidReferenceError(f"{what}: the registry name is empty")
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise InvalidReferenceError(f"{what}: IPv6 address has no closing ']'")
        try:
            address = ipaddress.IPv6Address(inside)
        except ValueError:
            raise InvalidReferenceError(f"{what}: {inside!r} is not an IPv6 address") from None
        host = f"[{address.compressed}]"
        if not rest:
            return host
        if not rest.startswith(":"):
            raise InvalidReferenceError(f"{what}: unexpected {rest!r} after the IPv6 address")
        return f"{host}:{_parse_port(rest[1:], what)}"
    host, colon, port_text = text.partition(":")
    host = host.lower()
    labels = host.split(".")
    if not all(label.isascii() and LABEL_RE.fullmatch(label) for label in labels):
        raise InvalidReferenceError(
            f"{what}: {host!r} is not a valid host name "
            "(letters, digits and '-' in dot-separated labels)"
        )
    if not colon:
        return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host
    return f"{host}:{_parse_port(port_text, what)}"


def _looks_like_registry(component: str, *, alone: bool) -> bool:
    """docker's rule for telling a registry from the first path component of a name.

    A lone component is a bare registry only when its host part has a dot, is ``localhost`` or
    is an IPv6 literal; ``alpine:3.20`` stays a Docker Hub image with a tag.
    """
    if component.startswith("["):
        return True
    if alone:
        host = component.partition(":")[0]
        return "." in host or host == "localhost"
    # docker also takes an upper-case first component for a host; we do not, so that
    # "MyOrg/app" gets the clearer "must be lower-case" error instead of a DNS failure.
    return "." in component or ":" in component or component == "localhost"


def _split_tag(path: str, what: str) -> tuple[str, str | None]:
    """``name[:tag]`` -> (name, tag); the tag is the part after a ``:`` in the last segment."""
    colon = path.find(":", path.rfind("/") + 1)
    if colon == -1:
        return path, None
    path, tag = path[:colon], path[colon + 1 :]
    if not _TAG.fullmatch(tag):
        raise InvalidReferenceError(
            f"{what}: tag {tag!r} is invalid "
            "(up to 128 letters, digits, '_', '.', '-'; not starting with '.' or '-')"
        )
    return path, tag


def _check_path(path: str, what: str) -> list[str]:
    """The repository's components, each checked against distribution's grammar."""
    components = path.split("/")
    for component in components:
        if not component:
            raise InvalidReferenceError(f"{what} has an empty path segment")
        if not COMPONENT_RE.fullmatch(component):
            if COMPONENT_RE.fullmatch(component.lower()):
                raise InvalidReferenceError(
                    f"{what}: repository names must be lower-case ({component!r})"
                )
            raise InvalidReferenceError(
                f"{what}: {component!r} is not a valid path component "
                "(lower-case letters and digits, separated by '.', '_', '__' or '-')"
            )
    if len(path) > _MAX_PATH:
        raise InvalidReferenceError(f"{what}: repository is longer than {_MAX_PATH} chars")
    return components


@dataclass(frozen=True, slots=True)
class Resource:
    """A registry, or a repository on a registry, that credentials are wanted for.

    ``registry`` is the normalised ``host[:port]`` (Docker Hub is ``index.docker.io``);
    ``repository`` is ``None`` for a bare registry. ``tag`` and ``digest`` are kept for callers
    that fetch something, but do not take part in credential lookup.
    """

    registry: str
    repository: str | None = None
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, reference: str | Resource) -> Resource:
        """Parse ``host[:port]/path[:tag][@digest]``, a bare registry, or a Docker Hub short name.

        >>> str(Resource.parse("alpine:3.20"))
        'index.docker.io/library/alpine'
        >>> str(Resource.parse("localhost:5000"))
        'localhost:5000'
        """
        if isinstance(reference, Resource):
            return reference
        if not isinstance(reference, str):
            raise InvalidReferenceError(
                f"an image reference must be a str, not {type(reference).__name__}"
            )
        what = f"image reference {without_userinfo(reference)!r}"
        if not reference:
            raise InvalidReferenceError("image reference is empty")
        if _SCHEME.match(reference):
            scheme = reference.partition("://")[0]
            raise InvalidReferenceError(
                f"image reference starts with a URL scheme ({scheme}://); "
                "write it without one, e.g. 'ghcr.io/org/app'"
            )
        if not reference.isascii() or not reference.isprintable() or " " in reference:
            raise InvalidReferenceError(
                f"{what} contains whitespace, control or non-ASCII characters"
            )

        name, at, digest = reference.partition("@")
        if at and not _DIGEST.fullmatch(digest):
            raise InvalidReferenceError(
                f"{what}: the part after '@' is not a digest like 'sha256:<64 hex digits>'"
            )
        first, slash, rest = name.partition("/")
        if not slash and _looks_like_registry(first, alone=True):
            if at:
                raise InvalidReferenceError(f"{what}: a digest needs a repository, not a registry")
            return cls(normalise_registry(first, what=what))

        if slash and _looks_like_registry(first, alone=False):
            registry, path = normalise_registry(first, what=what), rest
        else:
            registry, path = DOCKER_HUB, name

        path, tag = _split_tag(path, what)
        components = _check_path(path, what)
        if registry == DOCKER_HUB and len(components) == 1:
            path = f"library/{path}"
        return cls(registry, path, tag, digest or None)

    @property
    def host(self) -> str:
        """The registry's host, without the port (IPv6 literals keep their brackets)."""
        return split_host_port(self.registry)[0]

    @property
    def port(self) -> int | None:
        """The registry's port, or ``None`` when the reference named none."""
        return split_host_port(self.registry)[1]

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}" if self.repository else self.registry
