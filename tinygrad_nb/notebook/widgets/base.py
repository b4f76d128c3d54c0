"""What every live widget shares: the anywidget view, the data protocol, display handles and the static swap.

A live widget is a plain Python object (``LossCurve``, ``GradHistograms``, ...) that owns ``view``, a small anywidget
(``LiveView``) drawing on a canvas in the browser. Data never goes into synced traitlets (they would be saved into the
notebook): it travels in custom messages, as float32 rows. The widget keeps, per named *series*, a list of rows (tuples
of floats, one append per step) and the number already sent. A message carries::

    content = {"kind": "data",
               "series": [{"name", "start", "width", ...meta}],    # rows[start:] of each series with new rows
               "latest": [{"name", "shape", ...meta}],             # arrays replaced, not accumulated (histograms)
               "records": {"start": n, "items": [...]}}            # small JSON records (NaN events)
    buffers = [float32 rows of each series..., float32 data of each latest array...]

The browser appends rows in order and asks for a resend (``{"kind": "sync", "have": {name: rows}, "records": n}``)
if it sees a gap or starts empty (a reloaded page). Nothing from the browser is trusted: a message that is not such a
request (another kind, a missing field, a count that is not a non-negative integer below 2**53, ...) is ignored, and
the first one per widget is logged (logger ``tinygrad_nb.notebook.widgets.base``, level WARNING).

When the widget finishes, every display of it is updated in place (through its IPython display handle) to a static
PNG plus a constant ``text/plain``: what the notebook saves, so GitHub, nbconvert, nbval and a reload without a kernel
show it. The PNG is drawn like the live view (see figures.py), in the theme and at the width the browser reported,
with the choices made there (log scale, smoothing, selected parameter, zoomed range). When a browser showed the view
(it said so with a sync request, or the cell came from JupyterLab, see ``front_end_renders``), the view stays open
and the browser puts an interactive view back over the image while the kernel lives (``LiveView.static_mark``);
otherwise the view is closed.

The ``text/plain`` is fixed when the widget is made (``summary()`` may only use constructor arguments): the live
display and the static image carry the same text, so nbval (which sees the first display and ignores the update and
the PNG) finds the same output on every run.
"""
from __future__ import annotations

import logging
import reprlib
import sys
from pathlib import Path
from typing import Any, Self

import anywidget
import ipywidgets
import numpy as np
import traitlets

from ..throttle import Channel, register_live, unregister_live
from .figures import (
    PANEL_HEIGHT,
    Block,
    axes_labels,
    empty,
    extent,
    legend,
    png_bundle,
    render_blocks,
    set_ticks,
    static_mark,
    style,
)
from .figures import histogram as draw_histogram

ESM = (Path(__file__).resolve().parent.parent / "static" / "widgets.js").read_text(encoding="utf-8")
RELEASED_ESM = "export default { render() {} };"  # what a finished view keeps (see LiveWidget._release)
MAX_COUNT = 2**53  # counts from the browser are JavaScript numbers: exact integers stop here

log = logging.getLogger(__name__)
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_short.maxdict = _short.maxlist = 4
_short.maxlevel = 2


class MalformedMessage(ValueError):
    """A message from the browser that is not a valid request; the text says what is wrong with it."""


def parse_sync_request(content: Any) -> tuple[dict[str, int], int]:
    """``(have, records)`` of a browser's resend request ``{"kind": "sync", "have": {name: rows}, "records": n}``.

    Raises :class:`MalformedMessage` for anything else: not an object, another or no ``kind``, a missing field,
    ``have`` not an object of string names to counts, or a count that is not an ``int`` (bools and floats are not),
    is negative or is ``MAX_COUNT`` or more. Other fields are ignored (room for later versions of the browser half).
    """
    if not isinstance(content, dict):
        raise MalformedMessage(f"expected an object, got {type(content).__name__} {_short.repr(content)}")
    if "kind" not in content:
        raise MalformedMessage("no 'kind' field")
    if content["kind"] != "sync":
        raise MalformedMessage(f"unknown kind {_short.repr(content['kind'])}")
    for name in ("have", "records"):
        if name not in content:
            raise MalformedMessage(f"a sync request without {name!r}")
    have = content["have"]
    if not isinstance(have, dict):
        raise MalformedMessage(f"'have' is {type(have).__name__} {_short.repr(have)}, not an object")
    for series, rows in have.items():
        if not isinstance(series, str):
            raise MalformedMessage(f"'have' has a key that is not a string: {_short.repr(series)}")
        _check_count(f"'have'[{_short.repr(series)}]", rows)
    _check_count("'records'", content["records"])
    return dict(have), content["records"]


def _check_count(what: str, value: Any) -> None:
    if type(value) is not int:  # noqa: E721 - bool is an int subclass, and True is not a count
        raise MalformedMessage(f"{what} is {type(value).__name__} {_short.repr(value)}, not an integer")
    if value < 0:
        raise MalformedMessage(f"{what} is negative ({value})")
    if value >= MAX_COUNT:
        raise MalformedMessage(f"{what} is too large ({_short.repr(value)})")


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython with a kernel attached); False in scripts, terminals and plain IPython."""
    module = sys.modules.get("IPython")
    if module is None:
        return False
    shell = module.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def front_end_renders() -> bool:
    """True when the running cell came from a front end that renders widgets while the cell runs: JupyterLab and
    Notebook 7 send the cell's id with each execute request; nbclient, papermill and nbval do not. (A browser's own
    "I show this view" message waits in the kernel's queue until the cell ends, too late for a widget finished in the
    cell that made it, such as fit()'s dashboard.)"""
    if not in_notebook():
        return False
    kernel = sys.modules["IPython"].get_ipython().kernel
    try:
        parent = kernel.get_parent()
    except (AttributeError, TypeError):
        return False
    return isinstance(parent, dict) and "cellId" in (parent.get("metadata") or {})


_shared_layout: ipywidgets.Layout | None = None


def shared_layout() -> ipywidgets.Layout:
    """One default Layout for every live view and dashboard box. ipywidgets would otherwise make a Layout model per
    widget, and each costs ~1 KB in a saved notebook's widget state (nbclient saves them all)."""
    global _shared_layout
    if _shared_layout is None or _shared_layout.comm is None:
        _shared_layout = ipywidgets.Layout()
    return _shared_layout


class LiveView(anywidget.AnyWidget):
    """The browser half of every live widget: one ESM, ``kind`` picks the drawing. Only small settings are synced."""

    _esm = ESM
    kind = traitlets.Unicode("").tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    log_scale = traitlets.Bool(False).tag(sync=True)  # LossCurve: the browser's log-scale toggle
    smoothing = traitlets.Float(0.0).tag(sync=True)  # LossCurve: the browser's EMA slider
    selected = traitlets.Unicode("").tag(sync=True)  # the parameter / layer picked in the browser
    x_range = traitlets.List(traitlets.Float(), default_value=[]).tag(sync=True)  # the step range zoomed to, or []
    theme = traitlets.Unicode("light").tag(sync=True)  # "light" or "dark": what the browser shows (static image too)
    view_width = traitlets.Int(0).tag(sync=True)  # the view's width in the browser, pixels (0: never shown)
    static_mark = traitlets.Unicode("").tag(sync=True)  # after the swap: which image to put a live view over
    slot = traitlets.Int(0).tag(sync=True)  # the view's place among a dashboard's views put back over its image
    child = traitlets.Unicode("").tag(sync=True)  # kind "host": the model id of the ipywidgets box it shows

    text = "live view"  # the constant text/plain, set by the owning LiveWidget (see the module docstring)

    def __repr__(self) -> str:
        return self.text


class StaticSwap:
    """What a live widget and a dashboard of them share from display to the end of a run: ``show()`` displays the
    live view (or, once finished, the static image), ``finish()`` sends what is pending and swaps every display for
    one static PNG with the constant ``summary()`` text, ``close()`` stops without one; ``with`` finishes.

    A subclass sets ``finished``, ``closed`` and ``_handles`` (the display handles) and provides ``_live_view()``,
    ``flush()``, ``summary()``, ``to_png()`` and ``_release()`` (close views, remove hooks, set ``closed``).
    """

    finished: bool
    closed: bool
    _handles: list[Any]

    def _live_view(self) -> Any:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def summary(self) -> str:
        raise NotImplementedError

    def to_png(self) -> bytes:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def show(self) -> None:
        """Display the live view (or, once finished, the static image) in the notebook."""
        from IPython.display import display  # noqa: PLC0415 - only ever called inside IPython

        if self.finished or self.closed:
            display(self.static_bundle(), raw=True)
            return
        self._handles.append(display(self._live_view(), display_id=True))

    def _ipython_display_(self) -> None:
        self.show()

    def __repr__(self) -> str:
        return self.summary()

    def static_bundle(self) -> dict[str, str]:
        """The MIME bundle that replaces the live view: image/png plus the constant text/plain."""
        return png_bundle(self.to_png(), self.summary())

    def finish(self) -> None:
        """End of the run: send what is pending, swap every display for the static image, then release (a view a
        browser shows stays open: the browser puts it back over the image while the kernel lives)."""
        if self.finished or self.closed:
            return
        self.flush()
        self.finished = True
        bundle = self.static_bundle() if self._handles else None
        for handle in self._handles:
            handle.update(bundle, raw=True)
        self._release()
        if bundle is not None:
            self._revive(static_mark(bundle["image/png"]))

    def _revive(self, mark: str) -> None:
        """Tell the browser which image to put the live view back over (subclasses with a view kept open)."""

    def close(self) -> None:
        """Stop: remove hooks, close the view. No static image (use ``finish()`` for that); safe to call twice."""
        if not self.closed:
            self._release()

    @property
    def active(self) -> bool:
        """False once finished or closed (the cell-ownership registry then forgets it)."""
        return not self.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


class LiveWidget(StaticSwap):
    """Base class: series of float32 rows, latest arrays and records, throttled into messages to ``view``."""

    kind = ""
    default_title = ""
    batch = 100  # rows per message at full speed (see throttle.Channel)

    def __init__(self, title: str | None = None, show: bool | None = None, comm: Any = None, **view_state: Any):
        self.title = title or self.default_title
        self._malformed_logged = False  # a malformed browser message is logged once per widget
        self._browser_seen = front_end_renders()  # a browser shows the view (or it sent a sync request)
        if comm is not None:  # a stand-in comm (tests, benchmarks): see throttle.RecordingComm
            view_state["comm"] = comm
        self.view = LiveView(kind=self.kind, title=self.title, layout=shared_layout(), **view_state)
        self.view.text = self.summary()
        self.view.on_msg(self._on_browser_message)
        self._rows: dict[str, list[tuple[float, ...]]] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._sent: dict[str, int] = {}
        self._latest: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
        self._latest_dirty: set[str] = set()
        self._records: list[dict[str, Any]] = []
        self._records_sent = 0
        self.channel = Channel(self._send_pending, batch=self.batch)
        self._handles: list[Any] = []
        self._hooks: list[Any] = []  # hook handles a subclass registers; removed when the widget is released
        self.finished = False
        self.closed = False
        register_live(self)
        visible = in_notebook() if show is None else show
        if visible:
            self.show()
        _own(self)

    # -- data in (cheap) ------------------------------------------------------------------------------------------
    def _series(self, name: str, width: int, **meta: Any) -> list[tuple[float, ...]]:
        """The row list of series ``name``, created on first use."""
        rows = self._rows.get(name)
        if rows is None:
            rows = self._rows[name] = []
            self._meta[name] = {"width": width, **meta}
            self._sent[name] = 0
        return rows

    def _set_latest(self, name: str, array: np.ndarray, **meta: Any) -> None:
        self._latest[name] = (np.ascontiguousarray(array, dtype=np.float32), meta)
        self._latest_dirty.add(name)

    def _add_record(self, record: dict[str, Any]) -> None:
        self._records.append(record)

    def _selected_series(self) -> str:
        """The series picked in the view, else the first one ("" while there is none)."""
        return self.view.selected if self.view.selected in self._rows else next(iter(self._rows), "")

    def rows(self, name: str) -> np.ndarray:
        """Every row of series ``name`` logged so far, as float64 (what the static figure draws)."""
        rows = self._rows.get(name) or []
        width = self._meta.get(name, {}).get("width", 2)
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), width)

    # -- data out (throttled) -------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Send everything pending now (called at cell end, on interrupt, on NaN and when the widget finishes)."""
        if not self.closed:
            self.channel.flush(force=True)

    def _send_pending(self) -> None:
        content, buffers = self._message(self._sent, self._records_sent, self._latest_dirty)
        self._latest_dirty = set()
        for item in content["series"]:
            self._sent[item["name"]] = len(self._rows[item["name"]])
        self._records_sent = len(self._records)
        if content["series"] or content["latest"] or content["records"]["items"]:
            self.view.send(content, buffers)

    def _message(self, have: dict[str, int], records_from: int,
                 latest: set[str] | list[str]) -> tuple[dict[str, Any], list[bytes]]:
        """The message carrying rows past ``have`` of each series, records past ``records_from`` and ``latest``."""
        series, buffers = [], []
        for name, rows in self._rows.items():
            start = max(0, int(have.get(name, 0)))
            if start >= len(rows):
                continue
            meta = self._meta[name]
            block = np.asarray(rows[start:], dtype=np.float32).reshape(-1, meta["width"])
            series.append({"name": name, "start": start, **meta})
            buffers.append(block.tobytes())
        latest_items = []
        for name in latest:
            array, meta = self._latest[name]
            latest_items.append({"name": name, "shape": list(array.shape), **meta})
            buffers.append(array.tobytes())
        records = {"start": records_from, "items": self._records[records_from:]}
        return {"kind": "data", "series": series, "latest": latest_items, "records": records}, buffers

    def _on_browser_message(self, _view: Any, content: Any, _buffers: Any) -> None:
        """The browser asks for what it lacks (a gap, or a page reloaded while the kernel kept running). Anything
        but a valid request (see :func:`parse_sync_request`) is ignored; the first one is logged. A finished view
        kept open for the browser still answers (a message sent before the browser listened is asked for again)."""
        if self.view.comm is None:
            return
        try:
            have, records = parse_sync_request(content)
        except MalformedMessage as e:
            if not self._malformed_logged:
                self._malformed_logged = True
                log.warning("%s widget %r: ignored a malformed message from the browser (%s); further ones are "
                            "ignored silently", type(self).__name__, self.title, e)
            return
        self._browser_seen = True
        content_out, buffers = self._message(have, records, list(self._latest))
        self.view.send(content_out, buffers)

    # -- display, the static swap, closing ------------------------------------------------------------------------
    def _live_view(self) -> Any:
        return self.view

    def summary(self) -> str:
        """The constant text/plain: made from constructor arguments only (no values, steps, times or ids)."""
        return self.title

    min_width = 420  # pixels per panel column, as in widgets.js (the static image lays out the same columns)

    def panel_count(self) -> int:
        """How many matplotlib axes the static figure uses (the live view's panels)."""
        return 1

    def draw(self, axes: list[Any], theme: dict[str, Any] | None = None) -> None:
        """Draw the static figure on ``panel_count()`` matplotlib axes in ``theme`` (figures.THEMES; subclasses)."""
        raise NotImplementedError

    def header(self) -> str:
        """The static image's title line: the title and the choices made in the browser (subclasses add them)."""
        return self.title

    def block(self) -> Block:
        """This widget's part of a static figure."""
        return Block(self.draw, self.panel_count(), self.min_width, self.header())

    def to_png(self) -> bytes:
        """The static figure as PNG bytes, at the width and in the theme the browser reported."""
        return render_blocks([self.block()], width=self.view.view_width, theme=self.view.theme)

    def _release(self) -> None:
        self.closed = True
        self._remove_hooks()
        unregister_live(self)
        if self.view.comm is not None and not (self.finished and self._browser_seen):
            # The notebook's saved widget state (nbclient, "save widget state") keeps the last state of every model,
            # closed or not; drop the ESM source from it so a finished figure costs a few hundred bytes there.
            # (A finished view a browser shows stays open, ESM and all: the browser keeps it interactive.)
            self.view._esm = RELEASED_ESM
            self.view.close()

    def _revive(self, mark: str, slot: int = 0) -> None:
        if self._browser_seen and self.view.comm is not None:
            self.view.slot = slot
            self.view.static_mark = mark

    def close(self) -> None:
        """Stop: remove hooks, close the view (also one kept open after ``finish()``); safe to call twice."""
        if not self.closed:
            self._release()
        if self.view.comm is not None:
            self.view._esm = RELEASED_ESM
            self.view.close()

    @property
    def active(self) -> bool:
        """False once closed and no view is kept open (the cell-ownership registry then forgets it)."""
        return not self.closed or self.view.comm is not None

    def _remove_hooks(self) -> None:
        """Remove the hook handles in ``self._hooks`` (a subclass with other cleanup overrides this)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []


def _own(obj: Any) -> None:
    """Let the cell that created ``obj`` own it (closed when the cell is re-run), when the magics module is there."""
    if not in_notebook():
        return
    try:
        from ..ownership import own  # noqa: PLC0415 - optional: written alongside the magics
    except ImportError:
        return
    own(obj)


# -- drawing shared by the widgets whose static figure is "values over steps" + "latest histogram" ------------------
def finish_steps_panel(ax: Any, theme: dict[str, Any], title: str, x: np.ndarray, xr: tuple[float, float],
                       low: np.ndarray, high: np.ndarray, xlabel: str, ylabel: str) -> None:
    """Legend, title, ticks and axis labels of a panel already plotted with values over steps ``x``
    (GradHistograms' percentile bands, ActivationInspector's statistics).

    The y range fits ``low``..``high`` at the steps inside the zoomed range ``xr`` only, so zooming in rescales y as
    the live view does; the legend's rows push the plot area down (widgets.js lays it out the same way)."""
    width_px = getattr(ax, "panel_width_px", 500)
    shown = (x >= xr[0]) & (x <= xr[1])
    legend_rows = legend(ax, theme, width_px)
    style(ax, title, theme, legend_rows)
    set_ticks(ax, xr, extent(np.concatenate([low[shown], high[shown]])), False, width_px - 82,
              PANEL_HEIGHT - 90 - 18 * legend_rows)
    axes_labels(ax, theme, xlabel, ylabel)


def latest_histogram_panel(ax: Any, theme: dict[str, Any], latest: tuple[np.ndarray, dict[str, Any]] | None,
                           step_word: str, color: str, xlabel: str) -> None:
    """The "latest histogram" panel beside a steps panel: ``latest`` is a ``LiveWidget._latest`` entry
    ``(counts, meta)`` (meta holds the bins' ``lo``, ``hi`` and the ``step`` it was taken at, which the title calls
    ``step_word``: "pass", "call"), or None before the first one, which draws a placeholder."""
    if latest is None:
        empty(ax, "latest histogram", "no histogram yet", theme)
        return
    counts, meta = latest
    draw_histogram(ax, theme, counts, meta["lo"], meta["hi"], f"latest histogram ({step_word} {meta['step']})", color,
                   xlabel, getattr(ax, "panel_width_px", 500) - 82)
