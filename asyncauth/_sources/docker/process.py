"""Running one credential helper: the program meant, and nothing it starts outlives the call.

* **The program meant.** :func:`find_program` looks the helper up on ``PATH`` itself, in absolute
  directories only, and the helper is started by that absolute path. ``execvp`` reads an empty
  ``PATH`` entry (``PATH=":/usr/bin"``) or a relative one as the current directory, where anybody
  who can write a file could plant ``docker-credential-pass``.
* **Nothing outlives the call.** The helper runs in its own process group (session), so that on a
  timeout, or when the caller is cancelled (Ctrl-C), the helper *and everything it started*
  (``pass`` runs ``gpg``, scripts run ``sleep``) are killed with one signal and the helper is
  reaped before the call returns, under asyncio and trio alike — also when the cancellation
  comes while the helper is being started, and when the helper itself has exited and only a
  process it started still holds its output open. Output is read concurrently with writing the
  input, and capped, so a helper can never block on us nor we on it.
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
from ..._groups import TaskGroup
from .helperprotocol import HelperOutput

DEFAULT_HELPER_TIMEOUT = 10.0
"""Seconds a helper may take. Real ones call clouds (ecr-login) or start gpg-agent (pass)."""
HELPER_REAP_TIMEOUT = 5.0
"""Seconds to wait for a killed helper to be reaped. SIGKILL ends it at once unless it is stuck
in the kernel (a dead network file system); then it is left to the event loop's child watcher
rather than hang the lookup."""
HELPER_OUTPUT_END_TIMEOUT = 0.5
"""Seconds to wait, once the helper's group is dead, for the end of its output (it comes at once
unless a process that left the group holds the pipes open)."""
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


def find_program(program: str, env: Mapping[str, str] | None) -> str | None:
    """The absolute path of the executable ``program`` on ``env``'s ``PATH``, or ``None``.

    ``PATH`` is read as ``execvp`` reads it (``os.defpath`` when unset), except that empty and
    relative entries are skipped: they mean the current directory. Blocking, but only a ``stat``
    per directory.
    """
    for directory in os.get_exec_path(None if env is None else dict(env)):
        if not directory or not os.path.isabs(directory):
            continue
        candidate = os.path.join(directory, program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _kill_group(process: Process) -> None:
    """SIGKILL the helper's whole process group (it leads its own session).

    The group id is the helper's pid. Linux does not hand a pid out again while it is still the
    id of a group with members, so this reaches only what the helper started, even after the
    helper itself was reaped (the case of a grandchild holding its output open); once the group
    is empty the call fails with ``ESRCH``, which is ignored. A session leader cannot leave its
    group (``setpgid`` refuses), so the signal reaches the helper too; the helper alone is
    killed only where the group could not be. Not both: ``process.kill()`` first polls, which
    reaps a helper the group signal has just ended, under the nose of asyncio's child watcher
    ("Unknown child process pid ..., will report returncode 255").
    """
    killpg = getattr(os, "killpg", None)
    if killpg is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            killpg(process.pid, signal.SIGKILL)
            return
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


async def _reap(process: Process) -> None:
    """Wait, bounded, for the helper's exit status and the end of its output; close our ends.

    Not ``process.aclose()``: that waits without a bound once the wait is cancelled. The output
    is read to its end (and dropped) because under asyncio a process's transport closes itself
    only once its pipes have; left open when the event loop ends, as it does right after a
    Ctrl-C, it complains when collected ("Exception ignored ... Event loop is closed").
    """
    with anyio.CancelScope(shield=True):
        if process.stdin is not None:
            with contextlib.suppress(OSError, anyio.BrokenResourceError):
                await process.stdin.aclose()
        with anyio.move_on_after(HELPER_REAP_TIMEOUT):
            await process.wait()
        outputs = [stream for stream in (process.stdout, process.stderr) if stream is not None]
        with anyio.move_on_after(HELPER_OUTPUT_END_TIMEOUT):
            for stream in outputs:
                await _drain(stream, bytearray(), [False])
        for stream in outputs:
            with contextlib.suppress(OSError, anyio.BrokenResourceError):
                await stream.aclose()


async def _start(executable: str, action: str, env: Mapping[str, str] | None) -> Process:
    """Start the helper; a cancellation waits until it has started (or failed to).

    Under asyncio the helper runs before starting it returns (its pipes are still being
    connected); a cancellation there (Ctrl-C lands in it) leaves asyncio to kill the helper
    alone, and what it started (``sleep``, ``gpg``) outlives the lookup. Shielded, the caller
    always gets the process, and :func:`run_helper` kills its whole group. Spawning is bounded
    by the kernel (fork and exec), not by the helper.

    What no shield covers: trio raises Ctrl-C in whatever Python code runs at that instant, and
    in the instant between the helper's start and the caller holding the process, the process
    is lost with the ``KeyboardInterrupt`` and the helper is left to end on its own (anyio has
    no way to protect a section from it). Anywhere else in the run it is killed.
    """
    program = os.path.basename(executable)
    try:
        with anyio.CancelScope(shield=True):
            process = await anyio.open_process(
                [executable, action],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=None if env is None else dict(env),
                start_new_session=True,
            )
    except FileNotFoundError:
        raise ResolverError(f"{program} disappeared before it could be started") from None
    except PermissionError:
        raise ResolverError(f"{program} is not executable") from None
    except OSError as exc:
        raise ResolverError(f"{program} could not be started: {exc.strerror or exc}") from None
    return process


async def run_helper(
    executable: str,
    action: str,
    payload: bytes,
    *,
    # Not left to the caller's cancel scope: a timeout here is reported (which helper hung),
    # whereas a caller's cancellation is only propagated; both kill and reap the helper.
    timeout: float = DEFAULT_HELPER_TIMEOUT,  # noqa: ASYNC109
    env: Mapping[str, str] | None = None,
) -> HelperOutput:
    """Run ``executable action`` with ``payload`` on stdin and collect its output.

    ``executable`` is a path (see :func:`find_program`); ``env`` replaces the environment. The
    helper is started in a new session; if its output is not complete within ``timeout``
    seconds, or the caller is cancelled, its whole process group is killed and the helper
    reaped before this returns (or re-raises the cancellation). Raises :class:`ResolverError`
    when the program cannot be started, times out, or prints more than a mebibyte.
    """
    program = os.path.basename(executable)
    process = await _start(executable, action, env)
    stdout, stderr = bytearray(), bytearray()
    overflow = [False]
    finished = exited_in_time = False
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        with anyio.move_on_after(timeout) as scope:
            async with TaskGroup() as tg:
                tg.start_soon(_drain, process.stdout, stdout, overflow)
                tg.start_soon(_drain, process.stderr, stderr, overflow)
                await _feed(process.stdin, payload)
            returncode = await process.wait()
            finished = True
    finally:
        if not finished:
            exited_in_time = process.returncode is not None
            _kill_group(process)
        await _reap(process)
    if scope.cancelled_caught:
        raise ResolverError(_timeout_message(program, timeout, exited_in_time))
    if overflow[0]:
        raise ResolverError(f"{program} printed more than {MAX_OUTPUT} bytes")
    return HelperOutput(returncode, bytes(stdout), bytes(stderr))


def _timeout_message(program: str, timeout: float, exited: bool) -> str:
    if exited:
        return (
            f"{program} exited, but a process it started kept its output open for "
            f"{timeout:g} s; that process group was killed"
        )
    return f"{program} did not answer within {timeout:g} s and was killed"
