"""Convolutions: ``Conv1d``/``Conv2d``/``Conv3d`` and ``ConvTranspose1d``/``ConvTranspose2d`` (built on im2col,
``ops.Unfold``, and its adjoint ``ops.Fold``), plus ``MaxPool2d``; the other pools are in :mod:`.pooling`."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..device import Device
from ..tensor import Tensor, empty
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class Conv2d(Module):
    """2-D convolution (cross-correlation) of (N, C_in, H, W) input with a (C_out, C_in / groups, kh, kw) weight.

    Output size per spatial dim: (size + 2 padding - dilation (kernel - 1) - 1) // stride + 1. Weight and bias
    start as U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = C_in / groups * kh * kw (PyTorch's default).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
                 dilation: int | Sequence[int] = 1, groups: int = 1, bias: bool = True,
                 device: str | Device | None = None, dtype: Any = None):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) must both be "
                             f"divisible by groups ({groups})")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.weight = Parameter(empty(out_channels, in_channels // groups, *self.kernel_size, device=device,
                                      dtype=dtype))
        if bias:
            self.bias = Parameter(empty(out_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.default_layer_init_(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 - PyTorch name
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class MaxPool2d(Module):
    """Maximum over each ``kernel_size`` window of (N, C, H, W) input; ``stride`` defaults to ``kernel_size``.
    ``ceil_mode`` rounds the output size up (a last, partial window); ``return_indices`` also returns each
    maximum's flat index into H * W (for ``MaxUnpool2d``)."""

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
                 padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input: Tensor) -> Tensor | tuple[Tensor, Tensor]:  # noqa: A002
        if not self.ceil_mode and not self.return_indices:  # the call as it was before these options existed
            return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation)
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, " \
               f"dilation={self.dilation}" + (", ceil_mode=True" if self.ceil_mode else "")  # (stored reprs stay)


# -- issue 21: Conv1d, Conv3d and the transposed convolutions, PyTorch's parameters and layout ------------------------
_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _ntuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    out = (int(value),) * n if isinstance(value, int) else tuple(int(v) for v in value)
    if len(out) != n:
        raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    return out


class _ConvNd(Module):
    """Shared by Conv1d/Conv3d and ConvTranspose1d/2d: the weight is (C_out, C_in / groups, *kernel) for a
    convolution and (C_in, C_out / groups, *kernel) for a transposed one (PyTorch's layouts, so state dicts move
    between the libraries); weight and bias start as PyTorch's (U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in from the
    weight's dim 1 times the kernel size)."""

    dims = 0
    transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int], padding: int | Sequence[int] | str, dilation: int | Sequence[int],
                 groups: int, bias: bool, padding_mode: str, output_padding: int | Sequence[int],
                 device: str | Device | None, dtype: Any):
        super().__init__()
        name = type(self).__name__
        if groups <= 0 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must both be "
                             f"divisible by groups ({groups})")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        if self.transposed and padding_mode != "zeros":
            raise ValueError(f"Only 'zeros' padding mode is supported for {name}")
        if isinstance(padding, str):
            if self.transposed or padding not in ("same", "valid"):
                raise ValueError(f"{name}: invalid padding string {padding!r}" +
                                 ("" if self.transposed else ", should be one of {'valid', 'same'}"))
            if padding == "same" and any(s != 1 for s in _ntuple(stride, self.dims, "stride")):
                raise ValueError("padding='same' is not supported for strided convolutions")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _ntuple(kernel_size, self.dims, "kernel_size")
        self.stride = _ntuple(stride, self.dims, "stride")
        self.padding = padding if isinstance(padding, str) else _ntuple(padding, self.dims, "padding")
        self.dilation = _ntuple(dilation, self.dims, "dilation")
        self.output_padding = _ntuple(output_padding, self.dims, "output_padding")
        self.groups = groups
        self.padding_mode = padding_mode
        shape = (in_channels, out_channels // groups) if self.transposed else (out_channels, in_channels // groups)
        self.weight = Parameter(empty(*shape, *self.kernel_size, device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(empty(out_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.default_layer_init_(self.weight, self.bias)

    def _padded(self, input: Tensor) -> tuple[Tensor, Any]:  # noqa: A002
        """Non-zero padding modes pad here (F.pad's order: last dim first) and convolve unpadded; "same" pads
        d (k - 1) per dim, the odd one after, as PyTorch."""
        if self.padding_mode == "zeros" or self.padding == "valid":
            return input, self.padding
        if self.padding == "same":
            totals = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation)]
            pairs = [(total // 2, total - total // 2) for total in totals]
        else:
            pairs = [(size, size) for size in self.padding]
        return F.pad(input, tuple(p for pair in reversed(pairs) for p in pair), mode=self.padding_mode), 0

    def _output_padding(self, input: Tensor, output_size: Sequence[int] | None) -> tuple[int, ...]:  # noqa: A002
        """For a transposed conv given ``output_size``: the output_padding that reaches it (as PyTorch)."""
        if output_size is None:
            return self.output_padding
        wanted = tuple(int(v) for v in output_size)[-self.dims:]
        if len(wanted) != self.dims:
            raise ValueError(f"{type(self).__name__}: output_size must have {self.dims} or {self.dims + 2} elements "
                             f"(got {len(tuple(output_size))})")
        extra = []
        for i, size in enumerate(wanted):
            smallest = ((input.shape[input.ndim - self.dims + i] - 1) * self.stride[i] - 2 * self.padding[i]
                        + self.dilation[i] * (self.kernel_size[i] - 1) + 1)
            largest = smallest + max(self.stride[i], self.dilation[i]) - 1
            if not smallest <= size <= largest:
                raise ValueError(f"requested an output size of {list(wanted)}, but valid sizes range from "
                                 f"{smallest} to {largest} (for an input of {list(input.shape[-self.dims:])})")
            extra.append(size - smallest)
        return tuple(extra)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self.dims:
            text += f", padding={self.padding}"
        if self.dilation != (1,) * self.dims:
            text += f", dilation={self.dilation}"
        if self.output_padding != (0,) * self.dims:
            text += f", output_padding={self.output_padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode}"
        return text


class Conv1d(_ConvNd):
    """1-D convolution (cross-correlation) of (N, C_in, L) or (C_in, L) input with a (C_out, C_in / groups, k)
    weight. Output length (L + 2 padding - dilation (k - 1) - 1) // stride + 1."""

    dims = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
                 dilation: int | Sequence[int] = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device: str | Device | None = None, dtype: Any = None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, 0, device, dtype)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        x, padding = self._padded(input)
        return F.conv1d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


class Conv3d(_ConvNd):
    """3-D convolution of (N, C_in, D, H, W) or (C_in, D, H, W) input with a (C_out, C_in / groups, kd, kh, kw)
    weight."""

    dims = 3

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
                 dilation: int | Sequence[int] = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device: str | Device | None = None, dtype: Any = None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, 0, device, dtype)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        x, padding = self._padded(input)
        return F.conv3d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


class ConvTranspose1d(_ConvNd):
    """The adjoint of Conv1d ("deconvolution") with a (C_in, C_out / groups, k) weight. Output length
    (L - 1) stride - 2 padding + dilation (k - 1) + output_padding + 1; ``forward(input, output_size)`` picks the
    output_padding that gives ``output_size``."""

    dims = 1
    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                 output_padding: int | Sequence[int] = 0, groups: int = 1, bias: bool = True,
                 dilation: int | Sequence[int] = 1, padding_mode: str = "zeros", device: str | Device | None = None,
                 dtype: Any = None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, output_padding, device, dtype)

    def forward(self, input: Tensor, output_size: Sequence[int] | None = None) -> Tensor:  # noqa: A002
        return F.conv_transpose1d(input, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(input, output_size), self.groups, self.dilation)


class ConvTranspose2d(_ConvNd):
    """The adjoint of Conv2d ("deconvolution") of (N, C_in, H, W) input with a (C_in, C_out / groups, kh, kw)
    weight: each input pixel scatters value * weight into its output window. Output size per spatial dim
    (size - 1) stride - 2 padding + dilation (k - 1) + output_padding + 1; ``forward(input, output_size)`` picks the
    output_padding that gives ``output_size``."""

    dims = 2
    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                 output_padding: int | Sequence[int] = 0, groups: int = 1, bias: bool = True,
                 dilation: int | Sequence[int] = 1, padding_mode: str = "zeros", device: str | Device | None = None,
                 dtype: Any = None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, output_padding, device, dtype)

    def forward(self, input: Tensor, output_size: Sequence[int] | None = None) -> Tensor:  # noqa: A002
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(input, output_size), self.groups, self.dilation)
