"""What ``RegistryAuth`` costs per request by itself: CPU time, without a network or registry.

An ``httpx.MockTransport`` plays registry and token server in-process (a 401 challenge without a
token, a token for the realm, the manifest with one), so the difference between a client with a
static ``Authorization`` header and one with ``RegistryAuth`` is the auth's own work per request
(token-cache lookup, scope inference, the auth-flow generator). Measured with a warm cache (the
first pass fills it), sequentially and with 256 tasks, on asyncio and trio; rounds interleaved.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import anyio
import httpx

import asyncauth

TOKEN = "bench-token"
REGISTRY = "http://127.0.0.1:5000"
REALM = "http://127.0.0.1:5001/token"
DIGEST = "sha256:" + "0" * 64
BODY = json.dumps({"schemaVersion": 2}).encode()


def _handler(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/token":
        body = {"token": TOKEN, "expires_in": 3600}
        return httpx.Response(200, json=body)
    if request.headers.get("authorization") != f"Bearer {TOKEN}":
        challenge = f'Bearer realm="{REALM}",service="bench"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})
    return httpx.Response(200, content=BODY, headers={"Docker-Content-Digest": DIGEST})


async def _pass(mode: str, requests: int, concurrency: int, repositories: int) -> float:
    """CPU seconds per request, after a warm-up pass over every repository."""
    kwargs: dict[str, Any] = {"transport": httpx.MockTransport(_handler)}
    headers = {}
    if mode == "asyncauth":
        chain = asyncauth.Chain([asyncauth.FlagsResolver(username="u", password="p")])
        kwargs["auth"] = asyncauth.RegistryAuth(chain, headers={})
    else:
        headers = {"Authorization": f"Bearer {TOKEN}"}
    urls = [f"{REGISTRY}/v2/team/app{i}/manifests/v1" for i in range(repositories)]
    async with httpx.AsyncClient(**kwargs) as client:
        for url in urls:
            await client.get(url, headers=headers)
        per_task = requests // concurrency

        async def worker(offset: int) -> None:
            for i in range(per_task):
                await client.get(urls[(offset + i) % repositories], headers=headers)

        # CPU time of this process, not wall time: other tenants of a shared machine do not
        # count, and there is no I/O to wait for.
        started = time.process_time()
        async with anyio.create_task_group() as tg:
            for k in range(concurrency):
                tg.start_soon(worker, k)
        return (time.process_time() - started) / (per_task * concurrency)


def run(*, quick: bool = False) -> dict[str, Any]:
    rounds, requests = (2, 2_000) if quick else (3, 3_000)
    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(rounds):
        for backend in ("asyncio", "trio"):
            for concurrency in (1, 256):
                for mode in ("floor", "asyncauth"):
                    seconds = anyio.run(_pass, mode, requests, concurrency, 100, backend=backend)
                    key = f"{backend}:C={concurrency}"
                    results.setdefault(key, {}).setdefault(mode, []).append(seconds * 1e6)
    summary: dict[str, Any] = {"rounds": rounds, "requests": requests, "repositories": 100}
    for key, modes in results.items():
        floor = statistics.median(modes["floor"])
        auth = statistics.median(modes["asyncauth"])
        summary[key] = {
            "floor_us": floor,
            "asyncauth_us": auth,
            "added_us": auth - floor,
            "ratio": floor / auth,
        }
    return summary
