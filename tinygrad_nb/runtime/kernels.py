"""The runtime's numpy kernels: one class per ONNX op type.

Every kernel has two ways to run:

* ``ref(inputs) -> outputs``: plain numpy that allocates its results. Used for the first call at a new shape (which
  also tells the planner every intermediate's shape) and for constant folding.
* ``bind(inputs, outputs, scratch) -> step``: a closure over fixed arrays (planned buffers) that writes its result
  with ``out=``. The planned program is a list of such steps, so a steady-state call allocates no intermediate
  arrays. A kernel without its own ``bind`` falls back to running ``ref`` and copying (it allocates, and
  :attr:`Kernel.allocates` says so; ``Session.memory_plan()`` lists such ops).

``view`` kernels (Reshape, Transpose, Slice, ...) return a view of their input: in the plan their output shares the
input's buffer, and the view is made once when the program is bound. ``inplace`` kernels (elementwise) may write
over their first input when that input dies at this step.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

Step = Callable[[], Any]
KERNELS: dict[str, type[Kernel]] = {}


class KernelError(RuntimeError):
    """A node the runtime cannot run (an unsupported attribute or type); names the op and the node."""


def kernel(*op_types: str) -> Callable[[type[Kernel]], type[Kernel]]:
    def register(cls: type[Kernel]) -> type[Kernel]:
        for op_type in op_types:
            KERNELS[op_type] = cls
        return cls
    return register


class Kernel:
    """Base class: ``attrs`` are the node's attributes as Python values, ``opset`` the model's default opset."""

    view = False
    inplace = False
    allocates = False  # set when bind falls back to ref (the op then allocates its result on every call)
    static = False  # output depends only on input shapes (Shape): folded for each input shape

    def __init__(self, op_type: str, attrs: dict[str, Any], opset: int, name: str = "", outputs: int = 1):
        self.op_type = op_type
        self.attrs = attrs
        self.opset = opset
        self.name = name
        self.outputs = outputs
        self.setup()

    def setup(self) -> None:
        """Read and check attributes (raise KernelError for unsupported ones)."""

    def fail(self, why: str) -> KernelError:
        return KernelError(f"{self.op_type} (node {self.name!r}): {why}")

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        raise NotImplementedError

    def scratch(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[tuple[tuple[int, ...], Any, bool]]:
        """Temporaries bind needs: (shape, dtype, persistent). Persistent ones keep their contents between calls
        (e.g. a padded input whose border is zeroed once)."""
        return []

    def persistent_fill(self, dtype: np.dtype) -> Any:
        """The value a persistent scratch buffer is filled with when a program takes over the arena."""
        return 0

    def writes_strided(self, inputs: list[Any], outputs: list[np.ndarray]) -> bool:
        """True when bind writes its (single) output with copies only, so the output may be any strided view."""
        return False

    def input_target(self, inputs: list[Any], scratch: list[np.ndarray]) -> np.ndarray | None:
        """A view of a persistent scratch buffer that input 0 is copied into on every call (a padded input's
        interior): the plan may have input 0's writer write there directly, and bind then skips the copy."""
        return None

    def persistent_init(self, index: int, buffer: np.ndarray) -> Step:
        """The step that restores persistent scratch buffer ``index`` when a program takes over the arena."""
        value = self.persistent_fill(buffer.dtype)
        return lambda: buffer.fill(value)

    # numpy's ufuncs allocate an iteration buffer (8192 elements per operand) whenever an operand is broadcast
    # (other than a 0-d scalar), even with out=. So broadcast operands are expanded to the output's shape first:
    # constants once when the program is bound, computed values into a planned scratch buffer on every call.
    static_inputs: list[bool] = []  # set by the Session: which inputs are constants (or depend only on shapes)
    shape_inputs: tuple[int, ...] = ()  # inputs whose values decide the output's shape (Reshape's shape, axes...)

    def all_static(self, indices: Any) -> bool:
        """True when the inputs at ``indices`` are constants for this program (bind may precompute from them)."""
        return all(self._static(i) for i in indices if i < len(self.static_inputs))

    def broadcast_specs(self, inputs: list[Any], shape: tuple[int, ...], count: int | None = None
                        ) -> list[tuple[tuple[int, ...], Any, bool]]:
        specs = []
        for i, x in enumerate(inputs[:count]):
            if x is not None and x.ndim and x.shape != shape and not self._static(i):
                specs.append((shape, x.dtype, False))
        return specs

    def _static(self, i: int) -> bool:
        return i < len(self.static_inputs) and self.static_inputs[i]

    def expanded(self, key: str, value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """``value`` (a constant) broadcast to ``shape`` as a contiguous array. One array per constant serves every
        batch size: it is made for the largest batch asked so far (rounded up to a power of two) and smaller
        batches get its leading rows, so the programs of a bucket's 64 batch sizes do not each hold a copy."""
        cache: dict[str, tuple[np.ndarray, np.ndarray]] = self.__dict__.setdefault("_expanded", {})
        source, known = cache.get(key, (None, None))
        if (known is not None and known.ndim == len(shape) and known.shape[1:] == tuple(shape[1:])
                and known.shape[0] >= shape[0] and known.dtype == value.dtype and source.shape == value.shape
                and np.array_equal(source, value)):  # (shape-derived constants differ between programs)
            return known[:shape[0]]
        if not shape or value.shape[:1] not in ((), (1,)) and len(value.shape) == len(shape):
            return np.ascontiguousarray(np.broadcast_to(value, shape))  # not a broadcast along the batch axis
        rows = 1
        while rows < shape[0]:
            rows *= 2
        big = np.ascontiguousarray(np.broadcast_to(value, (rows,) + tuple(shape[1:])))
        cache[key] = (np.array(value, copy=True), big)
        return big[:shape[0]]

    def expand(self, inputs: list[Any], shape: tuple[int, ...], scratch: list[np.ndarray], count: int | None = None,
               first: int = 0) -> tuple[list[Any], list[Step]]:
        """Inputs with every broadcast operand expanded to ``shape`` (see above), and the copy steps that needs."""
        out, steps, spare = list(inputs), [], iter(scratch)
        for i, x in enumerate(inputs[:count]):
            if x is None or x.shape == shape:
                continue
            if x.size == 1:
                out[i] = x.reshape(())  # a 0-d operand broadcasts without a buffer
            elif not x.ndim:
                continue
            elif self._static(i + first):
                out[i] = self.expanded(f"input {i + first}", x, shape)
            else:
                buffer = next(spare)
                steps.append(lambda b=buffer, x=x: np.copyto(b, x))
                out[i] = buffer
        return out, steps

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        self.allocates = True
        ref = self.ref
        pairs = list(enumerate(outputs))

        def step() -> None:
            results = ref(inputs)
            for i, out in pairs:
                np.copyto(out, results[i], casting="unsafe")
        return step


_ZEROS: dict[np.dtype, np.ndarray] = {}


def zeros_like_shape(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A read-only array of zeros of ``shape``: a view of one shared buffer per dtype (grown when a larger shape is
    asked for). np.maximum(x, zeros) is ~3.5x faster than np.maximum(x, 0) (the scalar operand, 0-d or broadcast,
    misses numpy's SIMD loop), so Relu pays one shared buffer for that."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64))
    buffer = _ZEROS.get(dtype)
    if buffer is None or buffer.size < size:
        buffer = np.zeros(max(size, 1024), dtype)
        buffer.flags.writeable = False
        _ZEROS[dtype] = buffer
    return buffer[:size].reshape(shape)


def _interior(padded: np.ndarray, pads: list[int], shape: tuple[int, ...]) -> np.ndarray:
    """The view of a padded (N, C, *spatial) buffer that holds the unpadded array of ``shape``."""
    return padded[(slice(None), slice(None)) + tuple(slice(p, p + n) for p, n in zip(pads, shape[2:]))]


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def _dtype_of(onnx_type: int) -> np.dtype:
    from onnx import helper  # noqa: PLC0415

    return np.dtype(helper.tensor_dtype_to_np_dtype(onnx_type))


# -- elementwise ----------------------------------------------------------------------------------------------------
_BINARY: dict[str, Any] = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "And": np.logical_and,
                           "Or": np.logical_or, "Xor": np.logical_xor, "Equal": np.equal, "Less": np.less,
                           "Greater": np.greater, "LessOrEqual": np.less_equal, "GreaterOrEqual": np.greater_equal}


@kernel(*_BINARY)
class Binary(Kernel):
    """Broadcasting binary ufuncs, written with ``out=``."""

    allocates = False

    def setup(self) -> None:
        self.fn = _BINARY[self.op_type]
        self.inplace = self.op_type in ("Add", "Sub", "Mul")

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a, b = inputs
        return [np.asarray(self.fn(a, b))]

    def scratch(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[tuple[tuple[int, ...], Any, bool]]:
        return self.broadcast_specs(inputs, outputs[0].shape)

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        fn, (o,) = self.fn, outputs
        (a, b), pre = self.expand(inputs, o.shape, scratch)
        return _with(pre, lambda: fn(a, b, out=o))


def _with(pre: list[Step], step: Step) -> Step:
    """``step`` preceded by the copies that expand broadcast operands."""
    if not pre:
        return step

    def run() -> None:
        for p in pre:
            p()
        step()
    return run


@kernel("Div")
class Div(Kernel):
    """Division; integers truncate toward zero as ONNX says (numpy's // floors)."""

    inplace = True

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a, b = inputs
        if a.dtype.kind in "iu":
            q = np.abs(a) // np.abs(b)
            return [np.asarray(np.where((a < 0) != (b < 0), -q, q)).astype(a.dtype)]
        return [np.asarray(np.divide(a, b))]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        if outputs[0].dtype.kind in "iu":
            return super().bind(inputs, outputs, scratch)
        (o,) = outputs
        (a, b), pre = self.expand(inputs, o.shape, scratch)
        return _with(pre, lambda: np.divide(a, b, out=o))

    def scratch(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[tuple[tuple[int, ...], Any, bool]]:
        return self.broadcast_specs(inputs, outputs[0].shape)


@kernel("Pow")
class Pow(Kernel):
    """a ** b with the result in a's type."""

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a, b = inputs
        if a.dtype.kind in "iu":
            return [np.power(a.astype(np.float64), b).astype(a.dtype)]
        return [np.power(a, b.astype(a.dtype) if b.dtype.kind == "f" else b).astype(a.dtype)]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        (a, b), (o,) = inputs, outputs
        if a.dtype.kind != "f" or b.dtype != a.dtype:
            return super().bind(inputs, outputs, scratch)
        (a, b), pre = self.expand(inputs, o.shape, scratch)
        return _with(pre, lambda: np.power(a, b, out=o))

    def scratch(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[tuple[tuple[int, ...], Any, bool]]:
        return self.broadcast_specs(inputs, outputs[0].shape)


@kernel("Max", "Min", "Sum", "Mean")
class Variadic(Kernel):
    """Max/Min/Sum/Mean of any number of broadcasting inputs."""

    def setup(self) -> None:
        self.fn = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add, "Mean": np.add}[self.op_type]

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        result = np.asarray(inputs[0])
        for x in inputs[1:]:
            result = self.fn(result, x)
        if self.op_type == "Mean":
            result = result / len(inputs)
        return [np.asarray(result).astype(inputs[0].dtype)]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        if len(inputs) != 2 or self.op_type == "Mean":
            return super().bind(inputs, outputs, scratch)
        fn, (o,) = self.fn, outputs
        (a, b), pre = self.expand(inputs, o.shape, scratch)
        return _with(pre, lambda: fn(a, b, out=o))

    def scratch(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[tuple[tuple[int, ...], Any, bool]]:
        return self.broadcast_specs(inputs, outputs[0].shape) if len(inputs) == 2 else []


@kernel("Where")
class Where(Kernel):
    allocates = False

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        c, a, b = inputs
        return [np.asarray(np.where(c, a, b))]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        (c, a, b), (o,) = inputs, outputs

        def step() -> None:
            np.copyto(o, b)
            np.copyto(o, a, where=c)
        return step


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to about 1e-7 relative error: a Taylor series near 0, Numerical Recipes' erfc fit elsewhere (float64)."""
    x64 = x.astype(np.float64)
    z = np.abs(x64)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    far = 1.0 - t * np.exp(poly)
    z2 = z * z
    term = z.copy()
    series = z.copy()
    for n in range(1, 12):
        term = term * (-z2) / n
        series = series + term / (2 * n + 1)
    near = series * (2.0 / math.sqrt(math.pi))
    result = np.where(z < 0.5, near, far) * np.sign(x64)
    return result.astype(x.dtype)


_UNARY: dict[str, Any] = {"Neg": np.negative, "Exp": np.exp, "Log": np.log, "Sqrt": np.sqrt, "Tanh": np.tanh,
                          "Abs": np.absolute, "Floor": np.floor, "Ceil": np.ceil, "Sign": np.sign,
                          "Not": np.logical_not, "Reciprocal": np.reciprocal, "Round": np.rint, "Sin": np.sin,
                          "Cos": np.cos}


# the trigonometric and hyperbolic ops the exporter emits for ops.Tan, ops.Asin, ... (issue 21's primitives)
_UNARY.update({"Tan": np.tan, "Asin": np.arcsin, "Acos": np.arccos, "Atan": np.arctan, "Sinh": np.sinh,
               "Cosh": np.cosh, "Asinh": np.arcsinh, "Acosh": np.arccosh, "Atanh": np.arctanh})


@kernel(*_UNARY)
class Unary(Kernel):
    """Elementwise ufuncs with ``out=``."""

    allocates = False
    inplace = True

    def setup(self) -> None:
        self.fn = _UNARY[self.op_type]

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        return [np.asarray(self.fn(inputs[0]))]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        fn, (a,), (o,) = self.fn, inputs, outputs
        return lambda: fn(a, out=o)


@kernel("IsNaN")
class IsNaN(Unary):
    inplace = False

    def setup(self) -> None:
        self.fn = np.isnan


@kernel("IsInf")
class IsInf(Kernel):
    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a = inputs[0]
        pos, neg = self.attrs.get("detect_positive", 1), self.attrs.get("detect_negative", 1)
        return [np.asarray((np.isposinf(a) & bool(pos)) | (np.isneginf(a) & bool(neg)))]


@kernel("Erf")
class Erf(Kernel):
    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        return [_erf(np.asarray(inputs[0]))]


@kernel("Relu")
class Relu(Kernel):
    allocates = False
    inplace = True

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a = np.asarray(inputs[0])
        return [np.maximum(a, zeros_like_shape(a.shape, a.dtype))]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        (a,), (o,) = inputs, outputs
        zero = zeros_like_shape(o.shape, a.dtype)
        return lambda: np.maximum(a, zero, out=o)


@kernel("Sigmoid")
class Sigmoid(Kernel):
    """1 / (1 + e^-x) without overflow: e = exp(-|x|), then 1/(1+e) or e/(1+e) by sign (as the eager op)."""

    allocates = False
    inplace = True

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a = inputs[0]
        e = np.exp(-np.abs(a))
        return [np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype)]

    def scratch(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[tuple[tuple[int, ...], Any, bool]]:
        return [(outputs[0].shape, outputs[0].dtype, False), (outputs[0].shape, np.bool_, False)]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        (a,), (o,), (s, positive) = inputs, outputs, scratch
        zero, one = np.zeros((), a.dtype), np.ones((), a.dtype)

        def step() -> None:
            np.greater_equal(a, zero, out=positive)
            np.absolute(a, out=o)
            np.negative(o, out=o)
            np.exp(o, out=o)  # e
            np.add(o, one, out=s)  # 1 + e
            np.divide(o, s, out=o)  # e / (1 + e)
            np.divide(one, s, out=s)  # 1 / (1 + e)
            np.copyto(o, s, where=positive)
        return step


@kernel("Clip")
class Clip(Kernel):
    allocates = False
    inplace = True

    def bounds(self, inputs: list[Any]) -> tuple[Any, Any]:
        if self.opset < 11:
            return self.attrs.get("min"), self.attrs.get("max")
        low = inputs[1] if len(inputs) > 1 and inputs[1] is not None else None
        high = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
        return low, high

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a = inputs[0]
        low, high = self.bounds(inputs)
        out = a.copy()
        if low is not None:
            out = np.maximum(out, np.asarray(low, a.dtype))
        if high is not None:
            out = np.minimum(out, np.asarray(high, a.dtype))
        return [out.astype(a.dtype)]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        if not self.all_static((1, 2)):
            return super().bind(inputs, outputs, scratch)
        a, (o,) = inputs[0], outputs
        low, high = self.bounds(inputs)
        low = None if low is None else np.asarray(low, a.dtype)
        high = None if high is None else np.asarray(high, a.dtype)

        def step() -> None:
            np.copyto(o, a)
            if low is not None:
                np.maximum(o, low, out=o)
            if high is not None:
                np.minimum(o, high, out=o)
        return step


@kernel("Cast")
class Cast(Kernel):
    allocates = False

    def setup(self) -> None:
        try:
            self.to = _dtype_of(self.attrs["to"])
        except Exception as e:  # noqa: BLE001
            raise self.fail(f"cast to ONNX type {self.attrs.get('to')} is not supported") from e
        if self.to.kind not in "biuf" or self.to.itemsize > 8 or str(self.to) not in np.sctypeDict:
            raise self.fail(f"cast to {self.to} is not supported")

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a = inputs[0]
        if a.dtype.kind not in "biuf" or str(a.dtype) not in np.sctypeDict:
            raise self.fail(f"cast from {a.dtype} is not supported")
        return [np.asarray(a).astype(self.to)]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        (a,), (o,) = inputs, outputs
        return lambda: np.copyto(o, a, casting="unsafe")


@kernel("Identity", "Dropout")
class Identity(Kernel):
    view = True

    def setup(self) -> None:
        if self.outputs > 1:
            raise self.fail("the mask output of Dropout is not supported")

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        if self.op_type == "Dropout" and len(inputs) > 2 and inputs[2] is not None and bool(inputs[2]):
            raise self.fail("training_mode=True is not supported at inference")
        return [inputs[0]]


# -- reductions -----------------------------------------------------------------------------------------------------
_REDUCE: dict[str, Any] = {"ReduceSum": np.sum, "ReduceMax": np.max, "ReduceMin": np.min, "ReduceMean": np.mean,
                           "ReduceProd": np.prod}


@kernel(*_REDUCE)
class Reduce(Kernel):
    """ReduceSum/Max/Min/Mean/Prod; ``axes`` as an input (ReduceSum from opset 13, the others from 18) or attribute."""

    shape_inputs = (1,)

    allocates = False

    def setup(self) -> None:
        self.fn = _REDUCE[self.op_type]
        self.keepdims = bool(self.attrs.get("keepdims", 1))
        self.noop = bool(self.attrs.get("noop_with_empty_axes", 0))
        self.axes_input = self.opset >= (13 if self.op_type == "ReduceSum" else 18)

    def axes(self, inputs: list[Any]) -> tuple[int, ...] | None:
        raw = inputs[1] if self.axes_input and len(inputs) > 1 else (None if self.axes_input else
                                                                    self.attrs.get("axes"))
        if raw is None or len(np.asarray(raw)) == 0:
            return () if self.noop else None
        return tuple(int(a) for a in np.asarray(raw).reshape(-1))

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a = inputs[0]
        axes = self.axes(inputs)
        if axes == ():
            return [a.copy()]
        if self.op_type in ("ReduceMax", "ReduceMin") and a.size == 0:
            is_max = self.op_type == "ReduceMax"
            if a.dtype.kind == "b":
                fill: Any = not is_max
            elif a.dtype.kind == "f":
                fill = -np.inf if is_max else np.inf
            else:
                fill = np.iinfo(a.dtype).min if is_max else np.iinfo(a.dtype).max
            shape = np.sum(np.zeros(a.shape, np.int8), axis=axes, keepdims=self.keepdims).shape
            return [np.full(shape, fill, a.dtype)]
        return [np.asarray(self.fn(a, axis=axes, keepdims=self.keepdims)).astype(a.dtype)]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        a, (o,) = inputs[0], outputs
        axes = self.axes(inputs)
        if axes == () or a.size == 0 or a.dtype.kind == "b":
            return super().bind(inputs, outputs, scratch)
        fn, keep = self.fn, self.keepdims
        if self.op_type == "ReduceMean":  # np.mean(out=) allocates a buffer: a sum, then a division by a 0-d count
            count = np.asarray(a.size // max(o.size, 1), dtype=o.dtype)

            def mean() -> None:
                np.sum(a, axis=axes, keepdims=keep, out=o)
                np.divide(o, count, out=o)
            return mean
        return lambda: fn(a, axis=axes, keepdims=keep, out=o)


@kernel("ArgMax", "ArgMin")
class ArgMax(Kernel):
    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a = inputs[0]
        axis = int(self.attrs.get("axis", 0))
        keep = bool(self.attrs.get("keepdims", 1))
        fn = np.argmax if self.op_type == "ArgMax" else np.argmin
        if self.attrs.get("select_last_index", 0):
            flipped = np.flip(a, axis)
            result = a.shape[axis] - 1 - fn(flipped, axis=axis, keepdims=keep)
        else:
            result = fn(a, axis=axis, keepdims=keep)
        return [np.asarray(result, dtype=np.int64)]


@kernel("CumSum")
class CumSum(Kernel):
    shape_inputs = (1,)
    allocates = False

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a, axis = inputs[0], int(np.asarray(inputs[1]).reshape(-1)[0])
        x = np.flip(a, axis) if self.attrs.get("reverse", 0) else a
        out = np.cumsum(x, axis=axis, dtype=a.dtype)
        if self.attrs.get("exclusive", 0):
            out = out - x
        return [np.ascontiguousarray(np.flip(out, axis) if self.attrs.get("reverse", 0) else out)]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        if self.attrs.get("reverse", 0) or self.attrs.get("exclusive", 0):
            return super().bind(inputs, outputs, scratch)
        a, axis, (o,) = inputs[0], int(np.asarray(inputs[1]).reshape(-1)[0]), outputs
        return lambda: np.cumsum(a, axis=axis, out=o)


@kernel("Softmax", "LogSoftmax")
class Softmax(Kernel):
    """Softmax / LogSoftmax along ``axis`` (opset >= 13: one axis, default -1)."""

    allocates = False

    def setup(self) -> None:
        if self.opset < 13:
            raise self.fail("opset < 13 softmax (coerced to 2-D) is not supported")
        self.axis = int(self.attrs.get("axis", -1))

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a = inputs[0]
        m = a.max(axis=self.axis, keepdims=True)
        shifted = a - np.where(np.isfinite(m), m, 0)
        if self.op_type == "LogSoftmax":
            return [(shifted - np.log(np.exp(shifted).sum(axis=self.axis, keepdims=True))).astype(a.dtype)]
        e = np.exp(shifted)
        return [(e / e.sum(axis=self.axis, keepdims=True)).astype(a.dtype)]

    def scratch(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[tuple[tuple[int, ...], Any, bool]]:
        keep = list(outputs[0].shape)
        keep[self.axis] = 1
        return [(tuple(keep), outputs[0].dtype, False), (outputs[0].shape, outputs[0].dtype, False)]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        (a,), (o,), axis = inputs, outputs, self.axis
        m, t = scratch  # the row statistic, and the same expanded to the full shape (see Kernel.expand)
        if a.size == 0:
            return super().bind(inputs, outputs, scratch)
        if self.op_type == "Softmax":
            def softmax() -> None:
                np.max(a, axis=axis, keepdims=True, out=m)
                np.copyto(t, m)
                np.subtract(a, t, out=o)
                np.exp(o, out=o)
                np.sum(o, axis=axis, keepdims=True, out=m)
                np.copyto(t, m)
                np.divide(o, t, out=o)
            return softmax

        def log_softmax() -> None:
            np.max(a, axis=axis, keepdims=True, out=m)
            np.copyto(t, m)
            np.subtract(a, t, out=o)
            np.exp(o, out=t)
            np.sum(t, axis=axis, keepdims=True, out=m)
            np.log(m, out=m)
            np.copyto(t, m)
            np.subtract(o, t, out=o)
        return log_softmax


# -- matrix products ------------------------------------------------------------------------------------------------
@kernel("MatMul")
class MatMul(Kernel):
    allocates = False

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        return [np.asarray(np.matmul(inputs[0], inputs[1]))]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        (a, b), (o,) = inputs, outputs
        if a.ndim == 1 or b.ndim == 1:
            return super().bind(inputs, outputs, scratch)
        return lambda: np.matmul(a, b, out=o)


@kernel("Gemm")
class Gemm(Kernel):
    """alpha * A' B' + beta * C (A' = A or A^T, B' likewise)."""

    allocates = False

    def operands(self, inputs: list[Any]) -> tuple[Any, Any, Any]:
        a, b = inputs[0], inputs[1]
        c = inputs[2] if len(inputs) > 2 else None
        a = a.T if self.attrs.get("transA", 0) else a
        b = b.T if self.attrs.get("transB", 0) else b
        return a, b, c

    # x @ W.T (a Linear layer) by batch size b: b = 1, a matrix-vector product; for a weight of at least
    # large_weight elements (smaller ones are cheap either way and keep gemm's bits, e.g. the eager model's),
    # b <= row_products_max, one matrix-vector product per row, and up to transposed_max, (W @ x.T) into a scratch
    # buffer, copied transposed; otherwise one gemm. Powers of two, so every batch size of a plan's bucket (powers
    # of two) is in the bucket size's regime and uses its scratch.
    row_products_max = 8
    transposed_max = 256
    large_weight = 1 << 16

    def _linear(self, inputs: list[Any]) -> bool:
        a = inputs[0]
        return (a.ndim == 2 and bool(self.attrs.get("transB", 0)) and not self.attrs.get("transA", 0)
                and inputs[1].flags.c_contiguous)

    def single_row(self, inputs: list[Any]) -> bool:
        """One row, or up to ``row_products_max`` rows of a large weight, times a transposed weight (a Linear layer
        at a small batch): one matrix-vector product per row, W @ x_i. At one row it is about 25% faster than x @ W.T
        through gemm; at 2-8 rows OpenBLAS's gemm (which packs the whole weight on every call) costs more than that
        many matrix-vector products (784x1024 float32, one thread: 0.6 ms for 2 rows against 0.09 ms). Each row then
        gets exactly the bits it gets alone, whatever batch of up to 8 it is in. Both paths use it, so they give the
        same bits."""
        b = inputs[0].shape[0] if inputs[0].ndim else 0
        return self._linear(inputs) and (b == 1 or 1 <= b <= self.row_products_max
                                         and inputs[1].size >= self.large_weight)

    def transposed(self, inputs: list[Any]) -> bool:
        """More than ``row_products_max`` and at most ``transposed_max`` rows times a transposed weight: the
        product is computed as W @ x.T into a (out, batch) scratch buffer and copied transposed into the output
        (then the bias is added). The same dot products (bit for bit the same values as x @ W.T with this machine's
        OpenBLAS 0.3.31), but gemm runs them about 2x faster at 16-64 rows (1024x1024 float32, one thread: 31
        against 64 us per row at 16 rows, 28 against 44 at 32); equal at 256 rows, slower at 1024."""
        return (self._linear(inputs) and self.row_products_max < inputs[0].shape[0] <= self.transposed_max
                and inputs[0].dtype == inputs[1].dtype and inputs[1].size >= self.large_weight)

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a, b, c = self.operands(inputs)
        alpha, beta = self.attrs.get("alpha", 1.0), self.attrs.get("beta", 1.0)
        if self.single_row(inputs):
            out = np.stack([np.dot(inputs[1], row) for row in inputs[0]])
        elif self.transposed(inputs):  # the planned path's arithmetic, so both give the same bits; C order, as the
            out = np.ascontiguousarray(np.matmul(inputs[1], inputs[0].T).T)  # planned output (reductions follow it)
        else:
            out = a @ b
        if alpha != 1.0:
            out = out * np.asarray(alpha, out.dtype)
        if c is not None:
            out = out + (c * np.asarray(beta, c.dtype) if beta != 1.0 else c)
        return [np.asarray(out).astype(inputs[0].dtype)]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        a, b, c = self.operands(inputs)
        (o,) = outputs
        alpha, beta = self.attrs.get("alpha", 1.0), self.attrs.get("beta", 1.0)
        if alpha != 1.0 or beta != 1.0:
            return super().bind(inputs, outputs, scratch)
        if self.single_row(inputs) and inputs[1].dtype == o.dtype == inputs[0].dtype:
            w, pairs = inputs[1], [(inputs[0][i], o[i]) for i in range(o.shape[0])]
            if len(pairs) == 1:
                (x, row), = pairs
                product = lambda: np.dot(w, x, out=row)  # noqa: E731
            else:
                def product() -> None:
                    for x, row in pairs:
                        np.dot(w, x, out=row)
        elif (self.transposed(inputs) and o.dtype == inputs[0].dtype
              and len(scratch) == len(self.scratch(inputs, outputs))):
            w, xt, t = inputs[1], inputs[0].T, scratch[-1]  # t: (out, batch), C order
            if c is None:
                return lambda: (np.matmul(w, xt, out=t), np.copyto(o, t.T))
            (c,), pre = self.expand([c], o.shape, scratch[:-1], first=2)

            def transposed_gemm() -> None:
                for p in pre:
                    p()
                np.matmul(w, xt, out=t)
                np.copyto(o, t.T)  # (np.add(t.T, c, out=o) would allocate: its operands' orders differ)
                np.add(o, c, out=o)
            return transposed_gemm
        else:
            product = lambda: np.matmul(a, b, out=o)  # noqa: E731
        if c is None:
            return product
        (c,), pre = self.expand([c], o.shape, scratch[:1], first=2)

        def gemm() -> None:
            for p in pre:
                p()
            product()
            np.add(o, c, out=o)
        return gemm

    def scratch(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[tuple[tuple[int, ...], Any, bool]]:
        # the transposed product's (out, batch) buffer comes last (bind takes scratch[-1])
        out = outputs[0]
        product = [(out.shape[::-1], out.dtype, False)] if self.transposed(inputs) and out.ndim == 2 else []
        if len(inputs) < 3 or inputs[2] is None or inputs[2].shape == outputs[0].shape or self._static(2):
            return product
        return [(outputs[0].shape, outputs[0].dtype, False)] + product


# -- movement (views) -----------------------------------------------------------------------------------------------
@kernel("Reshape")
class Reshape(Kernel):
    view = True
    shape_inputs = (1,)

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a, shape = inputs[0], [int(s) for s in np.asarray(inputs[1]).reshape(-1)]
        if not self.attrs.get("allowzero", 0):
            shape = [a.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return [a.reshape(shape)]


@kernel("Flatten")
class Flatten(Kernel):
    view = True

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a = inputs[0]
        axis = int(self.attrs.get("axis", 1))
        axis = axis + a.ndim if axis < 0 else axis
        return [a.reshape(int(np.prod(a.shape[:axis])), int(np.prod(a.shape[axis:])))]


@kernel("Transpose")
class Transpose(Kernel):
    view = True

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        perm = self.attrs.get("perm")
        return [inputs[0].transpose(perm) if perm is not None else inputs[0].T]


def _axes_argument(kernel_: Kernel, inputs: list[Any], since: int) -> list[int] | None:
    if kernel_.opset >= since:
        return None if len(inputs) < 2 or inputs[1] is None else [int(a) for a in np.asarray(inputs[1]).reshape(-1)]
    axes = kernel_.attrs.get("axes")
    return None if axes is None else list(axes)


@kernel("Squeeze")
class Squeeze(Kernel):
    view = True
    shape_inputs = (1,)

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        axes = _axes_argument(self, inputs, 13)
        a = inputs[0]
        return [np.squeeze(a) if axes is None else np.squeeze(a, axis=tuple(axes))]


@kernel("Unsqueeze")
class Unsqueeze(Kernel):
    view = True
    shape_inputs = (1,)

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        axes = _axes_argument(self, inputs, 13) or []
        a = inputs[0]
        rank = a.ndim + len(axes)
        shape = list(a.shape)
        for axis in sorted(x + rank if x < 0 else x for x in axes):
            shape.insert(axis, 1)
        return [a.reshape(shape)]


@kernel("Expand")
class Expand(Kernel):
    view = True
    shape_inputs = (1,)

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a, shape = inputs[0], tuple(int(s) for s in np.asarray(inputs[1]).reshape(-1))
        return [np.broadcast_to(a, np.broadcast_shapes(a.shape, shape))]


@kernel("Slice")
class Slice(Kernel):
    view = True
    shape_inputs = (1, 2, 3, 4)

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a = inputs[0]
        if self.opset < 10:
            starts, ends = self.attrs["starts"], self.attrs["ends"]
            axes, steps = self.attrs.get("axes"), None
        else:
            starts, ends = np.asarray(inputs[1]).reshape(-1), np.asarray(inputs[2]).reshape(-1)
            axes = np.asarray(inputs[3]).reshape(-1) if len(inputs) > 3 and inputs[3] is not None else None
            steps = np.asarray(inputs[4]).reshape(-1) if len(inputs) > 4 and inputs[4] is not None else None
        index = [slice(None)] * a.ndim
        for i, (start, end) in enumerate(zip(starts, ends)):
            axis = int(axes[i]) if axes is not None else i
            step = int(steps[i]) if steps is not None else 1
            index[axis] = slice(_clamp_int(start), _clamp_int(end), step)
        return [a[tuple(index)]]


def _clamp_int(v: Any) -> int:
    """int64 sentinels (INT64_MAX, INT64_MIN) as Python ints; Python's slice clamps like ONNX Slice."""
    return int(v)


@kernel("Split")
class Split(Kernel):
    view = True
    shape_inputs = (1,)

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a = inputs[0]
        axis = int(self.attrs.get("axis", 0))
        n = a.shape[axis]
        if self.opset >= 13 and len(inputs) > 1 and inputs[1] is not None:
            sizes = [int(s) for s in np.asarray(inputs[1]).reshape(-1)]
        elif self.attrs.get("split") is not None:
            sizes = list(self.attrs["split"])
        else:
            count = int(self.attrs.get("num_outputs", self.outputs))
            size = -(-n // count)
            sizes = [size] * (n // size) + ([n % size] if n % size else [])
        offsets = np.cumsum(sizes)[:-1].tolist()
        return list(np.split(a, offsets, axis=axis))


@kernel("Gather")
class Gather(Kernel):
    allocates = False

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        data, idx = inputs
        axis = int(self.attrs.get("axis", 0))
        self.check(data, idx, axis)
        return [np.take(data, idx, axis=axis)]

    def check(self, data: np.ndarray, idx: np.ndarray, axis: int) -> None:
        n = data.shape[axis]
        if idx.size and (idx.max() >= n or idx.min() < -n):
            bad = int(idx.max()) if idx.max() >= n else int(idx.min())
            raise IndexError(f"Gather (node {self.name!r}): index {bad} is out of range for axis {axis} of size {n} "
                             f"(data shape {data.shape})")

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        (data, idx), (o,) = inputs, outputs
        axis = int(self.attrs.get("axis", 0))
        check = self.check

        def gather() -> None:
            check(data, idx, axis)
            np.take(data, idx, axis=axis, out=o, mode="wrap")
        return gather


@kernel("Concat")
class Concat(Kernel):
    allocates = False

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        return [np.concatenate(inputs, axis=int(self.attrs["axis"]))]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        axis, (o,) = int(self.attrs["axis"]), outputs
        return lambda: np.concatenate(inputs, axis=axis, out=o)


@kernel("Pad")
class Pad(Kernel):
    """Constant, reflect and edge padding (opset >= 11: pads and constant_value as inputs)."""

    shape_inputs = (1, 3)

    def setup(self) -> None:
        self.mode = self.attrs.get("mode", b"constant")
        self.mode = self.mode.decode() if isinstance(self.mode, bytes) else self.mode
        if self.mode not in ("constant", "reflect", "edge", "wrap"):
            raise self.fail(f"mode {self.mode!r} is not supported")

    def widths(self, inputs: list[Any]) -> list[tuple[int, int]]:
        a = inputs[0]
        pads = [int(p) for p in np.asarray(inputs[1]).reshape(-1)] if self.opset >= 11 else list(self.attrs["pads"])
        axes = list(range(a.ndim))
        if len(inputs) > 3 and inputs[3] is not None:
            axes = [int(x) + a.ndim if int(x) < 0 else int(x) for x in np.asarray(inputs[3]).reshape(-1)]
        widths = [(0, 0)] * a.ndim
        for i, axis in enumerate(axes):
            widths[axis] = (pads[i], pads[i + len(axes)])
        return widths

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a = inputs[0]
        widths = self.widths(inputs)
        crop = tuple(slice(-b if b < 0 else 0, a.shape[i] + e if e < 0 else None)
                     for i, (b, e) in enumerate(widths))
        a = a[crop]
        widths = [(max(b, 0), max(e, 0)) for b, e in widths]
        if self.mode == "constant":
            value = inputs[2] if len(inputs) > 2 and inputs[2] is not None and np.size(inputs[2]) else 0
            value = np.asarray(value).reshape(-1)[0] if np.ndim(value) else value
            return [np.pad(a, widths, mode="constant", constant_values=value)]
        return [np.pad(a, widths, mode=self.mode)]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        widths = self.widths(inputs)
        if self.mode != "constant" or any(b < 0 or e < 0 for b, e in widths) or not self.all_static((2,)):
            return super().bind(inputs, outputs, scratch)
        a, (o,) = inputs[0], outputs
        value = inputs[2] if len(inputs) > 2 and inputs[2] is not None and np.size(inputs[2]) else 0
        value = np.asarray(value, o.dtype).reshape(-1)[0] if np.ndim(value) else np.asarray(value, o.dtype)
        inner = o[tuple(slice(b, b + n) for (b, _), n in zip(widths, a.shape))]

        def pad() -> None:
            o.fill(value)
            np.copyto(inner, a)
        return pad


# -- windows: Conv and MaxPool --------------------------------------------------------------------------------------
class _Window(Kernel):
    """Shared geometry of Conv and MaxPool: kernel, strides, pads (explicit or auto_pad), dilations, ceil_mode."""

    fill = 0.0

    def geometry(self, x_shape: tuple[int, ...], kernel: tuple[int, ...]) -> tuple[list[int], list[int], list[int],
                                                                                     list[int], list[int]]:
        spatial = x_shape[2:]
        d = len(spatial)
        strides = list(self.attrs.get("strides", [1] * d))
        dilations = list(self.attrs.get("dilations", [1] * d))
        pads = list(self.attrs.get("pads", [0] * (2 * d)))
        auto = self.attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        ceil = bool(self.attrs.get("ceil_mode", 0))
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out = [-(-n // s) for n, s in zip(spatial, strides)]
            for i in range(d):
                total = max(0, (out[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - spatial[i])
                small, big = total // 2, total - total // 2
                pads[i], pads[i + d] = (small, big) if auto == "SAME_UPPER" else (big, small)
        elif auto == "VALID":
            pads = [0] * (2 * d)
        out = []
        for i in range(d):
            span = spatial[i] + pads[i] + pads[i + d] - (kernel[i] - 1) * dilations[i] - 1
            size = (-(-span // strides[i]) if ceil else span // strides[i]) + 1
            if ceil and (size - 1) * strides[i] >= spatial[i] + pads[i]:
                size -= 1  # the last window must start inside the input or the left padding
            out.append(size)
        ends = []
        for i in range(d):  # padding at the end so that every window fits (ceil_mode may need more than pads says)
            need = (out[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - spatial[i] - pads[i]
            ends.append(max(need, 0))
        return strides, dilations, pads[:d], ends, out

    def windows(self, padded: np.ndarray, kernel: tuple[int, ...], strides: list[int], dilations: list[int],
                out: list[int]) -> np.ndarray:
        """A (N, C, *kernel, *out) strided view of ``padded``: element [n, c, k.., o..] = padded[n, c, o*s + k*d]."""
        s = padded.strides
        d = len(kernel)
        shape = padded.shape[:2] + tuple(kernel) + tuple(out)
        strides_ = s[:2] + tuple(s[2 + i] * dilations[i] for i in range(d)) + tuple(s[2 + i] * strides[i]
                                                                                    for i in range(d))
        return np.lib.stride_tricks.as_strided(padded, shape=shape, strides=strides_, writeable=False)

    def padded_shape(self, x_shape: tuple[int, ...], pads: list[int], ends: list[int]) -> tuple[int, ...]:
        return x_shape[:2] + tuple(n + b + e for n, b, e in zip(x_shape[2:], pads, ends))

    def pad(self, x: np.ndarray, pads: list[int], ends: list[int]) -> np.ndarray:
        if not any(pads) and not any(ends):
            return x
        widths = [(0, 0), (0, 0)] + list(zip(pads, ends))
        return np.pad(x, widths, constant_values=self.fill)


@kernel("Conv")
class Conv(_Window):
    """N-d convolution (cross-correlation) with groups: im2col into a planned scratch buffer, then one matmul."""

    allocates = False

    def parts(self, x: np.ndarray, w: np.ndarray) -> tuple[Any, ...]:
        kernel = tuple(self.attrs.get("kernel_shape", w.shape[2:]))
        strides, dilations, pads, ends, out = self.geometry(x.shape, kernel)
        ends = [max(e, p_end) for e, p_end in zip(ends, self.end_pads(x.shape, kernel))]
        return kernel, strides, dilations, pads, ends, out

    def end_pads(self, x_shape: tuple[int, ...], kernel: tuple[int, ...]) -> list[int]:
        d = len(kernel)
        pads = list(self.attrs.get("pads", [0] * (2 * d)))
        auto = self.attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        return pads[d:] if auto == "NOTSET" else [0] * d

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        kernel, strides, dilations, pads, ends, out = self.parts(x, w)
        if self.single(x, w) and self.all_static((1, 2)) and w.dtype == x.dtype:
            # batch 1: run bind's own arithmetic (its row-batched matmul may round differently from one matmul),
            # so that the first call and the planned calls give the same bits
            x = np.ascontiguousarray(x)
            o = np.empty((1, w.shape[0]) + tuple(out), dtype=x.dtype)
            scratch = [np.empty(shape, dtype) for shape, dtype, _ in self.scratch([x, w, b], [o])]
            self.bind([x, w, b], [o], scratch)()
            return [o]
        windows = self.windows(self.pad(x, pads, ends), kernel, strides, dilations, out)
        n, c = x.shape[:2]
        groups = int(self.attrs.get("group", 1))
        per_group = (c // groups) * int(np.prod(kernel))
        positions = int(np.prod(out))
        # the same arithmetic as bind: the bias rides in the matmul as a column of the weight times a row of ones
        cols = np.ones((n, groups, per_group + 1, positions), dtype=x.dtype)
        cols[:, :, :per_group] = windows.reshape(n, groups, per_group, positions)
        wg = self.extended_weight(w, b, groups, per_group)
        return [np.matmul(wg, cols).reshape((n, w.shape[0]) + tuple(out)).astype(x.dtype)]

    @staticmethod
    def extended_weight(w: np.ndarray, b: np.ndarray | None, groups: int, per_group: int) -> np.ndarray:
        """(groups, out/groups, per_group + 1): each group's weight rows with the bias as the last column."""
        out_per_group = w.shape[0] // groups
        wg = np.zeros((groups, out_per_group, per_group + 1), dtype=w.dtype)
        wg[:, :, :per_group] = w.reshape(groups, out_per_group, per_group)
        if b is not None:
            wg[:, :, per_group] = b.reshape(groups, out_per_group)
        return wg

    def single(self, x: np.ndarray, w: np.ndarray) -> bool:
        """The batch-1 path (see bind_single): one 2-d image, no groups, stride 1, no dilation."""
        kernel, strides, dilations, pads, ends, out = self.parts(x, w)
        return (x.ndim == 4 and x.shape[0] == 1 and int(self.attrs.get("group", 1)) == 1 and strides == [1, 1]
                and dilations == [1, 1] and min(out) > 0 and x.size > 0)

    @staticmethod
    def direct(x: np.ndarray) -> bool:
        """Batch 1 with one input channel: the image is copied straight into the im2col rows (see bind_single)."""
        return x.shape[1] == 1

    def scratch(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[tuple[tuple[int, ...], Any, bool]]:
        x, w = inputs[0], inputs[1]
        kernel, strides, dilations, pads, ends, out = self.parts(x, w)
        if self.single(x, w):  # im2col over the padded width (persistent: its last row of ones stays), the padding
            hp, wp = self.padded_shape(x.shape, pads, ends)[2:]
            rows = x.shape[1] * int(np.prod(kernel)) + 1
            if self.direct(x):
                return [((rows, (kernel[0] - 1) * wp + kernel[1] - 1 + hp * wp), x.dtype, True)]
            specs = [((rows, out[0] * wp), x.dtype, True)]
            if any(pads) or any(ends):
                specs.append((self.padded_shape(x.shape, pads, ends), x.dtype, True))
            return specs
        groups = int(self.attrs.get("group", 1))
        rows = (x.shape[1] // groups) * int(np.prod(kernel)) + 1  # + a row of ones that carries the bias
        specs = [((x.shape[0], groups, rows, int(np.prod(out))), x.dtype, False)]
        if any(pads) or any(ends):
            specs.append((self.padded_shape(x.shape, pads, ends), x.dtype, True))
        return specs

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        """im2col into the scratch ``cols`` (N, groups, C/groups*kh*kw + 1, positions), whose last row is ones, and
        one matmul with the weight extended by the bias column: the bias costs no pass and no broadcast buffer."""
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        if not self.all_static((1, 2)):
            return super().bind(inputs, outputs, scratch)
        (o,) = outputs
        kernel, strides, dilations, pads, ends, out = self.parts(x, w)
        if self.single(x, w) and scratch[0].ndim == 2:
            step = self.bind_single(x, w, b, o, kernel, pads, ends, scratch)
            if step is not None:
                return step
            raise self.fail("internal: the batch-1 convolution needs a contiguous input")
        cols = scratch[0]
        padded = scratch[1] if len(scratch) > 1 else x
        inner = None
        if padded is not x:
            padded.fill(self.fill)  # persistent: only the interior is written on each call
            inner = _interior(padded, pads, x.shape)
            if _same_view(inner, x):  # x's writer writes into the interior (see Kernel.input_target)
                inner = None
        windows = self.windows(padded, kernel, strides, dilations, out)
        n, c = x.shape[:2]
        groups = int(self.attrs.get("group", 1))
        per_group = (c // groups) * int(np.prod(kernel))
        positions = int(np.prod(out))
        # the window rows of cols and the windows, both viewed as (N, groups, C/groups, *kernel, *out)
        split = (n, groups, c // groups) + windows.shape[2:]
        cols_windows = cols[:, :, :per_group].reshape(split, copy=False)
        windows = windows.reshape(split, copy=False)
        ones = cols[:, :, per_group]
        wg = self.extended_weight(w, b, groups, per_group)
        o_mm = o.reshape(n, groups, w.shape[0] // groups, positions)
        one = np.ones((), dtype=cols.dtype)

        def conv() -> None:
            if inner is not None:
                np.copyto(inner, x)
            np.copyto(cols_windows, windows)
            np.copyto(ones, one)
            np.matmul(wg, cols, out=o_mm)
        return conv


    def input_target(self, inputs: list[Any], scratch: list[np.ndarray]) -> np.ndarray | None:
        x, w = inputs[0], inputs[1]
        if len(scratch) < 2 or not self.all_static((1, 2)):
            return None
        pads = self.parts(x, w)[3]
        return _interior(scratch[1], pads, x.shape)

    def input_target_buffer(self, inputs: list[Any], scratch: list[np.ndarray]) -> np.ndarray | None:
        """The whole padded input that :meth:`input_target` is the interior of, flat: everything outside the
        interior is the zero padding (+0), which nothing but the persistent fill writes."""
        if self.input_target(inputs, scratch) is None or not scratch[1].flags.c_contiguous or self.fill != 0:
            return None
        return scratch[1].reshape(-1)

    def persistent_init(self, index: int, buffer: np.ndarray) -> Step:
        if index == 0 and buffer.ndim == 2:  # the batch-1 path's columns: zeros (the padding), the bias row of ones
            def init() -> None:
                buffer.fill(0)
                buffer[-1].fill(1)
            return init
        return super().persistent_init(index, buffer)

    def bind_single(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, o: np.ndarray, kernel: tuple[int, ...],
                    pads: list[int], ends: list[int], scratch: list[np.ndarray]) -> Step | None:
        """Batch 1: im2col over the *padded width*. With the padded image flat (C, Hp*Wp), the column of output
        (i, j) for kernel tap (c, ki, kj) is element c*Hp*Wp + (i + ki)*Wp + j + kj, so each im2col row (c, ki, kj)
        is one contiguous run of the flat image, starting at ki*Wp + kj: copying all C*kh*kw rows is one copy with
        long contiguous inner loops (the exact im2col's inner loops are only W long). The columns are then
        (C*kh*kw + 1, Ho*Wp), the last row ones for the bias, positions i*Wp + j with j >= Wo are junk. One
        matmul, batched over the Ho output rows, reads only the valid positions (each row a (K, Wo) block with
        leading dimension Ho*Wp) and writes straight into the (O, Ho, Wo) output: no copy of the result."""
        cols = scratch[0]
        if self.direct(x):
            return self.bind_direct(x, w, b, o, kernel, pads, ends, cols)
        padded = scratch[1] if len(scratch) > 1 else x
        if padded is x and not x.flags.c_contiguous:
            return None
        inner = None
        if padded is not x:
            padded.fill(self.fill)  # persistent: only the interior is written on each call
            inner = _interior(padded, pads, x.shape)
            if _same_view(inner, x):  # x's writer writes into the interior (see Kernel.input_target)
                inner = None
        cols.fill(1)  # persistent: the last row (ones) carries the bias; the others are rewritten on each call
        c = x.shape[1]
        hp, wp = padded.shape[2:]
        kh, kw = kernel
        ho, wo = hp - kh + 1, wp - kw + 1
        k = c * kh * kw
        span = (ho - 1) * wp + wo  # the positions any valid output reads (the last row's junk tail is never read)
        flat = padded.reshape(-1, copy=False)
        it = flat.itemsize
        windows = np.lib.stride_tricks.as_strided(flat, shape=(c, kh, kw, span),
                                                  strides=(hp * wp * it, wp * it, it, it), writeable=False)
        target = cols[:k, :span].reshape((c, kh, kw, span), copy=False)
        wg = self.extended_weight(w, b, 1, k)[0]  # (O, K + 1)
        cit = cols.itemsize
        blocks = np.lib.stride_tricks.as_strided(cols, shape=(ho, k + 1, wo), strides=(wp * cit, cols.strides[0], cit),
                                                 writeable=False)
        oit = o.itemsize
        rows_out = np.lib.stride_tricks.as_strided(o, shape=(ho, w.shape[0], wo),
                                                   strides=(wo * oit, ho * wo * oit, oit))

        if inner is None:
            def conv_single() -> None:
                np.copyto(target, windows)
                np.matmul(wg, blocks, out=rows_out)
            return conv_single

        def conv_single_padded() -> None:
            np.copyto(inner, x)
            np.copyto(target, windows)
            np.matmul(wg, blocks, out=rows_out)
        return conv_single_padded

    def bind_direct(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, o: np.ndarray, kernel: tuple[int, ...],
                    pads: list[int], ends: list[int], cols: np.ndarray) -> Step:
        """Batch 1, few input channels: no padded copy of the image at all. Row (c, ki, kj) of the persistent
        columns holds the padded image c shifted by ki*Wp + kj (plus a fixed offset ``base``), so image element
        (a, b) lands at ``base + (a + top - ki)*Wp + (b + left - kj)`` in every row: one strided copy of the image,
        broadcast over the kernel taps, fills all rows, and the positions it never writes stay zero (the padding).
        Then the same row-batched matmul as bind_single."""
        c, h, wd = x.shape[1:]
        hp, wp = self.padded_shape(x.shape, pads, ends)[2:]
        kh, kw = kernel
        ho, wo = hp - kh + 1, wp - kw + 1
        k = c * kh * kw
        base = (kh - 1) * wp + kw - 1
        length = cols.shape[1]
        cols.fill(0)
        cols[-1].fill(1)
        it = cols.itemsize
        start = (base + pads[0] * wp + pads[1]) * it
        flat = cols.reshape(-1)
        target = np.lib.stride_tricks.as_strided(
            flat[start // it:], shape=(c, kh, kw, h, wd),
            strides=(kh * kw * length * it, (kw * length - wp) * it, (length - 1) * it, wp * it, it))
        source = np.broadcast_to(x[0][:, None, None], (c, kh, kw, h, wd))
        wg = self.extended_weight(w, b, 1, k)[0]
        blocks = np.lib.stride_tricks.as_strided(flat[base:], shape=(ho, k + 1, wo),
                                                 strides=(wp * it, length * it, it), writeable=False)
        oit = o.itemsize
        rows_out = np.lib.stride_tricks.as_strided(o, shape=(ho, w.shape[0], wo),
                                                   strides=(wo * oit, ho * wo * oit, oit))

        def conv_direct() -> None:
            np.copyto(target, source)
            np.matmul(wg, blocks, out=rows_out)
        return conv_direct


@kernel("MaxPool")
class MaxPool(_Window):
    """Max over windows (padding counts as -inf); the optional Indices output is not supported."""

    allocates = False
    fill = -np.inf

    def setup(self) -> None:
        if self.attrs.get("storage_order", 0):
            raise self.fail("storage_order=1 is not supported")

    def parts(self, x: np.ndarray) -> tuple[Any, ...]:
        kernel = tuple(self.attrs["kernel_shape"])
        strides, dilations, pads, ends, out = self.geometry(x.shape, kernel)
        return kernel, strides, dilations, pads, ends, out

    def low(self, dtype: np.dtype) -> Any:
        return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min

    def persistent_fill(self, dtype: np.dtype) -> Any:
        return self.low(dtype)  # padding counts as -inf

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        x = inputs[0]
        if self.outputs > 1:
            raise self.fail("the Indices output is not supported")
        kernel, strides, dilations, pads, ends, out = self.parts(x)
        self.fill = self.low(x.dtype)
        windows = self.windows(self.pad(x, pads, ends), kernel, strides, dilations, out)
        d = len(kernel)
        return [windows.max(axis=tuple(range(2, 2 + d)))]

    def writes_strided(self, inputs: list[Any], outputs: list[np.ndarray]) -> bool:
        return self.separable(inputs[0]) and inputs[0].flags.c_contiguous  # bind_separable ends with one copy

    def separable(self, x: np.ndarray) -> bool:
        """The fast path: 2-d, no padding, no dilation, non-overlapping windows along the last axis that tile it."""
        kernel, strides, dilations, pads, ends, out = self.parts(x)
        return (len(kernel) == 2 and x.ndim == 4 and not any(pads) and not any(ends) and dilations == [1, 1]
                and strides[1] == kernel[1] and x.shape[3] == out[1] * kernel[1] and x.size > 0 and min(out) > 0)

    @staticmethod
    def row_maxima_size(x: np.ndarray, kernel: tuple[int, ...]) -> int:
        """Batch 1 keeps every position in step 1 (contiguous operands: fastest for small images); larger batches
        keep one per window (strided operands, half the memory and work)."""
        return x.size if x.shape[0] == 1 else x.size // kernel[1]

    def scratch(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[tuple[tuple[int, ...], Any, bool]]:
        x = inputs[0]
        kernel, strides, dilations, pads, ends, out = self.parts(x)
        if self.separable(x):  # the row maxima, then the maxima of kh consecutive rows (see bind)
            return [((self.row_maxima_size(x, kernel),), x.dtype, False)] * 2
        specs = [(outputs[0].shape, x.dtype, False)]
        if any(pads) or any(ends):
            specs.append((self.padded_shape(x.shape, pads, ends), x.dtype, True))
        return specs

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        """The max of the kh*kw strided window views, one view at a time. Each strided view is first copied into a
        contiguous scratch buffer: a ufunc on a strided operand allocates an iteration buffer, np.copyto does not
        (and reducing over the small kernel axes of a 6-d strided view is ~30x slower)."""
        (x,), (o,) = inputs, outputs
        kernel, strides, dilations, pads, ends, out = self.parts(x)
        separable = (self.separable(x) and len(scratch) == 2
                     and scratch[0].size == self.row_maxima_size(x, kernel))
        if separable and x.flags.c_contiguous:
            return self.bind_separable(x, o, kernel, strides, scratch)
        s = scratch[0][:o.size].reshape(o.shape) if separable else scratch[0]
        padded = scratch[1] if len(scratch) > 1 else x
        inner = None
        if padded is not x:
            padded.fill(self.low(x.dtype))
            inner = padded[(slice(None), slice(None)) + tuple(slice(p, p + n) for p, n in zip(pads, x.shape[2:]))]
        views = []
        for offsets in np.ndindex(*kernel):
            index = tuple(slice(k * dil, k * dil + st * (n - 1) + 1, st)
                          for k, dil, st, n in zip(offsets, dilations, strides, out))
            views.append(padded[(slice(None), slice(None)) + index])
        first, rest = views[0], views[1:]

        def max_pool() -> None:
            if inner is not None:
                np.copyto(inner, x)
            np.copyto(o, first)
            for v in rest:
                np.copyto(s, v)
                np.maximum(o, s, out=o)
        return max_pool


    def bind_separable(self, x: np.ndarray, o: np.ndarray, kernel: tuple[int, ...], strides: list[int],
                       scratch: list[np.ndarray]) -> Step:
        """Max pooling in few numpy calls, every one on 1-d (contiguous or evenly strided) operands, which numpy runs
        with its SIMD loops and no iteration buffer:

        1. ``t[q] = max(x[q*kw + k] for k < kw)``: x flat, its elements k, k+kw, k+2kw... (kw-1 calls). Since the
           windows tile each row, ``t`` is x with every row reduced to its window maxima: (N, C, H, W/kw).
        2. ``v[p] = max(t[p + k*Wo] for k < kh)``: each position against the kh-1 rows below it (kh-1 calls; the
           rows that straddle two channels are computed and never read).
        3. The output is the strided view of ``v`` at rows i*sh: one copy.

        At batch 1 step 1 keeps every position instead, ``t[p] = max(x[p + k] for k < kw)`` on contiguous
        shifted slices (kw-1 times the work, but numpy's contiguous loops are faster than strided ones on small
        images), and step 3 also picks every kw-th column.

        Max is exact, so this gives the same bits as the max over each window."""
        kh, kw = kernel
        sh = strides[0]
        n, c, h, w = x.shape
        wo = w // kw
        t_all, v_all = scratch
        xf = x.reshape(-1)
        keep_all = t_all.size == x.size  # batch 1: t[p] = max(x[p + k] for k < kw), every position (see above)
        row, col = (w, kw) if keep_all else (wo, 1)  # t's row length, and the stride of the windows in a row
        calls: list[Step] = []
        if kw == 1:
            t = xf
            size = x.size
        elif keep_all:
            t = t_all
            size = x.size - (kw - 1)
            head_t = t[:size]
            calls = [lambda a=xf[:size], b=xf[1:1 + size]: np.maximum(a, b, out=head_t)]
            calls += [lambda b=xf[k:k + size]: np.maximum(head_t, b, out=head_t) for k in range(2, kw)]
        else:
            t = t_all
            size = t.size
            calls = [lambda a=xf[0::kw], b=xf[1::kw]: np.maximum(a, b, out=t)]
            calls += [lambda a=xf[k::kw]: np.maximum(t, a, out=t) for k in range(2, kw)]
        if kh == 1:
            v = t
        else:
            m = size - (kh - 1) * row
            v = v_all
            head = v[:m]
            calls.append(lambda a=t[:m], b=t[row:row + m]: np.maximum(a, b, out=head))
            calls += [lambda b=t[k * row:k * row + m]: np.maximum(head, b, out=head) for k in range(2, kh)]
        it = v.itemsize
        picked = np.lib.stride_tricks.as_strided(v, shape=o.shape, strides=(c * h * row * it, h * row * it,
                                                                             sh * row * it, col * it),
                                                 writeable=False)
        calls.append(lambda: np.copyto(o, picked))
        steps = calls
        if len(steps) == 3:
            s0, s1, s2 = steps

            def max_pool3() -> None:
                s0()
                s1()
                s2()
            return max_pool3

        def max_pool() -> None:
            for step in steps:
                step()
        return max_pool


@kernel("BatchNormalization")
class BatchNormalization(Kernel):
    """Inference batch norm: y = (x - mean) / sqrt(var + eps) * scale + B, as one multiply and one add."""

    allocates = False
    inplace = True

    def setup(self) -> None:
        if self.attrs.get("training_mode", 0):
            raise self.fail("training_mode=1 is not supported at inference")

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        x, scale, bias, mean, var = inputs[:5]
        shape = (1, -1) + (1,) * (x.ndim - 2)
        eps = np.asarray(self.attrs.get("epsilon", 1e-5), var.dtype)
        y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * scale.reshape(shape) + bias.reshape(shape)
        return [y.astype(x.dtype)]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        if not self.all_static(range(1, 5)):
            return super().bind(inputs, outputs, scratch)
        x, scale, bias, mean, var = inputs[:5]
        (o,) = outputs
        shape = (1, -1) + (1,) * (x.ndim - 2)
        eps = np.asarray(self.attrs.get("epsilon", 1e-5), var.dtype)
        mul = self.expanded("mul", (scale / np.sqrt(var + eps)).astype(x.dtype).reshape(shape), x.shape)
        add = self.expanded("add", (bias - mean * scale / np.sqrt(var + eps)).astype(x.dtype).reshape(shape),
                            x.shape)

        def batch_norm() -> None:
            np.multiply(x, mul, out=o)
            np.add(o, add, out=o)
        return batch_norm


# -- shape-only ops (folded for each input shape) -------------------------------------------------------------------
@kernel("Shape")
class Shape(Kernel):
    static = True

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        shape = np.asarray(inputs[0].shape, dtype=np.int64)
        start, end = self.attrs.get("start", 0), self.attrs.get("end")
        return [shape[start:end]]


@kernel("Size")
class Size(Kernel):
    static = True

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        return [np.asarray(inputs[0].size, dtype=np.int64)]


@kernel("ConstantOfShape")
class ConstantOfShape(Kernel):
    shape_inputs = (0,)
    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        value = self.attrs.get("value")
        fill = np.zeros(1, np.float32) if value is None else value
        shape = tuple(int(s) for s in np.asarray(inputs[0]).reshape(-1))
        return [np.full(shape, fill.reshape(-1)[0], dtype=fill.dtype)]


@kernel("Range")
class Range(Kernel):
    shape_inputs = (0, 1, 2)
    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        start, limit, delta = (np.asarray(v).reshape(()) for v in inputs)
        return [np.arange(start, limit, delta, dtype=start.dtype)]


@kernel("LayerNormalization")
class LayerNormalization(Kernel):
    """(x - mean) / sqrt(var + epsilon) * Scale + B over the axes from ``axis`` to the last (opset 17)."""

    def setup(self) -> None:
        self.eps = float(self.attrs.get("epsilon", 1e-5))

    def axes(self, x: np.ndarray) -> tuple[int, ...]:
        axis = int(self.attrs.get("axis", -1))
        axis = axis + x.ndim if axis < 0 else axis
        return tuple(range(axis, x.ndim))

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        x, scale = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        axes = self.axes(x)
        work = x.astype(np.float32) if self.attrs.get("stash_type", 1) == 1 and x.dtype.itemsize < 4 else x
        mean = work.mean(axis=axes, keepdims=True)
        centered = work - mean
        var = (centered * centered).mean(axis=axes, keepdims=True)
        std = np.sqrt(var + np.asarray(self.eps, work.dtype))
        y = (centered / std).astype(x.dtype) * scale
        y = (y + bias if bias is not None else y).astype(x.dtype)
        return [y, mean, (1 / std).astype(std.dtype)][:self.outputs]

    def scratch(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[tuple[tuple[int, ...], Any, bool]]:
        x = inputs[0]
        keep = tuple(1 if i in self.axes(x) else n for i, n in enumerate(x.shape))
        return [(keep, x.dtype, False), (x.shape, x.dtype, False)]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        if not self.all_static((1, 2)) or self.outputs > 1 or inputs[0].dtype.itemsize < 4:
            return super().bind(inputs, outputs, scratch)
        x, (o,), (m, t) = inputs[0], outputs, scratch
        axes = self.axes(x)
        scale = self.expanded("scale", inputs[1], x.shape)
        bias = self.expanded("bias", inputs[2], x.shape) if len(inputs) > 2 else None
        eps = np.asarray(self.eps, x.dtype)
        count = np.asarray(x.size // max(m.size, 1), dtype=x.dtype)

        def layer_norm() -> None:
            np.sum(x, axis=axes, keepdims=True, out=m)  # (np.mean(out=) allocates a buffer)
            np.divide(m, count, out=m)
            np.copyto(t, m)
            np.subtract(x, t, out=o)
            np.multiply(o, o, out=t)
            np.sum(t, axis=axes, keepdims=True, out=m)
            np.divide(m, count, out=m)
            np.add(m, eps, out=m)
            np.sqrt(m, out=m)
            np.copyto(t, m)
            np.divide(o, t, out=o)
            np.multiply(o, scale, out=o)
            if bias is not None:
                np.add(o, bias, out=o)
        return layer_norm


# -- the ops the exporter emits for issue 21's primitives ------------------------------------------------------------
@kernel("Softplus")
class Softplus(Kernel):
    """log(1 + e^x) without overflow: numpy's logaddexp(0, x), as the eager op."""

    allocates = False
    inplace = True

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a = inputs[0]
        return [np.asarray(np.logaddexp(np.zeros((), a.dtype), a))]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        (a,), (o,) = inputs, outputs
        zero = np.zeros((), a.dtype)
        return lambda: np.logaddexp(zero, a, out=o)


@kernel("Mod")
class Mod(Kernel):
    """Remainder: ``fmod=1`` C's fmod (the sign of a), ``fmod=0`` Python's % (the sign of b; integers only)."""

    allocates = False

    def setup(self) -> None:
        self.fn = np.fmod if self.attrs.get("fmod", 0) else np.mod

    def check(self, a: np.ndarray, b: np.ndarray) -> None:
        if self.fn is np.mod and (a.dtype.kind == "f" or b.dtype.kind == "f"):
            raise self.fail("fmod=0 is only defined for integer types (ONNX requires fmod=1 for floats)")
        if a.dtype.kind in "iu" and bool((np.asarray(b) == 0).any()):
            raise self.fail("integer division by zero")

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        a, b = inputs
        self.check(a, b)
        return [np.asarray(self.fn(a, b)).astype(a.dtype, copy=False)]

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: list[np.ndarray]) -> Step:
        (a, b), (o,) = inputs, outputs
        if a.dtype != b.dtype or o.dtype != a.dtype:
            return super().bind(inputs, outputs, scratch)
        fn, check = self.fn, self.check
        integer = a.dtype.kind in "iu"

        def mod() -> None:
            if integer:
                check(a, b)
            fn(a, b, out=o)
        return mod


def _element_index(kernel_: Kernel, data: np.ndarray, idx: np.ndarray, axis: int) -> tuple[Any, ...]:
    """The fancy index that addresses, for each position p of ``idx``, p with its ``axis`` coordinate replaced by
    ``idx[p]`` (negative indices count from the end); IndexError naming the node when one is out of range."""
    n = data.shape[axis]
    if idx.size and (idx.max() >= n or idx.min() < -n):
        bad = int(idx.max()) if idx.max() >= n else int(idx.min())
        raise IndexError(f"{kernel_.op_type} (node {kernel_.name!r}): index {bad} is out of range for axis {axis} of "
                         f"size {n} (data shape {data.shape})")
    if any(m > d for i, (m, d) in enumerate(zip(idx.shape, data.shape)) if i != axis):
        raise kernel_.fail(f"indices {idx.shape} are larger than data {data.shape} outside axis {axis}")
    rank = idx.ndim
    return tuple(np.where(idx < 0, idx + n, idx) if d == axis
                 else np.arange(size).reshape((-1,) + (1,) * (rank - d - 1)) for d, size in enumerate(idx.shape))


@kernel("GatherElements")
class GatherElements(Kernel):
    """out[p] = data[p with its ``axis`` coordinate replaced by indices[p]] (torch.gather)."""

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        data, idx = inputs
        axis = int(self.attrs.get("axis", 0)) % max(data.ndim, 1)
        return [np.ascontiguousarray(data[_element_index(self, data, np.asarray(idx), axis)])]


@kernel("ScatterElements")
class ScatterElements(Kernel):
    """A copy of data with updates[p] written (or combined: add, mul, max, min; repeated indices all count) at p
    with its ``axis`` coordinate replaced by indices[p] (torch.scatter / scatter_reduce)."""

    _AT = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}

    def setup(self) -> None:
        reduction = self.attrs.get("reduction", b"none")
        self.reduction = reduction.decode() if isinstance(reduction, bytes) else reduction
        if self.reduction != "none" and self.reduction not in self._AT:
            raise self.fail(f"reduction {self.reduction!r} is not supported")

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        data, idx, updates = inputs
        axis = int(self.attrs.get("axis", 0)) % max(data.ndim, 1)
        where = _element_index(self, data, np.asarray(idx), axis)
        out = np.array(data, copy=True)
        if self.reduction == "none":
            out[where] = updates
        else:
            self._AT[self.reduction].at(out, where, updates)
        return [out]


@kernel("Col2Im")
class Col2Im(Kernel):
    """(N, C*prod(block), L) columns summed back into (N, C, *image_shape) (torch.nn.functional.fold): one strided
    add per kernel offset, in the eager op's order."""

    shape_inputs = (1, 2)

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        cols = inputs[0]
        image = [int(s) for s in np.asarray(inputs[1]).reshape(-1)]
        block = [int(s) for s in np.asarray(inputs[2]).reshape(-1)]
        nd = len(image)
        dilations = list(self.attrs.get("dilations", [1] * nd))
        strides = list(self.attrs.get("strides", [1] * nd))
        pads = list(self.attrs.get("pads", [0] * (2 * nd)))
        n, ckk, length = cols.shape
        size = int(np.prod(block))
        padded = [image[i] + pads[i] + pads[i + nd] for i in range(nd)]
        blocks = [(padded[i] - dilations[i] * (block[i] - 1) - 1) // strides[i] + 1 for i in range(nd)]
        if ckk % size or int(np.prod(blocks)) != length or min(blocks) <= 0:
            raise self.fail(f"input of shape {cols.shape} does not fit image_shape {image} with block_shape {block}: "
                            f"expected (N, C*{size}, {int(np.prod([max(b, 0) for b in blocks]))})")
        channels = ckk // size
        out = np.zeros((n, channels, *padded), dtype=cols.dtype)
        windows = cols.reshape(n, channels, *block, *blocks)
        every = (slice(None), slice(None))
        for offset in np.ndindex(*block):
            target = every + tuple(slice(offset[i] * dilations[i],
                                         offset[i] * dilations[i] + strides[i] * (blocks[i] - 1) + 1, strides[i])
                                   for i in range(nd))
            out[target] += windows[every + offset]
        interior = every + tuple(slice(pads[i], pads[i] + image[i]) for i in range(nd))
        return [np.ascontiguousarray(out[interior])]
