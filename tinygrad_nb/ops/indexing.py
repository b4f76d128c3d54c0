"""Gather and scatter along one axis (``torch.gather``, ``scatter``, ``scatter_reduce``): primitives because their
gradients are each other (a composition through one-hot matmuls would cost O(n^2) memory).

``along(xp, index, axis)`` turns an index array into the fancy index that addresses, for every position p of
``index``, the element p with its ``axis`` coordinate replaced by ``index[p]``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import determinism
from ..autograd import Context, Function


def along(xp: Any, index: Any, axis: int) -> tuple[Any, ...]:
    n = index.ndim
    return tuple(index if d == axis else xp.arange(size).reshape((-1,) + (1,) * (n - d - 1))
                 for d, size in enumerate(index.shape))


def ufunc_at(xp: Any, name: str, out: Any, where: tuple[Any, ...], values: Any) -> None:
    """``xp.<name>.at(out, where, values)`` (unbuffered: repeated positions all count). Where the array module has
    no such kernel (cupy lacks some), it runs on the host and the result is copied back."""
    try:
        getattr(xp, name).at(out, where, values)
    except (AttributeError, NotImplementedError, TypeError):
        if xp is np:
            raise
        host = xp.asnumpy(out)
        getattr(np, name).at(host, tuple(xp.asnumpy(w) for w in where), xp.asnumpy(values))
        out[...] = xp.asarray(host)


class Gather(Function):
    """out[p] = a[p with axis coordinate index[p]];  da = zeros with g added at the gathered positions (repeats
    accumulate)."""

    @staticmethod
    def forward(ctx: Context, a: Any, index: Any, axis: int) -> Any:
        ctx.shape, ctx.where = a.shape, along(ctx.xp, index, axis)
        return a[ctx.where]

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, None, None]:
        determinism.check(ctx.device, "Gather.backward")  # atomics on cupy: raises in deterministic mode
        da = ctx.xp.zeros(ctx.shape, dtype=g.dtype)
        ctx.xp.add.at(da, ctx.where, g)
        return da, None, None


_AT = {"sum": "add", "prod": "multiply", "mean": "add", "amax": "maximum", "amin": "minimum"}


class Scatter(Function):
    """out = a with src[p] written (``reduce=None``) or reduced (sum, prod, mean, amax, amin) into position
    p-with-axis-coordinate-index[p]; ``include_self=False`` leaves a's own values out of the reduction where written.

    da = g where a's value survives (a's share for mean, g out / a for prod, ties split evenly for amax/amin);
    dsrc[p] = g at src[p]'s target, times the same share (for prod: the product of the target's other factors,
    computed without dividing by zero).
    """

    @staticmethod
    def forward(ctx: Context, a: Any, index: Any, src: Any, axis: int, reduce: str | None = None,
                include_self: bool = True) -> Any:
        xp = ctx.xp
        where = along(xp, index, axis)
        ctx.src_shape = src.shape
        src = src[tuple(slice(0, n) for n in index.shape)]  # src may be larger than index: the rest is unused
        ctx.where, ctx.reduce, ctx.include_self = where, reduce, include_self
        out = a.copy()
        if reduce is None:
            out[where] = src
            ctx.save_for_backward(None, None, None, None)
            return out
        determinism.check(ctx.device, "scatter_reduce")  # atomics on cupy: raises in deterministic mode
        written = xp.zeros(a.shape, dtype=xp.int64)
        xp.add.at(written, where, 1)
        touched = written > 0
        if not include_self:
            identity = {"sum": 0, "mean": 0, "prod": 1}.get(reduce)
            if identity is None:
                info = xp.finfo(a.dtype) if a.dtype.kind == "f" else xp.iinfo(a.dtype)
                identity = info.min if reduce == "amax" else info.max
            out[touched] = identity
        ufunc_at(xp, _AT[reduce], out, where, src)
        count = written + (1 if include_self else 0)
        if reduce == "mean":
            safe = xp.maximum(count, 1)
            out = xp.where(touched, out // safe if out.dtype.kind in "iu" else out / safe, out).astype(a.dtype)
        ctx.save_for_backward(a, src, out, count)
        ctx.touched = touched
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, ...]:
        xp, where, reduce = ctx.xp, ctx.where, ctx.reduce
        a, src, out, count = ctx.saved_tensors
        need_a, _, need_src = ctx.needs_input_grad[:3]
        if reduce is None:
            da = g.copy() if need_a else None
            if need_a:
                da[where] = 0
            return da, None, (_pad_to(xp, g[where], ctx.src_shape) if need_src else None), None
        touched = ctx.touched
        if reduce in ("sum", "mean"):
            share = g / count if reduce == "mean" else g
            da, dsrc = share, share[where]
        elif reduce == "prod":
            include = ctx.include_self
            zeros = (a == 0).astype(xp.int64) if include else xp.zeros(a.shape, dtype=xp.int64)
            nonzero = xp.where(a == 0, 1, a).astype(g.dtype) if include else xp.ones(a.shape, dtype=g.dtype)
            ufunc_at(xp, "multiply", nonzero, where, xp.where(src == 0, 1, src))
            xp.add.at(zeros, where, (src == 0).astype(xp.int64))

            def others(x: Any, target_out: Any, target_nonzero: Any, target_zeros: Any) -> Any:
                # product of every other factor of x's target: out / x, or for x == 0 the nonzero product if x is the
                # target's only zero (otherwise 0)
                safe = xp.where(x == 0, 1, x)
                return xp.where(x == 0, xp.where(target_zeros == 1, target_nonzero, 0), target_out / safe)
            da = g * others(a, out, nonzero, zeros)
            dsrc = g[where] * others(src, out[where], nonzero[where], zeros[where])
        else:  # amax / amin: ties share the gradient evenly
            ties = (a == out).astype(xp.int64)  # a's tie counts even with include_self=False, as in PyTorch
            xp.add.at(ties, where, (src == out[where]).astype(xp.int64))
            share = g / xp.maximum(ties, 1)
            da = share * (a == out)
            dsrc = share[where] * (src == out[where])
        if need_a:
            da = xp.where(touched, da if ctx.include_self else 0, g)
        return (da if need_a else None), None, (_pad_to(xp, dsrc, ctx.src_shape) if need_src else None), None


def _pad_to(xp: Any, grad: Any, shape: tuple[int, ...]) -> Any:
    """A gradient for the used corner of a larger src: zeros elsewhere."""
    if grad.shape == tuple(shape):
        return grad
    full = xp.zeros(shape, dtype=grad.dtype)
    full[tuple(slice(0, n) for n in grad.shape)] = grad
    return full
