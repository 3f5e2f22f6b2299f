"""The aiohttp middleware's warm path: what one route (origin, method, path, query) was last
authorised with, and a check that it still holds.

Requests repeat the same few routes. The first warm request of a route works out its target,
scopes, challenge, credential and token key (what :meth:`Handshake.authorization` decides); a
:class:`Route` keeps them, and every later request of the route only asks the handshake's caches
whether the same challenge, the same credential and a fresh token are still there (three
lookups, by identity), then sends the header it has already built. Anything gone or replaced
(expiry, ``clear()``, a token dropped after a 401) sends the request back to the full decision.
Measured against the real registry, rebuilding the decision on every request cost the
middleware about four times its own warm CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._chain import Resolution
from .call import Need
from .challenge import Challenge
from .flow import Handshake
from .target import Target
from .tokencache import TokenKey, token_cache_key
from .tokens import Token

MAX_ROUTES = 4096
"""Routes remembered per middleware; past it the table starts again (a bound, not an LRU)."""

RouteKey = tuple[str, str, str, str, str]
"""``(scheme, raw authority, method, raw path, raw query)`` of a request's URL."""


@dataclass(slots=True)
class Route:
    """One route's last decision, reused while the caches it came from still hold it."""

    target: Target
    need: Need
    challenge: Challenge
    resolution: Resolution
    key: TokenKey | None
    """The token's cache key; ``None`` when the header does not come from a token (Basic, a
    registry token), so that the challenge and the credential are all it depends on."""
    token: Token | None
    value: str

    def authorization(self, handshake: Handshake) -> str | None:
        """The header value, if the challenge, credential and token are still the same."""
        if handshake.challenges.peek(self.target.origin) is not self.challenge:
            return None
        if handshake.resolutions.peek(self.need.resource) is not self.resolution:
            return None
        if self.key is None:
            return self.value
        token = handshake.tokens.fresh(self.key)
        if token is None:
            return None
        if token is not self.token:  # refreshed: build its header once
            self.token, self.value = token, token.authorization
        return self.value


def route_for(
    handshake: Handshake, target: Target, need: Need, challenge: Challenge, resolution: Resolution
) -> Route | None:
    """The decision for a route from the caches (``None`` when something must be fetched)."""
    value = handshake.authorization(target, challenge, resolution, need.scopes)
    if not isinstance(value, str):
        return None
    credential = resolution.credential
    key: TokenKey | None = None
    token: Token | None = None
    if credential.kind != "registry_token" and not challenge.is_basic:
        # Handshake.authorization found this token: the same key finds it again.
        key = token_cache_key(target.registry, challenge.service, need.scopes, credential)
        token = handshake.tokens.fresh(key)
    return Route(target, need, challenge, resolution, key, token, value)
