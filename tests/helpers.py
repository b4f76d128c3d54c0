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
