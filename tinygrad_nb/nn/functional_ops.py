"""More of ``torch.nn.functional``: 1-D/3-D and transposed convolutions, fold/unfold, average/adaptive/max pooling
with indices and unpooling, padding modes, interpolation, and scaled dot-product attention.

All are compositions of Tensor ops except where the op table has a primitive (``Unfold``/``Fold`` for sliding
windows, ``ScaledDotProductAttention``); :mod:`tinygrad_nb.nn.functional` re-exports every name here, so use them as
``F.<name>``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import dtype as dtypes
from .. import ops
from ..autograd import ShapeError
from ..composite import _torch_name, gather, movedim, scatter
from ..ops.nn import conv_output_size
from ..tensor import Tensor, rand, zeros

__all__ = ["conv1d", "conv3d", "conv_transpose1d", "conv_transpose2d", "fold", "unfold", "avg_pool1d", "avg_pool2d",
           "avg_pool3d", "max_pool1d", "max_pool2d", "max_unpool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
           "adaptive_max_pool2d", "pad", "interpolate", "upsample", "pixel_shuffle", "pixel_unshuffle",
           "scaled_dot_product_attention"]


def _tuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    out = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(out) == 1 and n > 1:
        out = out * n
    if len(out) != n:
        raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    return tuple(int(v) for v in out)


def _batched(op: str, input: Tensor, spatial: int) -> tuple[Tensor, bool]:  # noqa: A002
    """(N, C, *spatial) stays; an unbatched (C, *spatial) input gets a batch dim of 1."""
    if input.ndim == spatial + 1:
        return input.unsqueeze(0), False
    if input.ndim != spatial + 2:
        raise ShapeError(f"{op}: Expected {spatial + 1}D (unbatched) or {spatial + 2}D (batched) input, but got "
                         f"input of size: {list(input.shape)}")
    return input, True


def _conv2d(*args: Any, **kwargs: Any) -> Tensor:
    from .functional import conv2d  # noqa: PLC0415 - functional imports this module
    return conv2d(*args, **kwargs)


def _same_padding(kernel: Sequence[int], dilation: Sequence[int]) -> list[tuple[int, int]]:
    """"same": total d (k - 1) per dim, the odd extra after (as PyTorch)."""
    return [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation)]


# -- convolutions -----------------------------------------------------------------------------------------------
def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | Sequence[int] = 1,  # noqa: A002
           padding: int | Sequence[int] | str = 0, dilation: int | Sequence[int] = 1, groups: int = 1) -> Tensor:
    """1-D cross-correlation of (N, C, L) with weight (O, C / groups, k): conv2d on a height-1 image."""
    x, batched = _batched("conv1d", input, 1)
    if weight.ndim != 3:
        raise ShapeError(f"conv1d: expected a 3-D weight (out_channels, in_channels / groups, k), got {weight.shape}")
    (s,), (d,) = _tuple(stride, 1, "conv1d stride"), _tuple(dilation, 1, "conv1d dilation")
    pad2 = padding if isinstance(padding, str) else (0, _tuple(padding, 1, "conv1d padding")[0])
    out = _conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, (1, s), pad2, (1, d), groups).squeeze(2)
    return out if batched else out.squeeze(0)


def conv3d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | Sequence[int] = 1,  # noqa: A002
           padding: int | Sequence[int] | str = 0, dilation: int | Sequence[int] = 1, groups: int = 1) -> Tensor:
    """3-D cross-correlation of (N, C, D, H, W) with weight (O, C / groups, kd, kh, kw): one conv2d per depth offset
    of the kernel (the output depths folded into the batch), summed."""
    x, batched = _batched("conv3d", input, 3)
    if weight.ndim != 5:
        raise ShapeError(f"conv3d: expected a 5-D weight, got {weight.shape}")
    stride, dilation = _tuple(stride, 3, "conv3d stride"), _tuple(dilation, 3, "conv3d dilation")
    kernel = weight.shape[2:]
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"conv3d: padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
        if padding == "same" and stride != (1, 1, 1):
            raise ValueError("padding='same' is not supported for strided convolutions")
        pads = _same_padding(kernel, dilation) if padding == "same" else [(0, 0)] * 3
    else:
        pads = [(p, p) for p in _tuple(padding, 3, "conv3d padding")]
    if any(p for pair in pads for p in pair):
        x = x.pad(tuple(v for pair in reversed(pads) for v in pair))
    n, c, depth = x.shape[:3]
    (sd, sh, sw), (dd, dh, dw) = stride, dilation
    out_d = conv_output_size(depth, kernel[0], sd, 0, dd)
    if out_d <= 0:
        raise ShapeError(f"conv3d: input of shape {input.shape} is smaller than the kernel {tuple(kernel)}")
    total = None
    for i in range(kernel[0]):
        start = i * dd
        planes = x[:, :, start: start + sd * (out_d - 1) + 1: sd]  # (N, C, out_d, H, W)
        planes = planes.permute(0, 2, 1, 3, 4).reshape(n * out_d, c, x.shape[3], x.shape[4])
        part = _conv2d(planes, weight[:, :, i], None, (sh, sw), 0, (dh, dw), groups)
        total = part if total is None else total + part
    out = total.reshape(n, out_d, *total.shape[1:]).permute(0, 2, 1, 3, 4)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1, 1)
    return out if batched else out.squeeze(0)


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None,  # noqa: A002
                     stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                     output_padding: int | Sequence[int] = 0, groups: int = 1,
                     dilation: int | Sequence[int] = 1) -> Tensor:
    """The adjoint of conv2d ("deconvolution") of (N, C_in, H, W) with weight (C_in, C_out / groups, kh, kw):
    every input pixel scatters weight * value into its output window; one matmul then ``fold`` (col2im).
    Output size (H - 1) stride - 2 padding + dilation (kh - 1) + output_padding + 1."""
    x, batched = _batched("conv_transpose2d", input, 2)
    n, cin, h, w = x.shape
    if weight.ndim != 4 or weight.shape[0] != cin or cin % groups:
        raise ShapeError(f"conv_transpose2d: input of shape {input.shape} does not fit weight of shape "
                         f"{weight.shape} with groups={groups} (expected weight (C_in={cin}, C_out / groups, kh, kw))")
    stride, padding = _tuple(stride, 2, "stride"), _tuple(padding, 2, "padding")
    output_padding, dilation = _tuple(output_padding, 2, "output_padding"), _tuple(dilation, 2, "dilation")
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= s and op >= d:
            raise RuntimeError(f"output padding must be smaller than either stride or dilation, but got "
                               f"output_padding={output_padding}, stride={stride}, dilation={dilation}")
    group_out, kh, kw = weight.shape[1:]
    cout = group_out * groups
    out_h = (h - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kh - 1) + output_padding[0] + 1
    out_w = (w - 1) * stride[1] - 2 * padding[1] + dilation[1] * (kw - 1) + output_padding[1] + 1
    if out_h <= 0 or out_w <= 0:
        raise ShapeError(f"conv_transpose2d: the output would be {out_h}x{out_w} for input {input.shape}")
    # (groups, C_out/g*kh*kw, C_in/g) @ (N, groups, C_in/g, H*W) -> (N, groups, C_out/g*kh*kw, H*W)
    wt = weight.reshape(groups, cin // groups, group_out * kh * kw).transpose(1, 2)
    cols = (wt @ x.reshape(n, groups, cin // groups, h * w)).reshape(n, cout * kh * kw, h * w)
    out = ops.Fold.apply(cols, (out_h, out_w), (kh, kw), stride, padding, dilation)
    if bias is not None:
        out = out + bias.reshape(1, cout, 1, 1)
    return out if batched else out.squeeze(0)


def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None,  # noqa: A002
                     stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                     output_padding: int | Sequence[int] = 0, groups: int = 1,
                     dilation: int | Sequence[int] = 1) -> Tensor:
    """conv_transpose2d on a height-1 image."""
    x, batched = _batched("conv_transpose1d", input, 1)
    one = lambda v, name: (1 if name != "padding" and name != "output_padding" else 0,  # noqa: E731
                           _tuple(v, 1, name)[0])
    out = conv_transpose2d(x.unsqueeze(2), weight.unsqueeze(2), bias, one(stride, "stride"), one(padding, "padding"),
                           one(output_padding, "output_padding"), groups, one(dilation, "dilation")).squeeze(2)
    return out if batched else out.squeeze(0)


def unfold(input: Tensor, kernel_size: int | Sequence[int], dilation: int | Sequence[int] = 1,  # noqa: A002
           padding: int | Sequence[int] = 0, stride: int | Sequence[int] = 1) -> Tensor:
    """im2col: (N, C, H, W) -> (N, C kh kw, L), one column per sliding window."""
    x, batched = _batched("unfold", input, 2)
    out = ops.Unfold.apply(x, _tuple(kernel_size, 2, "kernel_size"), _tuple(stride, 2, "stride"),
                           _tuple(padding, 2, "padding"), _tuple(dilation, 2, "dilation"))
    return out if batched else out.squeeze(0)


def fold(input: Tensor, output_size: int | Sequence[int], kernel_size: int | Sequence[int],  # noqa: A002
         dilation: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
         stride: int | Sequence[int] = 1) -> Tensor:
    """col2im, the adjoint of :func:`unfold`: (N, C kh kw, L) -> (N, C, H, W), overlapping values summed."""
    if input.ndim == 2:
        return fold(input.unsqueeze(0), output_size, kernel_size, dilation, padding, stride).squeeze(0)
    if input.ndim != 3:
        raise ShapeError(f"fold: Expected 2D or 3D (batch mode) input tensor, got {input.shape}")
    return ops.Fold.apply(input, _tuple(output_size, 2, "output_size"), _tuple(kernel_size, 2, "kernel_size"),
                          _tuple(stride, 2, "stride"), _tuple(padding, 2, "padding"), _tuple(dilation, 2, "dilation"))


# -- pooling ---------------------------------------------------------------------------------------------------------
def _pool_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size; with ceil_mode the last window must start inside the input or left padding."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_windows(op: str, x: Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
                  dilation: tuple[int, int], ceil_mode: bool, fill: float) -> tuple[Tensor, tuple[int, int]]:
    """(N, C, kh kw, L) windows of x padded with ``fill`` (and, for ceil_mode, extra on the right)."""
    if any(p > (d * (k - 1) + 1) // 2 for k, p, d in zip(kernel, padding, dilation)):
        raise ShapeError(f"{op}: padding {padding} should be at most half of the kernel size {kernel} (dilation "
                         f"{dilation}): pad should be at most half of effective kernel size")
    sizes = tuple(_pool_size(n, k, s, p, d, ceil_mode) for n, k, s, p, d in
                  zip(x.shape[2:], kernel, stride, padding, dilation))
    if min(sizes) <= 0:
        raise ShapeError(f"{op}: Given input size: {x.shape[1:]}. Calculated output size: {(x.shape[1],) + sizes}. "
                         "Output size is too small")
    extra = [max((o - 1) * s + d * (k - 1) + 1 - (n + 2 * p), 0) for o, n, k, s, p, d in
             zip(sizes, x.shape[2:], kernel, stride, padding, dilation)]
    if any(padding) or any(extra):
        x = x.pad((padding[1], padding[1] + extra[1], padding[0], padding[0] + extra[0]), value=fill)
    cols = ops.Unfold.apply(x, kernel, stride, (0, 0), dilation)
    return cols.reshape(x.shape[0], x.shape[1], kernel[0] * kernel[1], sizes[0] * sizes[1]), sizes


def max_pool2d(input: Tensor, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,  # noqa
               padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Largest value in each window (stride defaults to the kernel size; padding counts as -inf). The gradient goes
    to the window's maximum, split evenly on ties; with ``return_indices`` also the flat index (into H * W) of each
    maximum (for ``max_unpool2d``), and the gradient then goes to that element only, as in PyTorch."""
    x, batched = _batched("max_pool2d", input, 2)
    kernel = _tuple(kernel_size, 2, "kernel_size")
    stride = kernel if stride is None or (not isinstance(stride, int) and len(stride) == 0) else \
        _tuple(stride, 2, "stride")
    padding, dilation = _tuple(padding, 2, "padding"), _tuple(dilation, 2, "dilation")
    low = float("-inf") if dtypes.is_floating(x.dtype) else int(np.iinfo(x.dtype).min)
    cols, (oh, ow) = _pool_windows("max_pool2d", x, kernel, stride, padding, dilation, ceil_mode, low)
    n, c = x.shape[:2]
    if not return_indices:
        out = cols.amax(2).reshape(n, c, oh, ow)
        return out if batched else out.squeeze(0)
    best = cols.detach().argmax(2, keepdim=True)  # (N, C, 1, L): the kernel offset of each maximum
    out = gather(cols, 2, best).reshape(n, c, oh, ow)
    offset = best.reshape(n, c, oh, ow).data
    xp = x.device.xp
    rows = xp.arange(oh).reshape(-1, 1) * stride[0] - padding[0] + (offset // kernel[1]) * dilation[0]
    columns = xp.arange(ow) * stride[1] - padding[1] + (offset % kernel[1]) * dilation[1]
    indices = Tensor._wrap((rows * x.shape[3] + columns).astype(xp.int64), x.device)
    return (out, indices) if batched else (out.squeeze(0), indices.squeeze(0))


def max_pool1d(input: Tensor, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,  # noqa
               padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """max_pool2d on a height-1 image."""
    x, batched = _batched("max_pool1d", input, 1)
    k = _tuple(kernel_size, 1, "kernel_size")[0]
    s = k if stride is None else _tuple(stride, 1, "stride")[0]
    result = max_pool2d(x.unsqueeze(2), (1, k), (1, s), (0, _tuple(padding, 1, "padding")[0]),
                        (1, _tuple(dilation, 1, "dilation")[0]), ceil_mode, return_indices)
    if return_indices:
        out, idx = result[0].squeeze(2), result[1].squeeze(2)
        return (out, idx) if batched else (out.squeeze(0), idx.squeeze(0))
    out = result.squeeze(2)
    return out if batched else out.squeeze(0)


def _avg_divisor(size: int, out: int, k: int, s: int, p: int, count_include_pad: bool) -> np.ndarray:
    """Per output position along one dim: how many elements PyTorch divides by (windows clipped to the padded
    input; without count_include_pad, to the input)."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)
    if count_include_pad:
        return (end - start).astype(np.float64)
    return (np.minimum(end, size) - np.maximum(start, 0)).astype(np.float64)


def avg_pool2d(input: Tensor, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,  # noqa
               padding: int | Sequence[int] = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:
    """Mean of each window (stride defaults to the kernel size); zero padding counts in the mean unless
    ``count_include_pad=False``; ``divisor_override`` replaces the window size."""
    x, batched = _batched("avg_pool2d", input, 2)
    if not dtypes.is_floating(x.dtype):
        raise RuntimeError(f"\"avg_pool2d\" not implemented for '{_torch_name(x.dtype)}'")
    kernel = _tuple(kernel_size, 2, "kernel_size")
    stride = kernel if stride is None or (not isinstance(stride, int) and len(stride) == 0) else \
        _tuple(stride, 2, "stride")
    padding = _tuple(padding, 2, "padding")
    cols, (oh, ow) = _pool_windows("avg_pool2d", x, kernel, stride, padding, (1, 1), ceil_mode, 0.0)
    n, c = x.shape[:2]
    total = cols.sum(2).reshape(n, c, oh, ow)
    if divisor_override:
        return (total / divisor_override) if batched else (total / divisor_override).squeeze(0)
    rows = _avg_divisor(x.shape[2], oh, kernel[0], stride[0], padding[0], count_include_pad)
    columns = _avg_divisor(x.shape[3], ow, kernel[1], stride[1], padding[1], count_include_pad)
    out = total / Tensor._wrap(x.device.xp.asarray(np.outer(rows, columns), dtype=x.dtype), x.device)
    return out if batched else out.squeeze(0)


def avg_pool1d(input: Tensor, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,  # noqa
               padding: int | Sequence[int] = 0, ceil_mode: bool = False, count_include_pad: bool = True) -> Tensor:
    """avg_pool2d on a height-1 image."""
    x, batched = _batched("avg_pool1d", input, 1)
    k = _tuple(kernel_size, 1, "kernel_size")[0]
    s = k if stride is None else _tuple(stride, 1, "stride")[0]
    out = avg_pool2d(x.unsqueeze(2), (1, k), (1, s), (0, _tuple(padding, 1, "padding")[0]), ceil_mode,
                     count_include_pad).squeeze(2)
    return out if batched else out.squeeze(0)


def avg_pool3d(input: Tensor, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,  # noqa
               padding: int | Sequence[int] = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:
    """Mean of each 3-D window: conv3d with a constant kernel, padding counted (``count_include_pad`` must be
    True, ``ceil_mode`` False)."""
    if ceil_mode or not count_include_pad:
        raise NotImplementedError("avg_pool3d: ceil_mode and count_include_pad=False are not supported")
    x, batched = _batched("avg_pool3d", input, 3)
    kernel = _tuple(kernel_size, 3, "kernel_size")
    stride = kernel if stride is None else _tuple(stride, 3, "stride")
    c = x.shape[1]
    ones = Tensor._wrap(x.device.xp.full((c, 1) + kernel, 1.0 / (divisor_override or math.prod(kernel)),
                                         dtype=x.dtype), x.device)
    out = conv3d(x, ones, None, stride, _tuple(padding, 3, "padding"), 1, c)
    return out if batched else out.squeeze(0)


def max_unpool2d(input: Tensor, indices: Tensor, kernel_size: int | Sequence[int],  # noqa: A002
                 stride: int | Sequence[int] | None = None, padding: int | Sequence[int] = 0,
                 output_size: Sequence[int] | None = None) -> Tensor:
    """The inverse of ``max_pool2d(..., return_indices=True)``: each value written at its index of an (H, W) zero
    image (H = (h - 1) stride - 2 padding + kernel unless ``output_size``); the gradient reads it back."""
    x, batched = _batched("max_unpool2d", input, 2)
    idx = indices if batched else indices.unsqueeze(0)
    if idx.shape != x.shape:
        raise ShapeError(f"max_unpool2d: Expected shape of indices to be same as that of the input tensor "
                         f"({x.shape}) but got indices tensor with shape: {indices.shape}")
    kernel = _tuple(kernel_size, 2, "kernel_size")
    stride = kernel if stride is None else _tuple(stride, 2, "stride")
    padding = _tuple(padding, 2, "padding")
    if output_size is None:
        size = tuple((n - 1) * s - 2 * p + k for n, s, p, k in zip(x.shape[2:], stride, padding, kernel))
    else:
        size = tuple(int(v) for v in tuple(output_size)[-2:])
    n, c = x.shape[:2]
    flat = zeros(n, c, size[0] * size[1], dtype=x.dtype, device=x.device)
    if idx.numel() and (int(idx.data.min()) < 0 or int(idx.data.max()) >= size[0] * size[1]):
        raise RuntimeError(f"Found an invalid max index: {int(idx.data.max())} (output volumes are of size "
                           f"{size[0]}x{size[1]})")
    out = scatter(flat, 2, idx.reshape(n, c, -1), x.reshape(n, c, -1)).reshape(n, c, *size)
    return out if batched else out.squeeze(0)


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
    """(out, size) averaging matrix: row i averages [floor(i size / out), ceil((i + 1) size / out))."""
    m = np.zeros((out, size))
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def _along(x: Tensor, axis: int, matrix: np.ndarray) -> Tensor:
    """x with dim ``axis`` replaced by matrix @ (that dim): one matmul."""
    m = Tensor._wrap(x.device.xp.asarray(matrix.T, dtype=x.dtype), x.device)
    return movedim(movedim(x, axis, -1) @ m, -1, axis)


def _output_size(op: str, output_size: Any, spatial: tuple[int, ...]) -> tuple[int, ...]:
    sizes = _tuple(output_size, len(spatial), "output_size") if not isinstance(output_size, (list, tuple)) or \
        None not in output_size else tuple(n if o is None else o for o, n in zip(output_size, spatial))
    return sizes


def adaptive_avg_pool2d(input: Tensor, output_size: int | Sequence[int | None]) -> Tensor:  # noqa: A002
    """Averages over PyTorch's adaptive windows so the output is ``output_size`` (None keeps a dim): one matmul
    per spatial dim with the averaging matrix."""
    x, batched = _batched("adaptive_avg_pool2d", input, 2)
    oh, ow = _output_size("adaptive_avg_pool2d", output_size, x.shape[2:])
    out = _along(_along(x, 2, _adaptive_matrix(x.shape[2], oh)), 3, _adaptive_matrix(x.shape[3], ow))
    return out if batched else out.squeeze(0)


def adaptive_avg_pool1d(input: Tensor, output_size: int | Sequence[int]) -> Tensor:  # noqa: A002
    """Adaptive average pooling of (N, C, L)."""
    x, batched = _batched("adaptive_avg_pool1d", input, 1)
    out = _along(x, 2, _adaptive_matrix(x.shape[2], _tuple(output_size, 1, "output_size")[0]))
    return out if batched else out.squeeze(0)


def adaptive_max_pool2d(input: Tensor, output_size: int | Sequence[int | None],  # noqa: A002
                        return_indices: bool = False) -> Tensor:
    """Maximum over PyTorch's adaptive windows (a max_pool2d when they are all one size, else one window at a
    time)."""
    if return_indices:
        raise NotImplementedError("adaptive_max_pool2d: return_indices is not supported")
    x, batched = _batched("adaptive_max_pool2d", input, 2)
    h, w = x.shape[2:]
    oh, ow = _output_size("adaptive_max_pool2d", output_size, (h, w))
    if h % oh == 0 and w % ow == 0:
        out = max_pool2d(x, (h // oh, w // ow))
    else:
        bounds = [[((i * n) // o, -((-(i + 1) * n) // o)) for i in range(o)] for n, o in ((h, oh), (w, ow))]
        from ..tensor import stack  # noqa: PLC0415
        out = stack([stack([x[:, :, r0:r1, c0:c1].amax((2, 3)) for c0, c1 in bounds[1]], -1)
                     for r0, r1 in bounds[0]], -2)
    return out if batched else out.squeeze(0)


def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:  # noqa: A002
    """(N, C r^2, H, W) -> (N, C, H r, W r)."""
    r = upscale_factor
    *lead, c, h, w = input.shape
    if c % (r * r):
        raise RuntimeError(f"pixel_shuffle expects its input's 'channel' dimension to be divisible by the square of "
                           f"upscale_factor, but input.size(-3)={c} is not divisible by {r * r}")
    x = input.reshape(*lead, c // (r * r), r, r, h, w)
    k = len(lead)
    x = x.permute(*range(k), k, k + 3, k + 1, k + 4, k + 2)
    return x.reshape(*lead, c // (r * r), h * r, w * r)


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:  # noqa: A002
    """(N, C, H r, W r) -> (N, C r^2, H, W)."""
    r = downscale_factor
    *lead, c, h, w = input.shape
    if h % r or w % r:
        raise RuntimeError(f"pixel_unshuffle expects height and width to be divisible by downscale_factor={r}")
    x = input.reshape(*lead, c, h // r, r, w // r, r)
    k = len(lead)
    x = x.permute(*range(k), k, k + 2, k + 4, k + 1, k + 3)
    return x.reshape(*lead, c * r * r, h // r, w // r)


# -- padding ---------------------------------------------------------------------------------------------------------
def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Tensor:  # noqa
    """Pad the last len(pad) / 2 dims, PyTorch's order (last_before, last_after, second_last_before, ...):
    "constant" with ``value``; "reflect" mirrors without repeating the edge, "replicate" repeats it, "circular"
    wraps around (these read the input through an index, so the gradient adds back to the source elements)."""
    if mode == "constant":
        return input.pad(pad, 0.0 if value is None else value)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    if value:
        raise ValueError(f"Padding mode \"{mode}\" doesn't take in value argument")
    if len(pad) % 2 or len(pad) // 2 > input.ndim - 1:
        raise NotImplementedError(f"{mode} padding of a {input.ndim}-D input with pad {tuple(pad)}: only the "
                                  "dims after the first (batch) one can be padded")
    out = input
    for i in range(len(pad) // 2):
        axis = input.ndim - 1 - i
        before, after = int(pad[2 * i]), int(pad[2 * i + 1])
        n = input.shape[axis]
        positions = np.arange(-before, n + after)
        if mode == "reflect":
            if before >= n or after >= n:
                raise RuntimeError(f"Argument #4: Padding size should be less than the corresponding input dimension,"
                                   f" but got: padding ({before}, {after}) at dimension {axis} of input "
                                   f"{list(input.shape)}")
            period = 2 * (n - 1) if n > 1 else 1
            positions = np.abs(positions) % period
            positions = np.where(positions >= n, period - positions, positions)
        elif mode == "replicate":
            positions = np.clip(positions, 0, n - 1)
        else:
            if before > n or after > n:
                raise RuntimeError("Padding value causes wrapping around more than once.")
            positions = positions % n
        index = Tensor._wrap(input.device.xp.asarray(positions), input.device)
        out = out[(slice(None),) * axis + (index,)]
    return out


# -- interpolation ---------------------------------------------------------------------------------------------------
def _source_scale(size: int, out: int, scale_factor: float | None, align_corners: bool) -> float:
    if align_corners:
        return (size - 1) / (out - 1) if out > 1 else 0.0
    return 1.0 / scale_factor if scale_factor else size / out


def _linear_matrix(size: int, out: int, scale_factor: float | None, align_corners: bool) -> np.ndarray:
    """(out, size) weights of linear interpolation, PyTorch's source coordinates (clamped at 0)."""
    scale = _source_scale(size, out, scale_factor, align_corners)
    dst = np.arange(out, dtype=np.float64)
    src = dst * scale if align_corners else np.maximum((dst + 0.5) * scale - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(np.int64), size - 1)
    high = np.minimum(low + 1, size - 1)
    frac = src - low
    m = np.zeros((out, size))
    np.add.at(m, (np.arange(out), low), 1.0 - frac)
    np.add.at(m, (np.arange(out), high), frac)
    return m


def _cubic_matrix(size: int, out: int, scale_factor: float | None, align_corners: bool) -> np.ndarray:
    """(out, size) weights of PyTorch's bicubic (Keys' convolution, A = -0.75, edge taps clamped)."""
    a = -0.75
    scale = _source_scale(size, out, scale_factor, align_corners)
    dst = np.arange(out, dtype=np.float64)
    src = dst * scale if align_corners else (dst + 0.5) * scale - 0.5
    base = np.floor(src).astype(np.int64)
    t = src - base

    def near(x: np.ndarray) -> np.ndarray:
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: np.ndarray) -> np.ndarray:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    m = np.zeros((out, size))
    for offset, weight in zip((-1, 0, 1, 2), (far(t + 1), near(t), near(1 - t), far(2 - t))):
        np.add.at(m, (np.arange(out), np.clip(base + offset, 0, size - 1)), weight)
    return m


_MODE_DIMS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}


def interpolate(input: Tensor, size: int | Sequence[int] | None = None,  # noqa: A002
                scale_factor: float | Sequence[float] | None = None, mode: str = "nearest",
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False) -> Tensor:
    """Resize the spatial dims of (N, C, *spatial) to ``size`` or by ``scale_factor``: "nearest", "nearest-exact",
    "linear"/"bilinear"/"trilinear" (``align_corners``), "bicubic", "area". Each spatial dim is resampled in turn:
    nearest by indexing, the others by a matmul with an (out, in) weight matrix, so gradients are exact."""
    spatial = input.ndim - 2
    if spatial < 1:
        raise ValueError(f"interpolate: expected an (N, C, ...) input with at least one spatial dim, got "
                         f"{input.shape}")
    if (size is None) == (scale_factor is None):
        raise ValueError("only one of size or scale_factor should be defined")
    if mode in _MODE_DIMS and _MODE_DIMS[mode] != spatial:
        raise NotImplementedError(f"Got {input.ndim}D input, but {mode} mode needs {_MODE_DIMS[mode] + 2}D input")
    if mode not in ("nearest", "nearest-exact", "area", *_MODE_DIMS):
        raise NotImplementedError(f"interpolate: mode {mode!r} is not supported")
    if align_corners is not None and mode not in _MODE_DIMS:
        raise ValueError("align_corners option can only be set with the interpolating modes: linear | bilinear | "
                         "bicubic | trilinear")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported")
    in_sizes = input.shape[2:]
    if size is not None:
        out_sizes = _tuple(size, spatial, "size")
        factors: tuple[float | None, ...] = (None,) * spatial
    else:
        factors = tuple(float(f) for f in (scale_factor if isinstance(scale_factor, (list, tuple))
                                           else (scale_factor,) * spatial))
        if len(factors) != spatial:
            raise ValueError(f"scale_factor shape must match input shape. Input is {spatial}D, scale_factor size "
                             f"is {len(factors)}")
        out_sizes = tuple(int(math.floor(n * f)) for n, f in zip(in_sizes, factors))
        if recompute_scale_factor:
            factors = (None,) * spatial
    if mode == "area":
        x = input
        for i, (n, o) in enumerate(zip(in_sizes, out_sizes)):
            x = _along(x, 2 + i, _adaptive_matrix(n, o))
        return x
    x = input if mode.startswith("nearest") or dtypes.is_floating(input.dtype) else input.float()
    for i, (n, o, f) in enumerate(zip(in_sizes, out_sizes, factors)):
        if o <= 0:
            raise RuntimeError(f"interpolate: output size {out_sizes} must be greater than 0")
        if mode.startswith("nearest"):
            # PyTorch computes the source index in float32: floor(dst * scale), or floor((dst + 0.5) * scale)
            scale = np.float32(1.0 / f if f else n / o)
            dst = np.arange(o, dtype=np.float32) + (np.float32(0.5) if mode == "nearest-exact" else 0)
            src = np.minimum(np.floor(dst * scale).astype(np.int64), n - 1)
            x = x[(slice(None),) * (2 + i) + (Tensor._wrap(x.device.xp.asarray(src), x.device),)]
        else:
            build = _cubic_matrix if mode == "bicubic" else _linear_matrix
            x = _along(x, 2 + i, build(n, o, f, bool(align_corners)))
    return x


def upsample(input: Tensor, size: int | Sequence[int] | None = None,  # noqa: A002
             scale_factor: float | Sequence[float] | None = None, mode: str = "nearest",
             align_corners: bool | None = None) -> Tensor:
    """The old name of :func:`interpolate`."""
    return interpolate(input, size, scale_factor, mode, align_corners)


# -- attention -----------------------------------------------------------------------------------------------------
def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(q k^T scale + mask) v over (..., L, E) queries, (..., S, E) keys and (..., S, Ev) values, one fused
    primitive (``ops.ScaledDotProductAttention``). ``scale`` defaults to 1 / sqrt(E). ``attn_mask``: bool (True =
    may attend) or float (added to the scores), broadcast to (..., L, S). ``is_causal``: query i attends to keys
    0..i. ``dropout_p``: dropout on the attention weights (pass 0.0 in eval). ``enable_gqa``: key/value heads
    (dim -3) are repeated to match the query heads."""
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise ShapeError(f"scaled_dot_product_attention: query {query.shape}, key {key.shape} and value {value.shape}"
                         " need at least 2 dims (..., L, E)")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ShapeError(f"scaled_dot_product_attention: query {query.shape}, key {key.shape} and value "
                         f"{value.shape} do not fit: expected (..., L, E), (..., S, E), (..., S, Ev)")
    if is_causal and attn_mask is not None:
        raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set when is_causal=True")
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {dropout_p}")
    common = dtypes.result_type(dtypes.result_type(query.dtype, key.dtype), value.dtype)
    if not dtypes.is_floating(common):
        raise RuntimeError(f"scaled_dot_product_attention: expected floating-point query, key and value, got "
                           f"{query.dtype.name}")
    q, k, v = query.cast(common), key.cast(common), value.cast(common)
    if enable_gqa and q.ndim >= 3 and k.shape[-3] != q.shape[-3]:
        if q.shape[-3] % k.shape[-3]:
            raise RuntimeError(f"scaled_dot_product_attention: {q.shape[-3]} query heads are not a multiple of "
                               f"{k.shape[-3]} key/value heads")
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], -3)
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], -3)
    length, source = q.shape[-2], k.shape[-2]
    xp = q.device.xp
    bias = None
    if is_causal:
        allowed = np.tril(np.ones((length, source), dtype=bool))
        bias = Tensor._wrap(xp.asarray(np.where(allowed, 0.0, -np.inf), dtype=common), q.device)
    elif attn_mask is not None:
        if attn_mask.dtype == dtypes.bool_:  # a constant: built off the graph, so no op outputs -inf (NaN tracer)
            bias = Tensor._wrap(xp.where(attn_mask.to(q.device).data, 0.0, -np.inf).astype(common), q.device)
        else:
            bias = attn_mask.cast(common)
    keep = None
    if dropout_p > 0.0:
        shape = tuple(np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])) + (length, source)
        keep = ((rand(*shape, device=q.device) >= dropout_p).data / (1.0 - dropout_p)).astype(common)
    factor = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if bias is None:
        return ops.ScaledDotProductAttention.apply(q, k, v, keep=keep, scale=factor)
    return ops.ScaledDotProductAttention.apply(q, k, v, bias, keep=keep, scale=factor)
