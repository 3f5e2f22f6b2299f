"""The Docker config source on a hostile machine: every wait ends, nothing runs that should not.

Each test here failed on the code before it (issue 11): a FIFO in place of ``config.json`` hung
the lookup beyond any timeout; a helper's grandchild that kept stdout open survived the helper
timeout; an empty ``PATH`` entry ran a helper from the current directory; a ``user:PASSWORD@``
key put the password in the error.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from asyncauth import Chain, ConfigError, Credential, ResolverError, Resource
from asyncauth._sources.docker.resolver import DockerConfigResolver

from ._assertions import assert_hidden
from ._secrets import secret
from .test_dockerconfig import Helpers, reaped, wait_gone

PASSWORD = secret("Hunter2-PASSWORD-9Zq")
SECRET = secret("Pa55-w0rd-SECRET-7Qx")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def helpers(tmp_path: Path) -> Helpers:
    return Helpers(tmp_path)


# --- a FIFO where the file should be -------------------------------------------------------------


@contextlib.contextmanager
def writer_after(path: Path, delay: float) -> object:
    """After ``delay`` seconds, open ``path`` for writing and close it at once.

    It rescues a reader stuck opening the FIFO (the old code), so that a regression fails the
    test instead of hanging the suite. It never blocks itself: with no reader it retries until
    the block ends.
    """
    stop = threading.Event()

    def rescue() -> None:
        if stop.wait(delay):
            return
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: nobody has it open for reading
                    return
                stop.wait(0.05)
                continue
            os.close(fd)
            return

    thread = threading.Thread(target=rescue, daemon=True)
    thread.start()
    try:
        yield None
    finally:
        stop.set()
        thread.join(5)


async def test_a_fifo_as_the_config_file_is_a_config_error_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    resolver = DockerConfigResolver(config_path=fifo, environ={})
    started = time.monotonic()
    with writer_after(fifo, 3.0), pytest.raises(ConfigError, match=r"config\.json: is a FIFO"):
        await resolver.resolve(Resource.parse("ghcr.io/o/a"))
    assert time.monotonic() - started < 2.5, "the lookup waited for a writer"


async def test_a_discovered_fifo_is_a_config_error_too(tmp_path: Path) -> None:
    (tmp_path / "dc").mkdir()
    fifo = tmp_path / "dc" / "config.json"
    os.mkfifo(fifo)
    chain = Chain([DockerConfigResolver(environ={"DOCKER_CONFIG": str(tmp_path / "dc")})])
    started = time.monotonic()
    with writer_after(fifo, 3.0), pytest.raises(ConfigError, match="not a regular file"):
        await chain.resolve("ghcr.io/o/a")
    assert time.monotonic() - started < 2.5, "the lookup waited for a writer"


async def test_dev_null_as_the_auth_file_is_an_empty_config() -> None:
    """``REGISTRY_AUTH_FILE=/dev/null`` is how people say "no credentials" to podman."""
    resolver = DockerConfigResolver(environ={"REGISTRY_AUTH_FILE": os.devnull})
    assert await resolver.resolve(Resource.parse("ghcr.io/o/a")) is None


# --- helper processes --------------------------------------------------------------------------


async def test_a_grandchild_holding_stdout_is_killed_at_the_helper_timeout(
    helpers: Helpers,
) -> None:
    """The helper answers and exits; a process it started keeps stdout open. Reading stops at
    the timeout, the whole group is killed and the helper reaped."""
    helpers.write(
        "leaky",
        f"""cat >/dev/null
echo $$ > '{helpers.root}/helper.pid'
sleep 60 &
echo $! > '{helpers.root}/child.pid'
printf '{{"Username":"u","Secret":"s"}}'
exit 0
""",
    )
    resolver = helpers.resolver({"credsStore": "leaky"}, helper_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ResolverError, match=r"kept its output open") as caught:
        await resolver.resolve(Resource.parse("ghcr.io/o/a"))
    assert "0.5 s" in str(caught.value)
    assert time.monotonic() - started < 5
    helper_pid = int((helpers.root / "helper.pid").read_text())
    child_pid = int((helpers.root / "child.pid").read_text())
    assert reaped(helper_pid), "the helper was not reaped"
    assert await wait_gone(child_pid), "the helper's grandchild outlived the lookup"


@pytest.mark.parametrize("path", [":{bin}", "{bin}:", "{bin}::.", "bin:{bin}", ".:{bin}"])
async def test_empty_and_relative_path_entries_never_run_a_helper_from_the_cwd(
    helpers: Helpers, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """``PATH=":/usr/bin"`` means the current directory to execvp; a helper is looked up in
    the absolute directories only, so a file dropped in the cwd is never run."""
    cwd = helpers.root / "cwd"
    (cwd / "bin").mkdir(parents=True)
    for where in (cwd, cwd / "bin"):
        script = where / "docker-credential-planted"
        script.write_text(f"#!/bin/sh\ntouch '{helpers.root}/ran'\necho '{{}}'\n")
        script.chmod(0o755)
    monkeypatch.chdir(cwd)
    environ = {"PATH": path.format(bin="/usr/bin:/bin"), "HOME": str(helpers.home)}
    config = helpers.config({"credHelpers": {"ghcr.io": "planted"}})
    resolver = DockerConfigResolver(config_path=config, environ=environ)
    with pytest.raises(ConfigError, match="docker-credential-planted is not installed"):
        await resolver.resolve(Resource.parse("ghcr.io/o/a"))
    assert not (helpers.root / "ran").exists(), "a helper ran from the current directory"


async def test_the_helper_found_is_run_by_its_absolute_path(helpers: Helpers) -> None:
    helpers.write("where", 'cat >/dev/null\nprintf \'{"Username":"%s","Secret":"s"}\' "$0"\n')
    resolver = helpers.resolver({"credsStore": "where"})
    found = await resolver.resolve(Resource.parse("ghcr.io/o/a"))
    assert found == Credential(str(helpers.bin / "docker-credential-where"), "s")


# --- secrets written where a registry belongs -----------------------------------------------------


async def test_a_user_password_key_never_shows_the_password(
    helpers: Helpers, caplog: pytest.LogCaptureFixture
) -> None:
    doc = {
        "auths": {
            f"robot:{PASSWORD}@ghcr.io": {"auth": b64(f"robot:{SECRET}")},
            f"https://robot:{PASSWORD}@quay.io/v2/": {},
            f"robot:pa/{PASSWORD}@gcr.io/team": {},
            "docker.io": {"auth": b64(f"hub:{SECRET}")},
        },
        "credHelpers": {f"robot:{PASSWORD}@ecr.example": "ecr-login"},
    }
    resolver = helpers.resolver(doc)
    with caplog.at_level(logging.DEBUG, logger="asyncauth"):
        for reference in ("ghcr.io/o/a", "quay.io/o/a", "gcr.io/team/a", "ecr.example/x"):
            assert await resolver.resolve(Resource.parse(reference)) is None
            assert_hidden(str(resolver.explain(Resource.parse(reference))), PASSWORD)
        resolution = await Chain([resolver]).resolve("alpine")
    assert resolution.credential == Credential("hub", SECRET)
    detail = resolution.trace[0].detail or ""
    assert "ignored" in detail
    assert '"****@ghcr.io"' in detail
    texts = [detail, repr(resolver), repr(await resolver.load()), repr(resolution), caplog.text]
    for text in texts:
        assert_hidden(text, PASSWORD, SECRET, "pa/" + PASSWORD, where="message")
    assert caplog.text.count("****@ghcr.io") == 1, "reported once, however many lookups"


async def test_a_user_password_key_as_the_only_file_key_through_the_chain(
    helpers: Helpers,
) -> None:
    resolver = helpers.resolver({"auths": {f"u:{PASSWORD}@ghcr.io": {"auth": b64("u:x")}}})
    resolution = await Chain([resolver]).resolve("ghcr.io/o/a")
    assert resolution.credential.is_anonymous
    assert_hidden(repr(resolution), PASSWORD, where="resolution")
    assert_hidden(str(resolver.explain(Resource.parse("ghcr.io/o/a"))), PASSWORD)


# --- the bounds --------------------------------------------------------------------------------


def test_the_chain_bound_covers_the_read_and_the_helper() -> None:
    resolver = DockerConfigResolver(environ={}, helper_timeout=2.0, config_read_timeout=1.0)
    assert resolver.timeout > 3.0
    with pytest.raises(ValueError, match="config_read_timeout"):
        DockerConfigResolver(environ={}, config_read_timeout=0)
