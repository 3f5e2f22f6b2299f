"""Azure Container Registry: an Azure AD token exchanged for an ACR refresh token.

For ``<name>.azurecr.io`` (and ``.cn``, ``.de``, ``.us``) the resolver gets an Azure AD access token
and posts it to ``https://<registry>/oauth2/exchange``; the ACR refresh token that comes back is
the credential's ``identity_token``, with the all-zero GUID as user name (what ``az acr login``
writes). The handshake then trades it for access tokens like any other identity token.

Where the Azure AD token comes from:

* the config file named by ``config=`` or ``IMGPKG_REGISTRY_AZURE_CR_CONFIG`` (imgpkg's; the
  fields are cloud-provider-azure's): managed identity when ``useManagedIdentityExtension`` is
  true (``userAssignedIdentityID`` picks a user-assigned one), else the service principal's
  client secret, else its certificate. ``cloud`` names the cloud (``AzurePublicCloud`` when
  empty); ``resourceManagerEndpoint`` asks an Azure Stack hub for its endpoints instead.
* without a file, azure-identity's environment credential (``AZURE_TENANT_ID``,
  ``AZURE_CLIENT_ID``, ``AZURE_CLIENT_SECRET`` or ``AZURE_CLIENT_CERTIFICATE_PATH``...), then
  workload identity (``AZURE_FEDERATED_TOKEN_FILE``), then managed identity (App Service /
  Functions ``IDENTITY_ENDPOINT``+``IDENTITY_HEADER``, Azure Arc, Service Fabric, Cloud Shell, the
  VM metadata endpoint or ``AZURE_POD_IDENTITY_AUTHORITY_HOST``). The cloud follows the
  registry's domain (``.cn`` China, ``.us`` US Government, ``.de`` Germany). Not
  ``DefaultAzureCredential``: its CLI-based members use asyncio subprocesses, which trio lacks.

Every request -- Azure AD, managed identity endpoints, the exchange -- goes out on the caller's
``transport`` through an azure-core adapter (:mod:`asyncauth.transports.azure`). azure-identity
reads its variables from ``os.environ``; the config file's path is read from ``environ``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.to_thread
import httpx

from .._chain import Bounded, Caching, Claiming, Explaining, Hinting, Sharing
from .._credentials import Credential
from .._errors import ConfigError, ResolverError, ResolverUnavailableError
from .._grammar import LABEL
from .._http import client_for, request_limited
from .._http.retry import DEFAULT_RETRY, RETRY_STATUSES, RetryPolicy
from .._resource import Resource
from .._variables import AZURE_CR_CONFIG
from .azure_config import CLOUDS, AzureCloud, AzureConfig, load_azure_config
from .cloud import (
    DEFAULT_CLOUD_TIMEOUT,
    CloudSettings,
    Throttled,
    check_token_file,
    claimable_host,
    disable_hint,
    expiry_epoch,
    retrying,
)

if TYPE_CHECKING:
    from .._stores.protocol import TokenStore

KEYCHAIN: Final = "aks"
EXTRA: Final = "azure"
CONFIG_VARIABLE: Final = AZURE_CR_CONFIG
ACR_USERNAME: Final = "00000000-0000-0000-0000-000000000000"
"""The user name that goes with an ACR refresh token."""
SDK_RETRIES: Final = DEFAULT_RETRY.attempts - 1
"""Retries azure-identity's pipelines may make (its default is 10, with up to 120 s backoff)."""
TOKEN_FILE_VARIABLE: Final = "AZURE_FEDERATED_TOKEN_FILE"  # noqa: S105 - a name, not a secret
"""Where AKS's workload identity webhook puts the pod's service-account token."""
_SERVICE_PRINCIPAL_SECRETS: Final = ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH")
"""Without one of these, azure-identity's EnvironmentCredential has nothing to use."""
_OAUTH_ERROR = re.compile(r"[a-z_]{1,64}\Z")
_STACK_METADATA_API = "2015-01-01"
_AZURE = re.compile(rf"\A{LABEL}\.azurecr\.(?P<tld>io|cn|de|us)\Z")
_CLOUD_BY_TLD: Final = {
    "io": "azurepubliccloud",
    "cn": "azurechinacloud",
    "us": "azureusgovernmentcloud",
    "de": "azuregermancloud",
}


def is_azure_host(host: str) -> bool:
    """``<one label>.azurecr.io`` (or ``.cn``, ``.de``, ``.us``) -- never a substring match."""
    return _AZURE.match(host) is not None


def azure_tld(host: str) -> str | None:
    """The ACR domain's last label (``io``, ``cn``, ``de``, ``us``), which names its cloud."""
    match = _AZURE.match(host)
    return None if match is None else match["tld"]


def claims_azure(resource: Resource) -> bool:
    host = claimable_host(resource)
    return host is not None and is_azure_host(host)


def _import_azure() -> tuple[Any, Any, Any, Any]:
    try:
        import azure.core.exceptions
        import azure.identity
        import azure.identity.aio

        from .sdk import azure as transport
    except ImportError as exc:
        raise ResolverUnavailableError(
            f"ACR needs azure-identity ({exc.name or 'azure-identity'} is not installed): "
            f"pip install 'asyncauth[{EXTRA}]'"
        ) from None
    return (
        azure.identity.aio,
        azure.identity.CredentialUnavailableError,
        azure.core.exceptions,
        transport,
    )


def _jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, unverified: only used to decide how long to cache it."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, RecursionError):  # network data: any shape at all
        return None
    return expiry_epoch(payload.get("exp")) if isinstance(payload, dict) else None


def _entra_error(exc: BaseException) -> str:
    """``": invalid_client AADSTS70021"`` from an Entra ID error answer behind ``exc``.

    The OAuth2 ``error`` and Entra's numeric codes say why a token was refused (a federated
    credential that matches no token, an expired secret...); the description is left out, for
    it may quote what was sent. Empty when there is no such answer.
    """
    response = getattr(exc, "response", None)
    try:
        body = json.loads(response.text()) if response is not None else None
    except (ValueError, TypeError, AttributeError, RecursionError):  # network data, any shape
        return ""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    words = [error] if isinstance(error, str) and _OAUTH_ERROR.match(error) else []
    codes = body.get("error_codes")
    for code in codes[:3] if isinstance(codes, list) else []:
        if type(code) is int and 0 <= code < 10**9:
            words.append(f"AADSTS{code}")
    return ": " + " ".join(words) if words else ""


class _Recorder:
    """Wraps one credential for azure-identity's chain and remembers whether it was unavailable.

    Going through ``ChainedTokenCredential`` keeps azure-identity's in-a-chain behaviour (a
    short probe of the VM metadata endpoint instead of minutes of retries); the records tell
    "nothing configured here" (no opinion) from "configured and failing" (an error).
    """

    def __init__(
        self,
        credential: Any,
        unavailable: type[Exception],
        token_file: tuple[str, str] | None = None,
    ) -> None:
        self.credential = credential
        self._unavailable = unavailable
        self._token_file = token_file
        self.failure: str | None = None

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        name = type(self.credential).__name__
        try:
            if self._token_file is not None:
                # azure-identity opens the file on the event loop's thread: a FIFO would hang it.
                await check_token_file(*self._token_file)
            return await self.credential.get_token(*scopes, **kwargs)
        except self._unavailable:
            raise
        except ResolverError as exc:
            self.failure = f"{name}: {exc}"
            raise
        except Exception as exc:
            self.failure = f"{name}: {type(exc).__name__}{_entra_error(exc)}"
            raise

    async def close(self) -> None:
        await self.credential.close()


class AzureResolver(Bounded, Caching, Claiming, Explaining, Hinting, Sharing):
    """Credentials for Azure Container Registry from Azure AD.

    ``config`` (or ``IMGPKG_REGISTRY_AZURE_CR_CONFIG`` in ``environ``, default ``os.environ``) is
    read and checked when the resolver is built: a broken file is a
    :class:`~asyncauth.ConfigError` naming it and the field. ``transport`` carries every request.
    ``retry`` says how a throttled exchange is retried; azure-identity's own pipelines are held
    to :data:`SDK_RETRIES` retries, and every pause they take to the same policy's bounds.
    ``token_store`` shares the ACR refresh token with a fleet (one exchange per registry).
    """

    name = "azure"
    disable_hint = disable_hint(KEYCHAIN)

    def __init__(
        self,
        *,
        config: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_CLOUD_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
        token_store: TokenStore | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        if config is not None:
            self.config: AzureConfig | None = load_azure_config(config)
        elif environ.get(CONFIG_VARIABLE):
            self.config = load_azure_config(environ[CONFIG_VARIABLE], what=CONFIG_VARIABLE)
        else:
            self.config = None
        self.transport = transport
        self.timeout = timeout
        self.retry = retry
        self.token_store = token_store

    def __repr__(self) -> str:
        where = "environment" if self.config is None else f"config={self.config.path!r}"
        return f"AzureResolver({where}, timeout={self.timeout!r})"

    def cache_key(self, resource: Resource) -> Hashable | None:
        """The exchange is per registry."""
        return ("azure", resource.host) if claims_azure(resource) else None

    def explain(self, resource: Resource) -> str | None:
        """Which Azure identity answers (the config file's method, or azure-identity's own
        chain): two ways to authenticate that fail for different reasons."""
        if not claims_azure(resource):
            return None
        source = (
            "azure-identity environment/workload/managed identity"
            if self.config is None
            else f"{self.config.method} from {self.config.path}"
        )
        return f"ACR refresh token for an Azure AD token ({source})"

    def _cloud(self, host: str) -> AzureCloud:
        if self.config is not None and self.config.cloud:
            return CLOUDS[self.config.cloud.lower()]
        return CLOUDS[_CLOUD_BY_TLD[azure_tld(host) or "io"]]

    async def _stack_cloud(self, client: httpx.AsyncClient, endpoint: str) -> AzureCloud:
        """Azure Stack: the hub's own endpoints, from its metadata document."""
        url = endpoint.rstrip("/") + "/metadata/endpoints"
        try:
            response, body = await request_limited(
                client, "GET", url, params={"api-version": _STACK_METADATA_API}
            )
        except httpx.HTTPError as exc:
            raise ResolverError(f"Azure Stack {url}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise ResolverError(f"Azure Stack {url} answered HTTP {response.status_code}")
        try:
            authentication = json.loads(body)["authentication"]
            login = str(authentication["loginEndpoint"]).rstrip("/")
            audience = str(authentication["audiences"][0]).rstrip("/")
        except (ValueError, KeyError, IndexError, TypeError, RecursionError):
            raise ResolverError(f"Azure Stack {url}: unexpected metadata document") from None
        if self.config is not None and self.config.tenant == "adfs":
            login = login.removesuffix("/adfs")
        return AzureCloud("AzureStackCloud", login, audience)

    def _credentials(self, identity: Any, transport: Any, cloud: AzureCloud) -> list[Any]:
        """The azure-identity credentials to try, in order (blocking: certificate files)."""
        config = self.config
        # azure-core's RetryPolicy defaults to 10 retries with backoff up to 120 s.
        sdk: dict[str, Any] = {
            "transport": transport,
            "retry_total": SDK_RETRIES,
            "retry_backoff_max": self.retry.max_backoff,
        }
        if config is None:
            found: list[Any] = []
            # AKS sets AZURE_CLIENT_ID and AZURE_TENANT_ID for workload identity: built without a
            # secret, EnvironmentCredential would log a WARNING on every lookup.
            if any(os.environ.get(name) for name in _SERVICE_PRINCIPAL_SECRETS):
                found.append(identity.EnvironmentCredential(**sdk))
            if os.environ.get(TOKEN_FILE_VARIABLE):
                # Incomplete workload identity variables: not configured here.
                with contextlib.suppress(ValueError):
                    found.append(identity.WorkloadIdentityCredential(**sdk))
            found.append(identity.ManagedIdentityCredential(**sdk))
            return found
        if config.method == "managed identity":
            client_id = config.user_assigned_identity_id or None
            return [identity.ManagedIdentityCredential(client_id=client_id, **sdk)]
        common: dict[str, Any] = {"authority": cloud.authority_host, **sdk}
        if cloud.name == "AzureStackCloud":
            common["disable_instance_discovery"] = True
        if config.method == "client secret":
            return [
                identity.ClientSecretCredential(
                    config.tenant, config.aad_client_id, config.aad_client_secret, **common
                )
            ]
        try:
            return [
                identity.CertificateCredential(
                    config.tenant,
                    config.aad_client_id,
                    certificate_path=config.aad_client_cert_path,
                    password=config.aad_client_cert_password or None,
                    **common,
                )
            ]
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"Azure config file {config.path}: field 'aadClientCertPath' "
                f"({config.aad_client_cert_path}): {type(exc).__name__}"
            ) from None

    async def _aad_token(self, client: httpx.AsyncClient, host: str) -> tuple[Any, str | None]:
        """An Azure AD token for ACR and the tenant it is from; ``None`` if nothing is set up."""
        identity, unavailable, errors, adapter = await anyio.to_thread.run_sync(
            _import_azure, abandon_on_cancel=True
        )
        if self.config is not None and self.config.resource_manager_endpoint:
            cloud = await self._stack_cloud(client, self.config.resource_manager_endpoint)
        else:
            cloud = self._cloud(host)
        transport = adapter.HttpxAzureTransport(client, max_sleep=self.retry.max_retry_after)
        # Abandoned on timeout: a certificate path may name a FIFO, whose read never ends.
        credentials = await anyio.to_thread.run_sync(
            self._credentials, identity, transport, cloud, abandon_on_cancel=True
        )
        if self.config is not None:
            tenant = self.config.tenant or None
        else:
            tenant = os.environ.get("AZURE_TENANT_ID") or None
        recorders = [
            _Recorder(c, unavailable, _token_file(c, identity.WorkloadIdentityCredential))
            for c in credentials
        ]
        try:
            if self.config is None:
                chain = identity.ChainedTokenCredential(*recorders)
                try:
                    token = await chain.get_token(cloud.scope)
                except errors.ClientAuthenticationError:
                    failed = [r.failure for r in recorders if r.failure]
                    if not failed:
                        return None, None  # no Azure identity configured here
                    raise ResolverError(f"Azure AD: {failed[0]} (no token)") from None
            else:
                try:
                    token = await credentials[0].get_token(cloud.scope)
                except errors.AzureError as exc:
                    raise ResolverError(
                        f"Azure AD ({self.config.method} from {self.config.path}): "
                        f"{type(exc).__name__}{_entra_error(exc)} (no token)"
                    ) from None
        finally:
            for recorder in recorders:
                with anyio.CancelScope(shield=True):
                    await recorder.close()
        return token, tenant

    def claims(self, resource: Resource) -> bool:
        """Whether ``resource`` is on a registry this cloud serves (pure; no I/O)."""
        return claims_azure(resource)

    async def resolve(self, resource: Resource) -> Credential | None:
        """An ACR refresh token, exchanged at the registry for an Azure AD token; ``None`` off
        ACR or with no Azure identity here, so that the chain asks the next source."""
        if not claims_azure(resource):
            return None
        host = resource.host
        async with client_for(self.transport) as client:
            token, tenant = await self._aad_token(client, host)
            if token is None:
                return None
            form = {"grant_type": "access_token", "service": host, "access_token": token.token}
            if tenant:
                form["tenant"] = tenant
            url = f"https://{host}/oauth2/exchange"
            body = await retrying(lambda: _exchange(client, url, form), self.retry)
        try:
            refresh_token = json.loads(body)["refresh_token"]
        except (ValueError, KeyError, TypeError, RecursionError):
            raise ResolverError(f"ACR {url}: the exchange's answer has no refresh_token") from None
        if not isinstance(refresh_token, str) or not refresh_token:
            raise ResolverError(f"ACR {url}: the exchange's answer has no refresh_token")
        expires_at = _jwt_expiry(refresh_token)
        if expires_at is None:
            expires_at = expiry_epoch(getattr(token, "expires_on", None))
        return Credential(
            username=ACR_USERNAME, identity_token=refresh_token, expires_at=expires_at
        )


def _token_file(credential: Any, workload: type) -> tuple[str, str] | None:
    """The token file variable and path a workload identity credential will read, if it is one."""
    path = os.environ.get(TOKEN_FILE_VARIABLE)
    return (TOKEN_FILE_VARIABLE, path) if path and isinstance(credential, workload) else None


async def _exchange(client: httpx.AsyncClient, url: str, form: Mapping[str, str]) -> bytes:
    """One ``POST /oauth2/exchange``: the answer's body, or :class:`Throttled` on 429/503.

    401 and 403 are answers, not hiccups: they are never retried.
    """
    try:
        response, body = await request_limited(client, "POST", url, data=form)
    except httpx.HTTPError as exc:
        raise ResolverError(f"ACR {url}: {type(exc).__name__}: {exc}") from None
    status = response.status_code
    if status in RETRY_STATUSES:
        raise Throttled(f"ACR {url} answered HTTP {status}", response.headers.get("retry-after"))
    if status != 200:
        raise ResolverError(f"ACR {url} answered HTTP {status} to the exchange")
    return body


def cloud_resolver(settings: CloudSettings) -> AzureResolver:
    """The default chain's ACR resolver (registered in :mod:`asyncauth._defaults`); the file
    from ``default_chain(azure_config=...)`` arrives as ``settings.config_files["aks"]``."""
    return AzureResolver(
        config=settings.config_files.get(KEYCHAIN),
        environ=settings.environ,
        transport=settings.transport,
        timeout=settings.timeout,
        token_store=settings.token_store,
    )
