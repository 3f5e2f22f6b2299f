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
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx
import pytest

import asyncauth
from asyncauth import Chain, ConfigError, Credential, Outcome, RegistryAuth, Resource
from asyncauth._groups import TaskGroup, escapee_of

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
