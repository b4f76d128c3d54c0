"""``%tg_log --widget``: browse the commit history in a notebook.

The widget shows

* a timeline figure: one bar per commit, as tall as the new bytes it stored (log scale), green for a cell that
  succeeded and red for an error, HEAD marked, lost variables written under their commit, and the last replay's
  verdict above every replayed commit (``=`` bitwise, ``~`` outputs differ, ``x`` diverged);
* a commit picker and the picked commit's details: its cell's source, which variables changed since its parent
  (with max abs / ULP differences for tensors, as ``%tg_diff``), what is lost, its last replay verdict;
* a "check out" button that restores the namespace to after the picked commit, as ``%tg_checkout`` does, and redraws
  (a commit that is not trusted or is damaged is refused, with the reason in the status line).

It is made of ipywidgets' own controls (no JavaScript of ours). Outside Jupyter ``%tg_log --widget`` prints the table.
"""
from __future__ import annotations

import html
from typing import Any

from ..widgets.figures import empty, render_png, style
from .trust import CheckpointStoreError

OK_COLOR, ERROR_COLOR, HEAD_COLOR = "#2ca02c", "#d62728", "#1f77b4"
VERDICT_MARKS = {"bitwise": ("=", OK_COLOR), "outputs differ": ("~", "#ff7f0e"), "diverged": ("x", ERROR_COLOR)}
SOURCE_LINES = 30  # longer cells are cut in the details pane


def draw_timeline(ax: Any, rows: list[dict[str, Any]], title: str = "cell checkpoints") -> None:
    """The timeline of :meth:`Recorder.timeline` rows on one matplotlib axes."""
    if not rows:
        empty(ax, title, "no commits recorded")
        return
    style(ax, title)
    xs = list(range(len(rows)))
    heights = [max(int(r["bytes"]), 1) for r in rows]
    ax.bar(xs, heights, color=[OK_COLOR if r["ok"] else ERROR_COLOR for r in rows], width=0.7)
    ax.set_yscale("log")
    ax.set_ylabel("new bytes", fontsize=7)
    ax.set_xticks(xs)
    ax.set_xticklabels([f"#{r['seq']}\n{r['cell']}" for r in rows], fontsize=6)
    top = max(heights)
    for x, r in zip(xs, rows):
        if r["head"]:
            ax.plot([x], [top * 2.5], marker="v", color=HEAD_COLOR, markersize=6)
            ax.annotate("HEAD", (x, top * 2.5), textcoords="offset points", xytext=(0, 5), ha="center",
                        fontsize=6, color=HEAD_COLOR)
        mark = VERDICT_MARKS.get(r.get("replay") or "")
        if mark:
            ax.annotate(mark[0], (x, heights[x]), textcoords="offset points", xytext=(0, 2), ha="center",
                        fontsize=8, fontweight="bold", color=mark[1])
        if r["lost"]:
            ax.annotate("lost: " + ", ".join(r["lost"]), (x, 1), textcoords="offset points", xytext=(0, 3),
                        ha="center", fontsize=5, color=ERROR_COLOR, rotation=90, va="bottom")
    ax.set_ylim(0.8, top * 8)


def timeline_png(rows: list[dict[str, Any]]) -> bytes:
    return render_png(lambda axes: draw_timeline(axes[0], rows))


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
        self.figure.value = timeline_png(rows)
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

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.box._repr_mimebundle_(**kwargs)


def _cell_label(commit: Any) -> str:
    return f"In[{commit.execution_count}]" if commit.execution_count is not None else "cell"
