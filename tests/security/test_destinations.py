"""Where credentials may go: no cleartext to a remote realm (issue 11 #4), no pivot inward to a
metadata, private or loopback address (#6), ``evil.localhost`` is not loopback (#10).

Remote hosts are played by :class:`~tests.security.peers.FakeInternet` (a loopback proxy): a
request that should never have been sent shows up in its records instead of leaving the machine.
"""

from __future__ import annotations

import pytest

from asyncauth import Chain, Credential, InsecureTransportError

from .._assertions import assert_hidden
from .._fakes import Fixed
from .._secrets import secret
from .._transport_choice import every_transport
from .conftest import client_on
from .peers import (
    FakeInternet,
    Reply,
    Server,
    basic_challenge,
    basic_forms,
    everything,
    redirect,
    token_registry,
)

USER = "alice"
PASSWORD = secret("pw-DEST-secret-1", user=USER)
IDENTITY_TOKEN = secret("idt-DEST-refresh-2")
METADATA_SECRET = secret("aws-METADATA-secret-3")
MANIFEST = "/v2/org/app/manifests/v1"
CREDENTIALS = {
    "basic": Credential(USER, PASSWORD),
    "identity_token": Credential(identity_token=IDENTITY_TOKEN),
}
SECRETS = (*basic_forms(USER, PASSWORD), IDENTITY_TOKEN)


@every_transport
@pytest.mark.parametrize("kind", sorted(CREDENTIALS))
@pytest.mark.parametrize("listed", [(), ("127.0.0.1",)], ids=["loopback", "insecure-listed"])
async def test_no_credentials_in_cleartext_to_a_remote_realm(
    transport: str,
    kind: str,
    listed: tuple[str, ...],
    environ: pytest.MonkeyPatch,
    registry: Server,
    internet: FakeInternet,
) -> None:
    """#4: a plain-http registry that may have credentials (loopback, or listed as insecure)
    names a plain-http realm elsewhere: that host is neither, so nothing goes there."""
    registry.route("/v2/", token_registry("http://auth.example.com/token"))
    insecure = [f"{h}:{registry.port}" for h in listed]
    async with client_on(
        environ, transport, CREDENTIALS[kind], internet=internet, insecure_registries=insecure
    ) as http:
        with pytest.raises(InsecureTransportError, match=r"auth\.example\.com") as caught:
            await http.get(registry.url + MANIFEST)
    assert "insecure_registries" in str(caught.value)
    assert_hidden(str(caught.value), *SECRETS)
    assert internet.seen_at("auth.example.com") == []


@every_transport
async def test_a_remote_realm_listed_as_insecure_gets_credentials(
    transport: str, environ: pytest.MonkeyPatch, registry: Server, internet: FakeInternet
) -> None:
    registry.route("/v2/", token_registry("http://auth.example.com/token"))
    internet.route("/token", Reply(200, body=b'{"token": "issued-TOKEN"}'), host="auth.example.com")
    credential = CREDENTIALS["basic"]
    insecure = ["auth.example.com"]
    async with client_on(
        environ, transport, credential, internet=internet, insecure_registries=insecure
    ) as http:
        response = await http.get(registry.url + MANIFEST)
    assert response.status_code == 200
    assert len(internet.seen_at("auth.example.com")) == 1


INWARD = {
    "metadata": ("http://169.254.169.254/latest/token", "link-local"),
    "private": ("http://10.0.0.1/token", "private"),
    "ula": ("http://[fd00:ec2::254]/token", "private"),
    "unspecified": ("http://0.0.0.0:9/token", "unspecified"),
}


@every_transport
@pytest.mark.parametrize("where", sorted(INWARD))
async def test_a_loopback_registry_cannot_point_its_realm_at_another_kind_of_address(
    transport: str,
    where: str,
    environ: pytest.MonkeyPatch,
    registry: Server,
    internet: FakeInternet,
) -> None:
    """#6: only a realm on the registry's own kind of address (here loopback) is accepted."""
    realm, kind = INWARD[where]
    registry.route("/v2/", token_registry(realm))
    async with client_on(environ, transport, CREDENTIALS["basic"], internet=internet) as http:
        with pytest.raises(InsecureTransportError, match=f"on a {kind} address") as caught:
            await http.get(registry.url + MANIFEST)
    assert "loopback" in str(caught.value)
    assert [s.host for s in internet.seen if s.host != "route-check.invalid"] == []


@every_transport
@pytest.mark.parametrize("anonymous", [False, True], ids=["credentials", "anonymous"])
async def test_a_public_registry_cannot_point_its_realm_inward(
    transport: str,
    anonymous: bool,
    environ: pytest.MonkeyPatch,
    realm: Server,
    internet: FakeInternet,
) -> None:
    """#6: ``registry.example.com`` (public) names a loopback token server (this machine's
    services) or the metadata address: refused, with or without credentials."""
    internet.route("/v2/", token_registry(realm.url + "/token"), host="registry.example.com")
    realm.route("/token", Reply(200, body=b'{"token": "issued-TOKEN"}'))
    credential = Credential.anonymous() if anonymous else CREDENTIALS["basic"]
    insecure = ["registry.example.com"]
    async with client_on(
        environ, transport, credential, internet=internet, insecure_registries=insecure
    ) as http:
        with pytest.raises(InsecureTransportError, match="on a loopback address") as caught:
            await http.get("http://registry.example.com" + MANIFEST)
    assert "public" in str(caught.value)
    assert realm.seen == []


@every_transport
async def test_a_loopback_realm_on_another_port_serves_a_loopback_registry(
    transport: str, environ: pytest.MonkeyPatch, registry: Server, realm: Server
) -> None:
    """Local development keeps working: registry and token server on two loopback ports."""
    registry.route("/v2/", token_registry(realm.url + "/token"))
    realm.route("/token", Reply(200, body=b'{"token": "issued-TOKEN"}'))
    async with client_on(environ, transport, CREDENTIALS["basic"]) as http:
        response = await http.get(registry.url + MANIFEST)
    assert response.status_code == 200


@every_transport
async def test_a_token_request_redirected_to_the_metadata_address_is_refused(
    transport: str,
    environ: pytest.MonkeyPatch,
    registry: Server,
    realm: Server,
    internet: FakeInternet,
) -> None:
    """#6, redirect hops: the token server redirects to the metadata address, whose answer
    would go to the registry as a "token". Every hop is checked before it is sent (issue 16:
    the hop used to go out and be judged on its answer)."""
    metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/role"
    registry.route("/v2/", token_registry(realm.url + "/token"))
    realm.route("/token", redirect(metadata, 302))
    internet.route(
        "/latest/",
        Reply(200, body=b'{"token": "%s"}' % METADATA_SECRET.encode()),
        host="169.254.169.254",
    )
    async with client_on(environ, transport, CREDENTIALS["basic"], internet=internet) as http:
        with pytest.raises(InsecureTransportError, match="link-local") as caught:
            await http.get(registry.url + MANIFEST)
    assert_hidden(str(caught.value), METADATA_SECRET, *SECRETS)
    assert_hidden(everything(registry.seen), METADATA_SECRET, where="registry")
    assert internet.seen_at("169.254.169.254") == []  # refused before it was sent


@every_transport
async def test_evil_localhost_is_not_loopback(
    transport: str, environ: pytest.MonkeyPatch, internet: FakeInternet
) -> None:
    """#10: a name under ``.localhost`` is a name like any other (it resolves where DNS says),
    so plain http to it carries no credentials."""
    internet.route("/v2/", basic_challenge(), host="evil.localhost")
    async with client_on(environ, transport, CREDENTIALS["basic"], internet=internet) as http:
        with pytest.raises(InsecureTransportError, match="not loopback"):
            await http.get("http://evil.localhost" + MANIFEST)
    assert_hidden(everything(internet.seen), *SECRETS, where="evil.localhost")


@every_transport
async def test_a_public_registry_cannot_point_its_realm_under_localhost(
    transport: str, environ: pytest.MonkeyPatch, internet: FakeInternet
) -> None:
    """A name under ``.localhost`` may resolve to loopback (RFC 6761; systemd-resolved does):
    a public registry's realm there is a pivot inward, refused before anything is sent — even
    an anonymous token request."""
    realm = "http://evil.localhost/token"
    internet.route("/v2/", token_registry(realm), host="registry.example.com")
    internet.route("/token", Reply(200, body=b'{"token": "issued-TOKEN"}'), host="evil.localhost")
    async with client_on(environ, transport, Credential.anonymous(), internet=internet) as http:
        with pytest.raises(InsecureTransportError, match="loopback"):
            await http.get("http://registry.example.com" + MANIFEST)
    assert internet.seen_at("evil.localhost") == []


# --- hosts judged as the resolver and the URL libraries read them (issue 16, item 5) ----------

SHORTHANDS = {
    "127.1": "loopback",
    "0x7f.1": "loopback",
    "2130706433": "loopback",
    "0177.0.0.1": "loopback",
    "0x7f000001": "loopback",
    "10.1": "private",
    "2852039166": "link-local",
    "0xa9.0xfe.0xa9.0xfe": "link-local",
}
"""A realm host that reads as an address (``inet_aton``) -> the kind of that address."""

NON_CANONICAL = {
    "127\u30020\u30020\u30021": "U\\+3002",
    "127\uff0e0\uff0e0\uff0e1": "U\\+FF0E",
    "127\uff610\uff610\uff611": "U\\+FF61",
}
"""A realm host that httpx, httpx2 and yarl turn into ``127.0.0.1`` -> what the refusal names."""


def _header_text(value: str) -> str:
    """``value`` as its UTF-8 bytes, spelt so the test server (which writes headers in latin-1)
    sends them as they are: a registry that names a non-ASCII realm sends UTF-8."""
    return value.encode("utf-8").decode("latin-1")


def _token_requests(realm: Server, internet: FakeInternet) -> list[str]:
    """Every token request that reached a token server: the loopback one, or any host the
    fake internet plays (where a proxied request for ``0x7f.1`` or ``10.1`` lands)."""
    return [f"{s.method} {s.url}" for s in (*realm.seen, *internet.seen) if s.path == "/token"]


def _public_registry_naming(realm_url: str, realm: Server, internet: FakeInternet) -> None:
    """``registry.example.com`` (public) challenges for ``realm_url``; every token server
    would issue the token the registry accepts, so a request that got through succeeds."""
    internet.route("/v2/", token_registry(_header_text(realm_url)), host="registry.example.com")
    internet.route("/token", Reply(200, body=b'{"token": "issued-TOKEN"}'))
    realm.route("/token", Reply(200, body=b'{"token": "issued-TOKEN"}'))


@every_transport
@pytest.mark.parametrize("anonymous", [False, True], ids=["credentials", "anonymous"])
@pytest.mark.parametrize("host", sorted(SHORTHANDS))
async def test_a_public_registry_cannot_point_its_realm_inward_in_shorthand(
    transport: str,
    host: str,
    anonymous: bool,
    environ: pytest.MonkeyPatch,
    realm: Server,
    internet: FakeInternet,
) -> None:
    """``127.1``, ``0x7f.1``, ``2130706433``, ``10.1``, ``2852039166``: the resolver reads
    them as loopback, private and link-local addresses, so the realm is judged by those (it was
    judged a public name, and the token request went out)."""
    kind = SHORTHANDS[host]
    _public_registry_naming(f"http://{host}:{realm.port}/token", realm, internet)
    credential = Credential.anonymous() if anonymous else CREDENTIALS["basic"]
    insecure = ["registry.example.com"]
    async with client_on(
        environ, transport, credential, internet=internet, insecure_registries=insecure
    ) as http:
        with pytest.raises(InsecureTransportError, match=f"on a {kind} address") as caught:
            await http.get("http://registry.example.com" + MANIFEST)
    assert "public" in str(caught.value)
    assert_hidden(str(caught.value), *SECRETS)
    assert _token_requests(realm, internet) == []


@every_transport
@pytest.mark.parametrize("anonymous", [False, True], ids=["credentials", "anonymous"])
@pytest.mark.parametrize("host", sorted(NON_CANONICAL))
async def test_a_realm_host_with_non_ascii_dots_is_refused_before_it_is_sent(
    transport: str,
    host: str,
    anonymous: bool,
    environ: pytest.MonkeyPatch,
    realm: Server,
    internet: FakeInternet,
) -> None:
    """``127。0。0。1``: the URL libraries read it as 127.0.0.1 and the request went straight
    to the loopback token server before any check saw an address. It is refused, by name."""
    _public_registry_naming(f"http://{host}:{realm.port}/token", realm, internet)
    credential = Credential.anonymous() if anonymous else CREDENTIALS["basic"]
    insecure = ["registry.example.com"]
    async with client_on(
        environ, transport, credential, internet=internet, insecure_registries=insecure
    ) as http:
        with pytest.raises(InsecureTransportError, match=NON_CANONICAL[host]) as caught:
            await http.get("http://registry.example.com" + MANIFEST)
    assert "read as '.'" in str(caught.value)
    assert str(caught.value).isascii()
    assert_hidden(str(caught.value), *SECRETS)
    assert _token_requests(realm, internet) == []


@every_transport
async def test_a_token_request_redirected_to_the_metadata_address_as_one_number_is_refused(
    transport: str,
    environ: pytest.MonkeyPatch,
    registry: Server,
    realm: Server,
    internet: FakeInternet,
) -> None:
    """The redirect hop ``http://2852039166/...`` is 169.254.169.254: its answer never reaches
    the registry as a "token" (it was judged a public name and passed on)."""
    metadata = "http://2852039166/latest/meta-data/iam/security-credentials/role"
    registry.route("/v2/", token_registry(realm.url + "/token"))
    realm.route("/token", redirect(metadata, 302))
    internet.route(
        "/latest/",
        Reply(200, body=b'{"token": "%s"}' % METADATA_SECRET.encode()),
        host="2852039166",
    )
    async with client_on(environ, transport, CREDENTIALS["basic"], internet=internet) as http:
        with pytest.raises(InsecureTransportError, match="link-local") as caught:
            await http.get(registry.url + MANIFEST)
    assert_hidden(str(caught.value), METADATA_SECRET, *SECRETS)
    assert_hidden(everything(registry.seen), METADATA_SECRET, where="registry")
    assert internet.seen_at("2852039166") == []  # refused before it was sent


@pytest.mark.parametrize(
    ("anyio_backend", "transport"),
    [("asyncio", "httpx2"), ("asyncio", "httpx"), ("trio", "httpx2"), ("trio", "httpx")],
)
async def test_a_loopback_registry_written_in_shorthand_keeps_its_loopback_realm(
    transport: str, environ: pytest.MonkeyPatch, registry: Server, realm: Server
) -> None:
    """``http://127.1:PORT`` is a loopback registry: its token server on 127.0.0.1 is of its
    own kind, and credentials may go to both over plain http (it was judged a public name, so
    its realm was refused as a pivot inward). No aiohttp case: aiohttp's connector itself
    refuses to connect to ``127.1`` ("is not a canonical IPv4 address")."""
    registry.route("/v2/", token_registry(realm.url + "/token"))
    realm.route("/token", Reply(200, body=b'{"token": "issued-TOKEN"}'))
    async with client_on(environ, transport, CREDENTIALS["basic"]) as http:
        response = await http.get(f"http://127.1:{registry.port}" + MANIFEST)
    assert response.status_code == 200
    assert [s.path for s in realm.seen] == ["/token"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # aiohttp runs under asyncio only
async def test_the_middleware_refuses_a_redirect_hop_inward_before_it_is_sent(
    environ: pytest.MonkeyPatch, registry: Server, realm: Server, internet: FakeInternet
) -> None:
    """The aiohttp middleware checks every hop of a token request with a per-request
    middleware, before aiohttp sends it."""
    import aiohttp

    from asyncauth.aiohttp import RegistryAuthMiddleware

    metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/role"
    registry.route("/v2/", token_registry(realm.url + "/token"))
    realm.route("/token", redirect(metadata, 307))
    environ.setenv("HTTP_PROXY", internet.url)
    environ.setenv("NO_PROXY", "127.0.0.1")
    middleware = RegistryAuthMiddleware(Chain([Fixed(CREDENTIALS["basic"])]))
    async with aiohttp.ClientSession(middlewares=(middleware,), trust_env=True) as session:
        with pytest.raises(InsecureTransportError, match="link-local"):
            async with session.get(registry.url + MANIFEST):
                pass
    assert internet.seen_at("169.254.169.254") == []
