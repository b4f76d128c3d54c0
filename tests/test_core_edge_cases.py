"""Core edge cases where tinygrad_nb must behave as PyTorch does (issue 19, item 9).

Each group asserts PyTorch's documented values and error types/messages as constants; where PyTorch is installed,
a cross-check runs the same calls through it (``pytest.importorskip``: skipped cleanly without it).
"""
from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import to_np

import tinygrad_nb as tg
from tinygrad_nb import debug
from tinygrad_nb.debug import NonFiniteError
from tinygrad_nb.tensor import floor_divide


def raised(fn: Callable[[], Any]) -> tuple[type, str]:
    """(exception type, message) of what ``fn()`` raises; fails if it returns."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the point is to look at whatever it raises
        return type(e), str(e)
    raise AssertionError("expected an exception")


# -- dims of 0-d tensors: only 0 and -1, as in PyTorch -------------------------------------------------------------
DIM_OPS: dict[str, Callable[[Any, int], Any]] = {
    "sum": lambda t, d: t.sum(dim=d), "mean": lambda t, d: t.mean(dim=d), "max": lambda t, d: t.max(d),
    "min": lambda t, d: t.min(d), "amax": lambda t, d: t.amax(d), "amin": lambda t, d: t.amin(d),
    "argmax": lambda t, d: t.argmax(d), "argmin": lambda t, d: t.argmin(d), "std": lambda t, d: t.std(d),
    "var": lambda t, d: t.var(d), "logsumexp": lambda t, d: t.logsumexp(d), "cumsum": lambda t, d: t.cumsum(d),
    "softmax": lambda t, d: t.softmax(d), "log_softmax": lambda t, d: t.log_softmax(d),
    "all": lambda t, d: t.all(d), "any": lambda t, d: t.any(d), "squeeze": lambda t, d: t.squeeze(d),
}


@pytest.mark.parametrize("name", sorted(DIM_OPS))
@pytest.mark.parametrize("dim", [1, 2, -2])
def test_zero_dim_tensor_rejects_dims_other_than_0_and_minus_1(name: str, dim: int) -> None:
    with pytest.raises(IndexError, match=re.escape(f"Dimension out of range (expected to be in range of [-1, 0], "
                                                   f"but got {dim})")):
        DIM_OPS[name](tg.tensor(3.0), dim)


# PyTorch's values for a 0-d tensor holding 3.0 reduced over dim 0 (or -1): the reduction of one value
ZERO_DIM_VALUES = {"sum": 3.0, "mean": 3.0, "max": 3.0, "min": 3.0, "amax": 3.0, "amin": 3.0, "argmax": 0,
                   "argmin": 0, "std": math.nan, "var": math.nan, "logsumexp": 3.0, "cumsum": 3.0, "softmax": 1.0,
                   "log_softmax": 0.0, "all": True, "any": True, "squeeze": 3.0}


@pytest.mark.parametrize("name", sorted(DIM_OPS))
@pytest.mark.parametrize("dim", [0, -1])
def test_zero_dim_tensor_accepts_dim_0_and_minus_1(name: str, dim: int) -> None:
    out = DIM_OPS[name](tg.tensor(3.0), dim)
    values = out.values if name in ("max", "min") else out
    assert values.shape == ()
    np.testing.assert_equal(values.item(), ZERO_DIM_VALUES[name])
    if name in ("max", "min"):
        assert out.indices.item() == 0 and out.indices.dtype == tg.int64


def test_dims_out_of_range_repeated_and_size_of_a_zero_dim_tensor() -> None:
    x = tg.ones(2, 3)
    with pytest.raises(IndexError, match=re.escape("Dimension out of range (expected to be in range of [-2, 1], "
                                                   "but got 5)")):
        x.sum(5)
    with pytest.raises(RuntimeError, match="^dim 1 appears multiple times in the list of dims$"):
        x.sum((1, -1))
    with pytest.raises(RuntimeError, match="^dim 0 appears multiple times in the list of dims$"):
        tg.tensor(3.0).mean((0, -1))
    assert x.sum((0, 1)).item() == 6.0 and x.sum((-1, 0)).item() == 6.0
    with pytest.raises(IndexError, match="^Dimension specified as 1 but tensor has no dimensions$"):
        tg.tensor(3.0).size(1)
    with pytest.raises(IndexError, match=re.escape("expected to be in range of [-1, 0], but got 1")):
        tg.tensor(3.0).flatten(0, 1)
    assert tg.tensor(3.0).flatten(0, -1).shape == (1,)


@pytest.mark.parametrize("name", sorted(DIM_OPS))
def test_zero_dim_errors_match_pytorch(name: str) -> None:
    torch = pytest.importorskip("torch")
    ours = raised(lambda: DIM_OPS[name](tg.tensor(3.0), 1))
    theirs = raised(lambda: DIM_OPS[name](torch.tensor(3.0), 1))
    assert ours == theirs


# -- factories refuse negative sizes -------------------------------------------------------------------------------
NEGATIVE_MESSAGE = "^" + re.escape("Trying to create tensor with negative dimension -1: [-1]") + "$"
FACTORIES: dict[str, Callable[[Any], Any]] = {
    "randn": lambda m: m.randn(-1), "rand": lambda m: m.rand(-1), "zeros": lambda m: m.zeros(-1),
    "ones": lambda m: m.ones(-1), "empty": lambda m: m.empty(-1), "full": lambda m: m.full((-1,), 1.0),
    "randint": lambda m: m.randint(0, 5, (-1,)), "randperm": lambda m: m.randperm(-1),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_factories_reject_negative_sizes(name: str) -> None:
    with pytest.raises(RuntimeError, match=NEGATIVE_MESSAGE):
        FACTORIES[name](tg)


def test_negative_sizes_name_the_first_negative_dim_and_other_factories() -> None:
    with pytest.raises(RuntimeError, match=re.escape("negative dimension -3: [2, -3, -1]")):
        tg.zeros(2, -3, -1)
    with pytest.raises(RuntimeError, match=re.escape("negative dimension -1: [-1, -3]")):
        tg.randn((-1, -3))
    with pytest.raises(RuntimeError, match="^n must be greater or equal to 0, got -1$"):
        tg.eye(-1)
    with pytest.raises(RuntimeError, match="^m must be greater or equal to 0, got -2$"):
        tg.eye(2, -2)
    with pytest.raises(RuntimeError, match="^number of steps must be non-negative$"):
        tg.linspace(0, 1, -1)
    assert tg.randn(0, 3).shape == (0, 3) and tg.zeros(0).shape == (0,)  # zero is a size, negative is not


@pytest.mark.parametrize("name", sorted(set(FACTORIES) - {"zeros"}))  # torch.zeros words it its own way
def test_negative_size_errors_match_pytorch(name: str) -> None:
    torch = pytest.importorskip("torch")
    assert raised(lambda: FACTORIES[name](tg)) == raised(lambda: FACTORIES[name](torch))


# -- arange --------------------------------------------------------------------------------------------------------
ARANGE_ERRORS = [
    ((0, 5, 0), "step must be nonzero"),
    ((0, 5, 0.0), "step must be nonzero"),
    ((5, 0), "upper bound and lower bound inconsistent with step sign"),
    ((0, 5, -1), "upper bound and lower bound inconsistent with step sign"),
    ((-3,), "upper bound and lower bound inconsistent with step sign"),
    ((5.0, 0.0, 0.5), "upper bound and lower bound inconsistent with step sign"),
    ((float("nan"),), "unsupported range: 0 -> nan"),
    ((0, float("inf")), "unsupported range: 0 -> inf"),
]


@pytest.mark.parametrize("args,message", ARANGE_ERRORS)
def test_arange_refuses_zero_steps_and_ranges_against_the_step(args: tuple, message: str) -> None:
    with pytest.raises(RuntimeError, match="^" + re.escape(message) + "$"):
        tg.arange(*args)


def test_arange_valid_and_empty_ranges() -> None:
    assert tg.arange(5, 5, -1).tolist() == [] and tg.arange(0, 0).tolist() == []
    assert tg.arange(5, 0, -2).tolist() == [5, 3, 1]
    np.testing.assert_allclose(to_np(tg.arange(0, 1, 0.3)), [0.0, 0.3, 0.6, 0.9], rtol=1e-6)


@pytest.mark.parametrize("args", [a for a, _ in ARANGE_ERRORS] + [(5, 5, -1), (5, 0, -2), (0, 1, 0.3)])
def test_arange_matches_pytorch(args: tuple) -> None:
    torch = pytest.importorskip("torch")
    try:
        expected = torch.arange(*args).tolist()
    except RuntimeError:
        assert raised(lambda: tg.arange(*args)) == raised(lambda: torch.arange(*args))
        return
    np.testing.assert_allclose(tg.arange(*args).tolist(), expected, rtol=1e-6)


# -- Python ints that do not fit -----------------------------------------------------------------------------------
@pytest.mark.parametrize("data,value", [([2**64], 2**64), ([2**63], 2**63), ([-(2**63) - 1], -(2**63) - 1),
                                        ([[1, 2], [3, 2**70]], 2**70), (2**64, 2**64), ([True, 2**64], 2**64)])
def test_ints_beyond_int64_raise_overflow_naming_the_value(data: Any, value: int) -> None:
    with pytest.raises(ValueError, match=f"^Overflow when unpacking long long: {value} does not fit in int64"):
        tg.tensor(data)
    with pytest.raises(ValueError, match=f"^Overflow when unpacking long long: {value} "):
        tg.tensor(data, dtype=tg.int64)


def test_ints_at_the_edges_of_int64_and_floats_are_fine() -> None:
    assert tg.tensor([2**63 - 1, -(2**63)]).tolist() == [2**63 - 1, -(2**63)]
    assert tg.tensor([2**64], dtype=tg.float32).item() == pytest.approx(1.8446744e19)
    assert tg.tensor([1.5, 2**64]).dtype == tg.float32  # a float in the list: a float tensor, as in PyTorch


@pytest.mark.parametrize("data,dtype,message", [
    ([300], tg.uint8, "value cannot be converted to type uint8 without overflow: 300 is outside [0, 255]"),
    ([300.0], tg.uint8, "value cannot be converted to type uint8 without overflow: 300.0 is outside [0, 255]"),
    ([128], tg.int8, "value cannot be converted to type int8 without overflow: 128 is outside [-128, 127]"),
    ([2**31], tg.int32, "value cannot be converted to type int32 without overflow: 2147483648 is outside"),
    ([2**15], tg.int16, "value cannot be converted to type int16 without overflow: 32768 is outside"),
])
def test_ints_beyond_a_requested_integer_dtype(data: Any, dtype: Any, message: str) -> None:
    with pytest.raises(RuntimeError, match="^" + re.escape(message)):
        tg.tensor(data, dtype=dtype)


@pytest.mark.parametrize("data,dtype", [([2**64], None), ([2**63], None), ([[1, 2], [3, 2**70]], None),
                                        ([300], "uint8"), ([128], "int8"), ([2**31], "int32")])
def test_overflow_errors_match_pytorch(data: Any, dtype: str | None) -> None:
    torch = pytest.importorskip("torch")
    ours = raised(lambda: tg.tensor(data, dtype=dtype))
    theirs = raised(lambda: torch.tensor(data, dtype=getattr(torch, dtype) if dtype else None))
    assert ours[0] is theirs[0]
    # PyTorch says "... long long" / "... without overflow"; ours continues with the value
    assert ours[1].startswith(theirs[1])


# -- floor division ------------------------------------------------------------------------------------------------
def test_floor_divide_rounds_toward_minus_infinity() -> None:
    a, b = tg.tensor([7, -7, 7, -7]), tg.tensor([2, 2, -2, -2])
    for out in (a // b, a.floor_divide(b), floor_divide(a, b)):
        assert out.tolist() == [3, -4, -4, 3] and out.dtype == tg.int64  # PyTorch's documented result
    assert (a // 2).tolist() == [3, -4, 3, -4]
    assert (5 // b).tolist() == [2, 2, -3, -3] and floor_divide(5, b).tolist() == [2, 2, -3, -3]
    x = tg.tensor([7.5, -7.5, 7.5, -7.5])
    assert (x // tg.tensor([2.0, 2.0, -2.0, -2.0])).tolist() == [3.0, -4.0, -4.0, 3.0]
    assert (tg.tensor([1.0], dtype=tg.float64) // 0.1).tolist() == [9.0]  # as Python: 1.0 // 0.1 == 9.0
    assert (tg.tensor([1.0, -1.0]) // float("inf")).tolist() == [0.0, -1.0]


def test_floor_divide_on_every_device_broadcasts(dev: str) -> None:
    a = tg.tensor([[7.0], [-7.0]], device=dev)
    b = tg.tensor([2.0, -2.0, 3.0], device=dev)
    assert (a // b).tolist() == [[3.0, -4.0, 2.0], [-4.0, 3.0, -3.0]]
    assert (a // b).device == a.device


def test_integer_floor_division_by_zero_raises_float_gives_inf_and_nan() -> None:
    ints = tg.tensor([7, -7, 0])
    for divide in (lambda: ints // tg.tensor([1, 0, 1]), lambda: ints // 0, lambda: 5 // tg.tensor([0]),
                   lambda: tg.tensor(3) // tg.tensor(0), lambda: tg.tensor([7], dtype=tg.uint8) // 0):
        with pytest.raises(RuntimeError, match="^ZeroDivisionError"):
            divide()
    floats = tg.tensor([1.0, -1.0, 0.0])
    np.testing.assert_equal(to_np(floats // 0), [np.inf, -np.inf, np.nan])
    np.testing.assert_equal(to_np(floats // tg.zeros(3)), [np.inf, -np.inf, np.nan])
    np.testing.assert_equal(to_np(tg.tensor([np.inf, -np.inf, np.nan]) // 1), [np.nan] * 3)


@pytest.mark.parametrize("make,dtype", [
    (lambda: tg.tensor([7, -7]) // 2.5, tg.float32),                                  # int tensor, float scalar
    (lambda: 5.5 // tg.tensor([2, -2]), tg.float32),
    (lambda: tg.tensor([7], dtype=tg.int32) // tg.tensor([2]), tg.int64),
    (lambda: tg.tensor([7], dtype=tg.int32) // 2, tg.int32),                          # a scalar never widens
    (lambda: tg.ones(1, dtype=tg.float16) // tg.ones(1), tg.float32),
    (lambda: tg.ones(1, dtype=tg.float16) // 2.5, tg.float16),
    (lambda: tg.tensor([7]) // tg.tensor([2.0]), tg.float32),                         # int64 // float32
    (lambda: tg.tensor([True]) // 1, tg.int64),
    (lambda: tg.tensor([7], dtype=tg.uint8) // tg.tensor([2], dtype=tg.uint8), tg.uint8),
])
def test_floor_divide_promotes_like_pytorch(make: Callable[[], Any], dtype: Any) -> None:
    assert make().dtype == dtype


def test_floor_divide_of_bools_is_not_implemented() -> None:
    with pytest.raises(NotImplementedError, match="^\"floor_divide\" not implemented for 'Bool'$"):
        tg.tensor([True]) // tg.tensor([True])


def test_floor_divide_records_the_graph_but_refuses_backward() -> None:
    x = tg.tensor([3.0, 4.0], requires_grad=True)
    y = x // 2
    assert y.requires_grad and y.grad_fn == "FloorDivideBackward" and y.tolist() == [1.0, 2.0]
    with pytest.raises(RuntimeError, match="^derivative for floor_divide is not implemented$"):
        y.sum().backward()
    w = tg.tensor([3.0, 4.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="^derivative for floor_divide is not implemented$"):
        (tg.tensor([7.0, 9.0]) // w).sum().backward()
    with tg.no_grad():
        assert not (x // 2).requires_grad


def test_floor_divide_in_place() -> None:
    c = tg.tensor([7, -7, 7, -7])
    view = c[:2]
    c //= 2
    assert c.tolist() == [3, -4, 3, -4] and view.tolist() == [3, -4] and c.version == 1
    assert tg.tensor([7.0, -7.0]).floor_divide_(tg.tensor([2.0, 2.0])).tolist() == [3.0, -4.0]


def test_floor_divide_is_exported_like_torch() -> None:
    assert tg.floor_divide is floor_divide


def test_floor_divide_matches_pytorch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64", "int64", "int32"):
        a = rng.integers(-20, 20, size=(4, 5)).astype(dtype)
        b = rng.integers(1, 6, size=(5,)).astype(dtype) * rng.choice([-1, 1], size=(5,)).astype(dtype)
        if dtype.startswith("float"):
            a = a + rng.uniform(-1, 1, size=a.shape).astype(dtype)
        ours = tg.tensor(a) // tg.tensor(b)
        theirs = torch.tensor(a) // torch.tensor(b)
        assert str(ours.dtype) == str(theirs.dtype).removeprefix("torch.")
        np.testing.assert_array_equal(to_np(ours), theirs.numpy())
    for make in (lambda m: m.tensor([7, -7]) // 0, lambda m: m.tensor([True]) // m.tensor([True])):
        assert raised(lambda: make(tg))[0] is raised(lambda: make(torch))[0]


# -- no numpy RuntimeWarnings out of ops (PyTorch returns inf and NaN silently) ------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_ops_and_their_backward_emit_no_numpy_warnings(dtype: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = tg.tensor([-1.0], dtype=dtype, requires_grad=True)
        y = x.log()
        assert np.isnan(y.item())
        y.backward()
        assert x.grad.tolist() == [-1.0]  # d log(x)/dx = 1/x
        x = tg.tensor([1.0], dtype=dtype, requires_grad=True)
        y = x / 0
        assert y.item() == np.inf
        y.backward()
        assert x.grad.item() == np.inf  # 1/0
        x = tg.tensor([100.0], dtype=dtype, requires_grad=True)
        y = x.exp()
        assert y.item() == np.inf  # e^100 = 2.7e43 is beyond float32 too
        y.backward()
        assert x.grad.item() == np.inf
        big = tg.tensor([60000.0], dtype=dtype)
        assert ((big * big).item() == np.inf) == (dtype == "float16")  # overflow in float16: inf, silently
        assert np.isnan((tg.tensor([np.inf], dtype=dtype) - np.inf).item())
        x = tg.tensor([-1.0], dtype=dtype, requires_grad=True)
        assert np.isnan(x.sqrt().item()) and np.isnan((x ** 0.5).item())
        (tg.tensor([2.0], dtype=dtype) ** x).backward()  # d/dx 2**x = 2**x ln 2
        assert x.grad.item() == pytest.approx(0.5 * math.log(2), rel=1e-3)
        assert tg.tensor([1e6], dtype=dtype).tolist() == ([np.inf] if dtype == "float16" else [1e6])
        assert tg.full((1,), 1e6, dtype=dtype).tolist() == ([np.inf] if dtype == "float16" else [1e6])


def test_silencing_stays_inside_ops_and_the_tracer_still_reports() -> None:
    before = np.geterr()
    tg.tensor([-1.0]).log()
    assert np.geterr() == before  # the user's numpy settings are untouched
    with pytest.warns(RuntimeWarning, match="invalid value encountered in log"):
        np.log(np.array([-1.0]))  # the user's own numpy code still warns
    with pytest.raises(NonFiniteError, match="Log"):
        with debug.detect_anomaly():
            tg.tensor([-1.0]).log()
    with debug.detect_anomaly(strict=False) as tracer:
        x = tg.tensor([1.0], requires_grad=True)
        (x / 0).backward()
    assert [e.op for e in tracer.events] == ["Div", "Div"] and [e.phase for e in tracer.events] == \
        ["forward", "backward"]


def test_warning_free_values_match_pytorch() -> None:
    torch = pytest.importorskip("torch")
    for dtype in ("float16", "float32"):
        for values, op in (([-1.0, 0.0, 2.0], "log"), ([100.0, -100.0, 1.0], "exp"), ([-1.0, 4.0], "sqrt")):
            ours = getattr(tg.tensor(values, dtype=dtype), op)()
            theirs = getattr(torch.tensor(values, dtype=getattr(torch, dtype)), op)()
            np.testing.assert_allclose(to_np(ours), theirs.numpy(), rtol=1e-3)
        np.testing.assert_equal(to_np(tg.tensor([1.0, -1.0, 0.0], dtype=dtype) / 0),
                                (torch.tensor([1.0, -1.0, 0.0], dtype=getattr(torch, dtype)) / 0).numpy())


# -- tensor-tensor promotion: a float wins over an int, as in PyTorch -----------------------------------------------
@pytest.mark.parametrize("a,b,expected", [("int64", "float32", "float32"), ("int32", "float16", "float16"),
                                          ("bool", "float16", "float16"), ("float32", "float64", "float64"),
                                          ("int8", "uint8", "int16"), ("bool", "int32", "int32")])
def test_tensor_tensor_promotion(a: str, b: str, expected: str) -> None:
    x, y = tg.ones(2, dtype=a), tg.ones(2, dtype=b)
    assert (x + y).dtype == expected and (y * x).dtype == expected
    assert tg.cat([x, y]).dtype == expected


@pytest.mark.parametrize("a,b", [("int64", "float32"), ("int32", "float16"), ("bool", "float16"), ("int8", "uint8")])
def test_tensor_tensor_promotion_matches_pytorch(a: str, b: str) -> None:
    torch = pytest.importorskip("torch")
    theirs = torch.ones(2, dtype=getattr(torch, a)) + torch.ones(2, dtype=getattr(torch, b))
    assert f"torch.{(tg.ones(2, dtype=a) + tg.ones(2, dtype=b)).dtype}" == str(theirs.dtype)


def test_scalar_first_ops_promote_like_pytorch() -> None:
    assert (1.5 - tg.tensor([1, 2])).dtype == tg.float32
    assert (2 ** tg.tensor([1.0], dtype=tg.float16)).dtype == tg.float16
