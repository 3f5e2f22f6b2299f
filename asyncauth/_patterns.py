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
from typing import Final

from ._errors import ConfigError, InvalidReferenceError
from ._grammar import COMPONENT_RE
from ._resource import Resource, normalise_registry, split_host_port

_GLOB_CHARS = frozenset("*?[")
_LITERAL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_OTHER_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_MAX_LABEL = 63

_Fail = Callable[[str], ConfigError]
_Token = tuple[frozenset[str], bool] | None
"""One glob position: ``None`` for ``*``, else (characters, negated) matching one character."""
_STAR: Final = None
_ANY: Final = (frozenset[str](), True)


def _char_class(body: str, label: str, fail: _Fail) -> tuple[frozenset[str], bool]:
    """``[a-z0-9]``, ``[^ab]``, ``[!ab]``: the characters of a class and whether it is negated."""
    negate = body[:1] in ("^", "!")
    body = body[1:] if negate else body
    if not body:
        raise fail(f"empty character class in host label {label!r}")
    chars: set[str] = set()
    j = 0
    while j < len(body):
        lo = body[j]
        if lo not in _LITERAL or lo == "-":
            raise fail(f"{lo!r} cannot appear in a character class ({label!r})")
        if j + 2 < len(body) and body[j + 1] == "-":
            hi = body[j + 2]
            if hi not in _LITERAL or hi == "-" or hi < lo:
                raise fail(f"bad range {lo}-{hi} in host label {label!r}")
            chars.update(chr(c) for c in range(ord(lo), ord(hi) + 1))
            j += 3
        else:
            chars.add(lo)
            j += 1
    return frozenset(chars), negate


def _glob_label(label: str, fail: _Fail) -> tuple[_Token, ...]:
    """One host label written as a glob, as tokens for :func:`_label_matches`."""
    if len(label) > _MAX_LABEL:
        raise fail(f"host label {label[:20]!r}… is longer than {_MAX_LABEL} characters")
    tokens: list[_Token] = []
    i = 0
    while i < len(label):
        char = label[i]
        if char == "*":
            if not tokens or tokens[-1] is not _STAR:  # runs of '*' are one '*'
                tokens.append(_STAR)
        elif char == "?":
            tokens.append(_ANY)
        elif char == "[":
            end = label.find("]", i + 1)
            if end == -1:
                raise fail(f"unclosed '[' in host label {label!r}")
            tokens.append(_char_class(label[i + 1 : end], label, fail))
            i = end
        elif char in _LITERAL:
            tokens.append((frozenset(char), False))
        else:
            raise fail(f"{char!r} is not allowed in a host name or glob ({label!r})")
        i += 1
    return tuple(tokens)


def _label_matches(tokens: tuple[_Token, ...], text: str) -> bool:
    """Glob matching without backtracking blow-up: at most ``len(tokens) * len(text)`` steps.

    (A regular expression with several ``[^.]*`` backtracks exponentially on a near miss; this
    is the classic wildcard walk that only ever returns to the last ``*``.)
    """
    t = p = 0
    star, mark = -1, 0
    while t < len(text):
        token = tokens[p] if p < len(tokens) else _ANY
        if p < len(tokens) and token is not _STAR and (text[t] in token[0]) != token[1]:
            t, p = t + 1, p + 1
        elif p < len(tokens) and token is _STAR:
            star, mark, p = p, t, p + 1
        elif star != -1:
            p, mark = star + 1, mark + 1
            t = mark
        else:
            return False
    while p < len(tokens) and tokens[p] is _STAR:
        p += 1
    return p == len(tokens)


def _without_scheme(raw: str, fail: _Fail) -> str:
    lowered = raw.lower()
    for scheme in ("https://", "http://"):
        if lowered.startswith(scheme):
            return raw[len(scheme) :]
    if _OTHER_SCHEME.match(raw):
        raise fail("only http:// and https:// may prefix a registry host name")
    return raw


def _path_segments(path_text: str, fail: _Fail) -> tuple[str, ...]:
    """The repository path of a key, ``/v1/``/``/v2/`` and a trailing ``/`` dropped."""
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
    return tuple(segments)


def _glob_host(
    hostport: str, fail: _Fail
) -> tuple[str, int | None, tuple[tuple[_Token, ...], ...]]:
    host_text, colon, port_text = hostport.rpartition(":")
    if not colon:
        host_text, port_text = hostport, ""
    port: int | None = None
    if colon:
        if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise fail(f"port {port_text!r} is not a number from 1 to 65535")
        port = int(port_text)
    glob = host_text.lower()
    labels = glob.split(".")
    if any(not label for label in labels):
        raise fail(f"host name {host_text!r} has an empty label")
    return glob, port, tuple(_glob_label(label, fail) for label in labels)


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
    _labels: tuple[tuple[_Token, ...], ...] = field(compare=False, repr=False)

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
        raw = _without_scheme(raw, fail)
        if not raw.isascii() or not raw.isprintable() or any(c.isspace() for c in raw):
            raise fail("host name contains whitespace, control or non-ASCII characters")
        if "@" in raw:
            raise fail(
                "a registry host name must not carry a user name or password "
                "(user:password@); put credentials in their own variables or fields"
            )
        hostport, _, path_text = raw.partition("/")
        segments = _path_segments(path_text, fail)
        is_ipv6 = hostport.startswith("[") and ":" in hostport.partition("]")[0]
        if is_ipv6 or not _GLOB_CHARS.intersection(hostport):
            try:
                registry = normalise_registry(hostport, what=what)
            except InvalidReferenceError as exc:
                raise ConfigError(str(exc)) from None
            host, port = split_host_port(registry)
            return cls(raw, host, port, segments, False, ())
        if not globs:
            raise fail(
                f"{hostport!r}: glob characters (*, ?, [) are not allowed here; "
                "write the registry host name itself"
            )
        glob, glob_port, labels = _glob_host(hostport, fail)
        return cls(raw, glob, glob_port, segments, True, labels)

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
        # A path that starts with v1/v2 keeps the API prefix it was written with: parsing
        # drops one leading /v1/ or /v2/, so the canonical form must carry one to drop.
        prefix = ("v2",) if self.path[:1] in (("v1",), ("v2",)) else ()
        return "/".join((host, *prefix, *self.path))

    def matches(self, resource: Resource) -> bool:
        """Whether a credential written for this pattern may be sent for ``resource``."""
        host, port = split_host_port(resource.registry)
        if port != self.port:
            return False
        if self.is_glob:
            labels = host.split(".")
            if len(labels) != len(self._labels):
                return False
            if not all(map(_label_matches, self._labels, labels)):
                return False
        elif host != self.host:
            return False
        if not self.path:
            return True
        if resource.repository is None:
            return False
        repo = resource.repository.split("/")
        return tuple(repo[: len(self.path)]) == self.path
