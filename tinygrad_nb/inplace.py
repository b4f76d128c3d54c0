"""In-place writes under autograd: the machinery behind ``x.add_(y)``, ``x[i] = v`` and the version counter.

A write changes a tensor's memory, and with it every tensor that views that memory. When no gradient is being
recorded, a write is just the op's result copied into the array plus a version bump. Under autograd it is more:

- the op is recorded on a *snapshot* of the old value, and the tensor *takes over* the op's history (it is the op's
  output now); ops recorded earlier still hold the tensor, so ``_earlier`` tells backward to send their gradients
  to the snapshot instead (:func:`take_history`);
- a tensor that is a view (a basic slice, reshape or permute of a base, as in ``y[:, 0] += 1``) changes its bases
  too, so each base's history is rewritten as PyTorch does: the base is its old value with the view's part
  replaced by the view's new value (:func:`viewed_bases`, :func:`view_inverse`, :class:`SetItem`).

Writes that go around ops (an optimizer updating ``p.data``, a checkpoint load swapping arrays) go through
:func:`written`, the one sanctioned way to tell the version counter (see docs/architecture.md).
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from . import autograd, ops
from .autograd import Context, Function, ShapeError
from .ops.movement import is_basic_index

if TYPE_CHECKING:
    from .tensor import Tensor


def tracking(*values: Any) -> bool:
    """Will an op on ``values`` be recorded: grad mode is on and one of them is a tensor that requires grad?"""
    return autograd.is_grad_enabled() and any(isinstance(v, autograd._Tensor) and v.requires_grad for v in values)


def write(self: Tensor, op: type[Function], *others: Any, **kwargs: Any) -> Tensor:
    """Run ``op(self, *others)`` and write the result into self's memory; bumps ``version``.

    Under autograd the op is recorded on a snapshot of self's old value, and self becomes the op's output. When
    self is a view of another tensor (a basic slice, reshape or permute of it, as in ``y[:, 0] += 1``), the
    write changes that tensor too, so its history is rewritten as PyTorch does: it becomes its old value with
    the view's part replaced by the view's new value (and so on up a chain of views).
    """
    bases: list[tuple[Context, Tensor, Tensor]] = []
    if tracking(self, *others):
        if self._ctx is None and self.requires_grad:
            raise RuntimeError(f"a leaf tensor of shape {self.shape} that requires grad is used in an in-place "
                               "operation; do parameter updates inside `with tinygrad_nb.no_grad():`")
        bases = viewed_bases(self, op)  # before the write: it snapshots each base's old value
        old = snapshot(self)
        result = op.apply(old, *others, **kwargs)
    else:
        with autograd.no_grad():
            result = op.apply(self, *others, **kwargs)
    if result.shape != self.shape:
        raise ShapeError(f"in-place {op.__name__.lower()}: the result has shape {result.shape} but the tensor "
                         f"has shape {self.shape}")
    if result.dtype != self.dtype and not self.device.xp.can_cast(result.dtype, self.dtype, "same_kind"):
        raise TypeError(f"in-place {op.__name__.lower()}: the result is {result.dtype.name}, which cannot be "
                        f"stored in this {self.dtype.name} tensor")
    self.data[...] = result.data
    self._bump_version()  # first: the op that made self may have saved self's array (see note_inplace_write)
    if result._ctx is not None:
        take_history(self, old, result)
        view = self  # holds the new value; a tensor takes a node over (never two sharing one), so pass it on
        for view_ctx, base, base_old in bases:
            if base._version is not view._version:  # a slice keeps its own counter; reshape shares its base's
                base._bump_version()
            index = view_ctx.index if view_ctx.fn is ops.GetItem else Ellipsis
            take_history(base, base_old, SetItem.apply(base_old, view_inverse(view_ctx, view, base.shape),
                                                       index=index))
            view = base
    return self


def snapshot(t: Tensor) -> Tensor:
    """A copy of t's current value that carries t's current history."""
    old = t._wrap(t.data.copy(), t.device)
    old.requires_grad, old._ctx = t.requires_grad, t._ctx
    return old


def take_history(t: Tensor, old: Tensor, new: Tensor) -> None:
    """After an in-place write, t is ``new`` (its value and history). Ops recorded before the write hold
    t, but their gradients belong to the old value: ``_earlier`` tells backward to send them to ``old``. A
    weak reference: ``old`` is an input of t's new history, so it lives exactly as long as that does."""
    earlier = [e for e in t.__dict__.get("_earlier", ()) if e[1]() is not None]
    t._earlier = [*earlier, (t._version[1], weakref.ref(old))]
    t._ctx, t.requires_grad = new._ctx, True


def check_plain_write(t: Tensor, name: str) -> None:
    """``fill_``, ``copy_``, ``uniform_``...: writes autograd cannot record, refused on a tensor that requires grad."""
    if t.requires_grad and autograd.is_grad_enabled():
        raise RuntimeError(f"{name}: this tensor (shape {t.shape}) requires grad; overwrite it inside "
                           "`with tinygrad_nb.no_grad():`")


class SetItem(Function):
    """out = a with a[index] = v;  da = g with the written positions zeroed,  dv = g[index] (summed if broadcast)."""

    @staticmethod
    def forward(ctx: Context, a: Any, v: Any, index: Any) -> Any:
        ctx.index, ctx.v_shape = index, v.shape
        out = a.copy()
        out[index] = v
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any]:
        need_a, need_v = ctx.needs_input_grad
        da = dv = None
        if need_a:
            da = g.copy()
            da[ctx.index] = 0
        if need_v:
            dv = ops.unbroadcast(g[ctx.index], ctx.v_shape)
        return da, dv


def viewed_bases(t: Tensor, op: type[Function]) -> list[tuple[Context, Tensor, Tensor]]:
    """For a write into ``t``: each tensor whose memory ``t`` views, up the chain of view ops that made ``t``, as
    (the view op's node, the base, a snapshot of the base's value now). Refuses views it cannot rewrite."""
    found = []
    view = t
    while view._ctx is not None:
        ctx = view._ctx
        base = ctx.parents[0]  # view ops view their first input (other inputs may share memory by accident: the
        # value a SetItem wrote can be a slice of the very array it wrote into)
        if not isinstance(base, autograd._Tensor) or not view.device.xp.may_share_memory(view.data, base.data):
            break
        if not (ctx.fn in (ops.Reshape, ops.Permute) or (ctx.fn is ops.GetItem and is_basic_index(ctx.index))):
            raise RuntimeError(
                f"in-place {op.__name__.lower()} on a tensor of shape {t.shape} that shares memory with an input of "
                f"{ctx.fn.__name__}, which cannot be rewritten under autograd (only slices, reshape and permute "
                "can). Write to that input instead, or .clone() first")
        if base._ctx is None and base.requires_grad:
            raise RuntimeError(f"in-place {op.__name__.lower()} on a view of a leaf tensor of shape {base.shape} that "
                               "requires grad; do parameter updates inside `with tinygrad_nb.no_grad():`")
        found.append((ctx, base, snapshot(base)))
        view = base
    return found


def view_inverse(view_ctx: Context, value: Tensor, base_shape: tuple[int, ...]) -> Tensor:
    """``value``, the new content of a view, laid out like the part of the base the view covers."""
    if view_ctx.fn is ops.Reshape:
        return value.reshape(base_shape)
    if view_ctx.fn is ops.Permute:
        return value.permute(view_ctx.inverse)
    return value  # a slice: SetItem writes it at the slice's index


# -- writes around ops: the one sanctioned way to change a tensor's memory outside Function.apply -----------------
class writing:  # noqa: N801 - used like no_grad, a function-like context manager
    """``with writing(p, m, v): ...`` for code that changes tensors' arrays directly (optimizer updates, zeroing
    gradients): the block may modify ``t.data`` of each tensor in place, and every tensor's version is bumped when
    the block ends, also when it raises partway (a partial write is still a write). The version is what checkpoints
    use to skip unchanged tensors and what backward uses to refuse stale saved values, so a write that bypasses it
    is silently invisible to both. ``as`` gives the arrays, in order."""

    __slots__ = ("tensors",)

    def __init__(self, *tensors: Tensor):
        self.tensors = tensors

    def __enter__(self) -> tuple[Any, ...]:
        return tuple(t.data for t in self.tensors)

    def __exit__(self, *exc: object) -> None:
        for t in self.tensors:
            t._bump_version()


def replace_data(t: Tensor, array: Any, device: Any = None) -> None:
    """Give ``t`` a new array (and ``device``, if given) in place of its old one: the same tensor object with new
    memory, e.g. after ``module.to(device)`` or a checkpoint load. Bumps the version: the values may even be equal,
    but it is not the array that was saved or checkpointed."""
    t.data = array
    if device is not None:
        t.device = device
    t._bump_version()
