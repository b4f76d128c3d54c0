"""``Run``: one tracked training run — id, config, fingerprint, status, and the metrics it logs.

    with track.Run(config={"lr": 0.1}) as run:          # status: running -> finished (failed on an exception)
        for epoch in range(3):
            for x, y in loader:
                ...
                run.log({"loss": loss, "acc": acc})      # floats, ints, numpy scalars or 0-d tensors
            run.epoch_end()                              # mean/min/max/last of each metric over the epoch

``log`` only appends to a list; values are converted to floats (``.item()`` on the GPU) at flush time, every
``flush_every`` records or ``flush_secs`` seconds, so a training loop on cuda does not wait for the GPU on every call.
At a flush the records go to the sinks (the run store by default; see :mod:`.sinks`). Logging a NaN or inf marks the
run's status "nan".
"""
from __future__ import annotations

import atexit
import math
import os
import secrets
import socket
import sys
import time
import weakref
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..tensor import Tensor
from ..owner import current_token
from .sinks import Batch, HistRecord, StoreSink
from .store import STATUSES, RunStore


class Run:
    """A tracked run. See the module docstring.

    ``store``: None for the default run store (``./.tinygrad_nb/runs.db``), a path or :class:`RunStore`, or False
    for none. ``sinks``: more sinks (StdoutSink, JSONLSink, TensorBoardSink, ...). ``model``: fingerprint its
    parameters too. ``fingerprint=False`` skips the fingerprint.
    """

    # What a replayed notebook cell cannot make again (see docs/cell_checkpoints.md, "Run-bound values")
    RUN_BOUND_FIELDS: ClassVar[dict[Any, str]] = {"id": "a random run id", "start_time": "wall-clock time", "end_time": "wall-clock time",
                        "_next_flush": "wall-clock time", "host": "the machine it ran on",
                        "pid": "the process it ran in", "pid_start": "the process it ran in"}

    def __init__(self, name: str | None = None, config: dict[str, Any] | None = None,
                 store: RunStore | str | os.PathLike[str] | bool | None = None, sinks: Sequence[Any] | None = None,
                 project: str | None = None, model: Any = None, fingerprint: bool = True, flush_every: int = 1000,
                 flush_secs: float = 1.0):
        self.id = secrets.token_hex(4)
        self.name = name or self.id
        self.project = project
        self.config = dict(config or {})
        self.status = "running"
        self.start_time = time.time()
        self.end_time: float | None = None
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.pid_start = current_token()  # tells a dead owner from a reused pid (see .owner)
        self.epoch = 0
        self.step = 0  # the step the next log() without step= gets
        self.flush_every = max(1, int(flush_every))
        self.flush_secs = flush_secs
        self.fingerprint = _fingerprint(model) if fingerprint else None
        self.sinks: list[Any] = list(sinks or [])
        if store is not False:
            self.store: RunStore | None = store if isinstance(store, RunStore) else \
                RunStore(None if store is None or store is True else store)
            self.sinks.insert(0, StoreSink(self.store))
        else:
            self.store = None
        self._pending: list[tuple[int, float, dict[str, Any]]] = []
        self._hists: list[HistRecord] = []
        self._next_flush = time.time() + flush_secs
        self._epoch_stats: dict[str, list[float]] = {}  # name -> [sum, count, min, max, last]
        self._closed = False
        _open_runs.add(self)
        _watch_uncaught_exceptions()
        self._emit(Batch(self, "start"))

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r}, status={self.status!r})"

    @property
    def duration(self) -> float | None:
        return None if self.end_time is None else self.end_time - self.start_time

    # -- logging --------------------------------------------------------------------------------------------------
    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Record scalar metrics at ``step`` (default: one more than the last step logged)."""
        if self._closed:
            raise RuntimeError(f"run {self.id} is {self.status}; start a new Run to log more")
        if step is None:
            step = self.step
        self.step = step + 1
        values = dict(metrics)
        for key, value in values.items():
            if value.__class__ is not float and value.__class__ is not int:
                values[key] = _defer(key, value)
        now = time.time()
        pending = self._pending
        pending.append((step, now, values))
        if now >= self._next_flush or len(pending) >= self.flush_every:
            self._flush_pending()

    def log_hist(self, name: str, values: Any, step: int | None = None, bins: int = 30) -> None:
        """Record a histogram of a tensor/array (``bins`` buckets over its finite range) at ``step`` (default: the
        last step logged). Computed now, on the tensor's device."""
        if self._closed:
            raise RuntimeError(f"run {self.id} is {self.status}; start a new Run to log more")
        from ..debug.stats import histogram, to_numpy  # noqa: PLC0415

        data = getattr(values, "data", values)
        xp = getattr(getattr(values, "device", None), "xp", None) or np
        if not hasattr(data, "dtype"):
            data = np.asarray(data, dtype=np.float64)
        flat = data.reshape(-1).astype(xp.float64)
        finite = flat[xp.isfinite(flat)]
        if finite.size == 0:
            counts, edges, lo, hi, total, squares = [0] * bins, [0.0] * (bins + 1), 0.0, 0.0, 0.0, 0.0
        else:
            lo, hi = float(finite.min()), float(finite.max())
            counts, edges = histogram(finite, lo, hi, xp, bins)
            total, squares = float(to_numpy(finite.sum())), float(to_numpy((finite * finite).sum()))
        stats = {"min": lo, "max": hi, "count": int(finite.size), "sum": total, "sum_squares": squares}
        self.log_hist_counts(name, counts, edges, step, stats)

    def log_hist_counts(self, name: str, counts: Sequence[int], edges: Sequence[float], step: int | None = None,
                        stats: dict[str, Any] | None = None) -> None:
        """Record an already computed histogram (``len(edges) == len(counts) + 1``)."""
        if len(edges) != len(counts) + 1:
            raise ValueError(f"log_hist_counts({name!r}): {len(counts)} counts need {len(counts) + 1} edges, got "
                             f"{len(edges)}")
        stats = stats or {}
        num = float(stats.get("count", sum(counts)))
        centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
        total = float(stats.get("sum", sum(c * x for c, x in zip(counts, centers))))
        squares = float(stats.get("sum_squares", sum(c * x * x for c, x in zip(counts, centers))))
        self._hists.append(HistRecord(self.step - 1 if step is None else step, time.time(), name,
                                      [int(c) for c in counts], [float(e) for e in edges],
                                      float(stats.get("min", edges[0])), float(stats.get("max", edges[-1])), num,
                                      total, squares))
        if len(self._hists) >= 100:
            self._flush_pending()

    def epoch_end(self) -> dict[str, dict[str, float]]:
        """Aggregate each metric logged since the last ``epoch_end`` (mean, min, max, last), log the aggregates as
        ``<name>/epoch_mean``, ``<name>/epoch_min``, ... at the last logged step, and return them."""
        self._flush_pending()
        summary = {name: {"mean": s / n if n else math.nan, "min": lo, "max": hi, "last": last}
                   for name, (s, n, lo, hi, last) in self._epoch_stats.items()}
        self._epoch_stats = {}
        if summary:
            record = {f"{name}/epoch_{k}": v for name, s in summary.items() for k, v in s.items()}
            self._emit(Batch(self, "epoch", scalars=[(max(self.step - 1, 0), time.time(), record)], epoch=summary))
        self.epoch += 1
        return summary

    # -- flushing -------------------------------------------------------------------------------------------------
    def _flush_pending(self) -> None:
        """Convert pending values to floats, group them per metric, update the epoch statistics, and hand everything
        to the sinks."""
        self._next_flush = time.time() + self.flush_secs
        pending, self._pending = self._pending, []
        hists, self._hists = self._hists, []
        if not pending and not hists:
            return
        columns: dict[str, tuple[list[int], list[float], list[float]]] = {}
        for step, t, values in pending:
            for name, value in values.items():
                if value.__class__ is not float:
                    value = values[name] = _to_float(value)
                column = columns.get(name)
                if column is None:
                    column = columns[name] = ([], [], [])
                column[0].append(step)
                column[1].append(value)
                column[2].append(t)
        saw_nonfinite = False
        for name, (_, values_list, _) in columns.items():
            array = np.array(values_list, dtype=np.float64)
            finite = bool(np.isfinite(array).all())
            lo, hi = (array.min(), array.max()) if finite else (np.nanmin(array, initial=math.inf),
                                                                 np.nanmax(array, initial=-math.inf))
            saw_nonfinite = saw_nonfinite or not finite
            s = self._epoch_stats.get(name)
            if s is None:
                self._epoch_stats[name] = [float(array.sum()), array.size, float(lo), float(hi), values_list[-1]]
            else:
                s[0] += float(array.sum())
                s[1] += array.size
                s[2] = min(s[2], float(lo))
                s[3] = max(s[3], float(hi))
                s[4] = values_list[-1]
        self._emit(Batch(self, "log", scalars=pending, hists=hists, columns=columns))
        if saw_nonfinite and self.status == "running":
            self.status = "nan"
            self._emit(Batch(self, "status"))

    def flush(self) -> None:
        """Send everything logged so far to the sinks and wait until the run store has committed it."""
        self._flush_pending()
        for sink in self.sinks:
            flush = getattr(sink, "flush", None)
            if flush is not None:
                flush()

    def _emit(self, batch: Batch) -> None:
        for sink in self.sinks:
            sink.write(batch)

    # -- ending ---------------------------------------------------------------------------------------------------
    def finish(self, status: str | None = None) -> None:
        """End the run: flush, set the final status (finished, or nan if a NaN was logged) and close the sinks."""
        if self._closed:
            return
        if status is not None and status not in STATUSES:
            raise ValueError(f"finish: status must be one of {STATUSES}, got {status!r}")
        self._flush_pending()
        self.status = status or ("nan" if self.status == "nan" else "finished")
        self.end_time = time.time()
        self._closed = True
        _open_runs.discard(self)
        self._emit(Batch(self, "end"))
        for sink in self.sinks:
            sink.close()

    close = finish

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.finish()
        elif issubclass(exc_type, FloatingPointError):  # NonFiniteError from the tracer or a guard
            self.finish("nan")
        else:
            self.finish("failed")


def _defer(key: str, value: Any) -> Any:
    """Make a logged value safe to keep until flush: floats now when that is free, device arrays otherwise."""
    if isinstance(value, Tensor):  # keep only its array, never the graph
        data = value.data
        if getattr(data, "size", 1) != 1:
            raise ValueError(f"log: {key!r} is a tensor of shape {tuple(data.shape)}; log scalars (or use "
                             "log_hist for tensors)")
        return float(data.item()) if isinstance(data, np.ndarray) else data
    if isinstance(value, (float, int, np.number, np.bool_)):
        return float(value)
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"log: {key!r} is an array of shape {value.shape}; log scalars")
        return float(value.reshape(()))
    if hasattr(value, "__cuda_array_interface__"):
        return value  # a cupy scalar array: read back at flush time
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"log: {key!r} must be a number or a one-element tensor, got {type(value).__name__}") from None


def _to_float(value: Any) -> float:
    if hasattr(value, "item"):
        return float(value.item())
    return float(value)


def _fingerprint(model: Any) -> dict[str, Any] | None:
    from ..fingerprint import fingerprint  # noqa: PLC0415 - loaded when a run starts, not when track is imported

    try:
        return fingerprint(model).to_dict()
    except Exception:  # noqa: BLE001 - a fingerprint problem must never stop a run from starting
        return None


# -- runs still open at exit ----------------------------------------------------------------------------------------
_open_runs: weakref.WeakSet[Run] = weakref.WeakSet()
_uncaught = False
_previous_excepthook: Any = None


def active_runs() -> list[Run]:
    """The runs of this process that are not finished yet (the JupyterLab status bar samples their step)."""
    return list(_open_runs)


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    global _uncaught
    _uncaught = True
    _previous_excepthook(exc_type, exc, tb)


def _watch_uncaught_exceptions() -> None:
    """Chain sys.excepthook once, so runs left open by a crashing script are marked failed at exit."""
    global _previous_excepthook
    if _previous_excepthook is None:
        _previous_excepthook = sys.excepthook
        sys.excepthook = _excepthook


@atexit.register
def _finish_open_runs() -> None:
    """Runs never finished by the script end with it: failed after an uncaught exception, else finished."""
    for run in list(_open_runs):
        try:
            run.finish("failed" if _uncaught else None)
        except Exception:  # noqa: BLE001 - at exit there is nobody left to tell
            pass
