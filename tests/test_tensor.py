"""Tensor creation, dtypes and promotion, indexing, in-place ops, conversion, printing."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import t64, to_np

import tinygrad_nb as tg


def test_creation_functions_values_shapes_and_dtypes(dev: str) -> None:
    assert to_np(tg.zeros(2, 3, device=dev)).tolist() == [[0.0] * 3] * 2
    assert tg.zeros((2, 3)).shape == (2, 3)
    assert to_np(tg.ones(2, dtype=tg.int32, device=dev)).dtype == np.int32
    assert to_np(tg.full((2,), 7.5, device=dev)).tolist() == [7.5, 7.5]
    assert to_np(tg.arange(5, device=dev)).tolist() == [0, 1, 2, 3, 4]
    assert tg.arange(5).dtype == np.int64 and tg.arange(0, 1, 0.25).dtype == np.float32
    assert to_np(tg.arange(1, 7, 2)).tolist() == [1, 3, 5]
    np.testing.assert_allclose(to_np(tg.linspace(0, 1, 5)), np.linspace(0, 1, 5))
    assert to_np(tg.eye(2)).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    base = tg.randn(3, 4, dtype=tg.float64, device=dev)
    for like in (tg.zeros_like, tg.ones_like, tg.randn_like, tg.rand_like):
        made = like(base)
        assert made.shape == (3, 4) and made.dtype == np.float64 and made.device == base.device
    assert tg.full_like(base, 2).numpy().tolist() == [[2.0] * 4] * 3
    r = to_np(tg.rand(1000, device=dev))
    assert r.min() >= 0 and r.max() < 1 and r.dtype == np.float32
    ri = to_np(tg.randint(3, 7, (500,), device=dev))
    assert set(ri.tolist()) == {3, 4, 5, 6}
    assert sorted(to_np(tg.randperm(10, device=dev)).tolist()) == list(range(10))


def test_default_dtypes_follow_pytorch() -> None:
    assert tg.tensor([1.0, 2.0]).dtype == np.float32
    assert tg.tensor([1, 2]).dtype == np.int64
    assert tg.tensor(True).dtype == np.bool_
    assert tg.tensor(np.array([1.0], dtype=np.float64)).dtype == np.float64  # arrays keep their dtype
    assert tg.zeros(1).dtype == np.float32


@pytest.mark.parametrize("expr,dtype", [
    (lambda i, f: i + 1.5, np.float32),        # int tensor + float scalar -> default float
    (lambda i, f: i * 2, np.int64),            # scalar does not widen
    (lambda i, f: f + 2, np.float32),
    (lambda i, f: f.double() + f, np.float64),
    (lambda i, f: i / 2, np.float32),          # true division of ints gives floats
    (lambda i, f: i > 1, np.bool_),
    (lambda i, f: f.half() + 1.0, np.float16),  # a Python float keeps the tensor's float dtype
    (lambda i, f: i.int() + i, np.int64),
])
def test_type_promotion(expr: object, dtype: type) -> None:
    ints, floats = tg.tensor([1, 2, 3]), tg.tensor([1.0, 2.0, 3.0])
    assert expr(ints, floats).dtype == dtype  # type: ignore[operator]


def test_arithmetic_with_scalars_reflected_and_numpy_operands() -> None:
    x = tg.tensor([1.0, 2.0, 4.0])
    assert to_np(2 - x).tolist() == [1.0, 0.0, -2.0]
    assert to_np(8 / x).tolist() == [8.0, 4.0, 2.0]
    assert to_np(2 ** x).tolist() == [2.0, 4.0, 16.0]
    assert to_np(x ** 2).tolist() == [1.0, 4.0, 16.0]
    assert to_np(np.array([1.0, 1.0, 1.0], dtype=np.float32) * x).tolist() == [1.0, 2.0, 4.0]
    m = tg.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert to_np(m @ m).tolist() == [[7.0, 10.0], [15.0, 22.0]]
    assert to_np(abs(-x)).tolist() == [1.0, 2.0, 4.0]


def test_inplace_operators_update_data_and_version() -> None:
    x = tg.tensor([1.0, 2.0])
    same = x
    x += 1
    x *= 3
    x -= 1
    x /= 2
    assert x is same and to_np(x).tolist() == [2.5, 4.0] and x.version == 4
    x.zero_()
    x.fill_(3)
    assert to_np(x).tolist() == [3.0, 3.0] and x.version == 6
    x.clamp_(max=1)
    assert to_np(x).tolist() == [1.0, 1.0]
    x.copy_(tg.tensor([5.0, 6.0]))
    assert to_np(x).tolist() == [5.0, 6.0]
    with pytest.raises(tg.ShapeError, match=r"copy_: cannot copy shape \(3,\) into \(2,\)"):
        x.copy_(tg.zeros(3))


@pytest.mark.parametrize("index", [
    1, -1, slice(None, None, 2), (Ellipsis, 0), (None, 1), (slice(1, None), [0, 2]),
    ([1, 0, 1],), (np.array([True, False, True]),),
])
def test_getitem_matches_numpy(index: object, dev: str) -> None:
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.testing.assert_array_equal(to_np(tg.tensor(x, device=dev)[index]), x[index])
    assert tg.gradcheck(lambda t: t[index], [t64(x, dev)])


def test_getitem_out_of_range_names_the_index() -> None:
    with pytest.raises(IndexError, match=r"index 5 is out of bounds for axis 0 with size 3"):
        tg.zeros(3, 2)[5]


def test_item_tolist_numpy_detach_and_requires_grad() -> None:
    x = tg.tensor([[1.5, 2.5]], requires_grad=True)
    assert x.tolist() == [[1.5, 2.5]]
    assert x[0, 1].item() == 2.5 and isinstance(x[0, 1].item(), float)
    with pytest.raises(ValueError, match=r"item: only one-element tensors can be converted to a Python number, this one has shape \(1, 2\)"):
        x.item()
    d = x.detach()
    assert not d.requires_grad and np.shares_memory(d.numpy(), x.numpy())
    y = tg.tensor([1.0]).requires_grad_()
    assert y.requires_grad and y.is_leaf
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients, this one is int64"):
        tg.tensor([1, 2]).requires_grad_()


def test_repr_is_stable_and_informative() -> None:
    x = tg.tensor([[1.0, 2.0]], requires_grad=True)
    assert repr(x) == "tensor([[1., 2.]], shape=(1, 2), dtype=float32, device=cpu, requires_grad=True)"
    assert repr(x * 2).endswith("grad_fn=MulBackward)")
    assert "0x" not in repr(tg.randn(50, 50))


def test_movement_helpers() -> None:
    x = tg.arange(24).reshape(2, 3, 4)
    assert x.permute(2, 0, 1).shape == (4, 2, 3)
    assert x.transpose(0, 2).shape == (4, 3, 2)
    assert x.T.shape == (4, 3, 2)
    assert x.flatten(1).shape == (2, 12)
    assert x.view(6, -1).shape == (6, 4)
    assert x.unsqueeze(-1).shape == (2, 3, 4, 1) and x.unsqueeze(-1).squeeze(-1).shape == (2, 3, 4)
    assert tg.stack([x, x], dim=1).shape == (2, 2, 3, 4)
    assert tg.cat([x, x], dim=-1).shape == (2, 3, 8)
    assert x[:, :1].expand(2, 5, 4).shape == (2, 5, 4)
    with pytest.raises(tg.ShapeError, match=r"cat: tensor 1 has shape \(2, 4\) but tensor 0 has shape \(2, 3\)"):
        tg.cat([tg.zeros(2, 3), tg.zeros(2, 4)], dim=0)


def test_reductions_accept_numpy_aliases() -> None:
    x = tg.tensor([[1.0, 5.0], [3.0, 2.0]])
    assert to_np(x.sum(axis=0)).tolist() == [4.0, 7.0]
    assert to_np(x.mean(axis=1, keepdims=True)).tolist() == [[3.0], [2.5]]
    values, indices = x.max(dim=1)
    assert to_np(values).tolist() == [5.0, 3.0] and to_np(indices).tolist() == [1, 0]
    assert x.argmax().item() == 1
    assert to_np(x.std(0)).tolist() == pytest.approx([np.std([1, 3], ddof=1), np.std([5, 2], ddof=1)])


def test_elementwise_math_against_numpy() -> None:
    a = np.linspace(-3, 3, 13)
    t = t64(a)
    np.testing.assert_allclose(to_np(t.sigmoid()), 1 / (1 + np.exp(-a)))
    np.testing.assert_allclose(to_np(t.relu()), np.maximum(a, 0))
    np.testing.assert_allclose(to_np(t.tanh()), np.tanh(a))
    np.testing.assert_allclose(to_np(t.clamp(-1, 2)), np.clip(a, -1, 2))
    np.testing.assert_allclose(to_np(tg.maximum(t, 0.5)), np.maximum(a, 0.5))
    np.testing.assert_allclose(to_np(tg.where(t > 0, t, -t)), np.abs(a))
    np.testing.assert_allclose(to_np(t.softmax(0)), np.exp(a) / np.exp(a).sum())
    big = t64([1000.0, 1000.0])
    np.testing.assert_allclose(to_np(big.log_softmax(0)), np.log([0.5, 0.5]))  # stable at large values


def test_dlpack_round_trip_with_numpy_is_zero_copy() -> None:
    a = np.arange(6, dtype=np.float32)
    t = tg.from_dlpack(a)
    a[0] = 42.0
    assert t[0].item() == 42.0
    back = np.from_dlpack(t)
    assert np.shares_memory(back, t.numpy())


def test_scalar_on_the_left_of_every_operator() -> None:
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = 1 + x
    assert to_np(y).tolist() == [2.0, 3.0]
    assert to_np(sum([x, x])).tolist() == [2.0, 4.0]  # builtin sum starts from 0 + x
    (1 + x * 1).sum().backward()
    assert to_np(x.grad).tolist() == [1.0, 1.0]


def test_generator_repr_is_stable() -> None:
    assert repr(tg.manual_seed(7)) == "Generator(seed=7, offset=0)"
