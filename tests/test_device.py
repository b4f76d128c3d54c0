"""Devices: selection and fallback, transfers, mismatch errors, the dispatch table. CI has no GPU, so the
test-only "cpu:sim" device stands in for a second device; cupy tests skip cleanly without one."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import to_np

import tinygrad_nb as tg
from tinygrad_nb import device as device_module
from tinygrad_nb import dispatch, ops


def test_transfer_copies_and_is_differentiable() -> None:
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x.to("cpu:sim")
    assert str(y.device) == "cpu:sim" and y.grad_fn == "ToDeviceBackward"
    assert not np.shares_memory(to_np(y), to_np(x))
    (y * y).sum().backward()
    assert x.grad.device == x.device and to_np(x.grad).tolist() == [2.0, 4.0]
    assert x.to("cpu") is x


def test_mixing_devices_names_op_and_arguments() -> None:
    a = tg.zeros(2, 3)
    b = tg.zeros(2, 3, device="cpu:sim")
    with pytest.raises(tg.DeviceError, match=r"add: expected all tensors on one device, got argument 0 \(2x3\) on "
                                             r"cpu, argument 1 \(2x3\) on cpu:sim"):
        a + b


def test_unknown_device_is_explained() -> None:
    with pytest.raises((ValueError, tg.DeviceError), match="tpu"):
        tg.zeros(1, device="tpu")


def test_cuda_fallback_reason_is_printed_once() -> None:
    if tg.is_cuda_available():
        pytest.skip("a GPU is present, so 'auto' does not fall back")
    code = ("import tinygrad_nb as tg; d = tg.set_default_device('auto'); tg.set_default_device('auto'); "
            "print(d, tg.zeros(1).device)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "cpu cpu"
    assert out.stderr.count("tinygrad_nb: using cpu because") == 1
    assert "cupy is not installed" in out.stderr or "no GPU" in out.stderr or "driver" in out.stderr


def test_env_var_sets_default_device() -> None:
    code = ("import tinygrad_nb as tg; from tinygrad_nb import device; "
            "print(tg.zeros(1).device)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"TINYGRAD_NB_DEVICE": "cpu", "PATH": ""})
    assert out.stdout.strip() == "cpu"


def test_devices_lists_cpu_with_memory() -> None:
    found = {d.name: d for d in tg.devices()}
    assert "cpu" in found and found["cpu"].memory_bytes and found["cpu"].memory_bytes > 0
    assert "cpu:sim" in found  # conftest enables it


def test_dispatch_override_replaces_one_op_on_one_device_type() -> None:
    class LoudRelu(ops.Relu):
        calls = 0

        @staticmethod
        def forward(ctx, a):  # type: ignore[no-untyped-def]
            LoudRelu.calls += 1
            return ops.Relu.forward(ctx, a)

    dispatch.register_override(ops.Relu, "cpu", LoudRelu)
    try:
        out = tg.tensor([-1.0, 2.0]).relu()
        assert LoudRelu.calls == 1 and to_np(out).tolist() == [0.0, 2.0]
        assert "LoudRelu" in dispatch.dispatch_table().split("Relu", 1)[1].splitlines()[0]
    finally:
        dispatch.remove_override(ops.Relu, "cpu")
    relu_row = next(line for line in dispatch.dispatch_table().splitlines() if line.startswith("Relu "))
    assert relu_row.split() == ["Relu", "generic", "(xp)", "generic", "(xp)"]


def test_observers_see_forward_and_backward_and_cost_nothing_when_removed() -> None:
    seen: list[tuple[str, str]] = []

    class Recorder:
        def op_begin(self, event: dispatch.OpEvent) -> None:
            seen.append((event.phase, event.op))

        def op_end(self, event: dispatch.OpEvent) -> None:
            pass

    x = tg.tensor([1.0], requires_grad=True)
    with dispatch.add_observer(Recorder()):
        (x * 2).sum().backward()
    assert ("forward", "Mul") in seen and ("backward", "Mul") in seen
    assert dispatch.observers == []


@pytest.mark.skipif(not device_module.is_cuda_available(), reason="no GPU here (cupy missing or no device)")
def test_cuda_round_trip_and_numpy_copies_from_gpu() -> None:
    x = tg.randn(4, 5, device="cuda")
    assert x.is_cuda
    np.testing.assert_array_equal(x.numpy(), x.cpu().numpy())


def test_dlpack_interop_with_torch_is_zero_copy() -> None:
    torch = pytest.importorskip("torch")
    t = torch.arange(6, dtype=torch.float32)
    ours = tg.from_dlpack(t)
    t[0] = 42.0
    assert ours[0].item() == 42.0 and ours.dtype == np.float32
    back = torch.from_dlpack(ours)
    back[1] = -1.0
    assert ours[1].item() == -1.0
