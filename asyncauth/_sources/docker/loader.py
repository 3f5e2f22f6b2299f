"""Reading the Docker config file, and reading it again only when it changed.

Finding the file and ``stat``-ing it run in a worker thread, at most once per ``check_interval``
seconds however many lookups ask (single-flight); the file is re-parsed only when its identity,
size or mtime changed, so a long-running process sees ``docker login`` without a restart.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import anyio

from ..._errors import ConfigError
from ..._singleflight import SingleFlightCache
from .configfile import DockerConfig, parse_config
from .discovery import find_config

DEFAULT_CHECK_INTERVAL = 1.0
"""Seconds between checks whether the config file changed (a ``docker login`` meanwhile)."""
MAX_CONFIG_BYTES = 16 << 20
"""A config file larger than this is refused rather than read into memory."""


def read_config(path: str | os.PathLike[str]) -> DockerConfig:
    """Read and parse one file (blocking I/O). :class:`ConfigError` if it cannot be read."""
    where = os.fspath(path)
    try:
        with open(where, "rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"{where}: cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_CONFIG_BYTES} bytes; not a Docker config")
    return parse_config(data, path=where)


_FileState = tuple[str, int, int, int, int]


class ConfigLoader:
    """Keeps the parsed config and re-reads it only when the file changed.

    Errors are never cached: a broken file raises on every lookup until it is fixed.
    ``current`` is the config read last (``None`` before the first read, or without a file).
    """

    def __init__(
        self,
        explicit: Path | None,
        candidates: tuple[tuple[Path, str], ...],
        check_interval: float,
    ) -> None:
        self.explicit = explicit
        self.candidates = candidates
        self.check_interval = check_interval
        self.current: DockerConfig | None = None
        self._state: _FileState | None = None
        self._lock = threading.Lock()
        self._flight = SingleFlightCache[DockerConfig | None](maxsize=1)

    async def load(self) -> DockerConfig | None:
        """The config as of now (``None`` when no file exists); raises ``ConfigError``."""
        return await self._flight.get(
            "config", lambda: anyio.to_thread.run_sync(self.load_sync), self._ttl
        )

    def _ttl(self, _: DockerConfig | None) -> float:
        return self.check_interval

    def load_sync(self) -> DockerConfig | None:
        """:meth:`load` for a thread (blocking I/O)."""
        with self._lock:
            path = self.explicit or find_config(self.candidates)
            if path is None:
                self.current, self._state = None, None
                return None
            where = os.fspath(path)
            try:
                st = os.stat(where)
            except OSError as exc:
                self.current, self._state = None, None
                if self.explicit is None and isinstance(exc, FileNotFoundError):
                    return None  # removed between finding and reading
                raise ConfigError(
                    f"{where}: cannot be read ({exc.strerror or type(exc).__name__})"
                ) from None
            state = (where, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if state == self._state and self.current is not None:
                return self.current
            self.current, self._state = None, None
            config = read_config(where)
            self.current, self._state = config, state
            return config
