"""Issue 22: a series' style changes after it exists (``LossCurve.set_series_style``), and the live sweep view greys a
pruned trial's curve (failed and NaN trials: grey and dashed) in the browser, not only in its table and static image.

* the style message carries exactly the values given, the style stays in the series' meta (so a later data message
  and a resend to a reloaded page carry it), a call with no style resets it, bad arguments are refused by name;
* the static image draws the style (colour, alpha, dash, label suffix; the faint raw line under smoothing too);
* widgets.js's store (under node): style messages set the style even before the series' rows, malformed ones are
  ignored and bad fields dropped, the style in a data message's meta is applied;
* a sweep shown with NotebookView ends with the pruned trial's series grey and the others untouched;
* the browser still cannot send anything but a sync request (a "style" message from it is ignored and logged once).
The real-browser check (stroke colour read from the canvas, light and dark theme) is in tests/test_browser.py.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tinygrad_nb import sweep as sw
from tinygrad_nb.notebook import LossCurve, RecordingComm
from tinygrad_nb.notebook.throttle import TokenBucket
from tinygrad_nb.notebook.widgets.base import ESM
from tinygrad_nb.notebook.widgets.figures import COLORS

GREY = "#9e9e9e"


def curve_with(comm: RecordingComm, **series: list[float]) -> LossCurve:
    curve = LossCurve(comm=comm, show=False, title="styled")
    curve.channel.bucket = TokenBucket()  # a private rate limit: the process-wide one is left to other tests
    for name, values in series.items():
        curve.extend(name, list(range(len(values))), values)
    curve.flush()
    return curve


# -- the Python side: message, meta, resend ---------------------------------------------------------------------------
def test_style_message_carries_exact_values_and_stays_in_the_series_meta() -> None:
    comm = RecordingComm()
    curve = curve_with(comm, loss=[1.0, 0.5, 0.25], val_loss=[1.5, 1.0, 0.75])
    before = len(comm.custom())
    curve.set_series_style("val_loss", color="#9E9E9E", alpha=0.6, dashed=False, label_suffix=" (pruned)")
    sent = comm.custom()[before:]
    assert sent == [({"kind": "style", "name": "val_loss",
                      "style": {"color": GREY, "dashed": False, "alpha": 0.6, "label_suffix": " (pruned)"}}, [])]
    assert curve.series_style("val_loss") == {"color": GREY, "dashed": False, "alpha": 0.6, "label_suffix": " (pruned)"}
    assert curve.series_style("loss") == {}

    # a page reloaded while the kernel runs asks for everything: the resend carries the style with the rows
    comm.receive({"kind": "sync", "have": {}, "records": 0})
    resend, buffers = comm.custom()[-1]
    assert resend["kind"] == "data"
    items = {item["name"]: item for item in resend["series"]}
    assert items["val_loss"]["style"] == {"color": GREY, "dashed": False, "alpha": 0.6, "label_suffix": " (pruned)"}
    assert "style" not in items["loss"] and items["val_loss"]["start"] == 0 and len(buffers) == 2

    # later rows of the series carry it too (a view that missed the style message still gets it)
    curve.extend("val_loss", [3], [0.5])
    curve.flush()
    (later,) = [item for item in comm.custom()[-1][0]["series"] if item["name"] == "val_loss"]
    assert later["start"] == 3 and later["style"]["color"] == GREY

    # a palette index is kept as that palette colour; no arguments reset to the default look
    curve.set_series_style("loss", color=11)
    assert comm.custom()[-1] == ({"kind": "style", "name": "loss", "style": {"color": COLORS[11 % 8]}}, [])
    curve.set_series_style("val_loss")
    assert comm.custom()[-1] == ({"kind": "style", "name": "val_loss", "style": {}}, [])
    assert curve.series_style("val_loss") == {}
    curve.close()


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"color": "grey"}, ValueError, "set_series_style: color must be '#rrggbb' (six hex digits), got 'grey'"),
    ({"color": "#12345"}, ValueError, "color must be '#rrggbb' (six hex digits), got '#12345'"),
    ({"color": "#9e9e9e; x"}, ValueError, "got '#9e9e9e; x'"),
    ({"color": True}, TypeError, "color must be '#rrggbb' or a palette index, got bool True"),
    ({"color": 1.5}, TypeError, "got float 1.5"),
    ({"color": -1}, ValueError, "a palette index must be >= 0, got -1"),
    ({"alpha": 1.5}, ValueError, "alpha must be in [0, 1], got 1.5"),
    ({"alpha": math.nan}, ValueError, "alpha must be in [0, 1], got nan"),
    ({"alpha": "0.5"}, TypeError, "alpha must be a number, got str '0.5'"),
    ({"dashed": 1}, TypeError, "dashed must be a bool, got int 1"),
    ({"label_suffix": 3}, TypeError, "label_suffix must be a str, got int"),
    ({"label_suffix": "x" * 81}, ValueError, "label_suffix has 81 characters, at most 80"),
])
def test_bad_style_arguments_are_refused_by_name(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    comm = RecordingComm()
    curve = curve_with(comm, loss=[1.0, 2.0])
    sent = len(comm.custom())
    with pytest.raises(error) as info:
        curve.set_series_style("loss", **kwargs)
    assert message in str(info.value)
    assert len(comm.custom()) == sent and curve.series_style("loss") == {}  # nothing half-applied
    curve.close()


def test_an_unknown_series_is_a_key_error_naming_the_known_ones() -> None:
    curve = curve_with(RecordingComm(), loss=[1.0], acc=[0.5])
    with pytest.raises(KeyError, match=r"LossCurve 'styled' has no series 'val_loss' \(series: 'loss', 'acc'\)"):
        curve.set_series_style("val_loss", color=GREY)
    curve.close()


def test_a_closed_view_is_sent_nothing_but_the_static_image_keeps_the_style() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    comm = RecordingComm()
    curve = curve_with(comm, loss=[1.0, 0.5])
    curve.finish()  # no browser showed it: the view is closed
    assert curve.view.comm is None
    sent = len(comm.messages)
    curve.set_series_style("loss", color=GREY)
    assert len(comm.messages) == sent and curve.series_style("loss") == {"color": GREY}


def test_a_style_message_from_the_browser_is_ignored_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    comm = RecordingComm()
    curve = curve_with(comm, loss=[1.0, 0.5])
    sent = len(comm.custom())
    comm.receive({"kind": "style", "name": "loss", "style": {"color": "#000000"}})
    comm.receive({"kind": "style", "name": "loss", "style": None})
    assert len(comm.custom()) == sent and curve.series_style("loss") == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "unknown kind 'style'" in warnings[0], warnings
    curve.close()


# -- the static image -------------------------------------------------------------------------------------------------
def test_the_static_image_draws_the_style() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    curve = curve_with(RecordingComm(), loss=[1.0, 0.5, 0.25], val_loss=[1.5, 1.0, 0.75])
    curve.set_series_style("loss", color=GREY, alpha=0.6, dashed=True, label_suffix=" (pruned)")
    curve.view.smoothing = 0.5
    fig, ax = plt.subplots()
    curve.draw([ax])
    lines = [(str(line.get_label()), matplotlib.colors.to_hex(line.get_color()), line.get_alpha(),
              line.get_linestyle()) for line in ax.get_lines()]
    plt.close(fig)
    # the faint raw line (0.3 of the alpha) and the smoothed one, for each series; val_loss keeps its default look
    raw_loss, loss, raw_val, val = lines
    assert raw_loss[1:] == (GREY, pytest.approx(0.18), "--") and raw_loss[0].startswith("_")
    assert loss == ("loss (pruned) 0.25", GREY, 0.6, "--")
    assert raw_val[1:] == (COLORS[1], pytest.approx(0.3), "--")
    assert val == ("val_loss 0.75", COLORS[1], 1.0, "--")
    curve.set_series_style("loss")  # reset: the default look again
    fig, ax = plt.subplots()
    curve.draw([ax])
    loss_line = ax.get_lines()[1]
    assert (str(loss_line.get_label()), matplotlib.colors.to_hex(loss_line.get_color()), loss_line.get_alpha(),
            loss_line.get_linestyle()) == ("loss 0.25", COLORS[0], 1.0, "-")
    plt.close(fig)
    curve.close()


# -- widgets.js's store, under node -----------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (optional: checks the ESM's store)")
def test_esm_store_applies_style_messages_and_ignores_malformed_ones(tmp_path: Path) -> None:
    # expose the factory's store, as test_widget_views exposes the tick helpers
    module = ESM.replace("const store = createStore(); // one per widget model",
                         "const store = createStore(); globalThis.__tgStores = (globalThis.__tgStores || []).concat"
                         "([store]); // one per widget model")
    assert module != ESM, "widgets.js's factory no longer makes its store where this test expects"
    (tmp_path / "widgets.mjs").write_text(module)
    script = """
import factory from "./widgets.mjs";
const handlers = [];
const model = { on: (name, fn) => { if (name === "msg:custom") handlers.push(fn); }, send: () => {},
                get: (name) => (name === "kind" ? "loss" : "") };
factory().initialize({ model });
const store = globalThis.__tgStores[0];
let redraws = 0;
store.listeners.add(() => { redraws += 1; });
const send = (msg, buffers) => handlers[0](msg, buffers || []);
const styles = () => Object.fromEntries(store.styles);
const rows = (values) => new Float32Array(values).buffer;
const data = (name, start, meta) => ({ kind: "data", series: [{ name, start, width: 2, panel: "val_loss",
  role: "train", ...meta }], latest: [], records: { start: 0, items: [] } });
const out = {};
// a style for a series whose rows have not arrived yet (the throttle held them back), then the rows
send({ kind: "style", name: "trial 1", style: { color: "#9e9e9e", alpha: 0.6 } });
send(data("trial 0", 0, {}), [rows([0, 1, 1, 0.5])]);
send(data("trial 1", 0, {}), [rows([0, 2])]);
out.first = { styles: styles(), redraws };
// malformed style messages: ignored, no redraw, nothing changed
for (const bad of [{ kind: "style" }, { kind: "style", name: 3, style: {} }, { kind: "style", name: "trial 0" },
                   { kind: "style", name: "trial 0", style: null }, { kind: "style", name: "trial 0", style: "grey" },
                   { kind: "style", name: "trial 0", style: ["#9e9e9e"] }, { kind: "restyle", name: "trial 0" }]) {
  send(bad);
}
out.malformed = { styles: styles(), redraws };
// bad fields are dropped, good ones kept
send({ kind: "style", name: "trial 0", style: { color: "grey", alpha: 2, dashed: "yes", label_suffix: 5 } });
out.dropped = styles()["trial 0"];
send({ kind: "style", name: "trial 0",
        style: { color: "#D62728", alpha: 0, dashed: true, label_suffix: " (failed)" } });
out.kept = styles()["trial 0"];
// a resend (reloaded page) carries the style in the series' meta
send(data("trial 2", 0, { style: { color: "#9e9e9e", dashed: true } }), [rows([0, 3])]);
out.meta = styles()["trial 2"];
out.redraws = redraws;
console.log(JSON.stringify(out));
process.exit(0);
"""
    (tmp_path / "check.mjs").write_text(script)
    run = subprocess.run(["node", "check.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                         check=False)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["first"] == {"styles": {"trial 1": {"color": GREY, "alpha": 0.6}}, "redraws": 3}
    assert out["malformed"] == out["first"]
    assert out["dropped"] == {}
    assert out["kept"] == {"color": "#D62728", "alpha": 0, "dashed": True, "suffix": " (failed)"}
    assert out["meta"] == {"color": GREY, "dashed": True}
    assert out["redraws"] == 6


# -- the sweep view ---------------------------------------------------------------------------------------------------
def graded_train(config: dict[str, Any], run: Any) -> None:
    """Good trials improve for 6 steps; quality 5.0 is pruned after its first step; -1.0 fails after one step."""
    for step in range(6):
        run.log({"val_loss": config["quality"] + 0.1 * (6 - step)}, step=step)
        if config["quality"] < 0:
            raise RuntimeError("planted failure")


def test_notebook_view_greys_the_pruned_trial_in_the_live_curves(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("anywidget")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from tinygrad_nb.notebook import widgets
    from tinygrad_nb.sweep import view

    comms: list[RecordingComm] = []

    class RecordedCurve(LossCurve):  # the view's curves, with a comm this test reads
        def __init__(self, *args: Any, **kwargs: Any):
            comms.append(RecordingComm())
            super().__init__(*args, comm=comms[-1], **kwargs)

    made: list[Any] = []

    class Recorded(view.NotebookView):
        def __init__(self, result: Any):
            super().__init__(result)
            made.append(self)

    monkeypatch.setattr(widgets, "LossCurve", RecordedCurve)
    monkeypatch.setattr(view, "NotebookView", Recorded)
    result = sw.sweep(graded_train, {"quality": [0.0, 0.1, 5.0, -1.0]}, max_concurrent=1, early_stop="median",
                      live=True, store=tmp_path / "r.db", name="styled")
    assert [t.status for t in result.trials] == ["finished", "finished", "pruned", "failed"]
    (shown,) = made
    curves = shown.curves
    assert curves.panels() == {"val_loss": ["trial 0", "trial 1", "trial 2", "trial 3"]}
    assert {name: curves.series_style(name) for name in curves.panels()["val_loss"]} == {
        "trial 0": {}, "trial 1": {}, "trial 2": {"color": GREY, "alpha": 0.8},
        "trial 3": {"color": GREY, "dashed": True, "alpha": 0.8}}
    styles = [content for content, _ in comms[0].custom() if content["kind"] == "style"]
    assert styles == [{"kind": "style", "name": "trial 2", "style": {"color": GREY, "alpha": 0.8}},
                      {"kind": "style", "name": "trial 3", "style": {"color": GREY, "dashed": True, "alpha": 0.8}}]
    # the throttle may hold a trial's rows back past its style message (widgets.js keeps a style by name until the
    # rows come); every piece of a series sent after its style carries it in the meta, nothing before does
    custom = [content for content, _ in comms[0].custom()]
    styled_at = {c["name"]: i for i, c in enumerate(custom) if c["kind"] == "style"}
    wanted = {"trial 2": {"color": GREY, "alpha": 0.8}, "trial 3": {"color": GREY, "dashed": True, "alpha": 0.8}}
    for i, content in enumerate(custom):
        for item in content.get("series", []):
            after = i > styled_at.get(item["name"], len(custom))
            assert item.get("style") == (wanted[item["name"]] if after else None), (i, item)

    # the saved static image draws the same: the pruned curve grey and faint, the failed one grey and dashed
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots()
    curves.draw([ax])
    drawn = {str(line.get_label()).rsplit(" ", 1)[0]: (matplotlib.colors.to_hex(line.get_color()), line.get_alpha(),
                                                      line.get_linestyle()) for line in ax.get_lines()}
    plt.close(fig)
    assert drawn["trial 2"] == (GREY, 0.8, "-") and drawn["trial 3"] == (GREY, 0.8, "--")
    assert drawn["trial 0"] == (COLORS[0], 1.0, "-") and drawn["trial 1"] == (COLORS[1], 1.0, "-")


def test_a_retried_trial_that_finishes_gets_its_default_look_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed worker's trial is recorded failed (greyed), then runs again under the same trial id and finishes."""
    pytest.importorskip("anywidget")
    from tinygrad_nb.notebook import widgets
    from tinygrad_nb.sweep import view
    from tinygrad_nb.sweep.driver import SweepResult, TrialResult

    comms: list[RecordingComm] = []

    class RecordedCurve(LossCurve):
        def __init__(self, *args: Any, **kwargs: Any):
            comms.append(RecordingComm())
            super().__init__(*args, comm=comms[-1], **kwargs)

    monkeypatch.setattr(widgets, "LossCurve", RecordedCurve)
    result = SweepResult(id="s", name="retry", metric="val_loss", mode="min", search="grid", executor="local",
                         seed=0, store=":memory:")
    trial = TrialResult(trial=4, config={"lr": 0.1}, seed=0, run_id="r1")
    result.trials.append(trial)
    shown = view.NotebookView(result)
    shown.trial_started(trial)
    shown.trial_logged(trial, [(0, 0.0, {"val_loss": 1.0}), (1, 0.0, {"other": 2.0})])
    trial.status = "failed"  # the worker died: recorded failed, then started again
    shown.trial_ended(trial, result)
    assert shown.curves.series_style("trial 4") == {"color": GREY, "alpha": 0.8, "dashed": True}
    trial.status = "running"
    shown.trial_logged(trial, [(0, 0.0, {"val_loss": 0.9})])
    trial.status = "finished"
    shown.trial_ended(trial, result)
    assert shown.curves.series_style("trial 4") == {}
    styles = [c for c, _ in comms[0].custom() if c["kind"] == "style"]
    assert styles == [{"kind": "style", "name": "trial 4", "style": {"color": GREY, "alpha": 0.8, "dashed": True}},
                      {"kind": "style", "name": "trial 4", "style": {}}]
    other = TrialResult(trial=5, config={"lr": 0.2}, seed=0, run_id="r2", status="pruned")
    shown.trial_ended(other, result)  # pruned before it logged the metric: no curve to grey, nothing sent
    assert len([c for c, _ in comms[0].custom() if c["kind"] == "style"]) == 2
    shown.close(result)


def test_trials_never_get_the_palettes_grey() -> None:
    """Grey means "ended badly": trials cycle through the palette's first 7 colours, so trial 7 is not grey."""
    pytest.importorskip("anywidget")
    from tinygrad_nb.sweep import view
    from tinygrad_nb.sweep.driver import SweepResult, TrialResult

    result = SweepResult(id="s", name="colours", metric="val_loss", mode="min", search="grid", executor="local",
                         seed=0, store=":memory:")
    shown = view.NotebookView(result)
    for i in range(9):
        trial = TrialResult(trial=i, config={"i": i}, seed=0, run_id=f"r{i}")
        shown.trial_logged(trial, [(0, 0.0, {"val_loss": float(i)})])
        shown.trial_logged(trial, [(1, 0.0, {"val_loss": float(i) / 2})])  # a second batch keeps the colour
    assert [shown.curves._meta[f"trial {i}"]["color"] for i in range(9)] == [0, 1, 2, 3, 4, 5, 6, 0, 1]
    assert COLORS[7] == "#7f7f7f"  # the grey the trials skip
    shown.close(result)
