"""Token responses, token requests and cache keys: parsing, expiry, flows, secrecy."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncauth import AsyncAuthError, Credential
from asyncauth._credentials import EXPIRY_MARGIN
from asyncauth._registry.challenge import Challenge, ChallengeError, parse_challenges
from asyncauth._registry.scope import Scope, ScopeSet
from asyncauth._registry.tokencache import token_cache_key
from asyncauth._registry.tokens import (
    MIN_EXPIRES_IN,
    OAUTH_FALLBACK_STATUSES,
    Token,
    TokenRequest,
    TokenResponseError,
    basic_authorization,
    build_token_request,
    parse_token_response,
)

from ._assertions import assert_hidden
from ._budget import per_example_budget
from ._secrets import secret

NOW = 1_750_000_000.0
ACCESS = "eyJhbGciOiJSUzI1NiJ9.access-SECRET.sig"
REFRESH = "refresh-SECRET-0123"
PASSWORD = secret("pw-SECRET")
IDENTITY = "identity-SECRET"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


# -- parsing ----------------------------------------------------------------------------------


def test_docker_hub_response() -> None:
    # Docker Hub's shape: both names, nanosecond issued_at.
    raw = (
        b'{"token":"' + ACCESS.encode() + b'","access_token":"' + ACCESS.encode() + b'",'
        b'"expires_in":300,"issued_at":"2025-06-15T15:06:40.857363835Z"}'
    )
    received = datetime(2025, 6, 15, 15, 6, 41, tzinfo=UTC).timestamp()
    token = parse_token_response(raw, received_at=received)
    assert token.access_token == ACCESS
    assert token.refresh_token is None
    assert token.issued_at == pytest.approx(received - 1 + 0.857363835)
    assert token.expires_at == pytest.approx(token.issued_at + 300)
    assert token.lifetime == pytest.approx(300)
    assert token.authorization == f"Bearer {ACCESS}"


def test_access_token_alone_and_refresh_token() -> None:
    token = parse_token_response(
        body(access_token=ACCESS, refresh_token=REFRESH, expires_in=3600, scope="x"),
        received_at=NOW,
    )
    assert (token.access_token, token.refresh_token) == (ACCESS, REFRESH)
    assert token.issued_at == NOW
    assert token.expires_at == NOW + 3600


def test_token_wins_over_access_token() -> None:
    token = parse_token_response(body(token="from-token", access_token="other"), received_at=NOW)
    assert token.access_token == "from-token"


@pytest.mark.parametrize("empty", ["", None])
def test_an_empty_token_counts_as_absent(empty: str | None) -> None:
    token = parse_token_response(body(token=empty, access_token=ACCESS), received_at=NOW)
    assert token.access_token == ACCESS


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [(None, 60), (0, 60), (10, 60), (59.5, 60), (60, 60), (61, 61), (300.5, 300.5), (86400, 86400)],
)
def test_expires_in_defaults_to_and_is_at_least_60(
    expires_in: float | None, lifetime: float
) -> None:
    fields: dict[str, object] = {"token": ACCESS}
    if expires_in is not None:
        fields["expires_in"] = expires_in
    token = parse_token_response(body(**fields), received_at=NOW)
    assert token.expires_at == NOW + lifetime


def test_accepts_str_bodies() -> None:
    assert parse_token_response(json.dumps({"token": ACCESS}), received_at=NOW).access_token == (
        ACCESS
    )


@pytest.mark.parametrize(
    "issued_at",
    [
        "2025-06-15T15:00:00Z",
        "2025-06-15t15:00:00z",
        "2025-06-15 15:00:00Z",
        "2025-06-15T17:00:00+02:00",
        "2025-06-15T12:30:00-02:30",
        "2025-06-15T15:00:00.000000000000Z",
    ],
)
def test_issued_at_formats(issued_at: str) -> None:
    epoch = datetime(2025, 6, 15, 15, 0, 0, tzinfo=UTC).timestamp()
    token = parse_token_response(
        body(token=ACCESS, expires_in=300, issued_at=issued_at), received_at=epoch + 5
    )
    assert token.issued_at == epoch
    assert token.expires_at == epoch + 300


def test_leap_second() -> None:
    token = parse_token_response(
        body(token=ACCESS, expires_in=300, issued_at="2016-12-31T23:59:60Z"),
        received_at=datetime(2017, 1, 1, 0, 0, 5, tzinfo=UTC).timestamp(),
    )
    assert token.issued_at == datetime(2017, 1, 1, tzinfo=UTC).timestamp()


def test_issued_at_in_the_future_cannot_extend_a_token() -> None:
    token = parse_token_response(
        body(token=ACCESS, expires_in=300, issued_at=iso(NOW + 3600)), received_at=NOW
    )
    assert token.issued_at == NOW
    assert token.expires_at == NOW + 300


def test_issued_at_in_the_recent_past_shortens_the_lifetime() -> None:
    token = parse_token_response(
        body(token=ACCESS, expires_in=300, issued_at=iso(NOW - 100)), received_at=NOW
    )
    assert token.expires_at == pytest.approx(NOW + 200)


def test_a_lagging_server_clock_still_leaves_60_seconds() -> None:
    # A token server whose clock is an hour behind must not make every token look expired.
    token = parse_token_response(
        body(token=ACCESS, expires_in=300, issued_at=iso(NOW - 3600)), received_at=NOW
    )
    assert token.expires_at == pytest.approx(NOW + MIN_EXPIRES_IN)
    assert token.remaining(NOW + 30) > 0


MALFORMED_BODIES: list[tuple[bytes, str]] = [
    (b"", "not valid JSON"),
    (b"<html>502 Bad Gateway</html>", "not valid JSON"),
    (b'{"token": "' + ACCESS.encode() + b'"', "not valid JSON"),
    (b"\xff\xfe\xfa", "not valid JSON"),
    (b"[" * 100_000, "not valid JSON"),
    (b'{"expires_in": ' + b"9" * 5000 + b"}", "not valid JSON"),
    (b"[]", "JSON list, not an object"),
    (b'"' + ACCESS.encode() + b'"', "JSON str, not an object"),
    (b"null", "JSON NoneType, not an object"),
    (b"{}", "neither 'token' nor 'access_token'"),
    (body(token=""), "neither"),
    (body(token=None, access_token=None), "neither"),
    (body(expires_in=60), "neither"),
    (body(token=12345), "token is a int"),
    (body(token=[ACCESS]), "token is a list"),
    (body(access_token={"v": ACCESS}), "access_token is a dict"),
    (body(token=ACCESS + " x"), "cannot be sent in a header"),
    (body(token=ACCESS + "\r\nX-Evil: 1"), "cannot be sent in a header"),
    (body(token=ACCESS + "\u00e9"), "cannot be sent in a header"),
    (body(token=ACCESS, expires_in=-1), "non-negative"),
    (body(token=ACCESS, expires_in="300"), "expires_in is a str"),
    (body(token=ACCESS, expires_in=True), "expires_in is a bool"),
    (body(token=ACCESS, expires_in=[300]), "expires_in is a list"),
    (b'{"token": "x", "expires_in": NaN}', "finite"),
    (b'{"token": "x", "expires_in": Infinity}', "finite"),
    (b'{"token": "x", "expires_in": 1e999}', "finite"),
    (b'{"token": "x", "expires_in": ' + b"9" * 400 + b"}", "out of range"),
    (body(token=ACCESS, issued_at=1718000000), "issued_at is a int"),
    (body(token=ACCESS, issued_at="yesterday"), "RFC 3339"),
    (body(token=ACCESS, issued_at="2025-06-15"), "RFC 3339"),
    (body(token=ACCESS, issued_at="2025-06-15T15:00:00"), "RFC 3339"),
    (body(token=ACCESS, issued_at="2025-W24-7T15:00:00Z"), "RFC 3339"),
    (body(token=ACCESS, issued_at="2025-02-30T15:00:00Z"), "valid date-time"),
    (body(token=ACCESS, issued_at="2025-06-15T25:00:00Z"), "valid date-time"),
    (body(token=ACCESS, issued_at="0000-01-01T00:00:00Z"), "valid date-time"),
    (body(token=ACCESS, issued_at="2025-06-15T15:00:00+24:00"), "valid date-time"),
    (body(token=ACCESS, issued_at="\uff12\uff10\uff12\uff15-06-15T15:00:00Z"), "RFC 3339"),
    (body(token=ACCESS, refresh_token=42), "refresh_token is a int"),
]


@pytest.mark.parametrize(("raw", "message"), MALFORMED_BODIES)
def test_malformed_bodies(raw: bytes, message: str) -> None:
    with pytest.raises(TokenResponseError) as caught:
        parse_token_response(raw, received_at=NOW)
    error = caught.value
    assert isinstance(error, AsyncAuthError)
    assert message in str(error)
    assert str(error).startswith("token response: ")
    assert_hidden(str(error), ACCESS, REFRESH, where="error message")
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None


def test_received_at_must_be_a_number() -> None:
    with pytest.raises(ValueError, match="received_at"):
        parse_token_response(body(token=ACCESS), received_at=float("nan"))


# -- Token ------------------------------------------------------------------------------------


def test_freshness_with_margin() -> None:
    token = Token(ACCESS, expires_at=NOW + 100, issued_at=NOW)
    assert token.remaining(NOW) > 0
    assert token.remaining(NOW + 100 - EXPIRY_MARGIN - 0.001) > 0
    assert token.remaining(NOW + 100 - EXPIRY_MARGIN) <= 0
    assert token.remaining(NOW + 99, margin=0) > 0
    assert token.remaining(NOW + 100, margin=0) <= 0
    assert token.remaining(NOW + 50, margin=60) <= 0
    assert token.remaining(NOW) == 100 - EXPIRY_MARGIN
    assert token.remaining(NOW + 200) < 0


@pytest.mark.parametrize("bad", ["", "a b", "a\nb", "caf\u00e9", 42])
def test_token_constructor_refuses_header_unsafe_values(bad: object) -> None:
    with pytest.raises(ValueError, match="visible ASCII") as caught:
        Token(bad, expires_at=NOW, issued_at=NOW)  # type: ignore[arg-type]
    assert_hidden(str(caught.value), "caf\u00e9", "a b")


def test_token_text_never_shows_secrets() -> None:
    token = Token(ACCESS, expires_at=NOW + 60, issued_at=NOW, refresh_token=REFRESH)
    for text in (repr(token), str(token), f"{token}", repr([token]), repr({"t": token})):
        assert_hidden(text, ACCESS, REFRESH)
    assert "refresh_token='****'" in repr(token)
    assert "refresh_token=None" in repr(Token(ACCESS, expires_at=NOW, issued_at=NOW))


# -- token requests ---------------------------------------------------------------------------

HUB = Challenge(
    "bearer",
    {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/alpine:pull",
    },
)
PULL_ALPINE = ScopeSet.of("repository:library/alpine:pull")
MOUNT = ScopeSet.of("repository:team/app:pull,push", "repository:base/img:pull")


def query(request: TokenRequest) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(request.url).query, keep_blank_values=True)


def decoded_basic(request: TokenRequest) -> str:
    value = dict(request.headers)["Authorization"]
    scheme, _, encoded = value.partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(encoded).decode()


def form(request: TokenRequest) -> dict[str, str]:
    assert request.body is not None
    pairs = parse_qsl(request.body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    assert len(pairs) == len(dict(pairs))
    return dict(pairs)


def test_anonymous_get() -> None:
    request = build_token_request(HUB, PULL_ALPINE, Credential.anonymous())
    assert request.method == "GET"
    assert request.headers == ()
    assert request.body is None
    assert request.url == (
        "https://auth.docker.io/token?service=registry.docker.io"
        "&scope=repository%3Alibrary%2Falpine%3Apull"
    )


def test_basic_get_with_repeated_scopes() -> None:
    request = build_token_request(HUB, MOUNT, Credential("bob", PASSWORD))
    assert request.method == "GET"
    assert query(request) == [
        ("service", "registry.docker.io"),
        ("scope", "repository:base/img:pull"),
        ("scope", "repository:team/app:pull,push"),
    ]
    assert decoded_basic(request) == f"bob:{PASSWORD}"


def test_basic_utf8() -> None:
    request = build_token_request(HUB, PULL_ALPINE, Credential("j\u00f6rg", "p\u00e4ss:w"))
    assert decoded_basic(request) == "j\u00f6rg:p\u00e4ss:w"
    assert basic_authorization("a", "b") == "Basic YTpi"


def test_identity_token_posts_an_oauth2_refresh() -> None:
    credential = Credential("bob", identity_token=IDENTITY)
    request = build_token_request(HUB, MOUNT, credential)
    assert request.method == "POST"
    assert request.url == "https://auth.docker.io/token"
    assert dict(request.headers) == {"Content-Type": "application/x-www-form-urlencoded"}
    assert form(request) == {
        "grant_type": "refresh_token",
        "service": "registry.docker.io",
        "client_id": "asyncauth",
        "refresh_token": IDENTITY,
        "scope": "repository:base/img:pull repository:team/app:pull,push",
    }
    assert form(build_token_request(HUB, MOUNT, credential, client_id="ci"))["client_id"] == "ci"


def test_identity_token_fallback_get_with_basic() -> None:
    request = build_token_request(
        HUB, PULL_ALPINE, Credential("bob", identity_token=IDENTITY), oauth_fallback=True
    )
    assert request.method == "GET"
    assert decoded_basic(request) == f"bob:{IDENTITY}"
    assert ("scope", "repository:library/alpine:pull") in query(request)
    acr = Credential("00000000-0000-0000-0000-000000000000", identity_token=IDENTITY)
    assert decoded_basic(build_token_request(HUB, PULL_ALPINE, acr, oauth_fallback=True)) == (
        f"00000000-0000-0000-0000-000000000000:{IDENTITY}"
    )
    with_password = Credential("bob", PASSWORD, identity_token=IDENTITY)
    assert decoded_basic(
        build_token_request(HUB, PULL_ALPINE, with_password, oauth_fallback=True)
    ) == (f"bob:{PASSWORD}")
    assert frozenset({400, 401, 404, 405}) == OAUTH_FALLBACK_STATUSES  # as containerd; no 403


def test_password_grant_only_when_asked() -> None:
    credential = Credential("bob", PASSWORD)
    assert build_token_request(HUB, PULL_ALPINE, credential).method == "GET"
    request = build_token_request(HUB, PULL_ALPINE, credential, password_grant=True)
    assert request.method == "POST"
    assert form(request) == {
        "grant_type": "password",
        "service": "registry.docker.io",
        "client_id": "asyncauth",
        "username": "bob",
        "password": PASSWORD,
        "access_type": "offline",
        "scope": "repository:library/alpine:pull",
    }
    fallback = build_token_request(
        HUB, PULL_ALPINE, credential, password_grant=True, oauth_fallback=True
    )
    assert fallback.method == "GET"


def test_registry_tokens_are_not_exchanged() -> None:
    with pytest.raises(ValueError, match="no exchange"):
        build_token_request(HUB, PULL_ALPINE, Credential(registry_token=ACCESS))


def test_no_service_and_no_scope() -> None:
    challenge = Challenge("bearer", {"realm": "https://gcr.io/v2/token", "service": ""})
    request = build_token_request(challenge, ScopeSet(), Credential.anonymous())
    assert request.url == "https://gcr.io/v2/token"
    post = build_token_request(challenge, ScopeSet(), Credential(identity_token=IDENTITY))
    assert set(form(post)) == {"grant_type", "client_id", "refresh_token"}


@pytest.mark.parametrize(
    ("realm", "url"),
    [
        (
            "https://a.example/token?x=1",
            "https://a.example/token?x=1&service=s&scope=registry%3Acatalog%3A%2A",
        ),
        (
            "https://a.example/token?",
            "https://a.example/token?service=s&scope=registry%3Acatalog%3A%2A",
        ),
        (
            "https://a.example/token#frag",
            "https://a.example/token?service=s&scope=registry%3Acatalog%3A%2A",
        ),
        (
            "HTTPS://a.example:8443/t",
            "HTTPS://a.example:8443/t?service=s&scope=registry%3Acatalog%3A%2A",
        ),
    ],
)
def test_realm_query_is_kept(realm: str, url: str) -> None:
    challenge = Challenge("bearer", {"realm": realm, "service": "s"})
    request = build_token_request(challenge, ScopeSet.of(Scope.catalog()), Credential())
    assert request.url == url


@pytest.mark.parametrize(
    ("challenge", "message"),
    [
        (Challenge("basic", {"realm": "https://a/t"}), "only a Bearer challenge"),
        (Challenge("bearer", {"service": "s"}), "has no realm"),
        (Challenge("bearer", {"realm": ""}), "has no realm"),
        (Challenge("bearer", {"realm": "/token"}), "absolute https URL"),
        (Challenge("bearer", {"realm": "ftp://a/token"}), "absolute https URL"),
        (Challenge("bearer", {"realm": "https:///token"}), "absolute https URL"),
        (Challenge("bearer", {"realm": "https://[::1/token"}), "not a valid URL"),
        (Challenge("bearer", {"realm": "https://a:99999/token"}), "not a valid URL"),
        (Challenge("bearer", {"realm": "https://a/to ken"}), "not a valid URL"),
        (Challenge("bearer", {"realm": "https://user:pw@a/token"}), "user name or password"),
        (Challenge("bearer", {"realm": "http://auth.example/token"}), "plain http"),
    ],
)
def test_unusable_realms(challenge: Challenge, message: str) -> None:
    with pytest.raises(ChallengeError, match=message) as caught:
        build_token_request(challenge, PULL_ALPINE, Credential("bob", PASSWORD))
    assert str(caught.value).startswith("WWW-Authenticate: ")
    assert_hidden(str(caught.value), PASSWORD, "pw@a")


def test_http_realm_when_allowed() -> None:
    (challenge,) = parse_challenges('Bearer realm="http://127.0.0.1:5001/token",service="reg"')
    request = build_token_request(
        challenge, PULL_ALPINE, Credential("bob", PASSWORD), allow_http=True
    )
    assert request.url.startswith("http://127.0.0.1:5001/token?service=reg&scope=")


def test_token_request_text_never_shows_secrets() -> None:
    for credential, kwargs in [
        (Credential("bob", PASSWORD), {}),
        (Credential("bob", PASSWORD), {"password_grant": True}),
        (Credential("bob", identity_token=IDENTITY), {}),
        (Credential("bob", identity_token=IDENTITY), {"oauth_fallback": True}),
    ]:
        request = build_token_request(HUB, MOUNT, credential, **kwargs)  # type: ignore[arg-type]
        for text in (repr(request), str(request), f"{request}"):
            assert_hidden(
                text, PASSWORD, IDENTITY, base64.b64encode(b"bob:" + PASSWORD.encode()).decode()
            )
        assert "token" in repr(request)


# -- cache keys -------------------------------------------------------------------------------


def test_cache_key() -> None:
    credential = Credential("bob", PASSWORD)
    one = token_cache_key(
        "Index.Docker.IO",
        "registry.docker.io",
        ScopeSet.of("repository:b:pull", "repository:a:push,pull"),
        credential,
    )
    two = token_cache_key(
        "index.docker.io",
        "registry.docker.io",
        ScopeSet.of("repository:a:pull,push", "repository:b:pull"),
        Credential("bob", PASSWORD),
    )
    assert one == two
    assert hash(one) == hash(two)
    assert {one: 1}[two] == 1
    assert one.credential == credential
    assert one.material() == two.material()
    assert_hidden(repr(one), PASSWORD)
    assert_hidden(repr(one), PASSWORD)
    others = [
        token_cache_key("ghcr.io", "registry.docker.io", one.scopes, credential),
        token_cache_key("index.docker.io", "other", one.scopes, credential),
        token_cache_key("index.docker.io", "registry.docker.io", PULL_ALPINE, credential),
        token_cache_key("index.docker.io", "registry.docker.io", one.scopes, Credential()),
        token_cache_key(
            "index.docker.io", "registry.docker.io", one.scopes, Credential("bob", "x")
        ),
    ]
    assert len({one, *others}) == 6
    assert token_cache_key("r", None, ScopeSet(), credential).service == ""


# -- properties -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
field_values = (
    json_values
    | st.from_regex(r"[\x21-\x7e]{1,30}", fullmatch=True)
    | st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat().replace("+00:00", "Z"))
    | st.floats(min_value=-1e6, max_value=1e9)
)
responses = st.fixed_dictionaries(
    {},
    optional={
        key: field_values
        for key in ("token", "access_token", "expires_in", "issued_at", "refresh_token")
    },
)


@settings(max_examples=500)
@given(responses, st.floats(min_value=0, max_value=4e9))
@per_example_budget()
def test_any_json_gives_a_token_or_a_token_response_error(
    fields: dict[str, object], received_at: float
) -> None:
    raw = json.dumps(fields).encode()
    try:
        token = parse_token_response(raw, received_at=received_at)
    except TokenResponseError as exc:
        for key in ("token", "access_token", "refresh_token"):
            value = fields.get(key)
            if isinstance(value, str) and len(value) >= 4:
                assert_hidden(str(exc), value, where="error message")
        return
    assert token.access_token in (fields.get("token"), fields.get("access_token"))
    assert token.expires_at >= received_at + MIN_EXPIRES_IN - 1e-6
    assert token.issued_at <= received_at
    assert token.lifetime >= MIN_EXPIRES_IN - 1e-6
    assert "access_token='****'" in repr(token)


@settings(max_examples=300)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@per_example_budget()
def test_any_bytes_give_a_token_or_a_token_response_error(raw: bytes) -> None:
    with contextlib.suppress(TokenResponseError):
        parse_token_response(raw, received_at=NOW)


secrets = st.from_regex(r"[\x21-\x7e]{0,30}", fullmatch=True).map(lambda s: "S3CR3T" + s)


@given(secrets, secrets, st.sampled_from([120, -1, "soon", None]))
@per_example_budget()
def test_secrets_never_show_in_text(access: str, refresh: str, expires_in: object) -> None:
    raw = body(token=access, refresh_token=refresh, expires_in=expires_in)
    try:
        token = parse_token_response(raw, received_at=NOW)
    except TokenResponseError as exc:
        assert_hidden(f"{exc} {exc!r} {exc.args}", access, refresh)
    else:
        assert_hidden(f"{token!r} {token} {[token]}", access, refresh)
