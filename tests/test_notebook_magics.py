"""The IPython extension: magics run in an in-process IPython shell, cell ownership, and one headless notebook.

The magics are exercised through ``shell.run_cell`` (as a notebook would run them), so argument parsing, output and
errors are what a user sees. The last test executes a real notebook with nbclient and an ipykernel kernel.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb import determinism, dispatch, track
from tinygrad_nb import device as device_module
from tinygrad_nb.debug import NonFiniteError
from tinygrad_nb.notebook import extension, magics, ownership
from tinygrad_nb.notebook.magics import MAGICS

IPython = pytest.importorskip("IPython")
from IPython.core.error import UsageError  # noqa: E402


@pytest.fixture
def shell(ipython: Any) -> Any:
    """The shell with the extension loaded; global state is put back afterwards."""
    ip = ipython
    extension.load_ipython_extension(ip)
    ip.user_ns["tg"] = tg
    yield ip
    ownership.registry.release_all()
    extension.unload_ipython_extension(ip)
    tg.set_default_device("cpu")
    determinism.deterministic(False)
    assert dispatch.observers == []


def run(ip: Any, source: str, cell_id: str | None = None) -> Any:
    """Run one cell the way a notebook does (with history, so execution counts advance)."""
    return ip.run_cell(source, store_history=True, cell_id=cell_id)


def run_ok(ip: Any, source: str, capsys: pytest.CaptureFixture[str], cell_id: str | None = None) -> str:
    """Run a cell that must succeed; return what it printed."""
    capsys.readouterr()
    result = run(ip, source, cell_id)
    out = capsys.readouterr()
    assert result.success, f"{source!r} failed: {result.error_in_exec!r}\n{out.err}"
    return out.out


def usage_error(ip: Any, source: str) -> str:
    """Run a cell that must fail with a UsageError; return its message."""
    result = run(ip, source)
    assert isinstance(result.error_in_exec, UsageError), repr(result.error_in_exec)
    message = str(result.error_in_exec)
    assert "\n" not in message
    return message


# -- %tg_help ---------------------------------------------------------------------------------------------------------
def test_help_lists_every_magic(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_ok(shell, "%tg_help", capsys)
    for name, kind, _ in MAGICS:
        assert name in shell.magics_manager.magics[kind]
        assert ("%%" if kind == "cell" else "%") + name in out
    assert "tg_hooks" in out and "%%tg_kernel" in out and len(MAGICS) == 11
    assert "--sort" in run_ok(shell, "%tg_help tg_profile", capsys)
    assert "--strict" in run_ok(shell, "%tg_help %%tg_nantrace", capsys)
    assert "--sample" in run_ok(shell, "%tg_help tg_kernel", capsys)
    assert "usage: %tg_seed" in run_ok(shell, "%tg_seed -h", capsys)  # -h prints help, never exits
    assert usage_error(shell, "%tg_help tg_nope").startswith("%tg_help: no magic named 'tg_nope'")


# -- %tg_seed -------------------------------------------------------------------------------------------------------
def test_seed_makes_tinygrad_numpy_and_random_reproducible(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    draw = "draw = (tg.randn(5).numpy(), np.random.rand(3), random.random())"
    shell.user_ns.update(np=np, random=random)
    assert run_ok(shell, "%tg_seed 123", capsys).strip() == "seeded tinygrad_nb, numpy and random with 123"
    run_ok(shell, draw, capsys)
    first = shell.user_ns["draw"]
    run_ok(shell, "%tg_seed 123", capsys)
    run_ok(shell, draw, capsys)
    second = shell.user_ns["draw"]
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]
    assert tg.random.seed() == 123
    assert "seed 123, 3 blocks drawn" in run_ok(shell, "%tg_seed", capsys)

    np.random.seed(1)
    expected = np.random.rand()
    np.random.seed(1)
    run_ok(shell, "%tg_seed 5 --tg-only", capsys)
    assert np.random.rand() == expected and tg.random.seed() == 5


def test_seed_bad_arguments(shell: Any) -> None:
    assert usage_error(shell, "%tg_seed abc").startswith("%tg_seed: argument seed: invalid int value: 'abc'")
    assert usage_error(shell, "%tg_seed -1") == "%tg_seed: the seed must be in [0, 2**64), got -1"
    assert "unrecognized arguments: 2" in usage_error(shell, "%tg_seed 1 2")


# -- %tg_device -----------------------------------------------------------------------------------------------------
def test_device_show_and_switch(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_ok(shell, "%tg_device", capsys)
    assert out.startswith("default device: cpu\n") and "\ncpu " in out
    if not device_module.is_cuda_available():
        assert "unavailable" in out
    assert run_ok(shell, "%tg_device cpu:sim", capsys).strip() == "default device: cpu:sim"  # conftest enables it
    assert tg.get_default_device() == "cpu:sim" and tg.zeros(2).device == "cpu:sim"
    out = run_ok(shell, "%tg_device auto", capsys)
    assert out.startswith("default device: cuda:0 (auto" if device_module.is_cuda_available() else
                          "default device: cpu (auto: cuda unavailable")
    run_ok(shell, "%tg_device cpu", capsys)
    assert tg.get_default_device() == "cpu"
    assert usage_error(shell, "%tg_device gpu") == \
        "%tg_device: unknown device 'gpu'; expected 'cpu', 'cuda' or 'cuda:N'"
    assert tg.get_default_device() == "cpu"


# -- %%tg_profile ---------------------------------------------------------------------------------------------------
def test_profile_shows_op_rows_and_returns_the_cell_value(shell: Any, capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:
    shell.user_ns.update(x=tg.randn(8, 4), w=tg.randn(4, 3, requires_grad=True))
    trace = tmp_path / "trace.json"
    capsys.readouterr()
    result = run(shell, f"%%tg_profile --out prof --trace {trace}\nloss = (x @ w).relu().sum()\nloss.backward()\n"
                        "loss.shape")
    out = capsys.readouterr().out
    assert result.success and result.result == (), result.error_in_exec
    lines = out.splitlines()
    assert lines[0].split() == ["op", "calls", "total", "ms", "mean", "us", "%", "time", "KB", "out"]
    rows = {line.split()[0]: int(line.split()[1]) for line in lines[2:] if line and line.split()[1].isdigit()}
    assert rows["Matmul"] == 1 and rows["MatmulBackward"] == 1 and rows["Relu"] == 1
    assert any(line.startswith("total ") and line.endswith(" op calls") for line in lines)
    prof = shell.user_ns["prof"]
    assert prof.calls["Matmul"] == 1 and dispatch.observers == []
    assert {e["name"] for e in json.loads(trace.read_text())["traceEvents"]} >= {"Matmul", "MatmulBackward"}
    assert f"wrote the Chrome trace to {trace}" in out

    out = run_ok(shell, "%%tg_profile --limit 2 --sort calls\nfor _ in range(3):\n    y = x * 2\nz = x + 1", capsys)
    table = [line for line in out.splitlines()[2:] if line and not line.startswith("total")]
    assert [line.split()[:2] for line in table] == [["Mul", "3"], ["Add", "1"]]


def test_profile_bad_arguments(shell: Any) -> None:
    message = usage_error(shell, "%%tg_profile --sort fastest\nx = 1")
    assert message.startswith("%%tg_profile: argument --sort: invalid choice: 'fastest'")
    assert "usage: %%tg_profile" in message
    assert "argument --limit: must be at least 1, got 0" in usage_error(shell, "%%tg_profile --limit 0\nx = 1")
    message = usage_error(shell, "%%tg_profile --every abc\nx = 1")
    assert "argument --every: invalid int value: 'abc'" in message


# -- %%tg_nantrace --------------------------------------------------------------------------------------------------
PLANTED = "%%tg_nantrace {opts}\nh = x * 2\nerr = h - 100\nbad = err.log()   # planted NaN: log of negatives\n" \
          "loss = bad.mean()\n"


def test_nantrace_finds_the_planted_nan_with_cell_and_line(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    shell.user_ns["x"] = tg.rand(4, 3)
    number = shell.execution_count
    with np.errstate(invalid="ignore"):
        out = run_ok(shell, PLANTED.format(opts="--text --out tracer"), capsys)
    events = shell.user_ns["tracer"].events
    assert len(events) == 1 and events[0].op == "Log" and events[0].phase == "forward"
    assert events[0].location[1] == 4 and events[0].nan == 12
    assert f"cell [{number}], line 4:  bad = err.log()" in out
    row = next(line for line in out.splitlines() if line.startswith("1 "))
    assert row.split()[:5] == ["1", "Log", "forward", "12", "0"]
    assert "first event:\nLog produced 12 NaN in the forward pass" in out
    assert dispatch.observers == [] and shell.user_ns["loss"].shape == ()  # non-strict: the cell ran to the end

    clean = run_ok(shell, "%%tg_nantrace\ny = x + 1", capsys)
    assert clean.strip() == "no NaN or inf appeared in this cell"


def test_nantrace_strict_raises_at_the_line(shell: Any) -> None:
    shell.user_ns["x"] = tg.rand(4, 3)
    shell.user_ns.pop("loss", None)
    number = shell.execution_count
    with np.errstate(invalid="ignore"):
        result = run(shell, PLANTED.format(opts="--strict"))
    error = result.error_in_exec
    assert isinstance(error, NonFiniteError) and error.op == "Log" and error.location[1] == 4
    assert f"at cell [{number}], line 4:  bad = err.log()" in str(error)
    tb = error.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_lineno == 4 and "tinygrad_nb" not in tb.tb_frame.f_code.co_filename  # ends at the user's line
    assert "loss" not in shell.user_ns and dispatch.observers == []
    assert "unrecognized arguments: --strcit" in usage_error(shell, "%%tg_nantrace --strcit\ny = 1")


class FakeNaNTracer:
    """Stands in for the widget half's NaNTracer: records how the magic drives it."""

    made: ClassVar[list[FakeNaNTracer]] = []

    def __init__(self, tracer: Any, show: bool = False):
        self.tracer, self.shown, self.calls = tracer, show, []
        self.enabled_at_start = tracer.enabled
        FakeNaNTracer.made.append(self)

    def add_error(self, err: Exception) -> None:
        self.calls.append(("add_error", type(err).__name__))

    def stop(self) -> None:
        self.calls.append(("stop", len(self.tracer.events)))

    def finish(self) -> None:
        self.calls.append(("finish",))

    def close(self) -> None:
        self.calls.append(("close",))


def test_nantrace_drives_the_widget_when_one_can_be_shown(shell: Any, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(magics, "nantracer_widget", lambda: FakeNaNTracer)
    FakeNaNTracer.made.clear()
    shell.user_ns["x"] = tg.rand(4, 3)
    out = run_ok(shell, PLANTED.format(opts=""), capsys)
    widget = FakeNaNTracer.made[0]
    assert widget.shown and widget.enabled_at_start and widget.calls == [("stop", 1), ("finish",)]
    assert out.startswith("NaN/inf started in 1 op") and ownership.registry.live() == []  # finished: not owned

    result = run(shell, PLANTED.format(opts="--strict"))
    assert isinstance(result.error_in_exec, NonFiniteError)
    assert FakeNaNTracer.made[1].calls == [("add_error", "NonFiniteError"), ("stop", 0), ("finish",)]
    run_ok(shell, PLANTED.format(opts="--text"), capsys)
    assert len(FakeNaNTracer.made) == 2  # --text: no widget


# -- %tg_runs -------------------------------------------------------------------------------------------------------
def test_runs_ls_show_compare_with_a_temporary_store(shell: Any, capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    ids = []
    for lr, final in ((0.1, 0.5), (0.01, 0.9)):
        with track.Run(name=f"mlp-lr{lr}", config={"lr": lr, "hidden": 8}, store=db, fingerprint=False) as r:
            r.log({"loss": 2.0})
            r.log({"loss": final})
        ids.append(r.id)
    out = run_ok(shell, f"%tg_runs ls --store {db}", capsys)
    assert out.splitlines()[0].split()[:4] == ["id", "name", "project", "status"]
    assert ids[0] in out and ids[1] in out and out.count("finished") == 2
    assert out == run_ok(shell, f"%tg_runs --store {db}", capsys)  # ls is the default

    out = run_ok(shell, f"%tg_runs compare {ids[0]} {ids[1]} --store {db}", capsys)
    header = out.splitlines()[0].split()
    assert "lr" in " ".join(header) and "hidden" not in " ".join(header)  # only the config that differs
    row = next(line for line in out.splitlines() if line.startswith(ids[1]))
    assert "0.9" in row and "0.01" in row

    out = run_ok(shell, f"%tg_runs show {ids[0][:6]} --store {db}", capsys)
    assert out.startswith(f"run {ids[0]}\n") and "lr = 0.1" in out

    message = usage_error(shell, f"%tg_runs show zzzz --store {db}")
    assert message.startswith("%tg_runs show: run 'zzzz' not found in")
    assert "invalid choice: 'frob'" in usage_error(shell, f"%tg_runs frob --store {db}")
    assert "the following arguments are required: run_ids" in usage_error(shell, f"%tg_runs compare --store {db}")


# -- %tg_deterministic ----------------------------------------------------------------------------------------------
def test_deterministic_toggles_the_mode(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_ok(shell, "%tg_deterministic on", capsys).startswith("deterministic mode: on\n  BLAS threads")
    assert determinism.get_deterministic() is True
    assert run_ok(shell, "%tg_deterministic", capsys).startswith("deterministic mode: on")
    run_ok(shell, "%tg_deterministic warn", capsys)
    assert determinism.get_deterministic() == "warn"
    assert run_ok(shell, "%tg_deterministic off", capsys).strip() == "deterministic mode: off"
    assert determinism.get_deterministic() is False
    assert "invalid choice: 'maybe'" in usage_error(shell, "%tg_deterministic maybe")
    assert determinism.get_deterministic() is False


# -- cell ownership -------------------------------------------------------------------------------------------------
HOOK_CELL = "h = own(model.register_forward_hook(lambda m, a, out: None), label='shape hook')"


def test_rerunning_a_cell_leaves_exactly_one_hook(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    model = tg.nn.Linear(3, 2)
    shell.user_ns.update(model=model, own=ownership.own)
    for _ in range(3):
        run_ok(shell, HOOK_CELL, capsys, cell_id="cell-a")
        assert len(model._forward_hooks) == 1
    run_ok(shell, HOOK_CELL, capsys, cell_id="cell-b")  # another cell with the same code: a second hook
    assert len(model._forward_hooks) == 2
    run_ok(shell, "x = 1", capsys, cell_id="cell-a")  # cell-a edited: its hook goes
    assert len(model._forward_hooks) == 1

    out = run_ok(shell, "%tg_hooks", capsys)
    assert "id:cell-b" in out and "shape hook" in out and "id:cell-a" not in out
    assert run_ok(shell, "%tg_hooks --clear", capsys).strip() == "released 1 owned object(s)"
    assert model._forward_hooks == {}
    assert run_ok(shell, "%tg_hooks", capsys).strip() == "no hooks or widgets are owned by a cell"


def test_without_a_cell_id_the_source_identifies_the_cell(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    model = tg.nn.Linear(3, 2)
    shell.user_ns.update(model=model, own=ownership.own)
    run_ok(shell, HOOK_CELL, capsys)
    run_ok(shell, HOOK_CELL, capsys)
    assert len(model._forward_hooks) == 1
    run_ok(shell, HOOK_CELL + "  # edited", capsys)  # edited source = a new cell
    assert len(model._forward_hooks) == 2


def test_rerun_removes_observers_and_closes_widgets(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    closed: list[str] = []

    class Widget:
        def close(self) -> None:
            closed.append("closed")

    shell.user_ns.update(own=ownership.own, Widget=Widget, debug=tg.debug)
    cell = ("prof = own(tg.profile().start())\ntracer = own(debug.detect_anomaly(strict=False).enable())\n"
            "w = own(Widget())")
    run_ok(shell, cell, capsys, cell_id="c")
    run_ok(shell, cell, capsys, cell_id="c")
    assert len(dispatch.observers) == 2 and closed == ["closed"]
    assert ownership.current_cell() is None  # between cells
    shell.user_ns["current_cell"] = ownership.current_cell
    run_ok(shell, "get_ipython().run_cell('')\nkey = current_cell()", capsys, cell_id="f")  # empty: no end of f
    assert shell.user_ns["key"] == "id:f" and ownership.current_cell() is None
    ownership.registry.release("id:c")
    assert dispatch.observers == [] and closed == ["closed", "closed"]


def test_own_outside_a_cell_and_bad_objects(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    model = tg.nn.Linear(2, 2)
    handle = ownership.own(model.register_forward_hook(lambda m, a, out: None))  # not in a cell: nothing owned
    assert ownership.registry.live() == [] and len(model._forward_hooks) == 1
    handle.remove()
    shell.user_ns["own"] = ownership.own
    result = run(shell, "own(object())")
    assert isinstance(result.error_in_exec, TypeError) and "pass cleanup=" in str(result.error_in_exec)

    released: list[int] = []

    def broken() -> None:
        raise RuntimeError("boom")

    shell.user_ns.update(broken=broken, released=released)
    run_ok(shell, "own(1, cleanup=lambda: released.append(1))\nown(2, cleanup=broken)", capsys, cell_id="d")
    capsys.readouterr()
    ownership.registry.release("id:d")  # the broken cleanup is reported, the other one still runs
    assert released == [1] and "could not release int: RuntimeError: boom" in capsys.readouterr().err


def test_core_handle_listeners_get_auto_ownership(shell: Any, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """When the core offers a "handle created" listener list, loading the extension subscribes cell ownership."""
    listeners: list[Any] = []
    monkeypatch.setattr(dispatch, "observer_listeners", listeners, raising=False)
    extension.load_ipython_extension(shell)
    assert listeners == [ownership.registry.auto_own]
    shell.user_ns.update(listeners=listeners)
    cell = "prof = tg.profile().start()\nfor listener in listeners: listener(prof)"  # what the core would do
    run_ok(shell, cell, capsys, cell_id="e")
    run_ok(shell, cell, capsys, cell_id="e")
    assert len(dispatch.observers) == 1
    extension.unload_ipython_extension(shell)
    assert listeners == []
    extension.load_ipython_extension(shell)  # the fixture unloads again


def test_load_is_idempotent_and_unload_removes_everything(shell: Any) -> None:
    extension.load_ipython_extension(shell)
    assert shell.events.callbacks["pre_run_cell"].count(ownership.pre_run_cell) == 1
    extension.unload_ipython_extension(shell)
    assert ownership.pre_run_cell not in shell.events.callbacks["pre_run_cell"]
    assert ownership.post_run_cell not in shell.events.callbacks["post_run_cell"]
    assert all(name not in shell.magics_manager.magics[kind] for name, kind, _ in MAGICS)
    extension.load_ipython_extension(shell)
    assert "tg_seed" in shell.magics_manager.magics["line"]


def test_modules_work_in_a_plain_script() -> None:
    """No IPython shell running (a script): the modules import, own() is a no-op, the magic methods still work."""
    code = ("from tinygrad_nb.notebook import extension, magics, ownership\n"
            "assert ownership.own(5) == 5 and ownership.current_cell() is None\n"
            "magics.TinygradMagics(None).tg_seed('7')\n"
            "print(type(magics.usage_error('x')).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["seeded tinygrad_nb, numpy and random with 7", "UsageError"]


# -- a real notebook, executed headless ------------------------------------------------------------------------------
def test_notebook_runs_the_magics_under_nbclient(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    cells = [
        "%load_ext tinygrad_nb",                                                      # 0
        "%tg_seed 3\nimport tinygrad_nb as tg\nx = tg.randn(4, 3)",                  # 1
        "%%tg_profile --limit 3\ny = (x @ x.T).relu().sum()\ny",                       # 2
        "%%tg_nantrace --text\nz = x * 2\nbad = (z - 100).sqrt()\nok = z + 1",         # 3
        "%tg_seed abc",                                                               # 4 (raises-exception)
        "from tinygrad_nb.notebook.ownership import own\nmodel = tg.nn.Linear(3, 2)",  # 5
        "h = own(model.register_forward_hook(lambda m, a, out: None))",               # 6
        "h = own(model.register_forward_hook(lambda m, a, out: None))",               # 7 same source = same cell
        "print(len(model._forward_hooks))\n%tg_hooks",                                # 8
        "%tg_help",                                                                   # 9
        "%%tg_nantrace\nw = (x - 100).log()",                                          # 10 widget or text
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.cells[4].metadata["tags"] = ["raises-exception"]
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    def text(i: int) -> str:
        return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in nb.cells[i].outputs)

    assert text(1).strip() == "seeded tinygrad_nb, numpy and random with 3"
    assert "Matmul " in text(2) and "op calls" in text(2)
    assert "tensor(" in text(2)  # the cell's value is its Out
    count = nb.cells[3].execution_count
    assert f"cell [{count}], line 3:  bad = (z - 100).sqrt()" in text(3)
    assert [o.output_type for o in nb.cells[3].outputs] == ["stream"]  # no numpy RuntimeWarning under the tracer
    error = nb.cells[4].outputs  # ipykernel shows a UsageError as one stderr line, no traceback
    assert len(error) == 1 and error[0].name == "stderr"
    assert error[0].text.startswith("UsageError: %tg_seed: argument seed: invalid int value: 'abc'")
    assert text(8).splitlines()[0] == "1" and "RemovableHandle" in text(8)
    assert all(("%%" if kind == "cell" else "%") + name in text(9) for name, kind, _ in MAGICS)
    # the event table is printed as text; with the widget half installed the live NaNTracer is swapped for its
    # static image (with a constant text/plain, so nbval compares it) at the end of the cell
    assert "Log" in text(10) and f"cell [{nb.cells[10].execution_count}], line 2" in text(10)
    if _widget_half_installed():
        display = [o for o in nb.cells[10].outputs if o.output_type == "display_data"]
        assert len(display) == 1 and set(display[0].data) == {"image/png", "text/plain"}
        assert display[0].data["text/plain"].startswith("NaNTracer")


def test_tg_hooks_names_cells_by_their_in_number_in_a_real_kernel(tmp_path: Path) -> None:
    """docs/magics/tg_hooks.md's session in a Jupyter kernel: each row says the In [N] that the front end shows for
    the owning cell, and a Profile is one row (its observer handle is its own part, released by Profile.stop)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    hook_cell = "h = own(model.register_forward_hook(lambda m, a, out: None), label='print shapes')"
    cells = ["%load_ext tinygrad_nb\nimport tinygrad_nb as tg\nfrom tinygrad_nb.notebook.ownership import own\n"
             "model = tg.nn.Linear(4, 3)", hook_cell, "prof = own(tg.profile().start())", "%tg_hooks",
             "%tg_hooks --clear", "print(len(model._forward_hooks), prof._handle)"]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    hook_count, prof_count = nb.cells[1].execution_count, nb.cells[2].execution_count
    assert (hook_count, prof_count) == (2, 3)  # what the front end shows as In [2] and In [3]
    assert nb.cells[3].outputs[0].text.splitlines() == [
        "cell                                                                     key                   object",
        "-----------------------------------------------------------------------  --------------------  ------------",
        f"cell [{hook_count}] 'h = own(model.register_forward_hook(lambda m, a, out: None),'  "
        "src:c5f689cc8b32942c  print shapes",
        f"cell [{prof_count}] 'prof = own(tg.profile().start())'                              "
        "src:e9f99d52535e2285  Profile",
    ]
    assert nb.cells[4].outputs[0].text == "released 2 owned object(s)\n"
    assert nb.cells[5].outputs[0].text == "0 None\n"  # the hook is gone and the profile stopped


def _widget_half_installed() -> bool:
    try:
        from tinygrad_nb.notebook import NaNTracer  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True
