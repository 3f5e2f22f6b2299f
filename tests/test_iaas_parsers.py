"""Every parser of cloud answers: any input gives a value or ``None`` (or a clean error), in time.

What a cloud endpoint sends is network data: an ACR refresh token's ``exp`` claim, an ECR
authorization token, an expiry, a ``Retry-After`` header. None of them may raise anything but the
library's own errors, and none may make a parser backtrack: each example is held to a budget
measured here (hypothesis' own deadline is off on these shared machines).
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncauth import ResolverError
from asyncauth._http.retry import RetryPolicy, retry_after_seconds
from asyncauth._sources.azure import _entra_error, _jwt_expiry
from asyncauth._sources.cloud import expiry_epoch
from asyncauth._sources.ecr import decode_authorization_token, ecr_host
from asyncauth._sources.google import is_google_host

from ._budget import per_example_budget

BUDGET = 1.0


def _within_budget(call: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    try:
        return call()
    finally:
        elapsed = time.perf_counter() - started
        assert elapsed < BUDGET, f"{elapsed:.2f} s for one example"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(payload: bytes) -> str:
    return f"{_b64(b'{}')}.{_b64(payload)}.c2ln"


# --- the ACR refresh token's exp (issue 11: OverflowError on network data) -----------------------


@pytest.mark.parametrize(
    "payload",
    [
        b'{"exp": ' + b"9" * 400 + b"}",  # float() of it: OverflowError
        b'{"exp": 1e400}',  # inf
        b'{"exp": NaN}',
        b'{"exp": -Infinity}',
        b'{"exp": -5}',
        b'{"exp": true}',
        b'{"exp": "1700000000"}',
        b'{"exp": ' + b"1" * 5000 + b"}",  # longer than int() converts: ValueError
        b"[" * 100_000,  # RecursionError
        b"\xff\xfe",
        b"[]",
    ],
)
def test_a_hostile_exp_claim_means_no_expiry(payload: bytes) -> None:
    assert _within_budget(lambda: _jwt_expiry(_jwt(payload))) is None


def test_a_plain_exp_claim_is_read() -> None:
    assert _jwt_expiry(_jwt(b'{"exp": 1700000000}')) == 1700000000.0
    assert _jwt_expiry(_jwt(b'{"exp": 1700000000.5}')) == 1700000000.5


@settings(max_examples=300)
@given(st.text(max_size=300))
@per_example_budget()
def test_any_token_text_gives_an_expiry_or_none(token: str) -> None:
    value = _within_budget(lambda: _jwt_expiry(token))
    assert value is None or (math.isfinite(value) and value > 0)


@settings(max_examples=300)
@given(st.binary(max_size=300) | st.from_regex(rb'\{"exp": ?[-0-9.eE+]{1,40}\}', fullmatch=True))
@per_example_budget()
def test_any_payload_gives_an_expiry_or_none(payload: bytes) -> None:
    value = _within_budget(lambda: _jwt_expiry(_jwt(payload)))
    assert value is None or (math.isfinite(value) and value > 0)


@settings(max_examples=300)
@given(st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.text(max_size=5)))
@per_example_budget()
def test_expiry_epoch_is_finite_positive_or_none(value: object) -> None:
    epoch = expiry_epoch(value)
    assert epoch is None or (math.isfinite(epoch) and 0 < epoch <= 253402300799.0)


# --- Retry-After and the pause it sets -----------------------------------------------------------


def test_retry_after_forms() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(" 3 ") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("-5") is None
    assert retry_after_seconds("²") is None  # a digit to str.isdigit, not to int()
    now = 1_700_000_000.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:13:40 GMT", now=now) == 20.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:13:00 GMT", now=now) == 0.0  # in the past


@settings(max_examples=500)
@given(st.text(max_size=100) | st.from_regex(r"[A-Za-z]{3}, [0-9]{1,3} [A-Za-z]{3} [0-9]{1,6}"))
@per_example_budget()
def test_any_retry_after_gives_seconds_or_none(value: str) -> None:
    seconds = _within_budget(lambda: retry_after_seconds(value))
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


@settings(max_examples=300)
@given(
    st.integers(min_value=1, max_value=10_000),
    st.none() | st.text(max_size=30) | st.integers(min_value=0, max_value=10**12).map(str),
)
@per_example_budget()
def test_every_pause_is_bounded(attempt: int, retry_after: str | None) -> None:
    policy = RetryPolicy()
    delay = policy.delay(attempt, retry_after)
    assert 0 < delay <= max(policy.max_backoff, policy.max_retry_after)


def test_retry_after_raises_the_pause_up_to_the_cap() -> None:
    policy = RetryPolicy(backoff=0.1, max_backoff=0.2, max_retry_after=3.0)
    assert policy.delay(1, "2") == 2.0
    assert policy.delay(1, "3600") == 3.0
    assert 0.05 <= policy.delay(1, None) <= 0.1


# --- ECR's token and host names ------------------------------------------------------------------


_DECODE_ERRORS = {
    "ECR returned an authorization token that is not base64",
    "ECR returned an authorization token that is not 'user:password'",
}


@settings(max_examples=300)
@given(st.text(max_size=200) | st.binary(max_size=150).map(lambda b: base64.b64encode(b).decode()))
@per_example_budget()
def test_any_authorization_token_gives_a_pair_or_a_resolver_error(token: str) -> None:
    try:
        username, password = decode_authorization_token(token)
    except ResolverError as exc:
        # Fixed text, nothing of the token: a substring test would flag a token such as "auth"
        # (hypothesis draws the project's own string constants) as leaked.
        assert str(exc) in _DECODE_ERRORS
    else:
        assert username
        assert password


@settings(max_examples=300)
@given(
    st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz.-", max_size=300)
    | st.builds(
        lambda n: "1" * 12 + ".dkr.ecr." + "a-" * n + "1.amazonaws.com", st.integers(0, 2000)
    )
    | st.builds(lambda n: "a" * n + ".pkg.dev", st.integers(0, 5000))
)
@per_example_budget()
def test_host_rules_answer_in_time(host: str) -> None:
    _within_budget(lambda: ecr_host(host))
    _within_budget(lambda: is_google_host(host))


def test_json_roundtrip_of_a_real_looking_acr_token() -> None:
    payload = json.dumps({"exp": 1893456000, "aud": "myregistry.azurecr.io"}).encode()
    assert _jwt_expiry(_jwt(payload)) == 1893456000.0


class _Answer:
    """An azure-core response as far as :func:`_entra_error` reads one: its text."""

    def __init__(self, text: str) -> None:
        self._text = text

    def text(self) -> str:
        return self._text


class _Refused(Exception):
    def __init__(self, text: str) -> None:
        super().__init__("refused")
        self.response = _Answer(text)


_ENTRA_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "error": st.text(max_size=80) | st.sampled_from(["invalid_client", "invalid_request"]),
        "error_codes": st.lists(
            st.integers() | st.booleans() | st.text(max_size=5) | st.floats(), max_size=5
        )
        | st.text(max_size=5),
        "error_description": st.text(max_size=200),
    },
).map(json.dumps)


@settings(max_examples=300)
@given(_ENTRA_BODIES | st.text(max_size=300))
@per_example_budget()
def test_an_entra_refusal_gives_its_error_and_codes_and_nothing_else(text: str) -> None:
    said = _within_budget(lambda: _entra_error(_Refused(text)))
    if not said:
        return
    assert said.startswith(": ")
    try:
        body = json.loads(text)
    except ValueError:
        raise AssertionError(f"words from a body that is not JSON: {said!r}") from None
    allowed = {body.get("error")} | {
        f"AADSTS{code}" for code in body.get("error_codes", []) if type(code) is int
    }
    for word in said[2:].split(" "):
        assert word in allowed, (word, text)
        assert word.startswith("AADSTS") or re.fullmatch(r"[a-z_]{1,64}", word), word


def test_an_entra_refusal_reads_as_error_and_code() -> None:
    body = {"error": "invalid_request", "error_codes": [70021], "error_description": "AADSTS70021:"}
    assert _entra_error(_Refused(json.dumps(body))) == ": invalid_request AADSTS70021"
    assert _entra_error(ValueError("no response")) == ""
