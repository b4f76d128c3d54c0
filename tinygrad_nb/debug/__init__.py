"""Debugging tools: the NaN/inf tracer, finiteness guards, per-layer capture, source provenance.

    from tinygrad_nb import debug
    with debug.detect_anomaly():          # raise NonFiniteError at the line that first makes a NaN
        loss = model(x).log().mean()
        loss.backward()
    guard = debug.Guard(model)            # cheap, always on: guard.step(loss) each step
    with debug.capture(model, every=10) as cap:   # per-layer activation / gradient statistics
        ...
"""
from .anomaly import AnomalyEvent, AnomalyTracer, NonFiniteError, detect_anomaly, is_anomaly_enabled, set_detect_anomaly
from .capture import Capture, capture
from .guard import Guard, check_finite
from .provenance import format_location, user_location
from .stats import array_stats, describe

__all__ = ["AnomalyEvent", "AnomalyTracer", "Capture", "Guard", "NonFiniteError", "array_stats", "capture",
           "check_finite", "describe", "detect_anomaly", "format_location", "is_anomaly_enabled",
           "set_detect_anomaly", "user_location"]
