"""The pipeline benchmark: manifest GETs (and HEADs) against a real registry in token mode.

Every client does the same workload (:mod:`benchmarks.clients`) against the same registry, in
the same run, in interleaved rounds: round *r* runs every series once (in an order rotated by
*r*) before round *r + 1* starts, so drift on this shared machine hits every client alike. The
numbers reported are medians over rounds, with the spread (min to max).

A measurement runs until ``requests`` requests have completed or its window of ``seconds``
closes, whichever comes first (``seconds=0``: no window). Requests still in flight when the
window closes are cancelled and reported as unfinished.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .stack import ROOT, Stack

ALL_CONCURRENCY = (1, 8, 32, 256, 1024)
SATURATED_GRACE = 1.5
"""Seconds past its window after which a worker that has not answered is stopped."""
HEADLINE = 256
TRANSPORTS = {
    "httpx": "httpx 0.28, default transport",
    "httpx2": "httpx2, default transport",
    "httpx-aiohttp": "httpx on httpx-aiohttp",
}
TRIO_TRANSPORTS = ("httpx", "httpx2")  # aiohttp runs on asyncio only
# Connection limits tried at C=256 (static-header floor), besides each transport's defaults.
# "gate": at most that many requests in flight, waiting on a semaphore rather than in the pool.
LIMIT_VARIANTS: dict[tuple[str, str], list[dict[str, int | None]]] = {
    ("httpx", "asyncio"): [
        {"gate": 8},
        {"gate": 32},
        {"max_connections": 256, "max_keepalive_connections": 256},
    ],
    ("httpx", "trio"): [{"gate": 8}],
    ("httpx2", "asyncio"): [{"gate": 8}, {"gate": 32}],
    ("httpx2", "trio"): [{"gate": 8}],
    ("httpx-aiohttp", "asyncio"): [
        {"max_connections": 8},
        {"max_connections": 32},
        {"max_connections": None},
    ],
}


@dataclass(frozen=True)
class Series:
    """One line of the results: a client, a mode, an event loop."""

    key: str
    label: str
    group: str  # limit | transport | create_client | sync | peer
    client: str
    mode: str = "floor"
    transport: str | None = None
    backend: str = "asyncio"
    concurrency: tuple[int, ...] = ALL_CONCURRENCY
    head: bool = False  # also run the HEAD variant at the headline concurrency
    limits: tuple[dict[str, int | None], ...] = ()


@dataclass
class Settings:
    repositories: int = 100
    requests: int = 10_000
    rounds: int = 3
    seconds: float = 0.6  # window of the sweep (C != 256) jobs; x2.5 at C >= 1024
    headline_seconds: float = 2.0  # window of the C = 256 GET jobs
    side_seconds: float = 1.0  # window of the HEAD and connection-limit jobs
    concurrency: tuple[int, ...] = ALL_CONCURRENCY
    limits: bool = True
    head: bool = True
    peers: tuple[str, ...] = ("oras", "aioregistry", "drca")
    peer_concurrency: tuple[int, ...] = (32, HEADLINE)
    sync_concurrency: tuple[int, ...] = (32, HEADLINE)


def plan(settings: Settings) -> list[Series]:
    series = [
        Series("limit:aiohttp", "raw aiohttp, pre-fetched tokens", "limit", "aiohttp", head=True),
        Series("limit:ab", "ab -k, one repository, pre-fetched token", "limit", "ab", head=True),
    ]
    for transport, label in TRANSPORTS.items():
        backends = ("asyncio", "trio") if transport in TRIO_TRANSPORTS else ("asyncio",)
        for backend in backends:
            for mode in ("floor", "asyncauth"):
                what = "static header (floor)" if mode == "floor" else "asyncauth.RegistryAuth"
                variants = LIMIT_VARIANTS.get((transport, backend), []) if settings.limits else []
                series.append(
                    Series(
                        f"{transport}:{mode}:{backend}",
                        f"{label}, {what}, {backend}",
                        "transport",
                        "httpx",
                        mode=mode,
                        transport=transport,
                        backend=backend,
                        head=backend == "asyncio" and transport != "httpx",
                        limits=tuple(variants) if mode == "floor" else (),
                    )
                )
    for backend in ("asyncio", "trio"):
        series.append(
            Series(
                f"create_client:{backend}",
                f"asyncauth.create_client(), {backend}",
                "create_client",
                "httpx",
                mode="create_client",
                transport="create_client",
                backend=backend,
                concurrency=(HEADLINE,),
            )
        )
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
                concurrency=settings.sync_concurrency,
            )
        )
    peer_labels = {
        "oras": ("oras-py (threads, one client per repository per thread)", "threads"),
        "aioregistry": ("aioregistry (one shared AsyncRegistryClient)", "asyncio"),
        "drca": ("docker-registry-client-async (one shared client)", "asyncio"),
    }
    for peer in settings.peers:
        label, backend = peer_labels[peer]
        series.append(
            Series(
                f"peer:{peer}",
                label,
                "peer",
                peer,
                mode="peer",
                backend=backend,
                concurrency=settings.peer_concurrency,
            )
        )
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
    """``python -m benchmarks.worker --serve``: it forks a fresh child per job (see there)."""

    def __init__(self, stack: Stack, log: Path) -> None:
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
            cwd=ROOT,
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

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """The job's result. A child whose event loop is so busy that its window cannot close
        (httpcore's pool at C=1024) is stopped ``SATURATED_GRACE`` seconds after the window
        should have closed, and its run counts as zero requests in that time."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(job).encode() + b"\n")
        child = self._line(120)
        if child is None or "failed" in child:
            return child or {"failed": "the worker did not fork within 120 s"}
        ready = self._line(60)
        if ready is None or "failed" in ready:
            return ready or {"failed": "the measurement did not start within 60 s"}
        started = time.perf_counter()
        window = job.get("seconds") or 0
        answer = self._line(window + SATURATED_GRACE if window else 3600)
        if answer is not None:
            return answer
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(child["child"]), signal.SIGKILL)  # the child only; the server reaps it
        waited = time.perf_counter() - started
        return {
            "saturated": True,
            "elapsed_s": waited,
            "completed": None,
            "ok": 0,
            "errors": 0,
            "rps": 0.0,
            "steady_rps": 0.0,
            "error_samples": [
                f"no result {waited:.1f} s after the start of a {window:g} s window: "
                "the event loop was too busy to close it (stopped)"
            ],
        }

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


def _ab(stack: Stack, method: str, concurrency: int, requests: int, seconds: float) -> dict:
    """``ab -k`` from Debian apache2-utils on one repository's manifest, pre-fetched token."""
    from tests.peers._tools import PeerUnavailableError, require_tool  # sys.path set by .stack

    try:
        ab = require_tool("ab", bench=True)
    except PeerUnavailableError as exc:
        return {"failed": str(exc)}
    repository = stack.repositories[0]
    url = f"{stack.registry_url}/v2/{repository}/manifests/v1"
    argv = [ab, "-k", "-q", "-r"]
    if seconds:
        argv += ["-t", str(max(1, round(seconds)))]  # -t before -n, or -n is overridden
    argv += ["-n", str(max(requests, concurrency)), "-c", str(concurrency)]
    if method == "HEAD":
        argv.append("-i")
    argv += [
        "-H",
        f"Authorization: Bearer {stack.tokens[repository]}",
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json",
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    out = done.stdout

    def number(pattern: str) -> float | None:
        match = re.search(pattern, out, re.MULTILINE)
        return float(match.group(1)) if match else None

    completed = number(r"^Complete requests:\s+(\d+)")
    taken = number(r"^Time taken for tests:\s+([\d.]+)")
    if done.returncode != 0 or completed is None or not taken:
        return {"failed": f"ab: {done.stderr.strip()[-300:] or out[-300:]}"}
    failed = int(number(r"^Failed requests:\s+(\d+)") or 0)
    non2xx = int(number(r"^Non-2xx responses:\s+(\d+)") or 0)
    ok = int(completed) - failed - non2xx
    return {
        "elapsed_s": taken,
        "completed": int(completed),
        "ok": ok,
        "errors": failed + non2xx,
        "unfinished": 0,
        "rps": ok / taken,
        "steady_rps": None,
        "p50_ms": number(r"^\s+50%\s+(\d+)"),
        "p99_ms": number(r"^\s+99%\s+(\d+)"),
        "unauthorized": 0,
        "rss_delta_kib": None,
    }


@dataclass
class Measurement:
    series: str
    variant: str  # "GET", "HEAD", or "GET limits=..."
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


def _limits_name(limits: dict[str, int | None]) -> str:
    if limits.get("gate"):
        return f"gate={limits['gate']}"
    conns = limits.get("max_connections")
    keep = limits.get("max_keepalive_connections")
    text = f"max_connections={conns if conns is not None else 'unlimited'}"
    if keep is not None:
        text += f", max_keepalive={keep}"
    return text


def _jobs(series: Series, settings: Settings, base: dict[str, Any]) -> list[list[tuple]]:
    """The jobs of one series in one round, as groups that share a worker process.

    Group 1: the headline concurrency (GET, then HEAD, then connection-limit variants);
    group 2: the other concurrencies, ascending. Each entry: (variant, C, job).
    """
    common = {
        **base,
        "client": series.client,
        "mode": series.mode,
        "transport": series.transport,
        "backend": series.backend,
        "requests": settings.requests,
    }
    if series.group in ("limit", "transport", "create_client"):
        cs = [c for c in settings.concurrency if c in series.concurrency]
    else:
        cs = list(series.concurrency)
    headline: list[tuple] = []
    sweep: list[tuple] = []
    for c in sorted(cs):
        # The same window for every client at one concurrency, so that they compare.
        seconds = settings.seconds * (2.5 if c >= 1024 else 1)
        if c == HEADLINE:
            seconds = settings.headline_seconds
        job = {**common, "method": "GET", "concurrency": c, "seconds": seconds}
        if c == HEADLINE:
            headline.append(("GET", c, job))
            if series.head and settings.head:
                head = {**job, "method": "HEAD", "seconds": settings.side_seconds}
                headline.append(("HEAD", c, head))
            for limits in series.limits:
                variant = {**job, "limits": limits, "seconds": settings.side_seconds}
                headline.append((f"GET {_limits_name(limits)}", c, variant))
        else:
            sweep.append(("GET", c, job))
    return [g for g in (headline, sweep) if g]


def run(stack: Stack, settings: Settings, *, progress: Callable[[str], None] = print) -> Run:
    series = plan(settings)
    outcome = Run(settings, series)
    base = stack.job_base()
    logs = stack.workdir / "logs"
    logs.mkdir(exist_ok=True)
    started = time.perf_counter()
    worker = Worker(stack, logs / "worker.log")
    try:
        _rounds(stack, settings, series, base, worker, outcome, started, progress)
    finally:
        worker.close()
    outcome.seconds = time.perf_counter() - started
    return outcome


def _rounds(
    stack: Stack,
    settings: Settings,
    series: list[Series],
    base: dict[str, Any],
    worker: Worker,
    outcome: Run,
    started: float,
    progress: Callable[[str], None],
) -> None:
    for round_ in range(settings.rounds):
        shift = round_ % len(series)
        order = series[shift:] + series[:shift]
        # Headline groups of every series first, then the sweeps: both interleaved by round.
        groups: list[tuple[Series, list[tuple]]] = []
        for phase in (0, 1):
            for s in order:
                jobs = _jobs(s, settings, base)
                if phase < len(jobs):
                    groups.append((s, jobs[phase]))
        for s, group in groups:
            outcome.measurements.extend(_run_group(stack, s, group, round_, worker))
        progress(
            f"  round {round_ + 1}/{settings.rounds} done "
            f"({time.perf_counter() - started:.0f} s so far)"
        )


def _run_group(
    stack: Stack, series: Series, group: Iterable[tuple], round_: int, worker: Worker
) -> list[Measurement]:
    found: list[Measurement] = []

    def measured(variant: str, c: int, result: dict[str, Any]) -> Measurement:
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
            variant,
            c,
            round_,
            result,
            stats["total"],
            stats["scopes"],
            stats["max_per_scope"],
        )

    if series.client == "ab":
        for variant, c, job in group:
            stack.issuer.reset()
            result = _ab(stack, job["method"], c, job["requests"], job["seconds"])
            found.append(measured(variant, c, result))
        return found
    for variant, c, job in group:
        stack.issuer.reset()
        result = worker.run(job)
        found.append(measured(variant, c, result))
        if "failed" in result:
            break
    return found


# --- summaries ------------------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def summarise(outcome: Run) -> dict[str, Any]:
    """Medians and spreads per (series, variant, C); the raw measurements stay in the JSON."""
    rows: dict[tuple[str, str, int], list[Measurement]] = {}
    for m in outcome.measurements:
        rows.setdefault((m.series, m.variant, m.concurrency), []).append(m)
    labels = {s.key: s for s in outcome.series}
    summary = []
    for (key, variant, c), ms in rows.items():
        good = [m for m in ms if "failed" not in m.result]
        rps = [m.result["rps"] for m in good]
        steady = [m.result.get("steady_rps") for m in good]
        tokens = [m.token_requests for m in good]
        summary.append(
            {
                "series": key,
                "label": labels[key].label,
                "group": labels[key].group,
                "mode": labels[key].mode,
                "transport": labels[key].transport,
                "backend": labels[key].backend,
                "variant": variant,
                "concurrency": c,
                "rounds": len(good),
                "failed": [m.result["failed"] for m in ms if "failed" in m.result],
                "rps": _median(rps),
                "rps_spread": [min(rps), max(rps)] if rps else None,
                "steady_rps": _median(steady),
                "p50_ms": _median([m.result.get("p50_ms") for m in good]),
                "p99_ms": _median([m.result.get("p99_ms") for m in good]),
                "completed": _median([m.result.get("completed") for m in good]),
                "unfinished": _median([m.result.get("unfinished") for m in good]),
                "token_requests": tokens,
                "unauthorized": [m.result.get("unauthorized") for m in good],
                "errors": sum(m.result.get("errors", 0) for m in good),
                "error_samples": sorted(
                    {e for m in good for e in m.result.get("error_samples", [])}
                )[:3],
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
