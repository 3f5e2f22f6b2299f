"""Small helpers shared by the peers: locating tools, free ports, log tails.

They live apart so that every peer fails the same way when the machine lacks something: a
``PeerUnavailableError`` naming the Debian (or PyPI) package to install. A missing tool must never
turn into a skipped test, because a skip would hide a gap in the proof that the library works
against real components.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

__all__ = ["PeerError", "PeerUnavailableError", "free_port", "require_tool", "tail"]


class PeerError(RuntimeError):
    """A test peer failed to start, stop or do what was asked of it."""


class PeerUnavailableError(PeerError):
    """A tool or package a test peer needs is not installed; the message says which one."""


def require_tool(name: str, debian_package: str) -> str:
    """Return the absolute path of ``name`` on ``PATH`` or raise naming the Debian package.

    Why: the peers are real programs (distribution, skopeo, htpasswd). If one is missing the
    suite must fail loudly with the fix, not skip silently.
    """
    path = shutil.which(name)
    if path is None:
        raise PeerUnavailableError(
            f"{name!r} was not found on PATH: install the Debian package {debian_package!r} "
            f"(apt-get install {debian_package})"
        )
    return path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    Why: programs like ``docker-registry`` cannot be told to pick a port and report it, so we pick
    one for them. The small race with other processes is handled by the callers retrying.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a text file (empty if it does not exist yet).

    Why: a peer's log is the first thing one needs when a test against it fails, and the tail is
    what fits in a failure report.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
