"""``RateLimit`` from response headers: Docker Hub's form, the IETF draft's forms, and junk.

Pure: no network. The headers are given as a dict (names in lower case), as the library reads
them from any HTTP library's response; :func:`asyncauth.rate_limit` on real responses of httpx,
httpx2 and aiohttp is in tests/test_rate_limits.py.
"""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncauth import RateLimit, rate_limit
from asyncauth._ratelimit import MAX_HEADER, from_headers, parse_list

from ._budget import per_example_budget


def parsed(**headers: str) -> RateLimit | None:
    table = {name.replace("_", "-").lower(): value for name, value in headers.items()}
    return from_headers(table.get)


def test_docker_hubs_headers() -> None:
    assert parsed(
        ratelimit_limit="100;w=21600",
        ratelimit_remaining="76;w=21600",
        docker_ratelimit_source="192.0.2.7",
    ) == RateLimit(limit=100, remaining=76, window=21600.0, source="192.0.2.7")


def test_the_ietf_drafts_first_forms() -> None:
    # draft 00-03: the policies listed after the limit; draft 04-06: a policy header, a reset.
    assert parsed(
        ratelimit_limit="10, 10;w=1, 50;w=60", ratelimit_remaining="4", ratelimit_reset="7"
    ) == RateLimit(10, 4, 1.0, None, 7.0)
    assert parsed(
        ratelimit_limit="50", ratelimit_remaining="3", ratelimit_policy="10;w=1, 50;w=60"
    ) == RateLimit(50, 3, 60.0, None)


def test_the_ietf_drafts_structured_form() -> None:
    assert parsed(
        ratelimit='"daily";r=40;t=3600',
        ratelimit_policy='"burst";q=10;w=1, "daily";q=1000;w=86400',
    ) == RateLimit(1000, 40, 86400.0, None, 3600.0)
    assert parsed(ratelimit="default;r=5") == RateLimit(None, 5, None, None)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"ratelimit_limit": "100;w=21600"},  # no remaining: nothing to report
        {"ratelimit_remaining": "-1"},
        {"ratelimit_remaining": "lots"},
        {"ratelimit_remaining": "1, 2"},
        {"ratelimit_remaining": "5", "ratelimit_limit": "x;w=60"},
        {"ratelimit_remaining": "500", "ratelimit_limit": "100"},  # more left than the limit
        {"ratelimit_remaining": "5", "ratelimit_reset": "soon"},
        {"ratelimit_remaining": "5,"},
        {"ratelimit_remaining": "9" * 16},
        {"ratelimit_remaining": "5;w=" + "1" * MAX_HEADER},
        {"ratelimit": '"default";t=5'},  # no remaining
        {"ratelimit": '"unterminated;r=5'},
        {"ratelimit": '"d";r=50', "ratelimit_policy": '"d";q=10'},
    ],
)
def test_malformed_or_absent_headers_report_nothing(headers: dict[str, str]) -> None:
    assert parsed(**headers) is None


def test_a_source_that_is_not_one_printable_word_is_left_out() -> None:
    found = parsed(ratelimit_remaining="5", docker_ratelimit_source="a b\x07")
    assert found == RateLimit(None, 5, None, None)


def test_low_is_under_ten_percent_of_a_known_limit() -> None:
    assert RateLimit(100, 9, None, None).low
    assert not RateLimit(100, 10, None, None).low
    assert not RateLimit(None, 0, None, None).low
    assert not RateLimit(0, 0, None, None).low
    assert RateLimit(100, 0, 21600.0, "192.0.2.7", 30.0).describe() == (
        "0 of 100 left in a 21600 s window, reset in 30 s (counted against 192.0.2.7)"
    )


def test_rate_limit_reads_a_response_and_refuses_what_is_not_one() -> None:
    response = httpx.Response(
        200, headers={"RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "99;w=21600"}
    )
    assert rate_limit(response) == RateLimit(100, 99, 21600.0, None)
    assert rate_limit(httpx.Response(200)) is None
    with pytest.raises(TypeError, match="needs an HTTP response"):
        rate_limit("ratelimit-remaining: 5")


# -- properties --------------------------------------------------------------------------------

_NAMES = st.sampled_from(
    [
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "ratelimit-policy",
        "ratelimit",
        "docker-ratelimit-source",
    ]
)
_PIECES = st.sampled_from(
    ['"', ";", ",", "=", " ", "w", "q", "r", "t", "1", "0", "99", '\\"', "default", "\t", "-"]
)
_VALUES = st.one_of(st.text(max_size=80), st.lists(_PIECES, max_size=40).map("".join))


@given(st.dictionaries(_NAMES, _VALUES, max_size=6))
@per_example_budget()
def test_any_headers_give_a_rate_limit_or_none_never_an_error(headers: dict[str, str]) -> None:
    found = from_headers(headers.get)
    if found is not None:
        assert found.remaining >= 0
        assert found.limit is None or found.remaining <= found.limit
        assert found.window is None or found.window > 0
        found.describe()


@given(st.text(max_size=4 * MAX_HEADER))
@per_example_budget()
def test_any_text_is_a_list_or_none(text: str) -> None:
    members = parse_list(text)
    assert members is None or 1 <= len(members) <= 32


@given(
    limit=st.integers(0, 10**9),
    share=st.floats(0, 1),
    window=st.integers(1, 10**7),
    source=st.from_regex(r"[\x21-\x7e]{1,40}", fullmatch=True),
)
def test_docker_hubs_form_reads_back_what_was_written(
    limit: int, share: float, window: int, source: str
) -> None:
    remaining = int(limit * share)
    found = parsed(
        ratelimit_limit=f"{limit};w={window}",
        ratelimit_remaining=f"{remaining};w={window}",
        docker_ratelimit_source=source,
    )
    assert found == RateLimit(limit, remaining, float(window), source)


@given(remaining=st.integers(0, 10**6), quota=st.integers(0, 10**6), reset=st.integers(0, 10**6))
def test_the_structured_form_reads_back_what_was_written(
    remaining: int, quota: int, reset: int
) -> None:
    found = parsed(ratelimit=f'"p";r={remaining};t={reset}', ratelimit_policy=f'"p";q={quota};w=60')
    if remaining > quota:
        assert found is None
    else:
        assert found == RateLimit(quota, remaining, 60.0, None, float(reset))
