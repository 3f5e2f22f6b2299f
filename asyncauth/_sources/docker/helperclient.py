"""Asking credential helpers once for many askers.

A copy of 1,000 images from one registry asks for the same credential 1,000 times at once.
:class:`HelperClient` keeps answers per (helper, server URL) for a bounded time and shares one
in-flight run between concurrent lookups, so that copy starts one helper process, not 1,000.
Failures are kept briefly too, so a broken helper is not restarted for every image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..._credentials import Credential
from ..._errors import ConfigError, ResolverError
from ..._singleflight import SingleFlightCache
from .helperprotocol import helper_program, interpret_get
from .process import DEFAULT_HELPER_TIMEOUT, find_program, run_helper

DEFAULT_HELPER_CACHE_TTL = 60.0
"""Seconds a helper's answer (a credential or "not found") is reused for the same server."""
DEFAULT_HELPER_FAILURE_TTL = 5.0
"""Seconds a helper's failure is reused before the helper is run again."""


class HelperNotInstalledError(ConfigError):
    """The helper a config names is not on ``PATH``: a user mistake, as docker reports it."""


@dataclass(frozen=True, slots=True)
class _Answer:
    credential: Credential | None = None
    error: str | None = None
    missing: bool = False


class HelperClient:
    """Asks credential helpers, at most one run per (helper, server URL) at a time.

    Answers (a credential, or "not found") are reused for ``cache_ttl`` seconds and failures for
    ``failure_ttl`` seconds; at most ``maxsize`` of them are kept. ``environ``, when given, is
    the helpers' whole environment (and their ``PATH``); otherwise they inherit the process's.
    ``runs`` counts the helper processes started, for tests and diagnostics.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_HELPER_TIMEOUT,
        cache_ttl: float = DEFAULT_HELPER_CACHE_TTL,
        failure_ttl: float = DEFAULT_HELPER_FAILURE_TTL,
        maxsize: int = 256,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("helper timeout must be positive")
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.failure_ttl = failure_ttl
        self.environ = None if environ is None else dict(environ)
        self.runs = 0
        self._cache = SingleFlightCache[_Answer](maxsize=maxsize)

    def __repr__(self) -> str:
        return f"HelperClient(timeout={self.timeout!r}, cache_ttl={self.cache_ttl!r})"

    def clear(self) -> None:
        """Forget every cached answer (e.g. after ``docker login``)."""
        self._cache.clear()

    async def get(self, helper: str, server_url: str) -> Credential | None:
        """The credential ``docker-credential-<helper>`` holds for ``server_url``, or ``None``.

        Raises :class:`HelperNotInstalledError` (a :class:`ConfigError`) when no such program
        is on ``PATH``, and :class:`ResolverError` when the helper fails (crashing, bad output,
        timeout); the message names the program and never carries a secret.
        """
        program = helper_program(helper)
        answer = await self._cache.get(
            (program, server_url), lambda: self._ask(program, server_url), self._ttl_of
        )
        if answer.missing:
            raise HelperNotInstalledError(answer.error)
        if answer.error is not None:
            raise ResolverError(answer.error)  # a fresh exception per asker, same message
        return answer.credential

    def _ttl_of(self, answer: _Answer) -> float:
        return self.failure_ttl if answer.error is not None else self.cache_ttl

    async def _ask(self, program: str, server_url: str) -> _Answer:
        executable = find_program(program, self.environ)
        if executable is None:
            return _Answer(
                error=f"{program} is not installed (no executable of that name on PATH)",
                missing=True,
            )
        self.runs += 1
        try:
            output = await run_helper(
                executable, "get", server_url.encode(), timeout=self.timeout, env=self.environ
            )
            return _Answer(credential=interpret_get(output, program=program))
        except ResolverError as exc:
            return _Answer(error=str(exc))
