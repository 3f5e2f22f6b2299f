"""A fleet: eight processes over R repositories, with and without a shared Redis store.

* **Fleet throughput and token requests.** Eight worker processes (``tests/_fleet_worker.py``:
  async clients under asyncio and trio, sync clients) start, wait at a gate, and are let go at
  once; each GETs every manifest of the stack's R repositories in its own order, cold (a new
  ``RegistryAuth`` per process). Measured: the time from the gate to the last worker done, the
  requests per second of the whole fleet, and the token requests the issuer counted (R with the
  store, 8 x R without). Rounds alternate the two configurations.
* **Warm-path cost of a configured store.** The overhead benchmark's in-process measurement
  (``httpx.MockTransport``, warm caches, CPU time per request) with ``token_store=`` a
  ``RedisTokenStore`` on a real Redis and with none: a warm request must never reach the store,
  so the two should be within noise.
"""

from __future__ import annotations

import base64
import json
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

import asyncauth

from . import overhead
from .stack import Stack
from .stack import running_stack as _running_stack

WORKERS = ("asyncio", "trio", "sync", "asyncio", "trio", "sync", "asyncio", "trio")


def _fleet_round(stack: Stack, redis_url: str | None, repositories: int) -> dict[str, Any]:
    from tests._fleet import finish, start_fleet, store_environ

    urls = [f"{stack.registry_url}/v2/{name}/manifests/v1" for name in stack.repositories]
    urls = urls[:repositories]
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    environ = store_environ(redis_url, key)
    environ.update(FLEET_USER=stack.username, FLEET_PASSWORD=stack.password)
    specs = []
    for index, mode in enumerate(WORKERS):
        order = urls[index:] + urls[:index]
        specs.append({"mode": mode, "phases": [[], order], "concurrency": 16})
    workers = start_fleet(specs, environ)
    try:
        for worker in workers:
            worker.next()  # at the gate: started, nothing asked yet
    except BaseException:
        for worker in workers:
            worker.close()
        raise
    stack.issuer.reset()
    gate = time.time()
    for worker in workers:
        worker.go()
    results = finish(workers)
    failures = sum(len(result["failures"]) for result in results)
    seconds = max(float(result["finished_at"]) for result in results) - gate
    requests = len(WORKERS) * len(urls)
    return {
        "store": redis_url is not None,
        "seconds": seconds,
        "rps": requests / seconds,
        "token_requests": stack.issuer.stats()["total"],
        "failures": failures,
        "store_warnings": sum(int(result["store_failed"]) for result in results),
    }


async def _warm_pass(store: asyncauth.TokenStore | None, requests: int, concurrency: int) -> float:
    """CPU seconds per warm request (see :mod:`benchmarks.overhead`), with or without a store."""
    chain = asyncauth.Chain([asyncauth.FlagsResolver(username="u", password="p")])
    auth = asyncauth.RegistryAuth(
        chain, headers={}, token_store=store if store is not None else False
    )
    urls = [f"{overhead.REGISTRY}/v2/team/app{i}/manifests/v1" for i in range(100)]
    transport = httpx.MockTransport(overhead._handler)
    async with httpx.AsyncClient(auth=auth, transport=transport) as client:
        for url in urls:
            await client.get(url)
        per_task = requests // concurrency

        async def worker(offset: int) -> None:
            for i in range(per_task):
                await client.get(urls[(offset + i) % len(urls)])

        started = time.process_time()
        async with anyio.create_task_group() as tg:
            for k in range(concurrency):
                tg.start_soon(worker, k)
        return (time.process_time() - started) / (per_task * concurrency)


def _warm_path(redis_url: str, *, quick: bool) -> dict[str, Any]:
    rounds, requests = (2, 2_000) if quick else (5, 3_000)
    key = secrets.token_bytes(32)
    measured: dict[str, dict[str, list[float]]] = {}
    for _ in range(rounds):
        for backend in ("asyncio", "trio"):
            for mode in ("none", "redis"):
                store = asyncauth.RedisTokenStore(redis_url, encryption_key=key)
                chosen = store if mode == "redis" else None
                seconds = anyio.run(_warm_pass, chosen, requests, 256, backend=backend)
                anyio.run(store.aclose, backend=backend)
                key_name = f"{backend}:C=256"
                measured.setdefault(key_name, {}).setdefault(mode, []).append(seconds * 1e6)
    summary: dict[str, Any] = {"rounds": rounds, "requests": requests}
    for name, modes in measured.items():
        none, redis = statistics.median(modes["none"]), statistics.median(modes["redis"])
        spread = max(modes["none"]) - min(modes["none"])
        summary[name] = {"none_us": none, "redis_us": redis, "added_us": redis - none,
                         "noise_us": spread}  # fmt: skip
    return summary


def run(*, quick: bool = False, repositories: int | None = None) -> dict[str, Any]:
    from tests.peers.redis import RedisServer

    repositories = repositories or (30 if quick else 100)
    rounds = 1 if quick else 2
    work = Path(tempfile.mkdtemp(prefix="asyncauth-bench-fleet-"))
    rows: list[dict[str, Any]] = []
    with RedisServer(work / "redis") as redis, _running_stack(repositories) as stack:
        for _ in range(rounds):
            for url in (None, redis.url):
                redis.cli("FLUSHALL")
                row = _fleet_round(stack, url, repositories)
                print(f"  fleet store={row['store']}: {json.dumps(row)}", flush=True)
                rows.append(row)
        warm = _warm_path(redis.url, quick=quick)
    summary: dict[str, Any] = {"workers": len(WORKERS), "repositories": repositories}
    for store in (False, True):
        mine = [row for row in rows if row["store"] is store]
        summary["store" if store else "no_store"] = {
            "seconds": statistics.median(row["seconds"] for row in mine),
            "rps": statistics.median(row["rps"] for row in mine),
            "token_requests": [row["token_requests"] for row in mine],
            "failures": sum(row["failures"] for row in mine),
            "store_warnings": sum(row["store_warnings"] for row in mine),
        }
    summary["warm_path"] = warm
    summary["rounds"] = rows
    return summary


def markdown(fleet: dict[str, Any]) -> str:
    """The fleet section of the results page."""
    n, r = fleet["workers"], fleet["repositories"]
    lines = [
        f"### Fleet: {n} processes, R={r} repositories, cold, with and without Redis",
        "",
        "| store | token requests | fleet seconds (gate to last done) | fleet req/s | failures "
        "| store outages (warnings) |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (("no_store", "none"), ("store", "RedisTokenStore")):
        row = fleet[key]
        tokens = ", ".join(str(t) for t in row["token_requests"])
        lines.append(
            f"| {label} | {tokens} | {row['seconds']:.2f} | {row['rps']:,.0f} | {row['failures']} |"
        )
    lines += ["", "Warm path, CPU per request (MockTransport, C=256, median of rounds):", ""]
    lines += ["| loop | no store | RedisTokenStore | added | spread of no store |"]
    lines += ["|---|---|---|---|---|"]
    for name, value in fleet["warm_path"].items():
        if isinstance(value, dict):
            lines.append(
                f"| {name} | {value['none_us']:.1f} us | {value['redis_us']:.1f} us | "
                f"{value['added_us']:+.1f} us | {value['noise_us']:.1f} us |"
            )
    return "\n".join(lines)
