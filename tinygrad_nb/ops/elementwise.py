"""Elementwise primitives. Binary ops broadcast; the engine undoes it for their gradients (``broadcasts = True``).

The second argument of a binary op may be a plain Python scalar (``x * 2``): it is passed through to ``xp``
unchanged and gets no gradient.

Transcendentals (exp, log, tanh, sigmoid, pow, erf's exp) take their kernels from :func:`math_module`: the device's
array module, or under ``deterministic("portable")`` :mod:`tinygrad_nb.portable` (same bits on every CPU). +, -, *,
/, sqrt and comparisons are IEEE-exact everywhere and need no such switch.
"""
from __future__ import annotations

import math
import operator
from typing import Any

from .. import determinism, portable
from ..autograd import Context, Function


def math_module(ctx: Context) -> Any:
    """Where ``exp``/``log``/``tanh``/``pow`` come from: ``ctx.xp``, or the portable kernels in portable mode."""
    return portable if determinism.portable_mode else ctx.xp


# Binary ops set ``broadcasts = True``: their backward returns gradients in the output's (broadcast) shape and the
# engine sums each back to its input's shape with :func:`~tinygrad_nb.autograd.unbroadcast`, in one place.


class Add(Function):
    """out = a + b;  da = g,  db = g."""

    broadcasts = True

    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> Any:
        return a + b

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any]:
        return g, g


class Sub(Function):
    """out = a - b;  da = g,  db = -g."""

    broadcasts = True

    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> Any:
        return a - b

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any]:
        return g, (-g if ctx.needs_input_grad[1] else None)


class Mul(Function):
    """out = a * b;  da = g * b,  db = g * a.

    Saves only what the needed gradients read (da reads b, db reads a), as PyTorch does: an array kept without need
    would turn a later in-place write to it (``y[:, :2] += y[:, :2] * 0.5``) into a saved-tensor error.
    """

    broadcasts = True

    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> Any:
        need_a, need_b = ctx.needs_input_grad
        ctx.save_for_backward(a if need_b else None, b if need_a else None)
        return a * b

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        return (g * b if need_a else None), (g * a if need_b else None)


class Div(Function):
    """out = a / b;  da = g / b,  db = -g a / b^2. Saves a only when db is needed (see Mul)."""

    broadcasts = True

    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> Any:
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None, b)
        return a / b

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        return (g / b if need_a else None), (-g * a / (b * b) if need_b else None)


class Pow(Function):
    """out = a ** b;  da = g b a^(b-1),  db = g out ln(a).

    As PyTorch: da is exactly 0 where b == 0 (the formula gives 0 * 0^-1 = NaN at a = 0), and db is exactly 0
    where a == 0 and b >= 0 (the formula gives 0 * ln 0 = NaN, or 1 * -inf at b = 0), so ``x ** 0.0``, ``0 ** x``
    and ``x ** y`` at x = y = 0 have zero gradients rather than NaN.
    """

    broadcasts = True

    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> Any:
        out = portable.pow(a, b) if determinism.portable_mode else a ** b
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any]:
        a, b, out = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        xp = ctx.xp
        da = db = None
        if need_a:
            power = portable.pow(a, b - 1) if determinism.portable_mode else a ** (b - 1)
            da = g * b * power
            if not isinstance(b, (int, float)):
                da = xp.where(b == 0, xp.zeros((), dtype=da.dtype), da)
            elif b == 0:
                da = xp.zeros_like(da)
        if need_b:
            db = g * out * math_module(ctx).log(a)  # log(a < 0) is NaN, silently
            db = xp.where((a == 0) & (b >= 0), xp.zeros((), dtype=db.dtype), db)
        return da, db


class FloorDivide(Function):
    """out = floor(a / b), Python's ``//`` (rounds toward minus infinity; the remainder takes b's sign).

    Not differentiable, as in PyTorch: the graph is recorded (the result requires grad when an input does), but
    backward refuses (the true derivative is 0 between the jumps and undefined at them). Integer division by zero
    raises PyTorch's RuntimeError; floats give +-inf or NaN. bool // bool is not implemented, as in PyTorch.
    """

    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> Any:
        if a.dtype.kind == "b":  # Tensor._binary has promoted: a bool here means bool // bool
            raise NotImplementedError("\"floor_divide\" not implemented for 'Bool'")
        if a.dtype.kind in "iu" and bool((ctx.xp.asarray(b) == 0).any()):
            raise RuntimeError("ZeroDivisionError: integer floor_divide by zero")
        return ctx.xp.floor_divide(a, b)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any]:
        raise RuntimeError("derivative for floor_divide is not implemented")


class Maximum(Function):
    """out = max(a, b);  the gradient goes to the larger input, split evenly on ties (as PyTorch).
    (:class:`Minimum` is this op with the comparison turned around.)"""

    broadcasts = True
    xp_name, a_wins = "maximum", staticmethod(operator.gt)

    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> Any:
        ctx.save_for_backward(a, b)
        return getattr(ctx.xp, ctx.fn.xp_name)(a, b)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        share_a = ctx.fn.a_wins(a, b) + 0.5 * (a == b)
        need_a, need_b = ctx.needs_input_grad
        return (g * share_a if need_a else None), (g * (1.0 - share_a) if need_b else None)


class Minimum(Maximum):
    """out = min(a, b);  the gradient goes to the smaller input, split evenly on ties."""

    xp_name, a_wins = "minimum", staticmethod(operator.lt)


class Where(Function):
    """out = cond ? a : b;  da = g where cond,  db = g where not cond (cond gets no gradient)."""

    broadcasts = True

    @staticmethod
    def forward(ctx: Context, cond: Any, a: Any, b: Any) -> Any:
        ctx.save_for_backward(cond)
        return ctx.xp.where(cond, a, b)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any, Any]:
        (cond,) = ctx.saved_tensors
        _, need_a, need_b = ctx.needs_input_grad
        zero = ctx.xp.zeros((), dtype=g.dtype)
        return (None, ctx.xp.where(cond, g, zero) if need_a else None, ctx.xp.where(cond, zero, g) if need_b else None)


class Neg(Function):
    """out = -a;  da = -g."""

    @staticmethod
    def forward(ctx: Context, a: Any) -> Any:
        return -a

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        return -g


class Exp(Function):
    """out = e^a;  da = g out."""

    @staticmethod
    def forward(ctx: Context, a: Any) -> Any:
        out = math_module(ctx).exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        return g * ctx.saved_tensors[0]


class Log(Function):
    """out = ln a;  da = g / a."""

    @staticmethod
    def forward(ctx: Context, a: Any) -> Any:
        ctx.save_for_backward(a)
        return math_module(ctx).log(a)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        return g / ctx.saved_tensors[0]


class Sqrt(Function):
    """out = sqrt(a);  da = g / (2 out)."""

    @staticmethod
    def forward(ctx: Context, a: Any) -> Any:
        out = ctx.xp.sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        return g / (2 * ctx.saved_tensors[0])


class Tanh(Function):
    """out = tanh a;  da = g (1 - out^2)."""

    @staticmethod
    def forward(ctx: Context, a: Any) -> Any:
        out = math_module(ctx).tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        out = ctx.saved_tensors[0]
        return g * (1 - out * out)


class Sigmoid(Function):
    """out = 1 / (1 + e^-a), computed without overflow;  da = g out (1 - out)."""

    @staticmethod
    def forward(ctx: Context, a: Any) -> Any:
        if determinism.portable_mode:
            out = portable.sigmoid(a)
        else:
            xp = ctx.xp
            e = xp.exp(-xp.abs(a))  # in (0, 1]: never overflows
            out = xp.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        out = ctx.saved_tensors[0]
        return g * out * (1 - out)


class Relu(Function):
    """out = max(a, 0);  da = g where a > 0."""

    @staticmethod
    def forward(ctx: Context, a: Any) -> Any:
        ctx.save_for_backward(a)
        return ctx.xp.maximum(a, 0)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        return g * (ctx.saved_tensors[0] > 0)


_ERFC_COEFFICIENTS = (0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418,
                      0.37409196, 1.00002368)  # highest power first (Horner)


def erfc_abs(xp: Any, x: Any, exp: Any = None, log_scale: float = 0.0) -> Any:
    """exp(log_scale) erfc(|x|) by Numerical Recipes' Chebyshev fit (1.2e-7 relative error), any array module;
    ``exp``: the exponential to use (default ``xp.exp``; the portable one in portable mode).

    With z = |x| and t = 1 / (1 + z/2): erfc(z) = t exp(-z^2 - 1.26551223 + t P(t)), P of degree 9 (``log_scale`` goes
    into the exponent: no extra pass). Evaluated in place in three buffers: 8x faster than one
    temporary per operation on a GELU-sized array (every one of them a fresh page-faulting allocation)."""
    z = xp.abs(x)
    t = z * 0.5
    t += 1.0
    xp.reciprocal(t, out=t)
    poly = t * _ERFC_COEFFICIENTS[0]
    for coefficient in _ERFC_COEFFICIENTS[1:]:
        poly += coefficient
        poly *= t
    z *= z
    poly -= z
    poly -= 1.26551223 - log_scale
    if exp is None:
        xp.exp(poly, out=poly)
    else:
        poly = exp(poly)
    poly *= t
    return poly


def normal_cdf(xp: Any, a: Any, exp: Any = None) -> Any:
    """Phi(a) = erfc(-a / sqrt 2) / 2 from :func:`erfc_abs`: h = erfc(|a| / sqrt 2) / 2 where a < 0, 1 - h where
    a >= 0. 1.2e-7 relative error in the negative tail, where ``(1 + erf(a / sqrt 2)) / 2`` would cancel to nothing."""
    if a.ndim == 0:  # numpy turns 0-d results into scalars, which cannot be written in place
        return normal_cdf(xp, a.reshape(1), exp).reshape(())
    half = erfc_abs(xp, a * _SQRT_HALF, exp, log_scale=-_LN2)  # erfc / 2
    # h + [a >= 0] (1 - 2h), in arithmetic: numpy's where= and np.where take a branch per element, ~8x slower on the
    # random signs of activations
    flip = half * -2.0
    flip += 1.0
    flip *= a >= 0
    flip += half
    return flip


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_SQRT_HALF = math.sqrt(0.5)
_LN2 = 0.6931471805599453  # a literal: portable mode takes no constant from the platform's libm
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class Gelu(Function):
    """out = a Phi(a) (exact, via erf) or the tanh approximation;  da = g (Phi(a) + a phi(a))."""

    @staticmethod
    def forward(ctx: Context, a: Any, approximate: str = "none") -> Any:
        xp, m = ctx.xp, math_module(ctx)
        if a.dtype.itemsize == 2:  # float16/bfloat16: the erf polynomial in 16-bit steps loses every digit of the
            # negative tail (~2000 ULP); in float32, rounded once, it is within 8 ULP (tests/test_amp_ops.py)
            out = Gelu.forward(ctx, a.astype(xp.float32), approximate).astype(a.dtype)
            ctx.save_for_backward(a)  # saved in 16 bits; backward computes in float32 the same way
            return out
        ctx.approximate = approximate
        if approximate == "tanh":
            ctx.save_for_backward(a)
            return (0.5 * a * (1 + m.tanh(_SQRT_2_OVER_PI * (a + 0.044715 * (a * a * a))))).astype(a.dtype, copy=False)
        if approximate != "none":
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        cdf = normal_cdf(xp, a, m.exp)
        # Phi(a) is saved for backward: one more activation-sized array, but erf (about 25 passes over the data)
        # is not evaluated a second time (the tiny GPT's GELU backward: ~2x faster)
        ctx.save_for_backward(a, cdf)
        return (a * cdf).astype(a.dtype, copy=False)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        xp, m = ctx.xp, math_module(ctx)
        a, *cdf = ctx.saved_tensors  # cdf: [Phi(a)] when forward saved it (float32 and float64, exact GELU)
        if a.dtype.itemsize == 2:  # 16-bit floats: computed in float32 (see forward); the engine casts the result back
            a, g = a.astype(xp.float32), g.astype(xp.float32)
        if ctx.approximate == "tanh":
            inner = _SQRT_2_OVER_PI * (a + 0.044715 * (a * a * a))
            th = m.tanh(inner)
            d_inner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * a * a)
            return g * (0.5 * (1 + th) + 0.5 * a * (1 - th * th) * d_inner)
        if cdf:
            slope = cdf[0].copy()  # becomes Phi(a) + a phi(a), in place
        else:
            slope = normal_cdf(xp, a, m.exp)
        a_pdf = a * a
        a_pdf *= -0.5
        a_pdf = m.exp(a_pdf)
        a_pdf *= a
        a_pdf *= _INV_SQRT_2PI
        slope += a_pdf
        slope *= g
        return slope


class Abs(Function):
    """out = |a|;  da = g sign(a) (0 at 0)."""

    @staticmethod
    def forward(ctx: Context, a: Any) -> Any:
        ctx.save_for_backward(a)
        return ctx.xp.abs(a)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        return g * ctx.xp.sign(ctx.saved_tensors[0])


class Clamp(Function):
    """out = min(max(a, low), high) with either bound optional;  da = g where low <= a <= high."""

    @staticmethod
    def forward(ctx: Context, a: Any, low: Any = None, high: Any = None) -> Any:
        ctx.save_for_backward(a)
        ctx.bounds = (low, high)
        return ctx.xp.clip(a, low, high).astype(a.dtype, copy=False)  # numpy's clip turns bfloat16 into float32

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, None, None]:
        (a,) = ctx.saved_tensors
        low, high = ctx.bounds
        inside = ctx.xp.ones(a.shape, dtype=bool)
        if low is not None:
            inside &= a >= low
        if high is not None:
            inside &= a <= high
        return g * inside, None, None


class Cast(Function):
    """out = a converted to ``dtype``;  da = g converted back."""

    @staticmethod
    def forward(ctx: Context, a: Any, dtype: Any) -> Any:
        ctx.source_dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, None]:
        return g.astype(ctx.source_dtype), None


class NoGradOp(Function):
    """The ops that have no gradient (comparisons, logical and bitwise ops, floor, argmax...): each is a subclass
    named for what it does (``IsNan``, ``LessEqual``, ``ArgMax``; the profiler, NaN tracer and export see that
    name) whose forward is ``xp.<xp_name>(*args, **kwargs)``. ``NoGradOp.apply(x, name="isnan")`` runs the member
    for numpy's function ``isnan`` (made on first use for a name not in :data:`NO_GRAD_NAMES`)."""

    differentiable = False
    xp_name = ""  # set by each member

    @classmethod
    def apply(cls, *args: Any, name: str, **kwargs: Any) -> Any:  # the family's entry; members use Function.apply
        op = NO_GRAD_OPS.get(name) or _no_grad_member(name)
        return op.apply(*args, **kwargs)

    @staticmethod
    def forward(ctx: Context, *arrays: Any, **kwargs: Any) -> Any:
        return getattr(ctx.xp, ctx.fn.xp_name)(*arrays, **kwargs)


# numpy's name -> the op's name
NO_GRAD_NAMES = {
    "equal": "Equal", "not_equal": "NotEqual", "less": "Less", "less_equal": "LessEqual", "greater": "Greater",
    "greater_equal": "GreaterEqual", "isclose": "IsClose", "isfinite": "IsFinite", "isnan": "IsNan", "isinf": "IsInf",
    "signbit": "Signbit", "logical_and": "LogicalAnd", "logical_or": "LogicalOr", "logical_xor": "LogicalXor",
    "logical_not": "LogicalNot", "bitwise_and": "BitwiseAnd", "bitwise_or": "BitwiseOr", "bitwise_xor": "BitwiseXor",
    "invert": "BitwiseNot", "left_shift": "BitwiseLeftShift", "right_shift": "BitwiseRightShift", "sign": "Sign",
    "floor": "Floor", "ceil": "Ceil", "round": "Round", "trunc": "Trunc", "amin": "IntegerMin", "argmax": "ArgMax",
    "argmin": "ArgMin", "all": "All", "any": "Any", "argsort": "ArgSort", "argwhere": "ArgWhere"}
NO_GRAD_OPS: dict[str, type[NoGradOp]] = {}


def _no_grad_member(xp_name: str) -> type[NoGradOp]:
    op_name = NO_GRAD_NAMES.get(xp_name) or "".join(part.capitalize() for part in xp_name.split("_"))
    op = type(op_name, (NoGradOp,), {"xp_name": xp_name, "apply": Function.__dict__["apply"], "__module__": __name__,
                                     "__doc__": f"out = xp.{xp_name}(*args); no gradient."})
    NO_GRAD_OPS[xp_name] = op
    return op


for _xp_name in NO_GRAD_NAMES:
    _no_grad_member(_xp_name)
