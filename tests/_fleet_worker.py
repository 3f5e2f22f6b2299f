"""One process of a test fleet: ``python -m tests._fleet_worker '<json>'`` (cwd: the repository).

Why a real process: a fleet is many interpreters that share nothing but Redis (and the token
server); threads or tasks in the test process would share the library's in-process caches and
prove nothing about the store. The worker uses the public API only, and configures the store
the way a fleet does without code changes: through ``ASYNCAUTH_TOKEN_STORE`` and
``ASYNCAUTH_TOKEN_STORE_KEY`` in its environment (the test sets them, or leaves them out).

The JSON argument:

* ``mode``: ``asyncio``, ``trio`` (an async client, ``create_client``) or ``sync``
  (``create_sync_client`` from a thread pool);
* ``phases``: lists of URLs to GET; after each phase but the last the worker prints
  ``{"phase": i}`` and waits for a line on stdin (the test breaks Redis in between);
* ``concurrency``: requests in flight at once;
* ``agent``: the ``User-Agent`` of its requests (a test tells the workers apart in the
  registry's access log);
* or ``resolve``: an image reference to resolve with ``default_chain()`` (the clouds' path);
  or ``resolve_all``: several, resolved at the same time by one chain.

It prints one JSON line per phase and a last one with what happened: statuses, failures (type
and message of each exception, no secrets: the tests check), the store warnings it logged, and
when it finished. The registry user and password come from ``FLEET_USER``/``FLEET_PASSWORD``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import anyio.to_thread

from asyncauth import (
    Chain,
    FlagsResolver,
    RegistryAuth,
    create_client,
    create_sync_client,
    default_chain,
)

ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _auth() -> RegistryAuth:
    chain = Chain(
        [FlagsResolver(username=os.environ["FLEET_USER"], password=os.environ["FLEET_PASSWORD"])]
    )
    return RegistryAuth(chain)


def _headers(spec: dict[str, Any]) -> dict[str, str]:
    return {**ACCEPT, "User-Agent": spec["agent"]} if "agent" in spec else ACCEPT


def _say(data: dict[str, Any]) -> None:
    print(json.dumps(data), flush=True)


def _outcome(statuses: Counter[int], failures: list[str], records: _Records) -> dict[str, Any]:
    return {
        "statuses": {str(k): v for k, v in statuses.items()},
        "failures": failures,
        "store_failed": sum("shared token store failed" in m for m in records.messages),
        "store_back": sum("answers again" in m for m in records.messages),
        "warnings": records.messages,
        "finished_at": time.time(),
    }


async def _run_async(spec: dict[str, Any], records: _Records) -> dict[str, Any]:
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    limiter = anyio.CapacityLimiter(spec.get("concurrency", 8))
    async with create_client(auth=_auth(), timeout=30.0, headers=_headers(spec)) as client:

        async def get(url: str) -> None:
            async with limiter:
                try:
                    statuses[(await client.get(url)).status_code] += 1
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")

        phases = spec["phases"]
        for index, urls in enumerate(phases):
            async with anyio.create_task_group() as tg:
                for url in urls:
                    tg.start_soon(get, url)
            if index < len(phases) - 1:
                _say({"phase": index})
                await anyio.to_thread.run_sync(sys.stdin.readline)
    return _outcome(statuses, failures, records)


def _run_sync(spec: dict[str, Any], records: _Records) -> dict[str, Any]:
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    with create_sync_client(auth=_auth(), timeout=30.0, headers=_headers(spec)) as client:

        def get(url: str) -> None:
            try:
                statuses[client.get(url).status_code] += 1
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

        phases = spec["phases"]
        with ThreadPoolExecutor(spec.get("concurrency", 8)) as pool:
            for index, urls in enumerate(phases):
                list(pool.map(get, urls))
                if index < len(phases) - 1:
                    _say({"phase": index})
                    sys.stdin.readline()
    return _outcome(statuses, failures, records)


async def _resolve(reference: str, records: _Records) -> dict[str, Any]:
    resolution = await default_chain().resolve(reference)
    password = resolution.credential.password or ""
    return {
        "source": resolution.source,
        "trace": [str(entry) for entry in resolution.trace],
        "password_sha256": hashlib.sha256(password.encode()).hexdigest(),
        "store_failed": sum("shared token store failed" in m for m in records.messages),
        "finished_at": time.time(),
    }


async def _resolve_all(references: list[str], records: _Records) -> dict[str, Any]:
    chain = default_chain()
    found: dict[str, list[str]] = {}

    async def one(reference: str) -> None:
        resolution = await chain.resolve(reference)
        password = resolution.credential.password or ""
        digest = hashlib.sha256(password.encode()).hexdigest()
        found[reference] = [resolution.source or "", digest]

    async with anyio.create_task_group() as tg:
        for reference in references:
            tg.start_soon(one, reference)
    return {"resolved": found, "warnings": records.messages, "finished_at": time.time()}


def main() -> None:
    spec = json.loads(sys.argv[1])
    if os.environ.get("ASYNCAUTH_TOKEN_STORE"):
        # Loaded up front (the store loads it at its first call) so that a test timing the
        # fleet measures waiting, not a busy machine importing a library in eight processes.
        import coredis  # noqa: F401
    records = _Records()
    logging.getLogger("asyncauth").addHandler(records)
    mode = spec.get("mode", "asyncio")
    if "resolve" in spec:
        result = anyio.run(_resolve, spec["resolve"], records, backend=mode)
    elif "resolve_all" in spec:
        result = anyio.run(_resolve_all, spec["resolve_all"], records, backend=mode)
    elif mode == "sync":
        result = _run_sync(spec, records)
    else:
        result = anyio.run(_run_async, spec, records, backend=mode)
    _say({"done": True, **result})


if __name__ == "__main__":
    main()
