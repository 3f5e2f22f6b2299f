"""Ctrl-C during a lookup reaches the caller as ``KeyboardInterrupt`` (issue 16, item 10).

asyncauth runs its sources (and a credential helper's pipes) in task groups of its own; what
fails inside one leaves it as itself (:mod:`asyncauth._groups`), never as the
``BaseExceptionGroup`` trio and anyio wrap even a lone exception in, and an interrupt outranks
everything.

The tests that raise an interrupt in-process run the event loop themselves (``anyio.run`` in
pytest's main thread, once per backend) instead of being ``async`` tests: under asyncio a
``KeyboardInterrupt`` that a task lets escape leaves the event loop past every caller, and
would end the pytest session rather than fail the test. :func:`run_in_loop` turns that escape
into a failure. The real Ctrl-C tests send SIGINT to a child Python running a lookup whose
credential helper (a real program on ``PATH``) waits.
"""

from __future__ import annotations

import functools
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx
import pytest

import asyncauth
from asyncauth import Chain, ConfigError, Credential, Outcome, RegistryAuth, Resource
from asyncauth._groups import TaskGroup, escapee_of

from ._signals import default_sigint
from .peers import PushedImage, RegistryServer

BACKENDS = ("asyncio", "trio")
INTERRUPTS = (KeyboardInterrupt, SystemExit)


def run_in_loop(scenario: Callable[[], Awaitable[object]], backend: str) -> None:
    """Run ``scenario`` under ``backend`` here; an interrupt escaping the loop fails the test."""
    try:
        anyio.run(scenario, backend=backend)
    except INTERRUPTS as escaped:
        raise AssertionError(
            f"{type(escaped).__name__} escaped the event loop instead of reaching the caller"
        ) from escaped


class Interrupting:
    """A resolver interrupted mid-lookup (Ctrl-C under trio lands in whatever task runs)."""

    name = "interrupting"

    def __init__(self, interrupt: type[BaseException]) -> None:
        self.interrupt = interrupt

    async def resolve(self, resource: Resource) -> Credential | None:
        await anyio.lowlevel.checkpoint()
        raise self.interrupt


class Waiting:
    """A resolver that waits until cancelled, and records that it was."""

    name = "waiting"

    def __init__(self) -> None:
        self.cancelled = False

    async def resolve(self, resource: Resource) -> Credential | None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise
        raise AssertionError("unreachable")


class Failing:
    name = "failing"

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def resolve(self, resource: Resource) -> Credential | None:
        await anyio.lowlevel.checkpoint()
        raise self.error


async def fail_with(error: BaseException) -> None:
    await anyio.lowlevel.checkpoint()
    raise error


# --- in-process: an interrupt raised inside a resolver ------------------------------------------


@pytest.mark.parametrize("interrupt", INTERRUPTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_interrupt_in_a_resolver_reaches_the_chains_caller(
    backend: str, interrupt: type[BaseException]
) -> None:
    waiting = Waiting()
    chain = Chain([waiting, Interrupting(interrupt)])

    async def scenario() -> None:
        with pytest.raises(interrupt) as caught:
            await chain.resolve("ghcr.io/org/app")
        assert type(caught.value) is interrupt  # itself, not a group holding it
        # The traceback still reaches down to where it was raised.
        frames = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
        assert frames[0] == "scenario"
        assert frames[-1] == "resolve"
        assert "_run" in frames

    run_in_loop(scenario, backend)
    assert waiting.cancelled


@pytest.mark.parametrize("backend", BACKENDS)
def test_interrupt_in_a_resolver_reaches_an_httpx_client_through_registry_auth(
    backend: str, htpasswd_registry: RegistryServer, htpasswd_registry_image: PushedImage
) -> None:
    url = htpasswd_registry.url + htpasswd_registry_image.manifest_path
    statuses: list[int] = []

    async def record(response: httpx.Response) -> None:
        statuses.append(response.status_code)

    async def scenario() -> None:
        auth = RegistryAuth(Chain([Interrupting(KeyboardInterrupt)]))
        async with httpx.AsyncClient(auth=auth, event_hooks={"response": [record]}) as http:
            with pytest.raises(KeyboardInterrupt):
                await http.get(url)

    run_in_loop(scenario, backend)
    assert statuses == [401]  # the registry's challenge; then the lookup was interrupted


class InterruptingTransport(httpx.AsyncBaseTransport):
    """The cloud sources' transport, interrupted at its first request (nothing is sent)."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.host}")
        raise KeyboardInterrupt


@pytest.mark.parametrize("backend", BACKENDS)
def test_interrupt_in_a_source_reaches_the_caller_of_resolve(backend: str, tmp_path: Path) -> None:
    transport = InterruptingTransport()

    async def scenario() -> None:
        with pytest.raises(KeyboardInterrupt):
            # gcr.io: the Google source asks the metadata server first, on ``transport``.
            await asyncauth.resolve(
                "gcr.io/project/app",
                iaas=True,
                environ={"HOME": str(tmp_path)},
                transport=transport,
            )

    run_in_loop(scenario, backend)
    assert transport.requests == ["GET 169.254.169.254"]


async def body_fails_after(task: Callable[[], Awaitable[object]]) -> None:
    """A task group whose task ``task`` ends first, after which its body fails too."""
    async with TaskGroup() as tg:
        tg.start_soon(task)
        with anyio.CancelScope(shield=True):  # a failed task cancels the group
            await anyio.wait_all_tasks_blocked()
        raise TypeError("the body failed too")


@pytest.mark.parametrize("interrupt", INTERRUPTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_interrupt_in_a_task_outranks_a_failure_of_the_body(
    backend: str, interrupt: type[BaseException]
) -> None:
    async def scenario() -> None:
        with pytest.raises(interrupt):
            await body_fails_after(functools.partial(fail_with, interrupt()))

    run_in_loop(scenario, backend)


def test_asyncauth_opens_task_groups_only_through_its_own() -> None:
    """A task group opened any other way would wrap what fails in it again."""
    root = Path(asyncauth.__file__).parent
    opens = re.compile(r"\b(create_task_group|open_nursery|asyncio\.TaskGroup)\(")
    openers = {
        str(path.relative_to(root)) for path in root.rglob("*.py") if opens.search(path.read_text())
    }
    assert openers == {"_groups.py"}


# --- plain failures: as before ------------------------------------------------------------------


async def test_a_failing_resolver_is_still_an_error_in_the_trace() -> None:
    resolution = await Chain([Failing(ValueError("broken pipe dream"))]).resolve("ghcr.io/o/a")
    (entry,) = resolution.trace
    assert (entry.outcome, entry.detail) == (Outcome.ERROR, "ValueError: broken pipe dream")
    assert resolution.credential.is_anonymous


async def test_a_config_error_still_reaches_the_caller_as_itself() -> None:
    error = ConfigError("config.json: credsStore: not a string")
    with pytest.raises(ConfigError) as caught:
        await Chain([Failing(error), Waiting()]).resolve("ghcr.io/o/a")
    assert caught.value is error


# --- the rules of asyncauth._groups -------------------------------------------------------------


async def test_a_tasks_lone_failure_leaves_as_itself_with_its_traceback_and_context() -> None:
    async def fail_while_handling() -> None:
        await anyio.lowlevel.checkpoint()
        try:
            raise KeyError("first")
        except KeyError:
            raise ValueError("then this") from None

    async def run() -> None:
        async with TaskGroup() as tg:
            tg.start_soon(fail_while_handling)

    with pytest.raises(ValueError, match="then this") as caught:
        await run()
    frames = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert frames[-1] == "fail_while_handling"
    # Its own context (the KeyError it was raised during), not the group it was taken from.
    assert isinstance(caught.value.__context__, KeyError)
    assert caught.value.__suppress_context__


async def test_a_failing_body_leaves_as_itself() -> None:
    error = OSError("body")

    async def run() -> None:
        async with TaskGroup() as tg:
            tg.start_soon(anyio.sleep_forever)
            await anyio.wait_all_tasks_blocked()
            raise error

    with pytest.raises(OSError, match="body") as caught:
        await run()
    assert caught.value is error
    assert caught.value.__context__ is None


async def test_two_failures_at_once_stay_a_group() -> None:
    with pytest.raises(ExceptionGroup) as caught:
        await body_fails_after(functools.partial(fail_with, ValueError("task")))
    assert sorted(type(e).__name__ for e in caught.value.exceptions) == ["TypeError", "ValueError"]


async def test_a_failure_beside_a_cancellation_leaves_as_itself_and_the_scope_still_cancels() -> (
    None
):
    reached_after_failure = False
    with anyio.CancelScope() as outer:

        async def cancel_then_fail() -> None:
            outer.cancel()
            raise ValueError("meanwhile")

        async def run() -> None:
            async with TaskGroup() as tg:
                tg.start_soon(cancel_then_fail)
                await anyio.sleep_forever()

        with pytest.raises(ValueError, match="meanwhile"):
            await run()
        # The outer scope is still cancelled: the next wait in it ends at once.
        await anyio.sleep_forever()
        reached_after_failure = True
    assert outer.cancelled_caught
    assert not reached_after_failure


async def wait_in_a_task_group() -> None:
    async with TaskGroup() as tg:
        tg.start_soon(anyio.sleep_forever)
        await anyio.sleep_forever()


async def test_deadlines_around_a_task_group_and_a_lookup_still_work() -> None:
    with anyio.move_on_after(0.05) as scope:
        await wait_in_a_task_group()
    assert scope.cancelled_caught
    with pytest.raises(TimeoutError), anyio.fail_after(0.05):
        await wait_in_a_task_group()
    waiting = Waiting()
    with anyio.move_on_after(0.05) as scope:
        await Chain([waiting]).resolve("ghcr.io/o/a")
    assert scope.cancelled_caught
    assert waiting.cancelled


async def a_cancellation() -> BaseException:
    """A real cancellation exception of the running backend (trio's has no constructor)."""
    with anyio.CancelScope() as scope:
        scope.cancel()
        try:
            await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class() as exc:
            return exc
    raise AssertionError("not cancelled")


async def test_what_leaves_a_group() -> None:
    cancelled, other_cancelled = await a_cancellation(), await a_cancellation()
    interrupt, exit_, error, other = KeyboardInterrupt(), SystemExit(3), ValueError(), OSError()

    def group(*exceptions: BaseException) -> BaseExceptionGroup[BaseException]:
        return BaseExceptionGroup("tasks", list(exceptions))

    assert escapee_of(error) is error
    assert escapee_of(group(error)) is error
    assert escapee_of(group(cancelled)) is cancelled
    assert escapee_of(group(cancelled, error)) is error
    assert escapee_of(group(error, group(other, interrupt))) is interrupt
    assert escapee_of(group(cancelled, exit_, interrupt)) is exit_
    nested = group(other)
    assert escapee_of(group(nested)) is nested  # a task's own group is what the task raised
    for several in (group(error, other), group(cancelled, other_cancelled)):
        assert escapee_of(several) is several


# --- a real Ctrl-C: SIGINT to a Python running a lookup, its credential helper waiting ----------

LOOKUP_SCRIPT = """
import sys

import anyio
import anyio.lowlevel
import httpx

import asyncauth

backend, kind, target = sys.argv[1:]

if kind == "sync":  # a sync client: the lookup runs on asyncauth's background event loop
    try:
        with httpx.Client(auth=asyncauth.RegistryAuth()) as http:
            http.get(target)
    except KeyboardInterrupt:
        print("caught KeyboardInterrupt", flush=True)
    sys.exit(0)


async def lookup():
    if kind == "resolve":
        await asyncauth.resolve(target)
    else:
        async with httpx.AsyncClient(auth=asyncauth.RegistryAuth()) as http:
            await http.get(target)


async def main():
    try:
        await lookup()
    except KeyboardInterrupt:
        print("KeyboardInterrupt in main", flush=True)
        raise
    except anyio.get_cancelled_exc_class():
        print("cancelled in main", flush=True)
        raise
    print("the lookup ended", flush=True)


try:
    anyio.run(main, backend=backend)
except KeyboardInterrupt:
    print("caught KeyboardInterrupt", flush=True)
"""

CAUGHT = {
    # trio raises Ctrl-C in the task that runs (asyncauth's lookup) and it reaches main as it is;
    # asyncio's runner cancels the main task instead and raises KeyboardInterrupt once it ends.
    "trio": "KeyboardInterrupt in main\ncaught KeyboardInterrupt\n",
    "asyncio": "cancelled in main\ncaught KeyboardInterrupt\n",
}


class SlowHelper:
    """``docker-credential-slow`` on a private ``PATH``: it starts a child that sleeps, says so
    (both pids) through a FIFO the test reads, and waits for that child, as a helper waiting on
    a locked keychain or a prompt does. ``reads_input``: only once it has read its request to
    the end (the lookup is then waiting for its answer); otherwise at once."""

    def __init__(self, root: Path, *, reads_input: bool) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.fifo = root / "started"
        os.mkfifo(self.fifo)
        helper = self.bin / "docker-credential-slow"
        read = "cat >/dev/null\n" if reads_input else ""
        helper.write_text(f"#!/bin/sh\n{read}sleep 60 &\necho \"$$ $!\" > '{self.fifo}'\nwait\n")
        helper.chmod(0o755)
        # Opened before the helper can exist, without blocking; poll() waits for its line.
        self.reader = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)

    def started(self, within: float) -> tuple[int, int]:
        """The helper's pid and its child's, once the helper has written them."""
        poller = select.poll()
        poller.register(self.reader, select.POLLIN)
        assert poller.poll(within * 1000), f"the helper did not start within {within:g} s"
        helper, child = os.read(self.reader, 100).split()
        return int(helper), int(child)

    def close(self) -> None:
        os.close(self.reader)


def exited_within(pidfd: int, seconds: float) -> bool:
    """Whether the process of ``pidfd`` ends within ``seconds`` (a pidfd polls readable then)."""
    return bool(select.select([pidfd], [], [], seconds)[0])


@dataclass
class Interrupted:
    """How a lookup interrupted by SIGINT ended, and whether the helper and its child did."""

    out: str
    err: str
    returncode: int
    seconds: float  # from SIGINT to the process's exit
    helper_gone: bool
    child_gone: bool


def interrupt_a_lookup(
    tmp_path: Path, backend: str, kind: str, target: str, registry: str, *, reads_input: bool
) -> Interrupted:
    """Run LOOKUP_SCRIPT with ``registry``'s credentials from the slow helper; SIGINT it once the
    helper runs."""
    helper = SlowHelper(tmp_path, reads_input=reads_input)
    (tmp_path / ".docker").mkdir()
    config = {"credHelpers": {registry: "slow"}}
    (tmp_path / ".docker" / "config.json").write_text(json.dumps(config))
    (tmp_path / "lookup.py").write_text(LOOKUP_SCRIPT)
    environ = {
        "PATH": f"{helper.bin}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "IMGPKG_ENABLE_IAAS_AUTH": "false",
    }
    argv = [sys.executable, str(tmp_path / "lookup.py"), backend, kind, target]
    process = subprocess.Popen(
        argv,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=default_sigint,  # SIGINT reaches it even if ours is ignored
    )
    pidfds: list[int] = []
    try:
        pidfds = [os.pidfd_open(pid) for pid in helper.started(within=30)]
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        seconds = time.monotonic() - interrupted
        # asyncauth reaps the helper before the lookup ends; its child got the same SIGKILL.
        gone = exited_within(pidfds[0], 0), exited_within(pidfds[1], 2)
    finally:
        helper.close()
        if process.poll() is None:
            process.kill()
            process.communicate()
        for pidfd in pidfds:
            if not exited_within(pidfd, 0):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)
    return Interrupted(out.decode(), err.decode(), process.returncode, seconds, *gone)


@pytest.mark.parametrize("kind", ["resolve", "client"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_during_a_lookup_is_caught_as_keyboard_interrupt_and_ends_the_helper(
    backend: str,
    kind: str,
    tmp_path: Path,
    htpasswd_registry: RegistryServer,
    htpasswd_registry_image: PushedImage,
) -> None:
    if kind == "resolve":
        registry, target = "gcr.io", "gcr.io/project/app"
    else:
        registry = htpasswd_registry.host
        target = htpasswd_registry.url + htpasswd_registry_image.manifest_path
    ended = interrupt_a_lookup(tmp_path, backend, kind, target, registry, reads_input=True)
    assert (ended.out, ended.err, ended.returncode) == (CAUGHT[backend], "", 0)
    assert ended.seconds < 2.0, f"the lookup took {ended.seconds:.2f} s to end after Ctrl-C"
    assert ended.helper_gone, "the helper outlived the interrupted lookup"
    assert ended.child_gone, "the helper's child outlived the interrupted lookup"


def test_ctrl_c_while_asyncio_starts_the_helper_ends_what_the_helper_started(
    tmp_path: Path,
) -> None:
    """SIGINT as soon as the helper runs lands, under asyncio, while starting it has not yet
    returned (the pipes are being connected): asyncio's own clean-up then kills the helper
    alone, and its child lived on. (Under trio, a Ctrl-C in that instant is raised in whatever
    code runs, possibly before asyncauth holds the process: a limit anyio offers no protection
    against, so there is no trio case.)"""
    ended = interrupt_a_lookup(
        tmp_path, "asyncio", "resolve", "gcr.io/project/app", "gcr.io", reads_input=False
    )
    assert (ended.out, ended.err, ended.returncode) == (CAUGHT["asyncio"], "", 0)
    assert ended.helper_gone, "the helper outlived the interrupted lookup"
    assert ended.child_gone, "the helper's child outlived the interrupted lookup"


def test_ctrl_c_during_a_sync_lookup_ends_the_helper_and_the_process_at_once(
    tmp_path: Path, htpasswd_registry: RegistryServer, htpasswd_registry_image: PushedImage
) -> None:
    """A sync ``httpx.Client``: Ctrl-C reaches the main thread while the lookup runs on the
    background loop. The lookup there is cancelled too, so the helper is killed and the process
    exits at once (it lived on until the helper's timeout, 8.9 s)."""
    target = htpasswd_registry.url + htpasswd_registry_image.manifest_path
    ended = interrupt_a_lookup(
        tmp_path, "asyncio", "sync", target, htpasswd_registry.host, reads_input=True
    )
    assert (ended.out, ended.err, ended.returncode) == ("caught KeyboardInterrupt\n", "", 0), (
        ended.err
    )
    assert ended.seconds < 2.0, f"the process took {ended.seconds:.2f} s to end after Ctrl-C"
    assert ended.helper_gone, "the helper outlived the interrupted lookup"
    assert ended.child_gone, "the helper's child outlived the interrupted lookup"
