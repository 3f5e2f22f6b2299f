"""ECR: GetAuthorizationToken from moto's server, credentials from a strict IMDSv2 stand-in.

moto serves ECR; it is reached either through ``AWS_ENDPOINT_URL_ECR`` (botocore's own endpoint
override) or through the pluggable transport. Debian's ``docker-credential-ecr-login`` is run
against the same emulator (moto's proxy mode) as a cross-check: both must yield one credential.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import ssl
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest

from asyncauth import Chain, Credential, Outcome, ResolverError, Resource
from asyncauth._sources.ecr import ECRResolver, decode_authorization_token, load_config_enabled
from tests._assertions import assert_hidden

from .peers._tools import require_tool
from .peers.clouds import (
    ECR_ACCOUNT,
    ECRPublic,
    IMDSv2,
    MotoProxy,
    Resetter,
    RoutingTransport,
)

PRIVATE = f"{ECR_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/team/app:1.0"
MOTO_PASSWORD = f"{ECR_ACCOUNT}-auth-token"  # what moto answers for that registry id
MOTO_EXPIRES_AT = 1420070400.0  # moto's fixed expiresAt: 2015-01-01


@pytest.fixture
def aws_keys(monkeypatch: pytest.MonkeyPatch, cloud_env: dict[str, str]) -> dict[str, str]:
    """Static keys in the environment (the first link of the AWS credential chain)."""
    keys = {"AWS_ACCESS_KEY_ID": "AKIAASYNCAUTHTEST001", "AWS_SECRET_ACCESS_KEY": "s3cr3t/" * 5}
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    return keys


async def test_private_ecr_through_the_endpoint_variable(
    moto_server: str, aws_keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", f"http://{moto_server}")
    credential = await ECRResolver(environ={}).resolve(Resource.parse(PRIVATE))
    assert credential == Credential(username="AWS", password=MOTO_PASSWORD)
    assert credential.expires_at == MOTO_EXPIRES_AT


async def test_private_ecr_through_the_transport(
    moto_server: str, aws_keys: dict[str, str]
) -> None:
    async with RoutingTransport({"api.ecr.eu-west-1.amazonaws.com": moto_server}) as transport:
        credential = await ECRResolver(environ={}, transport=transport).resolve(
            Resource.parse(PRIVATE)
        )
    assert credential == Credential(username="AWS", password=MOTO_PASSWORD)
    assert transport.calls == ["POST https://api.ecr.eu-west-1.amazonaws.com/"]
    assert (
        transport.headers[0]["x-amz-target"]
        == "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
    )
    assert "/eu-west-1/ecr/aws4_request" in transport.headers[0]["authorization"]


@pytest.mark.parametrize(
    ("reference", "api_host"),
    [
        (
            f"{ECR_ACCOUNT}.dkr.ecr-fips.us-east-1.amazonaws.com/a",
            "api.ecr-fips.us-east-1.amazonaws.com",
        ),
        (
            f"{ECR_ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn/a",
            "api.ecr.cn-north-1.amazonaws.com.cn",
        ),
    ],
)
async def test_region_and_endpoint_come_from_the_host(
    moto_server: str, aws_keys: dict[str, str], reference: str, api_host: str
) -> None:
    async with RoutingTransport({api_host: moto_server}) as transport:
        credential = await ECRResolver(environ={}, transport=transport).resolve(
            Resource.parse(reference)
        )
    assert credential is not None
    assert credential.password == MOTO_PASSWORD
    assert transport.calls == [f"POST https://{api_host}/"]


async def test_credentials_from_a_strict_imdsv2(
    moto_server: str, cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with IMDSv2() as imds:
        monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url)
        async with RoutingTransport({"api.ecr.eu-west-1.amazonaws.com": moto_server}) as transport:
            credential = await ECRResolver(environ={}, transport=transport).resolve(
                Resource.parse(PRIVATE)
            )
    assert credential is not None
    assert credential.password == MOTO_PASSWORD
    # IMDSv2: a token first (with its TTL), then every GET carries it.
    first = imds.seen[0]
    assert (first.method, first.path) == ("PUT", IMDSv2.TOKEN_PATH)
    assert int(first.headers["x-aws-ec2-metadata-token-ttl-seconds"]) > 0
    gets = [s for s in imds.seen if s.method == "GET"]
    assert [g.path for g in gets] == [IMDSv2.ROLE_PATH, IMDSv2.ROLE_PATH + imds.role]
    assert all(g.headers.get("x-aws-ec2-metadata-token") for g in gets)
    # The ECR call was signed with the role's temporary credentials.
    headers = transport.headers[0]
    assert f"Credential={imds.access_key_id}/" in headers["authorization"]
    assert headers["x-amz-security-token"] == imds.session_token


async def test_the_imdsv2_stand_in_is_as_strict_as_the_real_one() -> None:
    with IMDSv2() as imds:
        async with httpx.AsyncClient(base_url=imds.url) as client:
            role = IMDSv2.ROLE_PATH
            assert (await client.get(role)).status_code == 401  # no token: IMDSv2 only
            assert (await client.put(IMDSv2.TOKEN_PATH)).status_code == 400  # TTL required
            ttl = {"X-aws-ec2-metadata-token-ttl-seconds": "0"}
            assert (await client.put(IMDSv2.TOKEN_PATH, headers=ttl)).status_code == 400
            ttl = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
            forwarded = {**ttl, "X-Forwarded-For": "10.0.0.1"}
            assert (await client.put(IMDSv2.TOKEN_PATH, headers=forwarded)).status_code == 403
            token = (await client.put(IMDSv2.TOKEN_PATH, headers=ttl)).text
            assert (
                await client.get(role, headers={"X-aws-ec2-metadata-token": "forged"})
            ).status_code == 401
            authorised = {"X-aws-ec2-metadata-token": token}
            assert (await client.get(role, headers=authorised)).text == imds.role
            assert (
                await client.get("/latest/meta-data/nope", headers=authorised)
            ).status_code == 404


@pytest.mark.parametrize(
    ("value", "loads"), [(None, False), ("true", True), ("1", True), ("yes", False)]
)
async def test_aws_sdk_load_config_decides_whether_the_config_file_counts(
    moto_server: str,
    cloud_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    value: str | None,
    loads: bool,
) -> None:
    config_file = os.environ["AWS_CONFIG_FILE"]
    with open(config_file, "w") as file:  # noqa: ASYNC230 - a test's setup
        file.write("[default]\naws_access_key_id = AKIAFROMCONFIGFILE01\n")
        file.write("aws_secret_access_key = config-secret\n")
    environ = {} if value is None else {"AWS_SDK_LOAD_CONFIG": value}
    assert load_config_enabled(environ) is loads
    async with RoutingTransport({"api.ecr.eu-west-1.amazonaws.com": moto_server}) as transport:
        credential = await ECRResolver(environ=environ, transport=transport).resolve(
            Resource.parse(PRIVATE)
        )
    if loads:
        assert credential is not None
        assert "Credential=AKIAFROMCONFIGFILE01/" in transport.headers[0]["authorization"]
    else:
        assert credential is None  # no AWS identity at all: no opinion
        assert transport.calls == []


async def test_ecr_public_through_its_endpoint_variable(
    aws_keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with ECRPublic() as public:
        monkeypatch.setenv("AWS_ENDPOINT_URL_ECR_PUBLIC", public.url)
        credential = await ECRResolver(environ={}).resolve(Resource.parse("public.ecr.aws/o/app"))
    assert credential is not None
    assert (credential.username, credential.password) == ("AWS", public.password)
    assert credential.expires_at is not None
    assert credential.expires_at > time.time() + 11 * 3600
    assert "/us-east-1/ecr-public/aws4_request" in public.seen[0].headers["authorization"]


async def test_a_live_token_is_cached_and_an_expired_one_is_not(
    moto_server: str, aws_keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with ECRPublic() as public:
        monkeypatch.setenv("AWS_ENDPOINT_URL_ECR_PUBLIC", public.url)
        # With a transport, even the endpoint override's requests go through it.
        routes = {"api.ecr.eu-west-1.amazonaws.com": moto_server, "127.0.0.1": public.address}
        async with RoutingTransport(routes) as transport:
            chain = Chain([ECRResolver(environ={}, transport=transport)])
            for _ in range(3):
                assert (await chain.resolve("public.ecr.aws/o/app")).source == "ecr"
                # moto's token expired in 2015: used, but never cached.
                assert (await chain.resolve(PRIVATE)).credential.password == MOTO_PASSWORD
            assert len(public.seen) == 1
            assert transport.calls.count("POST https://api.ecr.eu-west-1.amazonaws.com/") == 3
            # Every repository of one registry shares the one token.
            await chain.resolve("public.ecr.aws/other/thing")
            assert len(public.seen) == 1


async def test_no_aws_identity_is_no_opinion(cloud_env: dict[str, str]) -> None:
    from .peers.clouds import FailingTransport

    transport = FailingTransport()
    chain = Chain([ECRResolver(environ={}, transport=transport)])
    resolution = await chain.resolve(PRIVATE)
    assert resolution.source is None
    assert resolution.trace[0].outcome is Outcome.NO_MATCH
    assert transport.calls == []


async def test_an_api_error_is_traced_without_secrets(
    aws_keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with ECRPublic(fail_with="AccessDeniedException") as public:
        monkeypatch.setenv("AWS_ENDPOINT_URL_ECR_PUBLIC", public.url)
        resolution = await Chain([ECRResolver(environ={})]).resolve("public.ecr.aws/o/app")
    entry = resolution.trace[0]
    assert entry.outcome is Outcome.ERROR
    assert entry.detail is not None
    assert "AccessDeniedException" in entry.detail
    assert "IMGPKG_ENABLE_IAAS_AUTH=false" in entry.detail
    assert_hidden(repr(resolution), aws_keys["AWS_SECRET_ACCESS_KEY"], where="trace")


async def test_a_reset_connection_is_traced_with_its_cause(aws_keys: dict[str, str]) -> None:
    # Under asyncio httpx's read error has no text, and the trace used to end at botocore's
    # "An HTTP Client raised an unhandled exception: " (the resolution benchmark's misses).
    with Resetter() as peer:
        routes = {"api.ecr.eu-west-1.amazonaws.com": peer.address}
        async with RoutingTransport(routes) as transport:
            chain = Chain([ECRResolver(environ={}, transport=transport)])
            resolution = await chain.resolve(PRIVATE)
    assert len(peer.requests) == 1
    assert peer.requests[0].startswith(b"POST / HTTP/1.1\r\n")
    assert b"GetAuthorizationToken" in peer.requests[0]
    entry = resolution.trace[0]
    assert resolution.source is None
    assert entry.outcome is Outcome.ERROR
    detail = entry.detail or ""
    cause = detail.partition("An HTTP Client raised an unhandled exception:")[2]
    assert cause.split(";")[0].strip(), detail
    assert "reset" in cause.lower() or "disconnected" in cause.lower(), detail
    assert_hidden(repr(resolution), aws_keys["AWS_SECRET_ACCESS_KEY"], where="trace")


async def test_secrets_stay_out_of_reprs_traces_and_logs(
    moto_server: str,
    aws_keys: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="asyncauth")
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", f"http://{moto_server}")
    resolver = ECRResolver(environ={})
    resolution = await Chain([resolver]).resolve(PRIVATE)
    assert resolution.credential.password == MOTO_PASSWORD
    shown = " ".join(
        [repr(resolution), str(resolution.credential), repr(resolver), caplog.text]
        + [str(entry) for entry in resolution.trace]
    )
    assert_hidden(shown, MOTO_PASSWORD, aws_keys["AWS_SECRET_ACCESS_KEY"], where="output")
    assert "ECR GetAuthorizationToken for account 123456789012 in eu-west-1" in (
        resolution.trace[0].detail or ""
    )


def test_a_malformed_token_is_reported_without_its_content() -> None:
    assert decode_authorization_token(base64.b64encode(b"AWS:pw").decode()) == ("AWS", "pw")
    for bad in ("not base64!", base64.b64encode(b"no-colon-secret").decode()):
        with pytest.raises(ResolverError) as raised:
            decode_authorization_token(bad)
        assert_hidden(str(raised.value), bad, "no-colon-secret", where="message")


async def test_without_the_aws_extra_ecr_is_unavailable(
    aws_keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "aiobotocore", None)
    resolution = await Chain([ECRResolver(environ={})]).resolve(PRIVATE)
    entry = resolution.trace[0]
    assert entry.outcome is Outcome.UNAVAILABLE
    assert "pip install 'asyncauth[aws]'" in (entry.detail or "")


# --- cross-check with Debian's docker-credential-ecr-login ---------------------------------------


def _moto_proxy_transport(proxy: MotoProxy) -> httpx.AsyncHTTPTransport:
    context = ssl.create_default_context(cafile=proxy.ca_file)
    return httpx.AsyncHTTPTransport(proxy=proxy.url, verify=context)


async def test_same_credential_as_docker_credential_ecr_login(
    moto_proxy: MotoProxy, aws_keys: dict[str, str], tmp_path: Path
) -> None:
    """Both clients ask the same moto (in proxy mode) for the same registry's credential.

    The helper cannot be given an endpoint URL (it ignores ``AWS_ENDPOINT_URL_ECR``), so it
    reaches moto through ``HTTPS_PROXY`` and trusts moto's CA; asyncauth reaches the same proxy
    through its pluggable transport. Nothing leaves the machine: moto answers the AWS host itself.
    """
    helper = require_tool("docker-credential-ecr-login")
    registry = f"{ECR_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
    environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "HTTPS_PROXY": moto_proxy.url,
        "SSL_CERT_FILE": moto_proxy.ca_file,
        "AWS_ECR_DISABLE_CACHE": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
        **aws_keys,
    }
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [helper, "get"], input=registry.encode(), env=environment, check=False
        )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    theirs = json.loads(done.stdout)

    async with _moto_proxy_transport(moto_proxy) as transport:
        ours = await ECRResolver(environ={}, transport=transport).resolve(Resource.parse(registry))
    assert ours is not None
    assert (ours.username, ours.password) == (theirs["Username"], theirs["Secret"])
    assert theirs["Secret"] == MOTO_PASSWORD
