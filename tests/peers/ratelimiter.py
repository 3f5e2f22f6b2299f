"""A rate limiter in front of a real registry: the strict stand-in for Docker Hub's pull limit.

distribution (the Debian ``docker-registry``) has no rate limiter, so no real registry here can
answer 429 or report a limit. :class:`RateLimiter` forwards every request to a real
:class:`~tests.peers.registry.RegistryServer`, which checks tokens, scopes and digests as it
always does, and adds only what a registry's rate limiter does, as Docker Hub does it:

* manifest answers (GET and HEAD) carry ``ratelimit-limit: L;w=W``,
  ``ratelimit-remaining: R;w=W`` and ``docker-ratelimit-source: 127.0.0.1``; each manifest GET
  the registry answers 200 counts against the limit (Docker Hub counts pulls so);
* while throttled (:meth:`RateLimiter.throttle`), or once the limit is used up, every request is
  answered ``429`` with Docker Hub's error body (``TOOMANYREQUESTS``) and a ``Retry-After`` of
  the seconds left, rounded up (or ``retry_after`` as set), and never reaches the registry.

Strict about itself: it forwards the method, path, query, headers (but hop-by-hop ones) and
body as received, and the registry's answer as it came (but hop-by-hop headers). Every request
is recorded (:attr:`RateLimiter.seen`: when, method, path, status answered), thread-safely.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import httpx

from ._tools import PeerError

__all__ = ["RateLimiter", "Seen"]

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}
    | {"content-encoding"}
)
TOO_MANY = json.dumps(
    {
        "errors": [
            {
                "code": "TOOMANYREQUESTS",
                "message": "You have reached your pull rate limit.",
                "detail": "stand-in",
            }
        ]
    }
).encode()


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the limiter received it, and the status it was answered with."""

    at: float
    method: str
    path: str
    status: int


class RateLimiter:
    """A rate-limiting reverse proxy on 127.0.0.1 (a free port) in front of ``upstream``."""

    def __init__(self, upstream: str, *, limit: int = 100, window: int = 21600) -> None:
        self.upstream = upstream.rstrip("/")
        self.limit = limit
        self.window = window
        self.remaining = limit
        self.reports = True
        """Whether manifest answers carry the rate-limit headers (they still count down)."""
        self.retry_after: str | None = None
        """A fixed ``Retry-After`` for throttled answers; ``None``: the seconds left."""
        self.seen: list[Seen] = []
        self._throttled_until = 0.0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._client = httpx.Client(trust_env=False, timeout=30.0)

    # -- what a test sets and reads ----------------------------------------------------------

    def throttle(self, seconds: float, *, retry_after: str | None = None) -> float:
        """Answer every request 429 for ``seconds`` from now; returns when that ends."""
        with self._lock:
            self._throttled_until = time.time() + seconds
            self.retry_after = retry_after
            return self._throttled_until

    def statuses(self) -> list[int]:
        with self._lock:
            return [seen.status for seen in self.seen]

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    @property
    def url(self) -> str:
        if self._server is None:
            raise PeerError("the rate limiter is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.limiter = self  # type: ignore[attr-defined]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        self._client.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- answering ---------------------------------------------------------------------------

    def _limited(self, now: float) -> str | None:
        """The ``Retry-After`` to answer with if throttled now, else ``None``."""
        with self._lock:
            left = self._throttled_until - now
            if left <= 0 and self.remaining > 0:
                return None
            if self.retry_after is not None:
                return self.retry_after
            return str(max(1, math.ceil(left))) if left > 0 else str(self.window)

    def _headers(self, method: str, path: str, status: int) -> dict[str, str]:
        if "/manifests/" not in path or method not in ("GET", "HEAD"):
            return {}
        with self._lock:
            if method == "GET" and status == 200 and self.remaining > 0:
                self.remaining -= 1
            remaining, reports = self.remaining, self.reports
        if not reports:
            return {}
        return {
            "ratelimit-limit": f"{self.limit};w={self.window}",
            "ratelimit-remaining": f"{remaining};w={self.window}",
            "docker-ratelimit-source": "127.0.0.1",
        }

    def answer(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        now = time.time()
        retry_after = self._limited(now)
        if retry_after is not None:
            status, out, content = 429, [("Retry-After", retry_after)], TOO_MANY
            out.append(("Content-Type", "application/json"))
            out += list(self._headers(method, path, 429).items())
        else:
            sent = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
            response = self._client.request(
                method, self.upstream + path, headers=sent, content=body or None
            )
            status, content = response.status_code, response.content
            out = [
                (k, v)
                for k, v in response.headers.multi_items()
                if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
            ]
            out += list(self._headers(method, path, status).items())
        with self._lock:
            self.seen.append(Seen(now, method, path.partition("?")[0], status))
        return status, out, content


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        limiter: RateLimiter = self.server.limiter
        try:
            status, headers, content = limiter.answer(
                self.command, self.path, list(self.headers.items()), body
            )
        except Exception as exc:  # a bug in the stand-in must show, not hang the client
            status, headers = 502, [("Content-Type", "text/plain")]
            content = f"rate limiter error: {type(exc).__name__}: {exc}".encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        return None
