"""Cloud credentials shared by a fleet: one ``GetAuthorizationToken`` per registry, not per process.

A chain's caching resolver that opts in (:class:`~asyncauth._chain.Sharing`: a ``token_store``)
has its answers kept in the store as well as in the chain's own cache: on a miss, the chain asks
the store before the resolver, under the same lease as tokens (one process of the fleet calls the
cloud; the others wait for its answer). The name is an HMAC of the resolver's name and cache key
(an ECR account and region, an ACR host); the value is the credential's fields, ``expires_at``
included, and it lives as long as the chain would keep it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Final

from .._credentials import EXPIRY_MARGIN, Credential
from .shared import shared

if TYPE_CHECKING:
    from .protocol import TokenStore

_FIELDS: Final = ("username", "password", "identity_token", "registry_token")


def sharing(
    store: TokenStore,
    key: tuple[str, Hashable],
    resolve: Callable[[], Awaitable[Credential | None]],
    ttl_of: Callable[[Credential | None], float],
    wait: float,
) -> Callable[[], Awaitable[Credential | None]]:
    """``resolve`` made fleet-wide for the resolver and cache key in ``key``: what a chain runs
    on a miss of a resolver that shares (see :func:`shared_answer`)."""
    name_material = material(*key)
    return lambda: shared_answer(store, name_material, resolve, ttl_of, wait=wait)


def material(resolver: str, cache_key: Hashable) -> bytes:
    """The key material of one resolver's answer: its name and its cache key's ``repr``.

    Cache keys are tuples of strings and frozen dataclasses, whose ``repr`` is the same in every
    process; the store hashes the material with its key, so it is never seen.
    """
    head = f"{resolver}\x00{cache_key!r}".encode("utf-8", "replace")
    return b"credential\x00" + head


def encode(credential: Credential) -> bytes:
    data: dict[str, object] = {"v": 1, "e": credential.expires_at}
    data.update({name: getattr(credential, name) for name in _FIELDS})
    return json.dumps(data).encode()


def decode(value: bytes) -> Credential | None:
    """A credential from the store that is still good for the margin, else ``None``."""
    try:
        data = json.loads(value)
        if not isinstance(data, dict) or data.get("v") != 1:
            return None
        fields = {name: data.get(name) for name in _FIELDS}
        expires_at = data.get("e")
    except (ValueError, RecursionError):
        return None
    if not all(v is None or isinstance(v, str) for v in fields.values()):
        return None
    if expires_at is not None:
        if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
            return None
        if expires_at - EXPIRY_MARGIN <= time.time():
            return None
    return Credential(**fields, expires_at=expires_at)


async def shared_answer(
    store: TokenStore,
    name_material: bytes,
    resolve: Callable[[], Awaitable[Credential | None]],
    ttl_of: Callable[[Credential | None], float],
    *,
    wait: float,
) -> Credential | None:
    """The fleet's answer for one resolver and key: from the store, or resolved here (by the one
    process that holds the lease) and published for the others."""
    fleet = shared(store)
    name = fleet.name(name_material)
    claim = await fleet.claim(name, decode, wait=wait)
    if claim.value is not None:
        return claim.value
    try:
        credential = await resolve()
        if credential is not None:
            await fleet.publish(name, encode(credential), ttl_of(credential))
    finally:
        if claim.held:
            await fleet.release(name)
    return credential
