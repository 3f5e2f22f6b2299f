"""Drivers: they carry out the flow's effects, for tasks and for threads, in one loop.

The flow (:mod:`~asyncauth._registry.flow`) decides; a driver sends what it yields through the
caller's client (by yielding the request to httpx's auth machinery) and runs its other effects.
:func:`steps` is that loop, written once: run by a thread (``blocking=True``) it performs every
effect itself and yields only requests, which makes it httpx's ``sync_auth_flow`` as it is; run
for a task, it yields :class:`Pending` awaitables too, which :func:`drive_async` awaits.

An error from an effect is thrown into the flow at the point that asked for it, so the flow's
own ``try`` blocks see the real exception (and can hand a refused token request's error to every
task waiting for the same token).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Generator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

import httpx

from .effects import Flow, Send
from .streams import bound, within


@dataclass(slots=True)
class Pending:
    """Something a task must await; its result (or exception) goes back into :func:`steps`."""

    awaitable: Awaitable[Any]


_T = TypeVar("_T")
END: Any = object()


def resume(generator: Generator[_T, Any, None], value: Any, error: Exception | None) -> _T:
    """The generator's next item, sending ``value`` or throwing ``error`` in where it stopped;
    :data:`END` once it has finished. What every driver does between two effects."""
    try:
        return generator.send(value) if error is None else generator.throw(error)
    except StopIteration:
        return END  # type: ignore[no-any-return]


def steps(
    flow: Flow, http: ModuleType, *, blocking: bool
) -> Generator[httpx.Request | Pending, Any, None]:
    """Carry out ``flow``: yield requests to send (and, unless ``blocking``, awaitables)."""
    value: Any = None
    error: Exception | None = None
    try:
        while (effect := resume(flow, value, error)) is not END:
            error = None
            try:
                if isinstance(effect, Send):
                    value = response = yield effect.request
                    if effect.read_limit is not None:
                        bound(http, response, effect.read_limit)
                        body = response.read() if blocking else (yield Pending(response.aread()))
                        value = (response, within(body, effect.read_limit))
                elif blocking:
                    value = effect.run_blocking(*effect.args)
                else:
                    value = yield Pending(effect.run(*effect.args))
            except Exception as exc:
                error = exc
    finally:
        flow.close()


async def drive_async(
    flow: Flow, http: ModuleType
) -> AsyncGenerator[httpx.Request, httpx.Response]:
    """``async_auth_flow`` for ``flow``: awaits what :func:`steps` hands over, in this task."""
    loop = steps(flow, http, blocking=False)
    value: Any = None
    error: Exception | None = None
    try:
        while (item := resume(loop, value, error)) is not END:
            error = None
            if isinstance(item, Pending):
                try:
                    value = await item.awaitable
                except Exception as exc:
                    error = exc
            else:
                value = yield item
    finally:
        loop.close()


def drive_sync(flow: Flow, http: ModuleType) -> Generator[httpx.Request, httpx.Response, None]:
    """``sync_auth_flow`` for ``flow``."""
    return steps(flow, http, blocking=True)  # type: ignore[return-value]
