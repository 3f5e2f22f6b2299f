"""The Docker config source of the chain: the file, ``DOCKER_AUTH_CONFIG`` and the helpers."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping
from pathlib import Path

from ..._chain import Bounded, Explaining, HeaderSource, Hinting
from ..._credentials import Credential
from ..._errors import ConfigError, ResolverError
from ..._resource import Resource
from .configfile import DockerConfig, parse_auth_config_variable
from .discovery import Candidate, config_candidates
from .helperclient import DEFAULT_HELPER_CACHE_TTL, HelperClient, HelperNotInstalledError
from .helperprotocol import server_url_for
from .loader import DEFAULT_CHECK_INTERVAL, DEFAULT_CONFIG_READ_TIMEOUT, ConfigLoader
from .lookup import Lookup, lookup
from .process import DEFAULT_HELPER_TIMEOUT

log = logging.getLogger("asyncauth.dockerconfig")

AUTH_CONFIG_VARIABLE = "DOCKER_AUTH_CONFIG"
"""docker/cli 28.3+: a whole config (``auths`` only) in one variable, for CI systems."""
_SHOWN_IGNORED = 3


def _home(environ: Mapping[str, str] | None) -> str | None:
    """``$HOME``; for the process's own environment also the password database's answer."""
    env = os.environ if environ is None else environ
    home = env.get("HOME") or None
    if home is None and environ is None:
        home = os.path.expanduser("~")
        home = None if home == "~" else home
    return home


def _ignored_note(config: DockerConfig) -> str:
    """``; ignored 2 keys that name no registry: auths["x"] (why), …`` or nothing."""
    if not config.ignored:
        return ""
    count = len(config.ignored)
    shown = ", ".join(i.describe() for i in config.ignored[:_SHOWN_IGNORED])
    more = ", …" if count > _SHOWN_IGNORED else ""
    keys = "key that names" if count == 1 else "keys that name"
    return f"; ignored {count} {keys} no registry: {shown}{more}"


class DockerConfigResolver(Bounded, Explaining, Hinting, HeaderSource):
    """The Docker config file and its credential helpers (imgpkg's "Via Docker config").

    **When the file is read.** Not when the resolver is built: lazily, on the first lookup, and
    then again whenever it changed — the file's identity, size and mtime are checked at most once
    every ``check_interval`` seconds — so a long-running process sees ``docker login`` and
    ``docker logout`` without a restart, and building a chain does no I/O. Finding and reading
    the file may take ``config_read_timeout`` seconds.

    **What is an error.** The file is shared with docker, podman and crane, so an entry is
    checked when a lookup chooses it: a key that names no registry (``my_registry:5000``) never
    matches and is reported at DEBUG (logger ``asyncauth.dockerconfig``) and in :meth:`explain`.
    A file that is not a JSON object, a broken entry that *is* chosen, and a credential helper
    that is not installed raise :class:`~asyncauth.ConfigError` (naming the file and the key)
    from every lookup that reaches this source; a chain whose earlier sources answer never
    reads it. ``DOCKER_AUTH_CONFIG`` (docker/cli 28.3+), when set, is asked before the file, as
    docker asks it.

    ``config_path`` names the file and wins over discovery (a missing file is then a
    ``ConfigError``). ``environ`` replaces ``os.environ`` for ``DOCKER_CONFIG``,
    ``DOCKER_AUTH_CONFIG``, ``HOME``, ``REGISTRY_AUTH_FILE`` and ``XDG_*``, and is also the whole
    environment helpers run with (including the ``PATH`` they are found on); the variables are
    read when the resolver is built.

    Helpers run with ``helper_timeout`` seconds each; their answers are cached per (helper,
    server URL) for ``helper_cache_ttl`` seconds, or until the file changes, and concurrent
    lookups share one run. A helper that fails (crashing, bad output, too slow) is a
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
        config_read_timeout: float = DEFAULT_CONFIG_READ_TIMEOUT,
    ) -> None:
        env = os.environ if environ is None else environ
        explicit = None if config_path is None else Path(config_path)
        self.exclude_helpers = frozenset(exclude_helpers)
        self.helpers = HelperClient(
            timeout=helper_timeout, cache_ttl=helper_cache_ttl, environ=environ
        )
        candidates = config_candidates(env, home=_home(environ))
        self._loader = ConfigLoader(explicit, candidates, check_interval, config_read_timeout)
        # The chain's limit for this resolver: the read's and the helper's own bounds must fire
        # first, so the trace shows which one hung rather than a bare "timed out".
        self.timeout = config_read_timeout + helper_timeout + 5.0
        self._variable_text = env.get(AUTH_CONFIG_VARIABLE) or None
        self._variable: DockerConfig | None = None
        self._last_config: DockerConfig | None = None

    def __repr__(self) -> str:
        variable = f"${AUTH_CONFIG_VARIABLE} + " if self._variable_text else ""
        excluded = f", exclude_helpers={sorted(self.exclude_helpers)!r}"
        return (
            f"DockerConfigResolver({variable}{self._loader.describe()}"
            f"{excluded if self.exclude_helpers else ''})"
        )

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """The files looked for, in order, each with its rule (empty with ``config_path``)."""
        return () if self._loader.explicit is not None else self._loader.candidates

    async def load(self) -> DockerConfig | None:
        """The file's config as of now (``None`` when no file exists); raises ``ConfigError``."""
        return await self._loader.load()

    async def http_headers(self) -> dict[str, str]:
        """The file's ``HttpHeaders``, for the registry handshake to send like docker does."""
        config = await self._loader.load()
        return {} if config is None else dict(config.http_headers)

    def _auth_variable(self) -> DockerConfig | None:
        """``DOCKER_AUTH_CONFIG`` parsed (once: the variable was read at build time)."""
        if self._variable_text is None:
            return None
        if self._variable is None:
            self._variable = parse_auth_config_variable(self._variable_text)
            for ignored in self._variable.ignored:
                log.debug("$%s: ignored %s", AUTH_CONFIG_VARIABLE, ignored.describe())
        return self._variable

    async def resolve(self, resource: Resource) -> Credential | None:
        """The entry docker itself would use (``DOCKER_AUTH_CONFIG`` first, then the config
        file, re-read when it changes), asking its credential helper where it names one."""
        variable = self._auth_variable()
        found = None if variable is None else lookup(variable, resource)
        if found is not None:
            return found.credential
        config = await self._loader.load()
        if config is not self._last_config:
            # The file changed (``docker login`` rewrites it): helper answers may be stale too.
            if self._last_config is not None:
                self.helpers.clear()
            self._last_config = config
        if config is None:
            return None
        found = lookup(config, resource, exclude_helpers=self.exclude_helpers)
        if found is None or found.helper is None:
            return None if found is None else found.credential
        return await self._ask_helper(config, found, resource)

    async def _ask_helper(
        self, config: DockerConfig, found: Lookup, resource: Resource
    ) -> Credential | None:
        assert found.helper is not None
        try:
            return await self.helpers.get(found.helper, server_url_for(resource))
        except HelperNotInstalledError as exc:
            raise ConfigError(f"{config.path}: {found.entry()}: {exc}") from None
        except ResolverError as exc:
            raise ResolverError(f"{found.describe(config.path)}: {exc}") from None

    def explain(self, resource: Resource) -> str | None:
        """Which variable or file and key answered (no secrets), from what was read last,
        with the keys that were ignored because they name no registry."""
        try:
            variable = self._auth_variable()
            found = None if variable is None else lookup(variable, resource)
            if variable is not None and found is not None:
                return found.describe(variable.path) + _ignored_note(variable)
            config = self._loader.current
            if config is None:
                return None
            found = lookup(config, resource, exclude_helpers=self.exclude_helpers)
        except ConfigError:
            return None  # the lookup itself raised it, with the details
        note = _ignored_note(config)
        if found is not None:
            return found.describe(config.path) + note
        return f"no key for {resource.registry} in {config.path}{note}" if note else None
