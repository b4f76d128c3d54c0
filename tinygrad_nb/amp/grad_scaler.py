"""``tg.amp.GradScaler``: dynamic loss scaling, PyTorch's algorithm step for step.

Why: float16's smallest subnormal is 6e-8 and its smallest normal 6e-5, so small gradients of a float16 graph round
to zero (underflow). Multiplying the loss by a scale S multiplies every gradient by S (backward is linear in its
incoming gradient), lifting them into float16's range; the optimizer then sees the gradients divided by S again.

    scaler = tg.amp.GradScaler()
    for x, y in loader:
        with tg.autocast("cpu", dtype=tg.float16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.unscale_(opt)                          # optional: to clip the true gradients
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)                              # skipped when a gradient is inf/NaN
        scaler.update()

The algorithm (``torch.amp.GradScaler``): the scale starts at ``init_scale`` (2**16). ``step`` unscales the
gradients (multiplies them in place by 1/S, computed in float64 and rounded to float32) and checks them for inf/NaN;
if any is non-finite the optimizer step is skipped. ``update`` then multiplies S by ``backoff_factor`` (0.5) and
resets the count of clean steps, or, after ``growth_interval`` (2000) clean steps in a row, multiplies S by
``growth_factor`` (2) if that stays finite. The scale is kept as a float32 value, as PyTorch's scale tensor.
"""
from __future__ import annotations

from enum import Enum
from typing import Any

import numpy as np

from .. import dtype as dtypes
from ..inplace import replace_data
from ..tensor import Tensor


class OptState(Enum):
    READY = 0
    UNSCALED = 1
    STEPPED = 2


def _refresh_per_optimizer_state() -> dict[str, Any]:
    return {"stage": OptState.READY, "found_inf": None}


class GradScaler:
    """Dynamic loss scaling (see the module docstring). ``device`` is accepted for PyTorch compatibility; the scale
    is a host value that multiplies tensors on any device."""

    def __init__(self, device: str = "cpu", init_scale: float = 2.0**16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000, enabled: bool = True):
        self._device = device
        self._enabled = enabled
        if self._enabled:
            if growth_factor <= 1.0:
                raise ValueError("The growth factor must be > 1.0.")
            if backoff_factor >= 1.0:
                raise ValueError("The backoff factor must be < 1.0.")
        self._init_scale = init_scale
        self._scale: np.float32 | None = None  # set lazily by the first scale(), as PyTorch does
        self._growth_factor = growth_factor
        self._backoff_factor = backoff_factor
        self._growth_interval = growth_interval
        self._init_growth_tracker = 0
        self._growth_tracker: int | None = None
        self._per_optimizer_states: dict[int, dict[str, Any]] = {}

    # -- scaling --------------------------------------------------------------------------------------------------
    def _lazy_init_scale_growth_tracker(self) -> None:
        self._scale = np.float32(self._init_scale)
        self._growth_tracker = self._init_growth_tracker

    def scale(self, outputs: Any) -> Any:
        """``outputs * scale`` (a tensor, or lists/tuples of tensors); returned unchanged when disabled."""
        if not self._enabled:
            return outputs
        if self._scale is None:
            self._lazy_init_scale_growth_tracker()

        def apply(value: Any) -> Any:
            if isinstance(value, Tensor):
                return value * Tensor(np.asarray(self._scale, dtype=np.float32), device=value.device)
            if isinstance(value, (list, tuple)):
                scaled = [apply(v) for v in value]
                return type(value)(scaled) if isinstance(value, tuple) else scaled
            raise ValueError("outputs must be a Tensor or an iterable of Tensors")

        return apply(outputs)

    def _state(self, optimizer: Any) -> dict[str, Any]:
        return self._per_optimizer_states.setdefault(id(optimizer), _refresh_per_optimizer_state())

    def _unscale_grads(self, optimizer: Any, inv_scale: np.float32, allow_fp16: bool) -> bool:
        """Multiply every gradient by ``inv_scale`` in place; True when some gradient holds inf or NaN."""
        found_inf = False
        for group in optimizer.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad.data
                if not allow_fp16 and grad.dtype == dtypes.float16:
                    raise ValueError("Attempting to unscale FP16 gradients.")
                xp = param.device.xp
                if not bool(xp.isfinite(grad).all()):
                    found_inf = True
                if inv_scale != 1:  # a new array: a gradient may be a read-only broadcast view (sum's backward)
                    factor = inv_scale if grad.dtype == np.float32 else inv_scale.astype(grad.dtype)
                    replace_data(param.grad, (grad * factor).astype(grad.dtype, copy=False))
        return found_inf

    def unscale_(self, optimizer: Any) -> None:
        """Divide ``optimizer``'s gradients by the scale now (in place), e.g. before clipping them; ``step`` then
        does not unscale again. At most once per optimizer between two ``update()`` calls."""
        if not self._enabled:
            return
        self._check_scale_growth_tracker("unscale_")
        state = self._state(optimizer)
        if state["stage"] is OptState.UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update().")
        if state["stage"] is OptState.STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        inv_scale = np.float32(1.0 / np.float64(self._scale))  # PyTorch: scale.double().reciprocal().float()
        state["found_inf"] = self._unscale_grads(optimizer, inv_scale, allow_fp16=False)
        state["stage"] = OptState.UNSCALED

    def step(self, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
        """Unscale (unless ``unscale_`` already did) and run ``optimizer.step()`` unless a gradient was inf/NaN.
        Returns what ``optimizer.step`` returned, or None when the step was skipped."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        self._check_scale_growth_tracker("step")
        state = self._state(optimizer)
        if state["stage"] is OptState.STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if state["stage"] is OptState.READY:
            self.unscale_(optimizer)
        if state["found_inf"] is None:
            raise AssertionError("No inf checks were recorded for this optimizer.")
        retval = None if state["found_inf"] else optimizer.step(*args, **kwargs)
        state["stage"] = OptState.STEPPED
        return retval

    def update(self, new_scale: float | Tensor | None = None) -> None:
        """Set the scale for the next iteration: back off after an inf/NaN, grow after ``growth_interval`` clean
        steps, or take ``new_scale`` as given. Call once per iteration, after every ``step``."""
        if not self._enabled:
            return
        self._check_scale_growth_tracker("update")
        if new_scale is not None:
            if isinstance(new_scale, Tensor):
                if new_scale.numel() != 1:
                    raise AssertionError("new_scale should be a float or a 1-element tensor.")
                new_scale = float(new_scale.item())
            elif not isinstance(new_scale, (int, float)):
                raise AssertionError("new_scale should be a float or a 1-element tensor.")
            self._scale = np.float32(new_scale)
        else:
            found_infs = [s["found_inf"] for s in self._per_optimizer_states.values() if s["found_inf"] is not None]
            if not found_infs:
                raise AssertionError("No inf checks were recorded prior to update.")
            self._scale, self._growth_tracker = _update_scale(
                self._scale, self._growth_tracker, any(found_infs), self._growth_factor, self._backoff_factor,
                self._growth_interval)
        self._per_optimizer_states = {}

    # -- inspection and state ---------------------------------------------------------------------------------------
    def _check_scale_growth_tracker(self, funcname: str) -> None:
        fix = "This may indicate your script did not use scaler.scale(loss or outputs) earlier in the iteration."
        if self._scale is None:
            raise AssertionError(f"Attempted {funcname} but _scale is None.  " + fix)

    def get_scale(self) -> float:
        """The current scale as a Python float (1.0 when disabled)."""
        if not self._enabled:
            return 1.0
        return float(self._init_scale) if self._scale is None else float(self._scale)

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        self._growth_factor = new_factor

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        self._backoff_factor = new_factor

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        self._growth_interval = new_interval

    def _get_growth_tracker(self) -> int:
        if not self._enabled:
            return 0
        return self._init_growth_tracker if self._growth_tracker is None else self._growth_tracker

    def is_enabled(self) -> bool:
        return self._enabled

    def state_dict(self) -> dict[str, Any]:
        """``scale``, ``growth_factor``, ``backoff_factor``, ``growth_interval`` and ``_growth_tracker`` (PyTorch's
        keys; plain numbers, so ``tg.save(..., scaler=scaler)`` stores them in the manifest). Empty when disabled."""
        if not self._enabled:
            return {}
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor, "growth_interval": self._growth_interval,
                "_growth_tracker": self._get_growth_tracker()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError("The source state dict is empty, possibly because it was saved from a disabled "
                               "instance of GradScaler.")
        missing = [k for k in ("scale", "growth_factor", "backoff_factor", "growth_interval") if k not in state_dict]
        if missing:
            raise RuntimeError(f"GradScaler.load_state_dict: the state dict lacks {', '.join(missing)}")
        self._init_scale = state_dict["scale"]
        self._scale = np.float32(state_dict["scale"])
        self._growth_factor = state_dict["growth_factor"]
        self._backoff_factor = state_dict["backoff_factor"]
        self._growth_interval = state_dict["growth_interval"]
        self._init_growth_tracker = int(state_dict.get("_growth_tracker", 0))
        self._growth_tracker = self._init_growth_tracker

    def __repr__(self) -> str:
        return (f"GradScaler(scale={self.get_scale():g}, growth_factor={self._growth_factor:g}, "
                f"backoff_factor={self._backoff_factor:g}, growth_interval={self._growth_interval}, "
                f"enabled={self._enabled})")


def _update_scale(scale: np.float32, growth_tracker: int, found_inf: bool, growth_factor: float,
                  backoff_factor: float, growth_interval: int) -> tuple[np.float32, int]:
    """``torch._amp_update_scale_``: back off on inf/NaN, else count a clean step and grow after
    ``growth_interval`` of them (only if the grown scale is finite). Arithmetic in float32, as on the scale tensor."""
    if found_inf:
        return np.float32(scale * np.float32(backoff_factor)), 0
    successful = growth_tracker + 1
    if successful == growth_interval:
        with np.errstate(over="ignore"):
            grown = np.float32(scale * np.float32(growth_factor))
        return (grown if np.isfinite(grown) else scale), 0
    return scale, successful
