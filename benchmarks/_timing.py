"""Timing helpers shared by the benchmark scripts: medians of repeated runs, ratios, an optional PyTorch."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], Any]], rounds: int, per_round: int = 1,
                        warmup: int = 3, clock: Callable[[], float] = time.perf_counter,
                        settle: int = 0) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternating rounds so that machine noise (another
    process, frequency changes) hits every contender alike instead of whichever happened to run at the time.

    ``clock=time.thread_time`` counts only the CPU time of this thread: for single-threaded work it leaves out the
    time another process held the core, which wall time on a shared machine does not. ``settle`` untimed calls
    start each round: work with a large working set (a training step) then runs with its caches and allocator in
    the steady state of a real loop, not just after the other contender evicted them."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(settle):
                fn()
            start = clock()
            for _ in range(per_round):
                fn()
            samples[name].append((clock() - start) / per_round)
    return {name: statistics.median(values) for name, values in samples.items()}


def optional_torch() -> Any:
    """PyTorch when installed (a baseline only), else None."""
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        return None
    return torch
