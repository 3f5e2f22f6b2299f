"""A request's timeout bounds its whole handshake, on every driver, whatever the token server does.

httpx bounds each phase of a request, and each *read*, on its own: a token server that accepts and
never answers held 100 concurrent requests of one scope for 8.1 s with ``timeout=2`` (each waiter
waited, took over, waited again), one that drips its answer a byte at a time was never cut off,
and a ``Retry-After: 5`` made a request with ``timeout=1`` wait 5 s. Now a request's deadline is
its client's timeout from when its handshake starts, and everything counts against it: waiting
for another request's token, the token request (its body read within what is left), a
``Retry-After``. Waiters share the leader's failure instead of taking over.

Drivers: httpx and httpx2 clients built by hand (``RegistryAuth`` as ``auth=``), a sync
``httpx.Client`` (in threads), :func:`asyncauth.create_client` (aiohttp's transport under
asyncio, httpx2's under trio) and the aiohttp middleware (asyncio only).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from asyncauth import Chain, Credential, RegistryAuth, create_client

from .._fakes import Fixed
from .._secrets import secret
from .._transport_choice import clear_proxy_environment
from .peers import Reply, Server, bearer_challenge

USER = "alice"
PASSWORD = secret("pw-DEADLINE-secret-2", user=USER)
MANIFEST = "/v2/org/app/manifests/v1"
TIMEOUT = 2.0
CONCURRENT = 100
GUARD = 20.0

DRIVERS = [
    *[("asyncio", d) for d in ("httpx", "httpx-sync", "httpx2", "create_client", "aiohttp")],
    *[("trio", d) for d in ("httpx", "httpx-sync", "httpx2", "create_client")],
]
every_driver = pytest.mark.parametrize(("anyio_backend", "driver"), DRIVERS)
Get = Callable[[str], Awaitable[int]]


def _timeouts(driver: str) -> tuple[type[BaseException], ...]:
    """The exceptions ``driver``'s own library raises for a timeout."""
    if driver == "httpx2":
        import httpx2

        return (httpx2.TimeoutException,)
    if driver == "aiohttp":
        return (TimeoutError,)  # aiohttp's ServerTimeoutError is one, and so is its total timeout
    return (httpx.TimeoutException,)


@asynccontextmanager
async def open_driver(driver: str, seconds: float) -> AsyncIterator[Get]:
    """A ``get(url) -> status`` through ``driver``, with a timeout of ``seconds`` for each
    request."""
    chain = Chain([Fixed(Credential(USER, PASSWORD))])
    if driver == "aiohttp":
        async with _aiohttp(chain, seconds) as get:
            yield get
        return
    if driver == "httpx2":
        import httpx2

        from asyncauth.httpx2 import RegistryAuth as Httpx2Auth

        async with httpx2.AsyncClient(auth=Httpx2Auth(chain), timeout=seconds) as client2:
            yield lambda url: _status(client2.get(url))
        return
    if driver == "httpx-sync":
        limiter = anyio.CapacityLimiter(CONCURRENT)
        with httpx.Client(auth=RegistryAuth(chain), timeout=seconds) as sync:

            async def get_sync(url: str) -> int:
                response = await anyio.to_thread.run_sync(sync.get, url, limiter=limiter)
                return response.status_code

            yield get_sync
        return
    make: Any = create_client if driver == "create_client" else httpx.AsyncClient
    async with make(auth=RegistryAuth(chain), timeout=seconds) as client:
        yield lambda url: _status(client.get(url))


async def _status(sending: Awaitable[Any]) -> int:
    return int((await sending).status_code)


@asynccontextmanager
async def _aiohttp(chain: Chain, seconds: float) -> AsyncIterator[Get]:
    import aiohttp

    from asyncauth.aiohttp import RegistryAuthMiddleware

    session = aiohttp.ClientSession(
        middlewares=(RegistryAuthMiddleware(chain),),
        timeout=aiohttp.ClientTimeout(total=seconds),
        connector=aiohttp.TCPConnector(limit=CONCURRENT),
    )
    async with session:

        async def get(url: str) -> int:
            async with session.get(url) as response:
                return response.status

        yield get


async def _all_at_once(get: Get, url: str, driver: str) -> tuple[list[str], float]:
    """``CONCURRENT`` requests of one scope at once: how each ended, and how long all took."""
    outcomes: list[str] = []

    async def one() -> None:
        try:
            outcomes.append(str(await get(url)))
        except _timeouts(driver) as exc:
            outcomes.append(f"timeout: {exc}")

    started = time.monotonic()
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tasks:
            for _ in range(CONCURRENT):
                tasks.start_soon(one)
    return outcomes, time.monotonic() - started


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxy_environment(monkeypatch)


@every_driver
async def test_a_hundred_requests_on_a_silent_token_server_end_within_their_timeout(
    driver: str, registry: Server, realm: Server
) -> None:
    registry.route("/v2/", bearer_challenge(realm.url + "/token"))
    realm.route("/token", Reply(hang=True))
    async with open_driver(driver, TIMEOUT) as get:
        outcomes, took = await _all_at_once(get, registry.url + MANIFEST, driver)
    assert [o for o in outcomes if not o.startswith("timeout")] == []
    assert len(outcomes) == CONCURRENT
    assert took < 1.5 * TIMEOUT, f"{CONCURRENT} requests took {took:.1f} s with timeout={TIMEOUT}"
    assert len(realm.seen) == 1  # one token request; the waiters shared its failure


@every_driver
async def test_a_token_server_that_drips_its_body_is_cut_off_at_the_timeout(
    driver: str, registry: Server, realm: Server
) -> None:
    body = json.dumps({"token": "dripped-TOKEN", "pad": "x" * 200}).encode()
    registry.route("/v2/", bearer_challenge(realm.url + "/token"))
    realm.route("/token", Reply(200, [("Content-Type", "application/json")], body, drip=0.5))
    async with open_driver(driver, TIMEOUT) as get:
        outcomes, took = await _all_at_once(get, registry.url + MANIFEST, driver)
    assert [o for o in outcomes if not o.startswith("timeout")] == []
    assert took < 1.5 * TIMEOUT, f"{CONCURRENT} requests took {took:.1f} s with timeout={TIMEOUT}"
    assert len(realm.seen) == 1


@pytest.mark.parametrize(
    ("anyio_backend", "driver"),
    [("asyncio", "aiohttp"), ("asyncio", "create_client"), ("trio", "create_client")],
)
async def test_a_token_server_that_drips_its_headers_is_cut_off_at_the_timeout(
    driver: str, registry: Server, realm: Server
) -> None:
    """Where asyncauth owns the transport (``create_client``, the middleware), the whole exchange
    is bounded, headers included. (A hand-built client's transport bounds each read: see
    docs/handshake.md.)"""
    body = json.dumps({"token": "dripped-TOKEN"}).encode()
    registry.route("/v2/", bearer_challenge(realm.url + "/token"))
    realm.route("/token", Reply(200, [], body, drip=0.5, drip_head=True))
    async with open_driver(driver, TIMEOUT) as get:
        outcomes, took = await _all_at_once(get, registry.url + MANIFEST, driver)
    assert [o for o in outcomes if not o.startswith("timeout")] == []
    assert took < 1.5 * TIMEOUT, f"{CONCURRENT} requests took {took:.1f} s with timeout={TIMEOUT}"
    assert len(realm.seen) == 1


@every_driver
async def test_a_retry_after_longer_than_the_timeout_fails_at_once_naming_the_wait(
    driver: str, registry: Server, realm: Server
) -> None:
    registry.route("/v2/", bearer_challenge(realm.url + "/token"))
    realm.route("/token", Reply(429, [("Retry-After", "5")]))
    async with open_driver(driver, 1.0) as get:
        started = time.monotonic()
        with anyio.fail_after(GUARD), pytest.raises(_timeouts(driver)) as caught:
            await get(registry.url + MANIFEST)
        took = time.monotonic() - started
    assert took < 1.5
    assert "answered 429 and asked to wait 5 s" in str(caught.value)
    assert "of this request's timeout" in str(caught.value)
    assert len(realm.seen) == 1
