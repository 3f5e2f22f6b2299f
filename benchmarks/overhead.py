"""What ``RegistryAuth`` costs per request by itself: CPU time, without a network or registry.

An ``httpx.MockTransport`` plays registry and token server in-process (a 401 challenge without a
token, a token for the realm, the manifest with one), so the difference between a client with a
static ``Authorization`` header and one with ``RegistryAuth`` is the auth's own work per request
(token-cache lookup, scope inference, the auth-flow generator). Measured with a warm cache (the
first pass fills it), sequentially and with 256 tasks, on asyncio and trio; rounds interleaved.

The aiohttp middleware's own call (:func:`_middleware_call`): aiohttp has no mock transport, so
the middleware is called directly, as aiohttp's chain calls it, with real ``ClientRequest``
objects and a handler that answers at once (a stand-in answer with a status and headers); its
caches are filled through an httpx client on the same ``RegistryAuth`` (``auth=`` shares them).
Against the same call of a middleware that only sets a static header, the difference is what
the middleware adds per warm request, without aiohttp's own request cost around it.
"""

from __future__ import annotations

import contextlib
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


class _Answer:
    """What the middleware reads of an answer: its status and headers (a manifest's)."""

    def __init__(self) -> None:
        from multidict import CIMultiDict, CIMultiDictProxy

        self.status = 200
        self.headers = CIMultiDictProxy(CIMultiDict({"Docker-Content-Digest": DIGEST}))

    def release(self) -> None:
        """Nothing to give back."""


class _Captured(Exception):
    """Raised by the capturing middleware: the request was built, nothing is sent."""


async def _requests(urls: list[str]) -> list[Any]:
    """aiohttp's own ``ClientRequest`` objects for ``urls``, as a middleware is handed them."""
    import aiohttp

    built: list[Any] = []

    async def capture(request: Any, handler: Any) -> Any:
        built.append(request)
        raise _Captured

    async with aiohttp.ClientSession(middlewares=(capture,)) as session:
        for url in urls:
            with contextlib.suppress(_Captured):
                await session.get(url)
    return built


async def _middleware_call(calls: int, repositories: int) -> tuple[float, float]:
    """CPU seconds per warm call: asyncauth's middleware, and a static-header middleware."""
    from asyncauth.aiohttp import RegistryAuthMiddleware

    chain = asyncauth.Chain([asyncauth.FlagsResolver(username="u", password="p")])
    auth = asyncauth.RegistryAuth(chain, headers={})
    urls = [f"{REGISTRY}/v2/team/app{i}/manifests/v1" for i in range(repositories)]
    async with httpx.AsyncClient(transport=httpx.MockTransport(_handler), auth=auth) as client:
        for url in urls:
            await client.get(url)  # the challenge, the credential and a token per repository
    middleware, answer = RegistryAuthMiddleware(auth=auth), _Answer()
    requests = await _requests(urls)
    by_path = {request.url.raw_path: f"Bearer {TOKEN}" for request in requests}

    async def handler(request: Any) -> Any:
        return answer

    async def static(request: Any, handler: Any) -> Any:
        request.headers["Authorization"] = by_path[request.url.raw_path]
        return await handler(request)

    measured = []
    for call in (middleware, static):
        for request in requests:  # warm: the middleware's routes are built
            await call(request, handler)
        started = time.process_time()
        for i in range(calls):
            await call(requests[i % repositories], handler)
        measured.append((time.process_time() - started) / calls)
    return measured[0], measured[1]


def _middleware(rounds: int, calls: int) -> dict[str, Any]:
    auth, floor = [], []
    for _ in range(rounds):
        a, f = anyio.run(_middleware_call, calls, 100)
        auth.append(a * 1e6)
        floor.append(f * 1e6)
    a, f = statistics.median(auth), statistics.median(floor)
    return {"floor_us": f, "asyncauth_us": a, "added_us": a - f, "ratio": None}


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
    summary["aiohttp middleware, its call alone (asyncio)"] = _middleware(
        rounds * 3, 20_000 if quick else 100_000
    )
    return summary
