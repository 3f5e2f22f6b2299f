"""Passes: the same workload run twice on one client, the first cold, the second warm.

A pass is ``requests`` manifest GETs spread round-robin over the seeded repositories,
``concurrency`` of them in flight at once (tasks for async clients, threads for sync ones). Every
answer must be a 200 carrying the expected ``Docker-Content-Digest``; anything else (or an
exception) is an error.

The first pass starts from a new client with a cold cache (no connection, challenge, credential
or token yet): its requests per second include the 401 that teaches the registry's challenge and
the token requests. The second pass runs on the same client once the first has ended: connections
open, tokens cached. Its CPU time per request (``time.process_time`` of the process doing the
requests, all its threads) is what the client costs by itself, which the noise of a shared
machine moves far less than its wall-clock rate.

A pass ends when ``requests`` requests have completed or, if its window of ``seconds`` closes
first, once the requests already in flight have completed: every request started is counted, and
the CPU time it cost is in the numbers. Slow clients (httpx's own pool at C=256) are the ones
whose windows close. A request still unanswered ``DRAIN`` seconds after the window (a straggler:
under load the registry's listen queue overflows now and then when a pool keeps opening new
connections, and a lost handshake is retried by the kernel seconds later) is given up and counted
as unfinished; the pass's time runs to its last completed request.
"""

from __future__ import annotations

import gc
import itertools
import statistics
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Job = dict[str, Any]
DRAIN = 5.0
"""Seconds after a pass's window in which the requests in flight may still complete."""
One = Callable[[int], Awaitable[tuple[int, str | None]]]
OneSync = Callable[[int], tuple[int, str | None]]


@dataclass
class Pass:
    """What one pass saw. ``latencies`` are seconds, one per completed request."""

    latencies: list[float] = field(default_factory=list)
    window_closed: bool = False
    started: int = 0
    cut: bool = False  # threads only: the pass has ended; late answers are not counted
    last: float = 0.0  # perf_counter of the last completion
    first: float | None = None  # seconds from the pass's start to its first completion
    everyone: float | None = None  # ... to the first answer of the last repository to answer
    elapsed: float = 0.0  # wall time from the first start to the last completion
    cpu: float = 0.0  # process_time over the same span
    answered: set[int] = field(default_factory=set)  # repositories (index) that answered 200
    ok: int = 0
    errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # responses seen, via the hooks
    error_samples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what[:300])

    def result(self) -> dict[str, Any]:
        completed = len(self.latencies)
        return {
            "requests": completed,
            "unfinished": self.started - completed,
            "ok": self.ok,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "window_closed": self.window_closed,
            "elapsed_s": self.elapsed,
            "first_ms": None if self.first is None else self.first * 1000,
            "everyone_ms": None if self.everyone is None else self.everyone * 1000,
            "rps": self.ok / self.elapsed if self.elapsed > 0 else 0.0,
            "cpu_s": self.cpu,
            "cpu_us": self.cpu / completed * 1e6 if completed else None,
            "p50_ms": _percentile(self.latencies, 0.50) * 1000,
            "p99_ms": _percentile(self.latencies, 0.99) * 1000,
            "mean_ms": statistics.fmean(self.latencies) * 1000 if self.latencies else None,
            "repositories_answered": len(self.answered),
            "unauthorized": self.statuses.get(401, 0),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1); NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class Outcome:
    """Every pass of one job, and what the client function adds (``extra``)."""

    passes: list[Pass] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)  # the hooks count here, always
    extra: dict[str, Any] = field(default_factory=dict)

    def _begin(self) -> Pass:
        # What the previous pass left behind (a cold pass: flows, token answers) is collected
        # now, not by a collection that happens to fall in the next pass and is billed to it.
        gc.collect()
        self.statuses.clear()
        current = Pass()
        self.passes.append(current)
        return current

    def _end(self, current: Pass) -> None:
        current.statuses = self.statuses.copy()


def _record(current: Pass, job: Job, i: int, status: int, got: str | None, since: float) -> None:
    """Count one answer; ``since``: seconds from the pass's start."""
    if current.first is None:
        current.first = since
    if status == 200 and got == job["digest"]:
        current.ok += 1
        answered = current.answered
        if len(answered) < len(job["repositories"]):
            answered.add(i % len(job["repositories"]))
            if len(answered) == len(job["repositories"]):
                current.everyone = since
    elif status != -1:
        current.error(f"status {status}, digest {got}")


async def run_passes(outcome: Outcome, job: Job, one: One) -> None:
    """``job["passes"]`` passes of ``one(i)`` (anyio: any event loop), one after the other."""
    for _ in range(job.get("passes", 2)):
        await _pass(outcome, job, one)


def _cutoff(job: Job) -> float:
    """Seconds from a pass's start after which requests still in flight are given up."""
    return job["seconds"] + DRAIN if job.get("seconds") else float("inf")


async def _pass(outcome: Outcome, job: Job, one: One) -> None:
    import anyio

    current = outcome._begin()
    count, latencies = job["requests"], current.latencies
    counter = itertools.count()

    async def worker() -> None:
        while not current.window_closed and (i := next(counter)) < count:
            current.started += 1
            started = time.perf_counter()
            try:
                status, got = await one(i)
            except Exception as exc:
                current.error(f"{type(exc).__name__}: {exc}")
                status, got = -1, None
            current.last = time.perf_counter()
            latencies.append(current.last - started)
            _record(current, job, i, status, got, current.last - origin)

    async def window() -> None:
        await anyio.sleep(job["seconds"])
        current.window_closed = True  # no new request starts; those in flight complete

    cpu = time.process_time()
    origin = current.last = time.perf_counter()
    async with anyio.create_task_group() as outer:
        if job.get("seconds"):
            outer.start_soon(window)
        with anyio.move_on_after(_cutoff(job)):
            async with anyio.create_task_group() as tg:
                for _ in range(job["concurrency"]):
                    tg.start_soon(worker)
        current.cpu = time.process_time() - cpu
        outer.cancel_scope.cancel()
    current.elapsed = current.last - origin
    outcome._end(current)


def run_passes_threads(outcome: Outcome, job: Job, one: OneSync) -> None:
    """:func:`run_passes` for sync clients: ``concurrency`` threads per pass."""
    for _ in range(job.get("passes", 2)):
        _pass_threads(outcome, job, one)


def _pass_threads(outcome: Outcome, job: Job, one: OneSync) -> None:
    """:func:`_pass` in threads. Threads cannot be cancelled: those still waiting for an answer
    at the cut-off are left behind (daemon threads) and their requests counted unfinished."""
    current = outcome._begin()
    count = job["requests"]
    counter = itertools.count()
    lock = threading.Lock()
    origin = current.last = time.perf_counter()
    deadline = origin + (job.get("seconds") or float("inf"))

    def worker() -> None:
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter)
                if i >= count:
                    return
                current.started += 1
            started = time.perf_counter()
            try:
                status, got = one(i)
            except Exception as exc:
                with lock:
                    if not current.cut:
                        current.error(f"{type(exc).__name__}: {exc}")
                status, got = -1, None
            with lock:
                if current.cut:
                    return  # given up (and its client perhaps closed under it): not counted
                current.last = time.perf_counter()
                current.latencies.append(current.last - started)
                _record(current, job, i, status, got, current.last - origin)
        current.window_closed = True

    cpu = time.process_time()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(job["concurrency"])]
    for thread in threads:
        thread.start()
    cutoff = origin + _cutoff(job)
    for thread in threads:
        thread.join(max(0.0, cutoff - time.perf_counter()))
    with lock:
        current.cut = True
        current.cpu = time.process_time() - cpu
        current.elapsed = current.last - origin
        outcome._end(current)
