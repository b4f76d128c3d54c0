"""``LossCurve``: live training curves (several series, train/val overlay, log scale, EMA smoothing in the browser).

    curve = LossCurve()                      # displays itself in a notebook
    for step, (x, y) in enumerate(loader):
        ...
        curve.log(loss=loss)                 # or curve.log({"loss": loss, "acc": acc}, step=step)
    curve.log(val_loss=v, step=step)         # val_* series share the panel of their train series, dashed
    curve.finish()                           # swap for a static PNG (also: ``with LossCurve() as curve:``)

Series are grouped into panels by metric: ``loss``, ``val_loss`` and ``train_loss`` share the "loss" panel, ``acc`` and
``val_acc`` the "acc" panel. Each series is a list of (step, value) rows; ``log`` is an append plus a throttle tick.

A series can be restyled after it exists (a sweep greys a pruned trial's curve)::

    curve.set_series_style("trial 3", color="#9e9e9e", alpha=0.6)   # the live view redraws, the static image too

The style is kept in the series' meta (``meta["style"]``), so every later message about the series and every resend
to a reloaded page carries it; the change itself goes to the browser as ``{"kind": "style", "name", "style"}``.
"""
from __future__ import annotations

import math
import numbers
import re
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

HEX_COLOR = re.compile(r"#[0-9a-fA-F]{6}")  # a style's colour, as widgets.js checks it
MAX_SUFFIX = 80  # characters of a label suffix (widgets.js cuts longer ones the same way)


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

    def set_series_style(self, name: str, *, color: str | int | None = None, dashed: bool | None = None,
                         alpha: float | None = None, label_suffix: str | None = None) -> None:
        """Restyle the existing series ``name`` in the live view and in the static image.

        ``color``: ``"#rrggbb"`` or an index into the palette (kept as that palette colour); ``dashed``: draw it
        dashed (default: dashed for ``val_*`` series); ``alpha``: opacity in [0, 1] (the raw line under the
        smoothing gets 0.3 of it); ``label_suffix``: appended to the legend and readout label (at most 80
        characters). An argument left ``None`` takes the default, so each call sets the whole style and
        ``set_series_style(name)`` resets it.

        The style lives in the series' meta, so a view rendered later (another display, a reloaded page) gets it
        with the rows; the browser is told at once by a ``{"kind": "style", "name", "style"}`` message (nothing is
        sent without a frontend). Raises ``KeyError`` for a series never logged, ``TypeError``/``ValueError`` for a
        bad value, naming the argument.
        """
        if name not in self._rows:
            known = ", ".join(repr(n) for n in self._rows) or "none yet"
            raise KeyError(f"{type(self).__name__} {self.title!r} has no series {name!r} (series: {known})")
        style: dict[str, Any] = {}
        if color is not None:
            if isinstance(color, bool) or not isinstance(color, (str, numbers.Integral)):
                raise TypeError(f"set_series_style: color must be '#rrggbb' or a palette index, got "
                                f"{type(color).__name__} {color!r}")
            if isinstance(color, str) and not HEX_COLOR.fullmatch(color):
                raise ValueError(f"set_series_style: color must be '#rrggbb' (six hex digits), got {color!r}")
            if not isinstance(color, str) and color < 0:
                raise ValueError(f"set_series_style: a palette index must be >= 0, got {color}")
            style["color"] = color.lower() if isinstance(color, str) else COLORS[int(color) % len(COLORS)]
        if dashed is not None:
            if not isinstance(dashed, bool):
                raise TypeError(f"set_series_style: dashed must be a bool, got {type(dashed).__name__} {dashed!r}")
            style["dashed"] = dashed
        if alpha is not None:
            if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
                raise TypeError(f"set_series_style: alpha must be a number, got {type(alpha).__name__} {alpha!r}")
            if not 0.0 <= float(alpha) <= 1.0:  # NaN fails this too
                raise ValueError(f"set_series_style: alpha must be in [0, 1], got {alpha!r}")
            style["alpha"] = float(alpha)
        if label_suffix is not None:
            if not isinstance(label_suffix, str):
                raise TypeError(f"set_series_style: label_suffix must be a str, got {type(label_suffix).__name__}")
            if len(label_suffix) > MAX_SUFFIX:
                raise ValueError(f"set_series_style: label_suffix has {len(label_suffix)} characters, at most "
                                 f"{MAX_SUFFIX}")
            style["label_suffix"] = label_suffix
        self._meta[name]["style"] = style  # later data messages and every resend carry it
        if self.view.comm is not None:  # a closed view (or no frontend at all) is told nothing
            self.view.send({"kind": "style", "name": name, "style": style})

    def series_style(self, name: str) -> dict[str, Any]:
        """The style set by :meth:`set_series_style` for series ``name`` (``{}``: the default look)."""
        return dict(self._meta[name].get("style", {}))

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
                look = meta.get("style", {})  # set_series_style's overrides (as widgets.js applies them)
                color = look.get("color", meta.get("color", i))
                lines.append((meta.get("label", name) + look.get("label_suffix", ""), x, y,
                              color if isinstance(color, str) else COLORS[color % len(COLORS)],
                              look.get("dashed", meta["role"] == "val"), look.get("alpha", 1.0)))
                seen.append(y[(x >= xr[0]) & (x <= xr[1])])
            seen_values = np.concatenate(seen) if seen else np.zeros(0)
            logged = bool(self.view.log_scale) and log_applies(panel, seen_values)
            for name, x, y, color, dashed, alpha in lines:
                style_kw = {"color": color, "linestyle": (0, (6, 4)) if dashed else "-"}
                if weight > 0 and len(x) > 1:
                    ax.plot(x, y, alpha=0.3 * alpha, linewidth=1.2, **style_kw)
                ax.plot(x, ema(y, weight), linewidth=1.6, alpha=alpha, label=f"{name} {fmt_value(y[-1])}",
                        **style_kw)
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
