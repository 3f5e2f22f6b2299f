"""Credentials from ``IMGPKG_REGISTRY_*`` environment variables (imgpkg's first source).

A *set* is the variables sharing a suffix: ``IMGPKG_REGISTRY_HOSTNAME_0``,
``IMGPKG_REGISTRY_USERNAME_0``, ``IMGPKG_REGISTRY_PASSWORD_0``; the unsuffixed names form one more
set. Parsing (:func:`parse_environ`) and choosing (:func:`select`) are pure functions; the
resolver only glues them to the chain. Everything is parsed when the resolver is built, so a typo
surfaces as a :class:`~asyncauth.ConfigError` at start-up rather than as a confusing 401 later.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .._chain import Bounded, Explaining
from .._credentials import Credential
from .._errors import ConfigError
from .._patterns import RegistryPattern
from .._resource import Resource
from .._variables import NOT_CREDENTIAL_SETS

PREFIX = "IMGPKG_REGISTRY_"
_FIELDS = ("HOSTNAME", "USERNAME", "PASSWORD", "IDENTITY_TOKEN", "REGISTRY_TOKEN")
_NAME = re.compile(rf"{PREFIX}({'|'.join(_FIELDS)})(?:_([A-Za-z0-9]+))?")


@dataclass(frozen=True, slots=True)
class EnvEntry:
    """One credential set: where it applies, what it sends, and which variables said so."""

    suffix: str
    pattern: RegistryPattern
    credential: Credential

    @property
    def hostname_variable(self) -> str:
        return _variable("HOSTNAME", self.suffix)

    def describe(self) -> str:
        return f"{self.hostname_variable}={self.pattern.text}"


def _variable(field: str, suffix: str) -> str:
    return f"{PREFIX}{field}_{suffix}" if suffix else f"{PREFIX}{field}"


def _missing(suffix: str, values: Mapping[str, str], empty: frozenset[str]) -> str | None:
    """What an incomplete set lacks, naming the one variable to set: a user who set USERNAME
    and forgot PASSWORD (or exported it empty) must not be told to set both."""

    def var(field: str) -> str:
        return _variable(field, suffix)

    def unset(field: str, because: Iterable[str]) -> str:
        given = list(because)
        state = "is empty" if field in empty else "is not set"
        return f"{var(field)} {state} ({', '.join(map(var, given))} {_be(given)})"

    present = [f for f in _FIELDS if f in values]
    if "HOSTNAME" not in values:
        return f"{unset('HOSTNAME', present)}: which registry is it for?"
    if "PASSWORD" in values and "USERNAME" not in values:
        return f"{unset('USERNAME', ['PASSWORD'])}: a password needs its user name"
    tokens = "IDENTITY_TOKEN" in values or "REGISTRY_TOKEN" in values
    if "USERNAME" in values and "PASSWORD" not in values and not tokens:
        return f"{unset('PASSWORD', ['USERNAME'])}: a user name needs its password"
    if present == ["HOSTNAME"]:
        emptied = "".join(f"; {var(f)} is empty" for f in _FIELDS if f in empty)
        return (
            f"{var('HOSTNAME')} has no credential: set {var('USERNAME')} and {var('PASSWORD')}, "
            f"{var('IDENTITY_TOKEN')} or {var('REGISTRY_TOKEN')}{emptied}"
        )
    return None


def _be(subjects: list[str]) -> str:
    return "is set" if len(subjects) == 1 else "are set"


def _build_entry(suffix: str, values: Mapping[str, str], empty: frozenset[str]) -> EnvEntry:
    missing = _missing(suffix, values, empty)
    if missing is not None:
        raise ConfigError(missing)
    hostname = values["HOSTNAME"]
    pattern = RegistryPattern.parse(hostname, what=_variable("HOSTNAME", suffix))
    credential = Credential(
        username=values.get("USERNAME"),
        password=values.get("PASSWORD"),
        identity_token=values.get("IDENTITY_TOKEN"),
        registry_token=values.get("REGISTRY_TOKEN"),
    )
    return EnvEntry(suffix, pattern, credential)


def parse_environ(environ: Mapping[str, str]) -> tuple[EnvEntry, ...]:
    """All credential sets in ``environ``, validated; ordered unsuffixed first, then by suffix.

    Variables with an empty value count as unset (CI templates often export empty values).
    Raises :class:`ConfigError` naming the variable for an unknown ``IMGPKG_REGISTRY_*`` name, a
    malformed host name or glob, an incomplete set, or two different sets for the same key.
    """
    sets: dict[str, dict[str, str]] = {}
    empty: dict[str, set[str]] = {}
    for name, value in environ.items():
        if not name.startswith(PREFIX) or name in NOT_CREDENTIAL_SETS:
            continue
        match = _NAME.fullmatch(name)
        if match is None:
            raise ConfigError(
                f"unknown variable {name}: expected IMGPKG_REGISTRY_<FIELD> or "
                f"IMGPKG_REGISTRY_<FIELD>_<letters/digits>, FIELD one of {', '.join(_FIELDS)}"
            )
        field, suffix = match.group(1), match.group(2) or ""
        if value == "":
            empty.setdefault(suffix, set()).add(field)
            continue
        sets.setdefault(suffix, {})[field] = value

    entries: list[EnvEntry] = []
    by_key: dict[object, EnvEntry] = {}
    for suffix in sorted(sets, key=lambda s: (s != "", len(s), s)):
        entry = _build_entry(suffix, sets[suffix], frozenset(empty.get(suffix, ())))
        previous = by_key.get(entry.pattern.key)
        if previous is None:
            by_key[entry.pattern.key] = entry
            entries.append(entry)
        elif previous.credential != entry.credential:
            raise ConfigError(
                f"{previous.hostname_variable} and {entry.hostname_variable} both name "
                f"{entry.pattern} with different credentials; keep one of them"
            )
    return tuple(entries)


def select(entries: Iterable[EnvEntry], resource: Resource) -> EnvEntry | None:
    """The entry that applies to ``resource``: a literal host beats a glob, then the longer path.

    Among equally specific entries the first in :func:`parse_environ` order wins, so the choice
    is deterministic (imgpkg's is not).
    """
    best: EnvEntry | None = None
    for entry in entries:
        if entry.pattern.matches(resource) and (
            best is None or entry.pattern.specificity > best.pattern.specificity
        ):
            best = entry
    return best


class EnvResolver(Bounded, Explaining):
    """imgpkg's ``IMGPKG_REGISTRY_*`` variables.

    ``environ`` defaults to ``os.environ`` as it is when the resolver is built.
    """

    name = "env"
    timeout = 1.0

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.entries = parse_environ(os.environ if environ is None else environ)

    async def resolve(self, resource: Resource) -> Credential | None:
        """The most specific set's credential (see :func:`select`); ``None`` lets the chain ask
        the next source. No I/O: everything was read when the resolver was built."""
        entry = select(self.entries, resource)
        return entry.credential if entry else None

    def explain(self, resource: Resource) -> str | None:
        """Which variable set answers for ``resource`` (no secrets), for ``asyncauth explain``."""
        entry = select(self.entries, resource)
        return entry.describe() if entry else None

    def __repr__(self) -> str:
        hosts = ", ".join(e.describe() for e in self.entries)
        return f"EnvResolver([{hosts}])"
