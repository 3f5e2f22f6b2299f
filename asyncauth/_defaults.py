"""imgpkg's resolution order as a ready-made chain, and the one-line ``resolve``."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import TypedDict, Unpack

import httpx

from ._chain import Chain, Resolver
from ._credentials import Credential
from ._resource import Resource
from ._sources.docker.resolver import DockerConfigResolver
from ._sources.env import EnvResolver
from ._sources.flags import FlagsResolver
from ._sources.iaas import iaas_resolvers

__all__ = ["ChainOptions", "default_chain", "resolve"]


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
) -> Chain:
    """The chain imgpkg would use: environment, IaaS, explicit options, Docker config.

    ``environ`` replaces ``os.environ`` for every variable asyncauth reads itself.
    ``username``/``password``/``token``/``anon`` are imgpkg's ``--registry-*`` flags.
    ``iaas`` turns the cloud resolvers on or off (default: ``IMGPKG_ENABLE_IAAS_AUTH``, and
    ``IMGPKG_ACTIVE_KEYCHAINS`` picks which). ``transport`` carries every HTTP request the cloud
    resolvers make; ``azure_config`` is imgpkg's ``--registry-azure-cr-config`` (default
    ``IMGPKG_REGISTRY_AZURE_CR_CONFIG``). ``exclude_helpers`` names credential helpers the Docker
    config source treats as absent (``docker-credential-asyncauth`` excludes itself). The cloud
    SDKs read their own variables (``AWS_*``, ``GOOGLE_*``, ``AZURE_*``) from ``os.environ``,
    not from ``environ``.
    Raises :class:`~asyncauth.ConfigError` when the environment is malformed.
    """
    resolvers: list[Resolver] = [EnvResolver(environ)]
    resolvers.extend(
        iaas_resolvers(environ=environ, iaas=iaas, transport=transport, azure_config=azure_config)
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
    """
    chain = default_chain(**options)
    return (await chain.resolve(reference)).credential
