"""Secrets never reach an error message (issue 11 #7).

A registry token that no header can hold is refused before httpcore quotes it back; a password
written where a host belongs (``user:PASSWORD@host``) is refused before anything quotes it: in
``IMGPKG_REGISTRY_HOSTNAME``, a Docker config key, ``insecure_registries``, a reference, and the
server URL given to ``docker-credential-asyncauth`` (a real process: its stdout and stderr).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asyncauth import (
    AsyncAuthError,
    AuthenticationError,
    Chain,
    Credential,
    DockerConfigResolver,
    EnvResolver,
    Resource,
    create_client,
)

from .._assertions import assert_hidden
from .._secrets import secret
from .._transport_choice import every_transport
from .conftest import client_on
from .peers import Server, everything, token_registry

REGISTRY_TOKEN = secret("rt-NEWLINE-secret-1")
PASSWORD = secret("pw-HOSTPASTE-secret-2")
SLASHED = secret("pw/SLASH-secret-3")
MANIFEST = "/v2/org/app/manifests/v1"
PASTED = f"alice:{PASSWORD}@registry.example.com"


@every_transport
@pytest.mark.parametrize("tail", ["\n", "\r\n", " trailing"])
async def test_a_registry_token_no_header_can_hold_is_refused_without_echo(
    transport: str,
    tail: str,
    environ: pytest.MonkeyPatch,
    registry: Server,
    realm: Server,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpcore's included
    registry.route("/v2/", token_registry(realm.url + "/token"))
    credential = Credential(registry_token=REGISTRY_TOKEN + tail)
    async with client_on(environ, transport, credential) as http:
        with pytest.raises(AuthenticationError, match="cannot carry") as caught:
            await http.get(registry.url + MANIFEST)
    shown = f"{caught.value}\n{caught.value!r}\n{caught.getrepr()}\n{caplog.text}"
    assert_hidden(shown, REGISTRY_TOKEN, where="error or log")
    assert_hidden(everything(registry.seen), REGISTRY_TOKEN, where="registry")
    assert realm.seen == []


def _refused_without_secret(error: BaseException, *secrets: str) -> None:
    assert isinstance(error, AsyncAuthError), repr(type(error))
    assert_hidden(f"{error}\n{error!r}\n{error.__cause__!r}\n{error.__context__!r}", *secrets)


async def test_a_password_in_imgpkg_registry_hostname() -> None:
    environ = {
        "IMGPKG_REGISTRY_HOSTNAME": PASTED,
        "IMGPKG_REGISTRY_USERNAME": "alice",
        "IMGPKG_REGISTRY_PASSWORD": secret("pw-ENV-password-4"),
    }
    with pytest.raises(AsyncAuthError) as caught:
        await Chain([EnvResolver(environ)]).resolve(Resource.parse("registry.example.com/a"))
    _refused_without_secret(caught.value, PASSWORD)
    assert "IMGPKG_REGISTRY_HOSTNAME" in str(caught.value)


async def test_a_password_in_a_docker_config_key(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {PASTED: {"auth": "YWxpY2U6eA=="}}}))
    resolver = DockerConfigResolver(config_path=config, environ={})
    resolution = await Chain([resolver]).resolve(Resource.parse("registry.example.com/a"))
    shown = f"{resolution!r}\n{resolution.failures!r}\n{resolver.explain(resolution.resource)!r}"
    assert_hidden(shown, PASSWORD)
    assert "must not carry a user name or password" in shown  # reported, not skipped silently


@pytest.mark.parametrize("where", ["insecure_registries", "reference"])
def test_a_password_where_a_host_belongs(where: str) -> None:
    refuse = {
        "insecure_registries": lambda: create_client(insecure_registries=[PASTED]),
        "reference": lambda: Resource.parse(f"alice:{SLASHED}@registry.example.com/team/app"),
    }[where]
    with pytest.raises(AsyncAuthError) as caught:
        refuse()
    _refused_without_secret(caught.value, PASSWORD, SLASHED, SLASHED.split("/")[1])


def test_a_password_in_the_server_url_given_to_the_credential_helper(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("IMGPKG_", "DOCKER_"))}
    environ.update(HOME=str(tmp_path), DOCKER_CONFIG=str(tmp_path), IMGPKG_ENABLE_IAAS_AUTH="false")
    code = "import sys, asyncauth.credential_helper as h; sys.exit(h.main(['get']))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=f"https://{PASTED}:5000\n",
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )
    assert done.returncode != 0
    assert_hidden(done.stdout + done.stderr, PASSWORD, where="helper output")
    assert done.stdout.strip() or done.stderr.strip()
