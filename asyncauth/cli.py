"""The ``asyncauth`` command: see which credentials would be sent, and why.

``asyncauth explain REF`` answers the question users otherwise debug with 401s: which source
answered for this reference, and what every other source did (with durations). Secrets are
never printed; usernames are (``bob:****``).

Exit codes: 0 on success, 2 for a configuration or usage error (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from ._errors import AsyncAuthError, ConfigError, InvalidReferenceError
from .chain import Resolution
from .credentials import Credential
from .defaults import default_chain

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asyncauth",
        description="Container-registry credentials in imgpkg's order.",
    )
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop to run on (default: asyncio)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    explain = commands.add_parser(
        "explain",
        help="show which source answers for a reference, and the whole trace",
        description="Resolve credentials for REF through the default chain "
        "(environment, IaaS, options, Docker config) and show how each source fared.",
    )
    explain.add_argument("reference", metavar="REF", help="image reference, e.g. ghcr.io/org/app")
    explain.add_argument("--username", help="like imgpkg --registry-username")
    explain.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password (like imgpkg --registry-password) from standard input",
    )
    explain.add_argument("--token", help="bearer token, like imgpkg --registry-token")
    explain.add_argument(
        "--anon", action="store_true", help="anonymous access, like imgpkg --registry-anon"
    )
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    explain.add_argument("--timeout", type=float, default=None, help="overall deadline in seconds")
    return parser


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


async def _explain(args: argparse.Namespace, password: str | None) -> int:
    chain = default_chain(
        username=args.username,
        password=password,
        token=args.token,
        anon=args.anon,
        timeout=args.timeout,
    )
    resolution = await chain.resolve(args.reference)
    if args.json:
        print(json.dumps(resolution_json(resolution), indent=2))
    else:
        print(resolution_text(resolution))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asyncauth`` console script."""
    args = _parser().parse_args(argv)
    try:
        password = None
        if getattr(args, "password_stdin", False):
            password = sys.stdin.read().rstrip("\r\n")
            if not password:
                raise ConfigError("--password-stdin: standard input was empty")
        return anyio.run(_explain, args, password, backend=args.backend)
    except (ConfigError, InvalidReferenceError) as exc:
        print(f"asyncauth: error: {exc}", file=sys.stderr)
        return 2
    except AsyncAuthError as exc:
        print(f"asyncauth: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
