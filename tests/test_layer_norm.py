"""The LayerNorm primitive (tinygrad_nb.ops.LayerNorm): values against numpy, gradients against finite differences on
every device, against PyTorch, 16-bit inputs, one graph node, errors, and its ONNX export at both opset paths."""
from __future__ import annotations

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb import dispatch, nn, ops
from tinygrad_nb.nn import functional as F

from helpers import t64, to_np

DEVICES = ["cpu", "cpu:sim"]


def _reference(x: np.ndarray, dims: int, w: np.ndarray | None, b: np.ndarray | None, eps: float) -> np.ndarray:
    axes = tuple(range(x.ndim - dims, x.ndim))
    out = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    return out * (1 if w is None else w) + (0 if b is None else b)


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("affine", ["both", "weight only", "none"])
@pytest.mark.parametrize("shape,dims", [((5, 7), 1), ((2, 3, 4), 2), ((3, 1), 1)])
def test_values_and_gradients(dev: str, affine: str, shape: tuple[int, ...], dims: int) -> None:
    rng = np.random.default_rng(len(shape) * 10 + dims)
    x = rng.standard_normal(shape) * 3 + 1
    w = rng.uniform(0.5, 2, shape[-dims:]) if affine != "none" else None
    b = rng.standard_normal(shape[-dims:]) if affine == "both" else None
    args = [t64(x, dev)] + [t64(a, dev) for a in (w, b) if a is not None]

    def f(x: tg.Tensor, *params: tg.Tensor) -> tg.Tensor:
        weight = params[0] if params else None
        bias = params[1] if len(params) > 1 else None
        return F.layer_norm(x, shape[-dims:], weight, bias, eps=1e-3)

    np.testing.assert_allclose(to_np(f(*args)), _reference(x, dims, w, b, 1e-3), rtol=1e-12, atol=1e-12)
    assert tg.gradcheck(f, [a.requires_grad_() for a in args])


def test_matches_torch_forward_and_backward() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, w, b, g = (rng.standard_normal(s).astype(np.float32) for s in ((4, 6, 16), (16,), (16,), (4, 6, 16)))
    ours = [tg.tensor(a, requires_grad=True) for a in (x, w, b)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    out = F.layer_norm(ours[0], 16, ours[1], ours[2])
    ref = torch.nn.functional.layer_norm(theirs[0], (16,), theirs[1], theirs[2])
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-5, atol=2e-6)
    out.backward(tg.tensor(g))
    ref.backward(torch.tensor(g))
    for mine, other in zip(ours, theirs):
        np.testing.assert_allclose(mine.grad.numpy(), other.grad.numpy(), rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("low", ["float16", "bfloat16"])
def test_16_bit_input_is_normalised_in_float32_and_rounded_once(low: str) -> None:
    dtype = getattr(tg, low)
    rng = np.random.default_rng(5)
    x = tg.tensor(rng.standard_normal((6, 32)).astype(np.float32) * 4 + 50).cast(dtype)
    w = tg.tensor(rng.uniform(0.5, 2, 32).astype(np.float32)).cast(dtype)
    out = F.layer_norm(x, 32, w)
    assert out.dtype == dtype
    in_float32 = F.layer_norm(x.cast(tg.float32), 32, w.cast(tg.float32)).cast(dtype)
    assert out.numpy().tobytes() == in_float32.numpy().tobytes()


def test_one_graph_node_with_its_name() -> None:
    seen: list[str] = []

    class Names:
        def op_begin(self, event: dispatch.OpEvent) -> None:
            seen.append(event.op)

        def op_end(self, event: dispatch.OpEvent) -> None:
            pass

    x = tg.randn(3, 8, requires_grad=True)
    norm = nn.LayerNorm(8)
    handle = dispatch.add_observer(Names())
    try:
        norm(x)
    finally:
        handle.remove()
    assert seen == ["LayerNorm"]
    assert ops.LayerNorm in ops.PRIMITIVES


def test_shape_errors_name_the_argument() -> None:
    x = tg.randn(2, 3, 4)
    with pytest.raises(RuntimeError, match=r"layer_norm: weight of shape \(3,\) does not match normalized_shape "
                                           r"\(4,\)"):
        F.layer_norm(x, 4, tg.ones(3))
    with pytest.raises(ValueError, match=r"layer_norm: bias of shape \(4,\) does not match normalized_shape "
                                         r"\(3, 4\)"):
        F.layer_norm(x, (3, 4), None, tg.zeros(4))


@pytest.mark.parametrize("opset", [13, 17])
def test_export_both_opset_paths(tmp_path, opset: int) -> None:
    onnx = pytest.importorskip("onnx")
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.ReLU(), nn.LayerNorm(8, elementwise_affine=False))
    x = tg.randn(4, 6)
    path = tmp_path / "ln.onnx"
    tg.export.onnx(model, (x,), path, opset=opset, verbose=False)
    kinds = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert ("LayerNormalization" in kinds) == (opset >= 17)
    session = tg.runtime.load(path)
    np.testing.assert_allclose(session(x.numpy()), model(x).numpy(), rtol=1e-5, atol=1e-6)
