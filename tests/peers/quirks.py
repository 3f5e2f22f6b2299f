"""Loopback stand-ins of registries where they deviate from the spec, each answering as the
registry it is named after does (issue 18, "Real registries deviate from the spec").

Nothing real can play these here: the deviations belong to hosted services (``public.ecr.aws``,
``ghcr.io``, ACR, JFrog Artifactory, Quay). Each stand-in is a registry and its token realm on one
loopback origin (:class:`tests.security.peers.Server`), and strict: a token request with another
service or scope, a request for another repository, a token it never issued, or any path it does
not serve is answered with an error and recorded in ``surprises`` (which a test asserts empty).

* :class:`PublicEcr`: a token it has marked expired is answered ``400`` with a ``DENIED`` error
  body and no challenge (``curl -H "Authorization: Bearer abc" https://public.ecr.aws/v2/`` gives
  ``400``; aws/containers-roadmap#2835).
* :class:`RefusingOAuth`: the OAuth2 ``refresh_token`` POST is refused with the status a
  registry without that grant answers (``ghcr.io`` 405, ACR 400, Artifactory 401); the ``GET``
  with Basic ``user:identity-token`` is honoured (containerd's fallback).
* :class:`Quay`: token responses without ``expires_in`` (moby/buildkit#2055).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, urlsplit

from ..security.peers import Reply, Seen, Server

REPOSITORY = "org/app"
MANIFEST = json.dumps(
    {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}
).encode()
MANIFEST_PATH = f"/v2/{REPOSITORY}/manifests/v1"
API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")
_SCOPES = {f"repository:{REPOSITORY}:pull", f"repository:{REPOSITORY}:pull,push"}


def _errors(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


class StandIn:
    """A registry serving one manifest of :data:`REPOSITORY`, with its token realm at
    ``/token`` on the same origin; subclasses say how tokens are granted and how a stale one
    is answered. ``token_requests`` and ``registry_requests`` are what arrived, in order."""

    service = "registry.test"

    def __init__(self, name: str) -> None:
        self.server = Server(name)
        self.server.route("/token", self._token).route("/v2/", self._registry)
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self.live: set[str] = set()
        self.stale: set[str] = set()
        self.denial: Reply | None = None
        """When set, the answer to every request that carries a token."""
        self.surprises = self.server.surprises

    # -- what a test reads ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    @property
    def token_requests(self) -> list[Seen]:
        return [seen for seen in self.server.seen if seen.path == "/token"]

    @property
    def registry_requests(self) -> list[Seen]:
        return [seen for seen in self.server.seen if seen.path.startswith("/v2/")]

    def authorizations(self) -> list[str | None]:
        """The ``Authorization`` of each registry request, in order."""
        return [seen.headers.get("authorization") for seen in self.registry_requests]

    def expire(self, token: str) -> None:
        """The registry stops honouring ``token`` (its token server still thinks it lives)."""
        with self._lock:
            self.live.discard(token)
            self.stale.add(token)

    # -- the registry ---------------------------------------------------------------------------

    def challenge(self, error: str | None = None) -> Reply:
        header = f'Bearer realm="{self.url}/token",service="{self.service}"'
        if error is not None:
            header += f',scope="repository:{REPOSITORY}:pull",error="{error}"'
        body = _errors("UNAUTHORIZED", "authentication required")
        return Reply(401, [("WWW-Authenticate", header), API_VERSION], body)

    def stale_answer(self) -> Reply:
        """How a token the registry considers expired is answered (the spec: 401 + challenge)."""
        return self.challenge("invalid_token")

    def _registry(self, seen: Seen) -> Reply:
        authorization = seen.headers.get("authorization")
        if authorization is None:
            return self.challenge()
        token = authorization.removeprefix("Bearer ")
        with self._lock:
            stale, live = token in self.stale, token in self.live
        if self.denial is not None and (stale or live):
            return self.denial
        if stale:
            return self.stale_answer()
        if not live:
            self.surprises.append(f"{seen.method} {seen.path} with a token never issued")
            return self.challenge("invalid_token")
        return self._content(seen)

    def _content(self, seen: Seen) -> Reply:
        if seen.path == "/v2/":
            return Reply(200, [API_VERSION], b"{}")
        if seen.path == MANIFEST_PATH and seen.method in ("GET", "HEAD"):
            digest = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
            headers = [
                ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                ("Docker-Content-Digest", digest),
                API_VERSION,
            ]
            return Reply(200, headers, MANIFEST)
        self.surprises.append(f"{seen.method} {seen.path}")
        return Reply(404, [API_VERSION], _errors("NAME_UNKNOWN", "repository name not known"))

    # -- the token realm ------------------------------------------------------------------------

    def _token(self, seen: Seen) -> Reply:
        query = parse_qs(urlsplit(seen.url).query)
        form = parse_qs(seen.body.decode("ascii", "replace")) if seen.method == "POST" else {}
        service = (query.get("service") or form.get("service") or [""])[0]
        scopes = query.get("scope") or " ".join(form.get("scope") or []).split()
        if service != self.service or not scopes or not set(scopes) <= _SCOPES:
            self.surprises.append(f"token request for {service!r} {scopes!r}")
            return Reply(400, body=b'{"error":"invalid_request"}')
        return self.grant(seen, form)

    def grant(self, seen: Seen, form: dict[str, list[str]]) -> Reply:
        """Answer a token request (well-formed for this registry): :meth:`issue` or refuse."""
        return self.issue()

    def issue(self, **fields: object) -> Reply:
        """A new live token; ``fields`` override the response's (``expires_in=None`` drops
        it)."""
        token = f"{type(self).__name__.lower()}-token-{next(self._numbers)}"
        with self._lock:
            self.live.add(token)
        body = {"token": token, "access_token": token, "expires_in": 43200, **fields}
        body = {key: value for key, value in body.items() if value is not None}
        return Reply(200, [("Content-Type", "application/json")], json.dumps(body).encode())

    def __enter__(self) -> Self:
        self.server.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.__exit__(kind, exc, tb)


def basic_of(seen: Seen) -> tuple[str, str] | None:
    """The ``(user, password)`` of a request's Basic ``Authorization``, if it has one."""
    value = seen.headers.get("authorization", "")
    if not value.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(value[6:]).decode().partition(":")
    return user, password


class PublicEcr(StandIn):
    """``public.ecr.aws``: anonymous or Basic ``AWS:<token>`` get a token for 12 hours; the
    registry answers a token it holds expired with ``400`` and no challenge."""

    service = "public.ecr.aws"

    def __init__(self, password: str) -> None:
        super().__init__("public-ecr")
        self.password = password

    def stale_answer(self) -> Reply:
        body = _errors("DENIED", "the authorization token has expired; reauthenticate")
        return Reply(400, [("Content-Type", "application/json"), API_VERSION], body)

    def grant(self, seen: Seen, form: dict[str, list[str]]) -> Reply:
        if seen.method != "GET" or basic_of(seen) not in (None, ("AWS", self.password)):
            self.surprises.append(f"{seen.method} token request with other credentials")
            return Reply(401, body=b'{"errors":[{"code":"DENIED"}]}')
        return self.issue()

    def deny_everything(self) -> None:
        """From now on, answer every token with 403 ``DENIED``: a refusal that is no staleness
        (a fresh token fares no better)."""
        self.denial = Reply(403, [API_VERSION], _errors("DENIED", "not authorized"))


REFUSED_POST = {
    "ghcr.io": (405, b"405 method not allowed"),
    "azurecr.io": (400, b'{"error":"unsupported_grant_type"}'),
    "artifactory": (401, b'{"errors":[{"status":401,"message":"Bad credentials"}]}'),
}
"""How each registry answers an OAuth2 ``refresh_token`` POST it does not speak."""


class RefusingOAuth(StandIn):
    """A registry whose token server refuses the OAuth2 ``POST`` as ``registry`` does
    (:data:`REFUSED_POST`) and honours ``GET`` with Basic ``user:identity-token``."""

    def __init__(self, registry: str, user: str, identity_token: str) -> None:
        super().__init__(f"oauth-{registry}")
        self.status, self.body = REFUSED_POST[registry]
        self.user, self.identity_token = user, identity_token

    def grant(self, seen: Seen, form: dict[str, list[str]]) -> Reply:
        if seen.method == "POST":
            if form.get("refresh_token") != [self.identity_token]:
                self.surprises.append("a POST without the identity token")
            return Reply(self.status, body=self.body)
        if basic_of(seen) != (self.user, self.identity_token):
            self.surprises.append("a GET without Basic user:identity-token")
            return Reply(401, body=b"{}")
        return self.issue()


class Quay(StandIn):
    """Quay: a token for Basic credentials, in a response without ``expires_in``."""

    service = "quay.test"

    def __init__(self, user: str, password: str) -> None:
        super().__init__("quay")
        self.user, self.password = user, password

    def grant(self, seen: Seen, form: dict[str, list[str]]) -> Reply:
        if seen.method != "GET" or basic_of(seen) != (self.user, self.password):
            self.surprises.append(f"{seen.method} token request with other credentials")
            return Reply(401, body=b"{}")
        return self.issue(expires_in=None)
