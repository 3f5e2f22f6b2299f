"""``docker-credential-asyncauth``: the protocol, run as the installed console script.

Each test runs the real program with a controlled environment (an empty ``HOME``, only the
variables the test sets), exactly as Docker, podman or skopeo would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asyncauth import ConfigError, Credential, Resource
from asyncauth._credential_helper import _Failure, answer, resource_for_server_url

from ._assertions import assert_hidden
from ._secrets import secret
from .peers._tools import require_tool

SECRET = secret("Pa55-w0rd-SECRET-7Qx")
TOKEN = secret("IDENTITY-Tok3n-9Zq-refresh")
BEARER = "REGISTRY-b3arer-Tok3n-4Kw"
NOT_FOUND = "credentials not found in native keychain"
HOST = "registry.example:5000"


def program() -> Path:
    path = Path(sys.executable).parent / "docker-credential-asyncauth"
    if not path.exists():
        raise AssertionError(
            f"{path} is missing: install the package (pip install -e .) so that its console "
            "script docker-credential-asyncauth exists"
        )
    return path


class Run:
    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        self.code = done.returncode
        self.stdout = done.stdout
        self.stderr = done.stderr

    @property
    def json(self) -> dict[str, str]:
        value = json.loads(self.stdout)
        assert isinstance(value, dict)
        return value


def run(tmp_path: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None) -> Run:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    environ = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{program().parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        **(env or {}),
    }
    done = subprocess.run(
        [str(program()), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )
    return Run(done)


def env_creds(hostname: str = HOST, **fields: str) -> dict[str, str]:
    values = {"IMGPKG_REGISTRY_HOSTNAME_0": hostname}
    for name, value in fields.items():
        values[f"IMGPKG_REGISTRY_{name.upper()}_0"] = value
    return values


def docker_config(tmp_path: Path, doc: dict[str, object]) -> None:
    path = tmp_path / "home" / ".docker" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_get_answers_from_env(tmp_path: Path) -> None:
    result = run(tmp_path, "get", stdin=HOST + "\n", env=env_creds(username="bob", password=SECRET))
    assert result.code == 0, result.stdout + result.stderr
    assert result.json == {"ServerURL": HOST, "Username": "bob", "Secret": SECRET}


def test_docker_hub_server_url(tmp_path: Path) -> None:
    env = env_creds("docker.io", username="bob", password=SECRET)
    result = run(tmp_path, "get", stdin="https://index.docker.io/v1/", env=env)
    assert result.code == 0
    assert result.json == {
        "ServerURL": "https://index.docker.io/v1/",
        "Username": "bob",
        "Secret": SECRET,
    }


def test_identity_token_is_answered_as_token_username(tmp_path: Path) -> None:
    result = run(tmp_path, "get", stdin=HOST, env=env_creds(identity_token=TOKEN))
    assert result.code == 0
    assert result.json == {"ServerURL": HOST, "Username": "<token>", "Secret": TOKEN}


def test_registry_token_is_an_error_that_says_why(tmp_path: Path) -> None:
    result = run(tmp_path, "get", stdin=HOST, env=env_creds(registry_token=BEARER))
    assert result.code == 1
    assert "registry (bearer) token" in result.stderr
    assert "registry (bearer) token" in result.stdout  # where protocol clients read errors
    assert_hidden(result.stdout + result.stderr, BEARER, where="helper output")


def test_no_credential_is_the_protocols_not_found(tmp_path: Path) -> None:
    result = run(tmp_path, "get", stdin="other.example")
    assert (result.code, result.stdout.strip()) == (1, NOT_FOUND)


def test_anonymous_option_is_not_found(tmp_path: Path) -> None:
    docker_config(tmp_path, {"auths": {HOST: {"username": "u", "password": SECRET}}})
    result = run(tmp_path, "get", stdin=HOST, env={"IMGPKG_ANON": "true"})
    assert (result.code, result.stdout.strip()) == (1, NOT_FOUND)


def test_explicit_options_apply(tmp_path: Path) -> None:
    env = {"IMGPKG_USERNAME": "opt", "IMGPKG_PASSWORD": SECRET}
    result = run(tmp_path, "get", stdin=HOST, env=env)
    assert result.json["Username"] == "opt"


def test_docker_config_is_the_last_source(tmp_path: Path) -> None:
    docker_config(tmp_path, {"auths": {f"https://{HOST}": {"username": "cfg", "password": "x"}}})
    assert run(tmp_path, "get", stdin=HOST).json["Username"] == "cfg"
    env = env_creds(username="env", password=SECRET)
    assert run(tmp_path, "get", stdin=HOST, env=env).json["Username"] == "env"


def test_itself_in_the_docker_config_is_skipped(tmp_path: Path) -> None:
    """``credsStore: asyncauth`` would otherwise make the helper call itself forever."""
    docker_config(
        tmp_path,
        {
            "credsStore": "asyncauth",
            "credHelpers": {"other.example": "asyncauth"},
            "auths": {HOST: {"username": "cfg", "password": "x"}},
        },
    )
    start = time.monotonic()
    assert run(tmp_path, "get", stdin=HOST).json["Username"] == "cfg"
    result = run(tmp_path, "get", stdin="other.example")
    assert (result.code, result.stdout.strip()) == (1, NOT_FOUND)
    assert time.monotonic() - start < 30


def test_itself_under_another_name_answers_not_found(tmp_path: Path) -> None:
    """A helper that is asyncauth again (a symlink) is stopped by the environment marker."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "docker-credential-loop").symlink_to(program())
    docker_config(tmp_path, {"credsStore": "loop"})
    result = run(tmp_path, "get", stdin=HOST)
    assert (result.code, result.stdout.strip()) == (1, NOT_FOUND)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"IMGPKG_REGISTRY_BOGUS": SECRET}, "unknown variable IMGPKG_REGISTRY_BOGUS"),
        ({"IMGPKG_REGISTRY_PASSWORD_0": SECRET}, "IMGPKG_REGISTRY_HOSTNAME_0 is not set"),
        ({"IMGPKG_PASSWORD": SECRET}, "without a username"),
    ],
)
def test_config_error_is_one_line_without_traceback_or_secret(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    result = run(tmp_path, "get", stdin=HOST, env=env)
    assert result.code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("docker-credential-asyncauth: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert_hidden(result.stdout + result.stderr, SECRET, where="helper output")


def test_broken_docker_config_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    docker_config(tmp_path, {"auths": {HOST: {"auth": SECRET}}})
    result = run(tmp_path, "get", stdin=HOST)
    assert result.code == 1
    (line,) = result.stderr.splitlines()
    assert f'config.json: auths["{HOST}"].auth is not valid base64' in line
    assert "Traceback" not in result.stderr
    assert_hidden(result.stdout + result.stderr, SECRET, where="helper output")


@pytest.mark.parametrize("action", ["store", "erase"])
def test_read_only(tmp_path: Path, action: str) -> None:
    stdin = json.dumps({"ServerURL": HOST, "Username": "u", "Secret": SECRET})
    result = run(tmp_path, action, stdin=stdin)
    assert (result.code, result.stdout.strip()) == (1, "not implemented")
    assert_hidden(result.stdout + result.stderr, SECRET, where="helper output")


def test_list_answers_an_empty_object_like_ecr_login(tmp_path: Path) -> None:
    """A read-only helper has nothing stored to list; ecr-login answers ``{}``, and so do we."""
    ours = run(tmp_path, "list", env=env_creds(username="u", password=SECRET))
    assert (ours.code, ours.stdout, ours.stderr) == (0, "{}\n", "")
    ecr_login = subprocess.run(
        [require_tool("docker-credential-ecr-login"), "list"],
        input="",
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home")},
        timeout=60,
        check=False,
    )
    assert (ecr_login.returncode, ecr_login.stdout) == (ours.code, ours.stdout)


def test_protocol_odds_and_ends(tmp_path: Path) -> None:
    version = run(tmp_path, "version")
    assert version.code == 0
    assert version.stdout.startswith("docker-credential-asyncauth (asyncauth) ")
    assert run(tmp_path, "frobnicate").stdout.strip() == "Unknown credential action `frobnicate`"
    assert run(tmp_path).stdout.startswith("Usage: docker-credential-asyncauth")
    empty = run(tmp_path, "get", stdin="  \n")
    assert (empty.code, empty.stdout.strip()) == (1, "no credentials server URL")
    bad = run(tmp_path, "get", stdin="not a registry")
    assert bad.code == 1
    assert "server URL" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("server_url", "expected"),
    [
        ("https://index.docker.io/v1/", Resource("index.docker.io")),
        ("docker.io", Resource("index.docker.io")),
        ("ghcr.io", Resource("ghcr.io")),
        ("localhost:5000", Resource("localhost:5000")),
        ("http://127.0.0.1:5000/v2/", Resource("127.0.0.1:5000")),
        ("quay.io/team/app", Resource("quay.io", "team/app")),
    ],
)
def test_resource_for_server_url(server_url: str, expected: Resource) -> None:
    assert resource_for_server_url(server_url) == expected


def test_resource_for_bad_server_url() -> None:
    with pytest.raises(ConfigError, match="server URL"):
        resource_for_server_url("*.example.com")


def test_answer_shapes() -> None:
    assert answer("h", Credential.anonymous()) is None
    assert answer("h", Credential("u", "p")) == {"ServerURL": "h", "Username": "u", "Secret": "p"}
    assert answer("h", Credential("u", None, TOKEN)) == {
        "ServerURL": "h",
        "Username": "<token>",
        "Secret": TOKEN,
    }
    with pytest.raises(_Failure) as caught:
        answer("h", Credential(registry_token=BEARER))
    assert_hidden(str(caught.value), BEARER, where="error")
