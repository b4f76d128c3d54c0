"""``RunComparison``: the same metric of several runs overlaid (one panel per metric, one colour per run, validation
dashed), with the config differences as a table.

    RunComparison({"project": "digits-ablation"}, store=path)          # finished runs: a figure and a table
    cmp = RunComparison(store=path, metrics=["loss", "val_acc"], show=False)
    cmp.add_run(run)                                                    # a track.Run or RunRecord, e.g. from a sweep

It draws with the LossCurve view (hover readout of every run at the cursor, zoom, log scale, smoothing; the log
scale never applies to bounded metrics such as accuracy). Runs that are finished have nothing left to stream, so in a
notebook the comparison is displayed at once in its static form (the PNG the notebook saves, a constant text/plain,
then the table as HTML and text), and while the kernel lives the browser puts the interactive view over the PNG.
``finish()`` redraws the PNG (after ``add_run``) and ends the live view.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..tables import Table
from .base import in_notebook
from .figures import names_list, series_role, static_mark
from .loss_curve import LossCurve

_HIDDEN_PREFIXES = ("act/", "grad/")  # per-layer statistics that debug.capture logs into runs


class RunComparison(LossCurve):
    """Runs given by ids, names or a filter dict (as ``track.compare``) from ``store``; ``metrics`` to plot (default:
    every scalar except per-layer statistics and epoch aggregates)."""

    default_title = "RunComparison"

    def __init__(self, runs_or_filter: Sequence[str] | dict[str, Any] | str | None = None,
                 store: Any = None, metrics: Sequence[str] | None = None, title: str | None = None,
                 log_scale: bool = False, smoothing: float = 0.0, show: bool | None = None, comm: Any = None):
        from ...track.compare import _filtered, _store  # noqa: PLC0415 - track is below notebook

        self.store = _store(store) if store is not None or runs_or_filter is not None else None
        self.run_names: list[str] = []
        self._configs: dict[str, dict[str, Any]] = {}
        self._summaries: dict[str, dict[str, dict[str, float]]] = {}
        visible = in_notebook() if show is None else show
        super().__init__(metrics=metrics, title=title, log_scale=log_scale, smoothing=smoothing, show=False,
                         comm=comm)
        if runs_or_filter is not None:
            st = self.store
            if isinstance(runs_or_filter, dict):
                records = _filtered(st, dict(runs_or_filter))
            else:
                records = st.resolve([runs_or_filter] if isinstance(runs_or_filter, str) else list(runs_or_filter))
            for record in sorted(records, key=lambda r: (r.start_time or 0, r.name)):  # oldest first: stable colours
                self.add_run(record)
        self._static_handles: list[Any] = []
        if visible:
            self.show()

    def add_run(self, run: Any, label: str | None = None) -> None:
        """Add the metrics of ``run`` (a ``track.Run``, a ``RunRecord`` or a run id in ``store``) as one colour."""
        if isinstance(run, str):
            if self.store is None:
                raise ValueError(f"RunComparison.add_run({run!r}): give store=... to look run ids up in")
            run = self.store.get(run)
        run_id = run.id
        store = getattr(run, "store", None) if hasattr(run, "log") else None  # a live track.Run carries its store
        if store is not None:
            from ...track import flush_all  # noqa: PLC0415

            flush_all()  # what the run queued is written before it is read back
        store = store or self.store
        if store is None:
            raise ValueError(f"RunComparison.add_run: no store to read run {run_id} from (give store=...)")
        label = label or getattr(run, "name", None) or run_id
        if label in self.run_names:
            label = f"{label} ({run_id[:8]})"
        color = len(self.run_names)
        self.run_names.append(label)
        self._configs[label] = dict(getattr(run, "config", {}) or {})
        names = self.metrics if self.metrics is not None else [
            n for n in store.metric_names(run_id) if not n.startswith(_HIDDEN_PREFIXES) and "/epoch_" not in n]
        self._summaries[label] = {}
        for name in names:
            steps, values, _times = store.series(run_id, name, skip_damaged=True)
            if not len(steps):
                continue
            panel, role = series_role(name)
            rows = self._series(f"{name} @ {label}", 2, panel=panel, role=role, color=color,
                                label=label + (" (val)" if role == "val" else ""))
            rows.extend(zip((float(s) for s in steps), (float(v) for v in values)))
            self._summaries[label][name] = float(values[-1])
            self.channel.tick(len(steps))

    @property
    def table(self) -> Table:
        """One row per run: its label, the config keys whose values differ between the runs, each metric's final
        value (HTML in a notebook, text elsewhere)."""
        keys = sorted({k for c in self._configs.values() for k in c})
        if len(self._configs) > 1:
            keys = [k for k in keys if len({repr(c.get(k)) for c in self._configs.values()}) > 1]
        metrics = list(dict.fromkeys(n for s in self._summaries.values() for n in s))
        columns = ["run"] + keys + [f"{m} final" for m in metrics]
        rows = [{"run": label, **{k: self._configs[label].get(k) for k in keys},
                 **{f"{m} final": self._summaries[label].get(m) for m in metrics}} for label in self.run_names]
        return Table(columns, rows)

    def summary(self) -> str:
        what = names_list(self.metrics) if self.metrics is not None else "metrics"
        return f"{self.title}: {what} of several runs overlaid (one colour per run; validation dashed)"

    def show(self) -> None:
        """Display the static figure (what the notebook saves) and the table; the browser makes the figure
        interactive while the kernel lives."""
        from IPython.display import display  # noqa: PLC0415

        bundle = self.static_bundle()
        self._static_handles.append(display(bundle, raw=True, display_id=True))
        display(self.table)
        self.flush()
        if self.view.comm is not None:
            self.view.static_mark = static_mark(bundle["image/png"])

    def finish(self) -> None:
        """Redraw the static figure (runs added since it was shown) and close the live view."""
        if self.closed:
            return
        self.flush()
        self.finished = True
        bundle = self.static_bundle() if self._static_handles else None
        for handle in self._static_handles:
            handle.update(bundle, raw=True)
        self._release()
        if bundle is not None:
            self._revive(static_mark(bundle["image/png"]))
