"""Run each measurement in a process of its own and print its numbers as one JSON line.

A fresh process per measurement: no connection pool, token cache or event loop survives from one
measurement to the next (each builds its client and ``RegistryAuth`` afresh: a cold cache), and
``time.process_time`` counts this client's work only. The harness runs ``--serve``, which imports
the client libraries once and forks a child per job.

Memory: ``rss_peak_kib`` is the process's high-water mark (``ru_maxrss``) and ``rss_delta_kib``
that minus the RSS just before the first request.

    python -m benchmarks.worker --serve < jobs.jsonl   # what the harness does
    python -m benchmarks.worker --job job.json         # one job by hand (py-spy, pyinstrument)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

from . import clients
from .passes import Outcome


def _rss_kib() -> int:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def _prepare(job: dict[str, Any]) -> None:
    """Import what the job's client needs, so the memory baseline includes it."""
    import anyio  # noqa: F401

    if job.get("backend") == "trio":
        import trio  # noqa: F401
    if job.get("transport") == "httpx2":
        import httpx2  # noqa: F401

        import asyncauth.httpx2
    if job.get("transport") == "httpx-aiohttp":
        import httpx_aiohttp  # noqa: F401
    if job["client"] in ("httpx", "httpx-sync"):
        import httpx  # noqa: F401

        import asyncauth  # noqa: F401


def result_of(outcome: Outcome, base_kib: int) -> dict[str, Any]:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    library = sys.modules.get("asyncauth")
    return {
        # which asyncauth ran (benchmarks.compare runs several trees' packages)
        "asyncauth_from": str(Path(library.__file__).resolve().parent)
        if library is not None and library.__file__
        else None,
        "passes": [p.result() for p in outcome.passes],
        "rss_base_kib": base_kib,
        "rss_peak_kib": peak,
        "rss_delta_kib": max(0, peak - base_kib),
        **outcome.extra,
    }


def _emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def run(job: dict[str, Any]) -> None:
    """Run ``job``'s passes on one client; print their numbers."""
    import anyio

    _prepare(job)
    base = _rss_kib()
    _emit({"ready": True})  # the harness times the passes from here
    name = job["client"]
    if name in clients.ASYNC_CLIENTS:
        outcome = anyio.run(clients.ASYNC_CLIENTS[name], job, backend=job.get("backend", "asyncio"))
    else:
        outcome = clients.SYNC_CLIENTS[name](job)
    _emit(result_of(outcome, base))


def _run_guarded(job: dict[str, Any]) -> None:
    try:
        run(job)
    except Exception as exc:
        _emit({"failed": f"{type(exc).__name__}: {exc}"[:500]})


def serve() -> None:
    """Import every client library once, then fork a fresh child per job line on stdin.

    Each measurement still runs in a process of its own (a forked child: no pool, cache or event
    loop from another run; none was ever created in this parent), without paying a second of
    imports per measurement. The child's first line carries its pid, so the harness can stop a
    child whose event loop is too busy to close its window.
    """
    for name in CLIENT_MODULES:
        with contextlib.suppress(ImportError):  # that client's jobs then fail in the child
            __import__(name)
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                _emit({"child": os.getpid()})
                _run_guarded(job)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(0)
        os.waitpid(pid, 0)


CLIENT_MODULES = (
    "anyio",
    "trio",
    "httpx",
    "httpx2",
    "aiohttp",
    "httpx_aiohttp",
    "asyncauth",
    "asyncauth.httpx2",
    "asyncauth.aiohttp",
    "oras.provider",
    "aioregistry",
    "docker_registry_client_async",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("--job", type=Path, help="the job as a JSON file (default: stdin)")
    parser.add_argument("--serve", action="store_true", help="fork a child per job line")
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    job = json.loads(args.job.read_text() if args.job is not None else sys.stdin.readline())
    _run_guarded(job)
    return 0


if __name__ == "__main__":
    sys.exit(main())
