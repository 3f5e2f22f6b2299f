"""``RedisTokenStore`` against a real ``redis-server``: what it keeps, how, and for how long.

The fleet itself (many processes) is tests/test_fleet.py; here one process looks at the store
and at what lands in Redis, read back with ``redis-cli``.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from asyncauth import (
    AuthenticationError,
    Chain,
    ConfigError,
    Credential,
    FlagsResolver,
    RedisTokenStore,
    RegistryAuth,
    create_sync_client,
)

from ._assertions import assert_hidden
from ._fleet import new_key
from .peers.accounts import PeerAccounts
from .peers.images import PushedImage
from .peers.redis import RedisServer
from .peers.registry import RegistryServer
from .peers.tls import make_private_ca
from .peers.token_issuer import TokenIssuer

ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisTokenStore]:
    store = RedisTokenStore(redis_server.url, encryption_key=new_key())
    yield store
    await store.aclose()


def _auth(credential: tuple[str, str], store: RedisTokenStore | None) -> RegistryAuth:
    chain = Chain([FlagsResolver(username=credential[0], password=credential[1])])
    return RegistryAuth(chain, token_store=store if store is not None else False)


def _commands(server: RedisServer) -> dict[str, int]:
    """How many times each command ran on the server (``INFO commandstats``)."""
    stats = server.cli("INFO", "commandstats").decode()
    return {m[1]: int(m[2]) for m in re.finditer(r"cmdstat_(\w+):calls=(\d+)", stats)}


async def test_names_are_keyed_hashes_and_values_do_not_show_what_they_hold(
    redis_server: RedisServer, store: RedisTokenStore
) -> None:
    name = store.name(b"material with pw-SECRET-1")
    assert re.fullmatch(r"asyncauth:[0-9a-f]{64}", name)
    assert await store.get(name) is None
    await store.set(name, b"token-CANARY-1", 60)
    assert await store.get(name) == b"token-CANARY-1"
    contents = redis_server.contents().decode("latin-1")
    assert_hidden(contents, "token-CANARY-1", "pw-SECRET-1", where="Redis")
    # Another key names the same material differently, and cannot read the value.
    other = RedisTokenStore(redis_server.url, encryption_key=new_key())
    assert other.name(b"material with pw-SECRET-1") != name
    assert await other.get(name) is None
    await other.aclose()


async def test_a_lease_is_taken_once_and_given_back_only_by_its_holder(
    redis_server: RedisServer, store: RedisTokenStore
) -> None:
    name = store.name(b"lease")
    assert await store.lease(name, 5.0)
    assert not await store.lease(name, 5.0)
    other = RedisTokenStore(redis_server.url, encryption_key=new_key())
    await other.release(name)  # not its lease: nothing happens
    assert redis_server.keys("asyncauth:l:*")
    await store.release(name)
    assert redis_server.keys("asyncauth:l:*") == []
    assert await other.lease(name, 0.3)
    await anyio.sleep(0.5)  # a lease runs out by itself
    assert await store.lease(name, 5.0)
    await other.aclose()


async def test_values_expire_in_redis_with_their_ttl(
    redis_server: RedisServer, store: RedisTokenStore
) -> None:
    name = store.name(b"short")
    await store.set(name, b"value", 0.4)
    assert await store.get(name) == b"value"
    await anyio.sleep(0.6)
    assert await store.get(name) is None
    await store.set(name, b"value", 0)  # nothing kept for no time
    assert redis_server.keys("asyncauth:t:*") == []


async def test_a_value_that_does_not_open_is_a_miss_logged_once_per_name(
    redis_server: RedisServer, store: RedisTokenStore, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = store.name(b"first"), store.name(b"second")
    await store.set(first, b"value", 60)
    [key] = redis_server.keys("asyncauth:t:*")
    redis_server.cli("SET", key, last=b"\x02" + b"x" * 40)  # tampered
    for _ in range(20):  # a waiter polls: one warning, not twenty
        assert await store.get(first) is None
    await store.set(first, b"value", 60)
    moved = key.replace(first.split(":")[1], second.split(":")[1])
    redis_server.cli("COPY", key, moved)
    assert await store.get(second) is None  # a value copied under another name
    redis_server.cli("SET", key, last=b"\x82" + bytes(8) + b"plain")  # never accepted in clear
    assert await store.get(first) is None
    assert caplog.text.count("did not decrypt") == 2  # once per name


async def test_without_a_key_the_store_is_refused_unless_insecure_on_purpose(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConfigError, match="encryption_key is missing"):
        RedisTokenStore(redis_server.url, encryption_key=None)
    store = RedisTokenStore(redis_server.url, encryption_key=None, insecure_plaintext=True)
    assert "keeps tokens in clear" in caplog.text
    name = store.name(b"x")
    await store.set(name, b"clear value", 60)
    assert await store.get(name) == b"clear value"
    assert b"clear value" in redis_server.contents()
    await store.aclose()


def test_keys_and_arguments_are_checked_with_clear_errors(redis_server: RedisServer) -> None:
    for key in ("short", b"\x00" * 31, "not base64 at all!", 42):
        with pytest.raises(ConfigError, match="encryption_key") as raised:
            RedisTokenStore(redis_server.url, encryption_key=key)  # type: ignore[arg-type]
        if isinstance(key, str):
            assert_hidden(str(raised.value), key, where="message")
    key = new_key()
    assert RedisTokenStore(redis_server.url, encryption_key=key.replace("+", "-").replace("/", "_"))
    with pytest.raises(ConfigError, match="namespace"):
        RedisTokenStore(redis_server.url, encryption_key=key, namespace="a b")
    with pytest.raises(ConfigError, match="rediss://"):
        RedisTokenStore(redis_server.url, encryption_key=key, ca_file="/etc/ssl/ca.pem")
    with pytest.raises(ConfigError, match="RedisTokenStore url: unknown option 'bogus'"):
        RedisTokenStore(redis_server.url + "?bogus=1", encryption_key=key)
    store = RedisTokenStore(
        "redis://:pw-SECRET-9@127.0.0.1:1/2?namespace=team.a&lease=4&timeout=0.5",
        encryption_key=key,
    )
    assert (store.namespace, store.lease_time, store.timeout) == ("team.a", 4.0, 0.5)
    assert repr(store) == "RedisTokenStore('redis://127.0.0.1:1/2', namespace='team.a')"


async def test_tokens_expire_in_redis_when_they_expire_at_the_token_server(
    redis_server: RedisServer,
    store: RedisTokenStore,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    """The issuer's tokens live 300 s; Redis keeps them 300 s less the margin (10 s)."""
    async with httpx.AsyncClient(auth=_auth(peer_accounts.writer, store), headers=ACCEPT) as http:
        url = token_registry.url + token_registry_image.manifest_path
        assert (await http.get(url)).status_code == 200
    [key] = redis_server.keys("asyncauth:t:*")
    milliseconds = int(redis_server.cli("PTTL", key))
    assert 280_000 < milliseconds <= 290_000


async def test_the_warm_path_never_touches_redis(
    redis_server: RedisServer,
    store: RedisTokenStore,
    token_registry: RegistryServer,
    seeded_repositories: list[PushedImage],
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    urls = [token_registry.url + image.manifest_path for image in seeded_repositories[:5]]
    async with httpx.AsyncClient(auth=_auth(peer_accounts.writer, store), headers=ACCEPT) as http:
        for url in urls:
            assert (await http.get(url)).status_code == 200
        before = _commands(redis_server)
        for _ in range(20):
            for url in urls:
                assert (await http.get(url)).status_code == 200
        after = _commands(redis_server)
    after.pop("info", None), before.pop("info", None)
    assert after == before
    assert token_issuer.total == 5


async def test_a_refused_fetch_gives_the_fleet_lease_back_at_once(
    redis_server: RedisServer,
    store: RedisTokenStore,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
) -> None:
    auth = _auth(("alice", "wrong-password"), store)
    async with httpx.AsyncClient(auth=auth, headers=ACCEPT) as http:
        with pytest.raises(AuthenticationError):
            await http.get(token_registry.url + token_registry_image.manifest_path)
    assert _commands(redis_server).get("eval") == 2  # the lease, and its compare-and-delete
    assert redis_server.keys("asyncauth:l:*") == []


def test_sync_clients_share_tokens_through_redis(
    redis_server: RedisServer,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    store = RedisTokenStore(redis_server.url, encryption_key=new_key())
    url = token_registry.url + token_registry_image.manifest_path
    for _ in range(3):
        auth = _auth(peer_accounts.writer, store)
        with create_sync_client(auth=auth, headers=ACCEPT) as http:
            assert http.get(url).status_code == 200
    assert token_issuer.total == 1
    anyio.run(store.aclose)


async def test_redis_down_costs_a_warning_never_a_request(
    token_registry: RegistryServer,
    seeded_repositories: list[PushedImage],
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path / "never-started")  # a port where nothing listens
    store = RedisTokenStore(server.url, encryption_key=new_key())
    urls = [token_registry.url + image.manifest_path for image in seeded_repositories[:10]]
    started = time.monotonic()
    async with httpx.AsyncClient(auth=_auth(peer_accounts.writer, store), headers=ACCEPT) as http:
        statuses = [(await http.get(url)).status_code for url in urls]
    assert statuses == [200] * 10
    assert time.monotonic() - started < 10
    assert caplog.text.count("shared token store failed") == 1
    assert f"failed (Unable to establish a connection to 127.0.0.1:{server.port} " in caplog.text
    assert "(Connection refused))" in caplog.text  # the cause, beneath coredis's words
    await store.aclose()


async def test_rediss_with_the_servers_private_ca(
    tmp_path: Path,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ca = make_private_ca(tmp_path / "ca")
    url = token_registry.url + token_registry_image.manifest_path
    with RedisServer(tmp_path / "tls", tls=ca) as server:
        assert server.url.startswith("rediss://")
        trusted = RedisTokenStore(
            f"{server.url}?ca_file={ca.ca_certificate}", encryption_key=new_key()
        )
        untrusted = RedisTokenStore(server.url, encryption_key=new_key())  # system CAs only
        for store in (trusted, untrusted):
            async with httpx.AsyncClient(auth=_auth(peer_accounts.writer, store)) as http:
                assert (await http.get(url, headers=ACCEPT)).status_code == 200
            await store.aclose()
        assert len(server.keys("asyncauth:t:*")) == 1  # only the store that trusts the CA wrote
    assert caplog.text.count("shared token store failed") == 1


async def test_one_client_per_event_loop_closed_by_aclose(
    store: RedisTokenStore,
) -> None:
    name = store.name(b"loops")
    await store.set(name, b"v", 60)
    assert len(store._clients) == 1

    def other_loop() -> None:
        async def use() -> None:
            assert await store.get(name) == b"v"
            assert len(store._clients) == 2

        anyio.run(use)  # its loop ends: its client closes with it

    thread = threading.Thread(target=other_loop)
    thread.start()
    await anyio.to_thread.run_sync(thread.join)
    await store.aclose()
    assert len(store._clients) == 0
    assert await store.get(name) == b"v"  # used again: opens a client again


def test_the_store_keeps_no_secret_in_its_repr_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = RedisTokenStore(
        "rediss://user:pw-SECRET-7@127.0.0.1:1/0?timeout=0.2", encryption_key=new_key()
    )
    auth = RegistryAuth(Chain([FlagsResolver(username="u", password="p")]), token_store=store)
    shown = repr(store) + repr(auth)

    async def use() -> None:
        with pytest.raises(ConnectionError) as raised:
            await store.get(store.name(b"x"))
        nonlocal shown
        shown += str(raised.value)

    anyio.run(use)
    assert_hidden(shown + caplog.text, "pw-SECRET-7", where="repr, error or log")
    assert Credential(password="pw-SECRET-7").fingerprint not in shown


def test_the_cli_shares_tokens_through_the_environment(
    redis_server: RedisServer,
    tmp_path: Path,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    """Two runs of ``asyncauth token``: the second one's token comes from Redis."""
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "IMGPKG_ENABLE_IAAS_AUTH": "false",
        "IMGPKG_REGISTRY_HOSTNAME_0": token_registry.host,
        "IMGPKG_REGISTRY_USERNAME_0": peer_accounts.writer[0],
        "IMGPKG_REGISTRY_PASSWORD_0": peer_accounts.writer[1],
        "ASYNCAUTH_TOKEN_STORE": redis_server.url,
        "ASYNCAUTH_TOKEN_STORE_KEY": new_key(),
    }
    tokens = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "asyncauth", "token", f"{token_registry.host}/peers/app"],
            env=environ, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        tokens.append(done.stdout.strip())
    assert tokens[0] == tokens[1]
    assert token_issuer.total == 1
    assert_hidden(redis_server.contents().decode("latin-1"), tokens[0], where="Redis")
