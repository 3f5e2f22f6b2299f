"""Running one credential helper: nothing it starts outlives the call.

The helper runs in its own process group (session), so that on a timeout, or when the caller is
cancelled, the helper *and everything it started* (``pass`` runs ``gpg``, scripts run ``sleep``)
are killed with one signal and the helper is reaped before the call returns, under asyncio and
trio alike. Its output is read concurrently with writing its input, and capped, so a helper can
never block on us nor we on it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream, Process

from ..._errors import ResolverError
from .helperprotocol import HelperOutput

DEFAULT_HELPER_TIMEOUT = 10.0
"""Seconds a helper may take. Real ones call clouds (ecr-login) or start gpg-agent (pass)."""
MAX_OUTPUT = 1 << 20
"""Bytes of stdout (and of stderr) kept from a helper; more is a failure."""


async def _drain(stream: ByteReceiveStream, into: bytearray, overflow: list[bool]) -> None:
    """Read to EOF, keeping at most ``MAX_OUTPUT`` bytes (a helper must never block on us)."""
    try:
        async for chunk in stream:
            if len(into) + len(chunk) > MAX_OUTPUT:
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


async def _start(program: str, action: str, env: Mapping[str, str] | None) -> Process:
    try:
        return await anyio.open_process(
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
    process = await _start(program, action, env)
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
        raise ResolverError(f"{program} printed more than {MAX_OUTPUT} bytes")
    return HelperOutput(returncode, bytes(stdout), bytes(stderr))
