"""asyncauth: which credentials to send to a container registry, and the token handshake.

>>> import asyncauth
>>> resolution = await asyncauth.default_chain().resolve("ghcr.io/org/app")  # doctest: +SKIP
>>> resolution.source, resolution.credential  # doctest: +SKIP
('env', Credential(kind='basic', username='bot', password='****'))
"""

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
from ._version import __version__
from .chain import Chain, Outcome, Resolution, Resolver, TraceEntry
from .client import create_client, create_sync_client, ssl_context
from .credentials import Credential
from .defaults import ChainOptions, default_chain, resolve
from .registry.auth import RegistryAuth
from .resource import Resource
from .sources.azure import AzureResolver
from .sources.dockerconfig import DockerConfigResolver
from .sources.ecr import ECRResolver
from .sources.env import EnvResolver
from .sources.flags import FlagsResolver
from .sources.github import GitHubResolver
from .sources.google import GoogleResolver
from .sources.iaas import iaas_resolvers

__all__ = [
    "AsyncAuthError",
    "AuthenticationError",
    "AzureResolver",
    "Chain",
    "ChainOptions",
    "ChallengeError",
    "ConfigError",
    "Credential",
    "DockerConfigResolver",
    "ECRResolver",
    "EnvResolver",
    "FlagsResolver",
    "GitHubResolver",
    "GoogleResolver",
    "InsecureTransportError",
    "InvalidReferenceError",
    "Outcome",
    "RegistryAuth",
    "Resolution",
    "Resolver",
    "ResolverError",
    "ResolverUnavailableError",
    "Resource",
    "ScopeError",
    "TokenResponseError",
    "TraceEntry",
    "__version__",
    "create_client",
    "create_sync_client",
    "default_chain",
    "iaas_resolvers",
    "resolve",
    "ssl_context",
]
