"""GitHub Container Registry: ``GITHUB_TOKEN`` for ``ghcr.io``.

What go-containerregistry's GitHub keychain does, and what GitHub Actions provides: the job's
``GITHUB_TOKEN`` as password and ``GITHUB_ACTOR`` as user name (``unset`` when there is no actor;
GHCR checks only the token). No network, no SDK: the answer is known when the resolver is built.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from .._chain import Bounded, Claiming, Explaining, Hinting
from .._credentials import Credential
from .._resource import Resource
from .cloud import CloudSettings, claimable_host, disable_hint

KEYCHAIN: Final = "github"
GITHUB_HOST: Final = "ghcr.io"
DEFAULT_GITHUB_USERNAME: Final = "unset"
"""The user name sent when ``GITHUB_ACTOR`` is not set (go-containerregistry's choice)."""


def claims_github(resource: Resource) -> bool:
    """``ghcr.io`` on the default HTTPS port, and nothing else."""
    return claimable_host(resource) == GITHUB_HOST


class GitHubResolver(Bounded, Claiming, Explaining, Hinting):
    """``ghcr.io`` with ``GITHUB_TOKEN`` (and ``GITHUB_ACTOR``) from ``environ``.

    ``environ`` defaults to ``os.environ`` as it is when the resolver is built; empty values
    count as unset.
    """

    name = "github"
    timeout = 1.0
    disable_hint = disable_hint(KEYCHAIN)

    def __init__(self, *, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        token = environ.get("GITHUB_TOKEN") or None
        self.credential = (
            None
            if token is None
            else Credential(
                username=environ.get("GITHUB_ACTOR") or DEFAULT_GITHUB_USERNAME, password=token
            )
        )

    def __repr__(self) -> str:
        return f"GitHubResolver({self.credential!r})"

    def claims(self, resource: Resource) -> bool:
        """Whether ``resource`` is on a registry this cloud serves (pure; no I/O)."""
        return claims_github(resource)

    async def resolve(self, resource: Resource) -> Credential | None:
        """``GITHUB_TOKEN`` for ``ghcr.io`` only: the token is a secret of the workflow, and
        no other registry may see it."""
        return self.credential if claims_github(resource) else None

    def explain(self, resource: Resource) -> str | None:
        """Which user the token is sent for: a workflow's token answers as ``GITHUB_ACTOR``."""
        if self.credential is None or not claims_github(resource):
            return None
        return f"GITHUB_TOKEN (user {self.credential.username})"


def cloud_resolver(settings: CloudSettings) -> GitHubResolver:
    """The default chain's GitHub resolver (registered in :mod:`asyncauth._defaults`)."""
    return GitHubResolver(environ=settings.environ)
