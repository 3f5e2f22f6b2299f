"""A strict registry token issuer on loopback: the honest stand-in for auth.docker.io & co.

Why we write one: distribution delegates token issuance to an external service (Docker Hub's
``auth.docker.io``, Harbor's core, GitLab, …) and ships none. This issuer implements what those
services do, per distribution's ``docs/spec/auth/token.md`` and ``oauth.md``:

* ``GET <realm>?service=S&scope=A&scope=B`` — anonymous, or with HTTP Basic ``user:password``;
  ``offline_token=true`` (with a ``client_id``) asks for a refresh token too.
* ``POST <realm>`` with a form body — ``grant_type=refresh_token`` (``refresh_token``) or
  ``grant_type=password`` (``username``, ``password``), plus ``service``, ``scope`` (repeated or
  space-separated) and a mandatory ``client_id``. Bodies may be chunked: skopeo/containers-image
  send identity-token POSTs with ``Transfer-Encoding: chunked``.

Answers are JSON ``{"token", "access_token", "expires_in", "issued_at", "refresh_token"?}``; the
token is a JWT (ES256 by default, RS256 on request) that distribution 2.8 accepts: claims ``iss``,
``sub``, ``aud`` (a *string* — 2.8 cannot parse a list), ``exp``, ``nbf``, ``iat``, ``jti``,
``access: [{type, name, actions}]`` and a header ``kid`` equal to the libtrust fingerprint of the
signing key. ``rootcertbundle`` is a self-signed certificate for that key, written at construction
so the registry can be configured before the issuer starts.

Policy (``IssuerPolicy``) is swappable at run time (``issuer.policy = replace(...)``) and covers
users, identity tokens, per-user per-repository actions, anonymous access, token lifetime (negative
lifetimes give expired tokens), a disabled POST endpoint (404, to exercise the GET fallback),
refresh tokens on password grants, response shapes and an artificial delay.

Like real issuers it grants the *intersection* of what was asked and what is allowed: a pull-only
user asking for ``pull,push`` gets a token for ``pull`` (HTTP 200), and the registry answers the
push with ``insufficient_scope``. Only wrong credentials give 401. It accepts many ``scope``
parameters in one request (as distribution's token spec and Docker Hub do); ``max_scopes=1``
makes it a server that honours only the first.

Every request is recorded (thread-safe) so tests can assert exact counts: ``count()``, ``total``,
``gets``, ``posts``, ``scope_counts()``, ``requests()``, ``reset()``. Records never hold secrets.

It runs ``http.server.ThreadingHTTPServer`` in a daemon thread, so it serves the same under
asyncio, trio and sync tests.
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import datetime as dt
import fnmatch
import hashlib
import http.server
import json
import secrets
import threading
import time
import traceback
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ._tools import PeerError
from .registry import TokenAuth

__all__ = [
    "FULL_ACCESS",
    "PULL_ONLY",
    "IssuerPolicy",
    "Permissions",
    "Scope",
    "SigningKey",
    "TokenIssuer",
    "TokenRequest",
    "libtrust_key_id",
    "new_signing_key",
]

Algorithm = Literal["ES256", "RS256"]
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

#: Largest request body accepted; real issuers cap form posts too.
MAX_BODY = 64 * 1024


# -- keys -----------------------------------------------------------------------------------------


def new_signing_key(algorithm: Algorithm = "ES256") -> SigningKey:
    """A fresh private key for ``algorithm`` (P-256 for ES256, RSA-2048 for RS256).

    Tests use a second key to forge tokens the registry must reject as untrusted.
    """
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def libtrust_key_id(key: SigningKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> str:
    """The libtrust fingerprint distribution uses to find a token's signing key by ``kid``.

    Base32 of the first 30 bytes (240 bits) of SHA-256 of the DER SubjectPublicKeyInfo, which is
    48 characters without padding, in 12 groups of 4 joined by ``:``.
    """
    public = (
        key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) else key
    )
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def _self_signed_certificate(key: SigningKey, common_name: str) -> x509.Certificate:
    """A certificate for ``key``: distribution 2.8 reads trusted keys only from certificates."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


# -- scopes and policy ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """One ``type:name:actions`` scope, e.g. ``repository:team/app:pull,push``.

    The name may itself contain ``:`` (distribution splits on the first and last colon), actions
    are comma-separated.
    """

    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Scope:
        """Parse one scope; ``ValueError`` if it lacks a type, name or actions."""
        kind, sep, rest = text.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not (sep and sep2 and kind and name and actions):
            raise ValueError(f"malformed scope {text!r}")
        parsed = tuple(a for a in actions.split(",") if a)
        if not parsed:
            raise ValueError(f"malformed scope {text!r}")
        return cls(kind, name, parsed)

    @classmethod
    def repository(cls, name: str, *actions: str) -> Scope:
        """``repository:<name>:<actions>``; default actions: pull."""
        return cls("repository", name, actions or ("pull",))

    def claim(self) -> dict[str, Any]:
        """This scope as one entry of the JWT ``access`` claim."""
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


Permissions = Mapping[str, Collection[str]]
"""Resource glob -> allowed actions. A glob without ``:`` matches repository names
(``team/*``); a glob with ``:`` matches ``type:name`` (``registry:catalog``). ``*`` in the
actions allows any action (distribution's catalog scope asks for ``*``)."""

FULL_ACCESS: Permissions = {"*": ("pull", "push", "delete")}
PULL_ONLY: Permissions = {"*": ("pull",)}


@dataclass(frozen=True)
class IssuerPolicy:
    """What the issuer grants, and how it answers. Frozen: change it with ``dataclasses.replace``.

    - ``users``: name -> password, for Basic on GET and ``grant_type=password`` on POST.
    - ``identity_tokens``: refresh token -> user name, for ``grant_type=refresh_token``.
    - ``permissions``: user -> ``Permissions``; users not listed get ``default_permissions``.
    - ``anonymous_pull``: anonymous requests get ``pull`` on every repository (public images);
      otherwise an anonymous token carries no access (Docker Hub's answer for private repos).
    - ``reject_anonymous``: answer anonymous requests with 401 instead of an empty token.
    - ``token_lifetime``: seconds until ``exp``; negative values mint already expired tokens
      (distribution allows 60 s of leeway, so use <= -61 for a token it rejects).
    - ``expires_in``: the ``expires_in`` reported; ``None`` reports the lifetime,
      ``include_expires_in=False`` omits the field (clients must then assume 60 s).
    - ``post_enabled``: ``False`` makes the OAuth2 POST answer 404, like issuers that only
      implement the GET flow, so clients must fall back to GET with Basic.
    - ``issue_refresh_tokens``: return a ``refresh_token`` on password grants (and on GETs with
      ``offline_token=true``); it then works as an identity token.
    - ``token_fields``: which of ``token``/``access_token`` the response carries.
    - ``require_client_id``: POSTs without ``client_id`` are 400, as oauth.md requires it.
    - ``delay``: seconds to sleep before answering, to widen races in single-flight tests.
    - ``max_scopes``: grant at most this many of the scopes asked (the first ones), as Harbor
      (goharbor/harbor#2411) and cesanta/docker_auth (#67) did with one: the others are simply
      missing from the token's ``access`` claim, the answer is still 200. ``None``: no limit.
    - ``throttle_first``: answer the first N requests after the policy is set (or the issuer
      reset) with ``429`` and ``Retry-After: throttle_retry_after``, as a throttled token
      server does (auth.docker.io does); they are recorded with their scopes.
    """

    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    identity_tokens: Mapping[str, str] = field(default_factory=dict, repr=False)
    permissions: Mapping[str, Permissions] = field(default_factory=dict)
    default_permissions: Permissions = field(default_factory=lambda: FULL_ACCESS)
    anonymous_pull: bool = False
    reject_anonymous: bool = False
    token_lifetime: float = 300.0
    expires_in: int | None = None
    include_expires_in: bool = True
    include_issued_at: bool = True
    post_enabled: bool = True
    issue_refresh_tokens: bool = False
    token_fields: tuple[Literal["token", "access_token"], ...] = ("token", "access_token")
    require_client_id: bool = True
    delay: float = 0.0
    max_scopes: int | None = None
    throttle_first: int = 0
    throttle_retry_after: str = "1"

    def allowed_actions(self, user: str | None, scope: Scope) -> tuple[str, ...]:
        """The subset of ``scope.actions`` that ``user`` (``None``: anonymous) may have."""
        if user is None:
            rules: Permissions = PULL_ONLY if self.anonymous_pull else {}
        else:
            rules = self.permissions.get(user, self.default_permissions)
        allowed: set[str] = set()
        for pattern, actions in rules.items():
            subject = scope.name if ":" not in pattern else f"{scope.type}:{scope.name}"
            if ":" not in pattern and scope.type != "repository":
                continue
            if fnmatch.fnmatchcase(subject, pattern):
                allowed.update(actions)
        if "*" in allowed:
            return scope.actions
        return tuple(a for a in scope.actions if a in allowed)


# -- request records ------------------------------------------------------------------------------


Grant = Literal["anonymous", "basic", "password", "refresh_token", "invalid"]


@dataclass(frozen=True)
class TokenRequest:
    """One request the issuer answered. Holds no secret: no password, no token.

    ``grant`` is how the client authenticated (``anonymous``/``basic`` for GET,
    ``password``/``refresh_token`` for POST, ``invalid`` when the request was malformed);
    ``user`` is the authenticated subject or ``None``; ``chunked`` tells whether the body came
    with ``Transfer-Encoding: chunked``.
    """

    method: str
    path: str
    status: int
    service: str | None
    scopes: tuple[str, ...]
    grant: Grant
    user: str | None
    client_id: str | None
    chunked: bool
    offline: bool
    refresh_token_issued: bool
    at: float


# -- the issuer -----------------------------------------------------------------------------------


class TokenIssuer:
    """A loopback token server; see the module docstring for the protocol it implements.

    ``workdir`` receives ``token-issuer-cert.pem`` (the registry's ``rootcertbundle``) at once,
    so ``registry_auth()`` can be passed to ``RegistryServer`` before or after ``start()``.
    ``realm`` is ``http://127.0.0.1:PORT/token`` once started.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        service: str = "asyncauth-test-registry",
        issuer: str = "asyncauth-test-issuer",
        policy: IssuerPolicy | None = None,
        algorithm: Algorithm = "ES256",
        path: str = "/token",
    ) -> None:
        self.workdir = Path(workdir)
        self.service = service
        self.issuer = issuer
        self.algorithm: Algorithm = algorithm
        self.path = path
        self._policy = policy or IssuerPolicy()
        self._lock = threading.Lock()
        self._records: list[TokenRequest] = []
        self._refresh_tokens: dict[str, str] = {}
        self._errors: list[str] = []
        self._throttled = 0
        self._key = new_signing_key(algorithm)
        self.kid = libtrust_key_id(self._key)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rootcertbundle = self.workdir / "token-issuer-cert.pem"
        certificate = _self_signed_certificate(self._key, issuer)
        self.rootcertbundle.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- configuration ------------------------------------------------------------------------

    @property
    def policy(self) -> IssuerPolicy:
        """The current policy; assigning a new one takes effect for the next request."""
        with self._lock:
            return self._policy

    @policy.setter
    def policy(self, value: IssuerPolicy) -> None:
        with self._lock:
            self._policy = value
            self._throttled = 0

    def _throttles(self, policy: IssuerPolicy) -> bool:
        """Whether this request is one of the first ``throttle_first`` (answered 429)."""
        with self._lock:
            if self._throttled >= policy.throttle_first:
                return False
            self._throttled += 1
            return True

    def registry_auth(self) -> TokenAuth:
        """The ``auth.token`` settings a ``RegistryServer`` needs to trust this issuer."""
        return TokenAuth(
            realm=self.realm,
            service=self.service,
            issuer=self.issuer,
            rootcertbundle=self.rootcertbundle,
        )

    def rotate_key(self) -> None:
        """Sign with a new key from now on, and trust only it: ``rootcertbundle`` is rewritten
        with the new key's certificate, so a registry (re)started on it refuses every token
        signed before with ``invalid_token``, as after a real key rotation or revocation."""
        key = new_signing_key(self.algorithm)
        certificate = _self_signed_certificate(key, self.issuer)
        self.rootcertbundle.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        with self._lock:
            self._key, self.kid = key, libtrust_key_id(key)

    # -- addresses ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The loopback port; only valid while running."""
        if self._server is None:
            raise PeerError("the token issuer is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        """The token endpoint, as registries advertise it in ``WWW-Authenticate``."""
        return f"{self.url}{self.path}"

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Bind ``127.0.0.1:0`` and serve in a daemon thread."""
        if self._server is not None:
            raise PeerError("the token issuer is already running")
        server = _Server(("127.0.0.1", 0), _Handler)
        server.issuer = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"token-issuer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    # -- minting ------------------------------------------------------------------------------

    def mint(
        self,
        subject: str | None,
        access: Iterable[Scope | str] = (),
        *,
        lifetime: float | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        now: float | None = None,
        signing_key: SigningKey | None = None,
        kid: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """Sign a token directly, without an HTTP request (and without counting one).

        The defaults give exactly what the endpoint would issue. Overrides forge tokens the
        registry must reject: ``lifetime=-120`` (expired beyond the 60 s leeway), another
        ``audience`` or ``issuer``, a ``signing_key`` the registry does not trust (its ``kid``
        follows the key unless ``kid`` is given).
        """
        policy = self.policy
        issued = time.time() if now is None else now
        span = policy.token_lifetime if lifetime is None else lifetime
        scopes = [Scope.parse(a) if isinstance(a, str) else a for a in access]
        claims: dict[str, Any] = {
            "iss": self.issuer if issuer is None else issuer,
            "sub": subject or "",
            "aud": self.service if audience is None else audience,
            "exp": int(issued + span),
            "nbf": int(issued) - 1,
            "iat": int(issued),
            "jti": uuid.uuid4().hex,
            "access": [s.claim() for s in scopes],
        }
        claims.update(extra_claims or {})
        key = self._key if signing_key is None else signing_key
        header_kid = kid if kid is not None else libtrust_key_id(key)
        algorithm = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": header_kid})

    def decode(self, token: str) -> dict[str, Any]:
        """Verify a token with this issuer's key and audience and return its claims."""
        decoded: dict[str, Any] = jwt.decode(
            token,
            self._key.public_key(),
            algorithms=[self.algorithm],
            audience=self.service,
            issuer=self.issuer,
            leeway=60,
        )
        return decoded

    # -- counting -----------------------------------------------------------------------------

    def requests(self) -> list[TokenRequest]:
        """A copy of every request recorded since the last ``reset()``, oldest first."""
        with self._lock:
            return list(self._records)

    def count(
        self,
        *,
        method: str | None = None,
        scope: str | None = None,
        status: int | None = None,
        user: str | None = None,
        grant: Grant | None = None,
    ) -> int:
        """How many recorded requests match every given filter.

        ``scope`` matches requests whose scope list contains that exact scope string.
        """
        with self._lock:
            records = list(self._records)
        return sum(
            1
            for r in records
            if (method is None or r.method == method.upper())
            and (scope is None or scope in r.scopes)
            and (status is None or r.status == status)
            and (user is None or r.user == user)
            and (grant is None or r.grant == grant)
        )

    @property
    def total(self) -> int:
        """All requests to any path, answered with any status."""
        with self._lock:
            return len(self._records)

    @property
    def gets(self) -> int:
        """Requests with method GET."""
        return self.count(method="GET")

    @property
    def posts(self) -> int:
        """Requests with method POST."""
        return self.count(method="POST")

    def scope_counts(self) -> collections.Counter[str]:
        """How many requests asked for each scope string (a request with two scopes counts
        once for each)."""
        counter: collections.Counter[str] = collections.Counter()
        with self._lock:
            for record in self._records:
                counter.update(record.scopes)
        return counter

    def reset(self) -> None:
        """Forget recorded requests (issued refresh tokens stay valid)."""
        with self._lock:
            self._records.clear()
            self._throttled = 0

    def summary(self, limit: int = 30) -> str:
        """The last requests as text, for failure reports; contains no secret."""
        lines = [
            f"{r.method} {r.path} -> {r.status} grant={r.grant} user={r.user} "
            f"scopes={list(r.scopes)} chunked={r.chunked}"
            for r in self.requests()[-limit:]
        ]
        return "\n".join(lines) or "(no token requests)"

    @property
    def errors(self) -> list[str]:
        """Tracebacks of requests the issuer itself failed on (answered 500); should be empty."""
        with self._lock:
            return list(self._errors)

    def _record(self, record: TokenRequest) -> None:
        with self._lock:
            self._records.append(record)

    def _remember_refresh_token(self, user: str) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh_tokens[token] = user
        return token

    def _user_for_refresh_token(self, policy: IssuerPolicy, token: str) -> str | None:
        user = policy.identity_tokens.get(token)
        if user is not None:
            return user
        with self._lock:
            return self._refresh_tokens.get(token)

    def __repr__(self) -> str:
        where = self.realm if self._server is not None else "stopped"
        return f"<TokenIssuer {where} service={self.service!r}>"


# -- HTTP plumbing --------------------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # Clients without single-flight may open hundreds of connections at once.
    request_queue_size = 256
    issuer: TokenIssuer


class _BadRequestError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


@dataclass
class _Outcome:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    service: str | None = None
    scopes: tuple[str, ...] = ()
    grant: Grant = "invalid"
    user: str | None = None
    client_id: str | None = None
    offline: bool = False
    refresh_token_issued: bool = False


class _Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 so clients can keep connections alive; every answer carries Content-Length.
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes; with Nagle on, the body waits for the client's delayed ACK
    # (~40 ms) on kept-alive connections, which would dominate every token request.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence stderr: requests are recorded by the issuer instead."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        issuer = self.server.issuer
        policy = issuer.policy
        split = urlsplit(self.path)
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        try:
            body = self._read_body(chunked)
            if split.path != issuer.path:
                outcome = _Outcome(
                    404, {"errors": [{"code": "NOT_FOUND", "message": "no such path"}]}
                )
            elif method == "GET":
                outcome = _handle_get(
                    issuer, policy, split.query, self.headers.get("Authorization")
                )
            elif method == "POST" and not policy.post_enabled:
                outcome = _Outcome(404, {"errors": [{"code": "NOT_FOUND", "message": "no POST"}]})
            elif method == "POST":
                outcome = _handle_post(issuer, policy, body, self.headers.get("Content-Type", ""))
            else:
                outcome = _Outcome(405, {"errors": [{"code": "UNSUPPORTED", "message": method}]})
        except _BadRequestError as exc:
            outcome = _Outcome(
                exc.status, {"error": exc.error, "error_description": exc.description}
            )
        except Exception:
            # A bug here must fail the test that caused it, not vanish into a reset connection.
            issuer._errors.append(traceback.format_exc())
            outcome = _Outcome(
                500, {"error": "server_error", "error_description": "see issuer.errors"}
            )
        if issuer._throttles(policy):
            outcome = dataclasses.replace(
                outcome,
                status=429,
                body={"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]},
                headers={"Retry-After": policy.throttle_retry_after},
            )
        if policy.delay > 0:
            time.sleep(policy.delay)
        issuer._record(
            TokenRequest(
                method=method,
                path=split.path,
                status=outcome.status,
                service=outcome.service,
                scopes=outcome.scopes,
                grant=outcome.grant,
                user=outcome.user,
                client_id=outcome.client_id,
                chunked=chunked,
                offline=outcome.offline,
                refresh_token_issued=outcome.refresh_token_issued,
                at=time.time(),
            )
        )
        payload = json.dumps(outcome.body).encode()
        self.send_response(outcome.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        for name, value in outcome.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _read_body(self, chunked: bool) -> bytes:
        if chunked:
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            raise _BadRequestError(400, "invalid_request", "bad Content-Length") from None
        if length > MAX_BODY:
            self.close_connection = True
            raise _BadRequestError(413, "invalid_request", "body too large")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        """Decode ``Transfer-Encoding: chunked`` (http.server does not)."""
        chunks: list[bytes] = []
        size_total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise _BadRequestError(400, "invalid_request", "bad chunk size") from None
            if size == 0:
                break
            size_total += size
            if size_total > MAX_BODY:
                self.close_connection = True
                raise _BadRequestError(413, "invalid_request", "body too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(8)  # the CRLF after each chunk
        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(chunks)


def _form_scopes(values: Iterable[str]) -> tuple[Scope, ...]:
    """Scopes from repeated ``scope`` parameters, each possibly space-separated (oauth.md)."""
    scopes: list[Scope] = []
    for value in values:
        for item in value.split():
            try:
                scopes.append(Scope.parse(item))
            except ValueError as exc:
                raise _BadRequestError(400, "invalid_scope", str(exc)) from None
    return tuple(scopes)


def _check_service(issuer: TokenIssuer, service: str | None) -> None:
    if service != issuer.service:
        raise _BadRequestError(400, "invalid_request", "missing or unknown service")


def _grant(
    issuer: TokenIssuer,
    policy: IssuerPolicy,
    user: str | None,
    scopes: tuple[Scope, ...],
) -> tuple[str, list[Scope]]:
    granted = []
    for scope in scopes[: policy.max_scopes]:
        actions = policy.allowed_actions(user, scope)
        if actions:
            granted.append(Scope(scope.type, scope.name, actions))
    return issuer.mint(user, granted), granted


def _token_body(policy: IssuerPolicy, token: str, granted: list[Scope]) -> dict[str, Any]:
    body: dict[str, Any] = {name: token for name in policy.token_fields}
    if policy.include_expires_in:
        body["expires_in"] = (
            int(policy.token_lifetime) if policy.expires_in is None else policy.expires_in
        )
    if policy.include_issued_at:
        body["issued_at"] = (
            dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        )
    body["scope"] = " ".join(str(s) for s in granted)
    return body


def _unauthorized(outcome: _Outcome, message: str) -> _Outcome:
    outcome.status = 401
    outcome.body = {
        "errors": [{"code": "UNAUTHORIZED", "message": message}],
        "details": message,
    }
    outcome.headers = {"WWW-Authenticate": 'Basic realm="asyncauth-test-issuer"'}
    return outcome


def _handle_get(
    issuer: TokenIssuer, policy: IssuerPolicy, query: str, authorization: str | None
) -> _Outcome:
    params = parse_qs(query, keep_blank_values=True)
    service = params.get("service", [None])[0]
    outcome = _Outcome(200, {}, service=service)
    scopes = _form_scopes(params.get("scope", []))
    outcome.scopes = tuple(str(s) for s in scopes)
    outcome.client_id = params.get("client_id", [None])[0]
    outcome.offline = params.get("offline_token", ["false"])[0].lower() == "true"
    _check_service(issuer, service)
    user: str | None = None
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "basic":
            outcome.grant = "invalid"
            return _unauthorized(outcome, "only Basic credentials are accepted here")
        outcome.grant = "basic"
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return _unauthorized(outcome, "malformed Basic credentials")
        name, sep, password = decoded.partition(":")
        expected = policy.users.get(name)
        if not sep or expected is None or not secrets.compare_digest(expected, password):
            return _unauthorized(outcome, "incorrect username or password")
        user = outcome.user = name
    else:
        outcome.grant = "anonymous"
        if policy.reject_anonymous:
            return _unauthorized(outcome, "authentication required")
    token, granted = _grant(issuer, policy, user, scopes)
    outcome.body = _token_body(policy, token, granted)
    if user is not None and outcome.offline and policy.issue_refresh_tokens:
        outcome.body["refresh_token"] = issuer._remember_refresh_token(user)
        outcome.refresh_token_issued = True
    return outcome


def _handle_post(
    issuer: TokenIssuer, policy: IssuerPolicy, body: bytes, content_type: str
) -> _Outcome:
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise _BadRequestError(400, "invalid_request", "expected a form body")
    try:
        form = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise _BadRequestError(400, "invalid_request", "malformed form body") from None

    def one(name: str) -> str | None:
        values = form.get(name)
        return values[0] if values else None

    service = one("service")
    outcome = _Outcome(200, {}, service=service, client_id=one("client_id"))
    scopes = _form_scopes(form.get("scope", []))
    outcome.scopes = tuple(str(s) for s in scopes)
    grant_type = one("grant_type")
    outcome.offline = one("access_type") == "offline"
    _check_service(issuer, service)
    if policy.require_client_id and not outcome.client_id:
        raise _BadRequestError(400, "invalid_request", "client_id is required")
    user: str | None
    if grant_type == "refresh_token":
        outcome.grant = "refresh_token"
        refresh = one("refresh_token")
        user = issuer._user_for_refresh_token(policy, refresh) if refresh else None
        if user is None:
            return _unauthorized(outcome, "invalid refresh token")
    elif grant_type == "password":
        outcome.grant = "password"
        name, password = one("username"), one("password")
        expected = policy.users.get(name or "")
        if name is None or password is None or expected is None:
            return _unauthorized(outcome, "incorrect username or password")
        if not secrets.compare_digest(expected, password):
            return _unauthorized(outcome, "incorrect username or password")
        user = name
    else:
        raise _BadRequestError(
            400, "unsupported_grant_type", "grant_type must be refresh_token or password"
        )
    outcome.user = user
    token, granted = _grant(issuer, policy, user, scopes)
    outcome.body = _token_body(policy, token, granted)
    if grant_type == "password" and policy.issue_refresh_tokens:
        outcome.body["refresh_token"] = issuer._remember_refresh_token(user)
        outcome.refresh_token_issued = True
    return outcome
