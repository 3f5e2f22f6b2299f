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
from typing import Literal

from ..._credentials import Credential
from ..._errors import ConfigError
from ..._patterns import RegistryPattern
from ..._redact import clip, redact, without_userinfo
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
    shown = json.dumps(without_userinfo(key), ensure_ascii=True)
    return shown if len(shown) <= 90 else shown[:88] + '…"'


# --- values ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IgnoredKey:
    """A key that cannot name a registry (``my_registry:5000``, ``ftp://x``): it matches nothing.

    The file is shared with docker, podman and crane, which ignore such keys too; one of them
    must not break every lookup. ``reason`` says why, without the key's user-info.
    """

    section: Literal["auths", "credHelpers"]
    key: str
    reason: str

    def describe(self) -> str:
        """``auths["my_registry:5000"] (why)``; a ``user:password@`` in the key is masked."""
        return f"{self.section}[{key_text(self.key)}] ({self.reason})"


@dataclass(frozen=True, slots=True)
class AuthEntry:
    """One ``auths`` entry, validated only when a lookup chooses it (:meth:`credential`).

    ``value`` is the entry as written (it holds secrets: never shown). docker writes ``{}``
    entries for registries whose secret lives in a ``credsStore``: no credential.
    """

    key: str
    pattern: RegistryPattern
    value: object = field(compare=False, repr=False)
    where: str = field(compare=False)
    index: int = field(compare=False)

    def credential(self) -> Credential | None:
        """The credential it holds (``None`` for none); :class:`ConfigError` if it is broken."""
        value = {} if self.value is None else self.value
        if not isinstance(value, dict):
            raise ConfigError(f"{self.where} must be a JSON object, not {json_kind(value)}")
        return entry_credential(value, self.where)


@dataclass(frozen=True, slots=True)
class HelperEntry:
    """One ``credHelpers`` entry: a registry and the helper written for it (the part after
    ``docker-credential-``), validated only when a lookup chooses it (:meth:`helper_name`)."""

    key: str
    pattern: RegistryPattern
    helper: object
    where: str = field(compare=False)
    index: int = field(compare=False)

    def helper_name(self) -> str:
        """The helper to run; :class:`ConfigError` if what is written cannot be one."""
        return helper_name(self.helper, self.where)


@dataclass(frozen=True, slots=True)
class DockerConfig:
    """A parsed Docker config (or containers ``auth.json``): what credential lookup needs.

    ``http_headers`` are the ``HttpHeaders`` docker sends with every registry request (values may
    be secrets: the ``repr`` shows the names only). ``path`` is where it was read from.
    ``creds_store`` is the ``credsStore`` value as written, validated when a lookup reaches it
    (:meth:`store_helper`). ``ignored`` lists the keys that name no registry.
    """

    path: str
    auths: tuple[AuthEntry, ...] = ()
    cred_helpers: tuple[HelperEntry, ...] = ()
    creds_store: object = None
    http_headers: Mapping[str, str] = field(default_factory=dict, compare=False)
    ignored: tuple[IgnoredKey, ...] = ()

    def store_helper(self) -> str | None:
        """The ``credsStore`` helper (``None`` when unset or empty), or :class:`ConfigError`."""
        if self.creds_store is None or self.creds_store == "":
            return None
        return helper_name(self.creds_store, f"{self.path}: credsStore")

    def __repr__(self) -> str:
        parts = [repr(self.path)]
        if self.auths:
            parts.append(f"auths=[{', '.join(key_text(e.key) for e in self.auths)}]")
        if self.cred_helpers:
            helpers = ", ".join(
                f"{key_text(e.key)}: {_shown_helper(e.helper)}" for e in self.cred_helpers
            )
            parts.append(f"credHelpers={{{helpers}}}")
        if self.creds_store:
            parts.append(f"credsStore={_shown_helper(self.creds_store)}")
        if self.http_headers:
            parts.append(f"HttpHeaders=[{', '.join(map(repr, self.http_headers))}]")
        if self.ignored:
            parts.append(f"ignored=[{', '.join(i.describe() for i in self.ignored)}]")
        return f"DockerConfig({', '.join(parts)})"


def _shown_helper(value: object) -> str:
    return repr(value) if isinstance(value, str) and valid_helper_name(value) else "<invalid>"


def helper_name(value: object, where: str) -> str:
    """``value`` as a helper name, or a :class:`ConfigError` naming ``where``."""
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, not {json_kind(value)}")
    if not valid_helper_name(value):
        raise ConfigError(
            f"{where}: {redact(value, limit=60)!r} is not a credential helper name "
            "(the part after 'docker-credential-', without '/')"
        )
    return value


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
    if "@" in key:
        # Checked first, and the key is not quoted: what precedes the @ is a password.
        raise ConfigError(f"{where}: a registry key must not carry a user name or password")
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


def _entries(
    document: Mapping[str, object], where: str
) -> tuple[tuple[AuthEntry, ...], tuple[HelperEntry, ...], tuple[IgnoredKey, ...]]:
    """The ``auths`` and ``credHelpers`` entries, and the keys of both that name no registry."""
    auths: list[AuthEntry] = []
    helpers: list[HelperEntry] = []
    ignored: list[IgnoredKey] = []
    sections: tuple[Literal["auths", "credHelpers"], ...] = ("auths", "credHelpers")
    for section in sections:
        for index, (key, value) in enumerate(_object(document, section, where).items()):
            entry_where = f"{where}: {section}[{key_text(key)}]"
            try:
                pattern = key_pattern(key, entry_where)
            except ConfigError as exc:
                reason = str(exc).removeprefix(f"{entry_where}: ")
                ignored.append(IgnoredKey(section, key, clip(reason, 200)))
                continue
            if section == "auths":
                auths.append(AuthEntry(key, pattern, value, entry_where, index))
            elif value is not None and value != "":  # docker: an empty helper is no helper
                helpers.append(HelperEntry(key, pattern, value, entry_where, index))
    return tuple(auths), tuple(helpers), tuple(ignored)


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

    The file is shared with docker, podman and crane, so only what every lookup depends on is
    checked here, as a :class:`ConfigError` naming ``path``: UTF-8, JSON, a top-level object,
    ``auths``/``credHelpers``/``HttpHeaders`` being objects, and the headers (sent with every
    request). An entry is checked when a lookup chooses it (:mod:`.lookup`); a key that names no
    registry is listed in ``ignored`` and matches nothing. An empty file is an empty config
    (docker agrees). Unknown fields are ignored.
    """
    where = os.fspath(path)
    document = _document(data, where)
    if document is None:
        return DockerConfig(where)
    auths, helpers, ignored = _entries(document, where)
    credential_store = _field(document, "credsStore")
    return DockerConfig(
        where, auths, helpers, credential_store, _http_headers(document, where), ignored
    )


def parse_auth_config_variable(text: str, *, name: str = "DOCKER_AUTH_CONFIG") -> DockerConfig:
    """Parse ``DOCKER_AUTH_CONFIG`` (docker/cli 28.3+): a whole config with ``auths`` only.

    docker/cli refuses any other field there (``credHelpers``, ``credsStore``...) and ignores the
    whole variable when it does; so do we, loudly: a :class:`ConfigError` naming the variable.
    """
    where = f"${name}"
    document = _document(text, where)
    if document is None:
        return DockerConfig(where)
    others = sorted(key for key in document if key.lower() != "auths")
    if others:
        shown = ", ".join(key_text(key) for key in others[:3])
        raise ConfigError(f'{where}: only "auths" may be set here (docker/cli), not {shown}')
    return parse_config(text, path=where)
