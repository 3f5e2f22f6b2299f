"""Reading the Docker config file, and reading it again only when it changed.

Finding, opening and ``fstat``-ing the file run in a worker thread, at most once per
``check_interval`` seconds however many lookups ask (single-flight); the file is re-parsed only
when its identity, size or mtime changed, so a long-running process sees ``docker login``
without a restart. Errors are never cached: a broken file raises on every lookup until fixed.

Every wait is bounded. The file is opened with ``O_NONBLOCK`` and must be a regular file: a FIFO
in its place would otherwise block the open until some writer came, in a thread no cancel scope
can reach. A read that still hangs (a dead network file system) is abandoned after
``read_timeout`` seconds and reported; the lookup does not wait for it.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

import anyio

from ..._errors import ConfigError, ResolverError
from ..._singleflight import SingleFlightCache
from .configfile import DockerConfig, parse_config
from .discovery import Candidate, find_config

log = logging.getLogger("asyncauth.dockerconfig")

DEFAULT_CHECK_INTERVAL = 1.0
"""Seconds between checks whether the config file changed (a ``docker login`` meanwhile)."""
DEFAULT_CONFIG_READ_TIMEOUT = 5.0
"""Seconds finding and reading the config file may take (it is local: milliseconds, normally)."""
MAX_CONFIG_BYTES = 16 << 20
"""A config file larger than this is refused rather than read into memory."""

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOCTTY", 0)
)
_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class _Absent(Exception):
    """No file there (missing, or a directory): the candidate does not count."""


def _is_dev_null(st: os.stat_result) -> bool:
    """``REGISTRY_AUTH_FILE=/dev/null`` says "no credentials"; it reads as an empty file."""
    try:
        null = os.stat(os.devnull)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == null.st_rdev


def _cannot_read(where: str, exc: OSError) -> ConfigError:
    return ConfigError(f"{where}: cannot be read ({exc.strerror or type(exc).__name__})")


def open_config(where: str) -> tuple[int, os.stat_result]:
    """An open descriptor on the regular file ``where`` and its ``fstat``.

    Raises :class:`_Absent` for a missing file or a directory, :class:`ConfigError` for what
    cannot be read or is not a regular file (a FIFO, a socket, a device but ``/dev/null``).
    """
    try:
        fd = os.open(where, _OPEN_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        raise _Absent("No such file or directory") from None
    except IsADirectoryError:
        raise _Absent("is a directory") from None
    except OSError as exc:
        raise _cannot_read(where, exc) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) or _is_dev_null(st):
            return fd, st
        if stat.S_ISDIR(st.st_mode):
            raise _Absent("is a directory")
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a file")
        raise ConfigError(f"{where}: is {kind}, not a regular file; a Docker config is a file")
    except BaseException:
        os.close(fd)
        raise


def read_open(fd: int, where: str) -> bytes:
    """At most :data:`MAX_CONFIG_BYTES` of an open file; :class:`ConfigError` beyond that."""
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise _cannot_read(where, exc) from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_CONFIG_BYTES} bytes; not a Docker config")
    return b"".join(chunks)


_FileState = tuple[str, int, int, int, int]


class ConfigLoader:
    """Keeps the parsed config and re-reads it only when the file changed.

    ``current`` is the config read last (``None`` before the first read, or without a file).
    Keys that name no registry are logged at DEBUG on ``asyncauth.dockerconfig`` once per
    version of the file.
    """

    def __init__(
        self,
        explicit: Path | None,
        candidates: tuple[Candidate, ...],
        check_interval: float,
        read_timeout: float = DEFAULT_CONFIG_READ_TIMEOUT,
    ) -> None:
        if read_timeout <= 0:
            raise ValueError("config_read_timeout must be positive")
        self.explicit = explicit
        self.candidates = candidates
        self.check_interval = check_interval
        self.read_timeout = read_timeout
        self.current: DockerConfig | None = None
        self._state: _FileState | None = None
        self._lock = threading.Lock()
        self._flight = SingleFlightCache[DockerConfig | None](maxsize=1)

    def describe(self) -> str:
        """The file, or the rules that find it: for messages and ``repr``."""
        if self.explicit is not None:
            return os.fspath(self.explicit)
        return " | ".join(rule for _, rule in self.candidates) or "no candidates"

    async def load(self) -> DockerConfig | None:
        """The config as of now (``None`` when no file exists); raises ``ConfigError``."""
        return await self._flight.get("config", self._load_in_thread, self._ttl)

    def _ttl(self, _: DockerConfig | None) -> float:
        return self.check_interval

    async def _load_in_thread(self) -> DockerConfig | None:
        with anyio.move_on_after(self.read_timeout):
            return await anyio.to_thread.run_sync(self._load_and_keep, abandon_on_cancel=True)
        raise ResolverError(
            f"the Docker config ({self.describe()}) was not read within {self.read_timeout:g} s"
        )

    def _load_and_keep(self) -> DockerConfig | None:
        """Read, and keep what was read for ``check_interval`` even if the lookup that asked
        was cancelled meanwhile: a chain cancels this source whenever one that takes
        precedence answers first, and the next lookup would start the read all over again."""
        config = self.load_sync()
        self._flight.put("config", config, self.check_interval)
        return config

    def load_sync(self) -> DockerConfig | None:
        """:meth:`load` for a thread (blocking I/O, bounded by the same ``read_timeout``)."""
        if not self._lock.acquire(timeout=self.read_timeout):
            raise ResolverError(
                f"the Docker config ({self.describe()}) is still being read by another thread "
                f"after {self.read_timeout:g} s"
            )
        try:
            return self._load_locked()
        finally:
            self._lock.release()

    def _load_locked(self) -> DockerConfig | None:
        path = self.explicit or find_config(self.candidates)
        where = None if path is None else os.fspath(path)
        try:
            if where is None:
                raise _Absent("no file")
            fd, st = open_config(where)
        except _Absent as absent:
            self.current, self._state = None, None
            if self.explicit is not None:
                raise ConfigError(f"{where}: cannot be read ({absent})") from None
            return None
        try:
            state = (where, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if state == self._state and self.current is not None:
                return self.current
            self.current, self._state = None, None
            config = parse_config(read_open(fd, where), path=where)
        finally:
            os.close(fd)
        for ignored in config.ignored:
            log.debug("%s: ignored %s", where, ignored.describe())
        self.current, self._state = config, state
        return config
