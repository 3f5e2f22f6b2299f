"""Resource.parse: docker's reference grammar, Docker Hub normalisation, strict errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncauth import AsyncAuthError, InvalidReferenceError, Resource

from ._assertions import assert_hidden
from ._budget import per_example_budget

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("reference", "registry", "repository", "tag", "digest"),
    [
        ("alpine", "index.docker.io", "library/alpine", None, None),
        ("alpine:3.20", "index.docker.io", "library/alpine", "3.20", None),
        ("library/alpine", "index.docker.io", "library/alpine", None, None),
        ("bob/app", "index.docker.io", "bob/app", None, None),
        ("docker.io/alpine", "index.docker.io", "library/alpine", None, None),
        ("docker.io/bob/app:v1", "index.docker.io", "bob/app", "v1", None),
        ("registry-1.docker.io/bob/app", "index.docker.io", "bob/app", None, None),
        ("index.docker.io/alpine", "index.docker.io", "library/alpine", None, None),
        ("gcr.io/proj/img", "gcr.io", "proj/img", None, None),
        ("GCR.io/proj/img", "gcr.io", "proj/img", None, None),
        ("ghcr.io/org/team/app:latest", "ghcr.io", "org/team/app", "latest", None),
        (f"quay.io/org/app@{DIGEST}", "quay.io", "org/app", None, DIGEST),
        (f"quay.io/org/app:v1@{DIGEST}", "quay.io", "org/app", "v1", DIGEST),
        ("localhost/app", "localhost", "app", None, None),
        ("localhost:5000/app:t", "localhost:5000", "app", "t", None),
        ("127.0.0.1:05000/a/b", "127.0.0.1:5000", "a/b", None, None),
        ("[::1]:5000/app", "[::1]:5000", "app", None, None),
        ("[0:0::1]/app", "[::1]", "app", None, None),
        ("host:443/a.b/c__d/e-f", "host:443", "a.b/c__d/e-f", None, None),
        ("my-reg.example.com:5000/x", "my-reg.example.com:5000", "x", None, None),
        # bare registries
        ("gcr.io", "gcr.io", None, None, None),
        ("docker.io", "index.docker.io", None, None, None),
        ("localhost", "localhost", None, None, None),
        ("localhost:5000", "localhost:5000", None, None, None),
        ("127.0.0.1:5000", "127.0.0.1:5000", None, None, None),
        ("[::1]:5000", "[::1]:5000", None, None, None),
        ("[2001:db8::1]", "[2001:db8::1]", None, None, None),
    ],
)
def test_parse(
    reference: str, registry: str, repository: str | None, tag: str | None, digest: str | None
) -> None:
    resource = Resource.parse(reference)
    assert (resource.registry, resource.repository, resource.tag, resource.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    assert str(resource) == (f"{registry}/{repository}" if repository else registry)
    # Parsing what str() gives is a fixed point: the canonical form.
    assert Resource.parse(str(resource)).registry == registry


def test_host_and_port() -> None:
    assert (Resource.parse("[::1]:5000/a").host, Resource.parse("[::1]:5000/a").port) == (
        "[::1]",
        5000,
    )
    assert Resource.parse("gcr.io/a").port is None


def test_parse_accepts_a_resource() -> None:
    resource = Resource.parse("alpine")
    assert Resource.parse(resource) is resource


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("", "empty"),
        ("https://gcr.io/a", "URL scheme"),
        ("oci://x/y", "URL scheme"),
        ("gcr.io//a", "empty path segment"),
        ("gcr.io/a/", "empty path segment"),
        ("/a", "empty path segment"),
        ("gcr.io/Proj/img", "lower-case"),
        ("MyOrg/app", "lower-case"),
        ("Alpine", "lower-case"),
        ("gcr.io/a b", "whitespace"),
        ("gcr.io/a\n", "whitespace"),
        ("gcr.io/ä", "non-ASCII"),
        ("gcr.io/a:-bad", "tag"),
        ("gcr.io/a:" + "t" * 129, "tag"),
        ("gcr.io/a@sha256:short", "digest"),
        ("gcr.io@" + DIGEST, "digest needs a repository"),
        ("gcr.io:http/a", "port"),
        ("gcr.io:0/a", "port"),
        ("gcr.io:65536/a", "port"),
        ("gcr.io:tag", "port"),
        ("[::1/a", "closing"),
        ("[zz::1]:5000/a", "IPv6"),
        ("[::1]x/a", "after the IPv6"),
        ("bad_host.io/a", "host name"),
        ("-bad.io/a", "host name"),
        ("a..b/c", "host name"),
        ("gcr.io/a--", "path component"),
        ("gcr.io/" + "a" * 256, "longer than"),
    ],
)
def test_rejects(reference: str, message: str) -> None:
    with pytest.raises(InvalidReferenceError, match=message):
        Resource.parse(reference)


def test_rejects_non_strings() -> None:
    with pytest.raises(InvalidReferenceError, match="must be a str"):
        Resource.parse(42)  # type: ignore[arg-type]


def test_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="scheme"):
        Resource.parse("http://x/y")


def test_userinfo_never_echoed() -> None:
    """A reference pasted with credentials in it must not put them in an error message."""
    for reference in ("https://bob:hunter2@gcr.io/a", "bob:hunter2@gcr.io/a"):
        with pytest.raises(InvalidReferenceError) as caught:
            Resource.parse(reference)
        assert_hidden(str(caught.value), "hunter2", where="error message")


_reference_alphabet = st.sampled_from([*list("abcAZ09:/@.-_[]%+ \t\n\x00ä"), DIGEST, "sha256:"])


@given(st.text(max_size=60) | st.lists(_reference_alphabet, max_size=20).map("".join))
@per_example_budget()
def test_any_text_gives_a_resource_or_a_clear_error(text: str) -> None:
    try:
        resource = Resource.parse(text)
    except AsyncAuthError as exc:
        assert isinstance(exc, ValueError)
        assert str(exc)
    else:
        # Whatever parses is canonical: parsing its string form gives the same resource.
        again = Resource.parse(str(resource))
        assert (again.registry, again.repository) == (resource.registry, resource.repository)


@given(
    host=st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9](\.[a-z0-9]{1,5}){1,2}", fullmatch=True),
    port=st.none() | st.integers(1, 65535),
    path=st.lists(
        st.from_regex(r"[a-z0-9]+([._-][a-z0-9]+)?", fullmatch=True), min_size=1, max_size=4
    ),
    tag=st.none() | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
)
@per_example_budget()
def test_well_formed_references_parse(
    host: str, port: int | None, path: list[str], tag: str | None
) -> None:
    registry = host if port is None else f"{host}:{port}"
    reference = f"{registry}/{'/'.join(path)}" + (f":{tag}" if tag else "")
    resource = Resource.parse(reference)
    if host not in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        assert resource.registry == registry
        assert resource.repository == "/".join(path)
    assert resource.tag == tag
