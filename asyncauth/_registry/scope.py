"""Token scopes: what a bearer token is asked to allow (``repository:library/alpine:pull``).

The grammar is distribution's (``docs/spec/auth/scope.md``)::

    scope          := resourcescope [ ' ' resourcescope ]*
    resourcescope  := resourcetype ":" resourcename ":" action [ ',' action ]*
    resourcetype   := /[a-z0-9]+/ [ '(' /[a-z0-9]+/ ')' ]      e.g. repository(plugin)

with one deliberate narrowing: a resource name may not contain ``:``. The spec's grammar allows
a ``host:port/`` prefix in names, but token servers split a scope on its first two colons
(distribution's ``contrib/token-server`` uses ``SplitN(scope, ":", 3)``), so
``repository:host:5000/app:pull`` would be read as the resource ``host`` with the action
``5000/app:pull``. Refusing such a scope is better than asking for the wrong one.

:class:`ScopeSet` is the canonical form used for token requests and cache keys: one entry per
resource, actions merged, sorted, immutable and hashable. :func:`infer_scopes` derives the scope
a registry request needs from its method and path, as distribution's own handlers do
(``registry/handlers/app.go``: GET/HEAD pull; POST/PUT/PATCH pull and push; DELETE delete; a blob
mount's ``from`` repository pull).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl

from .._errors import ScopeError
from .._grammar import REPOSITORY, REPOSITORY_RE
from .._redact import clip

_TYPE = re.compile(r"[a-z0-9]+(?:\([a-z0-9]+\))?")
_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # visible ASCII except ':'
_ACTION = re.compile(r"[\x21-\x2b\x2d-\x39\x3b-\x7e]+")  # visible ASCII except ',' and ':'

# distribution's repository name grammar (reference.NameRegexp without the domain): what can
# appear between ``/v2/`` and the route keyword of a registry URL.
_ROUTE = re.compile(
    rf"/v2/(?P<name>{REPOSITORY})/"
    r"(?:manifests/[^/]+|blobs/uploads/[^/]*|blobs/[^/]+|tags/[^/]+|referrers/[^/]+)"
)
_CATALOG = "/v2/_catalog"

_ACTION_ORDER = {"pull": 0, "push": 1, "delete": 2, "*": 3}
_METHOD_ACTIONS: dict[str, frozenset[str]] = {
    "GET": frozenset({"pull"}),
    "HEAD": frozenset({"pull"}),
    "POST": frozenset({"pull", "push"}),
    "PUT": frozenset({"pull", "push"}),
    "PATCH": frozenset({"pull", "push"}),
    "DELETE": frozenset({"delete"}),
}


def _action_key(action: str) -> tuple[int, str]:
    return (_ACTION_ORDER.get(action, len(_ACTION_ORDER)), action)


@dataclass(frozen=True, slots=True)
class Scope:
    """Access to one resource: ``Scope("repository", "library/alpine", frozenset({"pull"}))``.

    ``type`` keeps a resource class when there is one (``repository(plugin)``). ``actions``
    is a non-empty frozenset; a ``str`` is accepted too and split on commas. ``str(scope)``
    is the wire form with actions in a stable order: ``pull``, ``push``, ``delete``, ``*``,
    then any others alphabetically.
    """

    type: str
    name: str
    actions: frozenset[str]

    def __post_init__(self) -> None:
        actions: Iterable[str] = self.actions
        if isinstance(actions, str):
            actions = [action for action in actions.split(",") if action]
        if not isinstance(self.type, str) or not _TYPE.fullmatch(self.type):
            raise ScopeError(
                "scope: the resource type must be lower-case letters and digits, optionally "
                "with a class in parentheses, like 'repository' or 'repository(plugin)'"
            )
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ScopeError(
                f"scope {self.type}: the resource name must be non-empty visible ASCII without "
                "':' (token servers split scopes on ':')"
            )
        try:
            frozen = frozenset(actions)
        except TypeError:
            raise ScopeError(f"scope {self.type}:{self.name}: actions must be strings") from None
        if not frozen:
            raise ScopeError(f"scope {self.type}:{self.name}: has no actions")
        for action in frozen:
            if not isinstance(action, str) or not _ACTION.fullmatch(action):
                raise ScopeError(
                    f"scope {self.type}:{self.name}: an action must be non-empty visible ASCII "
                    "without ',' or ':'"
                )
        object.__setattr__(self, "actions", frozen)

    @classmethod
    def parse(cls, text: str) -> Scope:
        """Parse one ``type:name:action[,action…]`` (empty actions between commas are ignored)."""
        if not isinstance(text, str):
            raise ScopeError("scope: must be text")
        parts = text.split(":")
        if len(parts) != 3:
            raise ScopeError(
                f"scope {clip(text, 80)!r}: expected 'type:name:actions' with exactly two ':'"
            )
        type_, name, actions = parts
        return cls(type_, name, frozenset(a for a in actions.split(",") if a))

    @classmethod
    def repository(cls, name: str, *actions: str) -> Scope:
        """``Scope.repository("library/alpine", "pull", "push")``."""
        return cls("repository", name, frozenset(actions))

    @classmethod
    def catalog(cls) -> Scope:
        """``registry:catalog:*``, what ``GET /v2/_catalog`` needs."""
        return cls("registry", "catalog", frozenset({"*"}))

    @property
    def resource(self) -> tuple[str, str]:
        """``(type, name)``: scopes with the same resource merge into one."""
        return (self.type, self.name)

    @property
    def sorted_actions(self) -> tuple[str, ...]:
        return tuple(sorted(self.actions, key=_action_key))

    def merge(self, other: Scope) -> Scope:
        """The union of two scopes on the same resource (``pull`` + ``push`` -> ``pull,push``)."""
        if other.resource != self.resource:
            raise ValueError("only scopes on the same resource can be merged")
        return Scope(self.type, self.name, self.actions | other.actions)

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.sorted_actions)}"


@dataclass(frozen=True, slots=True)
class ScopeSet:
    """A canonical, immutable, hashable set of scopes: one per resource, actions merged.

    Built from scopes in any order and with any duplication, two sets asking for the same
    access are equal and hash alike, which is what a token cache key needs. Scopes are kept
    sorted by resource, so ``str()`` and the request encodings are deterministic too.
    """

    scopes: tuple[Scope, ...] = ()

    def __post_init__(self) -> None:
        merged: dict[tuple[str, str], Scope] = {}
        for scope in self.scopes:
            if not isinstance(scope, Scope):
                raise TypeError(f"ScopeSet holds Scope values, not {type(scope).__name__}")
            known = merged.get(scope.resource)
            merged[scope.resource] = scope if known is None else known.merge(scope)
        object.__setattr__(self, "scopes", tuple(merged[key] for key in sorted(merged)))

    @classmethod
    def of(cls, *scopes: Scope | str) -> ScopeSet:
        """``ScopeSet.of(Scope.catalog(), "repository:a/b:pull")``; strings are parsed."""
        return cls(tuple(s if isinstance(s, Scope) else Scope.parse(s) for s in scopes))

    @classmethod
    def parse(cls, text: str) -> ScopeSet:
        """Parse a space-separated list of scopes (a challenge's ``scope`` or a POST ``scope``).

        Blank text is the empty set. Runs of whitespace are tolerated.
        """
        if not isinstance(text, str):
            raise ScopeError("scope list: must be text")
        return cls(tuple(Scope.parse(item) for item in text.split()))

    def union(self, *others: ScopeSet | Scope) -> ScopeSet:
        """This set widened by other sets or scopes (the basis of the challenge-driven retry)."""
        scopes = list(self.scopes)
        for other in others:
            scopes.extend(other.scopes if isinstance(other, ScopeSet) else (other,))
        return ScopeSet(tuple(scopes))

    def __or__(self, other: ScopeSet | Scope) -> ScopeSet:
        return self.union(other)

    def query_params(self) -> tuple[tuple[str, str], ...]:
        """``(("scope", …), …)``: one repeated ``scope`` parameter per resource, for ``GET``."""
        return tuple(("scope", str(scope)) for scope in self.scopes)

    def form_value(self) -> str:
        """The single space-separated ``scope`` value an OAuth2 ``POST`` carries."""
        return " ".join(str(scope) for scope in self.scopes)

    def __iter__(self) -> Iterator[Scope]:
        return iter(self.scopes)

    def __len__(self) -> int:
        return len(self.scopes)

    def __str__(self) -> str:
        return self.form_value()


def repository_from_path(path: str) -> str | None:
    """The repository a registry API path is about, or ``None`` (``/v2/``, catalog, others).

    ``/v2/<name>/manifests/<ref>``, ``/v2/<name>/blobs/<digest>``, ``/v2/<name>/blobs/uploads/…``,
    ``/v2/<name>/tags/list`` and ``/v2/<name>/referrers/<digest>``; ``<name>`` may have several
    segments and is matched with distribution's repository grammar, so upper-case or otherwise
    invalid names give ``None`` rather than a scope the registry would reject anyway.
    """
    match = _ROUTE.fullmatch(path) if isinstance(path, str) else None
    return match.group("name") if match else None


def infer_scopes(method: str, path: str, query: str | bytes = "") -> ScopeSet:
    """The scopes a registry request needs, from its method, path and query string.

    GET/HEAD -> ``pull``; POST/PUT/PATCH -> ``pull,push``; DELETE -> ``delete``; other methods
    need nothing. ``/v2/_catalog`` -> ``registry:catalog:*``. A cross-repository blob mount
    (``POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>``) also needs ``pull`` on
    ``<other>`` (distribution adds it for a ``from`` parameter on any repository route). Paths
    that are not registry API routes, ``/v2/`` included, give the empty set: then the
    challenge's own ``scope`` is all there is to go on.

    ``path`` is the decoded path (``httpx.URL.path``); ``query`` the raw query string
    (``httpx.URL.query``, bytes, is accepted as is).
    """
    if not isinstance(method, str) or not isinstance(path, str):
        return _EMPTY
    if path == _CATALOG:
        return _CATALOG_SCOPES
    match = _ROUTE.fullmatch(path)
    actions = _METHOD_ACTIONS.get(method.upper())
    if match is None or actions is None:
        return _EMPTY
    source = None
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    if query and isinstance(query, str):
        found = next((v for k, v in parse_qsl(query, keep_blank_values=True) if k == "from"), "")
        source = found if REPOSITORY_RE.fullmatch(found) else None
    return _repository_scopes(match.group("name"), actions, source)


@lru_cache(maxsize=4096)
def _repository_scopes(name: str, actions: frozenset[str], source: str | None) -> ScopeSet:
    # Requests repeat the same few (repository, method) pairs thousands of times; building and
    # validating the set once each keeps inference off the request path's profile.
    scopes = [Scope("repository", name, actions)]
    if source is not None:
        scopes.append(Scope("repository", source, frozenset({"pull"})))
    return ScopeSet(tuple(scopes))


_EMPTY = ScopeSet()
_CATALOG_SCOPES = ScopeSet((Scope.catalog(),))
