"""deterministic("portable"): the same bits under every BLAS kernel, thread count and numpy SIMD level.

The cross-machine tests emulate other CPUs on this one: OpenBLAS honours ``OPENBLAS_CORETYPE`` (its kernel for
another CPU model; only the kernels this CPU can run, checked with threadpoolctl as .ci/blas_kernels.py does),
``OPENBLAS_NUM_THREADS`` sets its thread count, and numpy honours ``NPY_DISABLE_CPU_FEATURES`` (its baseline loops
instead of the AVX2/AVX-512 ones; x86-64 only). Each setting is a fresh subprocess that trains a seeded digits MLP
for a few dozen steps twice, in plain deterministic mode and in portable mode, and prints the hashes of the losses
and final parameters. Portable runs must agree byte for byte; plain runs must not (that is what portable mode is
for, and it shows the emulation really changes the arithmetic).
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb import portable
from tinygrad_nb.determinism import DeterminismError

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ["Haswell", "SkylakeX", "Sandybridge", "Nehalem"]
BASELINE_SIMD = "X86_V4 AVX512_ICL X86_V3"  # numpy 2.4 on x86-64: run its baseline (SSE4.2) loops only

TRAIN = r"""
import hashlib, json, sys
import numpy as np
import tinygrad_nb as tg
from tinygrad_nb import nn, optim
from tinygrad_nb.nn import functional as F
from threadpoolctl import threadpool_info
from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

table = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1, dtype=np.float32)
x_all, y_all = table[:, :64] / 16.0, table[:, 64].astype(np.int64)

def train(mode):
    tg.manual_seed(0)
    with tg.deterministic(mode, blas_threads=None):
        model = nn.Sequential(nn.Linear(64, 96), nn.Tanh(), nn.Linear(96, 48), nn.GELU(), nn.Linear(48, 10))
        with tg.no_grad():  # Box-Muller normals on top of the uniform init: exercises log/cos
            for p in model.parameters():
                p += 0.05 * tg.randn(*p.shape)
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        losses = []
        for step in range(30):
            rows = tg.randperm(len(x_all))[:128].numpy()
            x, y = tg.tensor(x_all[rows]), tg.tensor(y_all[rows])
            hidden = model(x)
            loss = F.cross_entropy(hidden, y) + 0.01 * hidden.sigmoid().mean() + 0.001 * (hidden.exp() + 1).log().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.numpy())
    digest = hashlib.sha256(np.stack(losses).tobytes())
    for p in model.parameters():
        digest.update(p.numpy().tobytes())
    return digest.hexdigest()

def reductions():
    # numpy's float32 sum/mean/max/cumsum (which portable mode leaves to numpy), and its exp (which it replaces)
    rng = np.random.default_rng(5)
    sums, exps = hashlib.sha256(), hashlib.sha256()
    for n in (1, 7, 8, 9, 16, 100, 127, 128, 129, 1000, 4097, 100_000):
        x = rng.normal(size=n).astype(np.float32)
        m = rng.normal(size=(n % 97 + 3, n % 89 + 5)).astype(np.float32)
        for r in (x.sum(), x.mean(), x.max(), np.cumsum(x), m.sum(axis=0), m.sum(axis=1), m[:, ::2].sum(axis=1),
                  m.T.sum(axis=1), m.mean(axis=1, keepdims=True), np.sqrt(np.abs(x)), x / np.float32(3.1)):
            sums.update(np.asarray(r).tobytes())
        exps.update(np.exp(x).tobytes() + np.log(np.abs(x)).tobytes() + np.tanh(x).tobytes())
    return sums.hexdigest(), exps.hexdigest()

blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
sums, numpy_exp = reductions()
print(json.dumps({
    "plain": train(True), "portable": train("portable"), "sums": sums, "numpy_exp": numpy_exp,
    "architecture": [i.get("architecture") for i in blas], "threads": [i.get("num_threads") for i in blas],
    "simd": [name for name in __cpu_dispatch__ if __cpu_features__.get(name)],
}))
"""


def run_training(**env: str) -> dict | None:
    """Train in a fresh process with these environment variables; None when the setting cannot run here."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES")}
    full_env.update(env)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    digits = ROOT / "tinygrad_nb" / "datasets" / "digits.csv"
    done = subprocess.run([sys.executable, "-c", TRAIN, str(digits)], env=full_env, capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        if "OPENBLAS_CORETYPE" in env or "NPY_DISABLE_CPU_FEATURES" in env:
            return None  # e.g. a kernel whose instructions this CPU lacks
        raise AssertionError(f"training failed under {env}:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs() -> dict[str, dict]:
    """label -> result of run_training, for every setting this machine can emulate."""
    pytest.importorskip("threadpoolctl")
    results: dict[str, dict] = {}
    for kernel in KERNELS:
        result = run_training(OPENBLAS_CORETYPE=kernel, OPENBLAS_NUM_THREADS="1")
        # the setting took effect only if threadpoolctl reports that very kernel
        if result is not None and [a.lower() for a in result["architecture"]] == [kernel.lower()]:
            results[f"{kernel}, 1 thread"] = result
    if not results:
        pytest.skip("numpy's BLAS here is not an OpenBLAS that honours OPENBLAS_CORETYPE")
    first = next(iter(results)).split(",")[0]
    results[f"{first}, 2 threads"] = run_training(OPENBLAS_CORETYPE=first, OPENBLAS_NUM_THREADS="2")
    assert results[f"{first}, 2 threads"]["threads"] == [2]
    if platform.machine().lower() in ("x86_64", "amd64"):
        result = run_training(OPENBLAS_CORETYPE=first, OPENBLAS_NUM_THREADS="1", NPY_DISABLE_CPU_FEATURES=BASELINE_SIMD)
        if result is not None and result["simd"] != results[f"{first}, 1 thread"]["simd"]:
            results[f"{first}, 1 thread, numpy baseline SIMD"] = result
    return results


def test_portable_training_is_identical_under_every_blas_kernel_thread_count_and_simd_level(runs: dict) -> None:
    digests = {label: r["portable"] for label, r in runs.items()}
    assert len(set(digests.values())) == 1, digests
    assert len(runs) >= 2  # at least one kernel with 1 and 2 threads


def test_numpy_reductions_and_ieee_ops_do_not_depend_on_the_simd_level(runs: dict) -> None:
    """What portable mode leaves to numpy (float32 sum, mean, max, cumsum over every axis layout, sqrt, divide)
    gives the same bytes everywhere; numpy's exp/log/tanh, which it replaces, need not (recorded, not asserted)."""
    assert len({r["sums"] for r in runs.values()}) == 1


def test_plain_deterministic_mode_is_not_portable(runs: dict) -> None:
    kernels = {r["architecture"][0].lower() for r in runs.values()}
    fma_and_not = bool(kernels & {"haswell", "skylakex"}) and bool(kernels & {"sandybridge", "nehalem"})
    simd = [label for label in runs if "SIMD" in label]
    if not fma_and_not and not simd:  # e.g. Sandybridge and Nehalem alone: both sum without FMA, in the same order
        pytest.skip("no two BLAS kernels that round differently, and one SIMD level, can run here")
    digests = {label: r["plain"] for label, r in runs.items()}
    assert len(set(digests.values())) >= 2, digests  # the emulated machines really compute differently
    if fma_and_not:  # the BLAS kernel alone (same SIMD level, one thread) changes plain mode's bits
        assert len({r["plain"] for label, r in runs.items() if label.endswith("1 thread")}) >= 2, digests
    if simd:  # numpy's exp/log/tanh alone (same BLAS kernel and threads) change bits too
        same_kernel = simd[0].replace(", numpy baseline SIMD", "")
        assert runs[simd[0]]["numpy_exp"] != runs[same_kernel]["numpy_exp"]
        assert runs[simd[0]]["plain"] != runs[same_kernel]["plain"]


# -- the matrix product: correctly rounded ---------------------------------------------------------------------------
def round_exact(value: Fraction) -> np.float32:
    """RN32 of an exact rational, ties to even, zeros as +0 (the definition portable.matmul computes)."""
    guess = np.float32(float(value))
    candidates = [np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf))]
    best = min(candidates, key=lambda c: (abs(Fraction(float(c)) - value), int(np.float32(c).view(np.uint32)) & 1))
    return np.float32(best) + np.float32(0.0)


def exact_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty((a.shape[0], b.shape[1]), np.float32)
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            out[i, j] = round_exact(sum((Fraction(float(p)) * Fraction(float(q)) for p, q in zip(a[i], b[:, j])),
                                        Fraction(0)))
    return out


@pytest.mark.parametrize("case", ["normal", "cancellation", "midpoints", "tiny and huge"])
def test_matmul_is_the_correctly_rounded_exact_product(case: str) -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(size=(12, 40)).astype(np.float32)
    b = rng.normal(size=(40, 9)).astype(np.float32)
    if case == "cancellation":  # the second half of each row cancels the first: sums far below the bound
        a[:, 20:] = -a[:, :20]
        b[20:] = b[:20] * np.float32(1 + 2 ** -20)
    elif case == "midpoints":  # integer sums needing 25 bits: many land exactly on float32 midpoints
        a = rng.integers(-2 ** 23, 2 ** 23, size=(12, 6)).astype(np.float32)
        b = rng.integers(-3, 4, size=(6, 9)).astype(np.float32)
        a[:, 0] *= np.float32(2.0 ** -30)  # and some exact sums just off a midpoint
    elif case == "tiny and huge":
        a *= np.float32(1e-30)
        b[:, :4] *= np.float32(1e30)
    got = portable.matmul(a, b)
    assert got.dtype == np.float32
    assert got.tobytes() == exact_product(a, b).tobytes()


def test_matmul_does_not_depend_on_the_blas_summation_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in BLAS kernels that sum the k exact products in other orders (reversed, shuffled, pairwise): the
    float64 results differ in their last bits, the correctly rounded float32 results do not."""
    rng = np.random.default_rng(11)
    a = rng.normal(size=(30, 200)).astype(np.float32)
    b = rng.normal(size=(200, 25)).astype(np.float32)
    a[:, 100:] = -a[:, :100] * np.float32(1 + 2 ** -12)  # cancellation: many outputs take the exact path
    real_matmul = np.matmul
    expected = portable.matmul(a, b)
    float64_results = set()
    for order in ("reversed", "shuffled", "pairwise"):
        def kernel(x: np.ndarray, y: np.ndarray, out: np.ndarray | None = None, order: str = order) -> np.ndarray:
            products = x[:, :, None] * y[None, :, :]  # (m, k, n), exact
            if order == "pairwise":
                while products.shape[1] > 1:
                    half = products.shape[1] // 2
                    products = np.concatenate([products[:, :half] + products[:, half:2 * half],
                                               products[:, 2 * half:]], axis=1)
                result = products[:, 0]
            else:
                k = products.shape[1]
                perm = np.arange(k)[::-1] if order == "reversed" else np.random.default_rng(3).permutation(k)
                result = np.add.accumulate(products[:, perm], axis=1)[:, -1]  # one addition at a time
            if out is not None:
                out[...] = result
                return out
            return result

        monkeypatch.setattr(np, "matmul", kernel)
        float64_results.add(kernel(a.astype(np.float64), b.astype(np.float64)).tobytes())
        got = portable.matmul(a, b)
        monkeypatch.setattr(np, "matmul", real_matmul)
        assert got.tobytes() == expected.tobytes(), order
    assert len(float64_results) == 3  # the stand-ins really round differently


def test_exact_paths_alone_give_the_correctly_rounded_product() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=(6, 30)).astype(np.float32)
    b = rng.normal(size=(30, 7)).astype(np.float32)
    a[:, 15:] = -a[:, :15]
    expected = exact_product(a, b)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    out = np.full((6, 7), np.nan, np.float32)
    portable._recompute(out, np.arange(out.size), a64, b64)
    assert (out + np.float32(0)).tobytes() == expected.tobytes()
    singles = np.array([[portable.exact_dot(a64[i], b64[:, j]) for j in range(7)] for i in range(6)], np.float32)
    assert (singles + np.float32(0)).tobytes() == expected.tobytes()


def test_matmul_follows_numpys_shape_rules() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 1, 4, 5)).astype(np.float32)
    b = rng.normal(size=(2, 5, 6)).astype(np.float32)
    v = rng.normal(size=5).astype(np.float32)
    for x, y in [(a, b), (v, b), (a, v), (v, v), (a[0, 0], b[0])]:
        got, expected = portable.matmul(x, y), np.matmul(x.astype(np.float64), y.astype(np.float64))
        assert got.shape == expected.shape
        assert got.tobytes() == expected.astype(np.float32).tobytes() or np.abs(got - expected).max() < 1e-5


def test_matmul_special_values_do_not_depend_on_the_order() -> None:
    inf, nan = np.float32(np.inf), np.float32(np.nan)
    a = np.array([[inf, 1], [inf, 1], [nan, 0], [1, -1]], np.float32)
    b = np.array([[0, 2, 1], [1, 1, -inf]], np.float32)
    with np.errstate(all="ignore"):
        got = portable.matmul(a, b)
    expected = np.array([[nan, inf, nan], [nan, inf, nan], [nan, nan, nan], [-1, 1, inf]], np.float32)
    assert got.tobytes() == expected.tobytes()  # one NaN pattern: numpy's canonical quiet NaN
    zeros = portable.matmul(np.array([[-1.0, 1.0]], np.float32), np.array([[0.0], [-0.0]], np.float32))
    assert zeros.tobytes() == np.float32(0.0).tobytes()  # exact zero sums are +0


def test_matmul_refuses_float64_and_keeps_integers_and_halves() -> None:
    with pytest.raises(DeterminismError, match=r"matmul: deterministic\('portable'\) has no exact product for "
                                               r"float64 operands \(shapes \(2, 3\) @ \(3, 2\)\)"):
        portable.matmul(np.ones((2, 3)), np.ones((3, 2)))
    ints = np.arange(6).reshape(2, 3)
    assert (portable.matmul(ints, ints.T) == ints @ ints.T).all()
    half = portable.matmul(np.full((2, 3), 0.1, np.float16), np.full((3, 2), 3, np.float16))
    assert half.dtype == np.float16 and half.tobytes() == np.full((2, 2), 0.9, np.float16).tobytes()


def test_every_blas_op_goes_through_the_portable_product_in_portable_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []
    real = portable.matmul
    monkeypatch.setattr(portable, "matmul", lambda a, b: calls.append((a.shape, b.shape)) or real(a, b))
    x = tg.randn(4, 3, 8, 8, requires_grad=True)
    w = tg.randn(5, 3, 3, 3, requires_grad=True)
    lin = tg.nn.Linear(8, 6)
    with tg.deterministic("portable"):
        out = tg.nn.functional.conv2d(x, w).sum() + (lin(x) @ tg.randn(6, 2)).sum() + (x[0, 0] @ x[0, 1]).sum()
        out.backward()
    # forward: conv, linear, two matmuls (4); backward: both operands of conv, linear and x @ x, one of @ randn (7)
    assert len(calls) == 11
    calls.clear()
    with tg.deterministic(True):
        (lin(x) @ tg.randn(6, 2)).sum().backward()
    assert calls == []


# -- the transcendental kernels ---------------------------------------------------------------------------------------
def correctly_rounded(f, x: np.ndarray) -> np.ndarray:
    """float32 of numpy's float64 function: right for all but ~1e-8 of inputs, enough to check a kernel's accuracy."""
    with np.errstate(all="ignore"):
        return f(x.astype(np.float64)).astype(np.float32)


@pytest.mark.parametrize("name, reference, low, high", [
    ("exp", np.exp, -90.0, 90.0), ("log", np.log, 1e-30, 1e30), ("tanh", np.tanh, -12.0, 12.0),
    ("sigmoid", lambda v: 1 / (1 + np.exp(-v)), -40.0, 40.0), ("expm1", np.expm1, -3.0, 3.0)])
def test_kernels_round_float32_like_the_float64_function(name: str, reference, low: float, high: float) -> None:
    rng = np.random.default_rng(1)
    x = (rng.uniform(low, high, 200_000) if low < 0 else np.exp(rng.uniform(np.log(low), np.log(high), 200_000)))
    x = np.concatenate([x, rng.normal(0, 1e-4, 1000)]) if low < 0 else x
    x = x.astype(np.float32)
    got = getattr(portable, name)(x)
    assert got.dtype == np.float32
    assert np.mean(got != correctly_rounded(reference, x)) < 1e-4  # differences only where float64 is ambiguous


def test_kernels_special_values() -> None:
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, 1e-40, 800.0, -800.0], np.float32)
    with np.errstate(all="ignore"):
        for name, f in [("exp", np.exp), ("log", np.log), ("tanh", np.tanh), ("expm1", np.expm1)]:
            expected = f(x.astype(np.float64)).astype(np.float32)
            got = getattr(portable, name)(x)
            assert np.array_equal(got, expected, equal_nan=True), name
            assert np.array_equal(np.signbit(got[:2]), np.signbit(expected[:2])), name  # -0 stays -0
    a = np.array([-2, -2, 0, 0, 0, 1, -1, 4, 2], np.float32)
    b = np.array([3, 0.5, 2, -1, 0, np.nan, np.inf, 0.5, -2], np.float32)
    with np.errstate(all="ignore"):
        expected = np.power(a.astype(np.float64), b).astype(np.float32)
    assert np.array_equal(portable.pow(a, b), expected, equal_nan=True)


def test_kernels_use_only_exact_ieee_operations() -> None:
    """No numpy or libm transcendental (exp, log, power, tanh, cos, ...) is called in the kernels: only + - * / and
    exact ops (rint, floor, ldexp, frexp, abs, copysign, sqrt, where, clip). ``**`` appears only on constants (the
    coefficient tables) and in the integer branch of pow (exact integer arithmetic)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(portable))
    forbidden = {"exp", "exp2", "expm1", "log", "log1p", "log2", "log10", "power", "float_power", "tanh", "sinh",
                 "cosh", "sin", "cos", "tan", "arctan", "arctan2", "erf", "logaddexp", "pow"}
    calls = [f"{node.func.value.id}.{node.func.attr}" for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
             and node.func.value.id in ("np", "math", "xp") and node.func.attr in forbidden]
    assert calls == []
    powers = [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.BinOp)
              and isinstance(node.op, ast.Pow) and not isinstance(node.left, (ast.Constant, ast.UnaryOp))]
    assert powers == ["a ** b"]  # pow() of integer dtypes


def test_box_muller_normals_are_portable_and_match_the_plain_stream() -> None:
    tg.manual_seed(3)
    plain = tg.randn(50_000).numpy()
    tg.manual_seed(3)
    with tg.deterministic("portable"):
        ours = tg.randn(50_000).numpy()
    u = np.linspace(0, 1, 4097)[:-1]
    assert np.abs(portable.cos_turns64(u) - np.cos(2 * np.pi * u)).max() < 1e-15
    assert np.mean(plain != ours) < 1e-3  # float32 normals: the rounding hides numpy's ulp-level differences


def test_mode_bookkeeping() -> None:
    from tinygrad_nb import determinism

    assert determinism.portable_mode is False
    with tg.deterministic("portable"):
        assert tg.get_deterministic() == "portable" and determinism.portable_mode is True
        assert determinism.state()["portable"] is True
        assert determinism.state()["blas_threads"]["note"] == ("portable mode: results do not depend on the BLAS "
                                                               "thread count, so it is not pinned")
        with tg.deterministic(True):
            assert determinism.portable_mode is False
        assert determinism.portable_mode is True
    assert determinism.portable_mode is False
    with pytest.raises(ValueError, match="mode must be True, False, 'warn' or 'portable', got 'exact'"):
        tg.deterministic("exact")
    with tg.deterministic("portable"), pytest.raises(DeterminismError, match="float64 operands"):
        tg.ones(2, 3, dtype=tg.float64) @ tg.ones(3, 2, dtype=tg.float64)


def test_portable_mode_values_match_plain_mode_closely() -> None:
    tg.manual_seed(0)
    x = tg.randn(16, 20, requires_grad=True)
    w = tg.randn(20, 7, requires_grad=True)

    def loss() -> tg.Tensor:
        h = (x @ w).tanh()
        return h.log_softmax(-1).sum() + (h.sigmoid() ** 1.5).sum() + h.gelu().exp().mean() + h.softmax(-1).pow(3).sum()

    plain = loss()
    plain.backward()
    grads = x.grad.numpy().copy(), w.grad.numpy().copy()
    x.grad = w.grad = None
    with tg.deterministic("portable"):
        ours = loss()
        ours.backward()
    assert math.isclose(float(plain), float(ours), rel_tol=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), grads[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(w.grad.numpy(), grads[1], rtol=1e-4, atol=1e-5)


def test_scalar_tensors_and_every_transcendental_op_in_portable_mode() -> None:
    def total(x: tg.Tensor) -> tg.Tensor:
        return (x.exp() + x.log() + x.tanh() + x.sigmoid() + x ** 2.5 + 2 ** x + x.gelu() + x.gelu(approximate="tanh")
                + x ** tg.tensor(1.7) + x.rsqrt())

    x = tg.tensor(1.5, requires_grad=True)
    plain = total(x)
    plain.backward()
    plain_grad = float(x.grad)
    x.grad = None
    with tg.deterministic("portable"):
        ours = total(x)
        ours.backward()
    assert ours.shape == () and x.grad.shape == ()
    assert math.isclose(float(ours), float(plain), rel_tol=1e-6)
    assert math.isclose(float(x.grad), plain_grad, rel_tol=1e-5)


def test_optimizer_and_scheduler_scalars_avoid_libm_in_portable_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """C's pow and cos (Python's ** and math.cos) have FMA and non-FMA variants: in portable mode Adam's bias
    corrections and the schedulers' factors come from the library's own kernels; plain mode keeps Python's."""
    from tinygrad_nb import optim
    from tinygrad_nb.optim import optimizer as optimizer_module

    assert optimizer_module.power(0.999, 37) == 0.999 ** 37  # plain mode: unchanged bits
    with tg.deterministic("portable"):
        assert optimizer_module.power(0.999, 37) == portable.scalar_pow(0.999, 37)
        assert optimizer_module.power(0.999, 1000) == portable.scalar_pow(0.999, 1000)
        assert math.isclose(portable.scalar_pow(0.999, 1000), 0.999 ** 1000, rel_tol=1e-14)
        assert math.isclose(portable.scalar_cos_turns(0.125), math.cos(math.pi / 4), rel_tol=1e-15)

        class NoCos:
            pi = math.pi

            def cos(self, x: float) -> float:
                raise AssertionError("libm cos called in portable mode")

        monkeypatch.setattr(optimizer_module, "math", NoCos())
        w = tg.tensor([1.0, -2.0], requires_grad=True)
        opt = optim.Adam([w], lr=0.1)
        sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5)
        for _ in range(7):
            (w * w).sum().backward()
            opt.step()
            opt.zero_grad()
            sched.step()
        lr = opt.param_groups[0]["lr"]
    assert math.isclose(lr, 0.1 * (1 + math.cos(math.pi * 7 / 5)) / 2, rel_tol=1e-12)
