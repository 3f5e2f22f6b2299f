"""coredis clients for a :class:`~asyncauth.RedisTokenStore`: one per URL form, and what their
failures mean, in words safe to log.

coredis is imported here, lazily (the core never needs it). Its retries are off: the shared
store (:mod:`asyncauth._stores.shared`) decides what a failure means. A failure becomes one
:class:`~asyncauth._stores.shared.StoreUnavailable` whose cause is the server's answer (``DB
index is out of range``, ``invalid username-password pair``, ``The cluster is down``), the TLS
or socket error beneath a connection error (``certificate verify failed: ...``, ``Connection
refused``), or ``no answer in time``: never the command's arguments, and never the password
(masked wherever it would appear).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Final

from .._errors import ConfigError
from .._redact import redact
from .redis_url import RedisURL
from .shared import StoreUnavailable

EXTRA: Final = "redis"


def import_coredis() -> Any:
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


def build_client(url: RedisURL, *, timeout: float, ssl_context: ssl.SSLContext | None) -> Any:
    """An unentered coredis client for ``url``: a server, a cluster, or Sentinel's master."""
    coredis = import_coredis()
    common: dict[str, Any] = {
        "username": url.username,
        "password": url.password,
        "connect_timeout": timeout,
        "stream_timeout": timeout,
        "ssl_context": ssl_context,
        "retry_policy": coredis.retry.NoRetryPolicy(),
        "decode_responses": False,
    }
    if url.cluster:
        nodes = [{"host": host.strip("[]"), "port": port} for host, port in url.nodes]
        return coredis.RedisCluster(startup_nodes=nodes, **common)
    if url.service is not None:
        return _SentinelPrimary(coredis, url, common)
    host, port = url.nodes[0]
    return coredis.Redis(host.strip("[]"), port, db=url.db, **common)


def tls_context(ca: str | os.PathLike[str] | None, given: ssl.SSLContext | None) -> ssl.SSLContext:
    """What a ``rediss://`` server's certificate is checked against (hostname included)."""
    if given is not None:
        return given
    try:
        return ssl.create_default_context(cafile=None if ca is None else os.fspath(ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"RedisTokenStore: CA file {os.fspath(ca or '')}: {exc}") from None


def unavailable(url: RedisURL, exc: BaseException) -> StoreUnavailable:
    """A failure as one :class:`StoreUnavailable`: coredis raises ``ExceptionGroup`` for a
    server that is down (its pool's task group), ``TimeoutError``, ``RedisError``..."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    cause = _cause(exc)
    if url.password:
        cause = cause.replace(url.password, "****")
    cause = redact(cause, limit=240)
    error = StoreUnavailable(f"Redis at {url}: {cause}", cause=cause)
    error.wrong_type = type(exc).__name__ == "WrongTypeError"
    return error


def _cause(exc: BaseException) -> str:
    """Why a command failed, in words: the server's answer, the TLS or socket error beneath a
    connection error, or no answer in time. Never the command's arguments."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    detail = ""
    below: BaseException | None = exc
    for _ in range(6):  # coredis ConnectionError <- anyio OSError <- ConnectionRefusedError
        below = below.__cause__ or below.__context__ if below is not None else None
        if isinstance(below, ssl.SSLCertVerificationError):
            detail = f"TLS: certificate verify failed: {below.verify_message}"
            break
        if isinstance(below, ssl.SSLError):
            detail = f"TLS: {below.reason or below}"
            break
        if isinstance(below, OSError) and below.errno:
            detail = os.strerror(below.errno)
            break
    kind = type(exc)
    if not kind.__module__.startswith("coredis"):
        top = kind.__name__
    elif any(k.__name__ == "AuthenticationError" for k in kind.__mro__):
        top = f"authentication failed: {exc}"
    elif any(k.__name__ == "ResponseError" for k in kind.__mro__):
        top = f"the server answered: {exc}"
    else:
        top = str(exc) or kind.__name__
    return f"{top} ({detail})" if detail else top


class _SentinelPrimary:
    """coredis's ``Sentinel`` and the client of the master it names, entered as one client.

    Commands go to the master (``__getattr__``). Each new connection asks the sentinels where
    the master is and checks its ``ROLE``, so after a failover the store follows the new master;
    the URL's user and password are the master's, the sentinels are asked without them.
    """

    def __init__(self, coredis: Any, url: RedisURL, common: dict[str, Any]) -> None:
        assert url.service is not None
        to_sentinels = ("connect_timeout", "stream_timeout", "ssl_context")
        locations = [coredis.connection.TCPLocation(h.strip("[]"), p) for h, p in url.nodes]
        self._sentinel = coredis.Sentinel(
            locations,
            sentinel_kwargs={name: common[name] for name in to_sentinels},
            db=url.db,
            **common,
        )
        self._service = url.service
        self._primary = self._sentinel.primary_for(url.service)
        self._not_found = coredis.exceptions.PrimaryNotFoundError
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> _SentinelPrimary:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self._sentinel)
            await stack.enter_async_context(self._primary)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return await self._stack.__aexit__(kind, exc, tb)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        command = getattr(self._primary, name)

        async def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return await command(*args, **kwargs)
            except self._not_found as exc:
                error = exc
            raise await self._why(error)  # outside the except: keeps the error's own cause

        return run

    async def _why(self, exc: Exception) -> Exception:
        """Why no sentinel named a master: coredis drops each sentinel's error (refused,
        TLS...); asking the first sentinel again brings its error back for the warning."""
        for sentinel in self._sentinel.sentinels[:1]:
            try:
                await sentinel.sentinel_get_master_addr_by_name(self._service)
            except Exception as error:  # the cause to show, whatever it is
                return error
        return exc
