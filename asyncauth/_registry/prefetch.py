"""Prefetch: the tokens of many repositories in as few token requests as the server allows.

A pipeline that knows its repositories up front need not pay one token request for each on its
cold start: distribution's token servers (Docker Hub's, GitLab's, ...) accept many ``scope``
parameters in one request and answer with one token for all. :func:`prefetch_flow` is that, as
a sans-IO flow like :func:`~asyncauth._registry.flow.request_flow` (the same effects, answered by
the same state and drivers; tests/test_flow.py drives it with canned replies):

1. The chain's extra headers are asked for (so that the first requests after a prefetch find
   everything they need and take the warm path), and the registry's challenge is learnt as a
   request would learn it (a ``GET /v2/`` ping, once
   for everyone, where it is not known yet). An open registry or a Basic one needs nothing more.
2. Each repository's credential is resolved; the keys of the tokens that are neither fresh nor
   being fetched by a request are claimed (:class:`~asyncauth._registry.messages.ClaimTokens`).
3. The claimed scopes are asked for in batches (:func:`plan_batches`): at most
   :data:`MAX_BATCH_SCOPES` repositories, :data:`MAX_TOKEN_URL` characters of URL and (as
   estimated) :data:`MAX_TOKEN_GRANTS` characters of grants in the token each.
4. One token is kept under every key it covers (stored once). Some servers honour one scope per
   request (Harbor and cesanta/docker_auth did): where the token is a JWT whose ``access`` claim
   lacks a scope (:func:`granted_scopes`, read without verifying: it is trusted for nothing but
   "ask again"), that scope is asked for on its own, once; no loop. A token that cannot be read
   is kept for all, and a registry that refuses it with ``insufficient_scope`` gets the normal
   retry of the flow (one request for that repository).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote_plus, urlencode

from .._errors import AsyncAuthError, ScopeError
from .._resolution import Resolution
from .._resource import Resource
from .challenge import Challenge
from .flow import Flow, Settings, authorization, fetch_token, learn, ping_url
from .messages import (
    LEAD,
    AwaitChallenge,
    Call,
    Claimed,
    ClaimTokens,
    Effect,
    Headers,
    KeepTokens,
    Learn,
    Need,
    Ping,
    Resolve,
)
from .scope import Scope, ScopeSet
from .target import Target
from .tokencache import TokenKey
from .tokens import Token

log = logging.getLogger("asyncauth.registry")

MAX_TOKEN_URL: Final = 4096
"""Characters a batched token request's URL may have (a POST's scope list likewise). Servers
and proxies commonly refuse request lines past 8 KiB (nginx's and Apache's defaults); half of
that leaves room for the rest of the request."""
MAX_TOKEN_GRANTS: Final = 6144
"""Characters the grants of a batch's token may take, estimated as a JWT names them (base64 of
``{"type":…,"name":…,"actions":[…]}`` per repository: ~100 characters for a short name). The
token goes back in every request's ``Authorization`` header, which proxies bound too (nginx: 8
KiB per header line by default)."""
MAX_BATCH_SCOPES: Final = 64
"""Repositories asked for in one token request, at most."""
MAX_READABLE_TOKEN: Final = 1 << 20
"""Characters of a token :func:`granted_scopes` reads at most; longer ones count as unreadable."""

PULL: Final = frozenset({"pull"})
PULL_PUSH: Final = frozenset({"pull", "push"})
_SCOPE_PARAMETER = len("&scope=")
_NO_SCOPES = ScopeSet()

# -- which tokens --------------------------------------------------------------------------------


def by_registry(
    references: Iterable[str | Resource],
    base_url: str | None,
    registry_url: Callable[[Resource], str],
) -> list[tuple[str, list[Resource]]]:
    """The references' repositories per registry (first seen first, each once), with the URL of
    their registry: ``base_url``, which only one registry may have, or ``registry_url``'s."""
    found: dict[str, dict[str, Resource]] = {}
    for reference in references:
        resource = Resource.parse(reference)
        if resource.repository is None:
            raise AsyncAuthError(f"{resource}: a token is for a repository, not a registry")
        found.setdefault(resource.registry, {}).setdefault(resource.repository, resource)
    if base_url is not None and len(found) > 1:
        raise AsyncAuthError("prefetch: base_url= names one registry; these are on several")
    grouped = [list(repositories.values()) for repositories in found.values()]
    return [(base_url or registry_url(resources[0]), resources) for resources in grouped]


def needs_for(target: Target, resources: Iterable[Resource], *, push: bool) -> tuple[Need, ...]:
    """What a request for each repository would need: pull (a GET), and with ``push`` also
    pull and push (a PUT, PATCH or POST), so the one token serves both kinds of request."""
    needs: list[Need] = []
    for resource in resources:
        name = resource.repository
        assert name is not None
        repository = Resource(target.registry, name)  # as a request to the registry names it
        for actions in (PULL, PULL_PUSH) if push else (PULL,):
            needs.append(Need(repository, ScopeSet((Scope("repository", name, actions),))))
    return tuple(needs)


# -- batches -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch:
    """One token request: the scopes it asks for, and the keys whose token it should be."""

    scopes: ScopeSet
    keys: tuple[TokenKey, ...]


def _cost(scope: Scope) -> tuple[int, int]:
    """Characters ``scope`` adds to a token request (``&scope=<value>`` in a GET's URL, more
    than the ``+<value>`` it adds to a POST's one space-separated ``scope``) and, estimated, to
    the token's grants (its JWT ``access`` entry, base64)."""
    entry = f'{{"type":"{scope.type}","name":"{scope.name}","actions":[]}},'
    grant = len(entry) + sum(len(action) + 3 for action in scope.actions)
    return _SCOPE_PARAMETER + len(quote_plus(str(scope))), (grant * 4 + 2) // 3


def _growth(
    scopes: dict[tuple[str, str], Scope], key: TokenKey
) -> tuple[dict[Any, Scope], tuple[int, int]]:
    """The scopes ``key`` adds to a batch that asks for ``scopes``, and what they add to its
    request and to its token (see :func:`_cost`)."""
    grown: dict[tuple[str, str], Scope] = {}
    url = grants = 0
    for scope in key.scopes:
        old = scopes.get(scope.resource)
        new = scope if old is None else old.merge(scope)
        if old is None or new.actions != old.actions:
            grown[scope.resource] = new
            (new_url, new_grant), (old_url, old_grant) = _cost(new), (0, 0)
            if old is not None:
                old_url, old_grant = _cost(old)
            url, grants = url + new_url - old_url, grants + new_grant - old_grant
    return grown, (url, grants)


def plan_batches(
    keys: Sequence[TokenKey], room: int, *, most: int = MAX_BATCH_SCOPES
) -> list[Batch]:
    """``keys`` in order, in batches whose merged scopes take at most ``room`` characters of
    request, :data:`MAX_TOKEN_GRANTS` of token and ``most`` resources (a key too big for any
    batch gets one of its own)."""
    batches: list[Batch] = []
    scopes: dict[tuple[str, str], Scope] = {}
    members: list[TokenKey] = []
    url = grants = 0
    for key in keys:
        grown, (more_url, more_grants) = _growth(scopes, key)
        resources = len(scopes.keys() | grown.keys())
        full = url + more_url > room or grants + more_grants > MAX_TOKEN_GRANTS
        if members and (full or resources > most):
            batches.append(Batch(ScopeSet(tuple(scopes.values())), tuple(members)))
            scopes, members, url, grants = {}, [], 0, 0
            grown, (more_url, more_grants) = _growth(scopes, key)
        scopes.update(grown)
        members.append(key)
        url, grants = url + more_url, grants + more_grants
    if members:
        batches.append(Batch(ScopeSet(tuple(scopes.values())), tuple(members)))
    return batches


def room_for_scopes(challenge: Challenge, settings: Settings) -> int:
    """Characters left for scopes in a token request to ``challenge``'s realm."""
    fixed = len(challenge.realm or "") + 1 + len(urlencode({"service": challenge.service or ""}))
    if settings.offline_token:
        extra = {"offline_token": "true", "client_id": settings.client_id}
        fixed += 1 + len(urlencode(extra))
    return MAX_TOKEN_URL - fixed


# -- what a token grants -------------------------------------------------------------------------


def granted_scopes(access_token: str) -> ScopeSet | None:
    """What a JWT's ``access`` claim grants (distribution's token format), read *without
    verifying* the token: only to learn which scopes to ask for again. ``None`` when the token
    is not a JWT with a readable ``access`` list (an opaque token: trust it for all)."""
    if len(access_token) > MAX_READABLE_TOKEN or access_token.count(".") != 2:
        return None
    payload = access_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        return None
    access = claims.get("access") if isinstance(claims, dict) else None
    if not isinstance(access, list):
        return None
    scopes: list[Scope] = []
    for entry in access:
        if not isinstance(entry, dict):
            continue
        type_, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if not (isinstance(type_, str) and isinstance(name, str) and isinstance(actions, list)):
            continue
        try:
            scopes.append(Scope(type_, name, frozenset(a for a in actions if isinstance(a, str))))
        except ScopeError:
            continue
    return ScopeSet(tuple(scopes))


def covers(granted: ScopeSet, asked: ScopeSet) -> bool:
    """Whether ``granted`` allows every action ``asked`` names (``*`` allows any)."""
    have = {scope.resource: scope.actions for scope in granted}
    for scope in asked:
        actions = have.get(scope.resource, frozenset())
        if "*" not in actions and not scope.actions <= actions:
            return False
    return True


# -- the flow ------------------------------------------------------------------------------------


def prefetch_flow(target: Target, base: str, needs: Sequence[Need], settings: Settings) -> Flow:
    """Fetch the tokens ``needs`` (all on ``target``, the registry at ``base``) would need, in as
    few token requests as the server allows; returns ``None``."""
    url = f"{base.rstrip('/')}/v2/"
    yield Headers()  # what every request carries, learnt now: its first request takes the warm path
    known = yield AwaitChallenge(target.origin)
    if known is LEAD:
        reply = yield Ping(ping_url(url))
        known = learn(target, reply)
        yield Learn(target.origin, known)
    if not isinstance(known, Challenge) or not known.is_bearer:
        return None  # an open registry, or Basic: no token to fetch
    groups = yield from _claimable(target, known, needs)
    for resolution, keys in groups:
        claimed = yield ClaimTokens(tuple(keys))
        assert isinstance(claimed, Claimed)
        if claimed.keys:
            template = Call("GET", url, target, Need(resolution.resource, _NO_SCOPES), False)
            template.challenge, template.resolution = known, resolution
            yield from _fetch(template, claimed, settings)
    return None


def _fetch_token(
    template: Call, settings: Settings, scopes: ScopeSet, refresh: str | None
) -> Generator[Effect, Any, Token]:
    """One token request, with a call of its own (what ``anonymous_fallback`` decides is one
    request's, as for the requests the prefetch stands in for)."""
    call = Call(template.method, template.url, template.target, template.need, False)
    call.challenge, call.resolution = template.challenge, template.resolution
    return (yield from fetch_token(call, settings, scopes, refresh))


def _claimable(
    target: Target, challenge: Challenge, needs: Sequence[Need]
) -> Generator[Effect, Any, list[tuple[Resolution, list[TokenKey]]]]:
    """The token keys of ``needs``, per credential (one token request serves one credential)."""
    groups: dict[Any, tuple[Resolution, list[TokenKey]]] = {}
    for need in needs:
        resolution = yield Resolve(need.resource)
        key = authorization(target, challenge, resolution, need.scopes)
        if isinstance(key, TokenKey):  # else a registry token, or nothing to send
            groups.setdefault(resolution.credential, (resolution, []))[1].append(key)
    return list(groups.values())


def _fetch(template: Call, claimed: Claimed, settings: Settings) -> Generator[Effect, Any, None]:
    """The claimed tokens: in batches, then each scope a batch's token lacks on its own. Each
    request uses the refresh token the previous answer handed out (else the credential)."""
    assert template.challenge is not None
    refresh = claimed.refresh_token
    missing: list[TokenKey] = []
    batches = plan_batches(claimed.keys, room_for_scopes(template.challenge, settings))
    for batch in batches:
        token = yield from _fetch_token(template, settings, batch.scopes, refresh)
        refresh = token.refresh_token
        granted = granted_scopes(token.access_token) if len(batch.scopes) > 1 else None
        covered = tuple(k for k in batch.keys if granted is None or covers(granted, k.scopes))
        if covered:
            yield KeepTokens(covered, token)
        missing.extend(k for k in batch.keys if k not in covered)
    log.debug(
        "prefetch for %s: %d tokens in %d requests, %d scopes asked again",
        template.target.registry,
        len(claimed.keys),
        len(batches),
        len(missing),
    )
    again: dict[tuple[Any, ...], list[TokenKey]] = {}
    for key in missing:  # once per resource: its pull and pull+push keys share a request
        again.setdefault(tuple(scope.resource for scope in key.scopes), []).append(key)
    for keys in again.values():
        scopes = ScopeSet(tuple(scope for key in keys for scope in key.scopes))
        token = yield from _fetch_token(template, settings, scopes, refresh)
        refresh = token.refresh_token
        yield KeepTokens(tuple(keys), token)


__all__ = [
    "MAX_BATCH_SCOPES",
    "MAX_TOKEN_GRANTS",
    "MAX_TOKEN_URL",
    "Batch",
    "by_registry",
    "covers",
    "granted_scopes",
    "needs_for",
    "plan_batches",
    "prefetch_flow",
    "room_for_scopes",
]
