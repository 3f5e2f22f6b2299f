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
import re
import sys
import threading
import time
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


# --- aiohttp: the limit, its floors, and asyncauth's middleware -----------------------------------


def _counting(outcome: Outcome) -> Any:
    """A middleware placed last (inside the one under test): every response the registry sends
    to the session's requests, 401s included. The middleware rows all carry it, so the static
    header and asyncauth pay the same for it and their ratio compares the two alone."""
    statuses = outcome.statuses

    async def counting(request: Any, handler: Any) -> Any:
        response = await handler(request)
        statuses[response.status] += 1
        return response

    return counting


def _static_header(job: Job, urls: list[str]) -> Any:
    """A middleware that sets a pre-fetched ``Authorization`` header: the token of the request's
    repository, found by the URL's path (a registry token is per repository). Nothing else: the
    floor under any auth middleware, which must at least find the request's token."""
    from yarl import URL

    tokens = _tokens(job)
    by_path = {
        URL(url).raw_path: f"Bearer {tokens[repository]}"
        for url, repository in zip(urls, job["repositories"], strict=True)
    }

    async def static(request: Any, handler: Any) -> Any:
        request.headers["Authorization"] = by_path[request.url.raw_path]
        return await handler(request)

    return static


class ByHand:
    """The registry handshake written by hand on raw aiohttp, as a careful client would do it:
    one ``GET /v2/`` ping whose 401 names the token realm and service, then one token request
    per repository (GET with Basic auth, ``scope=repository:NAME:pull``). Concurrent requests
    share the ping, and a repository's token request, through a future; a warm request is a
    dictionary lookup and an ``await`` of a finished future. No retries, no refresh, no rules:
    what the middleware's cold pass is held against."""

    def __init__(self, job: Job, session: Any, outcome: Outcome) -> None:
        import asyncio  # noqa: TID251 - raw aiohttp's own futures: this client is asyncio-only

        self._asyncio = asyncio
        self._job, self._session, self._statuses = job, session, outcome.statuses
        self._ping: Any = None
        self._headers: dict[int, Any] = {}  # repository index -> future of its headers

    async def headers(self, k: int) -> dict[str, str]:
        """The request headers for repository ``k``, its token fetched once."""
        future = self._headers.get(k)
        if future is None:
            future = self._headers[k] = self._asyncio.ensure_future(self._token(k))
        headers: dict[str, str] = await future
        return headers

    async def _challenge(self) -> tuple[str, str]:
        if self._ping is None:
            self._ping = self._asyncio.ensure_future(self._learn())
        realm_service: tuple[str, str] = await self._ping
        return realm_service

    async def _learn(self) -> tuple[str, str]:
        async with self._session.get(f"{self._job['registry_url']}/v2/") as response:
            self._statuses[response.status] += 1
            challenge = response.headers.get("WWW-Authenticate", "")
        if response.status != 401 or not challenge.startswith("Bearer "):
            raise RuntimeError(f"/v2/ answered {response.status} {challenge!r}")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        return fields["realm"], fields["service"]

    async def _token(self, k: int) -> dict[str, str]:
        import aiohttp

        realm, service = await self._challenge()
        repository = self._job["repositories"][k]
        params = {"service": service, "scope": f"repository:{repository}:pull"}
        basic = aiohttp.BasicAuth(self._job["username"], self._job["password"])
        async with self._session.get(realm, params=params, auth=basic) as response:
            response.raise_for_status()
            answer = await response.json()
        token = answer.get("token") or answer["access_token"]
        return {"Accept": MANIFEST_ACCEPT, "Authorization": f"Bearer {token}"}


def _aiohttp_middlewares(job: Job, urls: list[str], outcome: Outcome) -> tuple[Any, Any]:
    """The session's middlewares for the job's mode, and asyncauth's middleware (or None)."""
    mode = job["mode"]
    if mode in ("asyncauth", "prefetch"):
        from asyncauth.aiohttp import RegistryAuthMiddleware

        auth = RegistryAuthMiddleware(_chain(job))
        return (auth, _counting(outcome)), auth
    if mode == "static":
        return (_static_header(job, urls), _counting(outcome)), None
    return (), None  # floor (the limit: pre-fetched headers per request), handshake (by hand)


async def run_aiohttp(job: Job) -> Outcome:
    """Raw aiohttp: with pre-fetched tokens (``mode="floor"``: the limit), with a middleware
    that sets them (``"static"``), doing the handshake by hand (``"handshake"``, :class:`ByHand`),
    or with ``asyncauth.aiohttp.RegistryAuthMiddleware`` and a cold cache (``"asyncauth"``), or
    one that ``prefetch``-ed the repositories' tokens before its cold pass (``"prefetch"``)."""
    import aiohttp

    outcome = Outcome()
    statuses = outcome.statuses
    urls = [_url(job, r) for r in job["repositories"]]
    middlewares, auth = _aiohttp_middlewares(job, urls, outcome)
    fixed = _headers(job, bearer=job["mode"] == "floor")
    method, count, counted = job["method"], len(urls), bool(middlewares)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, middlewares=middlewares) as session:
        by_hand = ByHand(job, session, outcome) if job["mode"] == "handshake" else None

        async def one(i: int) -> tuple[int, str | None]:
            k = i % count
            headers = fixed[k] if by_hand is None else await by_hand.headers(k)
            async with session.request(method, urls[k], headers=headers) as response:
                await response.read()
                if not counted:
                    statuses[response.status] += 1
                return response.status, response.headers.get("Docker-Content-Digest")

        if job["mode"] == "prefetch":
            await _prefetch(auth, session, job, outcome)
        await run_passes(outcome, job, one)
    _auth_stats(auth, outcome)
    return outcome


async def _prefetch(auth: Any, session: Any, job: Job, outcome: Outcome) -> None:
    """``prefetch`` of every repository before the cold pass (``mode="prefetch"``): its time
    and token requests are reported apart from the passes'."""
    references = [f"{job['registry_host']}/{r}" for r in job["repositories"]]
    started = time.perf_counter()
    await auth.prefetch(references, session=session, base_url=job["registry_url"])
    outcome.extra["prefetch_ms"] = (time.perf_counter() - started) * 1000
    outcome.extra["prefetch_token_requests"] = auth.stats.token_requests


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
