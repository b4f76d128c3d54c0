"""A lightweight ONNX inference runtime on numpy: no autograd on the hot path, a static memory plan per batch-size
bucket, and a batch API that streams.

    import tinygrad_nb as tg
    sess = tg.runtime.load("model.onnx")          # or tg.runtime.compile(model, example)
    y = sess(x)                                   # checked by name, shape and dtype
    for probs in sess.map(samples, batch_size=64):
        ...
    sess.memory_plan()                            # per-bucket peak bytes; a picture of buffer lifetimes
    tg.runtime.map_dataset("rows.csv", "model.onnx", batch_size=8192, output="scored/")   # on Ray Data

Needs only numpy and onnx (for reading the protobuf); ``map_dataset`` also needs Ray Data, imported when it is
first used. See docs/runtime.md.
"""
from __future__ import annotations

import os
from typing import Any

from .kernels import KERNELS, KernelError
from .session import (FORMAT_VERSION, MAX_OPSET, MIN_OPSET, InputError, MemoryPlanReport, ModelFormatError,
                      Session)

__all__ = ["CLAIMED_OPS", "FORMAT_VERSION", "InputError", "KERNELS", "KernelError", "MAX_OPSET", "MIN_OPSET",
           "MemoryPlanReport", "ModelFormatError", "Session", "compile", "load", "load_model", "map_dataset",
           "supported_ops"]

# Ops whose every onnx.backend.test node case passes (tests/test_runtime_conformance.py checks it); the runtime runs
# more op types than these, for the attribute and type combinations exporters emit (see docs/runtime.md).
CLAIMED_OPS: tuple[str, ...] = (
    "Abs", "Add", "And", "ArgMax", "ArgMin", "Ceil", "Clip", "Concat", "ConstantOfShape", "Conv", "Cos", "CumSum",
    "Div", "Erf", "Exp", "Expand", "Flatten", "Floor", "Gather", "Gemm", "Greater", "GreaterOrEqual", "IsInf",
    "IsNaN", "LayerNormalization", "Less", "LessOrEqual", "Log", "LogSoftmax", "MatMul", "Max", "Mean", "Min",
    "Mul", "Neg", "Or", "Pad", "Pow", "Reciprocal", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd",
    "ReduceSum", "Relu", "Reshape", "Round", "Shape", "Sigmoid", "Sign", "Sin", "Size", "Slice", "Softmax", "Split",
    "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "Transpose", "Unsqueeze", "Where", "Xor",
    # what the exporter emits for issue 21's primitives (trigonometric, gather/scatter, fold)
    "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "Col2Im", "Cosh", "GatherElements", "ScatterElements", "Sinh",
    "Softplus", "Tan",
)


def __getattr__(name: str) -> Any:
    # map_dataset (runtime/dataset.py) is loaded on first use, so importing the runtime stays numpy + onnx; Ray
    # itself is imported only inside map_dataset
    if name == "map_dataset":
        from .dataset import map_dataset  # noqa: PLC0415

        return map_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def supported_ops() -> list[str]:
    """Every op type the runtime has a kernel for."""
    return sorted(KERNELS)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401, PLC0415
    except ImportError as e:
        raise ImportError("tinygrad_nb.runtime reads ONNX files with the onnx package: pip install onnx "
                          "(or tinygrad_nb[export])") from e


def load(path: str | os.PathLike[str] | bytes, *, max_batch: int = 128, verify: bool = True) -> Session:
    """Load an ONNX file (a path, or the file's bytes) into a :class:`Session`.

    Refuses (ModelFormatError) an opset outside MIN_OPSET..MAX_OPSET, a newer tinygrad_nb export format, weights
    that do not match the hash recorded at export (``verify``), external data and unknown ops."""
    _require_onnx()
    import onnx  # noqa: PLC0415

    if isinstance(path, (bytes, bytearray)):
        proto, source = onnx.load_from_string(bytes(path)), "<bytes>"
    else:
        source = os.fspath(path)
        with open(source, "rb") as f:
            proto = onnx.load_from_string(f.read())
    return Session(proto, source=source, max_batch=max_batch, verify=verify)


def load_model(proto: Any, *, max_batch: int = 128, verify: bool = True, source: str = "<model>") -> Session:
    """A :class:`Session` for an in-memory ``onnx.ModelProto``."""
    return Session(proto, source=source, max_batch=max_batch, verify=verify)


def compile(model: Any, example_inputs: Any, *, max_batch: int = 128, dynamic_batch: bool = True,  # noqa: A001
            validate: bool = False) -> Session:
    """Export ``model`` (see :func:`tinygrad_nb.export.onnx`) and load it, without writing a file."""
    from ..export import onnx as export_onnx  # noqa: PLC0415

    result = export_onnx(model, example_inputs, None, dynamic_batch=dynamic_batch, validate=validate,
                         verbose=False)
    return load_model(result.model, max_batch=max_batch, source=type(model).__name__)
