"""The pipeline benchmark: manifest GETs against a real registry in token mode.

Every client does the same workload (:mod:`benchmarks.passes`: a cold pass, then a warm pass on
the same client) against the same registry, in the same run, in interleaved rounds: round *r*
runs every series once (in an order rotated by *r*) before round *r + 1* starts, so drift on this
shared machine hits every client alike. The numbers reported are medians over rounds, with the
spread (min to max); ratios are medians of per-round ratios.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .jobs import Measurement, Worker, measure
from .stack import Stack

HEADLINE = 256
LIMIT = "limit:aiohttp"
MIDDLEWARE = "aiohttp:asyncauth"
MIDDLEWARE_PREFETCH = "aiohttp:prefetch"
"""The middleware whose job calls ``prefetch`` of the R repositories before its cold pass."""
STATIC = "aiohttp:static"
"""aiohttp whose only middleware sets a pre-fetched header: the middleware's warm-CPU floor."""
BY_HAND = "aiohttp:handshake"
"""Raw aiohttp doing the handshake itself: the middleware's cold-pass reference (issue 16)."""
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
"""The transports ``create_client()`` may pick, per event loop (``_client/kinds.py``)."""
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
    group: str  # limit | floor | middleware | create_client | transport | sync | peer
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
    series: tuple[str, ...] = ()  # only these series (keys), when given: a row and its reference


def middleware_available() -> bool:
    """Whether ``asyncauth.aiohttp`` (the aiohttp middleware) is there to be measured."""
    try:
        return importlib.util.find_spec("asyncauth.aiohttp") is not None
    except ImportError:
        return False


def _aiohttp_floors() -> list[Series]:
    """What the middleware is held against besides the limit (issue 16): the same session with
    a middleware that only sets the pre-fetched header, and raw aiohttp doing the handshake."""
    static = "aiohttp + a middleware setting the pre-fetched Authorization header (floor)"
    by_hand = "raw aiohttp, handshake by hand (one /v2/ ping, a token per repository via a future)"
    return [
        Series(STATIC, static, "floor", "aiohttp", mode="static"),
        Series(BY_HAND, by_hand, "floor", "aiohttp", mode="handshake"),
    ]


def _ours() -> list[Series]:
    """The middleware (when there) and ``create_client()`` on every transport it may pick."""
    series = []
    if middleware_available():
        label = "aiohttp + asyncauth.aiohttp.RegistryAuthMiddleware"
        series.append(Series(MIDDLEWARE, label, "middleware", "aiohttp", mode="asyncauth"))
        label = f"{label}, after prefetch() of the R repositories"
        series.append(Series(MIDDLEWARE_PREFETCH, label, "middleware", "aiohttp", mode="prefetch"))
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
    return series


def _transports(sync: bool) -> list[Series]:
    """Each httpx-family transport with a static header and with ``RegistryAuth``."""
    series = []
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
    for mode in ("floor", "asyncauth") if sync else ():
        what = "static header" if mode == "floor" else "asyncauth.RegistryAuth"
        label = f"httpx.Client + threads, {what}"
        series.append(
            Series(f"httpx-sync:{mode}", label, "sync", "httpx-sync", mode, "httpx", "threads")
        )
    return series


def plan(settings: Settings) -> list[Series]:
    """Every series of a run, in the order of the tables."""
    series = [
        Series(LIMIT, "raw aiohttp, pre-fetched tokens", "limit", "aiohttp"),
        Series("limit:ab", "ab -k, one repository, pre-fetched token", "limit", "ab"),
        *_aiohttp_floors(),
        *_ours(),
        *_transports(settings.sync),
    ]
    for peer in settings.peers:
        label, backend = PEERS[peer]
        series.append(Series(f"peer:{peer}", label, "peer", peer, mode="peer", backend=backend))
    if settings.series:
        series = [s for s in series if s.key in settings.series]
    return series


# --- running jobs ---------------------------------------------------------------------------------


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
                    outcome.measurements.append(measure(stack, s.key, job, round_, worker))
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
        "first_ms": _median([p.get("first_ms") for p in passes]),
        "everyone_ms": _median([p.get("everyone_ms") for p in passes]),
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
                "prefetch_ms": _median([m.result.get("prefetch_ms") for m in good]),
                "client": next((m.result["client"] for m in good if "client" in m.result), None),
                "clients_made": _median([m.result.get("clients") for m in good]),
            }
        )
    return {"rows": summary}
