"""``Dashboard``: several live widgets stacked (an ipywidgets box), swapped for one static PNG at the end.

    dash = Dashboard.for_model(model)               # LossCurve, then GradHistograms, then ActivationInspector
    dash.loss.log(loss=loss)
    dash.finish()

    dash = Dashboard([LossCurve(show=False), NaNTracer(show=False)])   # any widgets created with show=False
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ipywidgets

from .activations import ActivationInspector
from .base import LiveWidget, StaticSwap, _own, in_notebook, shared_layout
from .figures import render_blocks
from .grads import GradHistograms
from .loss_curve import LossCurve


class DashboardBox(ipywidgets.VBox):
    """The dashboard's outer box, whose text/plain is the dashboard's constant summary (in full: ipywidgets would cut
    it at 110 characters, and it must equal the static image's text, see widgets/base.py)."""

    text = "Dashboard"

    def __repr__(self) -> str:
        return self.text

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        data = super()._repr_mimebundle_(**kwargs)
        if data is not None:
            data["text/plain"] = self.text
        return data


class Dashboard(StaticSwap):
    """Stacks ``widgets``, each the full output width (each view lays its panels out in as many columns as fit)."""

    def __init__(self, widgets: Sequence[LiveWidget], title: str = "Dashboard", show: bool | None = None):
        if not widgets:
            raise ValueError("Dashboard: give it at least one widget")
        self.widgets = list(widgets)
        self.title = title
        self.box = DashboardBox([w.view for w in self.widgets], layout=shared_layout())
        self.box.text = self.summary()
        self._handles: list[Any] = []
        self.finished = False
        self.closed = False
        visible = in_notebook() if show is None else show
        if visible:
            self.show()
        _own(self)

    @classmethod
    def for_model(cls, model: Any = None, loss: bool = True, grads: bool = True, activations: bool = True,
                  every: int = 10, show: bool | None = None, comm_factory: Any = None) -> Dashboard:
        """The usual training dashboard: a LossCurve, and (given a model) GradHistograms and ActivationInspector.
        ``comm_factory()`` makes a comm per widget (tests and benchmarks: :class:`~..throttle.RecordingComm`)."""
        def comm() -> Any:
            return comm_factory() if comm_factory is not None else None

        widgets: list[LiveWidget] = []
        if loss:
            widgets.append(LossCurve(show=False, comm=comm()))
        if model is not None and grads:
            widgets.append(GradHistograms(model, every=every, show=False, comm=comm()))
        if model is not None and activations:
            widgets.append(ActivationInspector(model, every=every, show=False, comm=comm()))
        return cls(widgets, show=show)

    def find(self, kind: type) -> Any:
        """The first widget of class ``kind`` (or None)."""
        return next((w for w in self.widgets if isinstance(w, kind)), None)

    @property
    def loss(self) -> LossCurve | None:
        return self.find(LossCurve)

    @property
    def grads(self) -> GradHistograms | None:
        return self.find(GradHistograms)

    @property
    def activations(self) -> ActivationInspector | None:
        return self.find(ActivationInspector)

    # -- the same life cycle as a single widget -------------------------------------------------------------------
    def _live_view(self) -> Any:
        return self.box

    def flush(self) -> None:
        for w in self.widgets:
            w.flush()

    def summary(self) -> str:
        return "\n".join([self.title] + [f"  {w.summary()}" for w in self.widgets])

    def to_png(self) -> bytes:
        """One figure with every widget's panels, stacked as in the live view, at the width and in the theme the
        browser reported."""
        view = self.widgets[0].view
        return render_blocks([w.block() for w in self.widgets], width=view.view_width, theme=view.theme)

    def _release(self) -> None:
        self.closed = True
        for w in self.widgets:
            if not w.closed:
                w.finished = w.finished or self.finished  # finished with the dashboard: its static image is shown
                w._release()  # a view a browser shows stays open until close() (see LiveWidget._release)
        self.box.close()

    def _revive(self, mark: str) -> None:
        for slot, w in enumerate(self.widgets):
            w._revive(mark, slot)

    def close(self) -> None:
        """Stop every widget and close their views (also those kept open after ``finish()``)."""
        if not self.closed:
            self._release()
        for w in self.widgets:
            w.close()

    @property
    def active(self) -> bool:
        return not self.closed or any(w.active for w in self.widgets)
