"""The static images that replace live views when a run ends: matplotlib figures drawn like the live canvas.

The static image is a faithful rendering of the live view: the same panels in the same columns (the browser reports
its width, see ``LiveView.view_width``), the same colours for the theme the user looked at (``LiveView.theme``), the
same tick positions and labels (``nice_ticks``, ``log_ticks`` and ``fmt`` are ports of widgets.js), titles, then
legends, then the plot (a legend never covers data), axis labels, and the choices made in the browser (log scale,
smoothing, selected parameter, zoomed step range). Text is 12-13 px at 100% zoom.

Only the Agg canvas is used (no pyplot, so no global backend or figure registry is touched). Data lines are drawn
without anti-aliasing and the image is quantized to a 48-colour palette: a figure costs a few tens of KB of PNG
however many steps it shows (its size depends on the pixels, not on the points).
"""
from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
# JupyterLab's theme colours (the live view reads the CSS variables; these are their values in the stock themes)
THEMES = {
    "light": {"bg": "#ffffff", "fg": "#212121", "fg2": "#616161", "grid": "#e0e0e0", "axis": "#9e9e9e",
              "error": "#d32f2f", "center": (255, 255, 255)},
    "dark": {"bg": "#111111", "fg": "#e0e0e0", "fg2": "#a8a8a8", "grid": "#3a3a3a", "axis": "#757575",
             "error": "#f44336", "center": (17, 17, 17)},
}
BOUNDED = re.compile(r"acc|accuracy|precision|recall|f1|auc|iou|frac|ratio|prob", re.IGNORECASE)  # never log scale
DPI = 100
PX = 72 / DPI  # points per pixel: font sizes below are given in pixels at 100% zoom
STATIC_WIDTH = 1000  # pixels, when no browser reported its width
MIN_WIDTH, MAX_WIDTH = 600, 1600
PANEL_HEIGHT = 250  # pixels, as in widgets.js
HEADER_HEIGHT = 30  # the widget's title line above its panels
TICK_PX, TITLE_PX = 12, 13
COLUMNS = 2  # panels per row of render_png's plain grid
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


def log_applies(panel: str, values: np.ndarray) -> bool:
    """Whether the log-scale choice applies to ``panel``: not for bounded metrics (accuracy, F1, ...) and only when
    some visible value is positive (the browser uses the same rule)."""
    return not BOUNDED.search(panel) and bool((np.asarray(values) > 0).any())


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


# -- ticks and numbers: ports of widgets.js, so both draw the same axes ------------------------------------------------
def _js_precision(v: float, digits: int) -> str:
    """``String(+v.toPrecision(digits))`` of JavaScript for the magnitudes fmt uses."""
    text = f"{float(f'{v:.{digits}g}'):.12g}"
    return text[:-2] if text.endswith(".0") else text


def fmt(v: float) -> str:
    """A tick label: 0.001 .. 9999 plainly, 12k for thousands, 1e-4 / 2.5×1e7 beyond (widgets.js ``fmt``)."""
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e6 or a < 1e-3:
        e = math.floor(math.log10(a))
        m = float(f"{v / 10 ** e:.2g}")
        prefix = "" if m == 1 else "-" if m == -1 else _js_precision(m, 2) + "×"
        return f"{prefix}1e{e}"
    if a >= 1e4:
        return _js_precision(v / 1e3, 3) + "k"
    return _js_precision(v, 3)


def nice_ticks(lo: float, hi: float, n: int) -> list[float]:
    """Ticks at 1, 2 or 5 times a power of ten, about ``n`` of them over [lo, hi] (widgets.js ``niceTicks``)."""
    span = hi - lo or abs(hi) or 1.0
    raw = span / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    out, v = [], math.ceil(lo / step) * step
    while v <= hi + step * 1e-9:
        out.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return out


def log_ticks(lo: float, hi: float, room: int) -> list[float]:
    """Decades inside [lo, hi] (every k-th when there are more than ``room``), 1-2-5 ticks when fewer than two decades
    are inside, linear ticks for a range under a factor of ~2.5 (widgets.js ``logTicks``)."""
    e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    k = max(1, math.ceil((e1 - e0) / max(2, room)))

    def pick(mults: tuple[float, ...]) -> list[float]:
        step = 1 if len(mults) > 1 else k
        values = [m * 10.0 ** e for e in range(e0, e1 + 1, step) for m in mults]
        return [v for v in values if lo * 0.9999 <= v <= hi * 1.0001]

    ticks = pick((1.0,))
    if len(ticks) < 2:
        ticks = pick((1.0, 2.0, 5.0))
    if len(ticks) < 2:
        ticks = [v for v in nice_ticks(lo, hi, 3) if v > 0]
    return ticks


def extent(values: np.ndarray, positive: bool = False) -> tuple[float, float]:
    """The padded data range of the finite (and, for a log axis, positive) values (widgets.js ``extent``)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if positive:
        v = v[v > 0]
    if not v.size:
        return (0.1, 1.0) if positive else (0.0, 1.0)
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        return (lo / 2, hi * 2) if positive else (lo - 0.5, hi + 0.5)
    if positive:
        return lo / 1.15, hi * 1.15
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


def zoomed(x_range: Sequence[float], full: tuple[float, float]) -> tuple[float, float]:
    """The browser's zoomed step range within ``full`` (widgets.js ``zoomed``)."""
    if len(x_range) != 2:
        return full
    a, b = max(full[0], float(x_range[0])), min(full[1], float(x_range[1]))
    return (a, b) if b > a else full


def columns(width: int, panels: int, min_width: int) -> int:
    """Panels per row at ``width`` pixels: as many of ``min_width`` as fit (widgets.js ``columns``)."""
    return max(1, min(panels, width // min_width))


def diverging(theme: dict[str, Any]) -> Any:
    """Blue - background - red, linear in each half (widgets.js ``diverging``)."""
    from matplotlib.colors import LinearSegmentedColormap  # noqa: PLC0415

    center = tuple(c / 255 for c in theme["center"])
    return LinearSegmentedColormap.from_list("tg_diverging", [COLORS[0], center, COLORS[3]])


# -- panels ---------------------------------------------------------------------------------------------------------
@dataclass
class Block:
    """One widget's part of a static figure: ``panels`` axes, ``min_width`` pixels per column (as in widgets.js),
    ``draw(axes, theme)`` and a header line (the widget's title and the choices made in the browser)."""

    draw: Callable[[list[Any], dict[str, Any]], None]
    panels: int
    min_width: int = 420
    header: str = ""
    row_height: int = PANEL_HEIGHT  # pixels per row of panels


def style(ax: Any, title: str, theme: dict[str, Any] | None = None, legend_rows: int = 0) -> None:
    """The look every static panel shares: title at the top left, room for ``legend_rows`` legend rows below it."""
    th = theme or THEMES["light"]
    ax.set_facecolor(th["bg"])
    pad = (4 + 18 * legend_rows) * PX
    ax.set_title(title, loc="left", fontsize=TITLE_PX * PX, fontweight="bold", color=th["fg"], pad=pad)
    ax.tick_params(labelsize=TICK_PX * PX, colors=th["fg2"], length=0, pad=5)
    ax.grid(True, color=th["grid"], linewidth=PX)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(th["axis"])


def legend(ax: Any, theme: dict[str, Any], width_px: float) -> int:
    """A legend between the title and the plot (never over data); returns its number of rows."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return 0
    room = width_px - 90  # the plot's width (the y axis takes the rest)
    item = sorted((7.2 * len(label) + 44 for label in labels), reverse=True)  # a column is as wide as its widest
    per_row = next((k for k in range(len(labels), 0, -1) if sum(item[:k]) <= room), 1)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=per_row, frameon=False, fontsize=TICK_PX * PX,
              labelcolor=theme["fg2"], handlelength=1.6, borderaxespad=0.2, columnspacing=1.2, borderpad=0.1)
    return math.ceil(len(labels) / per_row)


def axes_labels(ax: Any, theme: dict[str, Any], xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel, fontsize=TICK_PX * PX, color=theme["fg2"])
    ax.set_ylabel(ylabel, fontsize=TICK_PX * PX, color=theme["fg2"])


def set_ticks(ax: Any, xr: tuple[float, float], yr: tuple[float, float], log: bool, width_px: float,
              height_px: float) -> None:
    """Limits, tick positions and labels as the live view draws them."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: PLC0415

    if log:
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(NullLocator())
        yticks = log_ticks(yr[0], yr[1], int(height_px // 26))
    else:
        yticks = nice_ticks(yr[0], yr[1], max(2, int(height_px // 38)))
    ax.set_xlim(*xr)
    ax.set_ylim(*yr)
    ax.xaxis.set_major_locator(FixedLocator(nice_ticks(xr[0], xr[1], max(2, int(width_px // 90)))))
    ax.yaxis.set_major_locator(FixedLocator(yticks))
    formatter = FuncFormatter(lambda v, _pos: fmt(v))
    ax.xaxis.set_major_formatter(formatter)
    ax.yaxis.set_major_formatter(formatter)


def empty(ax: Any, title: str, text: str = "no data", theme: dict[str, Any] | None = None) -> None:
    th = theme or THEMES["light"]
    style(ax, title, th)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=TICK_PX * PX, color=th["fg2"], transform=ax.transAxes)


def histogram(ax: Any, theme: dict[str, Any], counts: np.ndarray, lo: float, hi: float, title: str, color: str,
              xlabel: str, width_px: float) -> None:
    """The latest histogram panel (the live view's ``histogramPanel``)."""
    hi = lo + 1 if hi == lo else hi
    style(ax, title, theme)
    edges = np.linspace(lo, hi, len(counts) + 1)
    ax.bar(edges[:-1], counts, width=(hi - lo) / len(counts) * 0.92, align="edge", color=color, linewidth=0)
    set_ticks(ax, (lo, hi), (0.0, max(1.0, float(np.max(counts)) if len(counts) else 1.0) * 1.05), False, width_px,
              PANEL_HEIGHT - 90)
    axes_labels(ax, theme, xlabel, "count")


def heatmap(figure: Any, ax: Any, theme: dict[str, Any], grid: np.ndarray, title: str, width_px: float) -> None:
    """One sample's activations with row/column axes and a colour scale (the live view's ``heatmapPanel``)."""
    rows, cols = grid.shape
    finite = grid[np.isfinite(grid)]
    amax = float(np.abs(finite).max()) if finite.size else 0.0
    style(ax, title, theme)
    ax.grid(False)
    cmap = diverging(theme).with_extremes(bad=theme["grid"])
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-amax or -1, vmax=amax or 1, aspect="auto",
                      origin="lower", extent=(0, cols, 0, rows), interpolation="nearest")
    set_ticks(ax, (0, cols), (0, rows), False, width_px - 70, PANEL_HEIGHT - 90)
    axes_labels(ax, theme, "column", "row")
    bar = figure.colorbar(image, ax=ax, ticks=[-amax, 0, amax] if amax else [0], fraction=0.06, pad=0.03)
    bar.ax.tick_params(labelsize=TICK_PX * PX, colors=theme["fg2"], length=0)
    bar.ax.set_yticklabels([fmt(v) for v in ([-amax, 0, amax] if amax else [0])])
    bar.outline.set_edgecolor(theme["axis"])


# -- figures --------------------------------------------------------------------------------------------------------
def render_blocks(blocks: Sequence[Block], width: int | None = None, theme: str = "light") -> bytes:
    """One PNG with each block's header and panels, ``columns(width, panels, min_width)`` per row as in the live
    view; ``width`` in pixels (the browser's, else STATIC_WIDTH), ``theme`` "light" or "dark"."""
    figure = figure_blocks(blocks, width, theme)
    return _png(np.asarray(figure.canvas.buffer_rgba())[..., :3])


def figure_blocks(blocks: Sequence[Block], width: int | None = None, theme: str = "light") -> Any:
    """The drawn matplotlib Figure behind :func:`render_blocks` (tests inspect its axes)."""
    import matplotlib  # noqa: PLC0415 - only when a figure is made
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    th = THEMES.get(theme, THEMES["light"])
    width = int(min(MAX_WIDTH, max(MIN_WIDTH, width or STATIC_WIDTH)))
    shapes = []
    for block in blocks:
        cols = columns(width, block.panels, block.min_width)
        shapes.append((cols, math.ceil(block.panels / cols)))
    heights = [HEADER_HEIGHT + rows * block.row_height for block, (_, rows) in zip(blocks, shapes)]
    with matplotlib.rc_context({"lines.antialiased": False, "patch.antialiased": False, "font.size": TICK_PX * PX,
                                "text.color": th["fg"], "axes.labelcolor": th["fg2"]}):
        figure = Figure(figsize=(width / DPI, sum(heights) / DPI), dpi=DPI, facecolor=th["bg"], layout="constrained")
        figure.get_layout_engine().set(w_pad=6 * PX / 72, h_pad=4 * PX / 72, wspace=0.04, hspace=0.06)
        canvas = FigureCanvasAgg(figure)
        subfigures = figure.subfigures(len(blocks), 1, height_ratios=heights, squeeze=False).ravel()
        for block, sub, (cols, rows) in zip(blocks, subfigures, shapes):
            sub.set_facecolor(th["bg"])
            if block.header:
                sub.suptitle(block.header, x=0.01, ha="left", fontsize=TITLE_PX * PX, fontweight="bold", color=th["fg"])
            axes = list(sub.subplots(rows, cols, squeeze=False).ravel())
            for spare in axes[block.panels:]:
                spare.set_visible(False)
            for ax in axes:
                ax.panel_width_px = width / cols  # what legend() and set_ticks() lay out for
            block.draw(axes[:block.panels], th)
        canvas.draw()
    return figure


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image  # noqa: PLC0415 - a matplotlib dependency

    image = Image.fromarray(np.ascontiguousarray(rgb)).quantize(colors=48, dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def render_png(draw: Callable[[list[Any]], None], panels: int = 1, size: tuple[float, float] | None = None,
               theme: str = "light") -> bytes:
    """Call ``draw(axes)`` with ``panels`` matplotlib axes (``COLUMNS`` per row of PANEL_HEIGHT pixels; or one axes
    of ``size`` inches) and return palette PNG bytes."""
    import matplotlib  # noqa: PLC0415
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    th = THEMES.get(theme, THEMES["light"])
    columns_ = min(panels, COLUMNS) if size is None else 1
    rows = math.ceil(panels / columns_) if size is None else 1
    figsize = size or (STATIC_WIDTH / DPI * columns_ / COLUMNS, PANEL_HEIGHT / DPI * rows)
    with matplotlib.rc_context({"lines.antialiased": False, "patch.antialiased": False, "font.size": TICK_PX * PX,
                                "text.color": th["fg"]}):
        figure = Figure(figsize=figsize, dpi=DPI, facecolor=th["bg"], layout="constrained")
        canvas = FigureCanvasAgg(figure)
        axes = list(figure.subplots(rows, columns_, squeeze=False).ravel())
        for spare in axes[panels:]:
            spare.set_visible(False)
        draw(axes[:panels])
        canvas.draw()
    return _png(np.asarray(canvas.buffer_rgba())[..., :3])


def static_mark(png_base64: str) -> str:
    """How the browser finds the image showing this PNG (widgets.js ``watchStatic``) to put the live view back over
    it while the kernel lives: the 40 base64 characters before the constant IEND chunk, which hold the image data's
    Adler-32 and CRC-32 checksums (so two different images do not share them)."""
    return png_base64[-56:-16]


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


def fmt_value(v: float) -> str:
    """A readout value: five significant digits (widgets.js ``fmtv``)."""
    v = float(v)
    if not math.isfinite(v):
        return {math.inf: "Infinity", -math.inf: "-Infinity"}.get(v, "NaN")
    a = abs(v)
    if a != 0 and (a >= 1e6 or a < 1e-4):
        mantissa, exponent = f"{v:.4e}".split("e")
        return f"{mantissa}e{int(exponent):+d}"
    return _js_precision(v, 5)
