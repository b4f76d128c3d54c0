"""PyTorch ops built from the primitives: elementwise math, activations, sorting, gather/scatter, cumulative ops,
shape ops, einsum. Outside the core on purpose (the core stays small); each op is written once here and reached as
``tg.<name>``, as a ``Tensor`` method where PyTorch has one, and (activations) as ``nn.functional.<name>``.

Only ops whose composition would be much slower or numerically worse are primitives (in :mod:`tinygrad_nb.ops`):
sin/cos/erf... (no composition exists), ``Prod``, ``Gather``/``Scatter`` (each other's gradient), ``Softplus`` (no
overflow). Everything here is differentiable through them, with no backward of its own; ops that return indices
(sort, argsort, topk's indices, nonzero, cummax's indices) compute those without a gradient, as PyTorch does.
"""
from __future__ import annotations

import math
import string
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import autograd, ops
from . import dtype as dtypes
from .tensor import MaxResult, Tensor, _axis, _index_arrays, _reduce_args, arange, cat, full, stack, where, zeros

_TORCH_NAMES = {"float32": "Float", "float64": "Double", "float16": "Half", "bfloat16": "BFloat16", "int64": "Long",
                "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool"}


def _torch_name(dtype: Any) -> str:
    return _TORCH_NAMES.get(np.dtype(dtype).name, np.dtype(dtype).name)


def _as_tensor(x: Any, like: Tensor) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(like.device.xp.asarray(x), device=like.device)


def _floating(x: Tensor) -> Tensor:
    """Integer and bool inputs of float functions become the default float dtype, as in PyTorch."""
    return x if dtypes.is_floating(x.dtype) else x.cast(dtypes.get_default_dtype())


def _constant(array: Any, like: Tensor) -> Tensor:
    """A gradient-free tensor on ``like``'s device from a numpy array."""
    return Tensor._wrap(like.device.xp.asarray(array), like.device)


# -- elementwise math ----------------------------------------------------------------------------------------------
def _unary(op: type[autograd.Function]) -> Any:
    def fn(input: Tensor) -> Tensor:  # noqa: A002 - PyTorch's name
        return op.apply(_floating(input))
    fn.__name__ = fn.__qualname__ = op.__name__.lower()
    fn.__doc__ = f"Elementwise {fn.__name__} (``torch.{fn.__name__}``); its derivative is in ``ops.pointwise``."
    return fn


sin, cos, tan, asin, acos, atan = (_unary(o) for o in (ops.Sin, ops.Cos, ops.Tan, ops.Asin, ops.Acos, ops.Atan))
sinh, cosh, asinh, acosh, atanh = (_unary(o) for o in (ops.Sinh, ops.Cosh, ops.Asinh, ops.Acosh, ops.Atanh))
log1p, expm1, log2, log10, exp2 = (_unary(o) for o in (ops.Log1p, ops.Expm1, ops.Log2, ops.Log10, ops.Exp2))
erf, erfc, erfinv = (_unary(o) for o in (ops.Erf, ops.Erfc, ops.Erfinv))
arcsin, arccos, arctan, arcsinh, arccosh, arctanh = asin, acos, atan, asinh, acosh, atanh


def atan2(input: Tensor, other: Tensor | float) -> Tensor:  # noqa: A002
    """The angle of the point (other, input) in (-pi, pi]; gradients x / r^2 and -y / r^2."""
    return _floating(input)._binary(ops.Atan2, _floating(other) if isinstance(other, Tensor) else other)


arctan2 = atan2


def _integer_or_float_binary(op: type[autograd.Function], a: Any, b: Any) -> Tensor:
    if not isinstance(a, Tensor):
        a = Tensor(b.device.xp.asarray(a, dtype=dtypes.result_type_with_scalar(b.dtype, a)), device=b.device)
    if a.dtype == dtypes.bool_ and (not isinstance(b, Tensor) or b.dtype == dtypes.bool_):
        raise RuntimeError(f"\"{op.__name__.lower()}_cpu\" not implemented for 'Bool'")
    return a._binary(op, b)


def remainder(input: Tensor | float, other: Tensor | float) -> Tensor:  # noqa: A002
    """Python's modulus: input - floor(input / other) * other (the result takes other's sign); integer division by
    zero raises RuntimeError, as in PyTorch."""
    return _integer_or_float_binary(ops.Remainder, input, other)


def fmod(input: Tensor | float, other: Tensor | float) -> Tensor:  # noqa: A002
    """C's fmod: input - trunc(input / other) * other (the result takes input's sign)."""
    return _integer_or_float_binary(ops.Fmod, input, other)


def trunc(input: Tensor) -> Tensor:  # noqa: A002
    """Round toward zero; zero gradient, as ``floor``."""
    step = getattr(input, "_piecewise_constant", None)
    return step("trunc") if step is not None else ops.NoGradOp.apply(input, name="trunc")


fix = trunc


def frac(input: Tensor) -> Tensor:  # noqa: A002
    """input - trunc(input); gradient 1."""
    return input - trunc(input).detach()


def div(input: Tensor, other: Any, *, rounding_mode: str | None = None) -> Tensor:  # noqa: A002
    """input / other; ``rounding_mode="trunc"`` rounds toward zero, ``"floor"`` toward minus infinity (both keep
    integer dtypes and have no gradient)."""
    if rounding_mode is None:
        return input / other
    if rounding_mode == "floor":
        with autograd.no_grad():
            return input // other
    if rounding_mode != "trunc":
        raise RuntimeError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found "
                           f"'{rounding_mode}'")
    if dtypes.is_floating(input.dtype) or (isinstance(other, Tensor) and dtypes.is_floating(other.dtype)) or \
            isinstance(other, float):
        with autograd.no_grad():
            return trunc(input / other)
    with autograd.no_grad():  # exact for integers (trunc of a float quotient is not, beyond 2**53)
        return (input - fmod(input, other)) // other


divide = true_divide = div


def copysign(input: Tensor, other: Tensor | float) -> Tensor:  # noqa: A002
    """|input| with the sign of other (its sign bit: -0.0 counts as negative); d/dinput = sign(input) sign(result)."""
    x = _floating(input)
    o = other if isinstance(other, Tensor) else _as_tensor(other, x)
    negative = ops.NoGradOp.apply(o, name="signbit")
    return where(negative, -x.abs(), x.abs())


def logaddexp(input: Tensor, other: Tensor) -> Tensor:  # noqa: A002
    """log(e^input + e^other), computed as m + log(e^(input-m) + e^(other-m)) with m the larger (held constant)."""
    a, b = _floating(input), _floating(_as_tensor(other, input))
    m = a.detach().maximum(b.detach())
    m = where(m.isfinite(), m, 0.0)
    return ((a - m).exp() + (b - m).exp()).log() + m


def logaddexp2(input: Tensor, other: Tensor) -> Tensor:  # noqa: A002
    """log2(2^input + 2^other)."""
    ln2 = 0.6931471805599453  # a literal, not math.log(2): portable mode takes no constant from the platform's libm
    return logaddexp(_floating(input) * ln2, _floating(_as_tensor(other, input)) * ln2) / ln2


def lerp(input: Tensor, end: Tensor, weight: Tensor | float) -> Tensor:  # noqa: A002
    """input + weight (end - input)."""
    return input + weight * (end - input)


def hypot(input: Tensor, other: Tensor) -> Tensor:  # noqa: A002
    """sqrt(input^2 + other^2)."""
    return (input * input + other * other).sqrt()


def isclose(input: Tensor, other: Tensor | float, rtol: float = 1e-05, atol: float = 1e-08,  # noqa: A002
            equal_nan: bool = False) -> Tensor:
    """|input - other| <= atol + rtol |other| elementwise (bool, no gradient)."""
    return ops.NoGradOp.apply(input, other.data if isinstance(other, Tensor) else other, name="isclose", rtol=rtol,
                              atol=atol, equal_nan=equal_nan)


def allclose(input: Tensor, other: Tensor | float, rtol: float = 1e-05, atol: float = 1e-08,  # noqa: A002
             equal_nan: bool = False) -> bool:
    """True when every element is :func:`isclose`."""
    return bool(isclose(input, other, rtol, atol, equal_nan).all())


# -- logical and bitwise (no gradient) ------------------------------------------------------------------------------
def _logical(name: str) -> Any:
    def fn(input: Tensor, other: Any) -> Tensor:  # noqa: A002
        return ops.NoGradOp.apply(input, other.data if isinstance(other, Tensor) else other, name=name)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise {name.replace('_', ' ')} of the truth values (a bool tensor)."
    return fn


logical_and, logical_or, logical_xor = _logical("logical_and"), _logical("logical_or"), _logical("logical_xor")


def logical_not(input: Tensor) -> Tensor:  # noqa: A002
    """Elementwise not of the truth values (a bool tensor)."""
    return ops.NoGradOp.apply(input, name="logical_not")


def _check_integral(name: str, *values: Any) -> None:
    for v in values:
        if isinstance(v, Tensor) and v.dtype.kind not in "iub" or isinstance(v, float):
            kind = _torch_name(v.dtype) if isinstance(v, Tensor) else "Float"
            raise RuntimeError(f"\"{name}_cpu\" not implemented for '{kind}'")


def _bitwise(name: str, xp_name: str) -> Any:
    def fn(input: Tensor, other: Any) -> Tensor:  # noqa: A002
        _check_integral(name, input, other)
        if isinstance(other, Tensor) and other.dtype != input.dtype:
            common = dtypes.result_type(input.dtype, other.dtype)
            input, other = input.cast(common), other.cast(common)
        return ops.NoGradOp.apply(input, other.data if isinstance(other, Tensor) else other, name=xp_name)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise {name.replace('_', ' ')} of integers (or bools)."
    return fn


bitwise_and, bitwise_or = _bitwise("bitwise_and", "bitwise_and"), _bitwise("bitwise_or", "bitwise_or")
bitwise_xor = _bitwise("bitwise_xor", "bitwise_xor")
bitwise_left_shift = _bitwise("bitwise_left_shift", "left_shift")
bitwise_right_shift = _bitwise("bitwise_right_shift", "right_shift")


def bitwise_not(input: Tensor) -> Tensor:  # noqa: A002
    """~input for integers (logical not for bools)."""
    _check_integral("bitwise_not", input)
    return ops.NoGradOp.apply(input, name="logical_not" if input.dtype == dtypes.bool_ else "invert")


# -- activations (also nn.functional.<name>) -------------------------------------------------------------------------
def silu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """x sigmoid(x) (also called swish)."""
    return input * input.sigmoid()


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:  # noqa: A002
    """log(1 + e^(beta x)) / beta, and x itself where beta x > threshold (as PyTorch)."""
    x = _floating(input)
    soft = ops.Softplus.apply(x * beta if beta != 1 else x)
    soft = soft / beta if beta != 1 else soft
    return where((x * beta).detach() > threshold, x, soft)


def mish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """x tanh(softplus(x))."""
    x = _floating(input)
    return x * ops.Softplus.apply(x).tanh()


def logsigmoid(input: Tensor) -> Tensor:  # noqa: A002
    """log(sigmoid(x)) = -softplus(-x), without overflow."""
    return -ops.Softplus.apply(-_floating(input))


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:  # noqa: A002
    """x where x > 0, else negative_slope x."""
    return where(input > 0, input, input * negative_slope)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:  # noqa
    """x clamped to [min_val, max_val]."""
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    return input.clamp(min_val, max_val)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """min(max(x, 0), 6)."""
    return input.clamp(0.0, 6.0)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """clamp(x / 6 + 1/2, 0, 1)."""
    return (input / 6 + 0.5).clamp(0.0, 1.0)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """x hardsigmoid(x) = x clamp(x + 3, 0, 6) / 6."""
    return input * ((input + 3).clamp(0.0, 6.0) / 6)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    """x where x > 0, else alpha (e^x - 1). (expm1 sees min(x, 0), so a large x never makes an inf that the
    unused branch's gradient would turn into NaN.)"""
    return where(input > 0, input, input.clamp(max=0.0).expm1() * alpha)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    """max(0, x) + min(0, alpha (e^(x / alpha) - 1))."""
    return where(input > 0, input, (input.clamp(max=0.0) / alpha).expm1() * alpha)


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def selu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """scale * elu(x, alpha) with the self-normalising constants alpha = 1.6733, scale = 1.0507."""
    return elu(input, _SELU_ALPHA) * _SELU_SCALE


def softsign(input: Tensor) -> Tensor:  # noqa: A002
    """x / (1 + |x|)."""
    return input / (input.abs() + 1)


def tanhshrink(input: Tensor) -> Tensor:  # noqa: A002
    """x - tanh(x)."""
    return input - input.tanh()


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:  # noqa: A002
    """x where |x| > lambd, else 0."""
    return where(input.abs() > lambd, input, 0.0)


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:  # noqa: A002
    """x - lambd above lambd, x + lambd below -lambd, else 0."""
    return where(input > lambd, input - lambd, where(input < -lambd, input + lambd, 0.0))


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:  # noqa: A002
    """x where x > threshold, else value."""
    return where(input > threshold, input, value)


def glu(input: Tensor, dim: int = -1) -> Tensor:  # noqa: A002
    """a sigmoid(b) for the two halves (a, b) of ``dim``."""
    if input.shape[_axis(dim, input.ndim)] % 2:
        raise RuntimeError(f"Halving dimension must be even, but dimension {_axis(dim, input.ndim)} is size "
                           f"{input.shape[_axis(dim, input.ndim)]}")
    a, b = input.chunk(2, dim)
    return a * b.sigmoid()


def softmin(input: Tensor, dim: int = -1) -> Tensor:  # noqa: A002
    """softmax(-x)."""
    return (-input).softmax(dim)


def prelu(input: Tensor, weight: Tensor) -> Tensor:  # noqa: A002
    """x where x > 0, else weight x (weight per channel, dim 1, or one value)."""
    w = weight.reshape((1, -1) + (1,) * (input.ndim - 2)) if weight.numel() > 1 and input.ndim >= 2 else weight
    return where(input > 0, input, input * w)


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:  # noqa: A002
    """x / max(||x||_p, eps) along ``dim``."""
    return input / norm(input, p, dim, keepdim=True).clamp(min=eps)


# -- reductions -------------------------------------------------------------------------------------------------------
def prod(input: Tensor, dim: int | None = None, keepdim: bool = False, *, dtype: Any = None,  # noqa: A002
         axis: int | None = None, keepdims: bool | None = None) -> Tensor:
    """Product over ``dim`` (None: all); integers and bools multiply as int64; exact gradient also at zeros."""
    axes, keep = _reduce_args(input, dim, keepdim, axis, keepdims)
    x = input.cast(dtype) if dtype is not None else input
    if not dtypes.is_floating(x.dtype):
        x = x.cast(dtypes.int64)
    return ops.Prod.apply(x, axes, keep)


def norm(input: Tensor, p: float | str = 2.0, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """The vector p-norm over ``dim`` (None: all elements); ``p`` may be inf, -inf, 0 or "fro" (= 2). The 2-norm's
    gradient at a zero vector is 0 (as PyTorch), not NaN."""
    x = _floating(input)
    if p == "fro":
        p = 2.0
    if p == math.inf:
        return x.abs().amax(dim, keepdim)
    if p == -math.inf:
        return x.abs().amin(dim, keepdim)
    if p == 0:
        return (x != 0).cast(x.dtype).sum(dim, keepdim)
    if p == 1:
        return x.abs().sum(dim, keepdim)
    powered = (x * x) if p == 2 else x.abs() ** p
    total = powered.sum(dim, keepdim)
    positive = total.detach() > 0
    safe = where(positive, total, 1.0)  # the root's gradient is infinite at 0: route it through 1 there
    return where(positive, safe.sqrt() if p == 2 else safe ** (1.0 / p), 0.0)


def std_mean(input: Tensor, dim: Any = None, keepdim: bool = False, *, correction: int = 1,  # noqa: A002
             unbiased: bool | None = None) -> tuple[Tensor, Tensor]:
    """(std, mean) over ``dim``."""
    return input.std(dim, keepdim, correction=correction, unbiased=unbiased), input.mean(dim, keepdim)


def var_mean(input: Tensor, dim: Any = None, keepdim: bool = False, *, correction: int = 1,  # noqa: A002
             unbiased: bool | None = None) -> tuple[Tensor, Tensor]:
    """(var, mean) over ``dim``."""
    return input.var(dim, keepdim, correction=correction, unbiased=unbiased), input.mean(dim, keepdim)


def _scan_axis(input: Tensor, dim: Any, axis: Any, name: str) -> int:
    d = axis if dim is None else dim
    if d is None:
        raise TypeError(f"{name}() missing required argument 'dim'")
    return _axis(d, input.ndim)


_SCAN_BLOCK = 64


def _blocked_scan(x: Tensor, dim: int, within: Any, combine: Any) -> Tensor:
    """A running reduction along ``dim`` in blocks of 64: ``within(block)`` scans each block exactly over a masked
    (64, 64) grid of its prefixes, and ``combine(carry, scanned)`` folds in the previous block's last value. O(64 n)
    work and memory instead of a grid over the whole dim, and every step a differentiable composition."""
    moved = x.movedim(dim, -1)
    n = moved.shape[-1]
    pieces, carry = [], None
    for start in range(0, n, _SCAN_BLOCK):
        block = moved[..., start:start + _SCAN_BLOCK]
        size = block.shape[-1]
        prefixes = _constant(np.tril(np.ones((size, size), dtype=bool)), x)  # row i selects the prefix ending at i
        part = within(block.unsqueeze(-2), prefixes)
        part = part if carry is None else combine(carry, part)
        pieces.append(part)
        carry = part[..., -1:]
    return (pieces[0] if len(pieces) == 1 else cat(pieces, -1)).movedim(-1, dim)


def cumprod(input: Tensor, dim: int | None = None, *, dtype: Any = None, axis: int | None = None) -> Tensor:  # noqa
    """Running product along ``dim``: masked :func:`prod` over the prefixes of each block (see
    :func:`_blocked_scan`), so the gradient is exact also at zeros (no division)."""
    d = _scan_axis(input, dim, axis, "cumprod")
    x = input.cast(dtype) if dtype is not None else input
    if not dtypes.is_floating(x.dtype):
        x = x.cast(dtypes.int64)
    if x.ndim == 0 or x.shape[d] == 0:
        return x + 0
    one = Tensor._wrap(x.device.xp.ones((), dtype=x.dtype), x.device)
    return _blocked_scan(x, d, lambda rows, keep: ops.Prod.apply(where(keep, rows, one), (rows.ndim - 1,), False),
                         lambda carry, part: carry * part)


def logcumsumexp(input: Tensor, dim: int | None = None, *, axis: int | None = None) -> Tensor:  # noqa: A002
    """log(cumsum(exp(x))) along ``dim``, stable at any magnitude: a logsumexp over the prefixes of each block,
    then logaddexp with the previous block's total (see :func:`_blocked_scan`)."""
    d = _scan_axis(input, dim, axis, "logcumsumexp")
    x = _floating(input)
    if x.ndim == 0 or x.shape[d] == 0:
        return x + 0
    return _blocked_scan(x, d, lambda rows, keep: where(keep, rows, -math.inf).logsumexp(-1), logaddexp)


def _accumulate(xp: Any, name: str, data: Any) -> Any:
    """``xp.<name>.accumulate`` along the last axis (a loop over it where the array module has none)."""
    try:
        return getattr(xp, name).accumulate(data, axis=-1)
    except (AttributeError, NotImplementedError):
        out = data.copy()
        for i in range(1, data.shape[-1]):
            out[..., i] = getattr(xp, name)(out[..., i - 1], data[..., i])
        return out


def _cumulative_extreme(input: Tensor, dim: Any, axis: Any, name: str) -> MaxResult:
    d = _scan_axis(input, dim, axis, name)
    if input.ndim == 0:
        return MaxResult(input + 0, zeros((), dtype=dtypes.int64, device=input.device))
    xp = input.device.xp
    data = xp.moveaxis(input.data, d, -1)
    running = _accumulate(xp, "maximum" if name == "cummax" else "minimum", data)
    positions = xp.broadcast_to(xp.arange(data.shape[-1]), data.shape)
    hit = (data == running) | (xp.isnan(data) if data.dtype.kind == "f" else False)
    # the latest position holding the running extreme, as PyTorch (ties and NaN: the later index)
    last = _accumulate(xp, "maximum", xp.where(hit, positions, 0))
    indices = Tensor._wrap(xp.ascontiguousarray(xp.moveaxis(last, -1, d)).astype(xp.int64), input.device)
    return MaxResult(gather(input, d, indices), indices)


def cummax(input: Tensor, dim: int | None = None, *, axis: int | None = None) -> MaxResult:  # noqa: A002
    """(values, indices): the running maximum along ``dim`` and where it was attained; gradient to that element."""
    return _cumulative_extreme(input, dim, axis, "cummax")


def cummin(input: Tensor, dim: int | None = None, *, axis: int | None = None) -> MaxResult:  # noqa: A002
    """(values, indices): the running minimum along ``dim``."""
    return _cumulative_extreme(input, dim, axis, "cummin")


# -- sorting -----------------------------------------------------------------------------------------------------
SortResult = MaxResult  # (values, indices), as torch.return_types.sort


def argsort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:  # noqa: A002
    """Indices that sort ``input`` along ``dim`` (always a stable sort; NaN sorts as the largest value)."""
    if input.ndim == 0:
        _axis(dim, 0)
        return zeros((), dtype=dtypes.int64, device=input.device)
    d = _axis(dim, input.ndim)
    if not descending:
        return ops.NoGradOp.apply(input, name="argsort", axis=d, kind="stable").long()
    # descending and stable: sort the reversed sequence ascending, reverse the result and map positions back
    n = input.shape[d]
    flipped = flip(input.detach(), (d,))
    order = ops.NoGradOp.apply(flipped, name="argsort", axis=d, kind="stable")
    return (n - 1) - flip(order, (d,)).long()


def sort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> SortResult:  # noqa: A002
    """(values, indices) sorted along ``dim``; the gradient goes back to each value's original position."""
    indices = argsort(input, dim, descending)
    if input.ndim == 0:
        return SortResult(input + 0, indices)
    return SortResult(gather(input, dim, indices), indices)


def msort(input: Tensor) -> Tensor:  # noqa: A002
    """Sorted along dim 0."""
    return sort(input, 0).values


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> SortResult:  # noqa
    """(values, indices) of the k largest (or smallest) elements along ``dim``, in order."""
    d = _axis(dim, max(input.ndim, 1))
    size = input.shape[d] if input.ndim else 1
    if not 0 <= k <= size:
        raise RuntimeError(f"selected index k out of range: k={k} but dimension {d} has size {size}")
    values, indices = sort(input, d, descending=largest)
    if input.ndim == 0:
        return SortResult(values, indices)
    index = (slice(None),) * d + (slice(0, k),)
    return SortResult(values[index], indices[index])


def kthvalue(input: Tensor, k: int, dim: int = -1, keepdim: bool = False) -> SortResult:  # noqa: A002
    """(value, index) of the k-th smallest element (k counts from 1) along ``dim``."""
    d = _axis(dim, max(input.ndim, 1))
    values, indices = sort(input, d)
    if not 1 <= k <= (input.shape[d] if input.ndim else 1):
        raise RuntimeError(f"kthvalue(): selected number k out of range for dimension {d}")
    if input.ndim == 0:
        return SortResult(values, indices)
    index = (slice(None),) * d + (slice(k - 1, k),)
    values, indices = values[index], indices[index]
    return SortResult(values, indices) if keepdim else SortResult(values.squeeze(d), indices.squeeze(d))


# -- gather, scatter, masks -----------------------------------------------------------------------------------------
def _index_for(name: str, input: Tensor, dim: int, index: Tensor, limit: int | None = None) -> tuple[int, Any]:
    """PyTorch's checks of an index tensor for gather/scatter; returns (axis, index array on input's device)."""
    d = _axis(dim, max(input.ndim, 1))
    if not isinstance(index, Tensor) or index.dtype != dtypes.int64:
        got = _torch_name(index.dtype) if isinstance(index, Tensor) else type(index).__name__
        raise RuntimeError(f"{name}(): Expected dtype int64 for index, got {got}")
    if index.ndim != input.ndim:
        which = "input" if name == "gather" else "self"
        raise RuntimeError(f"Index tensor must have the same number of dimensions as {which} tensor "
                           f"(index shape {index.shape}, input shape {input.shape})")
    for i, (n, m) in enumerate(zip(index.shape, input.shape)):
        if i != d and n > m:
            raise RuntimeError(f"Size does not match at dimension {i} expected index {index.shape} to be no larger "
                               f"than self {input.shape} apart from dimension {d}")
    array = _index_arrays(index, input)
    if array.size:
        low, high = int(array.min()), int(array.max())
        size = input.shape[d] if input.ndim else 1
        if low < 0 or high >= size:
            raise RuntimeError(f"index {low if low < 0 else high} is out of bounds for dimension {d} with size {size}")
    return d, array


def gather(input: Tensor, dim: int, index: Tensor) -> Tensor:  # noqa: A002
    """out[i][j][k] = input[index[i][j][k]][j][k] for dim 0 (and so on); index may be smaller than input in the
    other dims. The gradient adds back into the gathered positions."""
    d, array = _index_for("gather", input, dim, index)
    if input.ndim == 0:
        return input + 0
    return ops.Gather.apply(input, array, d)


def take_along_dim(input: Tensor, indices: Tensor, dim: int | None = None) -> Tensor:  # noqa: A002
    """numpy's take_along_axis: gather with index broadcast against input (dim None: the flattened input)."""
    if dim is None:
        return gather(input.reshape(-1), 0, indices.reshape(-1))
    d = _axis(dim, input.ndim)
    shape = tuple(max(a, b) if i != d else b for i, (a, b) in enumerate(zip(input.shape, indices.shape)))
    return gather(input.expand(shape[:d] + (input.shape[d],) + shape[d + 1:]), d, indices.expand(shape))


_REDUCE_NAMES = {"add": "sum", "sum": "sum", "multiply": "prod", "prod": "prod", "mean": "mean", "amax": "amax",
                 "amin": "amin"}


def _scatter(input: Tensor, dim: int, index: Tensor, src: Any, reduce: str | None, include_self: bool,
             name: str) -> tuple[Tensor, tuple[Any, ...], dict[str, Any]]:
    d, array = _index_for(name, input, dim, index)
    if not isinstance(src, Tensor):
        src = full(index.shape, src, dtype=input.dtype, device=input.device)
    elif src.dtype != input.dtype:
        raise RuntimeError(f"{name}(): Expected self.dtype to be equal to src.dtype")
    elif src.ndim != input.ndim or any(n > m for n, m in zip(index.shape, src.shape)):
        raise RuntimeError(f"{name}(): index {index.shape} must be no larger than src {src.shape} in every dimension")
    if reduce is not None and reduce not in _REDUCE_NAMES:
        raise RuntimeError(f"{name}(): reduce argument must be either sum, prod, mean, amax or amin, got {reduce}")
    return src, (array, src, d), {"reduce": _REDUCE_NAMES.get(reduce), "include_self": include_self}


def scatter(input: Tensor, dim: int, index: Tensor, src: Any = None, *, value: Any = None,  # noqa: A002
            reduce: str | None = None) -> Tensor:
    """A copy of input with src (a tensor, or a number ``value``) written at index along dim:
    out[index[i][j]][j] = src[i][j] for dim 0. ``reduce="add"``/``"multiply"`` combine instead of overwrite."""
    if (src is None) == (value is None):
        raise TypeError("scatter(): give exactly one of src and value")
    _, args, kwargs = _scatter(input, dim, index, src if src is not None else value, reduce, True, "scatter")
    return ops.Scatter.apply(input, *args, **kwargs)


def scatter_add(input: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:  # noqa: A002
    """out = input with src added at index along dim (repeated indices accumulate)."""
    return scatter_reduce(input, dim, index, src, "sum")


def scatter_reduce(input: Tensor, dim: int, index: Tensor, src: Tensor, reduce: str,  # noqa: A002
                   *, include_self: bool = True) -> Tensor:
    """Reduce src into input at index along dim with "sum", "prod", "mean", "amax" or "amin"; include_self=False
    leaves input's own value out wherever something is written. Gradients as in PyTorch (amax/amin: ties share)."""
    if reduce not in ("sum", "prod", "mean", "amax", "amin"):
        raise RuntimeError(f"reduce argument must be either sum, prod, mean, amax or amin, got {reduce}")
    _, args, kwargs = _scatter(input, dim, index, src, reduce, include_self, "scatter_reduce")
    return ops.Scatter.apply(input, *args, **kwargs)


def _scatter_inplace(self: Tensor, dim: int, index: Tensor, src: Any, reduce: str | None,
                     include_self: bool = True) -> Tensor:
    _, args, kwargs = _scatter(self, dim, index, src, reduce, include_self, "scatter_")
    return self._inplace(ops.Scatter, *args, **kwargs)


def scatter_(self: Tensor, dim: int, index: Tensor, src: Any = None, *, value: Any = None,
             reduce: str | None = None) -> Tensor:
    """In-place :func:`scatter`."""
    return _scatter_inplace(self, dim, index, src if src is not None else value, reduce)


def scatter_add_(self: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """In-place :func:`scatter_add`."""
    return _scatter_inplace(self, dim, index, src, "sum")


def scatter_reduce_(self: Tensor, dim: int, index: Tensor, src: Tensor, reduce: str, *,
                    include_self: bool = True) -> Tensor:
    """In-place :func:`scatter_reduce`."""
    return _scatter_inplace(self, dim, index, src, reduce, include_self)


def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:  # noqa: A002
    """The slices of ``dim`` at ``index`` (a 1-D integer tensor), in that order."""
    if index.ndim > 1:
        raise RuntimeError("index_select(): Index is supposed to be a vector")
    d = _axis(dim, max(input.ndim, 1))
    return input[(slice(None),) * d + (index.reshape(-1),)]


def masked_fill(input: Tensor, mask: Tensor, value: Any) -> Tensor:  # noqa: A002
    """input with ``value`` (a number or a 0-d tensor) where ``mask`` (bool, broadcast) is True; input's dtype."""
    if mask.dtype != dtypes.bool_:
        raise RuntimeError("masked_fill_ only supports boolean masks, but got mask with dtype "
                           f"{_torch_name(mask.dtype)}")
    if isinstance(value, Tensor):
        if value.ndim:
            raise RuntimeError(f"masked_fill_ only supports a 0-dimensional value tensor, but got tensor with "
                               f"{value.ndim} dimension(s).")
        return where(mask, value.cast(input.dtype), input)
    return where(mask, Tensor._wrap(input.device.xp.asarray(value, dtype=input.dtype), input.device), input)


def masked_fill_(self: Tensor, mask: Tensor, value: Any) -> Tensor:
    """In-place :func:`masked_fill`."""
    if mask.dtype != dtypes.bool_:
        raise RuntimeError("masked_fill_ only supports boolean masks, but got mask with dtype "
                           f"{_torch_name(mask.dtype)}")
    self[mask.expand(self.shape) if mask.shape != self.shape else mask] = value
    return self


def masked_select(input: Tensor, mask: Tensor) -> Tensor:  # noqa: A002
    """The elements where ``mask`` (broadcast with input) is True, as a 1-D tensor."""
    if mask.dtype != dtypes.bool_:
        raise RuntimeError(f"masked_select: expected BoolTensor for mask, got {_torch_name(mask.dtype)}")
    shape = tuple(np.broadcast_shapes(input.shape, mask.shape))
    return input.expand(shape)[mask.expand(shape)]


def nonzero(input: Tensor, *, as_tuple: bool = False) -> Tensor | tuple[Tensor, ...]:  # noqa: A002
    """(n, ndim) int64 coordinates of the nonzero elements (row-major order); ``as_tuple``: one 1-D tensor per dim."""
    coords = ops.NoGradOp.apply(input.reshape(1) if input.ndim == 0 else input, name="argwhere").long()
    if not as_tuple:
        return coords if input.ndim else coords[:, :0]
    return tuple(coords[:, i] for i in range(max(input.ndim, 1)))


argwhere = nonzero


def count_nonzero(input: Tensor, dim: Any = None) -> Tensor:  # noqa: A002
    """How many elements are nonzero (over ``dim``)."""
    return (input != 0).sum(dim)


# -- shape ops --------------------------------------------------------------------------------------------------------
def movedim(input: Tensor, source: int | Sequence[int], destination: int | Sequence[int]) -> Tensor:  # noqa: A002
    """The dims ``source`` moved to positions ``destination``, the others keeping their order."""
    src = [source] if isinstance(source, int) else list(source)
    dst = [destination] if isinstance(destination, int) else list(destination)
    if len(src) != len(dst):
        raise RuntimeError(f"movedim: Invalid source or destination dims: source ({src} dims) should contain the "
                           f"same number of dims as destination ({dst} dims)")
    src = [_axis(s, input.ndim) for s in src]
    dst = [_axis(s, input.ndim) for s in dst]
    order = [i for i in range(input.ndim) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return input if order == list(range(input.ndim)) else input.permute(order)


moveaxis = movedim


def swapaxes(input: Tensor, axis0: int, axis1: int) -> Tensor:  # noqa: A002
    """transpose(axis0, axis1)."""
    return input.transpose(axis0, axis1)


swapdims = swapaxes


def narrow(input: Tensor, dim: int, start: int, length: int) -> Tensor:  # noqa: A002
    """input[..., start:start + length, ...] along ``dim`` (a view)."""
    d = _axis(dim, input.ndim)
    start = start + input.shape[d] if start < 0 else start
    if start < 0 or start + length > input.shape[d] or length < 0:
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({input.shape[d]}).")
    return input[(slice(None),) * d + (slice(start, start + length),)]


def flip(input: Tensor, dims: int | Sequence[int]) -> Tensor:  # noqa: A002
    """The order of elements reversed along each of ``dims`` (a view)."""
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    axes = [_axis(d, input.ndim) for d in dims]
    if len(set(axes)) != len(axes):
        raise RuntimeError(f"dims has duplicates, original flip dims size={len(axes)}, but unique flip dims "
                           f"size={len(set(axes))}")
    if input.ndim == 0 or not axes:
        return input + 0 if input.ndim == 0 else input
    return input[tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(input.ndim))]


def fliplr(input: Tensor) -> Tensor:  # noqa: A002
    """Reversed along dim 1."""
    if input.ndim < 2:
        raise RuntimeError("Input must be >= 2-d.")
    return flip(input, 1)


def flipud(input: Tensor) -> Tensor:  # noqa: A002
    """Reversed along dim 0."""
    if input.ndim < 1:
        raise RuntimeError("Input must be >= 1-d.")
    return flip(input, 0)


def roll(input: Tensor, shifts: int | Sequence[int], dims: int | Sequence[int] | None = None) -> Tensor:  # noqa
    """Elements shifted cyclically by ``shifts`` along ``dims`` (None: along the flattened tensor, shape kept)."""
    if dims is None:
        if not isinstance(shifts, int) and len(shifts) != 1:
            raise RuntimeError("roll: shifts must be one int when dims is not given")
        s = shifts if isinstance(shifts, int) else shifts[0]
        return roll(input.reshape(-1), s, 0).reshape(input.shape)
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if len(shifts) != len(dims):
        raise RuntimeError(f"shifts and dimensions must align. shifts: {len(shifts)}, dims:{len(dims)}")
    out = input
    for s, d in zip(shifts, dims):
        d = _axis(d, out.ndim)
        n = out.shape[d]
        if n == 0 or s % n == 0:
            continue
        cut = n - s % n
        head = (slice(None),) * d
        out = cat([out[head + (slice(cut, None),)], out[head + (slice(0, cut),)]], d)
    return out


def rot90(input: Tensor, k: int = 1, dims: Sequence[int] = (0, 1)) -> Tensor:  # noqa: A002
    """Rotated by 90 degrees k times in the plane of ``dims`` (from the first towards the second)."""
    a, b = (_axis(d, input.ndim) for d in dims)
    k %= 4
    if k == 1:
        return flip(input, b).transpose(a, b)
    if k == 2:
        return flip(input, (a, b))
    if k == 3:
        return flip(input, a).transpose(a, b)
    return input


def _triangular(input: Tensor, diagonal: int, upper: bool) -> Tensor:
    if input.ndim < 2:
        raise RuntimeError(f"{'triu' if upper else 'tril'}: input tensor must have at least 2 dimensions")
    rows, cols = input.shape[-2:]
    keep = (np.triu if upper else np.tril)(np.ones((rows, cols), dtype=bool), diagonal)
    return where(_constant(keep, input), input, zeros((), dtype=input.dtype, device=input.device))


def triu(input: Tensor, diagonal: int = 0) -> Tensor:  # noqa: A002
    """Elements on and above the ``diagonal``-th diagonal of the last two dims; zeros elsewhere."""
    return _triangular(input, diagonal, True)


def tril(input: Tensor, diagonal: int = 0) -> Tensor:  # noqa: A002
    """Elements on and below the ``diagonal``-th diagonal of the last two dims; zeros elsewhere."""
    return _triangular(input, diagonal, False)


def diagonal(input: Tensor, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:  # noqa: A002
    """The diagonal of the (dim1, dim2) planes, as a new last dim (``offset`` > 0: above the main diagonal)."""
    a, b = _axis(dim1, input.ndim), _axis(dim2, input.ndim)
    if a == b:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    x = movedim(input, (a, b), (-2, -1))
    rows, cols = x.shape[-2:]
    start_r, start_c = max(-offset, 0), max(offset, 0)
    n = max(min(rows - start_r, cols - start_c), 0)
    i = arange(n, device=input.device)
    return x[..., i + start_r, i + start_c]


def diag(input: Tensor, diagonal: int = 0) -> Tensor:  # noqa: A002
    """A 1-D input becomes a square matrix with it on the ``diagonal``-th diagonal; a matrix gives its diagonal."""
    if input.ndim == 2:
        return globals()["diagonal"](input, diagonal)
    if input.ndim != 1:
        raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {input.ndim}D")
    n = input.shape[0] + abs(diagonal)
    out = zeros(n, n, dtype=input.dtype, device=input.device)
    i = arange(input.shape[0], device=input.device)
    rows, cols = (i, i + diagonal) if diagonal >= 0 else (i - diagonal, i)
    out[rows, cols] = input
    return out


def diag_embed(input: Tensor) -> Tensor:  # noqa: A002
    """(..., n) -> (..., n, n) with the last dim on the diagonal."""
    n = input.shape[-1]
    return input.unsqueeze(-1) * _constant(np.eye(n, dtype=input.dtype), input)


def meshgrid(*tensors: Tensor | Sequence[Tensor], indexing: str = "ij") -> tuple[Tensor, ...]:
    """Coordinate grids from 1-D tensors: with "ij" output k varies along dim k; "xy" swaps the first two dims."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise RuntimeError(f"torch.meshgrid: indexing must be one of \"xy\" or \"ij\", but received: {indexing}")
    for t in tensors:
        if t.ndim > 1:
            raise RuntimeError(f"torch.meshgrid: Expected 0D or 1D tensor in the tensor list but got: {t.ndim}D")
    flat = [t.reshape(-1) for t in tensors]
    if indexing == "xy" and len(flat) >= 2:
        flat[0], flat[1] = flat[1], flat[0]
    shape = tuple(t.shape[0] for t in flat)
    grids = [t.reshape((1,) * i + (-1,) + (1,) * (len(flat) - i - 1)).expand(shape) for i, t in enumerate(flat)]
    if indexing == "xy" and len(grids) >= 2:  # "xy" is "ij" of the first two inputs swapped
        grids[0], grids[1] = grids[1], grids[0]
    return tuple(grids)


def repeat_interleave(input: Tensor, repeats: int | Tensor, dim: int | None = None, *,  # noqa: A002
                      output_size: int | None = None) -> Tensor:
    """Each element (or slice along ``dim``) repeated ``repeats`` times in place: [a, b] -> [a, a, b, b]."""
    x = input.reshape(-1) if dim is None else input
    d = 0 if dim is None else _axis(dim, x.ndim)
    if isinstance(repeats, Tensor) and repeats.numel() == 1 and repeats.ndim <= 1:
        repeats = int(repeats.item())
    if isinstance(repeats, int):
        if repeats < 0:
            raise RuntimeError("repeats can not be negative")
        shape = x.shape
        expanded = x.unsqueeze(d + 1).expand(shape[:d + 1] + (repeats,) + shape[d + 1:])
        return expanded.reshape(shape[:d] + (shape[d] * repeats,) + shape[d + 1:])
    counts = repeats.numpy() if isinstance(repeats, Tensor) else np.asarray(repeats)
    if counts.ndim != 1 or counts.shape[0] != x.shape[d]:
        raise RuntimeError(f"repeats must have the same size as input along dim, but got repeats.size(0) = "
                           f"{counts.shape[0] if counts.ndim else 1} and input.size({d}) = {x.shape[d]}")
    if (counts < 0).any():
        raise RuntimeError("repeats can not be negative")
    return index_select(x, d, _constant(np.repeat(np.arange(x.shape[d]), counts), x))


def unflatten(input: Tensor, dim: int, sizes: Sequence[int]) -> Tensor:  # noqa: A002
    """Dim ``dim`` split into ``sizes`` (one entry may be -1)."""
    d = _axis(dim, input.ndim)
    sizes = tuple(int(s) for s in sizes)
    known = math.prod(s for s in sizes if s != -1)
    if sizes.count(-1) > 1 or (-1 not in sizes and known != input.shape[d]) or \
            (-1 in sizes and (known == 0 or input.shape[d] % known)):
        raise RuntimeError(f"unflatten: Provided sizes {list(sizes)} don't multiply up to the size of dim {dim} "
                           f"({input.shape[d]}) in the input tensor")
    return input.reshape(input.shape[:d] + sizes + input.shape[d + 1:])


def unfold(input: Tensor, dimension: int, size: int, step: int) -> Tensor:  # noqa: A002
    """``Tensor.unfold``: every window of ``size`` elements, ``step`` apart, along ``dimension``; that dimension
    becomes the window count and a new last dimension holds each window."""
    d = _axis(dimension, max(input.ndim, 1))
    n = input.shape[d] if input.ndim else 1
    if size > n:
        raise RuntimeError(f"maximum size for tensor at dimension {d} is {n} but size is {size}")
    if step <= 0:
        raise RuntimeError(f"step is {step} but must be > 0")
    count = (n - size) // step + 1
    windows = np.arange(count)[:, None] * step + np.arange(size)  # (count, size)
    x = input.reshape(1) if input.ndim == 0 else input
    out = x[(slice(None),) * d + (_constant(windows, input),)]  # (..., count, size, ...)
    return movedim(out, d + 1, -1)


def tile(input: Tensor, dims: Sequence[int]) -> Tensor:  # noqa: A002
    """``repeat`` with fewer dims allowed (leading ones assumed)."""
    dims = tuple(dims)
    dims = (1,) * (input.ndim - len(dims)) + dims
    return input.repeat(*dims)


def cartesian_prod(*tensors: Tensor) -> Tensor:
    """All combinations of the elements of 1-D tensors, one row each."""
    grids = meshgrid(*tensors, indexing="ij")
    return stack([g.reshape(-1) for g in grids], 1) if len(grids) > 1 else grids[0]


# -- einsum -----------------------------------------------------------------------------------------------------------
def einsum(equation: str, *operands: Tensor | Sequence[Tensor]) -> Tensor:
    """Einstein summation, e.g. ``einsum("bhqd,bhkd->bhqk", q, k)``: labels in the output are kept, the others are
    summed; repeated labels in one operand take a diagonal; ``...`` stands for broadcast dims; without ``->`` the
    output is the labels used once, sorted. Operands are contracted pairwise, left to right, each pair as one
    batched matmul."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(operands):
        raise RuntimeError(f"einsum(): {len(inputs)} operands in the equation but {len(operands)} tensors given")
    letters = set(eq) - set(".,->")
    spare = [c for c in string.ascii_letters if c not in letters]
    ellipsis_rank = max((t.ndim - len(s.replace("...", "")) for s, t in zip(inputs, operands) if "..." in s),
                        default=0)
    ellipsis = "".join(spare[:ellipsis_rank])
    labels = []
    for s, t in zip(inputs, operands):
        if "..." in s:
            own = t.ndim - len(s.replace("...", ""))
            s = s.replace("...", ellipsis[ellipsis_rank - own:] if own else "")
        if len(s) != t.ndim or not all(c.isalpha() for c in s):
            raise RuntimeError(f"einsum(): the subscripts {s!r} do not match the operand's {t.ndim} dimensions "
                               f"(shape {t.shape})")
        labels.append(s)
    if arrow:
        output = rhs.replace("...", ellipsis)
        for c in output:
            if not any(c in s for s in labels):
                raise RuntimeError(f"einsum(): output subscript {c} does not appear in the equation for any input "
                                   "operand")
        if len(set(output)) != len(output):
            raise RuntimeError(f"einsum(): output subscript {output} contains a repeated label")
    else:
        once = sorted(c for c in set("".join(labels)) if "".join(labels).count(c) == 1 and c not in ellipsis)
        output = ellipsis + "".join(once)
    sizes: dict[str, int] = {}
    for s, t in zip(labels, operands):
        for c, n in zip(s, t.shape):
            if sizes.get(c, 1) != 1 and n != 1 and sizes[c] != n:
                raise RuntimeError(f"einsum(): operands do not broadcast with remapped shapes: subscript {c} has "
                                   f"size {n} in one operand and {sizes[c]} in another")
            sizes[c] = max(sizes.get(c, 1), n) if c in sizes else n
    tensors = [_einsum_prepare(t, s, output, labels[:i] + labels[i + 1:]) for i, (t, s) in
               enumerate(zip(operands, labels))]
    x, xl = tensors[0]
    for i in range(1, len(tensors)):
        y, yl = tensors[i]
        keep = set(output).union(*(l for _, l in tensors[i + 1:]))
        x, xl = _contract(x, xl, y, yl, keep, sizes)
    dropped = [i for i, c in enumerate(xl) if c not in output]
    if dropped:
        x, xl = x.sum(tuple(dropped)), "".join(c for c in xl if c in output)
    x = x.expand(tuple(sizes[c] for c in xl)) if x.shape != tuple(sizes[c] for c in xl) else x
    order = [xl.index(c) for c in output]
    return x.permute(order) if order != list(range(len(order))) else x


def _einsum_prepare(t: Tensor, s: str, output: str, others: Sequence[str]) -> tuple[Tensor, str]:
    """Take diagonals for labels repeated within one operand, and sum labels used nowhere else."""
    while len(set(s)) != len(s):
        c = next(c for c in s if s.count(c) > 1)
        i = s.index(c)
        j = s.index(c, i + 1)
        t = diagonal(t, 0, i, j)
        s = s[:i] + s[i + 1:j] + s[j + 1:] + c
    elsewhere = set(output).union(*others)
    alone = [i for i, c in enumerate(s) if c not in elsewhere]
    if alone:
        t, s = t.sum(tuple(alone)), "".join(c for c in s if c in elsewhere)
    return t, s


def _contract(x: Tensor, xl: str, y: Tensor, yl: str, keep: set[str], sizes: dict[str, int]) -> tuple[Tensor, str]:
    """One pairwise step: (batch, left, summed) @ (batch, summed, right) as one matmul."""
    batch = [c for c in xl if c in yl and c in keep]
    summed = [c for c in xl if c in yl and c not in keep]
    left = [c for c in xl if c not in yl]
    right = [c for c in yl if c not in xl]
    x = x.permute([xl.index(c) for c in batch + left + summed]) if xl else x
    y = y.permute([yl.index(c) for c in batch + summed + right]) if yl else y
    x = x.expand(tuple(sizes[c] for c in batch + left + summed))  # size-1 dims broadcast against the other side
    y = y.expand(tuple(sizes[c] for c in batch + summed + right))
    nb, nl, ns, nr = (math.prod(sizes[c] for c in part) for part in (batch, left, summed, right))
    out = x.reshape(nb, nl, ns) @ y.reshape(nb, ns, nr)
    return out.reshape(tuple(sizes[c] for c in batch + left + right)), "".join(batch + left + right)


# -- Tensor methods -------------------------------------------------------------------------------------------------
_METHODS = ("sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "arcsin", "arccos",
            "arctan", "arcsinh", "arccosh", "arctanh", "atan2", "arctan2", "log1p", "expm1", "log2", "log10", "exp2",
            "erf", "erfc", "erfinv", "remainder", "fmod", "trunc", "fix", "frac", "div", "divide", "true_divide",
            "copysign", "logaddexp", "logaddexp2", "lerp", "hypot", "isclose", "logical_and", "logical_or",
            "logical_xor", "logical_not", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not",
            "bitwise_left_shift", "bitwise_right_shift", "prod", "norm", "cumprod", "logcumsumexp", "cummax", "cummin",
            "argsort", "sort", "msort", "topk", "kthvalue", "gather", "take_along_dim", "scatter", "scatter_add",
            "scatter_reduce", "scatter_", "scatter_add_", "scatter_reduce_", "index_select", "masked_fill",
            "masked_fill_", "masked_select", "nonzero", "argwhere", "count_nonzero", "movedim", "moveaxis", "swapaxes",
            "swapdims", "narrow", "flip", "fliplr", "flipud", "roll", "rot90", "triu", "tril", "diagonal", "diag",
            "diag_embed", "repeat_interleave", "unflatten", "unfold", "tile", "std_mean", "var_mean")

for _name in _METHODS:
    setattr(Tensor, _name, globals()[_name])


def _shift(name: str, reverse: bool = False) -> Any:
    fn = globals()[name]

    def method(self: Tensor, other: Any) -> Tensor:
        if reverse:
            return fn(Tensor(self.device.xp.asarray(other, dtype=self.dtype), device=self.device), self)
        return fn(self, other)
    return method


def _function(name: str) -> Any:
    method = getattr(Tensor, name)

    def fn(input: Tensor, *args: Any, **kwargs: Any) -> Any:  # noqa: A002
        return method(input, *args, **kwargs)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``input.{name}(...)`` (``torch.{name}``)."
    return fn


# torch.<name>(input, ...) for Tensor methods that PyTorch also offers as functions. Several shadow Python builtins
# (sum, max, abs...), so they are not globals here: tinygrad_nb/__init__.py takes them from this dict.
TORCH_FUNCTIONS = {name: _function(name) for name in (
    "sum", "mean", "var", "std", "max", "min", "amax", "amin", "argmax", "argmin", "logsumexp", "all", "any",
    "softmax", "log_softmax", "exp", "log", "sqrt", "rsqrt", "abs", "sigmoid", "tanh", "relu", "clamp", "clip",
    "sign", "floor", "ceil", "round", "square", "reciprocal", "pow", "matmul", "transpose", "permute", "reshape",
    "flatten", "squeeze", "unsqueeze", "chunk", "split", "isfinite", "isnan", "isinf", "equal", "neg", "mul", "add",
    "sub", "t")
    if hasattr(Tensor, name)}


Tensor.__lshift__, Tensor.__rshift__ = _shift("bitwise_left_shift"), _shift("bitwise_right_shift")
Tensor.__rlshift__ = _shift("bitwise_left_shift", reverse=True)
Tensor.__rrshift__ = _shift("bitwise_right_shift", reverse=True)
Tensor.__mod__ = remainder
Tensor.__rmod__ = lambda self, other: remainder(other, self)  # noqa: E731 - operator glue

# tg.<name>: every op except the in-place methods and Tensor.unfold (torch.unfold is not a function either)
__all__ = [n for n in _METHODS if not n.endswith("_") and n != "unfold"] + [
    "silu", "softplus", "mish", "logsigmoid", "leaky_relu", "hardtanh", "relu6", "hardsigmoid", "hardswish", "elu",
    "celu", "selu", "softsign", "tanhshrink", "hardshrink", "softshrink", "threshold", "glu", "softmin", "prelu",
    "normalize", "einsum", "meshgrid", "cartesian_prod", "allclose", "SortResult"]
