"""``opcheck(op, samples)``: the checks every custom op should pass before anyone relies on it.

Per sample input:

* **schema**: the result is a tensor on the inputs' device whose shape and dtype match the shape function's;
* **no_mutation**: forward and backward leave every input's values untouched;
* **gradient**: backward against central finite differences in float64 (:func:`tinygrad_nb.gradcheck`);
* **dtype**: float32 and float64 inputs give outputs of the right dtype, and the float32 values match float64's;
* **deterministic**: in deterministic mode two runs give identical bits (a kernel declared nondeterministic must
  raise :class:`~tinygrad_nb.determinism.DeterminismError` instead);
* **devices**: every other available device with a kernel (cuda; and the default device, when it is not cpu) gives
  the cpu values and gradients.

A failing check raises :class:`OpCheckError` naming the op, the check, the sample and the numbers; the returned
:class:`OpCheckReport` says which checks ran and which were skipped, and why.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..autograd import GradcheckError, gradcheck, no_grad
from ..tensor import Tensor
from .registry import CustomOp, LibraryError, lookup

CHECKS = ("schema", "no_mutation", "gradient", "dtype", "deterministic", "devices")


class OpCheckError(AssertionError):
    """A custom op failed one of :func:`opcheck`'s checks."""


class Sample:
    """One sample input: positional arguments (tensors or plain values) and keyword attributes."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        parts = [f"tensor{tuple(a.shape)}" if isinstance(a, Tensor) else repr(a) for a in self.args]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"({', '.join(parts)})"


@dataclass
class OpCheckReport:
    """What :func:`opcheck` did: per check, "ok" (perhaps with a note) or "skipped: why"."""

    op: str
    samples: int
    results: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        width = max(len(c) for c in self.results) if self.results else 0
        lines = [f"opcheck {self.op}: {self.samples} sample(s)"]
        lines += [f"  {check.ljust(width)}  {result}" for check, result in self.results.items()]
        return "\n".join(lines)

    __repr__ = __str__

    @property
    def passed(self) -> list[str]:
        return [c for c, r in self.results.items() if r.startswith("ok")]


def _samples(sample_inputs: Any) -> list[Sample]:
    if isinstance(sample_inputs, (Tensor, Sample)):
        sample_inputs = [sample_inputs]
    result = []
    for s in sample_inputs:
        if isinstance(s, Sample):
            result.append(s)
        elif isinstance(s, tuple):
            result.append(Sample(*s))
        else:
            result.append(Sample(s))
    return result


def _numpy(t: Any) -> np.ndarray:
    data = t.data if isinstance(t, Tensor) else t
    return data.get() if hasattr(data, "get") and not isinstance(data, np.ndarray) else np.asarray(data)


def _floating_tensors(sample: Sample) -> list[int]:
    return [i for i, a in enumerate(sample.args) if isinstance(a, Tensor) and np.dtype(a.data.dtype).kind == "f"]


def _cast(sample: Sample, dtype: Any, device: Any = None) -> Sample:
    args = []
    for a in sample.args:
        if isinstance(a, Tensor):
            array = _numpy(a)
            if array.dtype.kind == "f":
                array = array.astype(dtype)
            a = Tensor(array, device=device if device is not None else a.device)
        args.append(a)
    return Sample(*args, **sample.kwargs)


def opcheck(op: CustomOp | str, sample_inputs: Any, *, checks: Iterable[str] = CHECKS, atol: float = 1e-5,
            rtol: float = 1e-3, float32_rtol: float = 1e-4, float32_atol: float = 1e-5) -> OpCheckReport:
    """Run the checks (module docstring) on ``op`` for each sample; raise :class:`OpCheckError` on the first failure.

    ``sample_inputs``: a tensor, a tuple of arguments, a :class:`Sample` (for keyword attributes), or a list of
    those. ``atol``/``rtol`` are gradcheck's; ``float32_rtol``/``float32_atol`` bound float32 against float64.
    """
    if isinstance(op, str):
        op = lookup(op)
    samples = _samples(sample_inputs)
    if not samples:
        raise ValueError("opcheck: give at least one sample input")
    wanted = list(checks)
    unknown = set(wanted) - set(CHECKS)
    if unknown:
        raise ValueError(f"opcheck: unknown checks {sorted(unknown)}; the checks are {', '.join(CHECKS)}")
    report = OpCheckReport(op.name, len(samples))
    for name in wanted:
        runner = _RUNNERS[name]
        outcomes = [runner(op, i, s, atol=atol, rtol=rtol, f32_rtol=float32_rtol, f32_atol=float32_atol)
                    for i, s in enumerate(samples)]
        notes = [o for o in outcomes if o is not None and o.startswith("ok")]
        skipped = [o for o in outcomes if o is not None and not o.startswith("ok")]
        if len(skipped) == len(outcomes):
            report.results[name] = f"skipped: {skipped[0]}"
        else:
            report.results[name] = notes[0] if notes else "ok"
    return report


def _fail(op: CustomOp, check: str, index: int, sample: Sample, message: str) -> OpCheckError:
    return OpCheckError(f"opcheck {op.name} [{check}] sample {index} {sample}: {message}")


def _call(op: CustomOp, sample: Sample) -> Tensor:
    return op(*sample.args, **sample.kwargs)


# -- the checks: each returns None when it ran, or the reason it was skipped --------------------------------------------
def _check_schema(op: CustomOp, i: int, s: Sample, **_: Any) -> str | None:
    with no_grad():
        out = _call(op, s)
    if not isinstance(out, Tensor):
        raise _fail(op, "schema", i, s, f"expected a Tensor, got {type(out).__name__}")
    device = next(a.device for a in s.args if isinstance(a, Tensor))
    if out.device != device:
        raise _fail(op, "schema", i, s, f"the output is on {out.device}, the inputs on {device}")
    spec = op.infer(*[a.data if isinstance(a, Tensor) else a for a in s.args], **s.kwargs)
    if spec is None:
        return "no shape function registered (op.register_shape)"
    if tuple(out.shape) != spec.shape or np.dtype(out.data.dtype) != spec.dtype:
        raise _fail(op, "schema", i, s, f"the kernel returned shape {tuple(out.shape)} dtype {out.data.dtype}, the "
                                        f"shape function says shape {spec.shape} dtype {spec.dtype}")
    return None


def _check_no_mutation(op: CustomOp, i: int, s: Sample, **_: Any) -> str | None:
    before = [(_numpy(a).copy() if isinstance(a, Tensor) else None) for a in s.args]
    args = [a.detach().requires_grad_(True) if isinstance(a, Tensor) and j in _floating_tensors(s)
            and op.backward_fn is not None else a for j, a in enumerate(s.args)]
    out = op(*args, **s.kwargs)
    phases = ["forward"]
    if out.requires_grad:
        out.backward(Tensor(np.ones(out.shape, dtype=_numpy(out).dtype), device=out.device))
        phases.append("backward")
    for j, (a, old) in enumerate(zip(args, before)):
        if old is not None and not np.array_equal(_numpy(a), old, equal_nan=True):
            raise _fail(op, "no_mutation", i, s, f"input {j} was modified by the op ({' or '.join(phases)})")
    return None


def _check_gradient(op: CustomOp, i: int, s: Sample, atol: float, rtol: float, **_: Any) -> str | None:
    if op.backward_fn is None:
        return "not differentiable (no register_autograd)"
    if not _floating_tensors(s):
        return "no floating-point tensor input"
    try:
        gradcheck(lambda *xs: op(*xs, **s.kwargs), [_cast(s, np.float64).args[j] if isinstance(a, Tensor) else a
                                                    for j, a in enumerate(s.args)], atol=atol, rtol=rtol)
    except GradcheckError as e:
        raise _fail(op, "gradient", i, s, str(e)) from None
    return None


def _check_dtype(op: CustomOp, i: int, s: Sample, f32_rtol: float, f32_atol: float, **_: Any) -> str | None:
    if not _floating_tensors(s):
        return "no floating-point tensor input"
    results = {}
    for dtype in (np.float32, np.float64):
        cast = _cast(s, dtype)
        try:
            with no_grad():
                out = _call(op, cast)
        except (TypeError, ValueError, LibraryError) as e:
            if dtype is np.float64:
                raise _fail(op, "dtype", i, s, f"float64 inputs raised {type(e).__name__}: {e}") from e
            return f"ok; float32 refused with {type(e).__name__}: {e}"  # a clean refusal is fine, wrong bits are not
        spec = op.infer(*[a.data if isinstance(a, Tensor) else a for a in cast.args], **cast.kwargs)
        expected = spec.dtype if spec is not None else np.dtype(dtype)
        if np.dtype(out.data.dtype) != expected:
            raise _fail(op, "dtype", i, s, f"{np.dtype(dtype).name} inputs gave a {out.data.dtype} output, expected "
                                           f"{expected}")
        results[dtype] = _numpy(out)
    lo, hi = results[np.float32].astype(np.float64), results[np.float64]
    bad = ~np.isclose(lo, hi, rtol=f32_rtol, atol=f32_atol, equal_nan=True)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise _fail(op, "dtype", i, s, f"float32 and float64 results differ at flat index {k}: {lo.flat[k]!r} vs "
                                       f"{hi.flat[k]!r} (rtol={f32_rtol}, atol={f32_atol})")
    return None


def _check_deterministic(op: CustomOp, i: int, s: Sample, **_: Any) -> str | None:
    from ..determinism import DeterminismError, deterministic  # noqa: PLC0415

    device = next(a.device for a in s.args if isinstance(a, Tensor))
    declared = op.nondeterministic.get(device.type)
    with deterministic(True):
        if declared is not None:
            try:
                _call(op, s)
            except DeterminismError:
                return None
            raise _fail(op, "deterministic", i, s, f"the {device.type} kernel is declared nondeterministic but ran in "
                                                   f"deterministic mode without raising DeterminismError")
        with no_grad():
            first, second = _numpy(_call(op, s)), _numpy(_call(op, s))
    if first.tobytes() != second.tobytes():
        raise _fail(op, "deterministic", i, s, "two runs in deterministic mode gave different bits")
    return None


def _check_devices(op: CustomOp, i: int, s: Sample, atol: float, rtol: float, **_: Any) -> str | None:
    from ..device import Device, get_default_device, is_cuda_available  # noqa: PLC0415

    targets = []
    if is_cuda_available() and op.kernel("cuda") is not None:
        targets.append(Device("cuda"))
    default = get_default_device()
    if default.type != "cpu" and op.kernel(default.type) is not None and default not in targets:
        targets.append(default)
    if not targets:
        reason = "no cuda kernel" if op.kernel("cuda") is None else "no GPU available"
        return f"cpu only ({reason})"
    reference = _with_grads(op, _cast(s, np.float64, Device("cpu")))
    for device in targets:
        other = _with_grads(op, _cast(s, np.float64, device))
        for what, a, b in zip(("output", *[f"gradient {j}" for j in range(len(reference) - 1)]), reference, other):
            if (a is None) != (b is None) or (a is not None and not np.allclose(a, b, rtol=rtol, atol=atol)):
                raise _fail(op, "devices", i, s, f"{what} on {device} differs from cpu")
    return None


def _with_grads(op: CustomOp, s: Sample) -> list[np.ndarray | None]:
    args = [a.requires_grad_(True) if isinstance(a, Tensor) and op.backward_fn is not None
            and np.dtype(a.data.dtype).kind == "f" else a for a in s.args]
    out = op(*args, **s.kwargs)
    values: list[np.ndarray | None] = [_numpy(out)]
    if out.requires_grad:
        out.sum().backward()
        values += [_numpy(a.grad) if isinstance(a, Tensor) and a.grad is not None else None for a in args]
    return values


_RUNNERS = {"schema": _check_schema, "no_mutation": _check_no_mutation, "gradient": _check_gradient,
            "dtype": _check_dtype, "deterministic": _check_deterministic, "devices": _check_devices}

