"""The ``asyncauth`` command line: its options, and argparse made fit for scripts and secrets.

argparse prints and exits on a mistake; here a mistake raises :class:`UsageError`, so the
command can answer in JSON with ``--json`` and keep its exit status. Stray arguments are never
echoed: ``--password s3cret`` names an option that does not exist, and its value is a secret.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from ._redact import MASK
from ._version import __version__


class UsageError(Exception):
    """A command-line mistake; ``usage`` is the usage line argparse would have shown."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


_EXPLICIT_ARGUMENT = re.compile(r"(explicit argument )'.*'")  # --flag=VALUE
_OPTION_SHAPE = re.compile(r"--[a-z][a-z0-9-]{0,31}|-[a-zA-Z]")


def _option_name(argument: str) -> str:
    """A stray argument as it may be shown: an option's name, never a value.

    Only what is shaped like one of our option names is shown (``--password``, ``-x``); anything
    else, a value that happens to start with ``-`` included, is masked.
    """
    name, equals, _ = argument.partition("=")
    if not _OPTION_SHAPE.fullmatch(name):
        return MASK
    return f"{name}={MASK}" if equals else name


class _Parser(argparse.ArgumentParser):
    """argparse that raises on a mistake instead of exiting, so ``main`` can answer in JSON,
    and that never echoes stray arguments: ``--password s3cret`` (an option that does not
    exist) must not print the password.

    Abbreviated options are refused: argparse would take ``--password s3cret`` as
    ``--password-stdin`` and leave the secret as a stray argument, so the user saw only
    ``****`` and not the option that was wrong.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        message = _EXPLICIT_ARGUMENT.sub(rf"\1'{MASK}'", message)
        raise UsageError(message, self.format_usage())

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: None = None
    ) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            shown = " ".join(_option_name(arg) for arg in extras)
            self.error(f"unrecognized arguments: {shown} (values are not shown)")
        return parsed


def _seconds(text: str) -> float:
    """A ``--timeout``: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def _lookup_options(*, many: bool = False) -> _Parser:
    """The options of a command that looks credentials up for REF (``many``: one REF or more,
    as ``references``)."""
    options = _Parser(add_help=False)
    if many:
        options.add_argument(
            "references",
            metavar="REF",
            nargs="+",
            help="image references on one registry, e.g. ghcr.io/org/app ghcr.io/org/base",
        )
    else:
        options.add_argument(
            "reference", metavar="REF", help="image reference, e.g. ghcr.io/org/app"
        )
    options.add_argument("--username", help="like imgpkg --registry-username")
    options.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password (like imgpkg --registry-password) from standard input",
    )
    options.add_argument(
        "--token", help="registry token, like imgpkg --registry-token (visible in ps)"
    )
    options.add_argument(
        "--token-stdin",
        action="store_true",
        help="read the registry token from standard input (not visible in ps)",
    )
    options.add_argument(
        "--anon", action="store_true", help="anonymous access, like imgpkg --registry-anon"
    )
    options.add_argument("--timeout", type=_seconds, default=None, help="deadline in seconds")
    options.add_argument("--json", action="store_true", help="machine-readable output")
    return options


def _network_options() -> _Parser:
    network = _Parser(add_help=False)
    network.add_argument(
        "--ca-cert",
        action="append",
        default=[],
        metavar="PATH",
        help="trust this PEM CA certificate too (like imgpkg --registry-ca-cert-path)",
    )
    network.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="no TLS verification, and plain http allowed, for this registry",
    )
    network.add_argument(
        "--anonymous-fallback",
        action="store_true",
        help="if the registry's token server refuses the credential of a pull, pull "
        "anonymously (never for --push); with explain: ask the registry, and show it",
    )
    return network


_BACKEND_HELP = "event loop to run on (default: asyncio; trio needs asyncauth[trio])"


def _backend_option() -> _Parser:
    """``--backend`` after the command too; its default is the top level's, so that only a
    ``--backend`` that is given overrides it."""
    backend = _Parser(add_help=False)
    backend.add_argument(
        "--backend", choices=("asyncio", "trio"), default=argparse.SUPPRESS, help=_BACKEND_HELP
    )
    return backend


def build_parser() -> _Parser:
    parser = _Parser(
        prog="asyncauth",
        description="Container-registry credentials in imgpkg's order, and the token handshake.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--backend", choices=("asyncio", "trio"), default="asyncio", help=_BACKEND_HELP
    )
    lookup, network = _lookup_options(), _network_options()
    lookup = _Parser(add_help=False, parents=[lookup, _backend_option()])
    lookups = _Parser(add_help=False, parents=[_lookup_options(many=True), _backend_option()])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "explain",
        parents=[lookup, network],
        help="show which source answers for a reference, and the whole trace",
        description="Resolve credentials for REF through the default chain "
        "(environment, IaaS, options, Docker config) and show how each source fared. "
        "With --anonymous-fallback, also ask REF's registry for a pull token: the trace then "
        "says whether the credential was refused and the pull would go anonymous.",
    )
    token = commands.add_parser(
        "token",
        parents=[lookups, network],
        help="print one bearer token for the repositories of REF ... (for curl)",
        description="Run the registry handshake for REF (or several REFs on one registry) and "
        "print one bearer token for all (pull scope, or pull+push with --push).",
    )
    token.add_argument("--push", action="store_true", help="ask for pull and push")
    commands.add_parser(
        "manifest",
        parents=[lookup, network],
        help="fetch REF's manifest and print its digest and media type",
        description="GET the manifest of REF (tag, digest, or 'latest') with authentication.",
    )
    return parser


def wants_json(arguments: Sequence[str]) -> bool:
    """``--json`` anywhere, even if parsing fails (so that the failure is JSON too)."""
    return "--json" in arguments
