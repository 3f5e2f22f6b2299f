"""Docker config and credential helpers: every lookup rule, every bad input, real subprocesses.

The helpers here are small shell scripts written by the tests into a private ``bin`` directory
that is put first on the ``PATH`` the resolver hands its helpers (``environ=``). They prove the
protocol handling (answers, "not found", crashes, bad JSON) and the process handling (a slow
helper and the children it started are killed and reaped; 1,000 lookups start one helper).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncauth import (
    AsyncAuthError,
    Chain,
    ConfigError,
    Credential,
    Outcome,
    ResolverError,
    Resource,
)
from asyncauth._patterns import RegistryPattern
from asyncauth._redact import redact
from asyncauth._sources.docker.configfile import DockerConfig, key_pattern, parse_config
from asyncauth._sources.docker.discovery import config_candidates, find_config
from asyncauth._sources.docker.helperclient import HelperClient
from asyncauth._sources.docker.helperprotocol import HelperOutput, interpret_get, server_url_for
from asyncauth._sources.docker.loader import ConfigLoader
from asyncauth._sources.docker.lookup import lookup
from asyncauth._sources.docker.resolver import DockerConfigResolver

from ._assertions import assert_hidden
from ._budget import per_example_budget
from ._secrets import secret

SECRET = secret("Pa55-w0rd-SECRET-7Qx")
TOKEN = secret("eyJhbGciOiJFUzI1NiJ9.IDENTITY-Tok3n-9Zq")
BEARER = "REGISTRY-b3arer-Tok3n-4Kw"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def config(doc: Mapping[str, Any] | str, path: str = "/cfg/config.json") -> DockerConfig:
    return parse_config(doc if isinstance(doc, str) else json.dumps(doc), path=path)


def find(doc: Mapping[str, Any], reference: str, **kwargs: Any) -> Any:
    found = lookup(config(doc), Resource.parse(reference), **kwargs)
    if found is None:
        return None
    return found.helper if found.helper is not None else found.credential


def basic(user: str = "u", password: str = SECRET) -> dict[str, str]:
    return {"auth": b64(f"{user}:{password}")}


# --- key spellings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "reference"),
    [
        ("https://index.docker.io/v1/", "alpine"),
        ("https://index.docker.io/v1/", "docker.io/bob/app"),
        ("index.docker.io", "alpine"),
        ("docker.io", "bob/app"),
        ("registry-1.docker.io", "alpine"),
        ("https://registry-1.docker.io/v2/", "alpine"),
        ("http://localhost:5000", "localhost:5000/app"),
        ("localhost:5000", "localhost:5000/app"),
        ("quay.io/v2/", "quay.io/team/app"),
        ("https://quay.io/v1/", "quay.io/team/app"),
        ("HTTPS://QUAY.IO", "quay.io/team/app"),
        ("https://quay.io/other/path", "quay.io/team/app"),  # a URL names the whole registry
        ("quay.io/team", "quay.io/team/app"),
        ("quay.io/team/app", "quay.io/team/app:1.0"),
        ("[::1]:5000", "[::1]:5000/app"),
    ],
)
def test_auths_key_spellings_match(key: str, reference: str) -> None:
    assert find({"auths": {key: basic()}}, reference) == Credential("u", SECRET)


@pytest.mark.parametrize(
    ("key", "reference"),
    [
        ("quay.io/team", "quay.io/team-b/app"),  # whole path segments only
        ("quay.io/team", "quay.io/app"),
        ("quay.io/team/app", "quay.io/team"),
        ("localhost:5000", "localhost:5001/app"),
        ("localhost", "localhost:5000/app"),
        ("gcr.io", "us.gcr.io/p/app"),
        ("https://index.docker.io/v1/", "ghcr.io/o/app"),
    ],
)
def test_auths_key_spellings_do_not_leak(key: str, reference: str) -> None:
    assert find({"auths": {key: basic()}}, reference) is None


def test_most_specific_repository_key_wins() -> None:
    doc = {
        "auths": {
            "quay.io": basic("registry"),
            "quay.io/team/app": basic("app"),
            "quay.io/team": basic("team"),
        }
    }
    assert find(doc, "quay.io/team/app").username == "app"
    assert find(doc, "quay.io/team/other").username == "team"
    assert find(doc, "quay.io/solo/app").username == "registry"


def test_docker_spelling_wins_among_keys_for_the_same_registry() -> None:
    """docker/cli looks up ``https://index.docker.io/v1/`` exactly; other spellings that mean
    Docker Hub only count when it is absent, and then the first in the file wins."""
    doc = {
        "auths": {
            "docker.io": basic("alias"),
            "https://index.docker.io/v1/": basic("docker"),
            "https://index.docker.io/v1/access-token": {},
        }
    }
    assert find(doc, "alpine").username == "docker"
    doc = {"auths": {"https://ghcr.io": basic("first"), "ghcr.io": basic("exact")}}
    assert find(doc, "ghcr.io/o/a").username == "exact"
    doc = {"auths": {"docker.io": basic("first"), "registry-1.docker.io": basic("second")}}
    assert find(doc, "alpine").username == "first"


def test_server_url_handed_to_helpers() -> None:
    assert server_url_for(Resource.parse("alpine")) == "https://index.docker.io/v1/"
    assert server_url_for(Resource.parse("docker.io/bob/app")) == "https://index.docker.io/v1/"
    assert server_url_for(Resource.parse("localhost:5000/app")) == "localhost:5000"
    assert server_url_for(Resource.parse("ghcr.io/o/a")) == "ghcr.io"


# --- precedence --------------------------------------------------------------------------------


def test_cred_helpers_beat_creds_store_beat_auths() -> None:
    doc: dict[str, Any] = {
        "auths": {"ghcr.io": basic(), "quay.io": basic()},
        "credsStore": "store",
        "credHelpers": {"ghcr.io": "gh"},
    }
    assert find(doc, "ghcr.io/o/a") == "gh"
    assert find(doc, "quay.io/o/a") == "store"
    del doc["credsStore"]
    assert find(doc, "quay.io/o/a") == Credential("u", SECRET)
    assert find(doc, "ghcr.io/o/a") == "gh"


def test_cred_helpers_keys_are_normalised_and_may_be_scoped() -> None:
    doc = {"credHelpers": {"https://index.docker.io/v1/": "hub", "quay.io/team": "team"}}
    assert find(doc, "alpine") == "hub"
    assert find(doc, "quay.io/team/app") == "team"
    assert find(doc, "quay.io/other/app") is None


def test_empty_helper_names_are_no_helper() -> None:
    doc = {"credHelpers": {"ghcr.io": ""}, "credsStore": "", "auths": {"ghcr.io": basic()}}
    assert find(doc, "ghcr.io/o/a") == Credential("u", SECRET)


def test_excluded_helpers_count_as_absent() -> None:
    doc = {
        "credHelpers": {"ghcr.io": "asyncauth"},
        "credsStore": "asyncauth",
        "auths": {"ghcr.io": basic()},
    }
    assert find(doc, "ghcr.io/o/a") == "asyncauth"
    assert find(doc, "ghcr.io/o/a", exclude_helpers={"asyncauth"}) == Credential("u", SECRET)
    doc["credsStore"] = "pass"
    assert find(doc, "ghcr.io/o/a", exclude_helpers={"asyncauth"}) == "pass"


def test_lookup_describes_where_without_secrets() -> None:
    cfg = config({"credHelpers": {"gcr.io": "gcr"}, "auths": {"ghcr.io": basic()}})
    found = lookup(cfg, Resource.parse("gcr.io/p/a"))
    assert found is not None
    assert found.describe(cfg.path) == (
        'credHelpers["gcr.io"] -> docker-credential-gcr in /cfg/config.json'
    )
    found = lookup(cfg, Resource.parse("ghcr.io/o/a"))
    assert found is not None
    assert found.describe(cfg.path) == 'auths["ghcr.io"] in /cfg/config.json'


# --- entry fields ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (basic("u", SECRET), Credential("u", SECRET)),
        ({"auth": b64("u:pa:ss:word")}, Credential("u", "pa:ss:word")),
        ({"auth": b64("u:")}, Credential("u", None)),
        ({"auth": b64("u:pw\x00\x00")}, Credential("u", "pw")),
        ({"auth": b64("u:pw"), "username": "other", "password": "x"}, Credential("u", "pw")),
        ({"username": "u", "password": SECRET}, Credential("u", SECRET)),
        ({"identitytoken": TOKEN}, Credential(identity_token=TOKEN)),
        ({"auth": b64("u:pw"), "identitytoken": TOKEN}, Credential("u", "pw", TOKEN)),
        ({"registrytoken": BEARER}, Credential(registry_token=BEARER)),
        ({"Auth": b64("u:pw"), "IdentityToken": TOKEN}, Credential("u", "pw", TOKEN)),
        ({"auth": b64("u:pw")[:4] + "\n" + b64("u:pw")[4:]}, Credential("u", "pw")),
        ({}, None),
        (None, None),
        ({"auth": "", "username": "", "password": "", "email": "x@example.com"}, None),
        ({"auth": None, "identitytoken": None}, None),
        ({"serveraddress": "ghcr.io", "email": "me@example.com"}, None),
    ],
)
def test_entry_fields(entry: Any, expected: Credential | None) -> None:
    assert find({"auths": {"ghcr.io": entry}}, "ghcr.io/o/a") == expected


def test_empty_entry_is_no_credential_and_shadows_a_broader_key() -> None:
    doc = {"auths": {"quay.io": basic(), "quay.io/team": {}}}
    assert find(doc, "quay.io/team/app") is None
    assert find(doc, "quay.io/solo/app") == Credential("u", SECRET)


def test_http_headers_and_other_fields() -> None:
    cfg = config(
        {
            "auths": {},
            "HttpHeaders": {"User-Agent": "Docker-Client/18.09.6 (darwin)", "X-Meta": SECRET},
            "psFormat": "table",
            "currentContext": "default",
        }
    )
    assert dict(cfg.http_headers) == {
        "User-Agent": "Docker-Client/18.09.6 (darwin)",
        "X-Meta": SECRET,
    }
    assert_hidden(repr(cfg), SECRET, where="repr(DockerConfig)")
    assert "X-Meta" in repr(cfg)


def test_the_specs_example_file() -> None:
    """The example of imgpkg's documentation (with its trailing comma fixed: it is not JSON)."""
    text = """{
      "auths": {"https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNzd29yZA=="}},
      "HttpHeaders": {"User-Agent": "Docker-Client/18.09.6 (darwin)"}
    }"""
    assert find(json.loads(text), "alpine") == Credential("user", "password")


@pytest.mark.parametrize("text", ["", "  \n", "\ufeff", "{}", '{"auths": null}', "\ufeff{}"])
def test_empty_configs(text: str) -> None:
    cfg = config(text)
    assert lookup(cfg, Resource.parse("alpine")) is None


# --- bad input ---------------------------------------------------------------------------------


def config_and_lookup(text: str, reference: str = "ghcr.io/o/a") -> None:
    """Parse, then look up the registry the broken entry is for: where errors may surface."""
    lookup(config(text, path="/home/me/.docker/config.json"), Resource.parse(reference))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The whole file: every lookup depends on these.
        ("{", "not valid JSON"),
        ('{"auths": {}', "not valid JSON"),
        ("[]", "must hold a JSON object, not an array"),
        ('"x"', "must hold a JSON object"),
        ('{"auths": []}', "'auths' must be a JSON object, not an array"),
        ('{"auths": "ghcr.io"}', "'auths' must be a JSON object, not a string"),
        ('{"credHelpers": []}', "'credHelpers' must be a JSON object"),
        ('{"HttpHeaders": []}', "'HttpHeaders' must be a JSON object"),
        ('{"HttpHeaders": {"X": 1}}', 'HttpHeaders["X"] must be a string'),
        ('{"HttpHeaders": {"Bad Name": "x"}}', "not a valid HTTP header name"),
        ('{"HttpHeaders": {"X": "a\\r\\nInjected: 1"}}', "line break"),
        ("[" * 100_000, "not usable JSON"),
        ('{"auths": ' + "9" * 5000 + "}", "not usable JSON"),
        # The entry chosen for ghcr.io (credsStore is chosen for every registry).
        ('{"auths": {"ghcr.io": "x"}}', 'auths["ghcr.io"] must be a JSON object'),
        ('{"auths": {"ghcr.io": {"auth": 5}}}', 'auths["ghcr.io"].auth must be a string'),
        ('{"auths": {"ghcr.io": {"password": []}}}', 'auths["ghcr.io"].password must be a str'),
        ('{"auths": {"ghcr.io": {"auth": "%%%"}}}', 'auths["ghcr.io"].auth is not valid base64'),
        ('{"auths": {"ghcr.io": {"auth": "dXNlcg"}}}', "auth is not valid base64"),
        (f'{{"auths": {{"ghcr.io": {{"auth": "{b64("nocolon")}"}}}}}}', "no ':'"),
        (f'{{"auths": {{"ghcr.io": {{"auth": "{b64(":pw")}"}}}}}}', "empty username"),
        ('{"auths": {"ghcr.io": {"auth": "/w=="}}}', "does not decode to UTF-8"),
        ('{"credHelpers": {"ghcr.io": 1}}', 'credHelpers["ghcr.io"] must be a string'),
        ('{"credHelpers": {"ghcr.io": "../../tmp/x"}}', "is not a credential helper name"),
        ('{"credsStore": 1}', "credsStore must be a string"),
        ('{"credsStore": "/bin/sh"}', "is not a credential helper name"),
    ],
)
def test_bad_input_is_a_config_error_naming_file_and_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_and_lookup(text)
    message = str(caught.value)
    assert message.startswith("/home/me/.docker/config.json: ")
    assert expected in message


@pytest.mark.parametrize(
    "key", ["*.example.com", "not a host", "", "ftp://x.io", "quay.io/Team", "gh cr.io"]
)
def test_keys_that_name_no_registry_are_ignored_not_errors(key: str) -> None:
    """They were ConfigErrors for every lookup; issue 9 makes them match nothing instead."""
    doc = {"auths": {key: basic("bad"), "ghcr.io": basic()}, "credHelpers": {key: "gh"}}
    cfg = config(doc)
    assert find(doc, "ghcr.io/o/a") == Credential("u", SECRET)
    assert {(i.section, i.key) for i in cfg.ignored} == {("auths", key), ("credHelpers", key)}


def test_invalid_utf8_file() -> None:
    with pytest.raises(ConfigError, match="not UTF-8"):
        parse_config(b'{"auths": {"\xff": {}}}', path="/x.json")


def test_bad_input_messages_never_show_the_secret() -> None:
    cases = [
        {"auths": {"ghcr.io": {"auth": SECRET}}},  # not base64
        {"auths": {"ghcr.io": {"auth": b64(SECRET)}}},  # no colon
        {"auths": {"ghcr.io": {"auth": b64(":" + SECRET)}}},  # empty user
        {"auths": {"ghcr.io": {"password": [SECRET]}}},
        {"auths": {"ghcr.io": SECRET}},
        {"HttpHeaders": {"X-Token": SECRET + "\n"}},
        {"credsStore": [SECRET]},
        {"credHelpers": {"ghcr.io": SECRET + "/x"}},
    ]
    for doc in cases:
        with pytest.raises(ConfigError) as caught:
            config_and_lookup(json.dumps(doc))
        assert_hidden(str(caught.value), SECRET, b64(SECRET), where="ConfigError")
    with pytest.raises(ConfigError) as caught:
        config('{"auths": {"ghcr.io": {"auth": "' + SECRET + '"}}')  # truncated JSON
    assert_hidden(str(caught.value), SECRET, where="ConfigError")


# --- hypothesis: any input gives a value or an AsyncAuthError ----------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
keys = st.sampled_from(
    [
        "ghcr.io",
        "https://index.docker.io/v1/",
        "docker.io",
        "quay.io/team",
        "localhost:5000",
        "*.x.io",
        "",
        "http://a.b/c",
        "a b",
    ]
) | st.text(max_size=15)
fields = st.sampled_from(
    ["auth", "username", "password", "identitytoken", "registrytoken", "Auth", "email"]
)
field_values = (
    st.text(max_size=20)
    | st.builds(lambda a, b: b64(f"{a}:{b}"), st.text(max_size=8), st.text(max_size=8))
    | json_values
)
entries = st.dictionaries(fields, field_values, max_size=4) | json_values
documents = st.fixed_dictionaries(
    {},
    optional={
        "auths": st.dictionaries(keys, entries, max_size=4) | json_values,
        "credHelpers": st.dictionaries(keys, st.text(max_size=10) | json_values, max_size=3),
        "credsStore": st.text(max_size=10) | json_values,
        "HttpHeaders": st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=2),
    },
)
references = st.sampled_from(
    ["alpine", "ghcr.io/o/a", "quay.io/team/app", "localhost:5000/x", "a.b/c/d"]
)


@given(data=st.binary(max_size=300))
@per_example_budget()
def test_any_bytes_give_a_config_or_a_config_error(data: bytes) -> None:
    with contextlib.suppress(ConfigError):
        assert isinstance(parse_config(data, path="/fuzz.json"), DockerConfig)


@given(data=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@per_example_budget()
def test_any_file_content_gives_a_config_or_a_config_error(tmp_path: Path, data: bytes) -> None:
    """The same through the loader: the bytes of a real file, read as a lookup reads them."""
    path = tmp_path / "config.json"
    path.write_bytes(data)
    loader = ConfigLoader(path, (), check_interval=0)
    try:
        loaded = loader.load_sync()
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}: ")
        return
    assert isinstance(loaded, DockerConfig)
    with contextlib.suppress(ConfigError):
        lookup(loaded, Resource.parse("ghcr.io/o/a"))


@given(doc=json_values | documents)
@settings(suppress_health_check=[HealthCheck.too_slow])
@per_example_budget()
def test_any_json_gives_a_config_or_an_asyncauth_error(doc: Any) -> None:
    with contextlib.suppress(AsyncAuthError):
        parse_config(json.dumps(doc), path="/fuzz.json")


@given(doc=documents, reference=references, excluded=st.sets(st.text(max_size=5), max_size=2))
@settings(suppress_health_check=[HealthCheck.too_slow])
@per_example_budget()
def test_lookup_on_any_valid_config_never_fails(
    doc: dict[str, Any], reference: str, excluded: set[str]
) -> None:
    try:
        cfg = parse_config(json.dumps(doc), path="/fuzz.json")
    except AsyncAuthError:
        return
    repr(cfg)
    try:
        found = lookup(cfg, Resource.parse(reference), exclude_helpers=excluded)
    except ConfigError as exc:  # the entry chosen is broken: named, never another exception
        assert str(exc).startswith("/fuzz.json: ")
        return
    assert found is None or (found.helper is None) != (found.credential is None)


@given(key=keys, value=field_values | entries, reference=references)
@settings(suppress_health_check=[HealthCheck.too_slow])
@per_example_budget()
def test_any_key_never_breaks_another_keys_lookup(key: str, value: Any, reference: str) -> None:
    """Whatever another tool wrote under any key, the lookup of a registry that key does not
    name answers as if the key were not there."""
    resource = Resource.parse(reference)
    good = {"auths": {resource.registry: basic("good")}}
    expected = find(good, reference)
    doc = {
        "auths": {resource.registry: basic("good"), key: value},
        "credHelpers": {key: value},
    }
    cfg = parse_config(json.dumps(doc), path="/fuzz.json")  # keys never fail the file
    try:
        names_it = key_pattern(key, "k").matches(resource)
    except AsyncAuthError:
        names_it = False
        assert ("auths", key) in {(i.section, i.key) for i in cfg.ignored}
    if names_it:
        return  # the key does name this registry: its entry is the one chosen
    assert find(doc, reference) == expected


@given(
    returncode=st.integers(-20, 255),
    stdout=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
    stderr=st.binary(max_size=100),
)
@per_example_budget()
def test_any_helper_output_gives_an_answer_or_a_resolver_error(
    returncode: int, stdout: bytes, stderr: bytes
) -> None:
    try:
        result = interpret_get(HelperOutput(returncode, stdout, stderr), program="h")
    except ResolverError:
        return
    assert result is None or isinstance(result, Credential)


def test_glob_free_registry_pattern_keeps_default_behaviour() -> None:
    assert RegistryPattern.parse("*.gcr.io", what="x").is_glob
    with pytest.raises(ConfigError, match="glob characters"):
        RegistryPattern.parse("*.gcr.io", what="x", globs=False)
    assert RegistryPattern.parse("[::1]:5000", what="x", globs=False).port == 5000


# --- helper output, without processes -----------------------------------------------------------


def out(code: int, stdout: str | bytes = b"", stderr: str | bytes = b"") -> HelperOutput:
    def raw(value: str | bytes) -> bytes:
        return value.encode() if isinstance(value, str) else value

    return HelperOutput(code, raw(stdout), raw(stderr))


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (out(0, '{"ServerURL":"x","Username":"u","Secret":"s"}'), Credential("u", "s")),
        (out(0, '{"Username":"<token>","Secret":"t"}'), Credential(identity_token="t")),
        (out(0, '{"Username":"","Secret":""}'), None),
        (out(0, '{"ServerURL":"x"}'), None),
        (out(0, '{"Username":"<token>","Secret":""}'), None),
        (out(0, '{"Username":"u","Secret":""}'), Credential("u", "")),
        (out(1, "credentials not found in native keychain\n"), None),
        (out(0, "credentials not found in native keychain\n"), None),
        (out(3, "", "credentials not found in native keychain"), None),
        (out(1, "Credentials not found in native keychain"), None),
    ],
)
def test_interpret_get(output: HelperOutput, expected: Credential | None) -> None:
    assert interpret_get(output, program="docker-credential-x") == expected


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (out(1, "error getting credentials: boom"), "exited with status 1 (output: error"),
        (out(2, "", "panic: nil map"), "exited with status 2 (stderr: panic: nil map)"),
        (out(1), "exited with status 1 without a message"),
        (out(-9), "was killed by SIGKILL"),
        (out(0, "not json"), "not the JSON answer"),
        (out(0, ""), "not the JSON answer"),
        (out(0, "[1]"), "not an object"),
        (out(0, '{"Username": 1, "Secret": "s"}'), "Username that is not a string"),
        (out(0, b"\xff\xfe"), "not the JSON answer"),
    ],
)
def test_interpret_get_failures(output: HelperOutput, expected: str) -> None:
    with pytest.raises(ResolverError) as caught:
        interpret_get(output, program="docker-credential-x")
    assert str(caught.value).startswith("docker-credential-x ")
    assert expected in str(caught.value)


def test_failure_messages_redact_secrets() -> None:
    noisy = [
        out(1, f'{{"Username":"u","Secret":"{SECRET}"}} then a crash'),
        out(1, f"error: password={SECRET}"),
        out(1, "", f"request failed: Authorization: Bearer {BEARER}"),
        out(1, f"cannot use token {TOKEN}"),
        out(1, "", f"GET https://u:{SECRET}@example.com/v2/ failed"),
        out(1, f'{{"secret": "{SECRET}"}}'),
        out(0, f'{{"Username":"u","Secret":"{SECRET}"'),  # truncated answer
        out(1, f"secret: '{SECRET} with spaces'"),
    ]
    for output in noisy:
        with pytest.raises(ResolverError) as caught:
            interpret_get(output, program="docker-credential-x")
        assert_hidden(str(caught.value), SECRET, BEARER, TOKEN, where="helper error")
    assert redact("docker-credential-pass: no such file /usr/lib/x") == (
        "docker-credential-pass: no such file /usr/lib/x"
    )
    assert redact("x" * 1000).endswith("…")
    assert len(redact("a b " * 1000)) <= 300


def test_helper_output_repr_shows_sizes_only() -> None:
    assert_hidden(repr(out(0, SECRET, SECRET)), SECRET, where="repr(HelperOutput)")


# --- real helper processes ----------------------------------------------------------------------


class Helpers:
    """Writes ``docker-credential-<name>`` shell scripts into a private bin directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        self.home = root / "home"
        self.home.mkdir()
        self.environ = {
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(self.home),
        }

    def write(self, name: str, body: str) -> Path:
        path = self.bin / f"docker-credential-{name}"
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return path

    def answering(self, name: str, username: str, secret: str, *, delay: float = 0.0) -> Path:
        """A helper that logs each run and the server URL it was asked, then answers."""
        log = self.root / f"{name}.runs"
        body = f"""url=$(cat)
printf '%s\\n' "$url" >> '{log}'
{f"sleep {delay}" if delay else ":"}
printf '{{"ServerURL":"%s","Username":"{username}","Secret":"{secret}"}}' "$url"
"""
        return self.write(name, body)

    def runs(self, name: str) -> list[str]:
        log = self.root / f"{name}.runs"
        return log.read_text().splitlines() if log.exists() else []

    def config(self, doc: Mapping[str, Any]) -> Path:
        path = self.root / "config.json"
        path.write_text(json.dumps(doc))
        return path

    def resolver(self, doc: Mapping[str, Any], **kwargs: Any) -> DockerConfigResolver:
        return DockerConfigResolver(config_path=self.config(doc), environ=self.environ, **kwargs)


@pytest.fixture
def helpers(tmp_path: Path) -> Helpers:
    return Helpers(tmp_path)


def gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (absent, or a zombie awaiting its new parent)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return status.rpartition(")")[2].split()[0] in ("Z", "X")


def reaped(pid: int) -> bool:
    """Whether ``pid`` is gone entirely: not even a zombie waiting for us to collect it."""
    return not Path(f"/proc/{pid}").exists()


async def wait_gone(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        await anyio.sleep(0.02)
    return True


async def test_cred_helper_answers_basic_and_gets_the_server_url(helpers: Helpers) -> None:
    helpers.answering("gh", "bob", SECRET)
    resolver = helpers.resolver({"credHelpers": {"ghcr.io": "gh", "localhost:5000": "gh"}})
    assert await resolver.resolve(Resource.parse("ghcr.io/o/a")) == Credential("bob", SECRET)
    assert await resolver.resolve(Resource.parse("localhost:5000/a")) == Credential("bob", SECRET)
    assert helpers.runs("gh") == ["ghcr.io", "localhost:5000"]


async def test_docker_hub_is_asked_as_docker_asks(helpers: Helpers) -> None:
    helpers.answering("store", "bob", SECRET)
    resolver = helpers.resolver({"credsStore": "store"})
    assert await resolver.resolve(Resource.parse("alpine")) == Credential("bob", SECRET)
    assert helpers.runs("store") == ["https://index.docker.io/v1/"]


async def test_token_username_means_identity_token(helpers: Helpers) -> None:
    helpers.answering("gh", "<token>", TOKEN)
    resolver = helpers.resolver({"credHelpers": {"ghcr.io": "gh"}})
    assert await resolver.resolve(Resource.parse("ghcr.io/o/a")) == Credential(identity_token=TOKEN)


@pytest.mark.parametrize("code", [0, 1])
async def test_not_found_message_with_either_exit_code(helpers: Helpers, code: int) -> None:
    helpers.write(
        "gh", f"cat >/dev/null\necho 'credentials not found in native keychain'\nexit {code}\n"
    )
    resolver = helpers.resolver({"credHelpers": {"ghcr.io": "gh"}, "auths": {"ghcr.io": basic()}})
    # The helper decides, as in docker: its "not found" is no credential, not "try auths".
    assert await resolver.resolve(Resource.parse("ghcr.io/o/a")) is None


async def test_empty_username_and_secret_is_no_credential(helpers: Helpers) -> None:
    helpers.answering("gh", "", "")
    resolver = helpers.resolver({"credsStore": "gh"})
    assert await resolver.resolve(Resource.parse("ghcr.io/o/a")) is None


async def test_crashing_helper_is_an_error_in_the_trace(helpers: Helpers) -> None:
    helpers.write("gh", f"cat >/dev/null\necho 'pass store is locked; password={SECRET}'\nexit 1\n")
    resolver = helpers.resolver({"credHelpers": {"ghcr.io": "gh"}})
    with pytest.raises(ResolverError) as caught:
        await resolver.resolve(Resource.parse("ghcr.io/o/a"))
    message = str(caught.value)
    assert 'credHelpers["ghcr.io"] -> docker-credential-gh in ' in message
    assert "exited with status 1" in message
    assert "pass store is locked" in message
    assert_hidden(message, SECRET, where="ResolverError")

    resolution = await Chain([helpers.resolver({"credHelpers": {"ghcr.io": "gh"}})]).resolve(
        "ghcr.io/o/a"
    )
    (entry,) = resolution.trace
    assert entry.outcome is Outcome.ERROR
    assert entry.detail is not None
    assert "exited with status 1" in entry.detail
    assert_hidden(entry.detail, SECRET, where="trace")
    assert resolution.credential.is_anonymous


async def test_helper_printing_bad_json_is_an_error_without_its_output(helpers: Helpers) -> None:
    helpers.write("gh", f'cat >/dev/null\nprintf \'{{"Username": "u", "Secret": "{SECRET}"\'\n')
    resolver = helpers.resolver({"credHelpers": {"ghcr.io": "gh"}})
    with pytest.raises(ResolverError, match="not the JSON answer") as caught:
        await resolver.resolve(Resource.parse("ghcr.io/o/a"))
    assert_hidden(str(caught.value), SECRET, where="ResolverError")


async def test_missing_helper_is_a_config_error_naming_it_and_the_key(helpers: Helpers) -> None:
    """docker fails the same way; a missing helper is not a transient failure to skip."""
    resolver = helpers.resolver({"credHelpers": {"ghcr.io": "nonexistent"}})
    with pytest.raises(ConfigError) as caught:
        await resolver.resolve(Resource.parse("ghcr.io/o/a"))
    message = str(caught.value)
    assert message.startswith(f'{helpers.root / "config.json"}: credHelpers["ghcr.io"]: ')
    assert "docker-credential-nonexistent is not installed" in message
    resolver = helpers.resolver({"credsStore": "nonexistent"})
    with pytest.raises(ConfigError, match=r"config\.json: credsStore: docker-credential-nonex"):
        await Chain([resolver]).resolve("ghcr.io/o/a")


async def test_non_executable_helper_is_not_installed(helpers: Helpers) -> None:
    helpers.answering("gh", "u", "s").chmod(0o644)
    resolver = helpers.resolver({"credHelpers": {"ghcr.io": "gh"}})
    with pytest.raises(ConfigError, match="docker-credential-gh is not installed"):
        await resolver.resolve(Resource.parse("ghcr.io/o/a"))


def slow_helper(helpers: Helpers) -> None:
    """Records its pid and its child's, then waits for a child that sleeps for a minute."""
    helpers.write(
        "slow",
        f"""echo $$ > '{helpers.root}/helper.pid'
sleep 60 &
echo $! > '{helpers.root}/child.pid'
wait
""",
    )


async def pids(helpers: Helpers) -> tuple[int, int]:
    for _ in range(200):
        try:
            return (
                int((helpers.root / "helper.pid").read_text()),
                int((helpers.root / "child.pid").read_text()),
            )
        except (FileNotFoundError, ValueError):
            await anyio.sleep(0.01)
    raise AssertionError("the slow helper never started")


async def test_slow_helper_is_killed_at_its_timeout_with_its_children(helpers: Helpers) -> None:
    slow_helper(helpers)
    resolver = helpers.resolver({"credsStore": "slow"}, helper_timeout=0.5)
    start = time.monotonic()
    with pytest.raises(ResolverError, match=r"did not answer within 0\.5 s and was killed"):
        await resolver.resolve(Resource.parse("ghcr.io/o/a"))
    assert time.monotonic() - start < 5
    helper_pid, child_pid = await pids(helpers)
    assert gone(helper_pid), "the helper is still running or was not reaped"
    assert reaped(helper_pid), "the helper was not reaped"
    assert await wait_gone(child_pid), "the helper's child outlived the lookup"


async def test_slow_helper_is_killed_when_the_caller_gives_up(helpers: Helpers) -> None:
    slow_helper(helpers)
    resolver = helpers.resolver({"credsStore": "slow"}, helper_timeout=30)
    with anyio.move_on_after(0.5) as scope:
        await resolver.resolve(Resource.parse("ghcr.io/o/a"))
    assert scope.cancelled_caught
    helper_pid, child_pid = await pids(helpers)
    assert reaped(helper_pid), "the helper was not reaped"
    assert await wait_gone(child_pid), "the helper's child outlived the lookup"


async def test_slow_helper_in_a_chain_is_recorded_as_an_error(helpers: Helpers) -> None:
    slow_helper(helpers)
    chain = Chain([helpers.resolver({"credsStore": "slow"}, helper_timeout=0.3)])
    resolution = await chain.resolve("ghcr.io/o/a")
    (entry,) = resolution.trace
    assert entry.outcome is Outcome.ERROR
    assert entry.detail is not None
    assert "did not answer within 0.3 s" in entry.detail
    helper_pid, child_pid = await pids(helpers)
    assert await wait_gone(helper_pid)
    assert await wait_gone(child_pid)


async def test_thousand_concurrent_lookups_run_the_helper_once(helpers: Helpers) -> None:
    helpers.answering("store", "bob", SECRET, delay=0.3)
    resolver = helpers.resolver({"credsStore": "store"})
    chain = Chain([resolver])
    results: list[Credential] = []

    async def one(i: int) -> None:
        results.append((await chain.resolve(f"registry.example:5000/team/app{i}")).credential)

    async with anyio.create_task_group() as tg:
        for i in range(1000):
            tg.start_soon(one, i)
    assert results == [Credential("bob", SECRET)] * 1000
    assert helpers.runs("store") == ["registry.example:5000"]
    assert resolver.helpers.runs == 1
    # Cached afterwards too, per server URL.
    await resolver.resolve(Resource.parse("registry.example:5000/x"))
    await resolver.resolve(Resource.parse("other.example/x"))
    assert helpers.runs("store") == ["registry.example:5000", "other.example"]


async def test_helper_answers_are_forgotten_when_the_file_changes(helpers: Helpers) -> None:
    answer = helpers.root / "answer.json"
    answer.write_text('{"Username": "first", "Secret": "s"}')
    helpers.write("store", f"cat >/dev/null\ncat '{answer}'\n")
    resolver = helpers.resolver({"credsStore": "store"}, check_interval=0)
    ghcr = Resource.parse("ghcr.io/o/a")
    assert await resolver.resolve(ghcr) == Credential("first", "s")
    answer.write_text('{"Username": "second", "Secret": "s"}')
    assert await resolver.resolve(ghcr) == Credential("first", "s")  # cached
    helpers.config({"credsStore": "store", "auths": {"ghcr.io": {}}})  # docker login rewrites it
    assert await resolver.resolve(ghcr) == Credential("second", "s")


async def test_failures_are_kept_briefly_then_retried(helpers: Helpers) -> None:
    log = helpers.root / "fail.runs"
    helpers.write("fail", f"cat >/dev/null\necho run >> '{log}'\necho broken\nexit 1\n")
    client = HelperClient(failure_ttl=0.3, environ=helpers.environ)
    for _ in range(3):
        with pytest.raises(ResolverError, match="broken"):
            await client.get("fail", "ghcr.io")
    assert log.read_text().count("run") == 1
    await anyio.sleep(0.4)
    with pytest.raises(ResolverError):
        await client.get("fail", "ghcr.io")
    assert log.read_text().count("run") == 2


async def test_helper_that_ignores_stdin_and_floods_output(helpers: Helpers) -> None:
    helpers.write("noisy", "head -c 3000000 /dev/zero\n")
    client = HelperClient(environ=helpers.environ)
    with pytest.raises(ResolverError, match="printed more than"):
        await client.get("noisy", "ghcr.io")


# --- the file: discovery and re-reading ---------------------------------------------------------


def test_candidates_in_order() -> None:
    env = {
        "DOCKER_CONFIG": "/dc",
        "HOME": "/h",
        "REGISTRY_AUTH_FILE": "/raf.json",
        "XDG_RUNTIME_DIR": "/run/user/1",
        "XDG_CONFIG_HOME": "/xdg",
    }
    paths = lambda env: [str(p) for p, _ in config_candidates(env, uid=7)]  # noqa: E731
    # DOCKER_CONFIG replaces ~/.docker; REGISTRY_AUTH_FILE replaces the containers files.
    assert paths(env) == ["/dc/config.json", "/raf.json"]
    del env["DOCKER_CONFIG"], env["REGISTRY_AUTH_FILE"]
    assert paths(env) == [
        "/h/.docker/config.json",
        "/run/user/1/containers/auth.json",
        "/xdg/containers/auth.json",
    ]
    assert paths({"HOME": "/h", "DOCKER_CONFIG": "", "XDG_RUNTIME_DIR": ""}) == [
        "/h/.docker/config.json",
        "/run/containers/7/auth.json",  # podman as root without XDG_RUNTIME_DIR
        "/h/.config/containers/auth.json",
    ]
    assert paths({}) == ["/run/containers/7/auth.json"]
    assert str(config_candidates({})[0][0]) == f"/run/containers/{os.getuid()}/auth.json"


def discovery_env(root: Path) -> dict[str, str]:
    return {
        "DOCKER_CONFIG": str(root / "dc"),
        "HOME": str(root / "home"),
        "REGISTRY_AUTH_FILE": str(root / "raf.json"),
        "XDG_RUNTIME_DIR": str(root / "run"),
        "XDG_CONFIG_HOME": str(root / "xdg"),
        "PATH": os.environ["PATH"],
    }


FILES = [
    "dc/config.json",
    "home/.docker/config.json",
    "raf.json",
    "run/containers/auth.json",
    "xdg/containers/auth.json",
]


@pytest.mark.parametrize(
    ("unset", "winners"),
    [
        ((), ["dc/config.json", "raf.json"]),
        (
            ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE"),
            ["home/.docker/config.json", "run/containers/auth.json", "xdg/containers/auth.json"],
        ),
    ],
)
async def test_the_first_file_that_exists_wins(
    tmp_path: Path, unset: tuple[str, ...], winners: list[str]
) -> None:
    """Every file exists; each is used in turn as the ones before it are removed. A variable
    that names a file means that file only: the defaults it replaces are never read."""
    for index, name in enumerate(FILES):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"auths": {"ghcr.io": basic(f"user{index}")}}))
    env = {k: v for k, v in discovery_env(tmp_path).items() if k not in unset}
    for name in winners:
        resolver = DockerConfigResolver(environ=env)
        found = await resolver.resolve(Resource.parse("ghcr.io/o/a"))
        assert found is not None, name
        assert found.username == f"user{FILES.index(name)}", name
        assert resolver.explain(Resource.parse("ghcr.io/o/a")) == (
            f'auths["ghcr.io"] in {tmp_path / name}'
        )
        (tmp_path / name).unlink()
    assert await DockerConfigResolver(environ=env).resolve(Resource.parse("ghcr.io/o/a")) is None


async def test_home_default_for_xdg_config(tmp_path: Path) -> None:
    path = tmp_path / ".config" / "containers" / "auth.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"auths": {"quay.io/team": basic("podman")}}))
    resolver = DockerConfigResolver(environ={"HOME": str(tmp_path)})
    found = await resolver.resolve(Resource.parse("quay.io/team/app"))
    assert found is not None
    assert found.username == "podman"


async def test_explicit_path_wins_and_must_exist(tmp_path: Path) -> None:
    env = discovery_env(tmp_path)
    (tmp_path / "dc").mkdir()
    (tmp_path / "dc" / "config.json").write_text(json.dumps({"auths": {"ghcr.io": basic("dc")}}))
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"auths": {"ghcr.io": basic("mine")}}))
    found = await DockerConfigResolver(config_path=mine, environ=env).resolve(
        Resource.parse("ghcr.io/o/a")
    )
    assert found is not None
    assert found.username == "mine"
    with pytest.raises(ConfigError, match=r"missing\.json: cannot be read"):
        await DockerConfigResolver(config_path=tmp_path / "missing.json").resolve(
            Resource.parse("ghcr.io/o/a")
        )


async def test_a_broken_file_is_a_config_error_not_a_fallback(tmp_path: Path) -> None:
    env = discovery_env(tmp_path)
    (tmp_path / "dc").mkdir()
    (tmp_path / "dc" / "config.json").write_text("{broken")
    (tmp_path / "raf.json").write_text(json.dumps({"auths": {"ghcr.io": basic()}}))
    with pytest.raises(ConfigError, match=r"dc/config\.json: not valid JSON"):
        await DockerConfigResolver(environ=env).resolve(Resource.parse("ghcr.io/o/a"))


async def test_a_broken_file_raises_through_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"auths": {"ghcr.io": {"auth": "%%%"}}}')
    with pytest.raises(ConfigError, match=r'auths\["ghcr.io"\]\.auth is not valid base64'):
        await Chain([DockerConfigResolver(config_path=path)]).resolve("ghcr.io/o/a")


async def test_building_does_no_io_and_later_logins_are_seen(tmp_path: Path) -> None:
    path = tmp_path / "dc" / "config.json"
    env = {"DOCKER_CONFIG": str(path.parent)}
    resolver = DockerConfigResolver(environ=env, check_interval=0)
    ghcr = Resource.parse("ghcr.io/o/a")
    assert await resolver.resolve(ghcr) is None
    path.parent.mkdir()
    path.write_text(json.dumps({"auths": {"ghcr.io": basic("first")}}))
    assert (await resolver.resolve(ghcr)) == Credential("first", SECRET)
    # docker login writes a new file and renames it over the old one.
    new = tmp_path / "dc" / "config.json.tmp"
    new.write_text(json.dumps({"auths": {"ghcr.io": basic("second")}}))
    new.replace(path)
    assert (await resolver.resolve(ghcr)) == Credential("second", SECRET)
    path.write_text("{broken")
    with pytest.raises(ConfigError):
        await resolver.resolve(ghcr)
    with pytest.raises(ConfigError):  # still broken: errors are not cached as answers
        await resolver.resolve(ghcr)
    path.write_text(json.dumps({"auths": {}}))
    assert await resolver.resolve(ghcr) is None
    path.unlink()
    assert await resolver.resolve(ghcr) is None


async def test_file_is_checked_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"ghcr.io": basic("first")}}))
    resolver = DockerConfigResolver(config_path=path, check_interval=60)
    ghcr = Resource.parse("ghcr.io/o/a")
    assert (await resolver.resolve(ghcr)) == Credential("first", SECRET)
    path.write_text(json.dumps({"auths": {"ghcr.io": basic("second")}}))
    assert (await resolver.resolve(ghcr)) == Credential("first", SECRET)


class _AfterTheRead:
    """A source that takes precedence and answers once the Docker config read has started."""

    name = "first"

    def __init__(self) -> None:
        self.reading = anyio.Event()

    async def resolve(self, resource: Resource) -> Credential | None:
        await self.reading.wait()
        return Credential("flags", SECRET)


async def test_a_read_cancelled_by_a_source_that_answered_first_is_kept_for_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chain cancels the Docker config source when one that takes precedence answers first;
    the read it had started is still kept, so that each lookup does not start a read (a worker
    thread) of its own only to throw it away."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"ghcr.io": basic("docker")}}))
    first, go, reads = _AfterTheRead(), threading.Event(), []
    real = ConfigLoader.load_sync

    def counted(loader: ConfigLoader) -> DockerConfig | None:
        reads.append(loader.describe())
        anyio.from_thread.run_sync(first.reading.set)
        go.wait(5)  # until the chain has answered and cancelled this source
        return real(loader)

    monkeypatch.setattr(ConfigLoader, "load_sync", counted)
    docker = DockerConfigResolver(config_path=path, check_interval=60)
    kept, flight = threading.Event(), docker._loader._flight
    keep = flight.put

    def put(key: str, value: DockerConfig | None, ttl: float) -> None:
        keep(key, value, ttl)
        kept.set()

    monkeypatch.setattr(flight, "put", put)
    chain = Chain([first, docker])
    assert (await chain.resolve("ghcr.io/o/repository-0")).source == "first"
    go.set()  # the abandoned read ends now, after its lookup was cancelled
    assert await anyio.to_thread.run_sync(kept.wait, 5), "what it read was thrown away"
    for i in range(1, 20):
        assert (await chain.resolve(f"ghcr.io/o/repository-{i}")).source == "first"
    assert reads == [os.fspath(path)]


async def test_http_headers_are_exposed(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"HttpHeaders": {"User-Agent": "Docker-Client/18.09.6"}}))
    resolver = DockerConfigResolver(config_path=path)
    assert await resolver.http_headers() == {"User-Agent": "Docker-Client/18.09.6"}
    assert await DockerConfigResolver(environ={}).http_headers() == {}


async def test_repr_and_explain_show_no_secret(helpers: Helpers) -> None:
    doc = {
        "auths": {"ghcr.io": basic(), "quay.io": {"identitytoken": TOKEN}},
        "HttpHeaders": {"X-Token": BEARER},
    }
    resolver = helpers.resolver(doc)
    for reference in ("ghcr.io/o/a", "quay.io/o/a"):
        resolution = await Chain([resolver]).resolve(reference)
        assert resolution.source == "docker-config"
        text = " ".join(
            [repr(resolver), repr(await resolver.load()), repr(resolution), str(resolution.trace)]
        )
        assert_hidden(text, SECRET, TOKEN, BEARER, b64(f"u:{SECRET}"), where="repr/trace")
    assert resolution.trace[0].detail == f'auths["quay.io"] in {helpers.root / "config.json"}'


def test_find_config_skips_missing_and_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    existing = tmp_path / "b.json"
    existing.write_text("{}")
    candidates: tuple[tuple[Path, str], ...] = (
        (tmp_path / "missing.json", "a"),
        (tmp_path / "file" / "config.json", "not a directory"),
        (existing, "b"),
    )
    assert find_config(candidates) == existing
