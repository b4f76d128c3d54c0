"""``Tensor``: an array on a device plus what autograd needs (``requires_grad``, ``grad``, the graph node).

Every method here either calls one primitive from :mod:`tinygrad_nb.ops` or composes several; no method computes on
arrays behind autograd's back, so every differentiable method is differentiable. Two rooms live next door: how an
in-place write is recorded (:mod:`tinygrad_nb.inplace`) and the functions that make tensors
(:mod:`tinygrad_nb.factories`, re-exported at the end of this module).
"""
from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import autograd, ops
from . import dtype as dtypes
from . import inplace
from .autograd import ArgumentError, Context, Function, ShapeError
from .device import Device, DeviceError, array_device, transfer
from .dispatch import Handle
from .dispatch import autocast_hooks as _autocast  # mutated in place, never rebound
from .ops.movement import is_basic_index
from .ops.reduce import drop_axes
from .random import default_generator

Scalar = int | float | bool
MaxResult = namedtuple("MaxResult", ["values", "indices"])


class HookDict(dict):
    """``{hook id: hook}`` of one tensor or module. Ids count up per dict, never reused, so a removed handle cannot
    take off a later hook; and they do not depend on what else the process hooked, so re-running a notebook gives
    its handles the same ids (cell replay compares them)."""

    def __init__(self) -> None:
        super().__init__()
        self.next_id = 0


class RemovableHandle(Handle):
    """Returned by every ``register_*_hook``: ``handle.remove()`` (or a ``with`` block) takes the hook off again."""

    _next_id = 0  # for a plain dict of hooks (not a HookDict): ids from one process-wide counter

    def __init__(self, hooks: dict[int, Any]):
        self._hooks = hooks
        if isinstance(hooks, HookDict):
            self.id = hooks.next_id
            hooks.next_id += 1
        else:
            self.id = RemovableHandle._next_id
            RemovableHandle._next_id += 1

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    @property
    def active(self) -> bool:
        """True until the hook is removed."""
        return self.id in self._hooks


_new_object = object.__new__


def _arithmetic(op: type[Function], reverse: bool = False) -> Callable[[Tensor, Any], Tensor]:
    """``Tensor.__add__`` and friends: ``op`` on (self, other), or on (other, self) when ``reverse``.

    Two tensors of one dtype on one device (the common case) go straight to :func:`autograd.run_op`: they need
    neither promotion nor ``apply``'s loop over the arguments. Inside ``tg.autocast`` they go through ``apply``,
    which casts them; anything else goes through ``Tensor._binary``, which promotes dtypes and wraps scalars.
    """
    run_op = autograd.run_op

    def method(self: Tensor, other: Any) -> Tensor:
        if isinstance(other, Tensor) and self.data.dtype is other.data.dtype:
            a, b = (other, self) if reverse else (self, other)
            if a.device is b.device and not _autocast:
                return run_op(op, (a, b), (a.data, b.data), (a.requires_grad, b.requires_grad), a.device, None)
            return op.apply(a, b)
        return self._binary(op, other, reverse)

    method.__name__ = method.__qualname__ = f"__{'r' if reverse else ''}{op.__name__.lower()}__"
    return method


class Tensor:
    """An n-dimensional array with automatic differentiation.

    ``data`` is a numpy (cpu) or cupy (cuda) array. ``grad`` is filled by ``backward()``. ``version`` counts in-place
    modifications (checkpoints use it to skip unchanged tensors; autograd uses it to detect stale saved values).
    """

    __slots__ = ("data", "device", "requires_grad", "grad", "_ctx", "_counter", "_hooks", "_retains_grad",
                 "__weakref__", "__dict__")
    __array_priority__ = 1000  # numpy_array * tensor calls Tensor.__rmul__, not numpy's elementwise loop

    def __init__(self, data: Any, dtype: Any = None, device: str | Device | None = None,
                 requires_grad: bool = False):
        dev = Device(device) if device is not None else None
        if isinstance(data, Tensor):
            data = data.data
        if dev is None:
            dev = array_device(data) if not isinstance(data, (list, tuple, int, float, bool)) else Device(None)
        array = _as_array(data, dtypes.to_dtype(dtype) if dtype is not None else None, dev)
        self.data = array
        self.device = dev
        self.requires_grad = False
        self.grad: Tensor | None = None
        self._ctx: Context | None = None
        self._counter: list[int] | None = None  # the version counter, made on first use: see _version
        self._hooks: dict[int, Callable[[Tensor], Tensor | None]] | None = None
        self._retains_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @staticmethod
    def _wrap(array: Any, device: Device) -> Tensor:
        """Fast constructor for op results: no conversion, no checks. (A staticmethod: every op calls it, and
        looking one up is cheaper than binding a classmethod.)"""
        t = _new_object(Tensor)
        if type(array) is not np.ndarray and device.xp is np:
            array = np.asarray(array)  # numpy reductions return scalars; tensors always hold arrays
        t.data = array
        t.device = device
        t.requires_grad = False
        t.grad = None
        t._ctx = None
        t._counter = None
        t._hooks = None
        t._retains_grad = False
        return t

    # -- basic properties -------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def dim(self) -> int:
        return self.data.ndim

    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        if dim is not None and self.ndim == 0:
            raise IndexError(f"Dimension specified as {dim} but tensor has no dimensions")
        return self.shape if dim is None else self.shape[_axis(dim, self.ndim)]

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    @property
    def version(self) -> int:
        """How many in-place writes this tensor's memory has had (shared with its views)."""
        return self._version[0]

    @property
    def _version(self) -> list[int]:
        """The version counter, ``[in-place writes, autograd's clock tick at the last one]`` (see _bump_version),
        one list shared by a tensor and its views. Made on first use: most op results are never written or viewed,
        and not allocating a list per op is a measurable part of an op's cost."""
        counter = self._counter
        if counter is None:
            counter = self._counter = [0, 0]
        return counter

    @_version.setter
    def _version(self, counter: list[int]) -> None:
        self._counter = counter

    def _bump_version(self) -> None:
        """Count an in-place write to this tensor's memory (the counter is shared with its views) and stamp it with
        autograd's clock (``note_inplace_write``), which backward's saved-tensor check compares against."""
        self._version[0] += 1
        self._version[1] = autograd.note_inplace_write(self)

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self) -> str | None:
        """Name of the op that created this tensor (None for leaves and tensors made without grad)."""
        return None if self._ctx is None else f"{self._ctx.fn.__name__}Backward"

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def __repr__(self) -> str:
        values = np.array2string(self.numpy(), precision=4, separator=", ", prefix="tensor(", threshold=100,
                                 edgeitems=3, suppress_small=True)
        parts = [f"tensor({values}", f"shape={self.shape}", f"dtype={self.dtype.name}", f"device={self.device}"]
        if self._ctx is not None:
            parts.append(f"grad_fn={self.grad_fn}")
        elif self.requires_grad:
            parts.append("requires_grad=True")
        return ", ".join(parts) + ")"

    __hash__ = object.__hash__  # == is elementwise, so hash by identity (tensors can be dict keys)

    # -- leaving the tensor world ---------------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The values as a numpy array (shares memory on cpu; copied from the GPU on cuda)."""
        return self.data if self.device.xp is np else self.device.xp.asnumpy(self.data)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        array = self.numpy()
        return array.astype(dtype) if dtype is not None else array

    def item(self) -> Scalar:
        if self.data.size != 1:
            raise ArgumentError(f"item: only one-element tensors can be converted to a Python number, this one "
                                f"has shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.dtype.kind not in "iub":
            raise TypeError(f"only integer tensors can be used as an index, this one is {self.dtype.name}")
        return int(self.item())

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ArgumentError(f"the truth value of a tensor with {self.data.size} elements (shape {self.shape}) "
                                "is ambiguous; use .any() or .all()")
        return bool(self.item())

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
        return self.data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return self.data.__dlpack_device__()

    # -- autograd -----------------------------------------------------------------------------------------------
    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and not dtypes.is_floating(self.dtype):
            raise TypeError(f"only floating-point tensors can require gradients, this one is {self.dtype.name}; "
                            "convert it first with .float()")
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor; use .detach() instead")
        self.requires_grad = bool(requires_grad)  # a bool: Function.apply copies it into ctx.needs_input_grad
        return self

    def detach(self) -> Tensor:
        """The same values (shared memory), cut from the graph."""
        t = Tensor._wrap(self.data, self.device)
        t._version = self._version
        return t

    def clone(self) -> Tensor:
        """A copy with its own memory; gradients flow back to the original."""
        return ops.Mul.apply(self, 1) if self.requires_grad else Tensor._wrap(self.data.copy(), self.device)

    def retain_grad(self) -> Tensor:
        """Keep ``.grad`` for this non-leaf tensor after backward."""
        self._retains_grad = True
        return self

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> RemovableHandle:
        """Call ``hook(grad)`` when this tensor's gradient is computed; a returned tensor replaces the gradient."""
        if not self.requires_grad:
            raise RuntimeError("register_hook: this tensor does not require grad, so it will never get a gradient")
        if self._hooks is None:
            self._hooks = HookDict()
        handle = RemovableHandle(self._hooks)
        self._hooks[handle.id] = hook
        return handle

    def backward(self, grad: Tensor | Any | None = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (``grad`` defaults to 1 for scalars)."""
        autograd.run_backward([self], [autograd._root_grad(self, grad)], retain_graph=retain_graph)

    # -- devices and dtypes -------------------------------------------------------------------------------------
    def to(self, *args: Any, device: str | Device | None = None, dtype: Any = None) -> Tensor:
        """``to("cuda")``, ``to(float64)``, ``to("cpu", float32)`` or keywords; differentiable."""
        for a in args:
            if isinstance(a, (str, Device)):
                device = a
            else:
                dtype = a
        out = self
        if dtype is not None and dtypes.to_dtype(dtype) != self.dtype:
            out = out.cast(dtype)
        if device is not None and Device(device) is not out.device:
            out = ToDevice.apply(out, Device(device))
        return out

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, index: int = 0) -> Tensor:
        return self.to(f"cuda:{index}")

    def cast(self, dtype: Any) -> Tensor:
        d = dtypes.to_dtype(dtype)
        if d == self.dtype:
            return self
        if self.requires_grad and not dtypes.is_floating(d):
            return Tensor._wrap(self.data.astype(d), self.device)  # integer results carry no gradient
        return ops.Cast.apply(self, d)

    type = cast

    def float(self) -> Tensor:
        return self.cast(dtypes.float32)

    def double(self) -> Tensor:
        return self.cast(dtypes.float64)

    def half(self) -> Tensor:
        return self.cast(dtypes.float16)

    def long(self) -> Tensor:
        return self.cast(dtypes.int64)

    def int(self) -> Tensor:
        return self.cast(dtypes.int32)

    def bool(self) -> Tensor:
        return self.cast(dtypes.bool_)

    # -- arithmetic -----------------------------------------------------------------------------------------------
    def _binary(self, op: type[Function], other: Any, reverse: bool = False) -> Tensor:
        """Promote dtypes (PyTorch rules), then apply ``op`` to (self, other) or (other, self)."""
        a = self
        if isinstance(other, Tensor):
            b = other
            if a.data.dtype is not b.data.dtype and a.dtype != b.dtype:  # identity first: the common, cheap case
                common = dtypes.result_type(a.dtype, b.dtype)
                a, b = a.cast(common), b.cast(common)
        elif isinstance(other, (int, float, bool, np.number, np.bool_)):
            common = dtypes.result_type_with_scalar(a.dtype, other)
            if common != a.dtype:
                a = a.cast(common)
            # a numpy scalar counts as a Python number, as in PyTorch; numpy itself would widen by its dtype
            # (float32 tensor / np.int64(2) would be float64)
            b = other.item() if isinstance(other, np.generic) else other
        else:
            b = Tensor(other, device=self.device)
            return a._binary(op, b, reverse)
        return op.apply(b, a) if reverse else op.apply(a, b)

    __add__ = _arithmetic(ops.Add)
    __radd__ = _arithmetic(ops.Add, reverse=True)
    __sub__ = _arithmetic(ops.Sub)

    def __rsub__(self, other: Any) -> Tensor:
        return self._scalar_first(ops.Sub, other)

    __mul__ = _arithmetic(ops.Mul)
    __rmul__ = _arithmetic(ops.Mul, reverse=True)

    def __truediv__(self, other: Any) -> Tensor:
        if not dtypes.is_floating(self.dtype) and not (isinstance(other, Tensor) and dtypes.is_floating(other.dtype)):
            # true division of integers gives the default float dtype, as in PyTorch
            return self.cast(dtypes.get_default_dtype())._binary(ops.Div, other)
        return self._binary(ops.Div, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        base = self if dtypes.is_floating(self.dtype) else self.cast(dtypes.get_default_dtype())
        return base._scalar_first(ops.Div, other)

    def __floordiv__(self, other: Any) -> Tensor:
        return self._binary(ops.FloorDivide, other)

    def __rfloordiv__(self, other: Any) -> Tensor:
        return self._scalar_first(ops.FloorDivide, other)

    def __pow__(self, other: Any) -> Tensor:
        return self._binary(ops.Pow, other)

    def __rpow__(self, other: Any) -> Tensor:
        return self._scalar_first(ops.Pow, other)

    def _scalar_first(self, op: type[Function], other: Any) -> Tensor:
        """``scalar - tensor`` and friends: the scalar becomes a tensor so the op sees (other, self)."""
        if not isinstance(other, Tensor):
            common = dtypes.result_type_with_scalar(self.dtype, other)
            other = Tensor(self.device.xp.asarray(other, dtype=common), device=self.device)
        return other._binary(op, self)

    def __matmul__(self, other: Tensor) -> Tensor:
        return self.matmul(other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return Tensor(other, device=self.device).matmul(self)

    def __neg__(self) -> Tensor:
        return ops.Neg.apply(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return self.abs()

    def add(self, other: Any, alpha: Scalar = 1) -> Tensor:
        return self + (other * alpha if alpha != 1 else other)

    def sub(self, other: Any, alpha: Scalar = 1) -> Tensor:
        return self - (other * alpha if alpha != 1 else other)

    def mul(self, other: Any) -> Tensor:
        return self * other

    def floor_divide(self, other: Any) -> Tensor:
        """``self // other``: rounds toward minus infinity; integer division by zero raises; no gradient."""
        return self // other

    def pow(self, exponent: Any) -> Tensor:
        return self ** exponent

    def matmul(self, other: Tensor) -> Tensor:
        """Matrix product (``@``): vectors, matrices and broadcast batches of matrices, as numpy.matmul."""
        if not isinstance(other, Tensor):
            other = Tensor(other, device=self.device)
        a, b = self, other
        if a.dtype != b.dtype:
            common = dtypes.result_type(a.dtype, b.dtype)
            a, b = a.cast(common), b.cast(common)
        return ops.Matmul.apply(a, b)

    # -- comparisons and logic (no gradient) --------------------------------------------------------------------
    def _compare(self, name: str, other: Any) -> Tensor:
        other_data = other if not isinstance(other, Tensor) else other
        return ops.NoGradOp.apply(self, other_data, name=name)

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare("equal", other)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare("not_equal", other)

    def __lt__(self, other: Any) -> Tensor:
        return self._compare("less", other)

    def __le__(self, other: Any) -> Tensor:
        return self._compare("less_equal", other)

    def __gt__(self, other: Any) -> Tensor:
        return self._compare("greater", other)

    def __ge__(self, other: Any) -> Tensor:
        return self._compare("greater_equal", other)

    def __and__(self, other: Any) -> Tensor:
        return self._compare("logical_and" if self.dtype == dtypes.bool_ else "bitwise_and", other)

    def __or__(self, other: Any) -> Tensor:
        return self._compare("logical_or" if self.dtype == dtypes.bool_ else "bitwise_or", other)

    def __xor__(self, other: Any) -> Tensor:
        return self._compare("logical_xor" if self.dtype == dtypes.bool_ else "bitwise_xor", other)

    def __invert__(self) -> Tensor:
        return ops.NoGradOp.apply(self, name="logical_not" if self.dtype == dtypes.bool_ else "invert")

    def eq(self, other: Any) -> Tensor:
        return self == other

    def isfinite(self) -> Tensor:
        return ops.NoGradOp.apply(self, name="isfinite")

    def isnan(self) -> Tensor:
        return ops.NoGradOp.apply(self, name="isnan")

    def isinf(self) -> Tensor:
        return ops.NoGradOp.apply(self, name="isinf")

    def _piecewise_constant(self, name: str) -> Tensor:
        """``xp.<name>(self)`` for a step function (sign, floor, ceil, round) with PyTorch's gradient: zero
        everywhere, the jumps included. Under autograd it is where(False, self, value): the value unchanged (also
        at inf and NaN, where ``self * 0`` would not be), and self's graph reached with an exactly zero gradient."""
        out = ops.NoGradOp.apply(self, name=name)
        if self.requires_grad and autograd.is_grad_enabled():
            never = Tensor._wrap(self.device.xp.zeros((), dtype=bool), self.device)
            out = ops.Where.apply(never, self, out)
        return out

    def sign(self) -> Tensor:
        """-1, 0 or 1 by the sign of each element; the gradient is zero, as in PyTorch."""
        return self._piecewise_constant("sign")

    def floor(self) -> Tensor:
        return self._piecewise_constant("floor")

    def ceil(self) -> Tensor:
        return self._piecewise_constant("ceil")

    def round(self) -> Tensor:
        return self._piecewise_constant("round")

    def allclose(self, other: Tensor, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
        return bool(self.device.xp.allclose(self.data, _data(other), rtol=rtol, atol=atol))

    def equal(self, other: Tensor) -> bool:
        """True when shapes and every value match."""
        return self.shape == other.shape and bool((self.data == other.data).all())

    # -- unary math ----------------------------------------------------------------------------------------------
    def _float_unary(self, op: type[Function], **options: Any) -> Tensor:
        x = self if dtypes.is_floating(self.dtype) else self.cast(dtypes.get_default_dtype())  # as PyTorch
        return op.apply(x, **options)

    def exp(self) -> Tensor:
        return self._float_unary(ops.Exp)

    def log(self) -> Tensor:
        return self._float_unary(ops.Log)

    def sqrt(self) -> Tensor:
        return self._float_unary(ops.Sqrt)

    def rsqrt(self) -> Tensor:
        return 1 / self.sqrt()

    def tanh(self) -> Tensor:
        return self._float_unary(ops.Tanh)

    def sigmoid(self) -> Tensor:
        return self._float_unary(ops.Sigmoid)

    def relu(self) -> Tensor:
        return ops.Relu.apply(self)

    def gelu(self, approximate: str = "none") -> Tensor:
        return self._float_unary(ops.Gelu, approximate=approximate)

    def abs(self) -> Tensor:
        return ops.Abs.apply(self)

    def square(self) -> Tensor:
        return self * self

    def reciprocal(self) -> Tensor:
        return 1 / self

    def clamp(self, min: Scalar | None = None, max: Scalar | None = None) -> Tensor:  # noqa: A002 - PyTorch names
        if min is None and max is None:
            raise ArgumentError("clamp: at least one of 'min' or 'max' must not be None")
        return ops.Clamp.apply(self, min, max)

    clip = clamp

    def maximum(self, other: Any) -> Tensor:
        return self._binary(ops.Maximum, other)

    def minimum(self, other: Any) -> Tensor:
        return self._binary(ops.Minimum, other)

    def where(self, condition: Tensor, other: Any) -> Tensor:
        """``self`` where ``condition`` holds, else ``other`` (PyTorch's ``x.where(cond, y)``)."""
        return where(condition, self, other)

    # -- reductions ----------------------------------------------------------------------------------------------
    def sum(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: bool | None = None,
            dtype: Any = None) -> Tensor:
        """Sum over ``dim`` (an int, a tuple, or None for all); ``axis``/``keepdims`` are accepted as aliases."""
        axes, keep = _reduce_args(self, dim, keepdim, axis, keepdims)
        x = self.cast(dtype) if dtype is not None else self
        if x.dtype == dtypes.bool_:
            x = x.long()
        return ops.Sum.apply(x, axes, keep)

    def mean(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: bool | None = None
             ) -> Tensor:
        """Mean over ``dim``: sum / count. The mean over zero elements is NaN, as in numpy."""
        axes, keep = _reduce_args(self, dim, keepdim, axis, keepdims)
        x = self if dtypes.is_floating(self.dtype) else self.float()
        count = _count(x.shape, axes)
        return ops.Sum.apply(x, axes, keep) / count if count else ops.Sum.apply(x, axes, keep) * float("nan")

    def var(self, dim: Any = None, keepdim: bool = False, *, correction: int = 1, unbiased: bool | None = None,
            axis: Any = None, keepdims: bool | None = None) -> Tensor:
        """Variance: sum((x - mean)^2) / (N - correction); ``correction=1`` (Bessel) by default, as PyTorch."""
        if unbiased is not None:
            correction = 1 if unbiased else 0
        axes, keep = _reduce_args(self, dim, keepdim, axis, keepdims)
        x = self if dtypes.is_floating(self.dtype) else self.float()
        centered = x - x.mean(axes, keepdim=True)
        return (centered * centered).sum(axes, keepdim=keep) / max(_count(x.shape, axes) - correction, 0)

    def std(self, dim: Any = None, keepdim: bool = False, *, correction: int = 1, unbiased: bool | None = None,
            axis: Any = None, keepdims: bool | None = None) -> Tensor:
        return self.var(dim, keepdim, correction=correction, unbiased=unbiased, axis=axis, keepdims=keepdims).sqrt()

    def amax(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: bool | None = None
             ) -> Tensor:
        axes, keep = _reduce_args(self, dim, keepdim, axis, keepdims)
        if _reduces_empty(self.shape, axes):
            raise ArgumentError(f"max: cannot reduce over an empty dimension of shape {self.shape}")
        return ops.Max.apply(self, axes, keep)

    def amin(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: bool | None = None
             ) -> Tensor:
        """Smallest value over ``dim``. Floats: -max(-x), exact, with max's gradient. Integers and bools carry no
        gradient and go straight to the array library: negating would wrap -2**31 and unsigned values and is not
        defined on bools."""
        if dtypes.is_floating(self.dtype):
            return -(-self).amax(dim, keepdim, axis=axis, keepdims=keepdims)
        axes, keep = _reduce_args(self, dim, keepdim, axis, keepdims)
        if _reduces_empty(self.shape, axes):
            raise ArgumentError(f"min: cannot reduce over an empty dimension of shape {self.shape}")
        return ops.NoGradOp.apply(self, name="amin", axis=axes, keepdims=keep)

    def max(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: bool | None = None
            ) -> Tensor | MaxResult:
        """Largest value. With an int ``dim``, returns ``(values, indices)`` like PyTorch; a tensor argument
        means elementwise :meth:`maximum`."""
        if isinstance(dim, Tensor):
            return self.maximum(dim)
        values = self.amax(dim, keepdim, axis=axis, keepdims=keepdims)
        d = dim if dim is not None else axis
        if isinstance(d, (int, np.integer)):
            return MaxResult(values, self.argmax(d, keepdim if keepdims is None else keepdims))
        return values

    def min(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: bool | None = None
            ) -> Tensor | MaxResult:
        if isinstance(dim, Tensor):
            return self.minimum(dim)
        values = self.amin(dim, keepdim, axis=axis, keepdims=keepdims)
        d = dim if dim is not None else axis
        if isinstance(d, (int, np.integer)):
            return MaxResult(values, self.argmin(d, keepdim if keepdims is None else keepdims))
        return values

    def argmax(self, dim: int | None = None, keepdim: bool = False, *, axis: int | None = None,
               keepdims: bool | None = None) -> Tensor:
        return self._arg("argmax", dim, keepdim, axis, keepdims)

    def argmin(self, dim: int | None = None, keepdim: bool = False, *, axis: int | None = None,
               keepdims: bool | None = None) -> Tensor:
        return self._arg("argmin", dim, keepdim, axis, keepdims)

    def _arg(self, name: str, dim: Any, keepdim: bool, axis: Any, keepdims: bool | None) -> Tensor:
        axes, keep = _reduce_args(self, dim, keepdim, axis, keepdims)
        if _reduces_empty(self.shape, axes):
            raise ValueError(f"{name}: cannot reduce over an empty dimension of shape {self.shape}")
        if axes is None or self.ndim == 0:
            return ops.NoGradOp.apply(self.reshape(-1), name=name).long()
        if len(axes) != 1:
            raise ValueError(f"{name}: dim must be a single int, got {dim!r}")
        return ops.NoGradOp.apply(self, name=name, axis=axes[0], keepdims=keep).long()

    def logsumexp(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: bool | None = None
                  ) -> Tensor:
        """log(sum(exp(x))) computed stably as m + log(sum(exp(x - m))) with m = max(x) held constant."""
        axes, keep = _reduce_args(self, dim, keepdim, axis, keepdims)
        m = self.detach().amax(axes, keepdim=True)
        m = where(m.isfinite(), m, 0.0)  # all -inf rows give -inf, not NaN
        out = (self - m).exp().sum(axes, keepdim=True).log() + m
        return out if keep else out.reshape(drop_axes(out.shape, axes))

    def all(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: bool | None = None
            ) -> Tensor:
        axes, keep = _reduce_args(self, dim, keepdim, axis, keepdims)
        return ops.NoGradOp.apply(self, name="all", axis=axes, keepdims=keep)

    def any(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: bool | None = None
            ) -> Tensor:
        axes, keep = _reduce_args(self, dim, keepdim, axis, keepdims)
        return ops.NoGradOp.apply(self, name="any", axis=axes, keepdims=keep)

    def cumsum(self, dim: int | None = None, *, axis: int | None = None, dtype: Any = None) -> Tensor:
        """Running sum along ``dim`` (alias ``axis``; integers and bools sum as int64, as in PyTorch)."""
        dim = axis if dim is None else dim
        if dim is None:
            raise TypeError("cumsum() missing required argument 'dim'")
        x = self.cast(dtype) if dtype is not None else self
        x = x if dtypes.is_floating(x.dtype) else x.cast(dtypes.int64)
        if x.ndim == 0:
            _axis(dim, 0)
            return x + 0  # the running sum of one value is the value
        return ops.Cumsum.apply(x, _axis(dim, x.ndim))

    def softmax(self, dim: int = -1, *, axis: int | None = None) -> Tensor:
        """exp(x - max) / sum(exp(x - max)) along ``dim`` (alias ``axis``)."""
        dim = dim if axis is None else axis
        x = self - self.detach().amax(dim, keepdim=True)
        e = x.exp()
        return e / e.sum(dim, keepdim=True)

    def log_softmax(self, dim: int = -1, *, axis: int | None = None) -> Tensor:
        """x - logsumexp(x) along ``dim`` (alias ``axis``; one fused primitive, see ``ops.LogSoftmax``)."""
        dim = dim if axis is None else axis
        x = self if dtypes.is_floating(self.dtype) else self.float()
        if x.ndim == 0:
            _axis(dim, 0)  # checks: 0 and -1 only
            return x - x  # log_softmax of a single value is 0
        return ops.LogSoftmax.apply(x, _axis(dim, x.ndim))

    # -- movement ------------------------------------------------------------------------------------------------
    def reshape(self, *shape: Any) -> Tensor:
        new = _shape_args(shape)
        if new == self.shape:
            return self
        return ops.Reshape.apply(self, new)

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        if self.ndim == 0:
            _axis(start_dim, 0)  # checks: 0 and -1 only
            _axis(end_dim, 0)
            return self.reshape(1)
        s, e = _axis(start_dim, self.ndim), _axis(end_dim, self.ndim)
        return self.reshape(self.shape[:s] + (-1,) + self.shape[e + 1:]) if e >= s else self

    def permute(self, *dims: Any) -> Tensor:
        requested = _shape_args(dims)
        if len(requested) != self.ndim:  # checked first, as PyTorch: permute(0, 1, 2) of a matrix is this error
            raise ArgumentError(f"permute: the number of dims {len(requested)} of {requested} does not match the "
                                f"{self.ndim} dims of shape {self.shape}")
        axes = tuple(_axis(d, self.ndim) for d in requested)
        if sorted(axes) != list(range(self.ndim)):
            raise ArgumentError(f"permute: {axes} is not a permutation of the {self.ndim} dims of shape {self.shape}")
        return ops.Permute.apply(self, axes)

    def transpose(self, dim0: int = 0, dim1: int = 1) -> Tensor:
        axes = list(range(self.ndim))
        a, b = _axis(dim0, self.ndim), _axis(dim1, self.ndim)
        axes[a], axes[b] = axes[b], axes[a]
        return ops.Permute.apply(self, tuple(axes))

    @property
    def T(self) -> Tensor:  # noqa: N802 - PyTorch name
        """All dimensions reversed (for a matrix: the transpose)."""
        return ops.Permute.apply(self, tuple(reversed(range(self.ndim))))

    @property
    def mT(self) -> Tensor:  # noqa: N802 - PyTorch name
        return self.transpose(-2, -1)

    def squeeze(self, dim: int | None = None) -> Tensor:
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        d = _axis(dim, self.ndim)
        if self.ndim == 0 or self.shape[d] != 1:
            return self
        return self.reshape(self.shape[:d] + self.shape[d + 1:])

    def unsqueeze(self, dim: int) -> Tensor:
        d = _axis(dim, self.ndim + 1)
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def expand(self, *shape: Any) -> Tensor:
        target = _shape_args(shape)
        if len(target) < self.ndim:
            raise ShapeError(f"expand: cannot expand shape {self.shape} to {target}: fewer dimensions")
        lead = len(target) - self.ndim
        full = tuple(self.shape[i - lead] if n == -1 else n for i, n in enumerate(target))
        for i, n in enumerate(self.shape):
            if n != 1 and n != full[lead + i]:
                raise ShapeError(f"expand: cannot expand shape {self.shape} to {target}: dimension {lead + i} "
                                 f"is {n}, not 1")
        return ops.Expand.apply(self, full)

    def expand_as(self, other: Tensor) -> Tensor:
        return self.expand(other.shape)

    def contiguous(self) -> Tensor:
        return self

    def repeat(self, *sizes: Any) -> Tensor:
        reps = _shape_args(sizes)
        x = self.reshape((1,) * (len(reps) - self.ndim) + self.shape)
        expanded_shape = []
        for r, n in zip(reps, x.shape):
            expanded_shape += [r, n]
        inter = x.reshape(tuple(v for n in x.shape for v in (1, n))).expand(tuple(expanded_shape))
        return inter.reshape(tuple(r * n for r, n in zip(reps, x.shape)))

    def chunk(self, chunks: int, dim: int = 0) -> list[Tensor]:
        d = _axis(dim, self.ndim)
        step = math.ceil(self.shape[d] / chunks)
        return self.split(step, d)

    def split(self, split_size: int | Sequence[int], dim: int = 0) -> list[Tensor]:
        d = _axis(dim, self.ndim)
        n = self.shape[d]
        sizes = [split_size] * (n // split_size) + ([n % split_size] if n % split_size else []) \
            if isinstance(split_size, int) else list(split_size)
        if sum(sizes) != n:
            raise ArgumentError(f"split: sizes {sizes} do not add up to {n} along dim {d}")
        pieces, start = [], 0
        for size in sizes:
            index = (slice(None),) * d + (slice(start, start + size),)
            pieces.append(self[index])
            start += size
        return pieces

    def pad(self, pad: Sequence[int], value: float = 0.0) -> Tensor:
        """PyTorch's F.pad order: (last_before, last_after, second_last_before, ...)."""
        if len(pad) % 2 or len(pad) // 2 > self.ndim:
            raise ArgumentError(f"pad: expected pairs for at most {self.ndim} dims, got {tuple(pad)}")
        widths = [(0, 0)] * self.ndim
        for i in range(len(pad) // 2):
            widths[self.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
        return ops.Pad.apply(self, tuple(widths), value)

    def __getitem__(self, index: Any) -> Tensor:
        index = _index_arrays(index, self)
        basic = is_basic_index(index)
        if not basic and type(index) is tuple:
            parts = _split_for_torch_order(index)
            if parts is not None:  # integers first, then the index tensors: PyTorch's placement of their dims
                return self[parts[0]][parts[1]]
        out = ops.GetItem.apply(self, index)
        if basic:  # a view of self's memory: a write through either is a write to both
            out._version = self._version
        return out

    def __setitem__(self, index: Any, value: Any) -> None:
        """``x[index] = value`` writes in place; under autograd the gradient flows to ``value`` and the rest of x."""
        index = _index_arrays(index, self)
        if type(index) is tuple and not is_basic_index(index):
            parts = _split_for_torch_order(index)
            if parts is not None:  # a write through the integer-and-slice view, as __getitem__ reads
                self[parts[0]][parts[1]] = value
                return
        if inplace.tracking(self, value):
            if not isinstance(value, Tensor):
                value = Tensor(self.device.xp.asarray(value, dtype=self.dtype), device=self.device)
            self._inplace(inplace.SetItem, value.cast(self.dtype), index=index)
            return
        self.data[index] = value.data if isinstance(value, Tensor) else value
        self._bump_version()

    # -- in-place (the machinery is in inplace.py) -----------------------------------------------------------
    _inplace = inplace.write

    def _inplace_binary(self, op: type[Function], other: Any) -> Tensor:
        if isinstance(other, Tensor) and other.dtype != self.dtype:
            other = other.cast(self.dtype)
        return self._inplace(op, other)

    def add_(self, other: Any, alpha: Scalar = 1) -> Tensor:
        return self._inplace_binary(ops.Add, other * alpha if alpha != 1 else other)

    def sub_(self, other: Any, alpha: Scalar = 1) -> Tensor:
        return self._inplace_binary(ops.Sub, other * alpha if alpha != 1 else other)

    def mul_(self, other: Any) -> Tensor:
        return self._inplace_binary(ops.Mul, other)

    def div_(self, other: Any) -> Tensor:
        return self._inplace_binary(ops.Div, other)

    def floor_divide_(self, other: Any) -> Tensor:
        return self._inplace_binary(ops.FloorDivide, other)

    def clamp_(self, min: Scalar | None = None, max: Scalar | None = None) -> Tensor:  # noqa: A002
        return self._inplace(ops.Clamp, min, max)

    __iadd__ = add_
    __isub__ = sub_
    __imul__ = mul_
    __itruediv__ = div_
    __ifloordiv__ = floor_divide_

    def zero_(self) -> Tensor:
        return self.fill_(0)

    def fill_(self, value: Scalar) -> Tensor:
        inplace.check_plain_write(self, "fill_")
        self.data[...] = value
        self._bump_version()
        return self

    def copy_(self, source: Tensor | Any) -> Tensor:
        """Overwrite the values with ``source`` (broadcast, converted to this dtype and moved to this device)."""
        inplace.check_plain_write(self, "copy_")
        src = source.to(self.device).data if isinstance(source, Tensor) else source
        try:
            self.data[...] = src
        except ValueError:
            raise ShapeError(f"copy_: cannot copy shape {tuple(getattr(src, 'shape', ()))} into "
                             f"{self.shape}") from None
        self._bump_version()
        return self

    def uniform_(self, low: float = 0.0, high: float = 1.0) -> Tensor:
        """Fill with U[low, high) from the central generator."""
        inplace.check_plain_write(self, "uniform_")
        u = default_generator.uniform(self.shape, self.dtype, self.device.xp)
        self.data[...] = u * (high - low) + low
        self._bump_version()
        return self

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> Tensor:
        """Fill with N(mean, std^2) from the central generator."""
        inplace.check_plain_write(self, "normal_")
        self.data[...] = default_generator.normal(self.shape, self.dtype, self.device.xp) * std + mean
        self._bump_version()
        return self



class ToDevice(Function):
    """out = a copied to device ``target``;  da = g copied back. The one op whose result lives on another device
    than its input: forward makes the target ``ctx.device``, which ``apply`` gives the result."""

    @staticmethod
    def forward(ctx: Context, a: Any, target: Device) -> Any:
        ctx.source = ctx.device
        ctx.device, ctx.xp = target, target.xp
        return transfer(a, ctx.source, target)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, None]:
        return transfer(g, ctx.device, ctx.source), None


autograd._Tensor = Tensor


# -- helpers ------------------------------------------------------------------------------------------------------
def _data(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def _as_array(data: Any, dtype: np.dtype | None, device: Device) -> Any:
    """Convert user data to an array on ``device`` with PyTorch's dtype inference for Python values."""
    xp = device.xp
    if dtype is None and isinstance(data, (list, tuple, int, float, bool)):
        probe = np.asarray(data)
        if (probe.dtype == object or probe.dtype == np.uint64) and _check_python_ints(data, None):
            probe = np.asarray(data, dtype=np.float64)  # ints beyond int64 next to a float: a float tensor
        if probe.dtype == object:
            raise TypeError(f"tensor: could not make a rectangular array from {_short(data)} (ragged nested lists?)")
        if probe.dtype.kind == "f":
            dtype = dtypes.get_default_dtype()
        elif probe.dtype.kind in "iu":
            dtype = dtypes.int64
        elif probe.dtype.kind == "b":
            dtype = dtypes.bool_
        else:
            raise TypeError(f"tensor: unsupported element type {probe.dtype} in {_short(data)}")
        data = probe
    source = array_device(data) if hasattr(data, "__array__") or hasattr(data, "__cuda_array_interface__") else None
    if source is not None and source is not device and (source.type == "cuda" or device.type == "cuda"):
        data = transfer(data, source, device)
    quiet = autograd._silence_numpy(autograd._QUIET)  # a float beyond float16's range is inf, silently
    try:
        if xp is np:
            array = np.asarray(data, dtype=dtype)
        else:
            with device.context():
                array = xp.asarray(data, dtype=dtype)
    except OverflowError:  # a Python int that does not fit the requested dtype
        _check_python_ints(data, dtype)
        raise
    finally:
        autograd._restore_numpy(quiet)
    if array.dtype == object:
        raise TypeError(f"tensor: unsupported data {_short(data)}")
    return array


def _check_python_ints(data: Any, dtype: np.dtype | None) -> bool:
    """PyTorch's errors for Python numbers that do not fit: an int beyond int64, or any value beyond an integer
    ``dtype``. With ``dtype`` None (inferred) a float among them makes a float tensor, where any int fits: then
    True is returned."""
    numbers, stack = [], [data]
    while stack:
        value = stack.pop()
        if isinstance(value, (list, tuple)):
            stack.extend(reversed(value))  # in reading order: the error names the first misfit
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers.append(value)
    if dtype is None and any(isinstance(v, float) for v in numbers):
        return True
    for v in numbers:
        if isinstance(v, int) and not -2**63 <= v < 2**63:
            raise ValueError(f"Overflow when unpacking long long: {v} does not fit in int64, the widest integer "
                             "dtype (pass a float, or dtype=float64, for larger values)")
    if dtype is not None and dtype.kind in "iu":
        info = np.iinfo(dtype)
        for v in numbers:
            if not info.min <= v <= info.max:
                raise RuntimeError(f"value cannot be converted to type {dtype.name} without overflow: {v} is "
                                   f"outside [{info.min}, {info.max}]")
    return False


def _short(data: Any) -> str:
    text = repr(data)
    return text if len(text) < 60 else text[:57] + "..."


def _axis(dim: Any, ndim: int) -> int:
    """``dim`` as an index in [0, ndim). As in PyTorch, a 0-d tensor accepts dim 0 and -1 (and gets 0)."""
    d, n = int(dim), max(ndim, 1)
    if not -n <= d < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return d % n


def _reduce_args(t: Tensor, dim: Any, keepdim: bool, axis: Any, keepdims: bool | None
                 ) -> tuple[tuple[int, ...] | None, bool]:
    """Normalise PyTorch (dim, keepdim) or numpy (axis, keepdims) spellings to (axes tuple or None, keep)."""
    if axis is not None:
        dim = axis
    keep = keepdim if keepdims is None else keepdims
    if dim is None:
        return None, keep
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    axes = [_axis(d, t.ndim) for d in dims]  # checks the range, also on a 0-d tensor (which reduces nothing)
    if len(set(axes)) != len(axes):
        raise RuntimeError(f"dim {next(a for a in axes if axes.count(a) > 1)} appears multiple times in the list "
                           "of dims")
    return (tuple(sorted(axes)) if t.ndim else ()), keep


def _count(shape: tuple[int, ...], axes: tuple[int, ...] | None) -> int:
    return math.prod(shape) if axes is None else math.prod(shape[a] for a in axes)


def _reduces_empty(shape: tuple[int, ...], axes: tuple[int, ...] | None) -> bool:
    """True when a max/argmax would have to pick from zero elements (numpy raises; we explain)."""
    return any(shape[a] == 0 for a in (range(len(shape)) if axes is None else axes))


def _shape_args(shape: Sequence[Any]) -> tuple[int, ...]:
    """Accept f(2, 3) and f((2, 3)) alike."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(int(s) for s in shape)


def _index_arrays(index: Any, t: Tensor) -> Any:
    """Tensors and lists inside an index become arrays on ``t``'s device.

    Like PyTorch, an index tensor may live on the cpu while ``t`` lives elsewhere: indices are small, so they are
    copied over; any other device mix is an error."""
    def convert(part: Any) -> Any:
        if isinstance(part, Tensor):
            if part.device is t.device:
                return part.data
            if part.device.name == "cpu":
                return transfer(part.data, part.device, t.device)
            raise DeviceError(f"indexing a tensor on {t.device} with an index tensor on {part.device}; "
                              f"move the index with .to('{t.device}')")
        if isinstance(part, list):
            return t.device.xp.asarray(part)
        return part
    if isinstance(index, tuple):
        return tuple(convert(p) for p in index)
    return convert(index)


def _is_integer_index(part: Any) -> bool:
    """An int, a numpy integer or a 0-d integer array (a 0-d index tensor counts as an integer in PyTorch)."""
    if isinstance(part, (bool, np.bool_)):
        return False
    return isinstance(part, (int, np.integer)) or (getattr(part, "ndim", None) == 0 and part.dtype.kind in "iu")


def _split_for_torch_order(index: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
    """PyTorch applies integer indices first (as ``select``) and only then the index tensors; numpy counts integers
    among the advanced indices, and advanced indices separated by a slice put their dims first. So for
    ``zeros(2, 5, 6, 3)[1, :, 0:2, idx]`` with idx of shape (1, 2) PyTorch gives (5, 2, 1, 2), numpy (1, 2, 5, 2).

    Where the two disagree (the index tensors are adjacent once the integers are gone, but not adjacent to them),
    returns (the integers and slices with ':' for the tensors, the tensors with ':' elsewhere): applied one after
    the other they give PyTorch's result, and the first is a view, so writes through both reach the tensor.
    Returns None where numpy's placement is already PyTorch's."""
    kinds = ["int" if _is_integer_index(p) else "array" if getattr(p, "ndim", 0) >= 1 else "other" for p in index]
    if "int" not in kinds or "array" not in kinds:
        return None
    arrays = [k for k, kind in enumerate(kinds) if kind == "array"]
    advanced = [k for k, kind in enumerate(kinds) if kind != "other"]
    torch_adjacent = "other" not in kinds[arrays[0]:arrays[-1] + 1]
    numpy_adjacent = "other" not in kinds[advanced[0]:advanced[-1] + 1]
    if not torch_adjacent or numpy_adjacent:  # both put the dims first, or both in place
        return None
    first: list[Any] = []
    second: list[Any] = []
    for part, kind in zip(index, kinds):
        if kind == "int":
            first.append(int(part))
        elif kind == "array":
            first.extend([slice(None)] * (part.ndim if part.dtype.kind == "b" else 1))  # a mask covers its ndim dims
            second.append(part)
        elif part is Ellipsis:
            first.append(Ellipsis)
            second.append(Ellipsis)
        else:  # a slice, or None (the new dim is kept whole in the second step)
            first.append(part)
            second.append(slice(None))
    return tuple(first), tuple(second)


# -- functions that combine tensors -----------------------------------------------------------------------------
def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along an existing dimension; all other dimensions must match."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    ndim = tensors[0].ndim
    if ndim == 0:
        raise ShapeError("cat: zero-dimensional tensors cannot be concatenated; use stack")
    d = _axis(dim, ndim)
    for i, t in enumerate(tensors[1:], start=1):
        if t.ndim != ndim or t.shape[:d] + t.shape[d + 1:] != tensors[0].shape[:d] + tensors[0].shape[d + 1:]:
            raise ShapeError(f"cat: tensor {i} has shape {t.shape} but tensor 0 has shape {tensors[0].shape}; "
                             f"only dim {d} may differ")
    common = tensors[0].dtype
    for t in tensors[1:]:
        common = dtypes.result_type(common, t.dtype)
    return ops.Cat.apply(*[t.cast(common) for t in tensors], axis=d)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors of equal shape along a new dimension."""
    tensors = list(tensors)
    if not tensors:
        raise ArgumentError("stack: expected a non-empty list of tensors")
    for i, t in enumerate(tensors[1:], start=1):
        if t.shape != tensors[0].shape:
            raise ShapeError(f"stack: tensor {i} has shape {t.shape} but tensor 0 has shape {tensors[0].shape}")
    d = _axis(dim, tensors[0].ndim + 1)
    return cat([t.unsqueeze(d) for t in tensors], dim=d)


def cumsum(input: Tensor, dim: int) -> Tensor:  # noqa: A002 - PyTorch's name
    """Running sum of ``input`` along ``dim`` (``torch.cumsum``); see :meth:`Tensor.cumsum`."""
    return input.cumsum(dim)


def floor_divide(input: Tensor | Scalar, other: Tensor | Scalar) -> Tensor:  # noqa: A002 - PyTorch's name
    """``input // other`` elementwise (``torch.floor_divide``): rounds toward minus infinity, PyTorch's type
    promotion; integer division by zero raises, float gives +-inf or NaN; not differentiable."""
    return input // other


def where(condition: Tensor | Any, x: Tensor | Scalar, y: Tensor | Scalar) -> Tensor:
    """Elementwise ``x if condition else y``; gradients flow to x and y, never to the condition."""
    ref = next((v for v in (x, y, condition) if isinstance(v, Tensor)), None)
    if ref is None:
        raise TypeError("where: expected at least one Tensor argument")
    xs = [v for v in (x, y) if isinstance(v, Tensor)]
    common = xs[0].dtype if xs else dtypes.get_default_dtype()
    for v in xs[1:]:
        common = dtypes.result_type(common, v.dtype)
    for v in (x, y):
        if not isinstance(v, Tensor):
            common = dtypes.result_type_with_scalar(common, v)
    x = x.cast(common) if isinstance(x, Tensor) else ref.device.xp.asarray(x, dtype=common)
    y = y.cast(common) if isinstance(y, Tensor) else ref.device.xp.asarray(y, dtype=common)
    cond = condition if isinstance(condition, Tensor) else Tensor(condition, device=ref.device)
    if cond.dtype != dtypes.bool_:
        cond = cond.cast(dtypes.bool_)
    return ops.Where.apply(cond, x, y)


def maximum(a: Tensor, b: Any) -> Tensor:
    """Elementwise max(a, b) with broadcasting; ties split the gradient evenly."""
    return a.maximum(b)


def minimum(a: Tensor, b: Any) -> Tensor:
    """Elementwise min(a, b) with broadcasting; ties split the gradient evenly."""
    return a.minimum(b)


def is_tensor(obj: Any) -> bool:
    """True for tinygrad_nb tensors (and Parameters)."""
    return isinstance(obj, Tensor)


# the factories live in factories.py; re-exported so ``from tinygrad_nb.tensor import zeros`` keeps working
from .factories import (  # noqa: E402, F401
    arange, empty, eye, from_dlpack, from_numpy, full, full_like, linspace, ones, ones_like, rand, rand_like, randint,
    randn, randn_like, randperm, tensor, zeros, zeros_like)
