"""The kernel side of the JupyterLab extension (tinygrad_nb.notebook.lab_comm), in an in-process IPython shell with
a recording comm in place of ipykernel's: a dormant comm (listed for comm_info, silent, no handler, no thread) until
a frontend says hello, whatever the environment; then the state it sends (device, NaN event with cell and line,
training step of a run or of fit() without one, checkpoint HEAD and timeline), tools armed for one cell run unmodified
(the reported line is the user's), the throttle (no two updates closer than the interval), refresh, and closing from
the browser side (back to dormant)."""
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

    def __init__(self, target_name: str, primary: bool):
        self.target_name = target_name
        self.primary = primary  # True would mean the kernel announced it (comm_open): never for ours
        self.comm_id = f"recording-{id(self)}"
        self._closed = False
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

    def create_comm(target_name: str = "", data: dict[str, Any] | None = None, primary: bool = True,
                    **kwargs: Any) -> Any:
        if target_name != lab_comm.TARGET:  # widgets' comms: not ours
            return original(target_name=target_name, data=data, primary=primary, **kwargs)
        made.append(RecordingComm(target_name, primary))
        return made[-1]

    monkeypatch.setattr(comm_package, "create_comm", create_comm)
    return made


def _listed(comm: RecordingComm) -> bool:
    """Whether the kernel's comm manager lists ``comm`` (what a comm_info_request answers from)."""
    return comm_package.get_comm_manager().comms.get(comm.comm_id) is comm


@pytest.fixture
def lab_shell(ipython: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              comms: list[RecordingComm]) -> Iterator[Any]:
    """A recording shell inside a "kernel", with a Lab frontend attached (it found the comm and said hello)."""
    monkeypatch.setattr(ipython, "kernel", object(), raising=False)
    monkeypatch.chdir(tmp_path)
    for ip in recording_shell(ipython, tmp_path):
        assert len(comms) == 1 and comms[0].sent == []
        comms[0].browser_sends({"type": "hello", "protocol": 2})
        yield ip


def _lab(ip: Any) -> lab_comm.LabComm:
    lab = lab_comm._active.get(id(ip))
    assert lab is not None
    return lab


def _fit_a_little(ip: Any, seen: list[Any], run: str = "None") -> None:
    """Run fit() (2 epochs of 4 batches) in a cell; ``seen`` gets what ``probe()`` returns at each step."""
    ip.user_ns["probe_results"] = seen
    result = ip.run_cell(f"""
import numpy as np
import tinygrad_nb as tg
from tinygrad_nb import nn, optim
from tinygrad_nb.nn import functional as F
from tinygrad_nb.notebook.fit import fit
rng = np.random.default_rng(0)
batches = [(tg.tensor(rng.standard_normal((8, 4)).astype(np.float32)), tg.tensor(rng.integers(0, 3, 8)))
           for _ in range(4)]
model = nn.Linear(4, 3)
def probe(out, y):
    probe_results.append(probe_now())
    return 0.0
history = fit(model, batches, F.cross_entropy, optim.SGD(model.parameters(), lr=0.1), epochs=2, metrics=[probe],
              show=False, run={run})
""", store_history=True)
    assert result.success, result.error_in_exec


def test_dormant_until_a_frontend_says_hello(ipython: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             comms: list[RecordingComm]) -> None:
    """A kernel nobody with the Lab extension looks at (nbclient in a Lab terminal: any environment) sends nothing:
    the comm exists only in the comm manager's list, with no handler, no thread, no observer, no fit() counter."""
    monkeypatch.setattr(ipython, "kernel", object(), raising=False)
    monkeypatch.chdir(tmp_path)
    listeners = list(dispatch.observer_listeners)
    shells = recording_shell(ipython, tmp_path)
    ip = next(shells)
    try:
        lab = _lab(ip)
        assert len(comms) == 1 and comms[0].primary is False and _listed(comms[0])  # no comm_open was sent
        assert lab_comm.load(ip) is lab and len(comms) == 1
        assert not any(getattr(f, "__self__", None).__class__ is lab_comm.LabComm for e in ("pre_run_cell",
                       "post_run_cell") for f in ip.events.callbacks[e])
        assert not any(getattr(f, "__self__", None).__class__ is lab_comm.LabComm for f in dispatch.observer_listeners)
        assert len(dispatch.observer_listeners) == len(listeners) + 1  # only cell ownership's
        ip.run_cell("import tinygrad_nb as tg\nfrom tinygrad_nb.debug import detect_anomaly", store_history=True)
        ip.run_cell("with detect_anomaly(strict=False):\n    y = tg.tensor([-1.0]).log()", store_history=True)
        ip.user_ns["probe_now"] = lambda: (lab_comm._loops[:], lab_comm._attached)
        seen: list[Any] = []
        _fit_a_little(ip, seen)
        assert seen and all(s == ([], 0) for s in seen)  # fit() asked, and got no counter: one check per fit
        comms[0].browser_sends({"type": "arm", "tool": "nantrace", "cell_id": "x"})  # ignored before hello
        assert lab._armed is None
        time.sleep(lab_comm.IDLE_INTERVAL * 0.25)
        assert comms[0].sent == [] and not lab.attached and lab._thread is None
        assert not any(t.name == "tinygrad_nb-lab-comm" for t in threading.enumerate())
    finally:
        next(shells, None)
    assert comms[0].sent == [] and comms[0].closed is False  # unloaded: unregistered without a comm_close
    assert not _listed(comms[0]) and comms[0]._closed is True  # and its __del__ will not send one either


def test_no_comm_outside_a_kernel(ipython: Any, monkeypatch: pytest.MonkeyPatch, comms: list[RecordingComm]) -> None:
    monkeypatch.setattr(ipython, "kernel", None, raising=False)
    assert lab_comm.load(ipython) is None and comms == []


def test_hello_attaches_and_sends_the_whole_state(lab_shell: Any, comms: list[RecordingComm]) -> None:
    lab = _lab(lab_shell)
    assert lab.attached and lab_comm._attached == 1
    assert lab.pre_run_cell in lab_shell.events.callbacks["pre_run_cell"]
    first = comms[0].wait_for(lambda s: True, "the first state")
    assert first["device"]["name"] == "cpu" and first["nan"] == {"armed": False, "count": 0, "last": None}
    assert "timeline" in first["ckpt"] or first["ckpt"].get("commits") is None


def test_state_reports_nan_event_with_cell_and_line(lab_shell: Any, comms: list[RecordingComm]) -> None:
    ip = lab_shell
    assert len(comms) == 1 and comms[0].target_name == "tinygrad_nb.lab"
    result = ip.run_cell("import tinygrad_nb as tg", store_history=True, cell_id="cell-a")
    source = "%%tg_nantrace --text\nx = tg.tensor([1.0, -1.0])\ny = x.log()\nz = y * 2"
    result = ip.run_cell(source, store_history=True, cell_id="cell-b")
    assert result.success
    state = comms[0].wait_for(lambda s: (s["nan"]["last"] or {}).get("cell_id") is not None, "a NaN event")
    last = state["nan"]["last"]
    # typed by the user with the magic line: line 3 of what they see
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


def test_refresh_resends_everything_and_close_goes_dormant(lab_shell: Any, comms: list[RecordingComm]) -> None:
    ip = lab_shell
    lab = _lab(ip)
    ip.run_cell("a = 1", store_history=True)
    comms[0].wait_for(lambda s: "timeline" in s["ckpt"] and len(s["ckpt"]["timeline"]) == 1, "the timeline")
    count = len(comms[0].sent)
    comms[0].browser_sends({"type": "refresh"})
    comms[0].wait_for(lambda s: len(comms[0].sent) > count, "a resend")
    assert "timeline" in comms[0].states()[-1]["ckpt"]  # a reloaded page gets the timeline again
    thread = lab._thread
    comms[0].browser_closes()  # (ipykernel's comm manager drops the comm before calling this)
    assert not lab.closed and not lab.attached and lab_comm._active.get(id(ip)) is lab and lab_comm._attached == 0
    assert lab.post_run_cell not in ip.events.callbacks["post_run_cell"]
    assert lab._observer_added not in dispatch.observer_listeners
    assert thread is not None
    thread.join(timeout=10)
    assert not thread.is_alive()
    # dormant again, with a fresh comm for the next frontend; silent until it says hello
    assert len(comms) == 2 and comms[1].primary is False and _listed(comms[1]) and lab.comm is comms[1]
    ip.run_cell("b = 2", store_history=True)
    time.sleep(lab.interval * 1.5)
    assert comms[1].sent == []
    comms[1].browser_sends({"type": "hello", "protocol": 2})
    comms[1].wait_for(lambda s: s["ckpt"].get("head") == 2, "the state after a new hello")


def _nan_cell(ip: Any, cell_id: str) -> Any:
    """The user's cell: NaN appears on its line 2 (y = x.log())."""
    return ip.run_cell("x = tg.tensor([1.0, -1.0])\ny = x.log()\nz = y * 2", store_history=True, cell_id=cell_id)


def test_armed_nan_tracer_reports_the_users_own_line(lab_shell: Any, comms: list[RecordingComm],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The "Run Cell with the NaN Tracer" command: arm through the comm, then the cell runs unmodified; the table it
    prints, the status bar's state and the jump target all say line 2, the user's line."""
    ip = lab_shell
    lab = _lab(ip)
    ip.run_cell("import tinygrad_nb as tg", store_history=True, cell_id="imports")
    capsys.readouterr()
    comms[0].browser_sends({"type": "arm", "tool": "nantrace", "cell_id": "cell-b"})
    result = _nan_cell(ip, "cell-b")
    assert result.success
    printed = capsys.readouterr().out
    n = result.execution_count
    assert "NaN/inf started in 1 op" in printed and f"cell [{n}], line 2" in printed, printed
    assert "line 3" not in printed
    # (an update sent while the cell ran may lack the cell id: it is known when the cell ends)
    state = comms[0].wait_for(lambda s: (s["nan"]["last"] or {}).get("cell_id") is not None, "a NaN event")
    last = state["nan"]["last"]
    assert (last["op"], last["phase"], last["cell"], last["line"], last["cell_id"]) == ("Log", "forward", n, 2,
                                                                                          "cell-b")
    assert last["where"] == f"cell [{n}], line 2" and state["nan"]["count"] == 1
    assert state["nan"]["armed"] is False and lab._tool is None  # the tracer was for that one run
    timeline = next(s["ckpt"]["timeline"] for s in reversed(comms[0].states()) if "timeline" in s["ckpt"])
    assert timeline[-1]["source"] == "x = tg.tensor([1.0, -1.0])"  # the checkpoint records the cell as written
    # run again without arming: no tracer, nothing printed, the count stays
    result = _nan_cell(ip, "cell-b")
    assert result.success and "NaN/inf" not in capsys.readouterr().out
    time.sleep(lab.interval * 1.5)
    assert lab.state()["nan"]["count"] == 1


def test_an_arm_for_another_cell_is_dropped(lab_shell: Any, comms: list[RecordingComm],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    ip = lab_shell
    lab = _lab(ip)
    ip.run_cell("import tinygrad_nb as tg", store_history=True, cell_id="imports")
    comms[0].browser_sends({"type": "arm", "tool": "nantrace", "cell_id": "not-this-one"})
    ip.run_cell("%tg_ckpt on", store_history=False)  # a command's magic (no cell id) leaves the arm in place
    assert lab._armed == {"tool": "nantrace", "cell_id": "not-this-one"}
    capsys.readouterr()
    assert _nan_cell(ip, "cell-c").success
    assert "NaN/inf" not in capsys.readouterr().out and lab._armed is None
    assert lab.state()["nan"]["count"] == 0
    with pytest.raises(ValueError, match=r"unknown tool 'gdb' in an arm message; expected one of nantrace, profile"):
        comms[0].browser_sends({"type": "arm", "tool": "gdb", "cell_id": "cell-c"})


def test_armed_profile_prints_the_per_op_table(lab_shell: Any, comms: list[RecordingComm],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    ip = lab_shell
    ip.run_cell("import tinygrad_nb as tg", store_history=True, cell_id="imports")
    capsys.readouterr()
    comms[0].browser_sends({"type": "arm", "tool": "profile", "cell_id": "prof"})
    result = ip.run_cell("a = tg.ones(4, 4)\nb = (a @ a).exp()\nb.sum().item()", store_history=True, cell_id="prof")
    assert result.success and result.result == pytest.approx(16 * float(__import__("numpy").exp(4.0)), rel=1e-5)
    printed = capsys.readouterr().out
    ip.run_cell("from tinygrad_nb import profile\nwith profile() as p:\n    b = (a @ a).exp()\n    b.sum().item()\n"
                "print(p.summary(sort_by='total'))", store_history=True)
    expected = capsys.readouterr().out
    ops = [line.split()[0] for line in expected.splitlines() if line.strip()][2:]
    assert ops and all(op in printed for op in ops), (printed, expected)  # the same ops as %%tg_profile's table
    comms[0].browser_sends({"type": "arm", "tool": "profile", "cell_id": "prof"})
    capsys.readouterr()
    ip.run_cell("b = a.exp()", store_history=True, cell_id="prof")
    assert "Exp" in capsys.readouterr().out


def test_fit_without_a_run_reports_steps(lab_shell: Any, comms: list[RecordingComm]) -> None:
    ip = lab_shell
    lab = _lab(ip)
    ip.user_ns["probe_now"] = lambda: (lab.state()["training"], time.sleep(0.01))[0]
    seen: list[Any] = []
    _fit_a_little(ip, seen)
    assert len(seen) == 8
    # probe runs inside step i (0-based over both epochs), before the loop counts it: step == i
    assert [(t["name"], t["run_id"], t["step"], t["status"], t["store"]) for t in seen] == \
        [("fit", None, i, "running", None) for i in range(8)]
    assert seen[-1]["steps_per_s"] is not None and seen[-1]["steps_per_s"] > 0
    assert lab.state()["training"] is None and lab_comm._loops == []  # finished
    comms[0].wait_for(lambda s: (s["training"] or {}).get("name") == "fit" or s["training"] is None, "an update")


def test_fit_with_a_run_reports_the_run(lab_shell: Any, comms: list[RecordingComm], tmp_path: Path) -> None:
    ip = lab_shell
    lab = _lab(ip)
    ip.user_ns["probe_now"] = lambda: (lab.state()["training"], list(lab_comm._loops))
    ip.user_ns["the_run"] = track.Run(name="tracked", store=tmp_path / "runs.db")
    seen: list[Any] = []
    try:
        _fit_a_little(ip, seen, run="the_run")
    finally:
        ip.user_ns["the_run"].finish()
    assert len(seen) == 8 and all(loops == [] for _, loops in seen)  # no second counter next to the run
    assert [t["name"] for t, _ in seen] == ["tracked"] * 8 and seen[-1][0]["run_id"] == ip.user_ns["the_run"].id


def test_a_real_kernel_is_silent_until_a_frontend_attaches(tmp_path: Path) -> None:
    """End to end with ipykernel's own comm manager, as nbclient (or the Lab extension) talks to a kernel: after
    %load_ext, a NaN and a fit(), not one comm message on iopub; comm_info lists the dormant comm; after hello the
    state comes, and a tool armed for a cell id reports the user's line 2."""
    from jupyter_client.manager import KernelManager  # noqa: PLC0415

    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)

        def execute(code: str, cell_id: str | None = None) -> list[dict[str, Any]]:
            """Run ``code``; every iopub message up to its idle status (bounded)."""
            msg = kc.session.msg("execute_request", {"code": code, "silent": False, "store_history": True,
                                                     "user_expressions": {}, "allow_stdin": False})
            if cell_id:
                msg["metadata"]["cellId"] = cell_id
            kc.shell_channel.send(msg)
            return _iopub_until(kc, lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                                and m["parent_header"].get("msg_id") == msg["header"]["msg_id"])

        seen = execute("%load_ext tinygrad_nb\nimport tinygrad_nb as tg\nfrom tinygrad_nb.debug import detect_anomaly")
        seen += execute("with detect_anomaly(strict=False):\n    y = tg.tensor([-1.0]).log()")
        seen += execute("from tinygrad_nb import nn, optim\nfrom tinygrad_nb.nn import functional as F\n"
                        "from tinygrad_nb.notebook.fit import fit\nm = nn.Linear(2, 2)\n"
                        "h = fit(m, [(tg.ones(4, 2), tg.tensor([0, 1, 0, 1]))] * 3, F.cross_entropy, "
                        "optim.SGD(m.parameters(), lr=0.1), show=False)")
        errors = [m["content"] for m in seen if m["msg_type"] == "error"]
        assert errors == []
        assert [m["msg_type"] for m in seen if m["msg_type"].startswith("comm_")] == []
        time.sleep(lab_comm.IDLE_INTERVAL * 0.5)
        later = []
        while kc.iopub_channel.msg_ready():
            later.append(kc.get_iopub_msg(timeout=1))
        assert [m["msg_type"] for m in later if m["msg_type"].startswith("comm_")] == []

        reply = kc.comm_info(target_name=lab_comm.TARGET, reply=True, timeout=30)["content"]
        assert reply["status"] == "ok" and [c["target_name"] for c in reply["comms"].values()] == [lab_comm.TARGET]
        comm_id = next(iter(reply["comms"]))

        def comm_send(data: dict[str, Any]) -> None:
            kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data}))

        comm_send({"type": "hello", "protocol": lab_comm.PROTOCOL})
        state = _iopub_until(kc, lambda m: m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id)
        state = state[-1]["content"]["data"]
        assert state["type"] == "state" and state["state"]["device"]["name"] == "cpu"
        comm_send({"type": "arm", "tool": "nantrace", "cell_id": "cell-nan"})
        seen = execute("x = tg.tensor([1.0, -1.0])\ny = x.log()\nz = y.sum()", cell_id="cell-nan")
        printed = "".join(m["content"]["text"] for m in seen if m["msg_type"] == "stream")
        count = next(m["content"]["execution_count"] for m in seen if m["msg_type"] == "execute_input")
        assert "NaN/inf started in 1 op" in printed and f"cell [{count}], line 2:  y = x.log()" in printed, printed

        def names_line_2(m: dict[str, Any]) -> bool:
            ours = m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id  # (not the NaNTracer widget's)
            last = ours and m["content"]["data"]["state"]["nan"]["last"]
            return bool(last) and last["cell_id"] == "cell-nan"

        found = [m for m in seen if names_line_2(m)] or _iopub_until(kc, names_line_2, limit=10.0)
        last = found[-1]["content"]["data"]["state"]["nan"]["last"]
        assert (last["op"], last["cell"], last["line"], last["where"]) == ("Log", count, 2, f"cell [{count}], line 2")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _iopub_until(kc: Any, done: Any, limit: float = 60.0) -> list[dict[str, Any]]:
    """iopub messages until one satisfies ``done`` (included); bounded by ``limit`` seconds."""
    import queue  # noqa: PLC0415

    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=0.5)
        except queue.Empty:
            continue
        out.append(msg)
        if done(msg):
            return out
    raise AssertionError(f"no such iopub message within {limit} s; got {[m['msg_type'] for m in out][-10:]}")
