"""Why a request was refused, said so that the user can act on it (and never with a secret).

A failing credential source is never silently anonymous: when a registry refuses a request and
sources failed on the way to the credential that was sent (or to none), the error names each
of them and why. A Basic registry's refusal names the source whose credential it refused; a
token server's, the scope, the kind of credential and its source. A 401 that a forwarding proxy
gave in the registry's place names the proxy (:func:`proxy_refusal`); an upload whose token was
refused and whose body cannot be sent again says what to pass instead (:func:`not_replayable`);
a pull that ``anonymous_fallback`` sent anonymously keeps why in its trace (:func:`fallen_back`).
"""

from __future__ import annotations

import re
from dataclasses import replace
from urllib.parse import urlsplit

from .._credentials import Credential
from .._errors import AsyncAuthError, AuthenticationError
from .._redact import clip, redact
from .._resolution import Outcome, Resolution, TraceEntry
from .._resolution import failures_text as _failures_text
from .._resolution import refuse_failed_anonymous as refuse_failed_anonymous
from .challenge import Challenge, parse_challenges
from .messages import Call, Reply
from .scope import ScopeSet
from .target import Target


def explain_refusal(call: Call, *, sent: bool) -> None:
    """Raise what the user needs to know about a final 401 from the registry, if anything."""
    resolution, challenge = call.resolution, call.challenge
    assert resolution is not None
    assert challenge is not None
    where = f"{resolution.resource}: the registry refused the request (401)"
    if call.fallback is not None:
        raise AuthenticationError(
            f"{where} after {call.fallback.trace[-1].detail}, and refused the anonymous try too"
        )
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


FALLBACK = "anonymous fallback"
"""The name of the trace entry :func:`fallen_back` adds (``asyncauth explain`` shows it)."""
API_VERSION_HEADER = "docker-distribution-api-version"
"""What a registry sends on its answers (``registry/2.0``) and a proxy does not."""
_PRINTABLE = re.compile(r"[^\x20-\x7e]")


def fallen_back(resolution: Resolution, challenge: Challenge, status: int) -> Resolution:
    """``resolution`` as ``anonymous_fallback`` leaves it: anonymous, with a trace entry saying
    whose credential the token server refused (never the credential itself)."""
    credential = resolution.credential
    user = f" for user {credential.username}" if credential.username else ""
    realm_host = urlsplit(challenge.realm or "").netloc.rpartition("@")[2]
    detail = (
        f"the token server {realm_host} refused {credential.kind} credentials{user} from "
        f"{resolution.source or 'no source'} ({status}); the pull went anonymous "
        "(anonymous_fallback)"
    )
    entry = TraceEntry(FALLBACK, Outcome.MATCHED, 0.0, detail)
    return replace(
        resolution,
        credential=Credential.anonymous(),
        source=FALLBACK,
        trace=(*resolution.trace, entry),
    )


def proxy_refusal(registry: str, reply: Reply) -> AuthenticationError | None:
    """The error for a 401 a forwarding proxy may have given in the registry's place: one that
    came through a proxy to a plain-http request, without the header every registry sends.

    Such a 401 (tinyproxy answers wrong proxy credentials with ``401`` and ``WWW-Authenticate:
    Basic realm="Tinyproxy"``) is not the registry's challenge: answering it with the
    registry's password would send that password to the proxy, and blame the registry for the
    proxy's refusal. A Bearer challenge with a realm is the registry's, header or not: no proxy
    sends clients to a token server."""
    if reply.status != 401 or reply.via is None or not reply.url.startswith("http://"):
        return None
    if reply.header(API_VERSION_HEADER) is not None or _token_challenge(reply):
        return None
    return AuthenticationError(
        f"{registry}: a 401 came through the proxy {reply.via} without the registry's "
        f"Docker-Distribution-API-Version header{_challenge_shown(reply)}: probably the proxy "
        "refusing its own credentials (check the user and password in proxy= or HTTP_PROXY), "
        "not the registry; no registry credential was sent in answer to it"
    )


def _token_challenge(reply: Reply) -> bool:
    """Whether ``reply`` challenges for a token (a Bearer challenge with a realm)."""
    try:
        challenges = parse_challenges(reply.header_list("www-authenticate"))
    except AsyncAuthError:
        return False
    return any(challenge.is_bearer and challenge.realm for challenge in challenges)


def _challenge_shown(reply: Reply) -> str:
    """The challenge's scheme and realm (server text, never a secret: no token68), clipped."""
    try:
        challenges = parse_challenges(reply.header_list("www-authenticate"))
    except AsyncAuthError:
        return ""
    if not challenges:
        return ""
    first = challenges[0]
    realm = first.params.get("realm")
    shown = clip(first.scheme.capitalize(), 24)
    if realm is not None:
        shown += f' realm="{_PRINTABLE.sub("?", redact(realm, limit=40))}"'
    return f" (WWW-Authenticate: {shown})"


def not_replayable(call: Call) -> AuthenticationError:
    """The error for an upload whose token the registry refused (it expired, or was revoked,
    while the body was on its way) when the body was a one-shot stream: asyncauth cannot send
    it again with a fresh token, and the registry's bare 401 would not say why."""
    return AuthenticationError(
        f"{call.need.resource}: the registry refused the token of this {call.method} (401; "
        "did it expire during the upload?) and the request's body is a one-shot stream "
        "(an iterator or generator) that cannot be sent again with a fresh one; pass the body "
        "as bytes, a str or a seekable file, or upload it in chunks (PATCH), to have it "
        "retried once with a fresh token (docs/handshake.md, 'Uploads that outlive a token')"
    )
