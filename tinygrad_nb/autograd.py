"""Autograd: the ``Function`` base class, graph recording, the iterative backward pass, ``no_grad``, ``gradcheck``.

Every op is a ``Function`` with two static methods working on raw arrays of the device's array module::

    class Mul(Function):                 # (simplified: the real one saves only what needed gradients read)
        @staticmethod
        def forward(ctx, a, b):          # arrays in, array out; ctx.xp is numpy or cupy
            ctx.save_for_backward(a, b)
            return a * b
        @staticmethod
        def backward(ctx, grad):         # d(loss)/d(out) in, one gradient per forward argument out
            a, b = ctx.saved_tensors
            return grad * b, grad * a

``Mul.apply(x, y)`` unwraps the tensors, runs ``forward`` eagerly, wraps the result and, when some input requires a
gradient and grad mode is on, records a graph node (a :class:`Context`). User-defined ops use exactly the same
mechanism. ``Tensor.backward`` runs the recorded nodes latest-recorded first (a heap keyed by each node's sequence
number), with no recursion, so graphs of any depth work.
"""
from __future__ import annotations

import functools
import heapq
import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from . import dispatch
from .dispatch import OpEvent

if TYPE_CHECKING:
    from .tensor import Tensor

_Tensor: Any = None  # tensor.py installs the Tensor class here (the two modules need each other)
_grad_enabled = True
_new_object = object.__new__  # apply builds nodes and results without calling their constructors
_ndarray = np.ndarray
_FREED = object()  # marks a node whose saved arrays were released by a backward without retain_graph
# One clock orders graph nodes and in-place writes: each node (``ctx.seq``) and each write (``_version[1]``) takes
# the next tick. An op's inputs exist before it runs, so a node's number is larger than the numbers of all the nodes
# its inputs came from: running nodes largest number first is a valid backward order without sorting the graph
# first (PyTorch's engine uses the same sequence numbers). And a write happened after a node was recorded exactly
# when its tick is larger than the node's.
_next_seq: Callable[[], int] = itertools.count(1).__next__
_last_write = 0  # tick of the latest in-place write to any tensor: no node recorded after it can be affected
# The dispatch tables, bound once: they are mutated in place, never rebound, and this saves two attribute lookups on
# every op call.
_overrides = dispatch.overrides
_observers = dispatch.observers
_autocast = dispatch.autocast_hooks

# PyTorch returns inf and NaN silently; numpy warns (overflow, divide by zero, invalid value). Ops run with numpy's
# floating-point errors ignored, as under ``np.errstate(all="ignore")``: ``quiet = _silence_numpy(_QUIET)``, then
# ``_restore_numpy(quiet)``. In numpy 2 that state is a ContextVar, and setting it directly costs a tenth of entering
# ``np.errstate``, which matters once per op. (numpy 1.x: ``np.seterr``, slower but the same effect.)
try:
    from numpy._core._multiarray_umath import _make_extobj
    from numpy._core._ufunc_config import _extobj_contextvar

    _QUIET: Any = _make_extobj(all="ignore")
    _silence_numpy: Callable[[Any], Any] = _extobj_contextvar.set
    _restore_numpy: Callable[[Any], Any] = _extobj_contextvar.reset
except ImportError:  # pragma: no cover - numpy 1.x
    _QUIET = "ignore"

    def _silence_numpy(mode: Any) -> Any:
        return np.seterr(all=mode)

    def _restore_numpy(previous: Any) -> None:
        np.seterr(**previous)


class ArgumentError(ValueError, RuntimeError):
    """An argument an op cannot take (a wrong number of dims, no clamp bound, an integer to a negative power...).

    PyTorch raises RuntimeError for these, so ``except RuntimeError`` code written for PyTorch catches it; it is a
    ValueError too, for code written against numpy's conventions (and this library's earlier releases)."""


class OutOfRangeError(IndexError, ValueError):
    """An index beyond what it indexes (a class index >= the number of classes): PyTorch's IndexError, and a
    ValueError as this library raised before."""


class ShapeError(ArgumentError):
    """Operands whose shapes do not fit an op; the message names the op and the shapes (a RuntimeError and a
    ValueError, see :class:`ArgumentError`)."""


class Context:
    """A graph node: what ``forward`` saved, the inputs it came from, and which of them need gradients.

    ``forward`` may also store any plain value on it (``ctx.dim = dim``).
    """

    __slots__ = ("fn", "parents", "needs_input_grad", "saved", "seq", "device", "xp", "__dict__")

    parents: tuple[Any, ...]
    needs_input_grad: tuple[bool, ...]  # PyTorch's name and type: one flag per forward argument
    seq: int  # tick of the clock when recorded (see _next_seq): backward runs nodes largest first

    def __init__(self, fn: type[Function], device: Any):
        self.fn = fn
        self.device = device
        self.xp = device.xp
        self.saved: Any = ()
        self.seq = _next_seq()  # see note_inplace_write
        # needs_input_grad is set by Function.apply before forward, parents when it records the node

    def save_for_backward(self, *arrays: Any) -> None:
        """Keep arrays for ``backward``; modifying their tensors in place afterwards is detected at backward time."""
        self.saved = arrays

    @property
    def saved_tensors(self) -> tuple[Any, ...]:
        if self.saved is _FREED:
            raise RuntimeError(_SECOND_BACKWARD.format(op=self.fn.__name__))
        return self.saved


_SECOND_BACKWARD = ("{op}: trying to backward through the graph a second time (its saved values were freed by the "
                    "first backward). Call backward(retain_graph=True) the first time if you need to go twice.")


class Function:
    """Base class of every differentiable op, built-in or user-defined. See the module docstring."""

    returns_view: ClassVar[bool] = False  # output may share memory with input 0: they share a version counter
    differentiable: ClassVar[bool] = True
    # Inputs broadcast against each other (the binary elementwise ops): backward returns gradients in the output's
    # shape and the engine sums each back to its input's shape (``unbroadcast``). Without it, a gradient whose shape
    # differs from its input's is an error in the op's backward.
    broadcasts: ClassVar[bool] = False

    @staticmethod
    def forward(ctx: Context, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Tensor:
        """Run ``forward`` on the arguments' arrays now; record a graph node when a gradient will be needed.

        This half unwraps the arguments (tensors to arrays, one device for all, which need gradients) in one pass;
        :func:`run_op` does the rest."""
        if _autocast:  # inside tg.autocast: cast the arguments by the policy table (tinygrad_nb.amp)
            args = _autocast[0](cls, args)
        Tensor = _Tensor
        device = None
        arrays = []
        needs = []  # per argument: does it require grad?
        for a in args:
            if isinstance(a, Tensor):
                if a.device is not device:
                    if device is not None:
                        raise _device_mismatch(cls, args)
                    device = a.device
                needs.append(a.requires_grad)
                arrays.append(a.data)
            else:
                needs.append(False)
                arrays.append(a)
        if device is None:
            raise TypeError(f"{cls.__name__}: expected at least one Tensor argument")
        return run_op(cls, args, arrays, tuple(needs), device, kwargs)


def run_op(cls: type[Function], args: tuple[Any, ...], arrays: Sequence[Any], needs: tuple[bool, ...],
           device: Any, kwargs: dict[str, Any] | None) -> Tensor:
    """The second half of :meth:`Function.apply`, once the arguments are unwrapped: pick the implementation (a
    device override or the op itself), tell the observers, run ``forward`` with numpy's warnings off, wrap the
    result and record the graph node. ``Tensor``'s arithmetic operators call it directly for two tensors of one
    dtype on one device (the common case), skipping apply's loop over the arguments.

    This is every op's hot path, so it is written for speed: the node and the result are built without calling
    constructors (``Context.__init__`` and ``Tensor._wrap`` inlined), and each seam that is off (overrides,
    observers) costs one truthiness check."""
    impl = _overrides.get((cls, device.type), cls) if _overrides else cls
    ctx = _new_object(Context)  # Context(impl, device), inlined
    ctx.fn = impl
    ctx.device = device
    ctx.xp = device.xp
    ctx.saved = ()
    ctx.needs_input_grad = needs  # already here, so forward can save only what the needed gradients read
    event = None
    if _observers:
        event = OpEvent("forward", cls.__name__, device, args, ctx=ctx, kwargs=kwargs or {})
        for obs in _observers:
            obs.op_begin(event)
    quiet = _silence_numpy(_QUIET)  # inf and NaN come out silently, as in PyTorch (see above)
    try:
        out = impl.forward(ctx, *arrays, **kwargs) if kwargs else impl.forward(ctx, *arrays)
    except (ValueError, IndexError, TypeError) as e:
        raise _explain(cls, args, e) from e
    finally:
        _restore_numpy(quiet)
    result = _new_object(_Tensor)  # Tensor._wrap(out, device), inlined
    if type(out) is not _ndarray and ctx.xp is np:
        out = np.asarray(out)  # numpy reductions return scalars; tensors always hold arrays
    result.data = out
    result.device = ctx.device  # the input's device; ToDevice's forward sets its target
    result.grad = None
    result._counter = args[0]._version if cls.returns_view else None  # a view shares its input's counter
    result._hooks = None
    result._retains_grad = False
    if _grad_enabled and True in needs and cls.differentiable:
        ctx.parents = args
        ctx.seq = _next_seq()  # only a recorded node needs its tick: untracked ops skip the clock
        result.requires_grad = True
        result._ctx = ctx
    else:
        result.requires_grad = False
        result._ctx = None
    if event is not None:
        event.output = result
        for obs in _observers:
            obs.op_end(event)
    return result


def _device_mismatch(cls: type, args: Sequence[Any]) -> Exception:
    from .device import DeviceError  # noqa: PLC0415

    where = ", ".join(f"argument {i} ({'x'.join(map(str, a.shape)) or 'scalar'}) on {a.device}"
                      for i, a in enumerate(args) if isinstance(a, _Tensor))
    return DeviceError(f"{cls.__name__.lower()}: expected all tensors on one device, got {where}. "
                       f"Move them with .to(device) first.")


def _explain(cls: type, args: Sequence[Any], error: Exception) -> Exception:
    """Turn an array-library error into one that names the op and the input shapes."""
    if isinstance(error, ShapeError):
        return error
    shapes = " and ".join(str(tuple(a.shape)) for a in args if isinstance(a, _Tensor))
    message = str(error)
    if "broadcast" in message:
        return ShapeError(f"{cls.__name__.lower()}: shapes {shapes} cannot be broadcast together "
                          "(each dimension, aligned from the right, must match or be 1)")
    kind = ArgumentError if type(error) is ValueError else type(error)  # PyTorch: RuntimeError; see ArgumentError
    return kind(f"{cls.__name__.lower()} on shapes {shapes}: {message}")


# -- grad mode ----------------------------------------------------------------------------------------------
class _GradMode:
    """Context manager and decorator that sets grad mode for a block (``no_grad``, ``enable_grad``)."""

    enabled: bool

    def __enter__(self) -> None:
        global _grad_enabled
        self._previous = _grad_enabled
        _grad_enabled = self.enabled

    def __exit__(self, *exc: object) -> None:
        global _grad_enabled
        _grad_enabled = self._previous

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        enabled = self.enabled

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with set_grad_enabled(enabled):
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):  # noqa: N801 - PyTorch name
    """Inside this block (or decorated function) ops record no graph: for evaluation and parameter updates."""

    enabled = False


class enable_grad(_GradMode):  # noqa: N801 - PyTorch name
    """Turn graph recording back on inside a ``no_grad`` block."""

    enabled = True


class set_grad_enabled(_GradMode):  # noqa: N801 - PyTorch name
    """Set grad mode now (a plain call) or for a block (``with set_grad_enabled(False):``), like PyTorch."""

    def __init__(self, mode: bool):
        global _grad_enabled
        self.enabled = bool(mode)
        self._previous = _grad_enabled
        _grad_enabled = self.enabled

    def __enter__(self) -> None:
        pass  # the mode was already set by __init__; __exit__ restores the one before it


def is_grad_enabled() -> bool:
    """True when ops record a graph (not inside ``no_grad``)."""
    return _grad_enabled


# -- backward -----------------------------------------------------------------------------------------------
def run_backward(roots: Sequence[Tensor], root_grads: Sequence[Any], retain_graph: bool = False,
                 capture: Sequence[Tensor] | None = None) -> dict[int, Any]:
    """The backward engine. Accumulates into leaves' ``.grad`` unless ``capture`` is given, in which case the
    gradients of those tensors are returned by ``id`` and no ``.grad`` is touched (``autograd.grad``).

    The whole pass runs with numpy's floating-point warnings off, as every forward does (hooks included)."""
    quiet = _silence_numpy(_QUIET)
    try:
        return _backward(roots, root_grads, retain_graph, capture)
    finally:
        _restore_numpy(quiet)


def _backward(roots: Sequence[Tensor], root_grads: Sequence[Any], retain_graph: bool,
              capture: Sequence[Tensor] | None) -> dict[int, Any]:
    """Run the graph's nodes in one pass, each once its gradient is complete.

    A tensor is scheduled when it first receives a gradient: a tensor made by an op goes on a heap keyed by its
    node's sequence number (largest first), a leaf onto a list handled after every node. A node's consumers were
    all recorded after it, so they have larger numbers and have all run, and given their share, by the time the
    heap hands it out. No separate pass sorts the graph, and nothing recurses: a 100,000-op chain is fine."""
    grads: dict[Tensor, Any] = {}  # pending gradient of each tensor (tensors hash by identity)
    # heap of (-node.seq, id(tensor), tensor): the id breaks a tie (two tensors holding one node) so tensors, whose
    # comparison is an elementwise op, are never compared
    ready: list[tuple[int, int, Tensor]] = []
    leaves: list[Tensor] = []  # tensors without a node, in the order they were reached
    push, pop = heapq.heappush, heapq.heappop
    for r, g in zip(roots, root_grads):
        if r in grads:
            grads[r] = grads[r] + g
            continue
        grads[r] = g
        if r._ctx is None:
            leaves.append(r)
        else:
            push(ready, (-r._ctx.seq, id(r), r))
    captured: dict[int, Any] = {}
    capture_ids = {id(t) for t in capture} if capture is not None else None
    stored: set[int] = set()  # arrays (by base) already handed to some .grad: a second owner gets a copy
    pop_grad = grads.pop
    while ready:
        t = pop(ready)[2]
        g = pop_grad(t)
        if t._hooks:
            g = _run_hooks(t, g)
        if capture_ids is not None:
            if id(t) in capture_ids:
                captured[id(t)] = g
        elif t._retains_grad:
            _accumulate(t, g, stored)
        ctx = t._ctx
        saved = ctx.saved
        if saved is _FREED:
            raise RuntimeError(_SECOND_BACKWARD.format(op=ctx.fn.__name__))
        unchanged = ctx.seq > _last_write  # nothing was written in place since forward (the rule)
        if saved and not unchanged:
            _check_versions(t, ctx)
        event = None
        if _observers:
            event = OpEvent("backward", ctx.fn.__name__, ctx.device, (g,), ctx=ctx)
            for obs in _observers:
                obs.op_begin(event)
        in_grads = ctx.fn.backward(ctx, g)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        parents = ctx.parents
        if len(in_grads) != len(parents):
            raise RuntimeError(f"{ctx.fn.__name__}.backward returned {len(in_grads)} gradient(s) but forward took "
                               f"{len(parents)} input(s); return one per input (None for non-tensors)")
        if event is not None:
            event.output = in_grads
            for obs in _observers:
                obs.op_end(event)
        if not unchanged:
            parents = _inputs_as_recorded(ctx)
        for parent, pg, need in zip(parents, in_grads, ctx.needs_input_grad):
            if need and pg is not None:
                data = parent.data
                if pg.shape != data.shape or (pg.dtype is not data.dtype and pg.dtype != data.dtype):
                    pg = _fit_gradient(ctx, parent, pg)
                earlier = grads.get(parent)
                if earlier is not None:
                    grads[parent] = earlier + pg
                    continue
                grads[parent] = pg  # its first gradient: schedule it
                parent_ctx = parent._ctx
                if parent_ctx is None:
                    leaves.append(parent)
                else:
                    push(ready, (-parent_ctx.seq, id(parent), parent))
        if not retain_graph:
            ctx.saved = _FREED
    for t in leaves:  # the first steps of the loop above, for tensors without a node (kept inline there: the hot path)
        g = pop_grad(t)
        if t._hooks:
            g = _run_hooks(t, g)
        if capture_ids is not None:
            if id(t) in capture_ids:
                captured[id(t)] = g
        else:
            _accumulate(t, g, stored)
    return captured


def _run_hooks(t: Tensor, g: Any) -> Any:
    """``t``'s gradient hooks, in registration order; a hook's non-None return value replaces the gradient."""
    Tensor = _Tensor
    for hook in list(t._hooks.values()):
        replaced = hook(Tensor._wrap(g, t.device))
        if replaced is not None:
            g = replaced.data if isinstance(replaced, Tensor) else replaced
    return g


def _fit_gradient(ctx: Context, parent: Tensor, pg: Any) -> Any:
    """A gradient must match its input's shape and dtype (cast silently). For an op with ``broadcasts`` a gradient
    in the broadcast shape is summed back here, the one place broadcasting is undone; for any other op a shape
    mismatch means its backward is wrong."""
    shape = parent.data.shape
    if pg.shape != shape:
        if not (ctx.fn.broadcasts and _broadcasts_to(shape, pg.shape)):
            index = next(i for i, p in enumerate(ctx.parents) if p is parent)
            raise RuntimeError(f"{ctx.fn.__name__}.backward returned a gradient of shape {tuple(pg.shape)} for "
                               f"input {index}, which has shape {tuple(shape)}")
        pg = unbroadcast(pg, shape)
    return pg if pg.dtype == parent.data.dtype else pg.astype(parent.data.dtype)


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Does ``shape`` broadcast to ``target`` (numpy's rule: align from the right, each dimension equal or 1)?"""
    extra = len(target) - len(shape)
    return extra >= 0 and all(n == m or n == 1 for n, m in zip(shape, target[extra:]))


def unbroadcast(grad: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``grad`` over the axes that broadcasting expanded, so it has ``shape`` again.

    If ``x`` of shape ``shape`` was broadcast to ``grad.shape``, then d(loss)/dx is d(loss)/d(broadcast x) summed over
    the new leading axes and over every axis where ``x`` had size 1.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    return grad.sum(axis=axes).reshape(shape) if axes else grad.reshape(shape)


def _accumulate(t: Tensor, g: Any, stored: set[int]) -> None:
    owner = id(g.base) if g.base is not None else id(g)
    if owner in stored:
        g = g.copy()
    else:
        stored.add(owner)
    if t.grad is None:
        t.grad = _Tensor._wrap(g, t.device)
    else:
        t.grad.data = t.grad.data + g  # out of place: an earlier .grad array may be shared with the user


def note_inplace_write(t: Tensor) -> int:
    """Record an in-place write to ``t`` (``Tensor._bump_version`` calls it): returns the write's tick of the clock.

    A node remembers its own tick (``ctx.seq``); while it is later than the latest write's, nothing it saved can
    have been modified, so backward skips :func:`_check_versions` with one comparison. If the op that
    produced ``t`` saved ``t``'s own array (exp, sigmoid), that node is marked here: after an in-place op ``t`` is
    the new op's output, and the old node is reached through a copy, so the check could not find it later.
    """
    global _last_write
    _last_write = _next_seq()
    ctx = t._ctx
    if ctx is not None and ctx.saved and ctx.saved is not _FREED and any(s is t.data for s in ctx.saved):
        ctx.output_overwritten = t._version[0]
    return _last_write


def _inputs_as_recorded(ctx: Context) -> tuple[Any, ...]:
    """``ctx.parents``, except that a tensor written in place since ``ctx`` was recorded is replaced by its value
    back then: the copy, with the history it had, that ``Tensor._inplace`` kept (``_earlier``). Without this, the
    gradient of an op recorded before ``y.mul_(3)`` would flow through the multiply it never saw."""
    return tuple(_as_of(p, ctx.seq) for p in ctx.parents)


def _as_of(p: Any, seq: int) -> Any:
    for stamp, earlier in getattr(p, "_earlier", ()):  # oldest first; non-tensors have none
        if stamp > seq:  # the first write after the node was recorded: the value before it is the one it saw
            value = earlier()
            return value if value is not None else p
    return p


def _check_versions(t: Tensor, ctx: Context) -> None:
    """PyTorch's saved-tensor check: no input or output whose array ``forward`` saved may have been modified in place
    since. A tensor's version counter is ``[writes, tick of its last write]`` (see ``note_inplace_write``)."""
    for tensor in (*ctx.parents, t):
        if isinstance(tensor, _Tensor) and tensor._version[1] > ctx.seq \
                and any(s is tensor.data for s in ctx.saved):
            _refuse(ctx, tensor.shape, tensor._version[0])
    overwritten = getattr(ctx, "output_overwritten", None)
    if overwritten is not None:
        _refuse(ctx, t.shape, overwritten)


def _refuse(ctx: Context, shape: tuple[int, ...], version: int) -> None:
    raise RuntimeError(
        f"{ctx.fn.__name__}: a tensor of shape {tuple(shape)} that this op saved for backward was modified by an "
        f"in-place operation after the op ran (it is now at version {version}). Use the out-of-place form "
        f"(x = x + 1 instead of x += 1) or .clone() it before modifying.")


def grad(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor],
         grad_outputs: Any | Sequence[Any] | None = None, retain_graph: bool = False,
         create_graph: bool = False, allow_unused: bool = False) -> tuple[Tensor | None, ...]:
    """Gradients of ``outputs`` with respect to ``inputs``, returned instead of accumulated into ``.grad``."""
    if create_graph:
        raise NotImplementedError("autograd.grad(create_graph=True): higher-order gradients are not supported; "
                                  "backward functions work on raw arrays")
    Tensor = _Tensor
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    root_grads = [_root_grad(o, g) for o, g in zip(outputs, grad_outputs)]
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            raise RuntimeError(f"autograd.grad: input {i} (shape {tuple(t.shape)}) does not require grad")
    captured = run_backward(outputs, root_grads, retain_graph=retain_graph, capture=inputs)
    result: list[Tensor | None] = []
    for i, t in enumerate(inputs):
        if id(t) not in captured:
            if not allow_unused:
                raise RuntimeError(f"autograd.grad: input {i} (shape {tuple(t.shape)}) was not used to compute the "
                                   "outputs; pass allow_unused=True to get None for it")
            result.append(None)
        else:
            result.append(Tensor._wrap(captured[id(t)], t.device))
    return tuple(result)


def _root_grad(output: Tensor, grad: Any) -> Any:
    if not output.requires_grad:
        raise RuntimeError(f"backward: tensor of shape {tuple(output.shape)} does not require grad and has no "
                           "grad_fn (did you compute it under no_grad, or forget requires_grad=True?)")
    if grad is None:
        if output.data.size != 1:
            raise RuntimeError(f"backward: grad can be implicitly created only for scalar outputs, but the output "
                               f"has shape {tuple(output.shape)}; pass grad= (a tensor of that shape)")
        return output.device.xp.ones_like(output.data)
    g = grad.data if isinstance(grad, _Tensor) else output.device.xp.asarray(grad, dtype=output.data.dtype)
    if g.shape != output.data.shape:
        raise RuntimeError(f"backward: grad has shape {tuple(g.shape)} but the output has shape "
                           f"{tuple(output.shape)}")
    return g


# -- gradcheck ----------------------------------------------------------------------------------------------
class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree."""


def gradcheck(fn: Callable[..., Tensor], inputs: Sequence[Any], eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, seed: int = 0) -> bool:
    """Check ``fn``'s backward against central finite differences in float64.

    Each floating input tensor is copied to float64 with ``requires_grad``. With a fixed random weighting ``v`` of the
    output, the analytic vector-Jacobian product ``d(sum(v * fn(x)))/dx`` from ``backward`` is compared element by
    element with ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)``. Returns True, or raises :class:`GradcheckError`
    naming the input, the element and both values.
    """
    Tensor = _Tensor
    from .dtype import is_floating  # noqa: PLC0415

    xs = [Tensor(np.array(_to_numpy(a.data), dtype=np.float64), device=a.device, requires_grad=True)
          if isinstance(a, Tensor) and is_floating(a.dtype) else a for a in inputs]
    out = fn(*xs)
    rng = np.random.default_rng(seed)
    weights_np = rng.standard_normal(out.shape)
    weights = Tensor(weights_np, device=out.device)

    def scalar(*args: Any) -> float:
        with no_grad():
            return float(_to_numpy((fn(*args) * weights).sum().data))

    for x in xs:
        if isinstance(x, Tensor):
            x.grad = None
    (out * weights).sum().backward()
    for i, x in enumerate(xs):
        if not (isinstance(x, Tensor) and x.requires_grad):
            continue
        analytic = np.zeros(x.shape) if x.grad is None else _to_numpy(x.grad.data)
        base = _to_numpy(x.data).copy()
        flat = base.reshape(-1)
        for j in range(flat.size):
            original = flat[j]
            flat[j] = original + eps
            x.data = x.device.xp.asarray(base)
            plus = scalar(*xs)
            flat[j] = original - eps
            x.data = x.device.xp.asarray(base)
            minus = scalar(*xs)
            flat[j] = original
            numeric = (plus - minus) / (2 * eps)
            a = analytic.reshape(-1)[j]
            if not abs(a - numeric) <= atol + rtol * abs(numeric):
                index = np.unravel_index(j, x.shape) if x.shape else ()
                raise GradcheckError(f"gradcheck: input {i} (shape {tuple(x.shape)}) element {tuple(map(int, index))}:"
                                     f" analytic {a:.8g} vs numerical {numeric:.8g} (atol={atol}, rtol={rtol})")
        x.data = x.device.xp.asarray(base)
    return True


def _to_numpy(array: Any) -> np.ndarray:
    return array.get() if hasattr(array, "get") and not isinstance(array, np.ndarray) else np.asarray(array)
