"""The test peers are real and strict: proof before anyone builds on them.

Every later handshake test trusts that a 200 from ``token_registry`` means "the token was right"
and a 401 means "it was wrong". These tests establish that with plain httpx and skopeo (the
library's own handshake is deliberately not used): the registry demands tokens, checks their
signature, audience, issuer, expiry and access; the issuer authenticates, narrows grants to the
policy, speaks both the GET and the OAuth2 POST flows (chunked too), and counts exactly.

Assertions compare statuses, digests, scopes and claim structure — never secret values — so a
failure message cannot leak a password or token.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
import jwt
import pytest
from cryptography import x509

from .peers import (
    OCI_MANIFEST,
    Htpasswd,
    PeerError,
    PeerUnavailableError,
    PushedImage,
    RegistryServer,
    Scope,
    TokenAuth,
    TokenIssuer,
    bearer,
    build_oci_layout,
    libtrust_key_id,
    new_signing_key,
    seed_repositories,
    skopeo_push,
    write_auth_file,
)
from .peers._tools import require_tool
from .peers.accounts import SEEDED_REPOSITORY_COUNT, PeerAccounts
from .peers.images import OCIImage

ACCEPT = {"Accept": f"{OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json"}
KID_PATTERN = re.compile(r"^(?:[A-Z2-7]{4}:){11}[A-Z2-7]{4}$")


def challenge(response: httpx.Response) -> tuple[str, dict[str, str]]:
    """Scheme and parameters of a ``WWW-Authenticate`` header (simple: distribution's own)."""
    header = response.headers.get("WWW-Authenticate", "")
    scheme, _, rest = header.partition(" ")
    return scheme, dict(re.findall(r'(\w+)="([^"]*)"', rest))


def token_params(issuer: TokenIssuer, *scopes: str) -> httpx.QueryParams:
    """``service=…&scope=…&scope=…`` — repeated ``scope`` parameters, as registries ask."""
    return httpx.QueryParams([("service", issuer.service), *(("scope", s) for s in scopes)])


async def fetch_token(
    client: httpx.AsyncClient,
    issuer: TokenIssuer,
    *scopes: str,
    auth: tuple[str, str] | None = None,
) -> str:
    response = await client.get(issuer.realm, params=token_params(issuer, *scopes), auth=auth)
    assert response.status_code == 200
    token = response.json()["token"]
    assert isinstance(token, str)
    return token


def access_of(issuer: TokenIssuer, token: str) -> list[dict[str, Any]]:
    claims = issuer.decode(token)
    access = claims["access"]
    assert isinstance(access, list)
    return access


# -- the issuer's token format ---------------------------------------------------------------------


def test_token_carries_what_distribution_requires(session_token_issuer: TokenIssuer) -> None:
    issuer = session_token_issuer
    certificate = x509.load_pem_x509_certificate(issuer.rootcertbundle.read_bytes())
    assert KID_PATTERN.match(issuer.kid)
    assert libtrust_key_id(certificate.public_key()) == issuer.kid  # type: ignore[arg-type]

    token = issuer.mint("alice", ["repository:peers/app:pull"])
    header = jwt.get_unverified_header(token)
    assert header["kid"] == issuer.kid
    assert header["alg"] == "ES256"
    claims = issuer.decode(token)
    assert isinstance(claims["aud"], str)
    assert claims["aud"] == issuer.service
    assert claims["iss"] == issuer.issuer
    assert {"exp", "nbf", "iat", "jti", "sub"} <= set(claims)
    assert claims["access"] == [{"type": "repository", "name": "peers/app", "actions": ["pull"]}]


def test_scope_parsing_follows_distribution() -> None:
    assert Scope.parse("repository:team/app:pull,push") == Scope(
        "repository", "team/app", ("pull", "push")
    )
    assert Scope.parse("registry:catalog:*") == Scope("registry", "catalog", ("*",))
    # The name may contain a colon (a registry host with a port); split on first and last.
    assert Scope.parse("repository:host:5000/app:pull").name == "host:5000/app"
    for bad in ("repository", "repository:app", "repository::pull", "repository:app:"):
        with pytest.raises(ValueError, match="malformed scope"):
            Scope.parse(bad)


# -- the registry in token mode --------------------------------------------------------------------


async def test_token_registry_challenges_requests_without_token(
    token_registry: RegistryServer,
    token_issuer: TokenIssuer,
    token_registry_image: PushedImage,
) -> None:
    async with httpx.AsyncClient(base_url=token_registry.url) as client:
        base = await client.get("/v2/")
        manifest = await client.get(token_registry_image.manifest_path, headers=ACCEPT)

    assert base.status_code == 401
    scheme, params = challenge(base)
    assert scheme == "Bearer"
    assert params == {"realm": token_issuer.realm, "service": token_issuer.service}

    assert manifest.status_code == 401
    scheme, params = challenge(manifest)
    assert scheme == "Bearer"
    assert params == {
        "realm": token_issuer.realm,
        "service": token_issuer.service,
        "scope": "repository:peers/app:pull",
    }
    assert token_issuer.total == 0  # the registry never calls the issuer itself


async def test_token_registry_accepts_an_issued_token_for_the_scope(
    token_registry: RegistryServer,
    token_issuer: TokenIssuer,
    token_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    async with httpx.AsyncClient(base_url=token_registry.url) as client:
        token = await fetch_token(
            client, token_issuer, "repository:peers/app:pull", auth=peer_accounts.writer
        )
        response = await client.get(
            token_registry_image.manifest_path, headers={**ACCEPT, **bearer(token)}
        )

    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == token_registry_image.digest
    assert response.headers["Content-Type"] == token_registry_image.media_type
    assert token_issuer.total == 1
    assert token_issuer.count(method="GET", grant="basic", user="alice", status=200) == 1
    assert token_issuer.scope_counts() == {"repository:peers/app:pull": 1}


async def test_token_for_another_repository_is_insufficient_scope(
    token_registry: RegistryServer,
    token_issuer: TokenIssuer,
    token_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    async with httpx.AsyncClient(base_url=token_registry.url) as client:
        token = await fetch_token(
            client, token_issuer, "repository:peers/other:pull", auth=peer_accounts.writer
        )
        response = await client.get(
            token_registry_image.manifest_path, headers={**ACCEPT, **bearer(token)}
        )

    assert response.status_code == 401
    _, params = challenge(response)
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "repository:peers/app:pull"


async def test_expired_token_is_invalid_beyond_the_60s_leeway(
    token_registry: RegistryServer,
    token_issuer: TokenIssuer,
    token_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    token_issuer.policy = dataclasses.replace(token_issuer.policy, token_lifetime=-120)
    async with httpx.AsyncClient(base_url=token_registry.url) as client:
        expired = await fetch_token(
            client, token_issuer, "repository:peers/app:pull", auth=peer_accounts.writer
        )
        rejected = await client.get(
            token_registry_image.manifest_path, headers={**ACCEPT, **bearer(expired)}
        )
        within_leeway = token_issuer.mint("alice", ["repository:peers/app:pull"], lifetime=-30)
        accepted = await client.get(
            token_registry_image.manifest_path, headers={**ACCEPT, **bearer(within_leeway)}
        )

    assert rejected.status_code == 401
    assert challenge(rejected)[1]["error"] == "invalid_token"
    assert accepted.status_code == 200


FORGERIES: dict[str, dict[str, Any]] = {
    "untrusted key": {"signing_key": new_signing_key()},
    "untrusted key, trusted kid": {"signing_key": new_signing_key(), "kid": "trusted"},
    "untrusted RS256 key": {"signing_key": new_signing_key("RS256")},
    "other audience": {"audience": "some-other-registry"},
    "audience as a list": {"extra_claims": {"aud": ["asyncauth-test-registry"]}},
    "other issuer": {"issuer": "someone-else"},
    "not yet valid": {"in_seconds": 600},  # from when the test runs, not when it was collected
}


@pytest.mark.parametrize("forgery", FORGERIES.values(), ids=FORGERIES.keys())
def test_registry_rejects_forged_tokens(
    token_registry: RegistryServer,
    session_token_issuer: TokenIssuer,
    token_registry_image: PushedImage,
    forgery: dict[str, Any],
) -> None:
    options = dict(forgery)
    if "in_seconds" in options:
        options["now"] = time.time() + options.pop("in_seconds")
    if options.get("kid") == "trusted":
        options["kid"] = session_token_issuer.kid
    assert session_token_issuer.service == "asyncauth-test-registry"  # "audience as a list"
    token = session_token_issuer.mint("alice", ["repository:peers/app:pull"], **options)
    response = httpx.get(
        f"{token_registry.url}{token_registry_image.manifest_path}",
        headers={**ACCEPT, **bearer(token)},
    )
    assert response.status_code == 401
    assert challenge(response)[1]["error"] == "invalid_token"


async def test_pull_only_user_gets_a_narrowed_token(
    token_registry: RegistryServer,
    token_issuer: TokenIssuer,
    token_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    async with httpx.AsyncClient(base_url=token_registry.url) as client:
        token = await fetch_token(
            client, token_issuer, "repository:peers/app:pull,push", auth=peer_accounts.reader
        )
        pull = await client.get(
            token_registry_image.manifest_path, headers={**ACCEPT, **bearer(token)}
        )
        push = await client.post("/v2/peers/app/blobs/uploads/", headers=bearer(token))

    assert access_of(token_issuer, token) == [
        {"type": "repository", "name": "peers/app", "actions": ["pull"]}
    ]
    assert pull.status_code == 200
    assert push.status_code == 401
    _, params = challenge(push)
    assert params["error"] == "insufficient_scope"
    # distribution lists the actions in map order, so "push,pull" and "pull,push" both occur.
    scope = Scope.parse(params["scope"])
    assert (scope.type, scope.name, sorted(scope.actions)) == (
        "repository",
        "peers/app",
        ["pull", "push"],
    )


async def test_wrong_password_is_401_at_the_issuer_and_counted(
    token_issuer: TokenIssuer, peer_accounts: PeerAccounts
) -> None:
    user = peer_accounts.writer[0]
    async with httpx.AsyncClient() as client:
        response = await client.get(
            token_issuer.realm,
            params=token_params(token_issuer, "repository:peers/app:pull"),
            auth=(user, "not-the-password"),
        )
    assert response.status_code == 401
    assert "token" not in response.json()
    assert token_issuer.count(status=401, grant="basic") == 1
    assert token_issuer.count(status=200) == 0


# -- the OAuth2 POST flow --------------------------------------------------------------------------


def refresh_form(issuer: TokenIssuer, refresh_token: str, *scopes: str) -> dict[str, Any]:
    return {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "service": issuer.service,
        "client_id": "asyncauth-tests",
        "scope": list(scopes),
    }


async def test_identity_token_post_plain_and_chunked(
    token_registry: RegistryServer,
    token_issuer: TokenIssuer,
    token_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    form = refresh_form(
        token_issuer, peer_accounts.writer_identity_token, "repository:peers/app:pull"
    )
    body = urlencode(form, doseq=True).encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield body[:10]
        yield body[10:]

    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    async with httpx.AsyncClient(base_url=token_registry.url) as client:
        plain = await client.post(token_issuer.realm, data=form)
        chunked = await client.post(token_issuer.realm, content=chunks(), headers=form_type)
        manifest = await client.get(
            token_registry_image.manifest_path,
            headers={**ACCEPT, **bearer(chunked.json()["access_token"])},
        )

    assert plain.status_code == 200
    assert chunked.status_code == 200
    assert manifest.status_code == 200
    assert [(r.method, r.grant, r.user, r.chunked) for r in token_issuer.requests()] == [
        ("POST", "refresh_token", "alice", False),
        ("POST", "refresh_token", "alice", True),
    ]


def test_skopeo_pushes_with_an_identity_token_via_chunked_post(
    token_registry: RegistryServer,
    token_issuer: TokenIssuer,
    oci_image: OCIImage,
    peer_accounts: PeerAccounts,
    tmp_path: Path,
) -> None:
    authfile = write_auth_file(
        tmp_path / "auth.json",
        token_registry.host,
        identity_token=peer_accounts.writer_identity_token,
    )
    pushed = skopeo_push(oci_image, token_registry.host, "peers/identity", authfile=authfile)

    assert pushed.digest == oci_image.manifest_digest
    posts = [r for r in token_issuer.requests() if r.method == "POST"]
    assert posts
    assert all(r.chunked and r.grant == "refresh_token" and r.status == 200 for r in posts)
    assert {r.client_id for r in posts} == {"containers/image"}
    assert token_issuer.gets == 0


def test_skopeo_sends_a_registry_token_verbatim(
    token_registry: RegistryServer, token_issuer: TokenIssuer, oci_image: OCIImage
) -> None:
    token = token_issuer.mint("ci", [Scope.repository("peers/verbatim", "pull", "push")])
    pushed = skopeo_push(oci_image, token_registry.host, "peers/verbatim", registry_token=token)
    response = httpx.get(
        f"{token_registry.url}/v2/peers/verbatim/manifests/v1", headers={**ACCEPT, **bearer(token)}
    )
    assert response.headers["Docker-Content-Digest"] == pushed.digest
    assert token_issuer.total == 0  # no exchange at all


async def test_disabled_post_is_404_and_get_with_basic_still_works(
    token_issuer: TokenIssuer, peer_accounts: PeerAccounts
) -> None:
    token_issuer.policy = dataclasses.replace(token_issuer.policy, post_enabled=False)
    async with httpx.AsyncClient() as client:
        post = await client.post(
            token_issuer.realm,
            data=refresh_form(token_issuer, peer_accounts.writer_identity_token),
        )
        token = await fetch_token(
            client, token_issuer, "repository:peers/app:pull", auth=peer_accounts.writer
        )
    assert post.status_code == 404
    assert access_of(token_issuer, token)[0]["actions"] == ["pull"]
    assert (token_issuer.posts, token_issuer.gets) == (1, 1)


async def test_password_grant_returns_a_refresh_token_only_when_enabled(
    token_issuer: TokenIssuer, peer_accounts: PeerAccounts
) -> None:
    user, password = peer_accounts.reader
    form = {
        "grant_type": "password",
        "username": user,
        "password": password,
        "service": token_issuer.service,
        "client_id": "asyncauth-tests",
        "scope": "repository:peers/app:pull repository:peers/other:pull",
    }
    async with httpx.AsyncClient() as client:
        without = await client.post(token_issuer.realm, data=form)
        token_issuer.policy = dataclasses.replace(token_issuer.policy, issue_refresh_tokens=True)
        with_refresh = await client.post(token_issuer.realm, data=form)
        refreshed = await client.post(
            token_issuer.realm,
            data=refresh_form(
                token_issuer, with_refresh.json()["refresh_token"], "repository:peers/app:pull"
            ),
        )

    assert without.status_code == 200
    assert "refresh_token" not in without.json()
    assert with_refresh.status_code == 200
    assert "refresh_token" in with_refresh.json()
    assert refreshed.status_code == 200
    assert token_issuer.count(grant="refresh_token", user=user, status=200) == 1
    # A space-separated scope parameter counts as two scopes, as oauth.md specifies.
    assert token_issuer.scope_counts()["repository:peers/other:pull"] == 2


# -- anonymous access ------------------------------------------------------------------------------


async def test_anonymous_access_follows_the_policy(
    token_registry: RegistryServer,
    token_issuer: TokenIssuer,
    token_registry_image: PushedImage,
) -> None:
    scope = "repository:peers/app:pull"
    async with httpx.AsyncClient(base_url=token_registry.url) as client:
        private = await fetch_token(client, token_issuer, scope)
        denied = await client.get(
            token_registry_image.manifest_path, headers={**ACCEPT, **bearer(private)}
        )
        token_issuer.policy = dataclasses.replace(token_issuer.policy, anonymous_pull=True)
        public = await fetch_token(client, token_issuer, scope)
        allowed = await client.get(
            token_registry_image.manifest_path, headers={**ACCEPT, **bearer(public)}
        )
        token_issuer.policy = dataclasses.replace(token_issuer.policy, reject_anonymous=True)
        rejected = await client.get(token_issuer.realm, params=token_params(token_issuer, scope))

    assert access_of(token_issuer, private) == []
    assert denied.status_code == 401
    assert challenge(denied)[1]["error"] == "insufficient_scope"
    assert allowed.status_code == 200
    assert rejected.status_code == 401
    assert token_issuer.count(grant="anonymous") == 3


# -- strictness and counting -----------------------------------------------------------------------


BAD_REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "GET without service": ("GET", {"params": {"scope": "repository:a:pull"}}),
    "GET for another service": ("GET", {"params": {"service": "elsewhere"}}),
    "GET with a malformed scope": (
        "GET",
        {"params": {"service": "asyncauth-test-registry", "scope": "repository:a"}},
    ),
    "POST without client_id": (
        "POST",
        {"data": {"grant_type": "refresh_token", "service": "asyncauth-test-registry"}},
    ),
    "POST with an unknown grant": (
        "POST",
        {
            "data": {
                "grant_type": "client_credentials",
                "service": "asyncauth-test-registry",
                "client_id": "x",
            }
        },
    ),
    "POST with a JSON body": ("POST", {"json": {"grant_type": "refresh_token"}}),
}


@pytest.mark.parametrize("request_spec", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_issuer_rejects_malformed_requests(
    token_issuer: TokenIssuer, request_spec: tuple[str, dict[str, Any]]
) -> None:
    assert token_issuer.service == "asyncauth-test-registry"
    method, options = request_spec
    response = httpx.request(method, token_issuer.realm, **options)
    assert response.status_code == 400
    assert token_issuer.count(status=400) == 1
    assert token_issuer.errors == []


def test_issuer_serves_only_its_realm_path(token_issuer: TokenIssuer) -> None:
    response = httpx.get(f"{token_issuer.url}/v2/token", params={"service": token_issuer.service})
    assert response.status_code == 404


async def test_issuer_counts_concurrent_requests_exactly(
    token_issuer: TokenIssuer, peer_accounts: PeerAccounts
) -> None:
    scopes = [f"repository:count/repo-{i}:pull" for i in range(4)]
    # Each answer takes 0.25 s: served one after another, 20 would take 5 s.
    token_issuer.policy = dataclasses.replace(token_issuer.policy, delay=0.25)
    statuses: list[int] = []

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=50)) as client:

        async def one(scope: str) -> None:
            response = await client.get(
                token_issuer.realm,
                params=token_params(token_issuer, scope),
                auth=peer_accounts.writer,
            )
            statuses.append(response.status_code)

        started = time.monotonic()
        async with anyio.create_task_group() as group:
            for i in range(20):
                group.start_soon(one, scopes[i % 4])
        elapsed = time.monotonic() - started
        token_issuer.policy = dataclasses.replace(token_issuer.policy, delay=0)
        for _ in range(3):
            await client.post(
                token_issuer.realm,
                data=refresh_form(token_issuer, peer_accounts.writer_identity_token, scopes[0]),
            )

    assert statuses == [200] * 20
    assert elapsed < 2.5  # the issuer served them concurrently
    assert token_issuer.total == 23
    assert (token_issuer.gets, token_issuer.posts) == (20, 3)
    assert token_issuer.scope_counts() == {
        scopes[0]: 8,
        scopes[1]: 5,
        scopes[2]: 5,
        scopes[3]: 5,
    }
    assert token_issuer.count(scope=scopes[0], method="GET") == 5
    token_issuer.reset()
    assert token_issuer.total == 0
    assert token_issuer.requests() == []


async def test_response_shape_is_configurable(
    token_issuer: TokenIssuer, peer_accounts: PeerAccounts
) -> None:
    async with httpx.AsyncClient() as client:
        full = await client.get(token_issuer.realm, params=token_params(token_issuer))
        token_issuer.policy = dataclasses.replace(
            token_issuer.policy,
            token_fields=("access_token",),
            include_expires_in=False,
            include_issued_at=False,
        )
        bare = await client.get(token_issuer.realm, params=token_params(token_issuer))
        token_issuer.policy = dataclasses.replace(
            token_issuer.policy, include_expires_in=True, token_lifetime=5, expires_in=3600
        )
        lying = await client.get(token_issuer.realm, params=token_params(token_issuer))

    assert set(full.json()) == {"token", "access_token", "expires_in", "issued_at", "scope"}
    assert full.json()["expires_in"] == 300
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", full.json()["issued_at"])
    assert set(bare.json()) == {"access_token", "scope"}
    assert lying.json()["expires_in"] == 3600
    claims = token_issuer.decode(lying.json()["access_token"])
    assert claims["exp"] - claims["iat"] == 5


# -- htpasswd mode ---------------------------------------------------------------------------------


async def test_htpasswd_registry_accepts_right_and_rejects_wrong_passwords(
    htpasswd_registry: RegistryServer,
    htpasswd_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    user = peer_accounts.writer[0]
    path = htpasswd_registry_image.manifest_path
    async with httpx.AsyncClient(base_url=htpasswd_registry.url, headers=ACCEPT) as client:
        anonymous = await client.get(path)
        wrong = await client.get(path, auth=(user, "not-the-password"))
        unknown = await client.get(path, auth=("mallory", "whatever"))
        writer = await client.get(path, auth=peer_accounts.writer)
        reader = await client.get(path, auth=peer_accounts.reader)

    assert anonymous.status_code == 401
    assert challenge(anonymous) == ("Basic", {"realm": "asyncauth-test-basic"})
    assert wrong.status_code == 401
    assert unknown.status_code == 401
    assert writer.status_code == 200
    assert writer.headers["Docker-Content-Digest"] == htpasswd_registry_image.digest
    assert reader.status_code == 200


def test_htpasswd_file_from_apache2_utils_works_too(tmp_path: Path, oci_image: OCIImage) -> None:
    users = {"carol": "carol-password"}
    with RegistryServer(tmp_path, auth=Htpasswd(users, tool="htpasswd")) as registry:
        assert registry.htpasswd_path.read_text().startswith("carol:$2y$")
        pushed = skopeo_push(
            oci_image, registry.host, "carol/app", creds=("carol", "carol-password")
        )
        ok = httpx.get(
            f"{registry.url}{pushed.manifest_path}",
            headers=ACCEPT,
            auth=("carol", "carol-password"),
        )
        bad = httpx.get(
            f"{registry.url}{pushed.manifest_path}", headers=ACCEPT, auth=("carol", "nope")
        )
    assert ok.status_code == 200
    assert bad.status_code == 401


def test_rs256_issuer_is_trusted_too(tmp_path: Path, oci_image: OCIImage) -> None:
    with (
        TokenIssuer(tmp_path / "issuer", algorithm="RS256") as issuer,
        RegistryServer(tmp_path / "registry", auth=issuer.registry_auth()) as registry,
    ):
        token = issuer.mint("ci", [Scope.repository("rsa/app", "pull", "push")])
        assert jwt.get_unverified_header(token)["alg"] == "RS256"
        pushed = skopeo_push(oci_image, registry.host, "rsa/app", registry_token=token)
        response = httpx.get(
            f"{registry.url}{pushed.manifest_path}", headers={**ACCEPT, **bearer(token)}
        )
    assert response.status_code == 200


# -- seeding ---------------------------------------------------------------------------------------


def test_seeded_repositories_hold_the_image(
    token_registry: RegistryServer,
    token_issuer: TokenIssuer,
    seeded_repositories: list[PushedImage],
    oci_image: OCIImage,
) -> None:
    assert len(seeded_repositories) == SEEDED_REPOSITORY_COUNT
    token = token_issuer.mint(
        "reader", [Scope.repository(p.repository) for p in seeded_repositories]
    )
    with httpx.Client(base_url=token_registry.url, headers={**ACCEPT, **bearer(token)}) as client:
        digests = {
            client.get(p.manifest_path).headers.get("Docker-Content-Digest")
            for p in seeded_repositories
        }
    assert digests == {oci_image.manifest_digest}
    assert token_issuer.total == 0


def test_bulk_seeding_an_open_registry_with_mounts(
    open_registry: RegistryServer, open_registry_image: PushedImage, tmp_path: Path
) -> None:
    image = build_oci_layout(tmp_path / "layout", tag="v2", payload=b"bulk\n")
    names = [f"bulk/repo-{i:03d}" for i in range(100)]
    started = time.monotonic()
    pushed = seed_repositories(open_registry.url, image, names, mount=True)
    elapsed = time.monotonic() - started
    catalog = httpx.get(f"{open_registry.url}/v2/_catalog", params={"n": 1000}).json()
    assert [p.repository for p in pushed] == names
    assert set(names) | {open_registry_image.repository} <= set(catalog["repositories"])
    assert image.manifest_digest != open_registry_image.digest
    assert elapsed < 30


def test_oci_layout_is_deterministic(tmp_path: Path) -> None:
    first = build_oci_layout(tmp_path / "a")
    again = build_oci_layout(tmp_path / "b")
    other = build_oci_layout(tmp_path / "c", payload="other\n")
    assert first.manifest_digest == again.manifest_digest
    assert first.manifest_digest != other.manifest_digest
    assert (tmp_path / "a" / "oci-layout").is_file()
    assert (tmp_path / "a" / "blobs" / "sha256" / first.manifest_digest[7:]).is_file()


# -- process lifecycle and failures ----------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_registry_process_is_gone_after_an_error_in_the_block(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def fail_while_running() -> None:
        with RegistryServer(tmp_path) as registry:
            seen.update(pid=registry.pid, url=registry.url, alive=registry.running)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_while_running()
    assert seen["alive"] is True
    assert not _alive(seen["pid"])
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{seen['url']}/v2/", timeout=2)


def test_startup_failure_shows_the_registry_log(tmp_path: Path) -> None:
    bundle = tmp_path / "not-a-certificate.pem"
    bundle.write_text("not a certificate\n")
    auth = TokenAuth("http://127.0.0.1:9/token", "svc", "iss", bundle)
    with pytest.raises(PeerError, match="exited") as info:
        RegistryServer(tmp_path / "registry", auth=auth).start()
    assert "token signing root certificate" in str(info.value)


def test_missing_tools_name_their_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, oci_image: OCIImage
) -> None:
    registry_binary = require_tool("docker-registry")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PeerUnavailableError, match=r"Debian package 'docker-registry'"):
        RegistryServer(tmp_path).start()
    with pytest.raises(PeerUnavailableError, match=r"docker-registry-not-installed does not exist"):
        RegistryServer(tmp_path, binary=str(tmp_path / "docker-registry-not-installed")).start()
    with pytest.raises(PeerUnavailableError, match=r"Debian package 'skopeo'"):
        skopeo_push(oci_image, "127.0.0.1:1", "x")
    with pytest.raises(PeerUnavailableError, match=r"Debian package 'apache2-utils'"):
        RegistryServer(
            tmp_path, binary=registry_binary, auth=Htpasswd({"a": "b"}, tool="htpasswd")
        ).start()
