"""deterministic(True | "warn" | False): the toggle, the check on known nondeterministic (device, op) pairs, the state
recorded in fingerprints. CI has no GPU, so the cuda cases go through the public check function and a cuda-typed
device stand-in; the real ops on cpu must never raise."""
from __future__ import annotations

import os
import sys
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb import determinism, ops
from tinygrad_nb.determinism import DeterminismError, DeterminismWarning, check, deterministic, get_deterministic
from tinygrad_nb.fingerprint import fingerprint


@pytest.fixture(autouse=True)
def _mode_off(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Each test starts with the mode off and leaves the environment as it found it."""
    for name in ("CUBLAS_WORKSPACE_CONFIG", *determinism.BLAS_THREAD_VARIABLES):
        monkeypatch.setenv(name, "")  # records the original value (or its absence) for teardown...
        monkeypatch.delenv(name)  # ...so what deterministic(True) sets is undone too
    deterministic(False)
    yield
    deterministic(False)


def test_default_is_off_and_check_is_silent() -> None:
    assert get_deterministic() is False and not determinism.is_deterministic()
    check("cuda", "GetItem.backward")  # off: nothing happens


def test_on_raises_for_known_nondeterministic_cuda_ops() -> None:
    deterministic(True)
    with pytest.raises(DeterminismError, match=r"GetItem.backward on cuda has no deterministic implementation.*"
                                               r"atomic"):
        check("cuda", "GetItem.backward")
    with pytest.raises(DeterminismError, match="cumsum on cuda"):
        check("cuda:1", "cumsum")
    cuda_standin = SimpleNamespace(type="cuda", name="cuda:0")
    with pytest.raises(DeterminismError):
        check(cuda_standin, "GetItem.backward")
    check("cpu", "GetItem.backward")  # numpy's add.at is sequential: deterministic
    check("cuda", "Add")  # not in the table


def test_getitem_backward_checks_its_device() -> None:
    """The scatter-add branch of GetItem.backward asks the check; a cuda-typed context (numpy arrays) trips it. The
    index is a tuple of arrays: one bare integer array on numpy takes the sort + reduceat path instead, which is
    deterministic by construction (and never runs on cupy arrays)."""
    ctx = SimpleNamespace(device=SimpleNamespace(type="cuda"), xp=np, shape=(4,), index=(np.array([0, 0, 2]),))
    g = np.ones(3, dtype=np.float32)
    assert ops.GetItem.backward(ctx, g)[0].tolist() == [2.0, 0.0, 1.0, 0.0]  # mode off
    with deterministic(True), pytest.raises(DeterminismError, match="GetItem.backward on cuda"):
        ops.GetItem.backward(ctx, g)
    ctx.index = (slice(0, 2),)  # basic indexing writes, never scatters: fine even in deterministic mode
    with deterministic(True):
        assert ops.GetItem.backward(ctx, np.ones(2, dtype=np.float32))[0].tolist() == [1.0, 1.0, 0.0, 0.0]


def test_cumsum_checks_its_device_both_ways() -> None:
    ctx = SimpleNamespace(device=SimpleNamespace(type="cuda"), xp=np)
    a = np.array([1.0, 2.0, 3.0])
    assert ops.Cumsum.forward(ctx, a, 0).tolist() == [1.0, 3.0, 6.0]  # mode off
    assert ops.Cumsum.backward(ctx, np.ones(3))[0].tolist() == [3.0, 2.0, 1.0]
    with deterministic(True):
        with pytest.raises(DeterminismError, match="cumsum on cuda"):
            ops.Cumsum.forward(ctx, a, 0)
        with pytest.raises(DeterminismError, match="cumsum on cuda"):
            ops.Cumsum.backward(ctx, np.ones(3))
        assert tg.tensor(a).cumsum(0).tolist() == [1.0, 3.0, 6.0]  # on cpu numpy's sequential sum is deterministic


def test_cpu_training_ops_do_not_raise(dev: str) -> None:
    with deterministic(True):
        x = tg.randn(5, 3, device=dev, requires_grad=True)
        index = tg.tensor([0, 0, 4], device=dev)
        loss = (x[index] @ tg.randn(3, 2, device=dev)).relu().sum() + x.softmax(-1).mean()
        loss.backward()
    assert x.grad.shape == (5, 3)


def test_warn_mode_warns_once_per_op() -> None:
    with deterministic("warn"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                check("cuda", "GetItem.backward")
            check("cuda", "cumsum")
        messages = [str(w.message) for w in caught if issubclass(w.category, DeterminismWarning)]
        assert len(messages) == 2 and "GetItem.backward" in messages[0] and "cumsum" in messages[1]


def test_context_manager_restores_previous_mode() -> None:
    deterministic("warn")
    with deterministic(True) as mode:
        assert get_deterministic() is True and repr(mode) == "deterministic(True)"
        with deterministic(False):
            check("cuda", "cumsum")
            assert get_deterministic() is False
        assert get_deterministic() is True
    assert get_deterministic() == "warn"
    with pytest.raises(ValueError, match="True, False, 'warn' or 'portable', got 'yes'"):
        deterministic("yes")


def test_on_sets_gpu_and_blas_settings() -> None:
    deterministic(True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    state = determinism.state()
    assert state["mode"] is True and state["cublas_workspace_config"] == ":4096:8"
    blas = state["blas_threads"]
    assert blas["threads"] == 1
    if "threadpoolctl" not in sys.modules:
        # without threadpoolctl only the environment can pin BLAS, and only before numpy loads: say so
        assert os.environ["OMP_NUM_THREADS"] == "1" and blas["method"] in ("none", "environment")
        if blas["method"] == "none":
            assert "threadpoolctl is not installed" in blas["note"]


def test_existing_cublas_setting_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    deterministic(True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_threadpoolctl_is_used_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    class Limiter:
        def __init__(self, limits: int, user_api: str):
            calls.append(("limit", limits, user_api))

        def restore_original_limits(self) -> None:
            calls.append("restore")

    monkeypatch.setitem(sys.modules, "threadpoolctl", SimpleNamespace(threadpool_limits=Limiter))
    with deterministic(True, blas_threads=2):
        assert determinism.state()["blas_threads"] == {"pinned": True, "threads": 2, "method": "threadpoolctl"}
    assert calls == [("limit", 2, "blas"), "restore"]


def test_state_is_in_the_fingerprint() -> None:
    assert fingerprint(code=False).environment["determinism"]["mode"] is False
    with deterministic(True):
        fp = fingerprint(code=False)
    assert fp.environment["determinism"]["mode"] is True
    assert fp.digest != fingerprint(code=False).digest
