"""SingleFlightCache: one computation per key however many ask; nobody stranded."""

from __future__ import annotations

import anyio
import pytest

from asyncauth._singleflight import MISSING, SingleFlightCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_one_computation_for_many_askers() -> None:
    cache = SingleFlightCache[int]()
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)
        return 42

    results: list[int] = []

    async def ask() -> None:
        results.append(await cache.get("k", compute, lambda v: 10.0))

    async with anyio.create_task_group() as tg:
        for _ in range(500):
            tg.start_soon(ask)
    assert results == [42] * 500
    assert calls == 1


async def test_cancelled_leader_hands_over() -> None:
    cache = SingleFlightCache[str]()
    runs: list[str] = []

    def slow(tag: str) -> object:
        async def compute() -> str:
            runs.append(tag)
            await anyio.sleep(0.2)
            return tag

        return compute

    got: list[str] = []

    async def follower() -> None:
        got.append(await cache.get("k", slow("follower"), lambda v: 10.0))  # type: ignore[arg-type]

    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await cache.get("k", slow("leader"), lambda v: 10.0)  # type: ignore[arg-type]

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        await anyio.sleep(0.05)
        tg.start_soon(follower)
        await anyio.sleep(0.05)
        leader_scope.cancel()
    assert runs == ["leader", "follower"]
    assert got == ["follower"]


async def test_errors_reach_waiters_and_are_not_cached() -> None:
    cache = SingleFlightCache[int]()
    calls = 0

    async def boom() -> int:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)
        raise RuntimeError("down")

    errors = 0

    async def ask() -> None:
        nonlocal errors
        try:
            await cache.get("k", boom, lambda v: 10.0)
        except RuntimeError:
            errors += 1

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(ask)
    assert (errors, calls) == (10, 1)
    with pytest.raises(RuntimeError):
        await cache.get("k", boom, lambda v: 10.0)
    assert calls == 2


async def test_expiry_and_ttl() -> None:
    clock = Clock()
    cache = SingleFlightCache[int](clock=clock)
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await cache.get("k", compute, lambda v: 5.0) == 1
    clock.now = 4.9
    assert await cache.get("k", compute, lambda v: 5.0) == 1
    clock.now = 5.0
    assert await cache.get("k", compute, lambda v: 5.0) == 2
    assert await cache.get("never", compute, lambda v: 0.0) == 3
    assert await cache.get("never", compute, lambda v: 0.0) == 4
    assert cache.peek("never") is MISSING
    cache.invalidate("k")
    assert cache.peek("k") is MISSING


async def test_bounded_least_recently_used_goes_first() -> None:
    cache = SingleFlightCache[str](maxsize=2)

    async def value(v: str) -> str:
        return v

    await cache.get("a", lambda: value("a"), lambda v: 60.0)
    await cache.get("b", lambda: value("b"), lambda v: 60.0)
    assert cache.peek("a") == "a"  # "a" is now the most recently used
    await cache.get("c", lambda: value("c"), lambda v: 60.0)
    assert len(cache) == 2
    assert cache.peek("b") is MISSING
    assert cache.peek("a") == "a"
    cache.clear()
    assert len(cache) == 0


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        SingleFlightCache[int](maxsize=0)


def test_version_changes_whenever_a_value_comes_or_goes() -> None:
    """What the aiohttp middleware's routes rely on to skip lookups: no change goes unseen."""
    now = [0.0]
    cache = SingleFlightCache[str](maxsize=2, clock=lambda: now[0])
    seen = [cache.version]

    def changed() -> bool:
        seen.append(cache.version)
        return seen[-1] != seen[-2]

    cache.put("a", "1", 10.0)
    assert changed()
    assert cache.deadline("a") == 10.0
    assert cache.deadline("b") is None
    cache.put("a", "2", 20.0)  # replaced
    assert changed()
    assert cache.deadline("a") == 20.0
    assert cache.peek("a") == "2"
    assert not changed()  # reading changes nothing
    cache.put("b", "1", 5.0)
    cache.put("c", "1", 5.0)  # evicts the least recently used
    assert changed()
    assert len(cache) == 2
    now[0] = 6.0
    cache.peek("b")  # expired: dropped
    assert changed()
    cache.invalidate("c")
    assert changed()
    cache.clear()
    assert changed()


# -- bounds: count, bytes, and what goes first ---------------------------------------------------


def _sized(key: object, value: str) -> tuple[int, int]:
    """A key's entry costs 10 bytes; a value as many as it has characters."""
    return 10, len(value)


def test_a_value_held_under_many_keys_is_counted_once() -> None:
    cache = SingleFlightCache[str](maxsize=None, budget=10_000, cost=_sized)
    shared = "t" * 1000
    for i in range(50):
        cache.put(f"k{i}", shared, 10.0)
    assert cache.bytes == 50 * 10 + 1000
    for i in range(49):
        cache.invalidate(f"k{i}")
    assert cache.bytes == 10 + 1000  # still held by one key
    cache.invalidate("k49")
    assert cache.bytes == 0
    cache.put("a", shared, 10.0)
    cache.put("a", "other", 10.0)  # replaced: the old value is no longer counted
    assert cache.bytes == 10 + 5


def test_a_budget_bounds_the_bytes_kept_least_recently_used_first() -> None:
    cache = SingleFlightCache[str](maxsize=None, budget=100, cost=_sized)
    for key in "abcd":
        cache.put(key, key * 15, 10.0)  # 25 bytes each: exactly the budget
    assert cache.bytes == 100
    assert cache.peek("a") != MISSING  # a is now the most recently used
    cache.put("e", "e" * 15, 10.0)
    assert cache.peek("b") is MISSING
    assert [cache.peek(k) is MISSING for k in "acde"] == [False] * 4
    assert cache.bytes == 100


def test_past_a_bound_expired_values_go_first() -> None:
    """Least recently used would drop ``old`` (fresh); ``stale`` has expired, so it goes."""
    clock = Clock()
    for bounded in (
        SingleFlightCache[str](maxsize=3, clock=clock),
        SingleFlightCache[str](maxsize=None, budget=75, cost=_sized, clock=clock),
    ):
        clock.now = 0.0
        for key, ttl in (("old", 100.0), ("stale", 5.0), ("new", 100.0)):
            bounded.put(key, key.ljust(15, "."), ttl)  # 25 bytes each
        clock.now = 10.0
        bounded.put("newest", "newest".ljust(15, "."), 100.0)
        assert bounded.deadline("stale") is None
        assert [bounded.peek(k) is MISSING for k in ("old", "new", "newest")] == [False] * 3


def test_no_count_bound_keeps_everything_and_a_budget_needs_a_cost() -> None:
    cache = SingleFlightCache[int](maxsize=None)
    for i in range(10_000):
        cache.put(i, i, 10.0)
    assert len(cache) == 10_000
    assert len(cache._expiries) <= 2 * len(cache) + 64  # the expiry order does not grow unbounded
    for _ in range(5):
        for i in range(10_000):
            cache.put(i, i + 1, 10.0)
    assert len(cache._expiries) <= 2 * len(cache) + 64
    with pytest.raises(ValueError, match="needs a cost"):
        SingleFlightCache[int](budget=10)


async def test_lead_now_never_waits_for_another_computation() -> None:
    cache = SingleFlightCache[str]()
    first = cache.lead_now("k")
    assert first is not None
    assert cache.lead_now("k") is None  # being computed here: left to its leader
    first.settle("v", 10.0)
    assert cache.lead_now("k") is None  # fresh
    cache.invalidate("k")
    again = cache.lead_now("k")
    assert again is not None
    again.abandon()
