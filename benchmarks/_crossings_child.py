"""One driver's requests, with every asyncauth module whose code runs noted (run by crossings.py).

Run as a script (``python benchmarks/_crossings_child.py``), not as ``-m benchmarks...``: its
``sys.path`` then starts with this directory, the ``PYTHONPATH`` the parent gives it, and the
installed packages, so ``asyncauth`` comes from whichever tree that ``PYTHONPATH`` names (this
repository's own ``asyncauth`` is not in this directory). It imports nothing from
``benchmarks`` or ``tests``: the parent (:mod:`benchmarks.crossings`) runs the registry and the
token issuer and sends the job as one JSON line on stdin (the password never goes on the command
line); the result is one JSON line on stdout.

How code is noted: a profile function (``sys.setprofile``, and ``threading.setprofile`` for the
threads started later, such as the sync driver's background loop or a worker thread) sees every
Python function call and every resumption of a coroutine or generator. While a request is being
recorded, each such event in an ``asyncauth`` module adds that module and that function to the
request's sets. Code that runs while a module is being
imported (its body, class bodies, decorators) is import, not the request's path: it is left out,
and the asyncauth modules first imported during the request are listed apart.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeGuard

ACCEPT = "application/vnd.oci.image.manifest.v1+json"
PACKAGE, PREFIX = "asyncauth", "asyncauth."


def _ours(module: object) -> TypeGuard[str]:
    return isinstance(module, str) and (module == PACKAGE or module.startswith(PREFIX))


class Recorder:
    """The profile function and what it noted for the request being recorded (if any).

    A frame belongs to the module its globals are (``__name__``): a function's own module, and
    for a method that ``dataclasses`` generated (``__init__``, ``__eq__``, ``__hash__``: their
    code says ``<string>``) the module of its class.
    """

    def __init__(self) -> None:
        self.current: dict[str, set[str]] | None = None
        self._importing: dict[int, int] = {}  # thread -> depth of module bodies running

    def start(self) -> None:
        self.current = {"modules": set(), "functions": set(), "imported": set()}

    def stop(self) -> dict[str, Any]:
        found, self.current = self.current, None
        assert found is not None
        return {key: sorted(values) for key, values in found.items()}

    def profile(self, frame: FrameType, event: str, arg: object) -> None:
        if event != "call" and event != "return":
            return
        code = frame.f_code
        if code.co_name == "<module>":
            self._module_body(frame, event)
            return
        current = self.current
        if current is None or event != "call" or self._importing.get(threading.get_ident()):
            return
        module = frame.f_globals.get("__name__")
        if _ours(module):
            current["modules"].add(module)
            current["functions"].add(f"{module}:{code.co_qualname}")

    def _module_body(self, frame: FrameType, event: str) -> None:
        thread = threading.get_ident()
        depth = self._importing.get(thread, 0) + (1 if event == "call" else -1)
        self._importing[thread] = max(0, depth)
        module = frame.f_globals.get("__name__")
        if event == "call" and self.current is not None and _ours(module):
            self.current["imported"].add(module)

    def install(self) -> None:
        threading.setprofile(self.profile)
        sys.setprofile(self.profile)


def _chain(job: dict[str, Any]) -> Any:
    """The benchmarks' chain: the job's username and password, nothing from this machine."""
    import asyncauth

    environ = {"HOME": job["home"], "IMGPKG_ENABLE_IAAS_AUTH": "false"}
    return asyncauth.default_chain(
        environ=environ, username=job["username"], password=job["password"]
    )


def _urls(job: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, URL): the first repository twice (cold, warm), then a second repository."""
    first, second = job["repositories"][:2]
    url = job["registry_url"] + "/v2/{}/manifests/" + job["tag"]
    return [
        ("cold", url.format(first)),
        ("warm", url.format(first)),
        ("new_repository", url.format(second)),
    ]


Request = Callable[[str], Any]
"""Sends one manifest GET; returns (status, Docker-Content-Digest)."""


def _check(label: str, status: int, digest: str | None, job: dict[str, Any]) -> None:
    if status != 200 or digest != job["digest"]:
        raise RuntimeError(f"{label}: status {status}, digest {digest}")


def _httpx_family(job: dict[str, Any]) -> tuple[Any, Request]:
    """``httpx.AsyncClient(auth=RegistryAuth())``, ``httpx2.AsyncClient(auth=asyncauth.httpx2
    .RegistryAuth())`` or ``asyncauth.create_client()`` (on the transport it picks here)."""
    import asyncauth

    driver = job["driver"]
    client: Any  # three libraries' clients
    auth: Any
    if driver == "create_client":
        client = asyncauth.create_client(chain=_chain(job), timeout=30.0, trust_env=False)
    elif driver == "httpx2":
        import httpx2

        from asyncauth.httpx2 import RegistryAuth as RegistryAuth2

        auth = RegistryAuth2(_chain(job))
        client = httpx2.AsyncClient(auth=auth, timeout=30.0, trust_env=False)
    else:
        import httpx

        auth = asyncauth.RegistryAuth(_chain(job))
        client = httpx.AsyncClient(auth=auth, timeout=30.0, trust_env=False)

    async def request(url: str) -> tuple[int, str | None]:
        response = await client.get(url, headers={"Accept": ACCEPT})
        return response.status_code, response.headers.get("docker-content-digest")

    return client.aclose, request


def _aiohttp(job: dict[str, Any]) -> tuple[Any, Request]:
    """An ``aiohttp.ClientSession`` whose only middleware is asyncauth's."""
    import aiohttp

    from asyncauth.aiohttp import RegistryAuthMiddleware

    session = aiohttp.ClientSession(middlewares=(RegistryAuthMiddleware(_chain(job)),))

    async def request(url: str) -> tuple[int, str | None]:
        async with session.get(url, headers={"Accept": ACCEPT}) as response:
            await response.read()
            return response.status, response.headers.get("Docker-Content-Digest")

    return session.close, request


async def _run_async(job: dict[str, Any], recorder: Recorder) -> dict[str, Any]:
    close, request = _aiohttp(job) if job["driver"] == "aiohttp" else _httpx_family(job)
    found: dict[str, Any] = {}
    try:
        for label, url in _urls(job):
            recorder.start()
            try:
                status, digest = await request(url)
            finally:
                found[label] = recorder.stop()
            _check(label, status, digest, job)
    finally:
        await close()
    return found


def _run_sync(job: dict[str, Any], recorder: Recorder) -> dict[str, Any]:
    """A plain ``httpx.Client(auth=RegistryAuth())``."""
    import httpx

    import asyncauth

    found: dict[str, Any] = {}
    auth = asyncauth.RegistryAuth(_chain(job))
    with httpx.Client(auth=auth, timeout=30.0, trust_env=False) as client:
        for label, url in _urls(job):
            recorder.start()
            try:
                response = client.get(url, headers={"Accept": ACCEPT})
            finally:
                found[label] = recorder.stop()
            _check(label, response.status_code, response.headers.get("docker-content-digest"), job)
    return found


def main() -> int:
    job = json.loads(sys.stdin.readline())
    import anyio

    import asyncauth

    package = Path(os.path.abspath(asyncauth.__file__)).parent
    recorder = Recorder()
    recorder.install()  # before any thread is started: every later thread is profiled too
    try:
        if job["driver"] == "httpx-sync":
            found = _run_sync(job, recorder)
        else:
            found = anyio.run(_run_async, job, recorder, backend=job["backend"])
        answer: dict[str, Any] = {"asyncauth_from": str(package), "requests": found}
    except Exception as exc:
        answer = {"asyncauth_from": str(package), "failed": f"{type(exc).__name__}: {exc}"[:500]}
    finally:
        threading.setprofile(None)
        sys.setprofile(None)
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
