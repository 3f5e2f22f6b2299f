"""Every use of aiobotocore and botocore internals, behind one fence.

aiobotocore (>= 3.9) has an httpx backend, ``HttpxSession``, that runs under trio as well as
asyncio. It builds its own ``AsyncClient``; :func:`session_class` returns a subclass that builds
it on the caller's transport instead. aiobotocore prefers the ``httpx2`` fork when it is
installed, while a caller's transport is an ``httpx`` one, so requests cross over through
:mod:`asyncauth._http.bridge`.

What the caller's transport carries: the AWS API calls of clients created with
:func:`client_config`. What it does not: aiobotocore's credential providers (IMDS, container,
SSO, STS) build their own ``HttpxSession`` and so use aiobotocore's client.

Private touch points, verified against aiobotocore 3.10.0 (botocore 1.43) and pinned by
``tests/test_sdk_fences.py``; the ``aws`` extra in ``pyproject.toml`` allows :data:`VERIFIED`:

| touch point                                          | use                                    |
|------------------------------------------------------|----------------------------------------|
| ``aiobotocore.httpxsession.HttpxSession``            | subclassed by :func:`session_class`    |
| ``HttpxSession._make_async_client()``                | overridden: the client on our transport |
| ``HttpxSession._timeout``                            | read: the ``Timeout`` it built          |
| ``HttpxSession._get_session()``                      | relied on: its only client maker is the |
|                                                      | method above                            |
| ``aiobotocore.httpxsession.httpx``                   | which of httpx/httpx2 the session uses  |
| ``Session.register_component("data_loader", ...)``   | one loader shared by every lookup       |
| ``Loader.load_data("_retry")`` (and three more)      | read ahead; a missing one is skipped    |
| ``AssumeRoleWithWebIdentityProvider.METHOD``         | tells web identity credentials (IRSA)   |
|                                                      | by their ``method``                     |

Import this module only where aiobotocore is installed (the ``aws`` extra).
"""

from __future__ import annotations

import contextlib
import os
import threading
from types import ModuleType
from typing import Any, Final

import aiobotocore.config  # type: ignore[import-untyped]
import aiobotocore.httpxsession  # type: ignore[import-untyped]
import aiobotocore.session  # type: ignore[import-untyped]
import botocore.credentials  # type: ignore[import-untyped]
import botocore.exceptions  # type: ignore[import-untyped]
import botocore.loaders  # type: ignore[import-untyped]
import httpx
from aiobotocore.httpxsession import HttpxSession

from ..._http import BorrowedTransport
from ..._http.bridge import send_across

VERIFIED: Final = {"aiobotocore": ("3.10.0", "3.11")}
"""Distribution -> [lowest verified, first unverified minor): the touch points above hold here."""

AWS_CALL_TIMEOUT: Final = 5.0
"""Seconds for connecting and for reading each AWS API answer (at most the lookup's timeout)."""

errors: Final = botocore.exceptions
"""botocore's public exception classes, for the resolver."""
WEB_IDENTITY_METHOD: Final[str] = botocore.credentials.AssumeRoleWithWebIdentityProvider.METHOD
"""The ``method`` of credentials from a web identity token file (EKS IRSA)."""

_BOTO_HTTPX: ModuleType = aiobotocore.httpxsession.httpx  # httpx2, or httpx as a fallback
_WARM_DATA: Final = ("endpoints", "sdk-default-configuration", "partitions", "_retry")
_WARM_MODELS: Final = ("service-2", "endpoint-rule-set-1")


class _LoaderCache:
    """botocore's data loader, built once, with each service's models read once.

    Worker threads call :meth:`loader` concurrently (one per lookup, some abandoned by a
    timeout and still running): the lock makes the first one do the work and the others wait
    for it, instead of racing on the shared loader and the set of warm services.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loader: Any = None
        self._warm: set[str] = set()

    def loader(self, service: str) -> Any:
        with self._lock:
            if self._loader is None:
                self._loader = botocore.loaders.create_loader()
            if service not in self._warm:
                for name in _WARM_DATA:
                    # A warm-up only: botocore reads what it needs itself.
                    with contextlib.suppress(botocore.exceptions.DataNotFoundError):
                        self._loader.load_data(name)
                for kind in _WARM_MODELS:
                    self._loader.load_service_model(service, kind)
                self._warm.add(service)
            return self._loader


_LOADERS: Final = _LoaderCache()


def warm_loader(service: str) -> Any:
    """The shared loader with ``service``'s models read (blocking: call it in a worker thread)."""
    return _LOADERS.loader(service)


def bridge_transport(transport: httpx.AsyncBaseTransport, into: ModuleType = _BOTO_HTTPX) -> Any:
    """``transport`` as a transport of the ``into`` module (``httpx2``), never closing it."""
    if into is httpx:
        return BorrowedTransport(transport)

    class Bridge(into.AsyncBaseTransport):  # type: ignore[name-defined, misc]
        async def handle_async_request(self, request: Any) -> Any:
            return await send_across(transport, httpx, request)

        async def aclose(self) -> None:
            """Do nothing: the transport's owner closes it."""

    return Bridge()


def session_class(transport: httpx.AsyncBaseTransport) -> type[HttpxSession]:
    """An ``HttpxSession`` subclass bound to ``transport``, for ``AioConfig(http_session_cls=)``."""
    bridged = bridge_transport(transport)

    class TransportSession(HttpxSession):  # type: ignore[misc]
        def _make_async_client(self) -> Any:
            # Proxies, TLS and pool limits are the transport's business now.
            return _BOTO_HTTPX.AsyncClient(
                transport=bridged,
                timeout=self._timeout,
                trust_env=False,
                follow_redirects=False,
            )

    return TransportSession


def new_session(*, load_config: bool, loader: Any, timeout: float, attempts: int) -> Any:
    """A fresh ``AioSession`` (no event-loop state outlives a lookup) on the shared loader.

    ``load_config=False`` is aws-sdk-go v1's rule without ``AWS_SDK_LOAD_CONFIG``: the shared
    credentials file only, not ``~/.aws/config``. The default client config is what the
    credential providers' clients use (STS for web identity and assume role, SSO): the httpx
    backend, without which they fall back to aiohttp, which does not run under trio; and the
    lookup's bounds -- without them an unreachable STS got botocore's 60 s timeouts and five
    attempts, and the lookup's timeout ran out before anything said why. ``attempts`` counts
    botocore's standard-mode tries (throttling, 5xx and connection failures are tried again).
    """
    session = aiobotocore.session.AioSession()
    session.register_component("data_loader", loader)
    if not load_config:
        session.set_config_variable("config_file", os.devnull)
    limit = min(timeout, AWS_CALL_TIMEOUT)
    session.set_default_client_config(
        aiobotocore.config.AioConfig(
            http_session_cls=HttpxSession,
            connect_timeout=limit,
            read_timeout=limit,
            retries={"total_max_attempts": max(attempts, 1), "mode": "standard"},
        )
    )
    return session


def client_config(transport: httpx.AsyncBaseTransport | None, *, fips: bool, timeout: float) -> Any:
    """The API client's config: on ``transport``, bounded, and without botocore's retries.

    Retries are the resolver's (:func:`asyncauth._sources.cloud.retrying`): botocore's standard
    mode retries ``ThrottlingException`` and 503 but not a bare 429, and ignores
    ``Retry-After``; one policy for every cloud is easier to bound and to explain.
    """
    limit = min(timeout, AWS_CALL_TIMEOUT)
    return aiobotocore.config.AioConfig(
        http_session_cls=HttpxSession if transport is None else session_class(transport),
        use_fips_endpoint=fips,
        connect_timeout=limit,
        read_timeout=limit,
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
