"""Why a request was refused, said so that the user can act on it (and never with a secret).

A failing credential source is never silently anonymous: when a registry refuses a request and
sources failed on the way to the credential that was sent (or to none), the error names each
of them and why. A Basic registry's refusal names the source whose credential it refused; a
token server's, the scope, the kind of credential and its source.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .._credentials import Credential
from .._errors import AuthenticationError
from .._resolution import Resolution
from .._resolution import failures_text as _failures_text
from .._resolution import refuse_failed_anonymous as refuse_failed_anonymous
from .challenge import Challenge
from .messages import Call
from .scope import ScopeSet
from .target import Target


def explain_refusal(call: Call, *, sent: bool) -> None:
    """Raise what the user needs to know about a final 401 from the registry, if anything."""
    resolution, challenge = call.resolution, call.challenge
    assert resolution is not None
    assert challenge is not None
    where = f"{resolution.resource}: the registry refused the request (401)"
    if resolution.failures:
        raise AuthenticationError(
            f"{where}; these sources failed and might have had the credential: "
            f"{_failures_text(resolution)}"
        )
    if sent and challenge.is_basic:
        credential = resolution.credential
        raise AuthenticationError(
            f"{where}: it refused {credential.kind} credentials for user "
            f"{credential.username or '(none)'} from {resolution.source or 'no source'}"
        )


def token_refused(
    target: Target,
    challenge: Challenge,
    scopes: ScopeSet,
    credential: Credential,
    resolution: Resolution,
    status: int,
) -> AuthenticationError:
    """The error for a token server's refusal (or failure) to hand out a token."""
    realm_host = urlsplit(challenge.realm or "").netloc.rpartition("@")[2]
    source = resolution.source or "no source (anonymous)"
    hint = "the credentials were refused" if status in (401, 403) else "the token server failed"
    return AuthenticationError(
        f"{target.registry}: token server {realm_host} answered {status} for scope "
        f"{scopes or '(none)'} with {credential.kind} credentials from {source}: {hint}"
    )
