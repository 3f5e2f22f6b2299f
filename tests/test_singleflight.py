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
