"""The live sweep view: in Jupyter a table of trials (config, status, best metric) above the metric curves of all
trials overlaid (a :class:`~tinygrad_nb.notebook.widgets.LossCurve`, one series per trial); elsewhere one text line
per ended trial and the trial table at the end.

When a trial ends pruned its curve turns grey (failed and NaN trials: grey and dashed) in the live view and in the
static image, through :meth:`LossCurve.set_series_style`: the style is sent to the browser at once and kept in the
series' meta, so a view rendered later (another display, a reloaded page) draws it too. Table rows get the same
greying (failed rows red).

The table is :meth:`SweepResult.table`, the same :class:`~tinygrad_nb.track.Comparison` ``track.compare`` prints.
"""
from __future__ import annotations

import html
import sys
import time
from typing import Any

GREY = "#9e9e9e"  # the table's pruned rows (JupyterLab's --jp-ui-font-color3) and the ended curves
# LossCurve.set_series_style arguments per trial status. Alpha 0.8: over a white page the line is 178/255 grey, over
# JupyterLab's dark #111 130/255, so it recedes behind the running trials yet stays darker (lighter) than the grid.
STATUS_STYLES: dict[str, dict[str, Any]] = {
    "pruned": {"color": GREY, "alpha": 0.8},
    "failed": {"color": GREY, "alpha": 0.8, "dashed": True},
    "nan": {"color": GREY, "alpha": 0.8, "dashed": True},
}
TRIAL_COLORS = 7  # trials cycle through the palette's first 7 colours: its 8th is grey, which means "ended badly"


class NullView:
    def trial_started(self, trial: Any) -> None:
        pass

    def trial_logged(self, trial: Any, records: Any) -> None:
        pass

    def trial_ended(self, trial: Any, result: Any) -> None:
        pass

    def close(self, result: Any) -> None:
        pass


class TextView(NullView):
    """``[sweep NAME] trial 3 pruned   val_loss 0.4121   5/12 ended; best: trial 2 (0.3012)``, then the table."""

    def __init__(self, result: Any, stream: Any = None):
        self.stream = stream
        self.ended = 0

    def _print(self, text: str) -> None:
        print(text, file=self.stream if self.stream is not None else sys.stdout, flush=True)

    def trial_ended(self, trial: Any, result: Any) -> None:
        self.ended += 1
        best = result.best
        value = "-" if trial.value is None else f"{trial.value:.6g}"
        tail = f"; best: trial {best.trial} ({best.value:.6g})" if best is not None else ""
        self._print(f"[sweep {result.name}] trial {trial.trial} {trial.status:<8} {result.metric} {value}   "
                    f"{self.ended} ended{tail}")

    def close(self, result: Any) -> None:
        self._print(str(result))


class NotebookView(NullView):
    """The Jupyter view: an HTML trial table (redrawn at most 4 times a second) and the overlaid curves."""

    def __init__(self, result: Any):
        import ipywidgets  # noqa: PLC0415
        from IPython.display import display  # noqa: PLC0415

        from ..notebook.widgets import LossCurve  # noqa: PLC0415

        class SweepCurves(LossCurve):
            """One series per trial in a single panel (the metric's); an ended trial's style per STATUS_STYLES."""

            def add(self, name: str, panel: str, steps: list[int], values: list[float]) -> None:
                rows = self._rows.get(name)
                if rows is None:  # a new trial: the next colour (an index into the palette, as RunComparison's)
                    rows = self._series(name, 2, panel=panel, role="train", color=len(self._rows) % TRIAL_COLORS)
                rows.extend(zip(steps, values))
                self.channel.tick(len(steps))

        self.result = result
        self.table = ipywidgets.HTML(value=self._html())
        display(self.table)
        self.curves = SweepCurves(metrics=None, title=f"{result.name}: {result.metric}")
        self._styled: set[str] = set()  # series with a status style (reset if the trial runs again: a retry)
        self._next_draw = 0.0

    def _html(self) -> str:
        table = self.result.table()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
        rows = []
        for row in table.rows:
            style = {"pruned": "color: var(--jp-ui-font-color3, #9e9e9e)",
                     "failed": "color: var(--jp-error-color1, #d32f2f)"}.get(row["status"], "")
            cells = "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in table.columns)
            rows.append(f'<tr style="{style}">{cells}</tr>')
        return f"<b>{html.escape(str(self.result).splitlines()[0])}</b><table><tr>{head}</tr>{''.join(rows)}</table>"

    def _redraw(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now >= self._next_draw:
            self._next_draw = now + 0.25
            self.table.value = self._html()

    def trial_started(self, trial: Any) -> None:
        self._redraw()

    def trial_logged(self, trial: Any, records: Any) -> None:
        metric = self.result.metric
        steps = [s for s, _, v in records if metric in v]
        if steps:
            values = [v[metric] for _, _, v in records if metric in v]
            self.curves.add(f"trial {trial.trial}", metric, steps, values)
        self._redraw()

    def trial_ended(self, trial: Any, result: Any) -> None:
        name, style = f"trial {trial.trial}", STATUS_STYLES.get(trial.status)
        if name in self.curves.panels().get(self.result.metric, ()):  # a trial that logged no metric has no curve
            if style is not None:
                self.curves.set_series_style(name, **style)
                self._styled.add(name)
            elif name in self._styled:  # a retried trial (its first attempt failed) that now finished
                self.curves.set_series_style(name)
                self._styled.discard(name)
        self._redraw(force=True)

    def close(self, result: Any) -> None:
        self._redraw(force=True)
        self.curves.finish()


def _cell(value: Any) -> str:
    from ..track.compare import _cell as cell  # noqa: PLC0415 - the same number formatting as the text table

    return cell(value)


def make_view(live: bool | None, result: Any) -> Any:
    if live is False:
        return NullView()
    if live is None:
        live = _in_notebook()
    return NotebookView(result) if live else TextView(result)


def _in_notebook() -> bool:
    """notebook.widgets' in_notebook(), without importing the widgets (ipywidgets) in a script."""
    module = sys.modules.get("IPython")
    if module is None:
        return False
    shell = module.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
