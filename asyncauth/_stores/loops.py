"""One entered client per event loop, without an ``async with`` from the user.

coredis 6 clients must be entered (``async with client:``) before any command: entering starts
the connection pool's task group, and exiting it closes every connection. A token store is used
from requests, which come and go; none of them may host that task group (a cancel scope entered
in one request's task and left open would break the task's scope stack). And a client belongs to
the event loop it was entered in.

So each event loop that uses a store gets its own client, entered by an *owner* task that lives
in that loop until :meth:`LoopClients.aclose` or the end of the loop. anyio has no call that
starts a task outside a task group; its ``from_thread.run(..., token=...)`` starts one from
another thread, though, so a small parked thread per loop starts the owner and waits for it to
end. Commands then run directly in the caller's task: no thread hop per call. The owner swallows
the cancellation that ends its loop (``asyncio.run`` and ``trio.run`` cancel leftover tasks), so
a program that never closes the store still ends quietly.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any, Generic, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

C = TypeVar("C")


class _Owner:
    """The owner task of one loop's client, and what the callers need from it."""

    __slots__ = ("client", "done", "error", "loop", "ready", "stop")

    def __init__(self, loop: anyio.lowlevel.EventLoopToken) -> None:
        self.loop = loop  # holds the loop: its id() keys the table while the owner lives
        self.ready = anyio.Event()
        self.stop = anyio.Event()
        self.done = anyio.Event()
        self.client: Any = None
        self.error: BaseException | None = None


class LoopClients(Generic[C]):
    """The client of the running event loop, built by ``build`` and entered on first use."""

    def __init__(self, build: Callable[[], C], *, name: str) -> None:
        self._build = build
        self._name = name
        self._lock = threading.Lock()
        self._owners: dict[int, _Owner] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        """How many loops have a client (for tests)."""
        with self._lock:
            return sum(1 for owner in self._owners.values() if not owner.done.is_set())

    async def get(self) -> C:
        """This loop's client; raises what entering it raised (the next call tries again).

        The caller bounds the wait (the first call of a loop may connect, for a cluster).
        """
        loop = anyio.lowlevel.current_token()
        key = id(loop.native_token)
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's owners are not here
                self._owners.clear()
                self._pid = os.getpid()
            owner = self._owners.get(key)
            if owner is None or owner.done.is_set():
                owner = self._owners[key] = _Owner(loop)
                thread = threading.Thread(
                    target=self._park, args=(owner, loop), name=self._name, daemon=True
                )
                thread.start()
        await owner.ready.wait()
        if owner.client is None:
            raise owner.error or ConnectionError(f"{self._name}: the client has closed")
        return owner.client  # type: ignore[no-any-return]

    def _park(self, owner: _Owner, loop: anyio.lowlevel.EventLoopToken) -> None:
        """The parked thread: runs the owner task in ``loop`` and waits for it to end."""
        try:
            anyio.from_thread.run(self._own, owner, token=loop)
        except BaseException as exc:  # the loop ended or refused: nobody is left to tell
            owner.error = owner.error or exc
        finally:
            key = id(owner.loop.native_token)
            with self._lock:
                if self._owners.get(key) is owner:
                    del self._owners[key]

    async def _own(self, owner: _Owner) -> None:
        try:
            async with AsyncExitStack() as stack:
                client = self._build()
                await stack.enter_async_context(client)  # type: ignore[arg-type]
                owner.client = client
                owner.ready.set()
                await owner.stop.wait()
        except anyio.get_cancelled_exc_class():
            pass  # the loop is ending: end quietly, whoever cancelled us
        except Exception as exc:
            owner.error = exc
        finally:
            owner.client = None
            owner.ready.set()
            owner.done.set()

    def discard(self) -> None:
        """Drop this loop's client (it closes in the background): the next :meth:`get` builds
        another. For a client whose state went stale (a cluster layout naming a dead node)."""
        key = id(anyio.lowlevel.current_token().native_token)
        with self._lock:
            owner = self._owners.pop(key, None)
        if owner is not None:
            owner.stop.set()

    async def aclose(self) -> None:
        """Close the clients: this loop's at once (waited for), the others' by signal."""
        here = id(anyio.lowlevel.current_token().native_token)
        with self._lock:
            owners = list(self._owners.items())
        others = [owner for key, owner in owners if key != here]
        for key, owner in owners:
            if key == here:
                owner.stop.set()
                await owner.done.wait()
        if others:
            await anyio.to_thread.run_sync(_signal, others)


def _signal(owners: list[_Owner]) -> None:
    """Tell owners in other loops to close their clients (best effort: a loop may be gone)."""
    for owner in owners:
        try:
            anyio.from_thread.run_sync(owner.stop.set, token=owner.loop)
        except Exception:  # noqa: S112 - a loop that ended has closed its client already
            continue
