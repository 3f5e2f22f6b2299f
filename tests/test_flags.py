"""Explicit options (imgpkg's --registry-* flags and IMGPKG_* variables)."""

from __future__ import annotations

import pytest

from asyncauth import ConfigError, Credential, FlagsResolver, Resource, default_chain

from ._assertions import assert_hidden

HUB = Resource.parse("alpine")


async def test_nothing_given_is_no_opinion() -> None:
    assert await FlagsResolver(environ={}).resolve(HUB) is None


async def test_username_password_is_basic_for_every_registry() -> None:
    resolver = FlagsResolver(username="bob", password="pw-SECRET", environ={})
    for reference in ("alpine", "gcr.io/a/b", "localhost:5000/x"):
        assert await resolver.resolve(Resource.parse(reference)) == Credential("bob", "pw-SECRET")


async def test_token_is_a_registry_token() -> None:
    found = await FlagsResolver(token="tok-SECRET", environ={}).resolve(HUB)
    assert found == Credential(registry_token="tok-SECRET")


async def test_username_password_beat_token_beats_anon() -> None:
    both = FlagsResolver(username="u", password="p1", token="t", anon=True, environ={})
    assert (await both.resolve(HUB)) == Credential("u", "p1")
    token = FlagsResolver(token="t", anon=True, environ={})
    assert (await token.resolve(HUB)) == Credential(registry_token="t")
    anon = FlagsResolver(anon=True, environ={})
    found = await anon.resolve(HUB)
    assert found is not None
    assert found.is_anonymous


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"IMGPKG_USERNAME": "eu", "IMGPKG_PASSWORD": "ep"}, Credential("eu", "ep")),
        ({"IMGPKG_TOKEN": "et"}, Credential(registry_token="et")),
        ({"IMGPKG_ANON": "true"}, Credential.anonymous()),
        ({"IMGPKG_ANON": "True"}, None),
        ({"IMGPKG_ANON": "1"}, None),
        ({"IMGPKG_ANON": "yes"}, None),
        ({"IMGPKG_ANON": ""}, None),
        ({"IMGPKG_TOKEN": ""}, None),
    ],
)
async def test_environment_variables(environ: dict[str, str], expected: Credential | None) -> None:
    assert await FlagsResolver(environ=environ).resolve(HUB) == expected


async def test_explicit_values_win_over_variables() -> None:
    environ = {"IMGPKG_USERNAME": "eu", "IMGPKG_PASSWORD": "ep", "IMGPKG_TOKEN": "et"}
    found = await FlagsResolver(username="fu", password="fp", environ=environ).resolve(HUB)
    assert found == Credential("fu", "fp")
    # Per field: an explicit username with the password from the environment.
    found = await FlagsResolver(username="fu", environ=environ).resolve(HUB)
    assert found == Credential("fu", "ep")
    found = await FlagsResolver(token="ft", environ={"IMGPKG_TOKEN": "et"}).resolve(HUB)
    assert found == Credential(registry_token="ft")


@pytest.mark.parametrize(
    ("kwargs", "environ", "names"),
    [
        ({"username": "u"}, {}, ["username", "password", "IMGPKG_PASSWORD"]),
        ({"password": "pw-SECRET"}, {}, ["password", "username", "IMGPKG_USERNAME"]),
        ({}, {"IMGPKG_PASSWORD": "pw-SECRET"}, ["IMGPKG_USERNAME"]),
    ],
)
def test_half_a_login_is_a_config_error(
    kwargs: dict[str, str], environ: dict[str, str], names: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        FlagsResolver(**kwargs, environ=environ)  # type: ignore[arg-type]
    for name in names:
        assert name in str(caught.value)
    assert_hidden(str(caught.value), "pw-SECRET", where="ConfigError")


async def test_anon_stops_the_chain() -> None:
    """--registry-anon is a decision: lower sources (the Docker config) are not consulted."""

    class Lower:
        name = "docker-config"
        called = False

        async def resolve(self, resource: Resource) -> Credential | None:
            Lower.called = True
            return Credential("from", "docker-config")

    chain = default_chain(environ={}, anon=True)
    chain = type(chain)([*chain.resolvers, Lower()])
    resolution = await chain.resolve("alpine")
    assert resolution.source == "flags"
    assert resolution.credential.is_anonymous
    assert [e.outcome for e in resolution.trace][-1] == "skipped"


async def test_env_beats_flags() -> None:
    """The spec: credentials from env variables take precedence over command flags."""
    environ = {
        "IMGPKG_REGISTRY_HOSTNAME": "gcr.io",
        "IMGPKG_REGISTRY_USERNAME": "env",
        "IMGPKG_REGISTRY_PASSWORD": "envpw",
    }
    chain = default_chain(environ=environ, username="flag", password="flagpw")
    resolution = await chain.resolve("gcr.io/a")
    assert (resolution.source, resolution.credential.username) == ("env", "env")
    resolution = await chain.resolve("quay.io/a")
    assert (resolution.source, resolution.credential.username) == ("flags", "flag")


def test_repr_hides_secrets() -> None:
    resolver = FlagsResolver(username="u", password="pw-SECRET", environ={})
    assert_hidden(repr(resolver), "pw-SECRET", where="repr")
    assert_hidden(repr(FlagsResolver(token="tok-SECRET", environ={})), "tok-SECRET", where="repr")
