"""A fleet switched on without code changes: the store the environment names.

``ASYNCAUTH_TOKEN_STORE`` (a store URL, see :mod:`~asyncauth._stores.redis_url`) and
``ASYNCAUTH_TOKEN_STORE_KEY`` (base64 of 32 random bytes) configure the store that
``RegistryAuth()`` and ``default_chain()`` use when the caller passes none; every program built on
them (``create_client``, the CLI, the credential helper) follows. ``token_store=False`` opts a
single auth or chain out.

The variables are read when the auth or chain is built (no I/O happens then: the first Redis
connection waits for the first miss), so a mistake is a :class:`~asyncauth.ConfigError` naming the
variable at once, not a warning at the first request. One store object is kept per configuration,
so an auth and its chain share one client (and one outage warning) per event loop.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Final, Literal

from .._errors import ConfigError
from .protocol import TokenStore, lease_time_of

STORE_VARIABLE: Final = "ASYNCAUTH_TOKEN_STORE"
KEY_VARIABLE: Final = "ASYNCAUTH_TOKEN_STORE_KEY"

_made: dict[tuple[str, str], TokenStore] = {}
_lock = threading.Lock()


def store_from_environ(environ: Mapping[str, str] | None = None) -> TokenStore | None:
    """The store ``environ`` (default ``os.environ``) configures, or ``None`` if it names none."""
    environ = os.environ if environ is None else environ
    url = environ.get(STORE_VARIABLE, "").strip()
    if not url:
        return None
    key = environ.get(KEY_VARIABLE, "").strip()
    if not key:
        raise ConfigError(
            f"{STORE_VARIABLE} is set but {KEY_VARIABLE} is not: a shared store keeps tokens "
            f"encrypted; set {KEY_VARIABLE} to the fleet's key (base64 of 32 random bytes)"
        )
    with _lock:
        store = _made.get((url, key))
        if store is None:
            from .redis import RedisTokenStore

            store = RedisTokenStore.from_environment(
                url, key, what=STORE_VARIABLE, key_what=KEY_VARIABLE
            )
            _made[(url, key)] = store
        return store


def chosen_store(
    value: TokenStore | Literal[False] | None, environ: Mapping[str, str] | None = None
) -> TokenStore | None:
    """The store a ``token_store=`` argument means: a store; ``False`` for none; ``None`` for
    the one the environment names (if any)."""
    if value is False:
        return None
    if value is None:
        return store_from_environ(environ)
    if isinstance(value, bool):
        raise TypeError("token_store= takes a TokenStore, False or None, not True")
    lease_time_of(value)  # refused here, not at the first request, if it has none
    return value
