"""``NaNTracer``: a live table of non-finite events (op, phase, NaN/inf counts, input stats, cell and line).

    with NaNTracer() as nan:          # runs a non-strict debug.detect_anomaly; the table fills as NaNs appear
        loss = model(x).log().mean()
        loss.backward()
                                      # at the end of the block the table is swapped for a static HTML table

    nan = NaNTracer()                 # or keep it live across cells:
    with nan.trace():
        ...
    nan.watch(tracer)                 # follow an AnomalyTracer someone else enabled (e.g. %%tg_nantrace)
    nan.add_error(err)                # record a NonFiniteError raised by a strict tracer or a Guard

Events reach the table the moment the tracer records them (a dispatch observer registered after the tracer looks
for new events after every op while tracing) and are flushed at once: a NaN is always shown.
"""
from __future__ import annotations

import contextlib
import html
import linecache
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

from ... import dispatch
from ...debug.anomaly import AnomalyEvent, AnomalyTracer, NonFiniteError
from ...debug.provenance import Location, format_location
from .base import LiveWidget, in_notebook

COLUMNS = ("op", "phase", "NaN", "inf", "where", "source")


class NaNTracer(LiveWidget):
    """Live table of non-finite events from an anomaly tracer (see the module docstring)."""

    kind = "nan"
    default_title = "NaNTracer"
    batch = 1

    def __init__(self, tracer: AnomalyTracer | None = None, check_inf: bool = True, title: str | None = None,
                 show: bool | None = None, comm: Any = None):
        super().__init__(title=title, show=show, comm=comm)
        self.check_inf = check_inf
        self.tracer: AnomalyTracer | None = None
        self._seen = 0
        self._observer: dispatch.ObserverHandle | None = None
        self._own_tracer = False
        if tracer is not None:
            self.watch(tracer)

    # -- feeding the table ----------------------------------------------------------------------------------------
    def watch(self, tracer: AnomalyTracer) -> None:
        """Follow ``tracer``'s events (it must be non-strict to keep running after the first one)."""
        self._stop_watching()
        self.tracer, self._seen = tracer, 0
        self._observer = dispatch.add_observer(self)
        self.poll()

    def start(self) -> None:
        """Enable a non-strict tracer of our own and follow it."""
        if self.tracer is None or not self.tracer.enabled:
            tracer = AnomalyTracer(strict=False, check_inf=self.check_inf).enable()
            self._own_tracer = True
            self.watch(tracer)

    def stop(self) -> None:
        """Stop following (and disable our own tracer); the table keeps its events."""
        self.poll()
        self._stop_watching()

    def _stop_watching(self) -> None:
        if self._observer is not None:
            self._observer.remove()
            self._observer = None
        if self._own_tracer and self.tracer is not None:
            self.tracer.disable()
            self._own_tracer = False

    @contextlib.contextmanager
    def trace(self) -> Iterator[NaNTracer]:
        """``with nan.trace():`` trace the block; a NonFiniteError raised inside is recorded (and re-raised)."""
        self.start()
        try:
            yield self
        except NonFiniteError as err:
            self.add_error(err)
            raise
        finally:
            self.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if isinstance(exc, NonFiniteError):
            self.add_error(exc)
        self.stop()
        self.finish()

    # dispatch observer: after every op while watching, pick up the tracer's new events
    def op_begin(self, event: Any) -> None:
        pass

    def op_end(self, event: Any) -> None:
        if self.tracer is not None and len(self.tracer.events) > self._seen:
            self.poll()

    def poll(self) -> None:
        """Add the watched tracer's events not yet in the table."""
        if self.tracer is None:
            return
        events = self.tracer.events
        while self._seen < len(events):
            self.add_event(events[self._seen])
            self._seen += 1

    def add_event(self, event: AnomalyEvent) -> None:
        """Add an event recorded by a non-strict tracer."""
        self._add(event.op, event.phase, event.location, event.nan, event.inf, event.inputs, event.report)

    def add_error(self, err: NonFiniteError) -> None:
        """Add the event behind a NonFiniteError (strict tracer or guard)."""
        if any(r["report"] == err.report for r in self._records):
            return
        self._add(err.op or "?", err.phase or "?", err.location, None, None, [], err.report)

    def _add(self, op: str, phase: str, location: Location | None, nan: int | None, inf: int | None,
             inputs: list[str], report: str) -> None:
        source = linecache.getline(location[0], location[1]).strip() if location else ""
        self._add_record({"op": op, "phase": phase, "nan": nan, "inf": inf,
                          "where": format_location(location, source=False) if location else "<unknown location>",
                          "source": source, "inputs": list(inputs)[:4], "report": report})
        self.channel.tick()
        self.flush()  # a NaN is news: never wait

    @property
    def events(self) -> list[dict[str, Any]]:
        """The table's rows: dicts with op, phase, nan, inf, where, source, inputs, report."""
        return list(self._records)

    # -- static form ----------------------------------------------------------------------------------------------
    def _remove_hooks(self) -> None:
        self._stop_watching()

    def summary(self) -> str:
        return f"{self.title}: non-finite values (op, NaN/inf counts, cell and line) shown in the image"

    def table(self, limit: int = 12) -> str:
        """The events as a text table (what the static image shows, and what a script prints at the end)."""
        if not self._records:
            return "no non-finite values"
        rows = [COLUMNS] + [(r["op"], r["phase"], "" if r["nan"] is None else str(r["nan"]),
                             "" if r["inf"] is None else str(r["inf"]), r["where"], _clip(r["source"], 60))
                            for r in self._records[:limit]]
        widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        if len(self._records) > limit:
            lines.append(f"... and {len(self._records) - limit} more")
        return "\n".join(lines)

    def table_html(self, limit: int = 50) -> str:
        """The events as an HTML table (selectable text, no wrapping; theme colours in JupyterLab)."""
        cell = "text-align:left;padding:3px 10px;white-space:nowrap"
        head = "".join(f"<th style='{cell}'>{c}</th>" for c in COLUMNS)
        rows = []
        for r in self._records[:limit]:
            values = [r["op"], r["phase"], "" if r["nan"] is None else r["nan"], "" if r["inf"] is None else r["inf"],
                      r["where"], _clip(r["source"], 80)]
            rows.append("<tr>" + "".join(f"<td style='{cell}'>{html.escape(str(v))}</td>" for v in values) + "</tr>")
        more = (f"<p>... and {len(self._records) - limit} more</p>" if len(self._records) > limit else "")
        return (f"<div style='overflow-x:auto'><table style='border-collapse:collapse'><tr>{head}</tr>"
                + "".join(rows) + f"</table>{more}</div>") if rows else "<p>no non-finite values</p>"

    def to_png(self) -> bytes:
        from .figures import DPI, render_png  # noqa: PLC0415

        lines = min(len(self._records), 12) + 2 + (len(self._records) > 12)
        width = max(600, min(1600, self.view.view_width or 1000))
        return render_png(lambda axes: self.draw(axes), size=(width / DPI, (16 + 19 * lines) / DPI),
                          theme=self.view.theme)

    def draw(self, axes: list[Any], theme: dict[str, Any] | None = None) -> None:
        """The table in the static image: a heading line, then the text table in 12 px monospace."""
        from .figures import PX, THEMES  # noqa: PLC0415

        th = theme or THEMES.get(self.view.theme, THEMES["light"])
        ax = axes[0]
        ax.axis("off")
        count = len(self._records)
        heading = f"{self.title}: {count} non-finite event{'s' if count != 1 else ''}"
        ax.text(0, 1, heading, transform=ax.transAxes, va="top", fontsize=13 * PX, fontweight="bold", color=th["fg"])
        ax.text(0, 1 - 1 / (min(count, 12) + 2 + (count > 12)), self.table(), transform=ax.transAxes, va="top",
                fontsize=12 * PX, family="monospace", color=th["fg"], linespacing=1.25)

    def finish(self) -> None:
        """Swap the live table for its static image; outside Jupyter print the table instead."""
        if not self.finished and not self.closed and not self._handles and not in_notebook():
            self.poll()
            print(f"{self.title}:\n{self.table()}")
        super().finish()


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."
