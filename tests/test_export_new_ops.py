"""ONNX export of issue 21's primitives (trigonometric and special functions, remainders, prod, integer min, gather,
scatter, attention, fold): every converter's file is validated by ``tg.export.onnx`` itself, which runs it in
onnxruntime and in tinygrad_nb.runtime at the example batch and at batch 1 and 7 and compares each output with the
eager model at fp32 tolerances (rtol 1.3e-6, atol 1e-5); what stays unsupported raises ExportError naming the op, the
module path and the line. Ends with a tiny GPT (embedding, causal attention, LayerNorm, GELU MLP) exported end to
end with a dynamic batch."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnx")

import onnx  # noqa: E402

import tinygrad_nb as tg  # noqa: E402
from tinygrad_nb import nn  # noqa: E402
from tinygrad_nb.export import ExportError, onnx as export_onnx  # noqa: E402
from tinygrad_nb.export.validate import ATOL, RTOL  # noqa: E402
from tinygrad_nb.nn import functional as F  # noqa: E402
from tinygrad_nb.runtime import KernelError, load, load_model  # noqa: E402

try:
    import onnxruntime  # noqa: F401
    RUNTIMES: tuple[str, ...] = ("onnxruntime", "tinygrad_nb")
except ImportError:
    RUNTIMES = ("tinygrad_nb",)

F32_TOL = ATOL[np.dtype(np.float32)], RTOL[np.dtype(np.float32)]


class Fn(nn.Module):
    """A module whose forward is ``fn`` (a parameterless model around one op)."""

    def __init__(self, fn: Callable[..., Any]):
        super().__init__()
        self.fn = fn

    def forward(self, *xs: tg.Tensor) -> tg.Tensor:
        return self.fn(*xs)


def line_of(fn: object, text: str) -> int:
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, line in enumerate(lines) if text in line)


def export_and_validate(model: nn.Module, *inputs: tg.Tensor, **kwargs: Any) -> onnx.ModelProto:
    """Export with validation in every installed runtime; check the report covers each runtime at every batch."""
    result = export_onnx(model, inputs, None, runtimes=RUNTIMES, verbose=False, **kwargs)
    report = result.validation
    assert report is not None and report.ok, str(report)
    batch = inputs[0].shape[0]
    assert sorted({(r.runtime, r.batch) for r in report.rows}) == sorted(
        (rt, b) for rt in RUNTIMES for b in {batch, 1, 7})
    return result.model


def op_types(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def floats(*shape: int, seed: int = 0, scale: float = 1.0) -> tg.Tensor:
    return tg.tensor((np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32))


# -- elementwise ----------------------------------------------------------------------------------------------------
# name -> (forward, the ONNX ops it must map to); inputs are mapped into each function's domain inside forward
UNARY: dict[str, tuple[Callable[[tg.Tensor], tg.Tensor], list[str]]] = {
    "sin": (lambda x: (x * 3).sin(), ["Sin"]),
    "cos": (lambda x: (x * 3).cos(), ["Cos"]),
    "tan": (lambda x: x.tan(), ["Tan"]),
    "asin": (lambda x: (x.tanh() * 0.99).asin(), ["Asin"]),
    "acos": (lambda x: (x.tanh() * 0.99).acos(), ["Acos"]),
    "atan": (lambda x: (x * 4).atan(), ["Atan"]),
    "sinh": (lambda x: (x * 3).sinh(), ["Sinh"]),
    "cosh": (lambda x: (x * 3).cosh(), ["Cosh"]),
    "asinh": (lambda x: (x * 10).asinh(), ["Asinh"]),
    "acosh": (lambda x: (x.abs() * 5 + 1.001).acosh(), ["Acosh"]),
    "atanh": (lambda x: (x.tanh() * 0.99).atanh(), ["Atanh"]),
    "erf": (lambda x: (x * 2).erf(), ["Erf"]),
    "erfc": (lambda x: (x * 2).erfc(), ["Erf", "Sub"]),
    "softplus": (lambda x: F.softplus(x * 10), ["Softplus"]),
    "log1p": (lambda x: (x.abs() * 3).log1p(), ["Add", "Log"]),
    "expm1": (lambda x: (x * 3).expm1(), ["Exp", "Sub"]),
    "log2": (lambda x: (x.abs() * 100 + 1e-3).log2(), ["Log", "Div"]),
    "log10": (lambda x: (x.abs() * 100 + 1e-3).log10(), ["Log", "Div"]),
    "exp2": (lambda x: (x * 20).exp2(), ["Pow"]),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_converters_match_eager_in_both_runtimes(name: str) -> None:
    fn, expected = UNARY[name]
    model = export_and_validate(Fn(fn), floats(5, 7, seed=len(name)))
    ops = op_types(model)
    assert all(op in ops for op in expected), ops


@pytest.mark.filterwarnings("ignore:.*encountered in divide:RuntimeWarning")  # y / 0 on the axes, by design
def test_atan2_covers_every_quadrant_the_axes_and_the_origin() -> None:
    values = np.array([-2.0, -0.5, 0.0, 0.5, 3.0], dtype=np.float32)
    y, x = np.meshgrid(values, values, indexing="ij")  # every sign combination, zeros on both axes, and (0, 0)
    y_t, x_t = tg.tensor(y.copy()), tg.tensor(x.copy())
    model = export_and_validate(Fn(lambda a, b: tg.atan2(a, b)), y_t, x_t)
    assert "Atan" in op_types(model)
    # the eager reference is numpy's arctan2, so the validated file agrees with it too
    np.testing.assert_allclose(tg.atan2(y_t, x_t).numpy(), np.arctan2(y, x), rtol=1e-6, atol=1e-7)


def test_remainder_of_floats_takes_the_divisors_sign() -> None:
    a = floats(6, 5, seed=1, scale=7.0)
    b = tg.tensor(np.array([[1.5], [-1.5], [2.25], [-0.75], [3.0], [-4.0]], dtype=np.float32))
    model = export_and_validate(Fn(lambda x, d: tg.remainder(x, d)), a, b)
    assert "Mod" in op_types(model)
    mods = [n for n in model.graph.node if n.op_type == "Mod"]
    assert [a.i for n in mods for a in n.attribute if a.name == "fmod"] == [1]  # ONNX refuses fmod=0 for floats


def test_integer_remainder_and_fmod_map_to_mod() -> None:
    x = tg.tensor(np.random.default_rng(2).integers(-50, 50, size=(4, 6)))
    for fn, fmod in ((lambda t: tg.remainder(t, 7), 0), (lambda t: tg.remainder(t, -7), 0),
                     (lambda t: tg.fmod(t, 7), 1), (lambda t: tg.fmod(t, -7), 1)):
        model = export_and_validate(Fn(fn), x)
        (node,) = model.graph.node
        assert node.op_type == "Mod" and node.attribute[0].i == fmod


def test_float_fmod_maps_to_mod() -> None:
    model = export_and_validate(Fn(lambda x: tg.fmod(x * 5, -1.7)), floats(4, 6, seed=3))
    assert "Mod" in op_types(model)


# -- reductions, gather, scatter --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim, keepdim", [(1, False), (1, True), (None, False)])
def test_prod_maps_to_reduce_prod(dim: int | None, keepdim: bool) -> None:
    fn = (lambda x: x.prod(dim, keepdim=keepdim)) if dim is not None else (lambda x: x.prod())
    x = tg.tensor((np.random.default_rng(4).uniform(0.5, 1.5, size=(4, 3, 5))).astype(np.float32))
    model = export_and_validate(Fn(fn), x)
    assert op_types(model) == ["ReduceProd"]


def test_integer_min_maps_to_reduce_min() -> None:
    x = tg.tensor(np.random.default_rng(5).integers(-100, 100, size=(5, 6)))
    assert op_types(export_and_validate(Fn(lambda t: t.amin(1)), x)) == ["ReduceMin"]
    assert op_types(export_and_validate(Fn(lambda t: t.amin(1, keepdim=True)), x)) == ["ReduceMin"]
    assert op_types(export_and_validate(Fn(lambda t: t.min()), x)) == ["ReduceMin"]


def test_gather_maps_to_gather_elements() -> None:
    x = floats(5, 6, seed=6)
    index = tg.tensor(np.random.default_rng(6).integers(0, 6, size=(5, 3)))
    model = export_and_validate(Fn(lambda a, i: tg.gather(a, 1, i)), x, index)
    assert op_types(model) == ["GatherElements"]


def test_gather_with_an_index_made_inside_forward_follows_the_batch() -> None:
    # zeros(x.shape[0], 2) is folded to one broadcasting row by the tracer: the converter expands it back
    model = export_and_validate(Fn(lambda a: tg.gather(a, 1, tg.zeros(a.shape[0], 2, dtype=tg.int64) + 3)),
                                floats(5, 6, seed=7))
    assert op_types(model)[-2:] == ["Expand", "GatherElements"]


SCATTERS = [(None, True)] + [(r, inc) for r in ("sum", "prod", "amax", "amin", "mean") for inc in (True, False)]


@pytest.mark.parametrize("reduce, include_self", SCATTERS)
def test_scatter_maps_to_scatter_elements(reduce: str | None, include_self: bool) -> None:
    x = floats(5, 6, seed=8)
    src = floats(5, 4, seed=9)
    # repeated indices in every row, so the reductions really combine several values
    index = tg.tensor(np.random.default_rng(8).integers(0, 3, size=(5, 4)))
    if reduce is None:
        fn = lambda a, i, s: tg.scatter(a, 1, i, s)  # noqa: E731
        index = tg.tensor(np.argsort(np.random.default_rng(8).random((5, 6)), axis=1)[:, :4])  # no repeats
    else:
        fn = lambda a, i, s: tg.scatter_reduce(a, 1, i, s, reduce, include_self=include_self)  # noqa: E731
    model = export_and_validate(Fn(fn), x, index, src)
    reductions = [next((a.s.decode() for a in n.attribute if a.name == "reduction"), "none")
                  for n in model.graph.node if n.op_type == "ScatterElements"]
    expected = {None: "none", "sum": "add", "prod": "mul", "amax": "max", "amin": "min", "mean": "add"}[reduce]
    assert expected in reductions


@pytest.mark.parametrize("opset", [13, 16, 17])
def test_older_opsets_export_what_they_can_say(opset: int) -> None:
    # ScatterElements has no reduction attribute before opset 16; reductions take axes as an attribute before 18
    x, src = floats(5, 6, seed=30), floats(5, 2, seed=31)
    index = tg.tensor(np.argsort(np.random.default_rng(30).random((5, 6)), axis=1)[:, :2])
    export_and_validate(Fn(lambda a, i, s: tg.scatter(a, 1, i, s).prod(1)), x, index, src, opset=opset)
    if opset >= 16:
        export_and_validate(Fn(lambda a, i, s: tg.scatter_reduce(a, 1, i, s, "sum")), x, index, src, opset=opset)
    else:
        with pytest.raises(ExportError, match=r"scatter_reduce 'sum' needs ONNX opset 16"):
            export_onnx(Fn(lambda a, i, s: tg.scatter_add(a, 1, i, s)), (x, index, src), None, validate=False,
                        opset=opset)


def test_scatter_of_a_value_and_of_a_larger_src() -> None:
    x = floats(5, 6, seed=10)
    index = tg.tensor(np.argsort(np.random.default_rng(10).random((5, 6)), axis=1)[:, :2])
    export_and_validate(Fn(lambda a, i: tg.scatter(a, 1, i, value=2.5)), x, index)
    export_and_validate(Fn(lambda a, i, s: tg.scatter(a, 1, i, s)), x, index, floats(5, 4, seed=11))


# -- attention and fold -------------------------------------------------------------------------------------------
def qkv(seed: int = 12) -> tuple[tg.Tensor, tg.Tensor, tg.Tensor]:
    return floats(3, 2, 5, 4, seed=seed), floats(3, 2, 6, 4, seed=seed + 1), floats(3, 2, 6, 7, seed=seed + 2)


def test_attention_decomposes_into_standard_ops() -> None:
    q, k, v = qkv()
    model = export_and_validate(Fn(lambda a, b, c: F.scaled_dot_product_attention(a, b, c)), q, k, v)
    assert op_types(model) == ["Transpose", "MatMul", "Mul", "Softmax", "MatMul"]
    model = export_and_validate(Fn(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, scale=0.3)), q, k, v)
    scale = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer]
    assert any(s.shape == () and np.isclose(s, 0.3) for s in scale)


def test_causal_attention_adds_a_constant_mask() -> None:
    q = floats(3, 2, 5, 4, seed=13)
    model = export_and_validate(Fn(lambda a: F.scaled_dot_product_attention(a, a, a, is_causal=True)), q)
    assert op_types(model) == ["Transpose", "MatMul", "Mul", "Add", "Softmax", "MatMul"]
    (mask,) = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.dims == [5, 5]]
    np.testing.assert_array_equal(np.isneginf(mask), ~np.tril(np.ones((5, 5), bool)))


def test_attention_with_a_query_whose_keys_are_all_masked_gives_zeros_not_nan() -> None:
    q, k, v = qkv(14)
    allowed = np.ones((5, 6), bool)
    allowed[2] = False  # query 2 may attend to nothing: eager (as PyTorch) gives 0, a plain Softmax NaN
    allowed[:, 0] = False
    mask = tg.tensor(allowed)
    fn = Fn(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=mask))
    model = export_and_validate(fn, q, k, v)
    assert "IsNaN" not in op_types(model)  # a constant mask: the dead rows are zeroed by a constant row mask
    sess = load_model(model)
    out = sess.run([q.numpy(), k.numpy(), v.numpy()])["output"]
    assert np.isfinite(out).all() and (out[:, :, 2] == 0).all()


def test_attention_with_a_float_mask_input() -> None:
    q, k, v = qkv(15)
    bias = floats(3, 1, 5, 6, seed=18)
    model = export_and_validate(Fn(lambda a, b, c, m: F.scaled_dot_product_attention(a, b, c, attn_mask=m)),
                                q, k, v, bias)
    assert op_types(model)[-4:] == ["Softmax", "IsNaN", "Where", "MatMul"]  # a mask from the graph: runtime guard


def test_fold_maps_to_col2im() -> None:
    cols = floats(2, 3 * 3 * 2, 9, seed=19)
    model = export_and_validate(Fn(lambda c: F.fold(c, (5, 6), (3, 2), stride=(2, 3), padding=1)), cols)
    assert op_types(model) == ["Col2Im"]
    x = floats(2, 3, 6, 6, seed=20)
    model = export_and_validate(Fn(lambda t: F.fold(F.unfold(t, 3, padding=1, stride=2), (6, 6), 3, padding=1,
                                                     stride=2)), x)
    assert op_types(model) == ["Conv", "Reshape", "Col2Im"]


# -- what stays unsupported ------------------------------------------------------------------------------------------
class Erfinv(nn.Module):
    def forward(self, x: tg.Tensor) -> tg.Tensor:
        return (x.tanh() * 0.5).erfinv()


def test_erfinv_is_refused_with_op_module_and_line() -> None:
    model = nn.Sequential(nn.Linear(3, 3), Erfinv())
    with pytest.raises(ExportError) as info:
        export_onnx(model, tg.randn(4, 3), None, validate=False)
    e = info.value
    assert e.op == "Erfinv" and e.module == "model[1]"
    assert e.location == (__file__, line_of(Erfinv.forward, ".erfinv()"))
    assert "cannot export Erfinv: ONNX has no inverse error function" in str(e)


class DropoutAttention(nn.Module):
    def forward(self, x: tg.Tensor) -> tg.Tensor:
        return F.scaled_dot_product_attention(x, x, x, dropout_p=0.5)


def test_attention_dropout_is_refused_with_the_reason() -> None:
    # the random mask differs between the two traces; the error says why, not "the trace depends on the data"
    with pytest.raises(ExportError) as info:
        export_onnx(nn.Sequential(DropoutAttention()), floats(2, 3, 4, seed=21), None, validate=False)
    e = info.value
    assert e.op == "ScaledDotProductAttention" and e.module == "model[0]"
    assert e.location == (__file__, line_of(DropoutAttention.forward, "dropout_p=0.5"))
    assert "attention dropout is active (dropout_p > 0): pass dropout_p=0.0 at inference" in str(e)


def test_fold_before_opset_18_is_refused() -> None:
    with pytest.raises(ExportError, match=r"cannot export Fold: fold maps to ONNX Col2Im, which needs opset 18 "
                                          r"\(the export asked for 17\)"):
        export_onnx(Fn(lambda c: F.fold(c, (4, 5), (2, 2))), floats(2, 12, 12), None, validate=False, opset=17)


def test_scatter_max_before_opset_18_and_integer_mean_are_refused() -> None:
    x, src = floats(4, 5), floats(4, 2, seed=1)
    index = tg.tensor(np.zeros((4, 2), dtype=np.int64))
    with pytest.raises(ExportError, match=r"scatter_reduce 'amax' needs ONNX opset 18"):
        export_onnx(Fn(lambda a, i, s: tg.scatter_reduce(a, 1, i, s, "amax")), (x, index, src), None,
                    validate=False, opset=17)
    xi = tg.tensor(np.arange(20).reshape(4, 5))
    si = tg.tensor(np.ones((4, 2), dtype=np.int64))
    with pytest.raises(ExportError, match=r"scatter_reduce 'mean' of integers rounds down"):
        export_onnx(Fn(lambda a, i, s: tg.scatter_reduce(a, 1, i, s, "mean")), (xi, index, si), None,
                    validate=False)


# -- runtime kernels' own errors ---------------------------------------------------------------------------------
def _one_node_model(op_type: str, inputs: list[tuple[str, int, list[int]]], **attrs: Any) -> onnx.ModelProto:
    from onnx import TensorProto, helper  # noqa: PLC0415

    node = helper.make_node(op_type, [n for n, _, _ in inputs], ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                              [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_runtime_mod_refuses_fmod_0_on_floats_and_integer_division_by_zero() -> None:
    from onnx import TensorProto  # noqa: PLC0415

    sess = load_model(_one_node_model("Mod", [("a", TensorProto.FLOAT, [2]), ("b", TensorProto.FLOAT, [2])]))
    with pytest.raises(KernelError, match="fmod=0 is only defined for integer types"):
        sess.run([np.ones(2, np.float32), np.ones(2, np.float32)])
    sess = load_model(_one_node_model("Mod", [("a", TensorProto.INT64, [2]), ("b", TensorProto.INT64, [2])]))
    np.testing.assert_array_equal(sess.run([np.array([-7, 7]), np.array([3, -3])])["y"], [2, -2])  # Python's %
    with pytest.raises(KernelError, match="integer division by zero"):
        sess.run([np.array([1, 2]), np.array([1, 0])])


def test_runtime_scatter_elements_names_an_index_out_of_range() -> None:
    from onnx import TensorProto  # noqa: PLC0415

    sess = load_model(_one_node_model("ScatterElements", [("d", TensorProto.FLOAT, [2, 3]),
                                                           ("i", TensorProto.INT64, [2, 1]),
                                                           ("u", TensorProto.FLOAT, [2, 1])], axis=1))
    with pytest.raises(IndexError, match=r"ScatterElements \(node ''\): index 3 is out of range for axis 1 of size 3"):
        sess.run([np.zeros((2, 3), np.float32), np.array([[0], [3]]), np.ones((2, 1), np.float32)])
    out = sess.run([np.zeros((2, 3), np.float32), np.array([[0], [-1]]), np.ones((2, 1), np.float32)])["y"]
    np.testing.assert_array_equal(out, [[1, 0, 0], [0, 0, 1]])  # negative indices count from the end


# -- library attention layers -----------------------------------------------------------------------------------
class SelfAttention(nn.Module):
    def __init__(self, causal: bool):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.causal = causal

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        mask = tg.tensor(~np.tril(np.ones((x.shape[1], x.shape[1]), bool))) if self.causal else None
        return self.attn(x, x, x, attn_mask=mask, need_weights=False)[0]


@pytest.mark.parametrize("name", ["mha", "mha_causal", "encoder_layer"])
def test_library_attention_layers_export_in_eval(name: str) -> None:
    tg.manual_seed(1)
    model = {"mha": lambda: SelfAttention(False), "mha_causal": lambda: SelfAttention(True),
             "encoder_layer": lambda: nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)}[name]()
    model.train()  # export switches to eval (dropout off) and back
    export_and_validate(model, floats(3, 5, 8, seed=32))
    assert model.training


# -- end to end: a tiny GPT ----------------------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.width, self.heads = width, heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        batch, time_, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(width, dim=2)
        q, k, v = (t.reshape(batch, time_, self.heads, width // self.heads).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, time_, width))
        return x + self.mlp(self.norm2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int = 13, context: int = 8, width: int = 16, heads: int = 2, layers: int = 2):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, width), nn.Embedding(context, width)
        self.blocks = nn.Sequential(*[Block(width, heads) for _ in range(layers)])
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, vocab)

    def forward(self, idx: tg.Tensor) -> tg.Tensor:
        x = self.tokens(idx) + self.positions(tg.arange(idx.shape[1]))
        return self.head(self.norm(self.blocks(x)))


def test_tiny_gpt_exports_and_validates_in_both_runtimes(tmp_path: Path) -> None:
    tg.manual_seed(0)
    model = TinyGPT()
    tokens = np.random.default_rng(22).integers(0, 13, size=(3, 8))
    path = tmp_path / "gpt.onnx"
    result = export_onnx(model, tg.tensor(tokens), path, runtimes=RUNTIMES, verbose=False)
    report = result.validation
    assert report is not None and report.ok
    assert sorted({(r.runtime, r.batch) for r in report.rows}) == sorted((rt, b) for rt in RUNTIMES for b in (1, 3, 7))
    ops = op_types(result.model)
    assert ops.count("Softmax") == 2 and ops.count("Erf") == 2  # one attention and one exact GELU per block
    assert result.model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    # the file on disk, loaded fresh, at a batch size validation did not use
    batch = np.random.default_rng(23).integers(0, 13, size=(5, 8))
    with tg.no_grad():
        expected = model(tg.tensor(batch)).numpy()
    atol, rtol = F32_TOL
    got = load(path)(batch)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)
    if "onnxruntime" in RUNTIMES:
        import onnxruntime as ort  # noqa: PLC0415

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (ort_out,) = session.run(None, {"input": batch})
        np.testing.assert_allclose(ort_out, expected, rtol=rtol, atol=atol)
