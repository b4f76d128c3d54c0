"""Data types and promotion.

A tinygrad_nb dtype *is* a numpy dtype (``tinygrad_nb.float32 is numpy.dtype("float32")``): numpy and cupy both
understand it, so no translation layer is needed. bfloat16 comes from ``ml_dtypes`` when installed (the seam for mixed
precision).

Promotion follows PyTorch rather than numpy where they differ:
* a Python scalar never widens a tensor: ``float16_tensor * 2.5`` stays float16, ``int_tensor * 2`` stays int64;
* an integer or bool tensor combined with a Python float becomes the default float dtype (float32);
* two tensors: a floating dtype wins over an integer one (int64 + float32 -> float32); otherwise numpy's
  ``result_type`` (float32 + float64 -> float64, int8 + uint8 -> int16).
"""
from __future__ import annotations

from typing import Any

import numpy as np

DType = np.dtype

float16 = half = np.dtype("float16")
float32 = np.dtype("float32")
float64 = double = np.dtype("float64")
int8 = np.dtype("int8")
uint8 = np.dtype("uint8")
int16 = short = np.dtype("int16")
int32 = np.dtype("int32")
int64 = long = np.dtype("int64")
bool_ = np.dtype("bool")

try:  # optional: only needed for bfloat16 tensors
    import ml_dtypes

    bfloat16: DType | None = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - exercised only without ml_dtypes
    bfloat16 = None

_default_float = float32

_NAMES = {"float16": float16, "half": float16, "float32": float32, "float": float32, "float64": float64,
          "double": float64, "int8": int8, "uint8": uint8, "int16": int16, "int32": int32, "int64": int64,
          "long": int64, "bool": bool_}


def get_default_dtype() -> DType:
    """The dtype of floating tensors created from Python floats or by ``randn``/``zeros`` (float32 unless changed)."""
    return _default_float


def set_default_dtype(dtype: Any) -> None:
    """Change the default floating dtype (float32 or float64)."""
    global _default_float
    d = to_dtype(dtype)
    if d.kind != "f":
        raise TypeError(f"set_default_dtype: only floating dtypes can be the default, got {d.name}")
    _default_float = d


def to_dtype(dtype: Any) -> DType:
    """Normalise a user's dtype spelling ('float32', np.float32, tinygrad_nb.float32, Python float...)."""
    if dtype is None:
        return _default_float
    if isinstance(dtype, str):
        if dtype == "bfloat16" and bfloat16 is not None:
            return bfloat16
        if dtype not in _NAMES:
            raise TypeError(f"unknown dtype {dtype!r}; expected one of {sorted(_NAMES)}")
        return _NAMES[dtype]
    if dtype is float:
        return _default_float
    if dtype is int:
        return int64
    if dtype is bool:
        return bool_
    try:
        return np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"unknown dtype {dtype!r}") from e


def is_floating(dtype: DType) -> bool:
    """True for float16/bfloat16/float32/float64: the dtypes that can carry gradients."""
    return dtype.kind == "f" or (bfloat16 is not None and dtype == bfloat16)


def dtype_of_scalar(value: Any) -> DType:
    """The dtype a tensor made from a bare Python value gets: bool, int64 or the default float."""
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return int64
    return _default_float


def result_type(a: DType, b: DType) -> DType:
    """Promotion of two tensor dtypes: a floating dtype wins over any integer or bool one (int64 + float32 ->
    float32, as in PyTorch; numpy would say float64); otherwise numpy's rules (int8 + uint8 -> int16)."""
    if a == b:
        return a
    a_float, b_float = is_floating(a), is_floating(b)
    if a_float != b_float:
        return a if a_float else b
    return np.result_type(a, b)


def result_type_with_scalar(tensor_dtype: DType, scalar: Any) -> DType:
    """Promotion of a tensor dtype with a Python scalar: the scalar only matters if it is 'more floating'."""
    if isinstance(scalar, (bool, np.bool_)):
        return tensor_dtype
    if isinstance(scalar, (int, np.integer)):
        return int64 if tensor_dtype == bool_ else tensor_dtype
    if is_floating(tensor_dtype):
        return tensor_dtype
    return _default_float
