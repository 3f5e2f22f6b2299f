"""Where a client's CPU goes: py-spy on one more run of the clients behind a missed target.

After the rounds, each client named by a missed target runs its job once more (both passes, a
fresh worker child as always) with ``py-spy record`` attached to the child from the moment its
first pass starts until it ends. py-spy samples only threads holding the GIL or running (idle
ones are left out, and ``--gil`` keeps only the thread holding the GIL), so the samples are the
Python CPU time that the warm-CPU-per-request number counts.
It pauses the process for each sample (``--nonblocking`` gives torn stacks), so these runs are
not part of the measurements.

A summary per client is kept: the share of samples by package of the innermost frame (own
time: ``httpx``, ``httpcore2``, ``aiohttp``, ``asyncio``, ``asyncauth``...), the share of
samples with an ``asyncauth`` frame anywhere on the stack (inclusive), and the functions with the
most own time.

py-spy comes from PyPI (the bench session installs it) and needs to ptrace the worker: root, or
``kernel.yama.ptrace_scope`` 0 or 1 (the worker is our child's child).
"""

from __future__ import annotations

import re
import subprocess
import sysconfig
from collections import Counter
from pathlib import Path
from typing import Any

from . import jobs, pipeline
from .stack import Stack

RATE = 200
"""Samples per second (py-spy pauses the process for each)."""
LONGER = 2
"""A profiled job runs this many times the requests (and window) of a measured one: samples."""
MOST = 4
"""Profiles per run at most (each is one more job of its client)."""
TOP = 12
_BOOKKEEPING = "Outcome._begin (benchmarks/passes.py"
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    """The py-spy of this environment (a PyPI package the bench session installs, not a
    Debian program: it is not looked up on the ``PATH``)."""
    here = Path(sysconfig.get_path("scripts")) / "py-spy"
    return str(here) if here.exists() else None


def package_of(file: str) -> str:
    """``httpx/_client.py`` -> ``httpx``; ``<string>`` -> ``other``; asyncauth by subpackage
    (``asyncauth/_client/routes.py`` -> ``asyncauth._client``), because its transports
    carry the whole request while its handshake only wraps it."""
    if file.startswith("<") or not file:
        return "other"
    parts = file.removesuffix(".py").split("/")
    if parts[0] == "asyncauth" and len(parts) > 2:
        return f"asyncauth.{parts[1]}"
    return parts[0]


def summarise(raw: str) -> dict[str, Any]:
    """Own time by package and function, and asyncauth's inclusive share, from py-spy's
    ``raw`` (collapsed stacks: ``frame;frame;... count`` per line, innermost last)."""
    packages: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        if _BOOKKEEPING in stack:
            continue  # the collection before a pass: not the client's work
        frames = [_FRAME.match(f) for f in stack.split(";")]
        parsed = [(m["function"], m["file"]) for m in frames if m is not None]
        if not parsed:
            continue
        total += count
        function, file = parsed[-1]
        packages[package_of(file)] += count
        functions[f"{function} ({file})"] += count
        for package in {package_of(f) for _, f in parsed}:
            inclusive[package] += count

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[name, n / total] for name, n in counter.most_common(TOP)] if total else []

    everywhere = {k for k, n in inclusive.items() if n >= 0.98 * total}  # the loop, the harness
    for name in everywhere:
        del inclusive[name]
    return {
        "samples": total,
        "own_by_package": share(packages),
        "own_by_function": share(functions),
        "inclusive": {k: v / total for k, v in inclusive.most_common(TOP)} if total else {},
    }


def profile_series(
    stack: Stack, series: pipeline.Series, settings: pipeline.Settings, worker: jobs.Worker
) -> dict[str, Any]:
    """One more run of ``series`` with py-spy attached; its summary (or why there is none)."""
    spy = py_spy()
    if spy is None:
        return {"failed": "py-spy is not installed (nox -s bench installs it)"}
    out = stack.workdir / f"profile-{series.key.replace(':', '-')}.txt"
    recorder: list[subprocess.Popen[bytes]] = []

    def attach(pid: int) -> None:
        argv = [spy, "record", "--pid", str(pid), "--rate", str(RATE), "--gil", "--format", "raw"]
        recorder.append(
            subprocess.Popen(
                [*argv, "--output", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )

    job = pipeline.job_of(series, settings, stack.job_base(), pipeline.HEADLINE)
    job["requests"] *= LONGER
    job["seconds"] *= LONGER
    measured = jobs.measure(stack, series.key, job, -1, worker, on_ready=attach)
    if not recorder:
        return {"failed": measured.result.get("failed", "the job did not start")}
    try:
        _, errors = recorder[0].communicate(timeout=30)  # py-spy ends with the child
    except subprocess.TimeoutExpired:
        recorder[0].kill()
        _, errors = recorder[0].communicate()
    if not out.exists():
        return {"failed": f"py-spy wrote nothing: {errors.decode(errors='replace')[-300:]}"}
    summary = summarise(out.read_text(errors="replace"))
    if "passes" in measured.result:
        summary["warm_cpu_us_under_py_spy"] = measured.result["passes"][-1].get("cpu_us")
    return summary


def run(
    stack: Stack, settings: pipeline.Settings, keys: list[str], progress: Any = print
) -> dict[str, Any]:
    """Profiles of the series ``keys`` (each once), by key."""
    by_key = {s.key: s for s in pipeline.plan(settings)}
    found: dict[str, Any] = {}
    if not keys:
        return found
    logs = stack.workdir / "logs"
    logs.mkdir(exist_ok=True)
    worker = jobs.Worker(stack, logs / "profile-worker.log")
    try:
        for key in dict.fromkeys(keys):
            if key in by_key and len(found) < MOST:
                progress(f"  profiling {key} (py-spy)")
                found[key] = profile_series(stack, by_key[key], settings, worker)
    finally:
        worker.close()
    return found
