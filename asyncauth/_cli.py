"""The ``asyncauth`` command: see which credentials would be sent, and why.

``asyncauth explain REF`` answers the question users otherwise debug with 401s: which source
answered for this reference, and what every other source did (with durations). Secrets are
never printed; usernames are (``bob:****``). ``asyncauth token REF [REF ...]`` prints one bearer
token for all (for curl); ``asyncauth manifest REF`` fetches a manifest with authentication.

Exit codes: 0 on success; 1 when a registry or a source failed; 2 for a configuration or usage
error; 130 after Ctrl-C; 141 when whoever read standard output went away (``| head -1``), as
for a program killed by SIGPIPE. A failure is one line on stderr (JSON with ``--json``), never
a traceback, never a secret. ``docs/cli.md`` documents the JSON (versioned by ``schema``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from ._chain import Chain
from ._cli_args import UsageError, build_parser, wants_json
from ._client import create_client, registry_base_url
from ._credentials import Credential
from ._defaults import default_chain
from ._error_body import MAX_ERROR_BODY, describe, registry_errors
from ._errors import AsyncAuthError, ConfigError, InvalidReferenceError
from ._media_types import MANIFEST_MEDIA_TYPES
from ._ratelimit import rate_limit
from ._redact import redact
from ._registry.auth import RegistryAuth
from ._resolution import Resolution
from ._resource import Resource

JSON_SCHEMA = 1
"""The version of every ``--json`` document: it goes up when a field is removed or changes
meaning, not when one is added, so scripts can check it instead of guessing."""


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a program stopped by Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


class _CommandFailed(Exception):
    """The command ran and the answer is a failure (exit 1); ``kind`` names it in JSON."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# --- the commands --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    """A command's result: ``data`` for ``--json`` (``schema`` is added), ``text`` for people."""

    data: dict[str, Any]
    text: str


def _credential_json(credential: Credential) -> dict[str, Any]:
    return {"kind": credential.kind, "username": credential.username}


def resolution_json(resolution: Resolution) -> dict[str, Any]:
    """The resolution as JSON-ready data, without secrets."""
    return {
        "resource": str(resolution.resource),
        "source": resolution.source,
        "credential": _credential_json(resolution.credential),
        "trace": [
            {
                "resolver": entry.resolver,
                "outcome": str(entry.outcome),
                "duration_ms": round(entry.duration * 1000, 3),
                "detail": entry.detail,
            }
            for entry in resolution.trace
        ],
    }


def resolution_text(resolution: Resolution) -> str:
    """The resolution for people: the answer first, then every source's part."""
    lines = [
        f"resource:   {resolution.resource}",
        f"source:     {resolution.source or 'none (no source matched: anonymous)'}",
        f"credential: {resolution.credential.redacted()}",
        "trace:",
    ]
    width = max((len(e.resolver) for e in resolution.trace), default=0)
    for entry in resolution.trace:
        detail = f"  {entry.detail}" if entry.detail else ""
        lines.append(
            f"  {entry.resolver:<{width}}  {entry.outcome!s:<11}"
            f" {entry.duration * 1000:8.2f} ms{detail}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class _Secrets:
    """The secrets read from standard input, kept out of the parsed arguments (whose ``repr``
    shows every value)."""

    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


def _chain(args: argparse.Namespace, secrets: _Secrets) -> Chain:
    return default_chain(
        username=args.username,
        password=secrets.password,
        token=secrets.token if args.token_stdin else args.token,
        anon=args.anon,
        timeout=args.timeout,
    )


async def _explain(args: argparse.Namespace, secrets: _Secrets) -> _Answer:
    if args.anonymous_fallback:
        resolution = await _as_pulled(args, secrets)
    else:
        resolution = await _chain(args, secrets).resolve(args.reference)
    return _Answer(resolution_json(resolution), resolution_text(resolution))


async def _as_pulled(args: argparse.Namespace, secrets: _Secrets) -> Resolution:
    """The resolution a pull of REF ends with: the chain's, or the one ``anonymous_fallback``
    left when the token server refused its credential (its trace says so, and why)."""
    resource = Resource.parse(args.reference)
    async with _client(args, secrets) as client:
        assert isinstance(client.auth, RegistryAuth)
        base = await registry_base_url(client, resource, insecure_registries=args.insecure_registry)
        _, call = await client.auth._authorized(client, resource, base_url=base)
        if call.fallback is not None:
            return call.fallback
        return call.resolution or await client.auth.chain.resolve(resource)  # open: no ask


def _client(args: argparse.Namespace, secrets: _Secrets) -> httpx.AsyncClient:
    auth = RegistryAuth(
        _chain(args, secrets),
        insecure_registries=args.insecure_registry,
        anonymous_fallback=args.anonymous_fallback,
    )
    return create_client(
        auth=auth,
        ca_cert_paths=args.ca_cert,
        insecure_registries=args.insecure_registry,
        timeout=args.timeout or 30.0,
    )


async def _token(args: argparse.Namespace, secrets: _Secrets) -> _Answer:
    resources = list(dict.fromkeys(Resource.parse(reference) for reference in args.references))
    registries = sorted({resource.registry for resource in resources})
    if len(registries) > 1:
        raise ConfigError(
            f"asyncauth token: one token is for one registry; these references are on "
            f"{len(registries)}: {', '.join(registries)}"
        )
    resource = resources[0]
    async with _client(args, secrets) as client:
        assert isinstance(client.auth, RegistryAuth)
        base = await registry_base_url(client, resource, insecure_registries=args.insecure_registry)
        if len(resources) > 1:  # all their scopes in as few token requests as the server allows
            await client.auth.prefetch(resources, push=args.push, client=client, base_url=base)
        values = [
            await client.auth.bearer_token(client, each, push=args.push, base_url=base)
            for each in resources
        ]
    token = _one_token(resources, values)
    return _Answer({"token": token}, token)


def _one_token(resources: list[Resource], values: list[str]) -> str:
    """The one bearer token that serves every resource, or why there is none."""
    scheme, _, token = values[0].partition(" ")
    if scheme.lower() != "bearer" or not token:
        what = "needs no authorisation" if not values[0] else f"uses {scheme} authentication"
        raise _CommandFailed(
            "NoBearerToken", f"{resources[0].registry} {what}: there is no bearer token"
        )
    if len(set(values)) > 1:
        apart = [str(r) for r, value in zip(resources, values, strict=True) if value != values[0]]
        raise _CommandFailed(
            "NoSingleToken",
            f"{resources[0].registry}'s token server grants fewer scopes per token than asked: "
            f"the token for {resources[0]} does not serve {', '.join(apart)}; "
            "ask for a token for each",
        )
    return token


async def _manifest(args: argparse.Namespace, secrets: _Secrets) -> _Answer:
    resource = Resource.parse(args.reference)
    if resource.repository is None:
        raise InvalidReferenceError(f"{resource}: a manifest needs a repository")
    reference = resource.digest or resource.tag or "latest"
    async with _client(args, secrets) as client:
        base = await registry_base_url(client, resource, insecure_registries=args.insecure_registry)
        url = f"{base}/v2/{resource.repository}/manifests/{reference}"
        headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
        async with client.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                body = await _read_at_most(response, MAX_ERROR_BODY + 1)
                raise await _refused(client, resource, f"{resource}:{reference}", response, body)
            content = await response.aread()
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    claimed = response.headers.get("Docker-Content-Digest")
    if claimed and claimed.startswith("sha256:") and claimed != digest:
        raise _CommandFailed(
            "DigestMismatch", f"{resource}: digest mismatch ({claimed} != {digest})"
        )
    if resource.digest and resource.digest.startswith("sha256:") and resource.digest != digest:
        raise _CommandFailed(
            "DigestMismatch", f"{resource}: content does not match {resource.digest}"
        )
    media_type = response.headers.get("Content-Type", "").partition(";")[0].strip()
    limit = rate_limit(response)
    data = {
        "digest": digest,
        "media_type": media_type,
        "size": len(content),
        "rate_limit": None if limit is None else limit.as_json(),
    }
    return _Answer(data, f"{digest} {media_type}")


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    """The start of a body that is only read to be shown: a registry's error page is not
    worth more than ``limit`` bytes of memory."""
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= limit:
            break
    return bytes(data)


async def _refused(
    client: httpx.AsyncClient, resource: Resource, what: str, response: httpx.Response, body: bytes
) -> _CommandFailed:
    """A status other than 200, with the registry's error codes (``MANIFEST_UNKNOWN`` is a
    missing tag, ``NAME_UNKNOWN`` a missing repository) and, for a 401 sent without any
    credential, that no source had one: the status alone sends users after the wrong cause."""
    status = response.status_code
    message = f"{what}: the registry answered {describe(status, registry_errors(body))}"
    if status == 401:
        assert isinstance(client.auth, RegistryAuth)
        resolution = await client.auth.chain.resolve(resource)  # the chain's cached answer
        if resolution.source is None:
            message += (
                f"; no source had a credential for {resource.registry}, so it went without one: "
                f"`asyncauth explain {resource}` shows what each source did"
            )
    return _CommandFailed("UnexpectedStatus", message)


_Command = Callable[[argparse.Namespace, _Secrets], Awaitable[_Answer]]
_COMMANDS: dict[str, _Command] = {"explain": _explain, "token": _token, "manifest": _manifest}


# --- running one command, and every way it can end -----------------------------------------


def _require_backend(backend: str) -> None:
    """A missing trio is the user's installation, not a bug: name the extra that brings it."""
    if backend == "trio":
        try:
            importlib.import_module("trio")
        except ImportError:
            raise ConfigError(
                "--backend trio: trio is not installed; pip install 'asyncauth[trio]'"
            ) from None


MAX_STDIN = 64 * 1024
"""Characters a password or token read from standard input may have; more is a wrong pipe."""


def _read_stdin(option: str) -> str:
    """One secret from standard input: refused from a terminal, where it would be typed in
    plain sight (and a script would wait, without a prompt, for a secret that never comes)."""
    stdin = sys.stdin
    try:
        terminal = stdin is not None and stdin.isatty()
    except ValueError:  # closed
        stdin, terminal = None, False
    if terminal:
        raise ConfigError(
            f"{option}: standard input is a terminal; pipe the secret in instead "
            f"(... | asyncauth COMMAND {option} REF)"
        )
    if stdin is None:
        raise ConfigError(f"{option}: there is no standard input to read")
    try:
        text = stdin.read(MAX_STDIN + 1)
    except UnicodeDecodeError:
        raise ConfigError(f"{option}: standard input is not text") from None
    except OSError as exc:
        raise ConfigError(f"{option}: standard input cannot be read ({exc.strerror})") from None
    if len(text) > MAX_STDIN:
        raise ConfigError(f"{option}: standard input holds more than {MAX_STDIN} characters")
    secret = text.rstrip("\r\n")
    if not secret:
        raise ConfigError(f"{option}: standard input was empty")
    return secret


def _secrets(args: argparse.Namespace) -> _Secrets:
    if args.token_stdin:
        token = _read_stdin("--token-stdin").strip()
        if not token:
            raise ConfigError("--token-stdin: standard input holds only white space")
        if any(character.isspace() for character in token):
            raise ConfigError("--token-stdin: standard input holds more than one word")
        return _Secrets(token=token)
    return _Secrets(password=_read_stdin("--password-stdin") if args.password_stdin else None)


def _run(arguments: Sequence[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as done:  # --help and --version, printed by argparse
        sys.stdout.flush()
        return done.code if isinstance(done.code, int) else 0
    if args.token_stdin and (args.password_stdin or args.token is not None):
        other = "--password-stdin" if args.password_stdin else "--token"
        parser.error(f"--token-stdin and {other} both give a secret: use one")
    _require_backend(args.backend)
    secrets = _secrets(args)
    answer = anyio.run(_COMMANDS[args.command], args, secrets, backend=args.backend)
    document = {"schema": JSON_SCHEMA, **answer.data}
    sys.stdout.write((json.dumps(document, indent=2) if args.json else answer.text) + "\n")
    sys.stdout.flush()  # inside main's handlers: a closed pipe is reported here, not at exit
    return 0


@dataclass(frozen=True)
class _Report:
    """How a failure is shown: ``kind`` and ``message`` for JSON, ``text`` for people."""

    kind: str
    message: str
    status: int
    text: str


def _report(exc: BaseException) -> _Report | None:
    """The report for a failure a user can act on; ``None`` for a bug (left to propagate)."""
    kind, message = type(exc).__name__, str(exc)
    if isinstance(exc, UsageError):
        return _Report("UsageError", message, 2, f"{exc.usage}asyncauth: error: {message}")
    if isinstance(exc, ConfigError | InvalidReferenceError):
        return _Report(kind, message, 2, f"asyncauth: error: {message}")
    if isinstance(exc, _CommandFailed):
        return _Report(exc.kind, message, 1, f"asyncauth: {message}")
    if isinstance(exc, httpx.HTTPError | httpx.InvalidURL):
        message = redact(message) or kind  # third-party text; some httpx errors have none
    elif not isinstance(exc, AsyncAuthError):
        return None
    return _Report(kind, message, 1, f"asyncauth: {kind}: {message}")


def _innermost(exc: BaseException) -> BaseException:
    """The failure inside task groups (trio wraps even a lone Ctrl-C in one)."""
    while isinstance(exc, BaseExceptionGroup):
        if exc.subgroup(KeyboardInterrupt) is not None:
            return KeyboardInterrupt()
        if len(exc.exceptions) != 1:
            break
        exc = exc.exceptions[0]
    return exc


def _silence_stdio() -> None:
    """Point stdout and stderr at /dev/null, so the interpreter's own flush at exit cannot
    complain about the closed pipe either (the recipe of Python's ``signal`` docs)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):  # not a real file
            os.dup2(devnull, stream.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asyncauth`` console script; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(arguments)
    except BaseException as raised:
        exc = _innermost(raised)
        if isinstance(exc, KeyboardInterrupt):
            return EXIT_INTERRUPTED
        if isinstance(exc, BrokenPipeError):
            _silence_stdio()
            return EXIT_BROKEN_PIPE
        report = _report(exc)
        if report is None:
            raise
        return _show(report, as_json=wants_json(arguments))


def _show(report: _Report, *, as_json: bool) -> int:
    """Print the failure (one JSON line with ``--json``) and return the exit status."""
    if as_json:
        error = {"type": report.kind, "message": report.message}
        line = json.dumps({"schema": JSON_SCHEMA, "error": error})
    else:
        line = report.text
    try:
        print(line, file=sys.stderr, flush=True)
    except BrokenPipeError:
        _silence_stdio()
        return EXIT_BROKEN_PIPE
    return report.status


if __name__ == "__main__":
    sys.exit(main())
