"""imgpkg's Azure config file (``--registry-azure-cr-config``): reading, parsing, checking.

The file is JSON with cloud-provider-azure's fields. It is read when the chain is built, so it is
parsed with care for what a file can hold: whole-line ``#`` comments are dropped line by line
(no regular expression that could backtrack), nesting too deep for Python's JSON decoder, or a
number too long to convert, is a :class:`~asyncauth.ConfigError` like any other malformed file,
and only a regular file of at most 1 MiB is read (a FIFO there must not hang start-up).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .._errors import ConfigError

MAX_CONFIG_BYTES: Final = 1 << 20
_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)


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
    identity_system: str = ""
    resource_manager_endpoint: str = ""

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
    "identitysystem": "identity_system",
    "resourcemanagerendpoint": "resource_manager_endpoint",
}
_BOOLS: Final = frozenset({"use_managed_identity_extension"})


def without_comments(text: str) -> str:
    """``text`` with each whole-line ``#`` comment emptied; line numbers stay as they were.

    A line whose first non-blank character is ``#`` cannot be inside a JSON string (strings
    cannot span lines), so dropping it never changes the document's meaning. Linear time.
    """
    return "\n".join(
        "" if line.lstrip(" \t\r\f\v").startswith("#") else line for line in text.split("\n")
    )


def _decode(text: str, fail: Callable[[str], ConfigError]) -> Any:
    try:
        return json.loads(without_comments(text))
    except json.JSONDecodeError as exc:
        raise fail(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise fail("not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts
        raise fail(f"not valid JSON ({type(exc).__name__})") from None


def parse_azure_config(text: str, *, path: str) -> AzureConfig:
    """Parse and check the config file's text; ``path`` names it in every error.

    The file is JSON. Whole-line ``#`` comments are allowed, so that the documented example
    parses as written. Keys match case-insensitively; keys cloud-provider-azure has and
    asyncauth does not use (``location``, ``vnetName``...) are accepted and ignored.
    """

    def fail(reason: str) -> ConfigError:
        return ConfigError(f"Azure config file {path}: {reason}")

    data = _decode(text, fail)
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


def _read_regular_file(path: str, origin: str) -> bytes:
    """At most ``MAX_CONFIG_BYTES + 1`` bytes of a regular file; never blocks on a FIFO."""
    try:
        descriptor = os.open(path, os.O_RDONLY | _NONBLOCK)
    except OSError as exc:
        raise ConfigError(
            f"Azure config file {path}{origin} cannot be read: {exc.strerror or exc}"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise ConfigError(f"Azure config file {path}{origin} is not a regular file")
        with open(descriptor, "rb", closefd=False) as file:
            return file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"Azure config file {path}{origin} cannot be read: {exc.strerror or exc}"
        ) from None
    finally:
        os.close(descriptor)


def load_azure_config(path: str | os.PathLike[str], *, what: str | None = None) -> AzureConfig:
    """Read and parse the config file; ``what`` says where its path came from, for errors."""
    shown = os.fspath(path)
    origin = f" (from {what})" if what else ""
    raw = _read_regular_file(shown, origin)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"Azure config file {shown}{origin} is larger than 1 MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"Azure config file {shown}{origin} is not UTF-8") from None
    return parse_azure_config(text, path=shown)
