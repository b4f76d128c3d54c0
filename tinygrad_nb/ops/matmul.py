"""Matrix product with numpy's rules: 1-D operands are vectors, leading dimensions broadcast as a batch."""
from __future__ import annotations

from typing import Any

from ..autograd import Context, Function, ShapeError
from .elementwise import unbroadcast


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
        return a @ b

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
            da = g2 @ xp.swapaxes(b2, -1, -2)
            if a.ndim == 1:
                da = da.reshape(da.shape[:-2] + da.shape[-1:])
            da = unbroadcast(da, a.shape)
        if need_b:
            db = xp.swapaxes(a2, -1, -2) @ g2
            if b.ndim == 1:
                db = db.reshape(db.shape[:-1])
            db = unbroadcast(db, b.shape)
        return da, db
