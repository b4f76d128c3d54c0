"""The exercises of notebook 14 (tinygrad_nb/exercises/checkers_serving.py): every known wrong answer gets the hint
written for it, never a generic one, and a right answer passes. The notebook's own solutions are run by
tests/test_exercises.py, which reads them out of the notebook; its coverage test also counts the mistakes here.
"""
from __future__ import annotations

import collections
import math
from typing import Any

import numpy as np
import pytest
from helpers import assert_gets_hint

from tinygrad_nb.exercises import REGISTRY, checkers_serving, progress, run
from tinygrad_nb.exercises.checkers_serving import _ADMIT_CASES, _latencies


@pytest.fixture(autouse=True)
def progress_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.ENV_DIR, str(tmp_path / "progress"))


# -- p99_ms ----------------------------------------------------------------------------------------------------------
def _p99(index: Any = None, scale: float = 1e3, order: str = "sorted") -> Any:
    """A p99 in the learner's style: ``index(n)`` picks the position in the (sorted, or arrival-order) latencies."""
    index = index or (lambda n: math.ceil(0.99 * n) - 1)

    def p99_ms(latencies_s: Any) -> float:
        if order == "in place":
            latencies_s.sort()
            xs = latencies_s
        else:
            xs = sorted(latencies_s) if order == "sorted" else list(latencies_s)
        return scale * xs[index(len(xs))]

    return p99_ms


def _p99_guarded(latencies_s: Any) -> float:
    if not latencies_s:                                  # a numpy array has no truth value
        return 0.0
    return _p99()(latencies_s)


def test_nearest_rank_is_numpys_inverted_cdf_and_the_textbook_rank() -> None:
    for n in (1, 7, 60, 99, 100, 101, 150, 200, 300, 1000, 1001):
        xs = np.sort(np.asarray(_latencies(n, n, min(n // 20, 5))))
        assert np.percentile(xs, 99, method="inverted_cdf") == xs[math.ceil(0.99 * n) - 1]
        assert np.sum(xs <= xs[math.ceil(0.99 * n) - 1]) >= 0.99 * n      # at least 99% at or under it ...
        assert math.ceil(0.99 * n) == 1 or np.sum(xs <= xs[math.ceil(0.99 * n) - 2]) < 0.99 * n   # ... the smallest


def test_the_hidden_windows_tell_the_neighbouring_ranks_apart() -> None:
    # the hints name the rank: neighbouring ranks and the max must hold different values in every window
    for seed, n, slow in ((0, 200, 4), (1, 100, 3), (7, 60, 1), (3, 7, 1), (5, 300, 5), (6, 120, 2)):
        xs = sorted(_latencies(seed, n, slow))
        k = math.ceil(0.99 * n) - 1
        ranks = {i for i in (k - 1, k, k + 1, n - 1) if 0 <= i < n}
        assert len({xs[i] for i in ranks}) == len(ranks)


def test_a_right_p99_passes_for_a_list_a_deque_and_an_array() -> None:
    def p99_ms(latencies_s: Any) -> float:
        xs = np.sort(np.fromiter(latencies_s, dtype=np.float64))
        return float(xs[-(-99 * len(xs) // 100) - 1] * 1000)

    result = run("p99_ms", p99_ms)
    assert result.passed, str(result)
    assert len(result.verified) == 2 and "deque" in result.verified[1]


def test_the_p99_cases_are_what_the_checker_says() -> None:
    window = _latencies(2, 150, 2, stall_s=5.0)
    assert sorted(window)[-2:] == [5.0, 5.0] and len(window) == 150
    assert all(round(u * 1e6) / 1e6 == u for u in _latencies(0, 200, 4))       # whole microseconds
    assert run("p99_ms", lambda lat: 5000.0).hints[0] == ("for 200 latencies with a slow tail of 4 you return 5000 "
                                                          "ms; the nearest-rank p99 is 199.2 ms")


# -- admit -----------------------------------------------------------------------------------------------------------
def _admit(wait: Any = None, admit_if: Any = None, retry: Any = None, append: bool = False) -> Any:
    """An admit in the learner's style, with one of the known mistakes plugged in."""
    wait = wait or (lambda q, s, ms: (sum(q) + s) * ms)
    admit_if = admit_if or (lambda w, d: w <= d)
    retry = retry or (lambda w: math.ceil(w / 1000))

    def admit(queue: Any, samples: int, ms_per_sample: float, deadline_ms: float) -> tuple[bool, Any]:
        w = wait(queue, samples, ms_per_sample)
        if append:
            queue.append(samples)
        return (True, None) if admit_if(w, deadline_ms) else (False, retry(w))

    return admit


def test_a_right_admit_passes() -> None:
    result = run("admit", _admit())
    assert result.passed, str(result)
    assert len(result.verified) == 3


def test_the_admit_cases_cover_admit_refuse_and_the_boundaries() -> None:
    waits = [(sum(q) + s) * ms for q, s, ms, _ in _ADMIT_CASES]
    admitted = [w <= d for w, (_, _, _, d) in zip(waits, _ADMIT_CASES)]
    assert 0 < sum(admitted) < len(_ADMIT_CASES)
    assert any(w == d for w, (_, _, _, d) in zip(waits, _ADMIT_CASES))          # exactly at the deadline
    assert {math.ceil(w / 1000) for w, a in zip(waits, admitted) if not a} == {1, 2, 3}
    assert 2000.0 in waits and 2400.0 in waits                                    # a whole and a fractional wait


WRONG_SERVING: list[tuple[str, str, Any, str]] = [
    # exercise, mistake, wrong answer, the start of the hint it must get
    ("p99_ms", "mean", lambda lat: 1000 * sum(lat) / len(lat), "for 200 latencies with a slow tail of 4 you return "
     "the mean latency (19.64 ms)"),
    ("p99_ms", "not sorted", _p99(order="arrival"), "for 200 latencies with a slow tail of 4 you return the latency "
     "of the 198th request in arrival order"),
    ("p99_ms", "seconds", _p99(scale=1.0), "for 200 latencies with a slow tail of 4 you return 0.1992: that is "
     "seconds"),
    ("p99_ms", "ms of ms", _p99(scale=1e6), "for 200 latencies with a slow tail of 4 you return 1.992e+05: "
     "milliseconds of milliseconds"),
    ("p99_ms", "index int(0.99 n)", _p99(lambda n: int(0.99 * n)), "for 200 latencies with a slow tail of 4 you "
     "return the 199th smallest of 200: one rank too high"),
    ("p99_ms", "index int(0.99 n) - 1", _p99(lambda n: int(0.99 * n) - 1), "for 150 latencies, 2 of them stalls of "
     "5 s you return the 148th smallest of 150: one rank too low"),
    ("p99_ms", "round", _p99(lambda n: round(0.99 * n) - 1), "for 150 latencies, 2 of them stalls of 5 s you return "
     "the 148th smallest of 150: one rank too low"),
    ("p99_ms", "max", lambda lat: 1000 * max(lat), "for 200 latencies with a slow tail of 4 you return the largest "
     "latency (p100)"),
    ("p99_ms", "linear", lambda lat: 1000 * float(np.percentile(lat, 99)), "for 200 latencies with a slow tail of 4 "
     "you return 201 ms, interpolated between two latencies"),
    ("p99_ms", "nearest", lambda lat: 1000 * float(np.percentile(lat, 99, method="nearest")), "for 60 latencies you "
     "return the 59th smallest of 60: one rank too low"),
    ("p99_ms", "sorted in place", _p99(order="in place"), "your function reordered the list it was given "
     "(list.sort() sorts in place)"),
    ("p99_ms", "if not array", _p99_guarded, "_p99_guarded raised ValueError for a numpy array of 120 latencies"),
    ("admit", "queue forgotten", _admit(wait=lambda q, s, ms: s * ms), "for queue=[8, 8, 8], samples=1, "
     "ms_per_sample=10, deadline_ms=100 you admit a request that cannot make it: the queued requests run first"),
    ("admit", "own samples forgotten", _admit(wait=lambda q, s, ms: sum(q) * ms), "with an empty queue you admit a "
     "request of 4 samples"),
    ("admit", "requests counted", _admit(wait=lambda q, s, ms: (len(q) + 1) * ms), "you count the queued requests, "
     "not their samples"),
    ("admit", "requests counted, own samples", _admit(wait=lambda q, s, ms: (len(q) + s) * ms), "you count the "
     "queued requests, not their samples"),
    ("admit", "strict", _admit(admit_if=lambda w, d: w < d), "you refuse a request that finishes exactly at its "
     "deadline"),
    ("admit", "seconds vs ms", _admit(admit_if=lambda w, d: w / 1000 <= d), "you compare seconds with milliseconds"),
    ("admit", "Retry-After rounded down", _admit(retry=lambda w: int(w / 1000)), "Retry-After 0 for a wait of 250 "
     "ms: you round down, and a Retry-After of 0 sends the client straight back"),
    ("admit", "Retry-After at least 1, rounded down", _admit(retry=lambda w: max(1, int(w / 1000))), "Retry-After 2 "
     "for a wait of 2400 ms: you round down: the client comes back before the work ahead of it is done"),
    ("admit", "Retry-After + 1", _admit(retry=lambda w: int(w / 1000) + 1), "Retry-After is 3 for a wait of exactly "
     "2000 ms: one second too many"),
    ("admit", "Retry-After in ms", _admit(retry=math.ceil), "Retry-After 250 for a wait of 250 ms: Retry-After is in "
     "seconds"),
    ("admit", "Retry-After of the queue only", lambda q, s, ms, d: (True, None) if (sum(q) + s) * ms <= d else
     (False, math.ceil(sum(q) * ms / 1000)), "Retry-After counts only the queued work"),
    ("admit", "Retry-After a float", _admit(retry=lambda w: float(np.ceil(w / 1000))), "for queue=[8, 8, 8], "
     "samples=1, ms_per_sample=10, deadline_ms=100 retry_after is 1.0 (float): Retry-After is an HTTP header holding "
     "a whole number of seconds (1.0 is not valid there); return an int"),
    ("admit", "Retry-After for an admitted request", lambda q, s, ms, d: ((sum(q) + s) * ms <= d,
                                                                         math.ceil((sum(q) + s) * ms / 1000)),
     "for queue=[2, 1], samples=1, ms_per_sample=250, deadline_ms=1000 you admit the request and return "
     "retry_after=1"),
    ("admit", "queued before deciding", _admit(append=True), "your function changed the queue it was given (for "
     "queue=[8, 8, 8], samples=1, ms_per_sample=10, deadline_ms=100 it became [8, 8, 8, 1])"),
    ("admit", "a bool only", lambda q, s, ms, d: (sum(q) + s) * ms <= d, "<lambda> should return a pair (admitted, "
     "retry_after)"),
]


@pytest.mark.parametrize(("exercise_id", "mistake", "wrong", "hint"), WRONG_SERVING,
                         ids=[f"{e}-{m}" for e, m, _, _ in WRONG_SERVING])
def test_a_known_mistake_gets_its_hint(exercise_id: str, mistake: str, wrong: Any, hint: str) -> None:
    assert_gets_hint(exercise_id, wrong, hint)


def test_every_exercise_here_has_a_known_mistake() -> None:
    ids = {name for name, value in vars(checkers_serving).items() if name.startswith("check_") and callable(value)}
    assert {f"check_{e}" for e, _, _, _ in WRONG_SERVING} == ids
    assert {e for e, ex in REGISTRY.items() if ex.notebook == "14_serving"} == {"p99_ms", "admit"}


def test_a_check_leaves_its_input_windows_alone() -> None:
    # the checker hands a fresh copy to each call: a learner who sorts in place is caught, and the hidden cases
    # themselves stay in arrival order for the next attempt
    seen: list[Any] = []

    def p99_ms(latencies_s: Any) -> float:
        seen.append(latencies_s)
        return _p99()(latencies_s)

    assert run("p99_ms", p99_ms).passed
    assert [type(s).__name__ for s in seen] == ["list"] * 6 + ["deque", "ndarray"]
    assert isinstance(seen[6], collections.deque)
    assert run("p99_ms", _p99(order="in place")).hints == run("p99_ms", _p99(order="in place")).hints
