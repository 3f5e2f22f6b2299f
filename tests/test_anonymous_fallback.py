"""``anonymous_fallback=True``: a pull whose credential the token server refuses is tried once
anonymously — never a push or a delete — against the real registry and token issuer, through
every driver (tests/_drivers.py), and through the aiohttp middleware's own options.

The issuer plays a registry with public images (``anonymous_pull``) and a stale login (a wrong
password): what aws/containers-roadmap#1296 and skaffold#4451 report, where a wrong login for a
registry blocks its public images.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from asyncauth import AuthenticationError, Chain, Credential
from asyncauth._registry.auth import RegistryAuth

from ._assertions import assert_hidden
from ._drivers import ACCEPT, open_client
from ._fakes import Fixed
from ._secrets import secret
from .peers.accounts import PeerAccounts
from .peers.images import PushedImage
from .peers.registry import RegistryServer
from .peers.token_issuer import TokenIssuer

STALE = secret("stale-FALLBACK-password-1", user="alice")


def stale_login(peer_accounts: PeerAccounts, **kwargs: Any) -> RegistryAuth:
    """The writer's user name with a password that is no longer (or never was) right."""
    credential = Credential(peer_accounts.writer[0], STALE)
    return RegistryAuth(Chain([Fixed(credential)]), **kwargs)


@pytest.fixture
def public_images(token_issuer: TokenIssuer) -> TokenIssuer:
    """The issuer grants anonymous pulls (restored after the test by ``token_issuer``)."""
    token_issuer.policy = dataclasses.replace(token_issuer.policy, anonymous_pull=True)
    return token_issuer


async def test_a_refused_pull_goes_anonymous_once_and_the_log_says_so(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    public_images: TokenIssuer,
    peer_accounts: PeerAccounts,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = token_registry.url + token_registry_image.manifest_path
    auth = stale_login(peer_accounts, anonymous_fallback=True)
    with caplog.at_level(logging.DEBUG, logger="asyncauth.registry"):
        async with open_client(driver, auth) as http:
            assert (await http.get(url)).status == 200
            assert (await http.get(url)).status == 200  # the anonymous token, from the cache
    assert public_images.count(grant="basic") == 1  # refused once, not again
    assert public_images.count(grant="anonymous") == 1
    assert public_images.total == 2
    said = [r.getMessage() for r in caplog.records if "anonymous_fallback" in r.getMessage()]
    assert len(said) == 1, said
    assert f"refused basic credentials for user {peer_accounts.writer[0]}" in said[0]
    assert_hidden(caplog.text, STALE, where="the DEBUG log")


async def test_without_it_a_refused_pull_is_an_error(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    public_images: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    url = token_registry.url + token_registry_image.manifest_path
    async with open_client(driver, stale_login(peer_accounts)) as http:
        with pytest.raises(AuthenticationError, match="credentials were refused"):
            await http.get(url)
    assert public_images.total == 1
    assert public_images.count(grant="anonymous") == 0


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_never_for_a_push_or_a_delete(
    driver: str,
    method: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    public_images: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    url = f"{token_registry.url}/v2/peers/app/manifests/{token_registry_image.digest}"
    content = b"{}" if method == "PUT" else None
    async with open_client(driver, stale_login(peer_accounts, anonymous_fallback=True)) as http:
        with pytest.raises(AuthenticationError, match="credentials were refused"):
            await http.request(method, url, content=content)
    assert public_images.total == 1
    assert public_images.count(grant="anonymous") == 0


async def test_a_private_image_refuses_the_anonymous_try_and_the_error_says_whose_login(
    driver: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    """No public pulls: the anonymous token carries no access, the registry refuses it, and
    the error names the refused login instead of a bare 401; no loop."""
    url = token_registry.url + token_registry_image.manifest_path
    auth = stale_login(peer_accounts, anonymous_fallback=True)
    async with open_client(driver, auth) as http:
        with pytest.raises(AuthenticationError) as caught:
            await http.get(url)
    message = str(caught.value)
    assert f"refused basic credentials for user {peer_accounts.writer[0]}" in message
    assert "refused the anonymous try too" in message
    assert_hidden(message, STALE, where="the error")
    assert token_issuer.total == 2  # the refused login, the anonymous token
    # The probe, the refused login, the anonymous token, the anonymous try: nothing more.
    assert http.statuses == [401, 401, 200, 401]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_aiohttp_middleware_takes_the_option(
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    public_images: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    import aiohttp

    from asyncauth.aiohttp import RegistryAuthMiddleware

    chain = Chain([Fixed(Credential(peer_accounts.writer[0], STALE))])
    middleware = RegistryAuthMiddleware(chain, anonymous_fallback=True)
    url = token_registry.url + token_registry_image.manifest_path
    async with (
        aiohttp.ClientSession(middlewares=(middleware,), headers=ACCEPT) as session,
        session.get(url) as response,
    ):
        assert response.status == 200
    assert public_images.count(grant="anonymous") == 1
