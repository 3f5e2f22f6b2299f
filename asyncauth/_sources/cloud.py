"""What every cloud resolver shares, and nothing that belongs to one cloud.

Each cloud module (``ecr``, ``google``, ``azure``, ``github``) owns its host rules, its resolver
and a ``cloud_resolver(settings)`` factory; :mod:`asyncauth._defaults` gates them and lists them
in its registration table. This module sits below all of them and imports none, so that no
cloud module needs another one, and the table needs nothing but the factories.

The bounds every cloud call shares are named here: :data:`DEFAULT_CLOUD_TIMEOUT` for a whole
lookup, and :func:`retrying` for answers that ask us to slow down (HTTP 429 and 503, AWS
throttling errors), under the one retry policy of :mod:`asyncauth._http.retry` (the token fetch
follows it too). A refusal (401, 403, access denied) is never retried: asking again with the
same identity cannot change the answer, and would only spend the caller's time.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypeVar

import anyio

from .._errors import ResolverError
from .._http import MAX_CLOUD_ANSWER_BYTES
from .._http.retry import DEFAULT_RETRY, RetryPolicy

if TYPE_CHECKING:
    import httpx

    from .._chain import Resolver
    from .._resource import Resource
    from .._stores.protocol import TokenStore

DEFAULT_CLOUD_TIMEOUT: Final = 10.0
"""Seconds a cloud resolver may take by default: ample on a cloud (answers take milliseconds),
and the bound a misconfigured machine pays for a registry that cloud claims."""

ENABLE_VARIABLE: Final = "IMGPKG_ENABLE_IAAS_AUTH"
KEYCHAINS_VARIABLE: Final = "IMGPKG_ACTIVE_KEYCHAINS"

_LATEST_EPOCH: Final = 253402300799.0  # 9999-12-31T23:59:59Z: later is not an expiry
_T = TypeVar("_T")


def disable_hint(keychain: str) -> str:
    """How a user turns one cloud off, shown in the trace when it times out or fails."""
    return (
        f"set {ENABLE_VARIABLE}=false, or leave {keychain!r} out of {KEYCHAINS_VARIABLE} "
        f"(the keychains to use, comma-separated, in order)"
    )


def claimable_host(resource: Resource) -> str | None:
    """The host a cloud may claim: only on the default HTTPS port (none written, or 443).

    ``gcr.io:5000`` is somebody else's registry, whatever its name says.
    """
    return resource.host if resource.port in (None, 443) else None


def expiry_epoch(value: object) -> float | None:
    """A network-supplied expiry as seconds since the epoch, or ``None`` if it is not one.

    Booleans, NaN, infinities, negative values and values past the year 9999 are not expiries:
    they would poison the cache's arithmetic (or raise ``OverflowError`` converting them).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and not 0 < value <= _LATEST_EPOCH:
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) and 0 < seconds <= _LATEST_EPOCH else None


@dataclass(frozen=True, slots=True)
class CloudSettings:
    """What the default chain hands every cloud factory.

    ``config_files`` maps a keychain name to a file the caller named for that cloud (imgpkg's
    ``--registry-azure-cr-config`` is ``{"aks": path}``); a cloud that takes no file ignores it.
    ``token_store`` is the fleet's store, for the clouds whose credentials a fleet shares.
    """

    environ: Mapping[str, str]
    transport: httpx.AsyncBaseTransport | None = None
    timeout: float = DEFAULT_CLOUD_TIMEOUT
    config_files: Mapping[str, str | os.PathLike[str]] = field(default_factory=dict)
    token_store: TokenStore | None = None


CloudFactory = Callable[[CloudSettings], "Resolver"]
"""A cloud's ``cloud_resolver``: builds its resolver for the default chain."""


class Throttled(Exception):
    """A cloud API answered "slow down"; ``what`` names the call (no secrets)."""

    def __init__(self, what: str, retry_after: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.retry_after = retry_after


async def retrying(call: Callable[[], Awaitable[_T]], policy: RetryPolicy = DEFAULT_RETRY) -> _T:
    """``await call()``, again after a pause each time it raises :class:`Throttled`.

    After ``policy.attempts`` throttled answers the last one becomes a :class:`ResolverError`.
    """
    attempt = 1
    while True:
        try:
            return await call()
        except Throttled as exc:
            if attempt >= policy.attempts:
                raise ResolverError(
                    f"{exc.what} (throttled; gave up after {attempt} attempts)"
                ) from None
            await anyio.sleep(policy.delay(attempt, exc.retry_after))
            attempt += 1


def _token_file_problem(path: str) -> str | None:
    """What keeps ``path`` from being read as a token file, in words; ``None`` when nothing does.

    Blocking (``stat``): run it in a worker thread. ``stat`` never opens the file, so a FIFO
    costs nothing here.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size > MAX_CLOUD_ANSWER_BYTES:
        return f"larger than {MAX_CLOUD_ANSWER_BYTES} bytes"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


async def check_token_file(variable: str, path: str, *, what: str = "") -> None:
    """Refuse a workload identity token file the SDK could not read, naming ``variable``.

    Why: the SDKs (botocore's web identity provider, azure-identity's workload identity
    credential) read this file with a blocking ``open()`` on the event loop's thread. A FIFO in
    its place would block the whole program -- no timeout can fire while the loop is stuck --
    and a missing file came back as a bare ``FileNotFoundError`` that named no variable.
    ``what`` (the cloud, say) begins the message.
    """
    problem = await anyio.to_thread.run_sync(_token_file_problem, path, abandon_on_cancel=True)
    if problem is not None:
        where = f"{what}: " if what else ""
        raise ResolverError(f"{where}{variable} ({path}): {problem}")
