"""The pipeline benchmark: manifest GETs against a real registry in token mode.

Every client does the same workload (:mod:`benchmarks.passes`: a cold pass, then a warm pass on
the same client) against the same registry, in the same run, in interleaved rounds: round *r*
runs every series once (in an order rotated by *r*) before round *r + 1* starts, so drift on this
shared machine hits every client alike. The numbers reported are medians over rounds, with the
spread (min to max); ratios are medians of per-round ratios.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .stack import ROOT, Stack

HEADLINE = 256
DRAIN_GRACE = 20.0
"""Seconds past a pass's window after which a worker that has not answered is stopped (its
requests in flight could not complete: httpx's own pool at high concurrency)."""
TRANSPORTS = {
    "httpx-aiohttp": "httpx on httpx-aiohttp",
    "httpx2": "httpx2, default transport",
    "httpx": "httpx 0.28, default transport",
}
BACKENDS = {
    "httpx-aiohttp": ("asyncio",),
    "httpx2": ("asyncio", "trio"),
    "httpx": ("asyncio", "trio"),
}
CREATE_CLIENT_KINDS = {
    "aiohttp": ("asyncio",),
    "httpx2": ("asyncio", "trio"),
    "httpx": ("asyncio", "trio"),
}
"""The transports ``create_client()`` may pick, per event loop (``_transports/kinds.py``)."""
DEFAULT_KIND = {"asyncio": "aiohttp", "trio": "httpx2"}
"""What ``create_client()`` picks with every extra installed: the headline ``create_client()``."""
PEERS = {
    "oras": ("oras-py (threads, one client per repository per thread)", "threads"),
    "aioregistry": ("aioregistry (one shared AsyncRegistryClient)", "asyncio"),
    "drca": ("docker-registry-client-async (one shared client)", "asyncio"),
}


@dataclass(frozen=True)
class Series:
    """One line of the results: a client, a mode, an event loop."""

    key: str
    label: str
    group: str  # limit | middleware | create_client | transport | sync | peer
    client: str
    mode: str = "floor"
    transport: str | None = None
    backend: str = "asyncio"
    kind: str | None = None  # create_client's transport


@dataclass
class Settings:
    repositories: int = 50
    requests: int = 1200  # per pass
    rounds: int = 3
    seconds: float = 2.5  # window of each pass
    concurrency: tuple[int, ...] = (HEADLINE,)
    passes: int = 2
    peers: tuple[str, ...] = tuple(PEERS)
    sync: bool = True
    profile: bool = True  # py-spy on the clients of missed targets, after the rounds


def middleware_available() -> bool:
    """Whether ``asyncauth.aiohttp`` (the aiohttp middleware) is there to be measured."""
    try:
        return importlib.util.find_spec("asyncauth.aiohttp") is not None
    except ImportError:
        return False


def plan(settings: Settings) -> list[Series]:
    series = [
        Series("limit:aiohttp", "raw aiohttp, pre-fetched tokens", "limit", "aiohttp"),
        Series("limit:ab", "ab -k, one repository, pre-fetched token", "limit", "ab"),
    ]
    if middleware_available():
        series.append(
            Series(
                "aiohttp:asyncauth",
                "aiohttp + asyncauth.aiohttp.RegistryAuthMiddleware",
                "middleware",
                "aiohttp",
                mode="asyncauth",
            )
        )
    for kind, backends in CREATE_CLIENT_KINDS.items():
        for backend in backends:
            default = " (its default here)" if DEFAULT_KIND[backend] == kind else ""
            series.append(
                Series(
                    f"create_client:{kind}:{backend}",
                    f"asyncauth.create_client() on {kind}, {backend}{default}",
                    "create_client",
                    "httpx",
                    mode="create_client",
                    transport="create_client",
                    backend=backend,
                    kind=kind,
                )
            )
    for transport, label in TRANSPORTS.items():
        for backend in BACKENDS[transport]:
            for mode in ("floor", "asyncauth"):
                what = "static header (floor)" if mode == "floor" else "asyncauth.RegistryAuth"
                series.append(
                    Series(
                        f"{transport}:{mode}:{backend}",
                        f"{label}, {what}, {backend}",
                        "transport",
                        "httpx",
                        mode=mode,
                        transport=transport,
                        backend=backend,
                    )
                )
    if settings.sync:
        for mode in ("floor", "asyncauth"):
            what = "static header" if mode == "floor" else "asyncauth.RegistryAuth"
            series.append(
                Series(
                    f"httpx-sync:{mode}",
                    f"httpx.Client + threads, {what}",
                    "sync",
                    "httpx-sync",
                    mode=mode,
                    transport="httpx",
                    backend="threads",
                )
            )
    for peer in settings.peers:
        label, backend = PEERS[peer]
        series.append(Series(f"peer:{peer}", label, "peer", peer, mode="peer", backend=backend))
    return series


# --- running jobs ---------------------------------------------------------------------------------


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


@dataclass
class Run:
    settings: Settings
    series: list[Series]
    measurements: list[Measurement] = field(default_factory=list)
    seconds: float = 0.0


def job_of(series: Series, settings: Settings, base: dict[str, Any], c: int) -> dict[str, Any]:
    return {
        **base,
        "client": series.client,
        "mode": series.mode,
        "transport": series.transport,
        "backend": series.backend,
        "kind": series.kind,
        "method": "GET",
        "concurrency": c,
        "requests": settings.requests,
        "seconds": settings.seconds,
        "passes": settings.passes,
    }


def measure(
    stack: Stack,
    series: Series,
    job: dict[str, Any],
    round_: int,
    worker: Worker,
    on_ready: Callable[[int], None] | None = None,
) -> Measurement:
    """One job, and what the token issuer saw of it."""
    stack.issuer.reset()
    result = _ab(stack, job) if series.client == "ab" else worker.run(job, on_ready)
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
        series.key,
        job["concurrency"],
        round_,
        result,
        stats["total"],
        stats["scopes"],
        stats["max_per_scope"],
    )


def run(stack: Stack, settings: Settings, *, progress: Callable[[str], None] = print) -> Run:
    series = plan(settings)
    outcome = Run(settings, series)
    base = stack.job_base()
    logs = stack.workdir / "logs"
    logs.mkdir(exist_ok=True)
    started = time.perf_counter()
    worker = Worker(stack, logs / "worker.log")
    try:
        for round_ in range(settings.rounds):
            shift = round_ % len(series)
            for s in series[shift:] + series[:shift]:
                for c in settings.concurrency:
                    job = job_of(s, settings, base, c)
                    outcome.measurements.append(measure(stack, s, job, round_, worker))
            progress(
                f"  round {round_ + 1}/{settings.rounds} done "
                f"({time.perf_counter() - started:.0f} s so far)"
            )
    finally:
        worker.close()
    outcome.seconds = time.perf_counter() - started
    return outcome


# --- summaries ------------------------------------------------------------------------------------


def _median(values: list[Any]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def _spread(values: list[Any]) -> list[float] | None:
    clean = [v for v in values if v is not None]
    return [min(clean), max(clean)] if clean else None


def _pass_summary(ms: list[Measurement], index: int) -> dict[str, Any]:
    passes = [m.result["passes"][index] for m in ms if len(m.result["passes"]) > index]
    rps = [p["rps"] for p in passes]
    cpu = [p.get("cpu_us") for p in passes]
    return {
        "rps": _median(rps),
        "rps_spread": _spread(rps),
        "cpu_us": _median(cpu),
        "cpu_us_spread": _spread(cpu),
        "p50_ms": _median([p.get("p50_ms") for p in passes]),
        "p99_ms": _median([p.get("p99_ms") for p in passes]),
        "requests": _median([p.get("requests") for p in passes]),
        "window_closed": sum(1 for p in passes if p.get("window_closed")),
        "unfinished": sum(p.get("unfinished") or 0 for p in passes),
        "unauthorized": [p.get("unauthorized") for p in passes],
        "errors": sum(p.get("errors", 0) for p in passes),
        "error_samples": sorted({e for p in passes for e in p.get("error_samples", [])})[:3],
    }


def summarise(outcome: Run) -> dict[str, Any]:
    """Medians and spreads per (series, C), per pass; the raw measurements stay in the JSON."""
    rows: dict[tuple[str, int], list[Measurement]] = {}
    for m in outcome.measurements:
        rows.setdefault((m.series, m.concurrency), []).append(m)
    labels = {s.key: s for s in outcome.series}
    summary = []
    for (key, c), ms in rows.items():
        good = [m for m in ms if "failed" not in m.result]
        s = labels[key]
        summary.append(
            {
                "series": key,
                "label": s.label,
                "group": s.group,
                "mode": s.mode,
                "transport": s.transport,
                "backend": s.backend,
                "kind": s.kind,
                "concurrency": c,
                "rounds": len(good),
                "failed": [m.result["failed"] for m in ms if "failed" in m.result],
                "cold": _pass_summary(good, 0),
                "warm": _pass_summary(good, 1),
                "token_requests": [m.token_requests for m in good],
                "max_per_scope": max((m.max_per_scope or 0 for m in good), default=0),
                "rss_delta_mib": _median(
                    [
                        m.result["rss_delta_kib"] / 1024
                        if m.result.get("rss_delta_kib") is not None
                        else None
                        for m in good
                    ]
                ),
                "client": next((m.result["client"] for m in good if "client" in m.result), None),
                "clients_made": _median([m.result.get("clients") for m in good]),
            }
        )
    return {"rows": summary}
