"""The Docker config as other tools write it (issue 9): the file is shared with docker, podman,
skopeo and crane, and lives where they put it.

* A key asyncauth cannot read as a registry matches nothing and breaks no other lookup; it is
  logged once at DEBUG (``asyncauth.dockerconfig``) and shown in ``explain``. skopeo reads the
  same file fine, and so must we.
* A ``config.json`` that is a directory (a Kubernetes optional secret mount) is absent.
* ``DOCKER_CONFIG`` set means that directory only; ``REGISTRY_AUTH_FILE`` likewise.
* ``DOCKER_AUTH_CONFIG`` (docker/cli 28.3+) is asked before the file, as docker asks it.
* ``/run/containers/<uid>/auth.json``, where podman and skopeo log in as root without
  ``XDG_RUNTIME_DIR``, is read: proved with a real ``skopeo login`` in a private mount namespace.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from asyncauth import Chain, ConfigError, Credential, RegistryAuth, Resource
from asyncauth._sources.docker.resolver import DockerConfigResolver

from ._assertions import assert_hidden
from ._secrets import secret
from .peers import PeerAccounts, PushedImage, RegistryServer
from .peers._tools import require_tool

SECRET = secret("Pa55-w0rd-SECRET-7Qx")
PASSWORD = secret("Hunter2-PASSWORD-9Zq")
ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def basic(user: str = "u", password: str = SECRET) -> dict[str, str]:
    return {"auth": b64(f"{user}:{password}")}


def write(path: Path, doc: dict[str, Any] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


# Keys other tools accept (or at least survive) that name no registry asyncauth can match.
FOREIGN_KEYS = {
    "my_registry:5000": basic("compose"),  # a compose service name: '_' is no host character
    "ftp://example.com": {},
    "https://::1:6555/v2/": {},  # an IPv6 literal without brackets
    f"user:{PASSWORD}@registry.example": {},  # credentials pasted into the key
    "*.example.com": {},
}


# --- keys that name no registry ----------------------------------------------------------------


async def test_foreign_keys_break_nothing_and_are_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path / "config.json",
        {
            "auths": {**FOREIGN_KEYS, "ghcr.io": basic("gh"), "quay.io": {"auth": "%%%"}},
            "credHelpers": {"my_registry:5000": "compose"},
        },
    )
    resolver = DockerConfigResolver(config_path=path, environ={})
    chain = Chain([resolver])
    with caplog.at_level(logging.DEBUG, logger="asyncauth.dockerconfig"):
        for _ in range(3):
            resolution = await chain.resolve("ghcr.io/o/a")
            assert resolution.credential == Credential("gh", SECRET)
        assert await resolver.resolve(Resource.parse("docker.io/library/alpine")) is None
    records = [r for r in caplog.records if r.name == "asyncauth.dockerconfig"]
    assert len(records) == len(FOREIGN_KEYS) + 1, "each ignored key is logged once"
    assert all(r.levelno == logging.DEBUG for r in records)
    logged = "\n".join(r.getMessage() for r in records)
    for shown in ('auths["my_registry:5000"]', 'auths["ftp://example.com"]'):
        assert shown in logged
    assert 'credHelpers["my_registry:5000"]' in logged
    detail = resolution.trace[0].detail or ""
    assert detail.startswith(f'auths["ghcr.io"] in {path}; ignored 6 keys that name no registry: ')
    assert_hidden(logged + detail + repr(await resolver.load()), PASSWORD, SECRET)
    # A broken entry is an error only when it is the one chosen.
    with pytest.raises(ConfigError, match=r'config\.json: auths\["quay.io"\]\.auth is not valid'):
        await chain.resolve("quay.io/o/a")


async def test_explain_names_the_ignored_keys_when_nothing_matches(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", {"auths": {"my_registry:5000": basic()}})
    resolver = DockerConfigResolver(config_path=path, environ={})
    assert resolver.explain(Resource.parse("my-registry:5000/app")) is None  # not read yet
    assert await resolver.resolve(Resource.parse("my-registry:5000/app")) is None
    note = resolver.explain(Resource.parse("my-registry:5000/app")) or ""
    assert note.startswith(f"no key for my-registry:5000 in {path}; ignored 1 key that names")
    assert 'auths["my_registry:5000"] (' in note


def test_skopeo_reads_the_same_shared_file(
    tmp_path: Path,
    htpasswd_registry: RegistryServer,
    htpasswd_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    """The control for the keys above: a real containers/image client uses this very file."""
    user, password = peer_accounts.reader
    authfile = write(
        tmp_path / "auth.json",
        {"auths": {**FOREIGN_KEYS, htpasswd_registry.host: basic(user, password)}},
    )
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [
            require_tool("skopeo"),
            "inspect",
            "--tls-verify=false",
            "--authfile",
            str(authfile),
            f"docker://{htpasswd_registry_image.reference}",
        ],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "HOME": str(home)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"skopeo refused the shared file: {done.stderr[-500:]}"
    assert json.loads(done.stdout)["Digest"] == htpasswd_registry_image.digest


async def test_asyncauth_pulls_with_the_same_shared_file(
    tmp_path: Path,
    htpasswd_registry: RegistryServer,
    htpasswd_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    user, password = peer_accounts.reader
    path = write(
        tmp_path / "config.json",
        {"auths": {**FOREIGN_KEYS, htpasswd_registry.host: basic(user, password)}},
    )
    auth = RegistryAuth(Chain([DockerConfigResolver(config_path=path, environ={})]))
    async with httpx.AsyncClient(base_url=htpasswd_registry.url, auth=auth) as client:
        response = await client.get(htpasswd_registry_image.manifest_path, headers=ACCEPT)
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == htpasswd_registry_image.digest


# --- where the file is -------------------------------------------------------------------------


async def test_a_config_json_directory_is_absent(tmp_path: Path) -> None:
    """What an optional Kubernetes secret mount leaves behind when the secret is missing."""
    (tmp_path / "dc" / "config.json").mkdir(parents=True)
    env = {"DOCKER_CONFIG": str(tmp_path / "dc"), "HOME": str(tmp_path / "home")}
    resolver = DockerConfigResolver(environ=env)
    assert await resolver.resolve(Resource.parse("ghcr.io/o/a")) is None
    assert await resolver.http_headers() == {}
    # The containers files are another tool's login, still consulted (see docs).
    write(tmp_path / "raf.json", {"auths": {"ghcr.io": basic("podman")}})
    env["REGISTRY_AUTH_FILE"] = str(tmp_path / "raf.json")
    found = await DockerConfigResolver(environ=env).resolve(Resource.parse("ghcr.io/o/a"))
    assert found == Credential("podman", SECRET)


async def test_an_explicit_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read \\(is a directory\\)"):
        await DockerConfigResolver(config_path=tmp_path, environ={}).load()


async def test_docker_config_set_never_falls_back_to_the_home_file(tmp_path: Path) -> None:
    """docker, go-containerregistry and containers/image use no config then; falling through
    would send the credentials of ``~/.docker`` the user pointed away from."""
    write(tmp_path / "home" / ".docker" / "config.json", {"auths": {"ghcr.io": basic("home")}})
    (tmp_path / "empty").mkdir()
    env = {"HOME": str(tmp_path / "home"), "DOCKER_CONFIG": str(tmp_path / "empty")}
    resolver = DockerConfigResolver(environ=env)
    assert await resolver.resolve(Resource.parse("ghcr.io/o/a")) is None
    assert resolver.candidates[0][1] == "$DOCKER_CONFIG/config.json"
    assert "~/.docker/config.json" not in [rule for _, rule in resolver.candidates]
    env["DOCKER_CONFIG"] = str(tmp_path / "missing-dir")
    assert await DockerConfigResolver(environ=env).resolve(Resource.parse("ghcr.io/o/a")) is None


async def test_registry_auth_file_set_never_falls_back_to_the_default_auth_json(
    tmp_path: Path,
) -> None:
    write(tmp_path / "xdg" / "containers" / "auth.json", {"auths": {"ghcr.io": basic("xdg")}})
    env = {
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "REGISTRY_AUTH_FILE": str(tmp_path / "missing.json"),
    }
    assert await DockerConfigResolver(environ=env).resolve(Resource.parse("ghcr.io/o/a")) is None
    del env["REGISTRY_AUTH_FILE"]
    found = await DockerConfigResolver(environ=env).resolve(Resource.parse("ghcr.io/o/a"))
    assert found == Credential("xdg", SECRET)


def test_skopeo_login_as_root_without_xdg_runtime_dir_is_found(
    tmp_path: Path, htpasswd_registry: RegistryServer, peer_accounts: PeerAccounts
) -> None:
    """``skopeo login`` (containers/image) picks ``/run/containers/<uid>/auth.json`` itself; we
    must read the file it wrote. A private mount namespace (and user namespace, so it needs no
    privilege) gives the test its own empty ``/run``: the machine's is never touched."""
    skopeo = require_tool("skopeo")
    unshare = require_tool("unshare")
    user, password = peer_accounts.reader
    (tmp_path / "home").mkdir()
    probe = textwrap.dedent(
        """
        import os, sys, anyio
        from asyncauth import DockerConfigResolver, Resource
        resolver = DockerConfigResolver(environ={"HOME": os.environ["HOME"]})
        found = anyio.run(resolver.resolve, Resource.parse(os.environ["REGISTRY"] + "/x"))
        ok = found is not None and (found.username, found.password) == (
            os.environ["LOGIN_USER"], os.environ["LOGIN_PASSWORD"])
        print(resolver.explain(Resource.parse(os.environ["REGISTRY"] + "/x")))
        sys.exit(0 if ok else 3)
        """
    )
    script = (
        "set -e; mount -t tmpfs tmpfs /run; "
        'printf %s "$LOGIN_PASSWORD" | "$SKOPEO" login --tls-verify=false -u "$LOGIN_USER" '
        '--password-stdin "$REGISTRY" >/dev/null; '
        'test -f "/run/containers/$(id -u)/auth.json"; '
        '"$PYTHON" -c "$PROBE"'
    )
    done = subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path / "home"),
            "SKOPEO": skopeo,
            "PYTHON": sys.executable,
            "PROBE": probe,
            "REGISTRY": htpasswd_registry.host,
            "LOGIN_USER": user,
            "LOGIN_PASSWORD": password,
        },
        timeout=120,
        check=False,
    )
    assert_hidden(done.stdout + done.stderr, password, where="skopeo/probe output")
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-800:]}"
    assert done.stdout.strip() == (
        f'auths["{htpasswd_registry.host}"] in /run/containers/0/auth.json'
    )


# --- DOCKER_AUTH_CONFIG ------------------------------------------------------------------------


def auth_config(doc: dict[str, Any] | str) -> str:
    return doc if isinstance(doc, str) else json.dumps(doc)


async def test_docker_auth_config_is_asked_before_the_file(tmp_path: Path) -> None:
    """docker/cli puts it in front of the file's store (helpers included) for its keys."""
    path = write(
        tmp_path / "config.json",
        {"credsStore": "never-run", "auths": {"quay.io": basic("file")}},
    )
    env = {"DOCKER_AUTH_CONFIG": auth_config({"auths": {"ghcr.io": basic("ci")}})}
    resolver = DockerConfigResolver(config_path=path, environ=env)
    assert await resolver.resolve(Resource.parse("ghcr.io/o/a")) == Credential("ci", SECRET)
    resolution = await Chain([resolver]).resolve("ghcr.io/o/a")
    assert resolution.trace[0].detail == 'auths["ghcr.io"] in $DOCKER_AUTH_CONFIG'
    # Other registries go to the file, whose credsStore decides (and is not installed).
    with pytest.raises(ConfigError, match="docker-credential-never-run is not installed"):
        await resolver.resolve(Resource.parse("quay.io/o/a"))
    assert "$DOCKER_AUTH_CONFIG" in repr(resolver)
    assert_hidden(repr(resolver) + repr(resolution), SECRET)


async def test_docker_auth_config_without_any_file(tmp_path: Path) -> None:
    env = {
        "HOME": str(tmp_path),
        "DOCKER_AUTH_CONFIG": auth_config({"auths": {"https://index.docker.io/v1/": basic()}}),
    }
    resolver = DockerConfigResolver(environ=env)
    assert await resolver.resolve(Resource.parse("alpine")) == Credential("u", SECRET)
    assert await resolver.resolve(Resource.parse("ghcr.io/o/a")) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{", "$DOCKER_AUTH_CONFIG: not valid JSON"),
        ("[]", "$DOCKER_AUTH_CONFIG: must hold a JSON object"),
        ('{"auths": []}', "'auths' must be a JSON object"),
        ('{"credHelpers": {"ghcr.io": "x"}}', 'only "auths" may be set here'),
        (f'{{"auths": {{"ghcr.io": {{"auth": "{SECRET}"}}}}}}', 'auths["ghcr.io"].auth is not'),
        (f'{{"auths": {{"ghcr.io": {{"auth": "{b64(SECRET)}"}}}}}}', "(no ':')"),
    ],
)
async def test_a_broken_docker_auth_config_is_a_config_error_naming_it(
    tmp_path: Path, value: str, expected: str
) -> None:
    resolver = DockerConfigResolver(environ={"HOME": str(tmp_path), "DOCKER_AUTH_CONFIG": value})
    with pytest.raises(ConfigError) as caught:
        await Chain([resolver]).resolve("ghcr.io/o/a")
    assert str(caught.value).startswith("$DOCKER_AUTH_CONFIG")
    assert expected in str(caught.value)
    assert_hidden(str(caught.value), SECRET, b64(SECRET), where="ConfigError")


async def test_docker_auth_config_keys_that_name_no_registry_are_ignored(tmp_path: Path) -> None:
    env = {
        "HOME": str(tmp_path),
        "DOCKER_AUTH_CONFIG": auth_config({"auths": {**FOREIGN_KEYS, "ghcr.io": basic("ci")}}),
    }
    resolver = DockerConfigResolver(environ=env)
    assert await resolver.resolve(Resource.parse("ghcr.io/o/a")) == Credential("ci", SECRET)
    note = resolver.explain(Resource.parse("ghcr.io/o/a")) or ""
    assert "ignored 5 keys" in note
    assert_hidden(note, PASSWORD)
