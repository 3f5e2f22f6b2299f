"""The client side of the docker-credential-helpers protocol.

A credential helper is a program named ``docker-credential-<name>`` on ``PATH``. Asked
``docker-credential-<name> get`` with a server URL on stdin, it prints
``{"ServerURL": …, "Username": …, "Secret": …}`` on stdout and exits 0; it reports an error by
printing the message on **stdout** and exiting 1. Two answers mean "I have nothing for this
server", and neither is a failure: the message ``credentials not found in native keychain`` (with
any exit code: helpers disagree on it) and an answer whose Username and Secret are both empty.
A Username of ``<token>`` means the Secret is an identity token (an OAuth2 refresh token), not a
password.

What this module adds to a plain subprocess call, and why:

* **Nothing outlives a lookup.** The helper runs in its own process group (session), so that on a
  timeout, or when the caller is cancelled, the helper *and everything it started* (``pass`` runs
  ``gpg``, scripts run ``sleep``) are killed with one signal and the helper is reaped before the
  call returns, under asyncio and trio alike.
* **One run for many askers.** :class:`HelperClient` caches answers per (helper, server URL) for a
  bounded time and shares one in-flight run between concurrent lookups, so a copy of 1,000 images
  from one registry starts one helper process, not 1,000. Failures are kept briefly too, so a
  broken helper is not restarted for every image.
* **No secret in a message.** A helper's output on failure is an error message, but helpers are
  third-party programs: what they print is passed through :func:`redact` (and a stdout that looks
  like the JSON answer is never shown at all) before it reaches an exception or the trace.

Parsing the output is pure (:func:`interpret_get`), so every rule above is tested without a
process; :func:`run_helper` is the only I/O.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream, Process

from .._credentials import Credential
from .._errors import ResolverError
from .._redact import redact
from .._resource import DOCKER_HUB, Resource
from .._singleflight import SingleFlightCache

__all__ = [
    "DEFAULT_HELPER_CACHE_TTL",
    "DEFAULT_HELPER_FAILURE_TTL",
    "DEFAULT_HELPER_TIMEOUT",
    "DOCKER_HUB_SERVER_URL",
    "HELPER_PREFIX",
    "NOT_FOUND_MESSAGE",
    "TOKEN_USERNAME",
    "HelperClient",
    "HelperOutput",
    "helper_program",
    "interpret_get",
    "run_helper",
    "server_url_for",
    "valid_helper_name",
]

HELPER_PREFIX = "docker-credential-"
NOT_FOUND_MESSAGE = "credentials not found in native keychain"
"""The protocol's "no credential for this server" message (docker-credential-helpers)."""
TOKEN_USERNAME = "<token>"  # noqa: S105 - the protocol's marker, not a password
"""A helper answering this Username means its Secret is an identity (refresh) token."""
DOCKER_HUB_SERVER_URL = "https://index.docker.io/v1/"
"""The server URL docker/cli uses for Docker Hub, so what ``docker login`` stored is found."""

DEFAULT_HELPER_TIMEOUT = 10.0
"""Seconds a helper may take. Real ones call clouds (ecr-login) or start gpg-agent (pass)."""
DEFAULT_HELPER_CACHE_TTL = 60.0
"""Seconds a helper's answer (a credential or "not found") is reused for the same server."""
DEFAULT_HELPER_FAILURE_TTL = 5.0
"""Seconds a helper's failure is reused before the helper is run again."""

_MAX_OUTPUT = 1 << 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def valid_helper_name(name: str) -> bool:
    """Whether ``name`` may follow ``docker-credential-``.

    The name comes from a config file and becomes a program name: a path separator would let
    a config run any file on the machine (``../../tmp/x``), so only plain names are accepted.
    """
    return len(name) <= 200 and _NAME.fullmatch(name) is not None


def helper_program(name: str) -> str:
    """``docker-credential-<name>``; raises :class:`ValueError` for a name that is not plain."""
    if not valid_helper_name(name):
        raise ValueError(f"{name!r} is not a credential helper name")
    return HELPER_PREFIX + name


def server_url_for(resource: Resource) -> str:
    """The server URL to hand a helper for ``resource``, spelt as docker/cli spells it.

    Helpers store secrets under the exact string ``docker login`` gave them: for Docker Hub
    ``https://index.docker.io/v1/``, for every other registry the bare ``host[:port]``.
    """
    return DOCKER_HUB_SERVER_URL if resource.registry == DOCKER_HUB else resource.registry


def _output_shown(output: bytes) -> str:
    text = output.decode("utf-8", "replace").strip()
    if not text:
        return ""
    if '"secret"' in text.lower() or text.startswith("{"):
        return f"<{len(output)} bytes that look like a credential answer, withheld>"
    return redact(text)


# --- the answer ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HelperOutput:
    """What one helper run left behind. Its ``repr`` shows sizes, never the output."""

    returncode: int
    stdout: bytes
    stderr: bytes

    def __repr__(self) -> str:
        return (
            f"HelperOutput(returncode={self.returncode}, stdout=<{len(self.stdout)} bytes>, "
            f"stderr=<{len(self.stderr)} bytes>)"
        )


def _not_found(output: HelperOutput) -> bool:
    for stream in (output.stdout, output.stderr):
        if NOT_FOUND_MESSAGE in stream.decode("utf-8", "replace").lower():
            return True
    return False


def _parse_answer(stdout: bytes, program: str) -> Credential | None:
    try:
        answer = json.loads(stdout.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ResolverError(
            f"{program} printed {len(stdout)} bytes that are not the JSON answer the "
            "credential-helper protocol expects (output withheld)"
        ) from None
    if not isinstance(answer, dict):
        raise ResolverError(
            f"{program} printed JSON that is not an object (a {type(answer).__name__})"
        )
    username = answer.get("Username")
    secret = answer.get("Secret")
    for field, value in (("Username", username), ("Secret", secret)):
        if value is not None and not isinstance(value, str):
            raise ResolverError(f"{program} answered a {field} that is not a string")
    username = username or ""
    secret = secret or ""
    if username == TOKEN_USERNAME:
        return Credential(identity_token=secret) if secret else None
    if not username and not secret:
        return None
    return Credential(username=username, password=secret)


def interpret_get(output: HelperOutput, *, program: str) -> Credential | None:
    """The credential a ``get`` run answered, ``None`` for "not found", or :class:`ResolverError`.

    Pure: decides from the exit status and the bytes alone. Error messages carry the helper's
    own message (stdout, where the protocol puts it, then stderr) through :func:`redact`.
    """
    if output.returncode == 0:
        try:
            return _parse_answer(output.stdout, program)
        except ResolverError:
            if _not_found(output):
                return None
            raise
    if _not_found(output):
        return None
    if output.returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-output.returncode).name}"
        except ValueError:
            how = f"was killed by signal {-output.returncode}"
    else:
        how = f"exited with status {output.returncode}"
    said = "; ".join(
        f"{name}: {text}"
        for name, text in (
            ("output", _output_shown(output.stdout)),
            ("stderr", _output_shown(output.stderr)),
        )
        if text
    )
    raise ResolverError(f"{program} {how}" + (f" ({said})" if said else " without a message"))


# --- running one helper -------------------------------------------------------------------------


async def _drain(stream: ByteReceiveStream, into: bytearray, overflow: list[bool]) -> None:
    """Read to EOF, keeping at most ``_MAX_OUTPUT`` bytes (a helper must never block on us)."""
    try:
        async for chunk in stream:
            if len(into) + len(chunk) > _MAX_OUTPUT:
                overflow[0] = True
            else:
                into.extend(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass


async def _feed(stream: ByteSendStream, payload: bytes) -> None:
    """Write the request and close stdin; a helper that exits without reading it is fine."""
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await stream.send(payload)
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await stream.aclose()


def _kill_group(process: Process) -> None:
    """SIGKILL the helper's whole process group (it leads its own session), then the helper.

    Called only while the helper has not been reaped, so its pid (= the group id) cannot have
    been reused by an unrelated process.
    """
    if process.returncode is not None:
        return
    killpg = getattr(os, "killpg", None)
    if killpg is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()


async def run_helper(
    program: str,
    action: str,
    payload: bytes,
    *,
    # Not left to the caller's cancel scope: a timeout here is reported (which helper hung),
    # whereas a caller's cancellation is only propagated; both kill and reap the helper.
    timeout: float = DEFAULT_HELPER_TIMEOUT,  # noqa: ASYNC109
    env: Mapping[str, str] | None = None,
) -> HelperOutput:
    """Run ``program action`` with ``payload`` on stdin and collect its output.

    The helper is started in a new session; if it runs past ``timeout`` seconds, or the caller
    is cancelled, its whole process group is killed and the helper reaped before this returns
    (or re-raises the cancellation). ``env`` replaces the environment (and the ``PATH`` the
    program is looked up on). Raises :class:`ResolverError` when the program cannot be started,
    times out, or prints more than a mebibyte.
    """
    try:
        process = await anyio.open_process(
            [program, action],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=None if env is None else dict(env),
            start_new_session=True,
        )
    except FileNotFoundError:
        raise ResolverError(f"{program} was not found on PATH") from None
    except PermissionError:
        raise ResolverError(f"{program} is not executable") from None
    except OSError as exc:
        raise ResolverError(f"{program} could not be started: {exc.strerror or exc}") from None

    stdout, stderr = bytearray(), bytearray()
    overflow = [False]
    reaped = False
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        with anyio.move_on_after(timeout) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_drain, process.stdout, stdout, overflow)
                tg.start_soon(_drain, process.stderr, stderr, overflow)
                await _feed(process.stdin, payload)
            returncode = await process.wait()
            reaped = True
    finally:
        if not reaped:
            _kill_group(process)
        with anyio.CancelScope(shield=True):
            await process.wait()
            await process.aclose()
    if scope.cancelled_caught:
        raise ResolverError(f"{program} did not answer within {timeout:g} s and was killed")
    if overflow[0]:
        raise ResolverError(f"{program} printed more than {_MAX_OUTPUT} bytes")
    return HelperOutput(returncode, bytes(stdout), bytes(stderr))


# --- cached, single-flight client -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Answer:
    credential: Credential | None = None
    error: str | None = None


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

        Raises :class:`ResolverError` when the helper fails (missing, crashing, bad output,
        timeout); the message names the program and never carries a secret.
        """
        program = helper_program(helper)
        answer = await self._cache.get(
            (program, server_url), lambda: self._ask(program, server_url), self._ttl_of
        )
        if answer.error is not None:
            raise ResolverError(answer.error)  # a fresh exception per asker, same message
        return answer.credential

    def _ttl_of(self, answer: _Answer) -> float:
        return self.failure_ttl if answer.error is not None else self.cache_ttl

    async def _ask(self, program: str, server_url: str) -> _Answer:
        self.runs += 1
        try:
            output = await run_helper(
                program, "get", server_url.encode(), timeout=self.timeout, env=self.environ
            )
            return _Answer(credential=interpret_get(output, program=program))
        except ResolverError as exc:
            return _Answer(error=str(exc))
