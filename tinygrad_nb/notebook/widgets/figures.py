"""The static images that replace live views when a run ends: small matplotlib figures saved as compact PNGs.

Only the Agg canvas is used (no pyplot, so no global backend or figure registry is touched). Data lines are drawn
without anti-aliasing and the image is quantized to a 32-colour palette: a panel then costs a few KB of PNG however
many steps it shows (its size depends on the pixels, not on the points).
"""
from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
DPI = 80
PANEL_SIZE = (4.4, 2.4)  # inches per panel, at DPI: 352 x 192 pixels
COLUMNS = 2  # panels per row (more panels wrap)
_VAL_PREFIXES = ("val_", "val/", "valid_", "validation_", "test_", "test/", "eval_", "eval/")
_TRAIN_PREFIXES = ("train_", "train/")


def series_role(name: str) -> tuple[str, str]:
    """``(panel, role)`` of a metric name: ``val_loss`` -> ("loss", "val"), ``train_acc`` -> ("acc", "train")."""
    for prefix in _VAL_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix):], "val"
    if name.endswith("_val") and len(name) > 4:
        return name[:-4], "val"
    for prefix in _TRAIN_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix):], "train"
    return name, "train"


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average (what the browser's smoothing slider computes). ``weight`` in [0, 1)."""
    if weight <= 0 or len(values) == 0:
        return values
    out = np.empty(len(values), dtype=np.float64)
    last, count = 0.0, 0
    for i, v in enumerate(values):
        if not math.isfinite(v):
            out[i] = v
            continue
        last = last * weight + (1 - weight) * v
        count += 1
        out[i] = last / (1 - weight ** count)
    return out


def render_png(draw: Callable[[list[Any]], None], panels: int = 1, size: tuple[float, float] | None = None) -> bytes:
    """Call ``draw(axes)`` with ``panels`` matplotlib axes (``COLUMNS`` per row; or one axes of ``size`` inches)
    and return palette PNG bytes."""
    import matplotlib  # noqa: PLC0415 - only when a figure is made
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415 - a matplotlib dependency

    columns = min(panels, COLUMNS) if size is None else 1
    rows = math.ceil(panels / columns) if size is None else 1
    figure = Figure(figsize=size or (PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows), dpi=DPI)
    canvas = FigureCanvasAgg(figure)
    axes = list(figure.subplots(rows, columns, squeeze=False).ravel())
    for spare in axes[panels:]:
        spare.set_visible(False)
    with matplotlib.rc_context({"lines.antialiased": False, "patch.antialiased": False}):
        draw(axes[:panels])
        figure.tight_layout(pad=0.6)
        canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    image = Image.fromarray(np.ascontiguousarray(rgb)).quantize(colors=32, dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def style(ax: Any, title: str) -> None:
    """The small, quiet look every static panel shares."""
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.25, linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def empty(ax: Any, title: str, text: str = "no data") -> None:
    style(ax, title)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, color="#888", transform=ax.transAxes)


def png_bundle(png: bytes, text: str) -> dict[str, str]:
    """A raw MIME bundle (what ``DisplayHandle.update(..., raw=True)`` takes) with the image and its constant text."""
    return {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": text}


def names_list(names: Sequence[str], limit: int = 8) -> str:
    """``a, b, c`` (``..., and 3 more`` past ``limit``)."""
    names = list(names)
    text = ", ".join(names[:limit])
    if len(names) > limit:
        text += f", and {len(names) - limit} more"
    return text or "none"
