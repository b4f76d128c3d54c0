"""The live widgets: small anywidget canvases fed by float32 deltas, swapped for static images when a run ends."""
from .activations import ActivationInspector
from .base import LiveView, LiveWidget, in_notebook
from .compare import RunComparison
from .dashboard import Dashboard
from .grads import GradHistograms
from .loss_curve import LossCurve
from .nan_tracer import NaNTracer
from .timeline import ProfileTimeline

__all__ = ["ActivationInspector", "Dashboard", "GradHistograms", "LiveView", "LiveWidget", "LossCurve", "NaNTracer",
           "ProfileTimeline", "RunComparison", "in_notebook"]
