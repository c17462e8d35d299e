"""How cnn times things: one untimed warm-up call, then the median of timed repeats.

The first call of a model pays for tracing, weight packing and caches; the median of the calls
after it is what a user waits for on every later image, and a median is not moved by one call
that another process slowed down.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def warm_median(run: Callable[[], T], repeats: int) -> tuple[T, float]:
    """What `run()` returned on its warm-up call, and the median seconds of `repeats` more."""
    result = run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)
