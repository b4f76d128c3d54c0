"""Recurrent layers with PyTorch's parameter names and layout, so state dicts move between the two libraries:
the cells ``RNNCell``, ``GRUCell`` and ``LSTMCell`` (one time step; ``weight_ih``, ``weight_hh``, ``bias_ih``,
``bias_hh``) and the sequence modules ``RNN``, ``LSTM`` and ``GRU`` (stacked, bidirectional, batch_first;
``weight_ih_l0``, ..., ``weight_hh_l1_reverse``)."""
from __future__ import annotations

import math
from typing import Any

from ..autograd import ArgumentError
from ..device import Device
from ..tensor import Tensor, cat, empty, stack, zeros
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
            raise ArgumentError(f"{name}: expected input of shape (N, {self.input_size}) or ({self.input_size},), "
                             f"got {input.shape}")
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        if hx is None:
            h = zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
        else:
            h = hx if batched else hx.unsqueeze(0)
            if h.shape != (x.shape[0], self.hidden_size):
                raise ArgumentError(f"{name}: hidden state of shape {hx.shape} does not fit input of shape "
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


class LSTMCell(_CellBase):
    """Long short-term memory cell, gates in PyTorch's order (i, f, g, o) inside ``weight_ih``/``weight_hh``:

        i, f, g, o = split(x W_ih^T + b_ih + h W_hh^T + b_hh)
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h' = sigmoid(o) * tanh(c')

    ``forward(input, (h, c))`` returns ``(h', c')``; a missing state starts at zeros.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: str | Device | None = None,
                 dtype: Any = None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:  # noqa: A002
        x, h, batched = self._check(input, None if hx is None else hx[0])
        c = zeros(*h.shape, dtype=x.dtype, device=x.device) if hx is None else \
            (hx[1] if batched else hx[1].unsqueeze(0))
        if c.shape != h.shape:
            raise ArgumentError(f"LSTMCell: cell state of shape {hx[1].shape} does not match the hidden state's "
                             f"{hx[0].shape}")
        h, c = _lstm_step(F.linear(x, self.weight_ih, self.bias_ih), h, c, self.weight_hh, self.bias_hh, None)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


# -- multi-step, multi-layer modules: RNN, LSTM, GRU ---------------------------------------------------------------
def _rnn_step(gi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None, relu: bool) -> Tensor:
    pre = gi + F.linear(h, w_hh, b_hh)
    return pre.relu() if relu else pre.tanh()


def _lstm_step(gi: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh: Tensor | None, w_hr: Tensor | None
               ) -> tuple[Tensor, Tensor]:
    i, f, g, o = (gi + F.linear(h, w_hh, b_hh)).chunk(4, -1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    h = o.sigmoid() * c.tanh()
    return (h if w_hr is None else F.linear(h, w_hr)), c


def _gru_step(gi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    input_r, input_z, input_n = gi.chunk(3, -1)
    hidden_r, hidden_z, hidden_n = F.linear(h, w_hh, b_hh).chunk(3, -1)
    reset = (input_r + hidden_r).sigmoid()
    update = (input_z + hidden_z).sigmoid()
    candidate = (input_n + reset * hidden_n).tanh()
    return (1.0 - update) * candidate + update * h


class _RNNBase(Module):
    """Stacked (``num_layers``), optionally ``bidirectional`` recurrent layers over a whole sequence, with
    PyTorch's parameter names (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ``..._reverse``
    for the backward direction, ``weight_hr_l0`` for an LSTM's projection), shapes and registration order, so
    state dicts load both ways. All start as U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).

    Input (L, N, input_size), or (N, L, input_size) with ``batch_first``, or unbatched (L, input_size). The time
    loop does two matmuls per step (input and hidden state); the sequence is kept as a list of per-step tensors
    between layers, so backward stays linear in L. ``dropout`` applies to every layer's output but the last, in
    training mode.
    """

    gates = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: str | Device | None = None, dtype: Any = None):
        super().__init__()
        name = type(self).__name__
        if not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError(f"{name}: num_layers must be a positive int, got {num_layers!r}")
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError(f"{name}: hidden_size must be a positive int, got {hidden_size!r}")
        if isinstance(dropout, bool) or not 0.0 <= float(dropout) <= 1.0:
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an element "
                             "being zeroed")
        if proj_size < 0 or (proj_size and proj_size >= hidden_size):
            raise ValueError(f"{name}: proj_size ({proj_size}) has to be a non-negative int smaller than "
                             f"hidden_size ({hidden_size})")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        directions = 2 if bidirectional else 1
        out_size = proj_size or hidden_size
        for layer in range(num_layers):
            for suffix in ("", "_reverse")[:directions]:
                width = input_size if layer == 0 else out_size * directions
                g = self.gates * hidden_size
                self.register_parameter(f"weight_ih_l{layer}{suffix}",
                                        Parameter(empty(g, width, device=device, dtype=dtype)))
                self.register_parameter(f"weight_hh_l{layer}{suffix}",
                                        Parameter(empty(g, out_size, device=device, dtype=dtype)))
                if bias:
                    self.register_parameter(f"bias_ih_l{layer}{suffix}",
                                            Parameter(empty(g, device=device, dtype=dtype)))
                    self.register_parameter(f"bias_hh_l{layer}{suffix}",
                                            Parameter(empty(g, device=device, dtype=dtype)))
                if proj_size:
                    self.register_parameter(f"weight_hr_l{layer}{suffix}",
                                            Parameter(empty(proj_size, hidden_size, device=device, dtype=dtype)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -bound, bound)

    def _layer_params(self, layer: int, suffix: str) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None,
                                                              Tensor | None]:
        get = lambda stem: getattr(self, f"{stem}_l{layer}{suffix}", None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), get("weight_hr")

    def _initial(self, hx: Tensor | None, batch: int, size: int, like: Tensor, batched: bool, what: str) -> Tensor:
        expected = (self.num_layers * (2 if self.bidirectional else 1), batch, size)
        if hx is None:
            return zeros(*expected, dtype=like.dtype, device=like.device)
        if not batched:
            if hx.ndim != 2:
                raise RuntimeError(f"For unbatched 2-D input, {what} should also be 2-D but got {hx.ndim}-D tensor")
            hx = hx.unsqueeze(1)
        if hx.shape != expected:
            raise RuntimeError(f"Expected {what} size {expected}, got {list(hx.shape)}")
        return hx

    def forward(self, input: Tensor, hx: Any = None) -> tuple[Tensor, Any]:  # noqa: A002 - PyTorch name
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: expected a Tensor input, got {type(input).__name__} (PackedSequence is not "
                            "supported)")
        if input.ndim not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D instead")
        batched = input.ndim == 3
        x = input if batched else input.unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got "
                               f"{x.shape[-1]}")
        length, batch = x.shape[0], x.shape[1]
        lstm = self.gates == 4
        out_size = self.proj_size or self.hidden_size
        if lstm:
            h0, c0 = (None, None) if hx is None else hx
            h0 = self._initial(h0, batch, out_size, x, batched, "hidden state")
            c0 = self._initial(c0, batch, self.hidden_size, x, batched, "cell state")
        else:
            h0 = self._initial(hx, batch, self.hidden_size, x, batched, "hidden")
        directions = 2 if self.bidirectional else 1
        last_h, last_c = [], []
        # Each step's input is its own tensor, and the next layer reads the list of this layer's outputs: slicing
        # one (L, N, ...) tensor per step would make backward add L full-size gradients (quadratic in L).
        steps = [x[t] for t in range(length)]
        for layer in range(self.num_layers):
            outputs = []
            for direction, suffix in enumerate(("", "_reverse")[:directions]):
                w_ih, w_hh, b_ih, b_hh, w_hr = self._layer_params(layer, suffix)
                state = layer * directions + direction
                h = h0[state]
                c = c0[state] if lstm else None
                seq: list[Tensor] = [h] * length
                for t in (range(length) if direction == 0 else range(length - 1, -1, -1)):
                    gi = F.linear(steps[t], w_ih, b_ih)
                    if lstm:
                        h, c = _lstm_step(gi, h, c, w_hh, b_hh, w_hr)
                    elif self.gates == 3:
                        h = _gru_step(gi, h, w_hh, b_hh)
                    else:
                        h = _rnn_step(gi, h, w_hh, b_hh, self.nonlinearity == "relu")
                    seq[t] = h
                outputs.append(seq)
                last_h.append(h)
                last_c.append(c)
            steps = outputs[0] if directions == 1 else [cat(pair, dim=-1) for pair in zip(*outputs)]
            if self.dropout and self.training and layer < self.num_layers - 1:
                steps = [F.dropout(step, self.dropout, True) for step in steps]
        width = out_size * directions
        output = stack(steps) if length else zeros(0, batch, width, dtype=x.dtype, device=x.device)
        if batched and self.batch_first:
            output = output.transpose(0, 1)
        h_n = stack(last_h)
        c_n = stack(last_c) if lstm else None
        if not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if lstm else None
        return (output, (h_n, c_n)) if lstm else (output, h_n)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            text += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if self.bidirectional:
            text += ", bidirectional=True"
        return text


class RNN(_RNNBase):
    """Elman RNN over a sequence: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act = tanh or relu
    (``nonlinearity``). ``forward(input, h_0=None)`` returns ``(output, h_n)``: output (L, N, D * hidden_size) holds
    the last layer's h_t for every t (D = 2 if bidirectional), h_n (num_layers * D, N, hidden_size) the final
    state of every layer and direction."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: str | Device | None = None, dtype: Any = None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0, device,
                         dtype)
        self.nonlinearity = nonlinearity  # (not in the repr, as in PyTorch)


class LSTM(_RNNBase):
    """LSTM over a sequence (the equations of :class:`LSTMCell` at every step, gates i, f, g, o).
    ``forward(input, (h_0, c_0)=None)`` returns ``(output, (h_n, c_n))``. With ``proj_size > 0`` each h_t is
    projected by ``weight_hr_l{k}`` (proj_size, hidden_size), as PyTorch's LSTM with projections."""

    gates = 4

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: str | Device | None = None, dtype: Any = None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size,
                         device, dtype)


class GRU(_RNNBase):
    """GRU over a sequence (the equations of :class:`GRUCell` at every step, gates r, z, n).
    ``forward(input, h_0=None)`` returns ``(output, h_n)``."""

    gates = 3

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: str | Device | None = None, dtype: Any = None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0, device,
                         dtype)
