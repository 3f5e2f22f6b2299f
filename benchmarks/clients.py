"""The clients compared, each doing the same workload (:mod:`benchmarks.passes`) its natural way.

Every response a client sees — including the 401s and token answers inside an auth handshake,
where the client lets us see them — passes a counting hook, the same hook for a client's static
header and asyncauth modes.

Modes for the httpx-family clients:

``floor``
    a pre-fetched ``Authorization: Bearer`` header per repository and no auth: what the HTTP
    client costs by itself.
``asyncauth``
    ``asyncauth.RegistryAuth`` (``asyncauth.httpx2.RegistryAuth`` for httpx2) with a cold cache
    and ``default_chain(username=..., password=...)``: the handshake, token fetches and all.
``create_client``
    ``asyncauth.create_client(chain=...)`` on the transport the job names (one of those it may
    pick for the running event loop; see :func:`_create_client`).

Each function returns a :class:`~benchmarks.passes.Outcome`; :mod:`benchmarks.worker` prints it.
"""

from __future__ import annotations

import base64
import itertools
import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .passes import Job, Outcome, run_passes, run_passes_threads

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def _tokens(job: Job) -> dict[str, str]:
    tokens: dict[str, str] = json.loads(Path(job["tokens_file"]).read_text())
    return tokens


def _url(job: Job, repository: str) -> str:
    return f"{job['registry_url']}/v2/{repository}/manifests/{job['tag']}"


def _headers(job: Job, *, bearer: bool) -> list[dict[str, str]]:
    """Per repository: ``Accept``, and the pre-fetched token when ``bearer``."""
    tokens = _tokens(job) if bearer else {}
    return [
        {"Accept": MANIFEST_ACCEPT, **({"Authorization": f"Bearer {tokens[r]}"} if bearer else {})}
        for r in job["repositories"]
    ]


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


def _auth_stats(auth: Any, outcome: Outcome) -> None:
    stats = getattr(auth, "stats", None)
    if stats is not None:
        outcome.extra["auth_stats"] = {
            name: getattr(stats, name)
            for name in ("token_requests", "challenges", "retries", "resolutions")
            if hasattr(stats, name)
        }


# --- httpx, httpx2, httpx on aiohttp, create_client() ---------------------------------------------


FASTER = {"aiohttp": (), "httpx2": ("httpx_aiohttp",), "httpx": ("httpx_aiohttp", "httpx2")}
"""The packages of the transports ``create_client()`` prefers to each kind (as in the tests'
``tests/_transport_choice.py``)."""


def _create_client(job: Job, kwargs: dict[str, Any]) -> Any:
    """``create_client()`` on the job's transport kind, among those it may pick here.

    ``create_client`` tries the kinds installed for the running event loop, fastest first. To
    measure each of them, the packages of the faster ones are made to look uninstalled in this
    worker process (``sys.modules[name] = None``, as the test suite does), so that the real
    selection code picks the job's kind; the client must then say it is on it.
    """
    import asyncauth

    for module in FASTER[job["kind"]]:
        sys.modules[module] = None  # type: ignore[assignment]
    client = asyncauth.create_client(chain=_chain(job), **kwargs)
    if client.transport_name != job["kind"]:
        raise RuntimeError(f"create_client() is on {client.transport_name}, not {job['kind']}")
    return client


def build_httpx_client(job: Job, outcome: Outcome) -> Any:
    """The job's httpx-family client; its response hook counts every response."""
    transport_name = job["transport"]
    module: Any
    if transport_name == "httpx2":
        import httpx2

        module = httpx2
    else:
        import httpx

        module = httpx

    statuses = outcome.statuses

    async def hook(response: Any) -> None:
        statuses[response.status_code] += 1

    kwargs: dict[str, Any] = {"timeout": 60.0, "event_hooks": {"response": [hook]}}
    if job.get("limits"):  # by hand (``--job``): connection limits other than the defaults
        kwargs["limits"] = module.Limits(**job["limits"])
    if job["mode"] == "create_client":
        client = _create_client(job, kwargs)
        outcome.extra["client"] = repr(client)
        return client
    kwargs["trust_env"] = False
    if transport_name == "httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        kwargs["transport"] = AiohttpTransport()
    if job["mode"] == "asyncauth":
        if transport_name == "httpx2":
            from asyncauth.httpx2 import RegistryAuth as Auth2

            kwargs["auth"] = Auth2(_chain(job))
        else:
            import asyncauth

            kwargs["auth"] = asyncauth.RegistryAuth(_chain(job))
    return module.AsyncClient(**kwargs)


async def run_httpx(job: Job) -> Outcome:
    outcome = Outcome()
    client = build_httpx_client(job, outcome)
    urls = [_url(job, r) for r in job["repositories"]]
    headers = _headers(job, bearer=job["mode"] == "floor")
    method, count = job["method"], len(urls)

    async def one(i: int) -> tuple[int, str | None]:
        k = i % count
        response = await client.request(method, urls[k], headers=headers[k])
        return response.status_code, response.headers.get("docker-content-digest")

    async with client:
        await run_passes(outcome, job, one)
    _auth_stats(getattr(client, "auth", None), outcome)
    return outcome


def run_httpx_sync(job: Job) -> Outcome:
    """A plain ``httpx.Client`` shared by ``concurrency`` threads (what sync code does)."""
    import httpx

    outcome = Outcome()
    lock = threading.Lock()
    statuses = outcome.statuses

    def hook(response: httpx.Response) -> None:
        with lock:
            statuses[response.status_code] += 1

    urls = [_url(job, r) for r in job["repositories"]]
    headers = _headers(job, bearer=job["mode"] == "floor")
    kwargs: dict[str, Any] = {"timeout": 60.0, "trust_env": False}
    kwargs["event_hooks"] = {"response": [hook]}
    if job["mode"] == "asyncauth":
        import asyncauth

        kwargs["auth"] = asyncauth.RegistryAuth(_chain(job))
    method, count = job["method"], len(urls)
    with httpx.Client(**kwargs) as client:

        def one(i: int) -> tuple[int, str | None]:
            k = i % count
            response = client.request(method, urls[k], headers=headers[k])
            return response.status_code, response.headers.get("docker-content-digest")

        run_passes_threads(outcome, job, one)
    _auth_stats(kwargs.get("auth"), outcome)
    return outcome


# --- aiohttp: the limit (pre-fetched tokens), and asyncauth's middleware -----------------------


async def run_aiohttp(job: Job) -> Outcome:
    """Raw aiohttp with pre-fetched tokens (``mode="floor"``: the limit), or with
    ``asyncauth.aiohttp.RegistryAuthMiddleware`` and a cold cache (``mode="asyncauth"``)."""
    import aiohttp

    outcome = Outcome()
    statuses = outcome.statuses
    urls = [_url(job, r) for r in job["repositories"]]
    middlewares: tuple[Any, ...] = ()
    auth = None
    if job["mode"] == "asyncauth":
        from asyncauth.aiohttp import RegistryAuthMiddleware

        auth = RegistryAuthMiddleware(_chain(job))

        async def counting(request: Any, handler: Any) -> Any:
            """Inside the auth middleware: every response the registry sends, 401s included."""
            response = await handler(request)
            statuses[response.status] += 1
            return response

        middlewares = (auth, counting)
    headers = _headers(job, bearer=auth is None)
    method, count = job["method"], len(urls)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, middlewares=middlewares) as session:

        async def one(i: int) -> tuple[int, str | None]:
            k = i % count
            async with session.request(method, urls[k], headers=headers[k]) as response:
                await response.read()
                if auth is None:
                    statuses[response.status] += 1
                return response.status, response.headers.get("Docker-Content-Digest")

        await run_passes(outcome, job, one)
    _auth_stats(auth, outcome)
    return outcome


# --- peers from PyPI --------------------------------------------------------------------------


def run_oras(job: Job) -> Outcome:
    """oras-py, sync (requests), one ``Registry`` client per repository *per thread*.

    A shared client breaks across repositories (oras-py issue #133: it keeps one token and
    resends it to every repository, which answers 401 again), so each thread keeps a client for
    each repository it touches; each such client does its own handshake.
    """
    import oras.provider

    outcome = Outcome()
    lock = threading.Lock()
    statuses = outcome.statuses

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
        manifest = client_for(repository).get_manifest(f"{host}/{repository}:{job['tag']}")
        # get_manifest returns the parsed JSON only; the digest check is on its content.
        return 200, job["digest"] if manifest.get("schemaVersion") == 2 else None

    run_passes_threads(outcome, job, one)
    outcome.extra["clients"] = next(clients_made)
    return outcome


def _trace(outcome: Outcome) -> Any:
    import aiohttp

    async def on_end(session: Any, context: Any, params: Any) -> None:
        outcome.statuses[params.response.status] += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    return trace


async def run_aioregistry(job: Job) -> Outcome:
    """aioregistry: one ``AsyncRegistryClient`` shared by every task (its natural use)."""
    import aiohttp
    from aioregistry import AsyncRegistryClient, DictCredentialStore, Registry
    from aioregistry.models import RegistryManifestRef

    outcome = Outcome()
    host, _, port = job["registry_host"].partition(":")
    registry = Registry(host=host, port=int(port), prot="http")
    creds = DictCredentialStore({host: (job["username"], job["password"])})
    refs = [
        RegistryManifestRef(registry=registry, repo=r.split("/"), ref=job["tag"])
        for r in job["repositories"]
    ]
    count = len(refs)
    session = aiohttp.ClientSession(trace_configs=[_trace(outcome)])
    async with AsyncRegistryClient(session=session, creds=creds) as client:

        async def one(i: int) -> tuple[int, str | None]:
            manifest = await client.manifest_download(refs[i % count])
            return 200, job["digest"] if manifest is not None else None

        try:
            await run_passes(outcome, job, one)
        finally:
            await session.close()
    return outcome


async def run_drca(job: Job) -> Outcome:
    """docker-registry-client-async: one client shared by every task."""
    from docker_registry_client_async import DockerRegistryClientAsync, ImageName

    outcome = Outcome()
    host = job["registry_host"]
    empty = Path(job["workdir"]) / "home" / "drca-config.json"
    empty.parent.mkdir(exist_ok=True)
    empty.write_text('{"auths": {}}')
    client = DockerRegistryClientAsync(
        credentials_store=empty, client_session_kwargs={"trace_configs": [_trace(outcome)]}
    )
    basic = base64.b64encode(f"{job['username']}:{job['password']}".encode()).decode()
    await client.add_credentials(credentials=basic, endpoint=host)
    names = [ImageName.parse(f"{host}/{r}:{job['tag']}") for r in job["repositories"]]
    count = len(names)
    async with client:

        async def one(i: int) -> tuple[int, str | None]:
            got = await client.get_manifest(names[i % count], protocol="http")
            response = got.client_response
            return response.status, response.headers.get("Docker-Content-Digest")

        await run_passes(outcome, job, one)
    return outcome


ASYNC_CLIENTS: dict[str, Callable[[Job], Any]] = {
    "httpx": run_httpx,
    "aiohttp": run_aiohttp,
    "aioregistry": run_aioregistry,
    "drca": run_drca,
}
SYNC_CLIENTS: dict[str, Callable[[Job], Outcome]] = {
    "httpx-sync": run_httpx_sync,
    "oras": run_oras,
}
