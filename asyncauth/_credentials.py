"""The credential value type.

A ``Credential`` is what a source answers and what the handshake sends. It mirrors docker's
``AuthConfig`` (username/password, identity token, registry token) because every source we read
(env vars, Docker config, credential helpers, clouds) speaks that shape.

Secrets never leave through ``repr``/``str``: those are what ends up in logs, tracebacks, test
failure messages and debugger panes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Literal

CredentialKind = Literal["anonymous", "basic", "identity_token", "registry_token"]

EXPIRY_MARGIN = 10.0
"""Seconds before a secret expires (a credential's ``expires_at``, a token's) at which it is no
longer used: a request takes time, and one sent with a secret that expires on the way fails."""

_PROCESS_SALT = secrets.token_bytes(32)


@dataclass(frozen=True, slots=True)
class Credential:
    """Credentials for one registry (or repository).

    Which secret is used, when several are present, follows go-containerregistry: a
    ``registry_token`` is sent as a Bearer token verbatim; else an ``identity_token`` (an OAuth2
    refresh token) is exchanged for an access token; else ``username``/``password`` are used.
    A credential with no field set is *anonymous*: a decision to send nothing, not an absence.

    ``expires_at`` (seconds since the epoch) is set by sources whose secrets expire (ECR, cloud
    tokens) so that caches drop them in time.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    registry_token: str | None = field(default=None, repr=False)
    expires_at: float | None = field(default=None, compare=False)

    @classmethod
    def anonymous(cls) -> Credential:
        """A decision to send no credentials (``--registry-anon``)."""
        return cls()

    @property
    def is_anonymous(self) -> bool:
        """Nothing will be sent: a decision (``--anon``) or what is left when no source had a
        credential; ``Resolution.source`` tells the two apart."""
        return self.kind == "anonymous"

    @property
    def kind(self) -> CredentialKind:
        """Which secret the handshake will use, by go-containerregistry's precedence."""
        if self.registry_token:
            return "registry_token"
        if self.identity_token:
            return "identity_token"
        if self.username is not None or self.password is not None:
            return "basic"
        return "anonymous"

    def material(self) -> bytes:
        """Every field, unambiguously encoded: what keyed hashes of this credential are over.

        It *is* the secret: hash it with a key (``hmac``), never show or store it as is.
        """
        parts = (self.username, self.password, self.identity_token, self.registry_token)
        return b"".join(
            b"\x01" if part is None else b"\x02%d:%s" % (len(part), part.encode("utf-8", "replace"))
            for part in parts
        )

    @property
    def fingerprint(self) -> str:
        """A short identity for log correlation within this process.

        Two credentials with the same secrets have the same fingerprint in one process. It is
        keyed with a random per-process salt, so it cannot be checked against a guessed password
        and means nothing elsewhere (shared stores derive names with their own key).
        """
        digest = hmac.new(_PROCESS_SALT, self.material(), hashlib.sha256)
        return digest.hexdigest()[:16]

    def redacted(self) -> str:
        """A human description with every secret masked, e.g. ``basic user:****``."""
        kind = self.kind
        if kind == "anonymous":
            return "anonymous"
        user = self.username if self.username is not None else ""
        if kind == "basic":
            return f"basic {user}:****"
        who = f" (username {user})" if self.username else ""
        return f"{kind.replace('_', ' ')} ****{who}"

    def __repr__(self) -> str:
        fields = [f"kind={self.kind!r}"]
        if self.username is not None:
            fields.append(f"username={self.username!r}")
        for name in ("password", "identity_token", "registry_token"):
            if getattr(self, name):
                fields.append(f"{name}='****'")
        if self.expires_at is not None:
            fields.append(f"expires_at={self.expires_at!r}")
        return f"Credential({', '.join(fields)})"

    def __str__(self) -> str:
        return self.redacted()
