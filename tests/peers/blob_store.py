"""A strict read-only object store on loopback: where a registry redirects blob downloads.

Why: registries rarely serve blobs themselves; they answer ``GET /v2/<name>/blobs/<digest>``
with a redirect to object storage (S3, GCS, a CDN), and a client must follow it with a clean
``GET``. Distribution does the same with its ``redirect`` storage middleware, which points
each blob at ``<baseurl>/<path in the storage driver>``; this store serves the registry's
storage directory under that path. No object store runs here, so this is a stand-in, and a
strict one: a ``GET``/``HEAD`` that carries a body (``Transfer-Encoding`` or a non-zero
``Content-Length``) is refused with 400, as object stores refuse malformed reads, and every
request is recorded (method, path, headers) so that tests can check what reached it.

Usage::

    with BlobStore(registry_storage_dir) as store:
        RegistryServer(..., extra_config=store.registry_redirect())
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ["BlobStore", "StoreRequest"]


@dataclass(frozen=True)
class StoreRequest:
    method: str
    path: str
    headers: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the store records requests itself."""

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _refuse(self, status: int, reason: str) -> None:
        data = reason.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.close_connection = True

    def _serve(self, *, body: bool) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.record(StoreRequest(self.command, self.path, headers))
        if "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
            self._refuse(400, f"a {self.command} must not carry a body")
            return
        root = self.server.root.resolve()
        target = (root / self.path.split("?", 1)[0].lstrip("/")).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            self._refuse(404, "no such object")
            return
        data = target.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.requests: list[StoreRequest] = []
        self._lock = threading.Lock()

    def record(self, request: StoreRequest) -> None:
        with self._lock:
            self.requests.append(request)


class BlobStore:
    """Serves ``root`` read-only on ``127.0.0.1:<free port>`` in a background thread."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the store is not running"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[StoreRequest]:
        assert self._server is not None, "the store is not running"
        with self._server._lock:
            return list(self._server.requests)

    def registry_redirect(self) -> dict[str, Any]:
        """Distribution configuration that redirects blob reads here (``extra_config=``)."""
        return {
            "storage": {"redirect": {"disable": False}},
            "middleware": {"storage": [{"name": "redirect", "options": {"baseurl": self.url}}]},
        }

    def __enter__(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        self._server = _Server(self.root)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None
