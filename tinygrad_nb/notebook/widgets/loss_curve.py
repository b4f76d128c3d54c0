"""``LossCurve``: live training curves (several series, train/val overlay, log scale, EMA smoothing in the browser).

    curve = LossCurve()                      # displays itself in a notebook
    for step, (x, y) in enumerate(loader):
        ...
        curve.log(loss=loss)                 # or curve.log({"loss": loss, "acc": acc}, step=step)
    curve.log(val_loss=v, step=step)         # val_* series share the panel of their train series, dashed
    curve.finish()                           # swap for a static PNG (also: ``with LossCurve() as curve:``)

Series are grouped into panels by metric: ``loss``, ``val_loss`` and ``train_loss`` share the "loss" panel, ``acc`` and
``val_acc`` the "acc" panel. Each series is a list of (step, value) rows; ``log`` is an append plus a throttle tick.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import LiveWidget
from .figures import (
    COLORS,
    PANEL_HEIGHT,
    THEMES,
    axes_labels,
    ema,
    empty,
    extent,
    fmt,
    fmt_value,
    legend,
    log_applies,
    names_list,
    series_role,
    set_ticks,
    style,
    zoomed,
)


class LossCurve(LiveWidget):
    """Live curves of scalar metrics. ``metrics``: the names to plot (default: every name logged)."""

    kind = "loss"
    default_title = "LossCurve"
    batch = 100

    def __init__(self, metrics: Sequence[str] | None = None, title: str | None = None, log_scale: bool = False,
                 smoothing: float = 0.0, show: bool | None = None, comm: Any = None):
        self.metrics = list(metrics) if metrics is not None else None
        self._wanted = set(self.metrics) if self.metrics is not None else None
        super().__init__(title=title, show=show, comm=comm, log_scale=log_scale, smoothing=float(smoothing))
        self._step = 0

    def log(self, values: dict[str, Any] | None = None, step: int | None = None, **named: Any) -> None:
        """Append one value per metric at ``step`` (default: one more than the last). A 0-d tensor is read with
        ``.item()``. A NaN or inf is sent to the browser at once."""
        if named:
            values = {**(values or {}), **named}
        if step is None:
            step = self._step
        self._step = step + 1
        nonfinite = False
        rows_by_name = self._rows
        for name, value in (values or {}).items():
            rows = rows_by_name.get(name)
            if rows is None:
                if self._wanted is not None and name not in self._wanted:
                    continue
                panel, role = series_role(name)
                rows = self._series(name, 2, panel=panel, role=role)
            if value.__class__ is not float:
                value = float(value)
            rows.append((step, value))
            if value - value != 0.0:  # NaN or +-inf
                nonfinite = True
        self.channel.tick()
        if nonfinite:
            self.flush()

    def extend(self, name: str, steps: Sequence[int], values: Sequence[float]) -> None:
        """Append many points of one metric at once (what :func:`~tinygrad_nb.notebook.live` does per flush)."""
        if self._wanted is not None and name not in self._wanted:
            return
        panel, role = series_role(name)
        rows = self._series(name, 2, panel=panel, role=role)
        rows.extend(zip(steps, (float(v) for v in values)))
        if steps:
            self._step = max(self._step, int(steps[-1]) + 1)
        self.channel.tick(len(steps))
        if any(not math.isfinite(float(v)) for v in values):
            self.flush()

    # -- the static figure ----------------------------------------------------------------------------------------
    def panels(self) -> dict[str, list[str]]:
        """Series names grouped by panel, in the order first logged."""
        grouped: dict[str, list[str]] = {}
        for name in self._rows:
            grouped.setdefault(self._meta[name]["panel"], []).append(name)
        return grouped

    def panel_count(self) -> int:
        return max(1, len(self.panels()))

    def x_extent(self) -> tuple[float, float]:
        """The step range every panel shows: all the data, or the range zoomed to in the browser."""
        firsts = [rows[0][0] for rows in self._rows.values() if rows]
        lasts = [rows[-1][0] for rows in self._rows.values() if rows]
        x0, x1 = float(min(firsts)), float(max(lasts))
        return zoomed(self.view.x_range, (x0, x1 if x1 > x0 else x0 + 1))

    def draw(self, axes: list[Any], theme: dict[str, Any] | None = None) -> None:
        """The live view's panels: one step range for all (they stay aligned), legends above the plots, the smoothing
        (raw values faint behind), log scale where it applies (not on bounded metrics such as accuracy)."""
        th = theme or THEMES["light"]
        grouped = self.panels()
        if not grouped:
            empty(axes[0], self.title, "nothing logged", th)
            return
        weight = float(self.view.smoothing)
        xr = self.x_extent()
        for ax, (panel, names) in zip(axes, grouped.items()):
            width_px = getattr(ax, "panel_width_px", 500)
            lines, seen = [], []
            for i, name in enumerate(names):
                rows = self.rows(name)
                x, y = rows[:, 0], rows[:, 1]
                meta = self._meta[name]  # RunComparison gives a label and a colour per run
                lines.append((meta.get("label", name), x, y, COLORS[meta.get("color", i) % len(COLORS)],
                              meta["role"] == "val"))
                seen.append(y[(x >= xr[0]) & (x <= xr[1])])
            seen_values = np.concatenate(seen) if seen else np.zeros(0)
            logged = bool(self.view.log_scale) and log_applies(panel, seen_values)
            for name, x, y, color, dashed in lines:
                style_kw = {"color": color, "linestyle": (0, (6, 4)) if dashed else "-"}
                if weight > 0 and len(x) > 1:
                    ax.plot(x, y, alpha=0.3, linewidth=1.2, **style_kw)
                ax.plot(x, ema(y, weight), linewidth=1.6, label=f"{name} {fmt_value(y[-1])}", **style_kw)
            rows_ = legend(ax, th, width_px)
            style(ax, panel, th, legend_rows=rows_)
            set_ticks(ax, xr, extent(seen_values, logged), logged, width_px - 82, PANEL_HEIGHT - 90 - 18 * rows_)
            axes_labels(ax, th, "step", panel + (" (log)" if logged else ""))

    def header(self) -> str:
        choices = [self.title]
        if self.view.log_scale:
            choices.append("log scale")
        if self.view.smoothing > 0:
            choices.append(f"smoothing {self.view.smoothing:.2f}")
        if len(self.view.x_range) == 2 and self._rows:
            a, b = self.x_extent()
            choices.append(f"steps {fmt(a)} to {fmt(b)}")
        return " · ".join(choices)

    def summary(self) -> str:
        if self.metrics is None:
            return f"{self.title}: training curves"
        return f"{self.title}: curves of {names_list(self.metrics)}"
