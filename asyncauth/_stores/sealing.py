"""What a shared store keeps, made unreadable and unforgeable: AES-GCM values, HMAC names.

Whoever can read the Redis a fleet shares (an operator, a backup, a compromised neighbour on the
same instance) must learn nothing from it: not a token, not which credential it belongs to. So

* names are HMAC-SHA256 of the key material (a registry, a scope, a credential's secrets) under
  a key derived from the user's ``encryption_key``: an unkeyed hash of a password would let
  anyone test guesses against the names;
* values are AES-256-GCM under a second derived key, with the Redis key name as associated data:
  a value copied under another name fails to open, and so does one written without the key.
  A value that fails to open is a miss (logged), never an error: the caller fetches afresh.

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
from typing import Any, Final

from .._errors import ConfigError

log = logging.getLogger("asyncauth.tokens")

KEY_SIZE: Final = 32
"""Bytes of an ``encryption_key``."""
_SEALED: Final = b"\x01"
_PLAIN: Final = b"\x00"
_NONCE: Final = 12
_INFO: Final = b"asyncauth token store v1: "


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

    def seal(self, where: str, plaintext: bytes) -> bytes:
        """The value to keep under the Redis key ``where``."""
        if self._aead is None:
            return _PLAIN + plaintext
        nonce = secrets.token_bytes(_NONCE)
        return _SEALED + nonce + bytes(self._aead.encrypt(nonce, plaintext, where.encode()))

    def open(self, where: str, value: bytes) -> bytes | None:
        """The plaintext of a value read from ``where``; ``None`` (logged) if it does not open.

        An encrypting store never accepts a value in clear: with write access to Redis alone,
        nobody can plant a token.
        """
        if self._aead is None:
            if value[:1] == _PLAIN:
                return value[1:]
        elif value[:1] == _SEALED and len(value) > 1 + _NONCE:
            nonce, ciphertext = value[1 : 1 + _NONCE], value[1 + _NONCE :]
            try:
                return bytes(self._aead.decrypt(nonce, ciphertext, where.encode()))
            except Exception:  # noqa: S110 - InvalidTag (wrong key, tampered, moved): logged below
                pass
        log.warning(
            "a value in the shared token store did not decrypt (another encryption key, or "
            "tampered with); treated as a miss"
        )
        return None
