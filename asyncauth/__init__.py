"""asyncauth: which credentials to send to a container registry, and the token handshake.

>>> import asyncauth
>>> resolution = await asyncauth.default_chain().resolve("ghcr.io/org/app")  # doctest: +SKIP
>>> resolution.source, resolution.credential  # doctest: +SKIP
('env', Credential(kind='basic', username='bot', password='****'))
"""

import sys

from . import _compat
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
from ._client import create_client, create_sync_client, ssl_context
from ._credentials import Credential
from ._defaults import ChainOptions, default_chain, iaas_resolvers, resolve
from ._errors import (
    AsyncAuthError,
    AuthenticationError,
    ChallengeError,
    ConfigError,
    InsecureTransportError,
    InvalidReferenceError,
    ResolverError,
    ResolverUnavailableError,
    ScopeError,
    TokenResponseError,
)
from ._media_types import MANIFEST_MEDIA_TYPES
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
from ._version import __version__

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
    "resolve",
    "ssl_context",
]

_compat.install(sys.modules[__name__])
