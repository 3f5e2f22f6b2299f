"""Every wait of a token request has a bound (issue 11 #2).

A token server that accepts the connection and never answers must not hang the request that
needs the token, nor every other request waiting for the same token: the token request carries
the caller's timeout, and a task waiting for another task's token fetch waits at most its own
request's timeout budget (then ``httpx.ReadTimeout``, as if it had fetched the token itself).
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest

from asyncauth import Credential

from .._secrets import secret
from .._transport_choice import every_transport
from .conftest import client_on
from .peers import Reply, Server, bearer_challenge

USER = "alice"
PASSWORD = secret("pw-WAITS-secret-1", user=USER)
MANIFEST = "/v2/org/app/manifests/v1"
GUARD = 12.0
"""How long the test lets a request run before calling it hung (the old code never ended)."""


def hanging_realm(registry: Server, realm: Server) -> None:
    registry.route("/v2/", bearer_challenge(realm.url + "/token"))
    realm.route("/token", Reply(hang=True))


@every_transport
async def test_a_token_server_that_never_answers_times_out(
    transport: str, environ: pytest.MonkeyPatch, registry: Server, realm: Server
) -> None:
    hanging_realm(registry, realm)
    async with client_on(environ, transport, Credential(USER, PASSWORD), timeout=0.5) as http:
        started = time.monotonic()
        with anyio.fail_after(GUARD):
            with pytest.raises(httpx.TimeoutException):
                await http.get(registry.url + MANIFEST)
    assert time.monotonic() - started < 10  # a read timeout of 0.5 s, generously
    assert [s.path for s in realm.seen] == ["/token"]


@every_transport
async def test_a_task_waiting_for_another_tasks_token_waits_its_own_budget(
    transport: str, environ: pytest.MonkeyPatch, registry: Server, realm: Server
) -> None:
    """The leader's token request may take its own (long) timeout; a follower with a short one
    gives up when its own timeout (0.25 s, the whole request's) runs out and sends nothing."""
    hanging_realm(registry, realm)
    credential = Credential(USER, PASSWORD)
    async with (
        client_on(environ, transport, credential, timeout=60.0) as http,
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(http.get, registry.url + MANIFEST)  # the leader: it hangs
        with anyio.fail_after(GUARD):
            assert await anyio.to_thread.run_sync(realm.arrived.wait, GUARD)
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout, match=r"no token within 0\.25 s"):
                await http.get(registry.url + MANIFEST, timeout=0.25)
        waited = time.monotonic() - started
        tasks.cancel_scope.cancel()
    assert 0.2 < waited < 10
    assert len(realm.seen) == 1  # the follower waited for the leader's request, sent none


@every_transport
async def test_a_token_request_that_dies_in_the_transport_wakes_every_waiter(
    transport: str, environ: pytest.MonkeyPatch, registry: Server, realm: Server
) -> None:
    """httpx tells an auth flow that its request failed only by closing it (``GeneratorExit``,
    no cause): the single-flight entry must still be released, so that each of the tasks waiting
    for that token tries in turn and fails as fast as the token server does, not at its timeout."""
    registry.route("/v2/", bearer_challenge(realm.url + "/token"))
    realm.route("/token", Reply(drop=True))
    outcomes: list[str] = []

    async def pull(http: Any) -> None:
        try:
            await http.get(registry.url + MANIFEST)
        except httpx.TransportError as exc:
            outcomes.append(type(exc).__name__)

    credential = Credential(USER, PASSWORD)
    async with client_on(environ, transport, credential, timeout=60.0) as http:
        started = time.monotonic()
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tasks:
                for _ in range(20):
                    tasks.start_soon(pull, http)
    assert len(outcomes) == 20, outcomes
    assert time.monotonic() - started < 10  # nobody waited out the 60 s timeout
    assert 1 <= len(realm.seen) <= 40  # one try per task (aiohttp retries a dropped GET once)
