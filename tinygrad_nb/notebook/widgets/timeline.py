"""``ProfileTimeline``: a profile's regions and ops as an icicle chart (time across, nesting down), with hover.

    with tg.profile() as prof:
        with prof.region("forward"):
            loss = model(x).mean()
        with prof.region("backward"):
            loss.backward()
    ProfileTimeline(prof)          # in a notebook: the static chart (what the notebook saves), interactive over it

Rows from the top: the regions by nesting depth, then the ops (forward ops in the op's colour, backward ops lighter).
The view reads out an event's name, phase, start, duration and input shapes under the cursor; drag zooms the time
axis, shift-drag pans, double-click resets (the zoomed range is in the static image too). Each event is a float32
row ``(start ms, duration ms, row, name index, phase)``; names travel once, as records.
"""
from __future__ import annotations

import zlib
from typing import Any

from .base import LiveWidget, in_notebook
from .figures import COLORS, PX, THEMES, Block, axes_labels, empty, fmt, set_ticks, static_mark, style, zoomed

ROW_PX = 22  # pixels per row of the chart (widgets.js uses the same)
MAX_EVENTS = 20_000  # the longest ops and regions are kept when a profile has more


def name_color(name: str) -> str:
    """A stable colour per op name (widgets.js picks ``COLORS[meta.colors[i]]``, the same index)."""
    return COLORS[zlib.crc32(name.encode()) % len(COLORS)]


class ProfileTimeline(LiveWidget):
    """The regions and timed ops of a finished :class:`tinygrad_nb.profiler.Profile`."""

    kind = "timeline"
    default_title = "ProfileTimeline"
    min_width = 600

    def __init__(self, profile: Any, title: str | None = None, show: bool | None = None, comm: Any = None):
        visible = in_notebook() if show is None else show
        super().__init__(title=title, show=False, comm=comm)
        regions = sorted(profile.regions, key=lambda g: (g.start_ns, g.depth))  # recorded as they close
        ops = list(profile.ops)
        if len(regions) + len(ops) > MAX_EVENTS:  # keep the longest: what a reader looks for
            ops = sorted(ops, key=lambda r: -r.dur_ns)[:max(0, MAX_EVENTS - len(regions))]
        depth = max((g.depth for g in regions), default=-1) + 1  # the op row sits under the deepest region
        self.rows_count = depth + 1
        names: dict[str, int] = {}
        events: list[tuple[float, float, float, float, float]] = []
        self.details: list[str] = []
        for g in regions:
            events.append((g.start_ns / 1e6, g.dur_ns / 1e6, float(g.depth), float(names.setdefault(g.name,
                                                                                               len(names))), 2.0))
            self.details.append(f"region {g.name}")
        for r in sorted(ops, key=lambda r: r.start_ns):
            events.append((r.start_ns / 1e6, r.dur_ns / 1e6, float(depth), float(names.setdefault(r.op, len(names))),
                           0.0 if r.phase == "forward" else 1.0))
            self.details.append(f"{r.op} ({r.phase}) " + " ".join("x".join(map(str, s)) for s in r.shapes))
        self.names = list(names)
        rows = self._series("events", 5, names=self.names, colors=[COLORS.index(name_color(n)) for n in self.names],
                            rows=self.rows_count)
        rows.extend(events)
        for detail in self.details:
            self._add_record({"detail": detail})
        self._static_handles: list[Any] = []
        if visible:
            self.show()

    def summary(self) -> str:
        return f"{self.title}: regions and ops over time (icicle chart)"

    def panel_count(self) -> int:
        return 1

    def header(self) -> str:
        if len(self.view.x_range) == 2:
            return f"{self.title} · {fmt(self.view.x_range[0])} to {fmt(self.view.x_range[1])} ms"
        return self.title

    def draw(self, axes: list[Any], theme: dict[str, Any] | None = None) -> None:
        """The icicle chart: a bar per event in its row, labelled where it is wide enough."""
        th = theme or THEMES["light"]
        ax = axes[0]
        events = self.rows("events")
        if not len(events):
            empty(ax, "profile", "nothing recorded", th)
            return
        start, dur = events[:, 0], events[:, 1]
        xr = zoomed(self.view.x_range, (float(start.min()), float((start + dur).max()) or 1.0))
        width_px = getattr(ax, "panel_width_px", 1000) - 82
        per_ms = width_px / max(xr[1] - xr[0], 1e-9)
        for (s, d, row, name, phase) in events:
            label = self.names[int(name)]
            color = th["axis"] if phase == 2 else name_color(label)
            # 1 px narrower: back-to-back events (a step's forward, then its backward) stay two bars (widgets.js too)
            ax.broken_barh([(s, max(d - 1 / per_ms, 1e-9))], (row + 0.05, 0.9), facecolors=color,
                           alpha=0.55 if phase == 1 else 1.0, linewidth=0)
            visible_px = (min(s + d, xr[1]) - max(s, xr[0])) * per_ms
            if visible_px > 7.5 * len(label) + 8:
                ax.text(max(s, xr[0]) + 4 / per_ms, row + 0.5, label, va="center", ha="left", fontsize=12 * PX,
                        color="#ffffff" if phase != 2 else th["fg"], clip_on=True)
        style(ax, "regions and ops", th)
        ax.grid(False, axis="y")
        set_ticks(ax, xr, (0.0, float(self.rows_count)), False, width_px, 100)
        ax.set_ylim(self.rows_count, 0)  # nesting goes down
        ax.set_yticks([i + 0.5 for i in range(self.rows_count)])
        ax.set_yticklabels([f"depth {i}" for i in range(self.rows_count - 1)] + ["ops"])
        axes_labels(ax, th, "time (ms)", "nesting")

    def block(self) -> Block:
        block = super().block()
        block.row_height = max(120, 90 + ROW_PX * self.rows_count)
        return block

    def show(self) -> None:
        """Display the static chart (what the notebook saves); the browser makes it interactive while the kernel
        lives."""
        from IPython.display import display  # noqa: PLC0415

        bundle = self.static_bundle()
        self._static_handles.append(display(bundle, raw=True, display_id=True))
        self.flush()
        if self.view.comm is not None:
            self.view.static_mark = static_mark(bundle["image/png"])

