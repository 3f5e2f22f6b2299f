"""Targets, markdown tables and the plot, from the numbers the harness collected."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .pipeline import HEADLINE, TRANSPORTS

Row = dict[str, Any]


def _rows(pipeline: dict[str, Any], **match: Any) -> list[Row]:
    return [r for r in pipeline["rows"] if all(r.get(k) == v for k, v in match.items())]


def _row(pipeline: dict[str, Any], series: str, c: int, variant: str = "GET") -> Row | None:
    found = _rows(pipeline, series=series, concurrency=c, variant=variant)
    return found[0] if found else None


def _rps(row: Row | None) -> float | None:
    return None if row is None else row.get("rps")


def limit_at(pipeline: dict[str, Any], c: int, variant: str = "GET") -> tuple[float | None, str]:
    """The registry's limit at ``c``: the faster of ``ab -k`` and raw aiohttp (medians)."""
    best: tuple[float | None, str] = (None, "")
    for key, name in (("limit:ab", "ab -k"), ("limit:aiohttp", "raw aiohttp")):
        rps = _rps(_row(pipeline, key, c, variant))
        if rps is not None and (best[0] is None or rps > best[0]):
            best = (rps, name)
    return best


def paired_ratio(raw: list[dict[str, Any]], a: str, b: str, c: int, field: str = "rps") -> Any:
    """Median over rounds of ``a``/``b`` measured in the same round (drift cancels)."""
    by_round: dict[int, dict[str, float]] = {}
    for m in raw:
        if m["concurrency"] != c or m["variant"] != "GET" or "failed" in m["result"]:
            continue
        value = m["result"].get(field)
        if value:
            by_round.setdefault(m["round"], {})[m["series"]] = value
    ratios = [r[a] / r[b] for r in by_round.values() if a in r and b in r and r[b]]
    if not ratios:
        return None
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Where each target of the benchmarks issue stands, measured in this run."""
    out: list[dict[str, Any]] = []
    pipeline = results.get("pipeline")
    if pipeline:
        raw = pipeline["measurements"]
        c = HEADLINE
        # 1. asyncauth within 0.9x of the static-header floor, every transport.
        worst: tuple[float, str] | None = None
        parts = []
        for transport in TRANSPORTS:
            for backend in ("asyncio", "trio"):
                floor, auth = f"{transport}:floor:{backend}", f"{transport}:asyncauth:{backend}"
                ratio = paired_ratio(raw, auth, floor, c)
                steady = paired_ratio(raw, auth, floor, c, "steady_rps")
                if ratio is None:
                    if _row(pipeline, floor, c) is not None:
                        parts.append(
                            f"{transport}/{backend} n/a (floor "
                            f"{_n(_rps(_row(pipeline, floor, c)))} req/s, asyncauth "
                            f"{_n(_rps(_row(pipeline, auth, c)))} req/s)"
                        )
                        worst = (0.0, f"{transport}/{backend}")
                    continue
                parts.append(
                    f"{transport}/{backend} {ratio['median']:.2f}"
                    + (f" (steady {steady['median']:.2f})" if steady else "")
                )
                if worst is None or ratio["median"] < worst[0]:
                    worst = (ratio["median"], f"{transport}/{backend}")
        if worst is not None:
            out.append(
                {
                    "target": f"asyncauth >= 0.9x the static-header floor on every transport "
                    f"(C={c}, cold cache)",
                    "measured": "; ".join(parts),
                    "met": worst[0] >= 0.9,
                }
            )
        # 2. create_client() at C=256 >= 0.8x the limit (the faster of ab -k and raw aiohttp).
        limit, by = limit_at(pipeline, c)
        raw_aiohttp = _row(pipeline, "limit:aiohttp", c)
        for backend in ("asyncio", "trio"):
            row = _row(pipeline, f"create_client:{backend}", c)
            if row is None or row.get("rps") is None or not limit:
                continue
            ratio = row["rps"] / limit
            text = f"{row['rps']:,.0f} req/s = {ratio:.2f}x {by} ({limit:,.0f})"
            if by != "raw aiohttp" and raw_aiohttp and raw_aiohttp.get("rps"):
                text += f", {row['rps'] / raw_aiohttp['rps']:.2f}x raw aiohttp"
                if row.get("steady_rps") and raw_aiohttp.get("steady_rps"):
                    text += f" (steady {row['steady_rps'] / raw_aiohttp['steady_rps']:.2f}x)"
                text += f" ({raw_aiohttp['rps']:,.0f})"
            out.append(
                {
                    "target": f"create_client() at C={c} >= 0.8x the limit ({backend})",
                    "measured": f"{text}; {row.get('client') or ''}",
                    "met": ratio >= 0.8,
                }
            )
        # 3. token requests == R, at most one 401 per registry (one registry here).
        repositories = pipeline["settings"]["repositories"]
        checked, full, bad, most_401 = 0, 0, [], 0
        for m in raw:
            series = m["series"]
            if "failed" in m["result"] or not (
                ":asyncauth:" in series
                or series.startswith("create_client")
                or series == "httpx-sync:asyncauth"
            ):
                continue
            checked += 1
            # Every repository answered at least once: exactly R token requests.
            answered = m["result"].get("repositories_answered", 0)
            if answered >= repositories:
                full += 1
                if m["token_requests"] != repositories:
                    bad.append(f"{series} C={m['concurrency']}: {m['token_requests']} for R")
            elif (m["token_requests"] or 0) < answered:
                bad.append(
                    f"{series} C={m['concurrency']}: {m['token_requests']} tokens for "
                    f"{answered} repositories answered"
                )
            if (m.get("max_per_scope") or 0) > 1:
                bad.append(
                    f"{series} C={m['concurrency']}: {m['max_per_scope']} for one repository"
                )
            most_401 = max(most_401, m["result"].get("unauthorized") or 0)
        if checked:
            out.append(
                {
                    "target": "token requests == R exactly and <= 1 401 per registry",
                    "measured": f"{checked} asyncauth runs, never more than one token request "
                    f"per repository{'' if not bad else ' EXCEPT ' + '; '.join(bad[:3])}; "
                    f"exactly R={repositories} in the {full} runs in which every repository "
                    f"answered; most 401s in one run: {most_401}",
                    "met": not bad and most_401 <= 1,
                }
            )
        # 4. at least 5x oras-py.
        for oc in sorted({r["concurrency"] for r in _rows(pipeline, series="peer:oras")}):
            oras = _rps(_row(pipeline, "peer:oras", oc))
            ours = (
                _rps(_row(pipeline, "create_client:asyncio", oc))
                if oc == HEADLINE
                else _rps(_row(pipeline, "httpx-aiohttp:asyncauth:asyncio", oc))
            )
            if oras and ours:
                what = "create_client()" if oc == HEADLINE else "httpx-aiohttp + asyncauth"
                out.append(
                    {
                        "target": f">= 5x oras-py (C={oc}, {what})",
                        "measured": f"{ours:,.0f} vs {oras:,.0f} req/s = {ours / oras:.1f}x",
                        "met": ours / oras >= 5,
                    }
                )
    resolution = results.get("resolution")
    if resolution:
        hub = resolution["docker_hub"]
        worst_ms = max(hub[b]["cold_ms"]["median"] for b in hub)
        calls = sum(hub[b]["network_connections"] + hub[b]["transport_requests"] for b in hub)
        out.append(
            {
                "target": "(a) Docker Hub, IaaS on, no cloud: < 5 ms median, zero network calls",
                "measured": f"{worst_ms:.2f} ms (fresh chain, slower loop); "
                f"{calls} connections/requests",
                "met": worst_ms < 5 and calls == 0,
            }
        )
        timeout = resolution["timeout_s"]
        worst_b = resolution["ecr_black_holed"]["seconds"]["max"]
        out.append(
            {
                "target": "(b) ECR, metadata black-holed: bounded by the configured timeout",
                "measured": f"timeout {timeout:g} s; slowest resolve {worst_b:.3f} s",
                "met": worst_b <= timeout * 1.05 + 0.02,
            }
        )
        ratio = resolution["sequential_over_concurrent"]
        n = resolution["iaas_resolvers"]
        out.append(
            {
                "target": f"(c)/(b) >= the number of IaaS resolvers ({n})",
                "measured": f"{ratio:.2f} ((c) median "
                f"{resolution['sequential']['seconds']['median']:.2f} s)",
                "met": ratio >= n,
            }
        )
        flights = resolution["single_flight"]
        exact = all(
            f["helper_runs"] == f["expected_helper_runs"]
            and f["ecr_calls"] == f["expected_ecr_calls"]
            for f in flights.values()
        )
        out.append(
            {
                "target": "single-flight: one helper run / one IaaS call per registry",
                "measured": "; ".join(
                    f"{b}: {f['helper_runs']} helper runs, {f['ecr_calls']} ECR calls for "
                    f"{f['resolves']:,} resolves over {f['registries']} registries"
                    for b, f in flights.items()
                ),
                "met": exact,
            }
        )
    return out


# --- markdown -------------------------------------------------------------------------------------


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value != value:  # NaN
        return "-"
    return f"{value:,.{digits}f}"


def _spread(row: Row) -> str:
    spread = row.get("rps_spread")
    return f"{spread[0]:,.0f}-{spread[1]:,.0f}" if spread else "-"


def _list(values: list[Any]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _table_row(row: Row, name: str | None = None) -> str:
    failed = f" **failed: {row['failed'][0][:160]}**" if row.get("failed") else ""
    errors = str(row["errors"])
    if row.get("error_samples"):
        errors += f" ({row['error_samples'][0][:60]})"
    return (
        f"| {name or row['label']}{failed} | {_n(row.get('rps'))} | {_spread(row)} "
        f"| {_n(row.get('steady_rps'))} | {_n(row.get('p50_ms'), 1)} | {_n(row.get('p99_ms'), 1)} "
        f"| {_n(row.get('completed'))} | {_list(row.get('token_requests', []))} "
        f"| {_list(row.get('unauthorized', []))} | {errors} | {_n(row.get('rss_delta_mib'), 1)} |"
    )


HEADER = (
    "| client | req/s (median) | spread | steady req/s | p50 ms | p99 ms | completed "
    "| token requests | 401s | errors | peak RSS growth MiB |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m['platform']}, {m['cpus']} CPUs, Python {m['python']}, load average at "
        f"start {m.get('loadavg', '?')}; {m['when']}. Command: `{results['command']}` "
        f"({results['seconds']:.0f} s).",
        "",
    ]
    found = results.get("targets") or []
    if found:
        lines += ["### Targets", "", "| target | measured | |", "|---|---|---|"]
        for t in found:
            lines.append(f"| {t['target']} | {t['measured']} | {'met' if t['met'] else 'MISSED'} |")
        lines.append("")
    pipeline = results.get("pipeline")
    if pipeline:
        s = pipeline["settings"]
        lines += [
            f"### Pipeline: manifest GETs, C={HEADLINE}",
            "",
            f"Registry: Debian docker-registry (distribution 2.8) in token mode, R="
            f"{s['repositories']} repositories, strict JWT issuer in its own process. "
            f"{s['rounds']} interleaved rounds; each measurement stops after "
            f"{s['requests']:,} requests or when its window closes ({s['headline_seconds']:g} s "
            f"at C={HEADLINE}, {s['seconds']:g} s at C<256, {s['seconds'] * 2.5:g} s at C=1024, "
            f"{s['side_seconds']:g} s for HEAD and connection limits; the same for every "
            "client at one C), whichever is first; requests in flight then are not counted "
            "(their time so far is in the latencies). Cold cache: "
            "every asyncauth run starts with a new `RegistryAuth`, so its window includes the "
            "401 and all R token requests. *steady* counts only the second half of the window.",
            "",
            HEADER,
        ]
        order = [
            "limit:ab",
            "limit:aiohttp",
            *[
                f"{t}:{mode}:{b}"
                for b in ("asyncio", "trio")
                for t in TRANSPORTS
                for mode in ("floor", "asyncauth")
            ],
            "create_client:asyncio",
            "create_client:trio",
            "httpx-sync:floor",
            "httpx-sync:asyncauth",
            "peer:oras",
            "peer:aioregistry",
            "peer:drca",
        ]
        for key in order:
            row = _row(pipeline, key, HEADLINE)
            if row is not None:
                lines.append(_table_row(row))
        lines.append("")
        # asyncauth / floor per C
        cs = sorted({r["concurrency"] for r in pipeline["rows"] if r["group"] == "transport"})
        lines += [
            "### asyncauth / floor (median of per-round ratios; steady state in brackets)",
            "",
            "| transport | loop | " + " | ".join(f"C={c}" for c in cs) + " |",
            "|---|---|" + "---|" * len(cs),
        ]
        raw = pipeline["measurements"]
        for transport in TRANSPORTS:
            for backend in ("asyncio", "trio"):
                cells = []
                for c in cs:
                    a, f = f"{transport}:asyncauth:{backend}", f"{transport}:floor:{backend}"
                    ratio = paired_ratio(raw, a, f, c)
                    steady = paired_ratio(raw, a, f, c, "steady_rps")
                    cells.append(
                        "-"
                        if ratio is None
                        else f"{ratio['median']:.2f}"
                        + (f" ({steady['median']:.2f})" if steady else "")
                    )
                if any(cell != "-" for cell in cells):
                    lines.append(f"| {transport} | {backend} | " + " | ".join(cells) + " |")
        lines.append("")
        # req/s by C
        lines += [
            "### Requests/s by concurrency (medians; the plot)",
            "",
            "| client | " + " | ".join(f"C={c}" for c in cs) + " |",
            "|---|" + "---|" * len(cs),
        ]
        for key in order:
            cells = [_n(_rps(_row(pipeline, key, c))) for c in cs]
            label = next((r["label"] for r in pipeline["rows"] if r["series"] == key), None)
            if label and any(cell != "-" for cell in cells):
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
        head_rows = [r for r in pipeline["rows"] if r["variant"] == "HEAD"]
        if head_rows:
            lines += [f"### HEAD variant, C={HEADLINE}", "", HEADER]
            for key in order:
                row = _row(pipeline, key, HEADLINE, "HEAD")
                if row is not None:
                    lines.append(_table_row(row))
            lines.append("")
        limit_rows = [r for r in pipeline["rows"] if r["variant"].startswith("GET ")]
        if limit_rows:
            lines += [
                f"### Connection limits, C={HEADLINE}, static-header floor",
                "",
                "`gate=G`: at most G requests in flight (an anyio semaphore in a wrapping "
                "transport), the pool sized G/G; the others wait on the semaphore instead of "
                "in httpcore's pool.",
                "",
                HEADER,
            ]
            defaults = [
                _row(pipeline, f"{t}:floor:{b}", HEADLINE)
                for b in ("asyncio", "trio")
                for t in TRANSPORTS
            ]
            for row in sorted(
                [r for r in defaults if r] + limit_rows,
                key=lambda r: (r["backend"], r["transport"], r["variant"] != "GET", r["variant"]),
            ):
                name = f"{row['transport']}, {row['backend']}, " + (
                    "defaults" if row["variant"] == "GET" else row["variant"][4:]
                )
                lines.append(_table_row(row, name))
            lines.append("")
        side = [
            r
            for r in pipeline["rows"]
            if r["group"] in ("sync", "peer") and r["concurrency"] != HEADLINE
        ]
        if side:
            lines += ["### Threads and peers at other concurrency", "", HEADER]
            for row in sorted(side, key=lambda r: (r["series"], r["concurrency"])):
                lines.append(_table_row(row, f"{row['label']}, C={row['concurrency']}"))
            lines.append("")
    overhead = results.get("overhead")
    if overhead:
        lines += [
            "### Auth's own CPU time per request (in-process MockTransport, warm cache)",
            "",
            f"{overhead['rounds']} rounds of {overhead['requests']:,} requests over "
            f"{overhead['repositories']} repositories; medians.",
            "",
            "| loop, C | static header, CPU µs/request | RegistryAuth, CPU µs/request "
            "| added µs | floor/auth |",
            "|---|---|---|---|---|",
        ]
        for key, row in overhead.items():
            if isinstance(row, dict):
                lines.append(
                    f"| {key} | {row['floor_us']:.0f} | {row['asyncauth_us']:.0f} "
                    f"| {row['added_us']:.0f} | {row['ratio']:.2f} |"
                )
        lines.append("")
    resolution = results.get("resolution")
    if resolution:
        lines += _resolution_markdown(resolution)
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
        f"| {flights['asyncio']['seconds']:.2f} s, "
        f"{flights['asyncio']['helper_runs']} helper runs, "
        f"{flights['asyncio']['ecr_calls']} ECR calls "
        f"| {flights['trio']['seconds']:.2f} s, {flights['trio']['helper_runs']} helper runs, "
        f"{flights['trio']['ecr_calls']} ECR calls |"
    )
    lines.append("")
    return lines


# --- the plot -------------------------------------------------------------------------------------


def plot(results: dict[str, Any], paths: list[Path]) -> str | None:
    """req/s against concurrency per transport, floor (dashed) vs asyncauth (solid), the limit
    as a black line; asyncio and trio side by side. Needs matplotlib (bench session only)."""
    pipeline = results.get("pipeline")
    if not pipeline:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (nox -s bench installs it)"
    cs = sorted({r["concurrency"] for r in pipeline["rows"] if r["group"] == "transport"})
    colors = {"httpx": "tab:red", "httpx2": "tab:blue", "httpx-aiohttp": "tab:green"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for ax, backend in zip(axes, ("asyncio", "trio"), strict=True):
        limit = [limit_at(pipeline, c)[0] for c in cs]
        ax.plot(cs, limit, color="black", linewidth=2, label="limit (best of ab -k, raw aiohttp)")
        for transport, color in colors.items():
            for mode, style in (("floor", "--"), ("asyncauth", "-")):
                ys = [_rps(_row(pipeline, f"{transport}:{mode}:{backend}", c)) for c in cs]
                if not any(y is not None for y in ys):
                    continue
                ax.plot(
                    cs,
                    [y if y is not None else float("nan") for y in ys],
                    style,
                    marker="o",
                    color=color,
                    label=f"{transport} {'static header' if mode == 'floor' else 'asyncauth'}",
                )
        cc = _rps(_row(pipeline, f"create_client:{backend}", HEADLINE))
        if cc is not None:
            ax.plot(
                [HEADLINE], [cc], "*", color="tab:purple", markersize=14, label="create_client()"
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(cs, [str(c) for c in cs])
        ax.set_xlabel("concurrency (requests in flight)")
        ax.set_title(f"{backend}" + ("" if backend == "asyncio" else " (aiohttp: asyncio only)"))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0].set_ylabel("manifest GETs per second (median)")
    m = results["machine"]
    fig.suptitle(
        f"asyncauth pipeline benchmark: R={pipeline['settings']['repositories']}, "
        f"{pipeline['settings']['rounds']} rounds, {m['cpus']} CPUs ({m['when']})"
    )
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
