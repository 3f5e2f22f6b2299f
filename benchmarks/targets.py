"""Where each target stands, measured in this run: issues 13 and 16's (the pipeline), the rest's.

Pipeline ratios are medians of per-round ratios (``a`` and ``b`` measured in the same round, so
drift on the shared machine cancels); req/s is the cold pass's, CPU per request the warm pass's.
A missed pipeline target names the series to profile (``profile``) and the profile explains it.
"""

from __future__ import annotations

import statistics
from typing import Any

from .pipeline import (
    BACKENDS,
    BY_HAND,
    DEFAULT_KIND,
    HEADLINE,
    LIMIT,
    MIDDLEWARE,
    MIDDLEWARE_PREFETCH,
    STATIC,
    TRANSPORTS,
)
from .startup import target as startup_target

PASS = {"rps": 0, "cpu_us": 1, "warm_rps": 1}  # cold req/s, warm CPU per request, warm req/s


def paired(raw: list[dict[str, Any]], a: str, b: str, field: str, c: int = HEADLINE) -> Any:
    """Median (and min, max) over rounds of ``a``/``b`` measured in the same round."""
    by_round: dict[int, dict[str, float]] = {}
    index = PASS[field]
    for m in raw:
        if m["concurrency"] != c or "failed" in m["result"] or m["round"] < 0:
            continue
        passes = m["result"]["passes"]
        value = passes[index].get(field.removeprefix("warm_")) if len(passes) > index else None
        if value:
            by_round.setdefault(m["round"], {})[m["series"]] = value
    ratios = [r[a] / r[b] for r in by_round.values() if a in r and b in r and r[b]]
    if not ratios:
        return None
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def row(pipeline: dict[str, Any], series: str, c: int = HEADLINE) -> dict[str, Any] | None:
    for r in pipeline["rows"]:
        if r["series"] == series and r["concurrency"] == c:
            return r
    return None


def _r(ratio: Any) -> str:
    if ratio is None:
        return "n/a"
    return f"{ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})"


def _value(pipeline: dict[str, Any], series: str, field: str) -> str:
    found = row(pipeline, series)
    value = None if found is None else found["cold" if PASS[field] == 0 else "warm"][field]
    if value is None:
        return "-"
    return f"{value:,.0f} req/s" if field == "rps" else f"{value:,.0f} µs"


def _first(pipeline: dict[str, Any], series: str) -> str:
    """When the cold pass's first request, and the first request of every repository, were
    answered: the cold start."""
    found = row(pipeline, series)
    cold = {} if found is None else found["cold"]
    first, everyone = cold.get("first_ms"), cold.get("everyone_ms")
    if first is None:
        return "-"
    return f"{first:,.0f}" + ("" if everyone is None else f"/{everyone:,.0f}") + " ms"


def _rps_text(pipeline: dict[str, Any], raw: list[dict[str, Any]], ours: str, ref: str) -> str:
    """Cold req/s ratio and values, the warm pass's ratio, and each one's first answer (the
    cold start: the 401, the credential, the token requests)."""
    cold, warm = paired(raw, ours, ref, "rps"), paired(raw, ours, ref, "warm_rps")
    return (
        f"{_r(cold)}: {_value(pipeline, ours, 'rps')} vs {_value(pipeline, ref, 'rps')}; "
        f"warm pass {_r(warm)}; first answer/all R answered after {_first(pipeline, ours)} vs "
        f"{_first(pipeline, ref)}"
    )


def _target(text: str, ratio: Any, ok: Any, measured: str, profile: list[str]) -> dict[str, Any]:
    met = ratio is not None and ok(ratio["median"])
    return {"target": text, "measured": measured, "met": met, "profile": [] if met else profile}


MIDDLEWARE_TARGETS = (
    "aiohttp middleware >= 0.95x raw aiohttp's req/s",
    "aiohttp middleware <= 1.1x raw aiohttp's warm CPU per request",
    "aiohttp middleware <= 1.05x the warm CPU per request of aiohttp with only a static-header "
    "middleware (issue 16)",
    "aiohttp middleware's cold pass >= 0.97x raw aiohttp doing the handshake by hand, req/s "
    "(issue 16)",
)


def _middleware(pipeline: dict[str, Any], raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if row(pipeline, MIDDLEWARE) is None:
        why = "not measured: asyncauth.aiohttp (RegistryAuthMiddleware) is not on this branch"
        return [
            {"target": t, "measured": why, "met": False, "profile": []} for t in MIDDLEWARE_TARGETS
        ]
    rps, cpu = paired(raw, MIDDLEWARE, LIMIT, "rps"), paired(raw, MIDDLEWARE, LIMIT, "cpu_us")
    return [
        _target(
            MIDDLEWARE_TARGETS[0],
            rps,
            lambda x: x >= 0.95,
            _rps_text(pipeline, raw, MIDDLEWARE, LIMIT),
            [MIDDLEWARE],
        ),
        _target(
            MIDDLEWARE_TARGETS[1],
            cpu,
            lambda x: x <= 1.1,
            f"{_r(cpu)}: {_value(pipeline, MIDDLEWARE, 'cpu_us')} vs "
            f"{_value(pipeline, LIMIT, 'cpu_us')}",
            [MIDDLEWARE],
        ),
        *_middleware_floors(pipeline, raw),
    ]


def _middleware_floors(pipeline: dict[str, Any], raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 16: the middleware against a static-header middleware (warm CPU) and against raw
    aiohttp doing the handshake by hand (cold req/s)."""
    cpu = paired(raw, MIDDLEWARE, STATIC, "cpu_us")
    rps = paired(raw, MIDDLEWARE, BY_HAND, "rps")
    return [
        _target(
            MIDDLEWARE_TARGETS[2],
            cpu,
            lambda x: x <= 1.05,
            f"{_r(cpu)}: {_value(pipeline, MIDDLEWARE, 'cpu_us')} vs "
            f"{_value(pipeline, STATIC, 'cpu_us')}",
            [MIDDLEWARE, STATIC],
        ),
        _target(
            MIDDLEWARE_TARGETS[3],
            rps,
            lambda x: x >= 0.97,
            _rps_text(pipeline, raw, MIDDLEWARE, BY_HAND),
            [MIDDLEWARE],
        ),
    ]


def _prefetch(pipeline: dict[str, Any], raw: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Issue 18: the middleware's cold pass after ``prefetch`` of the R repositories, against
    raw aiohttp with pre-fetched tokens, and 1 token request for all R."""
    found = row(pipeline, MIDDLEWARE_PREFETCH)
    if found is None:
        return None
    rps = paired(raw, MIDDLEWARE_PREFETCH, LIMIT, "rps")
    requests = found["token_requests"]
    prefetch_ms = found.get("prefetch_ms")
    text = (
        f"{_rps_text(pipeline, raw, MIDDLEWARE_PREFETCH, LIMIT)}; token requests per job "
        f"{requests} for R={pipeline['settings']['repositories']}; prefetch() took "
        + ("-" if prefetch_ms is None else f"{prefetch_ms:,.0f} ms")
        + " before the cold pass"
    )
    target = _target(
        "aiohttp middleware after prefetch() >= 0.97x raw aiohttp's cold req/s, 1 token request",
        rps,
        lambda x: x >= 0.97,
        text,
        [MIDDLEWARE_PREFETCH],
    )
    target["met"] = target["met"] and bool(requests) and all(r == 1 for r in requests)
    return target


def _create_client(pipeline: dict[str, Any], raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for backend, kind in DEFAULT_KIND.items():
        ours = f"create_client:{kind}:{backend}"
        rps = paired(raw, ours, LIMIT, "rps")
        out.append(
            _target(
                f"create_client() >= 0.85x raw aiohttp's req/s ({backend}: on {kind})",
                rps,
                lambda x: x >= 0.85,
                _rps_text(pipeline, raw, ours, LIMIT),
                [ours],
            )
        )
    for backend, kind, floor_transport, bound, why in (
        ("asyncio", "aiohttp", "httpx-aiohttp", 1.1, ""),
        ("trio", "httpx2", "httpx2", 1.1, "; issue 16 (issue 13 asked 1.2)"),
    ):
        ours, floor = f"create_client:{kind}:{backend}", f"{floor_transport}:floor:{backend}"
        auth = f"{floor_transport}:asyncauth:{backend}"
        cpu = paired(raw, ours, floor, "cpu_us")
        plain = paired(raw, auth, floor, "cpu_us")
        out.append(
            _target(
                f"create_client() warm CPU per request <= {bound}x the same transport with a "
                f"static header ({backend}: {TRANSPORTS[floor_transport]}{why})",
                cpu,
                lambda x, bound=bound: x <= bound,
                f"{_r(cpu)}: {_value(pipeline, ours, 'cpu_us')} vs "
                f"{_value(pipeline, floor, 'cpu_us')}; RegistryAuth on a plain client of that "
                f"transport: {_r(plain)}",
                [ours, floor],
            )
        )
    return out


def _auth_over_floor(pipeline: dict[str, Any], raw: list[dict[str, Any]]) -> dict[str, Any]:
    parts, worst, profile = [], None, []
    for transport in TRANSPORTS:
        for backend in BACKENDS[transport]:
            auth, floor = f"{transport}:asyncauth:{backend}", f"{transport}:floor:{backend}"
            rps = paired(raw, auth, floor, "rps")
            cpu = paired(raw, auth, floor, "cpu_us")
            warm = paired(raw, auth, floor, "warm_rps")
            parts.append(
                f"{transport}/{backend} {_r(rps)} (warm pass: req/s {_r(warm)}, CPU {_r(cpu)}; "
                f"first answer/all R answered {_first(pipeline, auth)} vs "
                f"{_first(pipeline, floor)})"
            )
            value = rps["median"] if rps else 0.0
            if value < 0.95:
                profile.append(auth)
            worst = value if worst is None else min(worst, value)
    return {
        "target": "auth/floor >= 0.95 on every transport (req/s, cold pass)",
        "measured": "; ".join(parts),
        "met": worst is not None and worst >= 0.95,
        "profile": profile,
    }


def _oras(pipeline: dict[str, Any], raw: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Our best (the middleware when there, else ``create_client()`` under asyncio) against
    oras-py; both are named."""
    if row(pipeline, "peer:oras") is None:
        return None
    ratios = {
        ours: paired(raw, ours, "peer:oras", "rps")
        for ours in (MIDDLEWARE, f"create_client:{DEFAULT_KIND['asyncio']}:asyncio")
    }
    found = {k: v for k, v in ratios.items() if v is not None}
    best = max(found, key=lambda k: found[k]["median"]) if found else None
    text = "; ".join(
        f"{k}: {_r(v)} ({_value(pipeline, k, 'rps')} vs {_value(pipeline, 'peer:oras', 'rps')})"
        for k, v in found.items()
    )
    return _target(
        ">= 5x oras-py's req/s (our best: the middleware, else create_client() under asyncio)",
        found.get(best) if best else None,
        lambda x: x >= 5,
        text or "n/a",
        [],
    )


def _tokens(pipeline: dict[str, Any], raw: list[dict[str, Any]]) -> dict[str, Any]:
    """Every asyncauth job: exactly R token requests over both passes, one per repository,
    every repository answered in the cold pass, at most one 401 (the cold pass's first)."""
    repositories = pipeline["settings"]["repositories"]
    checked, bad, most_401 = 0, [], 0
    for m in raw:
        s, result = m["series"], m["result"]
        ours = s == MIDDLEWARE or s.startswith("create_client") or ":asyncauth" in s
        if not ours or "failed" in result or m["round"] < 0:
            continue
        checked += 1
        where = f"{s} round {m['round'] + 1}"
        if m["token_requests"] != repositories:
            bad.append(f"{where}: {m['token_requests']} token requests")
        if (m.get("max_per_scope") or 0) > 1:
            bad.append(f"{where}: {m['max_per_scope']} for one repository")
        answered = result["passes"][0].get("repositories_answered")
        if answered != repositories:
            bad.append(f"{where}: {answered} repositories answered")
        most_401 = max(most_401, sum(p.get("unauthorized") or 0 for p in result["passes"]))
    return {
        "target": "token requests == repositories, <= 1 401 per registry",
        "measured": f"{checked} asyncauth jobs (cold + warm pass each): "
        + ("; ".join(bad[:3]) if bad else f"exactly {repositories} token requests each")
        + f"; most 401s in one job: {most_401}",
        "met": checked > 0 and not bad and most_401 <= 1,
        "profile": [],
    }


def pipeline_targets(pipeline: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 13's targets (C=256, real registry, ratios in one run)."""
    raw = pipeline["measurements"]
    out = [*_middleware(pipeline, raw)]
    prefetched = _prefetch(pipeline, raw)
    if prefetched is not None:
        out.append(prefetched)
    out += _create_client(pipeline, raw)
    out.append(_auth_over_floor(pipeline, raw))
    oras = _oras(pipeline, raw)
    if oras is not None:
        out.append(oras)
    out.append(_tokens(pipeline, raw))
    return out


def resolution_targets(resolution: dict[str, Any]) -> list[dict[str, Any]]:
    hub = resolution["docker_hub"]
    worst_ms = max(hub[b]["cold_ms"]["median"] for b in hub)
    calls = sum(hub[b]["network_connections"] + hub[b]["transport_requests"] for b in hub)
    timeout = resolution["timeout_s"]
    worst_b = resolution["ecr_black_holed"]["seconds"]["max"]
    ratio = resolution["sequential_over_concurrent"]
    n = resolution["iaas_resolvers"]
    flights = resolution["single_flight"]
    exact = all(
        f["helper_runs"] == f["expected_helper_runs"]
        and f.get("ecr_requests", f["ecr_calls"]) == f["ecr_calls"] == f["expected_ecr_calls"]
        and not f.get("no_source", f["sources"].get("None", 0))
        for f in flights.values()
    )
    return [
        {
            "target": "(a) Docker Hub, IaaS on, no cloud: < 5 ms median, zero network calls",
            "measured": f"{worst_ms:.2f} ms (fresh chain, slower loop); "
            f"{calls} connections/requests",
            "met": worst_ms < 5 and calls == 0,
        },
        {
            "target": "(b) ECR, metadata black-holed: bounded by the configured timeout",
            "measured": f"timeout {timeout:g} s; slowest resolve {worst_b:.3f} s",
            "met": worst_b <= timeout * 1.05 + 0.02,
        },
        {
            "target": f"(c)/(b) >= the number of IaaS resolvers ({n})",
            "measured": f"{ratio:.2f} ((c) median "
            f"{resolution['sequential']['seconds']['median']:.2f} s)",
            "met": ratio >= n,
        },
        {
            "target": "single-flight: one helper run / one IaaS call per registry, "
            "every resolve answered",
            "measured": "; ".join(
                f"{b}: {f['helper_runs']} helper runs, "
                f"{f.get('ecr_requests', '?')} ECR requests sent, {f['ecr_calls']} answered, "
                f"{f.get('no_source', f['sources'].get('None', 0)):,} with no source, for "
                f"{f['resolves']:,} resolves over {f['registries']} registries"
                for b, f in flights.items()
            ),
            "met": exact,
        },
    ]


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if results.get("pipeline"):
        out += pipeline_targets(results["pipeline"])
    if results.get("resolution"):
        out += resolution_targets(results["resolution"])
    if results.get("startup"):
        out.append(startup_target(results["startup"]))
    if results.get("cache"):
        out.append(cache_target(results["cache"]))
    return out


def cache_target(cache: dict[str, Any]) -> dict[str, Any]:
    """Issue 18: R repositories, two passes on one client: the second makes no token request."""
    parts, met = [], True
    for variant in ("per request", "prefetched"):
        v = cache.get(variant)
        if v is None:
            continue
        first, second = v["passes"]
        refused = second["statuses"].get("401", 0) + first["statuses"].get("401", 0)
        met = met and second["token_requests"] == 0 and refused == 0
        parts.append(
            f"{variant}: {first['token_requests']:,} then {second['token_requests']:,} token "
            f"requests, {refused} 401s; {v['memory']['bytes_per_key']:,.0f} bytes per cached key "
            f"({v['memory']['bytes_per_token']:,.0f} per distinct token)"
        )
    return {
        "target": f"R={cache['repositories']:,} repositories, 2 passes: no token request in the "
        "second",
        "measured": "; ".join(parts),
        "met": met and bool(parts),
        "profile": [],
    }
