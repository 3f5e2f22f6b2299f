"""A proxy's 401 is the proxy's: through the real tinyproxy, configured with BasicAuth.

tinyproxy answers a request that carries *wrong* proxy credentials with ``401`` and
``WWW-Authenticate: Basic realm="Tinyproxy"`` (no credentials at all: 407). Through a plain-http
proxy that 401 looks like a Basic registry's challenge; taken for one, the registry's password
went to the proxy and the error blamed the registry ("refused basic credentials for user
alice"). Now it is reported as a possible proxy refusal naming the proxy, and nothing is sent in
answer to it: tinyproxy's log shows the one request, the probe that carries no credential.

Every client kind: :func:`asyncauth.create_client` on each transport it picks (the proxy from
``HTTP_PROXY``), and hand-built httpx (async and sync), httpx2 and aiohttp clients with
``proxy=``. With the right proxy credentials, the same registry's own 401 (which carries
``Docker-Distribution-API-Version``) is answered as always.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio.to_thread
import httpx
import pytest

from asyncauth import AuthenticationError, Chain, Credential, RegistryAuth, create_client

from ._assertions import assert_hidden
from ._drivers import ACCEPT
from ._fakes import Fixed
from ._secrets import secret
from ._transport_choice import every_transport, force_transport
from .peers.accounts import PeerAccounts
from .peers.images import PushedImage
from .peers.proxy import ForwardProxy
from .peers.registry import RegistryServer

PROXY_USER = "proxyuser"
PROXY_PASSWORD = secret("proxy-REFUSAL-right-pw", user=PROXY_USER)
WRONG_PASSWORD = secret("proxy-REFUSAL-wrong-pw", user=PROXY_USER)


ONE_SHOT = httpx.Limits(max_keepalive_connections=0)


@pytest.fixture(scope="module")
def tinyproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    """tinyproxy that demands ``PROXY_USER``'s credentials."""
    workdir = tmp_path_factory.mktemp("tinyproxy-refusal")
    with ForwardProxy(workdir, basic_auth=(PROXY_USER, PROXY_PASSWORD)) as proxy:
        yield proxy


def chain(peer_accounts: PeerAccounts) -> Chain:
    return Chain([Fixed(Credential(*peer_accounts.reader))])


def assert_the_proxys_refusal(
    caught: pytest.ExceptionInfo[AuthenticationError],
    proxy: ForwardProxy,
    mark: int,
    url: str,
    peer_accounts: PeerAccounts,
) -> None:
    message = str(caught.value)
    assert f"came through the proxy 127.0.0.1:{proxy.port}" in message
    assert 'WWW-Authenticate: Basic realm="Tinyproxy"' in message
    assert "probably the proxy refusing its own credentials" in message
    assert "refused basic credentials" not in message  # the registry is not blamed
    assert proxy.requests_since(mark) == [f"GET {url}"]  # the probe, and nothing in answer
    for hidden in (PROXY_PASSWORD, WRONG_PASSWORD, peer_accounts.reader[1]):
        assert_hidden(message + repr(caught.value), hidden, where="the proxy's refusal")


@every_transport
async def test_create_client_reports_the_proxys_401_as_the_proxys(
    transport: str,
    environ: pytest.MonkeyPatch,
    tinyproxy: ForwardProxy,
    htpasswd_registry: RegistryServer,
    htpasswd_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    force_transport(environ, transport)
    url = htpasswd_registry.url + htpasswd_registry_image.manifest_path
    environ.setenv("HTTP_PROXY", tinyproxy.url_with_credentials(PROXY_USER, WRONG_PASSWORD))
    mark = tinyproxy.mark()
    async with create_client(chain=chain(peer_accounts), headers=ACCEPT) as http:
        assert http.transport_name == transport
        with pytest.raises(AuthenticationError) as caught:
            await http.get(url)
    assert_the_proxys_refusal(caught, tinyproxy, mark, url, peer_accounts)
    environ.setenv("HTTP_PROXY", tinyproxy.url_with_credentials(PROXY_USER, PROXY_PASSWORD))
    async with create_client(chain=chain(peer_accounts), headers=ACCEPT) as http:
        assert (await http.get(url)).status_code == 200  # the registry's own 401 is answered


async def _get(client: str, proxy: str, peer_accounts: PeerAccounts, url: str) -> int:
    """``GET url`` through ``proxy`` with a hand-built client of kind ``client``.

    No kept-alive connections: tinyproxy closes one after each request without saying so, and
    a hand-built httpx client (unlike create_client's routes and aiohttp) does not send the
    next request again on a fresh one."""
    if client == "aiohttp":
        import aiohttp

        from asyncauth.aiohttp import RegistryAuthMiddleware

        middleware = RegistryAuthMiddleware(chain(peer_accounts))
        async with (
            aiohttp.ClientSession(middlewares=(middleware,), proxy=proxy) as session,
            session.get(url, headers=ACCEPT) as response,
        ):
            return response.status
    if client == "httpx2":
        import httpx2

        from asyncauth.httpx2 import RegistryAuth as Httpx2Auth

        options: dict[str, Any] = dict(
            auth=Httpx2Auth(chain(peer_accounts)),
            proxy=proxy,
            limits=httpx2.Limits(max_keepalive_connections=0),
        )
        async with httpx2.AsyncClient(**options, trust_env=False) as http2:
            return (await http2.get(url, headers=ACCEPT)).status_code
    auth = RegistryAuth(chain(peer_accounts))
    if client == "httpx-sync":

        def sync_get() -> int:
            with httpx.Client(auth=auth, proxy=proxy, trust_env=False, limits=ONE_SHOT) as sync:
                return sync.get(url, headers=ACCEPT).status_code

        return await anyio.to_thread.run_sync(sync_get)
    async with httpx.AsyncClient(auth=auth, proxy=proxy, trust_env=False, limits=ONE_SHOT) as http:
        return (await http.get(url, headers=ACCEPT)).status_code


@pytest.mark.parametrize(
    ("anyio_backend", "client"),
    [
        ("asyncio", "httpx"),
        ("asyncio", "httpx-sync"),
        ("asyncio", "httpx2"),
        ("asyncio", "aiohttp"),
        ("trio", "httpx"),
        ("trio", "httpx2"),
    ],
)
async def test_a_hand_built_client_with_proxy_reports_the_proxys_401_as_the_proxys(
    client: str,
    tinyproxy: ForwardProxy,
    htpasswd_registry: RegistryServer,
    htpasswd_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    url = htpasswd_registry.url + htpasswd_registry_image.manifest_path
    mark = tinyproxy.mark()
    with pytest.raises(AuthenticationError) as caught:
        await _get(
            client, tinyproxy.url_with_credentials(PROXY_USER, WRONG_PASSWORD), peer_accounts, url
        )
    assert_the_proxys_refusal(caught, tinyproxy, mark, url, peer_accounts)
    right = tinyproxy.url_with_credentials(PROXY_USER, PROXY_PASSWORD)
    assert await _get(client, right, peer_accounts, url) == 200
