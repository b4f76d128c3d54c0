"""Random programs of in-place writes (through slices, reshape and transpose views, augmented assignment, adding a
second tensor that needs a gradient) mixed with ops that read the tensor before and after: values and gradients
must equal PyTorch's. Skipped without torch."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinygrad_nb as tg

torch = pytest.importorskip("torch")

ROWS, COLS = 3, 4
rows = st.tuples(st.integers(0, ROWS - 1), st.integers(1, ROWS)).map(lambda r: (min(r), max(r[0] + 1, r[1])))
cols = st.tuples(st.integers(0, COLS - 1), st.integers(1, COLS)).map(lambda c: (min(c), max(c[0] + 1, c[1])))
factor = st.sampled_from([0.5, 2.0, -3.0])
step = st.one_of(
    st.tuples(st.just("slice_mul"), rows, cols, factor),   # y[r0:r1, c0:c1].mul_(f)
    st.tuples(st.just("slice_iadd"), rows, cols, factor),  # y[r0:r1, c0:c1] += f
    st.tuples(st.just("column_iadd_view"), cols, factor),  # y[:, c0:c1] += y[:, c0:c1] * f  (reads the view first)
    st.tuples(st.just("reshape_add"), factor),             # y.reshape(-1).add_(f)
    st.tuples(st.just("transpose_mul"), factor),           # y.T.mul_(f)
    st.tuples(st.just("mul_"), factor),                    # y.mul_(f)
    st.tuples(st.just("add_w"), rows, cols),               # y[r0:r1, c0:c1] += w[c0:c1]  (w requires grad too)
    st.tuples(st.just("keep")),                            # remember y + 0 (recorded before later writes)
)


def run(x: Any, w: Any, program: list[tuple[Any, ...]]) -> Any:
    y = x * 1
    kept = []
    for op, *args in program:
        if op == "slice_mul":
            (r0, r1), (c0, c1), f = args
            y[r0:r1, c0:c1].mul_(f)
        elif op == "slice_iadd":
            (r0, r1), (c0, c1), f = args
            y[r0:r1, c0:c1] += f
        elif op == "column_iadd_view":
            (c0, c1), f = args
            y[:, c0:c1] += y[:, c0:c1] * f
        elif op == "reshape_add":
            y.reshape(-1).add_(args[0])
        elif op == "transpose_mul":
            y.T.mul_(args[0])
        elif op == "mul_":
            y.mul_(args[0])
        elif op == "add_w":
            (r0, r1), (c0, c1) = args
            y[r0:r1, c0:c1] += w[c0:c1]
        else:
            kept.append(y + 0)
    loss = (y * y).sum()
    for i, k in enumerate(kept):
        loss = loss + (k * (i + 1)).sum()
    return loss, y


@given(program=st.lists(step, min_size=1, max_size=6), seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_inplace_programs_match_pytorch(program: list[tuple[Any, ...]], seed: int) -> None:
    rng = np.random.default_rng(seed)
    start, row = rng.normal(size=(ROWS, COLS)), rng.normal(size=COLS)
    x, w = tg.tensor(start, requires_grad=True), tg.tensor(row, requires_grad=True)
    tx, tw = torch.tensor(start, requires_grad=True), torch.tensor(row, requires_grad=True)
    loss, y = run(x, w, program)
    t_loss, ty = run(tx, tw, program)
    loss.backward()
    t_loss.backward()
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(loss.item(), t_loss.item(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    if tw.grad is None:
        assert w.grad is None
    else:
        np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-12, atol=1e-12)
