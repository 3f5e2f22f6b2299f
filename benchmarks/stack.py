"""The peers every pipeline benchmark talks to, all on 127.0.0.1, all stopped on the way out.

* the strict test token issuer (``tests/peers/token_issuer.py``) in a process of its own
  (``benchmarks/_issuer.py``), so that signing JWTs does not compete with the client under test
  for the benchmark's GIL; it counts token requests;
* the real Debian ``docker-registry`` (distribution 2.8) in token mode, trusting that issuer,
  with its access log off and its application log at ``warn`` (at ``info`` it logs every
  request, which would make the registry measure its logger);
* ``R`` repositories seeded with one small OCI image (``tests/peers/images.seed_repositories``);
* one pull token per repository, fetched from the issuer the way a client would (GET with
  Basic), for the static-header floors and the limit; the issuer's counters are reset after.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests/ is part of the repository, not of the package
    sys.path.insert(0, str(ROOT))

from tests.peers import RegistryServer, TokenAuth, build_oci_layout, seed_repositories  # noqa: E402

__all__ = ["IssuerProcess", "Stack", "running_stack"]

TAG = "v1"
USER = "bench"


class IssuerProcess:
    """``tests/peers/token_issuer.TokenIssuer`` in a subprocess (see ``benchmarks/_issuer.py``)."""

    def __init__(
        self, workdir: Path, users: dict[str, str], *, policy: dict[str, Any] | None = None
    ) -> None:
        self.workdir = workdir
        self._users = users
        self._policy = policy or {}
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self.hello: dict[str, str] = {}

    def start(self) -> IssuerProcess:
        argv = [sys.executable, "-m", "benchmarks._issuer"]
        setpriv = shutil.which("setpriv")
        if setpriv is not None and threading.current_thread() is threading.main_thread():
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]  # dies with us, whatever happens
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(self.workdir / "issuer.log").open("ab"),
            text=True,
            cwd=ROOT,
            start_new_session=True,
        )
        self._send({"workdir": str(self.workdir), "users": self._users, "policy": self._policy})
        self.hello = self._receive()
        return self

    def _send(self, value: Any) -> None:
        assert self._process is not None
        assert self._process.stdin is not None
        self._process.stdin.write((value if isinstance(value, str) else json.dumps(value)) + "\n")
        self._process.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        assert self._process is not None
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            log = (self.workdir / "issuer.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the token issuer process exited; its log:\n{log}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stats(self) -> dict[str, int]:
        """``total``, ``scopes``, ``max_per_scope``, ``gets``, ``posts``, ``unauthorized``,
        ``errors`` since the last reset."""
        with self._lock:
            self._send("stats")
            return {k: int(v) for k, v in self._receive().items()}

    def reset(self) -> None:
        with self._lock:
            self._send("reset")
            self._receive()

    def registry_auth(self) -> TokenAuth:
        return TokenAuth(
            realm=self.hello["realm"],
            service=self.hello["service"],
            issuer=self.hello["issuer"],
            rootcertbundle=Path(self.hello["rootcertbundle"]),
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            assert process.stdin is not None
            process.stdin.close()  # end of input: the issuer stops by itself
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


@dataclass
class Stack:
    """What a benchmark run needs to know about the running peers."""

    workdir: Path
    registry: RegistryServer
    issuer: IssuerProcess
    username: str
    password: str = field(repr=False)
    repositories: list[str]
    tokens: dict[str, str] = field(repr=False)
    manifest_digest: str

    @property
    def registry_url(self) -> str:
        return self.registry.url

    def job_base(self) -> dict[str, Any]:
        """What every worker job gets (tokens go through a file, not the command line)."""
        tokens_file = self.workdir / "tokens.json"
        if not tokens_file.exists():
            tokens_file.write_text(json.dumps(self.tokens))
            tokens_file.chmod(0o600)
        return {
            "registry_url": self.registry_url,
            "registry_host": self.registry.host,
            "repositories": self.repositories,
            "tag": TAG,
            "digest": self.manifest_digest,
            "username": self.username,
            "password": self.password,
            "tokens_file": str(tokens_file),
            "workdir": str(self.workdir),
        }


def _pull_tokens(realm: str, service: str, auth: tuple[str, str], names: list[str]) -> dict:
    """One pull token per repository from the issuer, the way a client asks (GET + Basic)."""
    tokens: dict[str, str] = {}
    with httpx.Client(auth=auth, timeout=30.0, trust_env=False) as client:
        for name in names:
            answer = client.get(
                realm, params={"service": service, "scope": f"repository:{name}:pull"}
            )
            answer.raise_for_status()
            tokens[name] = answer.json()["token"]
    return tokens


@contextlib.contextmanager
def running_stack(repositories: int) -> Iterator[Stack]:
    """Start the issuer and the registry, seed ``repositories`` repositories; stop everything
    (also on errors and Ctrl-C) and remove the work directory on the way out."""
    workdir = Path(tempfile.mkdtemp(prefix="asyncauth-bench-"))
    password = secrets.token_urlsafe(16)
    issuer = IssuerProcess(workdir / "issuer", {USER: password})
    registry: RegistryServer | None = None
    try:
        issuer.start()
        registry = RegistryServer(
            workdir / "registry",
            auth=issuer.registry_auth(),
            access_log=False,
            log_level="warn",
        )
        registry.start()
        names = [f"bench/repo-{i:03d}" for i in range(repositories)]
        image = build_oci_layout(workdir / "layout", tag=TAG)
        realm, service = issuer.hello["realm"], issuer.hello["service"]
        with httpx.Client(auth=(USER, password), timeout=30.0, trust_env=False) as client:
            push = client.get(
                realm,
                params={"service": service, "scope": [f"repository:{n}:pull,push" for n in names]},
            )
            push.raise_for_status()
        writer = push.json()["token"]
        seed_repositories(
            registry.url, image, names, headers={"Authorization": f"Bearer {writer}"}, mount=True
        )
        tokens = _pull_tokens(realm, service, (USER, password), names)
        issuer.reset()
        yield Stack(
            workdir=workdir,
            registry=registry,
            issuer=issuer,
            username=USER,
            password=password,
            repositories=names,
            tokens=tokens,
            manifest_digest=image.manifest_digest,
        )
    finally:
        if registry is not None:
            registry.stop()
        issuer.stop()
        shutil.rmtree(workdir, ignore_errors=True)
