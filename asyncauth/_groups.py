"""asyncauth's one task group: what goes wrong inside it leaves it as itself, not in a wrapper.

anyio (like trio and asyncio) wraps whatever leaves a task group in a ``BaseExceptionGroup``,
even a lone exception. That is right when the caller started the tasks; but asyncauth's task
groups are implementation details (:meth:`Chain.resolve` asks its sources concurrently, a
credential helper's output is read while its input is written), and a caller's ``except
KeyboardInterrupt`` or ``except ConfigError`` must not depend on them. So, as anyio and trio
advise for concurrency that is an implementation detail, :class:`TaskGroup` makes sure only one
thing can go wrong at a time, unwraps that one thing, and keeps a group only when several truly
did. What leaves it, in this order:

1. **KeyboardInterrupt or SystemExit**, as itself, wherever it was raised (the body, a task, a
   group nested inside): a user pressed Ctrl-C, or something asked the process to exit; that
   outranks whatever else failed meanwhile (trio's "defer to" pattern). A task's is caught in
   the task and re-raised by the group's owner: under asyncio a ``KeyboardInterrupt`` left in a
   task escapes the event loop past every caller, so no ``except`` around the lookup would see
   it; this way it reaches the caller on both backends.
2. **The one failure**, as itself (same object, its traceback kept, with the frames it then
   crosses added), when only one task or the body failed. The backend's cancellation exceptions
   do not count beside a real failure: anyio's asyncio groups never hold them, and trio's
   cancellation is level-triggered (the cancelled scope raises again at the next checkpoint),
   so leaving them out breaks no cancel scope; a failure beside a cancellation is the failure.
3. **The group, unchanged**, when two or more real failures happened at once (the body and a
   task, two tasks): none of them may be hidden behind another. asyncauth's tasks handle what
   they expect (the chain records a source's failure in the trace, the helper's readers what a
   pipe raises), so this takes two unexpected failures at once.

Only the layer this group adds is taken off: a group that a task raised itself (a library's own
task group) is what that task raised, and leaves as it came.

A cancellation alone (an outer scope cancelled the owner) leaves exactly as anyio lets it:
cancel scopes see their own exception, and a deadline around a lookup keeps working.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import NoReturn, TypeVarTuple, Unpack

import anyio
from anyio.abc import TaskGroup as AnyioTaskGroup

Arguments = TypeVarTuple("Arguments")

INTERRUPTS = (KeyboardInterrupt, SystemExit)
"""Exceptions that always leave a task group as themselves, outranking any other failure."""


class TaskGroup:
    """``anyio.create_task_group()`` for asyncauth's own tasks; see the module docstring.

    Only what asyncauth uses: :meth:`start_soon` and :attr:`cancel_scope`.
    """

    __slots__ = ("_group", "_interrupt")

    def __init__(self) -> None:
        self._group: AnyioTaskGroup = anyio.create_task_group()
        self._interrupt: BaseException | None = None

    @property
    def cancel_scope(self) -> anyio.CancelScope:
        return self._group.cancel_scope

    def start_soon(
        self, func: Callable[[Unpack[Arguments]], Awaitable[object]], *args: *Arguments
    ) -> None:
        name = getattr(func, "__qualname__", None)
        self._group.start_soon(self._guarded, func, *args, name=name)

    async def _guarded(
        self, func: Callable[[Unpack[Arguments]], Awaitable[object]], *args: *Arguments
    ) -> None:
        """Run ``func``; an interrupt is handed to the owner instead of escaping the task."""
        try:
            await func(*args)
        except INTERRUPTS as interrupt:
            if self._interrupt is None:
                self._interrupt = interrupt
            self._group.cancel_scope.cancel()

    async def __aenter__(self) -> TaskGroup:
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            handled = await self._group.__aexit__(exc_type, exc, tb)
        except BaseException as raised:
            # Read only now: a task may have been interrupted while the group waited for it.
            escapee, self._interrupt = self._interrupt or escapee_of(raised), None
            if escapee is raised:
                raise
            reraise(escapee)
        interrupt, self._interrupt = self._interrupt, None
        if interrupt is not None:
            reraise(interrupt)
        return handled


def escapee_of(raised: BaseException) -> BaseException:
    """What should leave a task group that raised ``raised`` (the rules of the module)."""
    if not isinstance(raised, BaseExceptionGroup):
        return raised
    interrupts = raised.subgroup(INTERRUPTS)
    if interrupts is not None:
        first: BaseException = interrupts
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        return first
    cancelled = anyio.get_cancelled_exc_class()
    failures = [e for e in raised.exceptions if not isinstance(e, cancelled)]
    if len(failures) == 1:
        return failures[0]
    if not failures and len(raised.exceptions) == 1:
        return raised.exceptions[0]
    return raised


def reraise(exc: BaseException) -> NoReturn:
    """Raise ``exc`` again with its own ``__context__``, not the group it was taken from.

    Raising an exception inside a handler makes the handled exception its context; here that
    would be the group that contains it, printed as "during handling of the above exception"
    around the very same error.
    """
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
