"""Notebook experience: live widgets (anywidget canvases), ``fit``, ``live(run)``, and text fallbacks.

    from tinygrad_nb.notebook import LossCurve, Dashboard, NaNTracer, fit, live
    history = fit(model, loader, loss_fn, opt, epochs=3, val_loader=val, metrics=["accuracy"])

Live views get float32 deltas at most ~10 times a second (see :mod:`.throttle`); when a run ends they are swapped for
a static PNG and a constant text, so saved notebooks, exported HTML and nbval see a small, stable output. Outside
Jupyter the same calls print a throttled text progress line. See docs/notebook.md.
"""
from .fit import History, evaluate, fit
from .live import LiveSink, live
from .text_progress import TextProgress
from .throttle import RecordingComm, flush_all
from .widgets import (
           ActivationInspector,
           Dashboard,
           GradHistograms,
           LiveWidget,
           LossCurve,
           NaNTracer,
           ProfileTimeline,
           RunComparison,
           in_notebook,
)
from .tables import Table

__all__ = ["ActivationInspector", "Dashboard", "GradHistograms", "History", "LiveSink", "LiveWidget", "LossCurve",
           "NaNTracer", "ProfileTimeline", "RecordingComm", "RunComparison", "Table", "TextProgress", "evaluate", "fit", "flush_all", "in_notebook", "live"]
