"""Functions that make tensors: ``tensor``, ``zeros``, ``ones``, ``full``, ``arange``, ``linspace``, ``eye``, the
random draws (``rand``, ``randn``, ``randint``, ``randperm``, all from the central generator), the ``*_like`` forms
and the zero-copy bridges (``from_numpy``, ``from_dlpack``).

Each is a fill on the device's array module behind one shape check (:func:`_new`); none records a graph node.
Re-exported by :mod:`tinygrad_nb.tensor` and :mod:`tinygrad_nb`, so ``tg.zeros`` is this ``zeros``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import autograd
from . import dtype as dtypes
from .device import Device
from .random import default_generator
from .tensor import Scalar, Tensor, _shape_args


def tensor(data: Any, dtype: Any = None, device: str | Device | None = None, requires_grad: bool = False) -> Tensor:
    """A new tensor from a Python value, a numpy/cupy array or another tensor (always a copy)."""
    if isinstance(data, Tensor):
        data = data.data
    t = Tensor(data, dtype=dtype, device=device, requires_grad=False)
    if t.data is data or (isinstance(data, np.ndarray) and np.shares_memory(t.data, data)):
        t.data = t.data.copy()
    return t.requires_grad_(requires_grad) if requires_grad else t


def from_numpy(array: np.ndarray) -> Tensor:
    """A cpu tensor sharing memory with ``array``."""
    return Tensor(array, device="cpu")


def _new(shape: Sequence[Any], fill: Callable[[Any, tuple[int, ...], np.dtype], Any], dtype: Any,
         device: str | Device | None, requires_grad: bool) -> Tensor:
    """Every factory: ``fill(xp, shape, dtype)`` on the device, after PyTorch's check of the shape."""
    dev = Device(device)
    d = dtypes.to_dtype(dtype)
    size = _shape_args(shape)
    if size and min(size) < 0:
        first = next(n for n in size if n < 0)
        raise RuntimeError(f"Trying to create tensor with negative dimension {first}: {list(size)}")
    quiet = autograd._silence_numpy(autograd._QUIET)  # full(3, 1e6, dtype=float16) is inf, silently
    try:
        with dev.context():
            array = fill(dev.xp, size, d)
    finally:
        autograd._restore_numpy(quiet)
    t = Tensor._wrap(array, dev)
    return t.requires_grad_(True) if requires_grad else t


def zeros(*shape: Any, dtype: Any = None, device: str | Device | None = None, requires_grad: bool = False) -> Tensor:
    return _new(shape, lambda xp, s, d: xp.zeros(s, dtype=d), dtype, device, requires_grad)


def ones(*shape: Any, dtype: Any = None, device: str | Device | None = None, requires_grad: bool = False) -> Tensor:
    return _new(shape, lambda xp, s, d: xp.ones(s, dtype=d), dtype, device, requires_grad)


def empty(*shape: Any, dtype: Any = None, device: str | Device | None = None, requires_grad: bool = False) -> Tensor:
    return zeros(*shape, dtype=dtype, device=device, requires_grad=requires_grad)


def full(shape: Sequence[int] | int, fill_value: Scalar, dtype: Any = None, device: str | Device | None = None,
         requires_grad: bool = False) -> Tensor:
    d = dtype if dtype is not None else dtypes.dtype_of_scalar(fill_value)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return _new(shape, lambda xp, s, dd: xp.full(s, fill_value, dtype=dd), d, device, requires_grad)


def eye(n: int, m: int | None = None, dtype: Any = None, device: str | Device | None = None) -> Tensor:
    """The n x m identity matrix (m defaults to n)."""
    for name, value in (("n", n), ("m", m)):
        if value is not None and value < 0:
            raise RuntimeError(f"{name} must be greater or equal to 0, got {value}")
    return _new((n, m if m is not None else n), lambda xp, s, d: xp.eye(s[0], s[1], dtype=d), dtype, device, False)


def arange(start: Scalar, end: Scalar | None = None, step: Scalar = 1, dtype: Any = None,
           device: str | Device | None = None, requires_grad: bool = False) -> Tensor:
    """[start, end) in steps; integer arguments give int64, any float gives the default float dtype."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if not all(math.isfinite(v) for v in (start, end)):
        raise RuntimeError(f"unsupported range: {start} -> {end}")
    if (end - start) * step < 0:  # PyTorch refuses an empty range that points the wrong way; numpy returns []
        raise RuntimeError("upper bound and lower bound inconsistent with step sign")
    if dtype is None:
        floats = any(isinstance(v, float) for v in (start, end, step))
        dtype = dtypes.get_default_dtype() if floats else dtypes.int64
    return _new((), lambda xp, s, d: xp.arange(start, end, step, dtype=d), dtype, device, requires_grad)


def linspace(start: float, end: float, steps: int, dtype: Any = None, device: str | Device | None = None) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive.

    An integer ``dtype`` follows PyTorch's kernel, not numpy's: both ends truncated toward zero to the dtype, a
    float64 step (end - start) / (steps - 1), the first half counted up from start and the second half down from
    end, each value truncated toward zero (``linspace(-5, 5, 4, dtype=int32)`` is [-5, -1, 1, 5]; numpy floors).
    """
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")

    def fill(xp: Any, _: tuple[int, ...], d: np.dtype) -> Any:
        if d.kind not in "iu":
            return xp.linspace(start, end, steps, dtype=d)
        first, last = int(start), int(end)  # int() truncates toward zero, as PyTorch's Scalar.to<int>
        if steps == 1:
            return xp.full((1,), first, dtype=d)
        step = (last - first) / (steps - 1)
        i = xp.arange(steps, dtype=np.float64)
        values = xp.where(i < steps // 2, first + step * i, last - step * (steps - 1 - i))
        return xp.trunc(values).astype(d)

    return _new((), fill, dtype, device, False)


def randn(*shape: Any, dtype: Any = None, device: str | Device | None = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from the central generator (same seed, same numbers on every device)."""
    return _new(shape, lambda xp, s, d: default_generator.normal(s, d, xp), dtype, device, requires_grad)


def rand(*shape: Any, dtype: Any = None, device: str | Device | None = None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) from the central generator."""
    return _new(shape, lambda xp, s, d: default_generator.uniform(s, d, xp), dtype, device, requires_grad)


def randint(low: int, high: int, size: Sequence[int], dtype: Any = None, device: str | Device | None = None
            ) -> Tensor:
    return _new(tuple(size), lambda xp, s, d: default_generator.randint(low, high, s, d, xp),
                dtype if dtype is not None else dtypes.int64, device, False)


def randperm(n: int, device: str | Device | None = None) -> Tensor:
    return _new((n,), lambda xp, s, d: default_generator.randperm(s[0], xp), dtypes.int64, device, False)


def _like(maker: Callable[..., Tensor], t: Tensor, dtype: Any, device: Any, requires_grad: bool) -> Tensor:
    return maker(t.shape, dtype=dtype if dtype is not None else t.dtype,
                 device=device if device is not None else t.device, requires_grad=requires_grad)


def zeros_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros with ``t``'s shape (and its dtype and device unless given)."""
    return _like(zeros, t, dtype, device, requires_grad)


def ones_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones with ``t``'s shape (and its dtype and device unless given)."""
    return _like(ones, t, dtype, device, requires_grad)


def randn_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """N(0, 1) draws from the central generator with ``t``'s shape, dtype and device."""
    return _like(randn, t, dtype, device, requires_grad)


def rand_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """U[0, 1) draws from the central generator with ``t``'s shape, dtype and device."""
    return _like(rand, t, dtype, device, requires_grad)


def full_like(t: Tensor, fill_value: Scalar, dtype: Any = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    """``fill_value`` everywhere, with ``t``'s shape (and its dtype and device unless given)."""
    return full(t.shape, fill_value, dtype=dtype if dtype is not None else t.dtype,
                device=device if device is not None else t.device, requires_grad=requires_grad)


def from_dlpack(obj: Any) -> Tensor:
    """Zero-copy view of any DLPack producer (numpy, cupy, torch...) as a tensor on the matching device."""
    device_type, device_id = obj.__dlpack_device__()
    if int(device_type) == 1:  # kDLCPU
        return Tensor._wrap(np.from_dlpack(obj), Device("cpu"))
    dev = Device(f"cuda:{device_id}")
    with dev.context():
        return Tensor._wrap(dev.xp.from_dlpack(obj), dev)
