"""Which Docker config file to read, decided from the environment as docker and podman decide.

Two slots, each filled by the first rule that applies, then the first file that exists wins:

1. docker's file: ``$DOCKER_CONFIG/config.json`` when ``DOCKER_CONFIG`` is set — and then *only*
   that: docker, go-containerregistry and containers/image never fall back to
   ``~/.docker/config.json`` behind a ``DOCKER_CONFIG``, and neither do we, since that would send
   credentials the user pointed away from; otherwise ``~/.docker/config.json``.
2. the containers files (podman, skopeo, buildah write the same ``auths`` format):
   ``$REGISTRY_AUTH_FILE`` when set — and then only that, as containers/image reads it;
   otherwise ``$XDG_RUNTIME_DIR/containers/auth.json`` (``/run/containers/<uid>/auth.json``
   when ``XDG_RUNTIME_DIR`` is unset: podman as root), then
   ``$XDG_CONFIG_HOME/containers/auth.json`` (``~/.config`` by default).

A missing file, or a directory where the file should be (what a Kubernetes optional secret mount
leaves behind), is absent and the next candidate is tried. Anything else that exists is *the*
file, even when it cannot be read: the read then says why, rather than silently falling back.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

Candidate = tuple[Path, str]
"""A file to try and the rule that named it (for messages): ``(path, "$DOCKER_CONFIG/…")``."""


def _process_uid() -> int | None:
    getuid = getattr(os, "getuid", None)
    return None if getuid is None else int(getuid())


def _docker_file(environ: Mapping[str, str], home: str | None) -> list[Candidate]:
    if docker_config := environ.get("DOCKER_CONFIG"):
        return [(Path(docker_config) / "config.json", "$DOCKER_CONFIG/config.json")]
    if home:
        return [(Path(home) / ".docker" / "config.json", "~/.docker/config.json")]
    return []


def _containers_files(
    environ: Mapping[str, str], home: str | None, uid: int | None
) -> list[Candidate]:
    if auth_file := environ.get("REGISTRY_AUTH_FILE"):
        return [(Path(auth_file), "$REGISTRY_AUTH_FILE")]
    found: list[Candidate] = []
    if runtime := environ.get("XDG_RUNTIME_DIR"):
        found.append(
            (Path(runtime) / "containers" / "auth.json", "$XDG_RUNTIME_DIR/containers/auth.json")
        )
    elif uid is not None:
        found.append((Path(f"/run/containers/{uid}/auth.json"), "/run/containers/<uid>/auth.json"))
    if xdg_config := environ.get("XDG_CONFIG_HOME"):
        found.append(
            (Path(xdg_config) / "containers" / "auth.json", "$XDG_CONFIG_HOME/containers/auth.json")
        )
    elif home:
        found.append(
            (Path(home) / ".config" / "containers" / "auth.json", "~/.config/containers/auth.json")
        )
    return found


def config_candidates(
    environ: Mapping[str, str], *, home: str | None = None, uid: int | None = None
) -> tuple[Candidate, ...]:
    """The files to try, in order, each with the rule that named it.

    ``home`` defaults to ``environ["HOME"]``; without either, the ``~`` files are not tried.
    ``uid`` (for ``/run/containers/<uid>``) defaults to the process's. Variables set to the
    empty string count as unset.
    """
    home = home or environ.get("HOME") or None
    uid = _process_uid() if uid is None else uid
    return (*_docker_file(environ, home), *_containers_files(environ, home, uid))


def find_config(candidates: tuple[Candidate, ...]) -> Path | None:
    """The first candidate that exists and is not a directory (blocking I/O: ``stat`` each)."""
    for path, _ in candidates:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            return path  # e.g. a directory we may not search: the read will say so
        if not stat.S_ISDIR(st.st_mode):
            return path
    return None
