"""``%tg_log --widget``: browse the commit history in a notebook.

The widget shows

* a timeline figure: one bar per commit, as tall as the new bytes it stored (log scale), green for a cell that
  succeeded and red for an error, HEAD marked, lost variables written under their commit, and the last replay's
  verdict above every replayed commit (``=`` bitwise, ``~`` outputs differ, ``x`` diverged);
* a commit picker and the picked commit's details: its cell's source, which variables changed since its parent
  (with max abs / ULP differences for tensors, as ``%tg_diff``), what is lost, its last replay verdict;
* a "check out" button that restores the namespace to after the picked commit, as ``%tg_checkout`` does, and redraws
  (a commit that is not trusted or is damaged is refused, with the reason in the status line).

It is made of ipywidgets' own controls. What the notebook saves is the static timeline PNG and the text table; while
the kernel lives, a "host" LiveView (widgets.js) puts the interactive box over that image, so a reload without a
kernel shows the image, never "model not found". Outside Jupyter ``%tg_log --widget`` prints the table.
"""
from __future__ import annotations

import html
from typing import Any

from ..widgets.figures import empty, png_bundle, render_png, style
from .trust import CheckpointStoreError

OK_COLOR, ERROR_COLOR, HEAD_COLOR = "#2ca02c", "#d62728", "#1f77b4"
VERDICT_MARKS = {"bitwise": ("=", OK_COLOR), "outputs differ": ("~", "#ff7f0e"), "diverged": ("x", ERROR_COLOR)}
SOURCE_LINES = 30  # longer cells are cut in the details pane


def human_bytes(n: float) -> str:
    """``0 B``, ``812 B``, ``1.5 KB``, ``23 MB`` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" or abs(n) >= 100 else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} GB"


def draw_timeline(ax: Any, rows: list[dict[str, Any]], title: str = "cell checkpoints",
                  theme: dict[str, Any] | None = None) -> None:
    """The timeline of :meth:`Recorder.timeline` rows on one matplotlib axes: a bar per commit as tall as the new
    bytes it stored (symlog: a commit that stored nothing has no bar, and says "0 B"), every bar labelled, HEAD and
    replay verdicts above it, lost variables below the axis, all text horizontal."""
    from ..widgets.figures import PX, THEMES, TICK_PX, axes_labels  # noqa: PLC0415

    th = theme or THEMES["light"]
    if not rows:
        empty(ax, title, "no commits recorded", th)
        return
    style(ax, title, th)
    ax.grid(True, axis="y")
    ax.grid(False, axis="x")
    xs = list(range(len(rows)))
    sizes = [max(int(r["bytes"]), 0) for r in rows]
    ax.bar(xs, sizes, color=[OK_COLOR if r["ok"] else ERROR_COLOR for r in rows], width=0.6, linewidth=0)
    ax.set_yscale("symlog", linthresh=1024)
    top = max(max(sizes), 1024)
    ax.set_ylim(0, top * 30)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: PLC0415

    decades = [0] + [1024 ** k for k in range(1, 5) if 1024 ** k <= top * 30]
    ax.yaxis.set_major_locator(FixedLocator(decades))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: human_bytes(v)))
    ax.set_xticks(xs)
    ax.set_xticklabels([f"#{r['seq']} {r['cell']}".strip() for r in rows], fontsize=TICK_PX * PX)
    axes_labels(ax, th, "commit (cell)", "new bytes stored")
    size = TICK_PX * PX
    for x, r, n in zip(xs, rows, sizes):
        above = [human_bytes(n)]
        mark = VERDICT_MARKS.get(r.get("replay") or "")
        if mark:
            above.append(f"replay: {r['replay']}")
        if r["head"]:
            above.append("HEAD")
        ax.annotate("\n".join(reversed(above)), (x, max(n, 0)), textcoords="offset points", xytext=(0, 3),
                    ha="center", va="bottom", fontsize=size, color=HEAD_COLOR if r["head"] else th["fg2"])
        if r["lost"]:
            ax.annotate("lost: " + ", ".join(r["lost"]), (x, 0), xycoords=("data", "axes fraction"),
                        textcoords="offset points", xytext=(0, -36), ha="center", va="top", fontsize=size,
                        color=th["error"], annotation_clip=False)


def timeline_png(rows: list[dict[str, Any]], theme: str = "light") -> bytes:
    from ..widgets.figures import THEMES  # noqa: PLC0415

    th = THEMES.get(theme, THEMES["light"])
    width = min(16.0, max(7.0, 1.6 + 1.1 * len(rows)))
    lost = any(r["lost"] for r in rows)
    return render_png(lambda axes: draw_timeline(axes[0], rows, theme=th), size=(width, 3.2 + 0.3 * lost),
                      theme=theme)


class HistoryBrowser:
    """The history of a :class:`~.session.Recorder` as an ipywidgets box (displayed like any widget)."""

    def __init__(self, recorder: Any):
        import ipywidgets as widgets  # noqa: PLC0415 - only in a notebook

        self.rec = recorder
        self.figure = widgets.Image(format="png", layout=widgets.Layout(align_self="flex-start"))  # no stretching
        self.picker = widgets.Dropdown(description="commit", layout=widgets.Layout(width="28em"))
        self.checkout_button = widgets.Button(description="check out", tooltip="restore the namespace to after it",
                                              icon="undo")
        self.details = widgets.HTML()
        self.status = widgets.HTML()
        self.box = widgets.VBox([self.figure, widgets.HBox([self.picker, self.checkout_button]), self.details,
                                 self.status])
        self._refreshing = False  # while refresh() sets the picker: it shows the details once, at the end
        self.picker.observe(lambda change: None if self._refreshing else self.show_details(), names="value")
        self.checkout_button.on_click(lambda _button: self.check_out())
        self.refresh()

    def refresh(self, pick: int | None = None) -> None:
        """Redraw the timeline and the picker (picking ``pick``, else HEAD)."""
        rows = self.rec.timeline()
        host = getattr(self, "host", None)
        self.figure.value = timeline_png(rows, theme=host.theme if host is not None else "light")
        options = [(f"#{r['seq']} {r['cell']} {'ok' if r['ok'] else 'error'}{' (HEAD)' if r['head'] else ''}",
                    r["seq"]) for r in rows]
        head = next((r["seq"] for r in rows if r["head"]), rows[-1]["seq"] if rows else None)
        self._refreshing = True
        try:
            self.picker.options = options
            self.picker.value = pick if pick in {seq for _, seq in options} else head
        finally:
            self._refreshing = False
        self.checkout_button.disabled = not rows
        self.show_details()

    def show_details(self) -> None:
        seq = self.picker.value
        commit = self.rec.store.commits.get(seq) if seq is not None else None
        self.details.value = "<i>no commits recorded</i>" if commit is None else self._details_html(commit)

    def check_out(self) -> None:
        """Restore the namespace to after the picked commit."""
        from .magics import describe_checkout  # noqa: PLC0415 - magics imports this module

        commit = self.rec.store.commits.get(self.picker.value)
        if commit is None:
            return
        try:
            report = self.rec.checkout(commit)
        except CheckpointStoreError as e:  # not trusted, or damaged: nothing changed
            self.status.value = f"<span style='color:{ERROR_COLOR}'>{html.escape(str(e))}</span>"
            return
        self.refresh(pick=commit.seq)
        self.status.value = "<br>".join(html.escape(line) for line in describe_checkout(commit, report))

    def _details_html(self, commit: Any) -> str:
        m = commit.manifest
        cell = m["cell"]
        lines = cell["source"].splitlines()
        source = "\n".join(lines[:SOURCE_LINES]) + (f"\n... ({len(lines) - SOURCE_LINES} more lines)"
                                                     if len(lines) > SOURCE_LINES else "")
        parts = [f"<b>#{commit.seq}</b> {html.escape(_cell_label(commit))} · "
                 + ("succeeded" if cell["success"] else f"<span style='color:{ERROR_COLOR}'>failed: "
                    f"{html.escape(str(cell.get('error') or ''))}</span>")
                 + f" · {len(m['variables'])} variable{'' if len(m['variables']) == 1 else 's'}",
                 f"<pre style='font-size:11px;max-height:14em;overflow:auto'>{html.escape(source)}</pre>"]
        parent = self.rec.store.commits.get(commit.parent) if commit.parent is not None else None
        if not commit.trusted or (parent is not None and not parent.trusted):
            why = commit.untrusted if not commit.trusted else f"its parent #{parent.seq}: {parent.untrusted}"
            parts.append(f"<span style='color:{ERROR_COLOR}'><b>not trusted:</b> {html.escape(why)} "
                         "(%tg_ckpt trust accepts it)</span>")
        elif parent is None:
            changed = ", ".join(sorted(m["variables"])) or "nothing"
            parts.append(f"<b>recorded:</b> {html.escape(changed)}")
        else:
            try:
                rows = self.rec.diff(parent, commit)
            except CheckpointStoreError as e:  # a damaged blob: say so instead of failing the widget
                parts.append(f"<span style='color:{ERROR_COLOR}'>{html.escape(str(e))}</span>")
            else:
                changed = ", ".join(f"{r['variable']} {r['change']}" + (f" (max abs {r['max_abs']}, max ULP "
                                                                         f"{r['max_ulp']})" if r["max_abs"] else "")
                                    + (f" ({r['where']})" if r["where"] else "") for r in rows) or "nothing"
                parts.append(f"<b>changed since #{parent.seq}:</b> {html.escape(changed)}")
        if m["lost"]:
            parts.append("<b>lost:</b> " + html.escape(", ".join(sorted(m["lost"]))))
        replay = next((r for r in self.rec.last_replay or [] if r.get("seq") == commit.seq), None)
        if replay is not None:
            parts.append(f"<b>last replay:</b> {html.escape(replay['result'])} "
                         f"({html.escape(str(replay.get('detail', '')))})")
        return "<br>".join(parts)

    def static_bundle(self) -> dict[str, str]:
        """What the notebook saves: the timeline PNG and the %tg_log text table."""
        from .magics import table  # noqa: PLC0415 - magics imports this module

        return png_bundle(timeline_png(self.rec.timeline()), "cell checkpoints (%tg_log)\n" + table(self.rec.log()))

    def _ipython_display_(self) -> None:
        """Display the static timeline (what the notebook saves, so a reload without a kernel shows it, never "model
        not found"); while the kernel lives the browser puts the interactive box over it (a "host" LiveView)."""
        from IPython.display import display  # noqa: PLC0415

        from ..widgets.base import LiveView  # noqa: PLC0415
        from ..widgets.figures import static_mark  # noqa: PLC0415

        bundle = self.static_bundle()
        display(bundle, raw=True)
        self.host = LiveView(kind="host", title="history", child=self.box.model_id,
                             static_mark=static_mark(bundle["image/png"]))
        self.host.observe(lambda _change: self.refresh(pick=self.picker.value), names="theme")  # the browser's

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.box._repr_mimebundle_(**kwargs)


def _cell_label(commit: Any) -> str:
    return f"In[{commit.execution_count}]" if commit.execution_count is not None else "cell"
