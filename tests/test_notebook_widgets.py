"""Live widgets without a browser: the throttling protocol through a recording comm, exact reassembly of the deltas,
constant reprs, the static swap (end, interrupt), the text fallback, and a headless notebook run with nbclient."""
from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb import nn, optim, track
from tinygrad_nb.data import DataLoader, TensorDataset
from tinygrad_nb.debug import NonFiniteError, detect_anomaly
from tinygrad_nb.nn import functional as F
from tinygrad_nb.notebook import (
    ActivationInspector,
    Dashboard,
    GradHistograms,
    LossCurve,
    NaNTracer,
    RecordingComm,
    TextProgress,
    fit,
    in_notebook,
    live,
)
from tinygrad_nb.notebook.throttle import Channel, TokenBucket
from tinygrad_nb.notebook.widgets.base import ESM

STATIC = Path(__file__).resolve().parent.parent / "tinygrad_nb" / "notebook" / "static"


# -- helpers ----------------------------------------------------------------------------------------------------------
class FakeClock:
    """A clock the test advances by hand. It starts at the real monotonic time (so channels made earlier agree),
    rounded up to a whole second so that steps of binary fractions (1/16 s) add up exactly."""

    def __init__(self) -> None:
        self.now = float(math.ceil(time.monotonic()))

    def __call__(self) -> float:
        return self.now


def simulate(widget: Any, clock: FakeClock) -> None:
    """Make ``widget``'s channel (and a private token bucket) run on ``clock``."""
    widget.channel.clock = clock
    widget.channel.bucket = TokenBucket(clock=clock)


def reassemble(comm: RecordingComm) -> dict[str, np.ndarray]:
    """Concatenate every series' float32 rows over all data messages, checking that each delta starts exactly where
    the previous one ended (no gap, no overlap)."""
    out: dict[str, list[np.ndarray]] = {}
    held: dict[str, int] = {}
    for content, buffers in comm.custom():
        assert content["kind"] == "data"
        for item, buf in zip(content["series"], buffers):
            rows = np.frombuffer(buf, dtype=np.float32).reshape(-1, item["width"])
            assert item["start"] == held.get(item["name"], 0), (item, held)
            held[item["name"]] = item["start"] + len(rows)
            out.setdefault(item["name"], []).append(rows)
    return {name: np.concatenate(parts) for name, parts in out.items()}


class FakeHandle:
    def __init__(self, shown: Any) -> None:
        data = shown._repr_mimebundle_()
        # the text/plain of the live display: what nbval records (it ignores display updates)
        self.live_text = (data[0] if isinstance(data, tuple) else data)["text/plain"]
        self.updates: list[tuple[Any, dict[str, Any]]] = []

    def update(self, obj: Any, **kwargs: Any) -> None:
        self.updates.append((obj, kwargs))


@pytest.fixture
def displays(monkeypatch: pytest.MonkeyPatch) -> list[FakeHandle]:
    """Pretend to be a notebook frontend: IPython's display() records what it shows and returns fake handles."""
    import IPython.display

    handles: list[FakeHandle] = []

    def display(*objs: Any, display_id: Any = None, raw: bool = False, **kwargs: Any) -> FakeHandle | None:
        if display_id is None:
            return None
        handles.append(FakeHandle(objs[0]))
        return handles[-1]

    monkeypatch.setattr(IPython.display, "display", display)
    return handles


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def loader(n: int = 64, batch: int = 16) -> DataLoader:
    x = tg.randn(n, 8)
    y = tg.tensor((np.arange(n) % 3).astype(np.int64))
    return DataLoader(TensorDataset(x, y), batch_size=batch)


def assert_constant_text(text: str) -> None:
    """No addresses, ids or numbers that could change between runs."""
    assert "0x" not in text and " at 0" not in text
    assert not re.search(r"\d{3,}", text), text  # no step counts, times or ids


# -- the throttling protocol ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("step_seconds", [0.0002, 0.001, 0.002, 0.005])
def test_ten_thousand_steps_send_at_most_110_messages_and_every_point(step_seconds: float) -> None:
    comm = RecordingComm()
    curve = LossCurve(comm=comm, show=False)
    clock = FakeClock()
    simulate(curve, clock)
    rng = np.random.default_rng(0)
    losses = rng.random(10_000) * 3
    for step, value in enumerate(losses):
        curve.log(loss=float(value), step=step)
        if step % 100 == 99:
            curve.log(val_loss=float(value) / 2, step=step)
        clock.now += step_seconds
    curve.flush()
    messages = comm.custom()
    assert len(messages) <= 110, len(messages)
    data = reassemble(comm)
    np.testing.assert_array_equal(data["loss"][:, 0], np.arange(10_000, dtype=np.float32))
    np.testing.assert_array_equal(data["loss"][:, 1], losses.astype(np.float32))  # exact: every point, float32
    np.testing.assert_array_equal(data["val_loss"][:, 1], (losses[99::100] / 2).astype(np.float32))
    curve.close()


def test_real_clock_fast_loop_sends_few_messages() -> None:
    comm = RecordingComm()
    curve = LossCurve(comm=comm, show=False)
    for step in range(10_000):
        curve.log(loss=1.0 / (step + 1))
    curve.flush()
    assert len(comm.custom()) <= 110
    assert len(reassemble(comm)["loss"]) == 10_000
    curve.close()


def test_message_sizes_are_float32_deltas() -> None:
    comm = RecordingComm()
    curve = LossCurve(comm=comm, show=False)
    clock = FakeClock()
    simulate(curve, clock)
    for step in range(10_000):
        curve.log(loss=0.5, step=step)
        clock.now += 0.001
    curve.flush()
    payload = sum(len(b) for _, buffers in comm.custom() for b in buffers)
    assert payload == 10_000 * 2 * 4  # (step, value) as two float32 per point, nothing sent twice
    largest = max(len(json.dumps(c)) + sum(len(b) for b in bufs) for c, bufs in comm.custom())
    assert largest < 4_000, largest  # ~100 points per message at full speed
    curve.close()


def test_token_bucket_limits_the_process_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=80, capacity=10, clock=clock)
    assert sum(bucket.take() for _ in range(50)) == 10  # a burst of 10, then nothing without time passing
    clock.now += 0.0625  # exact in binary floating point, unlike 0.05
    assert sum(bucket.take() for _ in range(50)) == 5  # 80/s
    assert bucket.take(force=True)  # forced flushes go into debt rather than wait
    assert bucket.wait_seconds() > 0


def test_channel_waits_for_tokens_and_loses_nothing() -> None:
    clock = FakeClock()
    sent: list[int] = []
    channel = Channel(lambda: sent.append(1), batch=1, interval=0.0, bucket=TokenBucket(capacity=1, clock=clock),
                      clock=clock)
    for _ in range(5):
        channel.tick()
    assert len(sent) == 1 and channel.pending == 4  # no token: rows wait
    clock.now += 1.0
    channel.tick()
    assert len(sent) == 2 and channel.pending == 0


def test_nan_is_sent_at_once() -> None:
    comm = RecordingComm()
    curve = LossCurve(comm=comm, show=False)
    curve.log(loss=1.0)  # the first point goes at once (nothing sent for a while)
    curve.log(loss=2.0)
    assert len(comm.custom()) == 1
    curve.log(loss=float("nan"))
    assert len(comm.custom()) == 2
    rows = reassemble(comm)["loss"]
    assert rows.shape == (3, 2) and np.isnan(rows[-1, 1])
    curve.close()


def test_browser_sync_request_resends_what_is_missing() -> None:
    comm = RecordingComm()
    curve = LossCurve(comm=comm, show=False)
    for step in range(50):
        curve.log(loss=float(step), step=step)
    curve.flush()
    comm.receive({"kind": "sync", "have": {"loss": 30}, "records": 0})
    content, buffers = comm.custom()[-1]
    assert content["series"][0]["start"] == 30
    rows = np.frombuffer(buffers[0], dtype=np.float32).reshape(-1, 2)
    np.testing.assert_array_equal(rows[:, 1], np.arange(30, 50, dtype=np.float32))
    curve.close()


def test_synced_state_never_holds_the_series() -> None:
    sizes = []
    for steps in (10, 10_000):
        curve = LossCurve(comm=RecordingComm(keep=False), show=False)
        for step in range(steps):
            curve.log(loss=float(step))
        state = {k: v for k, v in curve.view.get_state().items() if k != "_esm"}
        sizes.append(len(json.dumps(state, default=str)))
        curve.close()
    assert sizes[0] == sizes[1] < 1000


def test_esm_is_small_and_self_contained() -> None:
    files = list(STATIC.glob("*.js"))
    assert files
    for path in files:
        text = path.read_text()
        assert len(text.encode()) <= 44 * 1024, (path.name, len(text))  # issue 18: 20 -> 40 KB; issue 22: 44 KB (series styles)
        assert not re.search(r"^\s*import\s", text, re.MULTILINE) and "http" not in text  # no CDN imports
    assert "export default" in ESM


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (optional: checks the ESM's store)")
def test_esm_store_appends_in_order_and_asks_for_gaps(tmp_path: Path) -> None:
    (tmp_path / "widgets.mjs").write_text(ESM)
    script = """
import factory from "./widgets.mjs";
const sent = [], handlers = [];
const model = { on: (name, fn) => { if (name === "msg:custom") handlers.push(fn); }, send: (msg) => sent.push(msg),
                get: (name) => (name === "kind" ? "loss" : "") };
const widget = factory();
widget.initialize({ model });
const rows = (values) => new Float32Array(values).buffer;
const msg = (start) => ({ kind: "data", series: [{ name: "loss", start, width: 2 }], latest: [],
                          records: { start: 0, items: [] } });
handlers[0](msg(0), [rows([0, 1, 1, 2])]);        // rows 0-1
handlers[0](msg(1), [rows([1, 2, 2, 3])]);        // overlaps row 1: only row 2 is new
handlers[0](msg(5), [rows([5, 6])]);              // a gap: ask for what is missing
console.log(JSON.stringify(sent));
process.exit(0);
"""
    (tmp_path / "check.mjs").write_text(script)
    out = subprocess.run(["node", "check.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"kind": "sync", "have": {"loss": 3}, "records": 0}]


# -- constant reprs ---------------------------------------------------------------------------------------------------
def test_reprs_are_constant_across_step_counts() -> None:
    texts = []
    for steps in (3, 300):
        tg.manual_seed(0)
        model = mlp()
        dash = Dashboard.for_model(model, every=2, show=False, comm_factory=lambda: RecordingComm(keep=False))
        opt = optim.SGD(model.parameters(), lr=0.1)
        x, y = tg.randn(16, 8), tg.tensor((np.arange(16) % 3).astype(np.int64))
        for step in range(steps):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            dash.loss.log(loss=loss.item(), step=step)
        nan = NaNTracer(show=False, comm=RecordingComm(keep=False))
        texts.append([repr(dash), dash.summary(), repr(dash.loss), repr(dash.loss.view), repr(dash.grads.view),
                      repr(nan), nan.static_bundle()["text/plain"]])
        dash.close()
        nan.close()
    assert texts[0] == texts[1]
    for text in texts[0]:
        assert_constant_text(text)
    assert texts[0][2] == "LossCurve: training curves"


# -- the static swap --------------------------------------------------------------------------------------------------
def _png(bundle: dict[str, str]) -> bytes:
    png = base64.b64decode(bundle["image/png"])
    assert png.startswith(b"\x89PNG")
    return png


def test_finish_swaps_the_display_for_a_static_png(displays: list[FakeHandle]) -> None:
    comm = RecordingComm()
    curve = LossCurve(comm=comm, show=True)
    for step in range(2000):
        curve.log(loss=1 / (step + 1), step=step)
        if step % 100 == 0:
            curve.log(val_loss=1.5 / (step + 1), step=step)
    curve.finish()
    (bundle, kwargs), = displays[0].updates
    assert kwargs == {"raw": True}
    png = _png(bundle)
    assert len(png) <= 12_000, len(png)
    assert bundle["text/plain"] == "LossCurve: training curves" == displays[0].live_text  # nbval-stable
    assert comm.closed and curve.finished
    assert len(reassemble(comm)["loss"]) == 2000  # everything was flushed before the swap
    curve.finish()  # twice is harmless
    assert len(displays[0].updates) == 1


def test_interrupt_swaps_too(displays: list[FakeHandle]) -> None:
    with pytest.raises(KeyboardInterrupt), LossCurve(comm=RecordingComm(), show=True) as curve:
        for step in range(100):
            curve.log(loss=float(step))
        raise KeyboardInterrupt
    _png(displays[0].updates[0][0])
    assert curve.finished


def test_fit_interrupted_swaps_the_dashboard_and_removes_hooks(displays: list[FakeHandle]) -> None:
    model = mlp()
    calls = {"n": 0}

    def loss_fn(out: tg.Tensor, y: tg.Tensor) -> tg.Tensor:
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return F.cross_entropy(out, y)

    with pytest.raises(KeyboardInterrupt):
        fit(model, loader(), loss_fn, optim.SGD(model.parameters(), lr=0.1), epochs=3, show=True)
    (bundle, _), = displays[0].updates
    _png(bundle)
    assert bundle["text/plain"].startswith("Dashboard\n  LossCurve: training curves")
    assert bundle["text/plain"] == displays[0].live_text  # the whole text, not cut at 110 characters
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(not p._hooks for p in model.parameters())


def test_nan_tracer_static_table(displays: list[FakeHandle]) -> None:
    comm = RecordingComm()
    with NaNTracer(comm=comm, show=True) as nan:
        x = tg.tensor([1.0, -1.0, 4.0])
        y = x.log()  # NaN
        (y * 2).sum()
    assert [e["op"] for e in nan.events] == ["Log"]
    assert comm.custom()[0][0]["records"]["items"][0]["nan"] == 1  # sent the moment it happened
    (bundle, _), = displays[0].updates
    assert set(bundle) == {"image/png", "text/plain"}  # the table as an image: no text that changes between runs
    assert bundle["text/plain"] == displays[0].live_text == nan.summary()
    _png(bundle)
    assert nan.table().splitlines()[1].split()[:4] == ["Log", "forward", "1", "0"]


def test_nan_tracer_records_strict_errors_and_watches_tracers() -> None:
    nan = NaNTracer(show=False, comm=RecordingComm())
    with pytest.raises(NonFiniteError), detect_anomaly(), nan.trace():
        tg.tensor([0.0]).log() * 0  # -inf * 0: NaN; the strict outer tracer raises
    assert nan.events and nan.events[0]["op"] in ("Log", "Mul")
    with detect_anomaly(strict=False) as tracer:
        nan.watch(tracer)
        tg.tensor([-1.0]).sqrt()
    assert nan.events[-1]["op"] == "Sqrt"
    nan.close()


# -- grads, activations, dashboard ------------------------------------------------------------------------------------
def test_grad_histograms_and_activation_inspector_sample_every_n() -> None:
    model = mlp()
    grads = GradHistograms(model, every=3, show=False, comm=RecordingComm())
    acts = ActivationInspector(model, every=3, show=False, comm=RecordingComm())
    opt = optim.SGD(model.parameters(), lr=0.1)
    x, y = tg.randn(16, 8), tg.tensor((np.arange(16) % 3).astype(np.int64))
    for _ in range(10):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert grads.names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    rows = grads.rows("0.weight")
    assert rows.shape == (4, 8) and list(rows[:, 0]) == [0, 3, 6, 9]
    assert (np.diff(rows[:, 1:], axis=1) >= 0).all()  # percentiles are ordered
    assert acts.layers == ["0", "1", "2"] and acts.rows("1").shape == (4, 6)
    assert acts.rows("1")[:, 3].min() >= 0  # after the ReLU
    grads.flush()
    acts.flush()
    for widget in (grads, acts):
        content, _buffers = widget.view.comm.custom()[-1]
        assert {item["name"].split("/")[0] for item in content["latest"]} >= {"hist"}
    grads.close()
    acts.close()
    assert all(not p._hooks for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_dashboard_png_has_every_panel(displays: list[FakeHandle]) -> None:
    model = mlp()
    history = fit(model, loader(), F.cross_entropy, optim.SGD(model.parameters(), lr=0.1), epochs=2,
                  val_loader=loader(32), metrics=["accuracy"], show=True, every=2)
    assert history.names == ["loss", "acc", "val_loss", "val_acc"] and len(history["val_acc"]) == 2
    (bundle, _), = displays[0].updates
    from PIL import Image

    image = Image.open(io.BytesIO(_png(bundle)))
    assert image.size[0] >= 600 and image.size[1] >= 300  # 2 x 2 panels: loss, acc, gradients, activations
    assert bundle["text/plain"].splitlines()[1] == "  LossCurve: training curves"
    assert bundle["text/plain"] == displays[0].live_text


# -- outside Jupyter ----------------------------------------------------------------------------------------------------
def test_text_fallback_outside_jupyter(capsys: pytest.CaptureFixture[str]) -> None:
    assert not in_notebook()
    model = mlp()
    history = fit(model, loader(), F.cross_entropy, optim.SGD(model.parameters(), lr=0.1), epochs=2,
                  val_loader=loader(32), metrics=["accuracy"])
    out = capsys.readouterr().out
    assert re.search(r"epoch 1/2  loss \S+  acc +\S+%  val_loss \S+  val_acc +\S+%", out), out
    assert "epoch 2/2" in out and len(history.epochs) == 2
    assert all(not m._forward_hooks for m in model.modules())  # no widgets, no hooks


def test_text_progress_is_throttled() -> None:
    stream = io.StringIO()
    progress = TextProgress(epochs=1, steps_per_epoch=1000, interval=3600, stream=stream)
    for step in range(1000):
        progress.update(0, step, {"loss": 0.5})
    progress.epoch_end(0, {"loss": 0.5, "acc": 0.9})
    assert stream.getvalue().count("\n") == 1 and "acc 90.00%" in stream.getvalue()


def test_live_run_sink(tmp_path: Path) -> None:
    comm = RecordingComm()
    with track.Run(name="demo", store=False, fingerprint=False, flush_secs=0.0) as run:
        curve = live(run, comm=comm)
        for step in range(500):
            run.log({"loss": 1 / (step + 1), "act/0/mean": 0.0})
        run.log({"val_loss": 0.1})
    assert curve.finished and curve.title == "demo"
    data = reassemble(comm)
    assert set(data) == {"loss", "val_loss"}  # per-layer statistics stay out of the curve
    np.testing.assert_array_equal(data["loss"][:, 1], (1 / np.arange(1, 501)).astype(np.float32))


def test_live_outside_jupyter_is_text(capsys: pytest.CaptureFixture[str]) -> None:
    with track.Run(store=False, fingerprint=False) as run:
        sink = live(run)
        run.log({"loss": 0.5})
    assert isinstance(sink, track.StdoutSink)
    assert "loss 0.5" in capsys.readouterr().out


# -- a real kernel, headless ------------------------------------------------------------------------------------------
NOTEBOOK_SETUP = """import numpy as np
import tinygrad_nb as tg
from tinygrad_nb import nn, optim
from tinygrad_nb.data import DataLoader, TensorDataset
from tinygrad_nb.nn import functional as F
from tinygrad_nb.notebook import LossCurve, fit

def curve_of(steps):
    rng = np.random.default_rng(0)
    with LossCurve() as curve:
        for step in range(steps):
            curve.log(loss=2.0 * np.exp(-step / (steps / 5)) + 0.05 * rng.random(), step=step)
            if step % (steps // 10) == 0:
                curve.log(val_loss=2.0 * np.exp(-step / (steps / 5)) + 0.1, step=step)

def train(epochs):
    tg.manual_seed(0)
    x = tg.randn(256, 8)
    y = tg.tensor((np.arange(256) % 3).astype(np.int64))
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    fit(model, loader, F.cross_entropy, optim.Adam(model.parameters(), lr=1e-2), epochs=epochs,
        val_loader=loader, metrics=["accuracy"])"""


def test_headless_notebook_saves_small_static_outputs(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    cells = [NOTEBOOK_SETUP, "curve_of(100)", "curve_of(5000)", "train(1)", "train(8)"]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    source_size = len(nbformat.writes(nb))
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, path)

    def outputs(i: int) -> tuple[dict[str, Any], int]:
        (output,) = nb.cells[i].outputs
        assert output.output_type == "display_data"
        return output.data, len(json.dumps(output))

    small_curve, small_size = outputs(1)
    large_curve, large_size = outputs(2)
    assert set(small_curve) == {"image/png", "text/plain"}
    assert small_curve["text/plain"] == large_curve["text/plain"] == "LossCurve: training curves"  # constant
    short_fit, short_size = outputs(3)
    long_fit, long_size = outputs(4)
    assert short_fit["text/plain"] == long_fit["text/plain"]
    assert short_fit["text/plain"].startswith("Dashboard\n  LossCurve: training curves")

    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    per_model = {k: len(json.dumps(v)) for k, v in state.items()}
    views = [k for k, v in state.items() if v["model_name"] == "AnyModel"]
    assert len(views) == 2 + 2 * 3  # two curves, two dashboards of three views
    assert all(per_model[k] < 1000 for k in views)  # the ESM source was dropped, no data is in there
    layouts = [k for k, v in state.items() if v["model_name"] == "LayoutModel"]
    assert len(layouts) == 1  # one shared Layout, not one per widget

    growth = path.stat().st_size - source_size
    print(f"\nsaved notebook: LossCurve outputs {small_size} B (100 steps) / {large_size} B (5000 steps); dashboard "
          f"{short_size} B (1 epoch) / {long_size} B (8 epochs); widget state {sum(per_model.values())} B; "
          f"growth {growth} B for 4 figures")
    assert small_size + per_model[views[0]] <= 12_000 and large_size + per_model[views[1]] <= 12_000
    assert abs(large_size - small_size) <= 4_000  # does not grow with the number of steps
    # three widgets in one figure, 1000 px wide with 12-13 px text (issue 18: readable, every panel)
    assert long_size + sum(per_model.values()) <= 3 * 15_000
    assert growth <= 2 * 12_000 + 2 * 3 * 12_000

    # the saved outputs are what a fresh run produces again (nbval sees the live display's text/plain, skips PNGs)
    if importlib.util.find_spec("nbval") is not None:
        result = subprocess.run([sys.executable, "-m", "pytest", "--nbval", "-q", "-p", "no:cacheprovider", str(path)],
                                cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stdout[-3000:]
