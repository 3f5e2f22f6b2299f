"""What a shared store keeps, made unreadable and unforgeable: AES-GCM values, HMAC names.

Whoever can read the Redis a fleet shares (an operator, a backup, a compromised neighbour on the
same instance) must learn nothing from it: not a token, not which credential it belongs to. So

* names are HMAC-SHA256 of the key material (a registry, a scope, a credential's secrets) under
  a key derived from the user's ``encryption_key``: an unkeyed hash of a password would let
  anyone test guesses against the names;
* values are AES-256-GCM under a second derived key, with the Redis key name as associated data:
  a value copied under another name fails to open, and so does one written without the key.
  A value that fails to open is a miss (logged once per name per :data:`WARN_EVERY` seconds:
  a waiter polls), never an error: the caller fetches afresh.
* each value carries its *generation* (milliseconds since the epoch when it was sealed, or one
  more than the newest this process saw under its name), authenticated with it: someone who can
  write to Redis but has no key can copy an older value back under its own name, but not make it
  look newer. :class:`Generations` remembers, per name, the newest generation seen and refused
  (a token its registry refused), so that such a replay is told apart from the current value,
  and which value the newest one was (:meth:`Generations.newest`), so that a refused value is
  deleted from Redis only while it is still there (:func:`mark`).

Both keys come from ``encryption_key`` (32 random bytes) through HKDF-SHA256 with distinct
``info`` labels. ``cryptography`` is imported when a store is built, never by the core.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from .._errors import ConfigError

log = logging.getLogger("asyncauth.tokens")

KEY_SIZE: Final = 32
"""Bytes of an ``encryption_key``."""
WARN_EVERY: Final = 300.0
"""Seconds between two warnings about the same name (a value that does not open, is too large,
is a replay, or a lease without expiry): once per name per five minutes, not once per poll."""
_SEALED: Final = b"\x02"  # format 2: generation, nonce, AES-GCM(plaintext, AD: header + name)
_PLAIN: Final = b"\x82"  # format 2 in clear (insecure_plaintext): generation, plaintext
_GENERATION = struct.Struct(">Q")
_NONCE: Final = 12
_HEADER: Final = 1 + _GENERATION.size
_INFO: Final = b"asyncauth token store v1: "


class Throttled:
    """Warnings that name a thing, at most once per thing per ``every`` seconds.

    A waiter polls the store every 10 to 100 ms: a poisoned value or lease would otherwise log a
    line per poll. Bounded: past ``maxsize`` things the oldest are forgotten.
    """

    def __init__(self, every: float = WARN_EVERY, *, maxsize: int = 1024) -> None:
        self.every = every
        self._maxsize = maxsize
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def warning(self, kind: str, name: str, message: str, *args: object) -> None:
        """Log ``message % args`` unless ``kind`` was logged for ``name`` in the last while."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get((kind, name))
            if last is not None and now - last < self.every:
                return
            self._last.pop((kind, name), None)
            self._last[(kind, name)] = now
            while len(self._last) > self._maxsize:
                del self._last[next(iter(self._last))]
        log.warning(message, *args)


@dataclass(frozen=True, slots=True)
class Opened:
    """A value that opened: its plaintext, and the generation it was sealed with."""

    plaintext: bytes
    generation: int


def mark(sealed: bytes) -> bytes:
    """What tells one sealed value from every other: its format, generation and random nonce
    (in clear, the format and generation, and the plaintext's first bytes)."""
    return sealed[: _HEADER + _NONCE]


@dataclass(slots=True)
class _Seen:
    generation: int = 0
    """The newest generation seen under the name."""
    refused: int = -1
    """The newest generation refused under it."""
    digest: bytes = b""
    """A digest of the newest value's plaintext (not the plaintext: it holds a token)."""
    mark: bytes = b""
    """That value's :func:`mark`."""


class Generations:
    """Per name, the newest generation this process saw and the newest one it refused.

    The store side of replay protection: a value is :meth:`current` unless it is older than
    one already seen under its name (an older value written back), or no newer than one refused
    (a token the registry turned down). :meth:`next` is the generation to seal a new value with:
    the clock in milliseconds, but always past what was seen, so a machine whose clock is behind
    does not write values that look old to the processes that saw newer ones. Bounded: past
    ``maxsize`` names the least recently used are forgotten (and lose the protection).
    """

    def __init__(self, *, maxsize: int = 4096, clock: Callable[[], float] = time.time) -> None:
        self._maxsize = maxsize
        self._clock = clock
        self._names: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def _get(self, name: str) -> _Seen:
        found = self._names.pop(name, None) or _Seen()
        self._names[name] = found  # most recently used last
        while len(self._names) > self._maxsize:
            del self._names[next(iter(self._names))]
        return found

    def current(self, name: str, generation: int) -> bool:
        """Whether a value of ``generation`` under ``name`` may be used."""
        with self._lock:
            seen = self._get(name)
            return generation >= seen.generation and generation > seen.refused

    def saw(self, name: str, generation: int, plaintext: bytes = b"", sealed: bytes = b"") -> None:
        """A value of ``generation`` (``plaintext``, ``sealed``) was read or written."""
        with self._lock:
            seen = self._get(name)
            if generation >= seen.generation:
                seen.generation, seen.digest = generation, _digest(plaintext)
                seen.mark = mark(sealed)

    def refused(self, name: str, generation: int) -> None:
        """The value of ``generation`` under ``name`` was refused: it and older ones are stale."""
        with self._lock:
            seen = self._get(name)
            seen.generation = max(seen.generation, generation)
            seen.refused = max(seen.refused, generation)

    def newest(self, name: str, plaintext: bytes) -> tuple[int, bytes] | None:
        """The generation and :func:`mark` of the newest value seen under ``name`` if it is
        ``plaintext``; ``None`` if it is not (so ``plaintext``'s value is older: stale already)
        or nothing was seen."""
        with self._lock:
            seen = self._names.get(name)
            if seen is None or not seen.mark or seen.digest != _digest(plaintext):
                return None
            return seen.generation, seen.mark

    def next(self, name: str) -> int:
        """The generation to seal a new value under ``name`` with."""
        with self._lock:
            seen = self._get(name)
            return max(int(self._clock() * 1000), seen.generation + 1, seen.refused + 1)


def _digest(plaintext: bytes) -> bytes:
    return hashlib.blake2b(plaintext, digest_size=16).digest()


def encryption_key(value: object, *, what: str) -> bytes:
    """``value`` as 32 key bytes: ``bytes`` as they are, text as base64 (standard or URL-safe).

    Anything else is a :class:`ConfigError` naming ``what`` (a variable or an argument); the
    message never shows the value.
    """
    if isinstance(value, bytes | bytearray):
        key = bytes(value)
        if len(key) != KEY_SIZE:
            raise ConfigError(f"{what} must be {KEY_SIZE} bytes, not {len(key)}")
        return key
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be bytes or base64 text, not {type(value).__name__}")
    text = value.strip()
    try:
        if not text.isascii():
            raise ValueError
        key = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"{what} is not base64 text (make a key with: "
            "python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"
        ) from None
    if len(key) != KEY_SIZE:
        raise ConfigError(f"{what} must decode to {KEY_SIZE} bytes, not {len(key)}")
    return key


def _import_crypto() -> tuple[Any, Any, Any]:
    try:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    except ImportError:
        raise ConfigError(
            "RedisTokenStore needs 'cryptography': pip install 'asyncauth[redis]'"
        ) from None
    return hashes, AESGCM, HKDF


class Sealer:
    """Names and values for one store: keyed, encrypted, authenticated.

    ``key=None`` is the explicit insecure mode: values are kept in clear and names are keyed
    with a key everybody can compute; it exists for throw-away setups only.
    """

    def __init__(self, key: bytes | None, namespace: str) -> None:
        self.encrypted = key is not None
        self.warnings = Throttled()
        if key is None:
            self._name_key = hashlib.sha256(b"asyncauth insecure: " + namespace.encode()).digest()
            self._aead: Any = None
            return
        hashes, aesgcm, hkdf = _import_crypto()

        def derive(label: bytes) -> bytes:
            return bytes(
                hkdf(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + label).derive(
                    key
                )
            )

        self._name_key = derive(b"names")
        self._aead = aesgcm(derive(b"values"))

    def __repr__(self) -> str:
        return f"Sealer(encrypted={self.encrypted})"

    def digest(self, material: bytes) -> str:
        """The HMAC of ``material``: what a name is made of."""
        return hmac.new(self._name_key, material, hashlib.sha256).hexdigest()

    def seal(self, where: str, plaintext: bytes, generation: int) -> bytes:
        """The value to keep under the Redis key ``where``, bound to it and to ``generation``."""
        header = (_SEALED if self._aead is not None else _PLAIN) + _GENERATION.pack(generation)
        if self._aead is None:
            return header + plaintext
        nonce = secrets.token_bytes(_NONCE)
        return header + nonce + bytes(self._aead.encrypt(nonce, plaintext, header + where.encode()))

    def open(self, where: str, value: bytes) -> Opened | None:
        """What a value read from ``where`` holds; ``None`` (logged) if it does not open.

        An encrypting store never accepts a value in clear: with write access to Redis alone,
        nobody can plant a token. The generation is checked by the AEAD with the rest.
        """
        header, body = value[:_HEADER], value[_HEADER:]
        generation = _GENERATION.unpack(header[1:])[0] if len(header) == _HEADER else 0
        if self._aead is None:
            if header[:1] == _PLAIN and len(header) == _HEADER:
                return Opened(body, generation)
        elif header[:1] == _SEALED and len(body) > _NONCE:
            nonce, ciphertext = body[:_NONCE], body[_NONCE:]
            try:
                plaintext = self._aead.decrypt(nonce, ciphertext, header + where.encode())
                return Opened(bytes(plaintext), generation)
            except Exception:  # noqa: S110 - InvalidTag (wrong key, tampered, moved): logged below
                pass
        self.warnings.warning(
            "open",
            where,
            "a value in the shared token store did not decrypt (another encryption key, or "
            "tampered with); treated as a miss (this name: once per %g s)",
            self.warnings.every,
        )
        return None
