"""Hostile loopback peers: servers that play a registry, a token server, a redirect target, and a
forward proxy that plays every *remote* host (``auth.example.com``, ``169.254.169.254``...).

Why a proxy: the rules under test are about where credentials may go, and most of the places they
must not go are remote (a public token server over plain http, the cloud metadata address, a
private network). Nothing here may send a packet off this machine, so the clients under test get
``HTTP_PROXY`` pointing at :class:`FakeInternet`, a loopback server that answers absolute-form
requests itself, as the named host would; ``NO_PROXY`` keeps 127.0.0.1 direct. Every client goes
through the real transport ``create_client()`` picked; :meth:`FakeInternet.prove_route` first
checks that a request to a ``.invalid`` name (which no resolver answers) landed here, so a client
that ignored the proxy fails before it is given an IP literal to reach.

Every server records every request (method, URL, headers, body) and is strict: a host or path
nobody declared answers 599 and is recorded as a surprise that fails the test.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

HANG_LIMIT = 30.0
"""Longest a hanging reply holds its connection (released at once when the server stops)."""


@dataclass(frozen=True)
class Seen:
    """One request as it arrived."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    def text(self) -> str:
        """Everything that arrived, as one string to search for secrets."""
        lines = [f"{self.method} {self.url}", *(f"{k}: {v}" for k, v in self.headers.items())]
        return "\n".join(lines) + "\n" + self.body.decode("latin-1")


@dataclass
class Reply:
    """What a handler answers; ``hang`` holds the connection open without answering, ``drop``
    closes it without a word; ``drip`` (seconds) sends the body one byte at a time, that far
    apart (``drip_head``: the status line and headers too), as a slow-loris server does."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    hang: bool = False
    drop: bool = False
    drip: float = 0.0
    drip_head: bool = False


Handler = Callable[[Seen], Reply]


def redirect(location: str, status: int = 307) -> Reply:
    return Reply(status, [("Location", location)])


API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")
"""What every registry sends on its answers (a proxy's own 401 lacks it)."""


def bearer_challenge(realm: str, service: str = "registry.test") -> Reply:
    header = f'Bearer realm="{realm}",service="{service}"'
    return Reply(401, [("WWW-Authenticate", header), API_VERSION], b'{"errors":[]}')


def basic_challenge() -> Reply:
    return Reply(401, [("WWW-Authenticate", 'Basic realm="registry"'), API_VERSION])


def token_reply(token: str = "issued-TOKEN", **extra: Any) -> Reply:
    import json

    body = json.dumps({"token": token, "expires_in": 300, **extra}).encode()
    return Reply(200, [("Content-Type", "application/json")], body)


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the server records requests itself."""

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        try:
            body = self._body()
        except (OSError, ValueError):
            body = b"<body broken off>"
        url = self.path if "://" in self.path else f"{self.server.url}{self.path}"
        headers = {k.lower(): v for k, v in self.headers.items()}
        seen = Seen(self.command, url, headers, body)
        reply = self.server.answer(seen)
        if reply.hang:
            self.server.stopping.wait(HANG_LIMIT)
        if reply.hang or reply.drop:
            self.close_connection = True
            return
        if reply.drip:
            self._drip(reply)
            return
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if not any(name.lower() == "content-length" for name, _ in reply.headers):
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _drip(self, reply: Reply) -> None:
        """Send ``reply`` a byte at a time, until done or the server stops."""
        head = [f"HTTP/1.1 {reply.status} Dripping\r\n"]
        head += [f"{name}: {value}\r\n" for name, value in reply.headers]
        head.append(f"Content-Length: {len(reply.body)}\r\n\r\n")
        raw = "".join(head).encode("latin-1")
        if not reply.drip_head:
            self.wfile.write(raw)
            self.wfile.flush()
            raw = b""
        self.close_connection = True
        for byte in raw + reply.body:
            if self.server.stopping.wait(reply.drip):
                return
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return

    do_GET = do_POST = do_PUT = do_HEAD = do_PATCH = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: Server) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.owner = owner
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.stopping = threading.Event()

    def answer(self, seen: Seen) -> Reply:
        return self.owner._answer(seen)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that breaks a connection off is what several tests provoke."""


class Server:
    """One loopback HTTP server (its own origin); ``route(path_prefix, handler)`` declares what
    it answers. Use as a context manager; ``seen`` is every request so far."""

    def __init__(self, name: str = "server") -> None:
        self.name = name
        self._routes: list[tuple[str, str, Handler]] = []
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self.surprises: list[str] = []
        self.arrived = threading.Event()
        """Set by the first request."""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def route(self, prefix: str, handler: Handler | Reply, *, host: str = "") -> Self:
        """Answer requests whose path starts with ``prefix`` (and, for a proxy, whose host is
        ``host``) with ``handler(seen)`` or a fixed reply; the first match wins."""
        call = handler if callable(handler) else (lambda seen, reply=handler: reply)
        with self._lock:
            self._routes.append((host, prefix, call))
        return self

    def _answer(self, seen: Seen) -> Reply:
        with self._lock:
            self._seen.append(seen)
            routes = list(self._routes)
        self.arrived.set()
        for host, prefix, handler in routes:
            if (not host or seen.host == host) and seen.path.startswith(prefix):
                return handler(seen)
        with self._lock:
            self.surprises.append(f"{seen.method} {seen.url}")
        return Reply(599, body=b"nobody declared this")

    @property
    def url(self) -> str:
        assert self._server is not None, f"{self.name} is not running"
        return self._server.url

    @property
    def port(self) -> int:
        return int(self.url.rpartition(":")[2])

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def seen_at(self, host: str) -> list[Seen]:
        return [s for s in self.seen if s.host == host]

    def __enter__(self) -> Self:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=self.name, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.stopping.set()
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


ROUTE_CHECK = "route-check.invalid"


class FakeInternet(Server):
    """A forward proxy on loopback that answers for remote hosts itself (see the module)."""

    def __init__(self) -> None:
        super().__init__("fake-internet")
        self.route("/", Reply(204), host=ROUTE_CHECK)

    async def prove_route(self, client: Any) -> None:
        """Fail unless ``client`` sends plain-http requests for remote hosts here."""
        before = len(self.seen_at(ROUTE_CHECK))
        response = await client.get(f"http://{ROUTE_CHECK}/", auth=None)
        assert response.status_code == 204
        assert len(self.seen_at(ROUTE_CHECK)) == before + 1, "the client bypassed the proxy"


def basic_forms(user: str, password: str) -> list[str]:
    """A password as it may travel: itself, and inside a Basic header."""
    pair = f"{user}:{password}".encode()
    return [password, base64.b64encode(pair).decode()]


def everything(seen: Iterable[Seen]) -> str:
    return "\n".join(s.text() for s in seen)


def token_registry(realm: str, token: str = "issued-TOKEN") -> Handler:
    """A registry that challenges for ``realm`` and accepts only ``Bearer <token>``."""

    def answer(seen: Seen) -> Reply:
        if seen.headers.get("authorization") == f"Bearer {token}":
            return Reply(200, [("Content-Type", "application/json")], b"{}")
        return bearer_challenge(realm)

    return answer
