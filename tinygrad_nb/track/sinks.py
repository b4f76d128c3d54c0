"""Sinks: where a run's metrics go. Each is a small class with ``write(batch)`` and ``close()``.

A :class:`Batch` is what a :class:`~tinygrad_nb.track.Run` hands its sinks at each flush: the run itself (id, name,
config, status...), an ``event`` ("start", "log", "epoch", "status" or "end"), the scalar records
``(step, wall_time, {name: float})`` and histogram records logged since the last flush. Write your own sink by
implementing the same two methods.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from . import tfevents
from .store import RunStore

if TYPE_CHECKING:
    from .run import Run


@dataclass
class HistRecord:
    """A histogram: ``counts`` (n) over ``edges`` (n + 1), plus the summary TensorBoard wants."""

    step: int
    time: float
    name: str
    counts: list[int]
    edges: list[float]
    min: float = 0.0
    max: float = 0.0
    num: float = 0.0
    sum: float = 0.0
    sum_squares: float = 0.0


@dataclass
class Batch:
    run: Run
    event: str = "log"
    scalars: list[tuple[int, float, dict[str, float]]] = field(default_factory=list)
    hists: list[HistRecord] = field(default_factory=list)
    epoch: dict[str, dict[str, float]] | None = None  # for event == "epoch": {metric: {mean, min, max, last}}
    columns: dict[str, tuple[list[int], list[float], list[float]]] | None = None  # scalars by name: steps, values,
    # times (filled for "log" batches; sinks may use it instead of ``scalars``)


def _number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4g}"


class StdoutSink:
    """One compact line per ``interval`` seconds: ``[run 1a2b3c4d] step 120  loss 0.2345  acc 0.91``.

    Also prints a line when the run starts, at every ``epoch_end()`` and when it ends.
    """

    def __init__(self, interval: float = 2.0, stream: IO[str] | None = None):
        self.interval = interval
        self.stream = stream
        self._last_print = -math.inf
        self._latest: dict[str, float] = {}
        self._step: int | None = None
        self._unprinted = False

    def _print(self, text: str) -> None:
        print(text, file=self.stream if self.stream is not None else sys.stdout, flush=True)

    def write(self, batch: Batch) -> None:
        run = batch.run
        tag = f"[run {run.id}]"
        if batch.event == "start":
            self._print(f"{tag} {run.name} started" + (f" (project {run.project})" if run.project else ""))
        if batch.event == "log":
            for step, _, values in batch.scalars:
                self._step = step
                self._latest.update(values)
                self._unprinted = True
        now = time.monotonic()
        if self._unprinted and now - self._last_print >= self.interval:
            self._last_print = now
            self._unprinted = False
            self._print(self._line(tag))
        if batch.event == "epoch" and batch.epoch:
            parts = [f"{name} {_number(s['mean'])} (min {_number(s['min'])}, max {_number(s['max'])})"
                     for name, s in batch.epoch.items()]
            self._print(f"{tag} epoch {run.epoch}  " + "  ".join(parts))
        elif batch.event == "end":
            if self._unprinted:
                self._print(self._line(tag))
            self._print(f"{tag} {run.status}" + (f" after {run.duration:.1f}s" if run.duration is not None else ""))

    def _line(self, tag: str) -> str:
        values = "  ".join(f"{k} {_number(v)}" for k, v in self._latest.items())
        return f"{tag} step {self._step}  {values}"

    def close(self) -> None:
        pass


class JSONLSink:
    """One JSON object per line: a ``start`` line (id, name, config...), ``log`` lines (step, time, metrics),
    ``hist`` lines, ``epoch`` lines and an ``end`` line with the final status. ``path`` may contain ``{run_id}``;
    the default is ``.tinygrad_nb/jsonl/{run_id}.jsonl`` under the current directory."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path_template = str(path) if path is not None else str(Path(".tinygrad_nb") / "jsonl" / "{run_id}.jsonl")
        self.path: Path | None = None
        self._file: IO[str] | None = None

    def _open(self, run: Run) -> IO[str]:
        if self._file is None:
            self.path = Path(self.path_template.format(run_id=run.id)).absolute()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        return self._file

    def write(self, batch: Batch) -> None:
        f = self._open(batch.run)
        run = batch.run
        lines = []
        if batch.event == "start":
            lines.append({"type": "start", "run_id": run.id, "name": run.name, "project": run.project,
                          "config": run.config, "fingerprint": run.fingerprint, "time": run.start_time})
        if batch.event != "epoch":  # the epoch line carries the aggregates itself
            for step, t, values in batch.scalars:
                lines.append({"type": "log", "step": step, "time": t, "metrics": values})
        for h in batch.hists:
            lines.append({"type": "hist", "step": h.step, "time": h.time, "name": h.name, "counts": h.counts,
                          "edges": h.edges})
        if batch.event == "epoch":
            lines.append({"type": "epoch", "epoch": run.epoch, "step": batch.scalars[0][0] if batch.scalars else None,
                          "metrics": batch.epoch})
        if batch.event in ("status", "end"):
            lines.append({"type": batch.event, "status": run.status, "time": run.end_time or time.time()})
        for line in lines:
            f.write(json.dumps(line, default=repr) + "\n")  # NaN/inf are written as JSON's NaN/Infinity
        f.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class StoreSink:
    """The SQLite run store (see :mod:`.store`): queues rows for the writer thread, never touches the disk itself."""

    def __init__(self, store: RunStore | str | os.PathLike[str] | None = None):
        self.store = store if isinstance(store, RunStore) else RunStore(store)

    def write(self, batch: Batch) -> None:
        run = batch.run
        if batch.event in ("start", "status", "end"):
            row = (run.id, run.name, run.project, run.status, run.start_time, run.end_time, run.fingerprint,
                   run.host, run.pid, getattr(run, "pid_start", None))
            self.store.write_run(row, run.config if batch.event == "start" else None)
        if batch.scalars:
            columns = batch.columns
            if columns is None:
                columns = {}
                for step, t, values in batch.scalars:
                    for name, value in values.items():
                        column = columns.setdefault(name, ([], [], []))
                        column[0].append(step)
                        column[1].append(value)
                        column[2].append(t)
            self.store.write_metrics(run.id, columns)
        if batch.hists:
            self.store.write_hists([(run.id, h.step, h.name, h.counts, h.edges, h.time) for h in batch.hists])

    def flush(self) -> None:
        self.store.flush()

    def close(self) -> None:
        self.store.flush()


class TensorBoardSink:
    """TensorBoard event files (no TensorFlow needed): scalars and histograms in ``<logdir>/<run id>/``."""

    def __init__(self, logdir: str | os.PathLike[str] = "runs", run_subdir: bool = True):
        self.logdir = Path(logdir)
        self.run_subdir = run_subdir
        self.writer: tfevents.EventFileWriter | None = None

    def write(self, batch: Batch) -> None:
        if self.writer is None:
            folder = self.logdir / batch.run.id if self.run_subdir else self.logdir
            self.writer = tfevents.EventFileWriter(folder)
        w = self.writer
        for step, t, values in batch.scalars:
            w.write(tfevents.encode_event(t, step, values=[tfevents.scalar_value(k, v) for k, v in values.items()]))
        for h in batch.hists:
            value = tfevents.histogram_value(h.name, h.counts, h.edges, h.min, h.max, h.num, h.sum, h.sum_squares)
            w.write(tfevents.encode_event(h.time, h.step, values=[value]))
        w.flush()

    @property
    def path(self) -> Path | None:
        return self.writer.path if self.writer is not None else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
