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
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import anyio.to_thread
import httpx

from .._credentials import Credential
from .._errors import ConfigError, ResolverError, ResolverUnavailableError
from .._resource import Resource
from .._transports import client_for
from .iaas import DEFAULT_IAAS_TIMEOUT, azure_tld, claims_azure, disable_hint

__all__ = [
    "ACR_USERNAME",
    "CLOUDS",
    "CONFIG_VARIABLE",
    "AzureCloud",
    "AzureConfig",
    "AzureResolver",
    "load_azure_config",
    "parse_azure_config",
]

EXTRA = "azure"
CONFIG_VARIABLE = "IMGPKG_REGISTRY_AZURE_CR_CONFIG"
ACR_USERNAME: Final = "00000000-0000-0000-0000-000000000000"
"""The user name that goes with an ACR refresh token."""
_STACK_METADATA_API = "2015-01-01"
_MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class AzureCloud:
    """The endpoints of one Azure cloud that a token for ACR needs."""

    name: str
    authority_host: str
    """Azure AD's host (or URL, for Azure Stack)."""
    token_audience: str
    """The resource whose token ACR's exchange accepts (the service management endpoint)."""

    @property
    def scope(self) -> str:
        return self.token_audience + "/.default"


CLOUDS: Final[Mapping[str, AzureCloud]] = {
    cloud.name.lower(): cloud
    for cloud in (
        AzureCloud(
            "AzurePublicCloud", "login.microsoftonline.com", "https://management.core.windows.net/"
        ),
        AzureCloud(
            "AzureChinaCloud", "login.chinacloudapi.cn", "https://management.core.chinacloudapi.cn/"
        ),
        AzureCloud(
            "AzureUSGovernmentCloud",
            "login.microsoftonline.us",
            "https://management.core.usgovcloudapi.net/",
        ),
        AzureCloud(
            "AzureGermanCloud", "login.microsoftonline.de", "https://management.core.cloudapi.de/"
        ),
    )
}
"""go-autorest's cloud names (case-insensitive), as the config file's ``cloud`` field takes them."""
_CLOUD_BY_TLD: Final = {
    "io": "azurepubliccloud",
    "cn": "azurechinacloud",
    "us": "azureusgovernmentcloud",
    "de": "azuregermancloud",
}


@dataclass(frozen=True, slots=True)
class AzureConfig:
    """imgpkg's Azure config file. Secrets stay out of ``repr``."""

    path: str
    cloud: str = ""
    tenant_id: str = ""
    aad_client_id: str = ""
    aad_client_secret: str = field(default="", repr=False)
    aad_client_cert_path: str = ""
    aad_client_cert_password: str = field(default="", repr=False)
    use_managed_identity_extension: bool = False
    user_assigned_identity_id: str = ""
    subscription_id: str = ""
    identity_system: str = ""
    resource_manager_endpoint: str = ""
    network_resource_tenant_id: str = ""
    network_resource_subscription_id: str = ""

    @property
    def method(self) -> str:
        """How the Azure AD token is obtained: ``managed identity``, ``client secret``, ...."""
        if self.use_managed_identity_extension or (
            # AKS's legacy spelling of "use the managed identity"
            self.aad_client_id == "msi" and self.aad_client_secret == "msi"  # noqa: S105
        ):
            return "managed identity"
        if self.aad_client_secret:
            return "client secret"
        return "client certificate"

    @property
    def tenant(self) -> str:
        """The tenant for Azure AD and the exchange (``adfs`` on an ADFS Azure Stack)."""
        return "adfs" if self.identity_system.lower() == "adfs" else self.tenant_id


# JSON key -> attribute; keys match case-insensitively, as Go's encoding/json does.
_KEYS: Final = {
    "cloud": "cloud",
    "tenantid": "tenant_id",
    "aadclientid": "aad_client_id",
    "aadclientsecret": "aad_client_secret",
    "aadclientcertpath": "aad_client_cert_path",
    "aadclientcertpassword": "aad_client_cert_password",
    "usemanagedidentityextension": "use_managed_identity_extension",
    "userassignedidentityid": "user_assigned_identity_id",
    "subscriptionid": "subscription_id",
    "identitysystem": "identity_system",
    "resourcemanagerendpoint": "resource_manager_endpoint",
    "networkresourcetenantid": "network_resource_tenant_id",
    "networkresourcesubscriptionid": "network_resource_subscription_id",
}
_BOOLS: Final = frozenset({"use_managed_identity_extension"})
_COMMENT = re.compile(r"^\s*#.*$", re.MULTILINE)


def parse_azure_config(text: str, *, path: str) -> AzureConfig:
    """Parse and check the config file's text; ``path`` names it in every error.

    The file is JSON. Whole-line ``#`` comments are allowed, so that the documented example
    parses as written. Keys match case-insensitively; keys cloud-provider-azure has and
    asyncauth does not use (``location``, ``vnetName``...) are accepted and ignored.
    """

    def fail(reason: str) -> ConfigError:
        return ConfigError(f"Azure config file {path}: {reason}")

    try:
        data = json.loads(_COMMENT.sub("", text))
    except json.JSONDecodeError as exc:
        raise fail(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise fail(f"expected a JSON object, found {type(data).__name__}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        attribute = _KEYS.get(str(key).lower())
        if attribute is None or value is None:
            continue
        wanted = bool if attribute in _BOOLS else str
        if not isinstance(value, wanted):
            raise fail(f"field {key!r} must be a {'boolean' if wanted is bool else 'string'}")
        values[attribute] = value.strip() if isinstance(value, str) else value
    config = AzureConfig(path=path, **values)

    if config.cloud and config.cloud.lower() not in CLOUDS and not config.resource_manager_endpoint:
        known = ", ".join(c.name for c in CLOUDS.values())
        raise fail(f"field 'cloud' names an unknown cloud {config.cloud!r}; known: {known}")
    if config.identity_system and config.identity_system.lower() not in ("azure_ad", "adfs"):
        raise fail("field 'identitySystem' must be 'azure_ad' or 'adfs'")
    if config.resource_manager_endpoint and not config.resource_manager_endpoint.startswith(
        "https://"
    ):
        raise fail("field 'resourceManagerEndpoint' must be an https:// URL")
    if config.method == "managed identity":
        return config
    if not (config.aad_client_secret or config.aad_client_cert_path):
        raise fail(
            "no credential: set 'useManagedIdentityExtension' to true, or 'aadClientId' with "
            "'aadClientSecret' or 'aadClientCertPath'"
        )
    missing = [
        name
        for name, value in (("aadClientId", config.aad_client_id), ("tenantId", config.tenant))
        if not value
    ]
    if missing:
        raise fail(f"a service principal needs {' and '.join(repr(m) for m in missing)}")
    return config


def load_azure_config(path: str | os.PathLike[str], *, what: str | None = None) -> AzureConfig:
    """Read and parse the config file; ``what`` says where its path came from, for errors."""
    shown = os.fspath(path)
    origin = f" (from {what})" if what else ""
    try:
        with open(shown, "rb") as file:
            raw = file.read(_MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"Azure config file {shown}{origin} cannot be read: {exc.strerror or exc}"
        ) from None
    if len(raw) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"Azure config file {shown}{origin} is larger than 1 MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"Azure config file {shown}{origin} is not UTF-8") from None
    return parse_azure_config(text, path=shown)


def _import_azure() -> tuple[Any, Any, Any, Any]:
    try:
        import azure.core.exceptions
        import azure.identity
        import azure.identity.aio

        from .._transports import azure as transport
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
    except (binascii.Error, ValueError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


class _Recorder:
    """Wraps one credential for azure-identity's chain and remembers whether it was unavailable.

    Going through ``ChainedTokenCredential`` keeps azure-identity's in-a-chain behaviour (a
    short probe of the VM metadata endpoint instead of minutes of retries); the records tell
    "nothing configured here" (no opinion) from "configured and failing" (an error).
    """

    def __init__(self, credential: Any, unavailable: type[Exception]) -> None:
        self.credential = credential
        self._unavailable = unavailable
        self.failure: str | None = None

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        try:
            return await self.credential.get_token(*scopes, **kwargs)
        except self._unavailable:
            raise
        except Exception as exc:
            self.failure = f"{type(self.credential).__name__}: {type(exc).__name__}"
            raise

    async def close(self) -> None:
        await self.credential.close()


class AzureResolver:
    """Credentials for Azure Container Registry from Azure AD.

    ``config`` (or ``IMGPKG_REGISTRY_AZURE_CR_CONFIG`` in ``environ``, default ``os.environ``) is
    read and checked when the resolver is built: a broken file is a
    :class:`~asyncauth.ConfigError` naming it and the field. ``transport`` carries every request.
    """

    name = "azure"
    disable_hint = disable_hint("aks")

    def __init__(
        self,
        *,
        config: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_IAAS_TIMEOUT,
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

    def __repr__(self) -> str:
        where = "environment" if self.config is None else f"config={self.config.path!r}"
        return f"AzureResolver({where}, timeout={self.timeout!r})"

    def cache_key(self, resource: Resource) -> Hashable | None:
        """The exchange is per registry."""
        return ("azure", resource.host) if claims_azure(resource) else None

    def explain(self, resource: Resource) -> str | None:
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
            response = await client.get(url, params={"api-version": _STACK_METADATA_API})
        except httpx.HTTPError as exc:
            raise ResolverError(f"Azure Stack {url}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise ResolverError(f"Azure Stack {url} answered HTTP {response.status_code}")
        try:
            authentication = response.json()["authentication"]
            login = str(authentication["loginEndpoint"]).rstrip("/")
            audience = str(authentication["audiences"][0]).rstrip("/")
        except (ValueError, KeyError, IndexError, TypeError):
            raise ResolverError(f"Azure Stack {url}: unexpected metadata document") from None
        if self.config is not None and self.config.tenant == "adfs":
            login = login.removesuffix("/adfs")
        return AzureCloud("AzureStackCloud", login, audience)

    def _credentials(self, identity: Any, transport: Any, cloud: AzureCloud) -> list[Any]:
        """The azure-identity credentials to try, in order (blocking: certificate files)."""
        config = self.config
        if config is None:
            found: list[Any] = [identity.EnvironmentCredential(transport=transport)]
            if os.environ.get("AZURE_FEDERATED_TOKEN_FILE"):
                # Incomplete workload identity variables: not configured here.
                with contextlib.suppress(ValueError):
                    found.append(identity.WorkloadIdentityCredential(transport=transport))
            found.append(identity.ManagedIdentityCredential(transport=transport))
            return found
        if config.method == "managed identity":
            client_id = config.user_assigned_identity_id or None
            return [identity.ManagedIdentityCredential(client_id=client_id, transport=transport)]
        common: dict[str, Any] = {"authority": cloud.authority_host, "transport": transport}
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
        transport = adapter.HttpxAzureTransport(client)
        credentials = await anyio.to_thread.run_sync(self._credentials, identity, transport, cloud)
        if self.config is not None:
            tenant = self.config.tenant or None
        else:
            tenant = os.environ.get("AZURE_TENANT_ID") or None
        recorders = [_Recorder(c, unavailable) for c in credentials]
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
                        f"{type(exc).__name__} (no token)"
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
            try:
                response = await client.post(url, data=form)
            except httpx.HTTPError as exc:
                raise ResolverError(f"ACR {url}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise ResolverError(f"ACR {url} answered HTTP {response.status_code} to the exchange")
        try:
            refresh_token = response.json()["refresh_token"]
        except (ValueError, KeyError, TypeError):
            raise ResolverError(f"ACR {url}: the exchange's answer has no refresh_token") from None
        if not isinstance(refresh_token, str) or not refresh_token:
            raise ResolverError(f"ACR {url}: the exchange's answer has no refresh_token")
        expires_at = _jwt_expiry(refresh_token)
        if expires_at is None and getattr(token, "expires_on", None):
            expires_at = float(token.expires_on)
        return Credential(
            username=ACR_USERNAME, identity_token=refresh_token, expires_at=expires_at
        )
