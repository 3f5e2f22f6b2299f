"""Why a request was refused, said so that the user can act on it (and never with a secret).

A failing credential source is never silently anonymous: when a registry refuses a request and
sources failed on the way to the credential that was sent (or to none), the error names each
of them and why. A Basic registry's refusal names the source whose credential it refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from .._errors import AuthenticationError
from .._resolution import failures_text as _failures_text
from .._resolution import refuse_failed_anonymous as refuse_failed_anonymous
from .target import Target

if TYPE_CHECKING:
    from .call import Call


def waited(target: Target, wait: float | None) -> httpx.TimeoutException:
    return httpx.ReadTimeout(
        f"{target.registry}: no token within {wait or 0:g} s (waited for a token request "
        "another request was making; it did not finish in this request's own timeout)"
    )


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
