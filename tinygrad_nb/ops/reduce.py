"""Reductions: ``Sum``, ``Max`` and ``Prod`` are the primitives; mean, var, std, min, logsumexp are built from them."""
from __future__ import annotations

from typing import Any

from .. import determinism
from ..autograd import Context, Function
from .elementwise import math_module


def _keepdims_shape(shape: tuple[int, ...], axis: tuple[int, ...] | None) -> tuple[int, ...]:
    if axis is None:
        return (1,) * len(shape)
    return tuple(1 if i in axis else n for i, n in enumerate(shape))


class Sum(Function):
    """out = sum of a over ``axis``;  da = g broadcast back to a's shape."""

    @staticmethod
    def forward(ctx: Context, a: Any, axis: tuple[int, ...] | None = None, keepdims: bool = False) -> Any:
        ctx.shape, ctx.axis = a.shape, axis
        return a.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, None, None]:
        g = g.reshape(_keepdims_shape(ctx.shape, ctx.axis))
        return ctx.xp.broadcast_to(g, ctx.shape), None, None


class Max(Function):
    """out = max of a over ``axis``;  da = g at the positions of the maximum, split evenly between ties."""

    @staticmethod
    def forward(ctx: Context, a: Any, axis: tuple[int, ...] | None = None, keepdims: bool = False) -> Any:
        out = a.max(axis=axis, keepdims=True)
        ctx.save_for_backward(a, out)
        ctx.axis = axis
        return out if keepdims else out.reshape(drop_axes(out.shape, axis))

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, None, None]:
        a, out = ctx.saved_tensors
        winners = a == out
        count = winners.sum(axis=ctx.axis, keepdims=True)
        return g.reshape(out.shape) * winners / count, None, None


class Prod(Function):
    """out = product of a over ``axis``;  da = g out / a, or, in a slice holding zeros, the product of the other
    elements at a slice's only zero and 0 elsewhere (never a division by zero)."""

    @staticmethod
    def forward(ctx: Context, a: Any, axis: tuple[int, ...] | None = None, keepdims: bool = False) -> Any:
        out = a.prod(axis=axis, keepdims=True)
        ctx.save_for_backward(a, out)
        ctx.axis = axis
        return out if keepdims else out.reshape(drop_axes(out.shape, axis))

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, None, None]:
        xp = ctx.xp
        a, out = ctx.saved_tensors
        g = g.reshape(out.shape)
        zero = a == 0
        if not zero.any():
            return g * out / a, None, None
        zeros = zero.sum(axis=ctx.axis, keepdims=True)
        others_if_zero = xp.where(zero, 1, a).prod(axis=ctx.axis, keepdims=True)  # product of the nonzero elements
        share = xp.where(zero, xp.where(zeros == 1, others_if_zero, 0), out / xp.where(zero, 1, a))
        return g * share, None, None


class Cumsum(Function):
    """out_i = sum_{j <= i} a_j along ``axis``;  da_j = sum_{i >= j} g_i, the cumulative sum of g taken backwards."""

    @staticmethod
    def forward(ctx: Context, a: Any, axis: int) -> Any:
        determinism.check(ctx.device, "cumsum")  # a parallel scan on cupy: raises in deterministic mode
        ctx.axis = axis
        return ctx.xp.cumsum(a, axis=axis)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, None]:
        xp = ctx.xp
        determinism.check(ctx.device, "cumsum")
        return xp.flip(xp.cumsum(xp.flip(g, axis=ctx.axis), axis=ctx.axis), axis=ctx.axis), None


class LogSoftmax(Function):
    """out = x - log(sum(exp(x))) along ``axis``, computed as (x - m) - log(sum(exp(x - m))) with m = max(x);
    dx = g - softmax(x) sum(g).

    A primitive rather than a composition because it sits in every classification loss: fused, it is one pass of
    array work instead of nine graph nodes.
    """

    @staticmethod
    def forward(ctx: Context, a: Any, axis: int) -> Any:
        xp, kernels = ctx.xp, math_module(ctx)
        m = a.max(axis=axis, keepdims=True)
        shifted = a - xp.where(xp.isfinite(m), m, 0)  # a row of all -inf gives -inf, not NaN
        out = shifted - kernels.log(kernels.exp(shifted).sum(axis=axis, keepdims=True))
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, None]:
        (out,) = ctx.saved_tensors
        return g - math_module(ctx).exp(out) * g.sum(axis=ctx.axis, keepdims=True), None


class CrossEntropy(Function):
    """loss_n = log(sum_c exp(x_nc)) - x_n,t_n for logits x (N, C) and class indices t (N,), reduced to the mean, the
    sum, or kept per row (``reduction``);  dx_n = g_n (softmax(x_n) - onehot(t_n)), with g_n = g / N for the mean.

    The common case of ``F.cross_entropy`` (no class weights, no ignored targets, no label smoothing) as one
    primitive: one graph node instead of four (log-softmax, gather, sum, scale), and no scatter-add in backward.
    """

    @staticmethod
    def forward(ctx: Context, x: Any, target: Any, reduction: str) -> Any:
        xp, kernels = ctx.xp, math_module(ctx)
        m = x.max(axis=1, keepdims=True)
        shifted = x - xp.where(xp.isfinite(m), m, 0)  # as in LogSoftmax: a row of all -inf gives -inf, not NaN
        probs = kernels.exp(shifted)
        total = probs.sum(axis=1, keepdims=True)
        rows = xp.arange(x.shape[0])
        losses = kernels.log(total[:, 0]) - shifted[rows, target]
        probs /= total
        ctx.save_for_backward(probs)
        ctx.rows, ctx.target, ctx.reduction = rows, target, reduction
        if reduction == "mean":
            return losses.sum() / x.shape[0]
        return losses.sum() if reduction == "sum" else losses

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, None, None]:
        (probs,) = ctx.saved_tensors
        if ctx.reduction == "none":
            dx = probs * g[:, None]
            dx[ctx.rows, ctx.target] -= g
        else:
            scale = g / probs.shape[0] if ctx.reduction == "mean" else g
            dx = probs * scale
            dx[ctx.rows, ctx.target] -= scale
        return dx, None, None


def drop_axes(shape: tuple[int, ...], axis: tuple[int, ...] | None) -> tuple[int, ...]:
    """``shape`` without the reduced ``axis`` (all of them when None): a reduction's shape without keepdim."""
    if axis is None:
        return ()
    return tuple(n for i, n in enumerate(shape) if i not in axis)
