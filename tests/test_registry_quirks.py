"""Registries as they are, through every driver: the deviations of issue 18, item 2.

Each test runs a strict loopback stand-in of the registry it names (tests/peers/quirks.py: what
each answers, and why nothing real can play it) through every driver of the handshake
(tests/_drivers.py). Counts are exact: token requests and registry requests as the stand-in
received them.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from asyncauth import Chain, Credential
from asyncauth._registry.auth import RegistryAuth

from ._drivers import open_client
from ._fakes import Fixed
from ._secrets import secret
from .peers.quirks import MANIFEST, MANIFEST_PATH, REFUSED_POST, PublicEcr, Quay, RefusingOAuth

ECR_PASSWORD = secret("ecr-QUIRK-password-1", user="AWS")
IDENTITY = secret("idt-QUIRK-refresh-2")
QUAY_PASSWORD = secret("quay-QUIRK-password-3", user="robot")


def auth_for(credential: Credential, **kwargs: Any) -> RegistryAuth:
    return RegistryAuth(Chain([Fixed(credential)]), **kwargs)


async def test_public_ecr_a_cached_token_answered_400_is_replaced_once(driver: str) -> None:
    """public.ecr.aws answers an expired token with 400 and no challenge: the token is dropped
    and the request sent once more with a fresh one, instead of the 400 until the cached
    token's own (12 h) expiry."""
    with PublicEcr(ECR_PASSWORD) as ecr:
        url = ecr.url + MANIFEST_PATH
        async with open_client(driver, auth_for(Credential("AWS", ECR_PASSWORD))) as http:
            assert (await http.get(url)).status == 200
            first = ecr.live.copy()
            ecr.expire(first.pop())
            answer = await http.get(url)
            assert (answer.status, answer.body) == (200, MANIFEST)
            assert (await http.get(url)).status == 200
        assert len(ecr.token_requests) == 2
        one, two = (f"Bearer publicecr-token-{n}" for n in (1, 2))
        assert ecr.authorizations() == [None, one, one, two, two]
        assert ecr.surprises == []


async def test_public_ecr_a_refusal_that_is_no_staleness_costs_one_retry_not_a_loop(
    driver: str,
) -> None:
    """A 403 that a fresh token does not cure: one retry per request that carried a cached
    token, and the 403 is the caller's; a token fetched for the request itself is not
    retried at all."""
    with PublicEcr(ECR_PASSWORD) as ecr:
        url = ecr.url + MANIFEST_PATH
        async with open_client(driver, auth_for(Credential("AWS", ECR_PASSWORD))) as http:
            ecr.deny_everything()
            assert (await http.get(url)).status == 403  # its own token: no retry
            assert len(ecr.token_requests) == 1
            assert (await http.get(url)).status == 403  # a cached token: one retry
        assert len(ecr.token_requests) == 2
        assert len(ecr.registry_requests) == 4  # the probe, the first, the second and its retry
        assert ecr.surprises == []


@pytest.mark.parametrize("registry", sorted(REFUSED_POST))
async def test_a_refresh_token_post_refused_falls_back_to_one_get_with_basic(
    driver: str, registry: str
) -> None:
    """ghcr.io answers the OAuth2 refresh-token POST 405, ACR 400, Artifactory 401: each gets
    the one GET with Basic user:identity-token that containerd sends."""
    user = "00000000-0000-0000-0000-000000000000"
    with RefusingOAuth(registry, user, IDENTITY) as server:
        credential = Credential(username=user, identity_token=IDENTITY)
        async with open_client(driver, auth_for(credential)) as http:
            assert (await http.get(server.url + MANIFEST_PATH)).status == 200
            assert (await http.get(server.url + MANIFEST_PATH)).status == 200
        assert [seen.method for seen in server.token_requests] == ["POST", "GET"]
        assert server.surprises == []


async def test_quay_a_token_without_expires_in_is_kept_60_seconds(
    driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Quay leaves ``expires_in`` out: the token spec's 60 s (reused within them, no longer)."""
    with Quay("robot", QUAY_PASSWORD) as quay:
        auth = auth_for(Credential("robot", QUAY_PASSWORD))
        with caplog.at_level(logging.DEBUG, logger="asyncauth.registry"):
            async with open_client(driver, auth) as http:
                for _ in range(3):
                    assert (await http.get(quay.url + MANIFEST_PATH)).status == 200
        assert len(quay.token_requests) == 1
        fetched = [r.getMessage() for r in caplog.records if "token for" in r.getMessage()]
        assert any(m.endswith(": basic, 60 s") for m in fetched), fetched
        assert quay.surprises == []
