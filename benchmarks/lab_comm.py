"""What the JupyterLab comm (tinygrad_nb.notebook.lab_comm) costs a kernel, off and on.

    python benchmarks/lab_comm.py [--rounds 30] [--cells 200] [--steps 200]

Two loops, each timed in alternating rounds (off, on, on, off, ...; median of rounds) against a baseline measured in
the same run:

* cells: ``shell.run_cell("a = 1")`` in an in-process IPython shell with ``%load_ext tinygrad_nb`` loaded (cell
  checkpoints off, so the per-cell work is the event handlers) in three modes: no Lab comm at all (the baseline),
  the comm dormant (a kernel no Lab frontend attached to, e.g. nbclient in a Lab terminal: it must register nothing
  and send nothing), and a frontend attached (its pre/post_run_cell handlers run; the comm is a recording stand-in,
  so no socket is involved).
* steps: a training step (a 64-128-10 MLP forward + backward + SGD, plus ``run.log``) with a ``track.Run`` open,
  with the comm dormant, and attached, whose thread samples the run's step twice a second.
* the per-op hot path is untouched either way (the comm adds no observer); the number of messages sent in the
  "steps" loop, and the shortest gap between two, show the <= 2 updates/s throttle.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import comm as comm_package  # noqa: E402
import numpy as np  # noqa: E402

import tinygrad_nb as tg  # noqa: E402
from tinygrad_nb import dispatch, nn, optim, track  # noqa: E402
from tinygrad_nb.nn import functional as F  # noqa: E402
from tinygrad_nb.notebook import extension, lab_comm  # noqa: E402


class RecordingComm:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.comm_id = f"bench-{id(self)}"
        self._closed = False
        self.on_message: Any = None

    def on_msg(self, callback: Any) -> None:
        self.on_message = callback

    def on_close(self, callback: Any) -> None:
        pass

    def send(self, data: dict[str, Any]) -> None:
        self.times.append(time.monotonic())

    def close(self) -> None:
        pass


def make_shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell  # noqa: PLC0415
    from traitlets.config import Config  # noqa: PLC0415

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.kernel = object()  # what lab_comm.load checks: inside a kernel
    extension.load_ipython_extension(shell)
    from tinygrad_nb.notebook import cellckpt  # noqa: PLC0415

    cellckpt.recorder(shell).enabled = False  # measure the handlers, not checkpoint writes
    return shell


def open_comm(shell: Any, attach: bool) -> tuple[lab_comm.LabComm, RecordingComm]:
    """The dormant comm (``attach=False``: what every kernel gets) or one a frontend attached to (said hello)."""
    recording = RecordingComm()
    original = comm_package.create_comm
    comm_package.create_comm = lambda **kwargs: recording
    try:
        lab = lab_comm.load(shell)
    finally:
        comm_package.create_comm = original
    assert lab is not None
    if attach:
        recording.on_message({"content": {"data": {"type": "hello", "protocol": lab_comm.PROTOCOL}}})
        deadline = time.monotonic() + 30
        while not recording.times and time.monotonic() < deadline:  # the first (full) state: outside the timing
            time.sleep(0.005)
    return lab, recording


def make_step(run: track.Run) -> Any:
    rng = np.random.default_rng(0)
    x = tg.tensor(rng.standard_normal((64, 64)).astype(np.float32))
    y = tg.tensor(rng.integers(0, 10, 64))
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = optim.SGD(model.parameters(), lr=0.01)

    def step() -> None:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        run.log({"loss": loss})

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--cells", type=int, default=200, help="cells per round")
    parser.add_argument("--steps", type=int, default=200, help="training steps per round")
    args = parser.parse_args()
    shell = make_shell()
    observers_before = len(dispatch.observers)

    # 1. cells: absent / dormant / attached, in rotating rounds (the comm created/closed outside the timed part)
    lab_comm.unload(shell)
    callbacks = {e: list(shell.events.callbacks[e]) for e in ("pre_run_cell", "post_run_cell")}
    listeners = list(dispatch.observer_listeners)
    lab, recording = open_comm(shell, attach=False)  # zero cost when no frontend is attached: nothing registered
    assert {e: list(shell.events.callbacks[e]) for e in callbacks} == callbacks
    assert dispatch.observer_listeners == listeners and lab._thread is None
    for _ in range(20):
        shell.run_cell("a = 1", store_history=False)
    assert recording.times == []  # and nothing sent
    lab_comm.unload(shell)
    modes = ("absent", "dormant", "attached")
    cell_samples: dict[str, list[float]] = {m: [] for m in modes}
    sent_dormant = 0
    for r in range(args.rounds):
        for mode in modes[r % 3:] + modes[:r % 3]:
            lab, recording = open_comm(shell, attach=mode == "attached") if mode != "absent" else (None, None)
            start = time.perf_counter()
            for _ in range(args.cells):
                shell.run_cell("a = 1", store_history=False)
            cell_samples[mode].append((time.perf_counter() - start) / args.cells)
            if mode == "dormant":
                sent_dormant += len(recording.times)
            if lab is not None:
                lab_comm.unload(shell)
    absent, dormant, on = (statistics.median(cell_samples[m]) for m in modes)
    print(f"cell (run_cell 'a = 1'):  no Lab comm {absent * 1e6:8.1f} us   dormant {dormant * 1e6:8.1f} us "
          f"(ratio {dormant / absent:.3f}, {sent_dormant} messages)   frontend attached {on * 1e6:8.1f} us "
          f"(ratio {on / absent:.3f}, +{(on - absent) * 1e6:.1f} us per cell)")
    assert sent_dormant == 0
    assert len(dispatch.observers) == observers_before  # nothing on the op hot path

    # 2. training steps with a run open: comm dormant vs attached (its sampling thread), in alternating rounds (the
    # comm is created before and closed after each round, outside the timed part)
    samples: dict[str, list[float]] = {"dormant": [], "attached": []}
    times: list[float] = []
    gaps: list[float] = []  # between two messages of one comm (each round has its own)
    elapsed = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        run = track.Run(name="bench", store=Path(tmp) / "runs.db", fingerprint=False)
        step = make_step(run)
        for _ in range(5):
            step()
        for r in range(args.rounds):
            for mode in (("dormant", "attached") if r % 2 else ("attached", "dormant")):
                lab, recording = open_comm(shell, attach=mode == "attached")
                if mode == "attached":
                    lab.pre_run_cell(None)  # as inside a running cell: the thread samples every 0.5 s
                start = time.perf_counter()
                for _ in range(args.steps):
                    step()
                spent = time.perf_counter() - start
                samples[mode].append(spent / args.steps)
                if mode == "attached":
                    elapsed += spent
                    times += recording.times
                    gaps += [b - a for a, b in zip(recording.times, recording.times[1:])]
                else:
                    assert recording.times == []
                lab_comm.unload(shell)
        run.finish()
    without, with_comm = statistics.median(samples["dormant"]), statistics.median(samples["attached"])
    print(f"training step + run.log:  comm dormant {without * 1e3:8.3f} ms   frontend attached "
          f"{with_comm * 1e3:8.3f} ms   ratio {with_comm / without:.3f}")
    print(f"messages while training: {len(times)} in {elapsed:.1f} s; shortest gap "
          f"{min(gaps) if gaps else float('nan'):.3f} s (throttle: >= {lab_comm.INTERVAL} s)")


if __name__ == "__main__":
    main()
