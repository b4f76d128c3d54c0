"""What the JupyterLab comm (tinygrad_nb.notebook.lab_comm) costs a kernel, off and on.

    python benchmarks/lab_comm.py [--rounds 30] [--cells 200] [--steps 200]

Two loops, each timed in alternating rounds (off, on, on, off, ...; median of rounds) against a baseline measured in
the same run:

* cells: ``shell.run_cell("a = 1")`` in an in-process IPython shell with ``%load_ext tinygrad_nb`` loaded (cell
  checkpoints off, so the per-cell work is the event handlers), first as a kernel started without the Lab extension
  (``TINYGRAD_NB_LAB_COMM`` unset: ``lab_comm.load`` returns at once and registers nothing), then with the comm open
  (its pre/post_run_cell handlers run; the comm is a recording stand-in, so no socket is involved).
* steps: a training step (a 64-128-10 MLP forward + backward + SGD, plus ``run.log``) with a ``track.Run`` open,
  without the comm, and with the comm open, whose thread samples the run's step twice a second.
* the per-op hot path is untouched either way (the comm adds no observer); the number of messages sent in the
  "steps" loop, and the shortest gap between two, show the <= 2 updates/s throttle.
"""
from __future__ import annotations

import argparse
import os
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

    def on_msg(self, callback: Any) -> None:
        pass

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
    shell.kernel = object()  # what lab_comm.load checks besides the environment
    os.environ.pop(lab_comm.COMM_ENV, None)
    extension.load_ipython_extension(shell)
    from tinygrad_nb.notebook import cellckpt  # noqa: PLC0415

    cellckpt.recorder(shell).enabled = False  # measure the handlers, not checkpoint writes
    return shell


def open_comm(shell: Any) -> tuple[lab_comm.LabComm, RecordingComm]:
    recording = RecordingComm()
    original = comm_package.create_comm
    comm_package.create_comm = lambda **kwargs: recording
    os.environ[lab_comm.COMM_ENV] = "1"
    try:
        lab = lab_comm.load(shell)
    finally:
        comm_package.create_comm = original
    assert lab is not None
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

    # 1. cells: off (no env var) vs on, in alternating rounds (the comm opened/closed outside the timed part)
    assert lab_comm.load(shell) is None  # off: returns at once, registers nothing
    cell_samples: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(20):
        shell.run_cell("a = 1", store_history=False)
    for r in range(args.rounds):
        for mode in (("off", "on") if r % 2 else ("on", "off")):
            lab = open_comm(shell)[0] if mode == "on" else None
            start = time.perf_counter()
            for _ in range(args.cells):
                shell.run_cell("a = 1", store_history=False)
            cell_samples[mode].append((time.perf_counter() - start) / args.cells)
            if lab is not None:
                lab.close()
    off, on = statistics.median(cell_samples["off"]), statistics.median(cell_samples["on"])
    print(f"cell (run_cell 'a = 1'):  Lab extension absent {off * 1e6:8.1f} us   comm open {on * 1e6:8.1f} us   "
          f"ratio {on / off:.3f}  (+{(on - off) * 1e6:.1f} us per cell)")
    assert len(dispatch.observers) == observers_before  # nothing on the op hot path

    # 2. training steps with a run open: without vs with the comm's sampling thread, in alternating rounds (the
    # comm is opened before and closed after each "on" round, outside the timed part)
    samples: dict[str, list[float]] = {"off": [], "on": []}
    times: list[float] = []
    elapsed = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        run = track.Run(name="bench", store=Path(tmp) / "runs.db", fingerprint=False)
        step = make_step(run)
        for _ in range(5):
            step()
        for r in range(args.rounds):
            for mode in (("off", "on") if r % 2 else ("on", "off")):
                lab = None
                if mode == "on":
                    lab, recording = open_comm(shell)
                    lab.pre_run_cell(None)  # as inside a running cell: the thread samples every 0.5 s
                start = time.perf_counter()
                for _ in range(args.steps):
                    step()
                spent = time.perf_counter() - start
                samples[mode].append(spent / args.steps)
                if lab is not None:
                    elapsed += spent
                    lab.close()
                    times += recording.times
                    recording.times = []
        run.finish()
    without, with_comm = statistics.median(samples["off"]), statistics.median(samples["on"])
    gaps = [b - a for a, b in zip(times, times[1:]) if b - a < 5.0]  # gaps inside one round
    print(f"training step + run.log:  no comm {without * 1e3:8.3f} ms   comm open {with_comm * 1e3:8.3f} ms   "
          f"ratio {with_comm / without:.3f}")
    print(f"messages while training: {len(times)} in {elapsed:.1f} s; shortest gap "
          f"{min(gaps) if gaps else float('nan'):.3f} s (throttle: >= {lab_comm.INTERVAL} s)")


if __name__ == "__main__":
    main()
