"""One event loop in a background thread, where sync callers run the async parts of a lookup.

Every effect of the handshake is async (there are no blocking twins). A sync ``httpx.Client``
therefore runs its flow's effects here and blocks until they are done: every thread's lookups
share this loop's single-flight entries, and the loop starts once per process.

The loop belongs to this module:

* it starts on first use and is stopped at interpreter exit, its leftover work cancelled (a
  credential helper still running must not keep the process alive);
* a caller interrupted while it waits (Ctrl-C: ``KeyboardInterrupt`` in the main thread; or
  httpx closing the flow) cancels its work on the loop, so a running credential helper is
  ended at once rather than when its timeout runs out;
* a forked child forgets the parent's loop (``os.register_at_fork``): its thread does not exist
  there, and whatever it was doing — even a lookup in flight at the fork — is not the child's.
  The child's first call starts a loop of its own.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import os
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

T = TypeVar("T")

CANCEL_WAIT = 2.0
"""Seconds an interrupted caller waits for its cancelled work to end on the loop (a credential
helper killed and reaped) before the interruption goes on."""

_lock = threading.Lock()
_portal: BlockingPortal | None = None
_context: AbstractContextManager[BlockingPortal] | None = None
_registered = False


def _stop() -> None:
    """At exit: cancel what still runs on the loop, then stop it."""
    global _portal, _context
    with _lock:
        context, _portal, _context = _context, None, None
    if context is not None:
        # Leaving it as if with an error is what makes anyio cancel the remaining tasks.
        stopping = SystemExit()
        context.__exit__(SystemExit, stopping, None)


_orphans: list[object] = []
"""The parent's portal and its context in a forked child, kept forever: dropping the context
would close it, and closing it waits for a loop thread that does not exist in the child."""


def _forget_after_fork() -> None:
    """In a forked child: the parent's loop thread is gone; set it aside without touching it."""
    global _lock, _portal, _context
    _lock = threading.Lock()
    if _context is not None:
        _orphans.append((_portal, _context))
    _portal = _context = None


os.register_at_fork(after_in_child=_forget_after_fork)


def _current() -> BlockingPortal:
    global _portal, _context, _registered
    with _lock:
        if _portal is None:
            _context = start_blocking_portal(name="asyncauth-sync")
            _portal = _context.__enter__()
            if not _registered:
                atexit.register(_stop)
                _registered = True
        return _portal


def run(func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await func(*args)`` on the background loop; blocks this thread until it is done.

    If this thread is interrupted while it waits (``KeyboardInterrupt``, ``GeneratorExit``), the
    work is cancelled on the loop too, and given :data:`CANCEL_WAIT` seconds to end. Must not
    be called from the background loop itself (it would wait for itself).
    """
    future = _current().start_task_soon(func, *args)
    try:
        return future.result()
    except BaseException:
        if future.cancel():  # interrupted while it ran: cancel it there too, and let it end
            concurrent.futures.wait([future], timeout=CANCEL_WAIT)
        raise
