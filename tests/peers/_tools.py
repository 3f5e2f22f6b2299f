"""Small helpers shared by the peers: locating tools, free ports, log tails.

They live apart so that every peer fails the same way when the machine lacks something: a
``PeerUnavailableError`` naming the Debian (or PyPI) package to install. A missing tool must never
turn into a skipped test, because a skip would hide a gap in the proof that the library works
against real components.

Every program a test runs is looked up through :func:`require_tool`, which accepts only the
programs ``system-packages.txt`` lists (the file ``.ci/run`` and ``nox`` install from). A
program installed by hand on one machine but missing from the list is refused on every machine,
so the gap shows up on the developer's machine instead of on the first fresh one.
"""

from __future__ import annotations

import functools
import re
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

SYSTEM_PACKAGES = Path(__file__).resolve().parents[2] / "system-packages.txt"
"""The project's one list of Debian packages (read by ``.ci/run`` and ``noxfile.py`` too)."""
USES = ("tests", "bench")
_DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")


class PeerError(RuntimeError):
    """A test peer failed to start, stop or do what was asked of it."""


class PeerUnavailableError(PeerError):
    """A tool or package a test peer needs is not installed; the message says which one."""


class ToolNotListedError(PeerError):
    """A test asked for a program that no install step brings: it is not in the list.

    Not a :class:`PeerUnavailableError`: the machine is not at fault, the suite is, and no
    caller may treat this as "not installed here".
    """


@dataclass(frozen=True)
class SystemTool:
    """One line of ``system-packages.txt``."""

    program: str
    package: str
    use: str
    purpose: str


def read_system_packages(path: Path = SYSTEM_PACKAGES) -> dict[str, SystemTool]:
    """The list's programs by name; a malformed line raises ``PeerError`` naming file and line.

    Why strict: ``.ci/run`` reads the same file with ``awk``, so a line that parses loosely here
    could silently install nothing there.
    """
    tools: dict[str, SystemTool] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(maxsplit=3)
        where = f"{path}:{number}"
        if len(fields) < 4:
            raise PeerError(f"{where}: expected 'program package use purpose', got {line!r}")
        program, package, use, purpose = fields
        if use not in USES:
            raise PeerError(f"{where}: the third column must be one of {USES}, not {use!r}")
        if not _DEBIAN_PACKAGE.fullmatch(package):
            raise PeerError(f"{where}: {package!r} is not a Debian package name")
        if program in tools:
            raise PeerError(f"{where}: {program!r} is listed twice")
        tools[program] = SystemTool(program, package, use, purpose)
    return tools


@functools.cache
def _listed() -> dict[str, SystemTool]:
    return read_system_packages()


def require_tool(name: str, *, bench: bool = False) -> str:
    """Return the absolute path of the listed program ``name``, or raise naming its package.

    Why through the list: the Debian package comes from ``system-packages.txt``, the file the
    install steps read, so a test can only need what CI installs. ``bench=True`` also accepts
    the rows only ``nox -s bench`` installs; tests never pass it.
    """
    listed = _listed().get(name)
    if listed is None or (listed.use == "bench" and not bench):
        why = "is not listed" if listed is None else "is listed for the benchmarks only"
        raise ToolNotListedError(
            f"{name!r} {why} in {SYSTEM_PACKAGES}: add a line '{name} <debian-package> tests "
            "<purpose>' there, so that .ci/run and nox install it on every machine"
        )
    path = shutil.which(name)
    if path is None:
        raise PeerUnavailableError(
            f"{name!r} was not found on PATH: install the Debian package {listed.package!r} "
            f"(apt-get install {listed.package})"
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


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, five seconds to go, then SIGKILL; always reaped (a stopped peer is continued
    first, so that it can act on the signal)."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGCONT)
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
