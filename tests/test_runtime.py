"""tinygrad_nb.runtime: loading (with version, hash and op checks), input checks, the memory plan (zero steady-state
allocations), PyTorch-exported files, golden files bit for bit, and the batch API."""
from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

import onnx  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

import tinygrad_nb as tg  # noqa: E402
from tinygrad_nb import nn  # noqa: E402
from tinygrad_nb.data import pad_sequence  # noqa: E402
from tinygrad_nb.export import onnx as export_onnx  # noqa: E402
from tinygrad_nb.runtime import (InputError, ModelFormatError, compile as compile_model, load,  # noqa: E402
                                 load_model)
from tinygrad_nb.runtime.batch import collate  # noqa: E402
from tinygrad_nb.runtime.session import Session  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "onnx"
RTOL, ATOL = 1.3e-6, 1e-5


def close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def eager(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with tg.no_grad():
        return model(tg.tensor(x)).numpy()


@pytest.fixture
def mlp_file(tmp_path: Path) -> tuple[nn.Module, Path]:
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 10),
                          nn.LogSoftmax(1))
    path = tmp_path / "mlp.onnx"
    export_onnx(model, tg.randn(8, 20), path, validate=False)
    return model, path


# -- running --------------------------------------------------------------------------------------------------------
def test_runs_by_name_position_and_call(mlp_file: tuple[nn.Module, Path]) -> None:
    model, path = mlp_file
    sess = load(path)
    x = np.random.default_rng(0).standard_normal((5, 20)).astype(np.float32)
    want = eager(model, x)
    first = sess.run({"input": x})["output"]  # the reference kernels (warm-up)
    planned = sess.run([x])["output"]  # the planned program
    close(first, want)
    close(planned, want)
    np.testing.assert_array_equal(planned, first)
    np.testing.assert_array_equal(sess(x), planned)
    np.testing.assert_array_equal(sess(tg.tensor(x)), planned)
    assert repr(sess) == "Session(mlp.onnx: 6 nodes, inputs input: (batch, 20) float32, outputs ['output'])"


def test_every_batch_size_matches_the_reference(mlp_file: tuple[nn.Module, Path]) -> None:
    model, path = mlp_file
    sess = load(path, max_batch=16)
    x = np.random.default_rng(1).standard_normal((40, 20)).astype(np.float32)
    for b in list(range(1, 18)) + [33, 40]:  # every bucket, both paths, and chunks above max_batch
        for _ in range(2):
            close(sess(x[:b]), eager(model, x[:b]))
    assert sorted(k[0][0] for k in sess._plans) == [1, 2, 4, 8, 16]


def test_compile_straight_from_a_module() -> None:
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(3 * 4 * 4, 4))
    sess = compile_model(model, tg.randn(2, 1, 8, 8))
    x = np.random.default_rng(2).standard_normal((3, 1, 8, 8)).astype(np.float32)
    close(sess(x), eager(model, x))
    close(sess(x), eager(model, x))


def test_input_errors_name_the_input_and_expected_shape(mlp_file: tuple[nn.Module, Path]) -> None:
    _, path = mlp_file
    sess = load(path)
    good = np.zeros((4, 20), np.float32)
    with pytest.raises(InputError, match=r"^unknown input 'x'; the model's inputs are \['input'\]$"):
        sess.run({"x": good})
    with pytest.raises(InputError, match=r"^missing input 'input': expected \(batch, 20\) float32$"):
        sess.run({})
    with pytest.raises(InputError, match=r"^input 'input': expected dtype float32 with shape \(batch, 20\) float32, "
                                         r"got float64 of shape \(4, 20\)$"):
        sess(good.astype(np.float64))
    with pytest.raises(InputError, match=r"^input 'input': expected shape \(batch, 20\) float32, got \(4, 21\)$"):
        sess(np.zeros((4, 21), np.float32))
    with pytest.raises(InputError, match=r"^input 'input': expected shape \(batch, 20\) float32, got \(20,\)$"):
        sess(np.zeros(20, np.float32))
    with pytest.raises(InputError, match=r"^expected 1 inputs \['input'\], got 2$"):
        sess.run([good, good])


def test_inputs_of_different_batch_sizes_are_refused() -> None:
    class Two(nn.Module):
        def forward(self, a: tg.Tensor, b: tg.Tensor) -> tg.Tensor:
            return a * b

    sess = compile_model(Two(), (tg.randn(3, 2), tg.randn(3, 2)))
    with pytest.raises(InputError, match=r"inputs have different batch sizes \[3, 4\]"):
        sess.run([np.ones((3, 2), np.float32), np.ones((4, 2), np.float32)])
    with pytest.raises(InputError, match=r"the model has 2 inputs \['input_0', 'input_1'\]: pass a dict or a list"):
        sess(np.ones((3, 2), np.float32))


# -- the memory plan --------------------------------------------------------------------------------------------------
def _assert_allocates_nothing_array_sized(*steps: Callable[[], object]) -> None:
    """Each step, run while tracemalloc traces, holds less than 2 KiB above where it started at its peak: numpy's
    small per-call objects, never an array (numpy's broadcasting buffers would be 32 KiB)."""
    for step in steps:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        step()
        assert tracemalloc.get_traced_memory()[1] - base < 2048, step


def _numpy_allocations(fn: object, calls: int) -> tuple[int, int]:
    """(net bytes of numpy arrays still alive, largest transient traced allocation) over ``calls`` calls."""
    numpy_only = [tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces(numpy_only)
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for i in range(calls):
            fn(i)  # type: ignore[operator]
        _, peak = tracemalloc.get_traced_memory()
        after = tracemalloc.take_snapshot().filter_traces(numpy_only)
    finally:
        tracemalloc.stop()
    net = sum(s.size_diff for s in after.compare_to(before, "filename"))
    return net, peak - base


@pytest.mark.parametrize("model_name", ["mlp", "cnn", "seq"])
def test_steady_state_calls_allocate_no_arrays(model_name: str) -> None:
    sess = load(DATA / f"torch_{model_name}.onnx")
    expected = load_file(str(DATA / "torch_expected.safetensors"))
    example = expected[f"{model_name}.input"]
    rng = np.random.default_rng(3)
    inputs = {b: example[np.arange(b) % example.shape[0]] for b in range(1, 129)}
    for b in range(1, 129):  # warm-up: every batch size once on each path
        sess.run(inputs[b])
        sess.run(inputs[b])
    sizes = rng.integers(1, 129, size=300)
    net, _ = _numpy_allocations(lambda i: sess.run(inputs[int(sizes[i])], copy=False), len(sizes))
    assert net == 0
    # no step allocates anything array-sized, even transiently (numpy's broadcasting buffers would be 32 KiB; the
    # smallest batch-128 intermediate is 2 KiB); what remains are numpy's small per-call objects
    tracemalloc.start()
    try:
        for b in (1, 37, 128):
            program = sess._programs[(inputs[b].shape,)]
            # taking over the bucket's arena from another batch size: all init steps together
            _assert_allocates_nothing_array_sized(lambda: [init() for init in program.init_steps])
            program.run([inputs[b]], copy=False)  # (makes it the arena's owner)
            np.copyto(program.input_views[0], inputs[b])
            _assert_allocates_nothing_array_sized(*program.steps)  # one run, step by step
    finally:
        tracemalloc.stop()
    assert sess.memory_plan().allocating_ops == []


def test_memory_stays_flat_over_10000_calls_with_random_batch_sizes() -> None:
    sess = load(DATA / "torch_mlp.onnx")
    x = np.random.default_rng(4).standard_normal((128, 20)).astype(np.float32)
    for b in range(1, 129):
        sess.run(x[:b])
        sess.run(x[:b])
    sizes = np.random.default_rng(5).integers(1, 129, size=10_000)
    arenas = sess.allocation_count()
    net, _ = _numpy_allocations(lambda i: sess.run(x[:int(sizes[i])], copy=False), len(sizes))
    assert net == 0 and sess.allocation_count() == arenas == 8


def test_memory_plan_buckets_peaks_and_picture(mlp_file: tuple[nn.Module, Path]) -> None:
    _, path = mlp_file
    sess = load(path)
    report = sess.memory_plan()  # nothing ran yet: the max_batch bucket
    assert [p.bucket for p in report.plans] == [((128, 20),)]
    for b in (3, 100):
        sess(np.zeros((b, 20), np.float32))
    report = sess.memory_plan()
    assert [p.bucket[0][0] for p in report.plans] == [4, 128]
    for plan in report.plans:
        assert plan.lower_bound <= plan.arena_bytes <= 1.05 * plan.lower_bound
        # the biggest moment: the (b, 32) hidden layer and the layer it feeds, alive together
        assert plan.lower_bound >= plan.bucket[0][0] * (32 + 16) * 4
    text = str(report)
    assert text.splitlines()[0].split() == ["bucket", "(input", "shapes)", "planned", "peak", "lower", "bound",
                                            "buffers", "steps"]
    assert text.splitlines()[1].startswith("4x20 ")
    assert report._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


def test_overlapping_lifetimes_never_share_memory() -> None:
    sess = load(DATA / "torch_cnn.onnx")
    plan = sess.memory_plan([64]).plans[-1]
    for i, a in enumerate(plan.roots):
        for b in plan.roots[i + 1:]:
            if a.start <= b.end and b.start <= a.end:
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset


# -- files from PyTorch's exporter -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mlp", "cnn", "seq"])
def test_pytorch_exported_files_run(name: str) -> None:
    expected = load_file(str(DATA / "torch_expected.safetensors"))
    x, want = expected[f"{name}.input"], expected[f"{name}.output"]
    sess = load(DATA / f"torch_{name}.onnx")
    for _ in range(2):
        close(sess(x), want)
    for rows in ([0], [1, 3, 4]):  # other batch sizes give the same rows
        close(sess(x[rows]), want[rows])


def test_pytorch_sequence_model_takes_any_length() -> None:
    sess = load(DATA / "torch_seq.onnx")
    tokens = np.random.default_rng(6).integers(0, 50, size=(3, 9))
    assert sess(tokens).shape == (3, 4)
    assert sess(tokens[:, :4]).shape == (3, 4)
    with pytest.raises(IndexError, match=r"Gather \(node '/embed/Gather'\): index 50 is out of range for axis 0 of "
                                         r"size 50"):
        sess(np.full((2, 3), 50, np.int64))


@pytest.mark.parametrize("name", ["mlp", "cnn", "seq"])
def test_pytorch_files_agree_with_onnxruntime(name: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    expected = load_file(str(DATA / "torch_expected.safetensors"))
    x = expected[f"{name}.input"]
    ort_sess = ort.InferenceSession(str(DATA / f"torch_{name}.onnx"), providers=["CPUExecutionProvider"])
    close(load(DATA / f"torch_{name}.onnx")(x), ort_sess.run(None, {"input": x})[0])


# -- golden files: later versions must reproduce them bit for bit ---------------------------------------------------
GOLDEN = ["mlp", "cnn", "seq", "mlp_opset13"]


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_files_reproduce_their_outputs_bit_for_bit(name: str) -> None:
    expected = load_file(str(DATA / "golden_expected.safetensors"))
    x, want = expected[f"{name}.input"], expected[f"{name}.output"]
    sess = load(DATA / f"golden_{name}.onnx")
    for _ in range(2):  # first call and planned call
        got = sess(x)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_files_run_in_onnxruntime(name: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    expected = load_file(str(DATA / "golden_expected.safetensors"))
    x = expected[f"{name}.input"]
    ort_sess = ort.InferenceSession(str(DATA / f"golden_{name}.onnx"), providers=["CPUExecutionProvider"])
    close(ort_sess.run(None, {"input": x})[0], expected[f"{name}.output"])


def _golden() -> onnx.ModelProto:
    return onnx.load(str(DATA / "golden_mlp.onnx"))


def _set_meta(proto: onnx.ModelProto, key: str, value: str) -> None:
    for p in proto.metadata_props:
        if p.key == key:
            p.value = value


def test_newer_export_format_is_refused_naming_the_versions() -> None:
    proto = _golden()
    _set_meta(proto, "tinygrad_nb.export_format_version", "2")
    _set_meta(proto, "tinygrad_nb.producer", "tinygrad_nb 9.0.0")
    with pytest.raises(ModelFormatError, match=rf"^<model>: written with tinygrad_nb export format version 2 \(by "
                                               rf"tinygrad_nb 9\.0\.0\); tinygrad_nb {tg.__version__} reads format "
                                               rf"versions up to 1: upgrade tinygrad_nb$"):
        load_model(proto)


@pytest.mark.parametrize("opset", [5, 26, 99])
def test_unsupported_opset_is_refused_naming_the_versions(opset: int) -> None:
    proto = _golden()
    proto.opset_import[0].version = opset
    with pytest.raises(ModelFormatError, match=rf"^golden\.onnx: the file uses ONNX opset {opset}; tinygrad_nb "
                                               rf"{tg.__version__}'s runtime reads opsets 7 to 25$"):
        load_model(proto, source="golden.onnx")


def test_older_supported_opset_loads() -> None:
    proto = onnx.load(str(DATA / "golden_mlp_opset13.onnx"))
    assert proto.opset_import[0].version == 13
    assert load_model(proto).run  # loads (its outputs are checked bit for bit above)


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    proto = _golden()
    init = proto.graph.initializer[0]
    array = numpy_helper.to_array(init).copy()
    array.flat[0] += 1
    init.CopyFrom(numpy_helper.from_array(array, init.name))
    path = tmp_path / "tampered.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelFormatError, match=r"tampered\.onnx: the weights do not match the hash recorded at "
                                               r"export \(xxh3-128:[0-9a-f]{32}, the file's initializers hash to "
                                               r"xxh3-128:[0-9a-f]{32}\): the file was modified or is corrupt"):
        load(path)
    assert load(path, verify=False)  # an explicit opt-out still loads it


def test_unknown_ops_external_data_and_custom_domains_are_refused() -> None:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])
    unknown = helper.make_model(helper.make_graph([helper.make_node("Hardmax", ["x"], ["y"], name="hm")], "g", [x],
                                                  [y]), opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(ModelFormatError, match=r"op Hardmax \(node 'hm'\) is not implemented by tinygrad_nb\.runtime"):
        load_model(unknown)
    custom = helper.make_model(helper.make_graph([helper.make_node("Foo", ["x"], ["y"], domain="my.ops", name="f")],
                                                 "g", [x], [y]),
                               opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("my.ops", 1)])
    with pytest.raises(ModelFormatError, match=r"node 'f' uses op my\.ops\.Foo, which is not a registered custom op "
                                               r"\(.*\); only the default ONNX domain and tinygrad_nb\.library ops"):
        load_model(custom)
    proto = _golden()
    init = proto.graph.initializer[0]
    init.data_location = onnx.TensorProto.EXTERNAL
    with pytest.raises(ModelFormatError, match=rf"initializer '{init.name}' is stored in an external file"):
        load_model(proto)


def test_values_that_decide_shapes_run_unplanned() -> None:
    shape = helper.make_tensor_value_info("shape", onnx.TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    node = helper.make_node("ConstantOfShape", ["shape"], ["y"],
                            value=numpy_helper.from_array(np.array([1.5], np.float32)))
    sess = load_model(helper.make_model(helper.make_graph([node], "g", [shape], [y]),
                                        opset_imports=[helper.make_opsetid("", 18)]))
    assert sess.data_dependent_shapes == ["ConstantOfShape (node '')"]
    for dims in ([2, 3], [4, 1], [2, 3]):
        np.testing.assert_array_equal(sess(np.array(dims)), np.full(dims, 1.5, np.float32))


# -- the batch API ----------------------------------------------------------------------------------------------------
def test_map_splits_results_per_sample_in_order(mlp_file: tuple[nn.Module, Path]) -> None:
    model, path = mlp_file
    sess = load(path)
    x = np.random.default_rng(7).standard_normal((150, 20)).astype(np.float32)
    results = list(sess.map(iter(x), batch_size=64))
    assert len(results) == 150 and all(r.shape == (10,) for r in results)
    for start in (0, 64, 128):  # batch by batch, the same as running the batch
        np.testing.assert_array_equal(np.stack(results[start:start + 64]), sess(x[start:start + 64]))


def test_map_streams_without_reading_ahead(mlp_file: tuple[nn.Module, Path]) -> None:
    _, path = mlp_file
    sess = load(path)
    taken = []

    def endless() -> object:
        i = 0
        while True:
            taken.append(i)
            yield np.full(20, i, np.float32)
            i += 1

    it = sess.map(endless(), batch_size=8)
    first = [next(it) for _ in range(10)]
    assert len(first) == 10 and len(taken) == 16  # two batches read, nothing more
    np.testing.assert_array_equal(first[9], sess(np.full((8, 20), 9, np.float32))[1])


def test_map_pads_ragged_sequences_like_pad_sequence() -> None:
    sess = load(DATA / "torch_seq.onnx")
    seqs = [np.array([3, 1, 4]), np.array([1, 5]), np.array([9, 2, 6, 5])]
    batch = collate(sess, seqs, padding_value=0)
    np.testing.assert_array_equal(batch[0], pad_sequence([tg.tensor(s) for s in seqs], batch_first=True).numpy())
    results = list(sess.map(seqs, batch_size=2))
    np.testing.assert_array_equal(np.stack(results[:2]), sess(batch[0][:2, :3]))
    np.testing.assert_array_equal(results[2], sess(seqs[2][None])[0])


def test_map_with_several_inputs_and_outputs() -> None:
    class Two(nn.Module):
        def forward(self, a: tg.Tensor, b: tg.Tensor) -> tuple[tg.Tensor, tg.Tensor]:
            return a + b, (a * b).sum(1)

    sess = compile_model(Two(), (tg.randn(3, 2), tg.randn(3, 2)))
    samples = [(np.array([1.0, 2.0], np.float32), np.array([3.0, 4.0], np.float32)),
               {"input_0": np.array([0.5, 0.5], np.float32), "input_1": np.array([2.0, 2.0], np.float32)}]
    (s0, p0), (s1, p1) = sess.map(samples, batch_size=4)
    np.testing.assert_array_equal(s0, [4.0, 6.0])
    assert p0 == 11.0 and p1 == 2.0
    np.testing.assert_array_equal(s1, [2.5, 2.5])
    with pytest.raises(InputError, match=r"sample 0: the model has 2 inputs"):
        list(sess.map([np.zeros(2, np.float32)]))


def test_map_text_progress(mlp_file: tuple[nn.Module, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, path = mlp_file
    sess = load(path)
    x = np.zeros((100, 20), np.float32)
    assert len(list(sess.map(list(x), batch_size=30, progress=True))) == 100
    err = capsys.readouterr().err
    assert err.endswith("\rpredict  100/100 samples  (100%)\n")
    assert len(list(sess.map(list(x), batch_size=30))) == 100  # not a terminal: quiet by default
    assert capsys.readouterr().err == ""


def test_load_accepts_bytes(mlp_file: tuple[nn.Module, Path]) -> None:
    _, path = mlp_file
    x = np.ones((2, 20), np.float32)
    np.testing.assert_array_equal(load(path.read_bytes())(x), load(path)(x))


def test_map_dataset_is_exposed_lazily_without_importing_ray() -> None:
    import subprocess
    import sys

    # a fresh interpreter: this one may already hold Ray from another test
    code = ("import sys, tinygrad_nb as tg; assert 'ray' not in sys.modules; "
            "assert 'tinygrad_nb.runtime.dataset' not in sys.modules; f = tg.runtime.map_dataset; "
            "from tinygrad_nb.sweep.data import map_dataset; assert f is map_dataset; "
            "assert 'ray' not in sys.modules; print(f.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "tinygrad_nb.runtime.dataset"
    assert "map_dataset" in tg.runtime.__all__
    with pytest.raises(ValueError, match="map_dataset: batch_size must be >= 1, got 0"):
        tg.runtime.map_dataset("rows.csv", b"", batch_size=0)
    with pytest.raises(AttributeError, match="has no attribute 'map_datasets'"):
        tg.runtime.map_datasets  # noqa: B018


def test_map_shows_a_widget_inside_jupyter(mlp_file: tuple[nn.Module, Path], monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ipywidgets")
    from tinygrad_nb.runtime import batch

    bars: list[batch._WidgetBar] = []
    real = batch._WidgetBar

    def recording(total: int | None) -> batch._WidgetBar:
        bars.append(real(total))
        return bars[-1]

    monkeypatch.setattr(batch, "_in_jupyter", lambda: True)
    monkeypatch.setattr(batch, "_WidgetBar", recording)
    _, path = mlp_file
    assert len(list(load(path).map(list(np.zeros((70, 20), np.float32)), batch_size=32))) == 70
    (bar,) = bars
    assert (bar.bar.max, bar.bar.value, bar.bar.bar_style, bar.label.value) == (70, 70, "success", "70/70 samples")
    assert capsys.readouterr().err == ""  # no text line as well


def test_in_place_reuse_never_overwrites_another_view_of_the_input() -> None:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3, 3])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
             helper.make_node("Add", ["r", "t"], ["y"])]  # r dies here, but t is r's memory, transposed
    sess = load_model(helper.make_model(helper.make_graph(nodes, "g", [x], [y]),
                                        opset_imports=[helper.make_opsetid("", 18)]))
    a = np.random.default_rng(8).standard_normal((2, 3, 3)).astype(np.float32)
    r = np.maximum(a, 0)
    for _ in range(2):
        np.testing.assert_array_equal(sess(a), r + r.transpose(0, 2, 1))
    (bucket,) = sess._plans.values()
    # Relu may write over x (x dies there); Add must not write over r (numpy would then copy t behind our back)
    assert [bucket.layout.steps[i].kernel.op_type for i in sorted(bucket.layout.inplace)] == ["Relu"]


# -- the fast convolution and pooling paths -------------------------------------------------------------------------
def _conv_pool_model(c_in: int, pads: list[int], pool: dict, rng: np.random.Generator,
                     kernel: tuple[int, int] = (3, 2)) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", c_in, 9, 12])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    w = numpy_helper.from_array(rng.standard_normal((5, c_in) + kernel).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 5, 3, 3)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=pads),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], **pool),
             helper.make_node("Conv", ["p", "w2"], ["y"], pads=[1, 2, 0, 1])]  # reads the pool's output only
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w, b, w2]),
                             opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("c_in", [1, 3])
@pytest.mark.parametrize("pads", [[1, 1, 1, 1], [0, 2, 1, 0], [0, 0, 0, 0]])
@pytest.mark.parametrize("pool", [{"kernel_shape": [2, 2], "strides": [2, 2]},
                                  {"kernel_shape": [3, 2], "strides": [1, 2]},
                                  {"kernel_shape": [2, 3], "strides": [2, 3]},
                                  {"kernel_shape": [2, 2], "strides": [1, 1]}])  # (the general pooling path)
def test_batch_1_convolution_and_separable_pooling_match_onnx_reference(c_in: int, pads: list[int],
                                                                         pool: dict) -> None:
    from onnx.reference import ReferenceEvaluator  # noqa: PLC0415

    rng = np.random.default_rng(11)
    model = _conv_pool_model(c_in, pads, pool, rng)
    sess = load_model(model)
    reference = ReferenceEvaluator(model)
    for b in (1, 3, 1, 4, 1):  # batch 1 (its own conv paths) and others; first and planned calls
        x = rng.standard_normal((b, c_in, 9, 12)).astype(np.float32)
        want = reference.run(None, {"x": x})[0]
        first = sess(x)
        np.testing.assert_allclose(first, want, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(sess(x), first)  # the planned program gives the reference kernels' bits
        np.testing.assert_array_equal(sess(x), first)


def test_pooled_values_are_written_straight_into_the_next_convolutions_padding() -> None:
    rng = np.random.default_rng(12)
    model = _conv_pool_model(3, [1, 1, 1, 1], {"kernel_shape": [2, 2], "strides": [2, 2]}, rng, kernel=(3, 3))
    sess = Session(model, fuse=False)  # (the fused Conv -> Relu -> MaxPool: see the next test)
    for b in (1, 5):
        x = rng.standard_normal((b, 3, 9, 12)).astype(np.float32)
        first = sess(x)
        np.testing.assert_array_equal(sess(x), first)
        program = sess._programs[(x.shape,)]
        steps = [getattr(s, "__name__", "") for s in program.steps]
        # the program copies its input straight into the first conv's padded buffer, and the second conv's padded
        # buffer is where the pool writes its output: no conv copies its input (batch 1 has its own conv path)
        assert steps == (["conv_single", "<lambda>", "max_pool3", "conv_single"] if b == 1 else
                         ["conv", "<lambda>", "max_pool3", "conv"]), steps
        assert not program.input_views[0].flags.c_contiguous  # the interior of the padded buffer


@pytest.mark.parametrize("c_in", [1, 3])
@pytest.mark.parametrize("pads", [[1, 1, 1, 1], [0, 2, 1, 0]])
@pytest.mark.parametrize("pool", [{"kernel_shape": [2, 2], "strides": [2, 2]},
                                  {"kernel_shape": [3, 2], "strides": [1, 2]},
                                  {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}])  # -inf padding
def test_fused_conv_relu_maxpool_gives_the_unfused_graphs_values(c_in: int, pads: list[int], pool: dict) -> None:
    """Conv -> Relu -> MaxPool runs as one kernel: its first (reference) and planned calls agree to the bit, and it
    agrees with the unfused graph and onnx's reference evaluator, NaN and infinities included (relu and max
    commute exactly; at batch 1 the fused matmul is one product over the padded width instead of one per output
    row, so the unfused graph is compared to a rounding; at other batch sizes the fused kernel runs the same
    kernels, so to the bit)."""
    from onnx.reference import ReferenceEvaluator  # noqa: PLC0415

    rng = np.random.default_rng(21)
    model = _conv_pool_model(c_in, pads, pool, rng, kernel=(3, 3))
    fused, unfused = Session(model), Session(model, fuse=False)
    assert [n.kernel.op_type for n in fused.nodes] == ["Conv+Relu+MaxPool", "Conv"]
    assert [n.kernel.op_type for n in unfused.nodes] == ["Conv", "Relu", "MaxPool", "Conv"]
    reference = ReferenceEvaluator(model)
    for b, special in ((1, False), (3, False), (1, True), (2, True), (1, True)):
        x = rng.standard_normal((b, c_in, 9, 12)).astype(np.float32)
        if special:  # (onnx's reference MaxPool drops NaN, so these are compared with the unfused graph only)
            x[0, 0, 4, 5] = np.nan  # NaN spreads through the windows it is in
            x[-1, -1, 2, 7] = -np.inf  # -inf times weights of both signs: +-inf, and NaN where they meet
            x[-1, 0, 0, 0] = np.inf
        first = fused(x)
        if not special:
            np.testing.assert_allclose(first, reference.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(fused(x), first)  # planned == reference kernels, bit for bit
        np.testing.assert_array_equal(fused(x), first)
        other = unfused(x)
        if b == 1:
            np.testing.assert_array_equal(np.isnan(first), np.isnan(other))
            np.testing.assert_allclose(first, other, rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(first.view(np.uint32), other.view(np.uint32))
    # at batch > 1 the session runs and plans the three nodes: the unfused steps and memory plan
    program = fused._programs[((2, c_in, 9, 12),)]
    assert [n.kernel.op_type for n in program.bucket.layout.steps] == ["Conv", "Relu", "MaxPool", "Conv"]
    big = [(p.bucket, p.arena_bytes) for p in fused.memory_plan([128]).plans if p.bucket[0][0] > 1]
    assert big == [(p.bucket, p.arena_bytes) for p in unfused.memory_plan([128]).plans if p.bucket[0][0] > 1]
    # a fused step allocates nothing in the steady state
    x = rng.standard_normal((1, c_in, 9, 12)).astype(np.float32)
    fused(x)
    net, peak = _numpy_allocations(lambda i: fused.run(x, copy=False), 50)
    assert net == 0 and peak < 2048, (net, peak)


def test_fused_one_channel_convolution_reads_its_image_from_the_writer_before_it() -> None:
    """A one-input-channel fused convolution keeps its padded image in a buffer of its own: the program's input
    copy, or a pooling before it, writes straight into that buffer (and the step copies nothing else)."""
    rng = np.random.default_rng(6)
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 1, 12, 16])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    w = numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    nodes = [helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["m", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w, b]),
                              opset_imports=[helper.make_opsetid("", 18)])
    fused, unfused = Session(model), Session(model, fuse=False)
    assert [n.kernel.op_type for n in fused.nodes] == ["MaxPool", "Conv+Relu+MaxPool"]
    for batch in (1, 2, 1):
        a = rng.standard_normal((batch, 1, 12, 16)).astype(np.float32)
        first = fused(a)
        np.testing.assert_array_equal(fused(a), first)
        np.testing.assert_allclose(first, unfused(a), rtol=1e-6, atol=1e-6)
        if batch == 1:
            program = fused._programs[(a.shape,)]
            # the six-call closure (rows, matmul, two maxima, the strided copy out, relu): no copy of the pooled
            # image, which the pooling wrote into the padded image (with that copy the step is a list of seven)
            assert program.steps[1].__name__ == "conv_relu_pool", program.steps[1]


def test_relu_and_maxpool_commute_bit_for_bit() -> None:
    """The identity the fused kernel rests on, on values where the order could show: NaN, +-inf, +-0."""
    rng = np.random.default_rng(5)
    values = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -2.0, 1e-45, -1e-45], np.float32)
    x = rng.choice(values, size=(2, 3, 8, 10)).astype(np.float32)
    zero = np.zeros_like(x)
    windows = x.reshape(2, 3, 4, 2, 5, 2)
    pool_then_relu = np.maximum(windows.max(axis=(3, 5)), 0.0)
    relu_then_pool = np.maximum(x, zero).reshape(2, 3, 4, 2, 5, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(np.isnan(pool_then_relu), np.isnan(relu_then_pool))
    finite = ~np.isnan(pool_then_relu)
    np.testing.assert_array_equal(pool_then_relu[finite].view(np.uint32), relu_then_pool[finite].view(np.uint32))


def test_only_private_conv_relu_maxpool_chains_are_fused() -> None:
    """A chain whose Conv or Relu output is also read elsewhere (or is a graph output) is left as it is."""
    rng = np.random.default_rng(4)
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 2, 6, 6])
    outs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in ("p", "r")]
    w = numpy_helper.from_array(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs, [w]),
                              opset_imports=[helper.make_opsetid("", 18)])
    sess = Session(model)
    assert [n.kernel.op_type for n in sess.nodes] == ["Conv", "Relu", "MaxPool"]  # r is an output
    a = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    p, r = sess(a)
    np.testing.assert_array_equal(p, r.reshape(1, 3, 3, 2, 3, 2).max(axis=(3, 5)))


def _small_cnn_model(c_in: int, pads: list[int], flatten: str, rng: np.random.Generator) -> onnx.ModelProto:
    """Conv -> Relu -> MaxPool twice, then Flatten (or Reshape) -> Gemm: the benchmark's small CNN, in miniature."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", c_in, 12, 16])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    ho, wo = (12 + pads[0] + pads[2] - 2) // 2, (16 + pads[1] + pads[3] - 2) // 2  # after the first block
    features = 6 * ((ho + 2 - 2) // 2) * ((wo + 2 - 2) // 2)
    # weights scaled by 1/sqrt(fan-in), as a trained layer's are: values of order 1 at every layer
    inits = [numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32),
                                     name) for name, shape in
             (("w1", (4, c_in, 3, 3)), ("b1", (4,)), ("w2", (6, 4, 3, 3)), ("b2", (6,)), ("wf", (5, features)),
              ("bf", (5,)))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=pads),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2])]
    if flatten == "Flatten":
        nodes.append(helper.make_node("Flatten", ["p2"], ["flat"], axis=1))
    else:
        inits.append(numpy_helper.from_array(np.array([-1, features], np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["p2", "shape"], ["flat"]))
    nodes.append(helper.make_node("Gemm", ["flat", "wf", "bf"], ["y"], transB=1))
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                             opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("c_in", [1, 2])
@pytest.mark.parametrize("pads", [[1, 1, 1, 1], [0, 2, 2, 0], [2, 0, 0, 2]])
@pytest.mark.parametrize("flatten", ["Flatten", "Reshape"])
def test_fused_blocks_and_flatten_gemm_give_the_unfused_graphs_values(c_in: int, pads: list[int],
                                                                      flatten: str) -> None:
    """Two fused Conv -> Relu -> MaxPool blocks and a fused Flatten -> Gemm at batch 1: the first block's relu runs
    over the second block's zero-bordered padded input, the second block writes straight into the Gemm's input
    buffer (whose persistent 1 carries the bias), and the padded inputs share one zero column between rows. First
    and planned calls agree to the bit, the unfused graph and onnx's reference evaluator to a rounding, NaN and
    infinities included; other batch sizes run the unfused nodes (bit for bit the unfused graph's values); no
    step allocates."""
    from onnx.reference import ReferenceEvaluator  # noqa: PLC0415

    rng = np.random.default_rng(31)
    model = _small_cnn_model(c_in, pads, flatten, rng)
    fused, unfused = Session(model), Session(model, fuse=False)
    assert [n.kernel.op_type for n in fused.nodes] == ["Conv+Relu+MaxPool", "Conv+Relu+MaxPool", "Flatten+Gemm"]
    reference = ReferenceEvaluator(model)
    for b, special in ((1, False), (3, False), (1, True), (2, True), (1, False)):
        x = rng.standard_normal((b, c_in, 12, 16)).astype(np.float32)
        if special:
            x[0, 0, 5, 7] = np.nan
            x[-1, -1, 2, 9] = -np.inf
            x[-1, 0, 0, 0] = np.inf
        first = fused(x)
        np.testing.assert_array_equal(fused(x), first)  # planned == reference kernels, bit for bit
        np.testing.assert_array_equal(fused(x), first)
        other = unfused(x)
        np.testing.assert_array_equal(np.isnan(first), np.isnan(other))
        if not special:
            np.testing.assert_allclose(first, reference.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)
        if b == 1:  # (the fp32 tolerance)
            np.testing.assert_allclose(first, other, rtol=RTOL, atol=ATOL)
        else:
            np.testing.assert_array_equal(first.view(np.uint32), other.view(np.uint32))
    x = rng.standard_normal((1, c_in, 12, 16)).astype(np.float32)
    fused(x)
    program = fused._programs[(x.shape,)]
    block0, block1, gemm = program.steps
    cells0 = dict(zip(block0.__code__.co_freevars, (c.cell_contents for c in block0.__closure__)))
    cells1 = dict(zip(block1.__code__.co_freevars, (c.cell_contents for c in block1.__closure__)))
    # block 0's relu runs over the buffer block 1's im2col reads (block 0's output is its interior)
    assert block0.__name__ == "conv_relu_pool" and np.shares_memory(cells0["r"], cells1["source"])
    assert cells0["r"].size < cells0["full"].size  # (not over the convolution result f)
    p1 = unfused.reference([x])["p1"]  # block 1's rows: the W values and one zero shared by both paddings
    assert cells1["full"].shape == (6, p1.shape[2] * (p1.shape[3] + 1))
    assert gemm.__name__ == "<lambda>"  # one product: block 1 wrote the Gemm's input in place (no copy step)
    net, peak = _numpy_allocations(lambda i: fused.run(x, copy=False), 50)
    assert net == 0 and peak < 2048, (net, peak)
    tracemalloc.start()
    try:
        _assert_allocates_nothing_array_sized(*program.steps)
    finally:
        tracemalloc.stop()


def test_flatten_gemm_reads_the_program_input_in_place_and_is_fused_only_for_a_linear_layer() -> None:
    rng = np.random.default_rng(32)
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    w = rng.standard_normal((5, 12)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)

    def model(**gemm: float) -> onnx.ModelProto:
        nodes = [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("Gemm", ["flat", "w", "b"], ["y"],
                                                                                   **gemm)]
        w_ = w if gemm.get("transB") else np.ascontiguousarray(w.T)
        inits = [numpy_helper.from_array(w_, "w"), numpy_helper.from_array(b, "b")]
        return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                                 opset_imports=[helper.make_opsetid("", 18)])

    fused, unfused = Session(model(transB=1)), Session(model(transB=1), fuse=False)
    assert [n.kernel.op_type for n in fused.nodes] == ["Flatten+Gemm"]
    for batch in (1, 4, 1):
        a = rng.standard_normal((batch, 3, 4)).astype(np.float32)
        first = fused(a)
        np.testing.assert_array_equal(fused(a), first)
        want = a.reshape(batch, 12).astype(np.float64) @ w.T.astype(np.float64) + b
        np.testing.assert_allclose(first, want, rtol=1e-5, atol=1e-6)
        if batch == 1:
            np.testing.assert_allclose(first, unfused(a), rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(first, unfused(a))
    program = fused._programs[((1, 3, 4),)]
    (step,) = program.steps
    assert step.__name__ == "<lambda>"  # the program's input copy writes into the step's buffer: one product
    extended = dict(zip(step.__code__.co_freevars, (c.cell_contents for c in step.__closure__)))["extended"]
    assert np.shares_memory(program.input_views[0], extended) and extended[-1] == 1
    for gemm in ({"transB": 0}, {"transB": 1, "alpha": 2.0}, {"transB": 1, "beta": 0.5}):
        assert [n.kernel.op_type for n in Session(model(**gemm)).nodes] == ["Flatten", "Gemm"], gemm


def test_the_memory_plan_predicts_what_a_bucket_really_holds() -> None:
    """sess.memory_plan(): the arena plus the buffers outside it is what the runtime holds after warm-up (within
    5%: the rest is the bound program's Python objects), and the first call's reference values are not kept."""
    import gc

    session = load(DATA / "torch_cnn.onnx")
    outside_before = session.outside_arena_bytes()  # Relu's shared zeros may exist already (other sessions)
    x = np.random.default_rng(0).standard_normal((128, 1, 8, 8)).astype(np.float32)
    gc.collect()
    tracemalloc.start()
    session.run(x, copy=False)
    session.run(x, copy=False)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    report = session.memory_plan()
    planned = report.plans[-1].arena_bytes + report.outside_bytes - outside_before
    assert planned <= held <= 1.05 * planned, (planned, held)
    assert "held outside the arenas" in report.table()
