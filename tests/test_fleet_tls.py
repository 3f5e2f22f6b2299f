"""The fleet store over TLS: a real ``redis-server`` (and ``redis-sentinel``) serving TLS only,
with a private CA made here.

Debian's ``redis-server`` is built with TLS (``--tls-port``): these tests start it so, and would
fail, not skip, where it is not. A store that does not trust the server's CA must refuse it, say
why in its warning, and cost requests nothing but a direct fetch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from asyncauth import Chain, FlagsResolver, RedisTokenStore, RegistryAuth

from ._fleet import new_key
from .peers.accounts import PeerAccounts
from .peers.images import PushedImage
from .peers.redis import RedisSentinels, RedisServer
from .peers.registry import RegistryServer
from .peers.tls import make_private_ca
from .peers.token_issuer import TokenIssuer

ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
REFUSED = "certificate verify failed: self-signed certificate in certificate chain"
"""OpenSSL's words for a chain that ends in a CA the client does not trust."""


def _auth(credential: tuple[str, str], store: RedisTokenStore) -> RegistryAuth:
    chain = Chain([FlagsResolver(username=credential[0], password=credential[1])])
    return RegistryAuth(chain, token_store=store)


def _failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "shared token store failed" in record.getMessage()
    ]


async def test_a_wrong_ca_is_refused_with_a_warning_naming_the_certificate_and_requests_succeed(
    tmp_path: Path,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ca, wrong = make_private_ca(tmp_path / "ca"), make_private_ca(tmp_path / "another-ca")
    url = token_registry.url + token_registry_image.manifest_path
    with RedisServer(tmp_path / "tls", tls=ca) as server:
        refusing = RedisTokenStore(
            f"{server.url}?ca_file={wrong.ca_certificate}", encryption_key=new_key()
        )
        async with httpx.AsyncClient(auth=_auth(peer_accounts.writer, refusing)) as http:
            statuses = [(await http.get(url, headers=ACCEPT)).status_code for _ in range(3)]
        assert statuses == [200] * 3
        assert token_issuer.total == 1  # fetched directly once, then from the process's cache
        assert server.keys() == []
        [warning] = _failures(caplog)
        assert f"(TLS: {REFUSED}))" in warning, warning
        assert f"RedisTokenStore('rediss://127.0.0.1:{server.port}/0'" in warning
        with pytest.raises(ConnectionError, match=REFUSED):
            await refusing.get(refusing.name(b"x"))
        await refusing.aclose()
        trusting = RedisTokenStore(
            f"{server.url}?ca_file={ca.ca_certificate}", encryption_key=new_key()
        )
        async with httpx.AsyncClient(auth=_auth(peer_accounts.writer, trusting)) as http:
            assert (await http.get(url, headers=ACCEPT)).status_code == 200
        assert len(server.keys("asyncauth:t:*")) == 1  # the store that trusts the CA wrote it
        await trusting.aclose()


async def test_rediss_sentinel_reaches_the_master_over_tls_and_refuses_a_wrong_ca(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``rediss+sentinel://``: the sentinel and the master it names are both asked over TLS."""
    ca, wrong = make_private_ca(tmp_path / "ca"), make_private_ca(tmp_path / "another-ca")
    with RedisSentinels(tmp_path / "sentinel", tls=ca, sentinels=1) as group:
        assert group.url.startswith("rediss+sentinel://")
        store = RedisTokenStore(
            f"{group.url}?ca_file={ca.ca_certificate}", encryption_key=new_key()
        )
        name = store.name(b"over tls")
        await store.set(name, b"token", 60)
        assert await store.get(name) == b"token"
        assert len(group.primary().keys("asyncauth:t:*")) == 1
        await store.aclose()
        refusing = RedisTokenStore(
            f"{group.url}?ca_file={wrong.ca_certificate}", encryption_key=new_key()
        )
        with pytest.raises(ConnectionError, match=REFUSED):
            await refusing.get(name)
        await refusing.aclose()
