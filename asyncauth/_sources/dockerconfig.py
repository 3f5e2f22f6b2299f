"""Credentials from the Docker config file and credential helpers (imgpkg's last source).

Three layers, as everywhere in asyncauth:

* **Finding the file** (:func:`config_candidates`, :func:`find_config`): the first that exists of
  ``$DOCKER_CONFIG/config.json``, ``~/.docker/config.json``, ``$REGISTRY_AUTH_FILE``,
  ``$XDG_RUNTIME_DIR/containers/auth.json`` and ``$XDG_CONFIG_HOME/containers/auth.json``
  (``~/.config`` by default). podman, skopeo and buildah write the same ``auths`` format, so
  their logins count too. An explicit path wins over all of them.
* **Parsing and lookup** (:func:`parse_config`, :func:`lookup`): pure functions. The lookup
  follows docker/cli: a ``credHelpers`` entry for the registry decides first, else ``credsStore``
  (the helper for every registry), else ``auths``. Whichever is configured *decides*: a helper
  that has nothing for the registry means no credential, as in docker, not "try ``auths``".
* **I/O at the edges** (:class:`DockerConfigResolver`): reads the file in a worker thread and runs
  helpers through :mod:`asyncauth.sources.helpers`.

Key spellings (``auths`` and ``credHelpers``): a key with an ``http(s)://`` scheme names a whole
registry and any path after the host is ignored (``https://index.docker.io/v1/`` is Docker Hub),
as docker/cli and containers/image read it. A key without a scheme may name a repository
(``quay.io/team/app``, as podman writes) and then matches on whole path segments; the most
specific matching key wins. ``docker.io`` and ``registry-1.docker.io`` mean Docker Hub. Keys are
registry names, never globs.

Secrets never appear in a message: errors name the file and the key (``auths["ghcr.io"].auth``),
and the ``repr`` of every value here masks what it holds.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, TypeVar

import anyio

from .._credentials import Credential
from .._errors import ConfigError, ResolverError
from .._patterns import RegistryPattern
from .._resource import Resource
from .._singleflight import SingleFlightCache
from .helpers import (
    DEFAULT_HELPER_CACHE_TTL,
    DEFAULT_HELPER_TIMEOUT,
    HelperClient,
    server_url_for,
    valid_helper_name,
)

__all__ = [
    "DEFAULT_CHECK_INTERVAL",
    "AuthEntry",
    "DockerConfig",
    "DockerConfigResolver",
    "HelperEntry",
    "Lookup",
    "config_candidates",
    "find_config",
    "lookup",
    "parse_config",
    "read_config",
]

DEFAULT_CHECK_INTERVAL = 1.0
"""Seconds between checks whether the config file changed (a ``docker login`` meanwhile)."""
MAX_CONFIG_BYTES = 16 << 20
"""A config file larger than this is refused rather than read into memory."""

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SCHEME = re.compile(r"(?i)^https?://")


def _json_kind(value: object) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), "null")


def _key_text(key: str) -> str:
    """A key as shown in messages: JSON-quoted, shortened. Keys are names, not secrets."""
    shown = json.dumps(key, ensure_ascii=True)
    return shown if len(shown) <= 90 else shown[:88] + '…"'


# --- values ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthEntry:
    """One ``auths`` entry. ``credential`` is ``None`` for an entry that holds no secret.

    (docker writes ``{}`` entries for registries whose secret lives in a ``credsStore``.)
    """

    key: str
    pattern: RegistryPattern
    credential: Credential | None
    index: int = field(compare=False)


@dataclass(frozen=True, slots=True)
class HelperEntry:
    """One ``credHelpers`` entry: a registry and its helper (the part after
    ``docker-credential-``)."""

    key: str
    pattern: RegistryPattern
    helper: str
    index: int = field(compare=False)


@dataclass(frozen=True, slots=True)
class DockerConfig:
    """A parsed Docker config (or containers ``auth.json``): what credential lookup needs.

    ``http_headers`` are the ``HttpHeaders`` docker sends with every registry request (values may
    be secrets: the ``repr`` shows the names only). ``path`` is where it was read from.
    """

    path: str
    auths: tuple[AuthEntry, ...] = ()
    cred_helpers: tuple[HelperEntry, ...] = ()
    creds_store: str | None = None
    http_headers: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        parts = [repr(self.path)]
        if self.auths:
            parts.append(f"auths=[{', '.join(_key_text(e.key) for e in self.auths)}]")
        if self.cred_helpers:
            helpers = ", ".join(f"{_key_text(e.key)}: {e.helper!r}" for e in self.cred_helpers)
            parts.append(f"credHelpers={{{helpers}}}")
        if self.creds_store:
            parts.append(f"credsStore={self.creds_store!r}")
        if self.http_headers:
            parts.append(f"HttpHeaders=[{', '.join(map(repr, self.http_headers))}]")
        return f"DockerConfig({', '.join(parts)})"


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

    def describe(self, path: str) -> str:
        """Where the answer comes from, e.g. ``credHelpers["gcr.io"] -> docker-credential-gcr
        in /home/me/.docker/config.json``. No secrets."""
        where = self.via if self.key is None else f"{self.via}[{_key_text(self.key)}]"
        helper = f" -> docker-credential-{self.helper}" if self.helper else ""
        return f"{where}{helper} in {path}"


# --- parsing -----------------------------------------------------------------------------------


def _field(obj: Mapping[str, object], name: str) -> object:
    """Go's JSON decoding matches field names case-insensitively (an exact match first);
    docker and podman read ``"Auths"`` or ``"Auth"`` fine, so we do too."""
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if key.lower() == lowered:
            return value
    return None


def _string(obj: Mapping[str, object], name: str, where: str) -> str:
    value = _field(obj, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{name} must be a string, not {_json_kind(value)}")
    return value


def _decode_auth(auth: str, where: str) -> tuple[str, str]:
    """``auth`` is base64(``user:password``). Like docker: split on the first ``:``, the user
    must not be empty, trailing NULs of the password are dropped, line breaks are ignored."""
    try:
        raw = base64.b64decode(auth.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}.auth is not valid base64") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}.auth does not decode to UTF-8 text") from None
    username, colon, password = text.partition(":")
    if not colon:
        raise ConfigError(f"{where}.auth does not decode to 'username:password' (no ':')")
    if not username:
        raise ConfigError(f"{where}.auth decodes to an empty username")
    return username, password.rstrip("\x00")


def _entry_credential(entry: Mapping[str, object], where: str) -> Credential | None:
    username = _string(entry, "username", where)
    password = _string(entry, "password", where)
    identity_token = _string(entry, "identitytoken", where)
    registry_token = _string(entry, "registrytoken", where)
    auth = _string(entry, "auth", where)
    if auth:
        username, password = _decode_auth(auth, where)
    if not (username or password or identity_token or registry_token):
        return None
    return Credential(
        username=username or None,
        password=password or None,
        identity_token=identity_token or None,
        registry_token=registry_token or None,
    )


def _pattern(key: str, where: str) -> RegistryPattern:
    # A URL names a registry: docker/cli and containers/image drop whatever path follows the
    # host (``https://index.docker.io/v1/``, Docker Desktop's ``…/v1/access-token``).
    text = key
    if _SCHEME.match(text):
        scheme, _, rest = text.partition("://")
        text = f"{scheme}://{rest.partition('/')[0]}"
    return RegistryPattern.parse(text, what=where, globs=False)


def _object(document: Mapping[str, object], name: str, path: str) -> Mapping[str, object]:
    value = _field(document, name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {name!r} must be a JSON object, not {_json_kind(value)}")
    return value


def parse_config(data: bytes | str, *, path: str | os.PathLike[str] = "<config>") -> DockerConfig:
    """Parse the text of a Docker config or containers ``auth.json``.

    An empty file is an empty config (docker agrees). Raises :class:`ConfigError` naming
    ``path`` and the key for anything docker would choke on or that cannot be meant: invalid
    UTF-8 or JSON, a top level that is not an object, a non-object ``auths``/``credHelpers``/
    ``HttpHeaders``, non-string fields, an unparsable registry key, invalid base64 in ``auth``,
    ``auth`` without a ``:``, a helper name that is not a plain name. Unknown fields are ignored.
    """
    where = os.fspath(path)
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: not UTF-8 text") from None
    else:
        text = data.removeprefix("\ufeff")
    if not text.strip():
        return DockerConfig(where)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:  # huge numbers, absurd nesting
        raise ConfigError(f"{where}: not usable JSON ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: must hold a JSON object, not {_json_kind(document)}")

    auths: list[AuthEntry] = []
    for index, (key, value) in enumerate(_object(document, "auths", where).items()):
        entry_where = f"{where}: auths[{_key_text(key)}]"
        pattern = _pattern(key, entry_where)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{entry_where} must be a JSON object, not {_json_kind(value)}")
        auths.append(AuthEntry(key, pattern, _entry_credential(value, entry_where), index))

    helpers: list[HelperEntry] = []
    for index, (key, value) in enumerate(_object(document, "credHelpers", where).items()):
        entry_where = f"{where}: credHelpers[{_key_text(key)}]"
        pattern = _pattern(key, entry_where)
        if value is None or value == "":
            continue  # docker: an empty helper is no helper
        if not isinstance(value, str):
            raise ConfigError(f"{entry_where} must be a string, not {_json_kind(value)}")
        if not valid_helper_name(value):
            raise ConfigError(
                f"{entry_where}: {value!r} is not a credential helper name "
                "(the part after 'docker-credential-', without '/')"
            )
        helpers.append(HelperEntry(key, pattern, value, index))

    store = _field(document, "credsStore")
    if store is not None and not isinstance(store, str):
        raise ConfigError(f"{where}: 'credsStore' must be a string, not {_json_kind(store)}")
    if store and not valid_helper_name(store):
        raise ConfigError(
            f"{where}: credsStore {store!r} is not a credential helper name "
            "(the part after 'docker-credential-', without '/')"
        )

    headers: dict[str, str] = {}
    for name, value in _object(document, "HttpHeaders", where).items():
        header_where = f"{where}: HttpHeaders[{_key_text(name)}]"
        if not _HEADER_NAME.fullmatch(name):
            raise ConfigError(f"{header_where} is not a valid HTTP header name")
        if not isinstance(value, str):
            raise ConfigError(f"{header_where} must be a string, not {_json_kind(value)}")
        if any(c in value for c in "\r\n\x00"):
            raise ConfigError(f"{header_where} contains a line break or NUL")
        headers[name] = value

    return DockerConfig(
        where, tuple(auths), tuple(helpers), store or None, MappingProxyType(headers)
    )


# --- lookup ------------------------------------------------------------------------------------


def _docker_key(resource: Resource) -> str:
    """The exact key docker/cli looks up first: ``https://index.docker.io/v1/`` or host[:port]."""
    return server_url_for(resource)


_E = TypeVar("_E", AuthEntry, HelperEntry)


def _best(entries: Collection[_E], resource: Resource) -> _E | None:
    """The most specific matching entry; among equals the key spelt as docker/cli spells it,
    then the first in the file (docker picks at random among keys that normalise alike)."""
    exact = _docker_key(resource)
    best: _E | None = None
    best_rank: tuple[object, ...] = ()
    for entry in entries:
        if not entry.pattern.matches(resource):
            continue
        rank = (entry.pattern.specificity, entry.key == exact, -entry.index)
        if best is None or rank > best_rank:
            best, best_rank = entry, rank
    return best


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

    Helpers named in ``exclude_helpers`` are treated as if their lines were not in the file
    (``docker-credential-asyncauth`` excludes itself, to avoid asking itself forever).
    """
    helper_entries = [e for e in config.cred_helpers if e.helper not in exclude_helpers]
    helper = _best(helper_entries, resource)
    if helper is not None:
        return Lookup("credHelpers", helper.key, helper=helper.helper)
    if config.creds_store and config.creds_store not in exclude_helpers:
        return Lookup("credsStore", None, helper=config.creds_store)
    entry = _best(config.auths, resource)
    if entry is None or entry.credential is None:
        return None
    return Lookup("auths", entry.key, credential=entry.credential)


# --- files -------------------------------------------------------------------------------------


def config_candidates(
    environ: Mapping[str, str], *, home: str | None = None
) -> tuple[tuple[Path, str], ...]:
    """The files to try, in order, each with the rule that named it (for messages).

    ``home`` defaults to ``environ["HOME"]``; without either, the ``~`` files are not tried.
    Variables set to the empty string count as unset.
    """
    home = home or environ.get("HOME") or None
    found: list[tuple[Path, str]] = []
    if docker_config := environ.get("DOCKER_CONFIG"):
        found.append((Path(docker_config) / "config.json", "$DOCKER_CONFIG/config.json"))
    if home:
        found.append((Path(home) / ".docker" / "config.json", "~/.docker/config.json"))
    if auth_file := environ.get("REGISTRY_AUTH_FILE"):
        found.append((Path(auth_file), "$REGISTRY_AUTH_FILE"))
    if runtime := environ.get("XDG_RUNTIME_DIR"):
        found.append(
            (Path(runtime) / "containers" / "auth.json", "$XDG_RUNTIME_DIR/containers/auth.json")
        )
    if xdg_config := environ.get("XDG_CONFIG_HOME"):
        found.append(
            (Path(xdg_config) / "containers" / "auth.json", "$XDG_CONFIG_HOME/containers/auth.json")
        )
    elif home:
        found.append(
            (Path(home) / ".config" / "containers" / "auth.json", "~/.config/containers/auth.json")
        )
    return tuple(found)


def find_config(candidates: tuple[tuple[Path, str], ...]) -> Path | None:
    """The first candidate that exists (blocking I/O: a ``stat`` per candidate).

    A file that exists but cannot be read is still *the* file: reading it will then raise a
    :class:`ConfigError` rather than silently fall back to the next one.
    """
    for path, _ in candidates:
        try:
            os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            pass  # e.g. a directory we may not search: the read will say so
        return path
    return None


def read_config(path: str | os.PathLike[str]) -> DockerConfig:
    """Read and parse one file (blocking I/O). :class:`ConfigError` if it cannot be read."""
    where = os.fspath(path)
    try:
        with open(where, "rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"{where}: cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_CONFIG_BYTES} bytes; not a Docker config")
    return parse_config(data, path=where)


_FileState = tuple[str, int, int, int, int]


class _Loader:
    """Keeps the parsed config and re-reads it only when the file changed.

    Finding the file and ``stat``-ing it run in a worker thread, at most once per
    ``check_interval`` seconds however many lookups ask (single-flight); the file is re-parsed
    only when its identity, size or mtime changed. Errors are never cached: a broken file raises
    on every lookup until it is fixed.
    """

    def __init__(
        self,
        explicit: Path | None,
        candidates: tuple[tuple[Path, str], ...],
        check_interval: float,
    ) -> None:
        self.explicit = explicit
        self.candidates = candidates
        self.check_interval = check_interval
        self.current: DockerConfig | None = None
        self._state: _FileState | None = None
        self._lock = threading.Lock()
        self._flight = SingleFlightCache[DockerConfig | None](maxsize=1)

    async def load(self) -> DockerConfig | None:
        return await self._flight.get(
            "config", lambda: anyio.to_thread.run_sync(self.load_sync), self._ttl
        )

    def _ttl(self, _: DockerConfig | None) -> float:
        return self.check_interval

    def load_sync(self) -> DockerConfig | None:
        with self._lock:
            path = self.explicit or find_config(self.candidates)
            if path is None:
                self.current, self._state = None, None
                return None
            where = os.fspath(path)
            try:
                st = os.stat(where)
            except OSError as exc:
                self.current, self._state = None, None
                if self.explicit is None and isinstance(exc, FileNotFoundError):
                    return None  # removed between finding and reading
                raise ConfigError(
                    f"{where}: cannot be read ({exc.strerror or type(exc).__name__})"
                ) from None
            state = (where, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if state == self._state and self.current is not None:
                return self.current
            self.current, self._state = None, None
            config = read_config(where)
            self.current, self._state = config, state
            return config


class DockerConfigResolver:
    """The Docker config file and its credential helpers (imgpkg's "Via Docker config").

    **When the file is read.** Not when the resolver is built: lazily, on the first lookup, and
    then again whenever it changed — the file's identity, size and mtime are checked at most once
    every ``check_interval`` seconds — so a long-running process sees ``docker login`` and
    ``docker logout`` without a restart, and building a chain does no I/O. A broken file raises
    :class:`~asyncauth.ConfigError` (naming the file and the key) from every lookup that reaches
    this source, until it is fixed; a chain whose earlier sources answer never reads it.

    ``config_path`` names the file and wins over discovery (a missing file is then a
    ``ConfigError``). ``environ`` replaces ``os.environ`` for ``DOCKER_CONFIG``, ``HOME``,
    ``REGISTRY_AUTH_FILE`` and ``XDG_*``, and is also the whole environment helpers run with
    (including the ``PATH`` they are found on); the variables are read when the resolver is built.

    Helpers run with ``helper_timeout`` seconds each; their answers are cached per (helper,
    server URL) for ``helper_cache_ttl`` seconds, or until the file changes, and concurrent
    lookups share one run. A helper
    that fails (missing, crashing, bad output, too slow) is a
    :class:`~asyncauth.ResolverError`: the chain records it and moves on. ``exclude_helpers``
    names helpers to treat as absent from the file.
    """

    name = "docker-config"
    disable_hint = (
        "fix or remove that credential helper entry in the Docker config, "
        "or pass --registry-anon (IMGPKG_ANON=true) to skip the Docker config"
    )

    def __init__(
        self,
        *,
        config_path: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        helper_timeout: float = DEFAULT_HELPER_TIMEOUT,
        helper_cache_ttl: float = DEFAULT_HELPER_CACHE_TTL,
        exclude_helpers: Collection[str] = (),
        check_interval: float = DEFAULT_CHECK_INTERVAL,
    ) -> None:
        env = os.environ if environ is None else environ
        home = env.get("HOME") or None
        if home is None and environ is None:
            home = os.path.expanduser("~")
            home = None if home == "~" else home
        explicit = None if config_path is None else Path(config_path)
        self.exclude_helpers = frozenset(exclude_helpers)
        # The chain's limit for this resolver: a helper's own timeout must fire first, so the
        # trace shows which helper hung rather than a bare "timed out".
        self.timeout = helper_timeout + 5.0
        self.helpers = HelperClient(
            timeout=helper_timeout, cache_ttl=helper_cache_ttl, environ=environ
        )
        self._loader = _Loader(explicit, config_candidates(env, home=home), check_interval)
        self._last_config: DockerConfig | None = None

    def __repr__(self) -> str:
        if self._loader.explicit is not None:
            where = os.fspath(self._loader.explicit)
        else:
            where = " | ".join(rule for _, rule in self._loader.candidates) or "no candidates"
        excluded = f", exclude_helpers={sorted(self.exclude_helpers)!r}"
        return f"DockerConfigResolver({where}{excluded if self.exclude_helpers else ''})"

    @property
    def candidates(self) -> tuple[tuple[Path, str], ...]:
        """The files looked for, in order, each with its rule (empty with ``config_path``)."""
        return () if self._loader.explicit is not None else self._loader.candidates

    async def load(self) -> DockerConfig | None:
        """The config as of now (``None`` when no file exists); raises ``ConfigError``."""
        return await self._loader.load()

    async def http_headers(self) -> dict[str, str]:
        """The file's ``HttpHeaders``, for the registry handshake to send like docker does."""
        config = await self._loader.load()
        return {} if config is None else dict(config.http_headers)

    async def resolve(self, resource: Resource) -> Credential | None:
        config = await self._loader.load()
        if config is not self._last_config:
            # The file changed (``docker login`` rewrites it): helper answers may be stale too.
            if self._last_config is not None:
                self.helpers.clear()
            self._last_config = config
        if config is None:
            return None
        found = lookup(config, resource, exclude_helpers=self.exclude_helpers)
        if found is None:
            return None
        if found.helper is None:
            return found.credential
        try:
            return await self.helpers.get(found.helper, server_url_for(resource))
        except ResolverError as exc:
            raise ResolverError(f"{found.describe(config.path)}: {exc}") from None

    def explain(self, resource: Resource) -> str | None:
        """Which file and key answered (no secrets), from the config read last."""
        config = self._loader.current
        if config is None:
            return None
        found = lookup(config, resource, exclude_helpers=self.exclude_helpers)
        return None if found is None else found.describe(config.path)
