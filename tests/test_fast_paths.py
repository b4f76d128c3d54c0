"""Fast CPU paths that benchmarks/tiny_gpt.py timed give the same values as the plain numpy formulas.

GetItem's backward for one integer index array (an embedding lookup) sums the gradient rows with a stable sort and
``add.reduceat`` instead of ``np.add.at``.
"""
from __future__ import annotations

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb.ops.movement import add_rows


@pytest.mark.parametrize("index_dtype", [np.int64, np.int32, np.uint8])
@pytest.mark.parametrize("trailing", [(), (5,), (3, 4)])
def test_add_rows_equals_numpy_add_at(index_dtype: type, trailing: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 9, size=200).astype(index_dtype)  # every row repeated, some rows never picked
    g = rng.standard_normal((200,) + trailing)
    ours, expected = np.zeros((11,) + trailing), np.zeros((11,) + trailing)
    add_rows(ours, rows, g)
    np.add.at(expected, rows, g)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
    assert not ours[9:].any()


def test_add_rows_folds_negative_indices_onto_the_same_rows() -> None:
    g = np.arange(12.0).reshape(4, 3)
    ours, expected = np.zeros((5, 3)), np.zeros((5, 3))
    rows = np.array([-1, 4, 0, -5])  # -1 is row 4 and -5 row 0: each row gets two contributions
    add_rows(ours, rows, g)
    np.add.at(expected, rows, g)
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(ours[4], g[0] + g[1])


def test_add_rows_with_no_rows_leaves_zeros() -> None:
    da = np.zeros((3, 2))
    add_rows(da, np.zeros(0, dtype=np.int64), np.zeros((0, 2)))
    assert not da.any()


def test_embedding_style_indexing_gradient_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((7, 4))
    index = rng.integers(-7, 7, size=(6, 5))
    upstream = rng.standard_normal((6, 5, 4))
    ours = tg.tensor(weight, requires_grad=True)
    ours[tg.tensor(index)].backward(tg.tensor(upstream))
    theirs = torch.tensor(weight, requires_grad=True)
    theirs[torch.tensor(index)].backward(torch.tensor(upstream))
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_embedding_gradient_passes_gradcheck() -> None:
    index = tg.tensor(np.array([[0, 2, 2], [1, 0, 2]]))
    weight = tg.tensor(np.random.default_rng(2).standard_normal((3, 2)), requires_grad=True)
    assert tg.gradcheck(lambda w: tg.nn.functional.embedding(index, w), [weight])
