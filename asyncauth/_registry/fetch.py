"""Fetching one token: the requests the flow yields, and the rules each of them obeys.

* The token request carries the caller's own timeouts (the original request's ``timeout``
  extension), so a token server that accepts and never answers cannot hang a request.
* It asks for ``gzip``/``deflate`` only, and the answer is read through a bounded decoder
  (:mod:`~asyncauth._registry.bodies`): the size limit counts decoded bytes.
* Its destination is checked before it is sent, and every host a redirect led it to is checked
  after (:func:`~asyncauth._registry.target.check_destination`); httpx drops ``Authorization``
  on a redirect to another origin, and a POST body (a refresh token) is a one-shot stream, so a
  redirect never carries the secret on.
* ``429``/``503`` are retried (at most :data:`MAX_ATTEMPTS` tries, honouring a capped
  ``Retry-After``); ``401``/``403`` never are: a refused password is not asked again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import httpx

from .._credentials import Credential
from .._errors import AuthenticationError, TokenResponseError
from .._http.retry import MAX_ATTEMPTS, retry_delay
from .._http.retry import RETRY_STATUSES as _RETRY_STATUSES
from .bodies import ACCEPT_ENCODING
from .challenge import Challenge
from .effects import Do, Send
from .scope import ScopeSet
from .streams import one_shot
from .target import Target, check_destination
from .tokens import (
    HEADER_SAFE,
    OAUTH_FALLBACK_STATUSES,
    Token,
    TokenRequest,
    basic_authorization,
    build_token_request,
    parse_token_response,
)

if TYPE_CHECKING:
    from .._resolution import Resolution
    from .call import Call
    from .effects import Effect
    from .flow import Options
    from .tokencache import TokenCache

log = logging.getLogger("asyncauth.registry")


class TokenFetch:
    """Builds, sends and checks token requests for one ``RegistryAuth``."""

    def __init__(self, http: ModuleType, options: Options) -> None:
        self.http = http
        self.options = options

    @staticmethod
    def basic(credential: Credential) -> str | None:
        """The Basic header for a username/password credential, ``None`` for other kinds."""
        if credential.kind != "basic":
            return None
        return basic_authorization(credential.username or "", credential.password or "")

    @staticmethod
    def bearer(credential: Credential, resolution: Resolution, target: Target) -> str:
        """A registry token as a header, refused (without echoing it) if no header can hold it."""
        token = credential.registry_token or ""
        if not HEADER_SAFE.fullmatch(token):
            raise AuthenticationError(
                f"{target.registry}: the registry token from {resolution.source or 'no source'} "
                "has characters a header cannot carry (whitespace or a line break?); not sent"
            )
        return f"Bearer {token}"

    def token(
        self, call: Call, scopes: ScopeSet, tokens: TokenCache
    ) -> Generator[Effect, Any, Token]:
        """Fetch a token for ``scopes`` with the call's credential."""
        request, target = call.request, call.target
        challenge, resolution = call.challenge, call.resolution
        assert challenge is not None
        assert resolution is not None
        credential = resolution.credential
        service = challenge.service or ""
        refresh = tokens.refresh_token(target.registry, service, credential)
        asked = credential
        if refresh is not None and credential.kind in ("basic", "identity_token"):
            asked = Credential(username=credential.username, identity_token=refresh)
        response, body = yield from self._exchange(request, target, challenge, scopes, asked)
        if response.status_code != 200:
            if refresh is not None:
                tokens.keep_refresh_token(target.registry, service, credential, None)
            raise _refused(target, challenge, scopes, credential, resolution, response)
        if body is None:  # pragma: no cover - the driver always reads a token response
            raise TokenResponseError("token response: the body was not read")
        token = parse_token_response(body, received_at=time.time())
        log.debug(
            "token for %s %s from %s: %s, %.0f s",
            target.registry,
            scopes or "(no scope)",
            urlsplit(challenge.realm or "").hostname,
            credential.kind,
            token.lifetime,
        )
        if token.refresh_token:
            tokens.keep_refresh_token(target.registry, service, credential, token.refresh_token)
        return token

    def _exchange(
        self,
        request: httpx.Request,
        target: Target,
        challenge: Challenge,
        scopes: ScopeSet,
        asked: Credential,
    ) -> Generator[Effect, Any, tuple[httpx.Response, bytes | None]]:
        """The token request (and the GET fallback of an OAuth2 POST nobody speaks)."""
        options = self.options
        build = dict(client_id=options.client_id, allow_http=target.plain_http)
        description = build_token_request(challenge, scopes, asked, **build)  # type: ignore[arg-type]
        response, body = yield from self._send(request, target, description, asked)
        if asked.kind == "identity_token" and response.status_code in OAUTH_FALLBACK_STATUSES:
            description = build_token_request(
                challenge,
                scopes,
                asked,
                oauth_fallback=True,
                **build,  # type: ignore[arg-type]
            )
            response, body = yield from self._send(request, target, description, asked)
        for hop in (*response.history, response):
            check_destination(target, str(hop.request.url), options.insecure, carries=False)
        return response, body

    def _send(
        self, request: httpx.Request, target: Target, description: TokenRequest, asked: Credential
    ) -> Generator[Effect, Any, tuple[httpx.Response, bytes | None]]:
        check_destination(
            target, description.url, self.options.insecure, carries=not asked.is_anonymous
        )
        for attempt in range(MAX_ATTEMPTS):
            self.options.stats.token_requests += 1
            outgoing = self._request(request, description, asked)
            response, body = yield Send(outgoing, self.options.max_token_response)
            if response.status_code not in _RETRY_STATUSES or attempt == MAX_ATTEMPTS - 1:
                break
            yield Do(anyio.sleep, time.sleep, (retry_delay(response.headers, attempt),))
        return response, body

    def _request(
        self, original: httpx.Request, description: TokenRequest, asked: Credential
    ) -> httpx.Request:
        headers = [*description.headers, ("Accept-Encoding", ACCEPT_ENCODING)]
        extensions = {k: original.extensions[k] for k in ("timeout",) if k in original.extensions}
        outgoing: httpx.Request = self.http.Request(
            description.method,
            description.url,
            headers=headers,
            content=description.body,
            extensions=extensions,
        )
        if self.options.offline_token and asked.kind == "basic":
            # Ask for a refresh token too (docker's offline_token), so that later tokens are
            # fetched with it rather than with the password.
            outgoing.url = outgoing.url.copy_merge_params(
                {"offline_token": "true", "client_id": self.options.client_id}
            )
        if description.body is not None:
            outgoing.stream = one_shot(self.http, description.body)
        return outgoing


def _refused(
    target: Target,
    challenge: Challenge,
    scopes: ScopeSet,
    credential: Credential,
    resolution: Resolution,
    response: httpx.Response,
) -> AuthenticationError:
    realm_host = urlsplit(challenge.realm or "").netloc.rpartition("@")[2]
    source = resolution.source or "no source (anonymous)"
    status = response.status_code
    hint = "the credentials were refused" if status in (401, 403) else "the token server failed"
    return AuthenticationError(
        f"{target.registry}: token server {realm_host} answered {status} for scope "
        f"{scopes or '(none)'} with {credential.kind} credentials from {source}: {hint}"
    )
