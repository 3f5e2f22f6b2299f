"""Explicit credentials: imgpkg's command flags and their ``IMGPKG_*`` variables.

``--registry-username``/``--registry-password`` (``IMGPKG_USERNAME``/``IMGPKG_PASSWORD``),
``--registry-token`` (``IMGPKG_TOKEN``) and ``--registry-anon`` (``IMGPKG_ANON=true``). They apply
to every registry, as in imgpkg, and come after the environment and IaaS sources. An anonymous
answer is a decision: it stops the chain, which is how ``--registry-anon`` hides the Docker config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .._credentials import Credential
from .._errors import ConfigError
from .._resource import Resource


def flags_credential(
    *,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    anon: bool = False,
    environ: Mapping[str, str],
) -> Credential | None:
    """The credential the options describe, or ``None`` when they describe none.

    Each explicit value wins over its variable; empty values count as unset; ``IMGPKG_ANON``
    counts only when it is exactly ``true``. Username/password come first, then the token,
    then anonymous.
    """
    username = username or environ.get("IMGPKG_USERNAME") or None
    password = password or environ.get("IMGPKG_PASSWORD") or None
    token = token or environ.get("IMGPKG_TOKEN") or None
    anon = anon or environ.get("IMGPKG_ANON") == "true"
    if (username is None) != (password is None):
        given, missing = (
            ("username", "password") if username is not None else ("password", "username")
        )
        raise ConfigError(
            f"a registry {given} was given (--registry-{given} or IMGPKG_{given.upper()}) "
            f"without a {missing} (--registry-{missing} or IMGPKG_{missing.upper()})"
        )
    if username is not None:
        return Credential(username=username, password=password)
    if token is not None:
        return Credential(registry_token=token)
    if anon:
        return Credential.anonymous()
    return None


class FlagsResolver:
    """Credentials given explicitly, for every registry."""

    name = "flags"
    timeout = 1.0

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        anon: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.credential = flags_credential(
            username=username,
            password=password,
            token=token,
            anon=anon,
            environ=os.environ if environ is None else environ,
        )

    async def resolve(self, resource: Resource) -> Credential | None:
        """The same credential for every registry, as imgpkg's ``--registry-*`` flags mean it;
        ``None`` when no option was given, so that the Docker config is asked."""
        return self.credential

    def explain(self, resource: Resource) -> str | None:
        """Says that explicit options answered, so a user looking for a stray password knows
        to check the command line and the ``IMGPKG_*`` variables."""
        return None if self.credential is None else "explicit options (flags or IMGPKG_* variables)"

    def __repr__(self) -> str:
        return f"FlagsResolver({self.credential!r})"
