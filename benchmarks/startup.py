"""What starting to use asyncauth costs: wall time of a fresh interpreter that imports it.

A CLI, a CI step or a serverless function pays the import on every start. Each row is a new
``python -c ...`` process, timed from spawn to exit, rounds interleaved so that the neighbours of
a shared machine weigh on every row alike; the ratio against ``import httpx`` is the median of
per-round ratios. The package's bytecode is compiled first, as an installed wheel has it (a
source tree run with ``PYTHONDONTWRITEBYTECODE`` would time the compiler instead).
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncauth

ROWS = {
    "python": ["-c", "pass"],
    "import httpx": ["-c", "import httpx"],
    "import asyncauth": ["-c", "import asyncauth"],
    "httpx.AsyncClient()": ["-c", "import httpx; httpx.AsyncClient()"],
    "asyncauth.create_client()": ["-c", "import asyncauth; asyncauth.create_client()"],
    "asyncauth --version": ["-m", "asyncauth", "--version"],
}
"""Label -> the interpreter's arguments."""
PAIRS = {"import asyncauth": "import httpx", "asyncauth.create_client()": "httpx.AsyncClient()"}
TARGET = 1.2
"""``import asyncauth`` at most this many times ``import httpx`` (issue 18)."""


def _seconds(arguments: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, *arguments],
        env=env,
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=60,
    )
    return time.perf_counter() - started


def run(*, quick: bool = False) -> dict[str, Any]:
    rounds = 5 if quick else 20
    compileall.compile_dir(Path(asyncauth.__file__).parent, quiet=1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times: dict[str, list[float]] = {label: [] for label in ROWS}
    for arguments in ROWS.values():  # warm-up: the page cache, not the measurement
        _seconds(arguments, env)
    for _ in range(rounds):
        for label, arguments in ROWS.items():
            times[label].append(_seconds(arguments, env))
    rows = {
        label: {"median_ms": statistics.median(found) * 1000, "min_ms": min(found) * 1000}
        for label, found in times.items()
    }
    ratios = {
        ours: statistics.median(a / b for a, b in zip(times[ours], times[ref], strict=True))
        for ours, ref in PAIRS.items()
    }
    return {"rounds": rounds, "rows": rows, "ratios": ratios}


def target(startup: dict[str, Any]) -> dict[str, Any]:
    """The row for the targets table (measured, not asserted by the suite)."""
    ratio = startup["ratios"]["import asyncauth"]
    rows = startup["rows"]
    measured = (
        f"{ratio:.2f}x: {rows['import asyncauth']['median_ms']:.0f} ms vs "
        f"{rows['import httpx']['median_ms']:.0f} ms (median of {startup['rounds']} rounds)"
    )
    return {
        "target": f"import asyncauth <= {TARGET}x import httpx (wall time, fresh interpreter)",
        "measured": measured,
        "met": ratio <= TARGET,
        "profile": [],
    }


def markdown(startup: dict[str, Any]) -> str:
    """The start-up section of the results page."""
    lines = [
        f"### Start-up: a fresh interpreter, median of {startup['rounds']} interleaved rounds",
        "",
        "| process | median | fastest | ratio (per-round median) |",
        "|---|---|---|---|",
    ]
    for label, row in startup["rows"].items():
        ratio = startup["ratios"].get(label)
        against = f"{ratio:.2f}x {PAIRS[label]}" if ratio is not None else ""
        lines.append(
            f"| `{label}` | {row['median_ms']:.0f} ms | {row['min_ms']:.0f} ms | {against} |"
        )
    return "\n".join(lines)
