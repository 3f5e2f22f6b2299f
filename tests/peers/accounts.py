"""The accounts and default policy the session peers share.

Kept apart from ``fixtures`` so test modules can import them without importing the fixtures
plugin module itself (pytest must import a plugin first to rewrite its assertions).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from .._secrets import secret
from .token_issuer import PULL_ONLY, IssuerPolicy

__all__ = ["SEEDED_REPOSITORY_COUNT", "PeerAccounts", "default_policy"]

#: How many repositories ``seeded_repositories`` holds (the handshake issue's concurrency test).
SEEDED_REPOSITORY_COUNT = 20


@dataclass(frozen=True)
class PeerAccounts:
    """The accounts every session peer knows. Secrets are random per session, never printed.

    - ``writer``: ``(user, password)`` with pull/push/delete everywhere.
    - ``reader``: ``(user, password)`` with pull only.
    - ``writer_identity_token`` / ``reader_identity_token``: OAuth2 refresh tokens for them.
    The htpasswd registry knows ``writer`` and ``reader`` with the same passwords (Basic auth has
    no per-repository permissions, so both may push there).
    """

    writer: tuple[str, str] = field(repr=False)
    reader: tuple[str, str] = field(repr=False)
    writer_identity_token: str = field(repr=False)
    reader_identity_token: str = field(repr=False)

    @classmethod
    def generate(cls) -> PeerAccounts:
        """Fresh random passwords and identity tokens, registered with the secret scan."""
        return cls(
            writer=("alice", secret(f"pw-{secrets.token_urlsafe(12)}", user="alice")),
            reader=("bob", secret(f"pw-{secrets.token_urlsafe(12)}", user="bob")),
            writer_identity_token=secret(f"idt-{secrets.token_urlsafe(24)}"),
            reader_identity_token=secret(f"idt-{secrets.token_urlsafe(24)}"),
        )

    @property
    def users(self) -> dict[str, str]:
        """name -> password, for ``IssuerPolicy.users`` and ``Htpasswd``."""
        return dict([self.writer, self.reader])


def default_policy(accounts: PeerAccounts) -> IssuerPolicy:
    """The session issuer's policy: writer full access, reader pull-only, no anonymous access
    (anonymous requests get a token without access, like Docker Hub for private images)."""
    return IssuerPolicy(
        users=accounts.users,
        identity_tokens={
            accounts.writer_identity_token: accounts.writer[0],
            accounts.reader_identity_token: accounts.reader[0],
        },
        permissions={accounts.reader[0]: PULL_ONLY},
    )
