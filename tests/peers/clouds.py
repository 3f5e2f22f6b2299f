"""Loopback stand-ins for the clouds: metadata servers, token endpoints, the ACR exchange.

Why: the IaaS resolvers are only proven against servers as strict as the real ones, and no test
may ever reach a real cloud. Each stand-in here is a small threaded HTTP server on 127.0.0.1 that
does what its real counterpart documents and *rejects* what the real one rejects:

* :class:`IMDSv2` -- the EC2 instance metadata service in IMDSv2-only mode: ``PUT
  /latest/api/token`` needs ``X-aws-ec2-metadata-token-ttl-seconds`` (1-21600, else 400); every
  ``GET`` needs a valid ``X-aws-ec2-metadata-token`` (else 401); a request carrying
  ``X-Forwarded-For`` is refused (403); unknown paths are 404.
* :class:`GCEMetadata` -- the GCE/GKE metadata server: ``Metadata-Flavor: Google`` is required
  on requests (403 without) and sent on every reply with a ``Content-Type``; unknown paths 404.
* :class:`AppServiceMSI` -- Azure App Service's managed identity endpoint
  (``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``, api-version 2019-08-01).
* :class:`AzureAD` -- Azure AD's v2 token endpoint for client credentials.
* :class:`ACRRegistry` -- an ACR login server's ``POST /oauth2/exchange``.
* :class:`GoogleOAuth` -- Google's OAuth2 token endpoint for service-account JWT grants.
* :class:`ECRPublic` -- ECR Public's ``GetAuthorizationToken`` (moto does not serve ECR Public).
* :class:`BlackHole` -- accepts connections and never answers, for timeouts.
* :class:`Resetter` -- reads one whole HTTP request per connection, then resets the connection
  (what an overflowing listen queue, a proxy or a load balancer does to a request in flight).

ECR itself is served by moto (:func:`moto_server`), and moto's proxy mode (:func:`moto_proxy`)
lets Debian's ``docker-credential-ecr-login`` reach the same emulator.

:class:`RoutingTransport` is the pluggable transport the resolvers take: it sends each known host
to its stand-in over plain HTTP on loopback and fails loudly on any other host, so a test cannot
reach a real endpoint even by mistake. :class:`FailingTransport` fails on every call.

Every stand-in records what it saw (``seen``), thread-safely, so tests can assert on requests.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from asyncauth import Chain, default_chain

from ._tools import PeerError, free_port

__all__ = [
    "ECR_ACCOUNT",
    "ACRRegistry",
    "AppServiceMSI",
    "AzureAD",
    "AzureStackMetadata",
    "BlackHole",
    "ECRPublic",
    "FailingTransport",
    "GCEMetadata",
    "GoogleOAuth",
    "IMDSv2",
    "MotoProxy",
    "Reply",
    "RoutingTransport",
    "Seen",
    "StandIn",
    "closed_port",
    "fake_jwt",
    "iaas_chain",
    "isolate_cloud_env",
    "service_account_key",
]

ECR_ACCOUNT = "123456789012"


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as a stand-in received it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, value: object, **headers: str) -> Reply:
        return cls(
            status, json.dumps(value).encode(), {"Content-Type": "application/json", **headers}
        )

    @classmethod
    def text(cls, status: int, value: str, **headers: str) -> Reply:
        return cls(status, value.encode(), {"Content-Type": "text/plain", **headers})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        # aiobotocore sends absolute-form targets (POST http://host:port/): compare paths only.
        parts = urlsplit(self.path)
        seen = Seen(
            self.command,
            parts.path,
            parse_qs(parts.query),
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        stand_in = self.server.stand_in
        with stand_in.lock:
            stand_in.seen.append(seen)
        try:
            reply = stand_in.handle(seen)
        except Exception as exc:  # a bug in a stand-in must show, not hang the client
            reply = Reply.text(500, f"stand-in error: {type(exc).__name__}: {exc}")
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stand_in: StandIn


class StandIn:
    """A threaded HTTP server on 127.0.0.1 (a free port); subclasses implement :meth:`handle`.

    ``first`` are replies to give, in order, to the first valid requests before answering
    normally (a throttled or failing service that recovers); a stand-in checks a request as
    strictly as ever before it takes one of them.
    """

    def __init__(self, *, first: Sequence[Reply] = ()) -> None:
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self._first = list(first)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def scripted(self) -> Reply | None:
        """The next of ``first``, if any is left."""
        with self.lock:
            return self._first.pop(0) if self._first else None

    def handle(self, request: Seen) -> Reply:
        raise NotImplementedError

    @property
    def port(self) -> int:
        if self._server is None:
            raise PeerError(f"{type(self).__name__} is not started")
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def requests(self, path: str | None = None) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if path is None or s.path == path]

    def start(self) -> Self:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.stand_in = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits up to one poll
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --- AWS ----------------------------------------------------------------------------------------


class IMDSv2(StandIn):
    """EC2 instance metadata in IMDSv2-only ("required") mode, serving one IAM role."""

    TOKEN_PATH = "/latest/api/token"
    ROLE_PATH = "/latest/meta-data/iam/security-credentials/"

    def __init__(self, *, role: str = "asyncauth-test-role") -> None:
        super().__init__()
        self.role = role
        self.access_key_id = "ASIA" + secrets.token_hex(8).upper()
        self.secret_access_key = secrets.token_urlsafe(30)
        self.session_token = secrets.token_urlsafe(60)
        self._tokens: dict[str, float] = {}

    def handle(self, request: Seen) -> Reply:
        if "x-forwarded-for" in request.headers:
            return Reply.text(403, "Forbidden")
        if request.path == self.TOKEN_PATH:
            if request.method != "PUT":
                return Reply.text(405, "Method Not Allowed")
            ttl = request.headers.get("x-aws-ec2-metadata-token-ttl-seconds", "")
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return Reply.text(400, "Bad Request")
            token = secrets.token_urlsafe(40)
            with self.lock:
                self._tokens[token] = time.time() + int(ttl)
            return Reply.text(200, token, **{"X-aws-ec2-metadata-token-ttl-seconds": ttl})
        if request.method != "GET":
            return Reply.text(405, "Method Not Allowed")
        token = request.headers.get("x-aws-ec2-metadata-token", "")
        with self.lock:
            valid = self._tokens.get(token, 0) > time.time()
        if not valid:
            return Reply.text(401, "Unauthorized")
        if request.path == self.ROLE_PATH:
            return Reply.text(200, self.role)
        if request.path == self.ROLE_PATH + self.role:
            expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 6 * 3600))
            return Reply.json(
                200,
                {
                    "Code": "Success",
                    "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "Type": "AWS-HMAC",
                    "AccessKeyId": self.access_key_id,
                    "SecretAccessKey": self.secret_access_key,
                    "Token": self.session_token,
                    "Expiration": expiration,
                },
            )
        return Reply.text(404, "Not Found")


class ECRPublic(StandIn):
    """ECR Public's JSON API, ``GetAuthorizationToken`` only, signed requests only."""

    TARGET = "SpencerFrontendService.GetAuthorizationToken"

    def __init__(
        self,
        *,
        expires_in: float = 12 * 3600,
        fail_with: str | None = None,
        first: Sequence[Reply] = (),
    ) -> None:
        super().__init__(first=first)
        self.password = "ecr-public-" + secrets.token_urlsafe(24)
        self.expires_in = expires_in
        self.fail_with = fail_with

    def handle(self, request: Seen) -> Reply:
        if request.method != "POST" or request.path != "/":
            return Reply.text(404, "Not Found")
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("AWS4-HMAC-SHA256 ") or "/ecr-public/" not in authorization:
            return Reply.json(403, {"__type": "MissingAuthenticationTokenException"})
        if request.headers.get("x-amz-target") != self.TARGET:
            return Reply.json(400, {"__type": "UnknownOperationException"})
        scripted = self.scripted()
        if scripted is not None:
            return scripted
        if self.fail_with:
            return Reply.json(
                400, {"__type": self.fail_with, "message": "not allowed by the stand-in"}
            )
        token = base64.b64encode(f"AWS:{self.password}".encode()).decode()
        return Reply.json(
            200,
            {
                "authorizationData": {
                    "authorizationToken": token,
                    "expiresAt": time.time() + self.expires_in,
                }
            },
            **{"x-amzn-RequestId": secrets.token_hex(8)},
        )


# --- Google -------------------------------------------------------------------------------------


class GCEMetadata(StandIn):
    """The GCE/GKE metadata server for one service account."""

    ROOT = "/computeMetadata/v1/"

    def __init__(self, *, expires_in: int = 3599, project: str = "asyncauth-test") -> None:
        super().__init__()
        self.access_token = "ya29." + secrets.token_urlsafe(40)
        self.expires_in = expires_in
        self.project = project
        self.email = f"runner@{project}.iam.gserviceaccount.com"

    def _reply(self, status: int, body: str | object) -> Reply:
        reply = Reply.text(status, body) if isinstance(body, str) else Reply.json(status, body)
        return Reply(reply.status, reply.body, {**reply.headers, "Metadata-Flavor": "Google"})

    def handle(self, request: Seen) -> Reply:
        if "x-forwarded-for" in request.headers:
            return self._reply(403, "Forbidden")
        if request.headers.get("metadata-flavor") != "Google":
            return self._reply(403, "Missing Metadata-Flavor:Google header.")
        if request.method != "GET":
            return self._reply(405, "Method Not Allowed")
        if request.path == "/":
            return self._reply(200, "computeMetadata/\n")
        sub = request.path.removeprefix(self.ROOT)
        if sub == request.path:
            return self._reply(404, "Not Found")
        account = "instance/service-accounts/default/"
        if sub == "project/project-id":
            return self._reply(200, self.project)
        if sub == "universe/universe-domain":
            return self._reply(200, "googleapis.com")
        if sub == account and request.query.get("recursive") == ["true"]:
            return self._reply(
                200,
                {
                    "aliases": ["default"],
                    "email": self.email,
                    "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                },
            )
        if sub == account + "email":
            return self._reply(200, self.email)
        if sub == account + "token":
            return self._reply(
                200,
                {
                    "access_token": self.access_token,
                    "expires_in": self.expires_in,
                    "token_type": "Bearer",
                },
            )
        return self._reply(404, "Not Found")


def service_account_key(
    path: Path, *, token_uri: str, email: str = "ci@asyncauth-test.iam.gserviceaccount.com"
) -> rsa.RSAPublicKey:
    """Write a service-account key file (a fresh RSA key); return the public key to verify with."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "asyncauth-test",
                "private_key_id": secrets.token_hex(20),
                "private_key": pem,
                "client_email": email,
                "client_id": "1" * 21,
                "token_uri": token_uri,
            }
        )
    )
    return key.public_key()


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class GoogleOAuth(StandIn):
    """Google's token endpoint for the JWT-bearer grant: checks the signature and the claims."""

    GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

    def __init__(self, public_key: rsa.RSAPublicKey | None = None, *, reject: bool = False) -> None:
        super().__init__()
        self.public_key = public_key
        self.reject = reject
        self.access_token = "ya29.sa-" + secrets.token_urlsafe(40)
        self.assertions: list[str] = []

    def handle(self, request: Seen) -> Reply:
        if request.method != "POST" or request.path != "/token":
            return Reply.text(404, "Not Found")
        form = request.form()
        if form.get("grant_type") != self.GRANT or "assertion" not in form:
            return Reply.json(400, {"error": "unsupported_grant_type"})
        assertion = form["assertion"]
        with self.lock:
            self.assertions.append(assertion)
        if self.reject:
            return Reply.json(
                400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            )
        header, payload, signature = assertion.split(".")
        if self.public_key is not None:
            try:
                self.public_key.verify(
                    _b64url_decode(signature),
                    f"{header}.{payload}".encode(),
                    padding.PKCS1v15(),
                    hashes.SHA256(),
                )
            except Exception:
                return Reply.json(400, {"error": "invalid_grant"})
        claims = json.loads(_b64url_decode(payload))
        if claims.get("scope") != "https://www.googleapis.com/auth/cloud-platform":
            return Reply.json(400, {"error": "invalid_scope"})
        if not claims.get("iat") <= time.time() + 60 < claims.get("exp") + 60:
            return Reply.json(400, {"error": "invalid_grant", "error_description": "time"})
        return Reply.json(
            200, {"access_token": self.access_token, "expires_in": 3599, "token_type": "Bearer"}
        )


# --- Azure --------------------------------------------------------------------------------------


def fake_jwt(claims: Mapping[str, object]) -> str:
    """A JWT-shaped token (random signature): ACR and Azure AD tokens are JWTs."""

    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return ".".join(
        (part({"alg": "RS256", "typ": "JWT"}), part(dict(claims)), secrets.token_urlsafe(32))
    )


class AppServiceMSI(StandIn):
    """App Service managed identity: ``GET IDENTITY_ENDPOINT`` with ``X-IDENTITY-HEADER``."""

    PATH = "/msi/token"
    API_VERSION = "2019-08-01"

    def __init__(self) -> None:
        super().__init__()
        self.identity_header = secrets.token_urlsafe(24)
        self.access_token = fake_jwt({"aud": "arm", "nonce": secrets.token_hex(8)})

    @property
    def endpoint(self) -> str:
        return self.url + self.PATH

    def handle(self, request: Seen) -> Reply:
        if request.path != self.PATH:
            return Reply.text(404, "Not Found")
        if request.method != "GET":
            return Reply.text(405, "Method Not Allowed")
        if request.headers.get("x-identity-header") != self.identity_header:
            return Reply.json(401, {"error": "unauthorized"})
        if request.query.get("api-version") != [self.API_VERSION]:
            return Reply.json(400, {"error": "invalid api-version"})
        resource = request.query.get("resource", [""])[0]
        if not resource:
            return Reply.json(400, {"error": "resource is required"})
        answer: dict[str, object] = {
            "access_token": self.access_token,
            "expires_on": str(int(time.time()) + 3600),
            "resource": resource,
            "token_type": "Bearer",
        }
        if "client_id" in request.query:
            answer["client_id"] = request.query["client_id"][0]
        return Reply.json(200, answer)


class AzureAD(StandIn):
    """Azure AD's ``POST /<tenant>/oauth2/v2.0/token`` for the client-credentials grant."""

    def __init__(
        self, *, tenant: str, client_id: str, client_secret: str, first: Sequence[Reply] = ()
    ) -> None:
        super().__init__(first=first)
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_token = fake_jwt({"aud": "arm", "tid": tenant, "n": secrets.token_hex(8)})

    def handle(self, request: Seen) -> Reply:
        if request.method != "POST" or request.path != f"/{self.tenant}/oauth2/v2.0/token":
            return Reply.json(404, {"error": "not_found"})
        form = request.form()
        if form.get("grant_type") != "client_credentials" or not form.get("scope"):
            return Reply.json(400, {"error": "invalid_request"})
        scripted = self.scripted()
        if scripted is not None:
            return scripted
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return Reply.json(
                401, {"error": "invalid_client", "error_description": "AADSTS7000215"}
            )
        return Reply.json(
            200,
            {
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": self.access_token,
            },
        )


class ACRRegistry(StandIn):
    """An ACR login server's token exchange: an Azure AD token in, an ACR refresh token out."""

    def __init__(
        self, registry: str, *, accepted: Callable[[], set[str]], first: Sequence[Reply] = ()
    ) -> None:
        super().__init__(first=first)
        self.registry = registry
        self.accepted = accepted
        self.expires_at = int(time.time()) + 3 * 3600
        self.refresh_token = fake_jwt(
            {"aud": registry, "exp": self.expires_at, "grant_type": "refresh_token"}
        )

    def handle(self, request: Seen) -> Reply:
        if request.path != "/oauth2/exchange":
            return Reply.json(404, {"errors": [{"code": "NOT_FOUND"}]})
        if request.method != "POST":
            return Reply.json(405, {"errors": [{"code": "UNSUPPORTED"}]})
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return Reply.json(400, {"errors": [{"code": "UNSUPPORTED", "message": "form only"}]})
        form = request.form()
        if form.get("grant_type") != "access_token" or form.get("service") != self.registry:
            return Reply.json(400, {"errors": [{"code": "BAD_REQUEST"}]})
        scripted = self.scripted()
        if scripted is not None:
            return scripted
        if form.get("access_token") not in self.accepted():
            return Reply.json(401, {"errors": [{"code": "UNAUTHORIZED"}]})
        return Reply.json(200, {"refresh_token": self.refresh_token})


class AzureStackMetadata(StandIn):
    """An Azure Stack hub's ``GET /metadata/endpoints``: where its Azure AD is, which audience."""

    def __init__(self, *, login: str, audience: str) -> None:
        super().__init__()
        self.login = login
        self.audience = audience

    def handle(self, request: Seen) -> Reply:
        if request.method != "GET" or request.path != "/metadata/endpoints":
            return Reply.json(404, {"error": "not found"})
        if not request.query.get("api-version"):
            return Reply.json(400, {"error": "api-version is required"})
        return Reply.json(
            200,
            {
                "galleryEndpoint": "https://gallery.stack.example/",
                "graphEndpoint": "https://graph.stack.example/",
                "portalEndpoint": "https://portal.stack.example/",
                "authentication": {"loginEndpoint": self.login, "audiences": [self.audience]},
            },
        )


# --- misbehaving peers --------------------------------------------------------------------------


class BlackHole:
    """A listening socket that accepts connections and never sends a byte."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(256)
        self._held: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="BlackHole", daemon=True)
        self.accepted = 0

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)
        for conn in self._held:
            conn.close()
        self._sock.close()


class Resetter:
    """A listening socket that reads each request whole, then resets its connection (RST).

    ``requests`` holds the request heads it read (method, path and headers, as bytes), so a test
    can assert that the request did arrive before it was cut off.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(256)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="Resetter", daemon=True)
        self.requests: list[bytes] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                self.requests.append(self._read_request(conn))
                # Linger 0: close() sends RST, not FIN, while the client waits for the reply.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
             if line.lower().startswith(b"content-length:")),
            0,
        )  # fmt: skip
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return head

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)
        self._sock.close()


def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    return free_port()


# --- transports ---------------------------------------------------------------------------------


class RoutingTransport(httpx.AsyncBaseTransport):
    """Sends each known host to a loopback address over plain HTTP; any other host fails.

    ``routes`` maps a host name (as the SDK writes it: ``api.ecr.us-east-1.amazonaws.com``,
    ``169.254.169.254``) to ``"127.0.0.1:port"``. ``calls`` lists every request as
    ``"METHOD https://host/path"`` (before rerouting).
    """

    def __init__(self, routes: Mapping[str, str] | None = None) -> None:
        self.routes: dict[str, str] = dict(routes or {})
        self.calls: list[str] = []
        self.headers: list[httpx.Headers] = []
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(
            f"{request.method} {request.url.scheme}://{request.url.host}{request.url.path}"
        )
        self.headers.append(request.headers)
        target = self.routes.get(request.url.host)
        if target is None:
            raise httpx.ConnectError(f"RoutingTransport: no route to {request.url.host}")
        host, _, port = target.partition(":")
        request.url = request.url.copy_with(scheme="http", host=host, port=int(port))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class FailingTransport(httpx.AsyncBaseTransport):
    """Fails every request and remembers it: proof that a lookup made no network call."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url}")
        raise AssertionError(f"unexpected network call: {request.method} {request.url}")


# --- environment --------------------------------------------------------------------------------

_CLOUD_PREFIXES = (
    "AWS_",
    "GOOGLE_",
    "GCE_",
    "CLOUDSDK_",
    "AZURE_",
    "IDENTITY_",
    "MSI_",
    "IMDS_",
    "GITHUB_",
    "IMGPKG_",
    "ECS_",
)


def isolate_cloud_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Clear every cloud variable and aim every SDK default endpoint at a closed loopback port.

    The SDKs read ``os.environ``; after this no metadata server, file or endpoint outside the test
    is found: AWS files point into ``tmp_path``, AWS IMDS is disabled, google-auth's metadata IP is
    a port where nothing listens. azure-identity's VM metadata endpoint cannot be moved without
    changing its behaviour (``AZURE_POD_IDENTITY_AUTHORITY_HOST`` turns its probe off), so every
    Azure test passes a transport that routes ``169.254.169.254`` or refuses it. Returns the clean
    ``environ`` mapping for the resolvers' own variables.
    """
    for name in list(os.environ):
        if name.startswith(_CLOUD_PREFIXES) or name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.delenv(name)
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    nowhere = f"127.0.0.1:{closed_port()}"
    values = {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "GCE_METADATA_IP": nowhere,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return {"HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "docker")}


# --- moto ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MotoProxy:
    url: str
    ca_file: str


# --- chains -------------------------------------------------------------------------------------


def iaas_chain(
    environ: Mapping[str, str],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    iaas: bool | None = None,
    timeout: float | None = None,
) -> Chain:
    """The default chain, with the cloud resolvers on ``transport``."""
    return default_chain(environ=environ, transport=transport, iaas=iaas, timeout=timeout)
