"""What the flow asks its drivers for: send a request, or do some other I/O.

The flow (:mod:`~asyncauth._registry.flow`) is a generator of these values; the drivers
(:mod:`~asyncauth._registry.drivers`) carry them out for tasks or for threads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(slots=True)
class Send:
    """Send ``request`` with the caller's client; with ``read_limit``, read the body too."""

    request: httpx.Request
    read_limit: int | None = None


@dataclass(slots=True)
class Do:
    """I/O that is not a request: ``run(*args)`` in a task, ``run_blocking(*args)`` in a thread."""

    run: Callable[..., Awaitable[Any]]
    run_blocking: Callable[..., Any]
    args: tuple[Any, ...] = ()


Effect = Send | Do
Flow = Generator[Effect, Any, None]
