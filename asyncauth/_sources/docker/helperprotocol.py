"""The docker-credential-helpers protocol, client side: what to ask and how to read the answer.

A credential helper is a program named ``docker-credential-<name>`` on ``PATH``. Asked
``docker-credential-<name> get`` with a server URL on stdin, it prints
``{"ServerURL": …, "Username": …, "Secret": …}`` on stdout and exits 0; it reports an error by
printing the message on **stdout** and exiting 1. Two answers mean "I have nothing for this
server", and neither is a failure: the message ``credentials not found in native keychain`` (with
any exit code: helpers disagree on it) and an answer whose Username and Secret are both empty.
A Username of ``<token>`` means the Secret is an identity token (an OAuth2 refresh token), not a
password.

Everything here is pure: the answer is decided from the exit status and the bytes alone, so every
rule is tested without a process. Helpers are third-party programs, so what they print on failure
passes through :func:`~asyncauth._redact.redact` (and a stdout that looks like the JSON answer is
never shown at all) before it reaches an exception or the trace.
"""

from __future__ import annotations

import json
import re
import signal
from dataclasses import dataclass

from ..._credentials import Credential
from ..._errors import ResolverError
from ..._redact import redact
from ..._resource import DOCKER_HUB, Resource

HELPER_PREFIX = "docker-credential-"
NOT_FOUND_MESSAGE = "credentials not found in native keychain"
"""The protocol's "no credential for this server" message (docker-credential-helpers)."""
TOKEN_USERNAME = "<token>"  # noqa: S105 - the protocol's marker, not a password
"""A helper answering this Username means its Secret is an identity (refresh) token."""
DOCKER_HUB_SERVER_URL = "https://index.docker.io/v1/"
"""The server URL docker/cli uses for Docker Hub, so what ``docker login`` stored is found."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def valid_helper_name(name: str) -> bool:
    """Whether ``name`` may follow ``docker-credential-``.

    The name comes from a config file and becomes a program name: a path separator would let
    a config run any file on the machine (``../../tmp/x``), so only plain names are accepted.
    """
    return len(name) <= 200 and _NAME.fullmatch(name) is not None


def helper_program(name: str) -> str:
    """``docker-credential-<name>``; raises :class:`ValueError` for a name that is not plain."""
    if not valid_helper_name(name):
        raise ValueError(f"{name!r} is not a credential helper name")
    return HELPER_PREFIX + name


def server_url_for(resource: Resource) -> str:
    """The server URL to hand a helper for ``resource``, spelt as docker/cli spells it.

    Helpers store secrets under the exact string ``docker login`` gave them: for Docker Hub
    ``https://index.docker.io/v1/``, for every other registry the bare ``host[:port]``.
    """
    return DOCKER_HUB_SERVER_URL if resource.registry == DOCKER_HUB else resource.registry


@dataclass(frozen=True, slots=True)
class HelperOutput:
    """What one helper run left behind. Its ``repr`` shows sizes, never the output."""

    returncode: int
    stdout: bytes
    stderr: bytes

    def __repr__(self) -> str:
        return (
            f"HelperOutput(returncode={self.returncode}, stdout=<{len(self.stdout)} bytes>, "
            f"stderr=<{len(self.stderr)} bytes>)"
        )


def _output_shown(output: bytes) -> str:
    text = output.decode("utf-8", "replace").strip()
    if not text:
        return ""
    if '"secret"' in text.lower() or text.startswith("{"):
        return f"<{len(output)} bytes that look like a credential answer, withheld>"
    return redact(text)


def _not_found(output: HelperOutput) -> bool:
    for stream in (output.stdout, output.stderr):
        if NOT_FOUND_MESSAGE in stream.decode("utf-8", "replace").lower():
            return True
    return False


def _parse_answer(stdout: bytes, program: str) -> Credential | None:
    try:
        answer = json.loads(stdout.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ResolverError(
            f"{program} printed {len(stdout)} bytes that are not the JSON answer the "
            "credential-helper protocol expects (output withheld)"
        ) from None
    if not isinstance(answer, dict):
        raise ResolverError(
            f"{program} printed JSON that is not an object (a {type(answer).__name__})"
        )
    username = answer.get("Username")
    secret = answer.get("Secret")
    for field, value in (("Username", username), ("Secret", secret)):
        if value is not None and not isinstance(value, str):
            raise ResolverError(f"{program} answered a {field} that is not a string")
    username = username or ""
    secret = secret or ""
    if username == TOKEN_USERNAME:
        return Credential(identity_token=secret) if secret else None
    if not username and not secret:
        return None
    return Credential(username=username, password=secret)


def _how_it_ended(returncode: int) -> str:
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


def interpret_get(output: HelperOutput, *, program: str) -> Credential | None:
    """The credential a ``get`` run answered, ``None`` for "not found", or :class:`ResolverError`.

    Error messages carry the helper's own message (stdout, where the protocol puts it, then
    stderr), redacted.
    """
    if output.returncode == 0:
        try:
            return _parse_answer(output.stdout, program)
        except ResolverError:
            if _not_found(output):
                return None
            raise
    if _not_found(output):
        return None
    said = "; ".join(
        f"{name}: {text}"
        for name, text in (
            ("output", _output_shown(output.stdout)),
            ("stderr", _output_shown(output.stderr)),
        )
        if text
    )
    how = _how_it_ended(output.returncode)
    raise ResolverError(f"{program} {how}" + (f" ({said})" if said else " without a message"))
