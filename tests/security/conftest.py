"""Fixtures of the hostile-network suite: loopback peers, and clients on a chosen transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from asyncauth import Chain, Credential, RegistryAuth, create_client

from .._fakes import Fixed
from .._transport_choice import force_transport
from .peers import FakeInternet, Server


@pytest.fixture
def internet() -> Iterator[FakeInternet]:
    with FakeInternet() as running:
        yield running
    assert not running.surprises, running.surprises


@pytest.fixture
def registry() -> Iterator[Server]:
    """A hostile registry (routes declared by the test)."""
    with Server("registry") as running:
        yield running
    assert not running.surprises, running.surprises


@pytest.fixture
def realm() -> Iterator[Server]:
    """A hostile token server on another loopback port."""
    with Server("token-server") as running:
        yield running
    assert not running.surprises, running.surprises


@pytest.fixture
def elsewhere() -> Iterator[Server]:
    """A third origin: where redirects lead."""
    with Server("elsewhere") as running:
        yield running
    assert not running.surprises, running.surprises


@asynccontextmanager
async def client_on(
    environ: pytest.MonkeyPatch,
    transport: str,
    credential: Credential,
    *,
    internet: FakeInternet | None = None,
    auth: dict[str, Any] | None = None,
    **kwargs: Any,
) -> AsyncIterator[Any]:
    """``create_client()`` on ``transport`` with ``credential`` (``auth``: more arguments of
    its ``RegistryAuth``); remote hosts reach ``internet`` (proven before the client is handed
    out)."""
    force_transport(environ, transport)
    if internet is not None:
        environ.setenv("HTTP_PROXY", internet.url)
        environ.setenv("NO_PROXY", "127.0.0.1")
    auth = dict(auth or {})
    auth.setdefault("insecure_registries", kwargs.get("insecure_registries", ()))
    registry_auth = RegistryAuth(Chain([Fixed(credential)]), **auth)
    async with create_client(auth=registry_auth, **kwargs) as http:
        assert http.transport_name == transport
        if internet is not None:
            await internet.prove_route(http)
        yield http
