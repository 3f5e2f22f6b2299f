"""Which entry of a Docker config answers for a resource: docker/cli's order, purely.

A ``credHelpers`` entry for the registry decides first, else ``credsStore`` (the helper for every
registry), else ``auths``. Whichever is configured *decides*: a helper that has nothing for the
registry means no credential, as in docker, not "try ``auths``". Among matching keys the most
specific wins (a repository path beats the bare registry).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal, TypeVar

from ..._credentials import Credential
from ..._resource import Resource
from .configfile import AuthEntry, DockerConfig, HelperEntry, key_text
from .helperprotocol import server_url_for


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the config says for one resource, before any helper runs.

    Either a ``credential`` from ``auths`` or a ``helper`` to ask. ``key`` is the key as written
    in the file (``None`` for ``credsStore``, which applies to every registry).
    """

    via: Literal["credHelpers", "credsStore", "auths"]
    key: str | None
    credential: Credential | None = None
    helper: str | None = None

    def entry(self) -> str:
        """The entry in the file: ``credHelpers["gcr.io"]``, ``credsStore``. No secrets."""
        return self.via if self.key is None else f"{self.via}[{key_text(self.key)}]"

    def describe(self, path: str) -> str:
        """Where the answer comes from, e.g. ``credHelpers["gcr.io"] -> docker-credential-gcr
        in /home/me/.docker/config.json``. No secrets."""
        helper = f" -> docker-credential-{self.helper}" if self.helper else ""
        return f"{self.entry()}{helper} in {path}"


_E = TypeVar("_E", AuthEntry, HelperEntry)


def _best(entries: Collection[_E], resource: Resource) -> _E | None:
    """The most specific matching entry; among equals the key spelt as docker/cli spells it,
    then the first in the file (docker picks at random among keys that normalise alike)."""
    exact = server_url_for(resource)
    best: _E | None = None
    best_rank: tuple[object, ...] = ()
    for entry in entries:
        if not entry.pattern.matches(resource):
            continue
        rank = (entry.pattern.specificity, entry.key == exact, -entry.index)
        if best is None or rank > best_rank:
            best, best_rank = entry, rank
    return best


def _excluded(helper: object, exclude_helpers: Collection[str]) -> bool:
    return isinstance(helper, str) and helper in exclude_helpers


def lookup(
    config: DockerConfig,
    resource: Resource,
    *,
    exclude_helpers: Collection[str] = frozenset(),
) -> Lookup | None:
    """What ``config`` says for ``resource``: docker/cli's order, ``None`` for no credential.

    1. the most specific ``credHelpers`` key matching the resource -> ask that helper;
    2. else ``credsStore`` -> ask that helper;
    3. else the most specific ``auths`` key -> its credential (an empty entry: ``None``).

    Only the entry chosen is validated: a broken one raises :class:`~asyncauth.ConfigError`
    naming the file and the key; broken entries for other registries change nothing here.
    Helpers named in ``exclude_helpers`` are treated as if their lines were not in the file
    (``docker-credential-asyncauth`` excludes itself, to avoid asking itself forever).
    """
    helper_entries = [e for e in config.cred_helpers if not _excluded(e.helper, exclude_helpers)]
    helper = _best(helper_entries, resource)
    if helper is not None:
        return Lookup("credHelpers", helper.key, helper=helper.helper_name())
    if not _excluded(config.creds_store, exclude_helpers):
        store = config.store_helper()
        if store is not None:
            return Lookup("credsStore", None, helper=store)
    entry = _best(config.auths, resource)
    credential = None if entry is None else entry.credential()
    if entry is None or credential is None:
        return None
    return Lookup("auths", entry.key, credential=credential)
