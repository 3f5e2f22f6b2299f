"""imgpkg's Azure config file: the documented shapes, every malformed one, and hostile files.

The file is read when the default chain is built, so a file that makes the parser backtrack,
recurse or block would hang or crash start-up. Property tests give the parser any text and hold
each example to a time budget measured here (hypothesis' own deadline is off on these shared
machines), so that backtracking shows up as a failure rather than as a slow suite.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncauth import Chain, ConfigError
from asyncauth._defaults import iaas_resolvers
from asyncauth._sources.azure import AzureResolver
from asyncauth._sources.azure_config import (
    MAX_CONFIG_BYTES,
    AzureConfig,
    load_azure_config,
    parse_azure_config,
    without_comments,
)
from tests._assertions import assert_hidden

from ._budget import per_example_budget
from .peers.clouds import FailingTransport

IMAGE = "myregistry.azurecr.io/team/app:1.0"
BUDGET = 1.0
"""Seconds one parse may take: generous on a loaded machine, hopeless for backtracking."""


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    try:
        return call(), time.perf_counter() - started
    except ConfigError as exc:
        return exc, time.perf_counter() - started


def _write(path: Path, config: dict[str, object]) -> str:
    path.write_text(json.dumps(config))
    return str(path)


SPEC_EXAMPLE = """{
  # The cloud environment identifier.
  "cloud": "",
  # The AAD Tenant ID for the Subscription that the cluster is deployed in
  "tenantId": "TenantID",
  "aadClientId": "AADClientID",
  "aadClientSecret": "AADClientSecret",
  "aadClientCertPath": "AADClientCertPath",
  "aadClientCertPassword": "AADClientCertPassword",
  "useManagedIdentityExtension": false,
  "userAssignedIdentityID": "UserAssignedIdentityID",
  "subscriptionId": "SubscriptionID",
  "identitySystem": "azure_ad",
  "resourceManagerEndpoint": "",
  "networkResourceTenantID": "NetworkResourceTenantID",
  "networkResourceSubscriptionID": "NetworkResourceSubscriptionID"
}"""


def test_the_documented_example_parses_with_its_comments() -> None:
    config = parse_azure_config(SPEC_EXAMPLE, path="azure.json")
    assert config.method == "client secret"
    assert (config.tenant_id, config.aad_client_id) == ("TenantID", "AADClientID")
    assert config.user_assigned_identity_id == "UserAssignedIdentityID"  # the rest: ignored
    assert_hidden(repr(config), "AADClientSecret", "AADClientCertPassword", where="repr")


def test_keys_match_case_insensitively_and_unknown_keys_are_ignored() -> None:
    config = parse_azure_config(
        '{"TENANTID": "t", "aadClientID": "a", "AADClientSecret": "s", "vnetName": "v"}',
        path="azure.json",
    )
    assert (config.tenant_id, config.aad_client_id, config.method) == ("t", "a", "client secret")


def test_managed_identity_shapes() -> None:
    assert parse_azure_config('{"useManagedIdentityExtension": true}', path="f").method == (
        "managed identity"
    )
    legacy = parse_azure_config('{"aadClientId": "msi", "aadClientSecret": "msi"}', path="f")
    assert legacy.method == "managed identity"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        (
            '{"useManagedIdentityExtension": "true"}',
            "'useManagedIdentityExtension' must be a boolean",
        ),
        ('{"tenantId": 7, "aadClientSecret": "hidden-value"}', "'tenantId' must be a string"),
        ('{"cloud": "AzureMoonCloud", "useManagedIdentityExtension": true}', "field 'cloud'"),
        ('{"identitySystem": "ldap", "useManagedIdentityExtension": true}', "'identitySystem'"),
        ('{"aadClientId": "a", "aadClientSecret": "hidden-value"}', "'tenantId'"),
        ('{"tenantId": "t", "aadClientSecret": "hidden-value"}', "'aadClientId'"),
        ('{"tenantId": "t", "aadClientId": "a"}', "no credential"),
        (
            '{"resourceManagerEndpoint": "http://x", "useManagedIdentityExtension": true}',
            "'resourceManagerEndpoint'",
        ),
    ],
)
def test_a_malformed_config_names_the_file_and_field_but_no_secret(text: str, field: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_azure_config(text, path="/etc/imgpkg/azure.json")
    message = str(raised.value)
    assert message.startswith("Azure config file /etc/imgpkg/azure.json: ")
    assert field in message
    assert_hidden(message, "hidden-value", where="message")


def test_a_missing_file_names_the_variable(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match=r"nope\.json \(from IMGPKG_REGISTRY_AZURE_CR_CONFIG\)"):
        AzureResolver(environ={"IMGPKG_REGISTRY_AZURE_CR_CONFIG": missing})
    with pytest.raises(ConfigError, match="cannot be read"):
        load_azure_config(missing)
    # Through the gating too: the chain is never built on a broken file.
    with pytest.raises(ConfigError, match="IMGPKG_REGISTRY_AZURE_CR_CONFIG"):
        iaas_resolvers(environ={"IMGPKG_REGISTRY_AZURE_CR_CONFIG": missing})


def test_an_unreadable_certificate_is_a_config_error(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "azure.json",
        {"tenantId": "t", "aadClientId": "a", "aadClientCertPath": str(tmp_path / "no.pem")},
    )
    resolver = AzureResolver(config=config, transport=FailingTransport())

    async def resolve() -> None:
        await Chain([resolver]).resolve(IMAGE)

    with pytest.raises(ConfigError, match="aadClientCertPath"):
        anyio.run(resolve)


async def test_a_fifo_as_certificate_costs_the_timeout_not_forever(tmp_path: Path) -> None:
    """azure-identity reads the certificate in a worker thread; a FIFO there never answers."""
    fifo = tmp_path / "cert.pem"
    os.mkfifo(fifo)
    config = _write(
        tmp_path / "azure.json",
        {"tenantId": "t", "aadClientId": "a", "aadClientCertPath": str(fifo)},
    )
    resolver = AzureResolver(config=config, transport=FailingTransport(), timeout=0.5)
    started = time.perf_counter()
    with anyio.fail_after(10):
        resolution = await Chain([resolver]).resolve(IMAGE)
    assert resolution.trace[0].outcome.value == "timed out"
    assert time.perf_counter() - started < 3
    # Release the abandoned reader thread, if it is still waiting for a writer.
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


# --- hostile files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "\n" * 65536,  # issue 11: > 20 s with the old comment pattern
        " " * 65536,
        "\n" * 32768 + "#",
        " \n" * 32768 + "x",
        "\t\n\r\f\v" * 13000,
    ],
    ids=["newlines", "spaces", "newlines-then-hash", "blank-lines", "mixed-blanks"],
)
def test_whitespace_floods_fail_fast(text: str) -> None:
    result, elapsed = _timed(lambda: parse_azure_config(text, path="azure.json"))
    assert isinstance(result, ConfigError)
    assert elapsed < BUDGET, f"{elapsed:.2f} s for {len(text)} characters"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 100_000, "nested too deeply"),
        ('{"a":' * 100_000, "nested too deeply"),
        ('{"tenantId": ' + "7" * 5000 + "}", "not valid JSON (ValueError)"),
    ],
    ids=["deep-array", "deep-object", "huge-integer"],
)
def test_recursion_and_huge_numbers_are_config_errors(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=r"Azure config file azure\.json: ") as raised:
        parse_azure_config(text, path="azure.json")
    assert reason in str(raised.value)


def test_comment_lines_keep_the_line_numbers_of_errors() -> None:
    text = '{\n  # a comment\n  "cloud": ,\n}'
    with pytest.raises(ConfigError, match=r"line 3, column"):
        parse_azure_config(text, path="azure.json")
    assert without_comments(" # x\r\n\t#y\n{}") == "\n\n{}"
    assert without_comments('{"a": "# not a comment"}') == '{"a": "# not a comment"}'


def test_a_fifo_in_place_of_the_file_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "azure.json"
    os.mkfifo(fifo)
    outcome: list[BaseException | AzureConfig] = []

    def load() -> None:
        try:
            outcome.append(load_azure_config(fifo, what="IMGPKG_REGISTRY_AZURE_CR_CONFIG"))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=load, daemon=True)  # daemon: a hang must not block exit
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "reading a FIFO blocked"
    (error,) = outcome
    assert isinstance(error, ConfigError)
    assert "is not a regular file" in str(error)
    assert "IMGPKG_REGISTRY_AZURE_CR_CONFIG" in str(error)


def test_a_directory_or_an_oversized_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        load_azure_config(tmp_path)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_azure_config(big)
    blank = tmp_path / "blank.json"
    blank.write_bytes(b"\n" * MAX_CONFIG_BYTES)
    result, elapsed = _timed(lambda: load_azure_config(blank))
    assert isinstance(result, ConfigError)
    assert elapsed < BUDGET


# --- properties ----------------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from(
    [
        "\n",
        " ",
        "\t",
        "\r",
        "#",
        "{",
        "}",
        "[",
        "]",
        '"',
        ":",
        ",",
        "0",
        "1e999",
        "-",
        ".",
        '"cloud"',
        '"tenantId"',
        '"aadClientSecret"',
        '"useManagedIdentityExtension"',
        "true",
        "null",
        "\\",
        "\u2028",
        "\x00",
        "\ud800",
    ]
)
_HOSTILE = st.builds(
    lambda parts, repeat: "".join(parts) * repeat,
    st.lists(_FRAGMENTS, max_size=12),
    st.integers(min_value=1, max_value=4000),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "cloud",
                    "tenantId",
                    "aadClientId",
                    "aadClientSecret",
                    "AADCLIENTID",
                    "useManagedIdentityExtension",
                    "identitySystem",
                    "aadClientCertPath",
                    "resourceManagerEndpoint",
                    "x",
                ]
            )
            | st.text(max_size=8),
            inner,
            max_size=6,
        )
    ),
    max_leaves=12,
)


def _check(text: str) -> None:
    result, elapsed = _timed(lambda: parse_azure_config(text, path="/etc/azure.json"))
    assert isinstance(result, AzureConfig | ConfigError), type(result)
    if isinstance(result, ConfigError):
        assert str(result).startswith("Azure config file /etc/azure.json: ")
    assert elapsed < BUDGET, f"{elapsed:.2f} s for one example of {len(text)} characters"


@settings(max_examples=300)
@given(st.text(max_size=2000))
@per_example_budget()
def test_any_text_gives_a_config_or_a_config_error_in_time(text: str) -> None:
    _check(text)


@settings(max_examples=300)
@given(_HOSTILE)
@per_example_budget()
def test_hostile_repetitions_give_a_config_or_a_config_error_in_time(text: str) -> None:
    _check(text)


@settings(max_examples=300)
@given(_JSON, st.booleans())
@per_example_budget()
def test_any_json_document_gives_a_config_or_a_config_error(value: Any, comment: bool) -> None:
    text = json.dumps(value, indent=1)
    if comment:
        text = "# imgpkg azure config\n" + text.replace("\n", "\n  # note\n", 1)
    _check(text)


@settings(max_examples=200)
@given(st.text(min_size=2, max_size=40).map(lambda text: "zq" + text.strip()))
@per_example_budget()
def test_secrets_never_appear_in_the_message(secret: str) -> None:
    """Any secret value (marked "zq" so that it cannot coincide with a field or cloud name)."""
    for text in (
        json.dumps({"aadClientSecret": secret, "aadClientId": 7}),
        json.dumps({"aadClientSecret": secret, "aadClientId": "a"}),
        json.dumps({"aadClientCertPassword": secret, "cloud": "AzureMoonCloud"}),
        json.dumps({"aadClientSecret": secret, "tenantId": ["x"]}),
    ):
        with pytest.raises(ConfigError) as raised:
            parse_azure_config(text, path="azure.json")
        assert_hidden(str(raised.value), secret, where="message")
