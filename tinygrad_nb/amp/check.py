"""``tg.amp.check``: run a model in low precision next to a float64 replay and report the error of every op.

    report = tg.amp.check(model, (x, y), dtype=tg.float16)   # forward + backward under autocast
    print(report)                                            # one row per op; HTML bars in a notebook
    tg.amp.check(model, (x, y), dtype=tg.float16, strict=True)  # PrecisionError at the first op beyond its bound

It is a dispatch observer. For every forward op inside the check it computes, in float64:

* ``exact``: the op on its own (low-precision) inputs, upcast. The op's *local* error ``|out - exact|`` splits into
  **storage** (rounding the exact result to the output dtype: at most 0.5 ULP) and **compute** (the rest: the
  kernel's own roundings). ``ulp`` is ``max |out - exact| / ulp_d(exact)`` in the output dtype ``d``; ``from`` says
  "storage" when the op is correctly rounded (ulp <= 0.5) and "compute" otherwise.
* ``replay``: the whole graph replayed in float64 from the float32 leaves (casts to 16 bits skipped); ``rel err``
  is ``max |out - replay| / max |replay|``, the error accumulated up to this op (end to end).
* ``overflow`` / ``underflow``: elements whose exact value is finite but beyond the dtype's largest finite value
  (65504 for float16), or non-zero but below its smallest subnormal (6e-8 for float16): they became inf or 0.

Backward nodes get the local columns too (their gradients against the node's backward in float64 on the same saved
values). ``strict=True`` checks each forward op against its documented bound (:mod:`.bounds`) as it runs and raises
:class:`PrecisionError` naming the op and the user's line (the NaN tracer's provenance).
"""
from __future__ import annotations

import html
import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import determinism, dispatch, ops
from .. import dtype as dtypes
from ..autograd import Context
from ..debug.provenance import Location, format_location, user_location
from ..tensor import Tensor
from . import bounds as B
from .autocast import autocast as autocast_region


class PrecisionError(RuntimeError):
    """An op's low-precision result exceeded its documented error bound (``strict=True``); ``op``, ``location``
    and ``row`` (the :class:`OpPrecision`) are attributes."""

    def __init__(self, message: str, op: str, location: Location | None, row: OpPrecision):
        super().__init__(message)
        self.op, self.location, self.row = op, location, row


@dataclass
class OpPrecision:
    """One row of a :class:`PrecisionReport`."""

    index: int
    phase: str  # "forward" or "backward"
    op: str
    module: str  # the innermost module running it ("" outside a module)
    dtype: str
    shape: tuple[int, ...]
    ulp: float  # max |out - exact| in ULPs of the output dtype (local error)
    storage_ulp: float  # the part of it that storing the exact result costs (<= 0.5)
    rel_error: float  # end to end vs the float64 replay (nan for backward rows)
    overflow: int
    underflow: int
    bound_ratio: float  # max |out - exact| / bound (<= 1 within the documented bound); nan for backward rows
    location: Location | None

    @property
    def source(self) -> str:
        """"storage" when the op is correctly rounded (its error is the rounding to its dtype), else "compute"."""
        return "storage" if self.ulp <= 0.5 + 1e-9 else "compute"

    @property
    def where(self) -> str:
        return format_location(self.location, source=False)


def _upcast(value: Any) -> Any:
    """Arrays of any float dtype as float64 numpy arrays; everything else unchanged."""
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        array = value.get() if hasattr(value, "get") and not isinstance(value, np.ndarray) else value  # cupy
        if dtypes.is_floating(array.dtype):
            return np.asarray(array).astype(np.float64)
        return np.asarray(array)
    return value


def _replay_forward(fn: type, arrays: list[Any], kwargs: dict[str, Any]) -> np.ndarray:
    """``fn.forward`` on float64 numpy arrays, outside autograd (no graph, no observers, no autocast)."""
    from ..device import Device  # noqa: PLC0415

    ctx = Context(fn, Device("cpu"))
    ctx.needs_input_grad = [False] * len(arrays)
    if fn is ops.Cast and len(arrays) > 1 and dtypes.is_floating(np.dtype(arrays[1])):
        return arrays[0]  # the float64 replay keeps full precision: a cast between float dtypes is the identity
    with np.errstate(all="ignore"), _plain_float64():
        return np.asarray(fn.forward(ctx, *arrays, **kwargs), dtype=np.float64)


class _plain_float64:  # noqa: N801
    """The float64 reference runs numpy's own kernels, also under deterministic("portable") (whose kernels are
    float32's; its matmul refuses float64). The reference is only compared with, never part of the results."""

    def __enter__(self) -> None:
        self.portable = determinism.portable_mode
        determinism.portable_mode = False

    def __exit__(self, *exc: object) -> None:
        determinism.portable_mode = self.portable


def _stats(out: np.ndarray, exact: np.ndarray, d: np.dtype) -> tuple[float, float, int, int]:
    """(max ULP error, max storage ULP, overflow count, underflow count) of ``out`` against ``exact`` in ``d``."""
    _, _, largest, tiniest = B.dtype_info(d)
    finite = np.isfinite(exact)
    overflow = int(np.count_nonzero(finite & (np.abs(exact) > largest)))
    underflow = int(np.count_nonzero((exact != 0) & (np.abs(exact) < tiniest)))
    both = finite & np.isfinite(out)
    if not both.any():
        return 0.0, 0.0, overflow, underflow
    e, o = exact[both], out[both]
    spacing = B.ulp(e, d)
    ulp_err = float(np.max(np.abs(o - e) / spacing))
    storage = float(np.max(np.abs(B.round_to(e, d) - e) / spacing))
    return ulp_err, storage, overflow, underflow


class _Checker:
    """The observer behind :func:`check`."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.rows: list[OpPrecision] = []
        self.replay: dict[int, np.ndarray] = {}  # id(array) -> its float64 replay value
        self.keep: list[Any] = []  # arrays whose ids are keys of replay (kept alive so ids stay unique)
        self.modules: list[str] = []
        self.backward_refs: dict[int, Any] = {}

    def _replayed(self, value: Any) -> Any:
        if isinstance(value, Tensor):
            found = self.replay.get(id(value.data))
            return found if found is not None else _upcast(value.data)
        return value

    def op_begin(self, event: dispatch.OpEvent) -> None:
        if event.phase == "backward" and event.ctx is not None and event.ctx.saved is not None:
            # the saved values are freed after this node runs: compute its float64 reference now
            ctx = event.ctx
            twin = Context(ctx.fn, ctx.device)
            twin.__dict__.update(ctx.__dict__)
            twin.xp = np
            twin.needs_input_grad = ctx.needs_input_grad
            twin.saved = tuple(_upcast(s) for s in ctx.saved) if isinstance(ctx.saved, tuple) else ctx.saved
            g64 = _upcast(event.inputs[0])
            if ctx.fn is ops.Cast:
                ref: Any = (g64, None)
            else:
                try:
                    with np.errstate(all="ignore"), _plain_float64():
                        ref = ctx.fn.backward(twin, g64)
                except Exception:  # noqa: BLE001 - a kernel without float64 (a custom op): no reference, no row
                    return
            self.backward_refs[id(event)] = ref if isinstance(ref, tuple) else (ref,)

    def op_end(self, event: dispatch.OpEvent) -> None:
        if event.phase == "forward":
            self._forward(event, user_location(sys._getframe(1)))
        else:
            self._backward(event)

    def _forward(self, event: dispatch.OpEvent, location: Location | None) -> None:
        out_t = event.output
        if not dtypes.is_floating(out_t.data.dtype):
            return
        fn = event.ctx.fn if event.ctx is not None else getattr(ops, event.op, None)
        if fn is None:
            return
        own = [_upcast(a.data) if isinstance(a, Tensor) else a for a in event.inputs]
        try:
            exact = _replay_forward(fn, own, event.kwargs)
            replay = _replay_forward(fn, [self._replayed(a) for a in event.inputs], event.kwargs)
        except Exception:  # noqa: BLE001 - a kernel without float64 (a custom op): no reference, no row
            return
        self.replay[id(out_t.data)] = replay
        self.keep.append(out_t.data)
        out = _upcast(out_t.data)
        d = out_t.data.dtype
        ulp_err, storage, overflow, underflow = _stats(out, exact, d)
        scale = float(np.max(np.abs(replay))) if replay.size else 0.0
        both = np.isfinite(out) & np.isfinite(replay)
        rel = float(np.max(np.abs(out - replay)[both]) / scale) if scale > 0 and both.any() else 0.0
        kind, bound_fn = B.bound_for(event.op)
        with np.errstate(all="ignore"):
            allowed = bound_fn(own, exact, d, event.kwargs)
            fin = np.isfinite(exact) & np.isfinite(out)
            excess = np.abs(out - exact) / np.where(allowed > 0, allowed, np.inf)
        ratio = float(np.max(np.broadcast_to(excess, out.shape)[fin])) if fin.any() else 0.0
        row = OpPrecision(len(self.rows), "forward", event.op, self.modules[-1] if self.modules else "", d.name,
                          tuple(out.shape), ulp_err, storage, rel, overflow, underflow, ratio, location)
        self.rows.append(row)
        if self.strict and (ratio > 1.0 or overflow):
            what = (f"{overflow} value(s) overflowed {d.name}" if overflow else
                    f"error {ulp_err:.3g} ULP of {d.name} is {ratio:.3g}x its bound ({kind})")
            raise PrecisionError(f"{event.op} at {format_location(location)}: {what}", event.op, location, row)

    def _backward(self, event: dispatch.OpEvent) -> None:
        refs = self.backward_refs.pop(id(event), None)
        if refs is None or event.ctx is None:
            return
        for g, ref in zip(event.output, refs):
            if g is None or ref is None or not dtypes.is_floating(g.dtype):
                continue
            out = _upcast(g)
            ref = np.broadcast_to(np.asarray(ref, dtype=np.float64), out.shape) if np.ndim(ref) <= out.ndim else ref
            if np.shape(ref) != out.shape:
                continue
            ulp_err, storage, overflow, underflow = _stats(out, ref, g.dtype)
            self.rows.append(OpPrecision(len(self.rows), "backward", event.op, "", g.dtype.name, tuple(out.shape),
                                         ulp_err, storage, math.nan, overflow, underflow, math.nan,
                                         getattr(event.ctx, "provenance", None)))


class PrecisionReport:
    """The rows of :func:`check`; prints as a table, renders as HTML with per-op error bars in a notebook."""

    def __init__(self, rows: list[OpPrecision], dtype: np.dtype):
        self.rows = rows
        self.dtype = dtype

    def worst(self, n: int = 5) -> list[OpPrecision]:
        """The ``n`` forward rows with the largest end-to-end error."""
        forward = [r for r in self.rows if r.phase == "forward"]
        return sorted(forward, key=lambda r: -r.rel_error)[:n]

    @property
    def overflows(self) -> int:
        return sum(r.overflow for r in self.rows)

    @property
    def underflows(self) -> int:
        return sum(r.underflow for r in self.rows)

    def _cells(self, r: OpPrecision) -> list[str]:
        rel = "" if math.isnan(r.rel_error) else f"{r.rel_error:.2e}"
        bound = "" if math.isnan(r.bound_ratio) else f"{r.bound_ratio:.2f}"
        return [str(r.index), r.phase[:3], r.op, r.module, r.dtype, "x".join(map(str, r.shape)) or "scalar",
                f"{r.ulp:.2f}", r.source, rel, bound, str(r.overflow), str(r.underflow)]

    _HEADER = ["#", "ph", "op", "module", "dtype", "shape", "ulp", "from", "rel err", "/bound", "over", "under"]

    def __str__(self) -> str:
        rows = [self._HEADER] + [self._cells(r) for r in self.rows]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self._HEADER))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"{len(self.rows)} op(s) in {self.dtype.name}; overflow {self.overflows}, "
                     f"underflow {self.underflows}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        finite = [r.rel_error for r in self.rows if not math.isnan(r.rel_error) and r.rel_error > 0]
        top = math.log10(max(finite)) if finite else 0.0
        low = math.log10(min(finite)) if finite else -1.0
        span = max(top - low, 1e-9)
        body = []
        for r in self.rows:
            cells = "".join(f"<td>{html.escape(c)}</td>" for c in self._cells(r))
            shown = not math.isnan(r.rel_error) and r.rel_error > 0
            width = 5 + 95 * (math.log10(r.rel_error) - low) / span if shown else 0
            color = "var(--jp-error-color1, #d32f2f)" if r.overflow or r.bound_ratio > 1 else \
                "var(--jp-brand-color1, #1976d2)"
            bar = f'<div style="background:{color};height:0.8em;width:{width:.0f}%"></div>'
            body.append(f"<tr>{cells}<td style='min-width:10em'>{bar}</td></tr>")
        head = "".join(f"<th>{h}</th>" for h in self._HEADER) + "<th>rel err (log)</th>"
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class precision:  # noqa: N801 - a context manager, named like autocast
    """``with tg.amp.precision(dtype=tg.float16) as report:`` checks every op run inside the block (and every backward
    node) the way :func:`check` does, under ``autocast(device_type, dtype)`` unless ``autocast=False`` (then the
    block chooses its own dtypes). ``report`` fills as ops run. The ``%%tg_precision`` cell magic is this around a
    cell."""

    def __init__(self, dtype: Any = None, strict: bool = False, device_type: str = "cpu", autocast: bool = True):
        self.dtype = dtypes.to_dtype(dtype) if dtype is not None else dtypes.float16
        self.checker = _Checker(strict)
        self.report = PrecisionReport(self.checker.rows, self.dtype)
        self._autocast = autocast_region(device_type, dtype=self.dtype) if autocast else None
        self._handle: dispatch.ObserverHandle | None = None

    def __enter__(self) -> PrecisionReport:
        self._handle = dispatch.add_observer(self.checker)
        if self._autocast is not None:
            self._autocast.__enter__()
        return self.report

    def __exit__(self, *exc: object) -> None:
        if self._autocast is not None:
            self._autocast.__exit__(*exc)
        if self._handle is not None:
            self._handle.remove()


def check(model: Any, batch: Any, dtype: Any = None, loss_fn: Any = None, backward: bool = True,
          strict: bool = False, device_type: str | None = None) -> PrecisionReport:
    """Run ``model`` on ``batch`` under ``autocast(dtype)`` with the precision observer on; return the report.

    ``batch``: the model's input tensor, or ``(input, target)``; with a target the loss is ``loss_fn(output,
    target)`` (default: cross-entropy for integer targets, mean squared error otherwise). ``backward=True`` also
    runs the backward pass (of the loss, or of ``output.sum()``) and reports its nodes. Gradients the backward
    writes into the model's parameters are put back as they were. ``strict=True`` raises :class:`PrecisionError`
    at the first forward op beyond its bound.
    """
    from ..nn import functional as F  # noqa: PLC0415
    from ..nn.module import Module  # noqa: PLC0415

    if isinstance(batch, (tuple, list)):
        inputs, target = batch[0], (batch[1] if len(batch) > 1 else None)
    else:
        inputs, target = batch, None
    if not isinstance(inputs, Tensor):
        raise TypeError(f"check: batch must be a Tensor or (input, target), got {type(inputs).__name__}")
    device_type = device_type or inputs.device.type
    watch = precision(dtype, strict=strict, device_type=device_type, autocast=False)
    checker = watch.checker
    handles = []
    params = list(model.parameters()) if isinstance(model, Module) else []
    saved_grads = [p.grad for p in params]
    if isinstance(model, Module):
        def enter(name: str) -> Any:
            def pre_hook(module: Any, args: Any) -> None:
                checker.modules.append(name)
            return pre_hook

        def leave(module: Any, args: Any, output: Any) -> None:
            checker.modules.pop()

        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_pre_hook(enter(name)))
                handles.append(module.register_forward_hook(leave))
    try:
        with watch, autocast_region(device_type, dtype=watch.dtype):
            out = model(inputs)
            if target is not None:
                if loss_fn is None:
                    loss_fn = F.cross_entropy if not dtypes.is_floating(target.dtype) else F.mse_loss
                    if loss_fn is F.mse_loss:
                        out = out.float()
                out = loss_fn(out, target)
        if backward and out.requires_grad:
            for p in params:
                p.grad = None
            with watch:
                (out if out.ndim == 0 else out.sum()).backward()
    finally:
        for h in handles:
            h.remove()
        for p, g in zip(params, saved_grads):
            p.grad = g
    return watch.report
