"""asyncauth: which credentials to send to a container registry, and the token handshake.

>>> import asyncauth
>>> resolution = await asyncauth.default_chain().resolve("ghcr.io/org/app")  # doctest: +SKIP
>>> resolution.source, resolution.credential  # doctest: +SKIP
('env', Credential(kind='basic', username='bot', password='****'))
"""

from ._errors import (
    AsyncAuthError,
    ConfigError,
    InvalidReferenceError,
    ResolverError,
    ResolverUnavailableError,
)
from ._version import __version__
from .chain import Chain, Outcome, Resolution, Resolver, TraceEntry
from .credentials import Credential
from .defaults import ChainOptions, default_chain, resolve
from .resource import Resource
from .sources.env import EnvResolver
from .sources.flags import FlagsResolver

__all__ = [
    "AsyncAuthError",
    "Chain",
    "ChainOptions",
    "ConfigError",
    "Credential",
    "EnvResolver",
    "FlagsResolver",
    "InvalidReferenceError",
    "Outcome",
    "Resolution",
    "Resolver",
    "ResolverError",
    "ResolverUnavailableError",
    "Resource",
    "TraceEntry",
    "__version__",
    "default_chain",
    "resolve",
]
