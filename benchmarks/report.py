"""Markdown tables and the plot, from the numbers the harness collected (see :mod:`.targets`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .passes import DRAIN
from .pipeline import BACKENDS, HEADLINE, LIMIT, TRANSPORTS
from .targets import paired, row

Row = dict[str, Any]


def _n(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None, NaN
        return "-"
    return f"{value:,.{digits}f}"


def _spread(values: list[float] | None) -> str:
    return f"{values[0]:,.0f}-{values[1]:,.0f}" if values else "-"


def _list(values: list[Any]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _ratio(ratio: Any) -> str:
    return "-" if ratio is None else f"{ratio['median']:.2f}"


HEADER = (
    "| client | cold req/s | spread | / raw aiohttp | warm req/s | warm CPU µs/request | spread "
    "| / raw aiohttp | cold: first answer, all R answered, ms | cold p50 ms | cold p99 ms "
    "| token requests | 401s | errors | peak RSS growth MiB |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _table_row(r: Row, raw: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    cold, warm = r["cold"], r["warm"]
    name = r["label"]
    if r.get("failed"):
        name += f" **failed: {r['failed'][0][:160]}**"
    if cold["requests"] is not None and cold["requests"] < settings["requests"]:
        name += f" (window closed: {_n(cold['requests'])} of {settings['requests']:,} requests)"
    unfinished = cold["unfinished"] + warm["unfinished"]
    if unfinished:
        name += f" ({unfinished} requests unanswered {DRAIN:g} s after a window, all rounds)"
    errors = str(cold["errors"] + warm["errors"])
    samples = cold["error_samples"] or warm["error_samples"]
    if samples:
        errors += f" ({samples[0][:60]})"
    unauthorized = [a + b for a, b in zip(cold["unauthorized"], warm["unauthorized"], strict=False)]
    vs_rps = paired(raw, r["series"], LIMIT, "rps") if r["series"] != LIMIT else None
    vs_cpu = paired(raw, r["series"], LIMIT, "cpu_us") if r["series"] != LIMIT else None
    return (
        f"| {name} | {_n(cold['rps'])} | {_spread(cold['rps_spread'])} | {_ratio(vs_rps)} "
        f"| {_n(warm['rps'])} | {_n(warm['cpu_us'])} | {_spread(warm['cpu_us_spread'])} "
        f"| {_ratio(vs_cpu)} | {_n(cold.get('first_ms'))}, {_n(cold.get('everyone_ms'))} "
        f"| {_n(cold['p50_ms'], 1)} "
        f"| {_n(cold['p99_ms'], 1)} "
        f"| {_list(r['token_requests'])} | {_list(unauthorized)} | {errors} "
        f"| {_n(r.get('rss_delta_mib'), 1)} |"
    )


def _pipeline_markdown(pipeline: dict[str, Any]) -> list[str]:
    s = pipeline["settings"]
    raw = pipeline["measurements"]
    lines = [
        f"### Pipeline: manifest GETs, C={HEADLINE}, R={s['repositories']}",
        "",
        f"Registry: Debian docker-registry (distribution 2.8) in token mode, R="
        f"{s['repositories']} repositories, strict JWT issuer in its own process. "
        f"{s['rounds']} interleaved rounds. Each job is a new client in a new process: a *cold* "
        f"pass of {s['requests']:,} requests (a new `RegistryAuth` or middleware: its pass "
        "includes the 401 and the R token requests), then a *warm* pass of as many on the same "
        f"client. A pass whose {s['seconds']:g} s window closes first ends when the requests in "
        "flight have completed. *cold req/s*: the cold pass; *warm CPU µs/request*: "
        "`time.process_time` of the client's process over the warm pass per request. Medians "
        "over rounds; ratios to raw aiohttp are medians of per-round ratios. Token requests "
        "and 401s: both passes of one job together.",
        "",
        HEADER,
    ]
    for r in pipeline["rows"]:
        if r["concurrency"] == HEADLINE:
            lines.append(_table_row(r, raw, s))
    lines += [
        "",
        "### asyncauth / static header on each transport (medians of per-round ratios)",
        "",
        "| transport | loop | cold req/s: auth/floor | warm CPU per request: auth/floor |",
        "|---|---|---|---|",
    ]
    for transport in TRANSPORTS:
        for backend in BACKENDS[transport]:
            a, f = f"{transport}:asyncauth:{backend}", f"{transport}:floor:{backend}"
            rps, cpu = paired(raw, a, f, "rps"), paired(raw, a, f, "cpu_us")
            if rps or cpu:
                lines.append(
                    f"| {TRANSPORTS[transport]} | {backend} | {_ratio(rps)} | {_ratio(cpu)} |"
                )
    lines.append("")
    others = sorted({r["concurrency"] for r in pipeline["rows"]} - {HEADLINE})
    for c in others:
        lines += [f"### C={c}", "", HEADER]
        lines += [_table_row(r, raw, s) for r in pipeline["rows"] if r["concurrency"] == c]
        lines.append("")
    return lines


def _profiles_markdown(profiles: dict[str, Any], pipeline: dict[str, Any]) -> list[str]:
    lines = [
        "### Profiles of the clients behind missed targets (py-spy)",
        "",
        "One more job of each (cold and warm pass, twice as long) with `py-spy record` attached "
        "(only the thread holding the GIL, so samples are Python CPU time; the harness's own "
        "bookkeeping between passes is left out). "
        "*own*: the innermost "
        "frame's package or function; *inclusive*: samples with that package anywhere on the "
        "stack.",
        "",
    ]
    for key, p in profiles.items():
        found = row(pipeline, key)
        label = found["label"] if found else key
        if "failed" in p:
            lines += [f"**{label}**: no profile ({p['failed']})", ""]
            continue
        own = ", ".join(f"{name} {share:.0%}" for name, share in p["own_by_package"][:8])
        inclusive = p["inclusive"]
        mark = ", ".join(f"{name} {share:.0%}" for name, share in list(inclusive.items())[:8])
        lines += [
            f"**{label}** ({p['samples']:,} samples): own CPU by package: {own}. "
            f"Inclusive: {mark}.",
            "",
            "| function (own time) | share |",
            "|---|---|",
            *[f"| `{name}` | {share:.1%} |" for name, share in p["own_by_function"][:10]],
            "",
        ]
    return lines


def _floor_over_auth(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"


def _overhead_markdown(overhead: dict[str, Any]) -> list[str]:
    lines = [
        "### Auth's own CPU time per request (in-process MockTransport, warm cache)",
        "",
        f"{overhead['rounds']} rounds of {overhead['requests']:,} requests over "
        f"{overhead['repositories']} repositories; medians.",
        "",
        "| loop, C | static header, CPU µs/request | RegistryAuth, CPU µs/request "
        "| added µs | floor/auth |",
        "|---|---|---|---|---|",
    ]
    for key, r in overhead.items():
        if isinstance(r, dict):
            lines.append(
                f"| {key} | {r['floor_us']:.1f} | {r['asyncauth_us']:.1f} "
                f"| {r['added_us']:.1f} | {_floor_over_auth(r['ratio'])} |"
            )
    lines.append("")
    return lines


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m['platform']}, {m['cpus']} CPUs, Python {m['python']}, load average at "
        f"start {m.get('loadavg', '?')}, at the end {m.get('loadavg_end', '?')}; {m['when']}. "
        f"Command: `{results['command']}` ({results['seconds']:.0f} s).",
        "",
    ]
    found = results.get("targets") or []
    if found:
        lines += ["### Targets", "", "| target | measured | |", "|---|---|---|"]
        profiled = (results.get("pipeline") or {}).get("profiles") or {}
        for t in found:
            profile = ", ".join(k for k in t.get("profile") or [] if k in profiled)
            note = f" Profile below: {profile}." if profile else ""
            lines.append(
                f"| {t['target']} | {t['measured']}{note} | {'MET' if t['met'] else 'MISSED'} |"
            )
        lines.append("")
    pipeline = results.get("pipeline")
    if pipeline:
        lines += _pipeline_markdown(pipeline)
        if pipeline.get("profiles"):
            lines += _profiles_markdown(pipeline["profiles"], pipeline)
    if results.get("overhead"):
        lines += _overhead_markdown(results["overhead"])
    if results.get("resolution"):
        lines += _resolution_markdown(results["resolution"])
    return "\n".join(lines)


def _resolution_markdown(r: dict[str, Any]) -> list[str]:
    lines = [
        "### Resolution",
        "",
        f"{r['rounds']} interleaved rounds; configured timeout {r['timeout_s']:g} s.",
        "",
        "| case | asyncio | trio |",
        "|---|---|---|",
    ]
    env, hub = r["env_chain"], r["docker_hub"]
    lines.append(
        "| env chain (IaaS off, 50 env sets), latency "
        f"| {env['asyncio']['latency_ms']['median']:.3f} ms "
        f"| {env['trio']['latency_ms']['median']:.3f} ms |"
    )
    lines.append(
        f"| env chain, {env['asyncio']['concurrent']:,} concurrent resolves "
        f"| {env['asyncio']['resolves_per_s']['median']:,.0f}/s "
        f"| {env['trio']['resolves_per_s']['median']:,.0f}/s |"
    )
    lines.append(
        f"| (a) Docker Hub, IaaS on, fresh chain | {hub['asyncio']['cold_ms']['median']:.2f} ms "
        f"| {hub['trio']['cold_ms']['median']:.2f} ms |"
    )
    lines.append(
        f"| (a) Docker Hub, IaaS on, same chain | {hub['asyncio']['warm_ms']['median']:.2f} ms "
        f"| {hub['trio']['warm_ms']['median']:.2f} ms |"
    )
    lines.append(
        f"| (a) network connections / transport requests "
        f"| {hub['asyncio']['network_connections']} / {hub['asyncio']['transport_requests']} "
        f"| {hub['trio']['network_connections']} / {hub['trio']['transport_requests']} |"
    )
    return [*lines, *_resolution_waits(r), ""]


def _resolution_waits(r: dict[str, Any]) -> list[str]:
    """(b), (c) and the single-flight row of the resolution table."""
    lines = []
    for label, key in (
        ("(b) ECR, black-holed, concurrent chain", "ecr_black_holed"),
        ("(c) same resolvers one after another", "sequential"),
    ):
        per = {
            b: [x["seconds"] for x in r[key]["runs"] if x["on"] == b] for b in ("asyncio", "trio")
        }
        cells = [", ".join(f"{v:.3f} s" for v in per[b]) or "-" for b in ("asyncio", "trio")]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    parts = r["sequential"]["runs"][0]["parts"]
    lines.append(
        "| (c) per resolver (first run) | "
        + ", ".join(f"{k} {v:.3f} s" for k, v in parts.items())
        + " | |"
    )
    flights = r["single_flight"]
    lines.append(
        f"| {flights['asyncio']['resolves']:,} concurrent resolves over "
        f"{flights['asyncio']['registries']} registries "
        f"| {_flight_cell(flights['asyncio'])} | {_flight_cell(flights['trio'])} |"
    )
    return lines


def _flight_cell(flight: dict[str, Any]) -> str:
    """Seconds, helper runs, ECR requests sent/answered, and any resolve left without a source
    with the failure its trace gave (results from before these counts say less)."""
    sent = flight.get("ecr_requests")
    ecr = f"{flight['ecr_calls']} ECR calls"
    if sent is not None:
        ecr = f"{sent} ECR requests sent, {flight['ecr_calls']} answered"
    cell = f"{flight['seconds']:.2f} s, {flight['helper_runs']} helper runs, {ecr}"
    missing = flight.get("no_source", flight.get("sources", {}).get("None", 0))
    if missing:
        cell += f"; {missing:,} resolves with no source"
        failures = flight.get("failures") or {}
        if failures:
            why, count = max(failures.items(), key=lambda item: item[1])
            cell += f" ({count:,}: {why})"
    return cell


# --- the plot -------------------------------------------------------------------------------------

COLORS = {
    "limit": "black",
    "floor": "tab:brown",
    "middleware": "tab:purple",
    "create_client": "tab:blue",
    "transport": "tab:green",
    "sync": "tab:orange",
    "peer": "tab:gray",
}


def plot(results: dict[str, Any], paths: list[Path]) -> str | None:
    """Per client at C=256: cold req/s and warm CPU per request, side by side, with raw
    aiohttp as a line on both. Needs matplotlib (bench session only)."""
    pipeline = results.get("pipeline")
    if not pipeline:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (nox -s bench installs it)"
    rows = [r for r in pipeline["rows"] if r["concurrency"] == HEADLINE and r["cold"]["rps"]]
    labels = [r["label"] for r in rows]
    colors = [COLORS.get(r["group"], "tab:gray") for r in rows]
    ys = list(range(len(rows)))[::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 0.36 * len(rows) + 1.8), sharey=True)
    left.barh(ys, [r["cold"]["rps"] for r in rows], color=colors)
    left.set_xlabel("requests/s, cold pass (median)")
    right.barh(ys, [r["warm"]["cpu_us"] or 0 for r in rows], color=colors)
    right.set_xlabel("CPU µs per request, warm pass (median; log scale)")
    right.set_xscale("log")
    limit = row(pipeline, LIMIT)
    if limit is not None:
        left.axvline(limit["cold"]["rps"], color="black", linestyle="--", linewidth=1)
        if limit["warm"]["cpu_us"]:
            right.axvline(limit["warm"]["cpu_us"], color="black", linestyle="--", linewidth=1)
    left.set_yticks(ys, labels, fontsize=7)
    for ax in (left, right):
        ax.grid(True, axis="x", alpha=0.3)
    m = results["machine"]
    s = pipeline["settings"]
    fig.suptitle(
        f"asyncauth pipeline benchmark: C={HEADLINE}, R={s['repositories']}, {s['rounds']} "
        f"rounds, {m['cpus']} CPUs, load {m.get('loadavg', '?')} ({m['when']}); "
        "dashed: raw aiohttp with pre-fetched tokens",
        fontsize=9,
    )
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return None
