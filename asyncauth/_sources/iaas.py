"""Which registries each cloud claims, and which cloud resolvers a chain gets.

imgpkg's users turned IaaS authentication off because every lookup probed metadata servers, even
for Docker Hub. Here a cloud resolver first asks the pure predicates below whether the registry
is one of its own -- a fully anchored match on the host name -- and answers ``None`` at once,
without importing its SDK or touching the network, for every other host.

The gating follows imgpkg:

* ``IMGPKG_ENABLE_IAAS_AUTH`` -- ``true`` (the default) or ``false``; anything else is a
  :class:`~asyncauth.ConfigError`. An explicit ``iaas=True/False`` wins over the variable.
* ``IMGPKG_ACTIVE_KEYCHAINS`` -- a comma-separated subset of ``ecr,gke,aks,github``, which also
  sets their order; an unknown name is a :class:`~asyncauth.ConfigError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from .._errors import ConfigError
from .._grammar import LABEL
from .._resource import Resource

if TYPE_CHECKING:
    import httpx

    from .._chain import Resolver

__all__ = [
    "DEFAULT_IAAS_TIMEOUT",
    "ECR_PUBLIC_HOST",
    "GITHUB_HOST",
    "KEYCHAINS",
    "ECRHost",
    "Keychain",
    "active_keychains",
    "azure_tld",
    "claims_azure",
    "claims_ecr",
    "claims_github",
    "claims_google",
    "disable_hint",
    "ecr_host",
    "iaas_enabled",
    "iaas_resolvers",
    "is_azure_host",
    "is_github_host",
    "is_google_host",
]

Keychain = Literal["ecr", "gke", "aks", "github"]
KEYCHAINS: Final[tuple[Keychain, ...]] = ("ecr", "gke", "aks", "github")
"""imgpkg's keychain names, in the default order."""

DEFAULT_IAAS_TIMEOUT = 10.0
"""Seconds a cloud resolver may take by default: ample on a cloud (answers take milliseconds),
and the bound a misconfigured machine pays for a registry that cloud claims."""

ENABLE_VARIABLE = "IMGPKG_ENABLE_IAAS_AUTH"
KEYCHAINS_VARIABLE = "IMGPKG_ACTIVE_KEYCHAINS"

# --- host claims: pure, anchored (\A...\Z), on the lower-cased host without the port ----------

_ECR_PRIVATE = re.compile(
    r"\A(?P<account>\d{12})\.dkr[.-]ecr(?P<fips>-fips)?\.(?P<region>[a-z]{2}(?:-[a-z0-9]+)+)\."
    r"(?P<domain>amazonaws\.com(?:\.cn)?|on\.aws|sc2s\.sgov\.gov|c2s\.ic\.gov"
    r"|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)\Z"
)
ECR_PUBLIC_HOST = "public.ecr.aws"
_GOOGLE = re.compile(rf"\A(?:(?:{LABEL}\.)?gcr\.io|{LABEL}\.pkg\.dev)\Z")
_AZURE = re.compile(rf"\A{LABEL}\.azurecr\.(?P<tld>io|cn|de|us)\Z")
GITHUB_HOST = "ghcr.io"


@dataclass(frozen=True, slots=True)
class ECRHost:
    """What an ECR host name says: whose registry, where, and through which endpoint."""

    account: str | None
    """The 12-digit registry id; ``None`` for ECR Public."""
    region: str
    fips: bool = False
    public: bool = False


def _host(resource: Resource) -> str | None:
    """The host a cloud may claim: only on the default HTTPS port (none written, or 443)."""
    return resource.host if resource.port in (None, 443) else None


def ecr_host(host: str) -> ECRHost | None:
    """Parse an ECR registry host (private, FIPS, China, dual-stack, ISO partitions, Public).

    >>> ecr_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
    ECRHost(account='123456789012', region='eu-west-1', fips=False, public=False)
    >>> ecr_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil.example") is None
    True
    """
    if host == ECR_PUBLIC_HOST:
        return ECRHost(account=None, region="us-east-1", public=True)
    match = _ECR_PRIVATE.match(host)
    if match is None:
        return None
    return ECRHost(match["account"], match["region"], fips=match["fips"] is not None)


def is_google_host(host: str) -> bool:
    """``gcr.io``, ``<one label>.gcr.io`` (``us.gcr.io``...) or ``<one label>.pkg.dev``."""
    return _GOOGLE.match(host) is not None


def is_azure_host(host: str) -> bool:
    """``<one label>.azurecr.io`` (or ``.cn``, ``.de``, ``.us``) -- never a substring match."""
    return _AZURE.match(host) is not None


def azure_tld(host: str) -> str | None:
    """The ACR domain's last label (``io``, ``cn``, ``de``, ``us``), which names its cloud."""
    match = _AZURE.match(host)
    return None if match is None else match["tld"]


def is_github_host(host: str) -> bool:
    return host == GITHUB_HOST


def claims_ecr(resource: Resource) -> ECRHost | None:
    host = _host(resource)
    return None if host is None else ecr_host(host)


def claims_google(resource: Resource) -> bool:
    host = _host(resource)
    return host is not None and is_google_host(host)


def claims_azure(resource: Resource) -> bool:
    host = _host(resource)
    return host is not None and is_azure_host(host)


def claims_github(resource: Resource) -> bool:
    host = _host(resource)
    return host is not None and is_github_host(host)


# --- gating ------------------------------------------------------------------------------------


def iaas_enabled(environ: Mapping[str, str], iaas: bool | None = None) -> bool:
    """Whether cloud resolvers run: ``iaas`` if given, else ``IMGPKG_ENABLE_IAAS_AUTH``.

    The variable is ``true`` or ``false`` (any case); unset or empty means ``true``. Anything
    else is a :class:`ConfigError`: a typo must not silently turn clouds on or off.
    """
    if iaas is not None:
        return iaas
    value = environ.get(ENABLE_VARIABLE, "")
    if value == "":
        return True
    lowered = value.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise ConfigError(f"{ENABLE_VARIABLE} must be 'true' or 'false', not {value!r}")


def active_keychains(environ: Mapping[str, str]) -> tuple[Keychain, ...]:
    """The keychains ``IMGPKG_ACTIVE_KEYCHAINS`` names, in its order (default: all of them).

    Names are case-insensitive and may be padded with spaces; repeats count once; an empty
    value means unset. An unknown name is a :class:`ConfigError` listing the known ones.
    """
    value = environ.get(KEYCHAINS_VARIABLE, "")
    if value.strip() == "":
        return KEYCHAINS
    chosen: list[Keychain] = []
    for item in value.split(","):
        name = item.strip().lower()
        if not name:
            continue
        keychain = next((k for k in KEYCHAINS if k == name), None)
        if keychain is None:
            raise ConfigError(
                f"{KEYCHAINS_VARIABLE} names an unknown keychain {item.strip()!r}; "
                f"known: {', '.join(KEYCHAINS)}"
            )
        if keychain not in chosen:
            chosen.append(keychain)
    return tuple(chosen)


def disable_hint(keychain: Keychain) -> str:
    """How a user turns one cloud off, shown in the trace when it times out or fails."""
    return (
        f"set {ENABLE_VARIABLE}=false, or leave {keychain!r} out of {KEYCHAINS_VARIABLE} "
        f"(e.g. {KEYCHAINS_VARIABLE}={','.join(k for k in KEYCHAINS if k != keychain)})"
    )


def iaas_resolvers(
    *,
    environ: Mapping[str, str] | None = None,
    iaas: bool | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    azure_config: str | os.PathLike[str] | None = None,
    keychains: Sequence[Keychain] | None = None,
    timeout: float | None = None,
) -> list[Resolver]:
    """The cloud resolvers a chain should run, in order; ``[]`` when IaaS is off.

    ``environ`` (default ``os.environ``) is read for the gating variables, ``AWS_SDK_LOAD_CONFIG``,
    ``IMGPKG_REGISTRY_AZURE_CR_CONFIG`` and ``GITHUB_TOKEN``/``GITHUB_ACTOR``; the cloud SDKs
    read their own variables from ``os.environ`` whatever is passed here. ``transport`` carries
    every HTTP request the resolvers make. ``keychains`` replaces ``IMGPKG_ACTIVE_KEYCHAINS``;
    ``timeout`` replaces each resolver's default (:data:`DEFAULT_IAAS_TIMEOUT`).

    Nothing is imported from a cloud SDK here: building the resolvers is free, and a missing
    extra shows up as "unavailable" in a trace only when its cloud's registry is looked up.
    """
    environ = os.environ if environ is None else environ
    order = active_keychains(environ) if keychains is None else tuple(keychains)
    if not iaas_enabled(environ, iaas):
        return []
    # Imported here: the resolver modules import this one for the predicates.
    from .azure import AzureResolver
    from .ecr import ECRResolver
    from .github import GitHubResolver
    from .google import GoogleResolver

    each = DEFAULT_IAAS_TIMEOUT if timeout is None else timeout
    resolvers: list[Resolver] = []
    for keychain in order:
        if keychain == "ecr":
            resolvers.append(ECRResolver(environ=environ, transport=transport, timeout=each))
        elif keychain == "gke":
            resolvers.append(GoogleResolver(transport=transport, timeout=each))
        elif keychain == "aks":
            resolvers.append(
                AzureResolver(
                    config=azure_config, environ=environ, transport=transport, timeout=each
                )
            )
        elif keychain == "github":
            resolvers.append(GitHubResolver(environ=environ))
        else:  # pragma: no cover - keychains is typed
            raise ConfigError(f"unknown keychain {keychain!r}; known: {', '.join(KEYCHAINS)}")
    return resolvers
