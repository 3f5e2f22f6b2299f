"""Credential: a frozen value whose secrets never show."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from asyncauth import Credential

from ._assertions import assert_hidden

SECRETS = ("pw-SECRET", "id-SECRET", "reg-SECRET")


def full() -> Credential:
    return Credential("bob", SECRETS[0], SECRETS[1], SECRETS[2], expires_at=1.0)


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        full().username = "eve"  # type: ignore[misc]


def test_kind_follows_go_containerregistry_precedence() -> None:
    assert Credential(registry_token="t", identity_token="i", username="u", password="p").kind == (
        "registry_token"
    )
    assert Credential(identity_token="i", username="u", password="p").kind == "identity_token"
    assert Credential(username="u", password="p").kind == "basic"
    assert Credential(username="u", password="").kind == "basic"
    assert Credential().kind == "anonymous"


def test_anonymous() -> None:
    assert Credential.anonymous().is_anonymous
    assert Credential.anonymous() == Credential()
    assert not Credential("u", "p").is_anonymous


@pytest.mark.parametrize("render", [repr, str, lambda c: c.redacted(), lambda c: f"{c!r} {c}"])
def test_no_secret_in_text(render: object) -> None:
    text = render(full())  # type: ignore[operator]
    assert_hidden(text, *SECRETS)
    assert "bob" in text


def test_redacted_forms() -> None:
    assert Credential("bob", "x").redacted() == "basic bob:****"
    assert Credential(registry_token="x").redacted() == "registry token ****"
    assert Credential("00000000", identity_token="x").redacted() == (
        "identity token **** (username 00000000)"
    )
    assert Credential().redacted() == "anonymous"


def test_no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("asyncauth.test").debug("using %s / %r", full(), full())
    assert_hidden(caplog.text, *SECRETS, where="log")


def test_fingerprint_identifies_without_revealing() -> None:
    a, b = Credential("u", "p1"), Credential("u", "p2")
    assert a.fingerprint == Credential("u", "p1").fingerprint
    assert a.fingerprint != b.fingerprint
    # Fields cannot be confused by concatenation.
    assert Credential("ab", "c").fingerprint != Credential("a", "bc").fingerprint
    assert Credential(password="x").fingerprint != Credential(identity_token="x").fingerprint
    assert_hidden(full().fingerprint, *SECRETS)


def test_expiry_does_not_change_identity() -> None:
    assert Credential("u", "p", expires_at=1.0) == Credential("u", "p", expires_at=2.0)
