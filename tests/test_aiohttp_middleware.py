"""What only the aiohttp middleware has to get right: aiohttp follows redirects *outside* the
middleware (each hop passes through it again), sends token requests through the session itself,
and does not show a middleware the request's own timeout.

Against the real registry (distribution, token and htpasswd modes) and the strict loopback object
store it redirects blob reads to (tests/peers/blob_store.py). The hostile hosts (a redirect target
that answers 401 with a challenge of its own, a token server that redirects or bombs) cannot be
real programs: they are small strict stand-ins here that record every request. The handshake
matrix itself runs through the middleware in tests/test_handshake.py.

aiohttp runs under asyncio only, so this module has no trio cases (``ANYIO_BACKENDS``).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
import anyio
import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from asyncauth import (
    AsyncAuthError,
    Chain,
    Credential,
    FlagsResolver,
    InsecureTransportError,
    MemoryTokenStore,
    RegistryAuth,
    TokenResponseError,
)
from asyncauth.aiohttp import RegistryAuthMiddleware

from ._assertions import assert_hidden
from ._drivers import ACCEPT
from ._fakes import Fixed
from ._secrets import secret
from .peers.accounts import PeerAccounts
from .peers.blob_store import BlobStore
from .peers.images import OCIImage, PushedImage, push_image_http
from .peers.registry import Htpasswd, RegistryServer
from .peers.token_issuer import TokenIssuer

ANYIO_BACKENDS = ("asyncio",)
API_KEY = secret("api-KEY-SECRET-9")
PASSWORD = secret("pw-SECRET-5", user="bob")
IDENTITY_TOKEN = secret("idt-SECRET-42")


class Recorder(ThreadingHTTPServer):
    """A loopback HTTP server whose ``answer(handler)`` decides; every request is recorded."""

    daemon_threads = True

    def __init__(self, answer: Any) -> None:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: requests are recorded."""

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                with recorder.lock:
                    recorder.seen.append((self.command, self.path, headers, body))
                status, reply_headers, content = answer(self, recorder)
                self.send_response(status)
                for name, value in reply_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_HEAD = _handle

        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


def hostile_target(handler: Any, recorder: Recorder) -> tuple[int, dict[str, str], bytes]:
    """Whatever is asked: 401 with a Bearer challenge naming its own token endpoint."""
    challenge = f'Bearer realm="{recorder.url}/token",service="evil"'
    if handler.path.startswith("/token"):
        return 200, {}, json.dumps({"token": "evil-TOKEN"}).encode()
    return 401, {"WWW-Authenticate": challenge}, b""


@dataclass(frozen=True)
class Redirecting:
    registry: RegistryServer
    store: BlobStore
    hostile_registry: RegistryServer
    hostile: Recorder
    blob_path: str
    blob: bytes


def _redirecting_registry(
    workdir: Any, accounts: PeerAccounts, image: OCIImage, baseurl: str
) -> RegistryServer:
    registry = RegistryServer(workdir, auth=Htpasswd(accounts.users))
    registry.extra_config = {
        "storage": {"redirect": {"disable": False}},
        "middleware": {"storage": [{"name": "redirect", "options": {"baseurl": baseurl}}]},
    }
    return registry


@pytest.fixture(scope="module")
def redirecting(
    tmp_path_factory: pytest.TempPathFactory, peer_accounts: PeerAccounts, oci_image: OCIImage
) -> Iterator[Redirecting]:
    """Two htpasswd registries that redirect blob reads: to the object store, and to a hostile
    host that answers 401 with its own challenge."""
    storage = tmp_path_factory.mktemp("mw-redirect")
    hostile_dir = tmp_path_factory.mktemp("mw-hostile")
    with BlobStore(storage / "storage") as store, Recorder(hostile_target) as hostile:
        registry = _redirecting_registry(storage, peer_accounts, oci_image, store.url)
        evil = _redirecting_registry(hostile_dir, peer_accounts, oci_image, hostile.url)
        with registry, evil:
            for server in (registry, evil):
                with httpx.Client(
                    base_url=server.url, auth=peer_accounts.writer, trust_env=False
                ) as seeder:
                    push_image_http(seeder, oci_image, "redirect/app")
            digest = oci_image.layer_digest
            yield Redirecting(
                registry,
                store,
                evil,
                hostile,
                f"/v2/redirect/app/blobs/{digest}",
                oci_image.blobs[digest],
            )


def flags(accounts: PeerAccounts) -> Chain:
    """Explicit credentials: they apply to *every* registry, which is what makes a redirect
    target that pretends to be one dangerous."""
    user, password = accounts.reader
    return Chain([FlagsResolver(username=user, password=password, environ={})])


async def test_blob_downloads_follow_the_redirect_to_storage(
    redirecting: Redirecting, peer_accounts: PeerAccounts, oci_image: OCIImage
) -> None:
    middleware = RegistryAuthMiddleware(flags(peer_accounts), headers={"X-Api-Key": API_KEY})
    url = redirecting.registry.url + redirecting.blob_path
    seen = len(redirecting.store.requests)
    async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
        async with session.get(url) as response:
            assert response.status == 200
            assert [hop.status for hop in response.history] == [307]
            assert response.url.port == httpx.URL(redirecting.store.url).port
            assert await response.read() == redirecting.blob
        bodies: list[bytes] = []

        async def download() -> None:
            async with session.get(url) as answer:
                digest = hashlib.sha256()
                async for chunk in answer.content.iter_chunked(4096):
                    digest.update(chunk)
                bodies.append(f"sha256:{digest.hexdigest()}".encode())

        async with anyio.create_task_group() as tg:  # the hop marks are per task
            for _ in range(20):
                tg.start_soon(download)
        assert bodies == [oci_image.layer_digest.encode()] * 20
    requests = redirecting.store.requests[seen:]
    assert [r.method for r in requests] == ["GET"] * 21
    for request in requests:
        assert "authorization" not in request.headers
        assert "transfer-encoding" not in request.headers
        assert "x-api-key" not in request.headers  # the Docker config's headers stay home
    assert middleware.stats.challenges == 1


async def test_a_hostile_redirect_target_gets_nothing_and_teaches_nothing(
    redirecting: Redirecting, peer_accounts: PeerAccounts, oci_image: OCIImage
) -> None:
    """Issue 11 #1 for aiohttp: the target's 401 is the caller's; no credential, no token
    request goes there, and the registry's own challenge stays what the registry said."""
    middleware = RegistryAuthMiddleware(flags(peer_accounts))
    registry, hostile = redirecting.hostile_registry, redirecting.hostile
    before = len(hostile.seen)
    async with aiohttp.ClientSession(middlewares=(middleware,), headers=ACCEPT) as session:
        for _ in range(2):
            async with session.get(registry.url + redirecting.blob_path) as response:
                assert response.status == 401
                assert response.url.port == hostile.server_address[1]
                assert "evil" in response.headers["WWW-Authenticate"]
        async with session.get(f"{registry.url}/v2/redirect/app/manifests/v1") as manifest:
            assert manifest.status == 200  # the registry's own Basic challenge still holds
    reached = hostile.seen[before:]
    assert [(method, path.split("?")[0]) for method, path, _, _ in reached] == [
        ("GET", reached[0][1].split("?")[0])
    ] * 2
    for _, _, headers, _ in reached:
        assert "authorization" not in headers
    assert_hidden(repr(reached), *peer_accounts.reader)
    assert middleware.stats.challenges == 1
    assert middleware.stats.token_requests == 0


async def test_a_redirect_not_followed_leaves_nothing_behind(
    redirecting: Redirecting, peer_accounts: PeerAccounts
) -> None:
    """``allow_redirects=False``: the 307 is the caller's, and the next request in the same task
    (to the registry) is authorised as usual."""
    middleware = RegistryAuthMiddleware(flags(peer_accounts))
    registry = redirecting.registry
    async with aiohttp.ClientSession(middlewares=(middleware,), headers=ACCEPT) as session:
        url = registry.url + redirecting.blob_path
        async with session.get(url, allow_redirects=False) as response:
            assert response.status == 307
        async with session.get(f"{registry.url}/v2/redirect/app/manifests/v1") as manifest:
            assert manifest.status == 200
        async with session.get(url) as followed:
            assert followed.status == 200


async def _wait_for_issuer(issuer: TokenIssuer, count: int) -> None:
    """The delayed token requests finish at the issuer (so that they count in this test)."""
    for _ in range(200):  # at most 10 s; the issuer is another thread: nothing to wait on
        if issuer.total >= count:
            return
        await anyio.sleep(0.05)


@pytest.mark.parametrize("where", ["session", "request", "sock_read"])
async def test_token_requests_are_bounded_by_the_timeout(
    where: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    """Issue 11 #2 for aiohttp: a token server that does not answer cannot hang a request."""
    token_issuer.policy = dataclasses.replace(token_issuer.policy, delay=3.0)
    middleware = RegistryAuthMiddleware(Chain([Fixed(Credential(*peer_accounts.writer))]))
    short = aiohttp.ClientTimeout(total=0.5)
    if where == "sock_read":
        short = aiohttp.ClientTimeout(total=None, sock_read=0.5)
    session_timeout = aiohttp.ClientTimeout(total=30) if where == "request" else short
    url = token_registry.url + token_registry_image.manifest_path
    started = time.monotonic()
    async with aiohttp.ClientSession(
        middlewares=(middleware,), headers=ACCEPT, timeout=session_timeout
    ) as session:
        per_request = {"timeout": short} if where == "request" else {}
        with pytest.raises(TimeoutError):
            async with session.get(url, **per_request):
                pass
        took = time.monotonic() - started
        assert took < 2.5, f"the request took {took:.1f} s"
        await _wait_for_issuer(token_issuer, 1)
        token_issuer.policy = dataclasses.replace(token_issuer.policy, delay=0.0)
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as response:
            assert response.status == 200  # the abandoned token request stranded nobody


async def test_one_auth_serves_httpx_clients_and_aiohttp_sessions(
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    auth = RegistryAuth(Chain([Fixed(Credential(*peer_accounts.writer))]))
    url = token_registry.url + token_registry_image.manifest_path
    async with httpx.AsyncClient(auth=auth, headers=ACCEPT) as http:
        assert (await http.get(url)).status_code == 200
    statuses: list[int] = []

    async def record(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        response = await handler(request)
        statuses.append(response.status)
        return response

    middleware = RegistryAuthMiddleware(auth=auth)
    session = aiohttp.ClientSession(middlewares=(middleware, record), headers=ACCEPT)
    async with session, session.get(url) as response:
        assert response.status == 200
    assert statuses == [200]  # warm from the first request: the httpx client's token
    assert token_issuer.total == 1
    with pytest.raises(TypeError, match="not both"):
        RegistryAuthMiddleware(Chain([]), auth=auth)


async def test_clear_forgets_what_the_warm_path_remembered(
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    """A route's remembered header goes with ``clear()`` (e.g. after a ``docker login``): the
    next request learns the challenge and fetches a token again."""
    middleware = RegistryAuthMiddleware(Chain([Fixed(Credential(*peer_accounts.writer))]))
    url = token_registry.url + token_registry_image.manifest_path
    statuses: list[int] = []

    async def record(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        response = await handler(request)
        statuses.append(response.status)
        return response

    session = aiohttp.ClientSession(middlewares=(middleware, record), headers=ACCEPT)
    async with session:
        for _ in range(3):
            async with session.get(url) as response:
                assert response.status == 200
        middleware.clear()
        async with session.get(url) as response:
            assert response.status == 200
    assert statuses == [401, 200, 200, 200, 401, 200]
    assert token_issuer.total == 2


async def test_a_remembered_route_ends_with_its_token() -> None:
    """The warm path's version check skips lookups, not expiry: once the token stops being
    fresh the route asks again (and the request goes to the flow for a new token)."""
    from asyncauth._credentials import EXPIRY_MARGIN
    from asyncauth._registry.challenge import Challenge
    from asyncauth._registry.handshake import CHALLENGE_TTL, Errand, Route
    from asyncauth._registry.messages import Resolve, need_of
    from asyncauth._registry.tokencache import TokenLead, token_cache_key
    from asyncauth._registry.tokens import Token

    middleware = RegistryAuthMiddleware(Chain([Fixed(Credential("bob", PASSWORD))]))
    handshake = middleware._handshake
    target = handshake.target("registry", "https://registry.example.com/")
    challenge = Challenge("bearer", {"realm": "https://auth.example.com/t", "service": "s"})
    handshake.challenges.put(target.origin, challenge, CHALLENGE_TTL)
    need = need_of(target.registry, "GET", "/v2/org/app/manifests/v1", "")
    resolution = await handshake.perform(Resolve(need.resource), Errand(None))
    key = token_cache_key(target.registry, "s", need.scopes, resolution.credential)
    lead = await handshake.tokens.acquire(key, wait=1.0)
    assert isinstance(lead, TokenLead)
    now = time.time()
    await handshake.tokens.keep(lead, Token("short-TOKEN", now + EXPIRY_MARGIN + 0.3, now))
    route = Route.build(handshake, target, need, challenge)
    assert route is not None
    assert route.authorization(handshake) == "Bearer short-TOKEN"
    await anyio.sleep(0.4)
    assert route.authorization(handshake) is None


# --- a hostile token server (a stand-in: the real issuer does not misbehave) ---------------------


class TokenStandIn:
    """A registry whose realm is ``/token`` on the same loopback server; ``token`` answers."""

    def __init__(self, token: Any) -> None:
        self.token = token

    def __call__(self, handler: Any, recorder: Recorder) -> tuple[int, dict[str, str], bytes]:
        if handler.path.startswith("/token"):
            return self.token(handler, recorder)
        if handler.headers.get("Authorization") == "Bearer good-TOKEN":
            return 200, {"Content-Type": "application/json"}, b"{}"
        challenge = f'Bearer realm="{recorder.url}/token",service="stand-in"'
        return 401, {"WWW-Authenticate": challenge}, b""


async def test_identity_token_is_not_replayed_to_a_redirect(peer_accounts: PeerAccounts) -> None:
    """Issue 11 #5 for aiohttp: aiohttp re-sends a 307's body; the refresh token must not go."""
    with Recorder(hostile_target) as elsewhere:

        def redirect(handler: Any, recorder: Recorder) -> tuple[int, dict[str, str], bytes]:
            return 307, {"Location": f"{elsewhere.url}/token"}, b""

        with Recorder(TokenStandIn(redirect)) as registry:
            secret = IDENTITY_TOKEN
            chain = Chain([Fixed(Credential(identity_token=secret))])
            async with aiohttp.ClientSession(
                middlewares=(RegistryAuthMiddleware(chain),)
            ) as session:
                with pytest.raises(AsyncAuthError, match="sent again after a redirect") as caught:
                    await session.get(f"{registry.url}/v2/org/app/manifests/v1")
    assert elsewhere.seen == []
    assert [(m, p.split("?")[0]) for m, p, _, _ in registry.seen] == [
        ("GET", "/v2/org/app/manifests/v1"),
        ("POST", "/token"),
    ]
    assert_hidden(str(caught.value), secret)


async def test_token_response_limit_counts_decoded_bytes(peer_accounts: PeerAccounts) -> None:
    """Issue 11 #3 for aiohttp: the middleware reads token responses undecoded and inflates them
    itself, bounded."""
    bomb = gzip.compress(b'{"token": "' + b"a" * (4 << 20) + b'"}')

    def inflate(handler: Any, recorder: Recorder) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Encoding": "gzip"}, bomb

    assert len(bomb) < 8192
    with Recorder(TokenStandIn(inflate)) as registry:
        chain = Chain([Fixed(Credential("bob", PASSWORD))])
        middleware = RegistryAuthMiddleware(chain, max_token_response=1 << 20)
        async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
            with pytest.raises(TokenResponseError, match="larger than 1048576 bytes"):
                await session.get(f"{registry.url}/v2/org/app/manifests/v1")


async def test_retry_after_from_the_token_server_is_honoured() -> None:
    answers = [429, 200]

    def throttled(handler: Any, recorder: Recorder) -> tuple[int, dict[str, str], bytes]:
        status = answers.pop(0)
        if status == 429:
            return 429, {"Retry-After": "1"}, b""
        return 200, {}, json.dumps({"token": "good-TOKEN", "expires_in": 300}).encode()

    with Recorder(TokenStandIn(throttled)) as registry:
        chain = Chain([Fixed(Credential("bob", PASSWORD))])
        started = time.monotonic()
        session = aiohttp.ClientSession(middlewares=(RegistryAuthMiddleware(chain),))
        async with session, session.get(f"{registry.url}/v2/org/app/manifests/v1") as response:
            assert response.status == 200
        assert time.monotonic() - started >= 0.9
    token_requests = [p for _, p, _, _ in registry.seen if p.startswith("/token")]
    assert len(token_requests) == 2


class Loopback(AbstractResolver):
    """Every host name is 127.0.0.1: a "remote" registry that asyncauth judges by its name."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        flags = socket.AI_NUMERICHOST
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=flags,
            )
        ]

    async def close(self) -> None:
        """Nothing to release."""


async def test_credentials_never_go_over_plain_http_to_a_remote_host() -> None:
    with Recorder(TokenStandIn(hostile_target)) as registry:
        remote = f"http://registry.example.com:{registry.server_address[1]}"
        chain = Chain([Fixed(Credential("bob", PASSWORD))])
        connector = aiohttp.TCPConnector(resolver=Loopback())
        session = aiohttp.ClientSession(
            middlewares=(RegistryAuthMiddleware(chain),), connector=connector
        )
        async with session:
            with pytest.raises(InsecureTransportError, match="insecure_registries") as caught:
                await session.get(f"{remote}/v2/org/app/manifests/v1")
    assert_hidden(str(caught.value), PASSWORD)
    assert [headers.get("authorization") for _, _, headers, _ in registry.seen] == [None]


async def test_a_remote_registry_may_not_point_its_realm_at_loopback() -> None:
    """The realm address rule (issue 11 #6) through the middleware: the registry's name is
    public, its realm 127.0.0.1; even opted in to plain http, the credentials stay home."""
    with Recorder(TokenStandIn(hostile_target)) as registry:
        host = f"registry.example.com:{registry.server_address[1]}"
        chain = Chain([Fixed(Credential("bob", PASSWORD))])
        middleware = RegistryAuthMiddleware(chain, insecure_registries=[host])
        connector = aiohttp.TCPConnector(resolver=Loopback())
        session = aiohttp.ClientSession(middlewares=(middleware,), connector=connector)
        async with session:
            with pytest.raises(InsecureTransportError, match="loopback address"):
                await session.get(f"http://{host}/v2/org/app/manifests/v1")
    assert [path.split("?")[0] for _, path, _, _ in registry.seen] == ["/v2/org/app/manifests/v1"]


async def test_middlewares_sharing_a_token_store_ask_the_token_server_once(
    token_registry: RegistryServer,
    seeded_repositories: list[PushedImage],
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    """Two middlewares (as two processes would have) share tokens through the store."""
    store = MemoryTokenStore()
    credential = Credential(*peer_accounts.writer)
    urls = [token_registry.url + image.manifest_path for image in seeded_repositories[:5]]
    statuses: list[int] = []
    for _ in range(2):
        middleware = RegistryAuthMiddleware(Chain([Fixed(credential)]), token_store=store)
        session = aiohttp.ClientSession(middlewares=(middleware,), headers=ACCEPT)
        async with session:
            for url in urls:
                async with session.get(url) as response:
                    statuses.append(response.status)
    assert statuses == [200] * 10
    assert token_issuer.total == 5


def test_the_one_private_aiohttp_attribute_read_is_still_there() -> None:
    """Hops of one redirect loop are recognised by ``ClientRequest._timer`` (the loop's timer,
    shared by its hops); without it the middleware falls back to the next hop's origin. The
    hostile-redirect test above proves the sharing; this names the dependency when it breaks."""
    import inspect

    assert "self._timer = timer" in inspect.getsource(aiohttp.ClientRequest.__init__)
    assert "timer=timer" in inspect.getsource(aiohttp.ClientSession._request)
