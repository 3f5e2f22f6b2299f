"""Errors of the handshake layer, re-exported where the parsers that raise them live.

Their messages name the header or the response involved and never echo the value itself: a
``WWW-Authenticate`` header may carry a token68 secret and a token response always carries a token.
"""

from __future__ import annotations

from .._errors import ChallengeError, ScopeError, TokenResponseError

__all__ = ["ChallengeError", "ScopeError", "TokenResponseError"]
