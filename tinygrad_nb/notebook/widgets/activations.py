"""``ActivationInspector``: pick a layer; its activation statistics over time, latest histogram, and a heatmap of one
sample's activations.

    acts = ActivationInspector(model, every=10)     # forward hooks on every leaf layer (or layers=[...])
    ...train...
    acts.close()                                    # removes the hooks (finish() also swaps in a static PNG)

A forward pre-hook on the model counts its calls; on one call in ``every``, each watched layer's output gets its
statistics computed (mean, std, min, max, zero fraction: :func:`tinygrad_nb.debug.stats.array_stats`), a 30-bucket
histogram, and the first sample of the batch is kept as a heatmap (at most 64 x 64 cells).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ...debug.stats import array_stats, to_numpy
from .base import LiveWidget, finish_steps_panel, latest_histogram_panel
from .figures import COLORS, THEMES, empty, extent, names_list, zoomed
from .figures import heatmap as draw_heatmap

STATS = ("mean", "std", "min", "max", "zero_frac")
MAX_SIDE = 64


class ActivationInspector(LiveWidget):
    """Live per-layer activation statistics of ``model`` (every leaf layer, or the ``layers`` named)."""

    kind = "acts"
    default_title = "ActivationInspector"
    batch = 10

    def __init__(self, model: Any, layers: Sequence[str] | None = None, every: int = 10, title: str | None = None,
                 show: bool | None = None, comm: Any = None):
        if not hasattr(model, "named_modules") or not hasattr(model, "register_forward_hook"):
            raise TypeError(f"ActivationInspector: expected a tinygrad_nb.nn.Module, got {type(model).__name__}")
        watched = leaf_modules(model, layers)
        self.layers = [name for name, _ in watched]
        super().__init__(title=title, show=show, comm=comm, selected=self.layers[0] if self.layers else "")
        self.every = max(1, int(every))
        self.calls = -1
        self._hooks = [model.register_forward_pre_hook(self._count)]
        self._hooks += [module.register_forward_hook(self._hook(name)) for name, module in watched]

    def _count(self, module: Any, args: Any) -> None:
        self.calls += 1

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: Any, args: Any, output: Any) -> None:
            if self.calls % self.every:
                return
            out = output[0] if isinstance(output, (tuple, list)) and output else output
            if hasattr(out, "data") and hasattr(out, "device"):
                self.record(name, out.data, step=self.calls, xp=out.device.xp)
        return hook

    def record(self, layer: str, array: Any, step: int, xp: Any = None) -> None:
        """Add one sample of ``layer``'s output (an array with the batch first) at ``step``."""
        stats = array_stats(array, xp)
        rows = self._series(layer, 1 + len(STATS))
        rows.append((float(step), *(float(stats[k]) for k in STATS)))
        edges = stats["hist_edges"]
        self._set_latest(f"hist/{layer}", np.asarray(stats["hist"], dtype=np.float32), layer=layer,
                         lo=float(edges[0]), hi=float(edges[-1]), step=int(step))
        if getattr(array, "ndim", 0) >= 1:
            self._set_latest(f"map/{layer}", heatmap(to_numpy(array[0] if array.ndim > 1 else array)), layer=layer,
                             step=int(step))
        self.channel.tick()
        if stats["nonfinite"]:
            self.flush()

    # -- the static figure ----------------------------------------------------------------------------------------
    min_width = 330  # as actsView in widgets.js

    def panel_count(self) -> int:
        return 3

    def draw(self, axes: list[Any], theme: dict[str, Any] | None = None) -> None:
        """The selected layer's statistics over forward calls, its latest histogram, and one sample's heatmap with
        a colour scale."""
        th = theme or THEMES["light"]
        layer = self._selected_series()
        if not layer:
            for ax, title in zip(axes, ("activations", "latest histogram", "one sample")):
                empty(ax, title, "no activations yet", th)
            return
        ax = axes[0]
        rows = self.rows(layer)
        x, mean, std, lo, hi = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
        xr = zoomed(self.view.x_range, extent(x[[0, -1]]))
        color = COLORS[2]
        ax.plot(x, mean, color=color, linewidth=1.6, label="mean")
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.25, linewidth=0, label="mean ± std")
        ax.plot(x, lo, color=color, linewidth=1.2, linestyle=(0, (2, 3)), alpha=0.8, label="min / max")
        ax.plot(x, hi, color=color, linewidth=1.2, linestyle=(0, (2, 3)), alpha=0.8)
        finish_steps_panel(ax, th, f"activations of {layer}", x, xr, lo, hi, "forward call", "activation")
        latest_histogram_panel(axes[1], th, self._latest.get(f"hist/{layer}"), "call", color, "activation")
        sample = self._latest.get(f"map/{layer}")
        if sample is None:
            empty(axes[2], "one sample", "no sample yet", th)
        else:
            grid, meta = sample
            draw_heatmap(axes[2].figure, axes[2], th, grid, f"one sample (call {meta['step']})",
                    getattr(axes[2], "panel_width_px", 500) - 82)

    def header(self) -> str:
        layer = self._selected_series()
        return f"{self.title} · {layer}" if layer else self.title

    def summary(self) -> str:
        return f"{self.title}: activation statistics of layers {names_list(self.layers)}"


def heatmap(sample: np.ndarray) -> np.ndarray:
    """One sample's activations as a 2-D float32 grid of at most MAX_SIDE x MAX_SIDE cells (NaN pads the grid).

    A vector becomes a near-square grid; (channels, ...) becomes channels x positions; larger grids are strided."""
    a = np.asarray(sample, dtype=np.float32)
    if a.ndim <= 1:
        flat = a.reshape(-1)
        cols = max(1, math.ceil(math.sqrt(flat.size)))
        rows = max(1, math.ceil(flat.size / cols))
        grid = np.full(rows * cols, np.nan, dtype=np.float32)
        grid[:flat.size] = flat
        a = grid.reshape(rows, cols)
    else:
        a = a.reshape(a.shape[0], -1)
    step_r = math.ceil(a.shape[0] / MAX_SIDE)
    step_c = math.ceil(a.shape[1] / MAX_SIDE)
    return np.ascontiguousarray(a[::step_r, ::step_c])


def leaf_modules(model: Any, layers: Sequence[str] | None) -> list[tuple[str, Any]]:
    """``(name, module)`` of the named ``layers``, or of every module without children (the model itself when it
    has none)."""
    named = [(name, m) for name, m in model.named_modules() if name]
    if layers is not None:
        chosen = [(n, m) for n, m in named if n in set(layers)]
        missing = set(layers) - {n for n, _ in chosen}
        if missing:
            raise ValueError(f"ActivationInspector: no layers named {sorted(missing)}; the model has "
                             f"{[n for n, _ in named]}")
        return chosen
    leaves = [(n, m) for n, m in named if not any(True for _ in m.children())]
    return leaves or [(type(model).__name__, model)]
