"""The handshake's flow, driven as h11 is tested: canned answers in, effects out.

No network, no event loop, no clock: each test hands :func:`asyncauth._registry.flow.request_flow`
a request described as data and answers every effect it yields from a script, then checks what
it asked for, in order. This is the whole handshake matrix — Bearer, Basic, an open registry,
``insufficient_scope`` and ``invalid_token``, the identity-token POST and its GET fallback,
``Retry-After``, refusals — for every driver at once, since every driver runs this flow.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncauth import (
    AsyncAuthError,
    AuthenticationError,
    Credential,
    InsecureTransportError,
    Outcome,
    Resolution,
    Resource,
    TraceEntry,
)
from asyncauth._registry import flow as flows
from asyncauth._registry.challenge import Challenge
from asyncauth._registry.messages import (
    LEAD,
    OPEN,
    AwaitChallenge,
    AwaitToken,
    Call,
    DropToken,
    Fetch,
    Headers,
    KeepRefresh,
    KeepToken,
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
    script = state(
        Resolve=lambda effect: resolution(Credential("alice", PASSWORD)),
        AwaitToken=lambda effect: TokenDuty(refresh_token="r-OLD-refresh"),
        Transmit=[reply(401, WWW_Authenticate=BEARER), reply(200)],
        Fetch=[reply(401, REALM)],
    )
    with pytest.raises(AuthenticationError):
        script.run(flows.request_flow(call_for(), SETTINGS))
    post = script.of(Fetch)[0].request
    assert parse_qs((post.body or b"").decode())["refresh_token"] == ["r-OLD-refresh"]
    assert script.of(KeepRefresh)[0].value is None  # a refused refresh token is forgotten


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
    statuses=st.lists(_STATUSES, min_size=12, max_size=12),
    challenges=st.lists(_CHALLENGES, min_size=12, max_size=12),
    bodies=st.lists(_BODIES, min_size=12, max_size=12),
    kind=st.sampled_from(["basic", "identity", "anonymous"]),
    replayable=st.booleans(),
)
def test_any_answers_end_the_flow_in_a_few_steps_or_raise_a_clean_error(
    statuses: list[int], challenges: list[str], bodies: list[bytes], kind: str, replayable: bool
) -> None:
    """Whatever the registry and token server say, the flow ends (no loop: a bounded number
    of effects) with a value or an ``AsyncAuthError`` that carries no secret."""
    credential = {
        "basic": Credential("alice", PASSWORD),
        "identity": Credential(username="alice", identity_token=IDENTITY),
        "anonymous": Credential.anonymous(),
    }[kind]
    answers = iter(zip(statuses, challenges, bodies, strict=True))

    def send(effect: Any) -> Reply:
        status, challenge, body = next(answers)
        url = REALM if isinstance(effect, Fetch) else MANIFEST
        headers = (("www-authenticate", challenge),) if challenge else ()
        return Reply(status, url, headers, (), body if isinstance(effect, Fetch) else None, NOW)

    script = state(
        Resolve=lambda effect: resolution(credential),
        Transmit=send,
        Ping=send,
        Fetch=send,
    )
    try:
        script.run(flows.request_flow(call_for(replayable=replayable), SETTINGS))
    except AsyncAuthError as exc:
        assert PASSWORD not in str(exc)
        assert IDENTITY not in str(exc)
    assert len(script.effects) <= 24
    sends = [e for e in script.effects if isinstance(e, Transmit | Ping | Fetch)]
    assert len(sends) <= 10  # a probe, at most 2x3 token requests, 2 retries of the request


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
