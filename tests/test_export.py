"""tinygrad_nb.export: tracing through the dispatch observer, the ONNX writer, errors with locations, data-dependence
detection, validation, and every nn layer exported and checked against the eager model."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

import onnx  # noqa: E402

import tinygrad_nb as tg  # noqa: E402
from tinygrad_nb import nn  # noqa: E402
from tinygrad_nb.export import (ExportError, ExportValidationError, mapping_table, onnx as export_onnx,  # noqa: E402
                                weights_hash)
from tinygrad_nb.export.validate import RTOL, ATOL, check_file, compare, ulp_distance, validate  # noqa: E402
from tinygrad_nb.nn import functional as F  # noqa: E402

try:
    import onnxruntime  # noqa: F401
    RUNTIMES: tuple[str, ...] = ("onnxruntime", "tinygrad_nb")
except ImportError:
    RUNTIMES = ("tinygrad_nb",)

ROOT = Path(__file__).resolve().parent.parent


def line_of(fn: object, text: str) -> int:
    """The file line number of the first source line of ``fn`` containing ``text``."""
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, line in enumerate(lines) if text in line)


# -- models covering every layer --------------------------------------------------------------------------------------
class Unrolled(nn.Module):
    """A recurrent cell unrolled over a fixed number of steps, starting from hx=None (zeros made inside forward)."""

    def __init__(self, cell: nn.Module, steps: int):
        super().__init__()
        self.cell = cell
        self.steps = steps
        self.head = nn.Linear(cell.hidden_size, 3)

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        h = None
        for t in range(self.steps):
            h = self.cell(x[:, t], h)
        return self.head(h).log_softmax(-1)


class TokenModel(nn.Module):
    def __init__(self, padding_idx: int | None = None):
        super().__init__()
        self.embed = nn.Embedding(20, 6, padding_idx=padding_idx)
        self.norm = nn.LayerNorm(6)
        self.fc = nn.Linear(6, 4)

    def forward(self, tokens: tg.Tensor) -> tg.Tensor:
        return self.fc(self.norm(self.embed(tokens)).mean(1)).softmax(-1)


class SmallCNN(nn.Module):
    def __init__(self, **conv: object):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, **conv)
        self.pool = nn.MaxPool2d(2, stride=2, padding=1)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(4 * 5 * 5, 5)

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        x = self.pool(self.conv(x).relu())
        return self.fc(self.drop(x.flatten(1)))


class FunctionalConv(nn.Module):
    """F.conv2d / F.max_pool2d called directly: the im2col (Unfold) path, exported as a one-hot Conv."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(tg.randn(3, 2, 3, 3) * 0.3)

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        return F.max_pool2d(F.conv2d(x, self.weight, padding=1), 2).flatten(1)


class BatchNormSeq(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        return self.bn(x).sigmoid()


def mlp(act: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Linear(12, 16), act, nn.Linear(16, 8), nn.Identity(), nn.Linear(8, 5), nn.LogSoftmax(1))


def trained_stats(model: nn.Module, x: tg.Tensor) -> nn.Module:
    """Run a few training forwards so batch norm's running statistics are not the initial 0/1."""
    model.train()
    for _ in range(3):
        model(x * 2 + 0.5)
    return model.eval()


LAYER_CASES = {
    "linear_relu": lambda: (mlp(nn.ReLU()), tg.randn(6, 12)),
    "gelu": lambda: (mlp(nn.GELU()), tg.randn(6, 12)),
    "gelu_tanh": lambda: (mlp(nn.GELU(approximate="tanh")), tg.randn(6, 12)),
    "tanh": lambda: (mlp(nn.Tanh()), tg.randn(6, 12)),
    "sigmoid_softmax": lambda: (nn.Sequential(nn.Linear(12, 7), nn.Sigmoid(), nn.Softmax(dim=1)), tg.randn(6, 12)),
    "conv_pad1": lambda: (SmallCNN(padding=1), tg.randn(3, 2, 8, 8)),
    "conv_same": lambda: (SmallCNN(padding="same"), tg.randn(3, 2, 8, 8)),
    "conv_stride_groups": lambda: (nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), nn.ReLU(),
                                                 nn.Flatten()), tg.randn(3, 4, 9, 9)),
    "conv_dilation": lambda: (nn.Sequential(nn.Conv2d(2, 3, 3, dilation=2, bias=False), nn.Flatten()),
                              tg.randn(3, 2, 9, 9)),
    "functional_conv_pool": lambda: (FunctionalConv(), tg.randn(3, 2, 6, 6)),
    "batchnorm1d_2d": lambda: (trained_stats(nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4)), tg.randn(8, 5)),
                               tg.randn(6, 5)),
    "batchnorm1d_3d": lambda: (trained_stats(BatchNormSeq(), tg.randn(8, 3, 4)), tg.randn(6, 3, 4)),
    "embedding_layernorm": lambda: (TokenModel(), tg.randint(0, 20, (6, 5))),
    "embedding_padding_idx": lambda: (TokenModel(padding_idx=0), tg.randint(0, 20, (6, 5))),
    "rnncell_tanh": lambda: (Unrolled(nn.RNNCell(4, 8), 5), tg.randn(6, 5, 4)),
    "rnncell_relu": lambda: (Unrolled(nn.RNNCell(4, 8, nonlinearity="relu"), 3), tg.randn(6, 3, 4)),
    "grucell": lambda: (Unrolled(nn.GRUCell(4, 8), 4), tg.randn(6, 4, 4)),
}


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_every_layer_exports_and_validates(name: str, tmp_path: Path) -> None:
    model, x = LAYER_CASES[name]()
    path = tmp_path / f"{name}.onnx"
    result = export_onnx(model, x, path, runtimes=RUNTIMES, verbose=False)
    report = result.validation
    assert report is not None and report.ok
    # every runtime at the example batch and at batch 1 and 7, one row per output
    assert sorted({(r.runtime, r.batch) for r in report.rows}) == sorted(
        (rt, b) for rt in RUNTIMES for b in {x.shape[0], 1, 7})
    for row in report.rows:
        assert row.max_abs <= ATOL[np.dtype(np.float32)] + RTOL[np.dtype(np.float32)] * 10
    # the file on disk is the validated model, byte for byte
    assert path.read_bytes() == result.model.SerializeToString()
    # and the batch dimension is symbolic
    dims = result.model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"


def test_layers_map_to_standard_ops() -> None:
    model, x = LAYER_CASES["conv_pad1"]()
    ops = [n.op_type for n in export_onnx(model, x, None, validate=False).model.graph.node]
    assert ops == ["Conv", "Relu", "MaxPool", "Reshape", "Gemm"]  # dropout (eval) leaves nothing behind
    model, x = LAYER_CASES["linear_relu"]()
    ops = [n.op_type for n in export_onnx(model, x, None, validate=False).model.graph.node]
    assert ops == ["Gemm", "Relu", "Gemm", "Gemm", "LogSoftmax"]


def test_parameters_are_initializers_and_constants_fold() -> None:
    model, x = LAYER_CASES["batchnorm1d_2d"]()
    proto = export_onnx(model, x, None, validate=False).model
    names = {init.name for init in proto.graph.initializer}
    assert {"0.weight", "0.bias", "1.weight", "1.bias"} <= names
    # batch norm in eval: (x - mean) / sqrt(var + eps) * w + b with the statistics folded into initializers
    assert [n.op_type for n in proto.graph.node] == ["Gemm", "Sub", "Div", "Mul", "Add"]
    bn = model[1]
    folded = {init.name: onnx.numpy_helper.to_array(init) for init in proto.graph.initializer}
    sqrt_var = next(v for v in folded.values() if v.shape == (1, 4) and np.allclose(
        v, np.sqrt(bn.running_var.numpy() + 1e-5)))
    assert sqrt_var.dtype == np.float32


def test_metadata_records_producer_format_hash_and_class() -> None:
    model, x = LAYER_CASES["linear_relu"]()
    proto = export_onnx(model, x, None, validate=False).model
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["tinygrad_nb.producer"] == f"tinygrad_nb {tg.__version__}"
    assert meta["tinygrad_nb.export_format_version"] == "1"
    assert meta["tinygrad_nb.model_class"] == "tinygrad_nb.nn.container.Sequential"
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    assert meta["tinygrad_nb.weights_hash"] == weights_hash(initializers)
    assert re.fullmatch(r"xxh3-128:[0-9a-f]{32}", meta["tinygrad_nb.weights_hash"])
    assert proto.producer_name == "tinygrad_nb" and proto.opset_import[0].version == 18


def test_export_is_deterministic_byte_for_byte(tmp_path: Path) -> None:
    model, x = LAYER_CASES["grucell"]()
    a = export_onnx(model, x, tmp_path / "a.onnx", validate=False).model.SerializeToString()
    b = export_onnx(model, x, tmp_path / "b.onnx", validate=False).model.SerializeToString()
    assert a == b == (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_training_mode_is_restored_and_export_uses_eval() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.9))
    model.train()
    result = export_onnx(model, tg.randn(5, 4), None, runtimes=("tinygrad_nb",), verbose=False)
    assert model.training and model[1].training
    assert [n.op_type for n in result.model.graph.node] == ["Gemm"]


def test_multiple_inputs_and_outputs_with_names() -> None:
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 2)
            self.b = nn.Linear(4, 2)

        def forward(self, x: tg.Tensor, y: tg.Tensor) -> tuple[tg.Tensor, tg.Tensor]:
            h = self.a(x) + self.b(y)
            return h.relu(), h.sigmoid()

    result = export_onnx(TwoHeads(), (tg.randn(5, 3), tg.randn(5, 4)), None, input_names=["x", "y"],
                         output_names=["relu", "prob"], runtimes=RUNTIMES, verbose=False)
    graph = result.model.graph
    assert [i.name for i in graph.input] == ["x", "y"] and [o.name for o in graph.output] == ["relu", "prob"]
    assert {r.output for r in result.validation.rows} == {"relu", "prob"}


def test_fixed_batch_export_keeps_static_shapes() -> None:
    model, x = LAYER_CASES["linear_relu"]()
    result = export_onnx(model, x, None, dynamic_batch=False, runtimes=RUNTIMES, verbose=False)
    assert result.model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 6
    assert {r.batch for r in result.validation.rows} == {6}


def test_verbose_prints_the_validation_table(capsys: pytest.CaptureFixture[str]) -> None:
    model, x = LAYER_CASES["tanh"]()
    export_onnx(model, x, None, runtimes=("tinygrad_nb",))
    out = capsys.readouterr().out
    assert "checker: onnx.checker full_check + strict shape inference passed" in out
    assert re.search(r"^runtime\s+batch\s+output\s+max abs\s+max rel\s+max ULP\s+ok$", out, re.M)
    assert len(re.findall(r"^tinygrad_nb\s+(6|1|7)\s+output\s", out, re.M)) == 3


# -- errors name the op, the module path and the line -----------------------------------------------------------------
class AllReduce(nn.Module):
    def forward(self, x: tg.Tensor) -> tg.Tensor:
        return x.all(dim=1)  # no ONNX mapping: All, of the NoGradOp family


def test_unsupported_op_names_op_module_and_line() -> None:
    model = nn.Sequential(nn.Linear(3, 3), AllReduce())
    with pytest.raises(ExportError) as info:
        export_onnx(model, tg.randn(4, 3), None, validate=False)
    e = info.value
    assert e.op == "All" and e.module == "model[1]"  # the no-grad op by its own name
    assert e.location == (__file__, line_of(AllReduce.forward, "x.all(dim=1)"))
    assert "NoGradOp 'all' has no ONNX mapping" in str(e)
    assert f"in model[1] at {__file__}:{e.location[1]}:  return x.all(dim=1)" in str(e)


class Loss(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        return F.cross_entropy(self.fc(x), tg.tensor([0, 1, 2, 3]))


def test_training_loss_is_refused_with_location() -> None:
    with pytest.raises(ExportError, match=r"cannot export CrossEntropy: cross_entropy is a training loss") as info:
        export_onnx(Loss(), tg.randn(4, 3), None, validate=False, dynamic_batch=False)
    assert info.value.location == (__file__, line_of(Loss.forward, "F.cross_entropy"))


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3, bias=False)

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        h = self.fc(x)
        if h.sum() > 0:  # Python control flow on a tensor value
            return h.relu()
        return h.tanh()


def test_python_if_on_a_tensor_value_is_detected() -> None:
    model = Branchy()
    x = tg.randn(4, 3)
    if model.fc(x).sum().item() <= 0:
        x = -x
    with pytest.raises(ExportError, match=r"different path for different inputs.*Python control flow") as info:
        export_onnx(model, x, None, validate=False, dynamic_batch=False)
    assert info.value.module == "model"
    assert info.value.location[0] == __file__
    assert info.value.location[1] in (line_of(Branchy.forward, "h.relu()"), line_of(Branchy.forward, "h.tanh()"))


class ItemScale(nn.Module):
    def forward(self, x: tg.Tensor) -> tg.Tensor:
        return x * float(x.mean())  # a value read out of the graph


def test_value_read_with_item_is_detected() -> None:
    with pytest.raises(ExportError, match=r"depends on the input values or the batch size") as info:
        export_onnx(ItemScale(), tg.randn(4, 3), None, validate=False, dynamic_batch=False)
    assert info.value.op == "Mul" and info.value.location == (__file__, line_of(ItemScale.forward, "float(x.mean())"))


class BatchSwitch(nn.Module):
    def forward(self, x: tg.Tensor) -> tg.Tensor:
        return x.relu() if x.shape[0] < 5 else x.tanh()


def test_batch_size_dependence_is_told_apart_from_value_dependence() -> None:
    with pytest.raises(ExportError, match=r"depends on the batch size .*Export with dynamic_batch=False"):
        export_onnx(BatchSwitch(), tg.randn(4, 3), None, validate=False)
    result = export_onnx(BatchSwitch(), tg.randn(4, 3), None, dynamic_batch=False, runtimes=RUNTIMES,
                         verbose=False)
    assert result.validation.ok


class InPlace(nn.Module):
    def forward(self, x: tg.Tensor) -> tg.Tensor:
        y = x.relu()
        y[:, 0] = 1.0  # not traced under no_grad
        return y * 2


def test_in_place_write_after_compute_is_refused() -> None:
    with pytest.raises(ExportError, match="modified in place") as info:
        export_onnx(InPlace(), tg.randn(4, 3), None, validate=False)
    assert info.value.location == (__file__, line_of(InPlace.forward, "return y * 2"))


def test_unsupported_opset_is_refused() -> None:
    model, x = LAYER_CASES["tanh"]()
    with pytest.raises(ExportError, match=r"opset 9 is not supported: the exporter writes opsets 13\.\.21"):
        export_onnx(model, x, None, opset=9, validate=False)


def test_example_inputs_must_be_tensors() -> None:
    with pytest.raises(TypeError, match="example input 0 is a list"):
        export_onnx(nn.Linear(2, 2), [[1.0, 2.0]], None)


# -- validation -----------------------------------------------------------------------------------------------------
def test_validation_catches_a_file_whose_outputs_differ() -> None:
    model, x = LAYER_CASES["linear_relu"]()
    proto = export_onnx(model, x, None, validate=False).model
    bias = next(i for i in proto.graph.initializer if i.name == "0.bias")
    tampered = onnx.numpy_helper.to_array(bias) + np.float32(1e-3)
    bias.CopyFrom(onnx.numpy_helper.from_array(tampered.astype(np.float32), "0.bias"))
    with pytest.raises(ExportValidationError, match=r"tinygrad_nb refused the exported file .*the weights do not "
                                                    r"match the hash recorded at export"):
        validate(proto, model, [x.numpy()], ["input"], ["output"], batches=[6], dynamic=[True],
                 runtimes=("tinygrad_nb",))
    del proto.metadata_props[:]  # without the hash, the comparison with the eager model catches it
    with pytest.raises(ExportValidationError, match=r"differ from the eager model's") as info:
        validate(proto, model, [x.numpy()], ["input"], ["output"], batches=[6], dynamic=[True],
                 runtimes=("tinygrad_nb",))
    assert re.search(r"^tinygrad_nb\s+6\s+output\s.*NO tol$", str(info.value), re.M)


def test_checker_refusal_is_reported() -> None:
    model, x = LAYER_CASES["tanh"]()
    proto = export_onnx(model, x, None, validate=False).model
    proto.graph.node[0].input[0] = "no_such_value"
    with pytest.raises(ExportValidationError, match="onnx.checker refused the exported file"):
        check_file(proto)


def test_compare_reports_abs_rel_and_ulp() -> None:
    ref = np.array([1.0, -2.0, 0.0], np.float32)
    got = np.array([np.nextafter(np.float32(1), np.float32(2)), -2.0, 0.0], np.float32)
    max_abs, max_rel, ulp, ok, _ = compare(got, ref)
    assert (max_abs, ulp, ok) == (float(np.float32(2) ** -23), 1, True)
    assert max_rel == pytest.approx(2.0 ** -23)
    assert ulp_distance(np.array([-0.0], np.float32), np.array([0.0], np.float32)).tolist() == [0]
    assert ulp_distance(np.array([-1e-45], np.float32), np.array([1e-45], np.float32)).tolist() == [2]
    assert compare(got[:2], ref)[3] is False  # a shape mismatch never passes
    assert compare(np.array([np.nan], np.float32), np.array([1.0], np.float32))[3] is False


def test_mapping_table_in_docs_is_generated_from_the_code() -> None:
    text = (ROOT / "docs" / "export.md").read_text()
    table = text.split("<!-- mapping-table:begin -->\n", 1)[1].split("\n<!-- mapping-table:end -->", 1)[0]
    assert table == mapping_table()
    from tinygrad_nb import ops

    for op in ops.PRIMITIVES:
        assert f"| {op.__name__} |" in table


def test_a_model_on_another_device_is_refused() -> None:
    model = nn.Linear(3, 2).to("cpu:sim")  # the test-only second device (tests/conftest.py enables it)
    with pytest.raises(ExportError, match=r"^the model's parameters are on cpu:sim; export traces on the cpu: call "
                                          r"model\.cpu\(\) first \[in model\]$"):
        export_onnx(model, tg.randn(2, 3), None)


def test_a_custom_op_exports_to_its_domain_and_runs_in_the_runtime_through_its_kernel(tmp_path: Path) -> None:
    from tinygrad_nb import library

    @library.custom_op("exporttest::softsign")
    def softsign(x: np.ndarray, scale: float = 1.0, mode: str = "plain") -> np.ndarray:
        assert mode == "plain"  # string attributes come back as str, not bytes
        return (scale * x / (1 + abs(x))).astype(x.dtype)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: tg.Tensor) -> tg.Tensor:
            return library.ops.exporttest.softsign(self.fc(x), scale=2.0, mode="plain")

    model, x = Model(), tg.randn(5, 4)
    path = tmp_path / "custom.onnx"
    result = export_onnx(model, x, path, verbose=False)
    proto = onnx.load(str(path))
    node = proto.graph.node[-1]
    assert (node.domain, node.op_type) == ("exporttest", "softsign")
    assert {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute} == {"scale": 2.0, "mode": b"plain"}
    assert ("exporttest", 1) in {(o.domain, o.version) for o in proto.opset_import}
    assert "onnxruntime (custom-op domain exporttest)" in result.validation.skipped
    session = tg.runtime.load(path)
    for batch in (1, 5, 7, 5):  # first calls at a shape and the planned ones
        xb = tg.randn(batch, 4)
        np.testing.assert_array_equal(session(xb.numpy()), model(xb).numpy())
