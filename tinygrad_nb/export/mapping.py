"""From traced primitives to standard ONNX ops: one converter per primitive, and the table the docs print.

Each converter gets the :class:`Emitter` (which names values, adds initializers and nodes), the traced node and the
ONNX names of its tensor arguments, and must leave the node's result in ``em.name(node.output)``. A primitive with no
converter, or an argument pattern a converter cannot express, raises :class:`ExportError` naming the op, the module
path and the user's line.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import xxhash

from ..ops import NO_GRAD_OPS
from .errors import ExportError
from .trace import Node, Value

INT64_MAX = np.iinfo(np.int64).max


class Emitter:
    """Collects ONNX nodes and initializers; names values; deduplicates identical constants."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list[tuple[str, list[str], list[str], dict[str, Any]]] = []  # op_type, inputs, outputs, attrs
        self.initializers: dict[str, np.ndarray] = {}
        self._names: dict[int, str] = {}
        self._by_content: dict[tuple[str, tuple[int, ...], str], str] = {}
        self._used: set[str] = set()
        self._counter = 0

    def fresh(self, hint: str) -> str:
        """A new unique value name."""
        while True:
            self._counter += 1
            name = f"{hint}_{self._counter}"
            if name not in self._used:
                self._used.add(name)
                return name

    def reserve(self, value: Value, name: str) -> None:
        self._names[id(value)] = name
        self._used.add(name)

    def name(self, value: Value) -> str:
        """The ONNX name of a traced value (constants become initializers on first use)."""
        known = self._names.get(id(value))
        if known is not None:
            return known
        if value.kind == "const":
            assert value.array is not None
            name = self.const(value.array, value.name or "const")
        else:
            name = self.fresh("t")
        self._names[id(value)] = name
        return name

    def const(self, array: Any, hint: str = "const") -> str:
        """An initializer holding ``array`` (one per distinct content)."""
        array = np.asarray(array)
        array = array if array.flags.c_contiguous else array.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)
        key = (array.dtype.str, tuple(array.shape), xxhash.xxh3_128_hexdigest(array.tobytes()))
        known = self._by_content.get(key)
        if known is not None:
            return known
        name = hint if hint not in self._used else self.fresh(hint)
        self._used.add(name)
        self.initializers[name] = array
        self._by_content[key] = name
        return name

    def finish(self, current: str, out: str) -> None:
        """Make ``current`` (the last value a converter produced) be called ``out``."""
        if self.nodes and self.nodes[-1][2] == [current]:
            self.nodes[-1][2][0] = out
        else:
            self.node("Identity", [current], out)

    def ints(self, values: Any, hint: str = "shape") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint)

    def node(self, op_type: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        out = output if output is not None else self.fresh(op_type.lower())
        self.nodes.append((op_type, inputs, [out], attrs))
        return out


Converter = Callable[[Emitter, Node, str], None]
CONVERTERS: dict[str, tuple[Converter, str]] = {}


def converter(op: str, onnx_ops: str) -> Callable[[Converter], Converter]:
    """Register the converter of primitive ``op``; ``onnx_ops`` is what the docs' mapping table says."""
    def register(fn: Converter) -> Converter:
        CONVERTERS[op] = (fn, onnx_ops)
        return fn
    return register


def operand(em: Emitter, node: Node, arg: Any) -> str:
    """The ONNX name of a tensor argument; a Python scalar becomes a constant of the result's dtype."""
    if isinstance(arg, Value):
        return em.name(arg)
    return em.const(np.asarray(arg, dtype=node.output.dtype), "scalar")


def operand_like(em: Emitter, arg: Any, like: Any) -> str:
    """As :func:`operand`, with scalars taking the dtype of the other (tensor) argument."""
    if isinstance(arg, Value):
        return em.name(arg)
    return em.const(np.asarray(arg, dtype=like.dtype), "scalar")


def fail(node: Node, why: str) -> ExportError:
    return ExportError(f"cannot export {node.op}: {why}", node.op, node.module, node.location)


# -- elementwise ----------------------------------------------------------------------------------------------------
def _binary(op_type: str) -> Converter:
    def convert(em: Emitter, node: Node, out: str) -> None:
        a, b = node.args[:2]
        em.node(op_type, [operand(em, node, a), operand(em, node, b)], out)
    return convert


for _op, _onnx in (("Add", "Add"), ("Sub", "Sub"), ("Mul", "Mul"), ("Div", "Div"), ("Maximum", "Max"),
                   ("Minimum", "Min"), ("Matmul", "MatMul")):
    converter(_op, _onnx)(_binary(_onnx))


@converter("Pow", "Pow")
def _pow(em: Emitter, node: Node, out: str) -> None:
    a, b = node.args
    em.node("Pow", [operand(em, node, a), operand_like(em, b, a if isinstance(a, Value) else node.output)], out)


@converter("FloorDivide", "Div + Floor (floating point only)")
def _floor_divide(em: Emitter, node: Node, out: str) -> None:
    if node.output.dtype.kind != "f":
        raise fail(node, "integer floor division rounds differently in ONNX (Div truncates); cast to float first")
    a, b = node.args
    em.node("Floor", [em.node("Div", [operand(em, node, a), operand(em, node, b)])], out)


def _unary(op_type: str) -> Converter:
    def convert(em: Emitter, node: Node, out: str) -> None:
        em.node(op_type, [operand(em, node, node.args[0])], out)
    return convert


for _op in ("Neg", "Exp", "Log", "Sqrt", "Tanh", "Sigmoid", "Relu", "Abs"):
    converter(_op, _op)(_unary(_op))


@converter("Where", "Where")
def _where(em: Emitter, node: Node, out: str) -> None:
    cond, a, b = node.args
    em.node("Where", [em.name(cond) if isinstance(cond, Value) else em.const(np.asarray(cond, dtype=bool)),
                      operand(em, node, a), operand(em, node, b)], out)


@converter("Gelu", "Div, Erf, Add, Mul (exact) or Pow, Mul, Add, Tanh (approximate='tanh')")
def _gelu(em: Emitter, node: Node, out: str) -> None:
    x = em.name(node.args[0])
    dtype = node.output.dtype
    c = lambda v: em.const(np.asarray(v, dtype=dtype), "gelu_const")  # noqa: E731
    approximate = node.args[1] if len(node.args) > 1 else node.kwargs.get("approximate", "none")
    if approximate == "tanh":
        cube = em.node("Mul", [em.node("Mul", [x, x]), x])
        inner = em.node("Mul", [em.node("Add", [x, em.node("Mul", [cube, c(0.044715)])]),
                                c(math.sqrt(2.0 / math.pi))])
        half = em.node("Mul", [x, c(0.5)])
        em.node("Mul", [half, em.node("Add", [em.node("Tanh", [inner]), c(1.0)])], out)
        return
    erf = em.node("Erf", [em.node("Div", [x, c(math.sqrt(2.0))])])
    em.node("Mul", [em.node("Mul", [x, c(0.5)]), em.node("Add", [erf, c(1.0)])], out)


@converter("Clamp", "Clip")
def _clamp(em: Emitter, node: Node, out: str) -> None:
    x = node.args[0]
    low = node.args[1] if len(node.args) > 1 else node.kwargs.get("low")
    high = node.args[2] if len(node.args) > 2 else node.kwargs.get("high")
    bound = lambda v: "" if v is None else operand(em, node, v)  # noqa: E731
    em.node("Clip", [em.name(x), bound(low), bound(high)], out)


@converter("Cast", "Cast")
def _cast(em: Emitter, node: Node, out: str) -> None:
    from onnx import helper  # noqa: PLC0415

    em.node("Cast", [em.name(node.args[0])], out, to=helper.np_dtype_to_tensor_dtype(node.output.dtype))


_NO_GRAD = {"equal": "Equal", "less": "Less", "greater": "Greater", "less_equal": "LessOrEqual",
            "greater_equal": "GreaterOrEqual", "logical_and": "And", "logical_or": "Or", "logical_xor": "Xor",
            "logical_not": "Not", "isnan": "IsNaN", "isinf": "IsInf", "sign": "Sign", "floor": "Floor",
            "ceil": "Ceil", "round": "Round", "argmax": "ArgMax", "argmin": "ArgMin", "not_equal": "Equal + Not",
            "isfinite": "IsNaN, IsInf, Or, Not", "amin": "ReduceMin"}


@converter("NoGradOp", "by name: " + ", ".join(f"{k} -> {v}" for k, v in _NO_GRAD.items()))
def _no_grad(em: Emitter, node: Node, out: str) -> None:
    name = node.kwargs.get("name", _XP_NAME.get(node.op))  # a member of the family (IsNan, ArgMax...) or its name=
    tensors = [a for a in node.args if isinstance(a, Value)]
    ref = tensors[0] if tensors else node.output
    inputs = [operand_like(em, a, ref) for a in node.args]
    if name in ("argmax", "argmin"):
        if node.kwargs.get("axis") is None:
            raise fail(node, f"{name} over all elements (no dim) is not supported; flatten and pass dim=")
        em.node("ArgMax" if name == "argmax" else "ArgMin", inputs[:1], out, axis=int(node.kwargs["axis"]),
                keepdims=int(bool(node.kwargs.get("keepdims", False))))
    elif name == "amin":  # integer min (floats take -max(-x), which has a gradient)
        _axes(em, "ReduceMin", inputs[:1], node.kwargs.get("axis"), bool(node.kwargs.get("keepdims", False)), out)
    elif name == "not_equal":
        em.node("Not", [em.node("Equal", inputs)], out)
    elif name == "isfinite":
        em.node("Not", [em.node("Or", [em.node("IsNaN", inputs), em.node("IsInf", inputs)])], out)
    elif name in _NO_GRAD:
        em.node(_NO_GRAD[name], inputs, out)
    else:
        raise fail(node, f"NoGradOp {name!r} has no ONNX mapping")


_XP_NAME = {op.__name__: xp_name for xp_name, op in NO_GRAD_OPS.items()}
for _member in _XP_NAME:  # every named no-grad op (ops.NO_GRAD_OPS) exports through _no_grad
    CONVERTERS.setdefault(_member, CONVERTERS["NoGradOp"])


# -- reductions -----------------------------------------------------------------------------------------------------
def _axes(em: Emitter, op_type: str, inputs: list[str], axes: Any, keepdims: bool, out: str) -> None:
    if axes is None:
        em.node(op_type, inputs, out, keepdims=int(keepdims))
    elif op_type == "ReduceSum" or em.opset >= 18:
        em.node(op_type, inputs + [em.ints(list(axes), "axes")], out, keepdims=int(keepdims))
    else:
        em.node(op_type, inputs, out, axes=list(axes), keepdims=int(keepdims))


@converter("Sum", "ReduceSum")
def _sum(em: Emitter, node: Node, out: str) -> None:
    axes = node.args[1] if len(node.args) > 1 else node.kwargs.get("axis")
    keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdims", False)
    _axes(em, "ReduceSum", [em.name(node.args[0])], axes, keep, out)


@converter("Max", "ReduceMax")
def _max(em: Emitter, node: Node, out: str) -> None:
    axes = node.args[1] if len(node.args) > 1 else node.kwargs.get("axis")
    keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdims", False)
    _axes(em, "ReduceMax", [em.name(node.args[0])], axes, keep, out)


@converter("Cumsum", "CumSum")
def _cumsum(em: Emitter, node: Node, out: str) -> None:
    em.node("CumSum", [em.name(node.args[0]), em.const(np.asarray(node.args[1], dtype=np.int64), "axis")], out)


@converter("LogSoftmax", "LogSoftmax")
def _log_softmax(em: Emitter, node: Node, out: str) -> None:
    em.node("LogSoftmax", [em.name(node.args[0])], out, axis=int(node.args[1]))


# -- movement -------------------------------------------------------------------------------------------------------
@converter("Reshape", "Reshape (the batch dimension as -1)")
def _reshape(em: Emitter, node: Node, out: str) -> None:
    shape = list(node.output.shape)
    dynamic = node.output.dynamic
    if len(dynamic) > 1:
        raise fail(node, f"the target shape {tuple(shape)} has {len(dynamic)} dimensions that follow the batch size "
                         f"(axes {dynamic}); only one can be inferred (-1). Export with dynamic_batch=False")
    for axis in dynamic:
        shape[axis] = -1
    if 0 in shape:
        raise fail(node, f"reshape to a shape with a 0 dimension {tuple(shape)} is not supported")
    em.node("Reshape", [em.name(node.args[0]), em.ints(shape)], out)


@converter("Permute", "Transpose")
def _permute(em: Emitter, node: Node, out: str) -> None:
    em.node("Transpose", [em.name(node.args[0])], out, perm=[int(a) for a in node.args[1]])


@converter("Expand", "Expand (the batch dimension as 1)")
def _expand(em: Emitter, node: Node, out: str) -> None:
    x: Value = node.args[0]
    shape = list(node.output.shape)
    lead = len(shape) - len(x.shape)
    for axis in node.output.dynamic:
        if axis - lead in x.dynamic:
            shape[axis] = 1  # bidirectional broadcasting keeps the input's (batch) size
        else:
            raise fail(node, f"expanding a size-{x.shape[axis - lead] if axis >= lead else 1} axis to the batch "
                             "size is not supported with dynamic_batch=True; export with dynamic_batch=False")
    em.node("Expand", [em.name(x), em.ints(shape)], out)


@converter("GetItem", "Slice, Gather, Squeeze, Unsqueeze")
def _getitem(em: Emitter, node: Node, out: str) -> None:
    x: Value = node.args[0]
    index = node.args[1]
    parts = list(index) if isinstance(index, tuple) else [index]
    arrays = [p for p in parts if isinstance(p, Value)]  # index tensors and arrays (traced or constant)
    if arrays:
        position = next(i for i, p in enumerate(parts) if isinstance(p, Value))
        if len(arrays) != 1 or any(not (isinstance(p, slice) and p == slice(None)) for i, p in enumerate(parts)
                                   if i != position) or Ellipsis in parts:
            raise fail(node, "only one integer index tensor, with plain ':' elsewhere (x[idx] or x[:, idx]), is "
                             "supported (it maps to ONNX Gather)")
        idx: Value = parts[position]
        if idx.dtype.kind == "b":
            raise fail(node, "boolean-mask indexing gives a data-dependent shape; use tg.where instead")
        em.node("Gather", [em.name(x), em.name(idx)], out, axis=position)
        return
    if Ellipsis in parts:
        at = parts.index(Ellipsis)
        used = sum(1 for p in parts if p is not None and p is not Ellipsis)
        parts = parts[:at] + [slice(None)] * (len(x.shape) - used) + parts[at + 1:]
    current = em.name(x)
    starts, ends, axes, steps, unsqueeze = [], [], [], [], []
    axis = 0  # the input axis the next part indexes
    out_axis = 0  # the output axis it becomes
    gathers = []
    for p in parts:
        if p is None:
            unsqueeze.append(out_axis)
            out_axis += 1
        elif isinstance(p, (int, np.integer)):
            gathers.append((axis, int(p)))
            axis += 1
        elif isinstance(p, slice):
            if p != slice(None):
                step = 1 if p.step is None else int(p.step)
                if step > 0:
                    start, end = (0 if p.start is None else int(p.start)), (INT64_MAX if p.stop is None
                                                                            else int(p.stop))
                else:
                    start = INT64_MAX if p.start is None else int(p.start)
                    end = -INT64_MAX if p.stop is None else int(p.stop)
                starts.append(start), ends.append(end), axes.append(axis), steps.append(step)
            axis += 1
            out_axis += 1
        else:
            raise fail(node, f"index part {p!r} is not supported")
    if starts:
        current = em.node("Slice", [current, em.ints(starts, "starts"), em.ints(ends, "ends"), em.ints(axes, "axes"),
                                    em.ints(steps, "steps")])
    for gather_axis, i in sorted(gathers, reverse=True):  # the highest axis first: the lower ones stay in place
        current = em.node("Gather", [current, em.const(np.asarray(i, dtype=np.int64), "index")], axis=gather_axis)
    if unsqueeze:
        current = em.node("Unsqueeze", [current, em.ints(unsqueeze, "axes")])
    em.finish(current, out)


@converter("Cat", "Concat")
def _cat(em: Emitter, node: Node, out: str) -> None:
    em.node("Concat", [operand(em, node, a) for a in node.args], out, axis=int(node.kwargs.get("axis", 0)))


@converter("Pad", "Pad (constant mode)")
def _pad(em: Emitter, node: Node, out: str) -> None:
    x = node.args[0]
    widths = node.args[1]
    value = node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0.0)
    pads = [int(b) for b, _ in widths] + [int(a) for _, a in widths]
    em.node("Pad", [em.name(x), em.ints(pads, "pads"), em.const(np.asarray(value, dtype=x.dtype), "pad_value")],
            out, mode="constant")


# -- matrix products and windows ------------------------------------------------------------------------------------
@converter("Linear", "Gemm (2-D input) or MatMul + Add")
def _linear(em: Emitter, node: Node, out: str) -> None:
    x, w = node.args[0], node.args[1]
    b = node.args[2] if len(node.args) > 2 else None
    if len(x.shape) == 2:
        em.node("Gemm", [em.name(x), em.name(w)] + ([operand(em, node, b)] if b is not None else []), out, transB=1)
        return
    if isinstance(w, Value) and w.kind == "const":
        wt = em.const(np.ascontiguousarray(w.array.T), (w.name or "weight") + "_T")
    else:
        wt = em.node("Transpose", [em.name(w)], perm=[1, 0])
    if b is None:
        em.node("MatMul", [em.name(x), wt], out)
    else:
        em.node("Add", [em.node("MatMul", [em.name(x), wt]), operand(em, node, b)], out)


@converter("Unfold", "Conv with a one-hot kernel (im2col), Reshape")
def _unfold(em: Emitter, node: Node, out: str) -> None:
    x: Value = node.args[0]
    (kh, kw), stride, padding, dilation = node.args[1:5]
    channels = x.shape[1]
    eye = np.zeros((channels * kh * kw, 1, kh, kw), dtype=x.dtype)
    for c in range(channels):
        for i in range(kh):
            for j in range(kw):
                eye[c * kh * kw + i * kw + j, 0, i, j] = 1
    cols = em.node("Conv", [em.name(x), em.const(eye, "im2col")], group=channels, kernel_shape=[kh, kw],
                   strides=list(stride), pads=[padding[0], padding[1], padding[0], padding[1]],
                   dilations=list(dilation))
    shape = list(node.output.shape)
    for axis in node.output.dynamic:
        shape[axis] = -1
    em.node("Reshape", [cols, em.ints(shape)], out)


@converter("Conv2d", "Conv (nn.Conv2d is recorded as one node)")
def _conv2d(em: Emitter, node: Node, out: str) -> None:
    x, w, b = node.args
    a = node.kwargs
    kh, kw = a["kernel"]
    dilation = a["dilation"]
    if isinstance(a["padding"], str):
        if a["padding"] == "valid":
            pads = [0, 0, 0, 0]
        else:  # "same", stride 1: the odd extra goes after, as in PyTorch
            th, tw = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
            pads = [th // 2, tw // 2, th - th // 2, tw - tw // 2]
    else:
        pads = [a["padding"][0], a["padding"][1], a["padding"][0], a["padding"][1]]
    inputs = [em.name(x), em.name(w)] + ([em.name(b)] if b is not None else [])
    em.node("Conv", inputs, out, kernel_shape=[kh, kw], strides=list(a["stride"]), pads=pads,
            dilations=list(dilation), group=int(a["groups"]))


@converter("MaxPool2d", "MaxPool (nn.MaxPool2d is recorded as one node)")
def _max_pool(em: Emitter, node: Node, out: str) -> None:
    a = node.kwargs
    (ph, pw) = a["padding"]
    em.node("MaxPool", [em.name(node.args[0])], out, kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
            pads=[ph, pw, ph, pw], dilations=list(a["dilation"]))


@converter("CrossEntropy", "not exported (a training loss; export the model without it)")
def _cross_entropy(em: Emitter, node: Node, out: str) -> None:
    raise fail(node, "cross_entropy is a training loss; export the model that produces the logits")


# -- trigonometric, hyperbolic and special functions (issue 21) -------------------------------------------------------
for _op in ("Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Erf", "Softplus"):
    converter(_op, _op)(_unary(_op))


def _scalar(em: Emitter, node: Node, value: float) -> str:
    """A 0-d constant of the result's dtype."""
    return em.const(np.asarray(value, dtype=node.output.dtype), "scalar")


@converter("Log1p", "Add 1, Log (absolute error about 1 ulp of 1 near 0)")
def _log1p(em: Emitter, node: Node, out: str) -> None:
    em.node("Log", [em.node("Add", [em.name(node.args[0]), _scalar(em, node, 1.0)])], out)


@converter("Expm1", "Exp, Sub 1 (absolute error about 1 ulp of 1 near 0)")
def _expm1(em: Emitter, node: Node, out: str) -> None:
    em.node("Sub", [em.node("Exp", [em.name(node.args[0])]), _scalar(em, node, 1.0)], out)


@converter("Log2", "Log, Div ln 2")
def _log2(em: Emitter, node: Node, out: str) -> None:
    em.node("Div", [em.node("Log", [em.name(node.args[0])]), _scalar(em, node, math.log(2.0))], out)


@converter("Log10", "Log, Div ln 10")
def _log10(em: Emitter, node: Node, out: str) -> None:
    em.node("Div", [em.node("Log", [em.name(node.args[0])]), _scalar(em, node, math.log(10.0))], out)


@converter("Exp2", "Pow (base 2)")
def _exp2(em: Emitter, node: Node, out: str) -> None:
    em.node("Pow", [_scalar(em, node, 2.0), em.name(node.args[0])], out)


@converter("Erfc", "Erf, Sub from 1 (absolute error about 1 ulp of 1)")
def _erfc(em: Emitter, node: Node, out: str) -> None:
    em.node("Sub", [_scalar(em, node, 1.0), em.node("Erf", [em.name(node.args[0])])], out)


@converter("Erfinv", "not exported (no ONNX op; raises ExportError)")
def _erfinv(em: Emitter, node: Node, out: str) -> None:
    raise fail(node, "ONNX has no inverse error function (and no composition of standard ops computes it to fp32 "
                     "precision); apply erfinv outside the exported model")


@converter("Atan2", "Div, Atan, Where (quadrant by the signs of x and y; atan2(0, 0) = 0)")
def _atan2(em: Emitter, node: Node, out: str) -> None:
    # atan(y / x) is right for x > 0; for x < 0 add pi (y >= 0) or -pi (y < 0); x = 0 gives y / 0 = +-inf, whose
    # atan is +-pi/2 as wanted; only 0 / 0 (NaN) needs its own case. (Signed zeros: atan2(-0.0, x < 0) gives +pi
    # here, -pi in numpy.)
    y, x = operand(em, node, node.args[0]), operand(em, node, node.args[1])
    zero = _scalar(em, node, 0.0)
    base = em.node("Atan", [em.node("Div", [y, x])])
    turn = em.node("Where", [em.node("Less", [y, zero]), _scalar(em, node, -math.pi), _scalar(em, node, math.pi)])
    shifted = em.node("Where", [em.node("Less", [x, zero]), em.node("Add", [base, turn]), base])
    origin = em.node("And", [em.node("Equal", [x, zero]), em.node("Equal", [y, zero])])
    em.node("Where", [origin, zero, shifted], out)


@converter("Fmod", "Mod (fmod=1)")
def _fmod(em: Emitter, node: Node, out: str) -> None:
    em.node("Mod", [operand(em, node, node.args[0]), operand(em, node, node.args[1])], out, fmod=1)


@converter("Remainder", "Mod (integers); floats: Mod (fmod=1), then + b where the sign differs from b's")
def _remainder(em: Emitter, node: Node, out: str) -> None:
    a, b = operand(em, node, node.args[0]), operand(em, node, node.args[1])
    if node.output.dtype.kind in "iu":
        em.node("Mod", [a, b], out, fmod=0)  # Python's sign rule for integers
        return
    # ONNX refuses fmod=0 for floats: numpy's own remainder is fmod plus b where fmod's sign differs from b's
    r = em.node("Mod", [a, b], fmod=1)
    zero = _scalar(em, node, 0.0)
    differs = em.node("Xor", [em.node("Less", [r, zero]), em.node("Less", [b, zero])])
    fix = em.node("And", [differs, em.node("Not", [em.node("Equal", [r, zero])])])
    em.node("Where", [fix, em.node("Add", [r, b]), r], out)


# -- products, gather and scatter ------------------------------------------------------------------------------------
@converter("Prod", "ReduceProd")
def _prod(em: Emitter, node: Node, out: str) -> None:
    axes = node.args[1] if len(node.args) > 1 else node.kwargs.get("axis")
    keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdims", False)
    if axes is not None and len(axes) == 0:
        em.node("Identity", [em.name(node.args[0])], out)
        return
    _axes(em, "ReduceProd", [em.name(node.args[0])], axes, keep, out)


def _index(em: Emitter, index: Value) -> str:
    """An index tensor as int64 (GatherElements/ScatterElements take int32 or int64)."""
    name = em.name(index)
    if index.dtype in (np.dtype(np.int64), np.dtype(np.int32)):
        return name
    return em.node("Cast", [name], to=7)  # TensorProto.INT64


@converter("Gather", "GatherElements")
def _gather_elements(em: Emitter, node: Node, out: str) -> None:
    a, index, axis = node.args[:3]
    idx = _index(em, index)
    # an index made inside forward with the batch size (zeros(x.shape[0], 1)) was folded to one broadcasting row
    # (see trace.reconcile); GatherElements does not broadcast, so it is expanded to the data's batch size again
    short = [d for d in node.output.dynamic if index.shape[d] != node.output.shape[d]]
    if short:
        if any(d not in a.dynamic for d in short):
            raise fail(node, "the index follows the batch size but the data does not; export with "
                             "dynamic_batch=False")
        sizes = em.node("Shape", [em.name(a)])
        parts = [em.node("Gather", [sizes, em.ints([d], "axis")], axis=0) if d in short
                 else em.ints([n], "size") for d, n in enumerate(index.shape)]
        idx = em.node("Expand", [idx, em.node("Concat", parts, axis=0)])
    em.node("GatherElements", [em.name(a), idx], out, axis=int(axis))


_SCATTER = {None: "none", "sum": "add", "prod": "mul", "amax": "max", "amin": "min"}


@converter("Scatter", "ScatterElements (reductions add/mul from opset 16, max/min from 18; include_self=False: a "
                      "first ScatterElements writes the identity; mean: sum / count, floats only)")
def _scatter_elements(em: Emitter, node: Node, out: str) -> None:
    a, index, src, axis = node.args[:4]
    reduce = node.args[4] if len(node.args) > 4 else node.kwargs.get("reduce")
    include_self = node.args[5] if len(node.args) > 5 else node.kwargs.get("include_self", True)
    axis, dtype = int(axis), node.output.dtype
    if reduce in ("amax", "amin") and em.opset < 18:
        raise fail(node, f"scatter_reduce {reduce!r} needs ONNX opset 18 (ScatterElements reduction max/min); "
                         f"export with opset=18 or later")
    if reduce is not None and em.opset < 16:
        raise fail(node, f"scatter_reduce {reduce!r} needs ONNX opset 16 (ScatterElements reduction); export with "
                         f"opset=16 or later")
    if reduce == "mean" and dtype.kind != "f":
        raise fail(node, "scatter_reduce 'mean' of integers rounds down (floor division), which ONNX cannot "
                         "express; cast to float first")
    if reduce not in _SCATTER and reduce != "mean":
        raise fail(node, f"scatter reduction {reduce!r} has no ONNX mapping")
    idx = _index(em, index)
    updates = operand(em, node, src)
    if isinstance(src, Value) and any(s > n for s, n in zip(src.shape, index.shape)):  # only src's corner is used
        ends = [INT64_MAX if (axis_ in index.dynamic and axis_ in src.dynamic) else n
                for axis_, n in enumerate(index.shape)]
        updates = em.node("Slice", [updates, em.ints([0] * len(ends), "starts"), em.ints(ends, "ends")])
    if isinstance(src, Value) and any(s < n for s, n in zip(src.shape, index.shape)):
        # a src made inside forward with the batch size (scatter(..., value=v)) was folded to one broadcasting row
        # (see trace.reconcile); ScatterElements wants updates of the index's shape
        updates = em.node("Expand", [updates, em.node("Shape", [idx])])
    data = em.name(a)
    if reduce is None:
        em.node("ScatterElements", [data, idx, updates], out, axis=axis)  # (no reduction attribute before 16)
        return

    def filled(value: Any) -> str:
        """A tensor of the index's shape holding ``value`` (dynamic batch: Expand to Shape(index))."""
        return em.node("Expand", [em.const(np.asarray(value, dtype=dtype), "scatter_fill"),
                                  em.node("Shape", [idx])])

    if not include_self:  # the written positions first take the reduction's identity, so a's value drops out
        if reduce in ("sum", "mean"):
            identity: Any = 0
        elif reduce == "prod":
            identity = 1
        else:
            info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
            identity = (-np.inf if reduce == "amax" else np.inf) if dtype.kind == "f" else (
                info.min if reduce == "amax" else info.max)
        data = em.node("ScatterElements", [data, idx, filled(identity)], axis=axis)
    if reduce != "mean":
        em.node("ScatterElements", [data, idx, updates], out, axis=axis, reduction=_SCATTER[reduce])
        return
    # mean: the sum divided by how many values met at each position (a's own value counts with include_self)
    total = em.node("ScatterElements", [data, idx, updates], axis=axis, reduction="add")
    ones = em.node("Expand", [_scalar(em, node, 1.0), em.node("Shape", [em.name(a)])])
    base = ones if include_self else em.node("Sub", [ones, ones])
    count = em.node("ScatterElements", [base, idx, filled(1.0)], axis=axis, reduction="add")
    touched = em.node("Greater", [count, _scalar(em, node, 0.0)])
    safe = em.node("Max", [count, _scalar(em, node, 1.0)])
    em.node("Where", [touched, em.node("Div", [total, safe]), em.name(a)], out)


# -- attention and col2im -------------------------------------------------------------------------------------------
def _attention_dropout(node: Node) -> None:
    if node.kwargs.get("keep") is not None:
        raise fail(node, "attention dropout is active (dropout_p > 0): pass dropout_p=0.0 at inference (e.g. "
                         "dropout_p=self.p if self.training else 0.0); a random mask cannot be exported")


@converter("ScaledDotProductAttention", "Transpose, MatMul, Mul (scale), Add (the mask, a constant), Softmax, "
                                        "MatMul (+ Mul by a row mask where a query has every key masked)")
def _attention(em: Emitter, node: Node, out: str) -> None:
    q, k, v = node.args[:3]
    bias = node.args[3] if len(node.args) > 3 else node.kwargs.get("bias")
    _attention_dropout(node)
    scale = float(node.kwargs.get("scale", 1.0))
    rank = len(k.shape)
    kt = em.node("Transpose", [em.name(k)], perm=list(range(rank - 2)) + [rank - 1, rank - 2])
    scores = em.node("Mul", [em.node("MatMul", [em.name(q), kt]), _scalar(em, node, scale)])
    rows = None  # the eager op gives a query whose keys are all masked out weights 0, where Softmax gives NaN
    if isinstance(bias, Value) and bias.kind == "const" and bias.array is not None and bias.array.ndim:
        dead = np.isneginf(bias.array).all(axis=-1, keepdims=True)
        if dead.any():  # such rows get bias 0 (a finite softmax) and are zeroed after it: no NaN on the way
            scores = em.node("Add", [scores, em.const(np.where(dead, 0, bias.array).astype(node.output.dtype),
                                                      "attn_bias")])
            rows = em.const((~dead).astype(node.output.dtype), "attn_rows")
        else:
            scores = em.node("Add", [scores, em.name(bias)])
    elif bias is not None:
        scores = em.node("Add", [scores, operand(em, node, bias)])
    weights = em.node("Softmax", [scores], axis=-1)
    if rows is not None:
        weights = em.node("Mul", [weights, rows])
    elif isinstance(bias, Value) and bias.kind != "const":  # a mask computed in the graph: guard at run time
        weights = em.node("Where", [em.node("IsNaN", [weights]), _scalar(em, node, 0.0), weights])
    em.node("MatMul", [weights, em.name(v)], out)


@converter("LayerNorm", "LayerNormalization (opset 17+); ReduceMean, Sub, Mul, Add, Sqrt, Div before")
def _layer_norm(em: Emitter, node: Node, out: str) -> None:
    x, weight, bias = (list(node.args) + [None, None])[:3]
    dims = node.args[3] if len(node.args) > 3 else node.kwargs.get("dims", 1)
    eps = float(node.args[4] if len(node.args) > 4 else node.kwargs.get("eps", 1e-5))
    dtype = node.output.dtype
    if em.opset >= 17:
        scale = em.name(weight) if weight is not None else em.const(np.ones(x.shape[-dims:], dtype), "ln_scale")
        em.node("LayerNormalization", [em.name(x), scale] + ([em.name(bias)] if bias is not None else []), out,
                axis=-dims, epsilon=eps)
        return
    axes = list(range(-dims, 0))
    centered = em.node("Sub", [em.name(x), em.node("ReduceMean", [em.name(x)], axes=axes, keepdims=1)])
    variance = em.node("ReduceMean", [em.node("Mul", [centered, centered])], axes=axes, keepdims=1)
    std = em.node("Sqrt", [em.node("Add", [variance, em.const(np.asarray(eps, dtype), "ln_eps")])])
    result = em.node("Div", [centered, std])
    if weight is not None:
        result = em.node("Mul", [result, em.name(weight)])
    if bias is not None:
        result = em.node("Add", [result, em.name(bias)])
    em.finish(result, out)


# Checks run before two traces are compared, for arguments that legitimately differ between them but cannot be
# exported (a random dropout mask): the user gets the reason, not "the trace depends on the data".
PRECHECKS: dict[str, Callable[[Node], None]] = {"ScaledDotProductAttention": _attention_dropout}


@converter("Fold", "Col2Im (opset 18+)")
def _fold(em: Emitter, node: Node, out: str) -> None:
    cols = node.args[0]
    output_size, kernel, stride, padding, dilation = node.args[1:6]
    if em.opset < 18:
        raise fail(node, f"fold maps to ONNX Col2Im, which needs opset 18 (the export asked for {em.opset})")
    em.node("Col2Im", [em.name(cols), em.ints(list(output_size), "image_shape"), em.ints(list(kernel), "block_shape")],
            out, dilations=list(dilation), pads=[padding[0], padding[1], padding[0], padding[1]],
            strides=list(stride))


def mapping_table() -> str:
    """The op-mapping table of docs/export.md, generated from :data:`CONVERTERS` and ``ops.PRIMITIVES``."""
    from .. import ops  # noqa: PLC0415

    names = [op.__name__ for op in ops.PRIMITIVES] + ["Conv2d", "MaxPool2d"]
    lines = ["| tinygrad_nb op | ONNX |", "|---|---|"]
    for name in names:
        entry = CONVERTERS.get(name)
        lines.append(f"| {name} | {entry[1] if entry else 'not exported (raises ExportError)'} |")
    return "\n".join(lines)
