"""imgpkg's resolution order as a ready-made chain, and the one-line ``resolve``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict, Unpack

from .chain import Chain, Resolver
from .credentials import Credential
from .resource import Resource
from .sources.dockerconfig import DockerConfigResolver
from .sources.env import EnvResolver
from .sources.flags import FlagsResolver

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


def default_chain(
    *,
    environ: Mapping[str, str] | None = None,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    anon: bool = False,
    iaas: bool | None = None,
    timeout: float | None = None,
) -> Chain:
    """The chain imgpkg would use: environment, IaaS, explicit options, Docker config.

    ``environ`` replaces ``os.environ`` for every variable asyncauth reads itself.
    ``username``/``password``/``token``/``anon`` are imgpkg's ``--registry-*`` flags.
    ``iaas`` turns the cloud resolvers on or off (default: ``IMGPKG_ENABLE_IAAS_AUTH``).
    Raises :class:`~asyncauth.ConfigError` when the environment is malformed.
    """
    resolvers: list[Resolver] = [EnvResolver(environ)]
    # 2. IaaS (ECR, Google, Azure, GitHub) slots in here: issue "IaaS resolvers".
    del iaas
    resolvers.append(
        FlagsResolver(username=username, password=password, token=token, anon=anon, environ=environ)
    )
    resolvers.append(DockerConfigResolver(environ=environ))
    return Chain(resolvers, timeout=timeout)


async def resolve(reference: str | Resource, **options: Unpack[ChainOptions]) -> Credential:
    """The credential :func:`default_chain` picks for ``reference`` (anonymous if none).

    Keyword arguments go to :func:`default_chain`. Each call builds a new chain; to resolve many
    references, build one chain and call :meth:`Chain.resolve` on it so its caches are shared.
    """
    chain = default_chain(**options)
    return (await chain.resolve(reference)).credential
