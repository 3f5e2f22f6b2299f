"""The handshake against a real registry (CNCF distribution) and a strict token issuer.

The tests that take ``driver`` run through every driver of the one flow (tests/_drivers.py):
httpx's async and sync auth flows and the aiohttp middleware (asyncio only). Counts are exact:
token requests are counted at the issuer, 401s by the client (tests/_drivers.py says how).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from asyncauth import (
    AuthenticationError,
    Chain,
    Credential,
    FlagsResolver,
)
from asyncauth._registry.auth import RegistryAuth

from ._assertions import assert_hidden
from ._drivers import ACCEPT, open_client
from ._fakes import Fixed
from .peers.accounts import SEEDED_REPOSITORY_COUNT, PeerAccounts
from .peers.images import OCIImage, PushedImage
from .peers.registry import RegistryServer
from .peers.token_issuer import IssuerPolicy, TokenIssuer


def auth_for(credential: Credential, **kwargs: Any) -> RegistryAuth:
    return RegistryAuth(Chain([Fixed(credential)]), **kwargs)


class Counter:
    """An httpx event hook that counts responses by status."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.urls: list[str] = []

    async def __call__(self, response: httpx.Response) -> None:
        self.statuses.append(response.status_code)
        self.urls.append(f"{response.request.method} {response.request.url.path}")

    def sync(self, response: httpx.Response) -> None:
        self.statuses.append(response.status_code)
        self.urls.append(f"{response.request.method} {response.request.url.path}")

    @property
    def unauthorized(self) -> int:
        return self.statuses.count(401)


def client(auth: RegistryAuth, counter: Counter | None = None, **kwargs: Any) -> httpx.AsyncClient:
    hooks = {"response": [counter]} if counter else {}
    # distribution hides OCI manifests from clients that do not accept them (404).
    return httpx.AsyncClient(auth=auth, event_hooks=hooks, timeout=30.0, headers=ACCEPT, **kwargs)


def writer(accounts: PeerAccounts) -> Credential:
    return Credential(*accounts.writer)


async def test_pull_with_username_and_password(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    auth = auth_for(writer(peer_accounts))
    async with open_client(driver, auth) as http:
        url = token_registry.url + token_registry_image.manifest_path
        for _ in range(3):
            response = await http.get(url, headers=ACCEPT)
            assert response.status == 200
            assert response.headers["Docker-Content-Digest"] == token_registry_image.digest
    assert token_issuer.count(method="GET", grant="basic", user=peer_accounts.writer[0]) == 1
    assert token_issuer.total == 1
    assert token_issuer.scope_counts() == {"repository:peers/app:pull": 1}
    assert http.unauthorized == 1  # the first request learnt the challenge; no more 401s
    assert http.statuses == [401, 200, 200, 200, 200]  # probe, token, the request, two warm


async def test_push_scope(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    oci_image: OCIImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    auth = auth_for(writer(peer_accounts))
    repository = f"pushed/by-{driver}"
    async with open_client(driver, auth) as http:
        url = f"{token_registry.url}/v2/{repository}/manifests/v1"
        # Blobs first (a manifest PUT needs them): cross-repository mounts need pull on `from`.
        for digest in (oci_image.config_digest, oci_image.layer_digest):
            response = await http.request(
                "POST",
                f"{token_registry.url}/v2/{repository}/blobs/uploads/"
                f"?mount={digest}&from=peers/app",
            )
            assert response.status == 201, response.body
        response = await http.request(
            "PUT",
            url,
            content=oci_image.manifest,
            headers={"Content-Type": oci_image.media_type},
        )
        assert response.status == 201, response.body
        assert (await http.get(url, headers=ACCEPT)).status == 200
    counts = token_issuer.scope_counts()
    assert counts[f"repository:{repository}:pull,push"] >= 1
    assert counts["repository:peers/app:pull"] >= 1


async def test_identity_token_uses_oauth2_post(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    credential = Credential(identity_token=peer_accounts.writer_identity_token)
    async with open_client(driver, auth_for(credential)) as http:
        response = await http.get(token_registry.url + token_registry_image.manifest_path)
        assert response.status == 200
    assert token_issuer.count(method="POST", grant="refresh_token") == 1
    assert token_issuer.gets == 0


async def test_identity_token_falls_back_to_get_on_404(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    token_issuer.policy = dataclasses.replace(
        token_issuer.policy,
        post_enabled=False,
        users={**token_issuer.policy.users, "idt-user": peer_accounts.writer_identity_token},
    )
    credential = Credential(username="idt-user", identity_token=peer_accounts.writer_identity_token)
    async with open_client(driver, auth_for(credential)) as http:
        response = await http.get(token_registry.url + token_registry_image.manifest_path)
        assert response.status == 200
    assert token_issuer.count(method="POST", status=404) == 1
    assert token_issuer.count(method="GET", status=200) == 1


async def test_refresh_token_is_kept_for_later_refreshes(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    seeded_repositories: list[PushedImage],
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    token_issuer.policy = dataclasses.replace(token_issuer.policy, issue_refresh_tokens=True)
    auth = auth_for(writer(peer_accounts), offline_token=True)
    async with open_client(driver, auth) as http:
        response = await http.get(token_registry.url + token_registry_image.manifest_path)
        assert response.status == 200
        other = seeded_repositories[0]
        assert (await http.get(token_registry.url + other.manifest_path)).status == 200
    first, second = token_issuer.requests()
    assert (first.method, first.grant, first.refresh_token_issued) == ("GET", "basic", True)
    assert (second.method, second.grant, second.user) == ("POST", "refresh_token", "alice")


async def test_registry_token_is_sent_verbatim(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
) -> None:
    minted = token_issuer.mint("ci", ["repository:peers/app:pull"])
    token_issuer.reset()
    async with open_client(driver, auth_for(Credential(registry_token=minted))) as http:
        response = await http.get(token_registry.url + token_registry_image.manifest_path)
        assert response.status == 200
    assert token_issuer.total == 0


async def test_anonymous_pull_where_allowed(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
) -> None:
    token_issuer.policy = dataclasses.replace(token_issuer.policy, anonymous_pull=True)
    async with open_client(driver, auth_for(Credential.anonymous())) as http:
        response = await http.get(token_registry.url + token_registry_image.manifest_path)
        assert response.status == 200
    assert token_issuer.count(grant="anonymous") == 1


async def test_anonymous_pull_where_not_allowed_returns_the_401(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
) -> None:
    async with open_client(driver, auth_for(Credential.anonymous())) as http:
        response = await http.get(token_registry.url + token_registry_image.manifest_path)
    assert response.status == 401
    # The challenge, the anonymous try, one retry after insufficient_scope: then it stops.
    assert http.unauthorized <= 3
    assert token_issuer.total <= 2


async def test_wrong_password_is_a_clear_error(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    secret = "wrong-SECRET-password"
    auth = RegistryAuth(Chain([FlagsResolver(username="alice", password=secret, environ={})]))
    async with open_client(driver, auth) as http:
        with pytest.raises(AuthenticationError) as caught:
            await http.get(token_registry.url + token_registry_image.manifest_path)
    message = str(caught.value)
    assert "401" in message
    assert "flags" in message  # which source the credentials came from
    assert token_registry.host in message
    assert "repository:peers/app:pull" in message
    assert_hidden(message + repr(caught.value), secret, where="AuthenticationError")
    assert token_issuer.total == 1  # no retry of a refused password


async def test_expired_token_is_refreshed_exactly_once(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    url = token_registry.url + token_registry_image.manifest_path
    # The issuer hands out tokens the registry rejects (expired past its leeway), while
    # claiming they last 300 s: the client can only learn it from the registry's 401.
    token_issuer.policy = dataclasses.replace(
        token_issuer.policy, token_lifetime=-120, expires_in=300
    )
    auth = auth_for(writer(peer_accounts))
    async with open_client(driver, auth) as http:
        response = await http.get(url)
        assert response.status == 401  # retried once, then the 401 is the caller's
        assert token_issuer.total == 2
        token_issuer.policy = dataclasses.replace(
            token_issuer.policy, token_lifetime=300, expires_in=None
        )
        token_issuer.reset()
        http.seen.clear()
        response = await http.get(url)
        assert response.status == 200
    assert token_issuer.total == 1  # exactly one refresh
    assert http.statuses == [401, 200, 200]  # stale token, token request, retried request


async def test_insufficient_scope_retries_once_then_returns_401(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    oci_image: OCIImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    reader = Credential(*peer_accounts.reader)  # pull only
    async with open_client(driver, auth_for(reader)) as http:
        response = await http.request(
            "PUT",
            f"{token_registry.url}/v2/peers/app/manifests/v2",
            content=oci_image.manifest,
            headers={"Content-Type": oci_image.media_type},
        )
    assert response.status == 401
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert token_issuer.total == 2  # the first token, and one retry's
    assert http.unauthorized == 3  # challenge, first try, the retry: no loop


async def test_thousand_concurrent_gets_cost_one_token_per_repository(
    driver: str,
    token_registry: RegistryServer,
    seeded_repositories: list[PushedImage],
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    assert len(seeded_repositories) == SEEDED_REPOSITORY_COUNT == 20
    auth = auth_for(writer(peer_accounts))
    statuses: list[int] = []
    async with open_client(driver, auth) as http:

        async def get(i: int) -> None:
            image = seeded_repositories[i % 20]
            response = await http.get(token_registry.url + image.manifest_path, headers=ACCEPT)
            statuses.append(response.status)

        async with anyio.create_task_group() as tg:
            for i in range(1000):
                tg.start_soon(get, i)
    assert statuses == [200] * 1000
    assert token_issuer.total == 20
    assert set(token_issuer.scope_counts().values()) == {1}
    assert http.unauthorized <= 1
    assert auth.stats.challenges <= 1


async def test_cancelled_token_leader_does_not_strand_the_others(
    task_driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    url = token_registry.url + token_registry_image.manifest_path
    auth = auth_for(writer(peer_accounts))
    async with open_client(task_driver, auth) as http:
        assert (await http.get(token_registry.url + "/v2/")).status == 200  # learn the challenge
        token_issuer.policy = dataclasses.replace(token_issuer.policy, delay=0.5)
        before = auth.stats.token_requests
        statuses: list[int] = []
        leader_scope = anyio.CancelScope()

        async def leader() -> None:
            with leader_scope:
                await http.get(url)

        async def follower() -> None:
            statuses.append((await http.get(url)).status)

        async with anyio.create_task_group() as tg:
            tg.start_soon(leader)
            await anyio.sleep(0.1)  # the leader now waits for its (slow) token request
            tg.start_soon(follower)
            tg.start_soon(follower)
            await anyio.sleep(0.1)
            leader_scope.cancel()
    assert leader_scope.cancelled_caught
    assert statuses == [200, 200]
    # The cancelled leader's request, and one follower's that serves both followers.
    assert auth.stats.token_requests - before == 2


async def test_streaming_body_is_sent_only_with_a_token(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    oci_image: OCIImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    streamed: list[int] = []
    async with open_client(driver, auth_for(writer(peer_accounts))) as http:
        response = await http.request(
            "PUT",
            f"{token_registry.url}/v2/peers/app/manifests/streamed",
            content=oci_image.manifest,
            streamed=streamed,
            headers={"Content-Type": oci_image.media_type},
        )
    assert response.status == 201, response.body
    assert streamed == [1]
    assert http.seen[0] == (401, "GET /v2/")  # the ping learnt the challenge
    assert http.statuses == [401, 200, 201]


def _prime_a_stale_push_token(token_issuer: TokenIssuer) -> IssuerPolicy:
    """Make the issuer hand out tokens the registry rejects (expired past its leeway) while
    claiming 300 s; returns the policy to restore."""
    policy = token_issuer.policy
    token_issuer.policy = dataclasses.replace(policy, token_lifetime=-120, expires_in=300)
    return policy


async def _leave_a_stale_push_token(
    http: Any, auth: RegistryAuth, token_registry: RegistryServer, token_issuer: TokenIssuer
) -> None:
    """Leave a push token for peers/app in the cache that the registry will refuse: a push
    started (with nothing cached) while the issuer hands out expired tokens (refused twice:
    it ends 401, the second token kept)."""
    auth.clear()
    policy = _prime_a_stale_push_token(token_issuer)
    start = f"{token_registry.url}/v2/peers/app/blobs/uploads/"
    assert (await http.request("POST", start)).status == 401
    token_issuer.policy = policy
    token_issuer.reset()
    http.seen.clear()


async def test_an_upload_whose_token_expired_is_sent_again_with_a_fresh_one(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,  # its blobs: a manifest PUT needs them
    oci_image: OCIImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
    tmp_path: Path,
) -> None:
    """A PUT whose cached token the registry refuses (it expired during a long upload) gets
    one token refresh and one retry, its body sent again in full: bytes, a str and a seekable
    file (on the drivers whose clients take a sync file: httpx's sync client and aiohttp)."""
    kinds = ["bytes", "str"] + (["file"] if driver in ("httpx-sync", "aiohttp") else [])
    manifest_file = tmp_path / "manifest.json"
    manifest_file.write_bytes(oci_image.manifest)
    auth = auth_for(writer(peer_accounts))
    async with open_client(driver, auth) as http:
        for kind in kinds:
            await _leave_a_stale_push_token(http, auth, token_registry, token_issuer)
            url = f"{token_registry.url}/v2/peers/app/manifests/{kind}-{driver}"
            with manifest_file.open("rb") as file:
                body = {"bytes": oci_image.manifest, "str": oci_image.manifest.decode()}
                response = await http.request(
                    "PUT",
                    url,
                    content=body.get(kind, file),
                    headers={"Content-Type": oci_image.media_type},
                )
            assert response.status == 201, (kind, response.body)
            assert token_issuer.total == 1, kind  # exactly one refresh
            assert http.statuses == [401, 200, 201], kind  # stale token, token, the retry
            pulled = await http.get(url)
            assert pulled.body == oci_image.manifest, kind  # the retry carried all of it


async def test_a_one_shot_upload_whose_token_expired_says_why(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,  # its blobs: a manifest PUT needs them
    oci_image: OCIImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    """A streamed body (an async generator; an iterator for the sync client) cannot be sent
    again: the registry's 401 becomes an error that says so and what to pass instead."""
    streamed: list[int] = []
    auth = auth_for(writer(peer_accounts))
    async with open_client(driver, auth) as http:
        await _leave_a_stale_push_token(http, auth, token_registry, token_issuer)
        with pytest.raises(AuthenticationError) as caught:
            await http.request(
                "PUT",
                f"{token_registry.url}/v2/peers/app/manifests/one-shot-{driver}",
                content=oci_image.manifest,
                streamed=streamed,
                headers={"Content-Type": oci_image.media_type},
            )
    message = str(caught.value)
    assert "one-shot stream" in message
    assert "pass the body as bytes, a str or a seekable file" in message
    assert streamed == [1]  # sent once, never replayed half-empty
    assert http.statuses == [401]
    assert token_issuer.total == 0


async def test_docker_config_headers_are_sent(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    auth = auth_for(writer(peer_accounts), headers={"User-Agent": "Docker-Client/18.09.6 (x)"})
    async with open_client(driver, auth) as http:
        response = await http.get(token_registry.url + token_registry_image.manifest_path)
        assert response.status == 200
    assert "Docker-Client/18.09.6 (x)" in http.agents


async def test_basic_auth_registry(
    driver: str,
    htpasswd_registry: RegistryServer,
    htpasswd_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    url = htpasswd_registry.url + htpasswd_registry_image.manifest_path
    async with open_client(driver, auth_for(writer(peer_accounts))) as http:
        assert (await http.get(url, headers=ACCEPT)).status == 200
        assert (await http.get(url, headers=ACCEPT)).status == 200
    assert http.statuses == [401, 200, 200]  # Basic is sent up front once it is known
    async with open_client(driver, auth_for(Credential("alice", "wrong-PW-5"))) as http:
        # Issue 9: a Basic registry's refusal names the source whose credential it refused.
        with pytest.raises(
            AuthenticationError, match="basic credentials for user alice from fixed"
        ):
            await http.get(url)
    assert http.statuses == [401, 401]  # one authenticated try, no loop
    async with open_client(driver, auth_for(Credential.anonymous())) as http:
        assert (await http.get(url)).status == 401


def test_sync_client(
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    counter = Counter()
    auth = auth_for(writer(peer_accounts))
    with httpx.Client(auth=auth, event_hooks={"response": [counter.sync]}) as http:
        url = token_registry.url + token_registry_image.manifest_path
        for _ in range(3):
            assert http.get(url, headers=ACCEPT).status_code == 200
    assert token_issuer.total == 1
    assert counter.unauthorized == 1


def test_sync_client_from_threads(
    token_registry: RegistryServer,
    seeded_repositories: list[PushedImage],
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    auth = auth_for(writer(peer_accounts))
    with httpx.Client(auth=auth, limits=httpx.Limits(max_connections=16), headers=ACCEPT) as http:

        def get(i: int) -> int:
            image = seeded_repositories[i % 20]
            return http.get(token_registry.url + image.manifest_path).status_code

        with ThreadPoolExecutor(16) as pool:
            assert list(pool.map(get, range(200))) == [200] * 200
    assert token_issuer.total == 20


async def test_bearer_token_for_curl(
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    auth = auth_for(writer(peer_accounts))
    async with client(auth) as http:
        pull = await auth.bearer_token(http, f"{token_registry.host}/peers/app")
        push = await auth.bearer_token(http, f"{token_registry.host}/peers/app", push=True)
    assert pull.startswith("Bearer ")
    claims = token_issuer.decode(push.removeprefix("Bearer "))
    assert claims["access"] == [
        {"type": "repository", "name": "peers/app", "actions": ["pull", "push"]}
    ]
    async with httpx.AsyncClient() as plain:
        response = await plain.get(
            token_registry.url + token_registry_image.manifest_path,
            headers={"Authorization": pull, **ACCEPT},
        )
        assert response.status_code == 200


def test_sync_clients_in_threads_with_the_default_chain(
    tmp_path: Path,
    token_registry: RegistryServer,
    seeded_repositories: list[PushedImage],
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    """Each thread's lookup runs its own short event loop; the default chain's caches (Docker
    config, helpers, clouds) must not be shared between two loops at once (it hung before)."""
    from concurrent.futures import ThreadPoolExecutor

    from asyncauth import default_chain

    user, password = peer_accounts.writer
    environ = {
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "IMGPKG_REGISTRY_HOSTNAME": token_registry.host,
        "IMGPKG_REGISTRY_USERNAME": user,
        "IMGPKG_REGISTRY_PASSWORD": password,
    }
    auth = RegistryAuth(default_chain(environ=environ))
    with httpx.Client(auth=auth, headers=ACCEPT, timeout=30.0) as http:

        def get(i: int) -> int:
            image = seeded_repositories[i % 20]
            return http.get(token_registry.url + image.manifest_path).status_code

        pool = ThreadPoolExecutor(32)
        try:
            futures = [pool.submit(get, i) for i in range(320)]
            # A bounded wait: a regression here is a deadlock, which must fail, not hang.
            assert [f.result(timeout=60) for f in futures] == [200] * 320
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    assert token_issuer.total == 20


async def test_an_open_registry_stays_on_the_warm_path(
    driver: str, open_registry: RegistryServer, open_registry_image: PushedImage
) -> None:
    """A registry that asks for nothing is learnt once; its requests then take the warm path
    and learn nothing more (each used to rewrite the challenge, whose new version sent every
    remembered route in the process back to the flow)."""
    auth = auth_for(Credential("alice", "pw-not-asked-for"))
    handshake = auth._handshake
    async with open_client(driver, auth) as http:
        url = open_registry.url + open_registry_image.manifest_path
        assert (await http.get(url)).status == 200
        learnt = handshake.challenges.version
        for _ in range(20):
            assert (await http.get(url)).status == 200
    assert handshake.challenges.version == learnt
    assert (auth.stats.challenges, auth.stats.resolutions, auth.stats.token_requests) == (0, 0, 0)
    assert http.statuses == [200] * 21
