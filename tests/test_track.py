"""track: Run status and logging, epoch aggregation, sinks (JSONL, stdout, store, TensorBoard), the SQLite store under
concurrent writers, comparison and the ``runs`` CLI."""
from __future__ import annotations

import argparse
import csv
import json
import math
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb import track
from tinygrad_nb.debug import NonFiniteError
from tinygrad_nb.track import cli as runs_cli
from tinygrad_nb.track import tfevents


@pytest.fixture
def store(tmp_path: Path) -> track.RunStore:
    return track.RunStore(tmp_path / "runs.db")


def make_run(store: track.RunStore, **kwargs: Any) -> track.Run:
    return track.Run(store=store, fingerprint=False, **kwargs)


# -- Run ----------------------------------------------------------------------------------------------------------
def test_status_transitions(store: track.RunStore) -> None:
    run = make_run(store, name="ok", config={"lr": 0.1})
    assert run.status == "running" and store.get(run.id).status == "running"
    run.log({"loss": 1.0})
    run.finish()
    assert run.status == "finished" and run.end_time is not None and run.duration >= 0
    record = store.get(run.id)
    assert (record.status, record.name, record.config) == ("finished", "ok", {"lr": 0.1})
    with pytest.raises(RuntimeError, match=f"run {run.id} is finished"):
        run.log({"loss": 2.0})
    run.finish()  # a second finish is a no-op

    with pytest.raises(KeyError):
        with make_run(store, name="crash") as failed:
            raise KeyError("boom")
    assert failed.status == "failed" and store.get(failed.id).status == "failed"

    with make_run(store) as nan_run:
        nan_run.log({"loss": 0.5})
        nan_run.log({"loss": float("nan")})
        nan_run.flush()
        assert nan_run.status == "nan" and store.get(nan_run.id).status == "nan"
    assert nan_run.status == "nan" and store.get(nan_run.id).status == "nan"

    with pytest.raises(NonFiniteError):
        with make_run(store) as traced:
            raise NonFiniteError("Log produced 1 NaN")
    assert traced.status == "nan"
    with pytest.raises(ValueError, match="status must be one of"):
        make_run(store).finish("done")


def test_log_accepts_numbers_numpy_scalars_and_0d_tensors(store: track.RunStore) -> None:
    w = tg.tensor([1.0, 2.0], requires_grad=True)
    loss = (w * w).sum()
    with make_run(store) as run:
        run.log({"loss": loss, "acc": np.float32(0.5), "n": 3, "lr": 0.1, "ok": True, "arr": np.array(2.5)})
        pending_values = run._pending[0][2]
        assert not any(isinstance(v, tg.Tensor) for v in pending_values.values())  # the graph is not kept alive
        run.log({"loss": tg.tensor(4.0)}, step=10)
        run.log({"loss": 5.0})  # auto step continues after 10
        with pytest.raises(ValueError, match="tensor of shape \\(2,\\)"):
            run.log({"w": w})
        with pytest.raises(TypeError, match="must be a number"):
            run.log({"name": "adam"})
    points = store.metrics(run.id, "loss")
    assert [(s, v) for s, _, v, _ in points] == [(0, 5.0), (10, 4.0), (11, 5.0)]
    assert store.metrics(run.id, "acc")[0][2] == 0.5 and store.metrics(run.id, "ok")[0][2] == 1.0
    assert store.metrics(run.id, "arr")[0][2] == 2.5


def test_epoch_aggregation(store: track.RunStore) -> None:
    with make_run(store, flush_every=2) as run:
        for v in (3.0, 1.0, 2.0):
            run.log({"loss": v, "acc": v / 10})
        first = run.epoch_end()
        run.log({"loss": 10.0})
        second = run.epoch_end()
    assert first["loss"] == {"mean": 2.0, "min": 1.0, "max": 3.0, "last": 2.0}
    assert first["acc"]["mean"] == pytest.approx(0.2) and first["acc"]["last"] == pytest.approx(0.2)
    assert second == {"loss": {"mean": 10.0, "min": 10.0, "max": 10.0, "last": 10.0}}
    assert run.epoch == 2
    assert [(s, v) for s, _, v, _ in store.metrics(run.id, "loss/epoch_mean")] == [(2, 2.0), (3, 10.0)]


def test_epoch_aggregation_with_nan_values(store: track.RunStore) -> None:
    with make_run(store) as run:
        for v in (1.0, float("nan"), 3.0):
            run.log({"loss": v})
        stats = run.epoch_end()["loss"]
    assert math.isnan(stats["mean"]) and stats["min"] == 1.0 and stats["max"] == 3.0 and stats["last"] == 3.0
    assert run.status == "nan"


def test_jsonl_sink(tmp_path: Path) -> None:
    sink = track.JSONLSink(tmp_path / "logs" / "{run_id}.jsonl")
    with track.Run(name="j", config={"opt": {"lr": 0.01}}, store=False, sinks=[sink], fingerprint=False) as run:
        run.log({"loss": 1.5}, step=0)
        run.log({"loss": 0.5, "acc": 0.75}, step=1)
        run.log_hist("w", np.array([0.0, 1.0, 1.0, 2.0]), step=1, bins=2)
        run.epoch_end()
    lines = [json.loads(line) for line in (tmp_path / "logs" / f"{run.id}.jsonl").read_text().splitlines()]
    assert [x["type"] for x in lines] == ["start", "log", "log", "hist", "epoch", "end"]
    assert lines[0]["run_id"] == run.id and lines[0]["config"] == {"opt": {"lr": 0.01}}
    assert lines[2] == {"type": "log", "step": 1, "time": lines[2]["time"], "metrics": {"loss": 0.5, "acc": 0.75}}
    assert lines[3]["counts"] == [1, 3] and lines[3]["edges"] == [0.0, 1.0, 2.0]
    assert lines[4]["metrics"]["loss"] == {"mean": 1.0, "min": 0.5, "max": 1.5, "last": 0.5}
    assert lines[5]["status"] == "finished"


def test_stdout_sink(capsys: pytest.CaptureFixture[str], store: track.RunStore) -> None:
    with track.Run(name="demo", store=False, sinks=[track.StdoutSink(interval=0)], fingerprint=False) as run:
        run.log({"loss": 0.25, "acc": 0.5})
        run.flush()
        run.epoch_end()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"[run {run.id}] demo started"
    assert out[1] == f"[run {run.id}] step 0  loss 0.25  acc 0.5"
    assert out[2] == f"[run {run.id}] epoch 0  loss 0.25 (min 0.25, max 0.25)  acc 0.5 (min 0.5, max 0.5)"
    assert out[-1].startswith(f"[run {run.id}] finished after")


# -- the store ----------------------------------------------------------------------------------------------------
def test_store_round_trip(store: track.RunStore) -> None:
    config = {"lr": 0.1, "layers": [64, 32], "opt": {"name": "adam", "betas": [0.9, 0.99]}}
    with make_run(store, name="rt", config=config, project="p1") as run:
        for i in range(2500):  # several flushes (flush_every=1000)
            run.log({"loss": 1.0 / (i + 1)})
        run.log({"inf": math.inf})
        run.log_hist("w", tg.tensor([1.0, 2.0, 2.0, 3.0, np.nan]), step=7, bins=4)
    record = store.get(run.id[:5])  # prefixes resolve
    assert record.config == {"lr": 0.1, "layers": [64, 32], "opt.name": "adam", "opt.betas": [0.9, 0.99]}
    assert (record.name, record.project, record.status) == ("rt", "p1", "nan")  # an inf was logged
    steps, values, times = store.series(run.id, "loss")
    assert steps.tolist() == list(range(2500)) and values[0] == 1.0 and values[-1] == pytest.approx(1 / 2500)
    assert np.all(np.diff(times) >= 0)
    assert store.count("metrics") == 2501 and math.isinf(store.metrics(run.id, "inf")[0][2])
    (step, name, counts, edges, _), = store.hists(run.id)
    assert (step, name, counts) == (7, "w", [1, 0, 2, 1]) and edges == [1.0, 1.5, 2.0, 2.5, 3.0]
    summary = store.summary(run.id)["loss"]
    assert summary["final"] == pytest.approx(1 / 2500) and summary["max"] == 1.0 and summary["count"] == 2500
    assert [r.id for r in store.runs(project="p1")] == [run.id] and store.runs(project="nope") == []
    assert [r.id for r in track.runs(store=store, lr=0.1)] == [run.id] and track.runs(store=store, lr=0.2) == []


def test_default_store_is_under_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TINYGRAD_NB_RUNS_DB", raising=False)
    with track.Run(fingerprint=False) as run:
        run.log({"x": 1})
    assert (tmp_path / ".tinygrad_nb" / "runs.db").exists()
    assert [r.id for r in track.runs()] == [run.id]
    track.set_default_store(tmp_path / "other.db")
    try:
        assert track.default_store_path() == tmp_path / "other.db"
    finally:
        track.set_default_store(None)


def test_unknown_run_lists_close_ids(store: track.RunStore) -> None:
    with make_run(store) as run:
        pass
    with pytest.raises(track.UnknownRunError, match=f"run 'zz' not found in .*; known runs: {run.id}"):
        store.get("zz")
    with pytest.raises(track.UnknownRunError, match=f"close matches: {run.id}"):
        store.get(run.id[:7] + "x")


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tinygrad_nb import track
    store, name, n, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    run = track.Run(name=name, store=store, fingerprint=False, flush_every=10**9)
    (folder / name).touch()
    while len(list(folder.iterdir())) < 2:  # start together, so the two writers really overlap
        time.sleep(0.001)
    for i in range(n):
        run.log({"loss": float(i)})
        if i % 200 == 199:
            run.flush()  # one committed transaction per 200 points, interleaved with the other process
    run.finish()
""")


def test_two_processes_writing_one_store_lose_nothing(tmp_path: Path) -> None:
    path, n = tmp_path / "shared.db", 10_000
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(n), str(barrier)])
             for name in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    store = track.RunStore(path)
    assert store.count("metrics") == 2 * n
    runs = store.runs()
    assert sorted(r.name for r in runs) == ["a", "b"] and {r.status for r in runs} == {"finished"}
    spans = []
    for r in runs:
        steps, values, times = store.series(r.id, "loss")
        assert steps.tolist() == list(range(n)) and values.tolist() == [float(i) for i in range(n)]
        spans.append((times.min(), times.max()))
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1, "the two writers did not overlap in time"


# -- TensorBoard ----------------------------------------------------------------------------------------------------
def test_crc32c_known_values() -> None:
    assert tfevents.crc32c(b"123456789") == 0xE3069283
    assert tfevents.crc32c(b"") == 0
    assert tfevents.crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 test vector: 32 zero bytes


def tensorboard_run(tmp_path: Path) -> tuple[track.Run, Path]:
    sink = track.TensorBoardSink(tmp_path / "tb")
    with track.Run(store=False, sinks=[sink], fingerprint=False) as run:
        for i in range(5):
            run.log({"loss": 1.0 / (i + 1), "acc": i / 4})
        run.log_hist("weights", np.arange(10.0), step=4, bins=5)
    assert sink.path is not None and sink.path.parent == tmp_path / "tb" / run.id
    assert "tfevents" in sink.path.name
    return run, sink.path


def test_tensorboard_file_crcs_and_values(tmp_path: Path) -> None:
    _, path = tensorboard_run(tmp_path)
    events = tfevents.read_events(path)  # checks both CRCs of every record
    assert events[0]["file_version"] == "brain.Event:2"
    scalars = [(e["step"], e["scalars"]) for e in events if e["scalars"]]
    assert [s for s, _ in scalars] == [0, 1, 2, 3, 4]
    assert scalars[1][1] == {"loss": 0.5, "acc": 0.25}
    (hist_event,) = [e for e in events if e["histograms"]]
    h = hist_event["histograms"]["weights"]
    assert hist_event["step"] == 4
    assert h["bucket"] == [2.0] * 5 and h["bucket_limit"] == [1.8, 3.6, 5.4, 7.2, 9.0]
    assert (h["min"], h["max"], h["num"], h["sum"], h["sum_squares"]) == (0.0, 9.0, 10.0, 45.0, 285.0)
    # a flipped byte is detected
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(tfevents.CorruptRecordError, match="bad data CRC"):
        tfevents.read_events(path)


def test_tfrecord_framing() -> None:
    record = tfevents.frame(b"abc")
    (length,) = struct.unpack("<Q", record[:8])
    assert length == 3 and record[12:15] == b"abc" and len(record) == 8 + 4 + 3 + 4
    assert struct.unpack("<I", record[8:12])[0] == tfevents.masked_crc32c(record[:8])


def test_tensorboard_reads_the_files(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, path = tensorboard_run(tmp_path)
    acc = EventAccumulator(str(path.parent), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"loss", "acc"}
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(i, pytest.approx(1 / (i + 1))) for i in range(5)]
    (h,) = acc.Histograms("weights")
    assert h.step == 4 and h.histogram_value.num == 10 and list(h.histogram_value.bucket) == [2.0] * 5


# -- compare and the CLI -------------------------------------------------------------------------------------------
def two_runs(store: track.RunStore) -> tuple[track.Run, track.Run]:
    with make_run(store, name="small", config={"lr": 0.1, "bs": 32}) as a:
        for loss, acc in ((2.0, 0.5), (1.0, 0.7), (1.5, 0.6)):
            a.log({"loss": loss, "acc": acc})
    with make_run(store, name="big", config={"lr": 0.01, "bs": 32}) as b:
        for loss, acc in ((3.0, 0.4), (0.5, 0.9)):
            b.log({"loss": loss, "acc": acc})
    return a, b


def test_compare_table(store: track.RunStore, tmp_path: Path) -> None:
    a, b = two_runs(store)
    table = track.compare([a.id, b.id], store=store)
    assert table.config_keys == ["lr"]  # bs is the same everywhere
    assert table.columns == ["id", "name", "status", "duration s", "config.lr", "acc final", "acc best",
                             "loss final", "loss best"]
    rows = {r["name"]: r for r in table.rows}
    assert (rows["small"]["loss final"], rows["small"]["loss best"]) == (1.5, 1.0)  # loss: lower is better
    assert (rows["small"]["acc final"], rows["small"]["acc best"]) == (0.6, 0.7)  # acc: higher is better
    assert (rows["big"]["loss best"], rows["big"]["config.lr"]) == (0.5, 0.01)
    text = str(table)
    assert text.splitlines()[0].split()[:4] == ["id", "name", "status", "duration"]
    assert "small" in text and "0.01" in text
    table.to_csv(tmp_path / "cmp.csv")
    with open(tmp_path / "cmp.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["name"] for r in csv_rows] == ["small", "big"] and csv_rows[1]["loss best"] == "0.5"
    by_filter = track.compare({"lr": 0.01}, store=store)
    assert [r["name"] for r in by_filter.rows] == ["big"] and "config.bs" in by_filter.columns
    assert track.best_direction("val_loss") == "min" and track.best_direction("acc") == "max"
    assert track.best_direction("acc", {"acc": "min"}) == "min"


def test_compare_select_and_without_columns(store: track.RunStore) -> None:
    a, b = two_runs(store)
    table = track.compare([a.id, b.id], store=store)
    picked = table.select("name", "loss best")
    assert picked.columns == ["name", "loss best"] and str(picked).splitlines()[2].split() == ["small", "1"]
    stable = table.without("id", "duration s")
    assert stable.columns == ["name", "status", "config.lr", "acc final", "acc best", "loss final", "loss best"]
    assert table.columns[0] == "id"  # the original is unchanged
    with pytest.raises(KeyError, match="Comparison.select: no column 'los best'; the columns are 'id', 'name'"):
        table.select("los best")
    with pytest.raises(KeyError, match="Comparison.without: no column 'x'"):
        table.without("x")


def run_cli(*argv: str) -> int:
    """``tinygrad-nb runs ARGV``, through the subcommand module's own add_arguments/main."""
    parser = argparse.ArgumentParser(prog="tinygrad-nb runs")
    runs_cli.add_arguments(parser)
    return runs_cli.main(parser.parse_args(list(argv)))


def test_cli_ls_show_compare_export(store: track.RunStore, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_runs(store)
    db = str(store.path)
    assert run_cli("--store", db, "ls") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["id", "name", "project", "status", "started", "duration", "s"]
    assert {line.split()[1] for line in out[2:]} == {"small", "big"}

    assert run_cli("show", a.id[:6], "--store", db) == 0
    out = capsys.readouterr().out
    assert f"run {a.id}" in out and "status     finished" in out and "lr = 0.1" in out
    loss_line = next(line for line in out.splitlines() if line.strip().startswith("loss"))
    assert loss_line.split()[1:6] == ["1.5", "1", "2", "3", "2"]  # final, min, max, count, last step

    assert run_cli("compare", a.id, "big", "--store", db) == 0
    out = capsys.readouterr().out
    assert "config.lr" in out and "loss best" in out and "small" in out and "big" in out

    target = tmp_path / "out.csv"
    assert run_cli("export", a.id, "--csv", str(target), "--store", db) == 0
    assert target.read_text().splitlines() == ["step,acc,loss", "0,0.5,2.0", "1,0.7,1.0", "2,0.6,1.5"]
    assert capsys.readouterr().out == f"wrote 6 values of run {a.id} to {target}\n"
    assert run_cli("export", a.id, "--long", "--store", db) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("0,acc,0.5,")


def test_cli_unknown_run_exits_2_with_close_ids(store: track.RunStore, capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = two_runs(store)
    assert run_cli("show", a.id[:-1] + ("0" if a.id[-1] != "0" else "1"), "--store", str(store.path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinygrad-nb runs: error: run ") and f"close matches: {a.id}" in err
    assert run_cli("compare", a.id, "nope", "--store", str(store.path)) == 2
    assert "'nope' not found" in capsys.readouterr().err


def test_cli_empty_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("--store", str(tmp_path / "none.db"), "ls") == 0
    assert capsys.readouterr().out.startswith("no runs in ")


def test_cli_subprocess(store: track.RunStore) -> None:
    two_runs(store)
    result = subprocess.run([sys.executable, "-m", "tinygrad_nb.cli", "runs", "ls", "--store", str(store.path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "small" in result.stdout, result.stderr
