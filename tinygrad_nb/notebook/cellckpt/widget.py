"""``%tg_log --widget``: the commit timeline as a figure, built on the live-widget base.

The history is complete when the magic runs, so the widget is finished at once: in a notebook it displays the static
PNG (one bar per commit: height the new bytes stored, green for a cell that succeeded, red for an error, a marker on
HEAD, the lost variables written under their commit) with a constant ``text/plain`` (``summary()`` uses no values),
so nbval sees the same output on every run. Outside Jupyter ``%tg_log --widget`` prints the text table instead.
The history also goes to the view as JSON records (``_add_record``), one per commit.
"""
from __future__ import annotations

from typing import Any

from ..widgets.base import LiveWidget
from ..widgets.figures import empty, style

OK_COLOR, ERROR_COLOR, HEAD_COLOR = "#2ca02c", "#d62728", "#1f77b4"


class CommitTimeline(LiveWidget):
    """The recorded commits of a :class:`~.session.Recorder` (``rows``: :meth:`Recorder.timeline`)."""

    kind = "ckpt_log"
    default_title = "cell checkpoints"

    def __init__(self, rows: list[dict[str, Any]], title: str | None = None, show: bool | None = None,
                 comm: Any = None):
        super().__init__(title=title, show=False, comm=comm)
        self.commits = [dict(r) for r in rows]
        for row in self.commits:
            self._add_record(row)
        self._send_pending()  # at once: there is nothing to throttle
        self.finish()
        if show if show is not None else _in_notebook():
            self.show()

    def summary(self) -> str:
        return f"{self.title}: commit timeline"

    def draw(self, axes: list[Any]) -> None:
        ax = axes[0]
        if not self.commits:
            empty(ax, self.title, "no commits recorded")
            return
        style(ax, self.title)
        xs = list(range(len(self.commits)))
        heights = [max(int(r["bytes"]), 1) for r in self.commits]
        colors = [OK_COLOR if r["ok"] else ERROR_COLOR for r in self.commits]
        ax.bar(xs, heights, color=colors, width=0.7)
        ax.set_yscale("log")
        ax.set_ylabel("new bytes", fontsize=7)
        ax.set_xticks(xs)
        ax.set_xticklabels([f"#{r['seq']}\n{r['cell']}" for r in self.commits], fontsize=6)
        top = max(heights)
        for x, r in zip(xs, self.commits):
            if r["head"]:
                ax.plot([x], [top * 2.5], marker="v", color=HEAD_COLOR, markersize=6)
                ax.annotate("HEAD", (x, top * 2.5), textcoords="offset points", xytext=(0, 5), ha="center",
                            fontsize=6, color=HEAD_COLOR)
            if r["lost"]:
                ax.annotate("lost: " + ", ".join(r["lost"]), (x, 1), textcoords="offset points", xytext=(0, 3),
                            ha="center", fontsize=5, color=ERROR_COLOR, rotation=90, va="bottom")
        ax.set_ylim(0.8, top * 8)


def _in_notebook() -> bool:
    from ..widgets.base import in_notebook

    return in_notebook()
