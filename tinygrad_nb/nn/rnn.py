"""Recurrent cells: ``RNNCell`` and ``GRUCell``, one time step each, with PyTorch's parameter names and layout
(``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``) so state dicts move between the two libraries."""
from __future__ import annotations

import math
from typing import Any

from ..device import Device
from ..tensor import Tensor, empty, zeros
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


class _CellBase(Module):
    """Parameters of a cell with ``gates`` stacked gate blocks, all drawn U(-1/sqrt(hidden), 1/sqrt(hidden))."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, gates: int, device: str | Device | None,
                 dtype: Any):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(empty(gates * hidden_size, input_size, device=device, dtype=dtype))
        self.weight_hh = Parameter(empty(gates * hidden_size, hidden_size, device=device, dtype=dtype))
        if bias:
            self.bias_ih = Parameter(empty(gates * hidden_size, device=device, dtype=dtype))
            self.bias_hh = Parameter(empty(gates * hidden_size, device=device, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for weight in self.parameters():
            init.uniform_(weight, -bound, bound)

    def _check(self, input: Tensor, hx: Tensor | None) -> tuple[Tensor, Tensor, bool]:  # noqa: A002
        """Batch an unbatched (input_size,) step, make a zero hidden state if none is given, check shapes."""
        name = type(self).__name__
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(f"{name}: expected input of shape (N, {self.input_size}) or ({self.input_size},), "
                             f"got {input.shape}")
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        if hx is None:
            h = zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
        else:
            h = hx if batched else hx.unsqueeze(0)
            if h.shape != (x.shape[0], self.hidden_size):
                raise ValueError(f"{name}: hidden state of shape {hx.shape} does not fit input of shape "
                                 f"{input.shape}; expected ({x.shape[0]}, {self.hidden_size})")
        return x, h, batched

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            text += ", bias=False"
        return text


class RNNCell(_CellBase):
    """h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act = tanh or relu."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device: str | Device | None = None, dtype: Any = None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: unknown nonlinearity {nonlinearity!r}; expected 'tanh' or 'relu'")
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:  # noqa: A002 - PyTorch name
        x, h, batched = self._check(input, hx)
        pre = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)
        out = pre.tanh() if self.nonlinearity == "tanh" else pre.relu()
        return out if batched else out.squeeze(0)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text + (f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "tanh" else "")


class GRUCell(_CellBase):
    """Gated recurrent unit, gates in PyTorch's order (r, z, n) inside ``weight_ih``/``weight_hh``:

        r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)
        z = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
        n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
        h' = (1 - z) * n + z * h
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: str | Device | None = None,
                 dtype: Any = None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:  # noqa: A002
        x, h, batched = self._check(input, hx)
        input_r, input_z, input_n = F.linear(x, self.weight_ih, self.bias_ih).chunk(3, 1)
        hidden_r, hidden_z, hidden_n = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, 1)
        reset = (input_r + hidden_r).sigmoid()
        update = (input_z + hidden_z).sigmoid()
        candidate = (input_n + reset * hidden_n).tanh()
        out = (1.0 - update) * candidate + update * h
        return out if batched else out.squeeze(0)
