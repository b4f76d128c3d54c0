"""ULPs of the low-precision dtypes and the documented error bound of every primitive (docs/amp.md publishes it).

All arithmetic here is float64 on numpy arrays. For a dtype ``d`` with ``p`` significand bits (float16: 11,
bfloat16: 8, float32: 24) and smallest normal exponent ``emin``, ``ulp_d(x) = 2**(max(floor(log2|x|), emin) - p + 1)``
(the gap between the two ``d`` values around ``x``; below the normal range, the subnormal spacing). ``eps_d`` is
``ulp_d(1)``.

A bound is the largest absolute error ``|out - exact|`` an op may have, where ``exact`` is the op evaluated in
float64 on the same (low-precision) inputs:

* ``exact``: movement, selection and sign ops (reshape, getitem, relu, max, where...): the result is one of the
  inputs, so the only error is storing it (0.5 ULP covers a cast).
* ``elementwise(n)``: within ``n`` ULP of the correctly rounded result, i.e.
  ``|out - RN_d(exact)| <= n ulp_d(RN_d(exact))``. The library computes a 16-bit elementwise op in float32 and rounds
  (numpy's float16 loops, ml_dtypes' bfloat16 loops): 1 ULP. Ops composed of several 16-bit roundings
  (sigmoid, gelu) get the count of their roundings.
* ``sum``: ``|out - exact| <= 0.5 ulp_d(exact) + gamma_k sum|a_i|``, ``gamma_k = k u / (1 - k u)``, ``u = eps_d/2``,
  with ``k`` the number of terms (recursive summation's bound; numpy's pairwise summation stays well inside it).
* ``matmul``: ``|out_ij - exact_ij| <= 0.5 ulp_d(exact_ij) + gamma_k (|A||B|)_ij`` (plus ``|b_i|`` for Linear),
  ``k`` the inner dimension.
* ``logsumexp``: log-softmax and cross-entropy over rows of ``k`` classes (and a mean over ``n`` rows):
  ``(k + n + 4) eps_d (1 + |exact| + max|x - max x|)``.
* ``prod``: ``0.5 ulp_d(exact) + gamma_k |exact|``. Fold (overlap-add of ``kh kw`` windows) is a ``sum`` with
  ``k = kh kw``; Scatter without a reduction is exact, with one a sum/product of at most ``k`` values.
* ``attention`` (q, k, v with ``L`` keys of depth ``D``): each softmax weight is off by at most
  ``w = 2 gamma_D scale max(|q||k|^T) + (L + 4) eps_d`` (relative), so
  ``|out - exact| <= 0.5 ulp_d(exact) + (w + gamma_L) max|v|``.
* ``layernorm`` (rows of ``n`` values, normalised in float32 and rounded once): the float32 steps are off by at
  most ``gamma_{n+8}(float32) (max_row|x| r |weight| + |exact|)`` (the mean's error, scaled by ``r = 1/sqrt(var +
  eps)``, dominates where ``x`` is near the mean), then one rounding: ``ulp_d(exact)`` plus that.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import dtype as dtypes

try:
    import ml_dtypes

    def _finfo(d: np.dtype) -> Any:
        return ml_dtypes.finfo(d) if d == dtypes.bfloat16 else np.finfo(d)
except ImportError:  # pragma: no cover
    def _finfo(d: np.dtype) -> Any:
        return np.finfo(d)


def dtype_info(d: np.dtype) -> tuple[int, int, float, float]:
    """(significand bits incl. the implicit one, smallest normal exponent, largest finite, smallest subnormal)."""
    info = _finfo(d)
    return int(info.nmant) + 1, int(info.minexp), float(info.max), float(info.smallest_subnormal)


def ulp(x: Any, d: np.dtype) -> np.ndarray:
    """The spacing of ``d`` at each value of ``x`` (float64 array); at 0 the subnormal spacing."""
    bits, emin, _, _ = dtype_info(d)
    x = np.abs(np.asarray(x, dtype=np.float64))
    _, e = np.frexp(x)  # x = m 2**e with m in [0.5, 1): floor(log2 x) = e - 1 (frexp(0) gives e = 0)
    e = np.where(x == 0, emin + 1, e)
    return np.ldexp(1.0, np.maximum(e - 1, emin) - bits + 1)


def eps(d: np.dtype) -> float:
    return float(ulp(1.0, d))


def round_to(x: Any, d: np.dtype) -> np.ndarray:
    """Round float64 values to ``d`` (round to nearest even) and back to float64."""
    return np.asarray(x, dtype=np.float64).astype(d).astype(np.float64)


def _gamma(k: int, d: np.dtype) -> float:
    u = eps(d) / 2
    return k * u / (1 - k * u) if k * u < 1 else np.inf


# -- bound kinds: each returns the allowed |out - exact| as a float64 array broadcastable to the output -------------
def exact_bound(inputs: list[Any], exact: np.ndarray, d: np.dtype, kwargs: dict[str, Any]) -> np.ndarray:
    return 0.5 * ulp(exact, d)


def elementwise(n: float) -> Callable[..., np.ndarray]:
    def bound(inputs: list[Any], exact: np.ndarray, d: np.dtype, kwargs: dict[str, Any]) -> np.ndarray:
        rounded = round_to(exact, d)
        return np.abs(rounded - exact) + n * ulp(rounded, d)

    bound.__doc__ = f"elementwise({n:g})"
    return bound


def sum_bound(inputs: list[Any], exact: np.ndarray, d: np.dtype, kwargs: dict[str, Any]) -> np.ndarray:
    a = inputs[0]
    axis = inputs[1] if len(inputs) > 1 else kwargs.get("axis")
    keep = inputs[2] if len(inputs) > 2 else kwargs.get("keepdims", False)
    k = a.size if axis is None else int(np.prod([a.shape[i] for i in axis]))
    total = np.abs(a).sum(axis=axis, keepdims=keep)
    return 0.5 * ulp(exact, d) + _gamma(max(k, 1), d) * total


def cumsum_bound(inputs: list[Any], exact: np.ndarray, d: np.dtype, kwargs: dict[str, Any]) -> np.ndarray:
    a = inputs[0]
    axis = inputs[1] if len(inputs) > 1 else kwargs["axis"]
    return 0.5 * ulp(exact, d) + _gamma(max(a.shape[axis], 1), d) * np.cumsum(np.abs(a), axis=axis)


def matmul_bound(inputs: list[Any], exact: np.ndarray, d: np.dtype, kwargs: dict[str, Any]) -> np.ndarray:
    a, b = inputs[0], inputs[1]
    k = a.shape[-1]
    return 0.5 * ulp(exact, d) + _gamma(k, d) * (np.abs(a) @ np.abs(b))


def linear_bound(inputs: list[Any], exact: np.ndarray, d: np.dtype, kwargs: dict[str, Any]) -> np.ndarray:
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 and inputs[2] is not None else 0.0
    k = x.shape[-1] + 1
    return 0.5 * ulp(exact, d) + _gamma(k, d) * (np.abs(x) @ np.abs(w).T + np.abs(bias))


def logsumexp_bound(inputs: list[Any], exact: np.ndarray, d: np.dtype, kwargs: dict[str, Any]) -> np.ndarray:
    x = inputs[0]
    axis = inputs[1] if len(inputs) > 1 and isinstance(inputs[1], (int, np.integer)) else 1
    k = x.shape[axis] if x.ndim else 1
    n = x.shape[0] if x.ndim == 2 and not isinstance(inputs[1], (int, np.integer)) else 0  # cross-entropy's mean
    spread = float(np.max(x) - np.min(x)) if x.size else 0.0
    return (k + n + 4) * eps(d) * (1 + np.abs(exact) + spread)


def prod_bound(inputs: list[Any], exact: np.ndarray, d: np.dtype, kwargs: dict[str, Any]) -> np.ndarray:
    a = inputs[0]
    axis = inputs[1] if len(inputs) > 1 else kwargs.get("axis")
    k = a.size if axis is None else int(np.prod([a.shape[i] for i in axis]))
    return 0.5 * ulp(exact, d) + _gamma(max(k, 1), d) * np.abs(exact)


def fold_bound(inputs: list[Any], exact: np.ndarray, d: np.dtype, kwargs: dict[str, Any]) -> np.ndarray:
    from ..ops import Fold  # noqa: PLC0415
    from .check import _replay_forward  # noqa: PLC0415

    cols, kernel = inputs[0], inputs[2]
    overlaps = _replay_forward(Fold, [np.abs(cols), *inputs[1:]], kwargs)  # the same windows added as magnitudes
    return 0.5 * ulp(exact, d) + _gamma(int(kernel[0]) * int(kernel[1]), d) * overlaps


def scatter_bound(inputs: list[Any], exact: np.ndarray, d: np.dtype, kwargs: dict[str, Any]) -> np.ndarray:
    reduce = inputs[4] if len(inputs) > 4 else kwargs.get("reduce")
    if reduce is None:
        return 0.5 * ulp(exact, d)
    a, src = inputs[0], inputs[2]
    k = src.size + 1  # at most every source value lands on one target
    scale = np.abs(exact) if reduce == "prod" else np.abs(a) + k * float(np.max(np.abs(src), initial=0.0))
    return 0.5 * ulp(exact, d) + _gamma(k, d) * scale


def attention_bound(inputs: list[Any], exact: np.ndarray, d: np.dtype, kwargs: dict[str, Any]) -> np.ndarray:
    q, k, v = inputs[0], inputs[1], inputs[2]
    scale = inputs[5] if len(inputs) > 5 else kwargs.get("scale", 1.0)
    keys, depth = k.shape[-2], q.shape[-1]
    score_error = _gamma(depth, d) * abs(scale) * float(np.max(np.abs(q) @ np.abs(np.swapaxes(k, -1, -2)),
                                                               initial=0.0))
    weights_error = 2 * score_error + (keys + 4) * eps(d)  # relative error of each softmax weight
    return 0.5 * ulp(exact, d) + (weights_error + _gamma(keys, d)) * float(np.max(np.abs(v), initial=0.0))


def layer_norm_bound(inputs: list[Any], exact: np.ndarray, d: np.dtype, kwargs: dict[str, Any]) -> np.ndarray:
    x = inputs[0]
    weight = inputs[1] if len(inputs) > 1 and inputs[1] is not None else 1.0
    dims = inputs[3] if len(inputs) > 3 else kwargs.get("dims", 1)
    eps_ = inputs[4] if len(inputs) > 4 else kwargs.get("eps", 1e-5)
    axes = tuple(range(x.ndim - dims, x.ndim))
    n = int(np.prod([x.shape[i] for i in axes]))
    r = 1 / np.sqrt(x.var(axis=axes, keepdims=True) + eps_)
    largest = np.abs(x).max(axis=axes, keepdims=True)
    return ulp(exact, d) + _gamma(n + 8, np.dtype(np.float32)) * (largest * r * np.abs(weight) + np.abs(exact))


_EXACT = ("Reshape", "Permute", "Expand", "GetItem", "Cat", "Pad", "Neg", "Abs", "Relu", "Maximum", "Minimum",
          "Where", "Clamp", "Max", "Unfold", "Cast", "Gather")
# one numpy/ml_dtypes ufunc (computed in float32, rounded once) or an op that computes 16-bit inputs in float32
_ONE_ULP = ("Add", "Sub", "Mul", "Div", "Sqrt", "Exp", "Log", "Tanh", "Pow", "Sin", "Cos", "Tan", "Asin", "Acos",
            "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Log1p", "Expm1", "Log2", "Log10", "Exp2", "Erf",
            "Erfc", "Erfinv", "Softplus", "Atan2", "Remainder", "Fmod")

# op name -> (kind as documented, bound function)
BOUNDS: dict[str, tuple[str, Callable[..., np.ndarray]]] = {name: ("exact", exact_bound) for name in _EXACT}
BOUNDS.update({name: ("elementwise(1)", elementwise(1)) for name in _ONE_ULP})
BOUNDS.update({
    "Sigmoid": ("elementwise(3)", elementwise(3)),  # exp, 1 + e, 1 / (...): three 16-bit roundings
    "Gelu": ("elementwise(8)", elementwise(8)),  # erf's polynomial in 16-bit steps: a rounding per step
    "Sum": ("sum", sum_bound), "Cumsum": ("sum", cumsum_bound),
    "Matmul": ("matmul", matmul_bound), "Linear": ("matmul", linear_bound),
    "LogSoftmax": ("logsumexp", logsumexp_bound), "CrossEntropy": ("logsumexp", logsumexp_bound),
    "Prod": ("prod", prod_bound), "Fold": ("sum", fold_bound), "Scatter": ("scatter", scatter_bound),
    "ScaledDotProductAttention": ("attention", attention_bound),
    "LayerNorm": ("layernorm", layer_norm_bound),
})
DEFAULT_BOUND = ("elementwise(1)", elementwise(1))  # an op with no entry (a custom op) is held to 1 ULP


def bound_for(op: str) -> tuple[str, Callable[..., np.ndarray]]:
    return BOUNDS.get(op, DEFAULT_BOUND)


def bounds_table() -> str:
    """The table of bounds as text (op, kind), one line per op, as docs/amp.md shows it."""
    rows = sorted(BOUNDS.items(), key=lambda kv: (kv[1][0], kv[0]))
    width = max(len(op) for op, _ in rows)
    return "\n".join(f"{op.ljust(width)}  {kind}" for op, (kind, _) in rows)
