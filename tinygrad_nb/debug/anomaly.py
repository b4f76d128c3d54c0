"""The NaN/inf tracer: ``detect_anomaly()`` / ``set_detect_anomaly(True)``.

It is a dispatch observer (see :mod:`tinygrad_nb.dispatch`). While it is on, every forward op records where the user
called it (``ctx.provenance``, see :mod:`.provenance`) and every op output, forward and backward, is checked for
NaN/inf. The first non-finite value is reported with the op, its inputs (shape, min, max, NaN/inf counts) and the
user's line that created the tensor; for a backward op, the forward line that created the graph node.

* strict (default): raise :class:`NonFiniteError` carrying that report.
* non-strict: append an :class:`AnomalyEvent` to ``tracer.events`` and carry on. Only ops whose inputs were finite
  are recorded (the origin of the NaN, not every op it flows through afterwards).

With the tracer off nothing is registered, so ops pay nothing (one truthiness check that exists anyway).
"""
from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import dispatch
from ..dispatch import ObserverHandle, OpEvent
from ..tensor import Tensor
from .provenance import Location, format_location, library_frames, user_location
from .stats import describe, nonfinite_counts


class NonFiniteError(FloatingPointError):
    """An op produced NaN or inf while the tracer was on (or a guard found a non-finite loss/gradient).

    ``op``, ``phase`` ("forward", "backward" or "guard"), ``location`` ((filename, lineno) or None) and ``report``
    (the full text, also the message) are attributes.
    """

    def __init__(self, report: str, op: str = "", phase: str = "", location: Location | None = None):
        super().__init__(report)
        self.report = report
        self.op = op
        self.phase = phase
        self.location = location

    @property
    def where(self) -> str:
        """The location as people read it: ``train.py:12`` or ``cell [5], line 3`` ("" when unknown)."""
        return format_location(self.location, source=False) if self.location is not None else ""


@dataclass
class AnomalyEvent:
    """One non-finite op output recorded by a non-strict tracer."""

    op: str
    phase: str
    location: Location | None
    nan: int
    inf: int
    report: str
    inputs: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return format_location(self.location, source=False)


class AnomalyTracer:
    """The observer behind :func:`detect_anomaly`; also a context manager that attaches/detaches itself."""

    def __init__(self, strict: bool = True, check_inf: bool = True):
        self.strict = strict
        self.check_inf = check_inf
        self.events: list[AnomalyEvent] = []
        self._nonfinite: dict[int, weakref.ref] = {}  # id -> tensor, non-finite tensors already accounted for
        self._handle: ObserverHandle | None = None
        self._numpy_errors: dict[str, str] = {}

    # -- attach / detach ----------------------------------------------------------------------------------------
    def enable(self) -> AnomalyTracer:
        """Attach, and silence numpy's floating-point RuntimeWarnings until :meth:`disable`: the tracer reports the
        same NaN and inf itself, with the op and the line, so numpy's line inside an op only adds noise."""
        if self._handle is None:
            self._handle = dispatch.add_observer(self)
            self._numpy_errors = np.seterr(divide="ignore", over="ignore", invalid="ignore")
        return self

    def disable(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
            np.seterr(**self._numpy_errors)

    @property
    def enabled(self) -> bool:
        return self._handle is not None

    def __enter__(self) -> AnomalyTracer:
        return self.enable()

    def __exit__(self, *exc: object) -> None:
        self.disable()

    # -- the observer protocol ----------------------------------------------------------------------------------
    def op_begin(self, event: OpEvent) -> None:
        pass

    def op_end(self, event: OpEvent) -> None:
        if event.phase == "forward":
            location = user_location(sys._getframe(1))
            if event.ctx is not None:
                event.ctx.provenance = location
            out = event.output.data
            if out.dtype.kind in "fc" and not self._finite(event.device.xp, out):
                self._forward_anomaly(event, location)
        else:
            xp = event.device.xp
            for g in event.output:
                if g is not None and g.dtype.kind in "fc" and not self._finite(xp, g):
                    self._backward_anomaly(event)
                    return

    def _finite(self, xp: Any, array: Any) -> bool:
        if self.check_inf:
            return bool(xp.isfinite(array).all())
        return not bool(xp.isnan(array).any())

    def _seen(self, t: Any) -> bool:
        ref = self._nonfinite.get(id(t))
        return ref is not None and ref() is t

    def _remember(self, t: Any) -> None:
        if len(self._nonfinite) > 10_000:
            self._nonfinite = {k: r for k, r in self._nonfinite.items() if r() is not None}
        self._nonfinite[id(t)] = weakref.ref(t)

    # -- reports ------------------------------------------------------------------------------------------------
    def _forward_anomaly(self, event: OpEvent, location: Location | None) -> None:
        bad_inputs = [a for a in event.inputs if isinstance(a, Tensor) and a.data.dtype.kind in "fc"
                      and not self._finite(a.device.xp, a.data)]
        if not self.strict:
            # record where NaNs start, not every op they flow through: skip when every non-finite input is the
            # output of an op seen here already
            known = [self._seen(a) for a in bad_inputs]
            self._remember(event.output)
            for a in bad_inputs:
                self._remember(a)
            if bad_inputs and all(known):
                return
        nan, inf = nonfinite_counts(event.output.data)
        inputs = []
        for i, a in enumerate(event.inputs):
            if isinstance(a, Tensor):
                created = getattr(a._ctx, "provenance", None) if a._ctx is not None else None
                origin = f" (created at {format_location(created, source=False)})" if created else ""
                inputs.append(f"input {i}: {describe(a.data)}{origin}")
            elif not isinstance(a, (tuple, list, dict)) or len(repr(a)) < 60:
                inputs.append(f"input {i}: {a!r}")
        what = _what(nan, inf)
        lines = [f"{event.op} produced {what} in the forward pass",
                 f"  at {format_location(location)}"]
        inside = library_frames(sys._getframe(1))
        if inside:
            lines.append(f"  inside {' <- '.join(inside)}")
        lines += [f"  op: {event.op} (forward) on {event.device}", f"  output: {describe(event.output.data)}"]
        lines += [f"  {s}" for s in inputs]
        if bad_inputs:
            lines.append("  note: an input was already non-finite when this op ran (a leaf tensor, or a tensor made "
                         "before the tracer was on)")
        self._emit(event.op, "forward", location, nan, inf, "\n".join(lines), inputs)

    def _backward_anomaly(self, event: OpEvent) -> None:
        ctx = event.ctx
        location = getattr(ctx, "provenance", None)
        incoming = event.inputs[0]
        in_nan, in_inf = nonfinite_counts(incoming)
        inputs_finite = not (in_nan or (in_inf and self.check_inf))
        if not self.strict and not inputs_finite:
            return  # the non-finite gradient came from a later op, which was recorded already
        nan = inf = 0
        outputs = []
        for i, g in enumerate(event.output):
            if g is None:
                continue
            n_nan, n_inf = nonfinite_counts(g)
            nan, inf = nan + n_nan, inf + n_inf
            outputs.append(f"gradient for input {i}: {describe(g)}")
        inputs = []
        for i, p in enumerate(getattr(ctx, "parents", ()) or ()):
            if isinstance(p, Tensor):
                inputs.append(f"forward input {i}: {describe(p.data)}")
        where = format_location(location) if location else \
            "<unknown: the tracer was off when the forward op ran; turn it on before the forward pass>"
        lines = [f"{event.op}Backward produced {_what(nan, inf)} in the backward pass",
                 f"  forward op created at {where}",
                 f"  op: {event.op} (backward) on {event.device}",
                 f"  incoming gradient: {describe(incoming)}"]
        lines += [f"  {s}" for s in outputs + inputs]
        self._emit(event.op, "backward", location, nan, inf, "\n".join(lines), inputs)

    def _emit(self, op: str, phase: str, location: Location | None, nan: int, inf: int, report: str,
              inputs: list[str]) -> None:
        if self.strict:
            raise NonFiniteError(report, op=op, phase=phase, location=location)
        self.events.append(AnomalyEvent(op, phase, location, nan, inf, report, inputs))


def _what(nan: int, inf: int) -> str:
    parts = ([f"{nan} NaN"] if nan else []) + ([f"{inf} inf"] if inf else [])
    return " and ".join(parts) or "non-finite values"


# -- public API -------------------------------------------------------------------------------------------------
_global_tracer: AnomalyTracer | None = None


def detect_anomaly(strict: bool = True, check_inf: bool = True) -> AnomalyTracer:
    """A tracer to use as ``with detect_anomaly():`` (it attaches on enter and detaches on exit).

    ``strict=False`` records :class:`AnomalyEvent` s in ``tracer.events`` instead of raising; ``check_inf=False``
    ignores infinities (e.g. ``-inf`` attention masks) and only reports NaN.
    """
    return AnomalyTracer(strict=strict, check_inf=check_inf)


def set_detect_anomaly(enabled: bool, strict: bool = True, check_inf: bool = True) -> AnomalyTracer | None:
    """Turn the global tracer on or off (for a whole notebook or script). Returns the tracer when turned on."""
    global _global_tracer
    if _global_tracer is not None:
        _global_tracer.disable()
        _global_tracer = None
    if enabled:
        _global_tracer = AnomalyTracer(strict=strict, check_inf=check_inf).enable()
    return _global_tracer


def is_anomaly_enabled() -> bool:
    """True when the global tracer or any ``detect_anomaly`` block is active."""
    return any(isinstance(o, AnomalyTracer) for o in dispatch.observers)
