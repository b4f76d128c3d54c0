"""Export a model to ONNX: trace the eager forward through the dispatch observer, write standard ONNX, validate.

    import tinygrad_nb as tg
    result = tg.export.onnx(model, tg.randn(32, 784), "mlp.onnx")   # prints the validation table
    sess = tg.runtime.load("mlp.onnx")

``onnx`` (the package) is the ``[export]`` extra; it is imported only when a function here runs. See docs/export.md.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .errors import ExportError, ExportValidationError
from .mapping import mapping_table
from .trace import Trace, reconcile, run_trace
from .validate import ValidationReport
from .writer import FORMAT_VERSION, MAX_OPSET, MIN_OPSET, build_model, weights_hash

__all__ = ["ExportError", "ExportResult", "ExportValidationError", "FORMAT_VERSION", "MAX_OPSET", "MIN_OPSET",
           "ValidationReport", "mapping_table", "onnx", "to_onnx_model", "weights_hash"]


@dataclass
class ExportResult:
    """What :func:`onnx` wrote and checked: ``path``, the ModelProto, the validation report (or None)."""

    path: str | None
    model: Any
    validation: ValidationReport | None
    seconds: float

    # a cell replay (notebook cell checkpoints) compares results without the time export took
    RUN_BOUND_FIELDS: ClassVar[dict[Any, str]] = {"seconds": "a measured time"}

    def __repr__(self) -> str:
        status = "not validated" if self.validation is None else ("validated" if self.validation.ok else "FAILED")
        return f"ExportResult(path={self.path!r}, {len(self.model.graph.node)} nodes, {status})"


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401, PLC0415
    except ImportError as e:
        raise ImportError("tinygrad_nb.export needs the onnx package: pip install 'tinygrad_nb[export]'") from e


def _as_arrays(example_inputs: Any) -> list[np.ndarray]:
    from ..tensor import Tensor  # noqa: PLC0415

    items = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    arrays = []
    for i, x in enumerate(items):
        if isinstance(x, Tensor):
            arrays.append(np.array(x.numpy(), copy=True))
        elif isinstance(x, np.ndarray):
            arrays.append(np.array(x, copy=True))
        else:
            raise TypeError(f"export: example input {i} is a {type(x).__name__}; pass Tensors or numpy arrays")
    return arrays


def _variant(arrays: list[np.ndarray], batch: int) -> list[np.ndarray]:
    """Inputs for the second trace: another batch size, rows in another order, floats with the sign flipped."""
    out = []
    for a in arrays:
        if a.ndim == 0:
            out.append(-a if a.dtype.kind == "f" else a)
            continue
        rows = a[(a.shape[0] - 1 - np.arange(batch)) % a.shape[0]]
        out.append(np.ascontiguousarray(-rows if a.dtype.kind == "f" else rows))
    return out


def _names(given: list[str] | None, count: int, stem: str) -> list[str]:
    if given is None:
        return [stem] if count == 1 else [f"{stem}_{i}" for i in range(count)]
    if len(given) != count or len(set(given)) != count:
        raise ValueError(f"export: expected {count} distinct {stem} names, got {list(given)}")
    return list(given)


def _traced(model: Any, arrays: list[np.ndarray], input_names: list[str], dynamic_batch: bool) -> Trace:
    """Trace twice (another batch size and other values) and reconcile; say which of the two the model reacted to."""
    batch = arrays[0].shape[0] if arrays and arrays[0].ndim else 1
    other = (batch + 1 if dynamic_batch else batch) if arrays and arrays[0].ndim else batch
    first = run_trace(model, arrays, input_names)
    second = run_trace(model, _variant(arrays, other), input_names)
    try:
        reconcile(first, second)
    except ExportError as error:
        if other == batch:
            raise
        same_size = run_trace(model, _variant(arrays, batch), input_names)
        try:
            reconcile(run_trace(model, arrays, input_names), same_size)
        except ExportError:
            raise error from None
        raise ExportError(f"the traced graph depends on the batch size (batch {batch} and batch {other} ran "
                          f"differently): {error}. Export with dynamic_batch=False to fix the batch size",
                          error.op, error.module, error.location) from None
    return first


def to_onnx_model(model: Any, example_inputs: Any, *, opset: int = 18, dynamic_batch: bool = True,
                  input_names: list[str] | None = None, output_names: list[str] | None = None
                  ) -> tuple[Any, Trace, list[np.ndarray], list[str], list[str]]:
    """Trace ``model`` and build the ModelProto without writing or validating it (used by runtime.compile)."""
    _require_onnx()
    elsewhere = sorted({str(p.device) for p in model.parameters() if p.device.name != "cpu"}) \
        if hasattr(model, "parameters") else []
    if elsewhere:
        raise ExportError(f"the model's parameters are on {', '.join(elsewhere)}; export traces on the cpu: call "
                          "model.cpu() first", module="model")
    arrays = _as_arrays(example_inputs)
    in_names = _names(input_names, len(arrays), "input")
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()  # dropout off, batch norm on its running statistics: inference is what gets exported
    try:
        trace = _traced(model, arrays, in_names, dynamic_batch)
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    out_names = _names(output_names, len(trace.outputs), "output")
    cls = type(model)
    proto = build_model(trace, opset=opset, input_names=in_names, output_names=out_names,
                        model_class=f"{cls.__module__}.{cls.__qualname__}")
    return proto, trace, arrays, in_names, out_names


def onnx(model: Any, example_inputs: Any, path: str | os.PathLike[str] | None, *, opset: int = 18,
         dynamic_batch: bool = True, input_names: list[str] | None = None, output_names: list[str] | None = None,
         validate: bool = True, runtimes: tuple[str, ...] = ("onnxruntime", "tinygrad_nb"), verbose: bool = True
         ) -> ExportResult:
    """Export ``model`` to an ONNX file at ``path`` (None: build and validate only) and validate it.

    ``example_inputs`` is a Tensor (or array) or a tuple of them; their first dimension is the batch, which stays
    symbolic (``batch``) in the file unless ``dynamic_batch=False``. The model runs in eval mode while it is traced.
    Validation (on by default): onnx.checker (full check, strict shape inference), then the file runs in
    onnxruntime (when installed) and tinygrad_nb.runtime at the example batch size and at batch 1 and 7, compared
    with the eager model (float32: rtol 1.3e-6, atol 1e-5); ``verbose`` prints the per-output table. Raises
    ExportError (which op, module path and line) or ExportValidationError.
    """
    from ..io import atomic_write  # noqa: PLC0415

    start = time.perf_counter()
    proto, trace, arrays, in_names, out_names = to_onnx_model(
        model, example_inputs, opset=opset, dynamic_batch=dynamic_batch, input_names=input_names,
        output_names=output_names)
    report = None
    if validate:
        dynamic = [bool(v.dynamic) for v in trace.inputs]
        batches = [arrays[0].shape[0]] if arrays and arrays[0].ndim else [1]
        if any(dynamic):
            batches += [b for b in (1, 7) if b not in batches]
        was_training = getattr(model, "training", False)
        if hasattr(model, "eval"):
            model.eval()
        try:
            from .validate import validate as run_validation  # noqa: PLC0415

            report = run_validation(proto, model, arrays, in_names, out_names, batches=batches, dynamic=dynamic,
                                    runtimes=runtimes)
        finally:
            if was_training and hasattr(model, "train"):
                model.train()
    if path is not None:
        atomic_write(path, proto.SerializeToString())
    if verbose and report is not None:
        print(report.table())
    return ExportResult(None if path is None else os.fspath(path), proto, report, time.perf_counter() - start)
