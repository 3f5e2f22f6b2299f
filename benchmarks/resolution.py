"""How much does deciding *which* credential to send cost?

Measured: the default chain (env + options, IaaS off) resolving a Docker Hub reference with 50
``IMGPKG_REGISTRY_*`` sets in the environment, one resolve at a time (latency) and 10,000 at
once (throughput), on asyncio and on trio. Rounds are interleaved and the median is reported,
because these machines are shared and noisy.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import anyio

from asyncauth import default_chain


def _environ(sets: int = 50) -> dict[str, str]:
    environ = {"IMGPKG_ENABLE_IAAS_AUTH": "false"}
    for i in range(sets):
        host = f"*.team{i}.example.com" if i % 2 else f"registry{i}.example.com"
        environ |= {
            f"IMGPKG_REGISTRY_HOSTNAME_{i}": host,
            f"IMGPKG_REGISTRY_USERNAME_{i}": f"user{i}",
            f"IMGPKG_REGISTRY_PASSWORD_{i}": f"password{i}",
        }
    return environ


async def _latency(samples: int) -> list[float]:
    chain = default_chain(environ=_environ())
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        await chain.resolve("alpine")
        out.append(time.perf_counter() - start)
    return out


async def _throughput(count: int) -> float:
    chain = default_chain(environ=_environ())
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(chain.resolve, f"registry{(i % 25) * 2}.example.com/app{i % 7}")
    return count / (time.perf_counter() - start)


def run(*, quick: bool = False) -> dict[str, Any]:
    rounds, samples, count = (3, 200, 1_000) if quick else (5, 1_000, 10_000)
    results: dict[str, dict[str, list[float]]] = {
        backend: {"latency_ms": [], "throughput": []} for backend in ("asyncio", "trio")
    }
    for _ in range(rounds):
        for backend in ("asyncio", "trio"):  # interleaved, so drift hits both alike
            latency = anyio.run(_latency, samples, backend=backend)
            results[backend]["latency_ms"].append(statistics.median(latency) * 1000)
            results[backend]["throughput"].append(anyio.run(_throughput, count, backend=backend))
    summary: dict[str, Any] = {"rounds": rounds, "samples": samples, "concurrent": count}
    for backend, data in results.items():
        summary[backend] = {
            "median_latency_ms": statistics.median(data["latency_ms"]),
            "latency_spread_ms": [min(data["latency_ms"]), max(data["latency_ms"])],
            "median_resolves_per_s": statistics.median(data["throughput"]),
            "throughput_spread": [min(data["throughput"]), max(data["throughput"])],
        }
    return summary


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        "### Resolution (default chain, env + options, 50 env sets, Docker Hub reference)",
        "",
        f"{summary['rounds']} interleaved rounds; latency = median of {summary['samples']} "
        f"sequential resolves; throughput = {summary['concurrent']:,} concurrent resolves.",
        "",
        "| backend | median latency | spread | resolves/s (median) | spread |",
        "|---|---|---|---|---|",
    ]
    for backend in ("asyncio", "trio"):
        row = summary[backend]
        lo, hi = row["latency_spread_ms"]
        tlo, thi = row["throughput_spread"]
        lines.append(
            f"| {backend} | {row['median_latency_ms']:.3f} ms | {lo:.3f} to {hi:.3f} ms "
            f"| {row['median_resolves_per_s']:,.0f} | {tlo:,.0f} to {thi:,.0f} |"
        )
    return "\n".join(lines)
