"""Elementwise math with one-line derivatives: each op is a ``Function`` generated from one row of a table (so each
still has its own name for the profiler, the NaN tracer and export).

Unary rows, out = f(a);  da = g f'(a):
    Sin  cos a            Cos  -sin a             Tan  1 + out^2          Asin  1 / sqrt(1 - a^2)
    Acos -1 / sqrt(1-a^2) Atan 1 / (1 + a^2)      Sinh cosh a             Cosh  sinh a
    Asinh 1/sqrt(a^2+1)   Acosh 1/sqrt(a^2-1)     Atanh 1 / (1 - a^2)     Log1p 1 / (1 + a)
    Expm1 out + 1         Log2 1 / (a ln 2)       Log10 1 / (a ln 10)     Exp2  out ln 2
    Erf  2/sqrt(pi) e^(-a^2)   Erfc -2/sqrt(pi) e^(-a^2)   Erfinv sqrt(pi)/2 e^(out^2)
    Softplus  sigmoid(a) = -expm1(-out)   (out = log(1 + e^a), computed as logaddexp(0, a): no overflow)
Binary rows (broadcasting, undone by the engine):
    Atan2(y, x)   dy = g x / (x^2 + y^2),  dx = -g y / (x^2 + y^2)
    Remainder     da = g,  db = -g floor(a / b)    (Python's %: the result takes b's sign)
    Fmod          da = g,  db = -g trunc(a / b)    (C's fmod: the result takes a's sign)

Forward and derivative formulas call their transcendentals on ``m``: the device's array module, or under
``deterministic("portable")`` :mod:`tinygrad_nb.portable`, whose float64 kernels (IEEE + - * / sqrt and exact ops
only; numpy's names: ``m.arcsin``, ``m.expm1``, ``m.logaddexp``...) give the same bits on every CPU and SIMD level.
Remainder and Fmod are exact on any machine and stay on the array module.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import determinism, portable
from ..autograd import Context, Function

# ln 2 and ln 10 as float64 literals (not libm's math.log, whose last bit portable mode would have to trust)
_LN2, _LN10, _TWO_OVER_SQRT_PI = 0.6931471805599453, 2.302585092994046, 2.0 / math.sqrt(math.pi)


def _erf_family(xp: Any, a: Any, portable_kernel: Any, exact: Any, float32_kernel: Any) -> Any:
    """The frame erf and erfc share: ``portable_kernel`` in portable mode (``xp`` is :mod:`tinygrad_nb.portable`);
    on numpy's float64 ``exact`` (``math``'s) element by element (exact, slow); otherwise ``float32_kernel`` on a
    float32, at least 1-d copy (in-place steps need an array, not a 0-d scalar), rounded once to ``a``'s dtype."""
    if xp is portable:
        return portable_kernel(a)
    if a.dtype.itemsize > 4 and xp.__name__ == "numpy":
        return xp.asarray(xp.frompyfunc(exact, 1, 1)(a), dtype=a.dtype)
    x = a.astype(xp.float32)
    out = float32_kernel(x.reshape(1) if x.ndim == 0 else x)
    return out.reshape(a.shape).astype(a.dtype, copy=False)


def erf(xp: Any, a: Any) -> Any:
    """erf to the dtype's precision, from this library's own kernels (never an optional package, so the bits do not
    depend on what else is installed). 16- and 32-bit floats: in float32, the Chebyshev fit of
    ``elementwise.erfc_abs`` (1.2e-7 absolute error) and, for |a| < 0.5 where that is not small relative to erf
    itself, the Maclaurin series 2/sqrt(pi) sum_n (-1)^n a^(2n+1) / (n! (2n+1)) to a^17; rounded once to the dtype.
    float64: ``math.erf`` element by element on numpy (exact, slow), the float32 path on cupy. ``xp`` is
    :mod:`tinygrad_nb.portable` in portable mode: its float64 kernel, rounded once."""
    from .elementwise import erfc_abs  # noqa: PLC0415 - a cycle at import time otherwise

    def in_float32(x: Any) -> Any:
        square = x * x
        series = xp.full_like(x, _ERF_SERIES[-1])
        for coefficient in _ERF_SERIES[-2::-1]:
            series *= square
            series += coefficient
        series *= x
        out = erfc_abs(xp, x)
        xp.subtract(1.0, out, out=out)
        xp.copysign(out, x, out=out)
        return xp.where(xp.abs(x) < 0.5, series, out)

    return _erf_family(xp, a, portable.erf, math.erf, in_float32)


def erfc(xp: Any, a: Any) -> Any:
    """erfc(a) = 1 - erf(a) without the cancellation of computing it so: erfc(|a|) from the Chebyshev fit (1.2e-7
    relative), and 2 - erfc(|a|) for a < 0; in float32, rounded once to the dtype (float64 input: math.erfc on
    numpy; the portable kernel in portable mode)."""
    from .elementwise import erfc_abs  # noqa: PLC0415 - a cycle at import time otherwise

    def in_float32(x: Any) -> Any:
        out = erfc_abs(xp, x)
        return xp.where(x < 0, 2.0 - out, out)

    return _erf_family(xp, a, portable.erfc, math.erfc, in_float32)


# 2/sqrt(pi) (-1)^n / (n! (2n+1)), n = 0..8: erf's Maclaurin series (float32-exact below |a| = 0.5)
_ERF_SERIES = tuple(2.0 / math.sqrt(math.pi) * (-1) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(9))


def erfinv(m: Any, a: Any) -> Any:
    """Inverse of erf on (-1, 1): Giles' single-precision approximation refined by two Newton steps on :func:`erf`
    (each step squares the relative error); 16-bit inputs are computed in float32 and rounded once. ``m`` gives
    log, exp and erf (the portable kernels in portable mode); the rest is IEEE arithmetic."""
    xp = np if m is portable else m
    dtype = a.dtype
    if dtype.itemsize < 4:
        a = a.astype(xp.float32)
    w = -m.log((1.0 - a) * (1.0 + a))
    small = w < 5.0
    ws, wl = w - 2.5, xp.sqrt(w) - 3.0
    ps = 2.81022636e-08
    for c in (3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503, -0.00417768164,
              0.246640727, 1.50140941):
        ps = c + ps * ws
    pl = -0.000200214257
    for c in (0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613, 0.00943887047,
              1.00167406, 2.83297682):
        pl = c + pl * wl
    x = xp.where(small, ps, pl) * a
    for _ in range(2):
        x = x - (erf(m, x) - a) / (_TWO_OVER_SQRT_PI * m.exp(-x * x))
    return xp.where(xp.abs(a) == 1, a * xp.inf, x).astype(dtype, copy=False)


def _math(ctx: Context) -> Any:
    """Where the transcendentals come from: the device's array module, or :mod:`tinygrad_nb.portable` in portable
    mode (one flag check when it is off)."""
    return portable if determinism.portable_mode else ctx.xp


def _unary(name: str, forward: Callable[[Any, Any], Any], derivative: Callable[[Any, Any, Any], Any]
           ) -> type[Function]:
    """A Function computing ``forward(m, a)`` with gradient ``g * derivative(m, a, out)``, m from :func:`_math`."""
    def fwd(ctx: Context, a: Any) -> Any:
        out = forward(_math(ctx), a)
        ctx.save_for_backward(a, out)
        return out

    def bwd(ctx: Context, g: Any) -> Any:
        a, out = ctx.saved_tensors
        return g * derivative(_math(ctx), a, out)

    return type(name, (Function,), {"forward": staticmethod(fwd), "backward": staticmethod(bwd),
                                    "__doc__": f"Elementwise {name.lower()}; see this module's derivative table.",
                                    "__module__": __name__})


Sin = _unary("Sin", lambda m, a: m.sin(a), lambda m, a, out: m.cos(a))
Cos = _unary("Cos", lambda m, a: m.cos(a), lambda m, a, out: -m.sin(a))
Tan = _unary("Tan", lambda m, a: m.tan(a), lambda m, a, out: 1 + out * out)
Asin = _unary("Asin", lambda m, a: m.arcsin(a), lambda m, a, out: 1 / m.sqrt(1 - a * a))
Acos = _unary("Acos", lambda m, a: m.arccos(a), lambda m, a, out: -1 / m.sqrt(1 - a * a))
Atan = _unary("Atan", lambda m, a: m.arctan(a), lambda m, a, out: 1 / (1 + a * a))
Sinh = _unary("Sinh", lambda m, a: m.sinh(a), lambda m, a, out: m.cosh(a))
Cosh = _unary("Cosh", lambda m, a: m.cosh(a), lambda m, a, out: m.sinh(a))
Asinh = _unary("Asinh", lambda m, a: m.arcsinh(a), lambda m, a, out: 1 / m.sqrt(a * a + 1))
Acosh = _unary("Acosh", lambda m, a: m.arccosh(a), lambda m, a, out: 1 / m.sqrt(a * a - 1))
Atanh = _unary("Atanh", lambda m, a: m.arctanh(a), lambda m, a, out: 1 / (1 - a * a))
Log1p = _unary("Log1p", lambda m, a: m.log1p(a), lambda m, a, out: 1 / (1 + a))
Expm1 = _unary("Expm1", lambda m, a: m.expm1(a), lambda m, a, out: out + 1)
Log2 = _unary("Log2", lambda m, a: m.log2(a), lambda m, a, out: 1 / (a * _LN2))
Log10 = _unary("Log10", lambda m, a: m.log10(a), lambda m, a, out: 1 / (a * _LN10))
Exp2 = _unary("Exp2", lambda m, a: m.exp2(a), lambda m, a, out: out * _LN2)
Erf = _unary("Erf", erf, lambda m, a, out: _TWO_OVER_SQRT_PI * m.exp(-a * a))
Erfc = _unary("Erfc", erfc, lambda m, a, out: -_TWO_OVER_SQRT_PI * m.exp(-a * a))
Erfinv = _unary("Erfinv", erfinv, lambda m, a, out: m.exp(out * out) / _TWO_OVER_SQRT_PI)
Softplus = _unary("Softplus", lambda m, a: m.logaddexp(a.dtype.type(0), a), lambda m, a, out: -m.expm1(-out))


def _binary(name: str, forward: str, backward: Callable[[Any, Any, Any, Any], tuple[Any, Any]],
            integer_name: str = "", transcendental: bool = False) -> type[Function]:
    """A broadcasting Function computing ``xp.<forward>(a, b)`` (``m.<forward>`` when ``transcendental``: the
    portable kernel in portable mode); ``backward(xp, a, b, g)`` gives (da, db), IEEE arithmetic only. With
    ``integer_name``, integer division by zero raises PyTorch's RuntimeError (numpy would return 0 silently)."""
    def fwd(ctx: Context, a: Any, b: Any) -> Any:
        xp = ctx.xp
        if integer_name and a.dtype.kind in "iu" and bool((xp.asarray(b) == 0).any()):
            raise RuntimeError(f"ZeroDivisionError: integer {integer_name} by zero")
        ctx.save_for_backward(a, b)
        return getattr(_math(ctx) if transcendental else xp, forward)(a, b)

    def bwd(ctx: Context, g: Any) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        da, db = backward(ctx.xp, a, b, g)
        return da, (db if ctx.needs_input_grad[1] else None)

    return type(name, (Function,), {"forward": staticmethod(fwd), "backward": staticmethod(bwd), "broadcasts": True,
                                    "__doc__": f"Elementwise {name.lower()}; see this module's derivative table.",
                                    "__module__": __name__})


Atan2 = _binary("Atan2", "arctan2", lambda xp, y, x, g: (g * x / (x * x + y * y), -g * y / (x * x + y * y)),
                transcendental=True)
Remainder = _binary("Remainder", "remainder", lambda xp, a, b, g: (g, -g * xp.floor(a / b)), "remainder")
Fmod = _binary("Fmod", "fmod", lambda xp, a, b, g: (g, -g * xp.trunc(a / b)), "fmod")

UNARY = (Sin, Cos, Tan, Asin, Acos, Atan, Sinh, Cosh, Asinh, Acosh, Atanh, Log1p, Expm1, Log2, Log10, Exp2, Erf, Erfc,
         Erfinv, Softplus)
BINARY = (Atan2, Remainder, Fmod)
