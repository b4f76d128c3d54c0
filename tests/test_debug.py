"""debug: the NaN/inf tracer (forward and backward, strict and not, script and notebook provenance), guards, capture."""
from __future__ import annotations

import linecache
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb import debug, dispatch
from tinygrad_nb.debug import NonFiniteError, provenance

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy warns about log(-1), 0/0

FORWARD_SCRIPT = """\
import tinygrad_nb as tg
from tinygrad_nb import debug
x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
with debug.detect_anomaly():
    y = x * 2
    z = (y - 5).log()
    w = z * z + 1
    loss = w.sum()
"""  # the NaN is made on line 6


def run_source(source: str, filename: str) -> dict[str, Any]:
    """Execute ``source`` as if it lived in ``filename`` (frames report that file and its line numbers)."""
    namespace: dict[str, Any] = {"__name__": "__user__"}
    if not Path(filename).exists():  # as IPython does for cells, so the report can show the source line
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - the test's own code
    return namespace


@pytest.fixture(autouse=True)
def _no_leftover_observers() -> Any:
    yield
    debug.set_detect_anomaly(False)
    assert dispatch.observers == [], "a test left an observer registered"


# -- forward provenance -----------------------------------------------------------------------------------------
def test_tracer_names_the_forward_line_of_a_script_file(tmp_path: Path) -> None:
    script = tmp_path / "train_script.py"
    script.write_text(FORWARD_SCRIPT)
    with pytest.raises(NonFiniteError) as info:
        run_source(FORWARD_SCRIPT, str(script))
    err = info.value
    assert err.op == "Log" and err.phase == "forward"
    assert err.location == (str(script), 6)
    message = str(err)
    assert f"{script}:6" in message and "z = (y - 5).log()" in message
    assert "input 0: shape (3,) float32, min -3, max 1, all finite" in message
    assert "2 NaN" in message
    assert isinstance(err, FloatingPointError)


def test_tracer_in_a_real_script_subprocess(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(FORWARD_SCRIPT)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "NonFiniteError: Log produced 2 NaN in the forward pass" in result.stderr
    assert f"at {script}:6:  z = (y - 5).log()" in result.stderr


def test_tracer_names_an_ipython_input_cell() -> None:
    cell = "x = tg.tensor([-1.0, 4.0])\ny = x + 1\nz = (y - 1).sqrt()\n"
    with pytest.raises(NonFiniteError, match=r"at cell \[7\], line 4:  z = \(y - 1\).sqrt\(\)") as info:
        with debug.detect_anomaly():
            run_source("import tinygrad_nb as tg\n" + cell, "<ipython-input-7-0123456789ab>")
    assert info.value.location == ("<ipython-input-7-0123456789ab>", 4)


class _FakeShell:
    """Just what provenance reads from IPython: the compiler's filename -> execution count map."""

    def __init__(self, mapping: dict[str, int]):
        self.compile = type("Compiler", (), {"_filename_map": mapping})()


def test_ipykernel_cell_filename_maps_to_execution_count(monkeypatch: pytest.MonkeyPatch) -> None:
    filename = "/tmp/ipykernel_123/4567.py"
    source = "import tinygrad_nb as tg\nx = tg.tensor([0.0])\ny = x / x\n"
    monkeypatch.setattr(provenance, "_get_ipython", lambda: _FakeShell({filename: 12}))
    with pytest.raises(NonFiniteError, match=r"at cell \[12\], line 3"):
        with debug.detect_anomaly():
            run_source(source, filename)
    monkeypatch.setattr(provenance, "_get_ipython", lambda: None)  # no IPython: show the file name
    assert provenance.format_location((filename, 3), source=False) == f"notebook cell {filename}, line 3"


def test_frames_inside_the_package_are_skipped() -> None:
    here = provenance.user_location()
    assert here is not None and here[0] == __file__
    assert not provenance._is_internal(__file__)
    assert provenance._is_internal(tg.tensor.__code__.co_filename)


def test_forward_report_shows_the_library_frames_between_user_line_and_op(tmp_path: Path) -> None:
    source = ("import numpy as np\nimport tinygrad_nb as tg\nfrom tinygrad_nb import nn\n"
              "model = nn.Sequential(nn.Linear(3, 2))\nx = tg.randn(4, 3)\nx.data[0, 0] = np.nan\n"
              "out = model(x)\n")
    filename = str(tmp_path / "with_model.py")
    with pytest.raises(NonFiniteError) as info:
        with debug.detect_anomaly():
            run_source(source, filename)
    err = info.value
    assert err.location == (filename, 7) and err.op == "Linear"
    assert err.where == f"{filename}:7"
    assert "inside nn/functional.py:" in str(err) and "nn/linear.py:" in str(err)
    assert "an input was already non-finite" in str(err)


# -- backward -----------------------------------------------------------------------------------------------------
BACKWARD_SOURCE = """\
import tinygrad_nb as tg
x = tg.tensor([0.0, 1.0, 4.0], requires_grad=True)
y = x.sqrt()
z = (y * 0).sum()
z.backward()
"""  # sqrt(0) = 0 and the forward is finite; its backward is 0 / (2 * 0) = NaN. Forward line: 3


def test_backward_nan_reports_the_backward_op_and_the_forward_line(tmp_path: Path) -> None:
    filename = str(tmp_path / "model_code.py")
    with pytest.raises(NonFiniteError) as info:
        with debug.detect_anomaly():
            run_source(BACKWARD_SOURCE, filename)
    err = info.value
    assert err.phase == "backward" and err.op == "Sqrt"
    assert err.location == (filename, 3)
    message = str(err)
    assert message.startswith("SqrtBackward produced 1 NaN in the backward pass")
    assert f"forward op created at {filename}:3" in message
    assert "incoming gradient: shape (3,) float32, min 0, max 0, all finite" in message


def test_backward_without_forward_provenance_says_so() -> None:
    x = tg.tensor([0.0, 1.0], requires_grad=True)
    z = (x.sqrt() * 0).sum()  # recorded while the tracer is off
    with pytest.raises(NonFiniteError, match="tracer was off when the forward op ran"):
        with debug.detect_anomaly():
            z.backward()


# -- modes and switches ----------------------------------------------------------------------------------------------
NONSTRICT_SOURCE = """\
import tinygrad_nb as tg
x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
y = x * 2
z = (y - 5).log()
w = z * z + 1
loss = w.sum()
loss.backward()
"""  # the NaN is made on line 4


def test_non_strict_records_origins_and_continues(tmp_path: Path) -> None:
    filename = str(tmp_path / "nonstrict.py")
    with debug.detect_anomaly(strict=False) as tracer:
        ns = run_source(NONSTRICT_SOURCE, filename)
    assert np.isnan(ns["loss"].item())
    # the op where the NaN started is recorded, not every op it flowed through afterwards
    forward = [e for e in tracer.events if e.phase == "forward"]
    assert [e.op for e in forward] == ["Log"]
    assert forward[0].location == (filename, 4) and forward[0].nan == 2
    assert forward[0].where == f"{filename}:4"
    backward = [e for e in tracer.events if e.phase == "backward"]
    assert [(e.op, e.location) for e in backward] == [("Mul", (filename, 5))]  # d(z*z) = 2 z g: NaN from finite g


def test_non_strict_records_a_nan_leaf_once() -> None:
    bad = tg.tensor([np.nan, 1.0])
    with debug.detect_anomaly(strict=False) as tracer:
        y = bad * 2
        y = y + 1
        y = y * 3
    assert [e.op for e in tracer.events] == ["Mul"]
    assert "already non-finite" in tracer.events[0].report


def test_tracer_reports_what_ops_leave_silent_and_restores_numpy() -> None:
    before = np.geterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with debug.detect_anomaly(strict=False) as tracer:
            tg.tensor([-1.0, 0.0]).log()  # invalid value and divide by zero: the tracer reports it
        assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(tracer.events) == 1 and np.geterr() == before
        tg.tensor([-1.0]).log()  # tracer off: ops stay silent (PyTorch returns NaN without a warning)...
        assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
        np.log(np.array([-1.0]))  # ...while the user's own numpy code warns as usual again
        assert [w for w in caught if issubclass(w.category, RuntimeWarning)]


def test_check_inf_false_ignores_infinities() -> None:
    with debug.detect_anomaly(check_inf=False):
        y = tg.tensor([0.0, 1.0]).log()  # -inf, fine
    assert np.isinf(y.numpy()[0])
    with pytest.raises(NonFiniteError):
        with debug.detect_anomaly():
            tg.tensor([0.0, 1.0]).log()


def test_no_observers_left_after_exit_even_on_error() -> None:
    with pytest.raises(NonFiniteError):
        with debug.detect_anomaly():
            tg.tensor([-1.0]).log()
    assert dispatch.observers == []
    with debug.detect_anomaly() as tracer:
        assert tracer.enabled and debug.is_anomaly_enabled()
    assert not tracer.enabled and not debug.is_anomaly_enabled()


def test_global_switch() -> None:
    tracer = debug.set_detect_anomaly(True)
    assert tracer is not None and dispatch.observers == [tracer]
    debug.set_detect_anomaly(True)  # again: still one tracer
    assert len(dispatch.observers) == 1
    with pytest.raises(NonFiniteError):
        tg.tensor([-1.0]).sqrt()
    assert debug.set_detect_anomaly(False) is None
    assert dispatch.observers == []
    tg.tensor([-1.0]).sqrt()  # off: no error


def test_integer_and_bool_outputs_are_not_checked() -> None:
    with debug.detect_anomaly():
        x = tg.tensor([np.nan, 1.0])
        mask = x.isnan()
    assert mask.numpy().tolist() == [True, False]


# -- guards ---------------------------------------------------------------------------------------------------------
def test_check_finite() -> None:
    debug.check_finite(1.5)
    debug.check_finite(tg.tensor(2.0))
    debug.check_finite(np.float32(3))
    with pytest.raises(NonFiniteError, match=r"loss is not finite at step 4 \(1 NaN, 0 inf\)"):
        debug.check_finite(tg.tensor(float("nan")), step=4)
    with pytest.raises(NonFiniteError, match=r"val_loss is not finite \(0 NaN, 1 inf\)"):
        debug.check_finite(float("inf"), name="val_loss")


def test_guard_names_the_parameter_with_a_bad_gradient() -> None:
    from tinygrad_nb import nn

    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    guard = debug.Guard(model, every=2)
    out = model(tg.randn(4, 3)).sum()
    out.backward()
    assert guard.step(out) is True
    model[1].weight.grad.data[0, 0] = np.nan
    with pytest.raises(NonFiniteError, match=r"gradient of parameter '1\.weight' \(shape \(1, 2\)\) has 1 NaN"):
        guard.step(out)  # step 2 of every=2: flush time, gradients are checked


def test_guard_non_strict_collects_problems() -> None:
    w = tg.tensor([1.0, 2.0], requires_grad=True)
    guard = debug.Guard(params={"w": w}, strict=False)
    assert guard.step(1.0)
    assert not guard.step(float("nan"), step=7)
    assert guard.problems == ["loss is not finite at step 7 (nan)"]


# -- capture ---------------------------------------------------------------------------------------------------------
def _model() -> Any:
    from tinygrad_nb import nn

    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _np_stats(a: np.ndarray) -> dict[str, Any]:
    counts, edges = np.histogram(a, bins=30, range=(a.min(), a.max()))
    return {"mean": a.mean(), "std": a.std(), "min": a.min(), "max": a.max(), "zero_frac": np.mean(a == 0),
            "hist": counts.tolist(), "hist_edges": edges}


def test_capture_statistics_match_numpy() -> None:
    model = _model()
    seen: dict[str, np.ndarray] = {}
    grads: dict[str, np.ndarray] = {}

    def keep(name: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            seen[name] = output.numpy().astype(np.float64).copy()
            output.register_hook(lambda g: grads.__setitem__(name, g.numpy().astype(np.float64).copy()))
        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in model.named_modules() if n]
    with debug.capture(model) as cap:
        out = model(tg.randn(16, 4))
        (out * out).sum().backward()
    for h in handles:
        h.remove()
    acts = {r["layer"]: r for r in cap.records if r["kind"] == "activation"}
    grad_records = {r["layer"]: r for r in cap.records if r["kind"] == "grad"}
    assert set(acts) == set(grad_records) == {"0", "1", "2"}
    for records, arrays in ((acts, seen), (grad_records, grads)):
        for layer, r in records.items():
            expected = _np_stats(arrays[layer])
            for key in ("mean", "std", "min", "max", "zero_frac"):
                assert r[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-9), (layer, key)
            assert r["hist"] == expected["hist"] and len(r["hist"]) == 30
            np.testing.assert_allclose(r["hist_edges"], expected["hist_edges"])
            assert r["nonfinite"] == 0 and r["step"] == 0 and r["count"] == arrays[layer].size
    assert acts["1"]["zero_frac"] > 0  # ReLU output
    # hooks are gone after the block
    assert all(not m._forward_hooks and not m._forward_pre_hooks for _, m in model.named_modules())


def test_capture_every_n_and_nonfinite_count() -> None:
    model = _model()
    cap = debug.capture(model, what="activations", every=3)
    for _ in range(7):
        model(tg.randn(2, 4))
    x = tg.randn(2, 4)
    x.data[0, 0] = np.inf
    model(x)  # call 7: not sampled
    model(x)  # call 8: not sampled
    model(x)  # call 9: sampled
    cap.remove()
    steps = sorted({r["step"] for r in cap.records})
    assert steps == [0, 3, 6, 9]
    assert {r["kind"] for r in cap.records} == {"activation"}
    last = [r for r in cap.records if r["step"] == 9 and r["layer"] == "0"][0]
    assert last["nonfinite"] > 0 and np.isfinite(last["mean"])
    assert "layer" in cap.table() and "nonfinite" in cap.table()


def test_capture_into_a_run(tmp_path: Path) -> None:
    from tinygrad_nb import track

    model = _model()
    with track.Run(store=tmp_path / "runs.db", fingerprint=False) as run:
        with debug.capture(model, sink=run, every=1):
            out = model(tg.randn(5, 4))
            out.sum().backward()
    store = track.RunStore(tmp_path / "runs.db")
    names = store.metric_names(run.id)
    assert "act/0/mean" in names and "grad/2/std" in names and "act/1/zero_frac" in names
    assert {h[1] for h in store.hists(run.id)} == {"act/0", "act/1", "act/2", "grad/0", "grad/1", "grad/2"}


def test_capture_rejects_unknown_kinds_and_layers() -> None:
    model = _model()
    with pytest.raises(ValueError, match="unknown kinds"):
        debug.capture(model, what=("weights",))
    with pytest.raises(ValueError, match="no layers named"):
        debug.capture(model, layers=["fc9"])
    with pytest.raises(TypeError, match="expected a tinygrad_nb.nn.Module"):
        debug.capture(object())


def test_describe_and_array_stats_edge_cases() -> None:
    assert debug.describe(np.array([1.0, np.nan, -np.inf], np.float32)) == \
        "shape (3,) float32, min 1, max 1, 1 NaN, 1 inf"
    stats = debug.array_stats(np.full(4, 2.0))
    assert stats["std"] == 0 and sum(stats["hist"]) == 4 and stats["hist_edges"][0] == 1.5
    assert debug.array_stats(np.array([np.nan]))["nonfinite"] == 1
