"""A real forward proxy (Debian ``tinyproxy``) on a loopback port, with its request log.

Why a real proxy: whether a client honours ``HTTP_PROXY``/``NO_PROXY`` is only proven when the
requests arrive at a proxy that forwards them (absolute-form ``GET http://…`` for http,
``CONNECT host:port`` for https), and tinyproxy logs each one before forwarding it, so a test
can read which requests went through it and which did not.

Usage::

    with ForwardProxy(tmp_path) as proxy:
        mark = proxy.mark()
        httpx.get("http://127.0.0.1:5000/v2/", proxy=proxy.url)
        assert proxy.requests_since(mark) == ["GET http://127.0.0.1:5000/v2/"]

``basic_auth=(user, password)`` makes tinyproxy demand proxy credentials (407 without them).
The process runs in the foreground (``-d``) in its own session, is killed on exit from the
``with`` block, and receives SIGKILL if the Python process dies (``setpriv --pdeathsig``).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from ._tools import PeerError, free_port, require_tool, stop_process, tail

__all__ = ["ForwardProxy"]


# "CONNECT   Nov 30 05:04:57.012 [14041]: Request (file descriptor 5): GET http://h:1/ HTTP/1.1"
_REQUEST_LINE = re.compile(r"Request \(file descriptor \d+\): (\S+) (\S+) HTTP/\d\.\d")


class ForwardProxy:
    """``tinyproxy`` listening on ``127.0.0.1:<free port>``, accepting clients from 127.0.0.1.

    Attributes once started: ``url`` (``http://127.0.0.1:PORT``), ``port``, ``log_path``,
    ``config_path``. ``start()`` returns once the port accepts connections.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        basic_auth: tuple[str, str] | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.basic_auth = basic_auth
        self.startup_timeout = startup_timeout
        self.config_path = self.workdir / "tinyproxy.conf"
        self.log_path = self.workdir / "tinyproxy.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise PeerError("the proxy is not running")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, what ``HTTP_PROXY``/``proxy=`` point at."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """tinyproxy's process id, or ``None`` when not running."""
        return None if self._process is None else self._process.pid

    def url_with_credentials(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    # -- the log --------------------------------------------------------------------------------

    def _lines(self) -> list[str]:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def mark(self) -> int:
        """A position in the log: :meth:`requests_since` counts from there."""
        return len(self._lines())

    def requests_since(self, mark: int = 0) -> list[str]:
        """``"METHOD target"`` for each request the proxy received after ``mark``, in order
        (``"GET http://127.0.0.1:5000/v2/"``, ``"CONNECT 127.0.0.1:5443"``)."""
        found = (_REQUEST_LINE.search(line) for line in self._lines()[mark:])
        return [f"{m.group(1)} {m.group(2)}" for m in found if m is not None]

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Write the configuration and start tinyproxy; a port taken meanwhile is retried."""
        if self._process is not None:
            raise PeerError("the proxy is already running")
        binary = require_tool("tinyproxy")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            port = free_port()
            self.config_path.write_text(self._config(port), encoding="utf-8")
            self._spawn(binary)
            self._port = port
            if self._wait_ready():
                return self
            self._reap()
        raise PeerError(f"tinyproxy did not start; log tail ({self.log_path}):\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate tinyproxy (SIGTERM, then SIGKILL after 5 s); idempotent."""
        self._reap()
        self._port = None

    def _config(self, port: int) -> str:
        lines = [
            f"Port {port}",
            "Listen 127.0.0.1",
            "Allow 127.0.0.1",
            f'LogFile "{self.log_path}"',
            "LogLevel Info",
            "Timeout 60",
            "MaxClients 200",
            "DisableViaHeader Yes",
        ]
        if self.basic_auth is not None:
            lines.append(f"BasicAuth {self.basic_auth[0]} {self.basic_auth[1]}")
        return "\n".join(lines) + "\n"

    def _spawn(self, binary: str) -> None:
        # -d: stay in the foreground, so that this object owns the process and can reap it.
        argv = [binary, "-d", "-c", str(self.config_path)]
        setpriv = shutil.which("setpriv")
        if setpriv is not None and threading.current_thread() is threading.main_thread():
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        with (self.workdir / "tinyproxy.out").open("ab") as out:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_ready(self) -> bool:
        """True once the port accepts connections; False if tinyproxy exited (port taken)."""
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return True
            except OSError:
                time.sleep(0.02)
        raise PeerError(
            f"tinyproxy did not listen on {self.port} within {self.startup_timeout} s; "
            f"log tail ({self.log_path}):\n{self.log_tail()}"
        )

    def _reap(self) -> None:
        process, self._process = self._process, None
        stop_process(process)

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "stopped"
        return f"<ForwardProxy tinyproxy {where}>"
