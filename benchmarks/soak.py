"""The soak: many requests over many repositories with short-lived tokens, looking for what leaks.

    nox -s bench -- --only soak [--requests N] [--repositories R] [--seconds T]

Defaults: 100,000 requests over 2,000 repositories, spread over at least 130 s, under asyncio
and under trio, each in a process of its own (so that its peak memory and descriptors are its
own), through ``create_client()`` (aiohttp's transport under asyncio, httpx2's under trio).
The peers are the real Debian ``docker-registry`` in token mode and the test token issuer,
which answers ``expires_in: 60`` (the shortest the spec allows): the client keeps a token until
10 s before it expires, so each repository's token is fetched again every ~50 s and a 130 s run
refreshes every one of them at least twice. The repositories do not exist: an authorised
``GET`` of a missing manifest is a 404 *after* the registry checked the token (a 401 is an
error). Reported per event loop: errors, token requests against distinct scopes, open file
descriptors and live tasks before and after, peak RSS, latency percentiles.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .stack import ROOT, USER, IssuerProcess

REQUESTS, REPOSITORIES, SECONDS = 100_000, 2_000, 130.0
CONCURRENCY = 64
EXPIRES_IN = 60
"""What the issuer reports: the least a token may live (distribution's token spec)."""
TOKEN_LIFETIME = 120.0
"""The JWT's own ``exp``: the registry accepts the token that long; the client trusts 60 s."""
ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


# -- the worker (one event loop, one process) ----------------------------------------------------


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _live_tasks() -> int:
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio

        def count(task: Any) -> int:
            return 1 + sum(count(t) for n in task.child_nurseries for t in n.child_tasks)

        return count(trio.lowlevel.current_root_task())
    import asyncio  # noqa: TID251 - counting asyncio's own tasks needs asyncio

    return len(asyncio.all_tasks())


def _rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _pull_all(client: Any, job: dict[str, Any]) -> tuple[Counter[str], list[float]]:
    """Send ``job["requests"]`` GETs from ``job["concurrency"]`` tasks, on a fixed schedule."""
    import anyio

    names = [f"soak/repo-{i:04d}" for i in range(job["repositories"])]
    spacing = job["seconds"] / job["requests"]
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    started = anyio.current_time()
    counter = iter(range(job["requests"]))

    async def worker() -> None:
        for i in counter:
            delay = started + i * spacing - anyio.current_time()
            if delay > 0:
                await anyio.sleep(delay)
            # 7919 is prime to the repository count: every repository, round after round
            url = f"{job['registry']}/v2/{names[(i * 7919) % len(names)]}/manifests/v1"
            sent = time.perf_counter()
            try:
                status = str((await client.get(url)).status_code)
            except Exception as exc:  # counted and reported: the soak is about errors
                status = type(exc).__name__
            latencies.append(time.perf_counter() - sent)
            statuses[status] += 1

    async with anyio.create_task_group() as workers:
        for _ in range(job["concurrency"]):
            workers.start_soon(worker)
    return statuses, latencies


def _state() -> dict[str, float]:
    return {"descriptors": _open_descriptors(), "tasks": _live_tasks(), "rss_mib": _rss_mib()}


async def _soak(job: dict[str, Any]) -> dict[str, Any]:
    import anyio

    from asyncauth import Chain, FlagsResolver, create_client

    chain = Chain([FlagsResolver(username=USER, password=job["password"], environ={})])
    before = _state()
    started = time.perf_counter()
    async with create_client(chain=chain, headers=ACCEPT, timeout=30.0) as client:
        statuses, latencies = await _pull_all(client, job)
        transport, token_requests = client.transport_name, client.auth.stats.token_requests
    elapsed = time.perf_counter() - started
    await anyio.sleep(0.5)  # let closed connections finish closing
    gc.collect()
    latencies.sort()
    return {
        "transport": transport,
        "seconds": round(elapsed, 1),
        "requests": job["requests"],
        "statuses": dict(statuses),
        "errors": sum(n for s, n in statuses.items() if s != "404"),
        "client_token_requests": token_requests,
        "before": before,
        "after": _state(),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "latency_ms": {
            f"p{p}": round(latencies[min(len(latencies) - 1, len(latencies) * p // 100)] * 1e3, 2)
            for p in (50, 90, 99)
        },
    }


def worker_main() -> int:
    """``python -m benchmarks.soak``: one soak run; the job on stdin, the result on stdout."""
    import anyio

    job = json.loads(sys.stdin.readline())
    result = anyio.run(_soak, job, backend=job["backend"])
    print(json.dumps(result), flush=True)
    return 0


# -- the driver ------------------------------------------------------------------------------------


def _run_worker(job: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak"],
        input=json.dumps(job) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=job["seconds"] * 4 + 600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"soak worker failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(
    requests: int = REQUESTS,
    repositories: int = REPOSITORIES,
    seconds: float = SECONDS,
    backends: tuple[str, ...] = ("asyncio", "trio"),
) -> dict[str, Any]:
    """Start the issuer and the registry, soak each backend in turn, stop everything."""
    from tests.peers import RegistryServer

    workdir = Path(tempfile.mkdtemp(prefix="asyncauth-soak-"))
    password = secrets.token_urlsafe(16)
    policy = {"token_lifetime": TOKEN_LIFETIME, "expires_in": EXPIRES_IN}
    issuer = IssuerProcess(workdir / "issuer", {USER: password}, policy=policy)
    registry: RegistryServer | None = None
    results: dict[str, Any] = {
        "settings": {
            "requests": requests,
            "repositories": repositories,
            "seconds": seconds,
            "concurrency": CONCURRENCY,
            "expires_in": EXPIRES_IN,
        },
        "runs": {},
    }
    try:
        issuer.start()
        registry = RegistryServer(
            workdir / "registry", auth=issuer.registry_auth(), access_log=False, log_level="warn"
        )
        registry.start()
        for backend in backends:
            issuer.reset()
            job = {
                "backend": backend,
                "registry": registry.url,
                "password": password,
                "requests": requests,
                "repositories": repositories,
                "seconds": seconds,
                "concurrency": CONCURRENCY,
            }
            print(f"soak: {backend}, {requests} requests over {seconds:g} s", flush=True)
            outcome = _run_worker(job)
            outcome["issuer"] = issuer.stats()
            results["runs"][backend] = outcome
    finally:
        if registry is not None:
            registry.stop()
        issuer.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def markdown(results: dict[str, Any]) -> str:
    """One table: a column per event loop."""
    runs = results["runs"]

    def pair(key: str, fmt: str = "{}") -> Any:
        return lambda r: f"{fmt.format(r['before'][key])} -> {fmt.format(r['after'][key])}"

    rows = [
        ("transport", lambda r: r["transport"]),
        ("seconds", lambda r: r["seconds"]),
        ("requests", lambda r: r["requests"]),
        ("errors (not 404)", lambda r: r["errors"]),
        ("token requests (issuer)", lambda r: r["issuer"]["total"]),
        ("distinct scopes", lambda r: r["issuer"]["scopes"]),
        ("most token requests for one scope", lambda r: r["issuer"]["max_per_scope"]),
        ("issuer 401s", lambda r: r["issuer"]["unauthorized"]),
        ("descriptors before -> after", pair("descriptors")),
        ("tasks before -> after", pair("tasks")),
        ("RSS MiB before -> after", pair("rss_mib", "{:.0f}")),
        ("peak RSS MiB", lambda r: r["peak_rss_mib"]),
        ("latency p50 / p90 / p99 ms", lambda r: " / ".join(map(str, r["latency_ms"].values()))),
    ]
    settings = results["settings"]
    lines = [
        f"Soak: {settings['requests']} requests over {settings['repositories']} repositories, "
        f"at least {settings['seconds']:g} s, {settings['concurrency']} concurrent, tokens with "
        f"expires_in {settings['expires_in']} s (`{results.get('command', '')}`)",
        "",
        "| | " + " | ".join(runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    lines += [
        f"| {name} | " + " | ".join(str(get(r)) for r in runs.values()) + " |" for name, get in rows
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(worker_main())
