"""The clients compared, each doing the same workload its natural way.

The workload: ``requests`` manifest GETs (or HEADs) spread round-robin over the seeded
repositories, ``concurrency`` of them in flight at once (tasks for async clients, threads for sync
ones). Every answer must be a 200 carrying the expected ``Docker-Content-Digest``; anything else
(or an exception) is an error. Every response the client sees — including the 401s and token
answers inside an auth handshake — passes a counting hook, the same hook for floor and asyncauth.

Modes for the httpx-family clients:

``floor``
    a pre-fetched ``Authorization: Bearer`` header per repository and no auth: what the HTTP
    client costs by itself.
``asyncauth``
    ``asyncauth.RegistryAuth`` (``asyncauth.httpx2.RegistryAuth`` for httpx2) with a cold cache
    and ``default_chain(username=..., password=...)``: the handshake, token fetches and all.

Each function returns a dict of raw numbers; :mod:`benchmarks.worker` adds timing and memory.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)

Job = dict[str, Any]


@dataclass
class Tally:
    """What one run saw. ``latencies`` are seconds, one per request, in completion order."""

    latencies: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)  # completion times since the start
    unfinished: list[float] = field(default_factory=list)  # in flight when the window closed
    window_closed: bool = False
    elapsed: float = 0.0  # the requests themselves: from the first start to the last end
    started: int = 0  # requests started (the repositories touched: min(R, started))
    answered: set[int] = field(default_factory=set)  # repositories (index) that answered 200
    ok: int = 0
    errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # every response seen, via the hook
    error_samples: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what[:300])


def _tokens(job: Job) -> dict[str, str]:
    tokens: dict[str, str] = json.loads(Path(job["tokens_file"]).read_text())
    return tokens


def _url(job: Job, repository: str) -> str:
    return f"{job['registry_url']}/v2/{repository}/manifests/{job['tag']}"


def _clean_environ(job: Job) -> dict[str, str]:
    """What asyncauth's chain reads: nothing from this machine's own configuration."""
    home = Path(job["workdir"]) / "home"
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), "IMGPKG_ENABLE_IAAS_AUTH": "false"}


def _chain(job: Job) -> Any:
    import asyncauth

    return asyncauth.default_chain(
        environ=_clean_environ(job), username=job["username"], password=job["password"]
    )


# --- async drivers ------------------------------------------------------------------------------


def _close_window(tally: Tally, job: Job, origin: float, starts: Iterable[float | None]) -> None:
    """The window closed: freeze the numbers and hand them to the worker, which prints them and
    ends its process at once. Unwinding hundreds of in-flight requests is not measured and can
    take longer than the run (httpcore rescans its whole queue for every cancelled request)."""
    now = time.perf_counter()
    tally.elapsed = now - origin
    tally.window_closed = True
    tally.unfinished = [now - s for s in starts if s is not None]
    tally.latencies = list(tally.latencies)
    on_window = job.get("_on_window")
    if on_window is not None:
        on_window(tally)  # does not return


async def _drive(
    tally: Tally, job: Job, one: Callable[[int], Awaitable[tuple[int, str | None]]]
) -> None:
    """Run ``one(i)`` for i in range(requests) with ``concurrency`` tasks (anyio: any loop).

    With ``seconds``, the window closes then: requests in flight are counted as ``unfinished``
    (their time so far joins the latencies, so a closed window does not hide the slowest).
    """
    import anyio

    count, digest = job["requests"], job["digest"]
    repositories = len(job["repositories"])
    counter = itertools.count()
    latencies, ends = tally.latencies, tally.ends
    origin = time.perf_counter()
    current: list[float | None] = [None] * job["concurrency"]

    async def worker(slot: int) -> None:
        while (i := next(counter)) < count:
            tally.started += 1
            started = current[slot] = time.perf_counter()
            try:
                status, got = await one(i)
            except Exception as exc:
                tally.error(f"{type(exc).__name__}: {exc}")
                status, got = -1, None
            now = time.perf_counter()
            current[slot] = None
            latencies.append(now - started)
            ends.append(now - origin)
            if status == 200 and got == digest:
                tally.ok += 1
                tally.answered.add(i % repositories)
            elif status != -1:
                tally.error(f"status {status}, digest {got}")

    async def window(workers: Any) -> None:
        await anyio.sleep(job["seconds"])
        _close_window(tally, job, origin, current)
        workers.cancel_scope.cancel()  # without a worker process to end (``--job`` by hand)

    async with anyio.create_task_group() as outer:
        async with anyio.create_task_group() as tg:
            if job.get("seconds"):
                outer.start_soon(window, tg)
            for slot in range(job["concurrency"]):
                tg.start_soon(worker, slot)
        outer.cancel_scope.cancel()
    if not tally.window_closed:
        tally.elapsed = time.perf_counter() - origin


def _drive_threads(tally: Tally, job: Job, one: Callable[[int], tuple[int, str | None]]) -> None:
    """``one(i)`` from ``concurrency`` threads; the window closes as for tasks (threads cannot
    be cancelled, so the worker process ends with them still running)."""
    count, digest = job["requests"], job["digest"]
    repositories = len(job["repositories"])
    counter = itertools.count()
    lock = threading.Lock()
    origin = time.perf_counter()
    deadline = origin + (job.get("seconds") or float("inf"))
    current: dict[int, float | None] = {}

    def worker() -> None:
        me = threading.get_ident()
        while time.perf_counter() < deadline and (i := next(counter)) < count:
            tally.started += 1  # racy under threads; only bounds the repositories touched
            started = current[me] = time.perf_counter()
            try:
                status, got = one(i)
            except Exception as exc:
                with lock:
                    tally.error(f"{type(exc).__name__}: {exc}")
                status, got = -1, None
            now = time.perf_counter()
            current[me] = None
            with lock:
                tally.latencies.append(now - started)
                tally.ends.append(now - origin)
                if status == 200 and got == digest:
                    tally.ok += 1
                    tally.answered.add(i % repositories)
                elif status != -1:
                    tally.error(f"status {status}, digest {got}")

    pool = ThreadPoolExecutor(max_workers=job["concurrency"])
    futures = [pool.submit(worker) for _ in range(job["concurrency"])]
    while not all(f.done() for f in futures):
        time.sleep(0.02)
        if time.perf_counter() >= deadline:
            with lock:
                stuck = _stuck_threads(current, origin, job["seconds"])
                if stuck:
                    tally.extra["hung"] = stuck
                _close_window(tally, job, origin, list(current.values()))
            break
    else:
        tally.elapsed = time.perf_counter() - origin
    pool.shutdown(wait=not tally.window_closed)
    for future in futures:
        if future.done():
            future.result()


def _stuck_threads(current: dict[int, float | None], origin: float, seconds: float) -> str:
    """Threads whose request has been in flight since the first half of the window and that
    wait inside asyncauth: how many, and where one of them is (innermost frames first)."""
    import sys
    import traceback

    half = origin + seconds / 2
    waiting = [t for t, s in current.items() if s is not None and s < half]
    frames = sys._current_frames()
    stuck: list[list[str]] = []
    for ident in waiting:
        stack = traceback.extract_stack(frames[ident]) if ident in frames else []
        ours = [
            f"{f.name} ({f.filename.split('site-packages/')[-1].split('/main/')[-1]}:{f.lineno})"
            for f in reversed(stack)
            if "/asyncauth/" in f.filename or "anyio/_core" in f.filename
        ]
        if ours:
            stuck.append(ours)
    if not stuck:
        return ""
    return (
        f"{len(stuck)} of {len(current)} threads stuck inside asyncauth since the first half of "
        "the window; one at " + " <- ".join(stuck[0][:4])
    )


# --- httpx, httpx2, httpx on aiohttp -------------------------------------------------------------


def _limits(module: Any, job: Job) -> Any:
    spec = job.get("limits")
    if not spec:
        return None
    return module.Limits(
        max_connections=spec.get("max_connections"),
        max_keepalive_connections=spec.get("max_keepalive_connections"),
    )


def gated(module: Any, inner: Any, limit: int) -> Any:
    """``inner`` with at most ``limit`` requests in flight: the rest wait on a semaphore, not in
    the connection pool (httpcore scans every waiting request against every connection each
    time a connection frees up, which is quadratic at high concurrency)."""
    import anyio

    class Releasing(module.AsyncByteStream):  # type: ignore[misc]
        def __init__(self, stream: Any, release: Callable[[], None]) -> None:
            self._stream, self._release = stream, release

        async def __aiter__(self) -> Any:
            async for chunk in self._stream:
                yield chunk

        async def aclose(self) -> None:
            try:
                await self._stream.aclose()
            finally:
                release, self._release = self._release, None
                if release is not None:
                    release()

    class Gated(module.AsyncBaseTransport):  # type: ignore[misc]
        def __init__(self) -> None:
            self._semaphore: Any = None

        async def handle_async_request(self, request: Any) -> Any:
            if self._semaphore is None:
                self._semaphore = anyio.Semaphore(limit)
            semaphore = self._semaphore
            await semaphore.acquire()
            try:
                response = await inner.handle_async_request(request)
            except BaseException:
                semaphore.release()
                raise
            response.stream = Releasing(response.stream, semaphore.release)
            return response

        async def aclose(self) -> None:
            await inner.aclose()

    return Gated()


def build_httpx_client(job: Job, tally: Tally) -> tuple[Any, Any]:
    """(client, module) for the job's transport and mode; the hook counts every response."""
    transport_name = job["transport"]
    module: Any
    if transport_name == "httpx2":
        import httpx2

        module = httpx2
    else:
        import httpx

        module = httpx

    statuses = tally.statuses

    async def hook(response: Any) -> None:
        statuses[response.status_code] += 1

    kwargs: dict[str, Any] = {"timeout": 60.0, "trust_env": False}
    kwargs["event_hooks"] = {"response": [hook]}
    limits = _limits(module, job)
    if transport_name == "httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        transport_kwargs = {"limits": limits} if limits is not None else {}
        kwargs["transport"] = AiohttpTransport(**transport_kwargs)
    elif limits is not None:
        kwargs["limits"] = limits
    gate = (job.get("limits") or {}).get("gate")
    if gate:
        inner = kwargs.pop("transport", None) or module.AsyncHTTPTransport(
            limits=kwargs.pop("limits", None)
            or module.Limits(max_connections=gate, max_keepalive_connections=gate)
        )
        kwargs["transport"] = gated(module, inner, gate)

    if job["mode"] == "asyncauth":
        if transport_name == "httpx2":
            from asyncauth.httpx2 import RegistryAuth as Auth2

            kwargs["auth"] = Auth2(_chain(job))
        else:
            import asyncauth

            kwargs["auth"] = asyncauth.RegistryAuth(_chain(job))
    if job["mode"] == "create_client":
        import asyncauth

        kwargs.pop("trust_env")
        client = asyncauth.create_client(chain=_chain(job), **kwargs)
        tally.extra["client"] = _describe(client)
        return client, module
    return module.AsyncClient(**kwargs), module


def _describe(client: Any) -> str:
    transport = getattr(client, "_transport", None)
    pool = getattr(transport, "_pool", None)
    limits = ""
    if pool is not None:
        limits = (
            f" max_connections={getattr(pool, '_max_connections', '?')}"
            f" max_keepalive={getattr(pool, '_max_keepalive_connections', '?')}"
        )
    kind = f"{type(client).__module__}.{type(client).__name__}"
    return f"{kind} on {type(transport).__name__}{limits}"


async def run_httpx(job: Job) -> Tally:
    tally = Tally()
    client, _module = build_httpx_client(job, tally)
    repositories = job["repositories"]
    urls = [_url(job, r) for r in repositories]
    tokens = _tokens(job)
    floor = job["mode"] == "floor"
    headers = [
        {"Accept": MANIFEST_ACCEPT, **({"Authorization": f"Bearer {tokens[r]}"} if floor else {})}
        for r in repositories
    ]
    method = job["method"]
    count = len(urls)

    async def one(i: int) -> tuple[int, str | None]:
        k = i % count
        response = await client.request(method, urls[k], headers=headers[k])
        return response.status_code, response.headers.get("docker-content-digest")

    async with client:
        await _drive(tally, job, one)
    auth = getattr(client, "auth", None)
    if auth is not None and hasattr(auth, "stats"):
        stats = auth.stats
        tally.extra["auth_stats"] = {
            "token_requests": stats.token_requests,
            "challenges": stats.challenges,
            "retries": stats.retries,
            "resolutions": stats.resolutions,
        }
    return tally


def run_httpx_sync(job: Job) -> Tally:
    """A plain ``httpx.Client`` shared by ``concurrency`` threads (what sync code does)."""
    import httpx

    tally = Tally()
    lock = threading.Lock()
    statuses = tally.statuses

    def hook(response: httpx.Response) -> None:
        with lock:
            statuses[response.status_code] += 1

    repositories = job["repositories"]
    urls = [_url(job, r) for r in repositories]
    tokens = _tokens(job)
    floor = job["mode"] == "floor"
    headers = [
        {"Accept": MANIFEST_ACCEPT, **({"Authorization": f"Bearer {tokens[r]}"} if floor else {})}
        for r in repositories
    ]
    kwargs: dict[str, Any] = {"timeout": 60.0, "trust_env": False}
    kwargs["event_hooks"] = {"response": [hook]}
    limits = _limits(httpx, job)
    if limits is not None:
        kwargs["limits"] = limits
    if job["mode"] == "asyncauth":
        import asyncauth

        kwargs["auth"] = asyncauth.RegistryAuth(_chain(job))
    method, count = job["method"], len(urls)
    with httpx.Client(**kwargs) as client:

        def one(i: int) -> tuple[int, str | None]:
            k = i % count
            response = client.request(method, urls[k], headers=headers[k])
            return response.status_code, response.headers.get("docker-content-digest")

        _drive_threads(tally, job, one)
    return tally


# --- the limit: raw aiohttp with pre-fetched tokens ----------------------------------------------


async def run_aiohttp(job: Job) -> Tally:
    import aiohttp

    tally = Tally()
    repositories = job["repositories"]
    urls = [_url(job, r) for r in repositories]
    tokens = _tokens(job)
    headers = [
        {"Accept": MANIFEST_ACCEPT, "Authorization": f"Bearer {tokens[r]}"} for r in repositories
    ]
    method, count = job["method"], len(urls)
    limit = (job.get("limits") or {}).get("max_connections") or 0
    connector = aiohttp.TCPConnector(limit=limit)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> tuple[int, str | None]:
            k = i % count
            async with session.request(method, urls[k], headers=headers[k]) as response:
                await response.read()
                tally.statuses[response.status] += 1
                return response.status, response.headers.get("Docker-Content-Digest")

        await _drive(tally, job, one)
    return tally


# --- peers from PyPI --------------------------------------------------------------------------


def run_oras(job: Job) -> Tally:
    """oras-py, sync (requests), one ``Registry`` client per repository *per thread*.

    A shared client breaks across repositories (oras-py issue #133: it keeps one token and
    resends it to every repository, which answers 401 again), so each thread keeps a client for
    each repository it touches; each such client does its own handshake.
    """
    import oras.provider

    tally = Tally()
    lock = threading.Lock()
    statuses = tally.statuses

    def hook(response: Any, *args: Any, **kwargs: Any) -> None:
        with lock:
            statuses[response.status_code] += 1

    host = job["registry_host"]
    repositories = job["repositories"]
    count = len(repositories)
    local = threading.local()
    clients_made = itertools.count()

    def client_for(repository: str) -> Any:
        mine: dict[str, Any] | None = getattr(local, "clients", None)
        if mine is None:
            mine = local.clients = {}
        registry = mine.get(repository)
        if registry is None:
            registry = oras.provider.Registry(hostname=host, insecure=True)
            registry.auth.set_basic_auth(job["username"], job["password"])
            registry.session.hooks["response"].append(hook)
            mine[repository] = registry
            next(clients_made)
        return registry

    def one(i: int) -> tuple[int, str | None]:
        repository = repositories[i % count]
        registry = client_for(repository)
        if job["method"] == "HEAD":
            response = registry.do_request(
                f"http://{host}/v2/{repository}/manifests/{job['tag']}",
                "HEAD",
                headers={"Accept": MANIFEST_ACCEPT},
            )
            return response.status_code, response.headers.get("Docker-Content-Digest")
        manifest = registry.get_manifest(f"{host}/{repository}:{job['tag']}")
        # get_manifest returns the parsed JSON only; the digest check is on its content.
        ok = manifest.get("schemaVersion") == 2
        return 200, job["digest"] if ok else None

    _drive_threads(tally, job, one)
    tally.extra["clients"] = next(clients_made)
    return tally


async def run_aioregistry(job: Job) -> Tally:
    """aioregistry: one ``AsyncRegistryClient`` shared by every task (its natural use)."""
    import aiohttp
    from aioregistry import AsyncRegistryClient, DictCredentialStore, Registry
    from aioregistry.models import RegistryManifestRef

    tally = Tally()

    async def on_end(session: Any, context: Any, params: Any) -> None:
        tally.statuses[params.response.status] += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    host, _, port = job["registry_host"].partition(":")
    registry = Registry(host=host, port=int(port), prot="http")
    creds = DictCredentialStore({host: (job["username"], job["password"])})
    repositories = job["repositories"]
    refs = [
        RegistryManifestRef(registry=registry, repo=r.split("/"), ref=job["tag"])
        for r in repositories
    ]
    count = len(refs)
    session = aiohttp.ClientSession(trace_configs=[trace])
    async with AsyncRegistryClient(session=session, creds=creds) as client:

        async def one(i: int) -> tuple[int, str | None]:
            ref = refs[i % count]
            if job["method"] == "HEAD":
                descriptor = await client.ref_lookup(ref)
                return (200, descriptor.digest) if descriptor else (404, None)
            manifest = await client.manifest_download(ref)
            return 200, job["digest"] if manifest is not None else None

        try:
            await _drive(tally, job, one)
        finally:
            await session.close()
    return tally


async def run_drca(job: Job) -> Tally:
    """docker-registry-client-async: one client shared by every task."""
    import aiohttp
    from docker_registry_client_async import DockerRegistryClientAsync, ImageName

    tally = Tally()

    async def on_end(session: Any, context: Any, params: Any) -> None:
        tally.statuses[params.response.status] += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    host = job["registry_host"]
    empty = Path(job["workdir"]) / "home" / "drca-config.json"
    empty.parent.mkdir(exist_ok=True)
    empty.write_text('{"auths": {}}')
    client = DockerRegistryClientAsync(
        credentials_store=empty, client_session_kwargs={"trace_configs": [trace]}
    )
    basic = base64.b64encode(f"{job['username']}:{job['password']}".encode()).decode()
    await client.add_credentials(credentials=basic, endpoint=host)
    names = [ImageName.parse(f"{host}/{r}:{job['tag']}") for r in job["repositories"]]
    count = len(names)
    async with client:

        async def one(i: int) -> tuple[int, str | None]:
            name = names[i % count]
            if job["method"] == "HEAD":
                head = await client.head_manifest(name, protocol="http")
                return (200 if head.result else 404), str(head.digest) if head.digest else None
            got = await client.get_manifest(name, protocol="http")
            return got.client_response.status, got.client_response.headers.get(
                "Docker-Content-Digest"
            )

        await _drive(tally, job, one)
    return tally


ASYNC_CLIENTS = {
    "httpx": run_httpx,
    "aiohttp": run_aiohttp,
    "aioregistry": run_aioregistry,
    "drca": run_drca,
}
SYNC_CLIENTS = {"httpx-sync": run_httpx_sync, "oras": run_oras}
