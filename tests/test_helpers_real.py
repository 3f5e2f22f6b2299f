"""Real credential helpers and a real client, no stand-ins.

* ``docker-credential-pass`` (Debian ``golang-docker-credential-helpers``) behind ``credHelpers``
  and ``credsStore``, with a password store and a throwaway GPG key made by the test: proves the
  resolver speaks the protocol as real helpers do, including the server URL spelling docker
  uses for Docker Hub and the ``<token>`` convention.
* ``skopeo inspect`` against a real ``docker-registry`` in htpasswd mode, with an auth file whose
  ``credHelpers`` sends the registry to ``docker-credential-asyncauth``, and the credential
  coming from ``IMGPKG_REGISTRY_*``: proves a real client accepts what our helper answers.

A missing tool fails the test with the Debian package to install; nothing here is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncauth import Chain, Credential, DockerConfigResolver, Outcome, Resource

from ._assertions import assert_hidden
from .peers import PeerAccounts, PushedImage, RegistryServer
from .peers._tools import require_tool
from .peers.clouds import ECR_ACCOUNT, MotoProxy

# --- docker-credential-pass ----------------------------------------------------------------------


class PassStore:
    """A password store encrypted to a throwaway GPG key, all under one temporary directory."""

    def __init__(self, root: Path) -> None:
        self.helper = require_tool("docker-credential-pass")
        require_tool("pass")
        self.gpg = require_tool("gpg")
        self.gpgconf = require_tool("gpgconf")
        self.root = root
        gnupghome = root / "gnupg"
        gnupghome.mkdir(mode=0o700)
        (root / "home").mkdir()
        self.environ = {
            "PATH": os.environ["PATH"],
            "HOME": str(root / "home"),
            "GNUPGHOME": str(gnupghome),
            "PASSWORD_STORE_DIR": str(root / "store"),
        }
        self._run(
            [self.gpg, "--batch", "--gen-key"],
            stdin=(
                "%no-protection\n"
                "Key-Type: EDDSA\nKey-Curve: ed25519\n"
                "Subkey-Type: ECDH\nSubkey-Curve: cv25519\n"
                "Name-Real: asyncauth test\nName-Email: test@asyncauth.invalid\n"
                "Expire-Date: 0\n%commit\n"
            ),
        )
        self._run(["pass", "init", "test@asyncauth.invalid"])

    def _run(self, argv: list[str], stdin: str = "") -> str:
        done = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            env=self.environ,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            # The secrets stored by the tests go in on stdin and are never echoed back.
            raise AssertionError(f"{argv[0]} {argv[1]} failed: {done.stdout} {done.stderr}")
        return done.stdout

    def store(self, server_url: str, username: str, secret: str) -> None:
        """Store with the helper's own ``store`` command, as ``docker login`` would."""
        payload = json.dumps({"ServerURL": server_url, "Username": username, "Secret": secret})
        self._run([self.helper, "store"], stdin=payload)

    def close(self) -> None:
        subprocess.run(
            [self.gpgconf, "--kill", "all"],
            env=self.environ,
            capture_output=True,
            timeout=30,
            check=False,
        )


@pytest.fixture(scope="module")
def pass_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PassStore]:
    store = PassStore(tmp_path_factory.mktemp("pass"))
    try:
        store.store("registry.example:5000", "alice", "alice-Secr3t-pw")
        store.store("https://index.docker.io/v1/", "hubuser", "hub-Secr3t-pw")
        store.store("tokens.example", "<token>", "refresh-Tok3n-xyz")
        yield store
    finally:
        store.close()


def resolver_for(store: PassStore, doc: dict[str, object]) -> DockerConfigResolver:
    path = store.root / "config.json"
    path.write_text(json.dumps(doc))
    return DockerConfigResolver(config_path=path, environ=store.environ, helper_timeout=30)


async def test_pass_behind_cred_helpers(pass_store: PassStore) -> None:
    resolver = resolver_for(pass_store, {"credHelpers": {"registry.example:5000": "pass"}})
    found = await resolver.resolve(Resource.parse("registry.example:5000/team/app"))
    assert found == Credential("alice", "alice-Secr3t-pw")


async def test_pass_finds_docker_hub_under_dockers_server_url(pass_store: PassStore) -> None:
    resolver = resolver_for(pass_store, {"credHelpers": {"docker.io": "pass"}})
    assert await resolver.resolve(Resource.parse("alpine")) == Credential(
        "hubuser", "hub-Secr3t-pw"
    )


async def test_pass_token_username_is_an_identity_token(pass_store: PassStore) -> None:
    resolver = resolver_for(pass_store, {"credsStore": "pass"})
    assert await resolver.resolve(Resource.parse("tokens.example/app")) == Credential(
        identity_token="refresh-Tok3n-xyz"
    )


async def test_pass_not_found_is_no_credential(pass_store: PassStore) -> None:
    resolver = resolver_for(pass_store, {"credsStore": "pass"})
    assert await resolver.resolve(Resource.parse("unknown.example/app")) is None


async def test_pass_through_a_chain_leaves_no_secret_in_the_trace(pass_store: PassStore) -> None:
    resolver = resolver_for(pass_store, {"credsStore": "pass"})
    resolution = await Chain([resolver]).resolve("registry.example:5000/team/app")
    assert resolution.source == "docker-config"
    assert resolution.trace[0].outcome is Outcome.MATCHED
    assert resolution.trace[0].detail == (
        f"credsStore -> docker-credential-pass in {pass_store.root / 'config.json'}"
    )
    assert_hidden(repr(resolution), "alice-Secr3t-pw", where="resolution")


# --- docker-credential-ecr-login ---------------------------------------------------------------


async def test_ecr_login_behind_cred_helpers(moto_proxy: MotoProxy, tmp_path: Path) -> None:
    """Debian's Go helper, run by the resolver as docker runs it, asking moto (in proxy mode)
    through the AWS SDK. The ``PATH`` starts with an empty entry: skipped, the helper is still
    found in its absolute directory and run by that path."""
    require_tool("docker-credential-ecr-login")
    registry = f"{ECR_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
    environ = {
        "PATH": f":{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "HTTPS_PROXY": moto_proxy.url,
        "SSL_CERT_FILE": moto_proxy.ca_file,
        "AWS_ECR_DISABLE_CACHE": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "AKIAASYNCAUTHTEST001",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t/" * 5,
    }
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credHelpers": {registry: "ecr-login"}}))
    resolver = DockerConfigResolver(config_path=config, environ=environ, helper_timeout=60)
    resolution = await Chain([resolver]).resolve(f"{registry}/team/app")
    assert resolution.credential == Credential("AWS", f"{ECR_ACCOUNT}-auth-token")
    assert resolution.trace[0].detail == (
        f'credHelpers["{registry}"] -> docker-credential-ecr-login in {config}'
    )
    assert_hidden(repr(resolution), f"{ECR_ACCOUNT}-auth-token", where="resolution")


# --- skopeo through docker-credential-asyncauth --------------------------------------------------


def asyncauth_helper() -> Path:
    path = Path(sys.executable).parent / "docker-credential-asyncauth"
    if not path.exists():
        raise AssertionError(f"{path} is missing: pip install -e . installs the console script")
    return path


def skopeo_inspect(
    tmp_path: Path, image: PushedImage, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    skopeo = require_tool("skopeo")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"credHelpers": {image.registry: "asyncauth"}}))
    environ = {
        "PATH": f"{asyncauth_helper().parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        **env,
    }
    return subprocess.run(
        [
            skopeo,
            "inspect",
            "--tls-verify=false",
            "--authfile",
            str(authfile),
            f"docker://{image.reference}",
        ],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )


def test_skopeo_accepts_what_docker_credential_asyncauth_answers(
    tmp_path: Path,
    htpasswd_registry: RegistryServer,
    htpasswd_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    user, password = peer_accounts.reader
    env = {
        "IMGPKG_REGISTRY_HOSTNAME_0": htpasswd_registry.host,
        "IMGPKG_REGISTRY_USERNAME_0": user,
        "IMGPKG_REGISTRY_PASSWORD_0": password,
    }
    done = skopeo_inspect(tmp_path, htpasswd_registry_image, env)
    assert done.returncode == 0, f"skopeo failed: {done.stderr}"
    assert json.loads(done.stdout)["Digest"] == htpasswd_registry_image.digest
    assert_hidden(done.stdout + done.stderr, password, where="skopeo output")


def test_skopeo_without_the_variables_is_refused(
    tmp_path: Path,
    htpasswd_registry: RegistryServer,
    htpasswd_registry_image: PushedImage,
    peer_accounts: PeerAccounts,
) -> None:
    """The control: the same auth file without ``IMGPKG_REGISTRY_*`` goes anonymous and fails,
    and a wrong password fails too, so the success above came from our helper's answer."""
    done = skopeo_inspect(tmp_path, htpasswd_registry_image, {})
    assert done.returncode != 0
    assert "unauthorized" in done.stderr.lower() or "authentication" in done.stderr.lower()
    user, _ = peer_accounts.reader
    env = {
        "IMGPKG_REGISTRY_HOSTNAME": htpasswd_registry.host,
        "IMGPKG_REGISTRY_USERNAME": user,
        "IMGPKG_REGISTRY_PASSWORD": "wrong-password",
    }
    done = skopeo_inspect(tmp_path, htpasswd_registry_image, env)
    assert done.returncode != 0
