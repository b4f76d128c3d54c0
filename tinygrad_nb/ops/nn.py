"""Neural-network primitives that are not cheap as compositions: sliding windows for convolution and pooling."""
from __future__ import annotations

from typing import Any

from ..autograd import Context, Function


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class Unfold(Function):
    """im2col: (N, C, H, W) -> (N, C*kh*kw, L), one column per sliding window (``torch.nn.functional.unfold``).

    Backward (col2im) adds every column back to the window it came from: a loop over the kh*kw kernel offsets, each a
    strided add over the whole batch.
    """

    @staticmethod
    def forward(ctx: Context, x: Any, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
                dilation: tuple[int, int]) -> Any:
        xp = ctx.xp
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
        oh, ow = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
        if oh <= 0 or ow <= 0:
            raise ValueError(f"unfold: input {h}x{w} is smaller than the {kh}x{kw} kernel (padding {ph},{pw}, "
                             f"dilation {dh},{dw})")
        padded = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
        ctx.geometry = (x.shape, padded.shape, kernel, stride, padding, dilation, (oh, ow))
        s = padded.strides
        windows = xp.lib.stride_tricks.as_strided(
            padded, shape=(n, c, kh, kw, oh, ow),
            strides=(s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw))
        return windows.reshape(n, c * kh * kw, oh * ow)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, None, None, None, None]:
        xp = ctx.xp
        shape, padded_shape, (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = ctx.geometry
        n, c = shape[0], shape[1]
        cols = g.reshape(n, c, kh, kw, oh, ow)
        dx = xp.zeros(padded_shape, dtype=g.dtype)
        for i in range(kh):
            for j in range(kw):
                dx[:, :, i * dh: i * dh + sh * oh: sh, j * dw: j * dw + sw * ow: sw] += cols[:, :, i, j]
        dx = dx[:, :, ph: padded_shape[2] - ph, pw: padded_shape[3] - pw]
        return dx, None, None, None, None
