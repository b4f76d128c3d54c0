"""Every primitive: values against numpy and gradients against finite differences, on every device.

Shapes come from hypothesis and include broadcasting, scalars (0-d) and zero-size dimensions.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import t64, to_np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_nb as tg

# `dev` is a plain device name, so sharing it across generated examples is safe.
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def values(shape: tuple[int, ...], kind: str, seed: int) -> np.ndarray:
    """Random float64 values of ``shape`` kept away from the op's kinks (0 for relu/abs, ties for max...)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=shape)
    if kind == "positive":
        return np.abs(x) + 0.2
    if kind == "away_from_zero":
        return np.where(np.abs(x) < 0.1, 0.3, x)
    if kind == "away_from_bounds":  # for clamp(-0.5, 0.5)
        return np.where(np.abs(np.abs(x) - 0.5) < 0.05, 0.2, x)
    if kind == "apart_along_0":  # std over a short dim 0: two nearly equal values sit on |a - b|'s kink
        return x + 4.5 * np.arange(shape[0]).reshape((-1,) + (1,) * (len(shape) - 1))
    return x


def _phi(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.vectorize(math.erf, otypes=[np.float64])(x / math.sqrt(2)))


UNARY = {
    "neg": (lambda t: -t, lambda x: -x, "any"),
    "exp": (lambda t: t.exp(), np.exp, "any"),
    "log": (lambda t: t.log(), np.log, "positive"),
    "sqrt": (lambda t: t.sqrt(), np.sqrt, "positive"),
    "tanh": (lambda t: t.tanh(), np.tanh, "any"),
    "sigmoid": (lambda t: t.sigmoid(), lambda x: 1 / (1 + np.exp(-x)), "any"),
    "relu": (lambda t: t.relu(), lambda x: np.maximum(x, 0), "away_from_zero"),
    "gelu": (lambda t: t.gelu(), lambda x: x * _phi(x), "any"),
    "gelu_tanh": (lambda t: t.gelu(approximate="tanh"),
                  lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))), "any"),
    "abs": (lambda t: t.abs(), np.abs, "away_from_zero"),
    "clamp": (lambda t: t.clamp(-0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), "away_from_bounds"),
    "clamp_min": (lambda t: t.clamp(min=0.1), lambda x: np.maximum(x, 0.1), "away_from_bounds"),
    "square": (lambda t: t.square(), np.square, "any"),
    "rsqrt": (lambda t: t.rsqrt(), lambda x: 1 / np.sqrt(x), "positive"),
    "pow_scalar": (lambda t: t ** 3, lambda x: x ** 3, "any"),
    "rpow": (lambda t: 2.0 ** t, lambda x: 2.0 ** x, "any"),
    "rsub": (lambda t: 1.5 - t, lambda x: 1.5 - x, "any"),
    "rdiv": (lambda t: 2.0 / t, lambda x: 2.0 / x, "away_from_zero"),
    "softmax": (lambda t: t.softmax(-1), lambda x: np.exp(x - x.max(-1, keepdims=True))
                / np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True), "any"),
    "log_softmax": (lambda t: t.log_softmax(-1),
                    lambda x: x - x.max(-1, keepdims=True)
                    - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)), "any"),
}

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)


@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=shapes, seed=st.integers(0, 2**16))
@SETTINGS
def test_unary_values_and_gradients(name: str, dev: str, shape: tuple[int, ...], seed: int) -> None:
    op, reference, kind = UNARY[name]
    if name in ("softmax", "log_softmax") and (len(shape) == 0 or shape[-1] == 0):
        shape = shape[:-1] + (2,) if shape else (2,)
    x = values(shape, kind, seed)
    out = op(t64(x, dev))
    np.testing.assert_allclose(to_np(out), reference(x), rtol=1e-6, atol=1e-7)
    assert out.shape == reference(x).shape
    assert tg.gradcheck(op, [t64(x, dev)])


BINARY = {
    "add": (lambda a, b: a + b, np.add, "any", "any"),
    "sub": (lambda a, b: a - b, np.subtract, "any", "any"),
    "mul": (lambda a, b: a * b, np.multiply, "any", "any"),
    "div": (lambda a, b: a / b, np.divide, "any", "away_from_zero"),
    "pow": (lambda a, b: a ** b, np.power, "positive", "any"),
    "maximum": (lambda a, b: a.maximum(b), np.maximum, "any", "any"),
    "minimum": (lambda a, b: a.minimum(b), np.minimum, "any", "any"),
    "where": (lambda a, b: tg.where(a > 0, a, b), lambda a, b: np.where(a > 0, a, b), "away_from_zero", "any"),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(shapes_pair=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=0, max_side=3),
       seed=st.integers(0, 2**16))
@SETTINGS
def test_binary_broadcasting_values_and_gradients(name: str, dev: str, shapes_pair: object, seed: int) -> None:
    op, reference, kind_a, kind_b = BINARY[name]
    (shape_a, shape_b), _ = shapes_pair.input_shapes, shapes_pair.result_shape
    a, b = values(shape_a, kind_a, seed), values(shape_b, kind_b, seed + 1)
    if name in ("maximum", "minimum"):
        b = b + 0.05  # continuous draws never tie, but keep a margin for the finite differences
    out = op(t64(a, dev), t64(b, dev))
    np.testing.assert_allclose(to_np(out), reference(a, b), rtol=1e-6, atol=1e-7)
    assert tg.gradcheck(op, [t64(a, dev), t64(b, dev)])


def test_maximum_splits_gradient_on_ties(dev: str) -> None:
    a = tg.tensor([1.0, 2.0, 3.0], device=dev, requires_grad=True)
    b = tg.tensor([1.0, 5.0, 0.0], device=dev, requires_grad=True)
    a.maximum(b).sum().backward()
    assert to_np(a.grad).tolist() == [0.5, 0.0, 1.0]
    assert to_np(b.grad).tolist() == [0.5, 1.0, 0.0]


def reduce_cases() -> list[tuple[str, object, object]]:
    return [
        ("sum_all", lambda t: t.sum(), lambda x: x.sum()),
        ("sum_0", lambda t: t.sum(0), lambda x: x.sum(0)),
        ("sum_keep", lambda t: t.sum(dim=-1, keepdim=True), lambda x: x.sum(-1, keepdims=True)),
        ("sum_tuple", lambda t: t.sum((0, 2)), lambda x: x.sum((0, 2))),
        ("sum_numpy_alias", lambda t: t.sum(axis=1, keepdims=True), lambda x: x.sum(axis=1, keepdims=True)),
        ("mean_1", lambda t: t.mean(1), lambda x: x.mean(1)),
        ("var_1", lambda t: t.var(1), lambda x: x.var(1, ddof=1)),
        ("var_biased", lambda t: t.var(correction=0), lambda x: x.var()),
        ("std_0", lambda t: t.std(0), lambda x: x.std(0, ddof=1)),
        ("amax_all", lambda t: t.amax(), lambda x: x.max()),
        ("max_dim", lambda t: t.max(dim=2).values, lambda x: x.max(2)),
        ("min_dim_keep", lambda t: t.min(1, keepdim=True).values, lambda x: x.min(1, keepdims=True)),
        ("logsumexp", lambda t: t.logsumexp(2), lambda x: np.log(np.exp(x).sum(2))),
    ]


@pytest.mark.parametrize("name,op,reference", reduce_cases(), ids=[c[0] for c in reduce_cases()])
@given(seed=st.integers(0, 2**16), shape=hnp.array_shapes(min_dims=3, max_dims=3, min_side=2, max_side=3))
@SETTINGS
def test_reductions(name: str, op: object, reference: object, dev: str, seed: int, shape: tuple[int, ...]) -> None:
    x = values(shape, "apart_along_0" if name == "std_0" else "any", seed)
    np.testing.assert_allclose(to_np(op(t64(x, dev))), reference(x), rtol=1e-6, atol=1e-7)
    assert tg.gradcheck(op, [t64(x, dev)])


def test_max_gradient_split_between_ties(dev: str) -> None:
    x = tg.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]], device=dev, requires_grad=True)
    x.amax(1).sum().backward()
    assert to_np(x.grad).tolist() == [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]]


def test_reductions_over_zero_size_dims(dev: str) -> None:
    x = tg.zeros(0, 3, device=dev, requires_grad=True)
    s = x.sum(0)
    assert to_np(s).tolist() == [0.0, 0.0, 0.0]
    s.sum().backward()
    assert x.grad.shape == (0, 3)
    assert np.isnan(to_np(tg.zeros(0, device=dev).mean())).all()
    with pytest.raises(ValueError, match=r"max: cannot reduce over an empty dimension of shape \(0, 3\)"):
        x.amax()
    np.testing.assert_array_equal(to_np(x.amax(1)), np.zeros(0))  # reducing the non-empty dim is fine


def test_argmax_argmin_and_max_with_indices(dev: str) -> None:
    x = np.array([[1.0, 7.0, 3.0], [9.0, 2.0, 4.0]])
    t = tg.tensor(x, device=dev)
    assert to_np(t.argmax(1)).tolist() == [1, 0]
    assert to_np(t.argmin(dim=0)).tolist() == [0, 1, 0]
    assert t.argmax().item() == 3
    values_, indices = t.max(dim=1)
    assert to_np(values_).tolist() == [7.0, 9.0] and to_np(indices).tolist() == [1, 0]
    assert t.argmax(axis=1, keepdims=True).shape == (2, 1)


MOVEMENT = {
    "reshape": (lambda t: t.reshape(3, 4), lambda x: x.reshape(3, 4)),
    "view_infer": (lambda t: t.view(-1, 2), lambda x: x.reshape(-1, 2)),
    "permute": (lambda t: t.permute(2, 0, 1), lambda x: x.transpose(2, 0, 1)),
    "transpose": (lambda t: t.transpose(0, 2), lambda x: x.swapaxes(0, 2)),
    "T": (lambda t: t.T, lambda x: x.T),
    "flatten": (lambda t: t.flatten(1), lambda x: x.reshape(2, -1)),
    "unsqueeze_squeeze": (lambda t: t.unsqueeze(1).squeeze(1), lambda x: x),
    "expand": (lambda t: t[:, :1].expand(2, 3, 2), lambda x: np.broadcast_to(x[:, :1], (2, 3, 2))),
    "getitem_int_slice": (lambda t: t[1, ::2], lambda x: x[1, ::2]),
    "getitem_none_ellipsis": (lambda t: t[None, ..., 1], lambda x: x[None, ..., 1]),
    "getitem_negative": (lambda t: t[-1, -2:], lambda x: x[-1, -2:]),
    "getitem_int_array_repeats": (lambda t: t[tg.tensor([0, 1, 1, 0])], lambda x: x[[0, 1, 1, 0]]),
    "getitem_list": (lambda t: t[:, [2, 0, 2]], lambda x: x[:, [2, 0, 2]]),
    "getitem_bool_mask": (lambda t: t[t.detach() > 0], lambda x: x[x > 0]),
    "getitem_two_arrays": (lambda t: t[tg.tensor([0, 1]), tg.tensor([2, 1])], lambda x: x[[0, 1], [2, 1]]),
    "cat": (lambda t: tg.cat([t, t * 2], dim=1), lambda x: np.concatenate([x, x * 2], axis=1)),
    "stack": (lambda t: tg.stack([t, -t], dim=-1), lambda x: np.stack([x, -x], axis=-1)),
    "pad": (lambda t: t.pad((1, 2, 0, 1), value=0.5),
            lambda x: np.pad(x, ((0, 0), (0, 1), (1, 2)), constant_values=0.5)),
    "repeat": (lambda t: t[0].repeat(2, 1, 3), lambda x: np.tile(x[0], (2, 1, 3))),
    "split": (lambda t: t.split([1, 2], dim=1)[1], lambda x: x[:, 1:]),
    "chunk": (lambda t: t.chunk(2, dim=2)[0], lambda x: x[:, :, :1]),
}


@pytest.mark.parametrize("name", sorted(MOVEMENT))
def test_movement_values_and_gradients(name: str, dev: str) -> None:
    op, reference = MOVEMENT[name]
    x = values((2, 3, 2), "away_from_zero", 7)
    np.testing.assert_array_equal(to_np(op(t64(x, dev))), reference(x))
    assert tg.gradcheck(op, [t64(x, dev)])


def test_getitem_repeated_indices_accumulate(dev: str) -> None:
    x = tg.tensor([1.0, 2.0, 3.0], device=dev, requires_grad=True)
    x[tg.tensor([0, 0, 2, 0])].sum().backward()
    assert to_np(x.grad).tolist() == [3.0, 0.0, 1.0]


@given(shapes_pair=hnp.mutually_broadcastable_shapes(signature="(m?,n),(n,p?)->(m?,p?)", max_dims=2,
                                                     min_side=1, max_side=3), seed=st.integers(0, 2**16))
@SETTINGS
def test_matmul_all_rank_combinations(dev: str, shapes_pair: object, seed: int) -> None:
    shape_a, shape_b = shapes_pair.input_shapes
    a, b = values(shape_a, "any", seed), values(shape_b, "any", seed + 1)
    out = t64(a, dev) @ t64(b, dev)
    np.testing.assert_allclose(to_np(out), a @ b, rtol=1e-6, atol=1e-9)
    assert tg.gradcheck(lambda p, q: p @ q, [t64(a, dev), t64(b, dev)])


def test_matmul_zero_size_inner_dimension(dev: str) -> None:
    a = tg.zeros(2, 0, device=dev, requires_grad=True)
    b = tg.zeros(0, 3, device=dev, requires_grad=True)
    out = a @ b
    assert to_np(out).tolist() == [[0.0] * 3] * 2
    out.sum().backward()
    assert a.grad.shape == (2, 0) and b.grad.shape == (0, 3)


def test_unfold_matches_naive_windows(dev: str) -> None:
    x = values((2, 2, 5, 4), "any", 3)
    out = tg.ops.Unfold.apply(t64(x, dev), (2, 3), (2, 1), (1, 0), (1, 1))
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
    cols = []
    for i in range(0, padded.shape[2] - 2 + 1, 2):
        for j in range(0, padded.shape[3] - 3 + 1):
            cols.append(padded[:, :, i:i + 2, j:j + 3].reshape(2, -1))
    np.testing.assert_array_equal(to_np(out), np.stack(cols, axis=-1))
    assert tg.gradcheck(lambda t: tg.ops.Unfold.apply(t, (2, 3), (2, 1), (1, 0), (1, 1)), [t64(x, dev)])
    assert tg.gradcheck(lambda t: tg.ops.Unfold.apply(t, (2, 2), (1, 1), (0, 0), (2, 1)), [t64(x, dev)])


def test_cast_gradient_returns_to_source_dtype(dev: str) -> None:
    x = tg.tensor([1.5, -2.0], device=dev, requires_grad=True)
    y = x.double() * 3
    y.sum().backward()
    assert x.grad.dtype == tg.float32 and to_np(x.grad).tolist() == [3.0, 3.0]


@pytest.mark.parametrize("dtype", ["float64", "int64", "int32"])
@given(shapes_pair=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=0, max_side=3),
       seed=st.integers(0, 2**16))
@SETTINGS
def test_floor_divide_broadcasting_values(dtype: str, dev: str, shapes_pair: object, seed: int) -> None:
    """FloorDivide has no gradient (PyTorch refuses to differentiate it: see test_core_edge_cases), so values only."""
    (shape_a, shape_b), result_shape = shapes_pair.input_shapes, shapes_pair.result_shape
    rng = np.random.default_rng(seed)
    a = (rng.uniform(-20, 20, size=shape_a) if dtype == "float64" else rng.integers(-20, 20, size=shape_a))
    b = rng.integers(1, 7, size=shape_b) * rng.choice([-1, 1], size=shape_b)  # never 0: int // 0 raises
    out = tg.tensor(a.astype(dtype), device=dev) // tg.tensor(b.astype(dtype), device=dev)
    assert out.shape == result_shape and out.dtype == dtype
    np.testing.assert_array_equal(to_np(out), np.floor(a.astype(dtype) / b.astype(dtype)))


def test_comparisons_and_logic_have_no_gradient(dev: str) -> None:
    x = tg.tensor([1.0, -2.0, 3.0], device=dev, requires_grad=True)
    mask = (x > 0) & ~(x == 3.0)
    assert mask.dtype == tg.bool and to_np(mask).tolist() == [True, False, False]
    assert not mask.requires_grad and mask.grad_fn is None
    assert to_np(x.isfinite()).all()
    assert to_np((x >= 1.0) | (x < -1)).tolist() == [True, True, True]


@pytest.mark.parametrize("x_shape,bias", [((5, 3), True), ((2, 4, 3), True), ((3,), False), ((0, 3), True)])
def test_linear_matches_matmul_composition(dev: str, x_shape: tuple[int, ...], bias: bool) -> None:
    rng = np.random.default_rng(3)
    x, w, b = rng.normal(size=x_shape), rng.normal(size=(2, 3)), rng.normal(size=2)
    args = [t64(x, dev), t64(w, dev)] + ([t64(b, dev)] if bias else [])
    expected = x @ w.T + (b if bias else 0)
    np.testing.assert_allclose(to_np(tg.ops.Linear.apply(*args)), expected, rtol=1e-12)
    assert tg.gradcheck(tg.ops.Linear.apply, args)


def test_linear_shape_error_names_both_shapes() -> None:
    with pytest.raises(tg.ShapeError, match=r"linear: input of shape \(4, 5\) does not fit weight of shape \(2, 3\)"):
        tg.ops.Linear.apply(tg.zeros(4, 5), tg.zeros(2, 3))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(n=st.integers(1, 5), c=st.integers(1, 4), seed=st.integers(0, 2**16))
@SETTINGS
def test_cross_entropy_primitive_matches_log_softmax_and_gather(dev: str, reduction: str, n: int, c: int,
                                                                 seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, target = rng.normal(size=(n, c)) * 3, rng.integers(0, c, n)
    shifted = x - x.max(axis=1, keepdims=True)
    losses = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(n), target]
    expected = {"mean": losses.mean(), "sum": losses.sum(), "none": losses}[reduction]
    xt = t64(x, dev)
    target_array = xt.device.xp.asarray(target)
    np.testing.assert_allclose(to_np(tg.ops.CrossEntropy.apply(xt, target_array, reduction)), expected, rtol=1e-12)
    assert tg.gradcheck(lambda t: tg.ops.CrossEntropy.apply(t, target_array, reduction), [xt])


def test_cross_entropy_primitive_keeps_minus_infinity_rows_finite_elsewhere(dev: str) -> None:
    x = t64(np.array([[-np.inf, 0.0], [1.0, 2.0]]), dev).requires_grad_()
    loss = tg.ops.CrossEntropy.apply(x, x.device.xp.asarray([1, 0]), "none")
    np.testing.assert_allclose(to_np(loss), [0.0, np.log(1 + np.e)], rtol=1e-12)
    loss.sum().backward()
    assert np.isfinite(to_np(x.grad)).all()
    assert to_np(x.grad)[0].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("shape,dim", [((5,), 0), ((3, 4), 0), ((3, 4), 1), ((2, 3, 4), -1), ((0, 3), 1)])
def test_cumsum_values_and_gradients(dev: str, shape: tuple[int, ...], dim: int) -> None:
    x = np.random.default_rng(7).normal(size=shape)
    np.testing.assert_allclose(to_np(t64(x, dev).cumsum(dim)), np.cumsum(x, axis=dim), rtol=1e-12)
    if x.size:
        assert tg.gradcheck(lambda t: tg.cumsum(t, dim), [t64(x, dev)])


def test_cumsum_of_integers_and_scalars_and_bad_dims() -> None:
    ints = tg.tensor([1, 2, 3], dtype=tg.int32)
    assert ints.cumsum(0).dtype == tg.int64 and ints.cumsum(0).tolist() == [1, 3, 6]  # as in PyTorch
    assert tg.tensor(2.5).cumsum(0).item() == 2.5
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"):
        tg.zeros(2, 3).cumsum(2)
