"""The documentation keeps its promises: every Python block runs, and the site builds strictly.

Each ```python block of README.md and docs/*.md is a whole program (imports included, no
top-level ``await``) that a user can paste into a file. The test runs each one as a file, in a
subprocess, against the real registry peer: the public registries the examples name are
rewritten to the local one (see :data:`REWRITES`), and the program gets the peer's credentials
the way a user's program would, from ``IMGPKG_REGISTRY_*`` and a Docker config file.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ._assertions import assert_hidden
from .peers.accounts import PeerAccounts
from .peers.images import PushedImage
from .peers.registry import RegistryServer
from .peers.tls import make_private_ca
from .peers.token_issuer import TokenIssuer

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for number, match in enumerate(_BLOCK.finditer(page.read_text()), 1):
            found.append((f"{page.relative_to(ROOT)}#{number}", match.group(1)))
    return found


BLOCKS = _blocks()


def REWRITES(registry: RegistryServer) -> list[tuple[str, str]]:
    """Public names in the examples -> the local peer (``peers/app:v1`` on a loopback registry)."""
    return [
        ("https://ghcr.io", registry.url),
        ("https://quay.io", registry.url),
        ("ghcr.io/org/app", f"{registry.host}/peers/app"),
        ("quay.io/org/app", f"{registry.host}/peers/app"),
        ("ghcr.io/org/", f"{registry.host}/peers/"),  # other repositories (prefetch examples)
        ("/v2/org/app/", "/v2/peers/app/"),
        ("manifests/1.0", "manifests/v1"),
        ("app:1.0", "app:v1"),
        ('"ghcr.io"', f'"{registry.host}"'),
    ]


def test_there_are_blocks_on_every_page_that_shows_code() -> None:
    assert len(BLOCKS) >= 10
    pages = {name.partition("#")[0] for name, _ in BLOCKS}
    assert {"README.md", "docs/index.md", "docs/handshake.md"} <= pages


@pytest.mark.parametrize(("name", "code"), BLOCKS, ids=[name for name, _ in BLOCKS])
def test_every_block_is_a_whole_program(name: str, code: str) -> None:
    """Compiles as a module: so no top-level ``await``, no ``...`` standing for code."""
    compile(code, name, "exec")
    assert not re.search(r"^\s*\.\.\.\s*$", code, re.MULTILINE), f"{name} elides code"
    assert "import" in code, f"{name} has no imports"


@pytest.mark.parametrize(("name", "code"), BLOCKS, ids=[name for name, _ in BLOCKS])
def test_every_block_runs_against_the_real_registry(
    name: str,
    code: str,
    tmp_path: Path,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    ca = make_private_ca(tmp_path / "ca").ca_certificate
    for public, local in [*REWRITES(token_registry), ("/etc/harbor/ca.crt", str(ca))]:
        code = code.replace(public, local)
    program = tmp_path / "example.py"
    program.write_text(code)
    user, password = peer_accounts.writer
    docker = tmp_path / ".docker"
    docker.mkdir()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (docker / "config.json").write_text(
        json.dumps({"auths": {token_registry.host: {"auth": auth}}})
    )
    environ = {
        "HOME": str(tmp_path),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "IMGPKG_ENABLE_IAAS_AUTH": "false",
        "IMGPKG_REGISTRY_HOSTNAME": token_registry.host,
        "IMGPKG_REGISTRY_USERNAME": user,
        "IMGPKG_REGISTRY_PASSWORD": password,
    }
    done = subprocess.run(
        [sys.executable, str(program)],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    assert_hidden(done.stdout + done.stderr, password, auth, where=f"{name}'s output")


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """``mkdocs build --strict``: every link, every page in the nav, the API reference."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "api" / "index.html").exists()
