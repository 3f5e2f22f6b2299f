"""``RedisTokenStore``: the token store of a fleet, on Redis, Redis Cluster or Redis Sentinel,
through coredis.

Each value is one Redis string under ``<namespace>:t:<hmac>`` with a ``PX`` expiry (the token's
own lifetime less the margin), each lease one string under ``<namespace>:l:<hmac>`` holding a
random owner token and deleted by a compare-and-delete script, so a process only ever gives back
its own lease. Single-key commands only: every one of them works on a cluster.

Whoever else can write to the Redis is not trusted (see docs/fleet.md, threat model):

* values are read with ``GETRANGE 0 MAX_VALUE``: one larger than :data:`MAX_VALUE` is a miss,
  and no more than that is ever copied or decrypted, however large the string in Redis;
* a lease is taken by a script that also takes over a lease without an expiry, or with a longer
  one than a lease lasts: nobody can stall the fleet's cold misses with a lease set by hand;
* a value older than one this store object already saw under its name, or no newer than one
  its registry refused, is a miss (a replay);
* a refused value (:meth:`RedisTokenStore.forget`) is deleted by a compare-and-delete script
  that keeps a newer value another process has written since.

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
from .redis_client import build_client, import_coredis, tls_context, unavailable
from .redis_url import NAMESPACE, RedisURL, parse_redis_url
from .sealing import Generations, Opened, Sealer, encryption_key
from .shared import StoreUnavailable

log = logging.getLogger("asyncauth.tokens")

DEFAULT_TIMEOUT: Final = 2.0
"""Seconds one Redis command may take (opening a loop's client may take twice that)."""
DEFAULT_LEASE: Final = 10.0
"""Seconds a fetching process holds a lease (see :data:`asyncauth._stores.shared.SHARED_LEASE`)."""
MAX_VALUE: Final = 64 * 1024
"""Bytes of the largest value read from Redis (a sealed token is about 100 to a few thousand
bytes); a larger one is a miss, read no further than this."""
_RELEASE: Final = (
    "if redis.pcall('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    "else return 0 end"
)
_LEASE: Final = """
local ttl = redis.call('pttl', KEYS[1])
if ttl >= 0 and ttl <= tonumber(ARGV[2]) then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2])
if ttl == -2 then return 1 end
return 2
"""
"""Take the lease unless someone holds it for at most a lease time: a lease without an expiry
(PTTL -1), or with a longer one, was not set by a fleet's process and is taken over (2)."""
_FORGET: Final = (
    "if redis.pcall('getrange', KEYS[1], 0, #ARGV[1] - 1) == ARGV[1] then "
    "return redis.call('del', KEYS[1]) else return 0 end"
)
"""Delete the value if it is still the refused one (its :func:`~.sealing.mark`)."""


class RedisTokenStore:
    """A :class:`~asyncauth.TokenStore` on Redis: many processes and machines, one token fetch
    per scope (and one cloud call per registry, for the resolvers that opt in).

    ``url`` is ``redis://``, ``rediss://`` (TLS), ``redis+cluster://``, ``rediss+cluster://``,
    ``redis+sentinel://`` or ``rediss+sentinel://`` (see docs/fleet.md for its forms and
    options). ``encryption_key`` is 32 random bytes, or their base64
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
            import_coredis()
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
        self._ssl = tls_context(ca, ssl_context) if self._url.tls else None
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
        self.generations = Generations()
        """The newest generation seen and refused per name (see :meth:`read`)."""

    @classmethod
    def from_environment(cls, url: str, key: str, *, what: str, key_what: str) -> RedisTokenStore:
        """The store two variables describe; errors name ``what`` and ``key_what``."""
        parse_redis_url(url, what=what)
        return cls(url, encryption_key=_key(key, key_what))

    def __repr__(self) -> str:
        return f"RedisTokenStore({str(self._url)!r}, namespace={self.namespace!r})"

    def _client(self) -> Any:
        """A coredis client for this store (built in the loop that will enter it)."""
        return build_client(self._url, timeout=self.timeout, ssl_context=self._ssl)

    def name(self, material: bytes) -> str:
        """``namespace:HMAC(material)``: the name shows nothing of the credential it is for."""
        return f"{self.namespace}:{self._sealer.digest(material)}"

    def _keys(self, name: str) -> tuple[str, str]:
        """The value's and the lease's Redis keys; names are this store's own, checked."""
        prefix, _, digest = name.rpartition(":")
        if prefix != self.namespace or len(digest) != 64:
            raise ValueError("not a name this store gave out")
        return f"{prefix}:t:{digest}", f"{prefix}:l:{digest}"

    async def _run(self, command: str, *args: Any, **kwargs: Any) -> Any:
        """One command on this loop's client, bounded; any failure as one
        :class:`StoreUnavailable` that says why, without a secret.

        The first call of a process imports coredis first, in a worker thread (it takes most of
        a second, which must neither block the loop nor count against the command's bound).
        """
        if "coredis.tokens" not in sys.modules:
            await anyio.to_thread.run_sync(import_coredis, abandon_on_cancel=True)
        try:
            with anyio.fail_after(2 * self.timeout):
                client = await self._clients.get()
            with anyio.fail_after(self.timeout):
                return await getattr(client, command)(*args, **kwargs)
        except Exception as exc:
            error = unavailable(self._url, exc)
            if self._url.cluster and not error.wrong_type:
                # coredis keeps a dead master's slots in its layout (only MOVED answers refresh
                # it): a new client learns the layout afresh, the promoted replica included.
                self._clients.discard()
            raise error from None

    async def read(self, name: str) -> Opened | None:
        """The value under ``name`` and its generation, or ``None``: absent, larger than
        :data:`MAX_VALUE`, not a string, not opening, or older than one already seen here.

        What a caller that checks generations itself needs (:meth:`get` is this, without the
        generation); :meth:`forget` makes a value and the older ones stale for this store
        object.
        """
        where = self._keys(name)[0]
        warnings = self._sealer.warnings
        try:
            value = await self._run("getrange", where, 0, MAX_VALUE)
        except StoreUnavailable as exc:
            if not exc.wrong_type:
                raise
            text = "a value in the shared token store holds another type than a string; a miss"
            warnings.warning("type", where, text)
            return None
        if not value:
            return None
        if len(value) > MAX_VALUE:
            text = "a value in the shared token store is larger than %d bytes; a miss, not read"
            warnings.warning("size", where, text, MAX_VALUE)
            return None
        opened = self._sealer.open(where, bytes(value))
        if opened is not None and not self.generations.current(name, opened.generation):
            text = "a value in the shared token store is older than one already seen or refused"
            text += " (replayed?)"
            warnings.warning("replay", where, text + "; a miss")
            return None
        if opened is not None:
            self.generations.saw(name, opened.generation, opened.plaintext, bytes(value))
        return opened

    async def get(self, name: str) -> bytes | None:
        """The opened value under ``name``; ``None`` for a miss, an oversized, tampered, older
        or undecryptable value (each a miss, never an error)."""
        opened = await self.read(name)
        return None if opened is None else opened.plaintext

    async def set(
        self, name: str, value: bytes, ttl: float, *, generation: int | None = None
    ) -> None:
        """Keep ``value`` for ``ttl`` seconds; sealed with ``generation`` (default: the next one
        for ``name``, see :class:`~asyncauth._stores.sealing.Generations`)."""
        where = self._keys(name)[0]
        milliseconds = int(ttl * 1000)
        if milliseconds <= 0:
            return
        generation = self.generations.next(name) if generation is None else generation
        sealed = self._sealer.seal(where, value, generation)
        if len(sealed) > MAX_VALUE:
            text = "a token of %d bytes is over the shared store's limit (%d); not shared"
            self._sealer.warnings.warning("size", where, text, len(sealed), MAX_VALUE)
            return
        await self._run("set", where, sealed, px=milliseconds)
        self.generations.saw(name, generation, value, sealed)

    async def forget(self, name: str, value: bytes) -> None:
        """``value`` (as :meth:`get` gave it or :meth:`set` kept it) was refused by its
        registry: it, and any older value under ``name``, are misses for this store object from
        now on, and Redis deletes it unless a newer value replaced it (one script).

        Only the newest value this store object saw under ``name`` is looked for: an older one
        is a miss here already, and Redis holds a newer one.
        """
        newest = self.generations.newest(name, value)
        if newest is None:
            return
        generation, sealed_mark = newest
        self.generations.refused(name, generation)
        await self._run("eval", _FORGET, keys=[self._keys(name)[0]], args=[sealed_mark])

    async def lease(self, name: str, ttl: float) -> bool:
        """Take the fleet's lease on ``name`` for ``ttl`` seconds (one Lua call); a lease left
        without an expiry, or with a longer one, is taken over rather than honoured."""
        where = self._keys(name)[1]
        owner = secrets.token_hex(16)
        milliseconds = max(1, int(ttl * 1000))
        got = await self._run("eval", _LEASE, keys=[where], args=[owner, milliseconds])
        if got == 2:
            text = "a lease in the shared token store had no expiry, or a longer one; taken over"
            self._sealer.warnings.warning("lease", where, text)
        if got:
            self._leases[name] = owner
        return bool(got)

    async def release(self, name: str) -> None:
        """Give back a lease this store object took, and only if it still holds it."""
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
