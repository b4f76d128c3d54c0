"""Activation layers: thin modules around the functions in :mod:`tinygrad_nb.nn.functional`."""
from __future__ import annotations

import warnings
from typing import Any

from .. import dtype as dtypes
from ..device import Device
from ..tensor import Tensor, full
from . import functional as F
from . import init as init_module
from .module import Module
from .parameter import Parameter


class ReLU(Module):
    """max(x, 0)."""

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 - PyTorch name
        return F.relu(input)


class GELU(Module):
    """x * Phi(x), or its tanh approximation with ``approximate="tanh"``."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Tanh(Module):
    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.tanh(input)


class Sigmoid(Module):
    """1 / (1 + e^-x)."""

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.sigmoid(input)


def _legacy_softmax_dim(name: str, ndim: int) -> int:
    """PyTorch's choice when ``dim`` is not given (deprecated there too): 0 for 0-, 1- and 3-d input, else 1."""
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as "
                  "an argument.", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(Module):
    """exp(x_i) / sum_j exp(x_j) along ``dim``."""

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        dim = self.dim if self.dim is not None else _legacy_softmax_dim("softmax", input.ndim)
        return F.softmax(input, dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """x_i - log(sum_j exp(x_j)) along ``dim``."""

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        dim = self.dim if self.dim is not None else _legacy_softmax_dim("log_softmax", input.ndim)
        return F.log_softmax(input, dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


# -- issue 21: the rest of PyTorch's activation modules, each around its function in nn.functional ---------------------
class _Elementwise(Module):
    """An activation with keyword settings: ``forward`` calls ``F.<function>(input, **settings)``; ``inplace`` is
    accepted (PyTorch's signature) and ignored, since the result is always a new tensor."""

    function: str = ""
    settings: tuple[str, ...] = ()

    def __init__(self, inplace: bool = False, **values: object):
        super().__init__()
        self.inplace = inplace
        for name in self.settings:
            setattr(self, name, values[name])

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 - PyTorch name
        return getattr(F, self.function)(input, **{name: getattr(self, name) for name in self.settings})

    def extra_repr(self) -> str:
        parts = [f"{name}={getattr(self, name)}" for name in self.settings]
        return ", ".join(parts + (["inplace=True"] if self.inplace else []))


class SiLU(_Elementwise):
    """x sigmoid(x) (swish)."""

    function = "silu"


class Mish(_Elementwise):
    """x tanh(softplus(x))."""

    function = "mish"


class ReLU6(_Elementwise):
    """min(max(x, 0), 6)."""

    function = "relu6"


class Hardsigmoid(_Elementwise):
    """clamp(x / 6 + 1/2, 0, 1)."""

    function = "hardsigmoid"


class Hardswish(_Elementwise):
    """x hardsigmoid(x)."""

    function = "hardswish"


class SELU(_Elementwise):
    """scale (max(0, x) + min(0, alpha (e^x - 1))), alpha = 1.6733, scale = 1.0507."""

    function = "selu"


class LeakyReLU(_Elementwise):
    """x where x > 0, else negative_slope x."""

    function = "leaky_relu"
    settings = ("negative_slope",)

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__(inplace, negative_slope=negative_slope)


class ELU(_Elementwise):
    """x where x > 0, else alpha (e^x - 1)."""

    function = "elu"
    settings = ("alpha",)

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__(inplace, alpha=alpha)


class CELU(_Elementwise):
    """max(0, x) + min(0, alpha (e^(x / alpha) - 1))."""

    function = "celu"
    settings = ("alpha",)

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__(inplace, alpha=alpha)


class Hardtanh(_Elementwise):
    """x clamped to [min_val, max_val]."""

    function = "hardtanh"
    settings = ("min_val", "max_val")

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        if min_val > max_val:
            raise ValueError(f"Hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})")
        super().__init__(inplace, min_val=min_val, max_val=max_val)


class Threshold(_Elementwise):
    """x where x > threshold, else value."""

    function = "threshold"
    settings = ("threshold", "value")

    def __init__(self, threshold: float, value: float, inplace: bool = False):
        super().__init__(inplace, threshold=threshold, value=value)


class Softplus(_Elementwise):
    """log(1 + e^(beta x)) / beta; x itself where beta x > threshold."""

    function = "softplus"
    settings = ("beta", "threshold")

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__(False, beta=beta, threshold=threshold)


class Hardshrink(_Elementwise):
    """x where |x| > lambd, else 0."""

    function = "hardshrink"
    settings = ("lambd",)

    def __init__(self, lambd: float = 0.5):
        super().__init__(False, lambd=lambd)

    def extra_repr(self) -> str:
        return f"{self.lambd}"


class Softshrink(_Elementwise):
    """x - lambd above lambd, x + lambd below -lambd, else 0."""

    function = "softshrink"
    settings = ("lambd",)

    def __init__(self, lambd: float = 0.5):
        super().__init__(False, lambd=lambd)

    def extra_repr(self) -> str:
        return f"{self.lambd}"


class LogSigmoid(_Elementwise):
    """log(sigmoid(x)), without overflow."""

    function = "logsigmoid"


class Softsign(_Elementwise):
    """x / (1 + |x|)."""

    function = "softsign"


class Tanhshrink(_Elementwise):
    """x - tanh(x)."""

    function = "tanhshrink"


class GLU(_Elementwise):
    """a sigmoid(b) for the two halves (a, b) of ``dim``."""

    function = "glu"
    settings = ("dim",)

    def __init__(self, dim: int = -1):
        super().__init__(False, dim=dim)


class Softmin(Module):
    """softmax(-x) along ``dim``."""

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        dim = self.dim if self.dim is not None else _legacy_softmax_dim("softmin", input.ndim)
        return F.softmin(input, dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class PReLU(Module):
    """x where x > 0, else a x, with a learnable ``weight`` a: one value, or one per channel (dim 1) with
    ``num_parameters=C``; it starts at ``init`` (0.25)."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device: str | Device | None = None,
                 dtype: Any = None):
        super().__init__()
        self.num_parameters = num_parameters
        self.init = init
        self.weight = Parameter(full((num_parameters,), init, device=device,
                                     dtype=dtype if dtype is not None else dtypes.get_default_dtype()))

    def reset_parameters(self) -> None:
        init_module.constant_(self.weight, self.init)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.prelu(input, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"
