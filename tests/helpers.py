"""Small helpers shared by the test modules."""
from __future__ import annotations

from typing import Any

import numpy as np

import tinygrad_nb as tg


def to_np(t: tg.Tensor) -> np.ndarray:
    return np.asarray(t.numpy())


def t64(array: Any, dev: str = "cpu", requires_grad: bool = False) -> tg.Tensor:
    """A float64 tensor on ``dev`` (gradcheck wants float64)."""
    return tg.tensor(np.asarray(array, dtype=np.float64), device=dev, requires_grad=requires_grad)


def assert_gets_hint(exercise_id: str, wrong: Any, hint: str) -> None:
    """A known wrong answer to an exercise fails its check, and the first hint is the one written for it."""
    from tinygrad_nb.exercises import run  # noqa: PLC0415 - only the exercise tests need it

    result = run(exercise_id, wrong)
    assert not result.passed
    assert len(result.hints) >= 1 and result.hints[0].startswith(hint), result.hints
    assert str(result).startswith(f"✗ {exercise_id}: not yet (")
