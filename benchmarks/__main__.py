"""Run the benchmarks; write results/latest.json, latest.md, latest.png (and the docs page).

    python -m benchmarks            # the full run (< 10 minutes on 2 cores)
    python -m benchmarks --quick    # a smoke run (< 2 minutes)
    python -m benchmarks --only fleet   # one part (pipeline, resolution, overhead, fleet, startup,
                                        # crossings, cache)
    nox -s bench [-- --quick]       # the same, with the peers and matplotlib installed

Every process it starts (token issuer, registry, workers, ab, py-spy, the resolution worker) is
stopped on the way out, also on errors and Ctrl-C; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import (
    cache,
    crossings,
    fleet,
    overhead,
    pipeline,
    profiling,
    report,
    resolution,
    startup,
    targets,
)

HERE = Path(__file__).parent
RESULTS = HERE / "results"
DOCS_PAGE = HERE.parent / "docs" / "benchmarks.md"
DOCS_PLOT = HERE.parent / "docs" / "benchmarks.png"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
PARTS = ("pipeline", "resolution", "overhead", "fleet", "startup", "crossings", "cache")


def _settings(args: argparse.Namespace) -> pipeline.Settings:
    if args.quick:
        settings = pipeline.Settings(
            rounds=1, requests=600, seconds=1.5, peers=("oras",), sync=False, profile=False
        )
    else:
        settings = pipeline.Settings()
    if args.rounds:
        settings.rounds = args.rounds
    if args.requests:
        settings.requests = args.requests
    if args.repositories:
        settings.repositories = args.repositories
    if args.seconds is not None:
        settings.seconds = args.seconds
    if args.concurrency:
        settings.concurrency = tuple(args.concurrency)
    if args.profile is not None:
        settings.profile = args.profile
    if args.series:
        settings.series = tuple(args.series)
    return settings


def _machine() -> dict[str, Any]:
    cpu = "?"
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = found.group(1) if found else "?"
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in (
        "asyncauth",
        "httpx",
        "httpcore",
        "httpx2",
        "httpx-aiohttp",
        "aiohttp",
        "anyio",
        "trio",
        "oras",
        "aioregistry",
        "docker-registry-client-async",
    ):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def _update_docs(markdown: str) -> bool:
    """Replace the generated block of docs/benchmarks.md; False if the page has no markers."""
    if not DOCS_PAGE.exists():
        return False
    text = DOCS_PAGE.read_text()
    if START not in text or END not in text:
        return False
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOCS_PAGE.write_text(f"{head}{START}\n{markdown}\n{END}{tail}")
    return True


def _soak(args: argparse.Namespace, command: str) -> None:
    """The soak (benchmarks/soak.py): results in soak.json and soak.md, beside latest.*."""
    from . import soak

    results = soak.run(
        requests=args.requests or soak.REQUESTS,
        repositories=args.repositories or soak.REPOSITORIES,
        seconds=soak.SECONDS if args.seconds is None else args.seconds,
    )
    results["machine"], results["versions"], results["command"] = _machine(), _versions(), command
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(results, indent=1) + "\n")
    table = soak.markdown(results)
    (args.out / "soak.md").write_text(table + "\n")
    print(table, f"\nwritten: {args.out}/soak.json, soak.md", sep="\n", flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run, under 2 minutes")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    parser.add_argument(
        "--only",
        choices=(*PARTS, "soak"),
        action="append",
        help="run only these (repeatable); soak runs only when named (see benchmarks/soak.py)",
    )
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--requests", type=int, help="requests per pass (default 1200)")
    parser.add_argument("--repositories", type=int, help="R (default 50)")
    parser.add_argument(
        "--seconds", type=float, help="window of every pass (default 2.5); 0: none (N requests)"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", help="default: 256")
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        help="py-spy on the clients of missed targets (default: on, off with --quick)",
    )
    parser.add_argument(
        "--series",
        action="append",
        metavar="KEY",
        help="pipeline: run only these series (repeatable), e.g. --series limit:aiohttp "
        "--series aiohttp:prefetch",
    )
    parser.add_argument(
        "--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md (full runs do)"
    )
    return parser


def _pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline's rounds, summaries and (for missed targets) profiles."""
    from .stack import running_stack

    settings = _settings(args)
    print(f"pipeline: {settings}", flush=True)
    with running_stack(settings.repositories) as stack:
        outcome = pipeline.run(stack, settings)
        found = {
            "settings": asdict(settings),
            "seconds": outcome.seconds,
            **pipeline.summarise(outcome),
            "measurements": [asdict(m) for m in outcome.measurements],
        }
        if settings.profile:
            missed = targets.pipeline_targets(found)
            keys = [k for t in missed if not t["met"] for k in t["profile"]]
            found["profiles"] = profiling.run(stack, settings, keys)
    return found


def _write(args: argparse.Namespace, results: dict[str, Any], docs: bool) -> str:
    """latest.json, latest.md, latest.png (and the docs page's block and plot); the markdown."""
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    plots = [args.out / "latest.png", *([DOCS_PLOT] if docs else [])]
    problem = report.plot(results, plots)
    markdown = report.markdown(results)
    if "fleet" in results:
        markdown += "\n\n" + fleet.markdown(results["fleet"])
    if "startup" in results:
        markdown += "\n\n" + startup.markdown(results["startup"])
    if "crossings" in results:
        markdown += "\n\n" + crossings.markdown(results["crossings"])
    if "cache" in results:
        markdown += "\n\n" + cache.markdown(results["cache"])
    if problem:
        markdown += f"\n\n{problem}\n"
    (args.out / "latest.md").write_text(markdown + "\n")
    if docs and not _update_docs(markdown):
        print(f"note: {DOCS_PAGE} has no {START} block; not updated", flush=True)
    return markdown


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    only = set(args.only or PARTS)
    # SIGTERM (nox, CI, a timeout) must unwind through the finally blocks that stop processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.perf_counter()
    command = "python -m benchmarks" + (" " + shlex.join(argv or sys.argv[1:])).rstrip()
    if "soak" in only:
        _soak(args, command.strip())
        only.discard("soak")
        if not only:
            return 0
    results: dict[str, Any] = {
        "machine": _machine(),
        "versions": _versions(),
        "command": command.strip(),
    }
    if "pipeline" in only:
        results["pipeline"] = _pipeline(args)
    if "overhead" in only:
        print("overhead: auth CPU per request (MockTransport)", flush=True)
        results["overhead"] = overhead.run(quick=args.quick)
    if "resolution" in only:
        print("resolution: default_chain, IaaS black-holed, single-flight", flush=True)
        results["resolution"] = resolution.run(quick=args.quick)
    if "fleet" in only:
        print("fleet: 8 processes, with and without a Redis token store", flush=True)
        results["fleet"] = fleet.run(quick=args.quick, repositories=args.repositories)
    if "startup" in only:
        print("startup: fresh interpreters importing asyncauth and httpx", flush=True)
        results["startup"] = startup.run(quick=args.quick)
    if "crossings" in only:
        print("crossings: the asyncauth modules one request runs through, per driver", flush=True)
        everything = list(crossings.DRIVERS)
        results["crossings"] = crossings.run(
            {crossings.HERE: None}, everything, ["asyncio", "trio"]
        )
    if "cache" in only:
        print("cache: R repositories (20,000), two passes on one client", flush=True)
        results["cache"] = cache.run(quick=args.quick)
    results["seconds"] = time.perf_counter() - started
    results["machine"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results["targets"] = targets.targets(results)
    docs = not args.no_docs and not args.quick and args.out == RESULTS and only == set(PARTS)
    print(_write(args, results, docs))
    print(f"\nwritten: {args.out}/latest.json, latest.md, latest.png ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
