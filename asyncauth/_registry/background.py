"""One event loop in a background thread, where sync callers run the async parts of a lookup.

The chain, the Docker config source and the cloud SDKs are async. A sync ``httpx.Client`` used to
run each lookup with ``anyio.run``, a new event loop per lookup: a thread then waited on
single-flight events that belonged to another loop (and never fired there), and every lookup
paid for a loop's start-up. Instead, sync callers hand their coroutines to one long-lived loop
and block until it answers: every thread's lookups share that loop's single-flight entries,
and the loop starts once per process.

The loop belongs to this module: it starts on first use, is stopped at interpreter exit, and is
started afresh in a child process after ``fork`` (a thread does not survive one).
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

T = TypeVar("T")

_lock = threading.Lock()
_portal: BlockingPortal | None = None
_context: AbstractContextManager[BlockingPortal] | None = None
_pid: int | None = None


def _stop() -> None:
    global _portal, _context
    with _lock:
        context, _portal, _context = _context, None, None
    if context is not None and _pid == os.getpid():
        context.__exit__(None, None, None)


def _current() -> BlockingPortal:
    global _portal, _context, _pid
    with _lock:
        if _portal is None or _pid != os.getpid():
            _context = start_blocking_portal(name="asyncauth-sync")
            _portal = _context.__enter__()
            if _pid is None:
                atexit.register(_stop)
            _pid = os.getpid()
        return _portal


def run(func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await func(*args)`` on the background loop; blocks this thread until it is done.

    Must not be called from the background loop itself (it would wait for itself).
    """
    return _current().call(func, *args)
