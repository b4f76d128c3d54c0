"""Issue 21's tensor ops (tinygrad_nb.composite and the new primitives): values against numpy (and PyTorch when
installed), gradients against finite differences in float64 on every device, PyTorch's error types and messages."""
from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import t64, to_np

import tinygrad_nb as tg

RNG = np.random.default_rng(21)
_erf = np.vectorize(math.erf, otypes=[np.float64])


def torch_or_skip():  # noqa: ANN201 - the torch module
    return pytest.importorskip("torch")


def inside(low: float, high: float, shape: tuple[int, ...] = (3, 4)) -> np.ndarray:
    return RNG.uniform(low, high, size=shape)


def away_from(x: np.ndarray, points: tuple[float, ...], gap: float = 0.05) -> np.ndarray:
    """x with values near the op's kinks moved off them (finite differences are meaningless across a kink)."""
    for p in points:
        x = np.where(np.abs(x - p) < gap, p + 3 * gap, x)
    return x


UNARY = {  # name: (reference, input values)
    "sin": (np.sin, inside(-3, 3)), "cos": (np.cos, inside(-3, 3)), "tan": (np.tan, inside(-1.2, 1.2)),
    "asin": (np.arcsin, inside(-0.9, 0.9)), "acos": (np.arccos, inside(-0.9, 0.9)), "atan": (np.arctan, inside(-3, 3)),
    "sinh": (np.sinh, inside(-3, 3)), "cosh": (np.cosh, inside(-3, 3)), "asinh": (np.arcsinh, inside(-3, 3)),
    "acosh": (np.arccosh, inside(1.1, 4)), "atanh": (np.arctanh, inside(-0.9, 0.9)),
    "log1p": (np.log1p, inside(-0.9, 3)), "expm1": (np.expm1, inside(-3, 3)), "log2": (np.log2, inside(0.1, 9)),
    "log10": (np.log10, inside(0.1, 9)), "exp2": (np.exp2, inside(-3, 3)), "erf": (_erf, inside(-3, 3)),
    "erfc": (lambda x: 1 - _erf(x), inside(-3, 3)), "frac": (lambda x: x - np.trunc(x), away_from(inside(-3, 3),
                                                                                                   (-2, -1, 0, 1, 2))),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_math_values_and_gradients(name: str, dev: str) -> None:
    reference, x = UNARY[name]
    fn = getattr(tg, name)
    np.testing.assert_allclose(to_np(fn(t64(x, dev))), reference(x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(to_np(getattr(t64(x, dev), name)()), reference(x), rtol=1e-10, atol=1e-12)
    assert tg.gradcheck(fn, [t64(x, dev)])


def test_erfinv_inverts_erf_and_erf_is_float32_accurate(dev: str) -> None:
    y = inside(-0.99, 0.99, (50,))
    x = to_np(tg.erfinv(t64(y, dev)))
    np.testing.assert_allclose(_erf(x), y, rtol=1e-12, atol=1e-14)
    assert tg.gradcheck(tg.erfinv, [t64(inside(-0.9, 0.9), dev)])
    assert to_np(tg.erfinv(t64([1.0, -1.0], dev))).tolist() == [math.inf, -math.inf]
    z = inside(-4, 4, (200,)).astype(np.float32)
    out = tg.tensor(z, device=dev).erf()
    assert out.dtype == np.float32
    np.testing.assert_allclose(to_np(out), _erf(z.astype(np.float64)), rtol=0, atol=3e-7)


def test_integer_inputs_of_float_functions_give_the_default_float(dev: str) -> None:
    out = tg.tensor([0, 1, 2], device=dev).sin()
    assert out.dtype == np.float32
    np.testing.assert_allclose(to_np(out), np.sin([0.0, 1.0, 2.0]).astype(np.float32), rtol=1e-6)


BINARY = {  # name: (reference, a, b)
    "atan2": (np.arctan2, inside(-2, 2), away_from(inside(-2, 2), (0,))),
    "remainder": (np.remainder, inside(-5, 5), away_from(inside(-2, 2), (0,), 0.3)),
    "fmod": (np.fmod, inside(-5, 5), away_from(inside(-2, 2), (0,), 0.3)),
    "copysign": (np.copysign, away_from(inside(-2, 2), (0,)), inside(-2, 2)),
    "logaddexp": (np.logaddexp, inside(-30, 30), inside(-30, 30)),
    "logaddexp2": (np.logaddexp2, inside(-30, 30), inside(-30, 30)),
    "hypot": (np.hypot, inside(-2, 2), inside(-2, 2)),
}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_math_values_and_gradients(name: str, dev: str) -> None:
    reference, a, b = BINARY[name]
    if name in ("remainder", "fmod"):  # keep a / b away from the jumps of floor/trunc
        q = a / b
        a = np.where(np.abs(q - np.round(q)) < 0.05, (np.round(q) + 0.3) * b, a)
    fn = getattr(tg, name)
    np.testing.assert_allclose(to_np(fn(t64(a, dev), t64(b, dev))), reference(a, b), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(to_np(fn(t64(a, dev), t64(b[0], dev))), reference(a, b[0]), rtol=1e-10, atol=1e-12)
    assert tg.gradcheck(fn, [t64(a, dev), t64(b, dev)])
    assert tg.gradcheck(lambda x, y: fn(x, y), [t64(a, dev), t64(b[0], dev)])  # broadcast gradient summed back


def test_logaddexp_is_stable_far_out_and_at_minus_infinity(dev: str) -> None:
    a, b = t64([1000.0, -1000.0, -math.inf], dev), t64([1000.0, -1001.0, -math.inf], dev)
    np.testing.assert_allclose(to_np(tg.logaddexp(a, b)), np.logaddexp(a.numpy(), b.numpy()))


def test_integer_remainder_fmod_and_division_modes(dev: str) -> None:
    a, b = np.array([7, -7, 5, -5, 0, 9]), np.array([2, 2, -3, -3, 4, -9])
    ta, tb = tg.tensor(a, device=dev), tg.tensor(b, device=dev)
    assert to_np(ta % tb).tolist() == np.remainder(a, b).tolist()
    assert to_np(tg.fmod(ta, tb)).tolist() == np.fmod(a, b).tolist()
    assert to_np(ta % 3).tolist() == (a % 3).tolist()
    assert to_np(7 % tb).tolist() == (7 % b).tolist()
    assert to_np(ta // tb).tolist() == (a // b).tolist()
    assert to_np(ta.div(tb, rounding_mode="trunc")).tolist() == [int(x / y) for x, y in zip(a, b)]
    assert to_np(ta.div(tb, rounding_mode="floor")).tolist() == (a // b).tolist()
    assert ta.div(tb, rounding_mode="trunc").dtype == np.int64
    assert ta.div(tb).dtype == np.float32  # true division of integers gives the default float
    big = tg.tensor([2**62 + 1], device=dev)  # beyond float64's integers: the quotient must stay exact
    assert to_np(big.div(-3, rounding_mode="trunc")).tolist() == [-((2**62 + 1) // 3)]
    x, y = inside(-5, 5), away_from(inside(-2, 2), (0,), 0.3)
    np.testing.assert_array_equal(to_np(t64(x, dev).div(t64(y, dev), rounding_mode="trunc")), np.trunc(x / y))
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        tg.remainder(ta, tg.zeros(6, dtype=tg.int64, device=dev))
    with pytest.raises(RuntimeError, match="rounding_mode to be one of None, 'trunc', or 'floor' but found 'round'"):
        ta.div(tb, rounding_mode="round")


def test_bitwise_logical_and_shifts(dev: str) -> None:
    a, b = np.array([12, -7, 5, 0], dtype=np.int32), np.array([10, 3, 1, 7], dtype=np.int32)
    ta, tb = tg.tensor(a, device=dev), tg.tensor(b, device=dev)
    for name, ref in (("bitwise_and", np.bitwise_and), ("bitwise_or", np.bitwise_or),
                      ("bitwise_xor", np.bitwise_xor), ("logical_and", np.logical_and),
                      ("logical_or", np.logical_or), ("logical_xor", np.logical_xor)):
        out = getattr(ta, name)(tb)
        assert to_np(out).tolist() == ref(a, b).tolist(), name
        assert out.dtype == ref(a, b).dtype
    assert to_np(ta.bitwise_not()).tolist() == np.invert(a).tolist()
    assert to_np(ta.logical_not()).tolist() == np.logical_not(a).tolist()
    assert to_np(ta << 2).tolist() == (a << 2).tolist() and to_np(ta >> tb).tolist() == (a >> b).tolist()
    assert to_np(1 << tg.tensor([0, 3], device=dev)).tolist() == [1, 8]
    with pytest.raises(RuntimeError, match="\"bitwise_and_cpu\" not implemented for 'Float'"):
        tg.ones(2, device=dev).bitwise_and(tg.ones(2, device=dev))
    with pytest.raises(RuntimeError, match="\"bitwise_left_shift_cpu\" not implemented for 'Float'"):
        ta << 1.5


def test_isclose_and_allclose_module_level(dev: str) -> None:
    a = t64([1.0, 2.0, math.nan, 1e10], dev)
    b = t64([1.0 + 1e-9, 2.1, math.nan, 1.00001e10], dev)
    assert to_np(tg.isclose(a, b)).tolist() == [True, False, False, True]
    assert to_np(a.isclose(b, equal_nan=True)).tolist() == [True, False, True, True]
    assert tg.allclose(a[:1], b[:1]) is True and tg.allclose(a, b) is False


def test_lerp_values_and_gradients(dev: str) -> None:
    a, b, w = inside(-2, 2), inside(-2, 2), inside(0, 1)
    np.testing.assert_allclose(to_np(tg.lerp(t64(a, dev), t64(b, dev), 0.25)), a + 0.25 * (b - a))
    assert tg.gradcheck(tg.lerp, [t64(a, dev), t64(b, dev), t64(w, dev)])


# -- reductions and scans ---------------------------------------------------------------------------------------
def test_prod_values_and_gradients_including_zeros(dev: str) -> None:
    x = inside(-2, 2, (3, 4, 5))
    np.testing.assert_allclose(to_np(t64(x, dev).prod(1)), x.prod(1), rtol=1e-12)
    np.testing.assert_allclose(to_np(t64(x, dev).prod(axis=2, keepdims=True)), x.prod(2, keepdims=True), rtol=1e-12)
    x[0, 1, 2] = 0.0  # one zero in a slice
    x[1, :2, 3] = 0.0  # two zeros in a slice: every gradient there is 0
    assert tg.gradcheck(lambda t: t.prod(1), [t64(x, dev)])
    assert tg.gradcheck(lambda t: t.prod(), [t64(x[0], dev)])
    assert to_np(tg.tensor([[1, 2], [3, 4]], device=dev).prod(0)).tolist() == [3, 8]
    assert tg.tensor([True, True], device=dev).prod().dtype == np.int64


def test_prod_and_cumprod_gradients_at_zeros_match_torch(dev: str) -> None:
    torch = torch_or_skip()
    x = np.array([[2.0, 0.0, 3.0, 0.5], [0.0, 0.0, 1.5, 2.0], [1.0, 2.0, 0.0, 4.0]])
    x = np.concatenate([x, np.ones((3, 70))], 1)  # cumprod's blocks: the zeros' effect crosses into the next block
    for fn in (lambda t: t.prod(1), lambda t: t.cumprod(1), lambda t: t.prod()):
        ours = t64(x, dev, requires_grad=True)
        fn(ours).sum().backward()
        theirs = torch.tensor(x, requires_grad=True)
        fn(theirs).sum().backward()
        np.testing.assert_allclose(to_np(ours.grad), theirs.grad.numpy())


def test_scans_values_and_gradients(dev: str) -> None:
    x = inside(-2, 2, (3, 4, 5))
    np.testing.assert_allclose(to_np(t64(x, dev).cumprod(1)), np.cumprod(x, 1), rtol=1e-12)
    np.testing.assert_allclose(to_np(t64(x, dev).logcumsumexp(2)), np.logaddexp.accumulate(x, 2), rtol=1e-12)
    np.testing.assert_allclose(to_np(tg.cumprod(t64(x, dev), axis=0)), np.cumprod(x, 0), rtol=1e-12)
    far = np.array([-1000.0, 0.0, 1000.0, -math.inf])  # stable where log(cumsum(exp)) would overflow
    np.testing.assert_allclose(to_np(t64(far, dev).logcumsumexp(0)), np.logaddexp.accumulate(far))
    values, indices = t64(x, dev).cummax(1)
    np.testing.assert_array_equal(to_np(values), np.maximum.accumulate(x, 1))
    np.testing.assert_array_equal(np.take_along_axis(x, to_np(indices), 1), np.maximum.accumulate(x, 1))
    values, _ = t64(x, dev).cummin(2)
    np.testing.assert_array_equal(to_np(values), np.minimum.accumulate(x, 2))
    for fn in (lambda t: t.cumprod(1), lambda t: t.logcumsumexp(2), lambda t: t.cummax(1).values,
               lambda t: t.cummin(0).values):
        assert tg.gradcheck(fn, [t64(x, dev)])
    long = inside(0.5, 1.5, (2, 150))  # three blocks of the blocked scan
    long[1, 70] = 0.0
    np.testing.assert_allclose(to_np(t64(long, dev).cumprod(1)), np.cumprod(long, 1), rtol=1e-10)
    np.testing.assert_allclose(to_np(t64(long, dev).logcumsumexp(1)), np.logaddexp.accumulate(long, 1), rtol=1e-12)
    for fn in (lambda t: t.cumprod(1), lambda t: t.logcumsumexp(1)):
        assert tg.gradcheck(fn, [t64(long[1:, 60:130], dev)])  # across a block boundary, through the zero
    ints = tg.tensor([1, 2, 3], device=dev).cumprod(0)
    assert ints.dtype == np.int64 and to_np(ints).tolist() == [1, 2, 6]
    assert tg.zeros(0, device=dev).logcumsumexp(0).shape == (0,)


def test_cummax_ties_and_nan_indices_match_torch(dev: str) -> None:
    torch = torch_or_skip()
    x = np.array([[1.0, 1.0, 0.0, 2.0, 2.0], [3.0, math.nan, 4.0, math.nan, 1.0]])
    for name in ("cummax", "cummin"):
        ours, theirs = getattr(t64(x, dev), name)(1), getattr(torch.tensor(x), name)(1)
        np.testing.assert_array_equal(to_np(ours.values), theirs.values.numpy())
        assert to_np(ours.indices).tolist() == theirs.indices.tolist()


def test_norm_std_mean_and_aliases(dev: str) -> None:
    x = inside(-2, 2, (3, 4))
    np.testing.assert_allclose(to_np(t64(x, dev).norm()), np.linalg.norm(x))
    np.testing.assert_allclose(to_np(t64(x, dev).norm(1, dim=1)), np.abs(x).sum(1))
    np.testing.assert_allclose(to_np(t64(x, dev).norm(math.inf, dim=0)), np.abs(x).max(0))
    np.testing.assert_allclose(to_np(t64(x, dev).norm(3, dim=1, keepdim=True)),
                               (np.abs(x) ** 3).sum(1, keepdims=True) ** (1 / 3))
    zero = t64(np.zeros(3), dev, requires_grad=True)
    zero.norm().backward()  # the 2-norm's gradient at 0 is 0, as in PyTorch, not NaN
    assert to_np(zero.grad).tolist() == [0.0, 0.0, 0.0]
    assert tg.gradcheck(lambda t: t.norm(dim=1), [t64(x, dev)])
    std, mean = tg.std_mean(t64(x, dev), 1)
    np.testing.assert_allclose(to_np(std), x.std(1, ddof=1))
    np.testing.assert_allclose(to_np(mean), x.mean(1))
    var, _ = tg.var_mean(t64(x, dev), 0, correction=0)
    np.testing.assert_allclose(to_np(var), x.var(0))
    t = t64(x, dev)
    np.testing.assert_allclose(to_np(t.cumsum(axis=1)), np.cumsum(x, 1))
    assert to_np((t > 0).all(axis=1)).tolist() == (x > 0).all(1).tolist()
    assert to_np((t > 0).any(axis=0, keepdims=True)).tolist() == (x > 0).any(0, keepdims=True).tolist()
    np.testing.assert_allclose(to_np(t.log_softmax(axis=0)), to_np(t.log_softmax(0)))
    np.testing.assert_allclose(to_np(t.softmax(axis=0)), to_np(t.softmax(0)))
    np.testing.assert_allclose(to_np(tg.sum(t, 1)), x.sum(1))
    np.testing.assert_allclose(to_np(tg.exp(t)), np.exp(x))


# -- sorting ------------------------------------------------------------------------------------------------------
def test_sort_argsort_topk_kthvalue(dev: str) -> None:
    x = inside(-2, 2, (3, 6))
    values, indices = t64(x, dev).sort(1)
    np.testing.assert_array_equal(to_np(values), np.sort(x, 1))
    np.testing.assert_array_equal(to_np(indices), np.argsort(x, 1))
    values, indices = t64(x, dev).sort(0, descending=True)
    np.testing.assert_array_equal(to_np(values), -np.sort(-x, 0))
    np.testing.assert_array_equal(to_np(t64(x, dev).argsort(1, descending=True)), np.argsort(-x, 1))
    values, indices = t64(x, dev).topk(2)
    np.testing.assert_array_equal(to_np(values), -np.sort(-x, 1)[:, :2])
    np.testing.assert_array_equal(np.take_along_axis(x, to_np(indices), 1), to_np(values))
    values, _ = t64(x, dev).topk(3, dim=0, largest=False)
    np.testing.assert_array_equal(to_np(values), np.sort(x, 0)[:3])
    value, index = t64(x, dev).kthvalue(2, 1)
    np.testing.assert_array_equal(to_np(value), np.sort(x, 1)[:, 1])
    assert to_np(index).tolist() == np.argsort(x, 1)[:, 1].tolist()
    for fn in (lambda t: t.sort(1, descending=True).values, lambda t: t.topk(2, 0).values,
               lambda t: t.kthvalue(3, 1).values, lambda t: t.msort()):
        assert tg.gradcheck(fn, [t64(x, dev)])
    ties = tg.tensor([3, 1, 3, 2, 1, 3], device=dev)
    assert to_np(ties.sort(descending=True, stable=True).indices).tolist() == [0, 2, 5, 3, 1, 4]
    assert to_np(ties.sort(stable=True).indices).tolist() == [1, 4, 3, 0, 2, 5]
    with pytest.raises(RuntimeError, match="selected index k out of range"):
        t64(x, dev).topk(7)


def test_sort_with_nan_and_integers_matches_torch(dev: str) -> None:
    torch = torch_or_skip()
    x = np.array([2.0, math.nan, -1.0, 5.0, math.nan, -1.0])
    for descending in (False, True):
        ours = t64(x, dev).sort(descending=descending, stable=True)
        theirs = torch.tensor(x).sort(descending=descending, stable=True)
        np.testing.assert_array_equal(to_np(ours.values), theirs.values.numpy())
        assert to_np(ours.indices).tolist() == theirs.indices.tolist()
    u = np.array([0, 255, 7, 7, 1], dtype=np.uint8)
    ours = tg.tensor(u, device=dev).sort(descending=True)
    assert to_np(ours.values).tolist() == torch.tensor(u).sort(descending=True).values.tolist()


# -- gather, scatter, masks --------------------------------------------------------------------------------------
def test_gather_values_gradients_and_errors(dev: str) -> None:
    x = inside(-2, 2, (3, 4, 5))
    index = RNG.integers(0, 4, (2, 3, 5))  # smaller than x in dims 0 and 2's neighbours: allowed
    out = t64(x, dev).gather(1, tg.tensor(index, device=dev))
    np.testing.assert_array_equal(to_np(out), np.take_along_axis(x[:2], index, 1))
    assert tg.gradcheck(lambda t: t.gather(1, tg.tensor(index, device=dev)), [t64(x, dev)])  # repeats accumulate
    with pytest.raises(RuntimeError, match=r"gather\(\): Expected dtype int64 for index, got Int"):
        t64(x, dev).gather(1, tg.tensor(index, dtype=tg.int32, device=dev))
    with pytest.raises(RuntimeError, match="index 4 is out of bounds for dimension 1 with size 4"):
        t64(x, dev).gather(1, tg.tensor(index + 1, device=dev).clamp(max=4))
    with pytest.raises(RuntimeError, match="Index tensor must have the same number of dimensions as input tensor"):
        t64(x, dev).gather(1, tg.tensor(index[0], device=dev))
    np.testing.assert_array_equal(to_np(tg.take_along_dim(t64(x, dev), tg.tensor(index[:1], device=dev), 1)),
                                  np.take_along_axis(x, index[:1], 1))


def _scatter_reference(x: np.ndarray, index: np.ndarray, src: np.ndarray, reduce: str, include_self: bool
                       ) -> np.ndarray:
    """scatter_reduce along dim 1, element by element."""
    out = x.copy()
    groups: dict[tuple[int, ...], list[float]] = {}
    for p in np.ndindex(index.shape):
        target = (p[0], int(index[p]), *p[2:])
        groups.setdefault(target, [x[target]] if include_self else []).append(src[p])
    combine = {"sum": sum, "prod": math.prod, "mean": lambda v: sum(v) / len(v), "amax": max, "amin": min}[reduce]
    for target, vals in groups.items():
        out[target] = combine(vals)
    return out


@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
@pytest.mark.parametrize("include_self", [True, False])
def test_scatter_reduce_values_and_gradients(reduce: str, include_self: bool, dev: str) -> None:
    x, src = inside(-2, 2, (3, 4, 5)), inside(-2, 2, (3, 3, 5))
    index = RNG.integers(0, 4, (3, 3, 5))
    idx = tg.tensor(index, device=dev)
    out = t64(x, dev).scatter_reduce(1, idx, t64(src, dev), reduce, include_self=include_self)
    np.testing.assert_allclose(to_np(out), _scatter_reference(x, index, src, reduce, include_self), rtol=1e-12)
    assert tg.gradcheck(lambda a, s: a.scatter_reduce(1, idx, s, reduce, include_self=include_self),
                        [t64(x, dev), t64(src, dev)])


def test_scatter_reduce_gradients_with_ties_and_zeros_match_torch(dev: str) -> None:
    torch = torch_or_skip()
    x = np.array([[1.0, 0.0, 2.0], [3.0, 3.0, 0.0]])
    src = np.array([[1.0, 2.0, 0.0, 1.0], [3.0, 0.0, 0.0, 5.0]])
    index = np.array([[0, 2, 1, 0], [1, 1, 2, 2]])
    for reduce in ("amax", "amin", "prod", "mean", "sum"):
        for include_self in (True, False):
            a, s = t64(x, dev, requires_grad=True), t64(src, dev, requires_grad=True)
            ours = a.scatter_reduce(1, tg.tensor(index, device=dev), s, reduce, include_self=include_self)
            (ours * t64(np.arange(6.0).reshape(2, 3), dev)).sum().backward()
            ta, ts = torch.tensor(x, requires_grad=True), torch.tensor(src, requires_grad=True)
            theirs = ta.scatter_reduce(1, torch.tensor(index), ts, reduce, include_self=include_self)
            (theirs * torch.arange(6.0, dtype=torch.float64).reshape(2, 3)).sum().backward()
            np.testing.assert_allclose(to_np(ours), theirs.detach().numpy(), err_msg=reduce)
            np.testing.assert_allclose(to_np(a.grad), ta.grad.numpy(), err_msg=f"{reduce} {include_self} self")
            np.testing.assert_allclose(to_np(s.grad), ts.grad.numpy(), err_msg=f"{reduce} {include_self} src")


def test_scatter_overwrite_add_and_in_place(dev: str) -> None:
    x = np.zeros((3, 5))
    index = np.array([[0, 1, 2, 0, 0], [2, 0, 0, 1, 2]])
    src = np.arange(1.0, 11.0).reshape(2, 5)
    out = t64(x, dev).scatter(0, tg.tensor(index, device=dev), t64(src, dev))
    expected = x.copy()
    for i in range(2):
        for j in range(5):
            expected[index[i, j], j] = src[i, j]
    np.testing.assert_array_equal(to_np(out), expected)
    np.testing.assert_array_equal(to_np(t64(x, dev).scatter(0, tg.tensor(index, device=dev), value=7.0)),
                                  np.where(expected != 0, 7.0, 0.0))
    added = t64(x, dev).scatter_add(0, tg.tensor(index, device=dev), t64(src, dev))
    reference = x.copy()
    np.add.at(reference, (index, np.arange(5)), src)
    np.testing.assert_array_equal(to_np(added), reference)
    uniq = np.array([[0, 1, 2, 0, 1]])
    assert tg.gradcheck(lambda a, s: a.scatter(0, tg.tensor(uniq, device=dev), s), [t64(x, dev), t64(src, dev)])
    onehot = tg.zeros(3, 4, device=dev).scatter_(1, tg.tensor([[1], [3], [0]], device=dev), 1.0)
    assert to_np(onehot).tolist() == [[0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]]
    w = t64(np.ones(4), dev, requires_grad=True)
    y = w * 2
    y.scatter_add_(0, tg.tensor([0, 0], device=dev), w[:2] * 3)
    y.sum().backward()
    assert to_np(w.grad).tolist() == [5.0, 5.0, 2.0, 2.0]
    with pytest.raises(RuntimeError, match=r"scatter\(\): Expected self.dtype to be equal to src.dtype"):
        tg.zeros(3, device=dev).scatter(0, tg.tensor([0], device=dev), tg.ones(1, dtype=tg.float64, device=dev))


def test_masked_fill_select_nonzero_index_select(dev: str) -> None:
    x = inside(-2, 2, (3, 4))
    mask = x > 0.5
    t = t64(x, dev)
    np.testing.assert_array_equal(to_np(t.masked_fill(tg.tensor(mask, device=dev), -1.0)), np.where(mask, -1.0, x))
    np.testing.assert_array_equal(to_np(t.masked_fill(tg.tensor(mask[0], device=dev), t64(9.0, dev))),
                                  np.where(mask[0], 9.0, x))
    ints = tg.tensor([1, 2, 3], device=dev).masked_fill(tg.tensor([True, False, True], device=dev), 0.7)
    assert ints.dtype == np.int64 and to_np(ints).tolist() == [0, 2, 0]  # the input's dtype, as PyTorch
    np.testing.assert_array_equal(to_np(t.masked_select(tg.tensor(mask[0], device=dev))),
                                  np.broadcast_to(x, x.shape)[np.broadcast_to(mask[0], x.shape)])
    assert to_np(tg.tensor(mask, device=dev).nonzero()).tolist() == np.argwhere(mask).tolist()
    rows, cols = tg.tensor(mask, device=dev).nonzero(as_tuple=True)
    assert to_np(rows).tolist() == np.nonzero(mask)[0].tolist() and to_np(cols).tolist() == np.nonzero(mask)[1].tolist()
    np.testing.assert_array_equal(to_np(t.index_select(1, tg.tensor([3, 0, 0], device=dev))), x[:, [3, 0, 0]])
    m = tg.tensor(mask, device=dev)
    for fn in (lambda a: a.masked_fill(m, 2.0), lambda a: a.masked_select(m), lambda a: a.index_select(0, tg.tensor(
            [2, 2, 0], device=dev))):
        assert tg.gradcheck(fn, [t64(x, dev)])
    y = t64(x, dev, requires_grad=True) * 1
    y.masked_fill_(m, 0.0)
    np.testing.assert_array_equal(to_np(y), np.where(mask, 0.0, x))
    with pytest.raises(RuntimeError, match="masked_fill_ only supports boolean masks, but got mask with dtype Long"):
        t.masked_fill(tg.tensor([1, 0, 1, 0], device=dev), 0.0)


# -- shape ops --------------------------------------------------------------------------------------------------------
def test_shape_ops_values_and_gradients(dev: str) -> None:
    x = inside(-2, 2, (3, 4, 5))
    t = t64(x, dev)
    cases = {
        "flip": (lambda a: a.flip((0, 2)), np.flip(x, (0, 2))),
        "roll": (lambda a: a.roll((1, -2), (0, 2)), np.roll(x, (1, -2), (0, 2))),
        "roll_flat": (lambda a: a.roll(3), np.roll(x, 3)),
        "triu": (lambda a: a.triu(1), np.triu(x, 1)), "tril": (lambda a: a.tril(-1), np.tril(x, -1)),
        "diagonal": (lambda a: a.diagonal(1, 0, 2), np.diagonal(x, 1, 0, 2)),
        "diagonal_neg": (lambda a: a.diagonal(-1, 1, 2), np.diagonal(x, -1, 1, 2)),
        "repeat_interleave": (lambda a: a.repeat_interleave(2, 1), np.repeat(x, 2, 1)),
        "repeat_interleave_counts": (lambda a: a.repeat_interleave(tg.tensor([1, 0, 2], device=dev), 0),
                                     np.repeat(x, [1, 0, 2], 0)),
        "repeat_interleave_flat": (lambda a: a.repeat_interleave(2), np.repeat(x, 2)),
        "unflatten": (lambda a: a.unflatten(1, (2, -1)), x.reshape(3, 2, 2, 5)),
        "unfold": (lambda a: a.unfold(2, 2, 2), np.stack([x[..., 0:2], x[..., 2:4]], 2)),
        "movedim": (lambda a: a.movedim((0, 1), (2, 0)), np.moveaxis(x, (0, 1), (2, 0))),
        "narrow": (lambda a: a.narrow(2, 1, 3), x[:, :, 1:4]),
        "rot90": (lambda a: a.rot90(1, (1, 2)), np.rot90(x, 1, (1, 2))),
        "tile": (lambda a: a.tile((2, 1)), np.tile(x, (2, 1))),
    }
    for name, (fn, expected) in cases.items():
        np.testing.assert_array_equal(to_np(fn(t)), expected, err_msg=name)
        assert tg.gradcheck(fn, [t64(x, dev)]), name
    np.testing.assert_array_equal(to_np(tg.diag(t64(x[0, 0], dev), 1)), np.diag(x[0, 0], 1))
    np.testing.assert_array_equal(to_np(tg.diag(t64(x[0], dev), -1)), np.diag(x[0], -1))
    assert tg.gradcheck(lambda a: tg.diag(a, -2), [t64(x[0, 0], dev)])
    a, b = t64(np.arange(3.0), dev), t64(np.arange(4.0), dev)
    for indexing in ("ij", "xy"):
        for ours, theirs in zip(tg.meshgrid(a, b, indexing=indexing), np.meshgrid(np.arange(3.0), np.arange(4.0),
                                                                                   indexing=indexing)):
            np.testing.assert_array_equal(to_np(ours), theirs)
    with pytest.raises(RuntimeError, match="dims has duplicates"):
        t.flip((0, -3))
    with pytest.raises(RuntimeError, match="maximum size for tensor at dimension 2 is 5 but size is 6"):
        t.unfold(2, 6, 1)
    with pytest.raises(RuntimeError, match="unflatten: Provided sizes \\[2, 3\\] don't multiply up"):
        t.unflatten(1, (2, 3))


def test_shape_ops_match_torch(dev: str) -> None:
    torch = torch_or_skip()
    x = inside(-2, 2, (3, 4, 5))
    t, tt = t64(x, dev), torch.tensor(x)
    for name, args in (("diagonal", (2, 2, 1)), ("unfold", (1, 3, 1)), ("roll", ((2, 1), (2, 0))),
                       ("repeat_interleave", (3,)), ("triu", (-1,)), ("rot90", (3, (0, 2)))):
        np.testing.assert_array_equal(to_np(getattr(t, name)(*args)), getattr(tt, name)(*args).numpy(), err_msg=name)


EINSUM = ["ijk,kl->ijl", "bqd,bkd->bqk", "ii", "ii->i", "...ij,...jk", "i,j->ij", "ijk->", "ijk->kji", "ij,jk,kl->il",
          "bij,bjk->bik", "ij,ij->i", "iij->ji", "abc,cd,de->abe"]


@pytest.mark.parametrize("equation", EINSUM)
def test_einsum_matches_numpy_and_gradients(equation: str, dev: str) -> None:
    shapes = {"ijk,kl->ijl": [(2, 3, 4), (4, 5)], "bqd,bkd->bqk": [(2, 3, 4), (2, 5, 4)], "ii": [(4, 4)],
              "ii->i": [(4, 4)], "...ij,...jk": [(2, 3, 4), (4, 5)], "i,j->ij": [(3,), (4,)], "ijk->": [(2, 3, 4)],
              "ijk->kji": [(2, 3, 4)], "ij,jk,kl->il": [(2, 3), (3, 4), (4, 2)], "bij,bjk->bik": [(1, 2, 3), (4, 3, 2)],
              "ij,ij->i": [(3, 4), (3, 4)], "iij->ji": [(3, 3, 2)], "abc,cd,de->abe": [(2, 3, 4), (4, 5), (5, 2)]}
    arrays = [inside(-2, 2, s) for s in shapes[equation]]
    out = tg.einsum(equation, *[t64(a, dev) for a in arrays])
    np.testing.assert_allclose(to_np(out), np.einsum(equation, *arrays), rtol=1e-12, atol=1e-12)
    assert tg.gradcheck(lambda *ts: tg.einsum(equation, *ts), [t64(a, dev) for a in arrays])


def test_einsum_errors() -> None:
    with pytest.raises(RuntimeError, match="operands do not broadcast with remapped shapes: subscript j"):
        tg.einsum("ij,jk", tg.ones(2, 3), tg.ones(4, 2))
    with pytest.raises(RuntimeError, match="2 operands in the equation but 1 tensors given"):
        tg.einsum("ij,jk", tg.ones(2, 3))
    with pytest.raises(RuntimeError, match="output subscript z does not appear"):
        tg.einsum("ij->z", tg.ones(2, 3))


def test_every_op_listed_in_docs_ops_md_exists() -> None:
    import re
    from pathlib import Path

    from tinygrad_nb.nn import functional as F

    text = (Path(__file__).resolve().parent.parent / "docs" / "ops.md").read_text()
    table = text.split("## The ops", 1)[1].split("##", 1)[0]
    checked = 0
    for line in table.splitlines():
        if not line.startswith("| ") or line.startswith("| group"):
            continue
        group, names = line.strip("|").split("|")[:2]
        for item in re.sub(r"\([^)]*\)", "", names).split(","):
            match = re.match(r"\s*([a-z_0-9]+)", item.replace("`", ""))
            if not match:
                continue
            name = match.group(1)
            home = F if "(F)" in group else tg
            assert hasattr(home, name) or hasattr(tg.Tensor, name), f"docs/ops.md lists {name!r} ({group.strip()})"
            checked += 1
    assert checked > 120
