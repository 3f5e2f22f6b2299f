"""A real CNCF distribution registry (Debian ``docker-registry``, 2.8) on a loopback port.

Why a real registry: the handshake's correctness is defined by what registries actually do —
which challenge they send, how strictly they check a token's signature, audience, expiry and
access — and no hand-written fake stays honest about that. Distribution is the reference
implementation behind Docker Hub, GHCR-era clients and Harbor, and Debian packages it.

Three modes:

* no auth (``auth=None``) — for bulk seeding and transport benchmarks;
* ``Htpasswd(users)`` — HTTP Basic against a bcrypt htpasswd file;
* ``TokenAuth(realm, service, issuer, rootcertbundle)`` — Bearer tokens from an external issuer
  (ours: ``peers.token_issuer.TokenIssuer``), verified against a certificate bundle.

Usage::

    with RegistryServer(tmp_path, auth=Htpasswd({"alice": "secret"})) as registry:
        httpx.get(f"{registry.url}/v2/", auth=("alice", "secret"))

The process is started in its own session, killed on exit from the ``with`` block (also when the
block raises), and — when started from the main thread — also receives SIGKILL if the Python
process dies, via ``setpriv --pdeathsig``. Its output goes to ``registry.log_path``; failures
include the tail of that log.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx

from ._tools import PeerError, PeerUnavailableError, free_port, require_tool, stop_process, tail

__all__ = ["Htpasswd", "RegistryServer", "TokenAuth", "write_htpasswd"]


@dataclass(frozen=True)
class Htpasswd:
    """HTTP Basic auth for the registry from a bcrypt htpasswd file.

    ``rounds`` is the bcrypt cost. It is low (4, the minimum) on purpose: distribution checks the
    password with bcrypt on *every* request, so a realistic cost would make benchmarks measure
    bcrypt instead of HTTP. ``tool`` picks how the file is written: the ``bcrypt`` PyPI package or
    ``htpasswd -B`` from Debian ``apache2-utils`` (both give ``$2?$`` hashes distribution accepts).
    """

    users: Mapping[str, str] = field(repr=False)
    realm: str = "asyncauth-test-basic"
    rounds: int = 4
    tool: Literal["bcrypt", "htpasswd"] = "bcrypt"


@dataclass(frozen=True)
class TokenAuth:
    """Token auth settings (``auth.token`` in distribution's configuration).

    ``rootcertbundle`` is a PEM file with the certificate(s) of the key(s) that sign tokens;
    distribution 2.8 accepts only certificates here, and trusts a token whose header ``kid`` is
    the libtrust fingerprint of one of their public keys.
    """

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path


def write_htpasswd(path: Path, spec: Htpasswd) -> Path:
    """Write an htpasswd file with bcrypt hashes for ``spec.users`` and return its path.

    Why not plaintext or MD5: distribution accepts only bcrypt entries, which is also what real
    deployments use.
    """
    lines: list[str] = []
    if spec.tool == "bcrypt":
        try:
            import bcrypt
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise PeerUnavailableError(
                "the 'bcrypt' PyPI package is needed to write an htpasswd file "
                "(pip install bcrypt), or use Htpasswd(..., tool='htpasswd')"
            ) from exc
        for user, password in spec.users.items():
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=spec.rounds))
            lines.append(f"{user}:{hashed.decode()}")
    else:
        tool = require_tool("htpasswd")
        for user, password in spec.users.items():
            # -i reads the password from stdin, so it never shows up in the process list.
            done = subprocess.run(
                [tool, "-n", "-i", "-B", "-C", str(spec.rounds), user],
                input=password,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if done.returncode != 0:
                raise PeerError(f"htpasswd failed for user {user!r}: {done.stderr.strip()}")
            lines.append(done.stdout.strip())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class RegistryServer:
    """Run ``docker-registry serve`` on ``127.0.0.1:<free port>`` with storage in ``workdir``.

    Attributes once started: ``url`` (``http://127.0.0.1:PORT``), ``host`` (``127.0.0.1:PORT``,
    what goes into image references), ``port``, ``log_path``, ``config_path``, ``storage_path``,
    ``auth``, ``pid``.

    ``start()`` returns only once ``GET /v2/`` answers (200 or 401), or raises ``PeerError`` with
    the log tail after ``startup_timeout`` seconds. ``access_log=False`` silences distribution's
    per-request access log (useful for benchmarks); the application log stays on. ``binary``
    is the path of another distribution binary; by default the listed ``docker-registry``.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        auth: Htpasswd | TokenAuth | None = None,
        startup_timeout: float = 15.0,
        access_log: bool = True,
        log_level: Literal["debug", "info", "warn", "error"] = "info",
        binary: str | None = None,
        extra_config: Mapping[str, Any] | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.tls = tls  # (certificate chain PEM, key PEM): serve https
        self.auth = auth
        self.startup_timeout = startup_timeout
        self.access_log = access_log
        self.log_level = log_level
        self.binary = binary
        self.extra_config = dict(extra_config or {})
        self.storage_path = self.workdir / "storage"
        self.config_path = self.workdir / "config.yml"
        self.log_path = self.workdir / "registry.log"
        self.htpasswd_path = self.workdir / "htpasswd"
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    # -- properties ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The loopback port; only valid while the registry runs."""
        if self._port is None:
            raise PeerError("the registry is not running")
        return self._port

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry part of image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://`` with ``tls``), the base URL for ``/v2/``."""
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def pid(self) -> int | None:
        """The registry's process id, or ``None`` when not running."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """Whether the registry process is alive."""
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the registry's log, for failure reports."""
        return tail(self.log_path, lines)

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Write the configuration, start the process and wait until ``/v2/`` answers.

        A port taken between choosing it and binding it is retried with another port (three
        attempts); any other early exit raises with the log tail.
        """
        if self._process is not None:
            raise PeerError("the registry is already running")
        binary = self.binary or require_tool("docker-registry")
        if not Path(binary).is_file():
            raise PeerUnavailableError(f"the registry binary {binary} does not exist")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_path.mkdir(exist_ok=True)
        if isinstance(self.auth, Htpasswd):
            write_htpasswd(self.htpasswd_path, self.auth)
        if isinstance(self.auth, TokenAuth) and not Path(self.auth.rootcertbundle).is_file():
            raise PeerError(f"rootcertbundle {self.auth.rootcertbundle} does not exist")
        last_error: PeerError | None = None
        for _attempt in range(3):
            port = free_port()
            self.config_path.write_text(json.dumps(self._config(port), indent=2), encoding="utf-8")
            self._spawn(binary)
            self._port = port
            try:
                self._wait_ready()
            except _PortInUseError as exc:
                self._reap()
                last_error = exc
                continue
            except BaseException:
                self.stop()
                raise
            return self
        raise PeerError(f"could not bind a free port after 3 attempts: {last_error}")

    def restart(self) -> Self:
        """Stop and start again on the same port and storage, rereading the configuration's
        files (a rotated ``rootcertbundle``): clients keep their URLs, and so their caches' keys.
        """
        port = self.port
        self._reap()
        self.config_path.write_text(json.dumps(self._config(port), indent=2), encoding="utf-8")
        self._spawn(self.binary or require_tool("docker-registry"))
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the registry (SIGTERM, then SIGKILL after 5 s) and wait for it.

        Idempotent, so it is safe in ``finally`` blocks and fixture teardowns.
        """
        self._reap()
        self._port = None

    def _reap(self) -> None:
        process, self._process = self._process, None
        stop_process(process)

    def _spawn(self, binary: str) -> None:
        argv = [binary, "serve", str(self.config_path)]
        setpriv = shutil.which("setpriv")
        # PR_SET_PDEATHSIG fires when the *thread* that forked exits; from the main thread that
        # is the Python process itself, so a crashed or killed test run leaves no registry.
        if setpriv is not None and threading.current_thread() is threading.main_thread():
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        with self.log_path.open("ab") as log:
            log.write(f"--- starting {' '.join(argv)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.url}/v2/"
        # Readiness only: the certificate is what the tests themselves check.
        with httpx.Client(timeout=1.0, trust_env=False, verify=False) as client:  # noqa: S501
            while True:
                code = self._process.poll()
                if code is not None:
                    log = self.log_tail()
                    if "address already in use" in log:
                        raise _PortInUseError(f"port {self._port} was taken")
                    raise PeerError(
                        f"docker-registry exited with status {code} during startup; "
                        f"log tail ({self.log_path}):\n{log}"
                    )
                try:
                    response = client.get(url)
                except httpx.TransportError:
                    pass
                else:
                    if response.status_code in (200, 401):
                        return
                if time.monotonic() > deadline:
                    raise PeerError(
                        f"docker-registry did not answer {url} within {self.startup_timeout} s; "
                        f"log tail ({self.log_path}):\n{self.log_tail()}"
                    )
                time.sleep(0.02)

    def _config(self, port: int) -> dict[str, Any]:
        """Distribution's configuration. JSON is valid YAML, so no YAML library is needed."""
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {
                "level": self.log_level,
                "formatter": "text",
                "accesslog": {"disabled": not self.access_log},
                "fields": {"service": "registry"},
            },
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_path)},
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "inmemory"},
                # No background goroutine sweeping uploads while a test is mid-push.
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": f"127.0.0.1:{port}",
                # A fixed secret silences the "no HTTP secret" warning and keeps upload state
                # valid across a restart on the same storage.
                "secret": secrets.token_hex(16),
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
            "health": {"storagedriver": {"enabled": False}},
        }
        if isinstance(self.auth, Htpasswd):
            config["auth"] = {
                "htpasswd": {"realm": self.auth.realm, "path": str(self.htpasswd_path)}
            }
        elif isinstance(self.auth, TokenAuth):
            config["auth"] = {
                "token": {
                    "realm": self.auth.realm,
                    "service": self.auth.service,
                    "issuer": self.auth.issuer,
                    "rootcertbundle": str(self.auth.rootcertbundle),
                }
            }
        if self.tls is not None:
            certificate, key = self.tls
            config["http"]["tls"] = {"certificate": str(certificate), "key": str(key)}
        _deep_update(config, self.extra_config)
        return config

    def __repr__(self) -> str:
        mode = type(self.auth).__name__ if self.auth is not None else "no auth"
        where = self.url if self._port is not None else "stopped"
        return f"<RegistryServer {mode} {where}>"


class _PortInUseError(PeerError):
    """The port chosen for the registry was taken before it could bind it."""


def _deep_update(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value
