"""The Docker config source of the chain: the file and its credential helpers, put together."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path

from ..._chain import Bounded, Explaining, HeaderSource, Hinting
from ..._credentials import Credential
from ..._errors import ResolverError
from ..._resource import Resource
from .configfile import DockerConfig
from .discovery import config_candidates
from .helperclient import DEFAULT_HELPER_CACHE_TTL, HelperClient
from .helperprotocol import server_url_for
from .loader import DEFAULT_CHECK_INTERVAL, ConfigLoader
from .lookup import lookup
from .process import DEFAULT_HELPER_TIMEOUT


def _home(environ: Mapping[str, str] | None) -> str | None:
    """``$HOME``; for the process's own environment also the password database's answer."""
    env = os.environ if environ is None else environ
    home = env.get("HOME") or None
    if home is None and environ is None:
        home = os.path.expanduser("~")
        home = None if home == "~" else home
    return home


class DockerConfigResolver(Bounded, Explaining, Hinting, HeaderSource):
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
        explicit = None if config_path is None else Path(config_path)
        self.exclude_helpers = frozenset(exclude_helpers)
        # The chain's limit for this resolver: a helper's own timeout must fire first, so the
        # trace shows which helper hung rather than a bare "timed out".
        self.timeout = helper_timeout + 5.0
        self.helpers = HelperClient(
            timeout=helper_timeout, cache_ttl=helper_cache_ttl, environ=environ
        )
        candidates = config_candidates(env, home=_home(environ))
        self._loader = ConfigLoader(explicit, candidates, check_interval)
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
