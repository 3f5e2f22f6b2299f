"""Starting and talking to a fleet of worker processes (``tests/_fleet_worker.py``)."""

from __future__ import annotations

import base64
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STORE_VARIABLES = ("ASYNCAUTH_TOKEN_STORE", "ASYNCAUTH_TOKEN_STORE_KEY")
MODES = ("asyncio", "trio", "sync", "asyncio", "trio", "sync", "asyncio", "trio")
"""The eight workers of a fleet: async clients on both event loops, and sync clients."""


def new_key() -> str:
    """A fleet's encryption key as ``ASYNCAUTH_TOKEN_STORE_KEY`` holds it."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def store_environ(url: str | None, key: str | None = None) -> dict[str, str]:
    """The process environment with the store variables set (or, with ``url=None``, unset)."""
    environ = {k: v for k, v in os.environ.items() if k not in STORE_VARIABLES}
    if url is not None:
        environ["ASYNCAUTH_TOKEN_STORE"] = url
        environ["ASYNCAUTH_TOKEN_STORE_KEY"] = key or new_key()
    return environ


class Worker:
    """One worker process; its JSON lines arrive on a queue (read by a thread)."""

    def __init__(self, spec: Mapping[str, Any], environ: Mapping[str, str]) -> None:
        self.spec = spec
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests._fleet_worker", json.dumps(spec)],
            cwd=ROOT,
            env=dict(environ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._errors: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._drain, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._errors.append(line)

    def next(self, timeout: float = 90.0) -> dict[str, Any]:
        """The worker's next JSON line; an ``AssertionError`` with its stderr if it has none."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            self.process.kill()
            stderr = "".join(self._errors[-30:])
            raise AssertionError(f"worker {self.spec.get('mode')} said nothing more:\n{stderr}")
        data: dict[str, Any] = json.loads(line)
        return data

    def go(self) -> None:
        """Let a worker waiting between phases go on."""
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def start_fleet(specs: Iterable[Mapping[str, Any]], environ: Mapping[str, str]) -> list[Worker]:
    return [Worker(spec, environ) for spec in specs]


def finish(workers: Sequence[Worker], timeout: float = 120.0) -> list[dict[str, Any]]:
    """Every worker's last line (``done``), then the processes reaped."""
    try:
        results = [worker.next(timeout) for worker in workers]
        assert all(result.get("done") for result in results), results
        return results
    finally:
        for worker in workers:
            worker.close()
