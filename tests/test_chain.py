"""Chain: imgpkg's precedence, answered concurrently.

Timings are measured in the tests with generous bounds: they prove concurrency (who waits for
whom), not speed.
"""

from __future__ import annotations

import time
from collections.abc import Hashable

import anyio
import anyio.lowlevel
import pytest

from asyncauth import (
    Caching,
    Chain,
    ConfigError,
    Credential,
    Outcome,
    Resolver,
    ResolverError,
    ResolverUnavailableError,
    Resource,
)
from asyncauth._chain import DEFAULT_CACHE_TTL


class Fake:
    """A resolver that sleeps, then answers; it records whether it was cancelled."""

    def __init__(
        self,
        name: str,
        *,
        delay: float = 0.0,
        answer: Credential | None = None,
        raises: Exception | None = None,
        timeout: float | None = None,
    ) -> None:
        self.name = name
        self.delay = delay
        self.answer = answer
        self.raises = raises
        if timeout is not None:
            self.timeout = timeout
        self.calls = 0
        self.cancelled = False
        self.finished = False

    async def resolve(self, resource: Resource) -> Credential | None:
        self.calls += 1
        try:
            await anyio.sleep(self.delay)
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise
        self.finished = True
        if self.raises is not None:
            raise self.raises
        return self.answer


A = Credential("a", "pa")
B = Credential("b", "pb")


def elapsed_since(start: float) -> float:
    return time.monotonic() - start


async def test_fast_high_precedence_answer_does_not_wait_for_slow_lower() -> None:
    fast, slow = Fake("fast", answer=A), Fake("slow", delay=5.0, answer=B)
    start = time.monotonic()
    resolution = await Chain([fast, slow]).resolve("gcr.io/a")
    took = elapsed_since(start)
    assert resolution.credential == A
    assert resolution.source == "fast"
    assert took < 1.0, f"waited {took:.2f} s for a lower-precedence resolver"
    assert slow.cancelled
    assert not slow.finished
    assert [e.outcome for e in resolution.trace] == [Outcome.MATCHED, Outcome.SKIPPED]


async def test_slow_higher_precedence_is_waited_for() -> None:
    slow, fast = Fake("slow", delay=0.4, answer=A), Fake("fast", answer=B)
    start = time.monotonic()
    resolution = await Chain([slow, fast]).resolve("gcr.io/a")
    took = elapsed_since(start)
    assert resolution.credential == A
    assert took >= 0.35
    assert took < 3.0


async def test_slow_higher_without_answer_then_lower_answers() -> None:
    slow, fast = Fake("slow", delay=0.4), Fake("fast", answer=B)
    start = time.monotonic()
    resolution = await Chain([slow, fast]).resolve("gcr.io/a")
    assert resolution.source == "fast"
    assert 0.35 <= elapsed_since(start) < 3.0
    assert [e.outcome for e in resolution.trace] == [Outcome.NO_MATCH, Outcome.MATCHED]
    assert resolution.trace[0].duration >= 0.35


async def test_slow_higher_is_waited_for_only_up_to_its_timeout() -> None:
    hung = Fake("hung", delay=60.0, answer=A, timeout=0.3)
    hung.disable_hint = "set HUNG=off"  # type: ignore[attr-defined]
    fast = Fake("fast", answer=B)
    start = time.monotonic()
    resolution = await Chain([hung, fast]).resolve("gcr.io/a")
    took = elapsed_since(start)
    assert resolution.credential == B
    assert 0.25 <= took < 3.0
    assert hung.cancelled
    entry = resolution.trace[0]
    assert entry.outcome is Outcome.TIMED_OUT
    assert entry.detail is not None
    assert "0.3 s" in entry.detail
    assert "set HUNG=off" in entry.detail


async def test_resolvers_run_concurrently() -> None:
    """Four 0.4 s resolvers finish in well under the 1.6 s a sequential walk would take."""
    fakes = [Fake(f"r{i}", delay=0.4) for i in range(4)]
    start = time.monotonic()
    resolution = await Chain(fakes).resolve("gcr.io/a")
    took = elapsed_since(start)
    assert took < 1.2, f"took {took:.2f} s: resolvers ran one after another"
    assert resolution.source is None
    assert resolution.credential.is_anonymous
    assert all(e.outcome is Outcome.NO_MATCH for e in resolution.trace)


async def test_timeouts_cost_the_longest_not_the_sum() -> None:
    fakes = [Fake(f"cloud{i}", delay=60.0, answer=A, timeout=0.4) for i in range(4)]
    start = time.monotonic()
    resolution = await Chain(fakes).resolve("gcr.io/a")
    assert elapsed_since(start) < 1.2
    assert all(e.outcome is Outcome.TIMED_OUT for e in resolution.trace)


async def test_chain_deadline_caps_every_resolver() -> None:
    hung = Fake("hung", delay=60.0, answer=A, timeout=30.0)
    start = time.monotonic()
    resolution = await Chain([hung, Fake("last", answer=B)], timeout=0.3).resolve("gcr.io/a")
    assert elapsed_since(start) < 2.0
    assert resolution.credential == B
    assert resolution.trace[0].outcome is Outcome.TIMED_OUT
    assert "deadline" in (resolution.trace[0].detail or "")


async def test_cancelled_resolvers_leave_no_task_running() -> None:
    before = len(anyio.get_running_tasks())
    slow = [Fake(f"slow{i}", delay=30.0, answer=B) for i in range(5)]
    resolution = await Chain([Fake("fast", answer=A), *slow]).resolve("gcr.io/a")
    assert resolution.credential == A
    assert all(s.cancelled and not s.finished for s in slow)
    await anyio.lowlevel.checkpoint()
    assert len(anyio.get_running_tasks()) == before


async def test_caller_cancellation_cancels_every_resolver() -> None:
    slow = [Fake(f"slow{i}", delay=30.0) for i in range(3)]
    with anyio.move_on_after(0.2):
        await Chain(slow).resolve("gcr.io/a")
    assert all(s.cancelled for s in slow)


async def test_errors_are_recorded_and_the_chain_moves_on() -> None:
    chain = Chain(
        [
            Fake("crash", raises=RuntimeError("metadata server said no")),
            Fake("flaky", raises=ResolverError("helper exited 3")),
            Fake("missing", raises=ResolverUnavailableError("pip install 'asyncauth[aws]'")),
            Fake("last", answer=B),
        ]
    )
    resolution = await chain.resolve("gcr.io/a")
    assert resolution.credential == B
    outcomes = [(e.outcome, e.detail) for e in resolution.trace]
    assert outcomes[0] == (Outcome.ERROR, "RuntimeError: metadata server said no")
    assert outcomes[1] == (Outcome.ERROR, "ResolverError: helper exited 3")
    assert outcomes[2] == (Outcome.UNAVAILABLE, "pip install 'asyncauth[aws]'")
    assert outcomes[3][0] is Outcome.MATCHED


async def test_config_error_propagates() -> None:
    broken = Fake("broken", raises=ConfigError("IMGPKG_X is malformed"))
    with pytest.raises(ConfigError, match="IMGPKG_X"):
        await Chain([Fake("first"), broken, Fake("last", answer=B)]).resolve("gcr.io/a")


async def test_config_error_below_the_answer_is_not_consulted() -> None:
    broken = Fake("broken", delay=0.05, raises=ConfigError("IMGPKG_X is malformed"))
    resolution = await Chain([Fake("first", answer=A), broken]).resolve("gcr.io/a")
    assert resolution.credential == A


async def test_anonymous_answer_is_a_decision() -> None:
    lower = Fake("lower", delay=0.05, answer=B)
    resolution = await Chain([Fake("anon", answer=Credential.anonymous()), lower]).resolve("x.io/a")
    assert resolution.source == "anon"
    assert resolution.credential.is_anonymous


async def test_explain_is_shown_for_the_match() -> None:
    fake = Fake("explained", answer=A)
    fake.explain = lambda resource: f"because {resource}"  # type: ignore[attr-defined]
    resolution = await Chain([fake]).resolve("gcr.io/a")
    assert resolution.trace[0].detail == "because gcr.io/a"


async def test_accepts_references_and_resources() -> None:
    chain = Chain([Fake("x", answer=A)])
    assert (await chain.resolve("alpine")).resource == Resource.parse("alpine")
    assert (await chain.resolve(Resource.parse("gcr.io/a"))).resource.registry == "gcr.io"


def test_rejects_what_is_not_a_resolver() -> None:
    with pytest.raises(TypeError, match="not a resolver"):
        Chain([object()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="positive"):
        Chain([], timeout=0)


def test_cache_ttl_is_declared_or_inherited_never_guessed() -> None:
    """``cache_ttl`` is a typed field of :class:`Caching`: a subclass inherits the default, a
    resolver that only has a ``cache_key`` is refused when the chain is built."""

    class Inherits(Caching):
        name = "inherits"

        def cache_key(self, resource: Resource) -> Hashable | None:
            return resource.registry

        async def resolve(self, resource: Resource) -> Credential | None:
            return None

    assert Inherits.cache_ttl == DEFAULT_CACHE_TTL
    assert Chain([Inherits()])._members[0].cache_ttl == DEFAULT_CACHE_TTL

    class Declares(Inherits):
        cache_ttl = 7.0

    assert Chain([Declares()])._members[0].cache_ttl == 7.0

    class KeyOnly(Fake):
        def cache_key(self, resource: Resource) -> Hashable | None:
            return resource.registry

    with pytest.raises(TypeError, match="'keyonly' has a cache_key but no cache_ttl"):
        Chain([KeyOnly("keyonly")])


def test_fakes_satisfy_the_protocol() -> None:
    assert isinstance(Fake("x"), Resolver)


def test_repr() -> None:
    assert repr(Chain([Fake("a"), Fake("b")], timeout=2.0)) == "Chain([a, b], timeout=2.0)"


# --- single-flight and caching of resolvers that do I/O ----------------------------------


class Counting(Fake):
    """An I/O-like resolver: one answer per registry, cached by the chain."""

    cache_ttl = 60.0

    def cache_key(self, resource: Resource) -> Hashable | None:
        return resource.registry if resource.registry.endswith(".example.com") else None


async def test_concurrent_resolves_share_one_lookup() -> None:
    counting = Counting("io", delay=0.2, answer=A)
    chain = Chain([counting])
    results: list[Credential] = []

    async def one(i: int) -> None:
        results.append((await chain.resolve(f"r.example.com/repo{i % 7}")).credential)

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(one, i)
    assert results == [A] * 200
    assert counting.calls == 1
    # Cached: later resolves do not call the resolver again...
    await chain.resolve("r.example.com/other")
    assert counting.calls == 1
    # ...but another key does, and a resolver that declines a key is not cached at all.
    await chain.resolve("s.example.com/other")
    await chain.resolve("gcr.io/a")
    await chain.resolve("gcr.io/a")
    assert counting.calls == 4


async def test_negative_answers_are_cached_too() -> None:
    counting = Counting("io")
    chain = Chain([counting])
    for _ in range(3):
        await chain.resolve("r.example.com/a")
    assert counting.calls == 1


async def test_expiring_credentials_are_cached_until_expiry() -> None:
    expired = Credential("AWS", "pw", expires_at=time.time() - 10)
    counting = Counting("io", answer=expired)
    chain = Chain([counting])
    await chain.resolve("r.example.com/a")
    await chain.resolve("r.example.com/a")
    assert counting.calls == 2  # an expired credential is never cached
    fresh = Counting("io", answer=Credential("AWS", "pw", expires_at=time.time() + 3600))
    chain = Chain([fresh])
    await chain.resolve("r.example.com/a")
    await chain.resolve("r.example.com/a")
    assert fresh.calls == 1


async def test_errors_are_shared_but_not_cached() -> None:
    counting = Counting("io", delay=0.1, raises=ResolverError("down"))
    chain = Chain([counting])
    outcomes: list[Outcome] = []

    async def one() -> None:
        outcomes.append((await chain.resolve("r.example.com/a")).trace[0].outcome)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
    assert outcomes == [Outcome.ERROR] * 20
    assert counting.calls == 1
    await chain.resolve("r.example.com/a")
    assert counting.calls == 2


async def test_cancelled_lookup_is_taken_over_by_the_next_caller() -> None:
    """A chain call whose lookup is cancelled (it found a better answer) strands nobody."""
    counting = Counting("io", delay=0.3, answer=B)
    winner = Fake("winner", delay=0.1, answer=A)
    high = Chain([winner, counting])
    low = Chain([counting])
    low._caches = high._caches[1:]  # both chains share one lookup cache for `counting`
    results: dict[str, Credential] = {}

    async def via(name: str, chain: Chain) -> None:
        results[name] = (await chain.resolve("r.example.com/a")).credential

    async with anyio.create_task_group() as tg:
        tg.start_soon(via, "high", high)  # leads the lookup; cancels it when `winner` answers
        await anyio.sleep(0.05)
        tg.start_soon(via, "low", low)  # waits on that lookup, then has to take it over
    assert results == {"high": A, "low": B}
    assert counting.calls == 2
    assert counting.cancelled


async def test_a_resolver_that_does_not_claim_the_host_is_not_started() -> None:
    class Cloud(Fake):
        def claims(self, resource: Resource) -> bool:
            return resource.registry.endswith(".cloud.example")

    cloud = Cloud("cloud", delay=5.0, answer=A)
    resolution = await Chain([cloud, Fake("last", answer=B)]).resolve("gcr.io/a")
    assert resolution.credential == B
    assert cloud.calls == 0
    assert (resolution.trace[0].outcome, resolution.trace[0].detail) == (
        Outcome.NO_MATCH,
        "not its host",
    )
    resolution = await Chain([Cloud("cloud", answer=A)]).resolve("r.cloud.example/a")
    assert resolution.credential == A
