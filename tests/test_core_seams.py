"""The core's seams (issue 20, section 3): every op goes through ``Function.apply`` under its own name, the module
split keeps every public name where it was, and writes around ops go through one helper that bumps versions."""
from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb import dispatch, factories, inplace, ops
from tinygrad_nb.dispatch import OpEvent


class Recorder:
    """An observer that keeps (phase, op name, device) of every event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def op_begin(self, event: OpEvent) -> None:
        pass

    def op_end(self, event: OpEvent) -> None:
        self.events.append((event.phase, event.op, str(event.device)))


def recorded(fn: Any) -> list[tuple[str, str, str]]:
    rec = Recorder()
    with dispatch.add_observer(rec):
        fn()
    return rec.events


@pytest.mark.parametrize(("call", "name"), [
    (lambda x: x.isnan(), "IsNan"), (lambda x: x < 0, "Less"), (lambda x: x <= 0, "LessEqual"),
    (lambda x: x == x, "Equal"), (lambda x: x != 1, "NotEqual"), (lambda x: x.argmax(dim=0), "ArgMax"),
    (lambda x: x.floor(), "Floor"), (lambda x: x.isfinite(), "IsFinite"), (lambda x: (x > 0).all(), "All"),
    (lambda x: tg.trunc(x), "Trunc"), (lambda x: tg.argsort(x), "ArgSort"), (lambda x: ~(x > 0), "LogicalNot"),
])
def test_no_grad_ops_reach_observers_under_their_own_names(call: Any, name: str) -> None:
    x = tg.tensor([1.5, -2.0, float("nan"), 0.0])
    names = [op for _, op, _ in recorded(lambda: call(x))]
    assert name in names and "NoGradOp" not in names


def test_every_no_grad_op_is_a_named_member_that_computes_numpys_function() -> None:
    x = np.array([1.5, -2.0, 0.25, 3.0])
    for xp_name, op in ops.NO_GRAD_OPS.items():
        assert issubclass(op, ops.NoGradOp) and op.__name__ != "NoGradOp" and op.xp_name == xp_name
    for xp_name in ("isnan", "sign", "floor", "ceil", "signbit"):
        got = ops.NoGradOp.apply(tg.tensor(x, dtype=tg.float64), name=xp_name)
        np.testing.assert_array_equal(got.numpy(), getattr(np, xp_name)(x))
    names = [op.__name__ for op in ops.NO_GRAD_OPS.values()]
    assert len(set(names)) == len(names)


def test_a_no_grad_op_made_on_first_use_gets_a_name_too() -> None:
    out = ops.NoGradOp.apply(tg.tensor([4.0, 9.0]), name="fabs")  # not in NO_GRAD_NAMES
    assert ops.NO_GRAD_OPS["fabs"].__name__ == "Fabs" and out.tolist() == [4.0, 9.0]


def test_a_transfer_goes_through_apply_observers_see_it_and_its_gradient_comes_back() -> None:
    x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)

    def run() -> None:
        y = x.to("cpu:sim")
        assert str(y.device) == "cpu:sim" and y.grad_fn == "ToDeviceBackward"
        (y * y).sum().backward()

    events = recorded(run)
    assert ("forward", "ToDevice", "cpu") in events  # the op runs where its input is ...
    assert ("backward", "ToDevice", "cpu:sim") in events  # ... and its gradient arrives from the target
    assert str(x.grad.device) == "cpu" and x.grad.tolist() == [2.0, 4.0, 6.0]


def test_a_transfer_without_grad_records_nothing_and_keeps_the_values() -> None:
    x = tg.tensor([[1, 2], [3, 4]])
    y = x.to("cpu:sim")
    assert y.grad_fn is None and not y.requires_grad and str(y.device) == "cpu:sim" and y.tolist() == x.tolist()
    assert y.data is not x.data


def test_an_override_sees_the_transfer() -> None:
    to_device = sys.modules["tinygrad_nb.tensor"].ToDevice
    calls = []

    class CountingToDevice(to_device):  # type: ignore[misc,valid-type]
        @staticmethod
        def forward(ctx: Any, a: Any, target: Any) -> Any:
            calls.append(str(target))
            return to_device.forward(ctx, a, target)

    dispatch.register_override(to_device, "cpu", CountingToDevice)
    try:
        y = tg.tensor([1.0]).to("cpu:sim")
    finally:
        dispatch.remove_override(to_device, "cpu")
    assert calls == ["cpu:sim"] and str(y.device) == "cpu:sim"


def test_the_split_modules_keep_every_public_name_where_it_was() -> None:
    tensor_module = sys.modules["tinygrad_nb.tensor"]
    for name in ("tensor", "zeros", "ones", "empty", "full", "eye", "arange", "linspace", "randn", "rand", "randint",
                 "randperm", "zeros_like", "ones_like", "randn_like", "rand_like", "full_like", "from_numpy",
                 "from_dlpack"):
        assert getattr(tg, name) is getattr(factories, name) is getattr(tensor_module, name), name
    assert tg.Tensor._inplace is inplace.write
    assert tensor_module.Tensor is tg.Tensor


def test_writing_bumps_every_version_when_the_block_ends_even_if_it_raises() -> None:
    a, b = tg.zeros(3), tg.ones(2)
    with inplace.writing(a, b) as (x, y):
        x += 1
        y *= 3
        assert a.version == 0 and b.version == 0  # not yet: the block is not done
    assert (a.version, b.version) == (1, 1) and a.tolist() == [1.0, 1.0, 1.0] and b.tolist() == [3.0, 3.0]
    with pytest.raises(ZeroDivisionError), inplace.writing(a):
        a.data[0] = 5
        raise ZeroDivisionError  # a partial write is still a write
    assert a.version == 2 and a.tolist() == [5.0, 1.0, 1.0]


def test_writing_lets_backward_refuse_a_value_an_optimizer_changed_under_it() -> None:
    w = tg.tensor([1.0, 2.0], requires_grad=True)
    y = (w * w).sum()  # saves w
    opt = tg.optim.SGD([w], lr=0.1)
    w.grad = tg.ones(2)
    opt.step()
    with pytest.raises(RuntimeError, match=r"^Mul: a tensor of shape \(2,\) that this op saved for backward was "
                                           r"modified by an in-place operation"):
        y.backward()


def test_replace_data_swaps_the_array_and_bumps_the_version() -> None:
    t = tg.tensor([1.0, 2.0])
    new = np.array([1.0, 2.0], dtype=np.float32)
    inplace.replace_data(t, new)
    assert t.data is new and t.version == 1


def test_only_the_core_bumps_versions_by_hand() -> None:
    """Everything outside the core writes through inplace.writing / inplace.replace_data (docs/architecture.md)."""
    from pathlib import Path

    package = Path(tg.__file__).parent
    core = {"tensor.py", "inplace.py", "autograd.py"}
    offenders = [str(path.relative_to(package)) for path in package.rglob("*.py")
                 if path.name not in core and "_bump_version(" in path.read_text()]
    assert offenders == []
