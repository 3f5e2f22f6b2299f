"""``docker-credential-asyncauth``: imgpkg's resolution order for Docker, podman, skopeo, crane.

A credential helper (docker-credential-helpers protocol) whose ``get`` answers from the whole
asyncauth chain — ``IMGPKG_REGISTRY_*`` variables, IaaS, the ``IMGPKG_USERNAME``/``IMGPKG_TOKEN``
options, and the Docker config — so that any client that speaks the protocol resolves
credentials as imgpkg would. Point a registry at it with ``"credHelpers": {"ghcr.io":
"asyncauth"}`` (or ``"credsStore": "asyncauth"`` for every registry).

Protocol, and the decisions where it is silent:

* ``get``: the server URL on stdin; ``{"ServerURL", "Username", "Secret"}`` on stdout, exit 0.
  An identity token is answered as Username ``<token>``. No credential (or an anonymous
  decision, ``IMGPKG_ANON=true``) is the protocol's ``credentials not found in native
  keychain``, exit 1, after which clients go on anonymously.
* A **registry token** (a bearer access token, ``IMGPKG_REGISTRY_REGISTRY_TOKEN``/
  ``IMGPKG_TOKEN``) has no place in the protocol's answer: sending it as a password or as an
  identity token would make the client do the wrong exchange. It is reported as an error
  (exit 1) that says so, rather than silently dropped, so the user learns why the client did
  not authenticate.
* ``list``: ``{}`` (exit 0), what docker-credential-ecr-login answers: this helper stores
  nothing, so it has nothing to list, and ``docker``/``crane`` callers that enumerate helpers
  get an answer instead of an error.
* ``store``, ``erase``: this helper is read-only. They answer ``not implemented`` (what
  read-only helpers such as ecr-login answer), exit 1.
* Errors (a broken configuration, a bad server URL): one line, no traceback, no secret, exit 1.
  The line goes to stderr for people and to stdout, where protocol clients read a helper's
  error (docker shows it as ``out: …``).
* The Docker config source skips ``credHelpers``/``credsStore`` entries naming ``asyncauth``
  (otherwise a ``credsStore: asyncauth`` would call itself forever), and the helper marks its
  environment so that an asyncauth reached again under another helper name answers "not found".
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

import anyio

from ._chain import Chain
from ._credentials import Credential
from ._defaults import default_chain
from ._errors import AsyncAuthError
from ._patterns import RegistryPattern
from ._resource import Resource
from ._sources.docker.helperprotocol import NOT_FOUND_MESSAGE, TOKEN_USERNAME
from ._version import __version__

HELPER_NAME = "asyncauth"
"""The name to write in ``credHelpers``/``credsStore`` (the program is docker-credential-NAME)."""
PROGRAM = f"docker-credential-{HELPER_NAME}"
_GUARD = "ASYNCAUTH_IN_CREDENTIAL_HELPER"
_NOT_IMPLEMENTED = "not implemented"
_MISSING_SERVER_URL = "no credentials server URL"  # the protocol's own message


class _Failure(Exception):
    """An answer that is a protocol error: printed as one line, exit status 1."""


def resource_for_server_url(server_url: str) -> Resource:
    """The resource a client asks about: ``https://index.docker.io/v1/``, ``ghcr.io``,
    ``localhost:5000``, ``quay.io/team`` (podman may send a repository-scoped key).

    Raises :class:`~asyncauth.ConfigError` for a URL that does not name a registry.
    """
    pattern = RegistryPattern.parse(server_url, what="server URL", globs=False)
    registry = pattern.host if pattern.port is None else f"{pattern.host}:{pattern.port}"
    return Resource(registry, "/".join(pattern.path) or None)


def helper_chain(environ: Mapping[str, str] | None = None) -> Chain:
    """:func:`~asyncauth.default_chain` with a Docker config source that never asks us back."""
    return default_chain(environ=environ, exclude_helpers={HELPER_NAME})


def answer(server_url: str, credential: Credential) -> dict[str, str] | None:
    """The protocol's answer for ``credential``, or ``None`` for "not found".

    Raises :class:`_Failure` for a registry token, which the protocol cannot carry.
    """
    kind = credential.kind
    if kind == "anonymous":
        return None
    if kind == "registry_token":
        raise _Failure(
            f"the credential for {server_url} is a registry (bearer) token, which the "
            "credential-helper protocol cannot carry; give a username and password or an "
            "identity token instead"
        )
    if kind == "identity_token":
        assert credential.identity_token is not None
        return {
            "ServerURL": server_url,
            "Username": TOKEN_USERNAME,
            "Secret": credential.identity_token,
        }
    return {
        "ServerURL": server_url,
        "Username": credential.username or "",
        "Secret": credential.password or "",
    }


async def _get(server_url: str) -> dict[str, str] | None:
    resource = resource_for_server_url(server_url)
    resolution = await helper_chain().resolve(resource)
    return answer(server_url, resolution.credential)


def _say(message: str, stdout: TextIO, stderr: TextIO) -> None:
    line = f"{PROGRAM}: {' '.join(message.split())}"
    print(line, file=stderr)
    print(line, file=stdout)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one protocol action; returns the exit status (the console script exits with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    stdout, stderr = sys.stdout, sys.stderr
    if len(args) != 1:
        print(f"Usage: {PROGRAM} <store|get|erase|list|version>", file=stdout)
        return 1
    action = args[0]
    if action == "version":
        print(f"{PROGRAM} (asyncauth) {__version__}", file=stdout)
        return 0
    if action == "list":
        stdout.write("{}\n")
        stdout.flush()
        return 0
    if action in ("store", "erase"):
        print(_NOT_IMPLEMENTED, file=stdout)
        print(
            f"{PROGRAM}: {action!r} is not supported: this helper only reads credentials "
            "(from IMGPKG_REGISTRY_*, IaaS, IMGPKG_* options and the Docker config)",
            file=stderr,
        )
        return 1
    if action != "get":
        print(f"Unknown credential action `{action}`", file=stdout)
        return 1
    return _get_action(sys.stdin.read().strip(), stdout, stderr)


def _get_action(server_url: str, stdout: TextIO, stderr: TextIO) -> int:
    """``get``: the answer on stdout, or the protocol's "not found", or one error line."""
    if not server_url:
        print(_MISSING_SERVER_URL, file=stdout)
        return 1
    if os.environ.get(_GUARD):
        # We are being asked by ourselves (e.g. through a helper that is a symlink to us).
        print(NOT_FOUND_MESSAGE, file=stdout)
        return 1
    os.environ[_GUARD] = "1"  # inherited by any helper the Docker config source runs
    try:
        result = anyio.run(_get, server_url)
    except (AsyncAuthError, _Failure) as exc:
        _say(str(exc), stdout, stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: still one line and no traceback (it could show inputs)
        _say(f"unexpected {type(exc).__name__}: {exc}", stdout, stderr)
        return 1
    finally:
        del os.environ[_GUARD]
    if result is None:
        print(NOT_FOUND_MESSAGE, file=stdout)
        return 1
    stdout.write(json.dumps(result) + "\n")
    stdout.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover - the console script calls main()
    sys.exit(main())
