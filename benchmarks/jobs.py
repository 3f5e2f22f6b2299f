"""How a job runs: in a forked worker process (or ``ab``), and what the token issuer saw of it.

:class:`Worker` drives ``python -m benchmarks.worker --serve`` (:mod:`benchmarks.worker`), which
forks a fresh child per job; :func:`measure` runs one job and reads the issuer's counters.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .stack import ROOT, Stack

DRAIN_GRACE = 20.0
"""Seconds past a pass's window after which a worker that has not answered is stopped (its
requests in flight could not complete: httpx's own pool at high concurrency)."""


def _worker_env(stack: Stack) -> dict[str, str]:
    home = stack.workdir / "home"
    home.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
        and not k.startswith(("IMGPKG_", "DOCKER_", "REGISTRY_AUTH", "DRCA_"))
    }
    env |= {"HOME": str(home), "NO_PROXY": "*", "PYTHONPATH": str(ROOT)}
    return env


class Worker:
    """``python -m benchmarks.worker --serve``: it forks a fresh child per job (see there).

    ``cwd`` is where it runs, first on its ``sys.path``: a directory holding another tree's
    ``asyncauth`` makes the worker measure that one (:mod:`benchmarks.compare`); this
    repository's ``benchmarks`` is found through ``PYTHONPATH`` either way.
    """

    def __init__(self, stack: Stack, log: Path, *, cwd: Path = ROOT) -> None:
        self.log_path = log
        argv = [sys.executable, "-m", "benchmarks.worker", "--serve"]
        setpriv = shutil.which("setpriv")
        if setpriv is not None and threading.current_thread() is threading.main_thread():
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        self._log = log.open("ab")
        self._pending = b""
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            bufsize=0,
            cwd=cwd,
            env=_worker_env(stack),
            start_new_session=True,
        )

    def _line(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON line, or ``None`` after ``timeout`` seconds (unbuffered: ``select``
        must see every byte that has not been consumed)."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.perf_counter() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.perf_counter()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                self._log.flush()
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:]
                return {"failed": f"the worker ended: {(tail or [''])[0][:300]}"}
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def run(
        self, job: dict[str, Any], on_ready: Callable[[int], None] | None = None
    ) -> dict[str, Any]:
        """The job's result. ``on_ready(pid)`` is called when the child is about to start its
        first pass (a profiler attaches then). A child whose requests in flight cannot complete
        is stopped ``DRAIN_GRACE`` seconds per pass after its windows should have closed."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(job).encode() + b"\n")
        child = self._line(120)
        if child is None or "failed" in child:
            return child or {"failed": "the worker did not fork within 120 s"}
        ready = self._line(60)
        if ready is None or "failed" in ready:
            return ready or {"failed": "the measurement did not start within 60 s"}
        if on_ready is not None:
            on_ready(int(child["child"]))
        window = (job.get("seconds") or 3600) + DRAIN_GRACE
        answer = self._line(window * job.get("passes", 2))
        if answer is not None:
            return answer
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(child["child"]), signal.SIGKILL)  # the child only; the server reaps it
        return {"failed": f"no result {window:g} s per pass after its window: stopped"}

    def close(self) -> None:
        """End the server (end of input) and wait for it; kill it if it does not end."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _ab(stack: Stack, job: dict[str, Any]) -> dict[str, Any]:
    """``ab -k`` from Debian apache2-utils on one repository's manifest, pre-fetched token: one
    pass (no cold start to speak of), its CPU time from the kernel's account of children."""
    from tests.peers._tools import PeerUnavailableError, require_tool  # sys.path set by .stack

    try:
        ab = require_tool("ab", bench=True)
    except PeerUnavailableError as exc:
        return {"failed": str(exc)}
    repository = stack.repositories[0]
    c, seconds = job["concurrency"], job["seconds"]
    argv = [ab, "-k", "-q", "-r"]
    if seconds:
        argv += ["-t", str(max(1, round(seconds)))]  # -t before -n, or -n is overridden
    argv += ["-n", str(max(job["requests"], c)), "-c", str(c)]
    argv += ["-H", f"Authorization: Bearer {stack.tokens[repository]}"]
    argv += ["-H", "Accept: application/vnd.oci.image.manifest.v1+json"]
    argv.append(f"{stack.registry_url}/v2/{repository}/manifests/v1")
    cpu = _children_cpu()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=(seconds or 60) + 120)
    cpu = _children_cpu() - cpu
    out = done.stdout

    def number(pattern: str) -> float | None:
        match = re.search(pattern, out, re.MULTILINE)
        return float(match.group(1)) if match else None

    completed = number(r"^Complete requests:\s+(\d+)")
    taken = number(r"^Time taken for tests:\s+([\d.]+)")
    if done.returncode != 0 or completed is None or not taken:
        return {"failed": f"ab: {done.stderr.strip()[-300:] or out[-300:]}"}
    errors = int(number(r"^Failed requests:\s+(\d+)") or 0)
    errors += int(number(r"^Non-2xx responses:\s+(\d+)") or 0)
    ok = int(completed) - errors
    one = {
        "requests": int(completed),
        "ok": ok,
        "errors": errors,
        "elapsed_s": taken,
        "rps": ok / taken,
        "cpu_s": cpu,
        "cpu_us": cpu / completed * 1e6 if completed else None,
        "p50_ms": number(r"^\s+50%\s+(\d+)"),
        "p99_ms": number(r"^\s+99%\s+(\d+)"),
        "unauthorized": 0,
    }
    return {"passes": [one, one]}


@dataclass
class Measurement:
    series: str
    concurrency: int
    round: int
    result: dict[str, Any]
    token_requests: int | None = None
    token_scopes: int | None = None  # distinct scopes the issuer was asked for
    max_per_scope: int | None = None  # most token requests for one scope (single-flight: 1)


def measure(
    stack: Stack,
    key: str,
    job: dict[str, Any],
    round_: int,
    worker: Worker,
    on_ready: Callable[[int], None] | None = None,
) -> Measurement:
    """One job of the series ``key``, and what the token issuer saw of it."""
    stack.issuer.reset()
    result = _ab(stack, job) if job["client"] == "ab" else worker.run(job, on_ready)
    stats = stack.issuer.stats()
    # Token requests a stopped client had already sent may still be queued at the issuer:
    # wait until its count stands still, so they are counted here and not in the next run.
    for _ in range(40):
        time.sleep(0.05)
        again = stack.issuer.stats()
        if again == stats:
            break
        stats = again
    return Measurement(
        key,
        job["concurrency"],
        round_,
        result,
        stats["total"],
        stats["scopes"],
        stats["max_per_scope"],
    )
