"""One registry client per driver of the handshake, so that one test runs through all of them.

``driver`` (a test parameter; tests/conftest.py lists which backend runs which) is one of:

* ``"httpx"``: ``httpx.AsyncClient(auth=RegistryAuth)`` (``async_auth_flow``);
* ``"httpx-sync"``: ``httpx.Client(auth=RegistryAuth)`` in worker threads (``sync_auth_flow``);
* ``"httpx2"``: ``httpx2.AsyncClient(auth=asyncauth.httpx2.RegistryAuth)`` over the same state
  (:func:`httpx2_twin`);
* ``"aiohttp"``: ``aiohttp.ClientSession(middlewares=(RegistryAuthMiddleware(auth=...),))``
  (asyncio only).

Every driver records what its client received in the same shape: ``seen`` is one
``(status, "METHOD /path")`` per response, in order: the registry's answers (the probe, each
retry), the ping and the token server's answers. For httpx that is a response event hook; for
aiohttp a middleware after the auth sees the registry's answers and a trace config the requests
the middleware makes itself (the ping and token requests, which skip the session's middlewares).
``agents`` are the ``User-Agent`` values of the requests that reached the registry.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, BinaryIO

import anyio.to_thread
import httpx

from asyncauth import RegistryAuth

ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
_OURS = "asyncauth-test-request"  # trace_request_ctx of the test's own requests


@dataclass
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes
    url: str
    history: list[int]


@dataclass
class DriverClient:
    """What a test does with a client, whichever driver carries the handshake."""

    driver: str
    send: Any
    seen: list[tuple[int, str]] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)

    @property
    def statuses(self) -> list[int]:
        return [status for status, _ in self.seen]

    @property
    def unauthorized(self) -> int:
        return self.statuses.count(401)

    async def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | str | BinaryIO | None = None,
        streamed: list[int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """``content`` goes to the client as it is (bytes, a str, a file: httpx's ``content=``,
        aiohttp's ``data=``); ``streamed``: send ``content`` (bytes) as a one-shot stream,
        counting its iterations there."""
        answer: Answer = await self.send(method, url, content, streamed, dict(headers or {}))
        return answer

    async def get(self, url: str, **kwargs: Any) -> Answer:
        return await self.request("GET", url, **kwargs)


def _httpx_answer(response: httpx.Response) -> Answer:
    history = [hop.status_code for hop in response.history]
    return Answer(
        response.status_code, response.headers, response.content, str(response.url), history
    )


def _sync_body(content: bytes, streamed: list[int]) -> Iterator[bytes]:
    streamed.append(1)
    yield content


async def _async_body(content: bytes, streamed: list[int]) -> AsyncIterator[bytes]:
    streamed.append(1)
    yield content


def _body(driver: str, content: bytes | None, streamed: list[int] | None) -> Any:
    if content is None or streamed is None:
        return content
    if driver == "httpx-sync":
        return _sync_body(content, streamed)
    return _async_body(content, streamed)


@asynccontextmanager
async def open_client(
    driver: str,
    auth: RegistryAuth,
    *,
    seconds: float = 30.0,
    connections: int = 64,
    follow_redirects: bool = False,
) -> AsyncIterator[DriverClient]:
    """A client of ``driver`` over ``auth``'s state (headers: :data:`ACCEPT`; ``seconds``: its
    timeout)."""
    if driver == "aiohttp":
        async with _aiohttp_client(auth, seconds, connections, follow_redirects) as client:
            yield client
        return
    client = DriverClient(driver, None)

    def record(response: httpx.Response) -> None:
        request = response.request
        client.seen.append((response.status_code, f"{request.method} {request.url.path}"))

    def agent(request: httpx.Request) -> None:
        client.agents.append(request.headers.get("User-Agent", ""))

    options: dict[str, Any] = dict(
        auth=auth,
        headers=ACCEPT,
        timeout=seconds,
        limits=httpx.Limits(max_connections=connections),
        follow_redirects=follow_redirects,
    )
    if driver == "httpx":

        async def arecord(response: httpx.Response) -> None:
            record(response)

        async def aagent(request: httpx.Request) -> None:
            agent(request)

        hooks = {"response": [arecord], "request": [aagent]}
        async with httpx.AsyncClient(event_hooks=hooks, **options) as http:

            async def send(method: str, url: str, content: Any, streamed: Any, headers: Any) -> Any:
                body = _body(driver, content, streamed)
                response = await http.request(method, url, content=body, headers=headers)
                return _httpx_answer(response)

            client.send = send
            yield client
        return
    if driver == "httpx2":
        async with _httpx2_client(auth, client, record, agent, options) as made:
            yield made
        return
    assert driver == "httpx-sync", driver
    with httpx.Client(event_hooks={"response": [record], "request": [agent]}, **options) as sync:

        async def send_sync(
            method: str, url: str, content: Any, streamed: Any, headers: Any
        ) -> Any:
            body = _body(driver, content, streamed)
            call = functools.partial(sync.request, method, url, content=body, headers=headers)
            return _httpx_answer(await anyio.to_thread.run_sync(call))

        client.send = send_sync
        yield client


@asynccontextmanager
async def _aiohttp_client(
    auth: RegistryAuth, seconds: float, connections: int, follow_redirects: bool
) -> AsyncIterator[DriverClient]:
    import aiohttp

    from asyncauth.aiohttp import RegistryAuthMiddleware

    client = DriverClient("aiohttp", None)

    async def registry_side(request: aiohttp.ClientRequest, handler: Any) -> Any:
        client.agents.append(request.headers.get("User-Agent", ""))
        response = await handler(request)
        client.seen.append((response.status, f"{request.method} {request.url.path}"))
        return response

    async def own_request_end(session: Any, context: SimpleNamespace, params: Any) -> None:
        if context.trace_request_ctx != _OURS:  # the middleware's ping or token request
            client.seen.append((params.response.status, f"{params.method} {params.url.path}"))

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(own_request_end)
    session = aiohttp.ClientSession(
        middlewares=(RegistryAuthMiddleware(auth=auth), registry_side),
        headers=ACCEPT,
        timeout=aiohttp.ClientTimeout(total=seconds),
        connector=aiohttp.TCPConnector(limit=connections),
        trace_configs=[trace],
    )
    async with session:

        async def send(method: str, url: str, content: Any, streamed: Any, headers: Any) -> Any:
            body = _body("aiohttp", content, streamed)
            async with session.request(
                method,
                url,
                data=body,
                headers=headers,
                allow_redirects=follow_redirects,
                trace_request_ctx=_OURS,
            ) as response:
                body = await response.read()
                history = [hop.status for hop in response.history]
                headers = httpx.Headers(list(response.headers.items()))
                return Answer(response.status, headers, body, str(response.url), history)

        client.send = send
        yield client


def httpx2_twin(auth: RegistryAuth) -> Any:
    """An ``asyncauth.httpx2.RegistryAuth`` over ``auth``'s state (challenges, credentials,
    tokens, stats), so that a test reads the same counters whichever driver ran."""
    import httpx2

    from asyncauth.httpx2 import RegistryAuth as Httpx2Auth

    twin = Httpx2Auth.__new__(Httpx2Auth)
    twin.__dict__.update(auth.__dict__)
    twin._timeouts = (httpx2.TimeoutException,)
    return twin


@asynccontextmanager
async def _httpx2_client(
    auth: RegistryAuth, client: DriverClient, record: Any, agent: Any, options: dict[str, Any]
) -> AsyncIterator[DriverClient]:
    import httpx2

    async def arecord(response: Any) -> None:
        record(response)

    async def aagent(request: Any) -> None:
        agent(request)

    options = {**options, "auth": httpx2_twin(auth)}
    options["limits"] = httpx2.Limits(max_connections=options["limits"].max_connections)
    hooks = {"response": [arecord], "request": [aagent]}
    async with httpx2.AsyncClient(event_hooks=hooks, **options) as http:

        async def send(method: str, url: str, content: Any, streamed: Any, headers: Any) -> Any:
            body = _body("httpx2", content, streamed)
            response = await http.request(method, url, content=body, headers=headers)
            return _httpx_answer(response)

        client.send = send
        yield client
