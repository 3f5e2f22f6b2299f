"""The token cache at pipeline scale: R = 20,000 repositories, two passes on one client.

A pipeline that cycled over more repositories than the cache held (it held 4,096 tokens) fetched
every token again on every pass (issue 18). Here one ``aiohttp.ClientSession`` with
``RegistryAuthMiddleware`` GETs a manifest of each of R repositories, C at a time, twice. The
repositories do not exist: the registry checks the token first, then answers 404
``NAME_UNKNOWN``, so what is measured is the handshake and the cache, not the registry's storage.
Two variants:

* ``per request``: no prefetch, so the first pass makes R token requests;
* ``prefetched``: ``prefetch()`` of the R repositories first (about R/64 token requests).

In both the second pass must make no token request (counted at the issuer). The cache's memory
is measured with ``tracemalloc`` after the passes, without slowing them: its content (every key
and token, a token shared by many keys once) is rebuilt in a fresh cache while tracing, and the
growth is divided by the keys and by the distinct tokens; next to it, the cache's own estimate
(``token_cost``), which bounds it by ``token_cache_bytes``.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any

import anyio

from .stack import running_stack

REPOSITORIES = 20_000
QUICK_REPOSITORIES = 2_000
CONCURRENCY = 64


async def _passes(stack: Any, names: list[str], prefetch: bool) -> dict[str, Any]:
    """Two passes of GETs over ``names`` on one session; per pass: seconds, token requests,
    statuses."""
    import aiohttp

    from asyncauth.aiohttp import RegistryAuthMiddleware

    from .clients import MANIFEST_ACCEPT, _chain

    auth = RegistryAuthMiddleware(_chain(stack.job_base()))
    headers = {"Accept": MANIFEST_ACCEPT}
    found: dict[str, Any] = {"passes": []}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector, middlewares=(auth,)) as session:
        if prefetch:
            started = time.perf_counter()
            references = [f"{stack.registry.host}/{name}" for name in names]
            await auth.prefetch(references, session=session, base_url=stack.registry_url)
            found["prefetch_s"] = time.perf_counter() - started
            found["prefetch_token_requests"] = stack.issuer.stats()["total"]
        for _ in range(2):
            before = stack.issuer.stats()["total"]
            statuses: dict[int, int] = {}
            queue = iter(names)

            async def worker(statuses: dict[int, int] = statuses, queue: Any = queue) -> None:
                for name in queue:
                    url = f"{stack.registry_url}/v2/{name}/manifests/v1"
                    async with session.get(url, headers=headers) as response:
                        await response.read()
                        statuses[response.status] = statuses.get(response.status, 0) + 1

            started = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(CONCURRENCY):
                    tg.start_soon(worker)
            seconds = time.perf_counter() - started
            found["passes"].append(
                {
                    "seconds": seconds,
                    "rps": len(names) / seconds,
                    "token_requests": stack.issuer.stats()["total"] - before,
                    "statuses": {str(k): v for k, v in sorted(statuses.items())},
                }
            )
    found["memory"] = memory_of(auth.auth._tokens)
    return found


def memory_of(tokens: Any) -> dict[str, Any]:
    """What ``tokens`` (a ``TokenCache``) takes, measured: its keys and tokens rebuilt (new
    objects, as the handshake made them) in a fresh cache under ``tracemalloc``."""
    from asyncauth._registry.scope import Scope, ScopeSet
    from asyncauth._registry.tokencache import TokenCache, token_cache_key
    from asyncauth._registry.tokens import Token

    items = [(key, item[1]) for key, item in tokens._tokens._values.items()]
    distinct = {id(token): token for _, token in items}
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    fresh = TokenCache()
    copies = {
        ident: Token(t.access_token.encode().decode(), t.expires_at, t.issued_at)
        for ident, t in distinct.items()
    }
    for key, token in items:
        scopes = ScopeSet(
            tuple(Scope(s.type, s.name.encode().decode(), s.actions) for s in key.scopes)
        )
        copy = token_cache_key(key.registry, key.service, scopes, key.credential)
        fresh._tokens.put(copy, copies[id(token)], 3600.0)
    del copies
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    keys = max(len(items), 1)
    return {
        "keys": len(items),
        "tokens": len(distinct),
        "token_chars": sum(len(t.access_token) for t in distinct.values()) / max(len(distinct), 1),
        "measured_bytes": grown,
        "bytes_per_key": grown / keys,
        "bytes_per_token": grown / max(len(distinct), 1),
        "estimated_bytes": fresh.bytes,
        "estimated_per_key": fresh.bytes / keys,
    }


def run(*, quick: bool = False, repositories: int | None = None) -> dict[str, Any]:
    """Both variants against a registry and issuer of their own."""
    count = repositories or (QUICK_REPOSITORIES if quick else REPOSITORIES)
    results: dict[str, Any] = {"repositories": count, "concurrency": CONCURRENCY}
    with running_stack(1) as stack:
        for variant, prefetch in (("per request", False), ("prefetched", True)):
            names = [f"cache/{variant.replace(' ', '-')}/repo-{i:05d}" for i in range(count)]
            stack.issuer.reset()
            print(f"  cache: {count:,} repositories, {variant}", flush=True)
            results[variant] = anyio.run(_passes, stack, names, prefetch)
    return results


def markdown(results: dict[str, Any]) -> str:
    """The table of docs/benchmarks.md's cache section."""
    count = results["repositories"]
    lines = [
        f"### Token cache: R={count:,} repositories, two passes on one client",
        "",
        f"One aiohttp session with `RegistryAuthMiddleware`, C={results['concurrency']}, manifest "
        "GETs of repositories that do not exist (the registry checks the token, then answers "
        "404): the handshake and the cache at scale. Memory: the cache's content rebuilt under "
        "`tracemalloc` (a token shared by many keys counted once), and the cache's own estimate "
        "(`token_cost`, which `token_cache_bytes` bounds).",
        "",
        "| variant | prefetch | pass 1 req/s | pass 1 token requests | pass 2 req/s "
        "| pass 2 token requests | keys / distinct tokens | measured bytes per key "
        "| per distinct token | estimated per key |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in ("per request", "prefetched"):
        v = results.get(variant)
        if v is None:
            continue
        first, second = v["passes"]
        memory = v["memory"]
        prefetch = (
            f"{v['prefetch_s']:.2f} s, {v['prefetch_token_requests']} token requests"
            if "prefetch_s" in v
            else "-"
        )
        lines.append(
            f"| {variant} | {prefetch} | {first['rps']:,.0f} | {first['token_requests']:,} "
            f"| {second['rps']:,.0f} | {second['token_requests']:,} "
            f"| {memory['keys']:,} / {memory['tokens']:,} | {memory['bytes_per_key']:,.0f} "
            f"| {memory['bytes_per_token']:,.0f} | {memory['estimated_per_key']:,.0f} |"
        )
    return "\n".join(lines)
