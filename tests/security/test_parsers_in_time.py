"""Property tests for the untrusted-input parsers of the handshake that had none: any input gives
a value or an ``AsyncAuthError`` subclass, within a CPU budget per example (tests/_budget.py).

Covered elsewhere, with the same budget: challenges (test_challenge), scopes (test_scope), token
responses (test_tokens), references (test_resource), registry patterns (test_env), Docker config
(test_dockerconfig), Azure config (test_iaas_azure_config), cloud answers (test_iaas_parsers).
"""

from __future__ import annotations

import gzip
import zlib

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncauth import AsyncAuthError, Credential, InsecureTransportError, Resource
from asyncauth._net import AddressKind, address_kind, canonical_host
from asyncauth._patterns import RegistryPattern
from asyncauth._registry.bodies import BodyTooLargeError, BoundedDecoder
from asyncauth._registry.challenge import Challenge
from asyncauth._registry.scope import ScopeSet
from asyncauth._registry.target import Target, check_destination
from asyncauth._registry.tokens import build_token_request
from asyncauth._sources.docker.helperprotocol import HelperOutput, interpret_get

from .._budget import per_example_budget

LIMIT = 4096
_ENCODINGS = st.lists(
    st.sampled_from(["gzip", "deflate", "x-gzip", "identity", "br", "GZIP", " gzip ", ""]),
    max_size=3,
).map(", ".join)


def _decode(encoding: str, chunks: list[bytes]) -> bytes:
    decoder = BoundedDecoder([encoding], LIMIT)
    return b"".join(decoder.feed(chunk) for chunk in chunks) + decoder.finish()


@settings(max_examples=300)
@given(_ENCODINGS, st.lists(st.binary(max_size=512), max_size=6))
@per_example_budget()
def test_any_body_decodes_within_the_limit_or_is_refused(
    encoding: str, chunks: list[bytes]
) -> None:
    try:
        body = _decode(encoding, chunks)
    except AsyncAuthError:
        return
    assert len(body) <= LIMIT


@settings(max_examples=100)
@given(st.integers(0, 64 * LIMIT), st.sampled_from(["gzip", "deflate"]), st.integers(1, 4096))
@per_example_budget()
def test_a_compressed_body_is_refused_exactly_when_its_decoded_size_passes_the_limit(
    size: int, encoding: str, chunk: int
) -> None:
    data = b"a" * size
    raw = gzip.compress(data) if encoding == "gzip" else zlib.compress(data)
    chunks = [raw[i : i + chunk] for i in range(0, len(raw), chunk)]
    try:
        body = _decode(encoding, chunks)
    except BodyTooLargeError:
        assert size > LIMIT
    else:
        assert body == data


_HOSTS = st.one_of(
    st.sampled_from(
        [
            "127.0.0.1",
            "localhost",
            "[::1]",
            "evil.localhost",
            "169.254.169.254",
            "10.0.0.1",
            "[fd00:ec2::254]",
            "0.0.0.0",
            "[::ffff:127.0.0.1]",
            "[::ffff:169.254.169.254]",
            "192.168.1.1",
            "8.8.8.8",
            "auth.example.com",
            "LOCALHOST.",
            "[fe80::1%25eth0]",
        ]
    ),
    st.text(max_size=40),
)
_URLS = st.builds(
    "{}://{}{}{}".format,
    st.sampled_from(["http", "https", "ftp", ""]),
    st.one_of(_HOSTS, st.builds("{}@{}".format, st.text(max_size=10), _HOSTS)),
    st.sampled_from(["", ":5000", ":0", ":99999", ":x"]),
    st.sampled_from(["", "/token", "/t?x=1"]),
)


@settings(max_examples=400)
@given(_URLS, st.sampled_from(["http://127.0.0.1:5000", "https://registry.example.com"]))
@per_example_budget()
def test_any_realm_url_is_allowed_or_refused_by_a_named_rule(url: str, registry: str) -> None:
    target = Target.of(httpx.URL(registry), frozenset())
    for carries in (False, True):
        try:
            check_destination(target, url, frozenset(), carries=carries)
        except InsecureTransportError as exc:
            assert "refusing" in str(exc)
            assert "@" not in str(exc).partition("refusing")[2].split(":", 1)[0]
            continue
        try:
            host = httpx.URL(url).raw_host.decode("ascii")
        except httpx.InvalidURL:
            continue  # allowed, and no request can be built for it anyway
        assert address_kind(canonical_host(host)) in (AddressKind.PUBLIC, target.kind)


@settings(max_examples=300)
@given(_URLS, st.booleans())
@per_example_budget()
def test_any_realm_gives_a_token_request_or_a_clear_error(realm: str, allow_http: bool) -> None:
    try:
        challenge = Challenge("bearer", {"realm": realm, "service": "s"})
        request = build_token_request(
            challenge, ScopeSet(), Credential("alice", "pw-property"), allow_http=allow_http
        )
    except AsyncAuthError:
        return
    assert request.url.startswith("https://" if not allow_http else ("https://", "http://"))


_GLOB_LABEL = st.text(alphabet="a*?[]^!-b0", max_size=30)
_GLOB = st.lists(_GLOB_LABEL, min_size=1, max_size=4).map(".".join)
_HOST = st.lists(st.text(alphabet="ab0-", min_size=1, max_size=63), min_size=1, max_size=4).map(
    ".".join
)


@settings(max_examples=400)
@given(_GLOB, _HOST)
@per_example_budget()
def test_any_host_glob_matches_any_host_in_time(glob: str, host: str) -> None:
    try:
        pattern = RegistryPattern.parse(glob, what="property")
        resource = Resource.parse(f"{host}/app")
    except AsyncAuthError:
        return
    assert pattern.matches(resource) in (True, False)


@settings(max_examples=300)
@given(st.integers(-20, 300), st.binary(max_size=600), st.binary(max_size=600))
@per_example_budget()
def test_any_helper_output_gives_a_credential_none_or_a_resolver_error(
    returncode: int, stdout: bytes, stderr: bytes
) -> None:
    output = HelperOutput(returncode, stdout, stderr)
    try:
        credential = interpret_get(output, program="docker-credential-x")
    except AsyncAuthError as exc:
        assert "docker-credential-x" in str(exc)
        return
    assert credential is None or isinstance(credential, Credential)
