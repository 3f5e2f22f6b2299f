"""A program that used a sync client and then forks (gunicorn, celery, ``multiprocessing.Pool``
on Linux) gets a child whose lookups work, within their own timeout.

The old core hung the child forever in two ways: the parent's background event loop was
dropped in the child and its cleanup waited on that loop (which has no thread there), and a
lookup in flight at the fork left an in-flight entry the child waited on without a bound. Each
case runs with ``os.fork`` and with multiprocessing's ``fork`` start method; the child reports
its answer through its exit status, and a child that does not end in time is killed and fails
the test.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from asyncauth import Chain, Credential, RegistryAuth

from ._fakes import Fixed
from ._secrets import secret
from .peers.accounts import PeerAccounts
from .peers.images import PushedImage
from .peers.registry import RegistryServer
from .security.peers import Reply, Server, bearer_challenge, token_reply

ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
CHILD_TIMEOUT = 5.0
"""The child's client timeout: its lookup must end within it."""
GUARD = 20.0
"""How long the parent waits for the child before calling it hung."""
PASSWORD = secret("pw-FORK-secret-3", user="alice")

STARTS = ["os.fork", "multiprocessing"]


def _child(fetch: Callable[[], int], expected: int) -> None:
    """Runs in the child: exit 0 when ``fetch()`` answers ``expected`` in time."""
    code = 1
    try:
        started = time.monotonic()
        status = fetch()
        took = time.monotonic() - started
        code = 0 if status == expected and took < CHILD_TIMEOUT else 2
    except BaseException:
        code = 3
    finally:
        os._exit(code)


def _run_in_child(start: str, fetch: Callable[[], int], expected: int) -> int:
    """Fork (one way or the other), run ``fetch`` in the child; its exit status."""
    if start == "multiprocessing":
        process = multiprocessing.get_context("fork").Process(target=_child, args=(fetch, expected))
        process.start()
        process.join(GUARD)
        if process.exitcode is None:
            process.kill()
            process.join()
            pytest.fail("the forked child hung")
        return process.exitcode
    pid = os.fork()
    if pid == 0:
        _child(fetch, expected)
    deadline = time.monotonic() + GUARD
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung")


@pytest.mark.parametrize("start", STARTS)
def test_a_child_forked_after_a_sync_lookup_looks_up_a_new_repository_in_time(
    start: str,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    auth = RegistryAuth(Chain([Fixed(Credential(*peer_accounts.writer))]))
    with httpx.Client(auth=auth, headers=ACCEPT, timeout=CHILD_TIMEOUT) as http:
        assert http.get(token_registry.url + token_registry_image.manifest_path).status_code == 200

    def fetch() -> int:
        with httpx.Client(auth=auth, headers=ACCEPT, timeout=CHILD_TIMEOUT) as child:
            return child.get(token_registry.url + "/v2/never/seen/manifests/v1").status_code

    assert _run_in_child(start, fetch, 404) == 0  # MANIFEST_UNKNOWN, after a token of its own


@pytest.mark.parametrize("start", STARTS)
def test_a_child_forked_while_a_lookup_is_in_flight_makes_its_own(start: str) -> None:
    """The parent's lookup waits on a token server that holds its first request; the child,
    forked meanwhile, asks for the same token and gets it (the second request is answered)."""
    with Server("registry") as registry, Server("token-server") as realm:
        registry.route("/v2/", _accepting(realm.url + "/token"))
        answered: list[int] = []
        lock = threading.Lock()

        def token(seen: object) -> Reply:
            with lock:
                answered.append(1)
                first = len(answered) == 1
            return Reply(hang=True) if first else token_reply("child-TOKEN")

        realm.route("/token", token)
        auth = RegistryAuth(Chain([Fixed(Credential("alice", PASSWORD))]))
        url = registry.url + "/v2/org/app/manifests/v1"

        def parent_lookup() -> None:
            with httpx.Client(auth=auth, headers=ACCEPT, timeout=30.0) as http, _quiet():
                http.get(url)

        parent = threading.Thread(target=parent_lookup, daemon=True)
        parent.start()
        assert realm.arrived.wait(GUARD)  # the parent's token request is in flight

        def fetch() -> int:
            with httpx.Client(auth=auth, headers=ACCEPT, timeout=CHILD_TIMEOUT) as child:
                return child.get(url).status_code

        assert _run_in_child(start, fetch, 200) == 0


def _accepting(realm: str) -> Callable[[object], Reply]:
    def answer(seen: object) -> Reply:
        if getattr(seen, "headers", {}).get("authorization") == "Bearer child-TOKEN":
            return Reply(200, [("Content-Type", "application/json")], b"{}")
        return bearer_challenge(realm)

    return answer


class _quiet:
    """The parent's hanging lookup ends with an error when the servers stop: expected."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True
