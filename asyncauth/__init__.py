"""asyncauth: which credentials to send to a container registry, and the token handshake.

>>> import asyncauth
>>> resolution = await asyncauth.default_chain().resolve("ghcr.io/org/app")  # doctest: +SKIP
>>> resolution.source, resolution.credential  # doctest: +SKIP
('env', Credential(kind='basic', username='bot', password='****'))
"""

import sys
from importlib import import_module
from types import FunctionType
from typing import TYPE_CHECKING, Any

from . import _compat
from ._errors import (
    AsyncAuthError,
    AuthenticationError,
    ChallengeError,
    ConfigError,
    InsecureTransportError,
    InvalidReferenceError,
    RateLimitedError,
    ResolverError,
    ResolverUnavailableError,
    ScopeError,
    TokenResponseError,
)
from ._version import __version__

if TYPE_CHECKING:
    from ._chain import (
        Bounded,
        Caching,
        Chain,
        Claiming,
        Explaining,
        HeaderSource,
        Hinting,
        Resolver,
        Sharing,
    )
    from ._client import (
        create_client,
        create_sync_client,
        ssl_context,
    )
    from ._credentials import Credential
    from ._defaults import (
        ChainOptions,
        default_chain,
        iaas_resolvers,
        resolve,
    )
    from ._media_types import MANIFEST_MEDIA_TYPES
    from ._ratelimit import RateLimit, rate_limit
    from ._registry.auth import RegistryAuth
    from ._resolution import Outcome, Resolution, TraceEntry
    from ._resource import Resource
    from ._sources.azure import AzureResolver
    from ._sources.docker.resolver import DockerConfigResolver
    from ._sources.ecr import ECRResolver
    from ._sources.env import EnvResolver
    from ._sources.flags import FlagsResolver
    from ._sources.github import GitHubResolver
    from ._sources.google import GoogleResolver
    from ._stores.memory import MemoryTokenStore
    from ._stores.protocol import TokenStore
    from ._stores.redis import RedisTokenStore

__all__ = [
    "MANIFEST_MEDIA_TYPES",
    "AsyncAuthError",
    "AuthenticationError",
    "AzureResolver",
    "Bounded",
    "Caching",
    "Chain",
    "ChainOptions",
    "ChallengeError",
    "Claiming",
    "ConfigError",
    "Credential",
    "DockerConfigResolver",
    "ECRResolver",
    "EnvResolver",
    "Explaining",
    "FlagsResolver",
    "GitHubResolver",
    "GoogleResolver",
    "HeaderSource",
    "Hinting",
    "InsecureTransportError",
    "InvalidReferenceError",
    "MemoryTokenStore",
    "Outcome",
    "RateLimit",
    "RateLimitedError",
    "RedisTokenStore",
    "RegistryAuth",
    "Resolution",
    "Resolver",
    "ResolverError",
    "ResolverUnavailableError",
    "Resource",
    "ScopeError",
    "Sharing",
    "TokenResponseError",
    "TokenStore",
    "TraceEntry",
    "__version__",
    "create_client",
    "create_sync_client",
    "default_chain",
    "iaas_resolvers",
    "rate_limit",
    "resolve",
    "ssl_context",
]

_HOMES: dict[str, tuple[str, ...]] = {
    "._chain": (
        "Bounded",
        "Caching",
        "Chain",
        "Claiming",
        "Explaining",
        "HeaderSource",
        "Hinting",
        "Resolver",
        "Sharing",
    ),
    "._client": ("create_client", "create_sync_client", "ssl_context"),
    "._credentials": ("Credential",),
    "._defaults": ("ChainOptions", "default_chain", "iaas_resolvers", "resolve"),
    "._media_types": ("MANIFEST_MEDIA_TYPES",),
    "._ratelimit": ("RateLimit", "rate_limit"),
    "._registry.auth": ("RegistryAuth",),
    "._resolution": ("Outcome", "Resolution", "TraceEntry"),
    "._stores.memory": ("MemoryTokenStore",),
    "._stores.protocol": ("TokenStore",),
    "._resource": ("Resource",),
    "._sources.azure": ("AzureResolver",),
    "._sources.docker.resolver": ("DockerConfigResolver",),
    "._sources.ecr": ("ECRResolver",),
    "._sources.env": ("EnvResolver",),
    "._sources.flags": ("FlagsResolver",),
    "._sources.github": ("GitHubResolver",),
    "._sources.google": ("GoogleResolver",),
    "._stores.redis": ("RedisTokenStore",),
}
"""The module that defines each public name other than the exceptions. ``import asyncauth``
loads none of them (it takes a few milliseconds, not the ~70 ms of the handshake, the sources
and their dependencies); the first use of a name loads its module and what that one needs."""

_HOME_OF = {name: home for home, names in _HOMES.items() for name in names}
_MISSING = object()


def _as_public(value: Any) -> Any:
    """The one rule for public names: a class or function shows as ``asyncauth.X`` in
    tracebacks, reprs and pickles, which is where users import it from, not as the private
    module that happens to define it today (``asyncauth._errors.ConfigError``)."""
    if isinstance(value, type | FunctionType) and value.__module__.startswith(f"{__name__}."):
        value.__module__ = __name__
    return value


def _bind_loaded() -> None:
    """Bind every public name whose module is loaded, also one loaded as another's dependency:
    a class shows as ``asyncauth.X`` from the moment any public name can hand it out, and
    ``typing.get_type_hints`` finds the names its annotations use."""
    namespace = globals()
    for home, names in _HOMES.items():
        module = sys.modules.get(f"{__name__}{home}")
        if module is None:
            continue
        for name in names:
            value = getattr(module, name, _MISSING)
            if name not in namespace and value is not _MISSING:
                namespace[name] = _as_public(value)


def __getattr__(name: str) -> Any:
    """Load a public name's module on its first use (PEP 562)."""
    home = _HOME_OF.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import_module(home, __name__)
    _bind_loaded()
    return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


for _name in __all__:
    if _name not in _HOME_OF:  # the exceptions: loaded now, so shown right from the start
        _as_public(globals()[_name])
del _name
_compat.install(sys.modules[__name__])
