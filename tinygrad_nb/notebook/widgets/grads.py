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
from .base import LiveWidget
from .figures import COLORS, empty, names_list, style

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
    def draw(self, axes: list[Any]) -> None:
        ax = axes[0]
        name = self._selected_series()
        if not name:
            empty(ax, self.title, "no gradients yet")
            return
        style(ax, f"gradient of {name}")
        rows = self.rows(name)
        x, p = rows[:, 0], rows[:, 1:]
        color = COLORS[0]
        for (lo, hi), alpha in (((0, 6), 0.12), ((1, 5), 0.22), ((2, 4), 0.35)):
            ax.fill_between(x, p[:, lo], p[:, hi], color=color, alpha=alpha, linewidth=0)
        ax.plot(x, p[:, 3], color=color, linewidth=1.0, label="median")
        ax.set_xlabel("backward pass", fontsize=7)
        ax.legend(fontsize=7, frameon=False)

    def summary(self) -> str:
        return f"{self.title}: gradient percentiles of {names_list(self.names)}"
