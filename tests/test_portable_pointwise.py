"""deterministic("portable") for the pointwise ops of tinygrad_nb.ops.pointwise (sin ... erfinv, softplus, atan2),
GELU and the composites built on them.

1. Accuracy: every new kernel of tinygrad_nb.portable against a float64 reference (mpmath at 40 digits when installed;
   Python's math module for the float32 checks), in float64 within a stated ulp bound and in float32 within one ulp
   of the correctly rounded value (differences only where the float64 result sits next to a float32 midpoint),
   on dense grids plus the edge values (0, -0, subnormals, huge, +-inf, NaN, domain edges).
2. Bits: forward and backward of every op, in subprocesses under numpy's AVX-512, AVX2 and baseline loops
   (NPY_DISABLE_CPU_FEATURES, as tests/test_portable.py), give identical bytes in portable mode; plain mode differs
   for at least one op when the emulation changes numpy's loops (so the test can fail).
3. gradcheck in float64 under portable mode for every op.
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb import portable
from tinygrad_nb.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
RNG = np.random.default_rng(20)

# -- 1. accuracy ---------------------------------------------------------------------------------------------------
SPECIAL = [0.0, -0.0, 5e-324, -5e-324, 1e-310, 1e-300, -1e-300, 1e-40, 1e-8, -1e-8, 0.5, -0.5, 1.0, -1.0, 2.0, 3e38,
           -3e38, 1e300, -1e300, 1.7976931348623157e308, math.inf, -math.inf, math.nan]


def grid(low: float, high: float, n: int = 4000) -> np.ndarray:
    return np.linspace(low, high, n)


def log_grid(low: float, high: float, n: int = 1500) -> np.ndarray:
    return np.exp(np.linspace(math.log(low), math.log(high), n))


def both_signs(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, -x])


# name: (mpmath function name, math reference (or None), inputs, float64 ulp bound)
KERNELS = {
    "sin": ("sin", math.sin, np.concatenate([grid(-20, 20), both_signs(log_grid(1e-300, 1e300)),
                                             np.arange(1, 400) * (math.pi / 2)]), 2),
    "cos": ("cos", math.cos, np.concatenate([grid(-20, 20), both_signs(log_grid(1e-300, 1e300)),
                                             np.arange(1, 400) * (math.pi / 2)]), 2),
    "tan": ("tan", math.tan, np.concatenate([grid(-20, 20), both_signs(log_grid(1e-300, 1e300)),
                                             np.arange(1, 400) * (math.pi / 2)]), 4),
    "arcsin": ("asin", math.asin, np.concatenate([grid(-1, 1), both_signs(1 - log_grid(1e-16, 0.5)),
                                                  both_signs(log_grid(1e-300, 0.5))]), 4),
    "arccos": ("acos", math.acos, np.concatenate([grid(-1, 1), both_signs(1 - log_grid(1e-16, 0.5)),
                                                  both_signs(log_grid(1e-300, 0.5))]), 4),
    "arctan": ("atan", math.atan, np.concatenate([grid(-5, 5), both_signs(log_grid(1e-300, 1e300))]), 3),
    "sinh": ("sinh", math.sinh, np.concatenate([grid(-30, 30), both_signs(log_grid(1e-300, 710.4))]), 4),
    "cosh": ("cosh", math.cosh, np.concatenate([grid(-30, 30), both_signs(log_grid(1e-300, 710.4))]), 4),
    "arcsinh": ("asinh", math.asinh, np.concatenate([grid(-30, 30), both_signs(log_grid(1e-300, 1e300))]), 4),
    "arccosh": ("acosh", math.acosh, np.concatenate([1 + log_grid(1e-16, 30), log_grid(1, 1e300)]), 4),
    "arctanh": ("atanh", math.atanh, np.concatenate([grid(-0.999, 0.999), both_signs(1 - log_grid(1e-16, 0.5)),
                                                     both_signs(log_grid(1e-300, 0.5))]), 4),
    "log1p": ("log1p", math.log1p, np.concatenate([grid(-0.999, 5), -1 + log_grid(1e-16, 1),
                                                   both_signs(log_grid(1e-300, 1e-2)), log_grid(1, 1e300)]), 4),
    "log2": ("log", math.log2, np.concatenate([log_grid(1e-300, 1e300), 2.0 ** np.arange(-1074, 1024, 7.0)]), 2),
    "log10": ("log10", math.log10, np.concatenate([log_grid(1e-300, 1e300), 10.0 ** np.arange(-300, 300)]), 2),
    "exp2": ("exp2", None, np.concatenate([grid(-1074, 1023.9), grid(-2, 2), np.arange(-1074.0, 1024.0)]), 2),
    "erf": ("erf", math.erf, np.concatenate([grid(-7, 7), both_signs(log_grid(1e-300, 1))]), 8),
    "erfc": ("erfc", math.erfc, np.concatenate([grid(-7, 27), both_signs(log_grid(1e-300, 0.5))]), 8),
}


def mp_reference(name: str, mp_name: str, x: np.ndarray) -> np.ndarray:
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    if name == "log2":
        f = lambda v: mpmath.log(v, 2)  # noqa: E731
    elif name == "exp2":
        f = lambda v: mpmath.power(2, v)  # noqa: E731
    else:
        f = getattr(mpmath, mp_name)
    return np.array([float(f(mpmath.mpf(float(v)))) for v in x])


def ulps(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|got - ref| in units of the spacing of float numbers at ref (both finite here)."""
    return np.abs(got.astype(np.float64) - ref) / np.spacing(np.abs(ref.astype(got.dtype))).astype(np.float64)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_float64_kernels_are_within_a_few_ulp_of_the_true_value(name: str) -> None:
    mp_name, _, x, bound = KERNELS[name]
    got = getattr(portable, name)(x)
    assert got.dtype == np.float64
    ref = mp_reference(name, mp_name, x)
    finite = np.isfinite(ref) & (ref != 0) & (np.abs(ref) > 2.0 ** -1022)  # (subnormal results: absolute below)
    error = ulps(got[finite], ref[finite])
    assert (error <= bound).all(), (x[finite][np.argmax(error)], error.max())
    exact = ~np.isfinite(ref) | (ref == 0)
    np.testing.assert_array_equal(got[exact], ref[exact])  # inf, zeros, NaN: exactly
    tiny = np.isfinite(ref) & (ref != 0) & (np.abs(ref) <= 2.0 ** -1022)
    assert (np.abs(got[tiny] - ref[tiny]) <= 2 * 5e-324).all()  # subnormal results: within two of the last unit


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_float32_results_are_the_correctly_rounded_value_within_one_ulp(name: str) -> None:
    _, reference, x, _ = KERNELS[name]
    with np.errstate(all="ignore"):
        x32 = np.concatenate([x, RNG.uniform(-3, 3, 20_000)]).astype(np.float32)  # huge values: inf, dropped
        x32 = x32[np.isfinite(x32)]
        if reference is None:
            ref = np.exp2(x32.astype(np.float64))  # exact for float32 inputs' integer parts; ~0.5 ulp otherwise
        else:
            ref = np.array([_call(reference, float(v)) for v in x32])
        expected = ref.astype(np.float32)
    got = getattr(portable, name)(x32)
    assert got.dtype == np.float32
    both = np.isfinite(expected) & np.isfinite(got)
    np.testing.assert_array_equal(got[~both], expected[~both])  # inf and NaN where the reference has them
    assert (ulps(got[both], expected[both].astype(np.float64)) <= 1).all()
    assert np.mean(got[both] != expected[both]) < 1e-3  # differences only where float64 is ambiguous


def _call(f, v: float) -> float:
    """math's function with numpy's special values (NaN outside the domain, +-inf at the poles, overflow inf)."""
    try:
        return f(v)
    except OverflowError:
        return math.copysign(math.inf, v) if f is math.sinh else math.inf
    except ValueError:
        poles = {math.atanh: (1.0, -1.0), math.log1p: (-1.0,), math.log2: (0.0,), math.log10: (0.0,)}
        if v in poles.get(f, ()):
            return -math.inf if f is not math.atanh else math.copysign(math.inf, v)
        return math.nan


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_special_values_match_numpys_float64_functions(name: str) -> None:
    x = np.array(SPECIAL + [1.0000001, -1.0000001, 0.9999999, -2.0, 1e-320], np.float64)
    with np.errstate(all="ignore"):
        reference = np.vectorize(getattr(math, name)) if name in ("erf", "erfc") else getattr(np, name)
        expected = reference(x)
        got = getattr(portable, name)(x)
    close = np.isclose(got, expected, rtol=2e-15, atol=0) | (got == expected) | (np.isnan(got) & np.isnan(expected))
    assert close.all(), (x[~close], got[~close], expected[~close])
    zeros = expected == 0
    np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(expected[zeros]))  # -0 stays -0


def test_sin_and_cos_reduce_huge_arguments_exactly() -> None:
    """Above 2^20 the reduction by pi/2 is done in exact integer arithmetic: full accuracy up to the largest float64,
    including the float64 known to lie closest to a multiple of pi/2 (6381956970095103 2^797)."""
    x = np.concatenate([2.0 ** np.arange(20, 1024, 3.0), [6381956970095103 * 2.0 ** 797, 1e22, 3.4e38, 2.0 ** 20]])
    for name in ("sin", "cos", "tan"):
        got = getattr(portable, name)(x)
        ref = mp_reference(name, name, x)
        assert (ulps(got, ref) <= 2).all(), name


def test_the_split_pi_over_2_constants_are_exact_pieces() -> None:
    """Derived at import from Machin's formula: the pieces add up to pi/2 within 2^-130, the first three have 27
    significant bits (so n c_i is exact for |n| < 2^26), and pi/2 itself rounds to math.pi / 2."""
    from fractions import Fraction

    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    total = sum(Fraction(c) for c in portable._PIO2_PARTS)
    exact = Fraction(int(mpmath.floor(mpmath.pi / 2 * 2 ** 200)), 2 ** 200)
    assert abs(total - exact) < Fraction(1, 2 ** 130)
    for c in portable._PIO2_PARTS[:3]:
        mantissa = Fraction(c).numerator
        assert mantissa.bit_length() <= 27
    assert float(Fraction(portable._PIO2_INT, 2 ** portable._PIO2_BITS)) == math.pi / 2


def test_binary_kernels_atan2_and_logaddexp() -> None:
    y = np.concatenate([RNG.normal(size=3000) * np.exp(RNG.uniform(-30, 30, 3000)), [0.0, -0.0, 1.0, -1.0]])
    x = np.concatenate([RNG.normal(size=3000) * np.exp(RNG.uniform(-30, 30, 3000)), [-0.0, -0.0, 0.0, -0.0]])
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    got = portable.arctan2(y, x)
    ref = np.array([float(mpmath.atan2(a, b)) if (a, b) != (0, 0) else math.atan2(a, b) for a, b in zip(y, x)])
    nonzero = ref != 0
    assert (ulps(got[nonzero], ref[nonzero]) <= 3).all()
    np.testing.assert_array_equal(np.signbit(got), np.signbit(ref))
    specials = [math.inf, -math.inf, 0.0, -0.0, 1.0, -1.0, math.nan]
    a, b = np.meshgrid(specials, specials)
    np.testing.assert_array_equal(portable.arctan2(a, b), np.arctan2(a, b))  # every C special case
    number = ~(np.isnan(a) | np.isnan(b))
    np.testing.assert_array_equal(np.signbit(portable.arctan2(a, b))[number], np.signbit(np.arctan2(a, b))[number])
    p, q = RNG.normal(size=3000) * 40, RNG.normal(size=3000) * 40
    ref = np.array([float(mpmath.log(mpmath.exp(u) + mpmath.exp(v))) for u, v in zip(p, q)])
    assert (ulps(portable.logaddexp(p, q), ref) <= 4).all()
    left = np.array([math.inf, -math.inf, math.inf, -math.inf, 0.0, math.nan])
    right = np.array([math.inf, -math.inf, -math.inf, 3.0, 0.0, 1.0])
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(portable.logaddexp(left, right), np.logaddexp(left, right))
    assert portable.arctan2(np.float32([1.0]), 2.0).dtype == np.float32
    assert portable.logaddexp(np.float32(0), np.float32([1.0, 2.0])).dtype == np.float32


def test_kernels_keep_16_bit_dtypes_and_give_integers_float32() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    for name in KERNELS:
        for dtype in (np.float16, ml_dtypes.bfloat16):
            x = np.array([0.25, 0.5], dtype)
            assert getattr(portable, name)(x).dtype == dtype, name
        assert getattr(portable, name)(np.array([1, 2])).dtype == np.float32, name


# -- the ops: every one in portable mode ---------------------------------------------------------------------------
def domain(name: str, n: int, dtype=np.float64) -> np.ndarray:
    """Inputs inside the op's domain (away from poles, where finite differences mean nothing)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # the same inputs in every process
    low, high = {"asin": (-0.9, 0.9), "acos": (-0.9, 0.9), "atanh": (-0.9, 0.9), "acosh": (1.1, 4.0),
                 "log1p": (-0.9, 3.0), "log2": (0.1, 9.0), "log10": (0.1, 9.0), "erfinv": (-0.95, 0.95),
                 "tan": (-1.3, 1.3)}.get(name, (-4.0, 4.0))
    return rng.uniform(low, high, n).astype(dtype)


UNARY_OPS = ["sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "log1p", "expm1",
             "log2", "log10", "exp2", "erf", "erfc", "erfinv"]
COMPOSITES = {  # name: function of one tensor (the ops built on the pointwise ones and on exp/log/tanh)
    "softplus": F.softplus, "softplus_beta": lambda x: F.softplus(x, beta=2.0), "mish": F.mish,
    "logsigmoid": F.logsigmoid, "elu": F.elu, "celu": lambda x: F.celu(x, alpha=0.7), "selu": F.selu,
    "silu": F.silu, "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "atan2": lambda x: tg.atan2(x, x * 0.7 - 0.3), "logaddexp": lambda x: tg.logaddexp(x, 1.5 - x),
    "logaddexp2": lambda x: tg.logaddexp2(x, 1.5 - x),
}


def op_function(name: str):  # noqa: ANN201 - a function of one tensor
    return COMPOSITES[name] if name in COMPOSITES else getattr(tg, name)


ALL_OPS = UNARY_OPS + sorted(COMPOSITES)


@pytest.mark.parametrize("name", ALL_OPS)
def test_gradcheck_in_float64_under_portable_mode(name: str) -> None:
    x = tg.tensor(domain(name, 12).reshape(3, 4))
    with tg.deterministic("portable"):
        assert tg.gradcheck(op_function(name), [x])


@pytest.mark.parametrize("name", ALL_OPS)
def test_portable_ops_agree_with_plain_mode_closely(name: str) -> None:
    """Forward and backward in float32: within a few float32 ulp of plain mode (which uses numpy's kernels)."""
    results = []
    for mode in (True, "portable"):
        x = tg.tensor(domain(name, 500, np.float32), requires_grad=True)
        with tg.deterministic(mode):
            out = op_function(name)(x)
            (out * tg.tensor(np.linspace(-1, 1, 500, dtype=np.float32))).sum().backward()
        assert out.dtype == np.float32 and x.grad.dtype == np.float32
        results.append((out.numpy(), x.grad.numpy()))
    (plain, plain_grad), (ours, our_grad) = results
    np.testing.assert_allclose(ours, plain, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(our_grad, plain_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ALL_OPS)
def test_16_bit_inputs_keep_their_dtype_in_portable_mode(name: str) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    for dtype in (np.float16, ml_dtypes.bfloat16):
        values = domain(name, 16).astype(dtype)
        x = tg.tensor(values, requires_grad=True)
        with tg.deterministic("portable"):
            out = op_function(name)(x)
            out.sum().backward()
        assert out.dtype == dtype and x.grad.dtype == dtype
        exact = op_function(name)(tg.tensor(values.astype(np.float64))).numpy()
        np.testing.assert_allclose(out.numpy().astype(np.float64), exact, rtol=1e-2, atol=1e-2)


def test_portable_mode_calls_no_numpy_transcendental(monkeypatch: pytest.MonkeyPatch) -> None:
    """With numpy's transcendental ufuncs replaced by tripwires, every op runs forward and backward in portable mode
    (plain mode trips them: the tripwires work)."""
    names = ["sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh", "arcsinh",
             "arccosh", "arctanh", "exp", "exp2", "expm1", "log", "log1p", "log2", "log10", "logaddexp", "logaddexp2",
             "power", "float_power"]

    def tripwire(name: str):  # noqa: ANN202
        def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise AssertionError(f"numpy.{name} called")
        return call

    for name in names:
        monkeypatch.setattr(np, name, tripwire(name))
    monkeypatch.setattr(math, "erf", tripwire("math.erf"))
    monkeypatch.setattr(math, "erfc", tripwire("math.erfc"))
    for name in ALL_OPS:
        for dtype in (np.float32, np.float64):
            x = tg.tensor(domain(name, 8, dtype), requires_grad=True)
            with tg.deterministic("portable"):
                op_function(name)(x).sum().backward()
            assert x.grad is not None and np.isfinite(x.grad.numpy()).all(), name
    with pytest.raises(AssertionError, match="numpy.sin called"):
        tg.tensor([1.0]).sin()


# -- 2. the same bytes under every numpy SIMD level -----------------------------------------------------------------
SIMD_SETTINGS = {"native": None, "AVX2 (no AVX-512)": "X86_V4 AVX512_ICL", "baseline": "X86_V4 AVX512_ICL X86_V3"}

HASHES = r"""
import hashlib, json, sys
import numpy as np
import tinygrad_nb as tg
sys.path.insert(0, sys.argv[1])
from test_portable_pointwise import ALL_OPS, domain, op_function
from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

def digest(name, mode, dtype):
    x = tg.tensor(domain(name, 4000, dtype), requires_grad=True)
    weights = tg.tensor(np.linspace(-1, 1, 4000).astype(dtype))
    with tg.deterministic(mode):
        out = op_function(name)(x)
        (out * weights).sum().backward()
    return hashlib.sha256(out.numpy().tobytes() + x.grad.numpy().tobytes()).hexdigest()

result = {mode_name: {f"{name} {np.dtype(dtype).name}": digest(name, mode, dtype) for name in ALL_OPS
                      for dtype in (np.float32, np.float64)}
          for mode_name, mode in (("plain", True), ("portable", "portable"))}
result["simd"] = [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]
print(json.dumps(result))
"""


def run_hashes(disabled: str | None) -> dict | None:
    env = {k: v for k, v in os.environ.items() if k != "NPY_DISABLE_CPU_FEATURES"}
    if disabled:
        env["NPY_DISABLE_CPU_FEATURES"] = disabled
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", HASHES, str(ROOT / "tests")], env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        if disabled:
            return None  # a feature this CPU or numpy build does not have
        raise AssertionError(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def simd_runs() -> dict[str, dict]:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("NPY_DISABLE_CPU_FEATURES emulation: x86-64 only")
    runs: dict[str, dict] = {}
    for label, disabled in SIMD_SETTINGS.items():
        result = run_hashes(disabled)
        if result is not None and all(result["simd"] != other["simd"] for other in runs.values()):
            runs[label] = result  # only settings that really changed numpy's enabled loops
    if len(runs) < 2:
        pytest.skip("numpy here runs at one SIMD level only")
    return runs


def test_every_op_gives_the_same_bytes_at_every_simd_level_in_portable_mode(simd_runs: dict) -> None:
    first = next(iter(simd_runs.values()))["portable"]
    assert len(first) == 2 * len(ALL_OPS)
    for label, run in simd_runs.items():
        differing = [key for key, value in run["portable"].items() if value != first[key]]
        assert differing == [], (label, differing)


def test_plain_mode_differs_between_simd_levels_for_some_ops(simd_runs: dict) -> None:
    """numpy's own sin/cos/exp/log/... loops differ between SIMD levels for at least one of these ops: without the
    portable kernels the first test would fail."""
    runs = list(simd_runs.values())
    differing = {key for run in runs[1:] for key, value in run["plain"].items() if value != runs[0]["plain"][key]}
    assert differing, "plain mode happened to agree at every SIMD level"
