"""Tracing: run the eager forward once under a dispatch observer and record every op into a small graph.

Nothing here parses Python source. The model runs as usual (under ``no_grad``); the observer sees each op's name,
arguments and result (see :mod:`tinygrad_nb.dispatch`), forward hooks on every submodule keep the module path
(``model.layers[3]``), and the NaN tracer's provenance gives the user's line or notebook cell.

* Graph inputs are the example tensors; parameters and buffers are constants named by their state-dict key.
* An op whose arguments are all constants runs eagerly and its result becomes a constant (constant folding), so
  ``weight.reshape(...)`` or batch norm's ``sqrt(running_var + eps)`` end up as initializers, not nodes.
* ``nn.Conv2d`` and ``nn.MaxPool2d`` are leaf modules: recorded as one node each (standard ONNX Conv/MaxPool)
  instead of the im2col ops they run eagerly.
* :func:`reconcile` compares two traces made with different batch sizes and values: a different op sequence, a
  different Python-level argument or a different constant means the trace depends on the data, which tracing
  would silently freeze; it is reported. Dimensions that change with the batch size become dynamic.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import dispatch
from ..autograd import no_grad
from ..debug.provenance import Location, user_location
from ..tensor import Tensor
from .errors import ExportError

# Modules recorded as a single node (their eager forward is im2col, which has no compact ONNX form).
LEAF_MODULES = ("Conv2d", "MaxPool2d")
# Ops whose Python-level arguments may legitimately change with the batch size (their target shape).
SHAPE_ARGUMENTS = {"Reshape": 1, "Expand": 1}
_MOVES = ("Reshape", "Permute", "Expand", "Cast", "GetItem")


@dataclass(eq=False)
class Value:
    """One tensor of the trace: a graph input, the output of a recorded op, or a constant."""

    kind: str  # "input" | "op" | "const"
    shape: tuple[int, ...]
    dtype: np.dtype
    array: np.ndarray | None = None  # constants only
    name: str = ""  # inputs: the input name; constants: the parameter or buffer name when it is one
    dynamic: tuple[int, ...] = ()  # axes whose size follows the batch size (set by reconcile)


@dataclass(eq=False)
class Node:
    """One recorded op: the primitive's name (or a leaf module's class name), its arguments (``Value`` for tensors,
    plain Python values otherwise, nested in tuples as given), keyword arguments, and where it ran."""

    op: str
    args: list[Any]
    kwargs: dict[str, Any]
    output: Value
    module: str
    location: Location | None


@dataclass
class Trace:
    """What one run of the forward did."""

    inputs: list[Value] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)
    eager_outputs: list[np.ndarray] = field(default_factory=list)


def module_path(name: str) -> str:
    """``layers.3.conv`` -> ``model.layers[3].conv`` (the root module is ``model``)."""
    text = "model"
    for part in name.split(".") if name else []:
        text += f"[{part}]" if part.isdigit() else f".{part}"
    return text


class _Tracer:
    """The dispatch observer plus the module hooks of one trace."""

    def __init__(self, model: Any):
        self.trace = Trace()
        self.by_tensor: dict[int, tuple[Value, Tensor, int]] = {}  # id(tensor) -> value, tensor, version
        self.by_array: dict[int, tuple[Value, Any]] = {}  # id(array) -> value, array (kept alive: ids stay unique)
        self.names: dict[int, str] = {}
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            self.names[id(t)] = name
            self.names[id(t.data)] = name
        self.modules: list[str] = ["model"]
        self.leaf: list[Any] = []  # open leaf-module calls: ops inside are not recorded
        self.pending: list[tuple[dict[str, Any], Location | None, str]] = []

    # -- the observer ---------------------------------------------------------------------------------------------
    def op_begin(self, event: dispatch.OpEvent) -> None:
        if event.phase != "forward":
            return
        self.pending.append((dict(event.kwargs), user_location(sys._getframe(1)), self.modules[-1]))

    def op_end(self, event: dispatch.OpEvent) -> None:
        if event.phase != "forward":
            return
        kwargs, location, module = self.pending.pop()
        if self.leaf:
            return
        args = [self.argument(a, event.op, module, location) for a in event.inputs]
        self.record(event.op, args, kwargs, event.output, module, location)

    # -- values ---------------------------------------------------------------------------------------------------
    def argument(self, a: Any, op: str, module: str, location: Location | None) -> Any:
        """A Value for tensors and arrays (looked up, or a new constant), plain values as they are."""
        if isinstance(a, Tensor):
            known = self.by_tensor.get(id(a))
            if known is not None:
                value, tensor, version = known
                if tensor.version != version:
                    raise ExportError("a tensor was modified in place after it was computed (x[...] = v, add_, "
                                      "...); in-place writes are not traced, so the export would miss them. "
                                      "Write it out of place (torch-style: y = x + v)", op, module, location)
                return value
            known_array = self.by_array.get(id(a.data))
            if known_array is not None and known_array[1] is a.data:  # a detach()ed or re-wrapped traced tensor
                return known_array[0]
            return self.constant(a.data, self.names.get(id(a)) or self.names.get(id(a.data), ""))
        if isinstance(a, np.ndarray):
            known_array = self.by_array.get(id(a))
            if known_array is not None and known_array[1] is a:  # an index tensor's array (x[idx] unwraps idx)
                return known_array[0]
            return self.constant(a, self.names.get(id(a), ""))
        if isinstance(a, tuple):
            return tuple(self.argument(p, op, module, location) for p in a)
        if isinstance(a, list):
            return [self.argument(p, op, module, location) for p in a]
        return a

    def constant(self, array: Any, name: str = "") -> Value:
        copy = np.array(array, copy=True)
        value = Value("const", tuple(copy.shape), copy.dtype, array=copy, name=name)
        self.by_array[id(array)] = (value, array)
        return value

    def register(self, t: Tensor, value: Value) -> None:
        self.by_tensor[id(t)] = (value, t, t.version)
        self.by_array[id(t.data)] = (value, t.data)

    def record(self, op: str, args: list[Any], kwargs: dict[str, Any], output: Tensor, module: str,
               location: Location | None) -> Value:
        if not any(isinstance(v, Value) and v.kind != "const" for v in _values(args)):
            # a parameter only moved around (reshaped, transposed, cast, sliced) keeps its name
            name = args[0].name if op in _MOVES and args and isinstance(args[0], Value) else ""
            value = Value("const", tuple(output.shape), output.dtype, array=np.array(output.data, copy=True),
                          name=name)
        else:
            value = Value("op", tuple(output.shape), output.dtype)
            self.trace.nodes.append(Node(op, args, kwargs, value, module, location))
        self.register(output, value)
        return value

    # -- module hooks ---------------------------------------------------------------------------------------------
    def hooks(self, model: Any) -> list[Any]:
        handles = []
        for name, module in model.named_modules():
            path = module_path(name)
            handles.append(module.register_forward_pre_hook(self._pre(path, module)))
            handles.append(module.register_forward_hook(self._post(module)))
        return handles

    def _pre(self, path: str, module: Any) -> Any:
        def pre(mod: Any, args: tuple[Any, ...]) -> None:
            self.modules.append(path)
            if (type(mod).__name__ in LEAF_MODULES and not self.leaf and len(args) == 1
                    and isinstance(args[0], Tensor) and args[0].ndim == 4):
                self.leaf.append((mod, args[0], path))  # a leaf call: the ops inside are not recorded
            elif self.leaf:
                self.leaf.append(None)  # a module inside a leaf: popped again by its post hook
        return pre

    def _post(self, module: Any) -> Any:
        def post(mod: Any, args: tuple[Any, ...], output: Any) -> None:
            path = self.modules.pop()
            if not self.leaf:
                return
            call = self.leaf.pop()
            if call is None:
                return
            location = user_location(sys._getframe(1))
            x = self.argument(call[1], type(mod).__name__, path, location)
            if type(mod).__name__ == "Conv2d":
                weight = self.argument(mod.weight, "Conv2d", path, location)
                bias = self.argument(mod.bias, "Conv2d", path, location) if mod.bias is not None else None
                attrs = {"stride": mod.stride, "padding": mod.padding, "dilation": mod.dilation,
                         "groups": mod.groups, "kernel": tuple(mod.kernel_size)}
                self.record("Conv2d", [x, weight, bias], attrs, output, path, location)
            else:
                attrs = {"kernel": _pair(mod.kernel_size), "stride": _pair(mod.stride),
                         "padding": _pair(mod.padding), "dilation": _pair(mod.dilation)}
                self.record("MaxPool2d", [x], attrs, output, path, location)
        return post


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


def _values(args: Any) -> list[Value]:
    """Every Value inside (possibly nested) arguments."""
    found: list[Value] = []
    stack = [args]
    while stack:
        item = stack.pop()
        if isinstance(item, Value):
            found.append(item)
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
    return found


def run_trace(model: Any, arrays: list[np.ndarray], input_names: list[str]) -> Trace:
    """Run ``model`` once on ``arrays`` (under no_grad, the model as it is) and record what it did."""
    tracer = _Tracer(model)
    tensors = []
    for array, name in zip(arrays, input_names):
        t = Tensor(np.array(array, copy=True))
        value = Value("input", tuple(t.shape), t.dtype, name=name)
        tracer.register(t, value)
        tracer.trace.inputs.append(value)
        tensors.append(t)
    handles = tracer.hooks(model)
    try:
        with no_grad(), dispatch.add_observer(tracer):
            result = model(*tensors)
    finally:
        for handle in handles:
            handle.remove()
    outputs = result if isinstance(result, (tuple, list)) else (result,)
    for i, out in enumerate(outputs):
        if not isinstance(out, Tensor):
            raise ExportError(f"the model returned {type(out).__name__} as output {i}; only tensors (or a tuple "
                              f"of tensors) can be exported", module="model")
        tracer.trace.outputs.append(tracer.argument(out, "output", "model", None))
        tracer.trace.eager_outputs.append(np.array(out.data, copy=True))
    return tracer.trace


# -- comparing two traces ------------------------------------------------------------------------------------------
def reconcile(a: Trace, b: Trace) -> None:
    """Check that trace ``b`` (other batch size and values) did what trace ``a`` did; mark ``a``'s dynamic axes.

    Raises ExportError at the first op that differs. A constant made inside forward with a batch-sized shape but
    identical rows (``zeros(x.shape[0], hidden)``) becomes a size-1 constant that broadcasts.
    """
    from .mapping import PRECHECKS  # noqa: PLC0415 - mapping imports this module

    pairs: dict[int, Value] = {}
    for va, vb in zip(a.inputs, b.inputs):
        pairs[id(va)] = vb
        va.dynamic = _changed_axes(va.shape, vb.shape)
    for i, (na, nb) in enumerate(zip(a.nodes, b.nodes)):
        if na.op != nb.op or len(na.args) != len(nb.args):
            raise _diverged(na, nb)
        for position, (xa, xb) in enumerate(zip(na.args, nb.args)):
            if SHAPE_ARGUMENTS.get(na.op) == position:
                continue
            _same_argument(xa, xb, na, position, pairs)
        if na.op in PRECHECKS:
            PRECHECKS[na.op](na)  # an argument that cannot be exported at all: say why before comparing traces
        if {k: _plain(v) for k, v in na.kwargs.items()} != {k: _plain(v) for k, v in nb.kwargs.items()}:
            raise ExportError(f"{na.op} was called with {na.kwargs} in one trace and {nb.kwargs} in another: its "
                              "arguments depend on the input values or the batch size", na.op, na.module,
                              na.location)
        pairs[id(na.output)] = nb.output
        if len(na.output.shape) != len(nb.output.shape):
            raise _diverged(na, nb)
        na.output.dynamic = _changed_axes(na.output.shape, nb.output.shape)
    if len(a.nodes) != len(b.nodes):
        longer = a.nodes if len(a.nodes) > len(b.nodes) else b.nodes
        extra = longer[min(len(a.nodes), len(b.nodes))]
        raise ExportError(f"one trace ran {len(a.nodes)} ops and another {len(b.nodes)}: the forward takes a "
                          f"different path for different inputs (Python control flow on tensor values or on the "
                          f"batch size); the first extra op is {extra.op}", extra.op, extra.module, extra.location)
    for i, (va, vb) in enumerate(zip(a.outputs, b.outputs)):
        if va.kind == "const":
            continue
        if pairs.get(id(va)) is not vb:
            raise ExportError(f"output {i} comes from different ops in two traces: the forward depends on the data",
                              module="model")


def _changed_axes(sa: tuple[int, ...], sb: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(i for i, (x, y) in enumerate(zip(sa, sb)) if x != y)


def _plain(v: Any) -> Any:
    return repr(v)


def _diverged(na: Node, nb: Node) -> ExportError:
    from ..debug.provenance import format_location  # noqa: PLC0415

    return ExportError(f"the forward takes a different path for different inputs: one trace ran {na.op} here, "
                       f"another ran {nb.op} in {nb.module} at {format_location(nb.location)}. Python control flow "
                       f"on tensor values (if x.sum() > 0: ...) is frozen by tracing; use tg.where, or export with "
                       f"dynamic_batch=False if it is the batch size that matters", na.op, na.module, na.location)


def _same_argument(xa: Any, xb: Any, node: Node, position: int, pairs: dict[int, Value]) -> None:
    if isinstance(xa, Value) and isinstance(xb, Value):
        if xa.kind == "const" and xb.kind == "const":
            _same_constant(xa, xb, node, position)
        elif xa.kind == "const" or xb.kind == "const" or pairs.get(id(xa)) is not xb:
            raise ExportError(f"argument {position} of {node.op} comes from different places in two traces: the "
                              "forward depends on the data", node.op, node.module, node.location)
        return
    if isinstance(xa, (tuple, list)) and isinstance(xb, (tuple, list)) and len(xa) == len(xb):
        for pa, pb in zip(xa, xb):
            _same_argument(pa, pb, node, position, pairs)
        return
    if isinstance(xa, Value) or isinstance(xb, Value) or repr(xa) != repr(xb):
        raise ExportError(f"argument {position} of {node.op} is {xa!r} in one trace and {xb!r} in another: it "
                          "depends on the input values or the batch size (computed with .item(), .tolist(), "
                          "x.shape, ...), and tracing would freeze one of them", node.op, node.module, node.location)


def _same_constant(ca: Value, cb: Value, node: Node, position: int) -> None:
    a, b = ca.array, cb.array
    assert a is not None and b is not None
    if a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
        return
    axes = _changed_axes(a.shape, b.shape) if a.ndim == b.ndim else None
    if axes and a.dtype == b.dtype:
        row_a = a[tuple(slice(0, 1) if i in axes else slice(None) for i in range(a.ndim))]
        row_b = b[tuple(slice(0, 1) if i in axes else slice(None) for i in range(b.ndim))]
        if (np.array_equal(row_a, row_b) and (np.broadcast_to(row_a, a.shape) == a).all()
                and (np.broadcast_to(row_b, b.shape) == b).all()):
            ca.array = np.ascontiguousarray(row_a)  # the same for every sample: broadcast it
            ca.shape = tuple(row_a.shape)
            return
    raise ExportError(f"argument {position} of {node.op} is a tensor made inside forward (not from the inputs "
                      "through traced ops) whose values change with the input: it was computed outside the op "
                      "table (.numpy(), .item(), .tolist(), a new tensor from data), so tracing would freeze one "
                      "input's values", node.op, node.module, node.location)
