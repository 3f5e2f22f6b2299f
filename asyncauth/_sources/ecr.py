"""AWS ECR: ``GetAuthorizationToken`` with the standard AWS credential chain.

For a private registry host (``<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`` and the
other partitions) the resolver calls ECR's ``GetAuthorizationToken`` in the host's region; for
``public.ecr.aws`` it calls ECR Public's in ``us-east-1``. The token is ``base64("AWS:<password>")``
and expires (12 hours on AWS); the credential carries ``expires_at`` so the chain caches it until
shortly before then, and never caches one that has already expired.

It runs on aiobotocore's httpx backend, made the session's default client config, so that the
credential providers (environment, shared files, SSO, web identity, container, IMDSv2) run under
trio too. The ECR API call goes through the caller's ``transport``; the credential providers use
aiobotocore's own client (see :mod:`asyncauth.transports.aws`).

botocore reads its variables (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL_ECR``,
``AWS_EC2_METADATA_SERVICE_ENDPOINT``...) from ``os.environ``. ``AWS_SDK_LOAD_CONFIG`` is read from
``environ``: as imgpkg (aws-sdk-go v1) does, the shared config file (``~/.aws/config``) is only
loaded when it is truthy; otherwise only the shared credentials file is.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Hashable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from .._credentials import Credential
from .._errors import ResolverError, ResolverUnavailableError
from .._resource import Resource
from .iaas import DEFAULT_IAAS_TIMEOUT, claims_ecr, disable_hint

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["ECRResolver", "decode_authorization_token", "load_config_enabled"]

EXTRA = "aws"
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})  # Go's strconv.ParseBool


def load_config_enabled(environ: Mapping[str, str]) -> bool:
    """Whether ``AWS_SDK_LOAD_CONFIG`` is truthy the way aws-sdk-go reads it (``ParseBool``).

    Values ``ParseBool`` rejects count as false, as in imgpkg.
    """
    return environ.get("AWS_SDK_LOAD_CONFIG", "") in _TRUE


def decode_authorization_token(token: str, *, what: str = "ECR") -> tuple[str, str]:
    """Split ``base64("user:password")`` into user and password.

    The message of a malformed token names where it came from and never shows any of it.
    """
    try:
        username, colon, password = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ResolverError(f"{what} returned an authorization token that is not base64") from None
    if not colon or not username or not password:
        raise ResolverError(f"{what} returned an authorization token that is not 'user:password'")
    return username, password


def _import_aws() -> tuple[ModuleType, ModuleType, ModuleType, ModuleType]:
    try:
        import aiobotocore.config  # type: ignore[import-untyped]
        import aiobotocore.session  # type: ignore[import-untyped]
        import botocore.exceptions  # type: ignore[import-untyped]

        from .._transports import aws
    except ImportError as exc:
        raise ResolverUnavailableError(
            f"ECR needs aiobotocore with httpx ({exc.name or 'aiobotocore'} is not installed): "
            f"pip install 'asyncauth[{EXTRA}]'"
        ) from None
    return aiobotocore.session, aiobotocore.config, botocore.exceptions, aws


_LOADER: Any = None
_WARM: set[str] = set()


def _warm_loader(service: str) -> Any:
    """botocore's data loader, shared by every session, with ``service``'s models read.

    Each lookup makes a fresh session (no event-loop-bound state outlives a lookup), but the
    models are megabytes of JSON: read once per process, in a worker thread, not on the loop.
    """
    global _LOADER
    import botocore.loaders  # type: ignore[import-untyped]

    if _LOADER is None:
        _LOADER = botocore.loaders.create_loader()
    if service not in _WARM:
        for name in ("endpoints", "sdk-default-configuration", "partitions", "_retry"):
            _LOADER.load_data(name)
        for kind in ("service-2", "endpoint-rule-set-1"):
            _LOADER.load_service_model(service, kind)
        _WARM.add(service)
    return _LOADER


def _epoch(value: object) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None


class ECRResolver:
    """Credentials for Amazon ECR and ECR Public from the AWS credential chain.

    ``environ`` (default ``os.environ``) is read for ``AWS_SDK_LOAD_CONFIG`` only; botocore reads
    the rest from ``os.environ``. ``load_config`` overrides ``AWS_SDK_LOAD_CONFIG``.
    ``transport`` carries the ECR API call. ``timeout`` bounds a lookup, credential discovery
    included.
    """

    name = "ecr"
    disable_hint = disable_hint("ecr")

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_IAAS_TIMEOUT,
        load_config: bool | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        self.load_config = load_config_enabled(environ) if load_config is None else load_config
        self.transport = transport
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ECRResolver(load_config={self.load_config!r}, timeout={self.timeout!r})"

    def cache_key(self, resource: Resource) -> Hashable | None:
        """One token per account, region and endpoint: every repository shares it."""
        host = claims_ecr(resource)
        return None if host is None else ("ecr", host)

    def explain(self, resource: Resource) -> str | None:
        host = claims_ecr(resource)
        if host is None:
            return None
        if host.public:
            return "ECR Public GetAuthorizationToken (us-east-1) with the AWS credential chain"
        fips = " (FIPS endpoint)" if host.fips else ""
        return (
            f"ECR GetAuthorizationToken for account {host.account} in {host.region}{fips} "
            "with the AWS credential chain"
        )

    def claims(self, resource: Resource) -> bool:
        """Whether ``resource`` is on a registry this cloud serves (pure; no I/O)."""
        return claims_ecr(resource) is not None

    async def resolve(self, resource: Resource) -> Credential | None:
        host = claims_ecr(resource)
        if host is None:
            return None
        # Importing botocore takes most of a second: keep the event loop free meanwhile. Both
        # steps are idempotent, so a timeout abandons the thread rather than waiting for it
        # (it finishes in the background and the next lookup reuses its work): the chain's
        # timeout stays a hard bound.
        session_mod, config_mod, errors, aws = await anyio.to_thread.run_sync(
            _import_aws, abandon_on_cancel=True
        )

        service = "ecr-public" if host.public else "ecr"
        loader = await anyio.to_thread.run_sync(_warm_loader, service, abandon_on_cancel=True)
        session = session_mod.AioSession()
        session.register_component("data_loader", loader)
        if not self.load_config:
            # aws-sdk-go v1 semantics: without AWS_SDK_LOAD_CONFIG only the credentials file.
            session.set_config_variable("config_file", os.devnull)
        session_cls = (
            aws.session_class(self.transport) if self.transport is not None else aws.HttpxSession
        )
        # The default client config is what the credential providers use: without it they
        # fall back to aiohttp, which does not run under trio.
        session.set_default_client_config(config_mod.AioConfig(http_session_cls=aws.HttpxSession))
        config = config_mod.AioConfig(
            http_session_cls=session_cls,
            use_fips_endpoint=host.fips,
            connect_timeout=min(self.timeout, 5.0),
            read_timeout=min(self.timeout, 5.0),
            retries={"total_max_attempts": 2, "mode": "standard"},
        )
        what = "ECR Public" if host.public else f"ECR in {host.region}"
        try:
            async with session.create_client(
                service, region_name=host.region, config=config
            ) as client:
                if host.public:
                    answer = await client.get_authorization_token()
                    data: Any = answer.get("authorizationData") or {}
                else:
                    answer = await client.get_authorization_token(registryIds=[host.account])
                    items = answer.get("authorizationData") or []
                    data = items[0] if items else {}
        except errors.NoCredentialsError:
            return None  # no AWS identity here: no opinion, ask the next source
        except errors.ClientError as exc:
            error = exc.response.get("Error", {})
            raise ResolverError(
                f"{what}: GetAuthorizationToken failed: "
                f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
            ) from None
        except errors.BotoCoreError as exc:
            raise ResolverError(f"{what}: {type(exc).__name__}: {exc}") from None

        token = data.get("authorizationToken") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise ResolverError(f"{what}: GetAuthorizationToken returned no authorization data")
        username, password = decode_authorization_token(token, what=what)
        return Credential(
            username=username, password=password, expires_at=_epoch(data.get("expiresAt"))
        )
