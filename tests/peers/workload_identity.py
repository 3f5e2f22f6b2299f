"""Workload identity peers: a cluster's token issuer, Entra's and STS's exchanges, moto with IAM.

Why: EKS IRSA and AKS workload identity start from a file the kubelet writes (a service-account
token signed by the cluster's OIDC issuer) and trade it twice -- at STS or Entra ID for cloud
credentials, then at ECR or ACR for registry credentials. Each step is proven here against a
peer that checks what the real one checks:

* :class:`OIDCIssuer` -- the cluster's service-account issuer: signs projected tokens (RS256,
  ``iss``/``sub``/``aud``/``exp``) as the kubelet's token request does.
* :class:`EntraWorkloadIdentity` -- Microsoft Entra ID's v2 token endpoint for a federated
  credential: the client-credentials grant with the token as ``client_assertion``. It rejects,
  with Entra's status, ``error`` and ``AADSTS`` code, what Entra rejects: another tenant in the
  path, a missing parameter, another grant type, an unknown client, a scope that is not
  ``<resource>/.default`` or names an unknown resource, a missing or mistyped assertion, and an
  assertion that does not match the federated credential (issuer, subject, audience
  ``api://AzureADTokenExchange``), is expired or is not signed by the issuer's key.
* :class:`STSWebIdentity` -- STS's ``AssumeRoleWithWebIdentity`` checking the token against one
  OIDC provider (issuer, audience ``sts.amazonaws.com``, signature, expiry) and answering in
  STS's XML. moto accepts any token, so this stand-in is for refusals only; the successful path
  runs at moto.
* :class:`MotoIAM` -- a moto server of its own (a subprocess: its IAM switch and its request
  recording are process-wide) with every request recorded, and IAM enforcement that can be
  turned on after the next N requests: then moto checks each request's signature, its session
  token and the policy of the role it was issued for, as AWS does.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ._tools import PeerError, free_port, stop_process
from .clouds import Reply, Seen, StandIn, fake_jwt

__all__ = [
    "AZURE_EXCHANGE_AUDIENCE",
    "PUBLIC_MANAGEMENT_SCOPE",
    "STS_AUDIENCE",
    "EntraWorkloadIdentity",
    "MotoIAM",
    "OIDCIssuer",
    "Recorded",
    "STSWebIdentity",
    "start_moto_iam",
]

AZURE_EXCHANGE_AUDIENCE: Final = "api://AzureADTokenExchange"
"""The audience AKS's webhook asks the kubelet for: what Entra's federated credentials expect."""
STS_AUDIENCE: Final = "sts.amazonaws.com"
"""The audience EKS's webhook asks the kubelet for: what an IAM OIDC provider lists."""
PUBLIC_MANAGEMENT_SCOPE: Final = "https://management.core.windows.net//.default"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class OIDCIssuer:
    """A Kubernetes cluster's service-account token issuer: an RSA key and an issuer URL."""

    def __init__(self, url: str = "https://oidc.cluster.test/id/5f1e0a2b") -> None:
        self.url = url
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = secrets.token_hex(8)

    def token(
        self,
        *,
        subject: str,
        audience: str,
        lifetime: float = 3600,
        issuer: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
    ) -> str:
        """A projected service-account token: what the kubelet writes into the pod."""
        now = int(time.time())
        header = {"alg": "RS256", "kid": self.key_id}
        claims = {
            "aud": [audience],
            "exp": now + int(lifetime),
            "iat": now,
            "nbf": now,
            "iss": issuer or self.url,
            "sub": subject,
            "jti": secrets.token_hex(16),
        }
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = (key or self.key).sign(
            signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{_b64url(signature)}"

    def verify(self, token: str) -> dict[str, Any] | None:
        """The token's claims when this issuer's key signed it; ``None`` otherwise."""
        try:
            header, payload, signature = token.split(".")
            self.key.public_key().verify(
                _b64url_decode(signature),
                f"{header}.{payload}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
            claims = json.loads(_b64url_decode(payload))
        except Exception:
            return None
        return claims if isinstance(claims, dict) else None


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    audience = claims.get("aud")
    return [audience] if isinstance(audience, str) else list(audience or [])


# --- Entra ID -----------------------------------------------------------------------------------


def _entra_error(status: int, error: str, code: int | None, description: str) -> Reply:
    text = f"AADSTS{code}: {description}" if code is not None else description
    body: dict[str, object] = {
        "error": error,
        "error_description": f"{text}\r\nTrace ID: {secrets.token_hex(8)}",
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "trace_id": secrets.token_hex(8),
        "correlation_id": secrets.token_hex(8),
    }
    if code is not None:
        body["error_codes"] = [code]
    return Reply.json(status, body)


class EntraWorkloadIdentity(StandIn):
    """Entra ID's ``POST /<tenant>/oauth2/v2.0/token`` for one app with one federated credential.

    The checks run in Entra's order (the request, the tenant, the grant, the client, the scope,
    then the assertion), each answered as Entra answers it.
    """

    ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

    def __init__(
        self,
        *,
        tenant: str,
        client_id: str,
        issuer: OIDCIssuer,
        subject: str,
        resources: Iterable[str] = ("https://management.core.windows.net/",),
    ) -> None:
        super().__init__()
        self.tenant = tenant
        self.client_id = client_id
        self.issuer = issuer
        self.subject = subject
        self.resources = frozenset(r.rstrip("/") for r in resources)
        self.access_token = fake_jwt({"aud": "arm", "tid": tenant, "n": secrets.token_hex(8)})
        self.assertions: list[str] = []

    def handle(self, request: Seen) -> Reply:
        parts = request.path.split("/")
        if request.method != "POST" or parts[2:] != ["oauth2", "v2.0", "token"]:
            return Reply.json(404, {"error": "not_found"})
        if parts[1] != self.tenant:
            return _entra_error(400, "invalid_request", 90002, f"Tenant '{parts[1]}' not found.")
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return _missing("grant_type")
        return self._grant(request.form())

    def _grant(self, form: Mapping[str, str]) -> Reply:
        for name in ("grant_type", "client_id", "scope"):
            if not form.get(name):
                return _missing(name)
        if form["grant_type"] != "client_credentials":
            return _entra_error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        if form["client_id"] != self.client_id:
            return _entra_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form['client_id']}' was not found in the "
                f"directory '{self.tenant}'.",
            )
        scope = form["scope"]
        if " " in scope or not scope.endswith("/.default"):
            return _entra_error(
                400,
                "invalid_scope",
                70011,
                "The provided value for the input parameter 'scope' "
                "is not valid: the client credentials flow takes one '<resource>/.default'.",
            )
        if scope.removesuffix("/.default").rstrip("/") not in self.resources:
            return _entra_error(
                400,
                "invalid_resource",
                500011,
                "The resource principal named in the scope was not found in the tenant.",
            )
        assertion = form.get("client_assertion")
        if not assertion:
            return _entra_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following "
                "parameter: 'client_assertion' or 'client_secret'.",
            )
        with self.lock:
            self.assertions.append(assertion)
        if "client_assertion_type" not in form:
            return _missing("client_assertion_type")
        if form["client_assertion_type"] != self.ASSERTION_TYPE:
            return _entra_error(
                400, "invalid_request", None, "client_assertion_type is not supported."
            )
        return self._assertion(assertion)

    def _assertion(self, assertion: str) -> Reply:
        claims = self.issuer.verify(assertion)
        if claims is None:
            return _entra_error(
                401, "invalid_client", 700027, "Client assertion failed signature validation."
            )
        if claims.get("iss") != self.issuer.url:
            return _entra_error(
                400,
                "invalid_request",
                700211,
                "No matching federated identity record found for presented assertion issuer.",
            )
        if claims.get("sub") != self.subject or AZURE_EXCHANGE_AUDIENCE not in _audiences(claims):
            return _entra_error(
                400,
                "invalid_request",
                70021,
                "No matching federated identity record found for presented assertion.",
            )
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= time.time():
            return _entra_error(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
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


def _missing(name: str) -> Reply:
    return _entra_error(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
    )


# --- STS ----------------------------------------------------------------------------------------


def _sts_error(code: str, message: str, status: int = 400) -> Reply:
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{secrets.token_hex(16)}</RequestId></ErrorResponse>"
    )
    return Reply(status, body.encode(), {"Content-Type": "text/xml"})


class STSWebIdentity(StandIn):
    """STS's ``AssumeRoleWithWebIdentity`` for one IAM OIDC provider (query protocol, XML)."""

    def __init__(self, *, issuer: OIDCIssuer, role_arn: str) -> None:
        super().__init__()
        self.issuer = issuer
        self.role_arn = role_arn

    def handle(self, request: Seen) -> Reply:
        if request.method != "POST" or request.path != "/":
            return _sts_error("InvalidAction", "Could not find operation", 404)
        form = request.form()
        if form.get("Action") != "AssumeRoleWithWebIdentity" or form.get("Version") != "2011-06-15":
            return _sts_error("InvalidAction", "Could not find operation")
        for name in ("RoleArn", "RoleSessionName", "WebIdentityToken"):
            if not form.get(name):
                return _sts_error("MissingParameter", f"The request must contain {name}")
        if form["RoleArn"] != self.role_arn:
            return _sts_error(
                "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity", 403
            )
        claims = self.issuer.verify(form["WebIdentityToken"])
        if claims is None or claims.get("iss") != self.issuer.url:
            return _sts_error(
                "InvalidIdentityToken",
                "Couldn't retrieve verification key from your identity provider",
            )
        if STS_AUDIENCE not in _audiences(claims):
            return _sts_error("InvalidIdentityToken", "Incorrect token audience")
        if claims.get("exp", 0) <= time.time():
            return _sts_error("ExpiredTokenException", "Token expired")
        return self._credentials(form["RoleSessionName"], claims)

    def _credentials(self, session: str, claims: Mapping[str, Any]) -> Reply:
        expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        role = self.role_arn.rsplit("/", 1)[-1]
        body = (
            '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            "<AssumeRoleWithWebIdentityResult>"
            f"<SubjectFromWebIdentityToken>{claims['sub']}</SubjectFromWebIdentityToken>"
            f"<Audience>{STS_AUDIENCE}</Audience>"
            f"<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/{role}/{session}</Arn>"
            f"<AssumedRoleId>AROA{secrets.token_hex(8).upper()}:{session}</AssumedRoleId>"
            "</AssumedRoleUser>"
            f"<Credentials><AccessKeyId>ASIA{secrets.token_hex(8).upper()}</AccessKeyId>"
            f"<SecretAccessKey>{secrets.token_urlsafe(30)}</SecretAccessKey>"
            f"<SessionToken>{secrets.token_urlsafe(60)}</SessionToken>"
            f"<Expiration>{expiration}</Expiration></Credentials>"
            f"<Provider>{self.issuer.url}</Provider>"
            "</AssumeRoleWithWebIdentityResult>"
            f"<ResponseMetadata><RequestId>{secrets.token_hex(16)}</RequestId></ResponseMetadata>"
            "</AssumeRoleWithWebIdentityResponse>"
        )
        return Reply(200, body.encode(), {"Content-Type": "text/xml"})


# --- moto with IAM ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request moto received (header names lower-cased; the body decoded)."""

    method: str
    headers: dict[str, str]
    body: str

    @property
    def target(self) -> str:
        """What was asked: the JSON protocol's ``X-Amz-Target``, or the query protocol's
        ``Action``."""
        target = self.headers.get("x-amz-target")
        return target if target else self.form().get("Action", "")

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body).items()}


class MotoIAM:
    """A moto server in a process of its own, recording every request, IAM enforcement on demand."""

    def __init__(self, url: str, recording: Path) -> None:
        self.url = url
        self.recording = recording

    def _post(self, path: str, body: bytes = b"") -> None:
        httpx.post(self.url + path, content=body, timeout=10).raise_for_status()

    def reset_recording(self) -> None:
        self._post("/moto-api/recorder/reset-recording")

    def enforce_iam_after(self, requests: int | None) -> None:
        """From the request after the next ``requests`` on, moto checks each signature, session
        token and policy; ``None`` turns the checks off."""
        self._post("/moto-api/reset-auth", b"inf" if requests is None else str(requests).encode())

    def recorded(self) -> list[Recorded]:
        """Every AWS request since :meth:`reset_recording`, in order (not moto's own API)."""
        entries = []
        for line in self.recording.read_text().splitlines():
            entry = json.loads(line)
            if urlsplit(entry["url"]).path.startswith("/moto-api/"):
                continue
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode()
            headers = {k.lower(): v for k, v in entry["headers"].items()}
            entries.append(Recorded(entry["method"], headers, body))
        return entries

    def create_role(self, name: str, *, actions: Sequence[str]) -> str:
        """An IAM role that trusts web identities and may do ``actions``; its ARN."""
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="AKIAMOTOSETUP0000001",
            aws_secret_access_key="moto-setup-only",
        )
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/oidc"},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                }
            ],
        }
        arn: str = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))[
            "Role"
        ]["Arn"]
        if actions:
            policy = {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}],
            }
            iam.put_role_policy(
                RoleName=name, PolicyName="allow", PolicyDocument=json.dumps(policy)
            )
        return arn


def start_moto_iam(workdir: Path) -> Iterator[MotoIAM]:
    """Run ``moto_server`` (from this interpreter's environment) on a free loopback port."""
    program = Path(sys.executable).parent / "moto_server"
    if not program.exists():
        raise PeerError("moto_server is needed: pip install 'moto[server]'")
    port = free_port()
    recording = workdir / "moto-recording.jsonl"
    recording.touch()
    environment = {
        **os.environ,
        "MOTO_ENABLE_RECORDING": "true",
        "MOTO_RECORDER_FILEPATH": str(recording),
    }
    log = workdir / "moto-iam.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(program), "-H", "127.0.0.1", "-p", str(port)],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise PeerError(
                        f"moto_server did not start: {log.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.1)
        yield MotoIAM(f"http://127.0.0.1:{port}", recording)
    finally:
        stop_process(process)
