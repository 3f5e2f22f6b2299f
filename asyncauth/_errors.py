"""The exceptions asyncauth raises.

Two families matter to callers:

* :class:`ConfigError` is a *user mistake* (a malformed ``IMGPKG_REGISTRY_*`` variable, an
  unreadable config file). It is raised, never swallowed: a chain that silently ignored a typo
  would send the wrong credentials, or none, and the user would never learn why.
* :class:`ResolverError` is a *transient failure of one source* (a metadata server that does not
  answer, a crashing credential helper). The chain records it in the trace and moves on.

Messages name the variable, file, header or source involved, and never contain a secret.
"""

from __future__ import annotations


class AsyncAuthError(Exception):
    """Base class of every exception asyncauth raises on purpose."""


class InvalidReferenceError(AsyncAuthError, ValueError):
    """An image reference or registry name could not be parsed."""


class ConfigError(AsyncAuthError, ValueError):
    """The user's configuration is wrong; the message names the variable or file."""


class ResolverError(AsyncAuthError):
    """A credential source failed for a reason that may go away (network, subprocess).

    Resolvers raise it (or any other ``Exception``) to have the failure recorded in the
    trace; the chain then asks the next source.
    """


class ResolverUnavailableError(ResolverError):
    """A credential source cannot run here at all, e.g. its optional extra is not installed."""


class AuthenticationError(AsyncAuthError):
    """A token server refused the credentials, or answered with something unusable.

    The message names the registry, the token server's host, the scope and which source the
    credentials came from: what is needed to fix a wrong password, never the password.
    """


class InsecureTransportError(AsyncAuthError):
    """Sending credentials would expose them: plain http to a host that is not loopback.

    Opt in per registry with ``insecure_registries=`` when that is really meant.
    """


class ChallengeError(AsyncAuthError, ValueError):
    """A ``WWW-Authenticate`` header (or a challenge built from code) is malformed or unusable."""


class ScopeError(AsyncAuthError, ValueError):
    """A token scope (``type:name:actions``) is malformed."""


class TokenResponseError(AsyncAuthError, ValueError):
    """A token server's response body is not a usable token response."""


class RateLimitedError(AsyncAuthError):
    """A registry answered "not now" (429, or 503 with ``Retry-After``) and the wait it asked
    for does not fit in the request's time, or it answered so again after one wait; or the
    fleet is backing off from it for longer than the request may wait.

    The message names the registry, the wait and where it came from (this request's answer, or
    a backoff another process of the fleet shared through the token store). ``registry`` is
    the registry's ``host[:port]``; ``wait`` the seconds it asked to wait (``None`` if it did
    not say); ``rate_limit`` what its answer said of its limit
    (:class:`~asyncauth.RateLimit`), if anything.
    """

    def __init__(
        self,
        message: str,
        *,
        registry: str = "",
        wait: float | None = None,
        rate_limit: object = None,
    ) -> None:
        super().__init__(message)
        self.registry = registry
        self.wait = wait
        self.rate_limit = rate_limit
