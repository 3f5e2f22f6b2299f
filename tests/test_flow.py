"""The handshake's flow, driven as h11 is tested: canned answers in, effects out.

No network, no event loop, no clock: each test hands :func:`asyncauth._registry.flow.request_flow`
a request described as data and answers every effect it yields from a script, then checks what
it asked for, in order. This is the whole handshake matrix — Bearer, Basic, an open registry,
``insufficient_scope`` and ``invalid_token``, the identity-token POST and its GET fallback,
``Retry-After``, refusals — for every driver at once, since every driver runs this flow.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncauth import (
    AsyncAuthError,
    AuthenticationError,
    Credential,
    InsecureTransportError,
    Outcome,
    RateLimitedError,
    Resolution,
    Resource,
    TraceEntry,
)
from asyncauth._registry import flow as flows
from asyncauth._registry import prefetch as prefetches
from asyncauth._registry.challenge import Challenge
from asyncauth._registry.messages import (
    LEAD,
    OPEN,
    AwaitChallenge,
    AwaitToken,
    Backoff,
    Call,
    Claimed,
    ClaimTokens,
    DropToken,
    Fetch,
    Headers,
    KeepRefresh,
    KeepToken,
    KeepTokens,
    Learn,
    Ping,
    Reply,
    Resolve,
    Sleep,
    TokenDuty,
    Transmit,
    need_of,
)
from asyncauth._registry.target import target_of
from asyncauth._registry.tokens import Token

from ._budget import per_example_budget
from ._secrets import secret

REGISTRY = "https://registry.example.com"
REALM = "https://auth.example.com/token"
MANIFEST = f"{REGISTRY}/v2/org/app/manifests/v1"
PASSWORD = secret("pw-FLOW-secret-7", user="alice")
IDENTITY = secret("idt-FLOW-secret-8")
ACCESS = "access-FLOW-token-1"
SETTINGS = flows.Settings(
    insecure=frozenset(), client_id="asyncauth", max_token_response=1 << 20, offline_token=False
)
BEARER = f'Bearer realm="{REALM}",service="registry.example.com"'
NOW = 1_700_000_000.0


def call_for(url: str = MANIFEST, method: str = "GET", *, replayable: bool = True) -> Call:
    target = target_of(url, frozenset())
    parts = urlsplit(url)
    return Call(
        method, url, target, need_of(target.registry, method, parts.path, parts.query), replayable
    )


def resolution(credential: Credential, *, failed: bool = False) -> Resolution:
    trace = (TraceEntry("helper", Outcome.TIMED_OUT, 5.0, "no answer"),) if failed else ()
    source = None if credential.is_anonymous else "fixed"
    return Resolution(Resource.parse("registry.example.com/org/app"), credential, source, trace)


def reply(status: int, url: str = MANIFEST, *, body: bytes | None = None, **headers: str) -> Reply:
    pairs = tuple((name.replace("_", "-").lower(), value) for name, value in headers.items())
    return Reply(status, url, pairs, (), body, NOW)


def token_body(token: str = ACCESS, **extra: Any) -> bytes:
    return json.dumps({"token": token, "expires_in": 300, **extra}).encode()


Answer = Callable[[Any], Any]


class Script:
    """Answers a flow's effects; records them. ``answers`` maps an effect class to a list of
    answers (taken in order) or to a function of the effect."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.effects: list[Any] = []

    def answer(self, effect: Any) -> Any:
        self.effects.append(effect)
        found = self.answers[type(effect).__name__]
        if callable(found):
            return found(effect)
        return found.pop(0)

    def run(self, flow: Any) -> Any:
        value: Any = None
        while True:
            try:
                effect = flow.send(value)
            except StopIteration as stop:
                return stop.value
            value = self.answer(effect)

    def kinds(self) -> list[str]:
        return [type(effect).__name__ for effect in self.effects]

    def of(self, kind: type) -> list[Any]:
        return [effect for effect in self.effects if isinstance(effect, kind)]


def basic_value(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def state(**answers: Any) -> Script:
    """A script with the handshake state's usual answers, overridable per effect."""
    defaults: dict[str, Any] = {
        "Headers": lambda effect: (),
        "AwaitChallenge": lambda effect: LEAD,
        "Learn": lambda effect: None,
        "AwaitToken": lambda effect: TokenDuty(),
        "KeepToken": lambda effect: None,
        "KeepRefresh": lambda effect: None,
        "DropToken": lambda effect: None,
        "Sleep": lambda effect: None,
        "ClaimTokens": lambda effect: Claimed(effect.keys),
        "KeepTokens": lambda effect: None,
        "Backoff": lambda effect: None,
    }
    defaults.update(answers)
    return Script(**defaults)


# -- the matrix -------------------------------------------------------------------------------


def test_bearer_learns_the_challenge_fetches_a_token_and_sends_it() -> None:
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(401, WWW_Authenticate=BEARER), reply(200)],
        Fetch=[reply(200, REALM, body=token_body())],
    )
    value = script.run(flows.request_flow(call_for(), SETTINGS))
    assert value == f"Bearer {ACCESS}"
    assert script.kinds() == [
        "Headers",
        "AwaitChallenge",
        "Transmit",
        "Learn",
        "Resolve",
        "AwaitToken",
        "Fetch",
        "KeepToken",
        "Transmit",
    ]
    learnt = script.of(Learn)[0]
    assert learnt.origin == "https://registry.example.com:443"
    assert learnt.known == Challenge("bearer", {"realm": REALM, "service": "registry.example.com"})
    fetch = script.of(Fetch)[0].request
    assert fetch.method == "GET"
    query = parse_qs(urlsplit(fetch.url).query)
    assert query == {"service": ["registry.example.com"], "scope": ["repository:org/app:pull"]}
    assert dict(fetch.headers)["Authorization"] == basic_value("alice", PASSWORD)
    assert script.of(Transmit)[0].headers == ()  # the probe carries nothing
    assert script.of(Transmit)[1].headers == (("Authorization", f"Bearer {ACCESS}"),)
    kept = script.of(KeepToken)[0].token
    assert (kept.access_token, kept.issued_at, kept.expires_at) == (ACCESS, NOW, NOW + 300)


def test_basic_goes_to_the_registry_itself() -> None:
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(401, WWW_Authenticate='Basic realm="r"'), reply(200)],
    )
    assert script.run(flows.request_flow(call_for(), SETTINGS)) == basic_value("alice", PASSWORD)
    assert script.kinds() == [
        "Headers",
        "AwaitChallenge",
        "Transmit",
        "Learn",
        "Resolve",
        "Transmit",
    ]
    assert script.of(Learn)[0].known == Challenge("basic", {})


def test_an_open_registry_is_learnt_and_asked_nothing_more() -> None:
    script = state(Transmit=[reply(200)])
    assert script.run(flows.request_flow(call_for(), SETTINGS)) is None
    assert script.kinds() == ["Headers", "AwaitChallenge", "Transmit", "Learn"]
    assert script.of(Learn)[0].known is OPEN


def test_a_known_open_registry_is_sent_the_request_as_it_is() -> None:
    script = state(AwaitChallenge=lambda effect: OPEN, Transmit=[reply(200)])
    script.run(flows.request_flow(call_for(), SETTINGS))
    assert script.kinds() == ["Headers", "AwaitChallenge", "Transmit"]  # nothing re-learnt


def test_a_known_challenge_and_a_shared_token_need_no_request_but_the_call() -> None:
    challenge = Challenge("bearer", {"realm": REALM, "service": "s"})
    token = Token(ACCESS, NOW + 300, NOW)
    script = state(
        AwaitChallenge=lambda effect: challenge,
        AwaitToken=lambda effect: token,
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(200)],
    )
    script.run(flows.request_flow(call_for(), SETTINGS))
    assert script.kinds() == ["Headers", "AwaitChallenge", "Resolve", "AwaitToken", "Transmit"]


def test_a_body_that_cannot_be_sent_twice_is_preceded_by_a_ping() -> None:
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Ping=[reply(401, f"{REGISTRY}/v2/", WWW_Authenticate=BEARER)],
        Fetch=[reply(200, REALM, body=token_body())],
        Transmit=[reply(201)],
    )
    script.run(flows.request_flow(call_for(method="PUT", replayable=False), SETTINGS))
    assert script.of(Ping)[0].url == f"{REGISTRY}/v2/"
    assert len(script.of(Transmit)) == 1  # sent once, authorised
    fetch = script.of(Fetch)[0].request
    assert parse_qs(urlsplit(fetch.url).query)["scope"] == ["repository:org/app:pull,push"]


@pytest.mark.parametrize("error", ["insufficient_scope", "invalid_token"])
def test_a_refused_token_is_dropped_and_one_retry_made_with_the_widened_scope(error: str) -> None:
    widened = f'{BEARER},error="{error}",scope="repository:org/app:pull repository:org/base:pull"'
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[
            reply(401, WWW_Authenticate=BEARER),
            reply(401, WWW_Authenticate=widened),
            reply(200),
        ],
        Fetch=[reply(200, REALM, body=token_body()), reply(200, REALM, body=token_body("t2-x"))],
    )
    assert script.run(flows.request_flow(call_for(), SETTINGS)) == f"Bearer {ACCESS}"
    assert script.kinds()[-6:] == [
        "Transmit",
        "DropToken",
        "AwaitToken",
        "Fetch",
        "KeepToken",
        "Transmit",
    ]
    assert script.of(DropToken)[0].key == script.of(AwaitToken)[0].key
    assert script.of(DropToken)[0].refused == f"Bearer {ACCESS}"  # that one, not one kept since
    second = parse_qs(urlsplit(script.of(Fetch)[1].request.url).query)["scope"]
    assert second == ["repository:org/app:pull", "repository:org/base:pull"]
    assert script.of(Transmit)[2].headers == (("Authorization", "Bearer t2-x"),)


def test_a_second_refusal_of_a_bearer_request_is_returned_not_retried_again() -> None:
    refused = f'{BEARER},error="invalid_token"'
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[
            reply(401, WWW_Authenticate=BEARER),
            reply(401, WWW_Authenticate=refused),
            reply(401, WWW_Authenticate=refused),
        ],
        Fetch=[reply(200, REALM, body=token_body()), reply(200, REALM, body=token_body("t2-x"))],
    )
    script.run(flows.request_flow(call_for(), SETTINGS))
    assert len(script.of(Transmit)) == 3
    assert len(script.of(DropToken)) == 1


def test_an_identity_token_is_posted_and_falls_back_to_get_on_404() -> None:
    script = state(
        Resolve=lambda effect: resolution(Credential(username="alice", identity_token=IDENTITY)),
        Transmit=[reply(401, WWW_Authenticate=BEARER), reply(200)],
        Fetch=[reply(404, REALM), reply(200, REALM, body=token_body(refresh_token="r-NEW-1"))],
    )
    script.run(flows.request_flow(call_for(), SETTINGS))
    post, get = (effect.request for effect in script.of(Fetch))
    assert post.method == "POST"
    form = parse_qs((post.body or b"").decode())
    assert form["grant_type"] == ["refresh_token"]
    assert form["refresh_token"] == [IDENTITY]
    assert get.method == "GET"
    assert dict(get.headers)["Authorization"] == basic_value("alice", IDENTITY)
    assert script.of(KeepRefresh)[0].value == "r-NEW-1"


def test_a_refresh_token_handed_out_earlier_replaces_the_password() -> None:
    """The refresh token goes in the POST; refused (401), it is forgotten and the one GET
    fallback carries the password it replaced (not the refused refresh token)."""
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        AwaitToken=lambda effect: TokenDuty(refresh_token="r-OLD-refresh"),
        Transmit=[reply(401, WWW_Authenticate=BEARER), reply(200)],
        Fetch=[reply(401, REALM), reply(200, REALM, body=token_body())],
    )
    assert script.run(flows.request_flow(call_for(), SETTINGS)) == f"Bearer {ACCESS}"
    post, get = (effect.request for effect in script.of(Fetch))
    assert parse_qs((post.body or b"").decode())["refresh_token"] == ["r-OLD-refresh"]
    assert dict(get.headers)["Authorization"] == basic_value("alice", PASSWORD)
    assert [k.value for k in script.of(KeepRefresh)] == [None]  # the refused one is forgotten


def test_a_refused_refresh_token_and_password_are_an_error_after_two_token_requests() -> None:
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        AwaitToken=lambda effect: TokenDuty(refresh_token="r-OLD-refresh"),
        Transmit=[reply(401, WWW_Authenticate=BEARER)],
        Fetch=[reply(401, REALM), reply(401, REALM)],
    )
    with pytest.raises(AuthenticationError, match="answered 401"):
        script.run(flows.request_flow(call_for(), SETTINGS))
    assert len(script.of(Fetch)) == 2
    assert script.of(KeepRefresh)[0].value is None


@pytest.mark.parametrize("status", [400, 401, 404, 405])
def test_a_refresh_token_post_answered_so_falls_back_to_one_get_with_basic(status: int) -> None:
    """As containerd: ACR answers 400, Artifactory 401, GCR 404, ghcr.io 405."""
    script = state(
        Resolve=lambda effect: resolution(Credential(username="alice", identity_token=IDENTITY)),
        Transmit=[reply(401, WWW_Authenticate=BEARER), reply(200)],
        Fetch=[reply(status, REALM), reply(200, REALM, body=token_body())],
    )
    assert script.run(flows.request_flow(call_for(), SETTINGS)) == f"Bearer {ACCESS}"
    post, get = (effect.request for effect in script.of(Fetch))
    assert (post.method, get.method) == ("POST", "GET")
    assert dict(get.headers)["Authorization"] == basic_value("alice", IDENTITY)


@pytest.mark.parametrize("status", [403, 500])
def test_a_refresh_token_post_refused_otherwise_does_not_fall_back(status: int) -> None:
    script = state(
        Resolve=lambda effect: resolution(Credential(username="alice", identity_token=IDENTITY)),
        Transmit=[reply(401, WWW_Authenticate=BEARER)],
        Fetch=[reply(status, REALM)],
    )
    with pytest.raises(AuthenticationError, match=f"answered {status}"):
        script.run(flows.request_flow(call_for(), SETTINGS))
    assert len(script.of(Fetch)) == 1


def test_a_token_response_without_expires_in_lasts_60_seconds() -> None:
    """Quay leaves ``expires_in`` out: the token spec's 60 s, no more."""
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(401, WWW_Authenticate=BEARER), reply(200)],
        Fetch=[reply(200, REALM, body=json.dumps({"token": ACCESS}).encode())],
    )
    script.run(flows.request_flow(call_for(), SETTINGS))
    kept = script.of(KeepToken)[0].token
    assert (kept.issued_at, kept.expires_at) == (NOW, NOW + 60)


def test_retry_after_from_the_token_server_is_a_sleep_then_a_second_try() -> None:
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(401, WWW_Authenticate=BEARER), reply(200)],
        Fetch=[reply(429, REALM, Retry_After="2"), reply(200, REALM, body=token_body())],
    )
    script.run(flows.request_flow(call_for(), SETTINGS))
    sleep = script.of(Sleep)[0]
    assert (sleep.attempt, sleep.retry_after) == (1, "2")
    assert "answered 429" in sleep.reason
    assert script.kinds().count("Fetch") == 2


def test_a_token_server_that_refuses_is_an_error_naming_scope_kind_and_source() -> None:
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(401, WWW_Authenticate=BEARER)],
        Fetch=[reply(401, REALM)],
    )
    with pytest.raises(AuthenticationError) as caught:
        script.run(flows.request_flow(call_for(), SETTINGS))
    message = str(caught.value)
    assert (
        "answered 401 for scope repository:org/app:pull with basic credentials from fixed"
        in message
    )
    assert PASSWORD not in message
    assert "KeepToken" not in script.kinds()


def test_refused_basic_credentials_name_the_user_and_the_source() -> None:
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[
            reply(401, WWW_Authenticate='Basic realm="r"'),
            reply(401, WWW_Authenticate='Basic realm="r"'),
        ],
    )
    with pytest.raises(AuthenticationError, match="refused basic credentials for user alice"):
        script.run(flows.request_flow(call_for(), SETTINGS))


def test_a_401_after_sources_failed_names_them() -> None:
    script = state(
        Resolve=lambda effect: resolution(Credential.anonymous(), failed=True),
        Transmit=[reply(401, WWW_Authenticate=BEARER)] + [reply(401, WWW_Authenticate=BEARER)] * 2,
        Fetch=[reply(200, REALM, body=token_body())] * 2,
    )
    with pytest.raises(AuthenticationError, match="helper timed out"):
        script.run(flows.request_flow(call_for(), SETTINGS))


def test_a_public_registry_may_not_point_its_realm_inward() -> None:
    inward = 'Bearer realm="https://169.254.169.254/token",service="s"'
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(401, WWW_Authenticate=inward)],
    )
    with pytest.raises(InsecureTransportError, match="link-local"):
        script.run(flows.request_flow(call_for(), SETTINGS))
    assert "Fetch" not in script.kinds()  # refused before anything was sent


def test_a_token_request_redirected_inward_is_refused() -> None:
    inward = Reply(200, "https://10.0.0.1/token", (), (REALM,), token_body(), NOW)
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(401, WWW_Authenticate=BEARER)],
        Fetch=[inward],
    )
    with pytest.raises(InsecureTransportError, match="private"):
        script.run(flows.request_flow(call_for(), SETTINGS))
    assert "KeepToken" not in script.kinds()  # nothing from there is used


def test_a_401_from_a_redirect_target_teaches_nothing() -> None:
    elsewhere = reply(401, "https://storage.example.net/blob", WWW_Authenticate=BEARER)
    script = state(Transmit=[elsewhere])
    script.run(flows.request_flow(call_for(), SETTINGS))
    assert script.of(Learn)[0].known is OPEN
    assert "Resolve" not in script.kinds()


def test_only_authorize_returns_the_value_and_sends_nothing_but_the_ping() -> None:
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Ping=[reply(401, f"{REGISTRY}/v2/", WWW_Authenticate=BEARER)],
        Fetch=[reply(200, REALM, body=token_body())],
    )
    value = script.run(flows.request_flow(call_for(), SETTINGS, only_authorize=True))
    assert value == f"Bearer {ACCESS}"
    assert "Transmit" not in script.kinds()


def test_only_authorize_refuses_an_anonymous_answer_that_sources_failed_into() -> None:
    script = state(
        Resolve=lambda effect: resolution(Credential.anonymous(), failed=True),
        Ping=[reply(401, f"{REGISTRY}/v2/", WWW_Authenticate=BEARER)],
        Fetch=[reply(200, REALM, body=token_body())],
    )
    with pytest.raises(AuthenticationError, match="no credential, because these sources failed"):
        script.run(flows.request_flow(call_for(), SETTINGS, only_authorize=True))


def test_offline_token_asks_for_a_refresh_token_with_a_password() -> None:
    offline = flows.Settings(frozenset(), "my-client", 1 << 20, offline_token=True)
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(401, WWW_Authenticate=BEARER), reply(200)],
        Fetch=[reply(200, REALM, body=token_body())],
    )
    script.run(flows.request_flow(call_for(), offline))
    query = parse_qs(urlsplit(script.of(Fetch)[0].request.url).query)
    assert query["offline_token"] == ["true"]
    assert query["client_id"] == ["my-client"]


def test_an_open_registry_that_starts_asking_is_learnt_and_answered() -> None:
    """A request sent from an open registry's warm route comes back 401: the flow learns the
    challenge, authorises and sends it again."""
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(200)],
        Fetch=[reply(200, REALM, body=token_body())],
    )
    flow = flows.after(
        call_for(), reply(401, WWW_Authenticate=BEARER), SETTINGS, (), authorized=False
    )
    script.run(flow)
    assert script.kinds() == ["Learn", "Resolve", "AwaitToken", "Fetch", "KeepToken", "Transmit"]


def test_extra_headers_go_with_every_send_of_the_request() -> None:
    extra = (("X-Meta", "1"),)
    script = state(
        Headers=lambda effect: extra,
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(401, WWW_Authenticate='Basic realm="r"'), reply(200)],
    )
    script.run(flows.request_flow(call_for(), SETTINGS))
    assert [t.headers[0] for t in script.of(Transmit)] == [("X-Meta", "1"), ("X-Meta", "1")]


# -- stale cached tokens (public.ecr.aws answers an expired one with 400, no challenge) -------

CACHED = Token("cached-STALE-token", NOW + 3600, NOW - 600)
DENIED = b'{"errors":[{"code":"DENIED","message":"token expired"}]}'


def cached_then_fetched() -> Callable[[Any], Any]:
    """AwaitToken's answers: the cached token first, then the duty to fetch a fresh one."""
    answers: list[Any] = [CACHED, TokenDuty()]
    return lambda effect: answers.pop(0)


def known_bearer(**answers: Any) -> Script:
    challenge = Challenge("bearer", {"realm": REALM, "service": "registry.example.com"})
    defaults: dict[str, Any] = {
        "AwaitChallenge": lambda effect: challenge,
        "Resolve": lambda effect: resolution(Credential("alice", PASSWORD)),
        "AwaitToken": cached_then_fetched(),
    }
    return state(**{**defaults, **answers})


@pytest.mark.parametrize("status", [400, 403])
def test_a_400_or_403_without_a_challenge_drops_a_cached_token_and_retries_once(
    status: int,
) -> None:
    script = known_bearer(
        Transmit=[reply(status), reply(200)],
        Fetch=[reply(200, REALM, body=token_body("fresh-token-2"))],
    )
    assert script.run(flows.request_flow(call_for(), SETTINGS)) == "Bearer cached-STALE-token"
    assert script.kinds()[-6:] == [
        "Transmit",
        "DropToken",
        "AwaitToken",
        "Fetch",
        "KeepToken",
        "Transmit",
    ]
    assert script.of(DropToken)[0].key == script.of(AwaitToken)[0].key
    first, second = script.of(Transmit)
    assert first.headers == (("Authorization", "Bearer cached-STALE-token"),)
    assert second.headers == (("Authorization", "Bearer fresh-token-2"),)


def test_a_stale_token_retry_is_made_once_and_its_answer_stands() -> None:
    script = known_bearer(
        Transmit=[reply(403), reply(403)],
        Fetch=[reply(200, REALM, body=token_body("fresh-token-2"))],
    )
    script.run(flows.request_flow(call_for(), SETTINGS))
    assert len(script.of(Transmit)) == 2
    assert len(script.of(DropToken)) == 1


def test_a_400_to_a_token_fetched_for_the_request_stands() -> None:
    """A token fetched just now is not stale: its 400 is the registry's answer."""
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(401, WWW_Authenticate=BEARER), reply(400)],
        Fetch=[reply(200, REALM, body=token_body())],
    )
    script.run(flows.request_flow(call_for(), SETTINGS))
    assert "DropToken" not in script.kinds()
    assert len(script.of(Transmit)) == 2


@pytest.mark.parametrize(
    "answer",
    [
        reply(403, WWW_Authenticate=f'{BEARER},error="insufficient_scope"'),
        reply(400, "https://storage.example.net/blob"),  # from where a redirect led
        reply(404),
        reply(500),
    ],
)
def test_other_answers_to_a_cached_token_stand(answer: Reply) -> None:
    script = known_bearer(Transmit=[answer])
    script.run(flows.request_flow(call_for(), SETTINGS))
    assert "DropToken" not in script.kinds()
    assert len(script.of(Transmit)) == 1


def test_a_stale_token_under_a_one_shot_body_is_dropped_and_the_answer_stands() -> None:
    script = known_bearer(Transmit=[reply(400)])
    script.run(flows.request_flow(call_for(method="PUT", replayable=False), SETTINGS))
    assert script.kinds()[-2:] == ["Transmit", "DropToken"]  # the next request fetches


def test_a_warm_request_answered_400_drops_its_route_token_and_retries() -> None:
    """The warm path hands the flow its route's call: the token it carried was a cached one."""
    call = call_for()
    call.challenge = Challenge("bearer", {"realm": REALM, "service": "registry.example.com"})
    call.resolution = resolution(Credential("alice", PASSWORD))
    call.carried = carried = flows.token_cache_key(
        "registry.example.com", "registry.example.com", call.need.scopes, call.resolution.credential
    )
    assert flows.wants_after(400, carried=True)
    assert not flows.wants_after(400, carried=False)
    script = state(
        Transmit=[reply(200)],
        Fetch=[reply(200, REALM, body=token_body("fresh-token-2"))],
    )
    script.run(flows.after(call, reply(400), SETTINGS, (), authorized=True))
    assert script.kinds() == ["DropToken", "AwaitToken", "Fetch", "KeepToken", "Transmit"]
    assert script.of(DropToken)[0].key == carried


# -- uploads that outlive their token -----------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH", "POST"])
def test_a_401_to_a_replayable_upload_refreshes_the_token_and_sends_it_again(method: str) -> None:
    url = f"{REGISTRY}/v2/org/app/blobs/uploads/session-1"
    expired = f'{BEARER},error="invalid_token"'
    script = known_bearer(
        Transmit=[reply(401, url, WWW_Authenticate=expired), reply(201, url)],
        Fetch=[reply(200, REALM, body=token_body("fresh-token-2"))],
    )
    script.run(flows.request_flow(call_for(url, method), SETTINGS))
    assert script.kinds()[-5:] == ["DropToken", "AwaitToken", "Fetch", "KeepToken", "Transmit"]
    assert script.of(Transmit)[1].headers == (("Authorization", "Bearer fresh-token-2"),)


def test_a_401_to_a_one_shot_upload_says_the_body_could_not_be_sent_again() -> None:
    url = f"{REGISTRY}/v2/org/app/blobs/uploads/session-1"
    expired = f'{BEARER},error="invalid_token"'
    script = known_bearer(Transmit=[reply(401, url, WWW_Authenticate=expired)])
    with pytest.raises(AuthenticationError) as caught:
        script.run(flows.request_flow(call_for(url, "PATCH", replayable=False), SETTINGS))
    message = str(caught.value)
    assert "one-shot stream" in message
    assert "pass the body as bytes, a str or a seekable file" in message
    assert "Uploads that outlive a token" in message
    assert len(script.of(Transmit)) == 1  # never sent again
    assert len(script.of(DropToken)) == 1  # the next request starts with a fresh token


# -- anonymous fallback (opt-in) -----------------------------------------------------------------

FALLBACK = flows.Settings(
    frozenset(), "asyncauth", 1 << 20, offline_token=False, anonymous_fallback=True
)


def test_a_refused_pull_goes_anonymous_once_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    call = call_for()
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(401, WWW_Authenticate=BEARER), reply(200)],
        Fetch=[reply(401, REALM), reply(200, REALM, body=token_body("anonymous-token"))],
    )
    with caplog.at_level("DEBUG", logger="asyncauth.registry"):
        assert script.run(flows.request_flow(call, FALLBACK)) == "Bearer anonymous-token"
    refused, anonymous = (effect.request for effect in script.of(Fetch))
    assert dict(refused.headers)["Authorization"] == basic_value("alice", PASSWORD)
    assert "Authorization" not in dict(anonymous.headers)
    assert anonymous.url == refused.url  # the same scope, the same realm
    assert script.of(KeepToken)[0].key == script.of(AwaitToken)[0].key
    assert call.fallback is not None
    assert call.fallback.credential.is_anonymous
    entry = call.fallback.trace[-1]
    assert (entry.resolver, entry.outcome) == ("anonymous fallback", Outcome.MATCHED)
    assert entry.detail is not None
    assert "refused basic credentials for user alice from fixed (401)" in entry.detail
    assert "the pull went anonymous" in caplog.text
    assert PASSWORD not in repr(call.fallback) + caplog.text


def test_without_anonymous_fallback_a_refused_pull_is_an_error() -> None:
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(401, WWW_Authenticate=BEARER)],
        Fetch=[reply(401, REALM)],
    )
    with pytest.raises(AuthenticationError, match="credentials were refused"):
        script.run(flows.request_flow(call_for(), SETTINGS))
    assert len(script.of(Fetch)) == 1


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("PUT", MANIFEST),
        ("DELETE", MANIFEST),
        ("POST", f"{REGISTRY}/v2/org/app/blobs/uploads/?mount=sha256:ab&from=org/base"),
    ],
)
def test_anonymous_fallback_never_pushes_or_deletes(method: str, url: str) -> None:
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(401, url, WWW_Authenticate=BEARER)],
        Fetch=[reply(401, REALM)],
    )
    with pytest.raises(AuthenticationError, match="credentials were refused"):
        script.run(flows.request_flow(call_for(url, method), FALLBACK))
    assert len(script.of(Fetch)) == 1


def test_an_anonymous_try_refused_too_names_both() -> None:
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(401, WWW_Authenticate=BEARER)],
        Fetch=[reply(403, REALM), reply(401, REALM)],
    )
    with pytest.raises(AuthenticationError) as caught:
        script.run(flows.request_flow(call_for(), FALLBACK))
    assert "answered 403" in str(caught.value)
    assert "the anonymous try (anonymous_fallback) was refused too (401)" in str(caught.value)
    assert len(script.of(Fetch)) == 2


def test_a_registry_that_refuses_the_anonymous_token_too_is_an_error_naming_why() -> None:
    """Private after all: the anonymous token is refused; no retry (the credential was refused
    already), and the error says whose credential the token server refused."""
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[
            reply(401, WWW_Authenticate=BEARER),
            reply(401, WWW_Authenticate=f'{BEARER},error="insufficient_scope"'),
        ],
        Fetch=[reply(401, REALM), reply(200, REALM, body=token_body("anonymous-token"))],
    )
    with pytest.raises(AuthenticationError) as caught:
        script.run(flows.request_flow(call_for(), FALLBACK))
    message = str(caught.value)
    assert "refused basic credentials for user alice" in message
    assert "refused the anonymous try too" in message
    assert len(script.of(Transmit)) == 2
    assert len(script.of(Fetch)) == 2


def test_an_anonymous_credential_has_nothing_to_fall_back_from() -> None:
    script = state(
        Resolve=lambda effect: resolution(Credential.anonymous()),
        Transmit=[reply(401, WWW_Authenticate=BEARER)],
        Fetch=[reply(401, REALM)],
    )
    with pytest.raises(AuthenticationError):
        script.run(flows.request_flow(call_for(), FALLBACK))
    assert len(script.of(Fetch)) == 1


# -- a proxy's 401 is the proxy's --------------------------------------------------------------

PLAIN = "http://127.0.0.1:5000/v2/org/app/manifests/v1"
PROXY = "127.0.0.1:8888"
TINYPROXY = 'Basic realm="Tinyproxy"'


def proxied(status: int, url: str = PLAIN, **headers: str) -> Reply:
    return dataclasses.replace(reply(status, url, **headers), via=PROXY)


def test_a_401_through_a_proxy_without_the_registry_header_is_the_proxys() -> None:
    script = state(Transmit=[proxied(401, WWW_Authenticate=TINYPROXY)])
    with pytest.raises(AuthenticationError) as caught:
        script.run(flows.request_flow(call_for(PLAIN), SETTINGS))
    message = str(caught.value)
    assert f"came through the proxy {PROXY}" in message
    assert 'WWW-Authenticate: Basic realm="Tinyproxy"' in message
    assert "no registry credential was sent" in message
    assert script.kinds() == ["Headers", "AwaitChallenge", "Transmit"]  # nothing learnt, sent


def test_a_bearer_challenge_through_a_proxy_is_the_registrys_header_or_not() -> None:
    """No proxy sends its clients to a token server: a Bearer challenge with a realm is the
    registry's even without the header (registries that leave it out still work)."""
    bearer = 'Bearer realm="http://127.0.0.1:5001/token",service="s"'
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[proxied(401, WWW_Authenticate=bearer), reply(200, PLAIN)],
        Fetch=[reply(200, "http://127.0.0.1:5001/token", body=token_body())],
    )
    assert script.run(flows.request_flow(call_for(PLAIN), SETTINGS)) == f"Bearer {ACCESS}"


def test_a_proxy_401_to_a_ping_or_a_warm_request_is_the_proxys_too() -> None:
    script = state(Ping=[proxied(401, "http://127.0.0.1:5000/v2/", WWW_Authenticate=TINYPROXY)])
    with pytest.raises(AuthenticationError, match=PROXY):
        script.run(flows.request_flow(call_for(PLAIN, "PUT", replayable=False), SETTINGS))
    assert "Resolve" not in script.kinds()
    call = call_for(PLAIN)
    call.challenge, call.resolution = Challenge("basic", {}), resolution(Credential("a", PASSWORD))
    with pytest.raises(AuthenticationError, match=PROXY):
        state().run(flows.after(call, proxied(401), SETTINGS, (), authorized=True))


@pytest.mark.parametrize(("header", "proxy"), [(True, PROXY), (False, None)])
def test_a_401_from_the_registry_itself_is_answered_as_always(
    header: bool, proxy: str | None
) -> None:
    """Through a proxy with the registry's header, or with no proxy at all: a challenge."""
    headers = {"Docker_Distribution_API_Version": "registry/2.0"} if header else {}
    answer = reply(401, PLAIN, WWW_Authenticate='Basic realm="r"', **headers)
    answer = dataclasses.replace(answer, via=proxy)
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[answer, reply(200, PLAIN)],
    )
    assert script.run(flows.request_flow(call_for(PLAIN), SETTINGS)) == basic_value(
        "alice", PASSWORD
    )


# -- a registry's "not now" (429, 503 with Retry-After) ---------------------------------------


def _bearer_then(*answers: Reply, method: str = "GET") -> tuple[Script, Any]:
    """A bearer handshake whose authorised request is answered ``answers``, in order."""
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(401, WWW_Authenticate=BEARER), *answers],
        Fetch=[reply(200, REALM, body=token_body())],
    )
    return script, flows.request_flow(call_for(method=method), SETTINGS)


def test_a_registry_429_to_a_get_pauses_the_registry_and_tries_once_more() -> None:
    script, flow = _bearer_then(reply(429, Retry_After="2"), reply(200))
    assert script.run(flow) == f"Bearer {ACCESS}"
    assert script.kinds()[-3:] == ["Transmit", "Backoff", "Transmit"]
    backoff = script.of(Backoff)[0]
    assert backoff == Backoff(
        "registry.example.com", "https://registry.example.com:443", 429, "2", wait=True
    )
    assert script.of(Transmit)[-1].headers == ()  # the request as it was sent, sent again


def test_a_second_429_is_a_rate_limited_error_naming_the_registry_the_wait_and_the_limit() -> None:
    limited = reply(
        429,
        Retry_After="30",
        RateLimit_Limit="100;w=21600",
        RateLimit_Remaining="0;w=21600",
    )
    script, flow = _bearer_then(reply(429, Retry_After="1"), limited)
    with pytest.raises(RateLimitedError) as caught:
        script.run(flow)
    error = caught.value
    assert str(error) == (
        "registry.example.com: the registry answered 429 (Retry-After: 30) again after the wait "
        "it asked for; its rate limit: 0 of 100 left in a 21600 s window"
    )
    assert (error.registry, error.wait) == ("registry.example.com", 30.0)
    assert error.rate_limit is not None
    assert error.rate_limit.remaining == 0
    assert [b.wait for b in script.of(Backoff)] == [True, False]  # recorded, never waited twice
    assert len(script.of(Transmit)) == 3


def test_a_429_to_a_put_pauses_the_registry_and_is_returned_as_it_is() -> None:
    script, flow = _bearer_then(reply(429, Retry_After="2"), method="PUT")
    script.run(flow)
    assert script.kinds()[-2:] == ["Transmit", "Backoff"]
    assert script.of(Backoff)[0].wait is False


@pytest.mark.parametrize(
    "answer",
    [
        reply(503),  # an outage page: no pause asked for
        reply(429, "https://storage.example.net/blob", Retry_After="2"),  # not the registry's
        reply(500, Retry_After="2"),
    ],
)
def test_other_answers_are_no_pause(answer: Reply) -> None:
    script, flow = _bearer_then(answer)
    script.run(flow)
    assert "Backoff" not in script.kinds()
    assert len(script.of(Transmit)) == 2


def test_a_503_with_retry_after_is_a_pause_too() -> None:
    script, flow = _bearer_then(reply(503, Retry_After="1"), reply(200))
    script.run(flow)
    assert [(b.status, b.retry_after) for b in script.of(Backoff)] == [(503, "1")]


def test_a_429_to_the_probe_is_waited_out_and_the_handshake_goes_on() -> None:
    """The first request to a registry is its own probe: a "not now" to it is a pause and one
    more try too, and the 401 that try gets is learnt and answered."""
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        Transmit=[reply(429, Retry_After="1"), reply(401, WWW_Authenticate=BEARER), reply(200)],
        Fetch=[reply(200, REALM, body=token_body())],
    )
    script.run(flows.request_flow(call_for(), SETTINGS))
    assert script.kinds() == [
        "Headers",
        "AwaitChallenge",
        "Transmit",
        "Learn",
        "Backoff",
        "Transmit",
        "Learn",
        "Resolve",
        "AwaitToken",
        "Fetch",
        "KeepToken",
        "Transmit",
    ]
    assert script.of(Transmit)[-1].headers == (("Authorization", f"Bearer {ACCESS}"),)


def test_a_warm_routes_429_goes_through_the_flow() -> None:
    """The drivers hand :func:`after` a warm request's "not now" (``wants_after``)."""
    assert flows.wants_after(429, False)
    assert flows.wants_after(503, False)
    challenge = Challenge("bearer", {"realm": REALM, "service": "s"})
    call = call_for()
    call.challenge, call.resolution = challenge, resolution(Credential("alice", PASSWORD))
    script = state(Transmit=[reply(200)])
    script.run(flows.after(call, reply(429, Retry_After="1"), SETTINGS, (), authorized=True))
    assert script.kinds() == ["Backoff", "Transmit"]


# -- properties --------------------------------------------------------------------------------

_STATUSES = st.sampled_from([200, 201, 307, 400, 401, 403, 404, 405, 429, 500, 503])
_CHALLENGES = st.sampled_from(
    [
        "",
        BEARER,
        'Basic realm="r"',
        f'{BEARER},error="invalid_token"',
        "Bearer",
        "Negotiate",
        'Bearer realm="http://10.0.0.1/t"',
        f'{BEARER},error="insufficient_scope",scope="x"',
        '"unterminated',
    ]
)
_BODIES = st.one_of(st.just(token_body()), st.binary(max_size=64), st.just(b"{}"))


@settings(max_examples=300, deadline=None)
@given(
    statuses=st.lists(_STATUSES, min_size=20, max_size=20),
    challenges=st.lists(_CHALLENGES, min_size=20, max_size=20),
    bodies=st.lists(_BODIES, min_size=20, max_size=20),
    kind=st.sampled_from(["basic", "identity", "anonymous"]),
    replayable=st.booleans(),
    fallback=st.booleans(),
    cached=st.booleans(),
    proxy=st.sampled_from([None, "127.0.0.1:3128"]),
)
def test_any_answers_end_the_flow_in_a_few_steps_or_raise_a_clean_error(
    statuses: list[int],
    challenges: list[str],
    bodies: list[bytes],
    kind: str,
    replayable: bool,
    fallback: bool,
    cached: bool,
    proxy: str | None,
) -> None:
    """Whatever the registry and token server say, the flow ends (no loop: a bounded number
    of effects) with a value or an ``AsyncAuthError`` that carries no secret: with or without
    ``anonymous_fallback``, a cached token, a proxy in the way."""
    credential = {
        "basic": Credential("alice", PASSWORD),
        "identity": Credential(username="alice", identity_token=IDENTITY),
        "anonymous": Credential.anonymous(),
    }[kind]
    answers = iter(zip(statuses, challenges, bodies, strict=True))

    url = PLAIN if proxy else MANIFEST

    def send(effect: Any) -> Reply:
        status, challenge, body = next(answers)
        headers = (("www-authenticate", challenge),) if challenge else ()
        if isinstance(effect, Fetch):
            return Reply(status, REALM, headers, (), body, NOW)
        return Reply(status, url, headers, (), None, NOW, proxy)

    tokens: list[Any] = [CACHED] if cached else []
    script = state(
        Resolve=lambda effect: resolution(credential),
        Transmit=send,
        Ping=send,
        Fetch=send,
        AwaitToken=lambda effect: tokens.pop() if tokens else TokenDuty(),
    )
    settings = FALLBACK if fallback else SETTINGS
    try:
        script.run(flows.request_flow(call_for(url, replayable=replayable), settings))
    except AsyncAuthError as exc:
        assert PASSWORD not in str(exc)
        assert IDENTITY not in str(exc)
    sends = [e for e in script.effects if isinstance(e, Transmit | Ping | Fetch)]
    # No loop. At most: the probe; a token fetch (a POST and its GET fallback, each tried up to
    # 3 times when told to wait: 6); the request; the one retry's fetch (6, and 3 anonymous
    # tries when its credential is refused: 9); the request again. 1 + 6 + 1 + 9 + 1 = 18.
    assert len(sends) <= 18
    assert len(script.effects) <= 48


def test_effects_hold_data_only() -> None:
    """Nothing a flow yields carries a callable: a driver is told what, never handed how."""
    script = state(
        Resolve=lambda effect: resolution(Credential(username="alice", identity_token=IDENTITY)),
        Transmit=[reply(401, WWW_Authenticate=BEARER), reply(200)],
        Fetch=[reply(429, REALM), reply(200, REALM, body=token_body(refresh_token="r-x-y-z"))],
    )
    script.run(flows.request_flow(call_for(), SETTINGS))
    for effect in script.effects:
        for name in getattr(effect, "__slots__", ()):
            assert not callable(getattr(effect, name)), (type(effect).__name__, name)
    assert {type(e) for e in script.effects} >= {
        Headers,
        AwaitChallenge,
        Transmit,
        Learn,
        Resolve,
        AwaitToken,
        Fetch,
        Sleep,
        KeepToken,
        KeepRefresh,
    }
    assert not any(isinstance(e, Ping) for e in script.effects)


# -- prefetch: many repositories, few token requests --------------------------------------------

REPOSITORIES = ("org/a", "org/b", "org/c")


def jwt_granting(*scopes: str, grant: Any = None) -> str:
    """An unsigned JWT whose ``access`` claim grants ``scopes`` (``grant``: the claim as is)."""

    def part(data: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    if grant is None:
        grant = [
            {"type": kind, "name": name, "actions": actions.split(",")}
            for kind, name, actions in (scope.split(":") for scope in scopes)
        ]
    return f"{part({'alg': 'ES256'})}.{part({'access': grant})}.c2lnbmF0dXJl"


def prefetch_of(
    repositories: tuple[str, ...] = REPOSITORIES, *, push: bool = False, **changes: Any
) -> Any:
    target = target_of(REGISTRY, frozenset())
    resources = [Resource.parse(f"registry.example.com/{name}") for name in repositories]
    needs = prefetches.needs_for(target, resources, push=push)
    settings = flows.Settings(**{**vars_of(SETTINGS), **changes})
    return prefetches.prefetch_flow(target, REGISTRY, needs, settings)


def vars_of(settings: flows.Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__slots__}


def asked(fetch: Fetch) -> list[str]:
    return parse_qs(urlsplit(fetch.request.url).query).get("scope", [])


def prefetching(*fetches: Reply, **answers: Any) -> Script:
    defaults: dict[str, Any] = {
        "Resolve": lambda effect: resolution(Credential("alice", PASSWORD)),
        "Ping": [reply(401, f"{REGISTRY}/v2/", WWW_Authenticate=BEARER)],
        "Fetch": list(fetches),
    }
    return state(**{**defaults, **answers})


def test_prefetch_asks_for_every_scope_in_one_request_and_keeps_one_token_for_all() -> None:
    token = jwt_granting(*(f"repository:{name}:pull" for name in REPOSITORIES))
    script = prefetching(reply(200, REALM, body=token_body(token)))
    assert script.run(prefetch_of()) is None
    assert script.kinds() == [
        "Headers",
        "AwaitChallenge",
        "Ping",
        "Learn",
        "Resolve",
        "Resolve",
        "Resolve",
        "ClaimTokens",
        "Fetch",
        "KeepTokens",
    ]
    assert asked(script.of(Fetch)[0]) == [f"repository:{name}:pull" for name in REPOSITORIES]
    kept = script.of(KeepTokens)[0]
    assert kept.keys == script.of(ClaimTokens)[0].keys
    assert [key.scopes.form_value() for key in kept.keys] == asked(script.of(Fetch)[0])
    assert kept.token.access_token == token


def test_prefetch_asks_again_one_scope_at_a_time_for_what_the_token_lacks_and_no_more() -> None:
    """A server that honours one scope per request (Harbor, cesanta/docker_auth did): the JWT's
    ``access`` claim names only the first; each other scope is asked for on its own, once,
    and kept even if that answer lacks it too (no loop)."""
    script = prefetching(
        reply(200, REALM, body=token_body(jwt_granting("repository:org/a:pull"))),
        reply(200, REALM, body=token_body(jwt_granting("repository:org/b:pull"))),
        reply(200, REALM, body=token_body(jwt_granting())),  # granted nothing: kept anyway
    )
    script.run(prefetch_of())
    assert [asked(fetch) for fetch in script.of(Fetch)] == [
        [f"repository:{name}:pull" for name in REPOSITORIES],
        ["repository:org/b:pull"],
        ["repository:org/c:pull"],
    ]
    kept = [[key.scopes.form_value() for key in k.keys] for k in script.of(KeepTokens)]
    assert kept == [
        ["repository:org/a:pull"],
        ["repository:org/b:pull"],
        ["repository:org/c:pull"],
    ]


def test_prefetch_keeps_an_unreadable_token_for_all_and_a_refusal_asks_for_one_scope() -> None:
    """An opaque token is trusted for every scope asked; when the registry refuses it for one
    repository (``insufficient_scope``), the flow's retry drops that key only and asks for that
    repository's scope alone."""
    script = prefetching(reply(200, REALM, body=token_body("opaque-FLOW-batch")))
    script.run(prefetch_of())
    (kept,) = script.of(KeepTokens)
    assert len(kept.keys) == 3
    refused = f'{BEARER},error="insufficient_scope",scope="repository:org/b:pull"'
    call = call_for(f"{REGISTRY}/v2/org/b/manifests/v1")
    call.challenge = Challenge("bearer", {"realm": REALM, "service": "registry.example.com"})
    call.resolution = resolution(Credential("alice", PASSWORD))
    retry = state(Fetch=[reply(200, REALM, body=token_body("t-b"))], Transmit=[reply(200)])
    retry.run(
        flows.after(call, reply(401, WWW_Authenticate=refused), SETTINGS, (), authorized=True)
    )
    assert retry.kinds() == ["DropToken", "AwaitToken", "Fetch", "KeepToken", "Transmit"]
    assert retry.of(DropToken)[0].key == kept.keys[1]  # org/b's key: the others keep theirs
    assert asked(retry.of(Fetch)[0]) == ["repository:org/b:pull"]


def test_prefetch_for_push_asks_pull_and_push_once_and_keeps_the_token_for_both() -> None:
    token = jwt_granting(*(f"repository:{name}:pull,push" for name in REPOSITORIES[:2]))
    script = prefetching(reply(200, REALM, body=token_body(token)))
    script.run(prefetch_of(REPOSITORIES[:2], push=True))
    assert asked(script.of(Fetch)[0]) == [
        "repository:org/a:pull,push",
        "repository:org/b:pull,push",
    ]
    (kept,) = script.of(KeepTokens)
    assert [key.scopes.form_value() for key in kept.keys] == [
        "repository:org/a:pull",
        "repository:org/a:pull,push",
        "repository:org/b:pull",
        "repository:org/b:pull,push",
    ]
    get_key = flows.authorization(
        call_for().target,
        Challenge("bearer", {"realm": REALM, "service": "registry.example.com"}),
        resolution(Credential("alice", PASSWORD)),
        need_of("registry.example.com", "GET", "/v2/org/a/manifests/v1", "").scopes,
    )
    assert get_key in kept.keys  # what a GET of org/a looks up


def test_a_pull_only_grant_to_a_push_prefetch_asks_again_for_pull_and_push_once() -> None:
    token = jwt_granting("repository:org/a:pull", "repository:org/b:pull")
    script = prefetching(
        reply(200, REALM, body=token_body(token)),
        reply(200, REALM, body=token_body("t-a")),
        reply(200, REALM, body=token_body("t-b")),
    )
    script.run(prefetch_of(REPOSITORIES[:2], push=True))
    assert [asked(fetch) for fetch in script.of(Fetch)[1:]] == [
        ["repository:org/a:pull,push"],
        ["repository:org/b:pull,push"],
    ]
    kept = [[key.scopes.form_value() for key in k.keys] for k in script.of(KeepTokens)]
    assert kept[0] == ["repository:org/a:pull", "repository:org/b:pull"]


def test_prefetch_asks_only_for_the_tokens_it_claimed() -> None:
    """Fresh tokens, and tokens a request is fetching, are not the prefetch's to ask for."""
    script = prefetching(
        reply(200, REALM, body=token_body("opaque-FLOW-one")),
        ClaimTokens=lambda effect: Claimed(effect.keys[1:2], refresh_token="r-OLD-refresh"),
    )
    script.run(prefetch_of())
    (fetch,) = script.of(Fetch)
    assert fetch.request.method == "POST"  # the refresh token replaced the password
    assert parse_qs((fetch.request.body or b"").decode())["scope"] == ["repository:org/b:pull"]


def test_prefetch_with_nothing_to_claim_or_to_fetch_sends_nothing() -> None:
    script = prefetching(ClaimTokens=lambda effect: Claimed(()))
    script.run(prefetch_of())
    assert "Fetch" not in script.kinds()
    open_registry = state(Ping=[reply(200, f"{REGISTRY}/v2/")])
    open_registry.run(prefetch_of())
    assert open_registry.kinds() == ["Headers", "AwaitChallenge", "Ping", "Learn"]
    basic = state(AwaitChallenge=lambda effect: Challenge("basic", {}))
    basic.run(prefetch_of())
    assert basic.kinds() == ["Headers", "AwaitChallenge"]


def test_a_refused_prefetch_is_the_token_servers_error() -> None:
    script = prefetching(reply(401, REALM))
    with pytest.raises(AuthenticationError, match="answered 401"):
        script.run(prefetch_of())
    assert "KeepTokens" not in script.kinds()


_NAMES = st.from_regex(r"[a-z0-9]{1,30}(/[a-z0-9]{1,30}){0,3}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(names=st.lists(_NAMES, min_size=1, max_size=300, unique=True), offline=st.booleans())
def test_batches_stay_under_the_url_limit_and_ask_for_every_scope_once(
    names: list[str], offline: bool
) -> None:
    script = prefetching(
        Fetch=lambda effect: reply(200, REALM, body=token_body("opaque-FLOW-batch")),
    )
    script.run(prefetch_of(tuple(names), offline_token=offline))
    fetches = script.of(Fetch)
    assert all(len(fetch.request.url) <= prefetches.MAX_TOKEN_URL for fetch in fetches)
    assert all(len(asked(f)) <= prefetches.MAX_BATCH_SCOPES for f in fetches)
    everything = [scope for fetch in fetches for scope in asked(fetch)]
    assert sorted(everything) == sorted(f"repository:{name}:pull" for name in names)
    for fetch, following in itertools.pairwise(fetches):  # each batch is full
        added = len("&scope=") + len(quote_plus(asked(following)[0]))
        grants = sum(grant_size(scope) for scope in asked(fetch))
        assert grants <= prefetches.MAX_TOKEN_GRANTS
        full = len(fetch.request.url) + added > prefetches.MAX_TOKEN_URL
        full = full or grants + grant_size(asked(following)[0]) > prefetches.MAX_TOKEN_GRANTS
        assert full or len(asked(fetch)) == prefetches.MAX_BATCH_SCOPES


def grant_size(scope: str) -> int:
    """What ``scope`` adds to a JWT's payload as distribution's issuers write it (compact JSON
    in base64), measured."""
    kind, name, actions = scope.split(":")
    entry = json.dumps(
        {"type": kind, "name": name, "actions": actions.split(",")}, separators=(",", ":")
    )
    return len(base64.urlsafe_b64encode(f"{entry},".encode()).rstrip(b"="))


def test_the_grant_estimate_is_what_a_token_takes() -> None:
    for text in ("repository:a:pull", "repository:org/team/app-name-long:pull,push"):
        (scope,) = prefetches.ScopeSet.parse(text)
        estimate = prefetches._cost(scope)[1]
        assert grant_size(text) <= estimate <= grant_size(text) + 2


@settings(max_examples=300, deadline=None)
@given(
    token=st.one_of(
        st.text(max_size=200),
        st.builds(
            lambda head, body: f"{head}.{base64.urlsafe_b64encode(body).decode()}.sig",
            st.text(max_size=10),
            st.one_of(
                st.binary(max_size=200),
                st.recursive(
                    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: (
                        st.lists(inner, max_size=4)
                        | st.dictionaries(
                            st.sampled_from(["access", "type", "name", "actions"]),
                            inner,
                            max_size=4,
                        )
                    ),
                ).map(lambda data: json.dumps(data).encode()),
            ),
        ),
    )
)
@per_example_budget()
def test_granted_scopes_reads_any_token_without_raising(token: str) -> None:
    granted = prefetches.granted_scopes(token)
    assert granted is None or isinstance(granted, prefetches.ScopeSet)


def test_granted_scopes_reads_the_access_claim_and_nothing_it_cannot_trust() -> None:
    read = prefetches.granted_scopes
    assert read("opaque") is None
    assert read(jwt_granting(grant="all")) is None
    scopes = read(
        jwt_granting(
            grant=[
                {"type": "repository", "name": "org/a", "actions": ["pull", 7]},
                {"type": "repository", "name": "bad:name", "actions": ["pull"]},
                {"type": "registry", "name": "catalog", "actions": ["*"]},
                "junk",
            ]
        )
    )
    assert str(scopes) == "registry:catalog:* repository:org/a:pull"
    assert read("a." + "b" * prefetches.MAX_READABLE_TOKEN + ".c") is None
    many = [{"type": "repository", "name": f"r{i}", "actions": ["pull"]} for i in range(5000)]
    started = time.thread_time()
    assert len(read(jwt_granting(grant=many)) or ()) == 5000
    assert time.thread_time() - started < 1.0  # bounded: a large grant is read in linear time


def test_a_refused_prefetch_of_pulls_goes_anonymous_once_with_anonymous_fallback() -> None:
    """As each pull it stands in for would: the credential refused, one anonymous try; a push
    never goes anonymous."""
    script = prefetching(reply(401, REALM), reply(200, REALM, body=token_body("anon-FLOW-1")))
    script.run(prefetch_of(anonymous_fallback=True))
    first, second = script.of(Fetch)
    assert "Authorization" in dict(first.request.headers)
    assert "Authorization" not in dict(second.request.headers)
    (kept,) = script.of(KeepTokens)
    assert (len(kept.keys), kept.token.access_token) == (3, "anon-FLOW-1")
    push = prefetching(reply(401, REALM))
    with pytest.raises(AuthenticationError, match="answered 401"):
        push.run(prefetch_of(push=True, anonymous_fallback=True))
    assert len(push.of(Fetch)) == 1
