"""Which Docker config file to read, decided from the environment.

The first that exists of ``$DOCKER_CONFIG/config.json``, ``~/.docker/config.json``,
``$REGISTRY_AUTH_FILE``, ``$XDG_RUNTIME_DIR/containers/auth.json`` and
``$XDG_CONFIG_HOME/containers/auth.json`` (``~/.config`` by default). podman, skopeo and buildah
write the same ``auths`` format, so their logins count too. An explicit path wins over all of them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def config_candidates(
    environ: Mapping[str, str], *, home: str | None = None
) -> tuple[tuple[Path, str], ...]:
    """The files to try, in order, each with the rule that named it (for messages).

    ``home`` defaults to ``environ["HOME"]``; without either, the ``~`` files are not tried.
    Variables set to the empty string count as unset.
    """
    home = home or environ.get("HOME") or None
    found: list[tuple[Path, str]] = []
    if docker_config := environ.get("DOCKER_CONFIG"):
        found.append((Path(docker_config) / "config.json", "$DOCKER_CONFIG/config.json"))
    if home:
        found.append((Path(home) / ".docker" / "config.json", "~/.docker/config.json"))
    if auth_file := environ.get("REGISTRY_AUTH_FILE"):
        found.append((Path(auth_file), "$REGISTRY_AUTH_FILE"))
    if runtime := environ.get("XDG_RUNTIME_DIR"):
        found.append(
            (Path(runtime) / "containers" / "auth.json", "$XDG_RUNTIME_DIR/containers/auth.json")
        )
    if xdg_config := environ.get("XDG_CONFIG_HOME"):
        found.append(
            (Path(xdg_config) / "containers" / "auth.json", "$XDG_CONFIG_HOME/containers/auth.json")
        )
    elif home:
        found.append(
            (Path(home) / ".config" / "containers" / "auth.json", "~/.config/containers/auth.json")
        )
    return tuple(found)


def find_config(candidates: tuple[tuple[Path, str], ...]) -> Path | None:
    """The first candidate that exists (blocking I/O: a ``stat`` per candidate).

    A file that exists but cannot be read is still *the* file: reading it will then raise a
    :class:`ConfigError` rather than silently fall back to the next one.
    """
    for path, _ in candidates:
        try:
            os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            pass  # e.g. a directory we may not search: the read will say so
        return path
    return None
