"""Real Redis for the fleet tests: ``redis-server`` (single, TLS, or a three-node Cluster).

Why real: the fleet store's promises (leases that expire, values that expire with the token,
one token request across processes, survival of a server that is killed, paused, restarted or
flushed, and Cluster) are promises about a Redis server, and only a Redis server can keep them
or break them. Everything binds 127.0.0.1, keeps no data on disk, and dies with the test run
(``setpriv --pdeathsig``). ``redis-cli`` reads what the server holds, so that a test can look for
secrets in it with a tool that knows nothing of asyncauth.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from ._tools import PeerError, free_port, require_tool, stop_process, tail
from .tls import PrivateCA

__all__ = ["RedisCluster", "RedisServer"]


class RedisServer:
    """One ``redis-server`` on loopback; ``url`` is what a ``RedisTokenStore`` is given.

    ``tls``: serve TLS only, with the private CA's server certificate (``rediss://``).
    ``cluster``: start in cluster mode (see :class:`RedisCluster`).
    """

    def __init__(
        self, workdir: Path, *, tls: PrivateCA | None = None, cluster: bool = False
    ) -> None:
        self.workdir = Path(workdir)
        self.tls = tls
        self.cluster = cluster
        self.port = free_port()
        self.bus_port = free_port()  # the cluster bus (default: port + 10000, maybe taken)
        self.log_path = self.workdir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, tls={self.tls is not None})"

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise PeerError("redis-server is not running")
        return self._process.pid

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _argv(self) -> list[str]:
        argv = [require_tool("redis-server"), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(self.workdir), "--logfile", ""]
        if self.tls is None:
            argv += ["--port", str(self.port)]
        else:
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            argv += ["--tls-cert-file", str(self.tls.server_certificate)]
            argv += ["--tls-key-file", str(self.tls.server_key)]
            argv += ["--tls-ca-cert-file", str(self.tls.ca_certificate)]
        if self.cluster:
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            argv += ["--cluster-node-timeout", "2000", "--cluster-port", str(self.bus_port)]
        return argv

    def start(self) -> Self:
        """Start the server (again, on the same port, after :meth:`kill`) and wait for PING."""
        if self._process is not None and self._process.poll() is None:
            raise PeerError("redis-server is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = self._argv()
        setpriv = shutil.which("setpriv")
        if setpriv is not None and threading.current_thread() is threading.main_thread():
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.workdir, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while self.cli("PING", check=False).strip() != b"PONG":
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise PeerError(f"redis-server did not start; log:\n{tail(self.log_path)}")
            time.sleep(0.05)
        return self

    def cli(self, *args: str, check: bool = True, last: bytes | None = None) -> bytes:
        """``redis-cli`` against this server; its raw output. ``last``: a last argument given
        on stdin (``-x``), for bytes that cannot be in a command line."""
        argv = [require_tool("redis-cli"), "-h", "127.0.0.1", "-p", str(self.port), "--raw"]
        if self.tls is not None:
            argv += ["--tls", "--cacert", str(self.tls.ca_certificate)]
        if last is not None:
            argv.append("-x")
        done = subprocess.run(
            [*argv, *args], input=last, capture_output=True, timeout=20, check=False
        )
        if check and done.returncode != 0:
            raise PeerError(f"redis-cli {args[:1]} failed: {done.stderr.decode()[-500:]}")
        return done.stdout

    def contents(self) -> bytes:
        """Every key and value the server holds, concatenated: what a reader of Redis sees."""
        keys = [k for k in self.cli("--scan").split(b"\n") if k]
        parts = []
        for key in keys:
            parts += [key, self.cli("GET", key.decode())]
        return b"\n".join(parts)

    def keys(self, pattern: str = "*") -> list[str]:
        return [k.decode() for k in self.cli("--scan", "--pattern", pattern).split(b"\n") if k]

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel, nothing is answered."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as a crash would; :meth:`start` brings it back (empty) on the same port."""
        process, self._process = self._process, None
        if process is not None:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait(timeout=10)

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_process(process)


class RedisCluster:
    """Three ``redis-server --cluster-enabled yes`` nodes joined by ``redis-cli --cluster
    create`` (no replicas): the smallest real Redis Cluster."""

    def __init__(self, workdir: Path) -> None:
        self.nodes = [RedisServer(Path(workdir) / f"node-{i}", cluster=True) for i in range(3)]

    def __repr__(self) -> str:
        return f"RedisCluster(ports={[node.port for node in self.nodes]})"

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def __enter__(self) -> Self:
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            self.nodes[0].cli("--cluster", "create", *addresses, "--cluster-replicas", "0",
                              "--cluster-yes")  # fmt: skip
            self._wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            states = [node.cli("CLUSTER", "INFO", check=False) for node in self.nodes]
            if all(b"cluster_state:ok" in state for state in states):
                return
            if time.monotonic() > deadline:
                raise PeerError(f"the cluster did not become ok: {states[0][:300]!r}")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def contents(self) -> bytes:
        return b"\n".join(node.contents() for node in self.nodes)

    def keys(self, pattern: str = "*") -> list[str]:
        return [key for node in self.nodes for key in node.keys(pattern)]
