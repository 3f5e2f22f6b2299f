"""Registry patterns: the keys users write to say *where* a credential applies.

``IMGPKG_REGISTRY_HOSTNAME`` values and Docker config ``auths`` keys are written by people, in
many spellings: ``gcr.io``, ``https://gcr.io``, ``docker.io/v2/``, ``*.*.docker.io``,
``gcr.io/team/app``. This module turns one into a :class:`RegistryPattern` and decides whether
it applies to a :class:`~asyncauth.resource.Resource`. It is pure (no I/O, no globals), so it is
fuzzed directly.

Decisions (see docs/resolution.md):

* a ``http://``/``https://`` scheme and a leading ``/v1/`` or ``/v2/`` path are dropped;
* ``docker.io`` and ``registry-1.docker.io`` mean Docker Hub (``index.docker.io``);
* globs (``*``, ``?``, ``[a-z]``, ``[^a-z]``) apply per host label: ``*`` never crosses a dot,
  the label counts must be equal, and ports must be equal (none matches only none);
* a path matches on whole segments: ``host/team`` covers ``host/team/app`` but not
  ``host/team-b`` (imgpkg compares string prefixes and so leaks to sibling repositories).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ._errors import ConfigError, InvalidReferenceError
from ._grammar import COMPONENT_RE
from ._resource import Resource, normalise_registry, split_host_port

__all__ = ["RegistryPattern"]

_GLOB_CHARS = frozenset("*?[")
_LITERAL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_OTHER_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _glob_label(label: str, fail: Callable[[str], ConfigError]) -> str:
    """Translate one host label written as a glob into a regular expression."""
    out: list[str] = []
    i = 0
    while i < len(label):
        char = label[i]
        if char == "*":
            out.append("[^.]*")
        elif char == "?":
            out.append("[^.]")
        elif char == "[":
            end = label.find("]", i + 1)
            if end == -1:
                raise fail(f"unclosed '[' in host label {label!r}")
            body = label[i + 1 : end]
            negate = body[:1] in ("^", "!")
            if negate:
                body = body[1:]
            if not body:
                raise fail(f"empty character class in host label {label!r}")
            parts: list[str] = []
            j = 0
            while j < len(body):
                lo = body[j]
                if lo not in _LITERAL or lo == "-":
                    raise fail(f"{lo!r} cannot appear in a character class ({label!r})")
                if j + 2 < len(body) and body[j + 1] == "-":
                    hi = body[j + 2]
                    if hi not in _LITERAL or hi == "-" or hi < lo:
                        raise fail(f"bad range {lo}-{hi} in host label {label!r}")
                    parts.append(f"{re.escape(lo)}-{re.escape(hi)}")
                    j += 3
                else:
                    parts.append(re.escape(lo))
                    j += 1
            out.append(f"[{'^' if negate else ''}{''.join(parts)}]")
            i = end
        elif char in _LITERAL:
            out.append(re.escape(char))
        else:
            raise fail(f"{char!r} is not allowed in a host name or glob ({label!r})")
        i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class RegistryPattern:
    """Where a credential applies: a host (maybe a glob), an optional port, a path prefix."""

    text: str = field(compare=False)
    """What the user wrote, for messages."""
    host: str
    """Lower-cased host; for a glob the glob text, for IPv6 the bracketed literal."""
    port: int | None
    path: tuple[str, ...]
    is_glob: bool
    _label_regexes: tuple[re.Pattern[str], ...] = field(compare=False, repr=False)

    @classmethod
    def parse(cls, text: str, *, what: str, globs: bool = True) -> RegistryPattern:
        """Parse a user-written key. ``what`` names its origin (variable or file) in errors.

        ``globs=False`` is for keys that are host names only (Docker config ``auths`` and
        ``credHelpers``): docker never expands them, so a ``*`` there is a mistake to report,
        not a pattern to honour.
        """

        def fail(reason: str) -> ConfigError:
            return ConfigError(f"{what}: {reason}")

        raw = text.strip()
        if not raw:
            raise fail("the registry host name is empty")
        lowered = raw.lower()
        for scheme in ("https://", "http://"):
            if lowered.startswith(scheme):
                raw = raw[len(scheme) :]
                break
        else:
            if _OTHER_SCHEME.match(raw):
                raise fail("only http:// and https:// may prefix a registry host name")
        if not raw.isascii() or not raw.isprintable() or any(c.isspace() for c in raw):
            raise fail("host name contains whitespace, control or non-ASCII characters")

        if "@" in raw:
            raise fail(
                "a registry host name must not carry a user name or password "
                "(user:password@); put credentials in their own variables or fields"
            )
        hostport, _, path_text = raw.partition("/")
        segments = path_text.split("/") if path_text else []
        if segments and segments[-1] == "":
            segments.pop()
        if segments and segments[0] in ("v1", "v2"):
            segments.pop(0)
        for segment in segments:
            if not segment:
                raise fail("the repository path has an empty segment")
            if _GLOB_CHARS.intersection(segment):
                raise fail(f"globs apply to the host only, not to the path ({segment!r})")
            if not COMPONENT_RE.fullmatch(segment):
                raise fail(
                    f"{segment!r} is not a valid repository path segment "
                    "(lower-case letters and digits, separated by '.', '_', '__' or '-')"
                )

        is_ipv6 = hostport.startswith("[") and ":" in hostport.partition("]")[0]
        if is_ipv6 or not _GLOB_CHARS.intersection(hostport):
            try:
                registry = normalise_registry(hostport, what=what)
            except InvalidReferenceError as exc:
                raise ConfigError(str(exc)) from None
            host, port = split_host_port(registry)
            return cls(raw, host, port, tuple(segments), False, ())

        if not globs:
            raise fail(
                f"{hostport!r}: glob characters (*, ?, [) are not allowed here; "
                "write the registry host name itself"
            )
        host_text, colon, port_text = hostport.rpartition(":")
        if not colon:
            host_text, port_text = hostport, ""
        glob_port: int | None = None
        if colon:
            if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise fail(f"port {port_text!r} is not a number from 1 to 65535")
            glob_port = int(port_text)
        glob = host_text.lower()
        labels = glob.split(".")
        if any(not label for label in labels):
            raise fail(f"host name {host_text!r} has an empty label")
        regexes = tuple(re.compile(_glob_label(label, fail)) for label in labels)
        return cls(raw, glob, glob_port, tuple(segments), True, regexes)

    @property
    def key(self) -> tuple[str, int | None, tuple[str, ...]]:
        """Two patterns with the same key say the same thing, however they were spelt."""
        return (self.host, self.port, self.path)

    @property
    def specificity(self) -> tuple[bool, int, int]:
        """Sort key, highest wins: a literal host beats a glob, then the longer path."""
        literal_labels = sum(1 for label in self.host.split(".") if not _GLOB_CHARS & set(label))
        return (not self.is_glob, len(self.path), literal_labels)

    def __str__(self) -> str:
        host = self.host if self.port is None else f"{self.host}:{self.port}"
        return "/".join((host, *self.path))

    def matches(self, resource: Resource) -> bool:
        """Whether a credential written for this pattern may be sent for ``resource``."""
        host, port = split_host_port(resource.registry)
        if port != self.port:
            return False
        if self.is_glob:
            labels = host.split(".")
            if len(labels) != len(self._label_regexes):
                return False
            if not all(
                r.fullmatch(label) for r, label in zip(self._label_regexes, labels, strict=True)
            ):
                return False
        elif host != self.host:
            return False
        if not self.path:
            return True
        if resource.repository is None:
            return False
        repo = resource.repository.split("/")
        return tuple(repo[: len(self.path)]) == self.path
