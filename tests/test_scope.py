"""Scopes: distribution's grammar, canonical sets, and inference from registry requests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncauth import AsyncAuthError
from asyncauth._registry.scope import (
    Scope,
    ScopeError,
    ScopeSet,
    infer_scopes,
    repository_from_path,
)

from ._budget import per_example_budget


def pull(name: str) -> Scope:
    return Scope.repository(name, "pull")


# -- Scope ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "type_", "name", "actions", "canonical"),
    [
        ("repository:library/alpine:pull", "repository", "library/alpine", {"pull"}, None),
        (
            "repository:samalba/my-app:push,pull",
            "repository",
            "samalba/my-app",
            {"pull", "push"},
            "repository:samalba/my-app:pull,push",
        ),
        ("registry:catalog:*", "registry", "catalog", {"*"}, None),
        (
            "repository(plugin):vieux/sshfs:pull",
            "repository(plugin)",
            "vieux/sshfs",
            {"pull"},
            None,
        ),
        (
            "repository:library/hello-world:metadata_read",
            "repository",
            "library/hello-world",
            {"metadata_read"},
            None,
        ),
        (
            "repository:a:delete,*,zz,push,pull,aa",
            "repository",
            "a",
            {"pull", "push", "delete", "*", "aa", "zz"},
            "repository:a:pull,push,delete,*,aa,zz",
        ),
        ("repository:a:pull,,push,", "repository", "a", {"pull", "push"}, "repository:a:pull,push"),
        ("repository:a:pull,pull", "repository", "a", {"pull"}, "repository:a:pull"),
    ],
)
def test_parse_and_format(
    text: str, type_: str, name: str, actions: set[str], canonical: str | None
) -> None:
    scope = Scope.parse(text)
    assert (scope.type, scope.name, scope.actions) == (type_, name, frozenset(actions))
    assert str(scope) == (canonical or text)


@pytest.mark.parametrize(
    "text",
    [
        "repository:host:5000/foo/bar:pull",  # token servers split on the first two ':'
        "repository:foo",
        "repository",
        "",
        "::",
        "repository::pull",
        "repository:foo:",
        "repository:foo:,",
        ":foo:pull",
        "Repository:foo:pull",
        "repository(:foo:pull",
        "repository(Plugin):foo:pull",
        "repo sitory:foo:pull",
        "repository:fo o:pull",
        "repository:foo:pu ll",
        "repository:f\u00f6o:pull",
        "repository:foo:pull\x00",
    ],
)
def test_malformed_scopes(text: str) -> None:
    with pytest.raises(ScopeError) as caught:
        Scope.parse(text)
    assert isinstance(caught.value, AsyncAuthError)
    assert isinstance(caught.value, ValueError)


def test_error_messages_are_shortened() -> None:
    with pytest.raises(ScopeError) as caught:
        Scope.parse("x" * 1000)
    assert len(str(caught.value)) < 200


def test_constructor() -> None:
    assert Scope("repository", "a", frozenset({"pull"})) == pull("a")
    assert Scope("repository", "a", "push,pull") == Scope.repository("a", "pull", "push")  # type: ignore[arg-type]
    assert Scope.catalog() == Scope.parse("registry:catalog:*")
    assert pull("a").resource == ("repository", "a")
    assert Scope.repository("a", "push", "pull").sorted_actions == ("pull", "push")
    with pytest.raises(ScopeError, match="no actions"):
        Scope.repository("a")
    with pytest.raises(ScopeError):
        Scope("repository", "a", frozenset({1}))  # type: ignore[arg-type]
    with pytest.raises(ScopeError):
        Scope("repository", "a", 1)  # type: ignore[arg-type]


def test_merge() -> None:
    merged = pull("a").merge(Scope.repository("a", "push"))
    assert str(merged) == "repository:a:pull,push"
    with pytest.raises(ValueError, match="same resource"):
        pull("a").merge(pull("b"))


# -- ScopeSet ---------------------------------------------------------------------------------


def test_scope_set_is_canonical() -> None:
    one = ScopeSet.of("repository:b:push", "repository:a:pull", "repository:b:pull")
    two = ScopeSet.of(Scope.repository("a", "pull"), Scope.repository("b", "pull", "push"))
    assert one == two
    assert hash(one) == hash(two)
    assert one.scopes == (pull("a"), Scope.repository("b", "pull", "push"))
    assert str(one) == "repository:a:pull repository:b:pull,push"
    assert len(one) == 2
    assert list(one) == list(one.scopes)
    assert {one: 1}[two] == 1


def test_scope_set_encodings() -> None:
    scopes = ScopeSet.of("repository:b:push,pull", "registry:catalog:*")
    assert scopes.query_params() == (
        ("scope", "registry:catalog:*"),
        ("scope", "repository:b:pull,push"),
    )
    assert scopes.form_value() == "registry:catalog:* repository:b:pull,push"
    assert ScopeSet().query_params() == ()
    assert ScopeSet().form_value() == ""


def test_scope_set_parse() -> None:
    assert ScopeSet.parse("") == ScopeSet()
    assert ScopeSet.parse("   ") == ScopeSet()
    assert not ScopeSet.parse("")
    assert ScopeSet.parse("repository:a:pull  repository:a:push\trepository:b:pull") == (
        ScopeSet.of("repository:a:pull,push", "repository:b:pull")
    )
    with pytest.raises(ScopeError):
        ScopeSet.parse("repository:a:pull files.read")


def test_union() -> None:
    a = ScopeSet.of("repository:a:pull")
    b = ScopeSet.of("repository:a:push", "repository:b:pull")
    union = a | b
    assert union == a.union(b) == b.union(a)
    assert str(union) == "repository:a:pull,push repository:b:pull"


def test_scope_set_holds_only_scopes() -> None:
    with pytest.raises(TypeError):
        ScopeSet(("repository:a:pull",))  # type: ignore[arg-type]


# -- inference from requests ------------------------------------------------------------------

PULL = "pull"
PUSH = "pull,push"
DELETE = "delete"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v2/library/alpine/manifests/3.20", f"repository:library/alpine:{PULL}"),
        (
            "HEAD",
            "/v2/library/alpine/manifests/sha256:" + "a" * 64,
            "repository:library/alpine:pull",
        ),
        ("get", "/v2/a/manifests/latest", "repository:a:pull"),
        ("PUT", "/v2/team/sub/app/manifests/v1", f"repository:team/sub/app:{PUSH}"),
        ("DELETE", "/v2/a/b/manifests/sha256:abc", f"repository:a/b:{DELETE}"),
        ("GET", "/v2/a/b/blobs/sha256:abc", "repository:a/b:pull"),
        ("DELETE", "/v2/a/b/blobs/sha256:abc", "repository:a/b:delete"),
        ("POST", "/v2/a/b/blobs/uploads/", f"repository:a/b:{PUSH}"),
        ("PATCH", "/v2/a/b/blobs/uploads/0b5c-uuid", f"repository:a/b:{PUSH}"),
        ("PUT", "/v2/a/b/blobs/uploads/0b5c-uuid", f"repository:a/b:{PUSH}"),
        ("GET", "/v2/a/b/blobs/uploads/0b5c-uuid", "repository:a/b:pull"),
        ("DELETE", "/v2/a/b/blobs/uploads/0b5c-uuid", "repository:a/b:delete"),
        ("GET", "/v2/a/b/tags/list", "repository:a/b:pull"),
        ("GET", "/v2/a/b/referrers/sha256:abc", "repository:a/b:pull"),
        ("GET", "/v2/a/blobs/b/manifests/latest", "repository:a/blobs/b:pull"),
        ("GET", "/v2/tags/list/tags/list", "repository:tags/list:pull"),
        ("GET", "/v2/a.b/c__d/e--f/manifests/x", "repository:a.b/c__d/e--f:pull"),
        ("GET", "/v2/_catalog", "registry:catalog:*"),
        ("GET", "/v2/", ""),
        ("GET", "/v2", ""),
        ("GET", "/", ""),
        ("GET", "/v1/repositories/a/images", ""),
        ("GET", "/v2/MyOrg/app/manifests/latest", ""),  # invalid name: let the challenge decide
        ("GET", "/v2/a//b/manifests/latest", ""),
        ("GET", "/v2/a/manifests/", ""),
        ("GET", "/v2/a/manifests/x/y", ""),
        ("GET", "/v2/a/unknown/x", ""),
        ("OPTIONS", "/v2/a/manifests/latest", ""),
        ("TRACE", "/v2/a/manifests/latest", ""),
    ],
)
def test_infer_scopes(method: str, path: str, expected: str) -> None:
    assert infer_scopes(method, path) == ScopeSet.parse(expected)


@pytest.mark.parametrize(
    "query", ["mount=sha256:abc&from=base/img", b"mount=sha256:abc&from=base%2Fimg"]
)
def test_cross_repository_mount_needs_pull_on_the_source(query: str | bytes) -> None:
    scopes = infer_scopes("POST", "/v2/team/app/blobs/uploads/", query)
    assert scopes == ScopeSet.of("repository:team/app:pull,push", "repository:base/img:pull")


def test_mount_from_the_same_repository_merges() -> None:
    scopes = infer_scopes("POST", "/v2/a/blobs/uploads/", "mount=sha256:abc&from=a")
    assert scopes == ScopeSet.of("repository:a:pull,push")


@pytest.mark.parametrize("query", ["from=", "from=Bad/Name", "from=a:b", "other=x", "from"])
def test_mount_with_an_unusable_source_is_ignored(query: str) -> None:
    assert infer_scopes("POST", "/v2/a/blobs/uploads/", query) == ScopeSet.of(
        "repository:a:pull,push"
    )


def test_repository_from_path() -> None:
    assert repository_from_path("/v2/team/app/manifests/latest") == "team/app"
    assert repository_from_path("/v2/_catalog") is None
    assert repository_from_path("/v2/") is None


# -- properties -------------------------------------------------------------------------------

types = st.from_regex(r"[a-z0-9]{1,10}(\([a-z0-9]{1,8}\))?", fullmatch=True)
names = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters=":"),
    min_size=1,
    max_size=40,
)
actions = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters=":,"),
    min_size=1,
    max_size=10,
)
scopes = st.builds(Scope, types, names, st.frozensets(actions, min_size=1, max_size=5))
scope_sets = st.lists(scopes, max_size=6).map(lambda items: ScopeSet(tuple(items)))


@given(scopes)
@per_example_budget()
def test_scope_round_trips(scope: Scope) -> None:
    assert Scope.parse(str(scope)) == scope


@given(scope_sets)
@per_example_budget()
def test_scope_set_round_trips(scope_set: ScopeSet) -> None:
    assert ScopeSet.parse(str(scope_set)) == scope_set
    assert ScopeSet.parse(scope_set.form_value()) == scope_set
    assert ScopeSet(tuple(Scope.parse(v) for _, v in scope_set.query_params())) == scope_set


@given(st.lists(scopes, max_size=6), st.randoms())
@per_example_budget()
def test_scope_set_ignores_order(items: list[Scope], rng: object) -> None:
    shuffled = list(items)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert ScopeSet(tuple(items)) == ScopeSet(tuple(shuffled))
    assert hash(ScopeSet(tuple(items))) == hash(ScopeSet(tuple(shuffled)))


@given(scope_sets, scope_sets, scope_sets)
@per_example_budget()
def test_union_laws(a: ScopeSet, b: ScopeSet, c: ScopeSet) -> None:
    assert a | b == b | a
    assert (a | b) | c == a | (b | c)
    assert a | a == a


@settings(max_examples=500)
@given(st.text(max_size=80))
@per_example_budget()
def test_any_text_gives_a_scope_set_or_a_scope_error(text: str) -> None:
    try:
        result = ScopeSet.parse(text)
    except ScopeError:
        pass
    else:
        assert ScopeSet.parse(str(result)) == result


@settings(max_examples=300)
@given(st.text(max_size=12), st.text(max_size=60), st.text(max_size=40) | st.binary(max_size=40))
@per_example_budget()
def test_inference_never_raises(method: str, path: str, query: str | bytes) -> None:
    assert isinstance(infer_scopes(method, path, query), ScopeSet)
    assert isinstance(infer_scopes(method, "/v2/a/blobs/uploads/", query), ScopeSet)
