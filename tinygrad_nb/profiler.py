"""The op profiler: ``with tinygrad_nb.profile() as prof:``.

It is a dispatch observer (see :mod:`tinygrad_nb.dispatch`): for every forward op and backward node it records the
wall time (``perf_counter_ns``; on cuda the stream is synchronized before and after the op, so the time is the op's
and not the launch's), the phase, the input shapes and the bytes of newly allocated outputs. User regions
(``prof.region("forward")``, or :func:`region` anywhere while a profile is active) nest around the ops.

* ``prof.summary(sort_by="total")``: a text table (op, calls, total ms, mean us, % of time).
* ``prof.export_chrome_trace(path)``: Trace Event JSON for Perfetto / chrome://tracing.
* ``every=N`` times one call in N of each op (the first, the N+1-th, ...). Calls are still counted exactly; total
  and % are estimated as mean x calls, and only timed calls appear in the trace.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from . import dispatch
from .dispatch import ObserverHandle, OpEvent
from .io import atomic_write
from .tables import html_note, html_table, text_lines

_active: list[Profile] = []  # profiles currently recording, innermost last


@dataclass
class OpRecord:
    """One timed op call. Times are ns since the profile started."""

    # What a replayed notebook cell cannot make again (see docs/cell_checkpoints.md, "Run-bound values")
    RUN_BOUND_FIELDS: ClassVar[dict[Any, str]] = {"start_ns": "a measured time", "dur_ns": "a measured time"}

    op: str
    phase: str
    start_ns: int
    dur_ns: int
    shapes: list[tuple[int, ...]]
    bytes: int
    device: str


@dataclass
class RegionRecord:
    RUN_BOUND_FIELDS: ClassVar[dict[Any, str]] = {"start_ns": "a measured time", "dur_ns": "a measured time"}

    name: str
    start_ns: int
    dur_ns: int = 0
    depth: int = 0


@dataclass
class SummaryRow:
    RUN_BOUND_FIELDS: ClassVar[dict[Any, str]] = {"total_ms": "a measured time", "mean_us": "a measured time", "percent": "a measured time"}

    op: str
    calls: int
    timed: int
    total_ms: float
    mean_us: float
    percent: float
    bytes: int = 0


@dataclass
class Summary:
    """What :meth:`Profile.summary` returns: ``rows`` plus a text table as its ``str``/``repr``."""

    RUN_BOUND_FIELDS: ClassVar[dict[Any, str]] = {"total_ms": "a measured time", ("regions", "*", 2): "a measured time"}

    rows: list[SummaryRow]
    every: int = 1
    total_ms: float = 0.0
    total_calls: int = 0
    regions: list[tuple[str, int, float]] = field(default_factory=list)  # (name, calls, total ms)

    _HEADER = ("op", "calls", "total ms", "mean us", "% time", "KB out")
    _REGION_HEADER = ("region", "calls", "total ms")

    def _op_rows(self) -> list[tuple[str, ...]]:
        return [(r.op, str(r.calls), f"{r.total_ms:.3f}", f"{r.mean_us:.2f}", f"{r.percent:.1f}",
                 f"{r.bytes / 1024:.1f}") for r in self.rows]

    def _region_rows(self) -> list[tuple[str, ...]]:
        return [(n, str(c), f"{t:.3f}") for n, c, t in self.regions]

    def _total_line(self) -> str:
        return (f"total {self.total_ms:.3f} ms in {self.total_calls} op calls"
                + (f" (timed 1 call in {self.every} of each op; totals estimated)" if self.every > 1 else ""))

    def __str__(self) -> str:
        lines = _align([self._HEADER] + self._op_rows())
        lines.append(self._total_line())
        if self.regions:
            lines.append("")
            lines += _align([self._REGION_HEADER] + self._region_rows())
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        """In a notebook: the same tables as HTML whose cells never wrap (numbers right-aligned, as in the text)."""
        parts = [html_table(self._HEADER, self._op_rows(), right=[i > 0 for i in range(len(self._HEADER))]),
                 html_note(self._total_line())]
        if self.regions:
            parts.append(html_table(self._REGION_HEADER, self._region_rows(), right=[False, True, True]))
        return "".join(parts)


def _align(rows: list[tuple[str, ...]]) -> list[str]:
    """The first column left-aligned, the numbers right-aligned, a rule under the header."""
    return text_lines(rows, right=[i > 0 for i in range(len(rows[0]))])


class Profile:
    """Records ops while active. Use as ``with profile() as prof:`` (or ``start()`` / ``stop()``)."""

    RUN_BOUND_FIELDS: ClassVar[dict[Any, str]] = {"_origin_ns": "a clock reading", "_pid": "the process it ran in",
                        "_tid": "the thread it ran in"}

    def __init__(self, every: int = 1, record_shapes: bool = True):
        if every < 1:
            raise ValueError(f"profile: every must be >= 1, got {every}")
        self.every = int(every)
        self.record_shapes = record_shapes
        self.ops: list[OpRecord] = []
        self.regions: list[RegionRecord] = []
        self.calls: dict[str, int] = {}  # every call, timed or not, per op name (backward ops: "NameBackward")
        self._origin_ns = 0
        self._handle: ObserverHandle | None = None
        self._depth = 0
        self._pid = os.getpid()
        self._tid = threading.get_native_id()

    # -- start / stop ---------------------------------------------------------------------------------------------
    def start(self) -> Profile:
        if self._handle is None:
            if not self.ops and not self.regions:
                self._origin_ns = time.perf_counter_ns()
            self._handle = dispatch.add_observer(self)
            _active.append(self)
        return self

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
            if self in _active:
                _active.remove(self)

    def __enter__(self) -> Profile:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the observer protocol ------------------------------------------------------------------------------------
    def op_begin(self, event: OpEvent) -> None:
        name = event.op if event.phase == "forward" else event.op + "Backward"
        n = self.calls.get(name, 0)
        self.calls[name] = n + 1
        if n % self.every:
            return
        if event.device.type == "cuda":
            event.device.xp.cuda.get_current_stream().synchronize()
        event.extra["profile_start"] = time.perf_counter_ns()

    def op_end(self, event: OpEvent) -> None:
        start = event.extra.get("profile_start")
        if start is None:
            return
        if event.device.type == "cuda":
            event.device.xp.cuda.get_current_stream().synchronize()
        end = time.perf_counter_ns()
        if event.phase == "forward":
            name = event.op
            outputs: tuple[Any, ...] = (event.output.data,)
            shapes = [tuple(a.shape) for a in event.inputs if hasattr(a, "shape")] if self.record_shapes else []
        else:
            name = event.op + "Backward"
            outputs = tuple(g for g in event.output if g is not None)
            shapes = [tuple(event.inputs[0].shape)] if self.record_shapes else []
        nbytes = sum(int(o.nbytes) for o in outputs if getattr(o, "base", None) is None and hasattr(o, "nbytes"))
        self.ops.append(OpRecord(name, event.phase, start - self._origin_ns, end - start, shapes, nbytes,
                                 str(event.device)))

    # -- regions --------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def region(self, name: str) -> Iterator[None]:
        """Time a named block (``with prof.region("forward"):``); regions nest, and ops inside show under them."""
        record = RegionRecord(name, time.perf_counter_ns() - self._origin_ns, depth=self._depth)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            record.dur_ns = time.perf_counter_ns() - self._origin_ns - record.start_ns
            self.regions.append(record)

    # -- results --------------------------------------------------------------------------------------------------
    def summary(self, sort_by: str = "total", limit: int | None = None) -> Summary:
        """Per-op table sorted by "total", "calls" or "mean" (descending); ``limit`` keeps the top rows."""
        keys = {"total": lambda r: r.total_ms, "calls": lambda r: r.calls, "mean": lambda r: r.mean_us}
        if sort_by not in keys:
            raise ValueError(f"summary: sort_by must be one of {sorted(keys)}, got {sort_by!r}")
        timed: dict[str, list[int]] = {}
        nbytes: dict[str, int] = {}
        for r in self.ops:
            timed.setdefault(r.op, []).append(r.dur_ns)
            nbytes[r.op] = nbytes.get(r.op, 0) + r.bytes
        rows = []
        for op, calls in self.calls.items():
            durations = timed.get(op, [])
            mean_ns = sum(durations) / len(durations) if durations else 0.0
            scale = calls / len(durations) if durations else 0.0
            rows.append(SummaryRow(op, calls, len(durations), mean_ns * calls / 1e6, mean_ns / 1e3, 0.0,
                                   int(nbytes.get(op, 0) * scale)))
        total = sum(r.total_ms for r in rows)
        for r in rows:
            r.percent = 100.0 * r.total_ms / total if total else 0.0
        rows.sort(key=keys[sort_by], reverse=True)
        regions: dict[str, list[float]] = {}
        for g in self.regions:
            regions.setdefault(g.name, []).append(g.dur_ns / 1e6)
        return Summary(rows[:limit] if limit is not None else rows, self.every, total, sum(self.calls.values()),
                       [(n, len(v), sum(v)) for n, v in regions.items()])

    def trace_events(self) -> list[dict[str, Any]]:
        """The recorded ops and regions as Trace Event dicts (complete "X" events, microseconds)."""
        events: list[dict[str, Any]] = [
            {"name": "process_name", "ph": "M", "pid": self._pid, "tid": self._tid, "args": {"name": "tinygrad_nb"}}]
        for g in self.regions:
            events.append({"name": g.name, "cat": "region", "ph": "X", "ts": g.start_ns / 1e3, "dur": g.dur_ns / 1e3,
                           "pid": self._pid, "tid": self._tid, "args": {"depth": g.depth}})
        for r in self.ops:
            events.append({"name": r.op, "cat": r.phase, "ph": "X", "ts": r.start_ns / 1e3, "dur": r.dur_ns / 1e3,
                           "pid": self._pid, "tid": self._tid,
                           "args": {"shapes": [list(s) for s in r.shapes], "bytes": r.bytes, "device": r.device}})
        # parents before children at equal timestamps, so viewers nest them
        events[1:] = sorted(events[1:], key=lambda e: (e["ts"], -e["dur"]))
        return events

    def export_chrome_trace(self, path: str | os.PathLike[str]) -> None:
        """Write the trace as JSON (``{"traceEvents": [...]}``) atomically; open it in Perfetto or chrome://tracing."""
        payload = {"traceEvents": self.trace_events(), "displayTimeUnit": "ms"}
        atomic_write(path, json.dumps(payload))


def profile(every: int = 1, record_shapes: bool = True) -> Profile:
    """A profiler to use as ``with tinygrad_nb.profile() as prof:`` (see the module docstring)."""
    return Profile(every=every, record_shapes=record_shapes)


@contextlib.contextmanager
def region(name: str) -> Iterator[None]:
    """A named region in every active profile (a no-op when none is active), for library and user code alike."""
    if not _active:
        yield
        return
    with contextlib.ExitStack() as stack:
        for prof in list(_active):
            stack.enter_context(prof.region(name))
        yield


profile.region = region  # type: ignore[attr-defined] - so ``tinygrad_nb.profile.region("name")`` works too
