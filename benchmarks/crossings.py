"""How many asyncauth modules one request's code runs through, cold and warm, per driver.

    python -m benchmarks.crossings                            # this tree (or PYTHONPATH's)
    python -m benchmarks.crossings --tree before=/path/to/old/tree -v
    PYTHONPATH=/path/to/old/tree python -m benchmarks.crossings
    python -m benchmarks --only crossings                     # the same, as a part of a run

Issue 16 asks that "a single request's path through the handshake crosses fewer modules than
today". This counts them. The real registry (Debian ``docker-registry`` in token mode) and the
strict token issuer of the test suite run as for the pipeline (:mod:`benchmarks.stack`, two
repositories); each driver runs in a fresh interpreter (``benchmarks/_crossings_child.py``) that
sends three manifest GETs on one client, each recorded on its own:

* *cold*: the client's first request: the 401 that teaches the challenge, the credential from
  the chain, the token request, the retry;
* *warm*: the same request again: the token is cached;
* *new repository*: a request to a second repository: the challenge is known, a token is
  fetched for the new scope.

A module counts when its code runs during the request (a function called or a coroutine resumed,
in any thread: the sync driver's background loop included; a method ``dataclasses`` generated
counts for its class's module); what runs while a module is being imported does not (that is
import, not the path; the modules first imported during the request are listed with ``-v``).
In parentheses: the count without the modules of credential resolution (the chain and its
sources), which run on a cold request whatever the handshake's shape.

Drivers: ``httpx.AsyncClient(auth=RegistryAuth())``, ``httpx.Client(auth=RegistryAuth())``,
``httpx2.AsyncClient(auth=asyncauth.httpx2.RegistryAuth())``, the aiohttp middleware, and
``asyncauth.create_client()``; the async httpx ones under asyncio and trio.

Trees: the child imports ``asyncauth`` from its ``PYTHONPATH`` first, so ``--tree NAME=PATH`` (a
checkout with an ``asyncauth`` package) measures that tree's library with this tree's harness,
and so does running with ``PYTHONPATH`` set to another checkout (the row says which package
ran). Counts are exact (no timing): one run is the result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .stack import ROOT, Stack, running_stack

CHILD = Path(__file__).with_name("_crossings_child.py")
HERE = "here"
REQUESTS = ("cold", "warm", "new_repository")
DRIVERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "httpx": ("httpx.AsyncClient(auth=RegistryAuth())", ("asyncio", "trio")),
    "httpx-sync": ("httpx.Client(auth=RegistryAuth())", ("sync",)),
    "httpx2": ("httpx2.AsyncClient(auth=asyncauth.httpx2.RegistryAuth())", ("asyncio", "trio")),
    "aiohttp": ("aiohttp.ClientSession(middlewares=(RegistryAuthMiddleware(),))", ("asyncio",)),
    "create_client": ("asyncauth.create_client()", ("asyncio", "trio")),
}
"""Driver -> (what it is, the event loops it runs under)."""
CREDENTIAL_SIDE = (
    "asyncauth._chain",
    "asyncauth._resolution",
    "asyncauth._defaults",
    "asyncauth._sources",
)
"""Modules of credential resolution (the chain and its sources): the count in parentheses
leaves them out, leaving the handshake, its caches and the driver."""


def _env(stack: Stack, tree: Path | None) -> dict[str, str]:
    """The child's environment: nothing of this machine's registry configuration, no proxy;
    ``PYTHONPATH`` the tree (else the caller's, then this repository as a fallback)."""
    home = stack.workdir / "home"
    home.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
        and not k.startswith(("IMGPKG_", "DOCKER_", "REGISTRY_AUTH"))
    }
    if tree is not None:
        path = str(tree.resolve())
    else:
        path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p)
    return env | {"HOME": str(home), "NO_PROXY": "*", "PYTHONPATH": path}


def _one(stack: Stack, tree: Path | None, driver: str, backend: str) -> dict[str, Any]:
    """One driver in a fresh interpreter: its answer (see ``_crossings_child.py``)."""
    job = {
        "driver": driver,
        "backend": backend,
        "registry_url": stack.registry_url,
        "repositories": stack.repositories[:2],
        "tag": "v1",
        "digest": stack.manifest_digest,
        "username": stack.username,
        "password": stack.password,
        "home": str(stack.workdir / "home"),
    }
    done = subprocess.run(
        [sys.executable, str(CHILD)],
        input=json.dumps(job) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(stack, tree),
        cwd=stack.workdir,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"failed": f"exit {done.returncode}: {done.stderr.strip()[-400:]}"}
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer


def run(trees: dict[str, Path | None], drivers: list[str], backends: list[str]) -> dict[str, Any]:
    """``{"rows": [{tree, driver, backend, asyncauth_from, requests | failed}]}``."""
    rows = []
    with running_stack(2) as stack:
        for name, tree in trees.items():
            for driver in drivers:
                for backend in DRIVERS[driver][1]:
                    if backend != "sync" and backend not in backends:
                        continue
                    answer = _one(stack, tree, driver, backend)
                    rows.append({"tree": name, "driver": driver, "backend": backend, **answer})
                    print(f"  {name} {driver} {backend}: {_counts(rows[-1])}", flush=True)
    return {"rows": rows, "trees": {k: str(v) if v else None for k, v in trees.items()}}


def _counts(row: dict[str, Any]) -> str:
    if "failed" in row:
        return f"failed: {row['failed'][:200]}"
    found = row["requests"]
    return ", ".join(f"{k} {len(found[k]['modules'])}" for k in REQUESTS if k in found)


def _name(module: str) -> str:
    return module.removeprefix("asyncauth.")


def _cell(modules: list[str]) -> str:
    """``all (without credential resolution)``."""
    handshake = [m for m in modules if not m.startswith(CREDENTIAL_SIDE)]
    return f"{len(modules)} ({len(handshake)})"


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| tree | driver | loop | cold | warm | new repository | functions: cold, warm, new |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        label = f"| {r['tree']} | {DRIVERS[r['driver']][0]} | {r['backend']} |"
        if "failed" in r:
            lines.append(f"{label} failed: {r['failed'][:160]} | | | |")
            continue
        found = r["requests"]
        modules = " | ".join(_cell(found[k]["modules"]) for k in REQUESTS)
        functions = ", ".join(str(len(found[k]["functions"])) for k in REQUESTS)
        lines.append(f"{label} {modules} | {functions} |")
    return lines


def _against(rows: list[dict[str, Any]], other: str) -> list[str]:
    """Per driver: this tree's counts minus ``other``'s, and whether both cold and warm fell."""
    mine = {(r["driver"], r["backend"]): r for r in rows if r["tree"] == HERE and "requests" in r}
    theirs = {(r["driver"], r["backend"]): r for r in rows if r["tree"] == other}
    lines = [
        f"| driver | loop | cold: {HERE} - {other} | warm | new repository "
        "| fewer, cold and warm |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in mine.items():
        them = theirs.get(key, {}).get("requests")
        if them is None:
            continue
        deltas = [len(r["requests"][k]["modules"]) - len(them[k]["modules"]) for k in REQUESTS]
        fewer = "yes" if deltas[0] < 0 and deltas[1] < 0 else "no"
        cells = " | ".join(f"{d:+d}" for d in deltas)
        lines.append(f"| {DRIVERS[key[0]][0]} | {key[1]} | {cells} | {fewer} |")
    return lines


def _listing(rows: list[dict[str, Any]]) -> list[str]:
    """``-v``: the modules of each request, and those first imported during it."""
    lines = []
    for r in rows:
        if "requests" not in r:
            continue
        lines.append(f"**{r['tree']}, {DRIVERS[r['driver']][0]}, {r['backend']}**")
        lines.append("")
        for k in REQUESTS:
            found = r["requests"][k]
            names = ", ".join(_name(m) for m in found["modules"])
            lines.append(f"- {k} ({len(found['modules'])}): {names}")
            if found["imported"]:
                imported = ", ".join(_name(m) for m in found["imported"])
                lines.append(f"  - first imported during it: {imported}")
        lines.append("")
    return lines


def markdown(results: dict[str, Any], *, verbose: bool = False) -> str:
    rows = results["rows"]
    ran = {r["tree"]: r.get("asyncauth_from") for r in rows}
    lines = [
        "### Modules one request crosses (benchmarks/crossings.py)",
        "",
        "Distinct asyncauth modules whose code ran during one manifest GET against the real "
        "registry in token mode (a fresh client per driver, in a fresh interpreter): *cold* is "
        "its first request (401, credential, token), *warm* the same request again, *new "
        "repository* a second repository's (a new token); in parentheses, without the modules of "
        "credential resolution (the chain and its sources). Import-time code is not counted. "
        "asyncauth from: " + "; ".join(f"{k} = `{v}`" for k, v in ran.items()) + ".",
        "",
        *_table(rows),
    ]
    for other in [t for t in ran if t != HERE] if HERE in ran else []:
        lines += ["", *_against(rows, other)]
    if verbose:
        lines += ["", *_listing(rows)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.crossings", description=__doc__)
    parser.add_argument(
        "--tree", action="append", default=[], help="NAME=PATH: also measure that checkout"
    )
    parser.add_argument("--driver", action="append", choices=tuple(DRIVERS), help="default: all")
    parser.add_argument(
        "--backend", action="append", choices=("asyncio", "trio"), help="default: both"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="list the modules")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    trees: dict[str, Path | None] = {HERE: None}
    for spec in args.tree:
        name, _, path = spec.partition("=")
        if not path or name == HERE or not (Path(path) / "asyncauth").is_dir():
            parser.error(f"--tree {spec}: NAME=PATH of a tree with an asyncauth package")
        trees[name] = Path(path)
    results = run(trees, args.driver or list(DRIVERS), args.backend or ["asyncio", "trio"])
    table = markdown(results, verbose=args.verbose)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "crossings.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "crossings.md").write_text(markdown(results, verbose=True) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
