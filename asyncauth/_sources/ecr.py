"""AWS ECR: ``GetAuthorizationToken`` with the standard AWS credential chain.

For a private registry host (``<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`` and the
other partitions) the resolver calls ECR's ``GetAuthorizationToken`` in the host's region; for
``public.ecr.aws`` it calls ECR Public's in ``us-east-1``. The token is ``base64("AWS:<password>")``
and expires (12 hours on AWS); the credential carries ``expires_at`` so the chain caches it until
shortly before then, and never caches one that has already expired. ECR throttles
``GetAuthorizationToken`` at about one call per second: a throttled call is retried under
:data:`~asyncauth._http.retry.DEFAULT_RETRY`, and with a token store a fleet keeps to a budget
of :data:`DEFAULT_CALLS_PER_SECOND` calls per region, all its processes together
(:mod:`asyncauth._stores.budget`).

It runs on aiobotocore's httpx backend (through :mod:`asyncauth._sources.sdk.aws`, the one module
that touches aiobotocore's internals), so the credential providers (environment, shared files,
SSO, web identity, container, IMDSv2) run under trio too. The ECR API call goes through the
caller's ``transport``; the credential providers use aiobotocore's own client, under the same
bounds (each call at most 5 s, ``retry.attempts`` tries). Temporary keys are fetched before the
ECR call, so that a refusal by STS (EKS IRSA: ``AWS_ROLE_ARN`` and
``AWS_WEB_IDENTITY_TOKEN_FILE``) is reported as STS's, and the token file is checked first (a
missing file is named by its variable; a FIFO would block the event loop).

botocore reads its variables (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL_ECR``,
``AWS_EC2_METADATA_SERVICE_ENDPOINT``...) from ``os.environ``. ``AWS_SDK_LOAD_CONFIG`` is read from
``environ``: as imgpkg (aws-sdk-go v1) does, the shared config file (``~/.aws/config``) is only
loaded when it is truthy; otherwise only the shared credentials file is.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import anyio
import httpx

from .._chain import Bounded, Caching, Claiming, Explaining, Hinting, Sharing
from .._credentials import Credential
from .._errors import ResolverError, ResolverUnavailableError
from .._http.retry import DEFAULT_RETRY, RETRY_STATUSES, RetryPolicy
from .._resource import Resource
from .._stores.budget import budget_material, take_slot
from . import cloud

if TYPE_CHECKING:
    from types import ModuleType

    from .._stores.protocol import TokenStore

KEYCHAIN: Final = "ecr"
EXTRA: Final = "aws"
ECR_PUBLIC_HOST: Final = "public.ecr.aws"
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})  # Go's strconv.ParseBool
_PRIVATE = re.compile(
    r"\A(?P<account>\d{12})\.dkr[.-]ecr(?P<fips>-fips)?\.(?P<region>[a-z]{2}(?:-[a-z0-9]+)+)\."
    r"(?P<domain>amazonaws\.com(?:\.cn)?|on\.aws|sc2s\.sgov\.gov|c2s\.ic\.gov"
    r"|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)\Z"
)
THROTTLING_CODES: Final = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottledException",
        "SlowDown",
    }
)
"""AWS error codes that mean "slow down" (botocore's standard retry mode's list, abridged)."""
_CHAIN_LIMIT: Final = 12
"""How far down a wrapped error's ``__cause__``/``__context__`` chain a message is looked for."""
WEB_IDENTITY_CALL: Final = "AssumeRoleWithWebIdentity"
ROLE_VARIABLE: Final = "AWS_ROLE_ARN"
TOKEN_FILE_VARIABLE: Final = "AWS_WEB_IDENTITY_TOKEN_FILE"  # noqa: S105 - a name, not a secret
DEFAULT_CALLS_PER_SECOND: Final = 1.0
"""``GetAuthorizationToken`` calls a fleet sharing a token store makes per second, per region
and endpoint, all processes together (ECR documents about one per second)."""


@dataclass(frozen=True, slots=True)
class ECRHost:
    """What an ECR host name says: whose registry, where, and through which endpoint."""

    account: str | None
    """The 12-digit registry id; ``None`` for ECR Public."""
    region: str
    fips: bool = False
    public: bool = False


def ecr_host(host: str) -> ECRHost | None:
    """Parse an ECR registry host (private, FIPS, China, dual-stack, ISO partitions, Public).

    >>> ecr_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
    ECRHost(account='123456789012', region='eu-west-1', fips=False, public=False)
    >>> ecr_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil.example") is None
    True
    """
    if host == ECR_PUBLIC_HOST:
        return ECRHost(account=None, region="us-east-1", public=True)
    match = _PRIVATE.match(host)
    if match is None:
        return None
    return ECRHost(match["account"], match["region"], fips=match["fips"] is not None)


def claims_ecr(resource: Resource) -> ECRHost | None:
    """The ECR registry ``resource`` is on (default HTTPS port only), or ``None``."""
    host = cloud.claimable_host(resource)
    return None if host is None else ecr_host(host)


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


def _import_aws() -> ModuleType:
    try:
        # The SDK first: its fence may be imported already while the SDK is now unavailable.
        import aiobotocore.session  # type: ignore[import-untyped]  # noqa: F401

        from .sdk import aws
    except ImportError as exc:
        raise ResolverUnavailableError(
            f"ECR needs aiobotocore with httpx ({exc.name or 'aiobotocore'} is not installed): "
            f"pip install 'asyncauth[{EXTRA}]'"
        ) from None
    return aws


def _epoch(value: object) -> float | None:
    if isinstance(value, datetime):
        try:
            return cloud.expiry_epoch(value.timestamp())
        except (OverflowError, ValueError, OSError):
            return None
    return cloud.expiry_epoch(value)


def _throttled(what: str, exc: Any) -> cloud.Throttled | None:
    """A ``ClientError`` that asks us to slow down, as :class:`cloud.Throttled`; else ``None``."""
    response = exc.response if isinstance(getattr(exc, "response", None), dict) else {}
    error = response.get("Error") or {}
    metadata = response.get("ResponseMetadata") or {}
    status = metadata.get("HTTPStatusCode")
    if error.get("Code") not in THROTTLING_CODES and status not in RETRY_STATUSES:
        return None
    headers = metadata.get("HTTPHeaders") or {}
    return cloud.Throttled(f"{what}: GetAuthorizationToken throttled", headers.get("retry-after"))


def _sdk_error_text(exc: Exception) -> str:
    """``Type: message`` of a botocore error, completed when the HTTP error it wraps has no text.

    Under asyncio an httpx read error says nothing (anyio's ``BrokenResourceError`` has no
    message), so botocore's "An HTTP Client raised an unhandled exception: " ended there and a
    reset connection left an empty trace; the first message down the wrapped error's chain
    (``ConnectionResetError: [Errno 104] ...``) is what a user needs to see.
    """
    text = f"{type(exc).__name__}: {exc}"
    kwargs = getattr(exc, "kwargs", None)
    wrapped = kwargs.get("error") if isinstance(kwargs, dict) else None
    if not isinstance(wrapped, BaseException) or str(wrapped).strip():
        return text
    seen: BaseException | None = wrapped
    for _ in range(_CHAIN_LIMIT):
        if seen is None or str(seen).strip():
            break
        seen = seen.__cause__ or seen.__context__
    said = f": {type(seen).__name__}: {seen}" if seen is not None and str(seen).strip() else ""
    return f"{text.rstrip(': ')}: {type(wrapped).__name__}{said}"


class ECRResolver(Bounded, Caching, Claiming, Explaining, Hinting, Sharing):
    """Credentials for Amazon ECR and ECR Public from the AWS credential chain.

    ``environ`` (default ``os.environ``) is read for ``AWS_SDK_LOAD_CONFIG`` only; botocore reads
    the rest from ``os.environ``. ``load_config`` overrides ``AWS_SDK_LOAD_CONFIG``.
    ``transport`` carries the ECR API call. ``timeout`` bounds a lookup, credential discovery
    and retries included; ``retry`` says how throttled calls are retried, and its ``attempts``
    also bound the credential providers' STS calls (botocore's standard retries). ``token_store`` (a
    :class:`~asyncauth.TokenStore` such as :class:`~asyncauth.RedisTokenStore`) shares the
    authorization token with a fleet: one ``GetAuthorizationToken`` per account and region
    for all its processes (every process sharing the store is one trust domain), and at most
    ``calls_per_second`` of them per region and endpoint, fleet-wide (the calls wait their turn,
    at most half of ``timeout``).
    """

    name = "ecr"
    disable_hint = cloud.disable_hint(KEYCHAIN)

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = cloud.DEFAULT_CLOUD_TIMEOUT,
        load_config: bool | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        token_store: TokenStore | None = None,
        calls_per_second: float = DEFAULT_CALLS_PER_SECOND,
    ) -> None:
        if not 0 < calls_per_second < math.inf:
            raise ValueError("ECRResolver: calls_per_second must be a positive number")
        environ = os.environ if environ is None else environ
        self.load_config = load_config_enabled(environ) if load_config is None else load_config
        self.transport = transport
        self.timeout = timeout
        self.retry = retry
        self.token_store = token_store
        self.calls_per_second = float(calls_per_second)

    def __repr__(self) -> str:
        return f"ECRResolver(load_config={self.load_config!r}, timeout={self.timeout!r})"

    def cache_key(self, resource: Resource) -> Hashable | None:
        """One token per account, region and endpoint: every repository shares it."""
        host = claims_ecr(resource)
        return None if host is None else ("ecr", host)

    def explain(self, resource: Resource) -> str | None:
        """The account and region a token is asked for: a wrong region or account in a host
        name is the usual cause of an ECR refusal."""
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
        """The ``GetAuthorizationToken`` answer as a credential that expires with it; ``None``
        off ECR or with no AWS identity here (the chain asks the next source), a
        :class:`~asyncauth.ResolverError` when AWS answered but refused."""
        host = claims_ecr(resource)
        if host is None:
            return None
        # Importing botocore takes most of a second: keep the event loop free meanwhile. Both
        # steps are idempotent, so a timeout abandons the thread rather than waiting for it
        # (it finishes in the background and the next lookup reuses its work): the chain's
        # timeout stays a hard bound.
        aws = await anyio.to_thread.run_sync(_import_aws, abandon_on_cancel=True)
        service = "ecr-public" if host.public else "ecr"
        loader = await anyio.to_thread.run_sync(aws.warm_loader, service, abandon_on_cancel=True)
        session = aws.new_session(
            load_config=self.load_config,
            loader=loader,
            timeout=self.timeout,
            attempts=self.retry.attempts,
        )
        config = aws.client_config(self.transport, fips=host.fips, timeout=self.timeout)
        what = "ECR Public" if host.public else f"ECR in {host.region}"
        errors = aws.errors
        try:
            async with session.create_client(
                service, region_name=host.region, config=config
            ) as client:
                if not await _identity_ready(session, what, aws):
                    return None  # no AWS identity here: no opinion, ask the next source
                data = await cloud.retrying(
                    lambda: self._budgeted(client, host, what, errors), self.retry
                )
        except errors.NoCredentialsError:
            return None  # no AWS identity here: no opinion, ask the next source
        except errors.BotoCoreError as exc:
            raise ResolverError(f"{what}: {_sdk_error_text(exc)}") from None

        token = data.get("authorizationToken") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise ResolverError(f"{what}: GetAuthorizationToken returned no authorization data")
        username, password = decode_authorization_token(token, what=what)
        return Credential(
            username=username, password=password, expires_at=_epoch(data.get("expiresAt"))
        )

    async def _budgeted(self, client: Any, host: ECRHost, what: str, errors: ModuleType) -> Any:
        """:meth:`_call`, once the fleet's budget has a slot for it (with a token store)."""
        if self.token_store is not None:
            scope = "public" if host.public else f"{host.region}{'-fips' if host.fips else ''}"
            material = budget_material("ecr:GetAuthorizationToken", scope)
            wait = self.timeout / 2
            if not await take_slot(self.token_store, material, 1 / self.calls_per_second, wait):
                raise ResolverError(
                    f"{what}: no GetAuthorizationToken call was free within {wait:g} s in the "
                    f"fleet's budget ({self.calls_per_second:g} per second in {scope}, shared "
                    "through the token store)"
                )
        return await self._call(client, host, what, errors)

    @staticmethod
    async def _call(client: Any, host: ECRHost, what: str, errors: ModuleType) -> Any:
        """One ``GetAuthorizationToken``: its authorization data, or :class:`cloud.Throttled`."""
        try:
            if host.public:
                answer = await client.get_authorization_token()
                return answer.get("authorizationData") or {}
            answer = await client.get_authorization_token(registryIds=[host.account])
        except errors.ClientError as exc:
            throttled = _throttled(what, exc)
            if throttled is not None:
                raise throttled from None
            error = exc.response.get("Error", {})
            raise ResolverError(
                f"{what}: GetAuthorizationToken failed: "
                f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
            ) from None
        items = answer.get("authorizationData") or []
        return items[0] if items else {}


async def _identity_ready(session: Any, what: str, aws: ModuleType) -> bool:
    """Find the AWS identity and fetch its keys now, before the ECR call; ``False`` if none.

    botocore fetches temporary keys (STS for web identity and assume role, SSO, the container
    endpoint) lazily, while signing the first call: a refusal by STS then surfaced as
    ``GetAuthorizationToken failed: InvalidIdentityToken``, blaming ECR for STS's answer. Here
    a failure names the provider that failed; the client created before this already holds
    these same credentials, so nothing is fetched twice.
    """
    credentials = await session.get_credentials()
    if credentials is None:
        return False
    errors = aws.errors
    method = str(getattr(credentials, "method", None) or "unknown")
    web_identity = method == aws.WEB_IDENTITY_METHOD
    provider = f"AWS credentials ({method})"
    if web_identity:
        provider = f"STS {WEB_IDENTITY_CALL} ({ROLE_VARIABLE}, {TOKEN_FILE_VARIABLE})"
        path = os.environ.get(TOKEN_FILE_VARIABLE)
        if path:
            await cloud.check_token_file(TOKEN_FILE_VARIABLE, path, what=what)
    try:
        await credentials.get_frozen_credentials()
    except errors.ClientError as exc:
        error = exc.response.get("Error", {})
        name = f"STS {WEB_IDENTITY_CALL}" if web_identity else provider
        raise ResolverError(
            f"{what}: {name} failed: "
            f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
        ) from None
    except errors.BotoCoreError as exc:
        raise ResolverError(f"{what}: {provider}: {_sdk_error_text(exc)}") from None
    except (OSError, RuntimeError) as exc:
        raise ResolverError(f"{what}: {provider}: {type(exc).__name__}: {exc}") from None
    return True


def cloud_resolver(settings: cloud.CloudSettings) -> ECRResolver:
    """The default chain's ECR resolver (registered in :mod:`asyncauth._defaults`)."""
    return ECRResolver(
        environ=settings.environ,
        transport=settings.transport,
        timeout=settings.timeout,
        token_store=settings.token_store,
    )
