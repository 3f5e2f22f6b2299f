"""The handshake's safety rules.

Rules about *remote* hosts (plain http to a host that is not loopback, redirects to another
host, what a hostile token server may send) cannot be exercised with the real registry, which
only listens on 127.0.0.1. Here a strict stand-in answers through ``httpx.MockTransport``: it
speaks the registry/token protocol as distribution does (401 + challenge without a token, 200
only with the token it issued) and fails the test on anything it does not expect.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from asyncauth import (
    Chain,
    ChallengeError,
    Credential,
    InsecureTransportError,
    Resource,
    TokenResponseError,
)
from asyncauth._registry.auth import RegistryAuth

from ._assertions import assert_hidden
from ._fakes import Fixed
from ._secrets import secret

SECRET = secret("pw-SECRET-7")


class StandIn:
    """A registry at ``registry`` with a token server at ``realm``; records every request."""

    def __init__(
        self,
        *,
        registry: str = "https://registry.example.com",
        realm: str = "https://auth.example.com/token",
        token_body: bytes | None = None,
        redirect_to: str | None = None,
    ) -> None:
        self.registry = registry
        self.realm = realm
        self.token_body = token_body
        self.redirect_to = redirect_to
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        # A snapshot: auth flows add headers to the same request object when they retry it.
        self.seen.append(httpx.Request(request.method, request.url, headers=request.headers.copy()))
        url = str(request.url)
        if url.startswith(self.realm):
            body = self.token_body or json.dumps({"token": "issued-TOKEN", "expires_in": 300})
            return httpx.Response(200, content=body)
        if self.redirect_to and url.startswith(self.redirect_to):
            return httpx.Response(200, content=b"blob")
        if url.startswith(self.registry + "/v2/"):
            if request.headers.get("Authorization") == "Bearer issued-TOKEN":
                if self.redirect_to and "/blobs/" in url:
                    return httpx.Response(307, headers={"Location": self.redirect_to + "/data"})
                return httpx.Response(200, json={})
            challenge = f'Bearer realm="{self.realm}",service="registry.example.com"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        raise AssertionError(f"unexpected request to {request.url.host}")

    def hosts(self) -> list[str]:
        return [r.url.host for r in self.seen]


def client(stand_in: StandIn, credential: Credential, **auth_kwargs: Any) -> httpx.AsyncClient:
    auth = RegistryAuth(Chain([Fixed(credential)]), **auth_kwargs)
    return httpx.AsyncClient(
        auth=auth, transport=httpx.MockTransport(stand_in), follow_redirects=True
    )


async def test_token_requests_go_through_the_clients_transport() -> None:
    stand_in = StandIn()
    async with client(stand_in, Credential("bob", SECRET)) as http:
        response = await http.get("https://registry.example.com/v2/org/app/manifests/v1")
    assert response.status_code == 200
    assert stand_in.hosts() == [
        "registry.example.com",
        "auth.example.com",
        "registry.example.com",
    ]
    token_request = stand_in.seen[1]
    assert token_request.url.params.get_list("scope") == ["repository:org/app:pull"]
    assert token_request.url.params["service"] == "registry.example.com"
    expected = "Basic " + base64.b64encode(f"bob:{SECRET}".encode()).decode()
    assert token_request.headers["Authorization"] == expected


async def test_credentials_never_go_over_plain_http_to_a_remote_host() -> None:
    stand_in = StandIn(registry="http://registry.example.com", realm="http://auth.example.com/t")
    async with client(stand_in, Credential("bob", SECRET)) as http:
        with pytest.raises(InsecureTransportError) as caught:
            await http.get("http://registry.example.com/v2/org/app/manifests/v1")
    assert "registry.example.com" in str(caught.value)
    assert "insecure_registries" in str(caught.value)
    assert_hidden(str(caught.value), SECRET)
    # Nothing carrying the secret was sent: only the unauthenticated first request went out.
    assert [r.headers.get("Authorization") for r in stand_in.seen] == [None]


async def test_registry_token_over_plain_http_is_refused_too() -> None:
    stand_in = StandIn(registry="http://registry.example.com", realm="http://auth.example.com/t")
    async with client(stand_in, Credential(registry_token="tok-SECRET")) as http:
        with pytest.raises(InsecureTransportError):
            await http.get("http://registry.example.com/v2/org/app/manifests/v1")
    assert all("Authorization" not in r.headers for r in stand_in.seen)


async def test_plain_http_allowed_when_the_caller_opts_in() -> None:
    """Both hosts the credentials go to must be opted in: the registry and its realm."""
    stand_in = StandIn(registry="http://registry.example.com", realm="http://auth.example.com/t")
    insecure = ["registry.example.com", "auth.example.com"]
    async with client(stand_in, Credential("bob", SECRET), insecure_registries=insecure) as http:
        response = await http.get("http://registry.example.com/v2/org/app/manifests/v1")
    assert response.status_code == 200


async def test_an_insecure_registry_does_not_make_its_remote_realm_insecure() -> None:
    """Issue 11 #4: an opted-in plain-http registry naming a plain-http realm elsewhere must not
    get the credentials sent there in clear text."""
    stand_in = StandIn(registry="http://registry.example.com", realm="http://auth.example.com/t")
    insecure = ["registry.example.com"]
    async with client(stand_in, Credential("bob", SECRET), insecure_registries=insecure) as http:
        with pytest.raises(InsecureTransportError, match=r"auth\.example\.com") as caught:
            await http.get("http://registry.example.com/v2/org/app/manifests/v1")
    assert_hidden(str(caught.value), SECRET)
    assert [r.url.host for r in stand_in.seen] == ["registry.example.com"]


async def test_anonymous_over_plain_http_is_fine() -> None:
    stand_in = StandIn(registry="http://registry.example.com", realm="http://auth.example.com/t")
    async with client(stand_in, Credential.anonymous()) as http:
        response = await http.get("http://registry.example.com/v2/org/app/manifests/v1")
    assert response.status_code == 200
    assert all("Authorization" not in r.headers for r in stand_in.seen[:2])


async def test_plain_http_realm_for_an_https_registry_is_refused_even_anonymously() -> None:
    stand_in = StandIn(realm="http://auth.example.com/t")
    async with client(stand_in, Credential.anonymous()) as http:
        with pytest.raises(ChallengeError, match="https"):
            await http.get("https://registry.example.com/v2/org/app/manifests/v1")


async def test_realm_must_be_https_for_an_https_registry() -> None:
    stand_in = StandIn(realm="http://auth.example.com/token")
    async with client(stand_in, Credential("bob", SECRET)) as http:
        with pytest.raises(ChallengeError, match="https"):
            await http.get("https://registry.example.com/v2/org/app/manifests/v1")
    assert stand_in.hosts() == ["registry.example.com"]  # the secret never left


async def test_authorization_is_not_forwarded_on_redirect_to_another_host() -> None:
    stand_in = StandIn(redirect_to="https://storage.example.net")
    async with client(stand_in, Credential("bob", SECRET)) as http:
        response = await http.get(
            f"https://registry.example.com/v2/org/app/blobs/sha256:{'a' * 64}"
        )
    assert response.status_code == 200
    storage = [r for r in stand_in.seen if r.url.host == "storage.example.net"]
    assert len(storage) == 1
    assert "Authorization" not in storage[0].headers


async def test_token_response_is_size_limited() -> None:
    huge = json.dumps({"token": "x" * 4096}).encode()
    stand_in = StandIn(token_body=huge)
    async with client(stand_in, Credential("bob", SECRET), max_token_response=1024) as http:
        with pytest.raises(TokenResponseError, match="larger than 1024 bytes"):
            await http.get("https://registry.example.com/v2/org/app/manifests/v1")


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"expires_in": 300}', b'{"token": 5}', b'{"token": "a\\r\\nb"}'],
)
async def test_malformed_token_responses_are_clear_errors(body: bytes) -> None:
    stand_in = StandIn(token_body=body)
    async with client(stand_in, Credential("bob", SECRET)) as http:
        with pytest.raises(TokenResponseError) as caught:
            await http.get("https://registry.example.com/v2/org/app/manifests/v1")
    assert "token response" in str(caught.value)


async def test_malformed_challenge_is_a_clear_error() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="unterminated'})

    auth = RegistryAuth(Chain([Fixed(Credential("bob", SECRET))]))
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(broken)) as http:
        with pytest.raises(ChallengeError, match="WWW-Authenticate"):
            await http.get("https://registry.example.com/v2/org/app/manifests/v1")


def test_repr_hides_nothing_secret() -> None:
    auth = RegistryAuth(Chain([Fixed(Credential("bob", SECRET))]), insecure_registries=["a.io"])
    assert_hidden(repr(auth), SECRET)
    assert "a.io" in repr(auth)


async def test_cancelled_credential_lookup_does_not_cancel_the_others() -> None:
    """The task resolving credentials for a repository is cancelled while others wait for the
    same lookup: they must take it over, not inherit its cancellation."""
    import anyio

    class Slow:
        name = "slow"
        calls = 0

        async def resolve(self, resource: Resource) -> Credential | None:
            Slow.calls += 1
            await anyio.sleep(0.3)
            return Credential("bob", SECRET)

    stand_in = StandIn()
    auth = RegistryAuth(Chain([Slow()]))
    url = "https://registry.example.com/v2/org/app/manifests/v1"
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(stand_in)) as http:
        statuses: list[int] = []
        leader_scope = anyio.CancelScope()

        async def leader() -> None:
            with leader_scope:
                await http.get(url)

        async def follower() -> None:
            statuses.append((await http.get(url)).status_code)

        async with anyio.create_task_group() as tg:
            tg.start_soon(leader)
            await anyio.sleep(0.1)  # the leader now resolves the credential (0.3 s)
            tg.start_soon(follower)
            tg.start_soon(follower)
            await anyio.sleep(0.05)
            leader_scope.cancel()
    assert leader_scope.cancelled_caught
    assert statuses == [200, 200]
    assert Slow.calls == 2  # the cancelled lookup, and one follower's for both
