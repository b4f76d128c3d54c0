"""The machinery behind ``check.<exercise>(your_function)``: a registry of exercises, a :class:`Trial` that runs the
learner's function on hidden cases and collects one specific hint per failure, and the :class:`Result` it answers.

A checker is a plain function ``checker(fn, trial)`` registered with :func:`exercise`. It calls the learner's
function through :meth:`Trial.call` (which turns an exception into a hint naming the input), compares with a
reference computed by tinygrad_nb itself (autograd, ``gradcheck``, the optimizers) and, when a value is wrong, asks
which *known* mistake explains it (summing instead of averaging, a swapped gradient, ...) so that the hint says what
to look at. A hint never contains the solution. Checkers are split into stages (:meth:`Trial.stage`): the first
stage with a problem ends the check, so a wrong shape is reported once instead of as ten wrong values.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class _StageFailed(Exception):
    """Raised inside a stage to stop it at its first failure (the rest of the stage would repeat the hint)."""


@dataclass
class Result:
    """What a check answers: passed, what was verified, and one hint per problem found (never the solution)."""

    exercise: str
    title: str
    passed: bool
    verified: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    note: str = ""                  # e.g. "progress not saved: ..." (the check itself still counts)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        if self.passed:
            lines = [f"✓ {self.exercise}: passed. Verified:"] + [f"  - {v}" for v in self.verified]
        else:
            count = "1 problem" if len(self.hints) == 1 else f"{len(self.hints)} problems"
            lines = [f"✗ {self.exercise}: not yet ({count})"] + [f"  - {h}" for h in self.hints]
        if self.note:
            lines.append(f"  ({self.note})")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython: the same text, without quotes
        p.text(str(self))


@dataclass
class Exercise:
    """One exercise: its id (the ``check.<id>`` name), the notebook it belongs to, a title, the function signature
    the learner writes, and the checker."""

    id: str
    notebook: str
    title: str
    signature: str
    checker: Callable[[Callable[..., Any], Trial], None]


REGISTRY: dict[str, Exercise] = {}


def exercise(id: str, notebook: str, title: str,  # noqa: A002 - the exercise's id is its check.<id> name
             signature: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``checker(fn, trial)`` as the exercise ``id`` of ``notebook`` (a notebook file stem)."""

    def register(checker: Callable[..., Any]) -> Callable[..., Any]:
        if id in REGISTRY:
            raise ValueError(f"exercise {id!r} is registered twice")
        REGISTRY[id] = Exercise(id, notebook, title, signature, checker)
        return checker

    return register


class Trial:
    """Runs a learner's function on hidden cases; records hints (failures) and what was verified (passes)."""

    def __init__(self, fn: Callable[..., Any], name: str):
        self.fn = fn
        self.name = name
        self.hints: list[str] = []
        self.verified: list[str] = []

    @contextmanager
    def stage(self, verified: str) -> Iterator[None]:
        """A group of checks. When it records a hint the whole check ends there (:class:`_StageFailed` reaches
        :func:`run`): later stages would only repeat the problem. When it passes, ``verified`` is added to what the
        pass message lists."""
        before = len(self.hints)
        yield
        if len(self.hints) > before:
            raise _StageFailed
        self.verified.append(verified)

    def fail(self, hint: str) -> None:
        """Record ``hint`` and stop the current stage."""
        self.hints.append(hint)
        raise _StageFailed

    def hint(self, hint: str) -> None:
        """Record ``hint`` and go on with the stage (for independent problems found in one pass)."""
        if hint not in self.hints:
            self.hints.append(hint)

    def stop_if_failed(self) -> None:
        """End the current stage when it recorded a hint (after :meth:`hint` collected independent problems)."""
        if self.hints:
            raise _StageFailed

    def call(self, *args: Any, what: str = "", on_error: str = "") -> Any:
        """``fn(*args)``; an exception becomes a hint naming ``what`` (the input), followed by ``on_error`` (what
        usually causes it), and stops the stage."""
        try:
            return self.fn(*args)
        except Exception as e:  # noqa: BLE001 - every error of the learner's code is reported as a hint
            where = f" for {what}" if what else ""
            self.fail(f"{self.name} raised {type(e).__name__}{where}: {e}" + (f" ({on_error})" if on_error else ""))

    # -- conversions with a hint when the learner returned something of the wrong kind -----------------------------
    def array(self, value: Any, what: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """``value`` (a numpy array, a Tensor, a number or a list) as a float64 numpy array of ``shape``."""
        if hasattr(value, "detach") and hasattr(value, "numpy"):
            value = value.detach().numpy()
        try:
            out = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            self.fail(f"{what} should be an array of numbers; got {type(value).__name__}")
        if shape is not None and out.shape != tuple(shape):
            if out.size == math.prod(shape):
                self.fail(f"{what} has shape {out.shape}, expected {tuple(shape)}: same numbers, wrong shape "
                          "(a reshape, or a sum with keepdims?)")
            self.fail(f"{what} has shape {out.shape}, expected {tuple(shape)}")
        return out

    def number(self, value: Any, what: str) -> float:
        """``value`` (a float, a 0-d or one-element array or Tensor) as a Python float."""
        if hasattr(value, "detach") and hasattr(value, "numpy"):
            value = value.detach().numpy()
        arr = np.asarray(value)
        if arr.size != 1:
            self.fail(f"{what} should be one number; got shape {arr.shape}")
        try:
            return float(arr.reshape(()))
        except (TypeError, ValueError):
            self.fail(f"{what} should be a number; got {type(value).__name__}")
        raise AssertionError("unreachable")

    def finite(self, arr: np.ndarray, what: str, hint: str) -> None:
        """Fail with ``hint`` when ``arr`` holds a NaN or an infinity."""
        if not np.all(np.isfinite(arr)):
            self.fail(f"{what} is not finite ({_count_nonfinite(arr)}): {hint}")


def close(a: Any, b: Any, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    """Same shape and ``|a - b| <= atol + rtol |b|`` everywhere (NaN never equals)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=False))


def which_mistake(known: Iterable[tuple[bool, str]], otherwise: str) -> str:
    """The hint for a wrong value: that of the first known mistake in ``known`` whose test is true, else
    ``otherwise`` (what the value is and what was expected, when no known mistake explains it).

    ``known`` pairs the test for one known wrong answer (``close(got, <the wrong answer>)``, ...) with its hint, most
    telling first. The tests of a list are all evaluated before the call, so a test must not need an earlier one to
    have failed (write ``len(shape) == 2 and close(...)``, not a test that raises on other shapes) and must not call
    the learner's function; a generator of pairs is evaluated lazily, up to the first true test.
    """
    return next((hint for matched, hint in known if matched), otherwise)


def _count_nonfinite(arr: np.ndarray) -> str:
    nan, inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
    parts = [f"{nan} NaN"] * bool(nan) + [f"{inf} inf"] * bool(inf)
    return ", ".join(parts)


def fmt(x: Any) -> str:
    """A short, stable text for an input or a value in a hint (4 significant digits)."""
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.4g}"
    if isinstance(x, (tuple, list)):
        return "(" + ", ".join(fmt(v) for v in x) + ")"
    return str(x)


def run(exercise_id: str, fn: Callable[..., Any]) -> Result:
    """Run exercise ``exercise_id``'s hidden tests on ``fn`` (no progress is written; see :mod:`.checkers`)."""
    ex = REGISTRY[exercise_id]
    if not callable(fn):
        return Result(ex.id, ex.title, False, hints=[f"check.{ex.id} takes your function ({ex.signature}), "
                                                     f"not a {type(fn).__name__}"])
    name = getattr(fn, "__name__", "your function")
    trial = Trial(fn, name)
    state = np.seterr(all="ignore")  # overflow in the learner's code is reported as a hint, not a warning
    try:
        ex.checker(fn, trial)
    except _StageFailed:
        pass
    finally:
        np.seterr(**state)
    return Result(ex.id, ex.title, not trial.hints, trial.verified, trial.hints)
