"""create_client() honours proxies on every transport it picks, proven through a real tinyproxy.

Each case runs on every transport create_client may pick (aiohttp, httpx2 and httpx under
asyncio; httpx2 and httpx under trio) against the real registries: tinyproxy's log shows which
requests went through it, the registry's answer shows the credentials still work.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import httpx
import pytest

from asyncauth import AuthenticationError, Chain, FlagsResolver, create_client, create_sync_client
from asyncauth._client.routes import TransportRoute

from ._assertions import assert_hidden
from ._transport_choice import every_transport, force_transport
from .peers.accounts import PeerAccounts
from .peers.images import PushedImage
from .peers.proxy import ForwardProxy
from .peers.registry import RegistryServer
from .peers.tls import PrivateCA
from .peers.token_issuer import TokenIssuer

ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
PROXY_USER = ("proxyuser", "proxy-SECRET-pw")


@pytest.fixture(scope="module")
def forward_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    with ForwardProxy(tmp_path_factory.mktemp("tinyproxy")) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def guarded_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    """tinyproxy that demands ``PROXY_USER``'s credentials."""
    with ForwardProxy(tmp_path_factory.mktemp("tinyproxy-auth"), basic_auth=PROXY_USER) as proxy:
        yield proxy


def flags(credential: tuple[str, str]) -> Chain:
    return Chain([FlagsResolver(username=credential[0], password=credential[1], environ={})])


@every_transport
async def test_environment_proxy_carries_registry_and_token_requests(
    transport: str,
    environ: pytest.MonkeyPatch,
    forward_proxy: ForwardProxy,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    force_transport(environ, transport)
    environ.setenv("HTTP_PROXY", forward_proxy.url)
    url = token_registry.url + token_registry_image.manifest_path
    mark = forward_proxy.mark()
    async with create_client(chain=flags(peer_accounts.reader), headers=ACCEPT) as http:
        assert http.transport_name == transport
        response = await http.get(url)
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == token_registry_image.digest
    through = forward_proxy.requests_since(mark)
    # The first try (401), the token request, the retry with the token: all three.
    assert through.count(f"GET {url}") == 2, through
    token_requests = [r for r in through if r.startswith(f"GET {token_issuer.realm}?")]
    assert len(token_requests) == 1, through
    assert token_issuer.total == 1


@every_transport
async def test_no_proxy_bypasses_the_proxy(
    transport: str,
    environ: pytest.MonkeyPatch,
    forward_proxy: ForwardProxy,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    force_transport(environ, transport)
    environ.setenv("HTTP_PROXY", forward_proxy.url)
    environ.setenv("NO_PROXY", "example.com,127.0.0.1")
    mark = forward_proxy.mark()
    async with create_client(chain=flags(peer_accounts.reader), headers=ACCEPT) as http:
        assert http.transport_name == transport
        response = await http.get(token_registry.url + token_registry_image.manifest_path)
    assert response.status_code == 200
    assert token_issuer.total == 1
    assert forward_proxy.requests_since(mark) == []


@every_transport
async def test_all_proxy_carries_basic_credentials(
    transport: str,
    environ: pytest.MonkeyPatch,
    forward_proxy: ForwardProxy,
    htpasswd_registry: RegistryServer,
    htpasswd_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    force_transport(environ, transport)
    environ.setenv("ALL_PROXY", forward_proxy.url)
    url = htpasswd_registry.url + htpasswd_registry_image.manifest_path
    mark = forward_proxy.mark()
    async with create_client(chain=flags(peer_accounts.writer), headers=ACCEPT) as http:
        assert http.transport_name == transport
        assert (await http.get(url)).status_code == 200
        # Wrong credentials are refused through the proxy too: the registry, not the proxy,
        # decides.
    async with create_client(chain=flags(("alice", "wrong")), headers=ACCEPT) as http:
        with pytest.raises(AuthenticationError, match="refused basic credentials"):
            await http.get(url)
    assert f"GET {url}" in forward_proxy.requests_since(mark)


@every_transport
async def test_explicit_proxy_argument_on_the_picked_transport(
    transport: str,
    environ: pytest.MonkeyPatch,
    forward_proxy: ForwardProxy,
    htpasswd_registry: RegistryServer,
    htpasswd_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    force_transport(environ, transport)
    environ.setenv("NO_PROXY", "*")  # proxy= wins over the environment, as in httpx
    url = htpasswd_registry.url + htpasswd_registry_image.manifest_path
    mark = forward_proxy.mark()
    async with create_client(
        chain=flags(peer_accounts.reader), headers=ACCEPT, proxy=forward_proxy.url
    ) as http:
        assert http.transport_name == transport
        assert f"transport={transport!r}" in repr(http)
        assert (await http.get(url)).status_code == 200
    assert forward_proxy.requests_since(mark).count(f"GET {url}") == 2  # 401, then Basic


@every_transport
async def test_trust_env_false_ignores_the_environment(
    transport: str,
    environ: pytest.MonkeyPatch,
    htpasswd_registry: RegistryServer,
    peer_accounts: PeerAccounts,
) -> None:
    force_transport(environ, transport)
    environ.setenv("HTTP_PROXY", "http://127.0.0.1:1")  # nothing listens there
    async with create_client(chain=flags(peer_accounts.reader), trust_env=False) as http:
        assert http.transport_name == transport
        assert (await http.get(f"{htpasswd_registry.url}/v2/")).status_code == 200


@every_transport
async def test_https_registry_through_the_proxy_tunnel(
    transport: str,
    environ: pytest.MonkeyPatch,
    forward_proxy: ForwardProxy,
    tls_registry: tuple[RegistryServer, PushedImage],
    private_ca: PrivateCA,
    peer_accounts: PeerAccounts,
) -> None:
    """CONNECT through the proxy, TLS with the private CA inside; and an insecure registry's
    unverified route still takes the proxy."""
    force_transport(environ, transport)
    environ.setenv("HTTPS_PROXY", forward_proxy.url)
    registry, image = tls_registry
    mark = forward_proxy.mark()
    async with create_client(
        chain=flags(peer_accounts.reader), headers=ACCEPT, ca_cert_paths=[private_ca.ca_certificate]
    ) as http:
        assert http.transport_name == transport
        assert (await http.get(registry.url + image.manifest_path)).status_code == 200
    assert f"CONNECT {registry.host}" in forward_proxy.requests_since(mark)
    mark = forward_proxy.mark()
    async with create_client(
        chain=flags(peer_accounts.reader), headers=ACCEPT, insecure_registries=[registry.host]
    ) as http:
        assert (await http.get(registry.url + image.manifest_path)).status_code == 200
    assert f"CONNECT {registry.host}" in forward_proxy.requests_since(mark)


@every_transport
async def test_proxy_credentials_from_the_environment_stay_secret(
    transport: str,
    environ: pytest.MonkeyPatch,
    guarded_proxy: ForwardProxy,
    htpasswd_registry: RegistryServer,
    htpasswd_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    force_transport(environ, transport)
    url = htpasswd_registry.url + htpasswd_registry_image.manifest_path
    environ.setenv("HTTP_PROXY", guarded_proxy.url)
    async with create_client(chain=flags(peer_accounts.reader), headers=ACCEPT) as http:
        assert (await http.get(url)).status_code == 407  # the proxy wants its credentials
    environ.setenv("HTTP_PROXY", guarded_proxy.url_with_credentials(*PROXY_USER))
    mark = guarded_proxy.mark()
    async with create_client(chain=flags(peer_accounts.reader), headers=ACCEPT) as http:
        assert http.transport_name == transport
        assert (await http.get(url)).status_code == 200
        routes = repr(http) + repr(list(http._mounts.values()))
    assert f"GET {url}" in guarded_proxy.requests_since(mark)
    assert_hidden(routes, PROXY_USER[1], where="client and route reprs")
    # A proxy that is down: the error names the host and the proxy, never its password.
    environ.setenv("HTTP_PROXY", f"http://{PROXY_USER[0]}:{PROXY_USER[1]}@127.0.0.1:1")
    async with create_client() as http:
        with pytest.raises(httpx.ConnectError) as caught:
            await http.get(url)
    assert str(caught.value).startswith(f"{htpasswd_registry.host} through the proxy 127.0.0.1:1")
    assert_hidden(str(caught.value), PROXY_USER[1], where="the connect error")


# --- when a proxy decides the transport -----------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_proxy_aiohttp_cannot_use_moves_the_client_and_its_name(
    environ: pytest.MonkeyPatch, forward_proxy: ForwardProxy
) -> None:
    async with create_client() as http:
        assert http.transport_name == "aiohttp"
    environ.setenv("HTTPS_PROXY", f"https://127.0.0.1:{forward_proxy.port}")
    async with create_client() as http:
        assert http.transport_name == "httpx2"
    async with create_client(proxy=f"https://127.0.0.1:{forward_proxy.port}") as http:
        assert http.transport_name == "httpx2"
    environ.setitem(sys.modules, "httpx2", None)  # without httpx2, the next is httpx's own
    async with create_client() as http:
        assert http.transport_name == "httpx"
    environ.delenv("HTTPS_PROXY")
    # HTTP/2 is not aiohttp's either: asking for it must not silently give HTTP/1.1 on aiohttp
    # (here h2 is not installed, so httpx says to install it).
    with pytest.raises(ImportError, match="h2"):
        create_client(http2=True)


def test_own_transport_and_proxy_are_refused_together() -> None:
    with pytest.raises(TypeError, match="transport= or proxy="):
        create_client(transport=httpx.AsyncHTTPTransport(), proxy="http://127.0.0.1:3128")
    with pytest.raises(TypeError, match="transport= or proxy="):
        create_sync_client(transport=httpx.HTTPTransport(), proxy="http://127.0.0.1:3128")


@pytest.mark.parametrize(
    "variables",
    [
        {"HTTP_PROXY": "http://127.0.0.1:3128"},
        {"HTTPS_PROXY": "127.0.0.1:3129", "NO_PROXY": "localhost,.example.com,::1"},
        {"ALL_PROXY": "http://127.0.0.1:3130", "HTTP_PROXY": "http://127.0.0.1:3128"},
        {"ALL_PROXY": "http://127.0.0.1:3130", "NO_PROXY": "10.0.0.1,registry.lab,http://x.y"},
        {"HTTP_PROXY": "http://127.0.0.1:3128", "NO_PROXY": "*"},
    ],
)
def test_routes_are_httpx_own(environ: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    """httpx computes the routes (precedence, NO_PROXY matching); create_client only supplies
    each route's transport, for the same proxy."""
    for name, value in variables.items():
        environ.setenv(name, value)
    reference = httpx.AsyncClient()
    ours = create_client()
    expected = [(pattern.pattern, _httpx_proxy(t)) for pattern, t in reference._mounts.items()]
    got = [(pattern.pattern, _our_proxy(t)) for pattern, t in ours._mounts.items()]
    assert got == expected
    assert any(proxy is not None for _, proxy in got) or variables.get("NO_PROXY") == "*"


def _httpx_proxy(transport: object) -> tuple[str, str, int | None] | None:
    """The proxy of one of httpx's own proxy transports (httpcore's ``AsyncHTTPProxy``)."""
    if transport is None:
        return None
    url = transport._pool._proxy_url  # type: ignore[attr-defined]
    return (url.scheme.decode(), url.host.decode(), url.port)


def _our_proxy(route: object) -> tuple[str, str, int | None] | None:
    if route is None:
        return None
    assert isinstance(route, TransportRoute)
    assert route.proxy is not None
    return (route.proxy.url.scheme, route.proxy.url.host, route.proxy.url.port)


# --- the sync client ------------------------------------------------------------------------


def test_sync_client_honours_the_environment_and_no_proxy(
    environ: pytest.MonkeyPatch,
    forward_proxy: ForwardProxy,
    htpasswd_registry: RegistryServer,
    htpasswd_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    url = htpasswd_registry.url + htpasswd_registry_image.manifest_path
    environ.setenv("HTTP_PROXY", forward_proxy.url)
    mark = forward_proxy.mark()
    with create_sync_client(chain=flags(peer_accounts.reader), headers=ACCEPT) as http:
        assert http.transport_name == "httpx"
        assert http.get(url).status_code == 200
    assert forward_proxy.requests_since(mark).count(f"GET {url}") == 2
    environ.setenv("NO_PROXY", "127.0.0.1")
    mark = forward_proxy.mark()
    with create_sync_client(chain=flags(peer_accounts.reader), headers=ACCEPT) as http:
        assert http.get(url).status_code == 200
    assert forward_proxy.requests_since(mark) == []
    mark = forward_proxy.mark()
    with create_sync_client(
        chain=flags(peer_accounts.reader), headers=ACCEPT, proxy=forward_proxy.url
    ) as http:
        assert http.get(url).status_code == 200
    assert f"GET {url}" in forward_proxy.requests_since(mark)
