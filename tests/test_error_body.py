"""A registry's error body (``{"errors": [{"code": ..., "message": ...}]}``), read safely."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncauth._error_body import (
    MAX_ERROR_BODY,
    MAX_ERRORS,
    RegistryError,
    describe,
    registry_errors,
)

from ._assertions import assert_hidden
from ._budget import per_example_budget
from ._secrets import secret
from .peers import RegistryServer

TOKEN = secret("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlMTIzNDU2Nzg5")


def test_the_real_registry_s_bodies(open_registry: RegistryServer) -> None:
    """What distribution answers for a missing tag and a missing repository, read as it is."""
    with httpx.Client(base_url=open_registry.url, timeout=30) as client:
        manifest = client.get("/v2/nothing/here/manifests/v1")
        tags = client.get("/v2/nothing/here/tags/list")
    assert manifest.status_code == tags.status_code == 404
    assert registry_errors(manifest.content) == (
        RegistryError("MANIFEST_UNKNOWN", "manifest unknown"),
    )
    assert registry_errors(tags.content) == (
        RegistryError("NAME_UNKNOWN", "repository name not known to registry"),
    )
    assert describe(404, registry_errors(tags.content)) == (
        "404 NAME_UNKNOWN (repository name not known to registry)"
    )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"errors": "MANIFEST_UNKNOWN"}',
        b'{"errors": [{"code": "lower_case"}, {"code": 7}, ["NAME_UNKNOWN"]]}',
        b"[" * 10_000 + b"]" * 10_000,  # nested deeper than the JSON parser recurses
        b'{"errors": [{"code": "NAME_UNKNOWN"}]}' + b" " * MAX_ERROR_BODY,  # too long to read
    ],
)
def test_what_is_not_an_error_body_gives_nothing(body: bytes) -> None:
    assert registry_errors(body) == ()
    assert describe(404, registry_errors(body)) == "404"


def test_messages_are_shown_safely_and_entries_bounded() -> None:
    entries = [
        {"code": "DENIED", "message": f"Bearer {TOKEN}\n\x1b[31mred\x1b[0m", "detail": TOKEN},
        {"code": "UNAUTHORIZED"},
        *({"code": f"CODE_{i}", "message": "m" * 200} for i in range(50)),
    ]
    found = registry_errors(json.dumps({"errors": entries}).encode())
    assert len(found) == MAX_ERRORS
    assert found[1] == RegistryError("UNAUTHORIZED", "")
    shown = describe(401, found)
    assert shown.startswith("401 DENIED (Bearer **** [31mred [0m); UNAUTHORIZED; CODE_0 (mmm")
    assert "\x1b" not in shown
    assert all(len(error.message) <= 120 for error in found)
    assert_hidden(shown, TOKEN, where="registry error")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
_entry = st.fixed_dictionaries(
    {},
    optional={
        "code": st.from_regex(r"[A-Z][A-Z_]{0,20}", fullmatch=True) | _json,
        "message": st.text(max_size=300) | _json,
        "detail": _json,
    },
)


@given(
    st.binary(max_size=200)
    | st.lists(_entry, max_size=12).map(lambda errors: json.dumps({"errors": errors}).encode())
    | _json.map(lambda value: json.dumps(value).encode())
)
@per_example_budget()
def test_any_body_gives_bounded_printable_errors(body: bytes) -> None:
    errors = registry_errors(body)
    assert len(errors) <= MAX_ERRORS
    for error in errors:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", error.code)
        assert len(error.message) <= 120
        assert error.message.isprintable()
    assert describe(500, errors).startswith("500")
