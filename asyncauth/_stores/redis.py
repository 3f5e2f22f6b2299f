"""``RedisTokenStore``: the token store of a fleet, on Redis or Redis Cluster through coredis.

Each value is one Redis string under ``<namespace>:t:<hmac>`` with a ``PX`` expiry (the token's
own lifetime less the margin), each lease one string under ``<namespace>:l:<hmac>`` set with
``NX PX`` to a random owner token and deleted by a compare-and-delete script, so a process only
ever gives back its own lease. Single-key commands only: every one of them works on a cluster.

coredis is imported when the first client is built, never by the core; a client is opened per
event loop by :class:`~asyncauth._stores.loops.LoopClients` (the sync clients' calls run on the
library's background loop, which gets its own). Every command is bounded by ``timeout``;
coredis's own retries are off, since :mod:`asyncauth._stores.shared` decides what a failure
means.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import ssl
import sys
from typing import Any, Final

import anyio
import anyio.to_thread

from .._errors import ConfigError
from .loops import LoopClients
from .redis_url import NAMESPACE, RedisURL, parse_redis_url
from .sealing import Sealer, encryption_key

log = logging.getLogger("asyncauth.tokens")

DEFAULT_TIMEOUT: Final = 2.0
"""Seconds one Redis command may take (opening a loop's client may take twice that)."""
DEFAULT_LEASE: Final = 10.0
"""Seconds a fetching process holds a lease (see :data:`asyncauth._stores.shared.SHARED_LEASE`)."""
EXTRA: Final = "redis"
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    "else return 0 end"
)


def _import_coredis() -> Any:
    try:
        import coredis
        import coredis.exceptions
        import coredis.retry
        import coredis.tokens
    except ImportError:
        raise ConfigError(
            f"RedisTokenStore needs coredis: pip install 'asyncauth[{EXTRA}]'"
        ) from None
    return coredis


class RedisTokenStore:
    """A :class:`~asyncauth.TokenStore` on Redis: many processes and machines, one token fetch
    per scope (and one cloud call per registry, for the resolvers that opt in).

    ``url`` is ``redis://``, ``rediss://`` (TLS), ``redis+cluster://`` or ``rediss+cluster://``
    (see docs/fleet.md for its options). ``encryption_key`` is 32 random bytes, or their base64
    text, shared by the whole fleet: names are HMACs and values AES-GCM under keys derived from
    it. ``encryption_key=None`` is refused unless ``insecure_plaintext=True`` says, in so many
    words, that tokens may lie in Redis in clear. ``namespace`` prefixes every key;
    ``timeout`` bounds each Redis command; ``lease_time`` is how long a fetching process holds
    the fleet's lease (how long the others wait at most if it dies). ``ca_file`` (PEM) or
    ``ssl_context`` set what a ``rediss://`` server's certificate is checked against (default:
    the system's CAs). URL options give the same settings; arguments win.

    No ``async with`` is needed: a client is opened in each event loop on first use;
    :meth:`aclose` closes them (a loop that ends closes its own).
    """

    def __init__(
        self,
        url: str,
        *,
        encryption_key: bytes | str | None,
        namespace: str | None = None,
        timeout: float | None = None,
        lease_time: float | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        insecure_plaintext: bool = False,
    ) -> None:
        if importlib.util.find_spec("coredis") is None:
            _import_coredis()
        self._url: RedisURL = parse_redis_url(url, what="RedisTokenStore url")
        key = None if encryption_key is None else _key(encryption_key, "encryption_key")
        self.namespace = namespace or self._url.namespace or "asyncauth"
        if not NAMESPACE.fullmatch(self.namespace):
            raise ConfigError("namespace must be 1 to 64 letters, digits, '_', '.' or '-'")
        self.timeout = _seconds(timeout or self._url.timeout or DEFAULT_TIMEOUT, "timeout")
        self.lease_time = _seconds(lease_time or self._url.lease_time or DEFAULT_LEASE, "lease")
        ca = ca_file if ca_file is not None else self._url.ca_file
        if (ca is not None or ssl_context is not None) and not self._url.tls:
            raise ConfigError("RedisTokenStore: ca_file and ssl_context need a rediss:// URL")
        self._ssl = _tls_context(ca, ssl_context) if self._url.tls else None
        if key is None and not insecure_plaintext:
            raise ConfigError(
                "RedisTokenStore: encryption_key is missing: a shared store keeps tokens "
                "encrypted; give 32 random bytes (or their base64), or insecure_plaintext=True "
                "to keep them in clear"
            )
        self._sealer = Sealer(key, self.namespace)
        if key is None:
            log.warning("RedisTokenStore %s keeps tokens in clear (insecure_plaintext)", self._url)
        self._clients: LoopClients[Any] = LoopClients(self._client, name="asyncauth-redis")
        self._leases: dict[str, str] = {}

    @classmethod
    def from_environment(cls, url: str, key: str, *, what: str, key_what: str) -> RedisTokenStore:
        """The store two variables describe; errors name ``what`` and ``key_what``."""
        parse_redis_url(url, what=what)
        return cls(url, encryption_key=_key(key, key_what))

    def __repr__(self) -> str:
        return f"RedisTokenStore({str(self._url)!r}, namespace={self.namespace!r})"

    def _client(self) -> Any:
        """A coredis client for this store (built in the loop that will enter it)."""
        coredis = _import_coredis()
        url = self._url
        common: dict[str, Any] = {
            "username": url.username,
            "password": url.password,
            "connect_timeout": self.timeout,
            "stream_timeout": self.timeout,
            "ssl_context": self._ssl,
            "retry_policy": coredis.retry.NoRetryPolicy(),
            "decode_responses": False,
        }
        if url.cluster:
            nodes = [{"host": host.strip("[]"), "port": port} for host, port in url.nodes]
            return coredis.RedisCluster(startup_nodes=nodes, **common)
        host, port = url.nodes[0]
        return coredis.Redis(host.strip("[]"), port, db=url.db, **common)

    def name(self, material: bytes) -> str:
        return f"{self.namespace}:{self._sealer.digest(material)}"

    def _keys(self, name: str) -> tuple[str, str]:
        """The value's and the lease's Redis keys; names are this store's own, checked."""
        prefix, _, digest = name.rpartition(":")
        if prefix != self.namespace or len(digest) != 64:
            raise ValueError("not a name this store gave out")
        return f"{prefix}:t:{digest}", f"{prefix}:l:{digest}"

    async def _run(self, command: str, *args: Any, **kwargs: Any) -> Any:
        """One command on this loop's client, bounded; any failure as one ``ConnectionError``.

        The first call of a process imports coredis first, in a worker thread (it takes most of
        a second, which must neither block the loop nor count against the command's bound).
        """
        if "coredis.tokens" not in sys.modules:
            await anyio.to_thread.run_sync(_import_coredis, abandon_on_cancel=True)
        try:
            with anyio.fail_after(2 * self.timeout):
                client = await self._clients.get()
            with anyio.fail_after(self.timeout):
                return await getattr(client, command)(*args, **kwargs)
        except Exception as exc:
            raise _unavailable(self._url, exc) from None

    async def get(self, name: str) -> bytes | None:
        where = self._keys(name)[0]
        value = await self._run("get", where)
        if not isinstance(value, bytes):
            return None
        return self._sealer.open(where, value)

    async def set(self, name: str, value: bytes, ttl: float) -> None:
        where = self._keys(name)[0]
        milliseconds = int(ttl * 1000)
        if milliseconds > 0:
            await self._run("set", where, self._sealer.seal(where, value), px=milliseconds)

    async def lease(self, name: str, ttl: float) -> bool:
        where = self._keys(name)[1]
        owner = secrets.token_hex(16)
        tokens = _import_coredis().tokens
        milliseconds = max(1, int(ttl * 1000))
        got = await self._run("set", where, owner, condition=tokens.PureToken.NX, px=milliseconds)
        if got:
            self._leases[name] = owner
        return bool(got)

    async def release(self, name: str) -> None:
        owner = self._leases.pop(name, None)
        if owner is not None:
            await self._run("eval", _RELEASE, keys=[self._keys(name)[1]], args=[owner])

    async def aclose(self) -> None:
        """Close this store's Redis clients (it opens new ones if it is used again)."""
        await self._clients.aclose()


def _seconds(value: float, what: str) -> float:
    if not 0 < value <= 3600:
        raise ConfigError(f"RedisTokenStore {what} must be seconds, above 0 and at most 3600")
    return float(value)


def _key(value: bytes | str, what: str) -> bytes:
    return encryption_key(value, what=what)


def _tls_context(ca: str | os.PathLike[str] | None, given: ssl.SSLContext | None) -> ssl.SSLContext:
    """What a ``rediss://`` server's certificate is checked against (hostname included)."""
    if given is not None:
        return given
    try:
        return ssl.create_default_context(cafile=None if ca is None else os.fspath(ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"RedisTokenStore: CA file {os.fspath(ca or '')}: {exc}") from None


def _unavailable(url: RedisURL, exc: BaseException) -> ConnectionError:
    """A failure as one secret-free ``ConnectionError``: coredis raises ``ExceptionGroup`` for a
    server that is down (its pool's task group), ``TimeoutError``, ``RedisError``..."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    kind = "no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__
    return ConnectionError(f"Redis at {url}: {kind}")
