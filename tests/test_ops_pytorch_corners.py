"""Corner cases where tinygrad_nb used to differ from PyTorch (issue 21, "Wrong today").

Each case is checked twice: against a value written down here (so the test means something without torch), and
against PyTorch itself when it is installed.
"""
from __future__ import annotations

import random

import numpy as np
import pytest

import tinygrad_nb as tg


def _torch():
    return pytest.importorskip("torch")


# -- integer reductions ----------------------------------------------------------------------------------------------
MIN_CASES = [  # (values, numpy dtype, expected min, expected max)
    ([-2**31, 5, 7], "int32", -2**31, 7),
    ([0, 1, 2], "uint8", 0, 2),
    ([255, 3, 9], "uint8", 3, 255),
    ([True, False, True], "bool", False, True),
    ([-2**63, 2**63 - 1], "int64", -2**63, 2**63 - 1),
    ([2**62 + 1, 2**62], "int64", 2**62, 2**62 + 1),  # beyond float64's 53 bits: a float detour would tie them
]


@pytest.mark.parametrize(("values", "dtype", "low", "high"), MIN_CASES)
def test_integer_min_max_are_exact(dev: str, values: list, dtype: str, low: int, high: int) -> None:
    x = tg.tensor(np.array(values, dtype=dtype), device=dev)
    assert x.min().item() == low and x.amin().item() == low
    assert x.max().item() == high and x.amax().item() == high
    assert x.min().dtype == np.dtype(dtype)


def test_integer_min_with_dim_returns_values_and_indices(dev: str) -> None:
    x = tg.tensor(np.array([[3, -2**31, 1], [0, 4, -1]], dtype=np.int32), device=dev)
    values, indices = x.min(1)
    assert values.tolist() == [-2**31, -1] and indices.tolist() == [1, 2]
    assert x.min(0, keepdim=True).values.tolist() == [[0, -2**31, -1]]
    with pytest.raises(RuntimeError, match=r"min: cannot reduce over an empty dimension of shape \(0,\)"):
        tg.tensor(np.zeros(0, dtype=np.int32), device=dev).min()


@pytest.mark.parametrize(("values", "dtype", "low", "high"), MIN_CASES)
def test_integer_min_max_vs_torch(values: list, dtype: str, low: int, high: int) -> None:
    torch = _torch()
    x = np.array(values, dtype=dtype)
    ours = tg.tensor(x)
    theirs = torch.from_numpy(x.copy())
    assert ours.min().item() == theirs.min().item()
    assert ours.max().item() == theirs.max().item()


# -- dtype promotion -------------------------------------------------------------------------------------------------
PROMOTION_CASES = {  # name: (tinygrad_nb/torch expression on a module `m`, expected dtype name)
    "int64 / int64": (lambda m: m.tensor([1, 2]) / m.tensor([3, 4]), "float32"),
    "int32 / int32": (lambda m: m.tensor([1, 2], dtype=m.int32) / m.tensor([3, 4], dtype=m.int32), "float32"),
    "int / 2": (lambda m: m.tensor([1, 2]) / 2, "float32"),
    "2 / int": (lambda m: 2 / m.tensor([1, 2]), "float32"),
    "0.7 ** int": (lambda m: 0.7 ** m.tensor([1, 2]), "float32"),
    "int ** 0.5": (lambda m: m.tensor([1, 2]) ** 0.5, "float32"),
    "2 ** int": (lambda m: 2 ** m.tensor([1, 2]), "int64"),
    "bool / bool": (lambda m: m.tensor([True]) / m.tensor([True]), "float32"),
    "int32 / np.int64": (lambda m: m.tensor([1, 2], dtype=m.int32) / np.int64(2), "float32"),
    "float16 * np.float64": (lambda m: m.tensor([1.0], dtype=m.float16) * np.float64(2), "float16"),
}


@pytest.mark.parametrize("name", PROMOTION_CASES)
def test_promotion_to_default_float(name: str) -> None:
    expr, expected = PROMOTION_CASES[name]
    assert expr(tg).dtype == np.dtype(expected)


def test_promotion_follows_the_default_dtype() -> None:
    tg.set_default_dtype(tg.float64)
    try:
        assert (tg.tensor([1, 2]) / tg.tensor([3, 4])).dtype == np.float64
        assert (0.7 ** tg.tensor([1, 2])).dtype == np.float64
    finally:
        tg.set_default_dtype(tg.float32)


@pytest.mark.parametrize("name", PROMOTION_CASES)
def test_promotion_vs_torch(name: str) -> None:
    torch = _torch()
    expr, _ = PROMOTION_CASES[name]
    ours, theirs = expr(tg), expr(torch)
    assert ours.dtype.name == str(theirs.dtype).removeprefix("torch.")
    np.testing.assert_allclose(ours.numpy().astype(np.float64), theirs.double().numpy(), rtol=1e-3)


# -- linspace with an integer dtype ----------------------------------------------------------------------------------
LINSPACE_CASES = [  # (start, end, steps, dtype, expected)
    (-5, 5, 4, "int32", [-5, -1, 1, 5]),  # numpy floors -1.67 to -2 and 1.67 to 1
    (-5.5, 5, 7, "int64", [-5, -3, -1, 0, 1, 3, 5]),  # ends truncated first, then filled from both ends
    (10, 0, 4, "int32", [10, 6, 3, 0]),
    (0, 10, 4, "uint8", [0, 3, 6, 10]),
    (3, 9, 1, "int32", [3]),
    (0, 1, 0, "int64", []),
]


@pytest.mark.parametrize(("start", "end", "steps", "dtype", "expected"), LINSPACE_CASES)
def test_linspace_integer_truncates_toward_zero(dev: str, start: float, end: float, steps: int, dtype: str,
                                                expected: list) -> None:
    out = tg.linspace(start, end, steps, dtype=dtype, device=dev)
    assert out.dtype == np.dtype(dtype) and out.tolist() == expected


@pytest.mark.parametrize(("start", "end", "steps", "dtype", "expected"), LINSPACE_CASES)
def test_linspace_integer_vs_torch(start: float, end: float, steps: int, dtype: str, expected: list) -> None:
    torch = _torch()
    assert tg.linspace(start, end, steps, dtype=dtype).tolist() == \
        torch.linspace(start, end, steps, dtype=getattr(torch, dtype)).tolist()


def test_linspace_float_unchanged(dev: str) -> None:
    np.testing.assert_array_equal(tg.linspace(-1, 1, 5, device=dev).numpy(), np.linspace(-1, 1, 5, dtype=np.float32))


# -- gradients at zero -----------------------------------------------------------------------------------------------
def _pow_grads(module, case: str):
    """Gradients of the sum of a pow expression on [0, 1] (and exponents [0, 2] where both are tensors)."""
    x = module.tensor([0.0, 1.0], requires_grad=True)
    if case == "0 ** x":
        (0 ** x).sum().backward()
        return [x.grad]
    if case == "x ** 0.0":
        (x ** 0.0).sum().backward()
        return [x.grad]
    y = module.tensor([0.0, 2.0], requires_grad=True)
    (x ** y).sum().backward()
    return [x.grad, y.grad]


POW_EXPECTED = {  # d/dx and d/dy at x = [0, 1] (and y = [0, 2])
    "0 ** x": [[0.0, 0.0]],
    "x ** 0.0": [[0.0, 0.0]],
    "x ** y": [[0.0, 2.0], [0.0, 0.0]],  # d/dy at (1, 2) = 1 * ln 1 = 0
}


@pytest.mark.parametrize("case", POW_EXPECTED)
def test_pow_gradients_at_zero(case: str) -> None:
    grads = _pow_grads(tg, case)
    for got, want in zip(grads, POW_EXPECTED[case]):
        np.testing.assert_array_equal(got.numpy(), np.array(want, dtype=np.float32))


@pytest.mark.parametrize("case", POW_EXPECTED)
def test_pow_gradients_at_zero_vs_torch(case: str) -> None:
    torch = _torch()
    for ours, theirs in zip(_pow_grads(tg, case), _pow_grads(torch, case)):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_pow_gradients_away_from_zero_unchanged(dev: str) -> None:
    """The masks touch only b == 0 (da) and a == 0 with b >= 0 (db): elsewhere gradcheck still holds."""
    x = tg.tensor(np.array([0.5, 1.5, 2.0]), device=dev, requires_grad=True)
    y = tg.tensor(np.array([-1.0, 0.5, 3.0]), device=dev, requires_grad=True)
    assert tg.gradcheck(lambda a, b: a ** b, (x, y))
    x0 = tg.tensor(np.array([0.0, 0.0]), requires_grad=True)
    y0 = tg.tensor(np.array([-1.0, 0.5]), requires_grad=True)
    (x0 ** y0).sum().backward()  # 0 ** -1 = inf: ln 0 stays in (PyTorch gives -inf there too)
    assert x0.grad.numpy()[0] == -np.inf and np.isinf(x0.grad.numpy()[1])
    assert y0.grad.numpy().tolist() == [-np.inf, 0.0]


@pytest.mark.parametrize("op", ["sign", "floor", "ceil", "round"])
def test_step_functions_have_zero_gradient(dev: str, op: str) -> None:
    values = np.array([-1.5, 0.0, 0.4, 2.5, np.inf, -np.inf])
    x = tg.tensor(values, device=dev, requires_grad=True)
    out = getattr(x, op)()
    np.testing.assert_array_equal(out.numpy(), getattr(np, op if op != "round" else "round")(values))
    assert out.requires_grad
    (out * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros(6))
    plain = getattr(tg.tensor(values, device=dev), op)()  # no graph without requires_grad
    assert not plain.requires_grad and plain.grad_fn is None


@pytest.mark.parametrize("op", ["sign", "floor", "ceil", "round"])
def test_step_functions_gradient_vs_torch(op: str) -> None:
    torch = _torch()
    values = [-1.5, 0.0, 0.4, 2.5]
    x, tx = tg.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    getattr(x, op)().sum().backward()
    getattr(tx, op)().sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())
    np.testing.assert_array_equal(getattr(x, op)().detach().numpy(), getattr(tx, op)().detach().numpy())


# -- advanced indexing: where the indexed dims go -------------------------------------------------------------------
INDEX_CASES = {  # name: (index builder taking a tensor constructor, PyTorch's result shape for zeros(2, 5, 6, 3))
    "int, slice, slice, tensor": (lambda T: (1, slice(None), slice(0, 2), T([[0, 1]])), (5, 2, 1, 2)),
    "0-d tensor counts as int": (lambda T: (T(1), slice(None), slice(0, 2), T([[0, 1]])), (5, 2, 1, 2)),
    "int, None, slice, tensor": (lambda T: (1, None, slice(None), T([0, 1])), (1, 5, 2, 3)),
    "int, ..., tensor": (lambda T: (1, Ellipsis, T([0, 1])), (5, 6, 2)),
    "int between tensors": (lambda T: (slice(None), T([0, 1]), 1, T([0, 1])), (2, 2)),
    "tensors split by slice": (lambda T: (1, T([0, 1]), slice(None), T([0, 1])), (2, 6)),
    "tensor then int": (lambda T: (T([0, 1]), slice(None), 1), (2, 5, 3)),
    "no int": (lambda T: (slice(None), T([0, 1, 1])), (2, 3, 6, 3)),
}


@pytest.mark.parametrize("name", INDEX_CASES)
def test_advanced_index_dims_placed_as_pytorch(dev: str, name: str) -> None:
    build, expected = INDEX_CASES[name]
    x = tg.arange(180, device=dev).reshape(2, 5, 6, 3)
    assert x[build(tg.tensor)].shape == expected


def test_advanced_index_values_and_gradient() -> None:
    x = tg.tensor(np.arange(180.0).reshape(2, 5, 6, 3), requires_grad=True)
    out = x[1, :, 0:2, tg.tensor([[0, 2]])]
    expected = np.arange(180.0).reshape(2, 5, 6, 3)[1][:, 0:2, [[0, 2]]]  # int first, then the tensor in place
    np.testing.assert_array_equal(out.detach().numpy(), expected)
    out.sum().backward()
    grad = np.zeros((2, 5, 6, 3))
    grad[1, :, 0:2, [0, 2]] = 1
    np.testing.assert_array_equal(x.grad.numpy(), grad)


def test_advanced_index_assignment_uses_the_same_placement() -> None:
    x = tg.zeros(2, 5, 6, 3)
    value = tg.tensor(np.arange(20.0, dtype=np.float32).reshape(5, 2, 1, 2))
    x[1, :, 0:2, tg.tensor([[0, 2]])] = value
    expected = np.zeros((2, 5, 6, 3), dtype=np.float32)
    expected[1][:, 0:2, [[0, 2]]] = value.numpy()
    np.testing.assert_array_equal(x.numpy(), expected)
    # under autograd the gradient reaches the value and the untouched rest
    base = tg.tensor(np.ones((2, 5, 6, 3)), requires_grad=True)
    v = tg.tensor(np.full((5, 2, 1, 2), 2.0), requires_grad=True)
    y = base * 1
    y[1, :, 0:2, tg.tensor([[0, 2]])] = v
    (y * y).sum().backward()
    np.testing.assert_array_equal(v.grad.numpy(), np.full((5, 2, 1, 2), 4.0))
    written = np.zeros((2, 5, 6, 3), dtype=bool)
    written[1][:, 0:2, [0, 2]] = True
    np.testing.assert_array_equal(base.grad.numpy(), np.where(written, 0.0, 2.0))


def test_advanced_indexing_vs_torch_random_indices() -> None:
    """Random mixes of ints, slices, None, ..., 0-d and 1-/2-d index tensors: shape, values and writes as torch."""
    torch = _torch()
    rng = random.Random(21)
    data = np.arange(180.0).reshape(2, 5, 6, 3)
    parts = [lambda: 1, lambda: -1, lambda: slice(None), lambda: slice(0, 2), lambda: None, lambda: "0d",
             lambda: [0, 1], lambda: [[0, 1]]]
    checked = 0
    for _ in range(400):
        spec = [rng.choice(parts)() for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.2:
            spec.insert(rng.randint(0, len(spec)), Ellipsis)

        def build(make, spec=spec):
            return tuple(make(p) if isinstance(p, list) else make(0) if p == "0d" else p for p in spec)

        try:
            want = torch.tensor(data)[build(torch.tensor)]
        except IndexError:
            continue
        got = tg.tensor(data)[build(tg.tensor)]
        assert got.shape == tuple(want.shape), spec
        np.testing.assert_array_equal(got.numpy(), want.numpy())
        target, theirs = tg.tensor(data), torch.tensor(data)
        value = np.arange(want.numel(), dtype=np.float64).reshape(tuple(want.shape)) + 1000
        target[build(tg.tensor)] = tg.tensor(value)
        theirs[build(torch.tensor)] = torch.tensor(value)
        np.testing.assert_array_equal(target.numpy(), theirs.numpy())
        checked += 1
    assert checked > 200


@pytest.mark.parametrize("name", INDEX_CASES)
def test_advanced_index_shape_vs_torch(name: str) -> None:
    torch = _torch()
    build, _ = INDEX_CASES[name]
    assert tg.zeros(2, 5, 6, 3)[build(tg.tensor)].shape == tuple(torch.zeros(2, 5, 6, 3)[build(torch.tensor)].shape)


# -- 0-d tensors -------------------------------------------------------------------------------------------------
def test_zero_dim_squeeze_and_sum(dev: str) -> None:
    x = tg.tensor(3.0, device=dev)
    assert x.squeeze(-1).shape == () and x.squeeze(0).item() == 3.0 and x.squeeze().shape == ()
    assert x.sum(0).item() == 3.0 and x.sum(-1).item() == 3.0
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-1, 0\], but got 1\)"):
        x.sum(1)
    with pytest.raises(IndexError, match=r"but got 1"):
        x.squeeze(1)


def test_zero_dim_vs_torch() -> None:
    torch = _torch()
    assert tg.tensor(3.0).squeeze(-1).shape == tuple(torch.tensor(3.0).squeeze(-1).shape)
    for fn in (lambda t: t.sum(1), lambda t: t.squeeze(1)):
        with pytest.raises(IndexError):
            fn(torch.tensor(3.0))
        with pytest.raises(IndexError):
            fn(tg.tensor(3.0))


# -- error classes ---------------------------------------------------------------------------------------------------
ERROR_CASES = {  # name: (call taking a module, message regex for tinygrad_nb)
    "permute with the wrong number of dims": (lambda m: m.zeros(2, 3).permute(0),
                                              r"permute: the number of dims 1 of \(0,\) does not match the 2 dims"),
    "permute repeating a dim": (lambda m: m.zeros(2, 3).permute(0, 0), r"is not a permutation of the 2 dims"),
    "clamp without bounds": (lambda m: m.zeros(2, 3).clamp(None, None),
                             r"clamp: at least one of 'min' or 'max' must not be None"),
    "int tensor to a negative int power": (lambda m: m.tensor([2, 3]) ** -1,
                                           r"pow on shapes \(2,\): Integers to negative integer powers"),
    "conv2d kernel larger than the input": (
        lambda m: m.nn.functional.conv2d(m.zeros(1, 1, 2, 2), m.zeros(1, 1, 3, 3)),
        r"input 2x2 is smaller than the 3x3 kernel"),
    "cross_entropy with (N, 1) targets": (
        lambda m: m.nn.functional.cross_entropy(m.zeros(3, 4), m.zeros(3, 1, dtype=m.int64)),
        r"cross_entropy: target shape \(3, 1\) does not match input shape \(3, 4\)"),
    "item of many elements": (lambda m: m.zeros(2).item(), r"item: only one-element tensors"),
    "bool of many elements": (lambda m: bool(m.zeros(2)), r"the truth value of a tensor with 2 elements"),
    "split sizes that do not add up": (lambda m: m.zeros(5).split([2, 2]), r"split: sizes \[2, 2\] do not add up to 5"),
    "stack of nothing": (lambda m: m.stack([]), r"stack: expected a non-empty list of tensors"),
    "broadcast mismatch": (lambda m: m.zeros(2, 3) + m.zeros(4),
                           r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast"),
}


@pytest.mark.parametrize("name", ERROR_CASES)
def test_errors_are_runtime_errors_as_in_pytorch(name: str) -> None:
    call, message = ERROR_CASES[name]
    with pytest.raises(RuntimeError, match=message) as info:
        call(tg)
    assert isinstance(info.value, ValueError)  # still a ValueError for code written against numpy's conventions
    assert isinstance(info.value, tg.autograd.ArgumentError)


@pytest.mark.parametrize("name", ERROR_CASES)
def test_errors_vs_torch(name: str) -> None:
    torch = _torch()
    call, _ = ERROR_CASES[name]
    with pytest.raises(RuntimeError):
        call(torch)
    with pytest.raises(RuntimeError):
        call(tg)


def test_shape_error_is_both() -> None:
    assert issubclass(tg.ShapeError, RuntimeError) and issubclass(tg.ShapeError, ValueError)


NN_ERROR_CASES = {  # name: (call taking a module, the error class PyTorch raises, message regex for tinygrad_nb)
    "one_hot class out of range": (lambda m: m.nn.functional.one_hot(m.tensor([3]), 3), RuntimeError,
                                   r"one_hot: class value 3 is out of range for num_classes=3"),
    "label_smoothing out of range": (
        lambda m: m.nn.functional.cross_entropy(m.zeros(2, 3), m.tensor([0, 1]), label_smoothing=2.0),
        RuntimeError, r"label_smoothing must be between 0.0 and 1.0, got 2.0"),
    "BatchNorm1d channel count": (lambda m: m.nn.BatchNorm1d(3)(m.zeros(2, 4)), RuntimeError,
                                  r"BatchNorm1d: input of shape \(2, 4\) has 4 channels, expected 3"),
    "RNNCell input size": (lambda m: m.nn.RNNCell(3, 4)(m.zeros(2, 5)), RuntimeError,
                           r"RNNCell: expected input of shape \(N, 3\) or \(3,\), got \(2, 5\)"),
    "conv2d padding string": (
        lambda m: m.nn.functional.conv2d(m.zeros(1, 1, 3, 3), m.zeros(1, 1, 2, 2), padding="foo"), RuntimeError,
        r"conv2d: padding must be an int, a pair, 'valid' or 'same', got 'foo'"),
    "load_state_dict size mismatch": (
        lambda m: m.nn.Linear(2, 2).load_state_dict({"weight": m.zeros(3, 3), "bias": m.zeros(2)}), RuntimeError,
        r"size mismatch for weight: copying a param with shape \(3, 3\) from checkpoint"),
    "cross_entropy target out of range": (
        lambda m: m.nn.functional.cross_entropy(m.zeros(2, 3), m.tensor([0, 3])), IndexError,
        r"cross_entropy: target contains class index 3, but the input \(2, 3\) has 3 classes"),
}


@pytest.mark.parametrize("name", NN_ERROR_CASES)
def test_nn_errors_have_pytorch_classes(name: str) -> None:
    call, kind, message = NN_ERROR_CASES[name]
    with pytest.raises(kind, match=message) as info:
        call(tg)
    assert isinstance(info.value, ValueError)  # what these were before, still caught by `except ValueError`


@pytest.mark.parametrize("name", NN_ERROR_CASES)
def test_nn_errors_vs_torch(name: str) -> None:
    torch = _torch()
    call, kind, _ = NN_ERROR_CASES[name]
    with pytest.raises(kind):
        call(torch)
