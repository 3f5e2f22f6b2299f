"""WWW-Authenticate parsing: real registry headers, RFC 9110 corner cases, fuzzing, secrecy."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncauth import AsyncAuthError
from asyncauth._registry.challenge import (
    Challenge,
    ChallengeError,
    parse_challenges,
    quote,
    select_challenge,
)
from asyncauth._registry.scope import Scope, ScopeSet

from ._assertions import assert_hidden
from ._budget import per_example_budget

# Header values as registries send them (collected from public bug reports and client test
# suites; account numbers and repository names are theirs or placeholders).
REAL_HEADERS: dict[str, tuple[str, str, dict[str, str]]] = {
    "docker hub manifest": (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull"',
        "bearer",
        {
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:library/nginx:pull",
        },
    ),
    "docker hub catalog": (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="registry:catalog:*"',
        "bearer",
        {
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "registry:catalog:*",
        },
    ),
    "docker hub, as a proxy re-spaced it": (
        'Bearer   realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/confluentinc/cp-kafka-rest:pull"',
        "bearer",
        {
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:library/confluentinc/cp-kafka-rest:pull",
        },
    ),
    "ghcr": (
        'Bearer realm="https://ghcr.io/token",service="ghcr.io",'
        'scope="repository:stefanprodan/charts/podinfo:pull"',
        "bearer",
        {
            "realm": "https://ghcr.io/token",
            "service": "ghcr.io",
            "scope": "repository:stefanprodan/charts/podinfo:pull",
        },
    ),
    "quay": (
        'Bearer realm="https://quay.io/v2/auth",service="quay.io"',
        "bearer",
        {"realm": "https://quay.io/v2/auth", "service": "quay.io"},
    ),
    "gcr (no scope)": (
        'Bearer realm="https://gcr.io/v2/token",service="gcr.io"',
        "bearer",
        {"realm": "https://gcr.io/v2/token", "service": "gcr.io"},
    ),
    "artifact registry": (
        'Bearer realm="https://us-central1-docker.pkg.dev/v2/token",'
        'service="us-central1-docker.pkg.dev",scope="repository:my-project/my-repo/my-image:pull"',
        "bearer",
        {
            "realm": "https://us-central1-docker.pkg.dev/v2/token",
            "service": "us-central1-docker.pkg.dev",
            "scope": "repository:my-project/my-repo/my-image:pull",
        },
    ),
    "acr with error": (
        'Bearer realm="https://myregistry.azurecr.io/oauth2/token",service="myregistry.azurecr.io",'
        'scope="repository:library/hello-world:metadata_read",error="invalid_token"',
        "bearer",
        {
            "realm": "https://myregistry.azurecr.io/oauth2/token",
            "service": "myregistry.azurecr.io",
            "scope": "repository:library/hello-world:metadata_read",
            "error": "invalid_token",
        },
    ),
    "harbor": (
        'Bearer realm="https://harbor.example.com/service/token",service="harbor-registry"',
        "bearer",
        {"realm": "https://harbor.example.com/service/token", "service": "harbor-registry"},
    ),
    "ecr (basic)": (
        'Basic realm="https://123456789012.dkr.ecr.eu-central-1.amazonaws.com/",'
        'service="ecr.amazonaws.com"',
        "basic",
        {
            "realm": "https://123456789012.dkr.ecr.eu-central-1.amazonaws.com/",
            "service": "ecr.amazonaws.com",
        },
    ),
    "artifactory (basic)": (
        'Basic realm="Artifactory Realm"',
        "basic",
        {"realm": "Artifactory Realm"},
    ),
    "oracle ocir (empty scope)": (
        'Bearer realm="https://uk-london-1.ocir.io/12345678/docker/token",'
        'service="uk-london-1.ocir.io",scope=""',
        "bearer",
        {
            "realm": "https://uk-london-1.ocir.io/12345678/docker/token",
            "service": "uk-london-1.ocir.io",
            "scope": "",
        },
    ),
    "distribution, mount, insufficient scope": (
        'Bearer realm="http://127.0.0.1:5001/token",service="test-registry",'
        'scope="repository:team/app:push,pull repository:base/img:pull",error="insufficient_scope"',
        "bearer",
        {
            "realm": "http://127.0.0.1:5001/token",
            "service": "test-registry",
            "scope": "repository:team/app:push,pull repository:base/img:pull",
            "error": "insufficient_scope",
        },
    ),
}


@pytest.mark.parametrize("label", sorted(REAL_HEADERS))
def test_real_registry_headers(label: str) -> None:
    header, scheme, params = REAL_HEADERS[label]
    (challenge,) = parse_challenges([header])
    assert challenge.scheme == scheme
    assert dict(challenge.params) == params
    assert challenge.token68 is None
    assert challenge.realm == params["realm"]
    assert challenge.service == params.get("service")
    assert challenge.scope == params.get("scope")
    assert challenge.error == params.get("error")
    assert select_challenge([challenge]) == challenge
    assert parse_challenges(challenge.to_header()) == (challenge,)


def test_bearer_scopes_parsed() -> None:
    header = REAL_HEADERS["distribution, mount, insufficient scope"][0]
    (challenge,) = parse_challenges(header)
    assert challenge.scopes == ScopeSet.of(
        "repository:team/app:pull,push", "repository:base/img:pull"
    )
    (acr,) = parse_challenges(REAL_HEADERS["acr with error"][0])
    assert acr.scopes == ScopeSet.of(Scope.repository("library/hello-world", "metadata_read"))


@pytest.mark.parametrize("label", ["quay", "gcr (no scope)", "oracle ocir (empty scope)"])
def test_missing_or_empty_scope_is_the_empty_set(label: str) -> None:
    (challenge,) = parse_challenges(REAL_HEADERS[label][0])
    assert challenge.scopes == ScopeSet()
    assert not challenge.scopes


def test_unparseable_scope_param_is_a_challenge_error() -> None:
    (challenge,) = parse_challenges('Bearer realm="https://r/t",scope="files.write files.read"')
    with pytest.raises(ChallengeError, match="WWW-Authenticate: the scope parameter"):
        _ = challenge.scopes


def test_several_challenges_in_one_value() -> None:
    challenges = parse_challenges(
        'Basic realm="quay.io", Bearer realm="https://quay.io/v2/auth",service="quay.io",'
        'scope="repository:a/b:pull"'
    )
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert challenges[0].params == {"realm": "quay.io"}
    assert challenges[1].service == "quay.io"
    assert select_challenge(challenges) == challenges[1]


def test_several_header_values() -> None:
    challenges = parse_challenges(
        [
            'Basic realm="registry"',
            'Bearer realm="https://auth.example/token", Negotiate',
            "",
            "Basic Zm9vOmJhcg==",
        ]
    )
    assert [c.scheme for c in challenges] == ["basic", "bearer", "negotiate", "basic"]
    assert challenges[3].token68 == "Zm9vOmJhcg=="
    assert challenges[2] == Challenge("negotiate")


def test_a_single_string_is_one_header_value() -> None:
    assert parse_challenges('Basic realm="x"') == parse_challenges(['Basic realm="x"'])


@pytest.mark.parametrize("value", ["", "   ", ",", " , ,\t, "])
def test_empty_values_have_no_challenges(value: str) -> None:
    assert parse_challenges([value]) == ()
    assert parse_challenges([]) == ()


def test_case_insensitive_scheme_and_names_values_keep_case() -> None:
    (challenge,) = parse_challenges('BEARER Realm="https://Auth.Example/Token" , SERVICE=Reg.IO')
    assert challenge.scheme == "bearer"
    assert challenge.is_bearer
    assert dict(challenge.params) == {"realm": "https://Auth.Example/Token", "service": "Reg.IO"}


def test_optional_whitespace_and_empty_list_elements() -> None:
    (challenge,) = parse_challenges(
        [' ,, Bearer \t realm = "https://a/t" ,, , service=\t"s" , scope= "repository:x:pull",, ']
    )
    assert dict(challenge.params) == {
        "realm": "https://a/t",
        "service": "s",
        "scope": "repository:x:pull",
    }


def test_token_values_and_quoted_values_mix() -> None:
    (challenge,) = parse_challenges('Bearer realm="https://a/t",error=invalid_token,x=1.2_3')
    assert challenge.error == "invalid_token"
    assert challenge.params["x"] == "1.2_3"


def test_quoted_string_escapes() -> None:
    (challenge,) = parse_challenges(r'Basic realm="a\"b\\c\d", x="", y="tab	and space ok"')
    assert challenge.realm == 'a"b\\cd'
    assert challenge.params["x"] == ""
    assert challenge.params["y"] == "tab\tand space ok"


def test_quoted_strings_hide_commas_and_equals() -> None:
    (challenge,) = parse_challenges('Bearer realm="https://a/t?x=1,y=2", service="a, Basic b"')
    assert challenge.realm == "https://a/t?x=1,y=2"
    assert challenge.service == "a, Basic b"


def test_obs_text_in_quoted_strings() -> None:
    (challenge,) = parse_challenges(['Basic realm="caf\xe9 \u2603"'])
    assert challenge.realm == "caf\xe9 \u2603"


@pytest.mark.parametrize(
    ("value", "token68"),
    [
        ("Basic abc==", "abc=="),
        ("Basic abc", "abc"),
        ("Basic a-._~+/Z9", "a-._~+/Z9"),
        ("Basic abc=  ", "abc="),
        ("Bearer realm=", "realm="),  # a token68 by the grammar, not an empty parameter
        ("Bearer realm= ,", "realm="),
    ],
)
def test_token68(value: str, token68: str) -> None:
    (challenge,) = parse_challenges(value)
    assert challenge.token68 == token68
    assert challenge.params == {}


def test_token68_followed_by_another_challenge() -> None:
    basic, bearer = parse_challenges('Basic abc==, Bearer realm="https://r/t"')
    assert basic.token68 == "abc=="
    assert bearer.realm == "https://r/t"


def test_scheme_alone() -> None:
    assert parse_challenges("Negotiate") == (Challenge("negotiate"),)
    assert parse_challenges("Negotiate, Basic") == (Challenge("negotiate"), Challenge("basic"))


MALFORMED = [
    'Bearer realm="https://a/t',  # unterminated
    'Bearer realm="a\\',  # escape at the end
    "Bearer =x",
    'Bearer realm="a" service="b"',  # missing comma
    'Bearer realm="a",realm="b"',  # repeated parameter
    'Bearer REALM="a", realm="b"',  # repeated, differently cased
    "Basic abc== def",
    "Basic abc==def",
    'Bearer realm="a\x01b"',  # control character
    "Bearer realm=https://a/t",  # unquoted value that is not a token
    'Bearer,realm="x"',
    "=",
    '"Bearer"',
    'Bearer"realm"',
    'Bearer realm="a"\r\n x="b"',
    "Bear\u00e9r realm=x",  # non-ASCII scheme
    "Bearer r\u00e9alm=x",
    "Basic abc==, =",
    'Bearer realm="x", , =y',
]


@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_headers_raise_challenge_error(value: str) -> None:
    with pytest.raises(ChallengeError) as caught:
        parse_challenges([value])
    assert isinstance(caught.value, AsyncAuthError)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith("WWW-Authenticate: ")


def test_error_names_the_given_header() -> None:
    with pytest.raises(ChallengeError, match=r"^Proxy-Authenticate: "):
        parse_challenges(['Basic realm="'], header="Proxy-Authenticate")


def test_non_text_values_raise_challenge_error() -> None:
    with pytest.raises(ChallengeError, match="not text"):
        parse_challenges([b"Basic realm=x"])  # type: ignore[list-item]


def test_error_shows_at_most_a_short_scheme() -> None:
    with pytest.raises(ChallengeError) as caught:
        parse_challenges(["A" * 500 + ' realm="'])
    assert "a" * 25 not in str(caught.value)
    assert len(str(caught.value)) < 200


SECRET68 = "c2VjcmV0LXBhc3N3b3JkLXRva2Vu"


@pytest.mark.parametrize(
    "value",
    [
        f"Basic {SECRET68} junk",
        f"Basic {SECRET68}, =",
        f'Basic {SECRET68}, Bearer realm="x',
        f"Basic {SECRET68}==x",
        f'Bearer realm="x", {SECRET68}=',
        f'Bearer {SECRET68}= "x',
        f"Bearer x={SECRET68} y",
    ],
)
def test_errors_never_echo_the_header_value(value: str) -> None:
    with pytest.raises(ChallengeError) as caught:
        parse_challenges([value])
    assert_hidden(str(caught.value), SECRET68, where="error message")
    assert_hidden(repr(caught.value), SECRET68, where="error repr")


def test_token68_is_hidden_from_repr_and_str() -> None:
    (challenge,) = parse_challenges(f"Basic {SECRET68}")
    assert challenge.token68 == SECRET68
    for text in (repr(challenge), str(challenge), f"{challenge}", repr([challenge])):
        assert_hidden(text, SECRET68)
    assert "****" in repr(challenge)
    assert str(challenge) == "Basic ****"
    assert challenge.to_header() == f"Basic {SECRET68}"  # the explicit escape hatch


def test_select_prefers_bearer_over_basic() -> None:
    basic = Challenge("basic", {"realm": "r"})
    bearer = Challenge("bearer", {"realm": "https://a/t"})
    assert select_challenge([basic, bearer]) is bearer
    assert select_challenge([bearer, basic]) is bearer
    assert select_challenge([basic]) is basic
    assert select_challenge([Challenge("negotiate"), Challenge("digest", {"realm": "x"})]) is None
    assert select_challenge([]) is None


def test_select_skips_a_bearer_without_realm() -> None:
    unusable = Challenge("bearer", {"service": "s"})
    basic = Challenge("basic")
    assert select_challenge([unusable, basic]) is basic
    assert select_challenge([unusable]) is None


def test_challenge_value_semantics() -> None:
    one = Challenge("Bearer", {"Realm": "https://a/t", "service": "s"})
    two = Challenge("bearer", {"service": "s", "realm": "https://a/t"})
    assert one == two
    assert hash(one) == hash(two)
    assert one.scheme == "bearer"
    assert dict(one.params) == {"realm": "https://a/t", "service": "s"}
    assert {one, two} == {one}
    with pytest.raises(TypeError):
        one.params["realm"] = "https://evil/t"  # type: ignore[index]


def test_challenges_copy_and_pickle() -> None:
    (challenge,) = parse_challenges('Bearer realm="https://a/t",service="s"')
    assert copy.copy(challenge) == challenge
    assert copy.deepcopy(challenge) == challenge
    assert pickle.loads(pickle.dumps(challenge)) == challenge  # noqa: S301 (our own bytes)
    assert dataclasses.replace(challenge, scheme="basic").params == challenge.params


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("bad scheme",), {}),
        (("",), {}),
        (("bearer", {"bad name": "x"}), {}),
        (("bearer", {"realm": "a\nb"}), {}),
        (("bearer", {"realm": "a", "REALM": "b"}), {}),
        (("basic",), {"token68": "not token68"}),
        (("basic", {"realm": "x"}), {"token68": "abc"}),
    ],
)
def test_challenge_constructor_validates(args: tuple[object, ...], kwargs: dict[str, str]) -> None:
    with pytest.raises(ChallengeError):
        Challenge(*args, **kwargs)  # type: ignore[arg-type]


def test_quote() -> None:
    assert quote('a"b\\c') == r'"a\"b\\c"'
    assert quote("") == '""'
    with pytest.raises(ValueError, match="control"):
        quote("a\nb")


# -- properties -------------------------------------------------------------------------------

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(alphabet=TCHARS, min_size=1, max_size=12)
quotable = st.text(
    alphabet=st.characters(codec="utf-8", blacklist_characters="\x7f").filter(
        lambda c: c == "\t" or ord(c) >= 0x20
    ),
    max_size=30,
)
token68s = st.from_regex(r"[A-Za-z0-9\-._~+/]{1,20}={0,3}", fullmatch=True)


@st.composite
def challenges(draw: st.DrawFn) -> Challenge:
    scheme = draw(tokens)
    if draw(st.booleans()):
        return Challenge(scheme, token68=draw(token68s))
    names = draw(st.lists(tokens, max_size=5, unique_by=str.lower))
    return Challenge(scheme, {name: draw(quotable) for name in names})


ows = st.sampled_from(["", " ", "\t", "  \t"])


@settings(max_examples=300)
@given(st.lists(challenges(), max_size=5), st.data())
@per_example_budget()
def test_formatting_then_parsing_round_trips(items: list[Challenge], data: st.DataObject) -> None:
    parts = []
    for item in items:
        parts.append(data.draw(ows) + item.to_header() + data.draw(ows))
        parts.extend([""] * data.draw(st.integers(0, 2)))  # empty list elements
    header = ",".join(parts)
    assert parse_challenges([header]) == tuple(items)
    assert parse_challenges([c.to_header() for c in items]) == tuple(items)


@given(quotable)
@per_example_budget()
def test_quoted_string_escaping_round_trips(value: str) -> None:
    (challenge,) = parse_challenges([f"X p={quote(value)}"])
    assert challenge.params == {"p": value}


@settings(max_examples=500)
@given(st.lists(st.text(max_size=60), max_size=3))
@per_example_budget()
def test_any_text_gives_challenges_or_a_challenge_error(values: list[str]) -> None:
    try:
        result = parse_challenges(values)
    except ChallengeError as exc:
        assert str(exc).startswith("WWW-Authenticate: ")
    else:
        assert all(isinstance(c, Challenge) for c in result)


header_alphabet = st.sampled_from([*'Bearer basic realm="\\,= \t\x01abc=/+', "Basic "])


@settings(max_examples=500)
@given(st.lists(header_alphabet, max_size=40).map("".join))
@per_example_budget()
def test_near_miss_text_gives_challenges_or_a_challenge_error(value: str) -> None:
    try:
        result = parse_challenges([value])
    except ChallengeError:
        pass
    else:
        for challenge in result:
            assert parse_challenges([challenge.to_header()]) == (challenge,)
