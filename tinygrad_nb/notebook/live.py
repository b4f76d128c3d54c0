"""``live(run)``: draw a :class:`tinygrad_nb.track.Run`'s metrics on a LossCurve while it runs.

    with track.Run(config=...) as run:
        live(run)                         # in Jupyter: a LossCurve; elsewhere: a throttled text line (StdoutSink)
        for step in ...:
            run.log({"loss": loss})
                                          # the run ends -> the curve is swapped for its static PNG

The curve is fed by a sink (a small class with ``write(batch)`` / ``close()``, like every track sink): at each run
flush it appends the new points of each metric (one extend per metric, not per point).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..track.sinks import StdoutSink
from .widgets import LossCurve, in_notebook

_HIDDEN_PREFIXES = ("act/", "grad/")  # per-layer statistics that debug.capture logs into runs


class LiveSink:
    """A track sink that draws the run's scalar metrics on ``curve``; the run's end finishes the curve."""

    def __init__(self, curve: LossCurve, metrics: Sequence[str] | None = None):
        self.curve = curve
        self.metrics = set(metrics) if metrics is not None else None

    def wanted(self, name: str) -> bool:
        if self.metrics is not None:
            return name in self.metrics
        return not name.startswith(_HIDDEN_PREFIXES) and "/epoch_" not in name

    def write(self, batch: Any) -> None:
        if batch.event == "log" and batch.columns:
            for name, (steps, values, _times) in batch.columns.items():
                if self.wanted(name):
                    self.curve.extend(name, steps, values)
        elif batch.event == "end":
            self.curve.finish()

    def close(self) -> None:
        self.curve.finish()


def live(run: Any, metrics: Sequence[str] | None = None, show: bool | None = None, comm: Any = None) -> Any:
    """Attach a live view to ``run`` and return it: a :class:`LossCurve` in Jupyter (or with ``show``/``comm``
    given), otherwise the :class:`~tinygrad_nb.track.StdoutSink` added for text progress (none is added when the run
    has one already). ``metrics``: names to plot (default: every scalar except per-layer statistics and epoch
    aggregates)."""
    widget = show if show is not None else (in_notebook() or comm is not None)
    if not widget:
        existing = next((s for s in run.sinks if isinstance(s, StdoutSink)), None)
        if existing is not None:
            return existing
        sink = StdoutSink()
        run.sinks.append(sink)
        return sink
    title = run.name if run.name != run.id else None  # a generated name is the run's id: keep ids out of reprs
    curve = LossCurve(metrics=metrics, title=title, show=in_notebook() if show is None else show, comm=comm)
    run.sinks.append(LiveSink(curve, metrics))
    return curve
