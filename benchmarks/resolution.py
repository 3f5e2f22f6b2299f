"""How much does deciding *which* credential to send cost?

Measured in a process of its own, whose environment points every cloud SDK at a loopback
"black hole" (a socket that accepts connections and never answers) and whose every socket
``connect`` is counted — and refused unless it goes to 127.0.0.0/8, so nothing here can reach a
real metadata server:

env chain
    ``default_chain`` with IaaS off and 50 ``IMGPKG_REGISTRY_*`` sets, resolving a Docker Hub
    reference: latency (sequential) and throughput (10,000 concurrent), asyncio and trio.
(a) Docker Hub, IaaS on, no cloud reachable
    ``default_chain`` with all four cloud resolvers (their HTTP on a transport that sends every
    host to the black hole): median latency, fresh chain per resolve ("cold") and one chain
    ("warm"), and the number of network connections attempted (must be zero).
(b) ECR, every metadata endpoint black-holed
    the same chain, configured ``timeout``: an ECR reference makes the ECR resolver wait for
    IMDS, which never answers; the resolve must end at the timeout.
(c) the same resolvers one after another, imgpkg style
    imgpkg asks its keychains in turn and each probes its metadata server; here each cloud
    resolver is run in turn on a reference of its own cloud (so that it probes), each under the
    same timeout, then the other sources: the sum is what a sequential chain pays.
single-flight
    10,000 concurrent resolves over 50 registries — 25 whose Docker config entry names a
    credential helper (a script that counts its runs) and 25 ECR registries (25 accounts) whose
    ``GetAuthorizationToken`` goes to a loopback ECR stand-in that counts calls — expecting
    exactly 25 helper runs, 25 ECR requests sent (counted by the transport) and answered
    (counted by the stand-in), and every resolve answered by its source. A resolve that ends
    with no source is counted with its trace's failures, so a miss says why.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests/ is part of the repository, not of the package
    sys.path.insert(0, str(ROOT))

from tests.peers.clouds import BlackHole  # noqa: E402

HELPER = "benchcount"
ECR_REGION = "us-west-2"
REGISTRIES = 50

# --- peers in the harness process ---------------------------------------------------------------
# BlackHole (accepts, never answers) is the test suite's: tests/peers/clouds.py.


class _Server(ThreadingHTTPServer):
    """A threaded server whose listen queue takes a burst of new connections.

    The single-flight run's 25 ECR leaders each open a connection at the same instant.
    ``socketserver``'s default queue is 5: the kernel overflowed it and reset some of those
    connections before the server saw a byte, so their lookups failed (and all their waiters
    with them) and the stand-in counted fewer calls than were made. Real ECR is not five
    connections deep; the stand-in must not be either.
    """

    daemon_threads = True
    request_queue_size = 256


class ECRStandIn:
    """ECR's JSON API, ``GetAuthorizationToken`` only; ``GET /count`` says how often it ran."""

    TARGET = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"

    def __init__(self) -> None:
        stand_in = self
        self.calls = 0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any, kind: str) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._reply(200, {"calls": stand_in.calls}, "application/json")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("X-Amz-Target") != ECRStandIn.TARGET:
                    self._reply(400, {"__type": "UnknownOperationException"}, "application/json")
                    return
                with stand_in._lock:
                    stand_in.calls += 1
                ids = json.loads(body or b"{}").get("registryIds") or ["000000000000"]
                token = base64.b64encode(b"AWS:bench-ecr-password").decode()
                self._reply(
                    200,
                    {
                        "authorizationData": [
                            {
                                "authorizationToken": token,
                                "expiresAt": time.time() + 12 * 3600,
                                "proxyEndpoint": f"https://{ids[0]}.dkr.ecr.{ECR_REGION}"
                                ".amazonaws.com",
                            }
                        ]
                    },
                    "application/x-amz-json-1.1",
                )

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ECRStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


HELPER_SCRIPT = """#!/bin/sh
# A credential helper that counts its runs (one line per run) and answers for any server.
echo run >> "$BENCH_HELPER_COUNT"
read -r server
printf '{"ServerURL":"%s","Username":"helper-user","Secret":"helper-secret"}' "$server"
"""


def helper_registries() -> list[str]:
    return [f"reg-{i:02d}.helper.bench.test" for i in range(REGISTRIES // 2)]


def ecr_registries() -> list[str]:
    return [
        f"{100000000000 + i}.dkr.ecr.{ECR_REGION}.amazonaws.com"
        for i in range(REGISTRIES - REGISTRIES // 2)
    ]


def run(*, quick: bool = False) -> dict[str, Any]:
    """Start the peers, run the worker in a prepared environment, return its numbers."""
    with (
        tempfile.TemporaryDirectory(prefix="asyncauth-bench-resolution-") as tmp,
        BlackHole() as hole,
        ECRStandIn() as ecr,
    ):
        work = Path(tmp)
        bin_dir = work / "bin"
        bin_dir.mkdir()
        helper = bin_dir / f"docker-credential-{HELPER}"
        helper.write_text(HELPER_SCRIPT)
        helper.chmod(0o755)
        (work / "home").mkdir()
        (work / "docker").mkdir()
        (work / "docker" / "config.json").write_text(
            json.dumps({"credHelpers": dict.fromkeys(helper_registries(), HELPER)})
        )
        (work / "empty").write_text("")
        (work / "gcloud").mkdir()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(work / "home"),
            "PYTHONPATH": str(ROOT),
            "LANG": "C.UTF-8",
            # AWS: no identity in files; IMDS is the black hole.
            "AWS_SHARED_CREDENTIALS_FILE": str(work / "empty"),
            "AWS_CONFIG_FILE": str(work / "empty"),
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://{hole.address}/",
            # Google: no ADC file; the metadata server is the black hole.
            "CLOUDSDK_CONFIG": str(work / "gcloud"),
            "GCE_METADATA_HOST": hole.address,
            "GCE_METADATA_IP": hole.address,
            # Azure: managed identity's IMDS goes through the transport (to the black hole).
            "NO_PROXY": "*",
        }
        params = {
            "quick": quick,
            "black_hole": hole.address,
            "ecr": ecr.address,
            "work": str(work),
            "helper_count": str(work / "helper-runs"),
            "docker_config": str(work / "docker"),
            "path": f"{bin_dir}:{env['PATH']}",
        }
        argv = [sys.executable, "-m", "benchmarks.resolution"]
        done = subprocess.run(
            argv,
            input=json.dumps(params),
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"resolution worker failed:\n{done.stderr[-4000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["black_hole_connections_total"] = hole.accepted
        return result


# --- the worker: runs in the prepared environment -----------------------------------------------

_CONNECTS: list[str] = []


def _count_connections() -> None:
    """Count every socket connect in this process; refuse any that leaves 127.0.0.0/8."""
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def check(address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else str(address)
        _CONNECTS.append(str(host))
        if isinstance(address, tuple) and not str(host).startswith("127."):
            raise OSError(f"benchmark: refusing a connection to {host} (loopback only)")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return original_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]


def _routing_transport(target: str) -> Any:
    """Every request, whatever its host, to ``target`` over plain HTTP; counts them."""
    import httpx

    class Routing(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.calls = 0
            self._inner = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            self.calls += 1
            host, _, port = target.partition(":")
            request.url = request.url.copy_with(scheme="http", host=host, port=int(port))
            return await self._inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self._inner.aclose()

    return Routing()


def _env_sets(sets: int = 50) -> dict[str, str]:
    environ = {"IMGPKG_ENABLE_IAAS_AUTH": "false"}
    for i in range(sets):
        host = f"*.team{i}.example.com" if i % 2 else f"registry{i}.example.com"
        environ |= {
            f"IMGPKG_REGISTRY_HOSTNAME_{i}": host,
            f"IMGPKG_REGISTRY_USERNAME_{i}": f"user{i}",
            f"IMGPKG_REGISTRY_PASSWORD_{i}": f"password{i}",
        }
    return environ


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


async def _env_chain(samples: int, count: int) -> dict[str, float]:
    import anyio

    from asyncauth import default_chain

    chain = default_chain(environ=_env_sets())
    await chain.resolve("alpine")
    latencies = []
    for _ in range(samples):
        started = time.perf_counter()
        await chain.resolve("alpine")
        latencies.append(time.perf_counter() - started)
    chain = default_chain(environ=_env_sets())
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(chain.resolve, f"registry{(i % 25) * 2}.example.com/app{i % 7}")
    return {
        "latency_ms": statistics.median(latencies) * 1000,
        "resolves_per_s": count / (time.perf_counter() - started),
    }


def _iaas_environ(params: dict[str, Any], **extra: str) -> dict[str, str]:
    return {
        "HOME": str(Path(params["work"]) / "home"),
        "PATH": params["path"],
        "BENCH_HELPER_COUNT": params["helper_count"],
        **extra,
    }


async def _docker_hub(params: dict[str, Any], samples: int) -> dict[str, Any]:
    """(a): Docker Hub reference, IaaS on, no cloud reachable."""
    from asyncauth import default_chain

    transport = _routing_transport(params["black_hole"])
    environ = _iaas_environ(params)
    chain = default_chain(environ=environ, transport=transport)
    await chain.resolve("alpine")  # imports, first task group: not what a lookup costs
    before = len(_CONNECTS)
    cold, warm = [], []
    trace: list[str] = []
    for _ in range(samples):
        chain = default_chain(environ=environ, transport=transport)
        started = time.perf_counter()
        resolution = await chain.resolve("docker.io/library/alpine:3.20")
        cold.append(time.perf_counter() - started)
        trace = [f"{e.resolver}: {e.outcome}" for e in resolution.trace]
    for _ in range(samples):
        started = time.perf_counter()
        await chain.resolve("docker.io/library/alpine:3.20")
        warm.append(time.perf_counter() - started)
    return {
        "cold_ms": statistics.median(cold) * 1000,
        "warm_ms": statistics.median(warm) * 1000,
        "network_connections": len(_CONNECTS) - before,
        "transport_requests": transport.calls,
        "resolvers": len(chain.resolvers),
        "trace": trace,
    }


async def _ecr_black_holed(params: dict[str, Any], limit: float) -> dict[str, Any]:
    """(b): ECR reference, every metadata endpoint black-holed, chain timeout ``limit``."""
    from asyncauth import default_chain

    transport = _routing_transport(params["black_hole"])
    chain = default_chain(environ=_iaas_environ(params), transport=transport, timeout=limit)
    started = time.perf_counter()
    resolution = await chain.resolve(f"{ecr_registries()[0]}/team/app:1")
    took = time.perf_counter() - started
    ecr = next(e for e in resolution.trace if e.resolver == "ecr")
    return {"seconds": took, "ecr_outcome": str(ecr.outcome), "ecr_detail": ecr.detail}


async def _sequential(params: dict[str, Any], limit: float) -> dict[str, Any]:
    """(c): every resolver in turn, each cloud on a reference of its own so that it probes."""
    import anyio

    from asyncauth import default_chain

    transport = _routing_transport(params["black_hole"])
    chain = default_chain(environ=_iaas_environ(params), transport=transport, timeout=limit)
    own = {
        "ecr": f"{ecr_registries()[0]}/team/app:1",
        "google": "europe-west1-docker.pkg.dev/project/repo/app",
        "azure": "myregistry.azurecr.io/team/app",
        "github": "ghcr.io/octo/app",
    }
    from asyncauth import Resource

    parts: dict[str, float] = {}
    started = time.perf_counter()
    for resolver in chain.resolvers:
        reference = own.get(resolver.name, f"{ecr_registries()[0]}/team/app:1")
        one = time.perf_counter()
        with anyio.move_on_after(limit):
            try:
                await resolver.resolve(Resource.parse(reference))
            except Exception as exc:  # a failing source is the next source's turn, as in a chain
                del exc
        parts[resolver.name] = time.perf_counter() - one
    return {"seconds": time.perf_counter() - started, "parts": parts}


def _counts(params: dict[str, Any]) -> tuple[int, int]:
    """(helper runs, ECR calls) so far: the helper's count file, the stand-in's counter."""
    import httpx

    helper_file = Path(params["helper_count"])
    helper = len(helper_file.read_text().splitlines()) if helper_file.exists() else 0
    with httpx.Client(trust_env=False) as client:
        ecr = int(client.get(f"http://{params['ecr']}/count").json()["calls"])
    return helper, ecr


async def _single_flight(params: dict[str, Any], count: int) -> dict[str, Any]:
    """10,000 concurrent resolves over 50 registries: helper runs and ECR calls."""
    import anyio

    from asyncauth import default_chain

    helper_before, ecr_before = await anyio.to_thread.run_sync(_counts, params)
    transport = _routing_transport(params["ecr"])
    environ = _iaas_environ(params, DOCKER_CONFIG=params["docker_config"])
    chain = default_chain(environ=environ, transport=transport)
    registries = helper_registries() + ecr_registries()
    sources: dict[str, int] = {}
    failures: dict[str, int] = {}

    async def one(i: int) -> None:
        resolution = await chain.resolve(f"{registries[i % len(registries)]}/team/app{i % 7}")
        sources[str(resolution.source)] = sources.get(str(resolution.source), 0) + 1
        if resolution.source is None:  # a miss: say which source failed, and how
            why = "; ".join(f"{e.resolver} {e.outcome}: {e.detail}" for e in resolution.failures)
            failures[why or "no source matched"] = failures.get(why or "no source matched", 0) + 1

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(one, i)
    took = time.perf_counter() - started
    helper_after, ecr_after = await anyio.to_thread.run_sync(_counts, params)
    return {
        "resolves": count,
        "registries": len(registries),
        "seconds": took,
        "resolves_per_s": count / took,
        "helper_runs": helper_after - helper_before,
        "ecr_requests": transport.calls,
        "ecr_calls": ecr_after - ecr_before,
        "expected_helper_runs": len(helper_registries()),
        "expected_ecr_calls": len(ecr_registries()),
        "sources": sources,
        "no_source": sum(failures.values()),
        "failures": failures,
    }


def _worker() -> int:
    import anyio

    params = json.loads(sys.stdin.read())
    quick = params["quick"]
    _count_connections()
    rounds = 2 if quick else 3
    samples, concurrent = (100, 1_000) if quick else (500, 2_000)
    resolves = 2_000 if quick else 10_000
    timeout = 0.5 if quick else 1.0
    backends = ("asyncio", "trio")
    env_chain: dict[str, list[dict[str, float]]] = {b: [] for b in backends}
    hub: dict[str, list[dict[str, Any]]] = {b: [] for b in backends}
    black: list[dict[str, Any]] = []
    sequential: list[dict[str, Any]] = []
    for round_ in range(rounds):
        for backend in backends:  # interleaved, so drift hits both alike
            env_chain[backend].append(anyio.run(_env_chain, samples, concurrent, backend=backend))
            hub[backend].append(anyio.run(_docker_hub, params, samples // 5, backend=backend))
        backend = backends[round_ % 2]
        black.append(
            anyio.run(_ecr_black_holed, params, timeout, backend=backend) | {"on": backend}
        )
        sequential.append(
            anyio.run(_sequential, params, timeout, backend=backend) | {"on": backend}
        )
    # The single-flight run needs an AWS identity (from the environment) for ECR.
    os.environ |= {"AWS_ACCESS_KEY_ID": "AKIABENCHMARK0000000", "AWS_SECRET_ACCESS_KEY": "bench"}
    flights = {b: anyio.run(_single_flight, params, resolves, backend=b) for b in backends}
    b_median = statistics.median(r["seconds"] for r in black)
    c_median = statistics.median(r["seconds"] for r in sequential)
    result = {
        "rounds": rounds,
        "timeout_s": timeout,
        "env_chain": {
            b: {
                "sets": 50,
                "samples": samples,
                "concurrent": concurrent,
                "latency_ms": _spread([r["latency_ms"] for r in rows]),
                "resolves_per_s": _spread([r["resolves_per_s"] for r in rows]),
            }
            for b, rows in env_chain.items()
        },
        "docker_hub": {
            b: {
                "samples": samples // 5,
                "cold_ms": _spread([r["cold_ms"] for r in rows]),
                "warm_ms": _spread([r["warm_ms"] for r in rows]),
                "network_connections": sum(r["network_connections"] for r in rows),
                "transport_requests": sum(r["transport_requests"] for r in rows),
                "resolvers": rows[0]["resolvers"],
                "trace": rows[0]["trace"],
            }
            for b, rows in hub.items()
        },
        "ecr_black_holed": {"runs": black, "seconds": _spread([r["seconds"] for r in black])},
        "sequential": {
            "runs": sequential,
            "seconds": _spread([r["seconds"] for r in sequential]),
        },
        "sequential_over_concurrent": c_median / b_median,
        "iaas_resolvers": 4,
        "single_flight": flights,
        "non_loopback_connections": [h for h in _CONNECTS if not h.startswith("127.")],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_worker())
