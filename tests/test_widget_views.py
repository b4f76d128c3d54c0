"""Issue 18: the live views and their static images look alike and keep the user's choices.

* the tick and number helpers of widgets.js and figures.py agree (run under node when it is installed);
* the static figure has every panel of the live view, titles and legends above the plot (never over data), axis
  labels, ticks, text of at least 11 px, the theme's colours, and the choices made in the browser (log scale only
  where it applies, smoothing, selected parameter, zoomed range);
* a finished view stays open for a browser that showed it (and is closed later), and is closed at once otherwise;
* ``%tg_log --widget`` saves a static timeline PNG and its text (never only a widget); tables render as HTML that
  does not wrap, and as text elsewhere; RunComparison overlays runs and lists the config differences.
The real-browser checks are in tests/test_browser.py.
"""
from __future__ import annotations

import base64
import io
import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb import nn, optim, track
from tinygrad_nb.data import DataLoader, TensorDataset
from tinygrad_nb.nn import functional as F
from tinygrad_nb.notebook import (
    Dashboard,
    GradHistograms,
    LossCurve,
    NaNTracer,
    RecordingComm,
    RunComparison,
    Table,
)
from tinygrad_nb.notebook.widgets import base, figures
from tinygrad_nb.notebook.widgets.base import ESM

PX = figures.PX


# -- widgets.js and figures.py draw the same axes ---------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (optional: runs widgets.js helpers)")
def test_js_and_python_ticks_and_numbers_agree(tmp_path: Path) -> None:
    (tmp_path / "widgets.mjs").write_text(ESM + "\nexport { fmt, fmtv, niceTicks, logTicks, extent, columns };\n")
    values = [0, 1, -1, 0.5, 0.25, 1e-5, -2.5e-4, 0.00123, 3.14159, 12.5, 999.9, 1234, 12345, 250000, 2.5e7, -3e9,
              7e-12, 0.1 + 0.2]
    ranges = [(0, 1, 4), (0.013, 0.29, 5), (-3.7, 12.1, 6), (0, 1999, 11), (10, 90, 8), (5e-5, 3e-4, 4)]
    logs = [(1e-4, 2.0, 6), (0.9, 52, 5), (10, 50, 5), (3, 4, 5), (1e-9, 1e3, 3)]
    extents = [([1, 2, 3], False), ([5, 5], False), ([0.1, 10], True), ([-1, 0], True), ([], False)]
    script = f"""
import {{ fmt, fmtv, niceTicks, logTicks, extent, columns }} from "./widgets.mjs";
const out = {{
  fmt: {json.dumps(values)}.map(fmt), fmtv: {json.dumps(values)}.map(fmtv),
  nice: {json.dumps(ranges)}.map(([a, b, n]) => niceTicks(a, b, n)),
  log: {json.dumps(logs)}.map(([a, b, n]) => logTicks(a, b, n)),
  extent: {json.dumps(extents)}.map(([v, p]) => extent(v, p)),
  columns: [[1000, 2, 420], [900, 3, 330], [1280, 3, 330], [300, 2, 380]].map(([w, n, m]) => columns(w, n, m)),
}};
console.log(JSON.stringify(out));
"""
    (tmp_path / "check.mjs").write_text(script)
    run = subprocess.run(["node", "check.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                         check=False)
    assert run.returncode == 0, run.stderr
    js = json.loads(run.stdout)
    assert js["fmt"] == [figures.fmt(v) for v in values]
    assert js["fmtv"] == [figures.fmt_value(v) for v in values]
    for got, (a, b, n) in zip(js["nice"], ranges):
        assert got == pytest.approx(figures.nice_ticks(a, b, n))
    for got, (a, b, n) in zip(js["log"], logs):
        assert got == pytest.approx(figures.log_ticks(a, b, n))
    for got, (v, p) in zip(js["extent"], extents):
        assert got == pytest.approx(list(figures.extent(np.array(v, dtype=float), p)))
    assert js["columns"] == [figures.columns(w, n, m) for w, n, m in [[1000, 2, 420], [900, 3, 330],
                                                                         [1280, 3, 330], [300, 2, 380]]]


def test_log_ticks_are_decades_or_one_two_five() -> None:
    assert figures.log_ticks(1e-4, 2.0, 6) == pytest.approx([1e-4, 1e-3, 1e-2, 0.1, 1.0])
    assert figures.log_ticks(1e-9, 1e3, 3) == pytest.approx([1e-9, 1e-5, 0.1, 1e3])  # room for 3: every 4th decade
    assert figures.log_ticks(10, 50, 5) == pytest.approx([10, 20, 50])  # under two decades: 1-2-5
    assert figures.fmt(1e-4) == "1e-4" and figures.fmt(2.5e7) == "2.5×1e7" and figures.fmt(12345) == "12.3k"


# -- the static figure ------------------------------------------------------------------------------------------------
def _figure(widgets: list[Any], width: int = 1000, theme: str = "light") -> Any:
    return figures.figure_blocks([w.block() for w in widgets], width=width, theme=theme)


def _axes(figure: Any) -> list[Any]:
    return [ax for sub in figure.subfigs for ax in sub.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def _check_panel(ax: Any, figure: Any) -> None:
    """Title, then legend, then the plot: none overlaps another; axis labels and >= 2 ticks; text >= 11 px."""
    renderer = figure.canvas.get_renderer()
    plot = ax.get_window_extent(renderer)
    title = ax.title.get_window_extent(renderer)
    assert title.y0 >= plot.y1 - 1, (ax.get_title(), title, plot)
    legend = ax.get_legend()
    if legend is not None:
        box = legend.get_window_extent(renderer)
        assert box.y0 >= plot.y1 - 1 and title.y0 >= box.y1 - 1, (ax.get_title(), "legend", box, title, plot)
        assert all(t.get_fontsize() / PX >= 11.9 for t in legend.get_texts())
    assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
    assert len([t for t in ax.get_xticklabels() if t.get_text()]) >= 2, ax.get_title()
    assert len([t for t in ax.get_yticklabels() if t.get_text()]) >= 2, ax.get_title()
    assert ax.title.get_fontsize() / PX >= 12.9
    assert all(t.get_fontsize() / PX >= 11.9 for t in ax.get_xticklabels() + ax.get_yticklabels())


def _mlp_fit(every: int = 2) -> Dashboard:
    tg.manual_seed(0)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(128, 6)).astype(np.float32)
    data = TensorDataset(tg.tensor(features), tg.tensor((features[:, 0] > 0).astype(np.int64)))
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    dash = Dashboard.for_model(model, every=every, show=False, comm_factory=RecordingComm)
    opt = optim.SGD(model.parameters(), lr=0.1)
    step = 0
    for epoch in range(2):
        for x, y in DataLoader(data, batch_size=16):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            dash.loss.log(loss=loss.item(), step=step)
            step += 1
        dash.loss.log(acc=0.6 + 0.1 * epoch, val_acc=0.55 + 0.1 * epoch, val_loss=0.7 - 0.1 * epoch, step=step - 1)
    return dash


def test_static_dashboard_has_every_panel_of_the_live_view() -> None:
    dash = _mlp_fit()
    figure = _figure(dash.widgets)
    titles = [ax.get_title("left") for ax in _axes(figure)]
    assert titles[:3] == ["loss", "acc", "gradient of 0.weight"], titles
    assert titles[3].startswith("latest histogram (pass ") and titles[4] == "activations of 0", titles
    assert titles[5].startswith("latest histogram (call ") and titles[6].startswith("one sample (call "), titles
    for ax in _axes(figure):
        _check_panel(ax, figure)
    colorbars = [ax for sub in figure.subfigs for ax in sub.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 1  # the heatmap's colour scale
    headers = [sub._suptitle.get_text() for sub in figure.subfigs]
    assert headers == ["LossCurve", "GradHistograms · 0.weight", "ActivationInspector · 0"]
    # the live view's columns at this width: loss 2 per row (min 420 px), gradients 2 (380), activations 3 (330)
    assert [figures.columns(1000, w.panel_count(), w.min_width) for w in dash.widgets] == [2, 2, 3]
    image = _image(dash.to_png())
    assert image.size == (1000, 3 * figures.HEADER_HEIGHT + 3 * figures.PANEL_HEIGHT)
    dash.close()


def _image(png: bytes) -> Any:
    from PIL import Image  # noqa: PLC0415

    return Image.open(io.BytesIO(png)).convert("RGB")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_static_image_uses_the_theme_the_browser_reported(theme: str) -> None:
    curve = LossCurve(show=False, comm=RecordingComm())
    for step in range(50):
        curve.log(loss=1 / (step + 1), step=step)
    curve.view.theme = theme  # what the browser sets (widgets.js: the JupyterLab theme it reads)
    figure = _figure([curve], theme=theme)
    colors = figures.THEMES[theme]
    (ax,) = _axes(figure)
    from matplotlib.colors import to_hex  # noqa: PLC0415

    assert to_hex(figure.get_facecolor()) == colors["bg"] and to_hex(ax.get_facecolor()) == colors["bg"]
    assert to_hex(ax.title.get_color()) == colors["fg"] and to_hex(ax.xaxis.label.get_color()) == colors["fg2"]
    assert to_hex(ax.xaxis.get_gridlines()[0].get_color()) == colors["grid"]
    corner = _image(curve.to_png()).getpixel((1, 1))
    assert corner == tuple(int(colors["bg"][i:i + 2], 16) for i in (1, 3, 5))
    curve.close()


def test_choices_made_in_the_browser_are_in_the_static_image() -> None:
    curve = LossCurve(show=False, comm=RecordingComm())
    for step in range(200):
        curve.log(loss=2.0 / (step + 1), step=step)
        if step % 20 == 19:
            curve.log(acc=step / 200, step=step)
    plain_loss, plain_acc = _axes(_figure([curve]))
    assert plain_loss.get_yscale() == "linear" and len(plain_loss.get_lines()) == 1
    assert plain_loss.get_xlim() == plain_acc.get_xlim() == (0.0, 199.0)  # one step range: panels stay in step
    # the user ticks "log scale", sets smoothing to 0.6 and zooms to steps 50-150 (all synced traits)
    curve.view.log_scale = True
    curve.view.smoothing = 0.6
    curve.view.x_range = [50.0, 150.0]
    figure = _figure([curve])
    loss_ax, acc_ax = _axes(figure)
    assert loss_ax.get_yscale() == "log" and loss_ax.get_ylabel() == "loss (log)"
    assert acc_ax.get_yscale() == "linear" and acc_ax.get_ylabel() == "acc"  # accuracy is never log scaled
    assert loss_ax.get_xlim() == (50.0, 150.0) == acc_ax.get_xlim()  # the zoom, on every panel (aligned)
    assert len(loss_ax.get_lines()) == 2  # the raw values (faint) and the smoothed line
    raw, smooth = (line.get_ydata() for line in loss_ax.get_lines())
    assert np.allclose(smooth, figures.ema(np.asarray(raw), 0.6))
    assert figure.subfigs[0]._suptitle.get_text() == "LossCurve · log scale · smoothing 0.60 · steps 50 to 150"
    # 0.013-0.039 is within one decade: no power of ten inside, one 1-2-5 value (0.02), so linear ticks
    assert [t.get_text() for t in loss_ax.get_yticklabels()] == ["0.02", "0.04"]
    assert curve.to_png() != LossCurve(show=False).to_png()
    curve.close()


def test_selected_parameter_is_the_one_drawn() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    grads = GradHistograms(model, every=1, show=False, comm=RecordingComm())
    for _ in range(3):
        model.zero_grad()
        F.cross_entropy(model(tg.randn(5, 4)), tg.tensor([0, 1, 0, 1, 1])).backward()
    assert _axes(_figure([grads]))[0].get_title("left") == "gradient of 0.weight"
    grads.view.selected = "2.bias"  # picked in the browser
    ax = _axes(_figure([grads]))[0]
    assert ax.get_title("left") == "gradient of 2.bias" and grads.header() == "GradHistograms · 2.bias"
    median = ax.get_lines()[0].get_ydata()
    assert np.allclose(median, grads.rows("2.bias")[:, 4])
    grads.close()


def test_every_view_has_axis_labels_and_readable_ticks_in_both_themes() -> None:
    dash = _mlp_fit()
    for theme in ("light", "dark"):
        for width in (700, 1280):
            figure = _figure(dash.widgets, width=width, theme=theme)
            for ax in _axes(figure):
                _check_panel(ax, figure)
    dash.close()


# -- the swap keeps a view open for a browser that shows it -----------------------------------------------------------
class FakeHandle:
    def __init__(self) -> None:
        self.updates: list[dict[str, str]] = []

    def update(self, bundle: dict[str, str], raw: bool = False) -> None:
        self.updates.append(bundle)


def test_finished_view_stays_open_for_a_browser_and_points_it_at_the_image() -> None:
    comm = RecordingComm()
    curve = LossCurve(comm=comm, show=False)
    handle = FakeHandle()
    curve._handles.append(handle)
    curve.log(loss=1.0, step=0)
    curve._on_browser_message(curve.view, {"kind": "sync", "have": {}, "records": 0}, [])  # a browser shows it
    curve.finish()
    (bundle,) = handle.updates
    assert not comm.closed and curve.view._esm == ESM  # the browser keeps drawing it
    assert curve.view.static_mark and curve.view.static_mark in bundle["image/png"]
    assert curve.active  # a re-run of its cell still closes it
    curve._on_browser_message(curve.view, {"kind": "sync", "have": {}, "records": 0}, [])  # a reload: answered
    assert comm.custom()[-1][0]["series"][0]["name"] == "loss"
    curve.close()
    assert comm.closed and curve.view._esm == base.RELEASED_ESM and not curve.active


def test_finished_view_without_a_browser_is_closed_at_once() -> None:
    comm = RecordingComm()
    curve = LossCurve(comm=comm, show=False)
    curve._handles.append(FakeHandle())
    curve.log(loss=1.0, step=0)
    curve.finish()
    assert comm.closed and curve.view._esm == base.RELEASED_ESM and not curve.active


def test_dashboard_views_are_kept_in_order() -> None:
    dash = _mlp_fit()
    dash._handles.append(FakeHandle())
    for w in dash.widgets:
        w._browser_seen = True
    dash.finish()
    marks = {w.view.static_mark for w in dash.widgets}
    assert len(marks) == 1 and "" not in marks  # one image for all three
    assert [w.view.slot for w in dash.widgets] == [0, 1, 2]
    assert dash.active and all(w.view.comm is not None for w in dash.widgets)
    dash.close()
    assert not dash.active and all(w.view.comm is None for w in dash.widgets)


# -- %tg_log --widget, tables, NaNTracer, RunComparison ----------------------------------------------------------------
def test_history_widget_saves_a_static_timeline(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ipywidgets")
    from tinygrad_nb.notebook.cellckpt import widget  # noqa: PLC0415

    rows = [{"seq": 1, "cell": "In[1]", "ok": True, "bytes": 0, "lost": [], "head": False, "replay": None},
            {"seq": 2, "cell": "In[2]", "ok": False, "bytes": 5000, "lost": ["gen"], "head": True, "replay": None}]

    class Store:
        commits: dict[int, Any] = {}

    class Recorder:
        store = Store()
        last_replay = None

        def timeline(self) -> list[dict[str, Any]]:
            return rows

        def log(self) -> list[dict[str, Any]]:
            return [{"#": r["seq"], "cell": r["cell"]} for r in rows]

    shown: list[Any] = []
    import IPython.display  # noqa: PLC0415

    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append((obj, kw)))
    browser = widget.HistoryBrowser(Recorder())
    browser._ipython_display_()
    ((bundle, kwargs),) = shown
    assert kwargs == {"raw": True} and set(bundle) == {"image/png", "text/plain"}  # never only a widget
    assert bundle["text/plain"].startswith("cell checkpoints (%tg_log)\n#  cell")
    assert browser.host.kind == "host" and browser.host.child == browser.box.model_id
    assert browser.host.static_mark in bundle["image/png"]
    image = _image(base64.b64decode(bundle["image/png"]))
    assert image.size[1] >= 300  # readable: ~12 px text
    browser.host.close()


def test_timeline_draws_zero_bytes_as_zero_and_text_horizontally() -> None:
    from matplotlib.figure import Figure  # noqa: PLC0415

    from tinygrad_nb.notebook.cellckpt.widget import draw_timeline  # noqa: PLC0415

    rows = [{"seq": 1, "cell": "In[1]", "ok": True, "bytes": 0, "lost": ["a"], "head": False, "replay": "bitwise"},
            {"seq": 2, "cell": "In[2]", "ok": True, "bytes": 3 * 1024 * 1024, "lost": [], "head": True,
             "replay": None}]
    ax = Figure().subplots()
    draw_timeline(ax, rows)
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == [0, 3 * 1024 * 1024]  # a commit that stored nothing has no bar
    texts = [t for t in ax.texts]
    assert all(t.get_rotation() == 0 for t in texts)
    assert {t.get_text() for t in texts} >= {"replay: bitwise\n0 B", "HEAD\n3 MB", "lost: a"}
    assert all(t.get_fontsize() / PX >= 11.9 for t in texts + ax.get_xticklabels())


def test_tables_are_html_without_wrapping_and_text_elsewhere() -> None:
    table = Table(["run", "lr", "val_acc final"], [{"run": "a<b", "lr": 0.1, "val_acc final": 0.912345678},
                                                    ["wider", None, math.nan]])
    assert str(table).splitlines() == ["run    lr   val_acc final", "-----  ---  -------------",
                                       "a<b    0.1  0.91235", "wider  -    nan"]
    html = table._repr_html_()
    assert "a&lt;b" in html and "<td" in html and "overflow-x:auto" in html
    assert html.count("white-space:nowrap") == 1 + 3 + 6  # the table and every cell


def test_nan_tracer_html_table() -> None:
    with NaNTracer(show=False) as nan:
        x = tg.tensor([1.0, -1.0])
        x.log()
    html = nan.table_html()
    assert "<td" in html and ">Log<" in html and "white-space:nowrap" in html
    assert nan.table().splitlines()[1].split()[:4] == ["Log", "forward", "1", "0"]


def test_run_comparison_overlays_runs_and_lists_config_differences(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    for name, lr in (("base", 0.1), ("slow", 0.01)):
        with track.Run(name=name, config={"lr": lr, "seed": 0}, project="p", store=store) as run:
            for step in range(30):
                run.log({"loss": 1 / (1 + lr * step)}, step=step)
                if step % 10 == 9:
                    run.log({"val_acc": lr * step}, step=step)
    track.flush_all()
    cmp = RunComparison({"project": "p"}, store=store, show=False, comm=RecordingComm())
    assert cmp.run_names == ["base", "slow"]
    assert str(cmp.table).splitlines()[0].split() == ["run", "lr", "loss", "final", "val_acc", "final"]  # no seed
    assert cmp.table.rows[1]["lr"] == 0.01 and cmp.table.rows[1]["loss final"] == pytest.approx(1 / 1.29)
    assert cmp.summary() == "RunComparison: metrics of several runs overlaid (one colour per run; validation dashed)"
    cmp.view.log_scale = True
    figure = _figure([cmp])
    loss_ax, acc_ax = _axes(figure)
    assert loss_ax.get_title("left") == "loss" and acc_ax.get_title("left") == "acc"
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["base 0.25641", "slow 0.77519"]
    assert loss_ax.get_yscale() == "log" and acc_ax.get_yscale() == "linear"
    base_color = loss_ax.get_lines()[0].get_color()
    assert acc_ax.get_lines()[0].get_color() == base_color  # one colour per run across panels
    assert acc_ax.get_lines()[0].get_linestyle() == "--"  # validation dashed
    for ax in (loss_ax, acc_ax):
        _check_panel(ax, figure)
    cmp.close()


def test_profile_timeline_rows_and_static_chart() -> None:
    from tinygrad_nb.notebook import ProfileTimeline  # noqa: PLC0415

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with tg.profile() as prof:
        with prof.region("step"):
            with prof.region("forward"):
                loss = model(tg.randn(3, 4)).mean()
            loss.backward()
    timeline = ProfileTimeline(prof, show=False, comm=RecordingComm())
    events = timeline.rows("events")
    assert timeline.rows_count == 3  # step, forward, then the op row
    regions = events[events[:, 4] == 2]
    assert [timeline.names[int(n)] for n in regions[:, 3]] == ["step", "forward"]
    assert regions[:, 2].tolist() == [0.0, 1.0]
    ops = events[events[:, 4] != 2]
    assert len(ops) == len(prof.ops) and (ops[:, 2] == 2).all()
    assert np.allclose(ops[:, 1], [r.dur_ns / 1e6 for r in sorted(prof.ops, key=lambda r: r.start_ns)], rtol=1e-6)
    assert [r["detail"] for r in timeline._records[:2]] == ["region step", "region forward"]
    figure = _figure([timeline])
    (ax,) = _axes(figure)
    _check_panel(ax, figure)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["depth 0", "depth 1", "ops"]
    assert len(ax.collections) == len(events)  # one bar per event
    timeline.close()
