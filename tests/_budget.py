"""A time budget per property-test example: backtracking shows up as a failure, not a hang.

Hypothesis's own ``deadline`` is off (tests/conftest.py): on these shared machines wall-clock
time says more about the neighbours than about the code. :func:`per_example_budget` measures
the CPU time of the thread running one example instead, which a busy machine does not inflate
but a parser that backtracks or loops does. Put it *below* ``@given`` so that it wraps each
example, not the whole run.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

BUDGET = 1.0
"""CPU seconds one example of a parser may take: every parser here answers in microseconds."""

_P = ParamSpec("_P")
_R = TypeVar("_R")


def per_example_budget(seconds: float = BUDGET) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Fail an example whose body used more than ``seconds`` of CPU time."""

    def wrap(test: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(test)
        def timed(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            started = time.thread_time()
            result = test(*args, **kwargs)
            used = time.thread_time() - started
            if used > seconds:
                raise AssertionError(
                    f"one example took {used:.2f} CPU seconds (budget {seconds:g} s): "
                    "a parser backtracks or loops on this input"
                )
            return result

        return timed

    return wrap
