"""The op profiler: call counts, summary table, sampling, regions, Chrome trace export."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import tinygrad_nb as tg
from tinygrad_nb import dispatch, profiler
from tinygrad_nb.dispatch import OpEvent
from tinygrad_nb.profiler import profile, region


class CountingObserver:
    """Counts every op the dispatch seam reports, named as the profiler names them."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def op_begin(self, event: OpEvent) -> None:
        self.counts[event.op if event.phase == "forward" else event.op + "Backward"] += 1

    def op_end(self, event: OpEvent) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_leftover_observers() -> Any:
    yield
    assert dispatch.observers == []


def train_step(x: tg.Tensor, w: tg.Tensor) -> None:
    y = (x @ w).relu()
    loss = (y * y).mean() + 1
    loss.backward()


def test_summary_counts_equal_the_ops_that_ran() -> None:
    x, w = tg.randn(8, 4), tg.randn(4, 3, requires_grad=True)
    counter = CountingObserver()
    with dispatch.add_observer(counter), profile() as prof:
        for _ in range(3):
            train_step(x, w)
    assert prof.calls == dict(counter.counts)
    summary = prof.summary()
    assert {r.op: r.calls for r in summary.rows} == dict(counter.counts)
    assert all(r.timed == r.calls for r in summary.rows)
    assert len(prof.ops) == sum(counter.counts.values())
    assert counter.counts["Matmul"] == 3 and counter.counts["MatmulBackward"] == 3
    assert sum(r.percent for r in summary.rows) == pytest.approx(100.0)
    forward = [r for r in prof.ops if r.op == "Matmul"]
    assert forward[0].shapes == [(8, 4), (4, 3)] and forward[0].bytes == 8 * 3 * 4 and forward[0].phase == "forward"
    backward = [r for r in prof.ops if r.op == "MatmulBackward"]
    assert backward[0].shapes == [(8, 3)] and backward[0].phase == "backward"


def test_summary_table_sorting_and_limit() -> None:
    x = tg.randn(3, requires_grad=True)
    with profile() as prof:
        for _ in range(5):
            y = x * 2
        (y + 1).sum().backward()
    text = str(prof.summary(sort_by="calls"))
    lines = text.splitlines()
    assert lines[0].split() == ["op", "calls", "total", "ms", "mean", "us", "%", "time", "KB", "out"]
    assert lines[2].split()[:2] == ["Mul", "5"]
    assert "total" in lines[-1] and "op calls" in lines[-1]
    assert [r.op for r in prof.summary(sort_by="calls", limit=1).rows] == ["Mul"]
    by_mean = prof.summary(sort_by="mean").rows
    assert [r.mean_us for r in by_mean] == sorted((r.mean_us for r in by_mean), reverse=True)
    with pytest.raises(ValueError, match="sort_by must be one of"):
        prof.summary(sort_by="fastest")
    assert repr(prof.summary()) == str(prof.summary())


def test_sampling_every_n_counts_all_calls_and_times_some() -> None:
    x = tg.randn(4)
    with profile(every=3) as prof:
        for _ in range(10):
            x = x * 1.0
    row = prof.summary().rows[0]
    assert (row.op, row.calls, row.timed) == ("Mul", 10, 4)  # calls 1, 4, 7, 10 are timed
    assert len(prof.ops) == 4
    assert "timed 1 call in 3" in str(prof.summary())
    with pytest.raises(ValueError):
        profile(every=0)


def test_regions_and_chrome_trace(tmp_path: Path) -> None:
    x, w = tg.randn(8, 4), tg.randn(4, 3, requires_grad=True)
    with profile() as prof:
        with prof.region("step"):
            with prof.region("forward"):
                loss = (x @ w).relu().sum()
            with region("backward"):  # the module-level helper reaches the active profile
                loss.backward()
    path = tmp_path / "trace" / "trace.json"
    prof.export_chrome_trace(path)
    data = json.loads(path.read_text())
    events = data["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert {e["name"] for e in complete} >= {"step", "forward", "backward", "Matmul", "MatmulBackward"}
    for e in complete:
        assert set(e) >= {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"}
        assert isinstance(e["ts"], (int, float)) and e["dur"] >= 0
    regions = {e["name"]: e for e in complete if e["cat"] == "region"}
    ops = [e for e in complete if e["cat"] in ("forward", "backward")]
    assert len(ops) == len(prof.ops) == 6

    def inside(inner: dict[str, Any], outer: dict[str, Any]) -> bool:
        return outer["ts"] <= inner["ts"] and inner["ts"] + inner["dur"] <= outer["ts"] + outer["dur"] + 1e-3

    assert inside(regions["forward"], regions["step"]) and inside(regions["backward"], regions["step"])
    assert regions["forward"]["args"]["depth"] == 1 and regions["step"]["args"]["depth"] == 0
    for e in ops:
        assert inside(e, regions["forward" if e["cat"] == "forward" else "backward"])
    matmul = next(e for e in ops if e["name"] == "Matmul")
    assert matmul["args"]["shapes"] == [[8, 4], [4, 3]]
    assert not list(path.parent.glob(".*.tmp"))  # written atomically, no temporary file left
    summary = str(prof.summary())
    assert "region" in summary and "forward" in summary


def test_region_without_profile_is_a_no_op() -> None:
    with region("nothing"):
        y = tg.ones(2) * 2
    assert y.numpy().tolist() == [2.0, 2.0]
    assert tg.profiler.region is region
    assert profiler.profile.region is region


def test_start_stop_and_observer_removal() -> None:
    prof = profile().start()
    assert prof in dispatch.observers
    (tg.ones(2) + 1).sum()
    prof.stop()
    assert dispatch.observers == []
    (tg.ones(2) + 1).sum()
    assert prof.calls == {"Add": 1, "Sum": 1}
    with pytest.raises(ZeroDivisionError):
        with profile():
            1 / 0  # noqa: B018
    assert dispatch.observers == []
