"""IMGPKG_REGISTRY_* variables: every rule of the spec and of DESIGN.md's decisions."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncauth import AsyncAuthError, ConfigError, Credential, EnvResolver, Resource
from asyncauth._patterns import RegistryPattern
from asyncauth._sources.env import parse_environ, select

from ._assertions import assert_hidden
from ._budget import per_example_budget

PW = "pw-SECRET"


def creds(suffix: str, hostname: str, user: str = "u", password: str = PW) -> dict[str, str]:
    tail = f"_{suffix}" if suffix else ""
    return {
        f"IMGPKG_REGISTRY_HOSTNAME{tail}": hostname,
        f"IMGPKG_REGISTRY_USERNAME{tail}": user,
        f"IMGPKG_REGISTRY_PASSWORD{tail}": password,
    }


async def lookup(environ: dict[str, str], reference: str) -> Credential | None:
    return await EnvResolver(environ).resolve(Resource.parse(reference))


# --- host name forms -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hostname",
    [
        "gcr.io",
        "https://gcr.io",
        "http://gcr.io",
        "HTTPS://GCR.IO",
        "gcr.io/v2/",
        "gcr.io/v1/",
        "gcr.io/",
        "https://gcr.io/v2",
        " gcr.io\n",
    ],
)
async def test_hostname_spellings(hostname: str) -> None:
    found = await lookup(creds("0", hostname, "alice"), "gcr.io/proj/img")
    assert found == Credential(username="alice", password=PW)


@pytest.mark.parametrize(
    ("hostname", "reference"),
    [
        ("docker.io", "alpine"),
        ("docker.io", "index.docker.io/bob/app"),
        ("index.docker.io", "docker.io/bob/app"),
        ("registry-1.docker.io", "bob/app"),
        ("https://index.docker.io/v1/", "alpine"),
        ("docker.io/v2/", "alpine"),
    ],
)
async def test_docker_io_means_docker_hub(hostname: str, reference: str) -> None:
    assert await lookup(creds("", hostname), reference) is not None


async def test_unsuffixed_and_suffixed_sets() -> None:
    environ = {
        **creds("", "one.example.com", "u0"),
        **creds("1", "two.example.com", "u1"),
        **creds("abc", "three.example.com", "u2"),
        "IMGPKG_REGISTRY_HOSTNAME_XY9": "four.example.com",
        "IMGPKG_REGISTRY_IDENTITY_TOKEN_XY9": "idtok",
        "IMGPKG_REGISTRY_HOSTNAME_Z": "five.example.com",
        "IMGPKG_REGISTRY_REGISTRY_TOKEN_Z": "regtok",
    }
    assert (await lookup(environ, "one.example.com/a")) == Credential("u0", PW)
    assert (await lookup(environ, "two.example.com/a")) == Credential("u1", PW)
    assert (await lookup(environ, "three.example.com/a")) == Credential("u2", PW)
    four = await lookup(environ, "four.example.com/a")
    assert four == Credential(identity_token="idtok")
    assert four.kind == "identity_token"
    five = await lookup(environ, "five.example.com/a")
    assert five == Credential(registry_token="regtok")
    assert five.kind == "registry_token"
    assert await lookup(environ, "six.example.com/a") is None


async def test_identity_token_keeps_username() -> None:
    environ = {
        "IMGPKG_REGISTRY_HOSTNAME_0": "acr.azurecr.io",
        "IMGPKG_REGISTRY_USERNAME_0": "00000000-0000-0000-0000-000000000000",
        "IMGPKG_REGISTRY_IDENTITY_TOKEN_0": "refresh",
    }
    found = await lookup(environ, "acr.azurecr.io/app")
    assert found is not None
    assert found.username == "00000000-0000-0000-0000-000000000000"
    assert found.kind == "identity_token"


# --- globs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "reference", "matches"),
    [
        ("*.*.docker.io", "bar.foo.docker.io/a", True),
        ("*.*.docker.io", "foo.docker.io/a", False),  # label counts must be equal
        ("*.docker.io", "bar.foo.docker.io/a", False),  # '*' never crosses a dot
        ("*.docker.io", "foo.docker.io/a", True),
        ("*.gcr.io", "eu.gcr.io/p/i", True),
        ("*.gcr.io", "gcr.io/p/i", False),
        ("*-docker.pkg.dev", "europe-docker.pkg.dev/p/r/i", True),
        ("?cr.io", "gcr.io/a", True),
        ("?cr.io", "ghcr.io/a", False),
        ("[gq]cr.io", "gcr.io/a", True),
        ("[gq]cr.io", "qcr.io/a", True),
        ("[gq]cr.io", "xcr.io/a", False),
        ("[a-h]cr.io", "gcr.io/a", True),
        ("[^g]cr.io", "gcr.io/a", False),
        ("[!g]cr.io", "qcr.io/a", True),
        ("*.example.com:5000", "r.example.com:5000/a", True),
        ("*.example.com:5000", "r.example.com/a", False),  # ports must match
        ("*.example.com", "r.example.com:5000/a", False),
        ("*.example.com:5000", "r.example.com:5001/a", False),
        ("https://*.example.com/v2/", "r.example.com/a", True),
        ("*.example.com/team", "r.example.com/team/app", True),
        ("*.example.com/team", "r.example.com/other/app", False),
        ("*", "localhost/a", True),
        ("*", "gcr.io/a", False),
    ],
)
async def test_globs(glob: str, reference: str, matches: bool) -> None:
    assert (await lookup(creds("0", glob), reference) is not None) is matches


async def test_non_glob_beats_glob() -> None:
    """The spec's own example: *.docker.io vs foo.docker.io for foo.docker.io/image."""
    environ = {**creds("0", "*.docker.io", "glob"), **creds("1", "foo.docker.io", "exact")}
    found = await lookup(environ, "foo.docker.io/image")
    assert found is not None
    assert found.username == "exact"
    # ...and it does not matter in which order they were written.
    environ = {**creds("0", "foo.docker.io", "exact"), **creds("1", "*.docker.io", "glob")}
    found = await lookup(environ, "foo.docker.io/image")
    assert found is not None
    assert found.username == "exact"
    found = await lookup(environ, "bar.docker.io/image")
    assert found is not None
    assert found.username == "glob"


async def test_non_glob_host_beats_glob_with_longer_path() -> None:
    environ = {
        **creds("0", "*.example.com/team/app", "glob"),
        **creds("1", "r.example.com", "exact"),
    }
    found = await lookup(environ, "r.example.com/team/app")
    assert found is not None
    assert found.username == "exact"


# --- repository-qualified hosts ----------------------------------------------------------


async def test_repository_qualified_longest_path_wins() -> None:
    environ = {
        **creds("0", "gcr.io", "host"),
        **creds("1", "gcr.io/repo", "repo"),
        **creds("2", "gcr.io/repo/image", "image"),
    }
    for reference, user in [
        ("gcr.io/other", "host"),
        ("gcr.io/repo", "repo"),
        ("gcr.io/repo/other", "repo"),
        ("gcr.io/repo/image", "image"),
        ("gcr.io/repo/image/sub:tag", "image"),
        ("gcr.io", "host"),
    ]:
        found = await lookup(environ, reference)
        assert found is not None, reference
        assert found.username == user, reference


@pytest.mark.parametrize(
    ("key", "reference", "matches"),
    [
        ("host.io/team", "host.io/team/app", True),
        ("host.io/team", "host.io/team", True),
        ("host.io/team", "host.io/team-b/app", False),  # imgpkg's string prefix would match
        ("host.io/team", "host.io/teamster", False),
        ("host.io/team", "host.io", False),  # a bare registry is not inside a repository
        ("https://host.io/v2/team/app/", "host.io/team/app", True),
        ("docker.io/library/alpine", "alpine", True),
        ("docker.io/bob", "bob/app", True),
        ("docker.io/bob", "alpine", False),
    ],
)
async def test_repository_matches_whole_segments(key: str, reference: str, matches: bool) -> None:
    assert (await lookup(creds("0", key), reference) is not None) is matches


async def test_ports_must_be_equal() -> None:
    environ = creds("0", "localhost:5000")
    assert await lookup(environ, "localhost:5000/a") is not None
    assert await lookup(environ, "localhost/a") is None
    assert await lookup(environ, "localhost:5001/a") is None
    environ = creds("0", "localhost")
    assert await lookup(environ, "localhost:5000/a") is None
    environ = creds("0", "[::1]:5000")
    assert await lookup(environ, "[::1]:5000/a") is not None
    assert await lookup(environ, "[::1]:5001/a") is None


async def test_same_key_same_credentials_is_fine() -> None:
    environ = {**creds("0", "gcr.io"), **creds("1", "https://gcr.io/v2/")}
    assert await lookup(environ, "gcr.io/a") == Credential("u", PW)


async def test_empty_values_count_as_unset() -> None:
    environ = {**creds("0", "gcr.io"), "IMGPKG_REGISTRY_IDENTITY_TOKEN_0": ""}
    assert await lookup(environ, "gcr.io/a") == Credential("u", PW)
    environ = {"IMGPKG_REGISTRY_HOSTNAME_1": "", "IMGPKG_REGISTRY_PASSWORD_1": ""}
    assert parse_environ(environ) == ()


async def test_unrelated_variables_are_ignored() -> None:
    environ = {
        "IMGPKG_REGISTRY_AZURE_CR_CONFIG": "/etc/azure.json",
        "IMGPKG_USERNAME": "x",
        "imgpkg_registry_hostname": "lower-case is not ours",
        "PATH": "/usr/bin",
    }
    assert parse_environ(environ) == ()


def test_environ_defaults_to_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGPKG_REGISTRY_HOSTNAME_PROC", "proc.example.com")
    monkeypatch.setenv("IMGPKG_REGISTRY_REGISTRY_TOKEN_PROC", "t")
    resolver = EnvResolver()
    assert [e.suffix for e in resolver.entries] == ["PROC"]


def test_select_is_deterministic_among_equals() -> None:
    """Equally specific globs: the first in variable order (unsuffixed, then by suffix) wins."""
    entries = parse_environ({**creds("b", "?cr.io", "second"), **creds("a", "g*.io", "first")})
    chosen = select(entries, Resource.parse("gcr.io/x"))
    assert chosen is not None
    assert chosen.credential.username == "first"


def test_explain_names_the_variable() -> None:
    resolver = EnvResolver(creds("7", "gcr.io"))
    assert resolver.explain(Resource.parse("gcr.io/a")) == "IMGPKG_REGISTRY_HOSTNAME_7=gcr.io"
    assert resolver.explain(Resource.parse("quay.io/a")) is None


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"IMGPKG_REGISTRY_HOST": "gcr.io"}, ["IMGPKG_REGISTRY_HOST"]),
        ({"IMGPKG_REGISTRY_PASSWORD_": PW}, ["IMGPKG_REGISTRY_PASSWORD_"]),
        ({"IMGPKG_REGISTRY_PASSWORD_a-b": PW}, ["IMGPKG_REGISTRY_PASSWORD_a-b"]),
        ({"IMGPKG_REGISTRY_TOKEN_0": PW}, ["IMGPKG_REGISTRY_TOKEN_0"]),
        ({"IMGPKG_REGISTRY_USERNAME_0_1": PW}, ["IMGPKG_REGISTRY_USERNAME_0_1"]),
        (creds("0", "http://[::1]:namedport"), ["IMGPKG_REGISTRY_HOSTNAME_0", "namedport"]),
        (creds("0", "gcr.io:99999"), ["IMGPKG_REGISTRY_HOSTNAME_0", "port"]),
        (creds("0", "[abc.io"), ["IMGPKG_REGISTRY_HOSTNAME_0", "unclosed"]),
        (creds("0", "[]cr.io"), ["IMGPKG_REGISTRY_HOSTNAME_0", "empty character class"]),
        (creds("0", "[z-a]cr.io"), ["IMGPKG_REGISTRY_HOSTNAME_0", "bad range"]),
        (creds("0", "gcr.io/*"), ["IMGPKG_REGISTRY_HOSTNAME_0", "host only"]),
        (creds("0", "g\\cr.io"), ["IMGPKG_REGISTRY_HOSTNAME_0"]),
        (creds("0", "*..io"), ["IMGPKG_REGISTRY_HOSTNAME_0", "empty label"]),
        (creds("0", "gcr.io//x"), ["IMGPKG_REGISTRY_HOSTNAME_0", "empty segment"]),
        (creds("0", "gcr.io/Team"), ["IMGPKG_REGISTRY_HOSTNAME_0", "Team"]),
        (creds("0", "ftp://gcr.io"), ["IMGPKG_REGISTRY_HOSTNAME_0", "http"]),
        (creds("0", "gcr io"), ["IMGPKG_REGISTRY_HOSTNAME_0", "whitespace"]),
        (creds("0", "under_score.io"), ["IMGPKG_REGISTRY_HOSTNAME_0", "host name"]),
        (creds("0", "   "), ["IMGPKG_REGISTRY_HOSTNAME_0", "empty"]),
        (
            {"IMGPKG_REGISTRY_USERNAME_0": "u", "IMGPKG_REGISTRY_PASSWORD_0": PW},
            ["IMGPKG_REGISTRY_HOSTNAME_0", "IMGPKG_REGISTRY_PASSWORD_0"],
        ),
        ({"IMGPKG_REGISTRY_HOSTNAME_0": "gcr.io"}, ["IMGPKG_REGISTRY_HOSTNAME_0", "no credential"]),
        (
            {"IMGPKG_REGISTRY_HOSTNAME_0": "gcr.io", "IMGPKG_REGISTRY_USERNAME_0": "u"},
            ["IMGPKG_REGISTRY_PASSWORD_0 is not set"],
        ),
        (
            {"IMGPKG_REGISTRY_HOSTNAME": "gcr.io", "IMGPKG_REGISTRY_PASSWORD": PW},
            ["IMGPKG_REGISTRY_USERNAME is not set"],
        ),
        (
            {**creds("0", "gcr.io", "a"), **creds("1", "https://gcr.io/v2/", "b")},
            ["IMGPKG_REGISTRY_HOSTNAME_0", "IMGPKG_REGISTRY_HOSTNAME_1", "different credentials"],
        ),
        (
            {**creds("", "docker.io", "a"), **creds("x", "index.docker.io", "b")},
            ["IMGPKG_REGISTRY_HOSTNAME ", "IMGPKG_REGISTRY_HOSTNAME_x"],
        ),
    ],
)
def test_bad_input_names_the_variable(environ: dict[str, str], names: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        EnvResolver(environ)
    message = str(caught.value)
    for name in names:
        assert name in message
    assert_hidden(message, *(v for k, v in environ.items() if "PASSWORD" in k or "TOKEN" in k))


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"IMGPKG_REGISTRY_HOSTNAME_2": "gcr.io", "IMGPKG_REGISTRY_USERNAME_2": "u"},
            "IMGPKG_REGISTRY_PASSWORD_2 is not set (IMGPKG_REGISTRY_USERNAME_2 is set): "
            "a user name needs its password",
        ),
        (
            {
                "IMGPKG_REGISTRY_HOSTNAME_2": "gcr.io",
                "IMGPKG_REGISTRY_USERNAME_2": "u",
                "IMGPKG_REGISTRY_PASSWORD_2": "",
            },
            "IMGPKG_REGISTRY_PASSWORD_2 is empty (IMGPKG_REGISTRY_USERNAME_2 is set): "
            "a user name needs its password",
        ),
        (
            {"IMGPKG_REGISTRY_HOSTNAME": "gcr.io", "IMGPKG_REGISTRY_PASSWORD": PW},
            "IMGPKG_REGISTRY_USERNAME is not set (IMGPKG_REGISTRY_PASSWORD is set): "
            "a password needs its user name",
        ),
        (
            {"IMGPKG_REGISTRY_USERNAME_x": "u", "IMGPKG_REGISTRY_PASSWORD_x": PW},
            "IMGPKG_REGISTRY_HOSTNAME_x is not set (IMGPKG_REGISTRY_USERNAME_x, "
            "IMGPKG_REGISTRY_PASSWORD_x are set): which registry is it for?",
        ),
        (
            {"IMGPKG_REGISTRY_HOSTNAME_0": "", "IMGPKG_REGISTRY_REGISTRY_TOKEN_0": PW},
            "IMGPKG_REGISTRY_HOSTNAME_0 is empty (IMGPKG_REGISTRY_REGISTRY_TOKEN_0 is set): "
            "which registry is it for?",
        ),
    ],
)
def test_an_incomplete_set_names_the_missing_variable(
    environ: dict[str, str], message: str
) -> None:
    """USERNAME without PASSWORD (or the reverse) names the one variable to set, and says
    whether it is unset or exported empty: users should not be told to set both."""
    with pytest.raises(ConfigError) as caught:
        EnvResolver(environ)
    assert str(caught.value) == message


def test_secrets_never_in_errors_or_repr() -> None:
    secret = "s3cr3t-Value"
    environ = {
        **creds("0", "gcr.io", "u", secret),
        **creds("1", "gcr.io", "v", secret + "2"),
    }
    with pytest.raises(ConfigError) as caught:
        EnvResolver(environ)
    assert_hidden(str(caught.value), secret, where="ConfigError")
    resolver = EnvResolver(creds("0", "gcr.io", "u", secret))
    assert_hidden(repr(resolver), secret, where="repr(EnvResolver)")
    assert_hidden(repr(resolver.entries), secret, where="repr(entries)")


# --- property tests ----------------------------------------------------------------------

_host_alphabet = st.sampled_from(
    [*list("ab1-.*?[]^!:/"), "https://", "http://", "v2", "[::1]", "docker.io", " ", "\\", "ä"]
)


@given(st.text(max_size=40) | st.lists(_host_alphabet, max_size=16).map("".join))
@per_example_budget()
def test_any_hostname_parses_or_raises_config_error(text: str) -> None:
    try:
        pattern = RegistryPattern.parse(text, what="IMGPKG_REGISTRY_HOSTNAME_P")
    except AsyncAuthError as exc:
        assert isinstance(exc, ConfigError)
        assert "IMGPKG_REGISTRY_HOSTNAME_P" in str(exc)
    else:
        # A parsed pattern is usable: matching never raises, and its canonical form reparses
        # to the same key.
        pattern.matches(Resource.parse("gcr.io/a/b"))
        assert RegistryPattern.parse(str(pattern), what="x").key == pattern.key


@given(
    st.dictionaries(
        st.sampled_from(
            [
                f"IMGPKG_REGISTRY_{field}{suffix}"
                for field in (
                    "HOSTNAME",
                    "USERNAME",
                    "PASSWORD",
                    "IDENTITY_TOKEN",
                    "REGISTRY_TOKEN",
                    "X",
                )
                for suffix in ("", "_0", "_a", "_")
            ]
        ),
        st.sampled_from(["", "gcr.io", "*.io", "[", "u", "https://docker.io/v2/"]),
    )
)
@per_example_budget()
def test_any_environment_parses_or_raises_config_error(environ: dict[str, str]) -> None:
    try:
        entries = parse_environ(environ)
    except AsyncAuthError as exc:
        assert isinstance(exc, ConfigError)
        assert "IMGPKG_REGISTRY_" in str(exc)
    else:
        select(entries, Resource.parse("gcr.io/a"))


_STATE = st.sampled_from(["absent", "empty", "set"])
_FIELDS = ("HOSTNAME", "USERNAME", "PASSWORD", "IDENTITY_TOKEN", "REGISTRY_TOKEN")


@given(st.fixed_dictionaries({field: _STATE for field in _FIELDS}), st.sampled_from(["", "_7"]))
@per_example_budget()
def test_a_config_error_names_exactly_what_is_missing(states: dict[str, str], tail: str) -> None:
    """Every variable a message calls unset or empty is so, and a user name without a password
    (or the reverse) is reported by the missing variable's name, whatever else is set."""
    values = {"HOSTNAME": "gcr.io", "USERNAME": "u"}
    environ = {
        f"IMGPKG_REGISTRY_{field}{tail}": "" if state == "empty" else values.get(field, PW)
        for field, state in states.items()
        if state != "absent"
    }
    try:
        parse_environ(environ)
    except ConfigError as exc:
        message = str(exc)
    else:
        return
    for name, state in re.findall(r"(IMGPKG_REGISTRY_\w+) is (not set|empty)", message):
        assert environ.get(name, "") == "", (name, message)
        assert (name in environ) == (state == "empty"), (name, message)
    is_set = {field for field, state in states.items() if state == "set"}
    tokens = {"IDENTITY_TOKEN", "REGISTRY_TOKEN"} & is_set
    if "HOSTNAME" not in is_set:
        assert message.startswith(f"IMGPKG_REGISTRY_HOSTNAME{tail} is "), message
    elif "USERNAME" in is_set and "PASSWORD" not in is_set and not tokens:
        assert message.startswith(f"IMGPKG_REGISTRY_PASSWORD{tail} is "), message
    elif "PASSWORD" in is_set and "USERNAME" not in is_set:
        assert message.startswith(f"IMGPKG_REGISTRY_USERNAME{tail} is "), message
    assert_hidden(message, PW)
