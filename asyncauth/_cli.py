"""The ``asyncauth`` command: see which credentials would be sent, and why.

``asyncauth explain REF`` answers the question users otherwise debug with 401s: which source
answered for this reference, and what every other source did (with durations). Secrets are
never printed; usernames are (``bob:****``). ``asyncauth token REF`` prints a bearer token
(for curl); ``asyncauth manifest REF`` fetches a manifest with authentication.

Exit codes: 0 on success, 2 for a configuration or usage error (one line on stderr).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from typing import Any

import anyio
import httpx

from ._chain import Chain, Resolution
from ._client import create_client, registry_base_url
from ._credentials import Credential
from ._defaults import default_chain
from ._errors import AsyncAuthError, ConfigError, InvalidReferenceError
from ._registry.auth import RegistryAuth
from ._resource import Resource

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asyncauth",
        description="Container-registry credentials in imgpkg's order, and the token handshake.",
    )
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop to run on (default: asyncio)",
    )
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("reference", metavar="REF", help="image reference, e.g. ghcr.io/org/app")
    options.add_argument("--username", help="like imgpkg --registry-username")
    options.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password (like imgpkg --registry-password) from standard input",
    )
    options.add_argument("--token", help="bearer token, like imgpkg --registry-token")
    options.add_argument(
        "--anon", action="store_true", help="anonymous access, like imgpkg --registry-anon"
    )
    options.add_argument("--timeout", type=float, default=None, help="deadline in seconds")
    network = argparse.ArgumentParser(add_help=False)
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
    network.add_argument("--json", action="store_true", help="machine-readable output")

    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    explain = commands.add_parser(
        "explain",
        parents=[options],
        help="show which source answers for a reference, and the whole trace",
        description="Resolve credentials for REF through the default chain "
        "(environment, IaaS, options, Docker config) and show how each source fared.",
    )
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    token = commands.add_parser(
        "token",
        parents=[options, network],
        help="print a bearer token for REF's repository (for curl)",
        description="Run the registry handshake for REF and print the bearer token "
        "(pull scope, or pull+push with --push).",
    )
    token.add_argument("--push", action="store_true", help="ask for pull and push")
    commands.add_parser(
        "manifest",
        parents=[options, network],
        help="fetch REF's manifest and print its digest and media type",
        description="GET the manifest of REF (tag, digest, or 'latest') with authentication.",
    )
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


def _chain(args: argparse.Namespace, password: str | None) -> Chain:
    return default_chain(
        username=args.username,
        password=password,
        token=args.token,
        anon=args.anon,
        timeout=args.timeout,
    )


async def _explain(args: argparse.Namespace, password: str | None) -> int:
    resolution = await _chain(args, password).resolve(args.reference)
    if args.json:
        print(json.dumps(resolution_json(resolution), indent=2))
    else:
        print(resolution_text(resolution))
    return 0


def _client(args: argparse.Namespace, password: str | None) -> httpx.AsyncClient:
    return create_client(
        chain=_chain(args, password),
        ca_cert_paths=args.ca_cert,
        insecure_registries=args.insecure_registry,
        timeout=args.timeout or 30.0,
    )


async def _token(args: argparse.Namespace, password: str | None) -> int:
    resource = Resource.parse(args.reference)
    async with _client(args, password) as client:
        assert isinstance(client.auth, RegistryAuth)
        base = await registry_base_url(client, resource, insecure_registries=args.insecure_registry)
        authorization = await client.auth.bearer_token(
            client, resource, push=args.push, base_url=base
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        what = "needs no authorisation" if not authorization else f"uses {scheme} authentication"
        print(f"asyncauth: {resource.registry} {what}: there is no bearer token", file=sys.stderr)
        return 1
    print(json.dumps({"token": token}) if args.json else token)
    return 0


async def _manifest(args: argparse.Namespace, password: str | None) -> int:
    resource = Resource.parse(args.reference)
    if resource.repository is None:
        raise InvalidReferenceError(f"{resource}: a manifest needs a repository")
    reference = resource.digest or resource.tag or "latest"
    async with _client(args, password) as client:
        base = await registry_base_url(client, resource, insecure_registries=args.insecure_registry)
        url = f"{base}/v2/{resource.repository}/manifests/{reference}"
        response = await client.get(url, headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)})
    if response.status_code != 200:
        print(
            f"asyncauth: {resource}:{reference}: the registry answered {response.status_code}",
            file=sys.stderr,
        )
        return 1
    digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
    claimed = response.headers.get("Docker-Content-Digest")
    if claimed and claimed.startswith("sha256:") and claimed != digest:
        print(f"asyncauth: {resource}: digest mismatch ({claimed} != {digest})", file=sys.stderr)
        return 1
    if resource.digest and resource.digest.startswith("sha256:") and resource.digest != digest:
        print(f"asyncauth: {resource}: content does not match {resource.digest}", file=sys.stderr)
        return 1
    media_type = response.headers.get("Content-Type", "").partition(";")[0].strip()
    if args.json:
        print(
            json.dumps({"digest": digest, "media_type": media_type, "size": len(response.content)})
        )
    else:
        print(f"{digest} {media_type}")
    return 0


_COMMANDS = {"explain": _explain, "token": _token, "manifest": _manifest}

MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asyncauth`` console script."""
    args = _parser().parse_args(argv)
    try:
        password = None
        if getattr(args, "password_stdin", False):
            password = sys.stdin.read().rstrip("\r\n")
            if not password:
                raise ConfigError("--password-stdin: standard input was empty")
        return anyio.run(_COMMANDS[args.command], args, password, backend=args.backend)
    except (ConfigError, InvalidReferenceError) as exc:
        print(f"asyncauth: error: {exc}", file=sys.stderr)
        return 2
    except AsyncAuthError as exc:
        print(f"asyncauth: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"asyncauth: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
