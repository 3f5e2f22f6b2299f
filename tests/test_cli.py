"""The ``asyncauth`` command, run as users run it: a real process."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ._assertions import assert_hidden
from ._secrets import secret
from ._signals import default_sigint
from .peers import PeerAccounts, PushedImage, RegistryServer, TokenIssuer

SECRET = secret("pw-SECRET-42")


def run(
    args: list[str], tmp_path: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),  # no ~/.docker/config.json of the developer's leaks in
        "IMGPKG_ENABLE_IAAS_AUTH": "false",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "asyncauth", *args],
        env=environ,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


ENV = {
    "IMGPKG_REGISTRY_HOSTNAME_0": "docker.io",
    "IMGPKG_REGISTRY_USERNAME_0": "alice",
    "IMGPKG_REGISTRY_PASSWORD_0": SECRET,
}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_explain_shows_source_and_trace(tmp_path: Path, backend: str) -> None:
    result = run(["--backend", backend, "explain", "alpine"], tmp_path, ENV)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "index.docker.io/library/alpine" in out
    assert "source:     env" in out
    assert "basic alice:****" in out
    assert "IMGPKG_REGISTRY_HOSTNAME_0=docker.io" in out
    assert "flags" in out
    assert " ms" in out
    assert_hidden(out + result.stderr, SECRET, where="CLI output")


def test_explain_json(tmp_path: Path) -> None:
    result = run(["explain", "--json", "docker.io/library/alpine:3"], tmp_path, ENV)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["source"] == "env"
    assert data["credential"] == {"kind": "basic", "username": "alice"}
    assert [e["resolver"] for e in data["trace"]][:1] == ["env"]
    assert data["trace"][0]["outcome"] == "matched"
    assert isinstance(data["trace"][0]["duration_ms"], float)
    assert_hidden(result.stdout, SECRET, where="CLI JSON")


def test_explain_with_flags_and_password_stdin(tmp_path: Path) -> None:
    result = run(
        ["explain", "--json", "--username", "bob", "--password-stdin", "quay.io/org/app"],
        tmp_path,
        stdin=SECRET + "\n",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["source"], data["credential"]["username"]) == ("flags", "bob")
    assert_hidden(result.stdout + result.stderr, SECRET, where="CLI output")


def test_explain_token_and_anon(tmp_path: Path) -> None:
    result = run(["explain", "--json", "--token", "tok-SECRET", "gcr.io/a"], tmp_path)
    assert json.loads(result.stdout)["credential"]["kind"] == "registry_token"
    assert_hidden(result.stdout, "tok-SECRET", where="CLI output")
    result = run(["explain", "--json", "--anon", "gcr.io/a"], tmp_path)
    assert json.loads(result.stdout)["credential"]["kind"] == "anonymous"
    assert json.loads(result.stdout)["source"] == "flags"


def test_no_match_is_anonymous(tmp_path: Path) -> None:
    result = run(["explain", "gcr.io/a"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "none (no source matched: anonymous)" in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["explain", "alpine"], {"IMGPKG_REGISTRY_HOSTNAM_0": "x"}, "IMGPKG_REGISTRY_HOSTNAM_0"),
        (
            ["explain", "alpine"],
            {**ENV, "IMGPKG_REGISTRY_HOSTNAME_0": "http://[::1]:namedport"},
            "IMGPKG_REGISTRY_HOSTNAME_0",
        ),
        (["explain", "https://gcr.io/a"], {}, "URL scheme"),
        (["explain", "--username", "u", "gcr.io/a"], {}, "password"),
    ],
)
def test_config_errors_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], needle: str
) -> None:
    result = run(args, tmp_path, env)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, "expected one line, not a traceback"
    assert lines[0].startswith("asyncauth: error: ")
    assert needle in lines[0]
    assert_hidden(result.stderr, SECRET, where="CLI error")


def test_empty_password_stdin(tmp_path: Path) -> None:
    result = run(["explain", "--username", "u", "--password-stdin", "gcr.io/a"], tmp_path, stdin="")
    assert result.returncode == 2
    assert "--password-stdin" in result.stderr


def test_in_process_main(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncauth._cli import main

    for name in list(os.environ):
        if name.startswith("IMGPKG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("IMGPKG_ENABLE_IAAS_AUTH", "false")
    assert main(["explain", "--anon", "gcr.io/a"]) == 0
    assert "source:     flags" in capsys.readouterr().out


# --- version, and no traceback for any user mistake ----------------------------------------------


def test_version(tmp_path: Path) -> None:
    import asyncauth
    from asyncauth._cli import main

    result = run(["--version"], tmp_path)
    assert (result.returncode, result.stdout) == (0, f"asyncauth {asyncauth.__version__}\n")
    assert main(["--version"]) == 0  # in-process too: a status, not SystemExit


def assert_one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("asyncauth: error: ")
    assert needle in result.stderr


@pytest.mark.parametrize("value", ["0", "-1", "-0.5", "nan", "inf", "soon"])
def test_timeout_must_be_a_positive_number(tmp_path: Path, value: str) -> None:
    result = run(["explain", "--timeout", value, "alpine"], tmp_path)
    assert result.returncode == 2
    assert_one_line_error(result, "argument --timeout: must be a positive number of seconds")
    result = run(["token", "--json", f"--timeout={value}", "alpine"], tmp_path)
    assert result.returncode == 2
    assert json.loads(result.stderr)["error"]["type"] == "UsageError"


BLOCK_TRIO = '''
import sys


class BlockTrio:
    """Makes this interpreter behave as if trio were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "trio" or name.startswith("trio."):
            raise ImportError(f"No module named {name!r}")
        return None


sys.meta_path.insert(0, BlockTrio())
'''


def test_backend_trio_without_trio_names_the_extra(tmp_path: Path) -> None:
    blocker = tmp_path / "no-trio"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_TRIO)
    env = {"PYTHONPATH": str(blocker)}
    probe = subprocess.run(
        [sys.executable, "-c", "import trio"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode != 0
    assert "ImportError" in probe.stderr
    result = run(["--backend", "trio", "explain", "alpine"], tmp_path, env)
    assert result.returncode == 2
    assert_one_line_error(result, "pip install 'asyncauth[trio]'")
    result = run(["--backend", "trio", "explain", "--json", "alpine"], tmp_path, env)
    assert result.returncode == 2
    error = json.loads(result.stderr)["error"]
    assert error["type"] == "ConfigError"
    assert "pip install 'asyncauth[trio]'" in error["message"]
    assert run(["explain", "--anon", "alpine"], tmp_path, env).returncode == 0  # asyncio still


@pytest.mark.parametrize(
    "args",
    [
        ["explain", "--anon", "gcr.io/a"],
        ["explain", "--json", "--anon", "gcr.io/a"],
        ["--help"],
    ],
)
def test_a_closed_stdout_pipe_ends_quietly(tmp_path: Path, args: list[str]) -> None:
    """Like ``asyncauth explain x | head -0``, without the race: the reader is gone first."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "asyncauth", *args],
            env={**os.environ, "HOME": str(tmp_path), "IMGPKG_ENABLE_IAAS_AUTH": "false"},
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(writer)
    assert done.stderr == ""
    assert done.returncode in ((141,) if args != ["--help"] else (0, 141))


def _is_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie no init reaped is gone too


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_while_a_helper_runs_exits_130_quietly(tmp_path: Path, backend: str) -> None:
    bin_dir, started = tmp_path / "bin", tmp_path / "helper.pid"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-slow"
    # The pid file appears whole (mv), once the helper runs; then the helper waits, as a slow
    # helper (a locked keychain, a prompt) does, until it is killed.
    helper.write_text(
        f"#!/bin/sh\necho $$ > '{started}.tmp'\nmv '{started}.tmp' '{started}'\nexec sleep 30\n"
    )
    helper.chmod(0o755)
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text('{"credHelpers": {"gcr.io": "slow"}}')
    environ = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        "IMGPKG_ENABLE_IAAS_AUTH": "false",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncauth", "--backend", backend, "explain", "gcr.io/a"],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,  # SIGINT reaches it even if ours is ignored
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the helper never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert (process.returncode, out, err) == (130, "", "")
    helper_pid = int(started.read_text())
    deadline = time.monotonic() + 10
    while not _is_gone(helper_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _is_gone(helper_pid), "the interrupted helper was left running"


@pytest.mark.parametrize("stray", [["--password", SECRET], [f"--password={SECRET}"], [SECRET]])
def test_stray_arguments_are_never_echoed(tmp_path: Path, stray: list[str]) -> None:
    for json_flag in ([], ["--json"]):
        result = run(["explain", *json_flag, "gcr.io/a", *stray], tmp_path)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert_hidden(result.stdout + result.stderr, SECRET, where="usage error")
        assert "unrecognized arguments" in result.stderr or "explicit argument" in result.stderr


# --- --json: a versioned document, errors as JSON on stderr -------------------------------------


def test_explain_json_carries_the_schema(tmp_path: Path) -> None:
    result = run(["explain", "--json", "alpine"], tmp_path, ENV)
    data = json.loads(result.stdout)
    assert data["schema"] == 1
    assert next(iter(data)) == "schema"
    assert_hidden(result.stdout + result.stderr, SECRET, where="CLI JSON")


@pytest.mark.parametrize(
    ("args", "env", "kind"),
    [
        (["explain", "--json", "alpine"], {"IMGPKG_REGISTRY_HOSTNAM_0": "x"}, "ConfigError"),
        (["explain", "--json", "https://gcr.io/a"], {}, "InvalidReferenceError"),
        (["explain", "--json"], {}, "UsageError"),
        (["explain", "--json", "--frobnicate", "alpine"], {}, "UsageError"),
        (["manifest", "--json", "gcr.io"], {}, "InvalidReferenceError"),
        (["token", "--json", "--ca-cert", "/nonexistent.pem", "gcr.io/a"], {}, "ConfigError"),
        (
            ["explain", "--json", "alpine"],
            {**ENV, "IMGPKG_REGISTRY_HOSTNAME_1": "x"},
            "ConfigError",
        ),
    ],
)
def test_json_errors_are_one_json_line_on_stderr_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], kind: str
) -> None:
    result = run(args, tmp_path, env)
    assert (result.returncode, result.stdout) == (2, "")
    (line,) = result.stderr.splitlines()
    document = json.loads(line)
    assert document["schema"] == 1
    assert document["error"]["type"] == kind
    assert set(document["error"]) == {"type", "message"}
    assert_hidden(result.stderr, SECRET, where="JSON error")


def _documented_fields(command: str) -> set[str]:
    """The field names in docs/cli.md's table for ``command`` (or "Errors")."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    heading = f"### `asyncauth {command}`" if command != "Errors" else "### Errors"
    section = text.split(heading, 1)[1].split("\n### ", 1)[0]
    return set(re.findall(r"^\| `([a-z_.\[\]]+)` \|", section, re.MULTILINE))


def _fields(value: object, name: str = "") -> set[str]:
    """Dotted field names of a JSON document: ``credential.kind``, ``trace[].resolver``."""
    if isinstance(value, dict):
        nested = [_fields(item, f"{name}.{key}" if name else key) for key, item in value.items()]
        return set().union(*nested)
    if isinstance(value, list) and value:
        return set().union(*(_fields(item, f"{name}[]") for item in value))
    return {name}


def test_docs_describe_every_explain_and_error_field(tmp_path: Path) -> None:
    explain = json.loads(run(["explain", "--json", "alpine"], tmp_path, ENV).stdout)
    assert _fields(explain) == _documented_fields("explain")
    error = json.loads(run(["explain", "--json", "https://x/y"], tmp_path).stderr)
    assert _fields(error) == _documented_fields("Errors")


def test_manifest_media_types_are_exported() -> None:
    import asyncauth
    from asyncauth import _cli

    assert asyncauth.MANIFEST_MEDIA_TYPES is _cli.MANIFEST_MEDIA_TYPES
    assert set(asyncauth.MANIFEST_MEDIA_TYPES) == {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    }  # not the withdrawn application/vnd.oci.artifact.manifest.v1+json


# --- token and manifest against a real registry, in --json ---------------------------------------


def registry_env(registry: RegistryServer, credential: tuple[str, str]) -> dict[str, str]:
    return {
        "IMGPKG_REGISTRY_HOSTNAME_0": registry.host,
        "IMGPKG_REGISTRY_USERNAME_0": credential[0],
        "IMGPKG_REGISTRY_PASSWORD_0": credential[1],
    }


def test_token_and_manifest_json_are_versioned_and_documented(
    tmp_path: Path,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    env = registry_env(token_registry, peer_accounts.reader)
    token = run(["token", "--json", f"{token_registry.host}/peers/app"], tmp_path, env)
    assert token.returncode == 0, token.stderr
    data = json.loads(token.stdout)
    assert data["schema"] == 1
    assert token_issuer.decode(data["token"])["access"][0]["name"] == "peers/app"
    assert _fields(data) == _documented_fields("token")
    manifest = run(["manifest", "--json", token_registry_image.reference], tmp_path, env)
    assert manifest.returncode == 0, manifest.stderr
    data = json.loads(manifest.stdout)
    assert data == {
        "schema": 1,
        "digest": token_registry_image.digest,
        "media_type": token_registry_image.media_type,
        "size": data["size"],
        "rate_limit": None,  # distribution reports none (tests/test_rate_limits.py: one that does)
    }
    documented = _documented_fields("manifest")
    assert _fields(data) == {name for name in documented if not name.startswith("rate_limit.")}
    assert_hidden(token.stderr + manifest.stdout + manifest.stderr, peer_accounts.reader[1])


def test_registry_failures_are_json_on_stderr_exit_1(
    tmp_path: Path,
    token_registry: RegistryServer,
    open_registry: RegistryServer,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    wrong = registry_env(token_registry, ("alice", "wrong-SECRET-pw"))
    cases = [
        (["token", f"{token_registry.host}/peers/app"], wrong, {"AuthenticationError"}),
        (["token", f"{open_registry.host}/peers/app"], {}, {"NoBearerToken"}),
        (
            ["manifest", f"{token_registry.host}/peers/app:missing"],
            registry_env(token_registry, peer_accounts.reader),
            {"UnexpectedStatus"},
        ),
        # Nothing listens on port 9. The aiohttp transport reports a refused connection as a
        # ConnectTimeout (issue 9, part 4 changes that); either way it is named, with exit 1.
        (["manifest", "127.0.0.1:9/peers/app:v1"], {}, {"ConnectError", "ConnectTimeout"}),
    ]
    for args, env, kinds in cases:
        result = run([*args, "--json"], tmp_path, env)
        assert (result.returncode, result.stdout) == (1, ""), (args, result.stderr)
        (line,) = result.stderr.splitlines()
        document = json.loads(line)
        assert (document["schema"], set(document["error"])) == (1, {"type", "message"})
        assert document["error"]["type"] in kinds
        assert document["error"]["message"].strip()
        assert_hidden(line, "wrong-SECRET-pw", peer_accounts.reader[1], where="JSON error")
        text = run(args, tmp_path, env)  # the same failure for people: one line, same status
        assert text.returncode == 1
        assert text.stderr.startswith("asyncauth: ")
        assert len(text.stderr.splitlines()) == 1


# --- the first hour: options anywhere, names shown, secrets from stdin, what a refusal means ---


@pytest.mark.parametrize(
    "args",
    [
        ["--backend", "trio", "explain", "--anon", "gcr.io/a"],
        ["explain", "--backend", "trio", "--anon", "gcr.io/a"],
        ["explain", "--anon", "gcr.io/a", "--backend", "trio"],
        ["explain", "--anon", "gcr.io/a", "--backend=trio"],
        ["--backend", "asyncio", "explain", "--anon", "gcr.io/a", "--backend", "trio"],
    ],
)
def test_backend_is_accepted_before_and_after_the_command(args: list[str]) -> None:
    from asyncauth._cli_args import build_parser

    assert build_parser().parse_args(args).backend == "trio"


def test_backend_after_the_command_is_obeyed(tmp_path: Path) -> None:
    """Not only parsed: a trio that cannot be imported is what ``--backend trio`` runs into."""
    blocker = tmp_path / "no-trio"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_TRIO)
    env = {"PYTHONPATH": str(blocker)}
    result = run(["explain", "--anon", "gcr.io/a", "--backend", "trio"], tmp_path, env)
    assert result.returncode == 2
    assert_one_line_error(result, "pip install 'asyncauth[trio]'")
    result = run(["explain", "--anon", "gcr.io/a"], tmp_path, env)  # the default: asyncio
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("stray", "shown"),
    [
        (["--password", SECRET], "unrecognized arguments: --password ****"),
        ([f"--password={SECRET}"], "unrecognized arguments: --password=****"),
        (["--pass", SECRET], "unrecognized arguments: --pass ****"),  # not --password-stdin
        (["--registry-password", "-" + SECRET], "unrecognized arguments: --registry-password ****"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_an_unknown_option_is_named_and_its_value_masked(
    tmp_path: Path, stray: list[str], shown: str
) -> None:
    result = run(["explain", "--anon", "gcr.io/a", *stray], tmp_path)
    assert result.returncode == 2
    assert_one_line_error(result, shown)
    assert_hidden(result.stdout + result.stderr, SECRET, where="usage error")
    result = run(["explain", "--json", "--anon", *stray, "gcr.io/a"], tmp_path)
    error = json.loads(result.stderr)["error"]
    assert (result.returncode, error["type"]) == (2, "UsageError")
    assert error["message"].startswith(shown), error["message"]


def test_token_stdin_sends_the_token_from_standard_input(
    tmp_path: Path,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
) -> None:
    """The token never is on the command line (``ps`` shows it there), and it is the one sent:
    the registry accepts the request and the token server is never asked for another."""
    token = secret(token_issuer.mint("alice", ["repository:peers/app:pull"]))
    args = ["manifest", "--json", "--token-stdin", token_registry_image.reference]
    result = run(args, tmp_path, stdin=token + "\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["digest"] == token_registry_image.digest
    assert token_issuer.total == 0
    explained = run(["explain", "--json", "--token-stdin", "gcr.io/a"], tmp_path, stdin=token)
    data = json.loads(explained.stdout)
    assert (data["source"], data["credential"]["kind"]) == ("flags", "registry_token")
    assert_hidden(result.stdout + result.stderr + explained.stdout, token, where="CLI output")


def _run_on_a_terminal(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``run`` with standard input a real terminal (a pseudo-terminal), as when typed by hand."""
    import pty

    primary, replica = pty.openpty()
    try:
        return subprocess.run(
            [sys.executable, "-m", "asyncauth", *args],
            env={**os.environ, "HOME": str(tmp_path), "IMGPKG_ENABLE_IAAS_AUTH": "false"},
            stdin=replica,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(replica)
        os.close(primary)


@pytest.mark.parametrize("option", [["--token-stdin"], ["--username", "bob", "--password-stdin"]])
def test_a_secret_is_not_read_from_a_terminal(tmp_path: Path, option: list[str]) -> None:
    result = _run_on_a_terminal(["explain", *option, "gcr.io/a"], tmp_path)
    assert result.returncode == 2
    assert_one_line_error(result, f"{option[-1]}: standard input is a terminal; pipe the secret")


@pytest.mark.parametrize(
    ("stdin", "needle"),
    [
        ("", "--token-stdin: standard input was empty"),
        ("\n", "--token-stdin: standard input was empty"),
        (" \t\n", "--token-stdin: standard input holds only white space"),
        (f"{SECRET} {SECRET}\n", "--token-stdin: standard input holds more than one word"),
        ("x" * (64 * 1024 + 1), "--token-stdin: standard input holds more than 65536"),
    ],
)
def test_token_stdin_refuses_what_is_not_one_token(tmp_path: Path, stdin: str, needle: str) -> None:
    result = run(["explain", "--token-stdin", "gcr.io/a"], tmp_path, stdin=stdin)
    assert result.returncode == 2
    assert_one_line_error(result, needle)
    assert_hidden(result.stderr, SECRET, where="CLI error")


@pytest.mark.parametrize(
    ("other", "name"),
    [
        (["--token", SECRET], "--token"),
        (["--username", "u", "--password-stdin"], "--password-stdin"),
    ],
)
def test_token_stdin_with_another_secret_is_a_usage_error(
    tmp_path: Path, other: list[str], name: str
) -> None:
    result = run(["explain", "--json", "--token-stdin", *other, "gcr.io/a"], tmp_path, stdin="t")
    error = json.loads(result.stderr)["error"]
    assert (result.returncode, error["type"]) == (2, "UsageError")
    assert error["message"] == f"--token-stdin and {name} both give a secret: use one"
    assert_hidden(result.stderr, SECRET, where="usage error")


def test_a_401_without_any_credential_says_so_and_points_to_explain(
    tmp_path: Path,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    htpasswd_registry: RegistryServer,
) -> None:
    for registry in (token_registry, htpasswd_registry):  # a Bearer and a Basic registry
        result = run(["manifest", f"{registry.host}/peers/app:v1"], tmp_path)
        assert (result.returncode, result.stdout) == (1, ""), result.stderr
        (line,) = result.stderr.splitlines()
        assert "the registry answered 401 UNAUTHORIZED" in line
        assert f"no source had a credential for {registry.host}" in line
        assert f"`asyncauth explain {registry.host}/peers/app`" in line
    # Anonymous by choice (--anon) is not "no credential found": no hint then.
    result = run(["manifest", "--json", "--anon", f"{token_registry.host}/peers/app:v1"], tmp_path)
    error = json.loads(result.stderr)["error"]
    assert (error["type"], result.returncode) == ("UnexpectedStatus", 1)
    assert "401 UNAUTHORIZED" in error["message"]
    assert "explain" not in error["message"]


def test_a_404_shows_the_registry_error_code(
    tmp_path: Path,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    env = registry_env(token_registry, peer_accounts.reader)
    result = run(["manifest", "--json", f"{token_registry.host}/peers/app:missing"], tmp_path, env)
    error = json.loads(result.stderr)["error"]
    assert (result.returncode, error["type"]) == (1, "UnexpectedStatus")
    assert error["message"] == (
        f"{token_registry.host}/peers/app:missing: the registry answered 404 MANIFEST_UNKNOWN "
        "(manifest unknown)"
    )
    assert_hidden(result.stderr, peer_accounts.reader[1], where="JSON error")


STALE_PASSWORD = secret("stale-CLI-password-9")


def test_anonymous_fallback_pulls_and_explain_shows_why(
    tmp_path: Path,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    """A stale login for a registry with public images: ``--anonymous-fallback`` pulls, and
    ``explain --anonymous-fallback`` asks the registry and shows whose credential it refused."""
    token_issuer.policy = dataclasses.replace(token_issuer.policy, anonymous_pull=True)
    user = peer_accounts.writer[0]
    env = registry_env(token_registry, (user, STALE_PASSWORD))
    refused = run(["manifest", token_registry_image.reference], tmp_path, env)
    assert refused.returncode == 1
    assert "AuthenticationError" in refused.stderr
    assert "credentials were refused" in refused.stderr
    pulled = run(
        ["manifest", "--anonymous-fallback", token_registry_image.reference], tmp_path, env
    )
    assert (pulled.returncode, pulled.stdout.split()[0]) == (0, token_registry_image.digest)
    reference = f"{token_registry.host}/peers/app"
    plain = run(["explain", reference], tmp_path, env)  # asks no registry: the chain's answer
    assert "source:     env" in plain.stdout
    explained = run(["explain", "--anonymous-fallback", reference], tmp_path, env)
    assert explained.returncode == 0, explained.stderr
    assert "source:     anonymous fallback" in explained.stdout
    line = explained.stdout.splitlines()[-1]
    assert line.lstrip().startswith("anonymous fallback")
    assert f"refused basic credentials for user {user} from env (401)" in line
    data = json.loads(
        run(["explain", "--json", "--anonymous-fallback", reference], tmp_path, env).stdout
    )
    assert (data["source"], data["credential"]["kind"]) == ("anonymous fallback", "anonymous")
    assert data["trace"][-1]["resolver"] == "anonymous fallback"
    assert _fields(data) == _documented_fields("explain")
    pushed = run(["token", "--push", "--anonymous-fallback", reference], tmp_path, env)
    assert pushed.returncode == 1  # never for a push
    everything = "".join(r.stdout + r.stderr for r in (refused, pulled, explained, pushed))
    assert_hidden(everything, STALE_PASSWORD, where="the CLI's output")


def test_token_for_several_references_prints_one_token_for_all(
    tmp_path: Path,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    env = registry_env(token_registry, peer_accounts.writer)
    names = ["peers/app", "peers/base", "peers/tools"]
    args = ["token", "--json", *(f"{token_registry.host}/{name}" for name in names), "--push"]
    result = run(args, tmp_path, env)
    assert result.returncode == 0, result.stderr
    access = token_issuer.decode(json.loads(result.stdout)["token"])["access"]
    assert sorted((a["name"], tuple(a["actions"])) for a in access) == [
        (name, ("pull", "push")) for name in names
    ]
    assert token_issuer.total == 1  # one token request for all three


def test_token_for_several_references_says_when_the_server_grants_one_scope_per_token(
    tmp_path: Path,
    token_registry: RegistryServer,
    token_registry_image: PushedImage,
    token_issuer: TokenIssuer,
    peer_accounts: PeerAccounts,
) -> None:
    token_issuer.policy = dataclasses.replace(token_issuer.policy, max_scopes=1)
    env = registry_env(token_registry, peer_accounts.reader)
    host = token_registry.host
    result = run(["token", f"{host}/peers/app", f"{host}/peers/base"], tmp_path, env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        f"asyncauth: {host}'s token server grants fewer scopes per token than asked: the token "
        f"for {host}/peers/app does not serve {host}/peers/base; ask for a token for each"
    ]
    assert token_issuer.total == 2  # the batch, and peers/base on its own


def test_token_refuses_references_on_several_registries(tmp_path: Path) -> None:
    result = run(["token", "--json", "ghcr.io/a/b", "quay.io/c/d"], tmp_path)
    error = json.loads(result.stderr)["error"]
    assert (result.returncode, error["type"]) == (2, "ConfigError")
    assert error["message"].endswith("these references are on 2: ghcr.io, quay.io")
