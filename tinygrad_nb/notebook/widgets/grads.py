"""``GradHistograms``: per-parameter gradient distributions over steps (percentile bands) and the latest histogram.

    grads = GradHistograms(model, every=10)    # gradient hooks on every parameter; nothing else to call
    for x, y in loader:
        loss = loss_fn(model(x), y); loss.backward(); opt.step(); opt.zero_grad()
    grads.finish()                             # static PNG of the selected parameter's bands

A hook on each parameter sees its gradient during backward; on one backward pass in ``every`` it computes the
percentiles (0, 10, 25, 50, 75, 90, 100) and a 30-bucket histogram of the finite values (of at most 65,536 evenly
strided values for big parameters, taken on the device before the copy to the host). The other passes cost a counter
increment.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...debug.stats import histogram, to_numpy
from .base import LiveWidget, finish_steps_panel, latest_histogram_panel
from .figures import COLORS, THEMES, empty, extent, names_list, zoomed

PERCENTILES = (0, 10, 25, 50, 75, 90, 100)
BINS = 30
MAX_VALUES = 65_536


class GradHistograms(LiveWidget):
    """Live gradient distributions of ``model``'s parameters (or of ``parameters``, a ``{name: tensor}`` dict)."""

    kind = "grads"
    default_title = "GradHistograms"
    batch = 10  # samples per message at full speed

    def __init__(self, model: Any = None, parameters: dict[str, Any] | None = None, every: int = 10,
                 title: str | None = None, show: bool | None = None, comm: Any = None):
        if (model is None) == (parameters is None):
            raise TypeError("GradHistograms: pass a model or parameters={name: tensor}, not both")
        named = dict(model.named_parameters()) if model is not None else dict(parameters or {})
        self.names = [name for name, p in named.items() if getattr(p, "requires_grad", False)]
        super().__init__(title=title, show=show, comm=comm, selected=self.names[0] if self.names else "")
        self.every = max(1, int(every))
        self._calls = dict.fromkeys(self.names, 0)
        self._hooks = [named[name].register_hook(self._hook(name)) for name in self.names]

    def _hook(self, name: str) -> Callable[[Any], None]:
        def hook(grad: Any) -> None:
            call = self._calls[name]
            self._calls[name] = call + 1
            if call % self.every == 0:
                self.record(name, grad.data, step=call)
        return hook

    def record(self, name: str, values: Any, step: int) -> None:
        """Add one sample of parameter ``name``'s gradient (an array) at ``step``."""
        flat = values.reshape(-1)
        if flat.size > MAX_VALUES:
            flat = flat[::-(-flat.size // MAX_VALUES)]  # an even stride: at most MAX_VALUES values
        flat = to_numpy(flat)
        finite = flat[np.isfinite(flat)]
        rows = self._series(name, 1 + len(PERCENTILES))
        if finite.size:
            bands = np.percentile(finite, PERCENTILES)
            lo, hi = float(bands[0]), float(bands[-1])
            counts, _ = histogram(finite, lo, hi, np, BINS)
        else:
            bands = np.full(len(PERCENTILES), np.nan)
            lo, hi, counts = 0.0, 0.0, [0] * BINS
        rows.append((float(step), *(float(b) for b in bands)))
        self._set_latest(f"hist/{name}", np.asarray(counts, dtype=np.float32), param=name, lo=lo, hi=hi,
                         step=int(step))
        self.channel.tick()
        if finite.size < flat.size:
            self.flush()

    # -- the static figure ----------------------------------------------------------------------------------------
    min_width = 380  # as gradsView in widgets.js

    def panel_count(self) -> int:
        return 2

    def draw(self, axes: list[Any], theme: dict[str, Any] | None = None) -> None:
        """The selected parameter's percentile bands over backward passes, and its latest histogram."""
        th = theme or THEMES["light"]
        name = self._selected_series()
        if not name:
            empty(axes[0], self.title, "no gradients yet", th)
            empty(axes[1], "latest histogram", "no gradients yet", th)
            return
        ax = axes[0]
        rows = self.rows(name)
        x, p = rows[:, 0], rows[:, 1:]
        xr = zoomed(self.view.x_range, extent(x[[0, -1]]))
        color = COLORS[0]
        ax.plot(x, p[:, 3], color=color, linewidth=1.6, label="median")
        bands = (((2, 4), 0.4, "25–75%"), ((1, 5), 0.25, "10–90%"), ((0, 6), 0.12, "min–max"))
        for (lo, hi), alpha, label in bands:
            ax.fill_between(x, p[:, lo], p[:, hi], color=color, alpha=alpha, linewidth=0, label=label)
        finish_steps_panel(ax, th, f"gradient of {name}", x, xr, p[:, 0], p[:, 6], "backward pass", "gradient")
        latest_histogram_panel(axes[1], th, self._latest.get(f"hist/{name}"), "pass", color, "gradient value")

    def header(self) -> str:
        name = self._selected_series()
        return f"{self.title} · {name}" if name else self.title

    def summary(self) -> str:
        return f"{self.title}: gradient percentiles of {names_list(self.names)}"
