"""Configuring a fleet's store: URLs, keys and the environment (no Redis needed here)."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncauth import (
    AsyncAuthError,
    ConfigError,
    ECRResolver,
    MemoryTokenStore,
    RedisTokenStore,
    RegistryAuth,
    TokenStore,
    default_chain,
)
from asyncauth._chain import Chain
from asyncauth._stores.credentials import decode, encode
from asyncauth._stores.redis_url import parse_redis_url
from asyncauth._stores.sealing import encryption_key

from ._assertions import assert_hidden
from ._fakes import Fixed

SECRET = "pw-SECRET-fleet"
KEY = base64.b64encode(b"k" * 32).decode()


def test_urls_of_servers_and_clusters() -> None:
    url = parse_redis_url("rediss://bot:p%40ss@cache.example:6380/3?timeout=0.5", what="X")
    assert (url.tls, url.cluster, url.nodes, url.db) == (True, False, (("cache.example", 6380),), 3)
    assert (url.username, url.password, url.timeout) == ("bot", "p@ss", 0.5)
    assert str(url) == "rediss://bot@cache.example:6380/3"
    cluster = parse_redis_url("redis+cluster://a:7000,b,[::1]:7002?namespace=ci&lease=5", what="X")
    assert cluster.nodes == (("a", 7000), ("b", 6379), ("[::1]", 7002))
    assert (cluster.cluster, cluster.namespace, cluster.lease_time) == (True, "ci", 5.0)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://host", "must be a redis://"),
        ("redis://", "names no host"),
        ("redis://a,b", "several hosts need a redis+cluster:// URL"),
        ("redis+cluster://a/1", "database 0 only"),
        ("redis://host:99999", "'99999' is not a port number"),
        ("redis://host/x", "database number"),
        ("redis://host?timeout=-1", "option timeout must be seconds"),
        ("redis://host?ca_file=/x", "option ca_file needs TLS"),
        ("redis://host?namespace=a:b", "option namespace"),
        ("redis://host?timeout=1&timeout=2", "given twice"),
        ("redis://host#frag", "no #fragment"),
    ],
)
def test_malformed_urls_name_the_variable_and_the_fault(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_redis_url(url, what="ASYNCAUTH_TOKEN_STORE")
    assert str(raised.value).startswith("ASYNCAUTH_TOKEN_STORE: ")
    assert message in str(raised.value)


_url_part = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12
) | st.sampled_from(["redis://", "rediss+cluster://", "@", ":", "/", "?", "&", "=", ",", "[", "]"])


@given(st.lists(_url_part, max_size=8).map("".join), st.sampled_from(["", ":", "/", "?", "@"]))
def test_any_url_parses_or_is_a_config_error_that_never_shows_the_password(
    text: str, glue: str
) -> None:
    url = f"redis://user:{SECRET}{glue}{text}"
    for candidate in (text, url):
        try:
            parse_redis_url(candidate, what="ASYNCAUTH_TOKEN_STORE")
        except AsyncAuthError as exc:
            assert isinstance(exc, ConfigError)
            assert "ASYNCAUTH_TOKEN_STORE" in str(exc)
            assert_hidden(str(exc), SECRET, where="message")


@given(st.one_of(st.text(max_size=60), st.binary(max_size=40), st.integers(), st.none()))
def test_any_key_is_32_bytes_or_a_config_error_that_never_shows_it(value: object) -> None:
    try:
        key = encryption_key(value, what="ASYNCAUTH_TOKEN_STORE_KEY")
    except AsyncAuthError as exc:
        assert isinstance(exc, ConfigError)
        assert "ASYNCAUTH_TOKEN_STORE_KEY" in str(exc)
        if isinstance(value, str) and len(value) > 3:
            assert_hidden(str(exc), value, where="message")
    else:
        assert len(key) == 32


@given(st.binary(max_size=200))
def test_any_stored_credential_value_decodes_or_is_a_miss(value: bytes) -> None:
    decoded = decode(value)
    assert decoded is None or decoded.kind in ("anonymous", "basic", "identity_token",
                                               "registry_token")  # fmt: skip


def test_credentials_round_trip_through_the_store_format() -> None:
    from asyncauth import Credential

    credential = Credential(username="AWS", password=SECRET, expires_at=4102444800.0)
    assert decode(encode(credential)) == credential
    assert decode(encode(credential)).expires_at == 4102444800.0  # type: ignore[union-attr]
    assert decode(encode(Credential(username="AWS", password="x", expires_at=1.0))) is None


def test_the_environment_configures_one_store_for_auth_and_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASYNCAUTH_TOKEN_STORE", "redis://127.0.0.1:1/0?namespace=env")
    monkeypatch.setenv("ASYNCAUTH_TOKEN_STORE_KEY", KEY)
    auth = RegistryAuth()
    store = auth.token_store
    assert isinstance(store, RedisTokenStore)
    assert store.namespace == "env"
    ecr = [r for r in auth.chain.resolvers if isinstance(r, ECRResolver)]
    assert ecr[0].token_store is store  # the default chain shares cloud credentials too
    assert RegistryAuth(Chain([Fixed(None)])).token_store is store  # type: ignore[arg-type]
    # Opting out, and a store given in code, win over the environment.
    assert RegistryAuth(token_store=False).token_store is None
    opted_out = RegistryAuth(token_store=False).chain
    assert all(getattr(r, "token_store", None) is None for r in opted_out.resolvers)
    memory = MemoryTokenStore()
    assert RegistryAuth(token_store=memory).token_store is memory
    assert default_chain(environ={}).resolvers  # another environ: no store, no error


class _NoLeaseTime:
    """A store written before ``lease_time`` was part of the protocol."""

    def name(self, material: bytes) -> str:
        return "n"

    async def get(self, name: str) -> bytes | None:
        return None

    async def set(self, name: str, value: bytes, ttl: float) -> None:
        return None

    async def lease(self, name: str, ttl: float) -> bool:
        return True

    async def release(self, name: str) -> None:
        return None


def test_a_store_declares_lease_time_or_is_refused_when_handed_over() -> None:
    """``lease_time`` is a typed field of :class:`TokenStore`: declared by every store (a
    subclass inherits 10 s), checked when the store is handed to ``RegistryAuth`` or a chain."""
    with pytest.raises(TypeError, match="_NoLeaseTime has no lease_time"):
        RegistryAuth(token_store=_NoLeaseTime())  # type: ignore[arg-type]
    ecr = ECRResolver(token_store=_NoLeaseTime())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="_NoLeaseTime has no lease_time"):
        Chain([ecr])

    class Subclassed(_NoLeaseTime, TokenStore):
        pass

    assert Subclassed().lease_time == MemoryTokenStore().lease_time == 10.0
    assert RegistryAuth(token_store=Subclassed()).token_store is not None
    negative = MemoryTokenStore()
    negative.lease_time = -1.0
    with pytest.raises(ValueError, match=r"MemoryTokenStore\.lease_time must be a positive number"):
        RegistryAuth(token_store=negative)


def test_a_store_without_its_key_or_with_a_bad_one_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASYNCAUTH_TOKEN_STORE", f"redis://:{SECRET}@127.0.0.1:1/0")
    monkeypatch.delenv("ASYNCAUTH_TOKEN_STORE_KEY", raising=False)
    with pytest.raises(ConfigError, match="ASYNCAUTH_TOKEN_STORE_KEY is not"):
        RegistryAuth()
    monkeypatch.setenv("ASYNCAUTH_TOKEN_STORE_KEY", "c2hvcnQ=")
    with pytest.raises(ConfigError, match="ASYNCAUTH_TOKEN_STORE_KEY must decode to 32 bytes"):
        RegistryAuth()
    monkeypatch.setenv("ASYNCAUTH_TOKEN_STORE_KEY", KEY)
    monkeypatch.setenv("ASYNCAUTH_TOKEN_STORE", f"redis://:{SECRET}@127.0.0.1:1/0?x=1")
    with pytest.raises(ConfigError, match="ASYNCAUTH_TOKEN_STORE: unknown option") as raised:
        RegistryAuth()
    assert_hidden(str(raised.value), SECRET, where="message")
    assert RegistryAuth(token_store=False).token_store is None  # opting out reads nothing


def test_without_coredis_the_store_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "coredis" else real(name)
    )
    monkeypatch.setitem(__import__("sys").modules, "coredis", None)
    with pytest.raises(ConfigError, match=r"pip install 'asyncauth\[redis\]'"):
        RedisTokenStore("redis://127.0.0.1", encryption_key=os.urandom(32))
