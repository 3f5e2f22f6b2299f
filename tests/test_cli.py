"""The ``asyncauth`` command, run as users run it: a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ._assertions import assert_hidden

SECRET = "pw-SECRET-42"


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
