"""The exercises of notebook 14 (serving under latency and memory limits), one checker each (same conventions as
:mod:`.checkers`).

Both exercises are the server's own decisions written as pure functions, so that a check runs in milliseconds and
starts no server: the p99 latency of a window (what the alert compares with the budget) and admission control (admit
a request only if the work ahead of it and its own samples finish by its deadline, else 503 with ``Retry-After``).
The checkers compare with numpy's nearest-rank percentile and with the admission rule in exact arithmetic and, when a
value is wrong, test the known wrong answers to say which mistake it is. The hidden latencies are whole microseconds
and the admission cases use times that are exact in binary, so every value and hint is the same on every machine.
``tests/test_exercises.py`` runs the notebook's solutions; ``tests/test_exercises_serving.py`` runs the known wrong
answers.
"""
from __future__ import annotations

import collections
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .core import Trial, exercise, fmt, which_mistake


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# == p99 of a window of latencies ===================================================================================
def _latencies(seed: int, n: int, slow: int, stall_s: float | None = None) -> list[float]:
    """``n`` latencies in seconds, in arrival order: most between 8 and 20 ms, ``slow`` of them between 50 and
    400 ms (a slow tail), or exactly ``stall_s`` when given. Whole microseconds: exact, and the same everywhere."""
    rng = _rng(seed)
    us = rng.integers(8_000, 20_000, n)
    tail = rng.choice(n, slow, replace=False)
    us[tail] = int(stall_s * 1e6) if stall_s is not None else rng.integers(50_000, 400_000, slow)
    return [int(u) / 1e6 for u in us]


def _nearest_rank_ms(latencies_s: Any) -> float:
    """The reference: numpy's nearest-rank percentile (``method='inverted_cdf'``), in milliseconds."""
    return float(np.percentile(np.asarray(latencies_s, dtype=np.float64), 99, method="inverted_cdf")) * 1e3


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _p99_mistakes(what: str, given: list[float], got: float) -> list[tuple[bool, str]]:
    """The known wrong p99s of ``given`` (seconds, arrival order), each with its hint, most telling first."""
    n, xs = len(given), sorted(given)
    rank = (99 * n + 99) // 100                       # ceil(0.99 n) in integers: the nearest rank, counted from 1
    ref = xs[rank - 1] * 1e3

    def near(value_s: float) -> bool:
        return math.isclose(got, value_s * 1e3, rel_tol=1e-9)

    arrival = next((i for i in (rank - 1, min(rank, n - 1)) if near(given[i]) and not near(xs[i])), None)
    return [
        (near(sum(given) / n), f"for {what} you return the mean latency ({fmt(got)} ms): the mean hides the slow "
                               "tail that the alert is for; p99 is the latency that 99% of the requests stay at or "
                               "under"),
        (math.isclose(got, ref / 1e3, rel_tol=1e-9), f"for {what} you return {fmt(got)}: that is seconds; the "
                                                     "budget is in milliseconds, return milliseconds"),
        (math.isclose(got, ref * 1e3, rel_tol=1e-9), f"for {what} you return {fmt(got)}: milliseconds of "
                                                     "milliseconds; the latencies are given in seconds"),
        (arrival is not None, f"for {what} you return the latency of the {_ordinal((arrival or 0) + 1)} request in "
                              "arrival order: a percentile counts ranks by size; index the latencies sorted by value "
                              "(a sorted copy)"),
        (n > 1 and near(float(np.percentile(xs, 99))),
         f"for {what} you return {fmt(got)} ms, interpolated between two latencies (np.percentile's default, "
         "'linear', does that): the nearest-rank p99 is one of the measured latencies, the smallest that at least "
         "99% of the requests stay at or under"),
        (rank + 1 < n and near(xs[-1]),
         f"for {what} you return the largest latency (p100): one stalled request would set the alert off"),
        (rank < n and near(xs[rank]), f"for {what} you return the {_ordinal(rank + 1)} smallest of {n}: one rank "
                                      "too high; ranks count from 1 (the smallest is the 1st), list indexes from 0"),
        (rank >= 2 and near(xs[rank - 2]),
         f"for {what} you return the {_ordinal(rank - 1)} smallest of {n}: one rank too low: at least 99% "
         "of the requests must stay at or under the p99, so a rank that is not whole rounds up, never down"),
    ]


@exercise("p99_ms", "14_serving", "the p99 latency of a window, nearest rank, in milliseconds",
          "p99_ms(latencies_s) -> float")
def check_p99_ms(fn: Any, trial: Trial) -> None:
    cases = [("200 latencies with a slow tail of 4", _latencies(0, 200, 4)),
             ("100 latencies (0.99 n = 99 is whole)", _latencies(1, 100, 3)),
             ("150 latencies, 2 of them stalls of 5 s", _latencies(2, 150, 2, stall_s=5.0)),
             ("60 latencies", _latencies(7, 60, 1)),
             ("7 latencies", _latencies(3, 7, 1)),
             ("a single latency", _latencies(4, 1, 0))]
    with trial.stage(f"vs numpy's nearest-rank percentile (np.percentile(..., method='inverted_cdf')) in ms for "
                     f"{len(cases)} windows of 200, 100 (0.99 n whole), 150 (two stalls), 60, 7 and 1 latencies; the "
                     "caller's list left in arrival order"):
        for what, latencies in cases:
            given = list(latencies)
            got = trial.number(trial.call(given, what=what), "the p99")
            ref = _nearest_rank_ms(latencies)
            if not math.isclose(got, ref, rel_tol=1e-9):
                trial.fail(which_mistake(_p99_mistakes(what, latencies, got),
                                         otherwise=f"for {what} you return {fmt(got)} ms; the nearest-rank p99 is "
                                                   f"{fmt(ref)} ms"))
            if given != latencies:
                trial.fail("your function reordered the list it was given (list.sort() sorts in place): the "
                           "server's window must stay in arrival order, it drops its oldest entries first; sort a "
                           "copy")
    windows = [("a collections.deque of 300 latencies (how the server keeps its window)",
                collections.deque(_latencies(5, 300, 5))),
               ("a numpy array of 120 latencies", np.asarray(_latencies(6, 120, 2)))]
    with trial.stage("any window: a collections.deque (the server's) and a numpy array, left as they were"):
        for what, window in windows:
            before = list(window)
            got = trial.number(trial.call(window, what=what, on_error="read the latencies as any iterable: "
                                          "sorted(...) takes a deque or an array, and a numpy array has no truth "
                                          "value for `if not latencies`"), "the p99")
            ref = _nearest_rank_ms(before)
            if not math.isclose(got, ref, rel_tol=1e-9):
                trial.fail(which_mistake(_p99_mistakes(what, before, got),
                                         otherwise=f"for {what} you return {fmt(got)} ms; the nearest-rank p99 is "
                                                   f"{fmt(ref)} ms"))
            if list(window) != before:
                trial.fail(f"your function reordered {what.split(' of ')[0]} it was given: sort a copy")


# == admission control: admit, or 503 with Retry-After ==============================================================
# (queue: the sample counts of the requests waiting ahead, this request's samples, ms per sample, deadline in ms)
_ADMIT_CASES: list[tuple[list[int], int, float, float]] = [
    ([8, 8, 8], 1, 10.0, 100.0),         # 24 samples queued in 3 requests: counting requests admits it
    ([], 4, 62.5, 200.0),                # an empty queue, but the request's own 4 samples take too long
    ([2, 1], 1, 250.0, 1000.0),          # answered exactly at the deadline: in time
    ([5, 2], 1, 250.0, 1500.0),          # a wait of exactly 2 s: Retry-After 2, not 3
    ([6, 3], 3, 200.0, 1000.0),          # a wait of 2.4 s: Retry-After 3, not 2
    ([1] * 20, 1, 5.0, 50.0),            # 20 one-sample requests: forgetting the queue admits it
    ([16, 16], 8, 1.0, 50.0),            # 40 samples of 1 ms: admitted
    ([4], 2, 0.5, 10.0),                 # a fast model: admitted
    ([], 1, 5.0, 0.0),                   # a deadline already passed: refused
]


def _wait_ms(queue: list[int], samples: int, ms: float) -> float:
    """When the request would be answered: the queued samples run first, then its own."""
    return (sum(queue) + samples) * ms


def _describe(case: tuple[list[int], int, float, float]) -> str:
    queue, samples, ms, deadline = case
    shown = f"[1] * {len(queue)}" if len(queue) > 4 else str(queue)
    return f"queue={shown}, samples={samples}, ms_per_sample={fmt(ms)}, deadline_ms={fmt(deadline)}"


def _decisions(wait: Callable[[list[int], int, float], float], strict: bool = False) -> list[bool]:
    """Admit or refuse for every case under a (possibly wrong) estimate of the wait."""
    return [(wait(q, s, ms) < d) if strict else (wait(q, s, ms) <= d) for q, s, ms, d in _ADMIT_CASES]


def _retries(seconds: Callable[[float], Any], wait: Callable[[list[int], int, float], float] = _wait_ms) -> list[Any]:
    """Retry-After for every refused case (by the right rule) under a (possibly wrong) rounding of the wait."""
    return [seconds(wait(q, s, ms)) for q, s, ms, d in _ADMIT_CASES if _wait_ms(q, s, ms) > d]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@exercise("admit", "14_serving", "admission control: admit a request only if it can finish by its deadline, else "
          "503 with Retry-After", "admit(queue, samples, ms_per_sample, deadline_ms) -> (admitted, retry_after)")
def check_admit(fn: Any, trial: Trial) -> None:
    answers: list[tuple[bool, Any]] = []
    with trial.stage(f"returns (True, None) or (False, whole seconds) for {len(_ADMIT_CASES)} cases, the queue "
                     "left as it was"):
        for case in _ADMIT_CASES:
            queue, samples, ms, deadline = case
            given = list(queue)
            out = trial.call(given, samples, ms, deadline, what=_describe(case))
            if given != queue:
                trial.fail(f"your function changed the queue it was given (for {_describe(case)} it became "
                           f"{given if len(given) <= 5 else f'{len(given)} entries long'}): decide first; the "
                           "server queues a request only once it is admitted")
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                trial.fail(f"{trial.name} should return a pair (admitted, retry_after); for {_describe(case)} it "
                           f"returned {type(out).__name__}")
            admitted, retry = out
            if not isinstance(admitted, (bool, np.bool_)):
                trial.fail(f"admitted should be True or False; for {_describe(case)} it is "
                           f"{type(admitted).__name__} {admitted!r}")
            if admitted and retry is not None:
                trial.fail(f"for {_describe(case)} you admit the request and return retry_after={retry!r}: an "
                           "admitted request has nothing to retry, return (True, None)")
            if not admitted and not _is_int(retry):
                whole = isinstance(retry, (float, np.floating)) and float(retry).is_integer()
                trial.fail(f"for {_describe(case)} retry_after is {retry} ({type(retry).__name__}): Retry-After is "
                           "an HTTP header holding a whole number of seconds" + (f" ({retry} is not valid there); "
                                                                                 "return an int" if whole else ""))
            answers.append((bool(admitted), retry))
    got = [a for a, _ in answers]
    with trial.stage("admits exactly the requests whose queued samples plus their own finish by the deadline "
                     "(exactly at it included)"):
        ref = _decisions(_wait_ms)
        if got != ref:
            k = next(i for i, (a, b) in enumerate(zip(got, ref)) if a != b)
            q, s, ms, d = _ADMIT_CASES[k]
            trial.fail(which_mistake([
                (got == _decisions(lambda q, s, ms: s * ms), f"for {_describe(_ADMIT_CASES[k])} you admit a request "
                 "that cannot make it: the queued requests run first, so it finishes after their samples *and* its "
                 "own"),
                (got == _decisions(lambda q, s, ms: sum(q) * ms), "with an empty queue you admit a request of 4 "
                 "samples whose own model time is past its deadline: it finishes after its own samples run too"),
                (got == _decisions(lambda q, s, ms: (len(q) + 1) * ms) or
                 got == _decisions(lambda q, s, ms: (len(q) + s) * ms),
                 "you count the queued requests, not their samples: the model's time grows with the samples (3 "
                 "requests of 8 samples are 24 samples of work)"),
                (got == _decisions(_wait_ms, strict=True), "you refuse a request that finishes exactly at its "
                 "deadline: that is in time"),
                (got == _decisions(lambda q, s, ms: _wait_ms(q, s, ms) / 1e3) or
                 got == _decisions(lambda q, s, ms: _wait_ms(q, s, ms) * 1e3),
                 "you compare seconds with milliseconds: the estimate (ms_per_sample) and the deadline are both in "
                 "milliseconds"),
            ], otherwise=f"for {_describe(_ADMIT_CASES[k])} you {'admit' if got[k] else 'refuse'} the request; "
                         f"it would be answered after {fmt(_wait_ms(q, s, ms))} ms"))
    with trial.stage("Retry-After: the estimated wait in whole seconds, rounded up (a wait of exactly 2 s gives 2)"):
        retries = [int(r) for a, r in answers if not a]
        ref_retry, waits = _retries(lambda w: math.ceil(w / 1e3)), _retries(float)
        if retries != ref_retry:
            k = next(i for i, (a, b) in enumerate(zip(retries, ref_retry)) if a != b)
            trial.fail(which_mistake([
                (any(retries == _retries(lambda w, r=r, m=m: max(m, r(w / 1e3))) for r in (int, round) for m in (0, 1)),
                 f"Retry-After {retries[k]} for a wait of {fmt(waits[k])} ms: you round down"
                 + (", and a Retry-After of 0 sends the client straight back into the same backlog" if retries[k] == 0
                    else ": the client comes back before the work ahead of it is done")
                 + "; round the wait up to whole seconds"),
                (retries == _retries(lambda w: int(w / 1e3) + 1), "Retry-After is 3 for a wait of exactly 2000 ms: "
                 "one second too many when the wait is a whole number of seconds; round up, do not add 1"),
                (retries == _retries(lambda w: math.ceil(w)) or retries == _retries(int),
                 f"Retry-After {retries[k]} for a wait of {fmt(waits[k])} ms: Retry-After is in seconds"),
                (retries == _retries(lambda w: math.ceil(w / 1e3), lambda q, s, ms: sum(q) * ms),
                 "Retry-After counts only the queued work: the retried request waits for its own samples too"),
            ], otherwise=f"Retry-After {retries[k]} for a wait of {fmt(waits[k])} ms; expected "
                         f"{ref_retry[k]}"))
