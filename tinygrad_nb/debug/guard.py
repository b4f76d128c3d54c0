"""Cheap always-on checks for training loops: is the loss finite, are the gradients finite?

* :func:`check_finite` checks one value now (a float, numpy scalar or tensor) and raises :class:`NonFiniteError`.
* :class:`Guard` is meant to stay on for a whole run: ``guard.step(loss)`` every step. On cpu the loss is checked at
  once (a float comparison). On cuda the check stays on the GPU (a running flag) and is read only every ``every``
  steps, at flush time, so the loop never waits for the GPU just to check the loss. At flush time the gradients of
  the model's parameters are checked too, and the message names the parameter.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..tensor import Tensor
from .anomaly import NonFiniteError
from .stats import nonfinite_counts, to_numpy


def _is_finite_value(value: Any) -> bool:
    """True when a number, numpy/cupy array or tensor holds no NaN/inf (integers and bools always do)."""
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    if isinstance(value, Tensor):
        data, xp = value.data, value.device.xp
    else:  # a numpy scalar/array, or a cupy array read back here
        data, xp = to_numpy(value), np
    if data.dtype.kind not in "fc":
        return True
    return bool(xp.isfinite(data).all())


def check_finite(value: Any, name: str = "loss", step: int | None = None) -> None:
    """Raise :class:`NonFiniteError` if ``value`` (number, array or tensor) holds NaN or inf."""
    if _is_finite_value(value):
        return
    nan, inf = nonfinite_counts(value.data if isinstance(value, Tensor) else value)
    at = f" at step {step}" if step is not None else ""
    raise NonFiniteError(f"{name} is not finite{at} ({nan} NaN, {inf} inf). Turn on "
                         "tinygrad_nb.debug.detect_anomaly() and rerun the step to find the op that produced it.",
                         op=name, phase="guard")


class Guard:
    """Per-step finiteness checks for a training loop.

    ``Guard(model)`` (anything with ``named_parameters()``) or ``Guard(params={"w": w})``. Call ``guard.step(loss)``
    after ``backward()``; every ``every`` steps (and on ``flush()``) pending GPU loss checks are read and every
    parameter gradient is checked. ``strict=True`` raises :class:`NonFiniteError`; otherwise problems are appended to
    ``guard.problems`` (strings) and ``step`` returns False.
    """

    def __init__(self, model: Any = None, params: dict[str, Any] | Iterable[Any] | None = None, every: int = 1,
                 strict: bool = True):
        self.every = max(1, int(every))
        self.strict = strict
        self.problems: list[str] = []
        self._named = _named_params(model, params)
        self._steps = 0
        self._pending: list[tuple[int, Any]] = []  # (step, device array) loss values not read back yet (cuda)
        self._bad_flag: Any = None

    def step(self, loss: Any, step: int | None = None) -> bool:
        """Check this step's loss (deferred on GPU); check gradients every ``every`` steps. True when all is well."""
        step = self._steps if step is None else step
        self._steps += 1
        ok = True
        data = loss.data if isinstance(loss, Tensor) else loss
        device = loss.device if isinstance(loss, Tensor) else None
        if device is not None and device.type == "cuda":
            flag = ~device.xp.isfinite(data).all()
            self._bad_flag = flag if self._bad_flag is None else (self._bad_flag | flag)
            self._pending.append((step, data))
        elif not _is_finite_value(loss):
            ok = self._problem(f"loss is not finite at step {step} ({_value_text(data)})")
        if self._steps % self.every == 0:
            ok = self.flush() and ok
        return ok

    def flush(self) -> bool:
        """Read back deferred loss checks and check every parameter gradient now."""
        ok = True
        if self._bad_flag is not None and bool(self._bad_flag):
            for step, data in self._pending:
                if not _is_finite_value(data):
                    ok = self._problem(f"loss is not finite at step {step} ({_value_text(data)})")
                    break
        self._bad_flag = None
        self._pending = []
        for name, p in self._named:
            g = getattr(p, "grad", None)
            if g is None:
                continue
            if not _is_finite_value(g):
                nan, inf = nonfinite_counts(g.data)
                ok = self._problem(f"gradient of parameter '{name}' (shape {tuple(g.shape)}) has {nan} NaN and "
                                   f"{inf} inf values after step {self._steps - 1}")
        return ok

    def _problem(self, message: str) -> bool:
        if self.strict:
            raise NonFiniteError(message + ". Turn on tinygrad_nb.debug.detect_anomaly() and rerun the step to find "
                                 "the op that produced it.", op="guard", phase="guard")
        self.problems.append(message)
        return False


def _value_text(data: Any) -> str:
    if isinstance(data, (int, float)):
        return repr(data)
    nan, inf = nonfinite_counts(data)
    return f"{nan} NaN, {inf} inf"


def _named_params(model: Any, params: dict[str, Any] | Iterable[Any] | None) -> list[tuple[str, Any]]:
    if model is not None and hasattr(model, "named_parameters"):
        return list(model.named_parameters())
    if isinstance(params, dict):
        return list(params.items())
    if params is not None:
        return [(f"param{i}", p) for i, p in enumerate(params)]
    return []
