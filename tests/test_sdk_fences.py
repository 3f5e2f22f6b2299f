"""The SDK internals asyncauth touches still exist, with the shape it expects, in the installed
versions; and those versions are inside the ranges each fence was verified against.

Each SDK's private touch points live in one module
(``asyncauth/_sources/sdk/{aws,azure,google}.py``) whose docstring lists them and whose
``VERIFIED`` says ``[lowest verified, first unverified)``.
``pyproject.toml`` caps the extras at the same bounds, so an upgrade past them is a deliberate
act: bump the cap, run these tests, and update ``VERIFIED``.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from asyncauth._sources.sdk import aws as aws_fence
from asyncauth._sources.sdk import azure as azure_fence
from asyncauth._sources.sdk import google as google_fence

FENCES = {"aws": aws_fence, "azure": azure_fence, "gcp": google_fence}
PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"


def _extras() -> dict[str, list[Requirement]]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return {
        extra: [Requirement(line) for line in lines]
        for extra, lines in project["optional-dependencies"].items()
    }


@pytest.mark.parametrize("extra", sorted(FENCES))
def test_installed_versions_are_inside_the_verified_ranges(extra: str) -> None:
    for distribution, (lowest, unverified) in FENCES[extra].VERIFIED.items():
        installed = Version(importlib.metadata.version(distribution))
        assert Version(lowest) <= installed < Version(unverified), (
            f"{distribution} {installed} is outside [{lowest}, {unverified}): verify the touch "
            f"points in asyncauth/_sources/sdk (this file's tests), then widen VERIFIED and the cap"
        )


@pytest.mark.parametrize("extra", sorted(FENCES))
def test_pyproject_caps_each_extra_at_its_verified_range(extra: str) -> None:
    requirements = {r.name: r for r in _extras()[extra]}
    for distribution, (lowest, unverified) in FENCES[extra].VERIFIED.items():
        specifier = requirements[distribution].specifier
        assert Version(lowest) in specifier
        assert Version(unverified) not in specifier, f"{distribution} is not capped"
        major, minor = Version(unverified).release[:2]
        # The cap is the first unverified minor, not lower: every patch below it is allowed.
        assert Version(f"{major}.{minor - 1}.9999") in specifier
        assert Version(f"{major}.{minor}.0") not in specifier


# --- aiobotocore / botocore ----------------------------------------------------------------------


def test_aws_touch_points() -> None:
    import aiobotocore.httpxsession
    import botocore.loaders
    import botocore.session
    from aiobotocore.httpxsession import HttpxSession

    boto_httpx = aiobotocore.httpxsession.httpx
    assert boto_httpx is not None
    assert hasattr(boto_httpx, "AsyncClient")
    assert hasattr(boto_httpx, "AsyncBaseTransport")
    assert list(inspect.signature(HttpxSession._make_async_client).parameters) == ["self"]
    # The client is made by _make_async_client, and nowhere else.
    assert "self._make_async_client()" in inspect.getsource(HttpxSession._get_session)
    session = HttpxSession(timeout=(1.5, 2.5))
    assert isinstance(session._timeout, boto_httpx.Timeout)
    assert (session._timeout.connect, session._timeout.read) == (1.5, 2.5)
    assert callable(botocore.session.Session.register_component)
    loader = botocore.loaders.create_loader()
    for name in ("endpoints", "sdk-default-configuration", "partitions", "_retry"):
        assert loader.load_data(name)


def test_the_aws_session_class_builds_its_client_on_the_callers_transport() -> None:
    import aiobotocore.httpxsession

    transport = httpx.AsyncHTTPTransport()
    session = aws_fence.session_class(transport)(timeout=(1.0, 2.0))
    session._proxy_urls = {}
    client = session._make_async_client()
    assert isinstance(client, aiobotocore.httpxsession.httpx.AsyncClient)
    assert client.timeout.read == 2.0
    assert client.follow_redirects is False


def test_the_aws_loader_is_built_once_under_concurrent_threads() -> None:
    """Worker threads (some abandoned by a timeout) warm the shared loader at once."""
    import threading

    from asyncauth._sources.sdk.aws import _LoaderCache

    cache = _LoaderCache()
    loaders: list[object] = []
    barrier = threading.Barrier(8)

    def warm(service: str) -> None:
        barrier.wait()
        loaders.append(cache.loader(service))

    threads = [
        threading.Thread(target=warm, args=("ecr" if i % 2 else "ecr-public",)) for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(loaders) == 8
    assert len({id(loader) for loader in loaders}) == 1
    assert cache._warm == {"ecr", "ecr-public"}


# --- azure-core / azure-identity -----------------------------------------------------------------


async def test_azure_touch_points() -> None:
    from azure.core.rest import HttpRequest
    from azure.core.rest._http_response_impl_async import AsyncHttpResponseImpl

    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as c:
        transport = azure_fence.HttpxAzureTransport(c)  # every abstract method implemented
        assert not inspect.isabstract(type(transport))
        request = HttpRequest("GET", "https://login.example/token")
        response = await transport.send(request, connection_timeout=1, read_timeout=2)
    assert isinstance(response, AsyncHttpResponseImpl)
    assert (response.status_code, response.content) == (200, b"")


async def test_azure_responses_carry_status_headers_and_body() -> None:
    from azure.core.rest import HttpRequest

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429, json={"error": "slow"}, headers={"Retry-After": "7"}, extensions={}
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        response = await azure_fence.HttpxAzureTransport(client).send(
            HttpRequest("POST", "https://login.example/t", data={"a": "b"})
        )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json() == {"error": "slow"}


async def test_azure_sleeps_are_capped() -> None:
    import time

    async with httpx.AsyncClient() as client:
        transport = azure_fence.HttpxAzureTransport(client, max_sleep=0.05)
        started = time.perf_counter()
        await transport.sleep(3600)
        assert time.perf_counter() - started < 1.0


def test_azure_identity_marks_chain_members() -> None:
    from contextvars import ContextVar

    import azure.identity._internal as internal
    from azure.core.pipeline.policies import AsyncRetryPolicy
    from azure.identity.aio import ChainedTokenCredential

    assert isinstance(internal.within_credential_chain, ContextVar)
    assert "within_credential_chain.set(True)" in inspect.getsource(ChainedTokenCredential)
    policy = AsyncRetryPolicy(retry_total=2, retry_backoff_max=2.0)
    assert (policy.total_retries, policy.backoff_max) == (2, 2.0)


# --- google-auth ----------------------------------------------------------------------------------

_GOOGLE_CHECK = """
import os, sys
from google.auth.compute_engine import _metadata
print(_metadata._get_metadata_ip_root(False))
print(_metadata._METADATA_FLAVOR_HEADER, _metadata._METADATA_FLAVOR_VALUE)
print(_metadata._GCE_PRODUCT_NAME_FILE)
"""


@pytest.mark.parametrize("ip", [None, "127.0.0.1:9"])
def test_google_probe_agrees_with_google_auth(ip: str | None) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GCE_")}
    if ip is not None:
        environment[google_fence.METADATA_IP_VARIABLE] = ip
    done = subprocess.run(
        [sys.executable, "-c", _GOOGLE_CHECK],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=True,
    )
    root, flavour, product = done.stdout.splitlines()
    assert root == f"http://{ip or google_fence.DEFAULT_METADATA_IP}"
    assert flavour == f"{google_fence.FLAVOR_HEADER.lower()} {google_fence.FLAVOR}"
    assert product == google_fence.PRODUCT_NAME_FILE
