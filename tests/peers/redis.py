"""Real Redis for the fleet tests: ``redis-server`` (single, TLS, a Cluster with or without
replicas) and ``redis-sentinel`` (a master, a replica and three sentinels).

Why real: the fleet store's promises (leases that expire, values that expire with the token,
one token request across processes, survival of a server that is killed, paused, restarted or
flushed, and Cluster) are promises about a Redis server, and only a Redis server can keep them
or break them. Everything binds 127.0.0.1, keeps no data on disk, and dies with the test run
(``setpriv --pdeathsig``). Failovers are real too: a test kills a master (SIGKILL) and the
sentinels, or the cluster's replicas, promote a replica as they would in production.
``redis-cli`` reads what the server holds, so that a test can look for secrets in it with a tool
that knows nothing of asyncauth.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

from ._tools import PeerError, free_port, require_tool, stop_process, tail
from .tls import PrivateCA

__all__ = ["RedisCluster", "RedisSentinels", "RedisServer"]


class RedisServer:
    """One ``redis-server`` on loopback; ``url`` is what a ``RedisTokenStore`` is given.

    ``tls``: serve TLS only, with the private CA's server certificate (``rediss://``).
    ``cluster``: start in cluster mode (see :class:`RedisCluster`).
    ``extra``: more ``redis-server`` arguments (``--replicaof``, ``--requirepass``...).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        tls: PrivateCA | None = None,
        cluster: bool = False,
        extra: Sequence[str] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.tls = tls
        self.cluster = cluster
        self.extra = list(extra)
        self.port = free_port()
        self.bus_port = free_port()  # the cluster bus (default: port + 10000, maybe taken)
        self.log_path = self.workdir / "redis.log"
        required = self.extra.index("--requirepass") + 1 if "--requirepass" in self.extra else 0
        self.password: str | None = self.extra[required] if required else None
        """What :meth:`cli` authenticates with: the ``--requirepass`` in ``extra``."""
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, tls={self.tls is not None})"

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

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
        return argv + self.extra

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
        if self.password is not None:
            argv += ["--no-auth-warning", "-a", self.password]
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


def _wait(what: str, ready: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``ready`` until it holds; a ``PeerError`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise PeerError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.1)


def _replicating(server: RedisServer) -> bool:
    return b"master_link_status:up" in server.cli("INFO", "replication", check=False)


def _role(server: RedisServer) -> str:
    if not server.running:
        return "dead"
    return server.cli("ROLE", check=False).split(b"\n", 1)[0].decode().strip()


class RedisCluster:
    """``redis-server --cluster-enabled yes`` nodes joined by ``redis-cli --cluster create``:
    three masters, each with ``replicas`` replicas (0: the smallest real Redis Cluster).

    With replicas, :meth:`kill_master` and :meth:`wait_failover` play a master's crash and its
    replica's promotion (``cluster-node-timeout`` is 2 s).
    """

    def __init__(self, workdir: Path, *, replicas: int = 0) -> None:
        self.replicas = replicas
        count = 3 * (1 + replicas)
        self.nodes = [RedisServer(Path(workdir) / f"node-{i}", cluster=True) for i in range(count)]

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
            self.nodes[0].cli("--cluster", "create", *addresses, "--cluster-replicas",
                              str(self.replicas), "--cluster-yes")  # fmt: skip
            self._wait_ok()
            replicas = [node for node in self.nodes if _role(node) == "slave"]
            if len(replicas) != 3 * self.replicas:
                raise PeerError(f"{len(replicas)} replicas, not {3 * self.replicas}")
            _wait("the cluster's replicas' sync", lambda: all(map(_replicating, replicas)))
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ok(self) -> None:
        def ok() -> bool:
            live = [node for node in self.nodes if node.running]
            states = [node.cli("CLUSTER", "INFO", check=False) for node in live]
            return all(b"cluster_state:ok" in state for state in states)

        _wait("cluster_state:ok on every live node", ok)

    def masters(self) -> list[RedisServer]:
        """The live nodes that are masters now."""
        return [node for node in self.nodes if _role(node) == "master"]

    def kill_master(self) -> RedisServer:
        """SIGKILL one master (the first): its slots are unserved until a replica takes over."""
        master = self.masters()[0]
        master.kill()
        return master

    def wait_failover(self) -> None:
        """Until three masters serve every slot again (a replica was promoted)."""
        _wait("a replica's promotion", lambda: len(self.masters()) == 3)
        self._wait_ok()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def contents(self) -> bytes:
        return b"\n".join(node.contents() for node in self.masters())

    def keys(self, pattern: str = "*") -> list[str]:
        return [key for node in self.masters() for key in node.keys(pattern)]


class Sentinel(RedisServer):
    """One ``redis-sentinel`` watching ``master`` as ``service`` (its config file is its own:
    sentinels rewrite it with what they learn)."""

    def __init__(self, workdir: Path, master: RedisServer, service: str, quorum: int) -> None:
        super().__init__(workdir, tls=master.tls)
        self.master = master
        self.service = service
        self.quorum = quorum

    def _argv(self) -> list[str]:
        config = self.workdir / "sentinel.conf"
        if not config.exists():
            lines = ["bind 127.0.0.1", f"dir {self.workdir}", "sentinel resolve-hostnames no"]
            lines += [f"port {self.port}"] if self.tls is None else self._tls_lines()
            service, master = self.service, self.master
            lines += [
                f"sentinel monitor {service} 127.0.0.1 {master.port} {self.quorum}",
                f"sentinel down-after-milliseconds {service} 1000",
                f"sentinel failover-timeout {service} 10000",
            ]
            if master.password is not None:
                lines.append(f"sentinel auth-pass {service} {master.password}")
            config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return [require_tool("redis-sentinel"), str(config), "--logfile", ""]

    def _tls_lines(self) -> list[str]:
        assert self.tls is not None
        return [
            "port 0",
            f"tls-port {self.port}",
            f"tls-cert-file {self.tls.server_certificate}",
            f"tls-key-file {self.tls.server_key}",
            f"tls-ca-cert-file {self.tls.ca_certificate}",
            "tls-auth-clients no",
            "tls-replication yes",
        ]

    def master_port(self) -> int | None:
        """The port of the master this sentinel names now (``None``: it cannot say)."""
        if not self.running:
            return None
        answer = self.cli("SENTINEL", "get-master-addr-by-name", self.service, check=False)
        lines = answer.split()
        return int(lines[1]) if len(lines) == 2 and lines[1].isdigit() else None

    def knows(self, replicas: int, sentinels: int) -> bool:
        """Whether this sentinel has found the replicas and the other sentinels."""
        found = [
            self.cli("SENTINEL", kind, self.service, check=False).count(b"\nflags\n")
            for kind in ("replicas", "sentinels")
        ]
        return found == [replicas, sentinels]


class RedisSentinels:
    """A master, a replica and three ``redis-sentinel`` processes (quorum 2) watching them as
    ``service``: the smallest real Sentinel deployment that can fail over (``sentinels=1``: one
    that cannot, for tests that need no failover).

    ``password``: the master and the replica require it (the sentinels do not: the URL's
    password is the servers', as in kombu and django-redis). ``tls``: everything serves TLS
    only, replication included (``rediss+sentinel://``).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        service: str = "fleet",
        password: str | None = None,
        tls: PrivateCA | None = None,
        sentinels: int = 3,
    ) -> None:
        workdir = Path(workdir)
        self.service = service
        self.password = password
        auth = [] if password is None else ["--requirepass", password, "--masterauth", password]
        tls_replication = [] if tls is None else ["--tls-replication", "yes"]
        self.master = RedisServer(workdir / "master", tls=tls, extra=auth + tls_replication)
        self.replica = RedisServer(workdir / "replica", tls=tls, extra=auth + tls_replication)
        self.replica.extra += ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.sentinels = [
            Sentinel(workdir / f"sentinel-{i}", self.master, service, min(2, sentinels))
            for i in range(sentinels)
        ]
        self.servers = {self.master.port: self.master, self.replica.port: self.replica}

    def __repr__(self) -> str:
        return f"RedisSentinels(sentinels={[s.port for s in self.sentinels]})"

    @property
    def url(self) -> str:
        scheme = "redis+sentinel" if self.master.tls is None else "rediss+sentinel"
        user = "" if self.password is None else f":{quote(self.password, safe='')}@"
        nodes = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"{scheme}://{user}{nodes}/{self.service}/0"

    def __enter__(self) -> Self:
        try:
            self.master.start()
            self.replica.start()
            _wait("the replica's sync", lambda: _replicating(self.replica))
            for sentinel in self.sentinels:
                sentinel.start()
            others = len(self.sentinels) - 1
            _wait(
                "the sentinels' discovery of the replica and of each other",
                lambda: all(sentinel.knows(1, others) for sentinel in self.sentinels),
            )
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def primary(self) -> RedisServer:
        """The server the sentinels name as master now."""
        ports = {sentinel.master_port() for sentinel in self.sentinels} - {None}
        if len(ports) != 1:
            raise PeerError(f"the sentinels disagree on the master: {ports}")
        return self.servers[ports.pop()]  # type: ignore[index]

    def kill_primary(self) -> RedisServer:
        """SIGKILL the master, as a crash would; the sentinels will promote the replica."""
        primary = self.primary()
        primary.kill()
        return primary

    def wait_failover(self, old: RedisServer) -> RedisServer:
        """Until every sentinel names a new master and that server says it is one."""

        def promoted() -> bool:
            ports = {sentinel.master_port() for sentinel in self.sentinels}
            if len(ports) != 1 or old.port in ports or None in ports:
                return False
            return _role(self.servers[ports.pop()]) == "master"  # type: ignore[index]

        _wait("the sentinels' failover", promoted)
        return self.primary()

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.master):
            server.stop()
