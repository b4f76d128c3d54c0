"""Matrix product with numpy's rules: 1-D operands are vectors, leading dimensions broadcast as a batch.

Every matrix product of the op table goes through :func:`mm`: ``x @ y`` (BLAS), or under
``deterministic("portable")`` the correctly rounded product of :func:`tinygrad_nb.portable.matmul`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import determinism, portable
from .. import dtype as dtypes
from ..autograd import Context, Function, ShapeError, unbroadcast

_LOW_FLOATS = tuple(d for d in (dtypes.float16, dtypes.bfloat16) if d is not None)  # 16-bit floats (see mm)


def mm(x: Any, y: Any) -> Any:
    """``x @ y``; in portable mode correctly rounded (the same bits under every BLAS kernel and thread count)."""
    if determinism.portable_mode:
        return portable.matmul(x, y)
    if x.dtype in _LOW_FLOATS and type(x) is np.ndarray:
        # numpy has no BLAS for float16 (its loop is ~175x slower than float32 here) and ml_dtypes' bfloat16
        # matmul returns float32: on CPU, 16-bit operands are multiplied in float32 and the result rounded once
        # to their dtype (more accurate than float16 accumulation, too). cupy computes in the low dtype itself.
        return mm(x.astype(np.float32), y.astype(np.float32)).astype(x.dtype)
    if x.ndim > 2 and y.ndim == 2 and x.flags.c_contiguous:
        # (..., n, k) @ (k, m) as one (rows, k) @ (k, m) BLAS call: numpy would loop over the leading axes with one
        # small gemm each (1.5-2x slower for a Linear layer on (batch, time, features) input)
        return (x.reshape(-1, x.shape[-1]) @ y).reshape(x.shape[:-1] + (y.shape[-1],))
    return x @ y


class Matmul(Function):
    """out = a @ b;  da = g @ b^T,  db = a^T @ g  (batch axes summed back where they were broadcast)."""

    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> Any:
        if a.ndim == 0 or b.ndim == 0:
            raise ShapeError(f"matmul: {tuple(a.shape)} @ {tuple(b.shape)}: both operands need at least 1 dimension")
        inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if a.shape[-1] != inner_b:
            raise ShapeError(f"matmul: {tuple(a.shape)} @ {tuple(b.shape)}: inner dimensions {a.shape[-1]} and "
                             f"{inner_b} differ")
        ctx.save_for_backward(a, b)
        return mm(a, b)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        xp = ctx.xp
        need_a, need_b = ctx.needs_input_grad
        if a.ndim == 1 and b.ndim == 1:  # dot product: g is a scalar
            return (g * b if need_a else None), (g * a if need_b else None)
        a2 = a[None, :] if a.ndim == 1 else a  # treat vectors as 1-row / 1-column matrices
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        da = db = None
        if need_a:
            da = _matmul_like(g2, xp.swapaxes(b2, -1, -2), a)
            if a.ndim == 1:
                da = da.reshape(da.shape[:-2] + da.shape[-1:])
            da = unbroadcast(da, a.shape)
        if need_b:
            db = _matmul_like(xp.swapaxes(a2, -1, -2), g2, b)
            if b.ndim == 1:
                db = db.reshape(db.shape[:-1])
            db = unbroadcast(db, b.shape)
        return da, db


class Linear(Function):
    """out = x W^T + b for x of shape (..., in), W (out, in), b (out,) or None;
    dx = g W,  dW = g^T x (over all leading axes),  db = g summed over all leading axes.

    A primitive rather than ``x @ W.T + b`` because every layer of every MLP runs it: one graph node instead of three
    (Permute, Matmul, Add), and dW comes out in W's own row-major layout for the optimizer's in-place update.
    """

    @staticmethod
    def forward(ctx: Context, x: Any, w: Any, b: Any = None) -> Any:
        if x.ndim == 0 or w.ndim != 2 or x.shape[-1] != w.shape[1]:
            raise ShapeError(f"linear: input of shape {tuple(x.shape)} does not fit weight of shape {tuple(w.shape)}"
                             f" (expected the input's last dimension to be {w.shape[-1]})")
        if b is not None and tuple(b.shape) != (w.shape[0],):
            raise ShapeError(f"linear: bias of shape {tuple(b.shape)} does not fit weight of shape "
                             f"{tuple(w.shape)} (expected ({w.shape[0]},))")
        ctx.save_for_backward(x, w)
        low = x.dtype if x.dtype in _LOW_FLOATS and type(x) is np.ndarray else None
        if low is not None:  # 16-bit on CPU: product and bias in float32, rounded once at the end (see mm)
            x, w = x.astype(np.float32), w.astype(np.float32)
        out = mm(x, w.T)
        if b is not None:
            out += b  # out is a fresh array: adding in place saves a temporary
        return out if low is None else out.astype(low)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any, Any]:
        x, w = ctx.saved_tensors
        needs = ctx.needs_input_grad  # two entries when called without a bias
        g2 = g.reshape(-1, g.shape[-1])  # leading axes are one batch
        dx = mm(g, w) if needs[0] else None
        dw = mm(g2.T, x.reshape(-1, x.shape[-1])) if needs[1] else None
        if len(needs) == 2:
            return dx, dw
        if not needs[2]:
            return dx, dw, None
        # a 16-bit gradient's column sums accumulate in float32 (the engine rounds them to the bias's dtype)
        return dx, dw, g2.sum(axis=0, dtype=np.float32 if g2.dtype in _LOW_FLOATS else None)


def _matmul_like(x: Any, y: Any, like: Any) -> Any:
    """x @ y, laid out in memory like ``like`` when that is a transposed 2-D array.

    ``x @ W.T`` (every Linear layer) saves the transposed view ``W.T``; computing its gradient as (y^T x^T)^T gives a
    column-major result, so the transpose back to ``W``'s shape is row-major like ``W`` and the optimizer's
    in-place update ``W -= lr * grad`` runs over two contiguous arrays (about 7x faster than a strided one).
    """
    if like.ndim == 2 and x.ndim == 2 and y.ndim == 2 and like.flags.f_contiguous and not like.flags.c_contiguous:
        return mm(y.T, x.T).T
    return mm(x, y)
