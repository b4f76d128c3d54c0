"""Portable kernels: the same bits on every CPU, BLAS kernel, thread count and numpy SIMD level.

The ops call these instead of ``@``, ``np.exp``, ``np.log``... while ``deterministic("portable")`` is on (they test
the one flag ``determinism.portable_mode``). Two things make plain numpy differ between machines, and each has its
cure here:

**Matrix products** (:func:`matmul`). BLAS kernels block, vectorise, thread and fuse (FMA) differently, so a float32
product's rounding depends on the kernel. Here the result is defined as the *correctly rounded* exact product,

    out_ij = RN32( sum_k a_ik b_kj )        (the exact real sum, rounded once, ties to even; zeros are +0)

which depends on the operands only. It is computed in two steps:

1. *Certified fast path.* Each product a_ik b_kj of two float32 values is exact in float64 (24 + 24 <= 53 bits, and
   no float32 product can overflow or underflow float64), so a float64 BLAS product ``c = a64 @ b64`` errs only in
   its k - 1 additions. Whatever the order, blocking or FMA use, any summation tree of k exact terms satisfies

       |c_ij - s_ij| <= gamma_{k-1} sum_k |a_ik b_kj| <= gamma_{k-1} ||a_i||_2 ||b_j||_2,   gamma_n = n u / (1 - n u)

   with u = 2^-53 (Cauchy-Schwarz for the second step). We use E_ij = (17/16) gamma_k ||a_i|| ||b_j|| with the
   norms computed in float64 (their relative error, below (k/2 + 2) u, and the rounding of E itself fit in the
   1/16). Let r = RN32(c) and G the gap between r and its float32 neighbour towards zero (the smaller of its two
   gaps; the smallest subnormal for r = 0). Every real closer than G / 2 to r rounds to r, so when
   ``|c - r| + E < G / 2`` the exact sum, which lies within E of c, rounds to r as well: r is certified to be
   RN32(s). ``c - r`` is exact (Sterbenz) and rounding is monotone, so the test
   computed in float64 is itself rigorous.
2. *Exact rest.* The few entries the test cannot certify (typically 1 in 10^3-10^4, where s lies near a float32
   rounding midpoint or heavy cancellation loosens the bound) are recomputed from the exact float64 products, all
   at once, by two error-free extraction steps that make the sum order-independent and its error ~2^-100 relative
   (:func:`_recompute`), certified the same way; the very rare rest, one by one, with ``math.fsum`` (the correctly
   rounded float64 sum) and a second ``fsum`` of the residual for the one case that double rounding could get
   wrong: a float64 sum that lands exactly on a float32 midpoint (:func:`exact_dot`).

Either way the entry is RN32(s), so which path an entry took (which differs between BLAS kernels) cannot show in
the bits. The only assumption about the BLAS is that it is a classical O(mnk) product (every entry a sum of the k
products by IEEE additions in some order) - true of OpenBLAS, MKL, BLIS and Accelerate, not of Strassen-type
algorithms, which no mainstream BLAS uses for dgemm. float16 operands go through float32 (exact) and round once
more; integer products are exact already; **float64 operands are refused** (:class:`DeterminismError`): their
products are not exact in float64 and this module has no exact float64 path.

**Transcendentals** (:func:`exp`, :func:`expm1`, :func:`log`, :func:`tanh`, :func:`sigmoid`, :func:`pow`,
:func:`cos_turns64`, and under numpy's names for the ops of :mod:`tinygrad_nb.ops.pointwise`: ``sin``, ``cos``,
``tan``, ``arcsin``, ``arccos``, ``arctan``, ``arctan2``, ``sinh``, ``cosh``, ``arcsinh``, ``arccosh``, ``arctanh``,
``log1p``, ``log2``, ``log10``, ``exp2``, ``erf``, ``erfc``, ``logaddexp``). numpy dispatches its float32/float64
transcendentals to SIMD approximations chosen by CPU features (they differ by a few ulp between AVX-512, AVX2 and
baseline). These kernels
are written with IEEE +, -, *, / and the exact operations rint/floor/ldexp/frexp/abs/copysign/sqrt/where only, evaluated
in float64 in a fixed order, so they give the same float64 bits on every IEEE-754 machine; the float64 result
(accurate to a few float64 ulp, far beyond float32's resolution) is then rounded to the input's dtype. Each is a
classical range reduction plus a polynomial, written out in its docstring. Accuracy in float64 (tests/
test_portable_pointwise.py, against mpmath): within 2 ulp for sin, cos, log2, log10, exp2; 3-4 for tan, the inverse
and hyperbolic functions, log1p, logaddexp; 8 for erf and erfc.
sin/cos/tan reduce by pi/2 with a 134-bit split constant below 2^20 and exactly (integer arithmetic) above, so they
are accurate for every finite argument. float32 results are the correctly rounded value but for ~1 in 10^4 (1 ulp).

Everything here computes on numpy arrays (CPU); a GPU array raises :class:`DeterminismError`.
"""
from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from .determinism import DeterminismError

_U = 2.0 ** -53  # unit roundoff of float64
_scratch = threading.local()
_SCRATCH_BYTES = 256 << 20
_F32_TINY = np.float32(2.0 ** -149)  # the smallest float32 subnormal: the spacing of float32 values around 0


def _buffer(slot: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A scratch array of this shape and dtype, reused between calls (per thread; at most 64 arrays and 256 MiB
    kept). Fresh large arrays cost a page fault per 4 KiB on first touch, which here cost more than the arithmetic
    itself."""
    cache = getattr(_scratch, "arrays", None)
    if cache is None:
        cache = _scratch.arrays = {}
    key = (slot, shape, np.dtype(dtype).char)
    array = cache.get(key)
    if array is None:
        array = np.empty(shape, dtype)
        if len(cache) >= 64 or sum(a.nbytes for a in cache.values()) + array.nbytes > _SCRATCH_BYTES:
            cache.clear()
        cache[key] = array
    return array


def _float64_copy(slot: str, x: np.ndarray) -> np.ndarray:
    """``x`` converted to float64 in a scratch array, keeping a transposed matrix transposed (``W.T`` of every
    Linear layer): a contiguous copy, and BLAS reads the transposed operand as fast as the plain one."""
    if x.ndim == 2 and x.flags.f_contiguous and not x.flags.c_contiguous:
        return _float64_copy(slot, x.T).T
    copy = _buffer(slot, x.shape, np.float64)
    np.copyto(copy, x)
    return copy


def _host(a: Any, op: str) -> np.ndarray:
    """``a`` as a numpy array; GPU arrays are refused (the portable kernels run on the CPU only)."""
    if hasattr(a, "__cuda_array_interface__"):
        raise DeterminismError(f"{op}: deterministic('portable') runs on the CPU only; move the tensors to 'cpu' or "
                               "use deterministic(True) on the GPU")
    return np.asarray(a)


# -- matrix product ------------------------------------------------------------------------------------------------
def matmul(a: Any, b: Any) -> np.ndarray:
    """``a @ b`` (numpy's rules: 1-D vectors, broadcast batches), correctly rounded: see the module docstring."""
    with np.errstate(all="ignore"):  # inf and NaN operands give inf and NaN, as in PyTorch
        return _matmul(_host(a, "matmul"), _host(b, "matmul"))


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    dtype = np.result_type(a, b)
    if dtype.kind in "biu":  # numpy's own integer loops: exact (modulo wrap-around), no BLAS
        return a @ b
    if dtype == np.float64 or dtype.kind == "c":
        raise DeterminismError(f"matmul: deterministic('portable') has no exact product for {dtype} operands "
                               f"(shapes {tuple(a.shape)} @ {tuple(b.shape)}); cast them to float32 or turn "
                               "portable mode off")
    if dtype != np.float32:  # float16 / bfloat16: exact in float32, rounded once more at the end
        return _matmul(a.astype(np.float32), b.astype(np.float32)).astype(dtype)
    vector_a, vector_b = a.ndim == 1, b.ndim == 1
    a2 = a[None, :] if vector_a else a
    b2 = b[:, None] if vector_b else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ValueError(f"matmul: {tuple(a.shape)} @ {tuple(b.shape)}: inner dimensions differ")
    k = a2.shape[-1]
    out_shape = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1])
    a64, b64 = _float64_copy("a", a2), _float64_copy("b", b2)
    c = np.matmul(a64, b64, out=_buffer("c", out_shape, np.float64))
    row_norm = np.sqrt(np.einsum("...k,...k->...", a64, a64))  # ||a_i||, (..., m): only bounds, never the result
    col_norm = np.sqrt(np.einsum("...kn,...kn->...n", b64, b64))  # ||b_j||, (..., n)
    row_norm *= k * _U / (1.0 - (k + 2) * _U) * 1.0625  # gamma_k, and 1/16 for the rounding of the norms
    gap = _buffer("gap", out_shape, np.float64)
    np.multiply(row_norm[..., :, None], col_norm[..., None, :], out=gap)  # E_ij
    out = c.astype(np.float32)  # r = RN32(c): the result wherever it is certified
    r64 = _buffer("r64", out_shape, np.float64)
    np.copyto(r64, out)
    np.subtract(c, r64, out=r64)  # exact: c - RN32(c) (Sterbenz)
    np.abs(r64, out=r64)
    gap += r64
    gap *= 2.0  # compare 2 (|c - r| + E) with the gap below |r|: exact scaling by a power of two
    spacing = _buffer("spacing", out_shape, np.float32)
    below = _buffer("below", out_shape, np.float32)
    np.abs(out, out=spacing)
    np.subtract(spacing.view(np.uint32), np.uint32(1), out=below.view(np.uint32))  # the float32 below |r|
    np.subtract(spacing, below, out=spacing)  # exact: neighbouring float32 values
    np.fmax(spacing, _F32_TINY, out=spacing)  # r = 0 (below is NaN): the gap is the smallest subnormal
    certified = np.less(gap, spacing, out=_buffer("certified", out_shape, np.bool_))  # False for NaN/inf
    if not certified.all():
        _recompute(out, np.flatnonzero(~certified), a64, b64)
    out += np.float32(0.0)  # -0 -> +0: the sign of a zero sum depends on the order of the additions
    if vector_a:
        out = out[..., 0, :]
    if vector_b:
        out = out[..., 0]
    return out


def _recompute(out: np.ndarray, todo: np.ndarray, a64: np.ndarray, b64: np.ndarray) -> None:
    """Set the entries ``todo`` (flat indices into ``out``) to RN32 of their exact dot products, all at once.

    With P the (entries, k) exact products, one error-free extraction step (Rump, Ogita and Oishi's
    ExtractVector) splits every p = q + p' exactly: with sigma = 2^ceil(log2 max|p|) 2^ceil(log2 k),
    q = (sigma + p) - sigma and p' = p - q. All q are multiples of 2u sigma and their partial sums stay below
    sigma, so tau_1 = sum q is exact in any summation order; |p'| <= u sigma. A second step on p' gives
    tau_2 exactly and p''. Then exact = tau_1 + tau_2 + sum p'', and S = tau_1 + (tau_2 + fl(sum p'')) errs by at
    most e = 2u(|S| + |tau_2| + |fl(sum p'')|) + 2 k^2 u max|p''| (the last term bounds gamma_{k-1} sum |p''|;
    |p''| <= u sigma_2, so e is about 2^-100 of the products' scale). S is certified as in the fast path
    (|S - RN32(S)| + e below half the float32 gap); what is left (S within a few float64 ulp of a float32
    midpoint, or a non-finite product) goes to :func:`exact_dot` one by one.
    """
    index = np.unravel_index(todo, out.shape)
    batch_shape = out.shape[:-2]
    a_full = np.broadcast_to(a64, batch_shape + a64.shape[-2:])
    b_full = np.broadcast_to(b64, batch_shape + b64.shape[-2:])
    *batch, i, j = index
    rows = a_full[(*batch, i)]  # (entries, k)
    cols = np.moveaxis(b_full, -1, -2)[(*batch, j)]  # (entries, k)
    products = rows * cols
    k = products.shape[-1]
    scale = float(1 << (k - 1).bit_length())  # 2^ceil(log2 k)
    taus, residual = [], products
    for _ in range(2):
        largest = np.abs(residual).max(axis=-1, keepdims=True)
        sigma = np.ldexp(scale, np.frexp(largest)[1])  # a power of two >= k max|p|
        q = (sigma + residual) - sigma
        residual = residual - q
        taus.append(q.sum(axis=-1))  # exact, whatever order numpy sums in
    rest = residual.sum(axis=-1)
    low = taus[1] + rest
    total = taus[0] + low
    bound = 2 * _U * (np.abs(total) + np.abs(taus[1]) + np.abs(rest)) + 2 * k * k * _U * np.abs(residual).max(axis=-1)
    rounded = total.astype(np.float32)
    gap = np.abs(total - rounded) + bound
    magnitude = np.abs(rounded)
    below = (magnitude.view(np.uint32) - np.uint32(1)).view(np.float32)
    spacing = np.fmax(magnitude - below, _F32_TINY)
    certified = 2.0 * gap < spacing  # False where a product was NaN or infinite
    out[index] = rounded
    for n in np.flatnonzero(~certified):
        out[tuple(axis[n] for axis in index)] = exact_dot(rows[n], cols[n])


def exact_dot(x: np.ndarray, y: np.ndarray) -> np.float32:
    """RN32(sum x_i y_i) for float64 vectors holding float32 values, whose products are exact in float64.

    ``s = fsum(p)`` is the correctly rounded float64 sum. Rounding s to float32 equals rounding the exact sum, except
    when s is exactly a float32 midpoint (double rounding): then the sign of the residual ``fsum(p + [-s])`` says on
    which side the exact sum lies. Non-finite products: NaN if any product is NaN or both infinities occur, else that
    infinity (the same rule whatever the summation order; NaN is numpy's canonical quiet NaN).
    """
    products = x * y
    if not np.isfinite(products).all():
        if np.isnan(products).any() or (np.isposinf(products).any() and np.isneginf(products).any()):
            return np.float32(np.nan)
        return np.float32(np.inf) if np.isposinf(products).any() else np.float32(-np.inf)
    terms = products.tolist()
    s = math.fsum(terms)
    r = np.float32(s)
    r_value = math.copysign(2.0 ** 128, s) if np.isinf(r) else float(r)
    if r_value == s:
        return r
    other = _neighbour(r, s)
    other_value = math.copysign(2.0 ** 128, s) if np.isinf(other) else float(other)
    if s != (r_value + other_value) / 2:  # not a midpoint: s and the exact sum round alike
        return r
    residual = math.fsum(terms + [-s])  # its sign is the sign of (exact sum - s)
    if residual == 0:
        return r  # a true tie: numpy's rounding of s already broke it to even
    above = other_value > r_value
    return other if (residual > 0) == above else r


def _neighbour(r: np.float32, s: float) -> np.float32:
    """The float32 next to ``r`` on the side of ``s`` (for r = inf: the largest finite float32)."""
    if np.isinf(r):
        return np.float32(math.copysign(float(np.finfo(np.float32).max), s))
    return np.nextafter(r, np.float32(math.inf if s > float(r) else -math.inf), dtype=np.float32)


# -- transcendentals: float64 kernels from + - * / and exact ops ---------------------------------------------------
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 to 32 bits: n * _LN2_HI is exact for |n| < 2^21 (fdlibm's split)
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
_SQRT_HALF = 0.70710678118654752440
_INV_LN2 = 1.4426950408889634  # 1 / ln 2, rounded (these constants: mpmath at 50 digits, rounded to float64)
_INV_LN10 = 0.4342944819032518  # 1 / ln 10
_LOG10_2_HI = 0.3010299955494702  # log10(2) truncated to 32 bits: e * _LOG10_2_HI is exact for |e| < 2^21
_LOG10_2_LO = 1.1451100898021838e-10  # log10(2) - _LOG10_2_HI
_TWO_PI_HI = 6.283185307179586  # 2 pi rounded to float64
_TWO_PI_LO = 2.4492935982947064e-16  # 2 pi - _TWO_PI_HI
_EXP_TAYLOR = [1.0 / math.factorial(n) for n in range(14)]  # e^r = sum r^n / n!, |r| <= ln2/2: remainder < 4e-18
_EXPM1_TAYLOR = [1.0 / math.factorial(n + 1) for n in range(14)]  # (e^x - 1) / x = sum x^n / (n+1)!
_LOG_SERIES = [1.0 / (2 * k + 3) for k in range(11)]  # (atanh(s)/s - 1) / z = sum z^k / (2k+3), z = s^2 <= 0.0295


def _floating(dtype: Any) -> Any:
    """``dtype`` when it is a floating dtype (ml_dtypes' bfloat16 included, whose kind is "V"), else float32."""
    dtype = np.dtype(dtype)
    return dtype if dtype.kind == "f" or dtype.name == "bfloat16" else np.dtype(np.float32)


def _float64(x: Any, op: str) -> tuple[np.ndarray, Any]:
    """(x as a flat float64 array, the dtype to round the result to: x's floating dtype, float32 for integers).
    Flat, because numpy turns 0-d results into scalars, which cannot be written into."""
    x = _host(x, op)
    dtype = _floating(x.dtype)
    return x.astype(np.float64).reshape(-1), dtype


def _horner(x: np.ndarray, coefficients: list[float], out: np.ndarray | None = None) -> np.ndarray:
    """c0 + x (c1 + x (c2 + ...)), evaluated innermost first: a fixed sequence of IEEE multiplies and adds."""
    result = np.empty_like(x) if out is None else out
    result.fill(coefficients[-1])
    for c in reversed(coefficients[:-1]):
        result *= x
        result += c
    return result


# The kernels work in per-thread scratch arrays (``_buffer``): a fresh array per step would cost more in page faults
# than the arithmetic. ``_exp64(x, slot)`` and friends return a scratch array, valid until that slot is used again;
# the public ``exp64`` etc. return fresh copies.
def _reduce_ln2(x: np.ndarray, slot: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(n, r, spare)`` with x = n ln2 + r, n = rint(x / ln2), |r| <= ln2/2 + tiny, x clipped to [-746, 710] first:
    r = (x - n ln2_hi) - n ln2_lo (Cody-Waite: the first product and difference are exact). All are scratch buffers
    of ``slot``; ``spare`` is free for the caller."""
    y = np.clip(x, -746.0, 710.0, out=_buffer(slot + ".y", x.shape, np.float64))
    n = np.multiply(y, _LOG2E, out=_buffer(slot + ".n", x.shape, np.float64))
    np.rint(n, out=n)
    r = np.multiply(n, _LN2_HI, out=_buffer(slot + ".r", x.shape, np.float64))
    np.subtract(y, r, out=r)
    np.multiply(n, _LN2_LO, out=y)
    r -= y
    return n, r, y


def _exp64(x: np.ndarray, slot: str = "exp") -> np.ndarray:
    """e^x in float64 (a few ulp). Range reduction x = n ln2 + r with n = rint(x / ln2), |r| <= ln2/2 + tiny, where
    r = (x - n ln2_hi) - n ln2_lo (Cody-Waite: the first product and difference are exact); then
    e^x = 2^n e^r with e^r = sum_{i<=13} r^i / i! (truncation error < 4e-18) and 2^n applied by ldexp (exact, and
    rounds once into the subnormals). x is clipped to [-746, 710] first: e^-746 < half the smallest subnormal, e^710 >
    the largest float64, so the clip keeps 0 and inf where they belong; NaN stays NaN throughout."""
    n, r, _ = _reduce_ln2(x, slot)
    power = _buffer(slot + ".i", x.shape, np.int32)
    np.copyto(power, n, casting="unsafe")  # NaN gives some integer; ldexp(NaN, any) is NaN
    result = _horner(r, _EXP_TAYLOR, out=_buffer(slot, x.shape, np.float64))
    return np.ldexp(result, power, out=result)


def _expm1_64(x: np.ndarray, slot: str = "expm1") -> np.ndarray:
    """e^x - 1 in float64 with a small *relative* error near 0. With the reduction of :func:`_exp64`,
    x = n ln2 + r, and q = e^r - 1 = r (1 + r/2! + ... + r^13/14!) (accurate relative to q),
    e^x - 1 = 2^n q + (2^n - 1): for n = 0 that is q itself; otherwise no cancellation can occur (|q| < 0.42 and
    2^n - 1 is exact). n = 1024 (x within ln2/2 of the overflow threshold) takes ldexp(1 + q, n) - 1 instead, so
    that 2^n alone cannot overflow."""
    n, r, spare = _reduce_ln2(x, slot)
    q = _horner(r, _EXPM1_TAYLOR, out=_buffer(slot + ".q", x.shape, np.float64))
    q *= r
    power = _buffer(slot + ".i", x.shape, np.int32)
    np.copyto(power, n, casting="unsafe")  # NaN gives some integer; the NaN in q carries through
    two = np.ldexp(1.0, power, out=spare)  # 2^n
    result = np.multiply(two, q, out=_buffer(slot, x.shape, np.float64))
    two -= 1.0
    result += two
    top = n >= 1024
    if top.any():
        np.copyto(result, np.ldexp(1.0 + q, power) - 1.0, where=top)
    np.copyto(result, x, where=x == 0)  # e^-0 - 1 = -0
    return result


def _log64(x: np.ndarray, slot: str = "log", base: str = "e") -> np.ndarray:
    """ln x in float64 (a few ulp). x = m 2^e by frexp (exact), m moved into [sqrt(1/2), sqrt(2)); with f = m - 1
    (exact) and s = f / (2 + f), ln m = 2 atanh(s) = 2 s (1 + z/3 + z^2/5 + ... + z^11/23), z = s^2 <= 0.0295
    (truncation < 1e-18 relative); ln x = e ln2_hi + (e ln2_lo + ln m), e ln2_hi exact.
    ln 0 = -inf, ln(x < 0) = NaN, ln inf = inf, ln NaN = NaN.

    ``base="2"``: log2 x = e + ln m / ln 2 (exact powers of two give exact integers); ``base="10"``:
    log10 x = e log10(2)_hi + (e log10(2)_lo + ln m / ln 10), e log10(2)_hi exact (a 32-bit constant)."""
    shape = x.shape
    regular = np.isfinite(x, out=_buffer(slot + ".regular", shape, np.bool_))
    np.logical_and(regular, x > 0, out=regular)
    m = _buffer(slot + ".m", shape, np.float64)
    m.fill(1.0)
    np.copyto(m, x, where=regular)  # the special values are put back at the end
    exponent = _buffer(slot + ".e", shape, np.int32)
    np.frexp(m, out=(m, exponent))
    low = np.less(m, _SQRT_HALF, out=_buffer(slot + ".low", shape, np.bool_))
    np.multiply(m, 2.0, out=m, where=low)
    e = _buffer(slot + ".ef", shape, np.float64)
    np.copyto(e, exponent)
    e -= low
    m -= 1.0  # f, exact
    s = np.add(m, 2.0, out=_buffer(slot + ".s", shape, np.float64))
    np.divide(m, s, out=s)
    z = np.multiply(s, s, out=m)
    series = _horner(z, _LOG_SERIES, out=_buffer(slot + ".series", shape, np.float64))
    series *= z
    series *= s
    series += s
    series *= 2.0  # ln m = 2 (s + s z R) = 2s + 2s z R exactly (doubling is exact)
    if base == "e":
        result = np.multiply(e, _LN2_LO, out=_buffer(slot, shape, np.float64))
        result += series
        np.multiply(e, _LN2_HI, out=e)
        result += e
    elif base == "2":
        result = np.multiply(series, _INV_LN2, out=_buffer(slot, shape, np.float64))
        result += e
    else:
        result = np.multiply(e, _LOG10_2_LO, out=_buffer(slot, shape, np.float64))
        series *= _INV_LN10
        result += series
        np.multiply(e, _LOG10_2_HI, out=e)
        result += e
    if not regular.all():
        with np.errstate(all="ignore"):
            special = np.where(x == 0, -np.inf, np.where(x == np.inf, np.inf, np.nan))
        np.copyto(result, special, where=~regular)
    return result


def _tanh64(x: np.ndarray, slot: str = "tanh") -> np.ndarray:
    """tanh x = sign(x) t / (t + 2), t = e^{2|x|} - 1 (:func:`_expm1_64`, accurate near 0); |x| is clipped to 22,
    where tanh is 1 to float64 precision."""
    doubled = np.abs(x, out=_buffer(slot + ".a", x.shape, np.float64))
    np.minimum(doubled, 22.0, out=doubled)
    doubled *= 2.0
    t = _expm1_64(doubled, slot + ".expm1")
    result = np.add(t, 2.0, out=_buffer(slot, x.shape, np.float64))
    np.divide(t, result, out=result)
    return np.copysign(result, x, out=result)


def _sigmoid64(x: np.ndarray, slot: str = "sigmoid") -> np.ndarray:
    """1 / (1 + e^-x) without overflow: with e = e^{-|x|} in (0, 1], 1 / (1 + e) for x >= 0, e / (1 + e) below."""
    minus = np.abs(x, out=_buffer(slot + ".a", x.shape, np.float64))
    np.negative(minus, out=minus)
    e = _exp64(minus, slot + ".exp")
    denominator = np.add(e, 1.0, out=minus)
    result = np.divide(1.0, denominator, out=_buffer(slot, x.shape, np.float64))
    np.divide(e, denominator, out=e)
    np.copyto(result, e, where=~(x >= 0))  # x < 0 and NaN
    return result


# -- more kernels (the ops of tinygrad_nb.ops.pointwise), from the ones above and + - * / sqrt only ------------------
# They compute on flat float64 arrays with fresh temporaries (clarity first; these ops are rarer than exp/log/tanh)
# and call the scratch-buffer kernels above with slots of their own.
def _pi_times_2_to(bits: int) -> int:
    """pi 2^bits as an integer (within 1), by Machin's formula pi = 16 atan(1/5) - 4 atan(1/239) in exact integer
    arithmetic with 32 guard bits; atan(1/k) = sum_n (-1)^n / ((2n+1) k^(2n+1)), each term floored (error < 1)."""
    one = 1 << (bits + 32)

    def atan_inverse(k: int) -> int:
        total, power, n = 0, one // k, 0
        while power:
            total += power // (2 * n + 1) if n % 2 == 0 else -(power // (2 * n + 1))
            power //= k * k
            n += 1
        return total

    return (16 * atan_inverse(5) - 4 * atan_inverse(239)) >> 32


_PIO2_BITS = 1400  # pi/2 to 1400 bits: enough for the exact reduction of every finite float64 (below 2^1024)
_PIO2_INT = _pi_times_2_to(_PIO2_BITS) >> 1  # pi/2 2^1400, within 1


def _split_pio2(pieces: int, width: int) -> list[float]:
    """pi/2 = c1 + c2 + ... (+ a tail below 2^-130): every piece but the last holds ``width`` significant bits (so
    n c_i is exact for |n| < 2^(53 - width)); the last is the rest rounded to float64. Derived from the integer pi/2
    above, so no table of constants can be mistyped."""
    rest, out = _PIO2_INT, []
    for _ in range(pieces - 1):
        drop = rest.bit_length() - width
        out.append(math.ldexp(rest >> drop, drop - _PIO2_BITS))
        rest -= (rest >> drop) << drop
    out.append(rest / (1 << _PIO2_BITS))  # Python's int / int is correctly rounded
    return out


_PIO2_PARTS = _split_pio2(4, 27)  # Cody-Waite: x - n pi/2 = (((x - n c1) - n c2) - n c3) - n c4
_CODY_WAITE_LIMIT = 2.0 ** 20  # below: |n| < 2^20, n c_i exact; above: the exact integer reduction
_TWO_OVER_PI = 0.6366197723675814
_PIO2_HI, _PIO2_LO = 1.5707963267948966, 6.123233995736766e-17  # pi/2 rounded to float64, and the rest
_PI_HI, _PI_LO = 3.141592653589793, 1.2246467991473532e-16
_PIO4_HI, _PIO4_LO = 0.7853981633974483, 3.061616997868383e-17
_SIN_TAYLOR = [(-1.0) ** k / math.factorial(2 * k + 1) for k in range(9)]  # sin r / r in z = r^2, |r| <= pi/4:
_COS_TAYLOR = [(-1.0) ** k / math.factorial(2 * k) for k in range(10)]  # truncation < 1e-19 for both
_ATAN_TAYLOR = [(-1.0) ** k / (2 * k + 1) for k in range(24)]  # atan u / u in z = u^2, z <= tan^2(pi/8): < 1e-19
_TAN_PI_8 = 0.41421356237309503
_LN2 = 0.6931471805599453  # ln 2 rounded to float64


def _reduce_pio2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q, r) with x = n pi/2 + r, |r| <= pi/4 (+ an ulp), q = n mod 4 in {0, 1, 2, 3} (float64).

    |x| < 2^20: Cody-Waite with pi/2 split into three 27-bit pieces and a float64 tail (134 bits in all): n c1, n c2,
    n c3 are exact and x - n c1 is exact (Sterbenz), so r errs by about an ulp of r plus |n| 2^-134 - full float64
    accuracy even next to a multiple of pi/2. Larger finite |x| (rare: one by one, a few microseconds each): exact
    integer arithmetic on x = num / 2^k with pi/2 to 1400 bits (Payne-Hanek's idea without the table): n is the
    nearest integer to x / (pi/2) and r = (x 2^1400 - n pi/2 2^1400) / 2^1400 rounded once (Python's int / int is
    correctly rounded), for every float64 up to the largest. inf and NaN give NaN."""
    n = np.rint(x * _TWO_OVER_PI)
    r = x - n * _PIO2_PARTS[0]
    for part in _PIO2_PARTS[1:]:
        r = r - n * part
    huge = np.flatnonzero(np.isfinite(x) & (np.abs(x) >= _CODY_WAITE_LIMIT))
    for i in huge:
        numerator, denominator = float(x[i]).as_integer_ratio()  # denominator: a power of two <= 2^33 here
        scaled = (numerator << _PIO2_BITS) // denominator  # exact: x 2^1400
        k = (2 * scaled + _PIO2_INT) // (2 * _PIO2_INT)  # nearest integer to x / (pi/2)
        n[i], r[i] = k % 4, (scaled - k * _PIO2_INT) / (1 << _PIO2_BITS)
    return np.mod(n, 4.0), r


def _sin_cos_reduced(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sin r, cos r) for |r| <= pi/4 by their Taylor series (the same as cos_turns64)."""
    z = r * r
    return r * _horner(z, _SIN_TAYLOR), _horner(z, _COS_TAYLOR)


def _sin64(x: np.ndarray) -> np.ndarray:
    """sin x = sin r, cos r, -sin r, -cos r for x = n pi/2 + r, n mod 4 = 0..3 (:func:`_reduce_pio2`); sin(-0) = -0."""
    q, r = _reduce_pio2(x)
    s, c = _sin_cos_reduced(r)
    out = np.where(q == 0, s, np.where(q == 1, c, np.where(q == 2, -s, -c)))
    return np.where(x == 0, x, out)


def _cos64(x: np.ndarray) -> np.ndarray:
    """cos x = cos r, -sin r, -cos r, sin r for n mod 4 = 0..3 (:func:`_reduce_pio2`)."""
    q, r = _reduce_pio2(x)
    s, c = _sin_cos_reduced(r)
    return np.where(q == 0, c, np.where(q == 1, -s, np.where(q == 2, -c, s)))


def _tan64(x: np.ndarray) -> np.ndarray:
    """tan x = sin r / cos r for even n, -cos r / sin r for odd n (:func:`_reduce_pio2`); tan(-0) = -0."""
    q, r = _reduce_pio2(x)
    s, c = _sin_cos_reduced(r)
    odd = (q == 1) | (q == 3)
    out = np.where(odd, -c, s) / np.where(odd, s, c)
    return np.where(x == 0, x, out)


def _atan_unit(t: np.ndarray) -> np.ndarray:
    """atan t for t in [0, 1] (or NaN): t <= tan(pi/8): atan t = t (1 - t^2/3 + t^4/5 - ...); above:
    atan t = pi/4 + atan u, u = (t - 1) / (t + 1) in [-tan(pi/8), 0] (t - 1 is exact for t >= 1/2)."""
    above = t > _TAN_PI_8
    u = np.where(above, (t - 1.0) / (t + 1.0), t)
    series = u * _horner(u * u, _ATAN_TAYLOR)
    return np.where(above, (_PIO4_LO + series) + _PIO4_HI, series)


def _atan2_64(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """atan2(y, x) with C's special cases: a = atan(min(|x|, |y|) / max(|x|, |y|)) in [0, pi/4] (both zero: 0; both
    infinite: pi/4), then by octant a, pi/2 - a (|y| > |x|), pi - a (x < 0 or x = -0), pi/2 + a (both), each as
    (base_lo +- a) + base_hi (one rounding of the sum), and y's sign."""
    ay, ax = np.abs(y), np.abs(x)
    big, small = np.maximum(ay, ax), np.minimum(ay, ax)  # NaN propagates
    t = np.where(big == 0, 0.0, np.where(np.isinf(small), 1.0, small / np.where(big == 0, 1.0, big)))
    angle = _atan_unit(t)
    steep, left = ay > ax, np.signbit(x)
    base_hi = np.where(steep, _PIO2_HI, np.where(left, _PI_HI, 0.0))
    base_lo = np.where(steep, _PIO2_LO, np.where(left, _PI_LO, 0.0))
    angle = (base_lo + np.where(steep ^ left, -angle, angle)) + base_hi
    return np.copysign(angle, y)


def _atan64(x: np.ndarray) -> np.ndarray:
    """atan x = atan2(x, 1)."""
    return _atan2_64(x, np.ones_like(x))


def _asin64(x: np.ndarray) -> np.ndarray:
    """asin x = atan2(x, sqrt((1 - x)(1 + x))) (no cancellation near |x| = 1: 1 - x is exact there); NaN for
    |x| > 1."""
    return _atan2_64(x, np.sqrt((1.0 - x) * (1.0 + x)))


def _acos64(x: np.ndarray) -> np.ndarray:
    """acos x = 2 atan2(sqrt(1 - x), sqrt(1 + x)) (= 2 atan sqrt((1 - x) / (1 + x)), defined at x = -1 too)."""
    return 2.0 * _atan2_64(np.sqrt(1.0 - x), np.sqrt(1.0 + x))


def _log1p64(x: np.ndarray, slot: str = "log1p") -> np.ndarray:
    """ln(1 + x) with a small relative error near 0 (Goldberg's trick): u = 1 + x rounded, then
    ln(1 + x) = ln(u) x / (u - 1), which cancels u's rounding error to first order; x itself where u = 1 (keeps -0),
    inf for x = inf."""
    u = 1.0 + x
    out = _log64(u, slot) * (x / np.where(u == 1.0, 1.0, u - 1.0))
    return np.where(u == 1.0, x, np.where(x == np.inf, x, out))


def _exp2_64(x: np.ndarray) -> np.ndarray:
    """2^x = 2^n e^(f ln 2) with n = rint(x), f = x - n in [-1/2, 1/2] (exact), e^r by the Taylor series of
    :func:`_exp64` (|r| <= 0.35), 2^n by ldexp (exact; rounds once into the subnormals); x clipped to
    [-1100, 1100] first, which keeps 0 and inf where they belong. Integers give exact powers of two."""
    y = np.clip(x, -1100.0, 1100.0)
    n = np.rint(y)
    power = np.where(np.isnan(n), 0, n).astype(np.int32)
    return np.ldexp(_horner((y - n) * _LN2, _EXP_TAYLOR), power)



def _sinh64(x: np.ndarray) -> np.ndarray:
    """sinh x = sign(x) (E + E / (E + 1)) / 2 with E = e^|x| - 1 (:func:`_expm1_64`; no cancellation) for
    |x| <= 22; above, e^|x| / 2 = (w / 2) w with w = e^(|x|/2), which overflows only where sinh does."""
    z = np.abs(x)
    e = _expm1_64(np.minimum(z, 22.0), "sinh.expm1").copy()
    small = (e + e / (e + 1.0)) * 0.5
    w = _exp64(z * 0.5, "sinh.exp")
    return np.copysign(np.where(z <= 22.0, small, (0.5 * w) * w), x)


def _cosh64(x: np.ndarray) -> np.ndarray:
    """cosh x = e^|x| / 2 + 1 / (2 e^|x|) for |x| <= 22; (w / 2) w with w = e^(|x|/2) above."""
    z = np.abs(x)
    e = _exp64(np.minimum(z, 22.0), "cosh.exp").copy()
    w = _exp64(z * 0.5, "cosh.half")
    return np.where(z <= 22.0, 0.5 * e + 0.5 / e, (0.5 * w) * w)


def _asinh64(x: np.ndarray) -> np.ndarray:
    """asinh x = sign(x) ln(1 + |x| + x^2 / (1 + sqrt(1 + x^2))) (:func:`_log1p64`; accurate near 0), and
    sign(x) (ln|x| + ln 2) for |x| > 2^28, where sqrt(1 + x^2) = |x| to float64 precision (and x^2 could overflow)."""
    z = np.abs(x)
    near = np.minimum(z, 2.0 ** 28)
    small = _log1p64(near + near * near / (1.0 + np.sqrt(1.0 + near * near)), "asinh.log1p").copy()
    large = _log64(z, "asinh.log") + _LN2
    return np.copysign(np.where(z > 2.0 ** 28, large, small), x)


def _acosh64(x: np.ndarray) -> np.ndarray:
    """acosh x = ln(1 + t + sqrt(2t + t^2)), t = x - 1 (exact for x <= 2; accurate near 1), and ln x + ln 2 for
    x > 2^28; NaN for x < 1."""
    t = np.minimum(x, 2.0 ** 28) - 1.0
    small = _log1p64(t + np.sqrt(2.0 * t + t * t), "acosh.log1p").copy()
    large = _log64(x, "acosh.log") + _LN2
    return np.where(x > 2.0 ** 28, large, np.where(x >= 1.0, small, np.nan))


def _atanh64(x: np.ndarray) -> np.ndarray:
    """atanh x = sign(x) ln(1 + 2|x| / (1 - |x|)) / 2 (1 - |x| is exact for |x| >= 1/2); +-inf at +-1, NaN beyond."""
    z = np.abs(x)
    return np.copysign(0.5 * _log1p64(2.0 * z / (1.0 - z), "atanh.log1p"), x)


def _logaddexp64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ln(e^a + e^b) = max + ln(1 + e^(min - max)) (no overflow); max + ln 2 where a = b (also both +-inf)."""
    high, low = np.maximum(a, b), np.minimum(a, b)
    difference = np.where(high == low, 0.0, low - high)
    return high + _log1p64(_exp64(difference, "logaddexp.exp"), "logaddexp.log1p")


_SQRT_PI_INV = 0.5641895835477563  # 1 / sqrt(pi)
# erfc(z) e^(z^2) = sum_i c_i (z - 1)^i on 0.5 <= z <= 1.5: mpmath's chebyfit at 50 digits, degree 17 (relative
# error 1.1e-18), rounded to float64, lowest power first
_ERFC_MID = [0.427583576155807, -0.27321201478389856, 0.15437156137190824, -0.07922696894132669, 0.03757229621531269,
             -0.0166618690904203, 0.0069701423740626415, -0.002769064775600966, 0.0010502694181821256,
             -0.00038195453301478085, 0.0001336627622717746, -4.5143861219947744e-05, 1.4754609192515983e-05,
             -4.675888436513413e-06, 1.4340410570175926e-06, -4.299143543295316e-07, 1.3784633743013745e-07,
             -3.914617199714194e-08]


def _exp_minus_square(z: np.ndarray) -> np.ndarray:
    """e^(-z^2) without z^2's rounding error (which e^ would multiply by z^2): Dekker's split z = h + l with h of 26
    bits, so h^2 is exact and z^2 = h^2 + l (z + h); e^(-z^2) = e^(-h^2) e^(-l (z + h))."""
    c = z * 134217729.0  # 2^27 + 1
    h = c - (c - z)
    return _exp64(-(h * h), "erf.exp_h").copy() * _exp64(-((z - h) * (z + h)), "erf.exp_l")


def _erf_erfc64(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(erf x, erfc x). With z = |x| and e^(-z^2) by :func:`_exp_minus_square`:

    * z < 0.5: erf z = 2/sqrt(pi) z e^(-z^2) sum_n (2 z^2)^n / (1 3 5 ... (2n+1)), a series of positive terms (no
      cancellation), 24 terms (truncation < 1e-20 relative); erfc z = 1 - erf z (erf z < 0.53: no cancellation).
    * 0.5 <= z < 1.5: erfc z = e^(-z^2) P(z - 1), P the degree-17 fit :data:`_ERFC_MID` (z - 1 is exact);
      erf z = 1 - erfc z (erfc z < 0.48: no cancellation).
    * z >= 1.5: erfc z = e^(-z^2) / sqrt(pi) / (z + (1/2) / (z + 1 / (z + (3/2) / (z + ...)))), the continued
      fraction (Laplace's) evaluated from its 100th level up (truncation < 1e-16 at z = 1.5, less above); z clipped
      to 28, where erfc underflows to 0. erf z = 1 - erfc z.

    Negative x: erf(-z) = -erf z, erfc(-z) = 2 - erfc z. NaN stays NaN. Each branch computes on its own elements."""
    z = np.minimum(np.abs(x), 28.0)
    gauss = _exp_minus_square(z)
    erf_z, erfc_z = np.empty_like(z), np.empty_like(z)
    small, large = z < 0.5, ~(z < 1.5)  # NaN goes to the large branch
    middle = ~small & ~large
    zs = z[small]
    y, term, series = 2.0 * zs * zs, np.ones_like(zs), np.ones_like(zs)
    for n in range(1, 24):  # in a fixed order: term_n = term_{n-1} 2z^2 / (2n+1)
        term = term * y / (2 * n + 1)
        series = series + term
    erf_z[small] = 2.0 * _SQRT_PI_INV * zs * gauss[small] * series
    erfc_z[small] = 1.0 - erf_z[small]
    erfc_z[middle] = gauss[middle] * _horner(z[middle] - 1.0, _ERFC_MID)
    erf_z[middle] = 1.0 - erfc_z[middle]
    zl = z[large]
    fraction = zl.copy()
    for k in range(100, 0, -1):
        fraction = zl + (0.5 * k) / fraction  # zl >= 1.5: no division by zero
    erfc_z[large] = gauss[large] * _SQRT_PI_INV / fraction
    erf_z[large] = 1.0 - erfc_z[large]
    erf_x = np.copysign(erf_z, x)
    erfc_x = np.where(x < 0, 2.0 - erfc_z, erfc_z)
    return np.where(np.isnan(x), x, erf_x), np.where(np.isnan(x), x, erfc_x)


def _erf64(x: np.ndarray) -> np.ndarray:
    """erf x (see :func:`_erf_erfc64`)."""
    return _erf_erfc64(x)[0]


def _erfc64(x: np.ndarray) -> np.ndarray:
    """erfc x (see :func:`_erf_erfc64`)."""
    return _erf_erfc64(x)[1]


def _fresh64(kernel: Any, x: Any, op: str) -> np.ndarray:
    """``kernel`` (which works on a flat float64 array, in scratch buffers) applied to ``x``: a fresh float64 array
    of ``x``'s shape."""
    x = _host(x, op)
    return kernel(x.astype(np.float64).reshape(-1)).reshape(x.shape).copy()


def exp64(x: np.ndarray) -> np.ndarray:
    """e^x (see :func:`_exp64`), a fresh float64 array."""
    return _fresh64(_exp64, x, "exp")


def expm1_64(x: np.ndarray) -> np.ndarray:
    """e^x - 1 (see :func:`_expm1_64`), a fresh float64 array."""
    return _fresh64(_expm1_64, x, "expm1")


def log64(x: np.ndarray) -> np.ndarray:
    """ln x (see :func:`_log64`), a fresh float64 array."""
    return _fresh64(_log64, x, "log")


def tanh64(x: np.ndarray) -> np.ndarray:
    """tanh x (see :func:`_tanh64`), a fresh float64 array."""
    return _fresh64(_tanh64, x, "tanh")


def sigmoid64(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x) (see :func:`_sigmoid64`), a fresh float64 array."""
    return _fresh64(_sigmoid64, x, "sigmoid")


def pow64(a: np.ndarray, b: Any) -> np.ndarray:
    """a^b in float64. A scalar integer exponent |b| <= 64: repeated squaring (b < 0: 1 / a^|b|); b = 0.5: sqrt
    (IEEE-exact). Otherwise |a|^b = e^{b ln|a|}, with the sign and special cases of C's pow: a < 0 needs an integer
    b (odd b keeps the sign, else NaN); a^0 = 1, 1^b = 1 even for NaN, (-1)^inf = 1; 0^b = 0 (b > 0) or inf (b < 0)."""
    if np.ndim(b) == 0:
        exponent = float(b)
        if exponent == 0.5:
            return np.sqrt(a)
        if exponent.is_integer() and abs(exponent) <= 64:
            n = int(abs(exponent))
            result, square = np.ones_like(a), a
            while n:
                if n & 1:
                    result = result * square
                n >>= 1
                if n:
                    square = square * square
            return 1.0 / result if exponent < 0 else result
    b = np.asarray(b, dtype=np.float64)
    magnitude = _exp64(b * _log64(np.abs(a), "pow.log"), "pow.exp")
    integral = np.floor(b) == b
    odd = integral & (np.floor(b * 0.5) * 2.0 != b)
    out = np.where(a < 0, np.where(integral, np.where(odd, -magnitude, magnitude), np.nan), magnitude)
    out = np.where(a == 0, np.where(b > 0, 0.0, np.where(b < 0, np.inf, 1.0)), out)
    return np.where((b == 0) | (a == 1) | ((a == -1) & np.isinf(b)), 1.0, out)


def cos_turns64(t: np.ndarray) -> np.ndarray:
    """cos(2 pi t) in float64 (Box-Muller's angle is a fraction of a turn). Exact reduction by quarter turns:
    n = rint(4t), f = t - n/4 in [-1/8, 1/8] (exact), x = 2 pi f (two-part 2 pi) in [-pi/4, pi/4]; then
    cos(2 pi t) = cos x, -sin x, -cos x, sin x for n mod 4 = 0, 1, 2, 3, with the Taylor series of sin (to x^17)
    and cos (to x^18), truncation < 1e-19."""
    t = _host(t, "cos").astype(np.float64, copy=False)
    n = np.rint(4.0 * t)
    f = t - 0.25 * n
    x = f * _TWO_PI_HI + f * _TWO_PI_LO
    z = x * x
    sin = x * _horner(z, [(-1.0) ** k / math.factorial(2 * k + 1) for k in range(9)])
    cos = _horner(z, [(-1.0) ** k / math.factorial(2 * k) for k in range(10)])
    quadrant = np.mod(n, 4.0)
    return np.where(quadrant == 0, cos, np.where(quadrant == 1, -sin, np.where(quadrant == 2, -cos, sin)))


def scalar_pow(a: float, b: float) -> float:
    """``a ** b`` for a Python float (the optimizers' bias corrections, the schedulers' decay factors) by
    :func:`pow64`: C's ``pow``, which Python's ``**`` calls, has FMA and non-FMA variants that can differ by an ulp."""
    return float(pow64(np.array([a], dtype=np.float64), b)[0])


def scalar_cos_turns(t: float) -> float:
    """cos(2 pi t) for a Python float by :func:`cos_turns64` (instead of ``math.cos``: libm's)."""
    return float(cos_turns64(np.array([t], dtype=np.float64))[0])


def _unary(kernel: Any, op: str) -> Any:
    def apply(x: Any) -> np.ndarray:
        shape = np.shape(x)
        x64, dtype = _float64(x, op)
        with np.errstate(all="ignore"):  # inf and NaN are results here, as in PyTorch
            return kernel(x64).astype(dtype).reshape(shape)

    apply.__name__ = op
    apply.__doc__ = f"{op}(x) by :func:`{kernel.__name__}`, rounded to x's floating dtype (float32 for integers)."
    return apply


exp = _unary(_exp64, "exp")
expm1 = _unary(_expm1_64, "expm1")
log = _unary(_log64, "log")
tanh = _unary(_tanh64, "tanh")
sigmoid = _unary(_sigmoid64, "sigmoid")


def _log2_64(x: np.ndarray) -> np.ndarray:
    """log2 x (see :func:`_log64`, base 2)."""
    return _log64(x, "log2", base="2")


def _log10_64(x: np.ndarray) -> np.ndarray:
    """log10 x (see :func:`_log64`, base 10)."""
    return _log64(x, "log10", base="10")


# numpy's names, so that an op's formula reads the same on either module (``m.arcsin(a)`` with m = numpy or this one)
sin, cos, tan = _unary(_sin64, "sin"), _unary(_cos64, "cos"), _unary(_tan64, "tan")
arcsin, arccos, arctan = _unary(_asin64, "arcsin"), _unary(_acos64, "arccos"), _unary(_atan64, "arctan")
sinh, cosh = _unary(_sinh64, "sinh"), _unary(_cosh64, "cosh")
arcsinh, arccosh, arctanh = _unary(_asinh64, "arcsinh"), _unary(_acosh64, "arccosh"), _unary(_atanh64, "arctanh")
log1p, log2, log10, exp2 = (_unary(_log1p64, "log1p"), _unary(_log2_64, "log2"), _unary(_log10_64, "log10"),
                            _unary(_exp2_64, "exp2"))
erf, erfc = _unary(_erf64, "erf"), _unary(_erfc64, "erfc")
sqrt = np.sqrt  # correctly rounded (IEEE 754) in every dtype: the same bits everywhere already


def _binary(kernel: Any, op: str) -> Any:
    def apply(a: Any, b: Any) -> np.ndarray:
        a, b = (v if isinstance(v, (int, float)) else _host(v, op) for v in (a, b))  # Python numbers stay weak
        dtype = _floating(np.result_type(a, b))
        a64, b64 = np.broadcast_arrays(a.astype(np.float64), np.asarray(b, dtype=np.float64))
        with np.errstate(all="ignore"):
            return kernel(a64.reshape(-1), b64.reshape(-1)).astype(dtype).reshape(a64.shape)

    apply.__name__ = op
    apply.__doc__ = f"{op}(a, b) by :func:`{kernel.__name__}` (broadcasting), rounded to numpy's result dtype."
    return apply


arctan2, logaddexp = _binary(_atan2_64, "arctan2"), _binary(_logaddexp64, "logaddexp")


def pow(a: Any, b: Any) -> np.ndarray:  # noqa: A001 - numpy's and PyTorch's name
    """a ** b by :func:`pow64`, rounded to the result dtype numpy would give ``a ** b``."""
    a = _host(a, "pow")
    dtype = np.result_type(a, b)
    if dtype.kind != "f" and dtype.name != "bfloat16":
        return a ** b  # integer powers: exact integer arithmetic
    a64 = a.astype(np.float64)
    if np.ndim(b) == 0 and not hasattr(b, "dtype"):  # a Python number: pow64's scalar fast paths
        b64: Any = b
    else:
        a64, b64 = np.broadcast_arrays(a64, np.asarray(b, dtype=np.float64))
    shape = a64.shape
    with np.errstate(all="ignore"):  # flat: numpy turns 0-d results into scalars, which cannot be written into
        out = pow64(a64.reshape(-1), b64 if np.ndim(b64) == 0 else b64.reshape(-1))
    return np.asarray(out).astype(dtype).reshape(shape)
