"""Neural-network primitives that are not cheap as compositions: sliding windows for convolution and pooling
(im2col and its adjoint col2im), attention, and layer normalisation."""
from __future__ import annotations

import math
from typing import Any

from .. import determinism
from ..autograd import Context, Function
from .elementwise import math_module
from .matmul import mm


def row_sums(xp: Any, x: Any, dims: int = 1) -> Any:
    """The sum over the last ``dims`` axes, kept as size-1 axes. float32 rows (attention's keys, a LayerNorm's
    features) are summed by one matrix-vector product with a vector of ones: numpy's reduction pays a setup per
    short row and is 4-5x slower on (2048, 64). Elsewhere (other dtypes, portable mode, whose matmul is exact and
    refuses float64) numpy's own sum."""
    axes = tuple(range(x.ndim - dims, x.ndim))
    if x.dtype != xp.float32 or determinism.portable_mode or not x.flags.c_contiguous or x.ndim < 2:
        return x.sum(axis=axes, keepdims=True)
    n = 1
    for axis in axes:
        n *= x.shape[axis]
    rows = x.reshape(-1, n) @ xp.ones((n, 1), dtype=x.dtype)
    return rows.reshape(x.shape[:x.ndim - dims] + (1,) * dims)


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def im2col(xp: Any, x: Any, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
           dilation: tuple[int, int]) -> tuple[Any, tuple[Any, ...]]:
    """(N, C, H, W) -> (N, C*kh*kw, L) windows (a strided view of the padded input, then one copy), and the geometry
    that :func:`col2im` needs to send columns back."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    oh, ow = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"unfold: input {h}x{w} is smaller than the {kh}x{kw} kernel (padding {ph},{pw}, "
                         f"dilation {dh},{dw})")
    padded = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    s = padded.strides
    windows = xp.lib.stride_tricks.as_strided(
        padded, shape=(n, c, kh, kw, oh, ow), strides=(s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw))
    return windows.reshape(n, c * kh * kw, oh * ow), (x.shape, padded.shape, kernel, stride, padding, dilation,
                                                        (oh, ow))


def col2im(xp: Any, cols: Any, geometry: tuple[Any, ...]) -> Any:
    """The adjoint of :func:`im2col`: every column added back to the window it came from (a loop over the kh*kw
    kernel offsets, each a strided add over the whole batch)."""
    shape, padded_shape, (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = geometry
    n, c = shape[0], shape[1]
    cols = cols.reshape(n, c, kh, kw, oh, ow)
    dx = xp.zeros(padded_shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i * dh: i * dh + sh * oh: sh, j * dw: j * dw + sw * ow: sw] += cols[:, :, i, j]
    return dx[:, :, ph: padded_shape[2] - ph, pw: padded_shape[3] - pw]


class Unfold(Function):
    """im2col: (N, C, H, W) -> (N, C*kh*kw, L), one column per sliding window (``torch.nn.functional.unfold``);
    da = col2im(g), each column added back to its window."""

    @staticmethod
    def forward(ctx: Context, x: Any, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
                dilation: tuple[int, int]) -> Any:
        cols, ctx.geometry = im2col(ctx.xp, x, kernel, stride, padding, dilation)
        return cols

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, None, None, None, None]:
        return col2im(ctx.xp, g, ctx.geometry), None, None, None, None


class Fold(Function):
    """col2im: (N, C*kh*kw, L) -> (N, C, H, W), overlapping windows summed (``torch.nn.functional.fold``, the adjoint
    of :class:`Unfold`; conv_transpose2d is a matmul then this);  da = im2col(g)."""

    @staticmethod
    def forward(ctx: Context, cols: Any, output_size: tuple[int, int], kernel: tuple[int, int],
                stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int]) -> Any:
        (h, w), (kh, kw) = output_size, kernel
        oh = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
        ow = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
        n, ckk, blocks = cols.shape
        if ckk % (kh * kw) or blocks != oh * ow or oh <= 0 or ow <= 0:
            raise RuntimeError(f"fold: input of shape {tuple(cols.shape)} does not fit output_size {output_size} with"
                               f" kernel {kernel}: expected (N, C*{kh * kw}, {max(oh, 0) * max(ow, 0)})")
        shape = (n, ckk // (kh * kw), h, w)
        ctx.args = (kernel, stride, padding, dilation)
        return col2im(ctx.xp, cols, (shape, (n, shape[1], h + 2 * padding[0], w + 2 * padding[1]), kernel, stride,
                                     padding, dilation, (oh, ow)))

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, ...]:
        return (im2col(ctx.xp, g, *ctx.args)[0],) + (None,) * 5


class ScaledDotProductAttention(Function):
    """out = softmax(s) @ v with s = q k^T scale + bias (softmax over keys; ``bias`` an additive mask, -inf where a
    key is masked out; ``keep`` an optional dropout mask already scaled by 1 / (1 - p)). With p = softmax(s):
        dv = (p keep)^T g,   dp = (g v^T) keep,   ds = p (dp - sum_keys(dp p)),
        dq = ds k scale,     dk = ds^T q scale,   dbias = ds   (batch axes summed back where they broadcast)
    A primitive because every attention layer runs it: one graph node instead of seven, the softmax fused. A query
    whose keys are all masked out gets output 0 (as PyTorch), not NaN.
    """

    broadcasts = True

    @staticmethod
    def forward(ctx: Context, q: Any, k: Any, v: Any, bias: Any = None, keep: Any = None, scale: float = 1.0) -> Any:
        xp = ctx.xp
        s = mm(q, xp.swapaxes(k, -1, -2))
        s *= s.dtype.type(scale)
        if bias is not None:
            s = s + bias
        m = s.max(axis=-1, keepdims=True)
        p = math_module(ctx).exp(s - xp.where(xp.isfinite(m), m, 0))
        total = row_sums(xp, p)
        p /= xp.where(total > 0, total, 1)  # a query whose keys are all masked out gets weights 0 (as PyTorch)
        ctx.save_for_backward(q, k, v, p)
        ctx.keep, ctx.scale = keep, scale
        return mm(p * keep if keep is not None else p, v)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, ...]:
        xp, keep, scale = ctx.xp, ctx.keep, ctx.scale
        q, k, v, p = ctx.saved_tensors
        needs = ctx.needs_input_grad
        dv = mm(xp.swapaxes(p * keep if keep is not None else p, -1, -2), g) if needs[2] else None
        dp = mm(g, xp.swapaxes(v, -1, -2))
        if keep is not None:
            dp *= keep
        ds = p * (dp - row_sums(xp, dp * p))
        dq = mm(ds, k) * scale if needs[0] else None
        dk = mm(xp.swapaxes(ds, -1, -2), q) * scale if needs[1] else None
        return (dq, dk, dv) if len(needs) == 3 else (dq, dk, dv, ds if needs[3] else None)


class LayerNorm(Function):
    """Layer normalisation over the last ``dims`` axes (``n`` values a row), ``weight`` and ``bias`` optional:
        mu = mean(x),   r = 1 / sqrt(mean((x - mu)^2) + eps),   xhat = (x - mu) r,   out = xhat weight + bias
        gx = g weight,  dx = r (gx - mean(gx) - xhat mean(gx xhat)),
        dweight = sum_rows(g xhat),   dbias = sum_rows(g)
    A primitive because every transformer block runs it twice: one graph node and one saved array instead of nine
    nodes and their temporaries. 16-bit inputs are normalised in float32 and the result rounded once (the variance
    of 16-bit values in 16-bit steps loses most of its digits).
    """

    @staticmethod
    def forward(ctx: Context, x: Any, weight: Any = None, bias: Any = None, dims: int = 1, eps: float = 1e-5) -> Any:
        xp = ctx.xp
        dtype = x.dtype
        if dtype.itemsize == 2:  # float16/bfloat16
            x = x.astype(xp.float32)
            weight = None if weight is None else weight.astype(xp.float32)
            bias = None if bias is None else bias.astype(xp.float32)
        axes = tuple(range(x.ndim - dims, x.ndim))
        n = math.prod(x.shape[x.ndim - dims:])
        mean = row_sums(xp, x, dims)
        mean /= n
        xhat = x - mean
        variance = row_sums(xp, xp.square(xhat), dims)
        variance /= n
        variance += variance.dtype.type(eps)
        r = xp.sqrt(variance, out=variance)
        xp.reciprocal(r, out=r)
        xhat *= r
        ctx.save_for_backward(xhat, r, weight)
        ctx.axes = axes
        out = xhat * weight if weight is not None else xhat.copy()
        if bias is not None:
            out = out + bias if bias.dtype != out.dtype else xp.add(out, bias, out=out)  # (a wider bias promotes)
        return out.astype(dtype, copy=False) if dtype.itemsize == 2 else out

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, ...]:
        xp = ctx.xp
        xhat, r, weight = ctx.saved_tensors
        axes = ctx.axes
        needs = ctx.needs_input_grad
        if g.dtype != xhat.dtype:  # 16-bit: computed in float32 like the forward; the engine casts back
            g = g.astype(xhat.dtype)
        rows = tuple(range(g.ndim - len(axes)))  # the axes weight and bias broadcast over
        gx = g * weight if weight is not None else g
        dx = None
        if needs[0]:
            n = math.prod(g.shape[g.ndim - len(axes):])
            mean_gx = row_sums(xp, gx, len(axes))
            mean_gx /= n
            mean_gx_xhat = row_sums(xp, gx * xhat, len(axes))
            mean_gx_xhat /= n
            dx = gx - mean_gx
            dx -= xhat * mean_gx_xhat
            dx *= r
        dweight = (g * xhat).sum(axis=rows) if len(needs) > 1 and needs[1] else None
        dbias = g.sum(axis=rows) if len(needs) > 2 and needs[2] else None
        return (dx, dweight, dbias, None, None)[:len(needs)]
