"""imgpkg's resolution order as a ready-made chain, the one-line ``resolve``, and which clouds
take part.

The clouds are listed once, in :data:`CLOUDS`: imgpkg's keychain name and the factory of the
cloud's resolver, in imgpkg's default order. Each cloud module owns its host rules and its
factory; this module decides only *whether* and *in which order* they run:

* ``IMGPKG_ENABLE_IAAS_AUTH`` -- ``true`` (the default) or ``false``; anything else is a
  :class:`~asyncauth.ConfigError`. An explicit ``iaas=True/False`` wins over the variable.
* ``IMGPKG_ACTIVE_KEYCHAINS`` -- a comma-separated subset of the keychain names, which also sets
  their order; an unknown name is a :class:`~asyncauth.ConfigError`.

Nothing is imported from a cloud SDK here: building the resolvers is free, and a missing extra
shows up as "unavailable" in a trace only when its cloud's registry is looked up.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Final, Literal, TypedDict, Unpack

import httpx

from ._chain import Chain, Resolver
from ._credentials import Credential
from ._errors import ConfigError
from ._resolution import refuse_failed_anonymous
from ._resource import Resource
from ._sources import azure, ecr, github, google
from ._sources.cloud import (
    DEFAULT_CLOUD_TIMEOUT,
    ENABLE_VARIABLE,
    KEYCHAINS_VARIABLE,
    CloudFactory,
    CloudSettings,
)
from ._sources.docker.resolver import DockerConfigResolver
from ._sources.env import EnvResolver
from ._sources.flags import FlagsResolver
from ._stores.environ import chosen_store

if TYPE_CHECKING:
    from ._stores.protocol import TokenStore

CLOUDS: Final[Mapping[str, CloudFactory]] = {
    "ecr": ecr.cloud_resolver,
    "gke": google.cloud_resolver,
    "aks": azure.cloud_resolver,
    "github": github.cloud_resolver,
}
"""imgpkg's keychain name -> the factory of its resolver, in imgpkg's default order."""


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
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ConfigError(f"{ENABLE_VARIABLE} must be 'true' or 'false', not {value!r}")


def _keychain(name: str, where: str) -> str:
    keychain = name.strip().lower()
    if keychain not in CLOUDS:
        raise ConfigError(
            f"{where} names an unknown keychain {name.strip()!r}; known: {', '.join(CLOUDS)}"
        )
    return keychain


def active_keychains(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The keychains ``IMGPKG_ACTIVE_KEYCHAINS`` names, in its order (default: all of them).

    Names are case-insensitive and may be padded with spaces; repeats count once; an empty
    value means unset. An unknown name is a :class:`ConfigError` listing the known ones.
    """
    value = environ.get(KEYCHAINS_VARIABLE, "")
    if value.strip() == "":
        return tuple(CLOUDS)
    chosen = [_keychain(item, KEYCHAINS_VARIABLE) for item in value.split(",") if item.strip()]
    return tuple(dict.fromkeys(chosen))


def iaas_resolvers(
    *,
    environ: Mapping[str, str] | None = None,
    iaas: bool | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    azure_config: str | os.PathLike[str] | None = None,
    keychains: Sequence[str] | None = None,
    timeout: float | None = None,
    token_store: TokenStore | Literal[False] | None = None,
) -> list[Resolver]:
    """The cloud resolvers a chain should run, in order; ``[]`` when IaaS is off.

    ``environ`` (default ``os.environ``) is read for the gating variables and each cloud's own
    (``AWS_SDK_LOAD_CONFIG``, ``IMGPKG_REGISTRY_AZURE_CR_CONFIG``, ``GITHUB_TOKEN``...); the cloud
    SDKs read theirs from ``os.environ`` whatever is passed here. ``transport`` carries every HTTP
    request the resolvers make. ``keychains`` replaces ``IMGPKG_ACTIVE_KEYCHAINS``; ``timeout``
    replaces each cloud's default (10 s). ``azure_config`` is imgpkg's
    ``--registry-azure-cr-config``. ``token_store`` shares ECR and ACR credentials with a fleet
    (default: the store ``ASYNCAUTH_TOKEN_STORE`` in ``environ`` names, if any; ``False``: none).
    """
    environ = os.environ if environ is None else environ
    if keychains is None:
        order = active_keychains(environ)
    else:
        order = tuple(dict.fromkeys(_keychain(k, "keychains") for k in keychains))
    if not iaas_enabled(environ, iaas):
        return []
    settings = CloudSettings(
        environ=environ,
        transport=transport,
        timeout=DEFAULT_CLOUD_TIMEOUT if timeout is None else timeout,
        config_files={} if azure_config is None else {"aks": azure_config},
        token_store=chosen_store(token_store, environ),
    )
    return [CLOUDS[keychain](settings) for keychain in order]


class ChainOptions(TypedDict, total=False):
    """The keyword arguments of :func:`default_chain`, for functions that pass them on."""

    environ: Mapping[str, str] | None
    username: str | None
    password: str | None
    token: str | None
    anon: bool
    iaas: bool | None
    timeout: float | None
    transport: httpx.AsyncBaseTransport | None
    azure_config: str | os.PathLike[str] | None
    exclude_helpers: Collection[str]
    token_store: TokenStore | Literal[False] | None


def default_chain(
    *,
    environ: Mapping[str, str] | None = None,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    anon: bool = False,
    iaas: bool | None = None,
    timeout: float | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    azure_config: str | os.PathLike[str] | None = None,
    exclude_helpers: Collection[str] = (),
    token_store: TokenStore | Literal[False] | None = None,
) -> Chain:
    """The chain imgpkg would use: environment, IaaS, explicit options, Docker config.

    ``environ`` replaces ``os.environ`` for every variable asyncauth reads itself.
    ``username``/``password``/``token``/``anon`` are imgpkg's ``--registry-*`` flags.
    ``iaas`` turns the cloud resolvers on or off (default: ``IMGPKG_ENABLE_IAAS_AUTH``, and
    ``IMGPKG_ACTIVE_KEYCHAINS`` picks which). ``transport`` carries every HTTP request the cloud
    resolvers make; ``azure_config`` is imgpkg's ``--registry-azure-cr-config`` (default
    ``IMGPKG_REGISTRY_AZURE_CR_CONFIG``). ``exclude_helpers`` names credential helpers the Docker
    config source treats as absent (``docker-credential-asyncauth`` excludes itself).
    ``token_store`` shares cloud credentials with a fleet (see :func:`iaas_resolvers`). The cloud
    SDKs read their own variables (``AWS_*``, ``GOOGLE_*``, ``AZURE_*``) from ``os.environ``,
    not from ``environ``.
    Raises :class:`~asyncauth.ConfigError` when the environment is malformed.
    """
    resolvers: list[Resolver] = [EnvResolver(environ)]
    resolvers.extend(
        iaas_resolvers(
            environ=environ,
            iaas=iaas,
            transport=transport,
            azure_config=azure_config,
            token_store=token_store,
        )
    )
    resolvers.append(
        FlagsResolver(username=username, password=password, token=token, anon=anon, environ=environ)
    )
    resolvers.append(DockerConfigResolver(environ=environ, exclude_helpers=exclude_helpers))
    return Chain(resolvers, timeout=timeout)


async def resolve(reference: str | Resource, **options: Unpack[ChainOptions]) -> Credential:
    """The credential :func:`default_chain` picks for ``reference`` (anonymous if none).

    Keyword arguments go to :func:`default_chain`. Each call builds a new chain; to resolve many
    references, build one chain and call :meth:`Chain.resolve` on it so its caches are shared.

    A failing source is never silently anonymous: when no source answered *and* some failed
    (timed out, unavailable, error), :class:`~asyncauth.AuthenticationError` names each of them
    and why. (:meth:`Chain.resolve` returns such a resolution as it is, with its trace.)
    """
    chain = default_chain(**options)
    resolution = await chain.resolve(reference)
    refuse_failed_anonymous(resolution)
    return resolution.credential
