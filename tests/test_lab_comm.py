"""The kernel side of the JupyterLab extension (tinygrad_nb.notebook.lab_comm), in an in-process IPython shell with
a recording comm in place of ipykernel's: nothing at all without the server extension's environment variable; with
it, the state it sends (device, NaN event with cell and line, training step, checkpoint HEAD and timeline), the
throttle (no two updates closer than the interval), refresh, and closing from the browser side."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("IPython")
import comm as comm_package  # noqa: E402
from cellckpt_helpers import recording_shell  # noqa: E402

from tinygrad_nb import dispatch, track  # noqa: E402
from tinygrad_nb.notebook import lab_comm  # noqa: E402


class RecordingComm:
    """Stands in for ipykernel's Comm: records what is sent and when."""

    def __init__(self, target_name: str, data: dict[str, Any]):
        self.target_name = target_name
        self.open_data = data
        self.sent: list[tuple[float, dict[str, Any]]] = []
        self.closed = False
        self._on_msg: Any = None
        self._on_close: Any = None
        self.lock = threading.Lock()

    def on_msg(self, callback: Any) -> None:
        self._on_msg = callback

    def on_close(self, callback: Any) -> None:
        self._on_close = callback

    def send(self, data: dict[str, Any]) -> None:
        with self.lock:
            self.sent.append((time.monotonic(), data))

    def close(self) -> None:
        self.closed = True

    # what the browser does
    def browser_sends(self, data: dict[str, Any]) -> None:
        self._on_msg({"content": {"data": data}})

    def browser_closes(self) -> None:
        self._on_close({"content": {"data": {}}})

    def states(self) -> list[dict[str, Any]]:
        with self.lock:
            return [d["state"] for _, d in self.sent]

    def wait_for(self, predicate: Any, what: str, limit: float = 20.0) -> dict[str, Any]:
        """The first state sent that satisfies ``predicate`` (bounded wait)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for state in self.states():
                if predicate(state):
                    return state
            time.sleep(0.02)
        raise AssertionError(f"no update with {what}; sent: {self.states()[-3:]}")


@pytest.fixture
def comms(monkeypatch: pytest.MonkeyPatch) -> list[RecordingComm]:
    made: list[RecordingComm] = []
    original = comm_package.create_comm

    def create_comm(target_name: str = "", data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if target_name != lab_comm.TARGET:  # widgets' comms: not ours
            return original(target_name=target_name, data=data, **kwargs)
        made.append(RecordingComm(target_name, data or {}))
        return made[-1]

    monkeypatch.setattr(comm_package, "create_comm", create_comm)
    return made


@pytest.fixture
def lab_shell(ipython: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              comms: list[RecordingComm]) -> Iterator[Any]:
    """A recording shell inside a "kernel" started by a server with the Lab extension."""
    monkeypatch.setenv(lab_comm.COMM_ENV, "1")
    monkeypatch.setattr(ipython, "kernel", object(), raising=False)
    monkeypatch.chdir(tmp_path)
    yield from recording_shell(ipython, tmp_path)


def _lab(ip: Any) -> lab_comm.LabComm:
    lab = lab_comm._active.get(id(ip))
    assert lab is not None
    return lab


def test_nothing_happens_without_the_lab_extension(ipython: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   comms: list[RecordingComm]) -> None:
    monkeypatch.delenv(lab_comm.COMM_ENV, raising=False)
    monkeypatch.setattr(ipython, "kernel", object(), raising=False)
    listeners = list(dispatch.observer_listeners)
    shells = recording_shell(ipython, tmp_path)
    ip = next(shells)
    try:
        callbacks = {e: list(ip.events.callbacks[e]) for e in ("pre_run_cell", "post_run_cell")}
        assert lab_comm.load(ip) is None
        ip.run_cell("%%tg_nantrace --text\nimport tinygrad_nb as tg\ny = tg.tensor([-1.0]).log()", store_history=True)
        assert comms == [] and id(ip) not in lab_comm._active
        assert {e: list(ip.events.callbacks[e]) for e in callbacks} == callbacks
        assert not any(getattr(f, "__self__", None).__class__ is lab_comm.LabComm for f in dispatch.observer_listeners)
        assert len(dispatch.observer_listeners) == len(listeners) + 1  # only cell ownership's
        assert not any(t.name == "tinygrad_nb-lab-comm" for t in threading.enumerate())
    finally:
        next(shells, None)


def test_no_comm_outside_a_kernel(ipython: Any, monkeypatch: pytest.MonkeyPatch, comms: list[RecordingComm]) -> None:
    monkeypatch.setenv(lab_comm.COMM_ENV, "1")
    monkeypatch.setattr(ipython, "kernel", None, raising=False)
    assert lab_comm.load(ipython) is None and comms == []


def test_state_reports_nan_event_with_cell_and_line(lab_shell: Any, comms: list[RecordingComm]) -> None:
    ip = lab_shell
    assert len(comms) == 1 and comms[0].target_name == "tinygrad_nb.lab"
    first = comms[0].open_data
    assert first["protocol"] == lab_comm.PROTOCOL and first["state"]["device"]["name"] == "cpu"
    assert first["state"]["nan"] == {"armed": False, "count": 0, "last": None}
    result = ip.run_cell("import tinygrad_nb as tg", store_history=True, cell_id="cell-a")
    source = "%%tg_nantrace --text\nx = tg.tensor([1.0, -1.0])\ny = x.log()\nz = y * 2"
    result = ip.run_cell(source, store_history=True, cell_id="cell-b")
    assert result.success
    state = comms[0].wait_for(lambda s: s["nan"]["last"] is not None, "a NaN event")
    last = state["nan"]["last"]
    assert (last["op"], last["phase"], last["cell"], last["line"]) == ("Log", "forward", result.execution_count, 3)
    assert last["cell_id"] == "cell-b" and last["where"] == f"cell [{result.execution_count}], line 3"
    assert state["nan"]["count"] == 1 and state["nan"]["armed"] is False  # the tracer is off after the cell


def test_strict_tracer_error_is_reported(lab_shell: Any, comms: list[RecordingComm]) -> None:
    ip = lab_shell
    ip.run_cell("import tinygrad_nb as tg\nfrom tinygrad_nb.debug import detect_anomaly", store_history=True)
    result = ip.run_cell("with detect_anomaly():\n    a = tg.tensor([0.0])\n    b = a / a", store_history=True,
                         cell_id="strict")
    assert not result.success
    state = comms[0].wait_for(lambda s: s["nan"]["last"] is not None, "the NonFiniteError")
    assert state["nan"]["last"]["cell"] == result.execution_count and state["nan"]["last"]["line"] == 3
    assert state["nan"]["last"]["cell_id"] == "strict"


def test_state_reports_the_training_run(lab_shell: Any, comms: list[RecordingComm], tmp_path: Path) -> None:
    ip = lab_shell
    lab = _lab(ip)
    lab.pre_run_cell(None)  # as if a cell were running the loop
    run = track.Run(name="train", store=tmp_path / "runs.db")
    try:
        for step in range(50):
            run.log({"loss": 1.0 / (step + 1)})
        training = lab.state()["training"]
        assert (training["run_id"], training["name"], training["step"], training["status"]) == \
            (run.id, "train", 50, "running")
        assert training["store"] == str(tmp_path / "runs.db")
        state = comms[0].wait_for(lambda s: (s["training"] or {}).get("step") == 50, "the run's step")
        assert state["training"]["run_id"] == run.id
        for step in range(50, 80):
            run.log({"loss": 0.01})
        time.sleep(lab.interval * 1.2)  # let the thread take a second sample: the rate is (80 - 50) / elapsed
        rate = lab.state()["training"]["steps_per_s"]
        assert rate is not None and rate > 0
    finally:
        run.finish()
    assert lab.state()["training"] is None


def test_checkpoint_head_and_timeline(lab_shell: Any, comms: list[RecordingComm]) -> None:
    ip = lab_shell
    ip.run_cell("import tinygrad_nb as tg\nx = tg.ones(3)", store_history=True, cell_id="c1")
    ip.run_cell("gen = (i for i in range(3))\nx.mul_(2)", store_history=True, cell_id="c2")
    state = comms[0].wait_for(lambda s: s["ckpt"].get("head") == 2 and s["ckpt"].get("commits") == 2,
                              "HEAD #2 written")
    ckpt = state["ckpt"]
    assert ckpt["loaded"] is True and ckpt["enabled"] is True and ckpt["bytes"] > 0
    timeline = next(s["ckpt"]["timeline"] for s in reversed(comms[0].states()) if "timeline" in s["ckpt"])
    assert [(t["seq"], t["cell_id"], t["source"], t["head"]) for t in timeline] == \
        [(1, "c1", "import tinygrad_nb as tg", False), (2, "c2", "gen = (i for i in range(3))", True)]
    assert timeline[1]["lost"] == ["gen"] and timeline[0]["lost"] == []
    ip.run_cell("%tg_replay #1..#2 --verify", store_history=False)
    state = comms[0].wait_for(lambda s: any(t["replay"] for t in s["ckpt"].get("timeline", [])), "replay verdicts")
    assert [t["replay"] for t in state["ckpt"]["timeline"]] == ["bitwise", "bitwise"]
    ip.run_cell("%tg_ckpt off", store_history=False)
    comms[0].wait_for(lambda s: s["ckpt"].get("enabled") is False, "checkpoints off")


def test_updates_are_throttled(lab_shell: Any, comms: list[RecordingComm]) -> None:
    ip = lab_shell
    lab = _lab(ip)
    cells = 0
    deadline = time.monotonic() + 60  # bounded: cells until four updates went out
    while len(comms[0].sent) < 4 and time.monotonic() < deadline:
        ip.run_cell(f"v{cells} = {cells}", store_history=True)
        cells += 1
    times = [t for t, _ in comms[0].sent]
    assert len(times) >= 4, (len(times), cells)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= lab.interval - 1e-3, gaps  # by construction: the thread sleeps out the interval
    assert len(times) < cells  # every cell changes the state; changes in between are merged into one update


def test_refresh_resends_everything_and_close_stops(lab_shell: Any, comms: list[RecordingComm]) -> None:
    ip = lab_shell
    lab = _lab(ip)
    ip.run_cell("a = 1", store_history=True)
    comms[0].wait_for(lambda s: "timeline" in s["ckpt"] and len(s["ckpt"]["timeline"]) == 1, "the timeline")
    count = len(comms[0].sent)
    comms[0].browser_sends({"type": "refresh"})
    comms[0].wait_for(lambda s: len(comms[0].sent) > count, "a resend")
    assert "timeline" in comms[0].states()[-1]["ckpt"]  # a reloaded page gets the timeline again
    comms[0].browser_closes()
    assert lab.closed and id(ip) not in lab_comm._active
    assert lab.post_run_cell not in ip.events.callbacks["post_run_cell"]
    assert lab._observer_added not in dispatch.observer_listeners
    assert lab._thread is not None
    lab._thread.join(timeout=10)
    assert not lab._thread.is_alive()
