"""``x + y``, ``x * y``... on two tensors of one dtype and device skip ``Function.apply``'s argument loop and go
straight to ``autograd.run_op`` (issue 20, section 2: per-op overhead). The seams must not notice: observers,
overrides and autocast hooks see every such op, a device mismatch still raises, and ``ctx.needs_input_grad`` is
PyTorch's tuple on both paths."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb import dispatch, ops
from tinygrad_nb.autograd import Function
from tinygrad_nb.device import DeviceError
from tinygrad_nb.dispatch import OpEvent

# (method name, op name, is the op applied to (other, self)?)
DUNDERS = [("__add__", "Add", False), ("__radd__", "Add", True), ("__sub__", "Sub", False),
           ("__mul__", "Mul", False), ("__rmul__", "Mul", True)]


class InputsRecorder:
    """Keeps (phase, op name, the forward's input tensors) of every event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, tuple[Any, ...]]] = []

    def op_begin(self, event: OpEvent) -> None:
        self.events.append((event.phase, event.op, event.inputs))

    def op_end(self, event: OpEvent) -> None:
        pass


@pytest.mark.parametrize(("method", "name", "reverse"), DUNDERS)
def test_observers_see_the_fast_path_with_its_inputs_in_order(method: str, name: str, reverse: bool) -> None:
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = tg.tensor([3.0, 5.0])
    rec = InputsRecorder()
    with dispatch.add_observer(rec):
        out = getattr(x, method)(y)
        out.sum().backward()
    forward = [(op, inputs) for phase, op, inputs in rec.events if phase == "forward"]
    assert forward[0][0] == name
    assert forward[0][1][0] is (y if reverse else x) and forward[0][1][1] is (x if reverse else y)
    assert ("backward", name) in [(phase, op) for phase, op, _ in rec.events]
    expected = getattr(np.array([1.0, 2.0], np.float32), method)(np.array([3.0, 5.0], np.float32))
    np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.parametrize(("method", "name", "reverse"), DUNDERS)
def test_an_override_runs_for_the_fast_path(method: str, name: str, reverse: bool) -> None:
    op = getattr(ops, name)
    calls: list[tuple[float, float]] = []

    class Recording(op):  # type: ignore[misc,valid-type]
        @staticmethod
        def forward(ctx: Any, a: Any, b: Any) -> Any:
            calls.append((float(a[0]), float(b[0])))
            return op.forward(ctx, a, b)

    dispatch.register_override(op, "cpu", Recording)
    try:
        getattr(tg.tensor([1.0]), method)(tg.tensor([2.0]))
    finally:
        dispatch.remove_override(op, "cpu")
    assert calls == [(2.0, 1.0) if reverse else (1.0, 2.0)]


def test_an_autocast_hook_sees_the_fast_path_and_its_casts_are_used() -> None:
    seen: list[str] = []

    def to_float64(op: type, args: tuple[Any, ...]) -> tuple[Any, ...]:
        seen.append(op.__name__)  # casts without ops (a cast through .double() would come back here)
        return tuple(tg.Tensor(a.numpy().astype(np.float64)) if isinstance(a, tg.Tensor) else a for a in args)

    x, y = tg.tensor([1.0, 2.0]), tg.tensor([3.0, 4.0])
    dispatch.autocast_hooks.append(to_float64)
    try:
        out = x * y
    finally:
        dispatch.autocast_hooks.remove(to_float64)
    assert seen[-1] == "Mul" and out.dtype == np.float64 and out.tolist() == [3.0, 8.0]
    assert (x * y).dtype == np.float32  # and with the hook gone, nothing is cast


@pytest.mark.parametrize("method", [m for m, _, _ in DUNDERS])
def test_tensors_on_two_devices_still_raise_through_an_operator(method: str) -> None:
    x, y = tg.tensor([1.0, 2.0]), tg.tensor([1.0, 2.0], device="cpu:sim")
    with pytest.raises(DeviceError, match="expected all tensors on one device"):
        getattr(x, method)(y)


def test_needs_input_grad_is_a_tuple_on_both_paths() -> None:
    seen: list[Any] = []

    class Scale(Function):
        @staticmethod
        def forward(ctx: Any, a: Any, b: Any) -> Any:
            seen.append(ctx.needs_input_grad)
            return a * b

        @staticmethod
        def backward(ctx: Any, g: Any) -> tuple[Any, Any]:
            return g, None

    x, w = tg.tensor([1.0], requires_grad=True), tg.tensor([2.0])
    Scale.apply(x, w)  # the generic path
    Scale.apply(x, 3.0)
    rec = InputsRecorder()
    with dispatch.add_observer(rec):
        (x * w).backward()  # the fast path: Mul reads needs_input_grad to save only what its gradients need

    def grab(event: OpEvent) -> None:
        if event.ctx is not None and event.phase == "forward":
            seen.append(event.ctx.needs_input_grad)

    rec.op_begin = grab  # type: ignore[method-assign]
    with dispatch.add_observer(rec):
        x * w
    assert seen == [(True, False), (True, False), (True, False)]
    assert x.grad.tolist() == [2.0]


def test_a_saved_input_modified_in_place_after_a_fast_path_op_is_refused() -> None:
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    h = x * 1.0  # a non-leaf that can be written in place
    w = tg.tensor([3.0, 4.0], requires_grad=True)
    y = h * w  # the fast path saves h's array for w's gradient
    h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.sum().backward()
