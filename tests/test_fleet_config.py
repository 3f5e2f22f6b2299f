"""Configuring a fleet's store: URLs, keys and the environment; the sealed format and its
generations (no Redis needed here)."""

from __future__ import annotations

import base64
import logging
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
from asyncauth._stores.sealing import Generations, Sealer, Throttled, encryption_key

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


def test_sentinel_urls_name_the_sentinels_the_service_and_the_database() -> None:
    url = parse_redis_url(f"redis+sentinel://bot:{SECRET}@s1,s2:5000,[::1]/cache/2", what="X")
    assert url.nodes == (("s1", 26379), ("s2", 5000), ("[::1]", 26379))  # sentinels' port
    assert (url.service, url.db, url.tls, url.cluster) == ("cache", 2, False, False)
    assert (url.username, url.password) == ("bot", SECRET)
    assert str(url) == "redis+sentinel://bot@s1:26379,s2:5000,[::1]:26379/cache/2"
    tls = parse_redis_url("rediss+sentinel://s1/cache?ca_file=/ca.pem&timeout=1", what="X")
    assert (tls.tls, tls.service, tls.db, tls.ca_file) == (True, "cache", 0, "/ca.pem")
    assert str(tls) == "rediss+sentinel://s1:26379/cache/0"
    assert parse_redis_url("redis://h/3", what="X").service is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://host", "must be a redis://"),
        ("redis://", "names no host"),
        ("redis://a,b", "several hosts need a redis+cluster:// or +sentinel:// URL"),
        ("redis+sentinel://s1,s2", "names no Sentinel service: the path is /SERVICE[/db]"),
        ("redis+sentinel://s1/", "names no Sentinel service"),
        ("redis+sentinel://s1/a:b", "'a:b' is not a Sentinel service name"),
        ("redis+sentinel://s1/cache/x", "the path must be a database number, not 'x'"),
        ("redis+sentinel://s1/cache?ca_file=/x", "option ca_file needs TLS"),
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
) | st.sampled_from(
    [
        "redis://",
        "rediss+cluster://",
        "redis+sentinel://",
        "@",
        ":",
        "/",
        "?",
        "&",
        "=",
        ",",
        "[",
        "]",
    ]
)


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


def test_the_environment_configures_a_sentinel_store(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"redis+sentinel://:{SECRET}@127.0.0.1:1,127.0.0.1:2/fleet/1?namespace=s"
    monkeypatch.setenv("ASYNCAUTH_TOKEN_STORE", url)
    monkeypatch.setenv("ASYNCAUTH_TOKEN_STORE_KEY", KEY)
    store = RegistryAuth().token_store
    assert isinstance(store, RedisTokenStore)
    assert repr(store) == (
        "RedisTokenStore('redis+sentinel://127.0.0.1:1,127.0.0.1:2/fleet/1', namespace='s')"
    )


_KEY = b"k" * 32
_WHERE = "asyncauth:t:" + "0" * 64


@given(st.binary(max_size=120), st.integers(0, 2**64 - 1))
def test_a_sealed_value_keeps_its_generation_and_opens_only_unchanged(
    plaintext: bytes, generation: int
) -> None:
    sealer = Sealer(_KEY, "asyncauth")
    sealed = sealer.seal(_WHERE, plaintext, generation)
    opened = sealer.open(_WHERE, sealed)
    assert opened is not None
    assert (opened.plaintext, opened.generation) == (plaintext, generation)
    for index in (0, 1, 8, 9, len(sealed) - 1):  # the format, the generation, nonce, tag
        changed = bytearray(sealed)
        changed[index] ^= 1
        assert sealer.open(_WHERE, bytes(changed)) is None
    assert sealer.open(_WHERE.replace(":t:0", ":t:1"), sealed) is None  # moved
    insecure = Sealer(None, "asyncauth")
    clear = insecure.seal(_WHERE, plaintext, generation)
    assert insecure.open(_WHERE, clear) == opened
    assert sealer.open(_WHERE, clear) is None  # an encrypting store never takes clear text


@given(st.binary(max_size=200))
def test_any_bytes_open_to_a_value_or_a_miss_never_an_error(value: bytes) -> None:
    assert Sealer(_KEY, "asyncauth").open(_WHERE, value) is None  # nothing forges the tag
    opened = Sealer(None, "asyncauth").open(_WHERE, value)
    assert opened is None or (value[:1] == b"\x82" and opened.plaintext == value[9:])


def test_generations_refuse_replays_and_refused_values_and_seal_past_both() -> None:
    now = [1000.0]
    generations = Generations(maxsize=2, clock=lambda: now[0])
    assert generations.next("a") == 1_000_000  # milliseconds of the clock
    generations.saw("a", 2_000_000)  # a machine whose clock is ahead wrote it
    assert generations.current("a", 2_000_000)  # the same value, read again
    assert not generations.current("a", 1_999_999)  # an older one written back
    assert generations.next("a") == 2_000_001  # never behind what was seen
    generations.refused("a", 2_000_000)
    assert not generations.current("a", 2_000_000)
    assert generations.current("a", 2_000_001)
    assert generations.current("b", 0)  # nothing seen: anything goes
    generations.saw("b", 5)
    generations.saw("c", 5)  # past maxsize: the least recently used name ("a") is forgotten
    assert not generations.current("b", 4)
    assert generations.current("a", 1)


def test_a_warning_about_one_name_is_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttled = Throttled(every=60.0, maxsize=2)
    for _ in range(50):
        throttled.warning("open", "n1", "bad value %s", "n1")
    throttled.warning("size", "n1", "large value")  # another kind: its own warning
    throttled.warning("open", "n2", "bad value %s", "n2")
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "bad value n1",
        "large value",
        "bad value n2",
    ]
    throttled.every = 0.0
    throttled.warning("open", "n1", "again")
    assert caplog.records[-1].getMessage() == "again"
