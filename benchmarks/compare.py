"""Before and after: the pipeline's jobs with asyncauth from other trees, interleaved, one registry.

    python -m benchmarks.compare --tree before=/work/before [--tree main=/path] [--rounds 4]

Each tree named gets a worker of its own whose working directory holds a link to that tree's
``asyncauth`` (first on the worker's ``sys.path``; this repository's ``benchmarks`` comes through
``PYTHONPATH``), so every tree runs exactly the same harness, jobs and clients against the same
registry in the same sitting; only the library differs. Round *r* runs every series once per
tree (trees in an order rotated by *r*). Reported: per series and tree, the cold pass's req/s and
the warm pass's CPU per request, and their ratios to this tree's (medians of per-round ratios);
per tree, each asyncauth series over its reference (:data:`PAIRS`: the middleware over the
static-header middleware and over the hand-written handshake, ``create_client()`` over its
transport's floor; asyncauth/static header on each transport). The reference series run the
same code in every tree: their ratios show what the noise alone does.

The other trees must have the public API the clients use (``default_chain(environ=, username=,
password=)``, ``RegistryAuth``, ``asyncauth.httpx2.RegistryAuth``, ``create_client``,
``asyncauth.aiohttp.RegistryAuthMiddleware``). Results go to ``compare.json`` and
``compare.md`` beside the other results.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from . import jobs, pipeline
from .stack import ROOT, running_stack

HERE = "here"
SERIES = (
    pipeline.MIDDLEWARE,
    pipeline.STATIC,
    pipeline.BY_HAND,
    "create_client:aiohttp:asyncio",
    "create_client:httpx2:trio",
    "httpx-aiohttp:floor:asyncio",
    "httpx-aiohttp:asyncauth:asyncio",
    "httpx2:floor:trio",
    "httpx2:asyncauth:trio",
    "httpx2:floor:asyncio",
    "httpx2:asyncauth:asyncio",
)


def _paired(found: dict[str, dict[int, tuple[float, float]]], a: str, b: str, index: int) -> Any:
    ratios = [v[index] / found[b][r][index] for r, v in found.get(a, {}).items() if r in found[b]]
    return statistics.median(ratios) if ratios else None


def run(trees: dict[str, Path], keys: list[str], settings: pipeline.Settings) -> dict[str, Any]:
    """``{series: {tree: {round: (cold req/s, warm CPU µs)}}}`` and the ratios."""
    plan = {s.key: s for s in pipeline.plan(settings)}
    found: dict[str, dict[str, dict[int, tuple[float, float]]]] = {}
    failed: list[str] = []
    with running_stack(settings.repositories) as stack:
        base = stack.job_base()
        workers: dict[str, jobs.Worker] = {}
        try:
            for name, tree in trees.items():
                home = stack.workdir / f"tree-{name}"
                home.mkdir()
                (home / "asyncauth").symlink_to(tree.resolve() / "asyncauth")
                workers[name] = jobs.Worker(stack, stack.workdir / f"{name}.log", cwd=home)
            names = list(trees)
            for round_ in range(settings.rounds):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for key in keys:
                    for name in order:
                        job = pipeline.job_of(plan[key], settings, base, pipeline.HEADLINE)
                        m = jobs.measure(stack, key, job, round_, workers[name])
                        if "failed" in m.result:
                            failed.append(f"{key} {name}: {m.result['failed'][:200]}")
                            continue
                        ran = m.result.get("asyncauth_from")
                        if ran != str((trees[name] / "asyncauth").resolve()):
                            raise RuntimeError(f"{name}: the worker ran asyncauth from {ran}")
                        cold, warm = m.result["passes"][0], m.result["passes"][-1]
                        by_tree = found.setdefault(key, {}).setdefault(name, {})
                        by_tree[round_] = (cold["rps"], warm["cpu_us"])
                print(f"  round {round_ + 1}/{settings.rounds} done", flush=True)
        finally:
            for worker in workers.values():
                worker.close()
    return {"series": found, "failed": failed}


PAIRS = (
    (pipeline.MIDDLEWARE, pipeline.STATIC),
    (pipeline.MIDDLEWARE, pipeline.BY_HAND),
    ("create_client:aiohttp:asyncio", "httpx-aiohttp:floor:asyncio"),
    ("create_client:httpx2:trio", "httpx2:floor:trio"),
)
"""Ratios within each tree besides asyncauth/static header per transport (issue 16's)."""


def _pairs(found: dict[str, Any], trees: dict[str, str]) -> list[str]:
    """Per tree: each asyncauth series over its reference, both measured in the same round."""
    pairs = [(k, k.replace(":asyncauth:", ":floor:")) for k in found if ":asyncauth:" in k]
    lines = [
        "| series / reference | tree | cold req/s ratio | warm CPU ratio |",
        "|---|---|---|---|",
    ]
    for ours, reference in [*PAIRS, *pairs]:
        for name in trees:
            pair = {
                "a": found.get(ours, {}).get(name, {}),
                "f": found.get(reference, {}).get(name, {}),
            }
            r_rps, r_cpu = _paired(pair, "a", "f", 0), _paired(pair, "a", "f", 1)
            if r_rps is not None and r_cpu is not None:
                lines.append(f"| {ours} / {reference} | {name} | {r_rps:.2f} | {r_cpu:.3f} |")
    return lines


def markdown(results: dict[str, Any], trees: dict[str, str]) -> str:
    found = results["series"]
    lines = [
        f"Trees: {', '.join(f'{k} = `{v}`' for k, v in trees.items())}. "
        f"{results['rounds']} interleaved rounds, C={pipeline.HEADLINE}, "
        f"R={results['repositories']}, {results['requests']} requests per pass; load average "
        f"{results['loadavg']} at the start, {results['loadavg_end']} at the end.",
        "",
        "| series | tree | cold req/s | warm CPU µs/request | req/s / here | CPU / here |",
        "|---|---|---|---|---|---|",
    ]
    for key, by_tree in found.items():
        for name, rounds in by_tree.items():
            rps = statistics.median(v[0] for v in rounds.values())
            cpu = statistics.median(v[1] for v in rounds.values())
            mine = {name: rounds, HERE: by_tree.get(HERE, {})}
            r_rps, r_cpu = _paired(mine, name, HERE, 0), _paired(mine, name, HERE, 1)
            lines.append(
                f"| {key} | {name} | {rps:,.0f} | {cpu:,.0f} | "
                f"{'-' if r_rps is None else f'{r_rps:.2f}'} | "
                f"{'-' if r_cpu is None else f'{r_cpu:.3f}'} |"
            )
    lines += ["", *_pairs(found, trees)]
    if results["failed"]:
        lines += ["", "Failed: " + "; ".join(results["failed"][:5])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    parser.add_argument("--tree", action="append", required=True, help="NAME=PATH (repeatable)")
    parser.add_argument("--series", help=f"comma-separated (default: {','.join(SERIES)})")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=1200)
    parser.add_argument("--seconds", type=float, default=2.5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    trees = {HERE: ROOT}
    for spec in args.tree:
        name, _, path = spec.partition("=")
        if not path or name == HERE or not (Path(path) / "asyncauth").is_dir():
            parser.error(f"--tree {spec}: NAME=PATH of a tree with an asyncauth package")
        trees[name] = Path(path)
    keys = args.series.split(",") if args.series else list(SERIES)
    settings = pipeline.Settings(
        rounds=args.rounds, requests=args.requests, seconds=args.seconds, profile=False
    )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    started = time.perf_counter()
    results = run(trees, keys, settings)
    results |= {
        "rounds": settings.rounds,
        "repositories": settings.repositories,
        "requests": settings.requests,
        "loadavg": load,
        "loadavg_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "seconds": time.perf_counter() - started,
        "trees": {k: str(v) for k, v in trees.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results, results["trees"])
    (args.out / "compare.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
