"""The Docker config format (``config.json``, containers ``auth.json``): text to values, purely.

Key spellings (``auths`` and ``credHelpers``): a key with an ``http(s)://`` scheme names a whole
registry and any path after the host is ignored (``https://index.docker.io/v1/`` is Docker Hub),
as docker/cli and containers/image read it. A key without a scheme may name a repository
(``quay.io/team/app``, as podman writes) and then matches on whole path segments. ``docker.io``
and ``registry-1.docker.io`` mean Docker Hub. Keys are registry names, never globs.

Secrets never appear in a message: errors name the file and the key (``auths["ghcr.io"].auth``),
and the ``repr`` of every value here masks what it holds.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..._credentials import Credential
from ..._errors import ConfigError
from ..._patterns import RegistryPattern
from .helperprotocol import valid_helper_name

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SCHEME = re.compile(r"(?i)^https?://")


def json_kind(value: object) -> str:
    """``value``'s JSON type with its article, for messages (``an array``)."""
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), "null")


def key_text(key: str) -> str:
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
            parts.append(f"auths=[{', '.join(key_text(e.key) for e in self.auths)}]")
        if self.cred_helpers:
            helpers = ", ".join(f"{key_text(e.key)}: {e.helper!r}" for e in self.cred_helpers)
            parts.append(f"credHelpers={{{helpers}}}")
        if self.creds_store:
            parts.append(f"credsStore={self.creds_store!r}")
        if self.http_headers:
            parts.append(f"HttpHeaders=[{', '.join(map(repr, self.http_headers))}]")
        return f"DockerConfig({', '.join(parts)})"


# --- fields ------------------------------------------------------------------------------------


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
        raise ConfigError(f"{where}.{name} must be a string, not {json_kind(value)}")
    return value


def _object(document: Mapping[str, object], name: str, path: str) -> Mapping[str, object]:
    value = _field(document, name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {name!r} must be a JSON object, not {json_kind(value)}")
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


def entry_credential(entry: Mapping[str, object], where: str) -> Credential | None:
    """The credential an ``auths`` entry holds (``None`` for none); ``where`` names it."""
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


def key_pattern(key: str, where: str) -> RegistryPattern:
    """The registry (or repository) a key names; :class:`ConfigError` if it names none."""
    # A URL names a registry: docker/cli and containers/image drop whatever path follows the
    # host (``https://index.docker.io/v1/``, Docker Desktop's ``…/v1/access-token``).
    text = key
    if _SCHEME.match(text):
        scheme, _, rest = text.partition("://")
        text = f"{scheme}://{rest.partition('/')[0]}"
    return RegistryPattern.parse(text, what=where, globs=False)


# --- the document ------------------------------------------------------------------------------


def _document(data: bytes | str, where: str) -> dict[str, object] | None:
    """The JSON object the text holds, ``None`` for an empty file, or :class:`ConfigError`."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: not UTF-8 text") from None
    else:
        text = data.removeprefix("\ufeff")
    if not text.strip():
        return None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:  # huge numbers, absurd nesting
        raise ConfigError(f"{where}: not usable JSON ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: must hold a JSON object, not {json_kind(document)}")
    return document


def _auths(document: Mapping[str, object], where: str) -> tuple[AuthEntry, ...]:
    auths: list[AuthEntry] = []
    for index, (key, value) in enumerate(_object(document, "auths", where).items()):
        entry_where = f"{where}: auths[{key_text(key)}]"
        pattern = key_pattern(key, entry_where)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{entry_where} must be a JSON object, not {json_kind(value)}")
        auths.append(AuthEntry(key, pattern, entry_credential(value, entry_where), index))
    return tuple(auths)


def _not_a_helper_name(where: str, value: str) -> ConfigError:
    return ConfigError(
        f"{where} {value!r} is not a credential helper name "
        "(the part after 'docker-credential-', without '/')"
    )


def _cred_helpers(document: Mapping[str, object], where: str) -> tuple[HelperEntry, ...]:
    helpers: list[HelperEntry] = []
    for index, (key, value) in enumerate(_object(document, "credHelpers", where).items()):
        entry_where = f"{where}: credHelpers[{key_text(key)}]"
        pattern = key_pattern(key, entry_where)
        if value is None or value == "":
            continue  # docker: an empty helper is no helper
        if not isinstance(value, str):
            raise ConfigError(f"{entry_where} must be a string, not {json_kind(value)}")
        if not valid_helper_name(value):
            raise _not_a_helper_name(f"{entry_where}:", value)
        helpers.append(HelperEntry(key, pattern, value, index))
    return tuple(helpers)


def _creds_store(document: Mapping[str, object], where: str) -> str | None:
    store = _field(document, "credsStore")
    if store is not None and not isinstance(store, str):
        raise ConfigError(f"{where}: 'credsStore' must be a string, not {json_kind(store)}")
    if store and not valid_helper_name(store):
        raise _not_a_helper_name(f"{where}: credsStore", store)
    return store or None


def _http_headers(document: Mapping[str, object], where: str) -> Mapping[str, str]:
    headers: dict[str, str] = {}
    for name, value in _object(document, "HttpHeaders", where).items():
        header_where = f"{where}: HttpHeaders[{key_text(name)}]"
        if not _HEADER_NAME.fullmatch(name):
            raise ConfigError(f"{header_where} is not a valid HTTP header name")
        if not isinstance(value, str):
            raise ConfigError(f"{header_where} must be a string, not {json_kind(value)}")
        if any(c in value for c in "\r\n\x00"):
            raise ConfigError(f"{header_where} contains a line break or NUL")
        headers[name] = value
    return MappingProxyType(headers)


def parse_config(data: bytes | str, *, path: str | os.PathLike[str] = "<config>") -> DockerConfig:
    """Parse the text of a Docker config or containers ``auth.json``.

    An empty file is an empty config (docker agrees). Raises :class:`ConfigError` naming
    ``path`` and the key for anything docker would choke on or that cannot be meant: invalid
    UTF-8 or JSON, a top level that is not an object, a non-object ``auths``/``credHelpers``/
    ``HttpHeaders``, non-string fields, an unparsable registry key, invalid base64 in ``auth``,
    ``auth`` without a ``:``, a helper name that is not a plain name. Unknown fields are ignored.
    """
    where = os.fspath(path)
    document = _document(data, where)
    if document is None:
        return DockerConfig(where)
    return DockerConfig(
        where,
        _auths(document, where),
        _cred_helpers(document, where),
        _creds_store(document, where),
        _http_headers(document, where),
    )
