"""tinygrad_nb.library: the custom-op registry, opcheck, origins and replacement, entry points, export hooks."""
from __future__ import annotations

import itertools
import sys
import textwrap

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb import dispatch, library
from tinygrad_nb.autograd import Function
from tinygrad_nb.determinism import NONDETERMINISTIC, DeterminismError
from tinygrad_nb.library.registry import Origin, origin_context

_counter = itertools.count()


@pytest.fixture
def ns() -> str:
    """A fresh namespace per test (the registry is process-wide); its ops are removed afterwards."""
    name = f"t{next(_counter)}"
    yield name
    for op in list(library.registry._registry.values()):
        if op.namespace == name:
            op.remove()


def softsign_kernel(x):
    return x / (1 + abs(x))


def softsign_backward(ctx, g):
    (x,) = ctx.saved_tensors
    return g / (1 + abs(x)) ** 2


def save_inputs(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def make_softsign(ns: str):
    op = library.custom_op(f"{ns}::softsign", softsign_kernel)
    op.register_autograd(softsign_backward, setup_context=save_inputs)
    op.register_shape(lambda x: (x.shape, x.dtype))
    return op


def finite_difference(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(x)
    for i in range(x.size):
        plus, minus = x.copy(), x.copy()
        plus.flat[i] += eps
        minus.flat[i] -= eps
        grad.flat[i] = (f(plus).sum() - f(minus).sum()) / (2 * eps)
    return grad


# -- registering and calling ----------------------------------------------------------------------------------------
def test_python_op_values_gradients_and_namespace_access(ns):
    make_softsign(ns)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((3, 4))
    x = tg.tensor(data, requires_grad=True)
    y = getattr(library.ops, ns).softsign(x)
    np.testing.assert_allclose(y.numpy(), data / (1 + np.abs(data)), rtol=1e-15)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), finite_difference(lambda a: a / (1 + np.abs(a)), data), atol=1e-8)
    assert library.lookup(f"{ns}::softsign") is getattr(library.ops, ns).softsign


def test_tg_ops_namespace_access_through_the_core_hook(ns):
    if not hasattr(tg.ops, "namespace_resolvers"):
        pytest.skip("the core's ops package has no namespace hook yet (tg.library.ops works meanwhile)")
    op = make_softsign(ns)
    assert getattr(tg.ops, ns).softsign is op
    with pytest.raises(AttributeError, match="no attribute 'no_such_namespace'"):
        tg.ops.no_such_namespace  # noqa: B018


def test_op_is_a_function_named_after_itself(ns):
    op = make_softsign(ns)
    y = op(tg.randn(2, requires_grad=True))
    assert issubclass(op.function, Function)
    assert y._ctx.fn is op.function and y._ctx.fn.__name__ == f"{ns}::softsign"


def test_keyword_attributes_reach_the_kernel(ns):
    op = library.custom_op(f"{ns}::scale", lambda x, factor=1.0: x * factor)
    np.testing.assert_array_equal(op(tg.tensor([1.0, 2.0]), factor=3.0).numpy(), [3.0, 6.0])


def test_profiler_and_nan_tracer_name_the_op_and_the_line(ns):
    op = library.custom_op(f"{ns}::log", lambda x: np.log(x))
    x = tg.tensor([1.0, -1.0])
    with tg.profile() as prof:
        op(x)
    assert f"{ns}::log" in str(prof.summary())
    with tg.debug.detect_anomaly(strict=False) as tracer:
        op(x); line = sys._getframe().f_lineno  # noqa: E702 - the op and the line number it is on
    assert [(e.op, e.nan) for e in tracer.events] == [(f"{ns}::log", 1)]
    assert tracer.events[0].location == (__file__, line)


def test_cuda_kernel_is_a_dispatch_override_and_leaves_with_the_op(ns):
    op = make_softsign(ns)
    op.register_kernel("cuda", lambda x: x)
    impl = dispatch.implementation_for(op.function, "cuda")
    assert impl is not op.function and issubclass(impl, op.function) and impl.__qualname__ == f"{ns}::softsign[cuda]"
    assert dispatch.implementation_for(op.function, "cpu") is op.function
    assert op.devices == ["any", "cuda"]
    row = next(line for line in library.dispatch_table().splitlines() if line.startswith(f"{ns}::softsign"))
    assert row.split() == [f"{ns}::softsign", "generic", "(xp)", f"{ns}::softsign[cuda]"]
    op.remove()
    assert (op.function, "cuda") not in dispatch.overrides
    with pytest.raises(library.LibraryError, match=f"no custom op named '{ns}::softsign'"):
        library.lookup(f"{ns}::softsign")


def test_device_only_op_names_the_missing_device(ns):
    op = library.custom_op(f"{ns}::gpu_only", lambda x: x, device_types="cuda")
    with pytest.raises(library.LibraryError, match=r"has no kernel for device type 'cpu' \(it has: cuda\)"):
        op(tg.tensor([1.0]))


def test_op_without_backward_says_so_at_backward(ns):
    op = library.custom_op(f"{ns}::nograd", lambda x: x * 2)
    y = op(tg.tensor([1.0], requires_grad=True))
    with pytest.raises(RuntimeError, match=f"{ns}::nograd is not differentiable: no backward was registered"):
        y.sum().backward()


def test_bad_names_are_refused():
    with pytest.raises(library.LibraryError, match="'namespace::name'"):
        library.custom_op("no_namespace", lambda x: x)


def test_module_level_register_functions(ns):
    library.custom_op(f"{ns}::square", lambda x: x * x)
    library.register_autograd(f"{ns}::square", lambda ctx, g: 2 * ctx.saved_tensors[0] * g, save_inputs)
    library.register_shape(f"{ns}::square", lambda x: (x.shape, x.dtype))
    library.register_kernel(f"{ns}::square", "cuda", lambda x: x * x)
    op = library.lookup(f"{ns}::square")
    assert op.infer(np.zeros((2, 3), np.float32)) == library.TensorSpec((2, 3), np.dtype(np.float32))
    x = tg.tensor([3.0], requires_grad=True)
    op(x).backward()
    assert x.grad.tolist() == [6.0]


# -- opcheck --------------------------------------------------------------------------------------------------------
def test_opcheck_passes_a_correct_op(ns):
    report = library.opcheck(make_softsign(ns), [tg.randn(3, 4), (tg.randn(5),)])
    devices = report.results.pop("devices")
    assert report.results == {"schema": "ok", "no_mutation": "ok", "gradient": "ok", "dtype": "ok",
                              "deterministic": "ok"}
    assert devices == ("ok" if tg.is_cuda_available() else "skipped: cpu only (no GPU available)")
    assert report.samples == 2 and str(report).startswith(f"opcheck {ns}::softsign: 2 sample(s)")


def test_opcheck_finds_a_wrong_gradient(ns):
    op = library.custom_op(f"{ns}::bad_grad", softsign_kernel)
    op.register_autograd(lambda ctx, g: g / (1 + abs(ctx.saved_tensors[0])), save_inputs)  # missing the square
    with pytest.raises(library.OpCheckError, match=rf"opcheck {ns}::bad_grad \[gradient\] sample 0 .*analytic"):
        library.opcheck(op, [tg.tensor([0.5, -2.0])])


def test_opcheck_finds_input_mutation(ns):
    def mutating(x):
        x += 1
        return x * 1

    op = library.custom_op(f"{ns}::mutates", mutating)
    with pytest.raises(library.OpCheckError, match=r"\[no_mutation\].*input 0 was modified by the op \(forward\)"):
        library.opcheck(op, [tg.tensor([1.0, 2.0])], checks=["no_mutation"])


def test_opcheck_finds_a_shape_function_that_disagrees(ns):
    op = library.custom_op(f"{ns}::shape_lie", lambda x: x.sum(axis=0))
    op.register_shape(lambda x: (x.shape, x.dtype))
    with pytest.raises(library.OpCheckError, match=r"\[schema\].*returned shape \(4,\).*says shape \(3, 4\)"):
        library.opcheck(op, [tg.randn(3, 4)])


def test_opcheck_finds_a_wrong_output_dtype(ns):
    op = library.custom_op(f"{ns}::upcasts", lambda x: x.astype(np.float64))
    op.register_shape(lambda x: (x.shape, x.dtype))
    with pytest.raises(library.OpCheckError, match=r"\[dtype\].*float32 inputs gave a float64 output, expected float32"):
        library.opcheck(op, [tg.randn(3)], checks=["dtype"])


def test_opcheck_finds_a_nondeterministic_kernel(ns):
    rng = np.random.default_rng(1)
    op = library.custom_op(f"{ns}::noisy", lambda x: x + rng.standard_normal(x.shape) * 1e-12)
    with pytest.raises(library.OpCheckError, match=r"\[deterministic\].*two runs in deterministic mode gave "
                                                   "different bits"):
        library.opcheck(op, [tg.randn(3)], checks=["deterministic"])


def test_declared_nondeterministic_kernel_raises_in_deterministic_mode(ns):
    op = library.custom_op(f"{ns}::atomic", lambda x: x, device_types="cpu")
    op.register_kernel("cpu", lambda x: x + 0, deterministic=False, reason="it sums with atomics")
    with tg.deterministic(True), pytest.raises(DeterminismError, match="it sums with atomics"):
        op(tg.tensor([1.0]))
    assert library.opcheck(op, [tg.tensor([1.0])], checks=["deterministic"]).results == {"deterministic": "ok"}
    op.remove()
    assert ("cpu", f"{ns}::atomic") not in NONDETERMINISTIC


# -- origins, replacement, ownership ----------------------------------------------------------------------------------
def test_two_packages_claiming_one_name_is_an_error_naming_both(ns):
    with origin_context(Origin("package", "pkg-a", "a.ops:register")):
        library.custom_op(f"{ns}::dup", lambda x: x)
    with origin_context(Origin("package", "pkg-b", "b.ops:register")), \
            pytest.raises(library.LibraryError, match=rf"{ns}::dup is registered twice: by package pkg-a "
                                                      rf"\(a.ops:register\) and by package pkg-b \(b.ops:register\)"):
        library.custom_op(f"{ns}::dup", lambda x: x)
    assert str(library.lookup(f"{ns}::dup").origin) == "package pkg-a (a.ops:register)"


def test_same_module_registering_again_replaces(ns):
    first = library.custom_op(f"{ns}::again", lambda x: x + 1)
    second = library.custom_op(f"{ns}::again", lambda x: x + 2)
    assert library.lookup(f"{ns}::again") is second and first.removed
    assert first.origin == second.origin == Origin("module", __name__, "test_library.py")


def test_rerunning_a_cell_replaces_the_op_and_old_tensors_still_backprop(ns):
    cell = Origin("cell", "id:cell-1", "cell [3] 'op = ...'")
    with origin_context(cell):
        old = library.custom_op(f"{ns}::f", lambda x: x * 2)
        old.register_autograd(lambda ctx, g: g * 2)
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y_old = old(x)
    with origin_context(Origin("cell", "id:cell-1", "cell [4] 'op = ...'")):
        new = library.custom_op(f"{ns}::f", lambda x: x * 3)
        new.register_autograd(lambda ctx, g: g * 3)
    assert library.lookup(f"{ns}::f") is new
    y_new = new(x)
    (y_old.sum() + y_new.sum()).backward()
    assert x.grad.tolist() == [5.0, 5.0]  # 2 through the old version, 3 through the new one
    assert y_new.tolist() == [3.0, 6.0]


def test_a_cell_cannot_silently_take_a_package_name(ns):
    with origin_context(Origin("package", "pkg-a")):
        library.custom_op(f"{ns}::owned", lambda x: x)
    with origin_context(Origin("cell", "id:c", "cell [1] 'x'")), \
            pytest.raises(library.LibraryError, match="by package pkg-a and by cell \\[1\\] 'x'"):
        library.custom_op(f"{ns}::owned", lambda x: x)
    with origin_context(Origin("cell", "id:c", "cell [1] 'x'")):
        library.custom_op(f"{ns}::owned", lambda x: x + 1, replace=True)
    assert library.lookup(f"{ns}::owned").origin.kind == "cell"


def test_cell_ownership_releases_the_op_when_the_cell_runs_again(ns):
    from tinygrad_nb.notebook import ownership

    registry = ownership.CellRegistry()
    library.op_listeners.append(registry.auto_own)
    try:
        registry.start_cell("cell-9", "define op")
        library.custom_op(f"{ns}::owned_by_cell", lambda x: x)
        registry.end_cell()
        assert [entry.label for _, entries in registry.live() for entry in entries] == ["CustomOp"]
        registry.start_cell("cell-9", "define op")  # the re-run releases what the first run owned
        assert library.find(f"{ns}::owned_by_cell") is None
        registry.end_cell()
    finally:
        library.op_listeners.remove(registry.auto_own)


def test_list_shows_origin_devices_and_autograd(ns):
    make_softsign(ns)
    table = library.list(ns)
    assert [op.name for op in table] == [f"{ns}::softsign"]
    lines = str(table).splitlines()
    assert lines[0].split() == ["op", "origin", "devices", "autograd", "doc"]
    assert lines[2].split()[:6] == [f"{ns}::softsign", "module", __name__, "(test_library.py)", "any", "yes"]
    assert "<td>" + f"{ns}::softsign" + "</td>" in table._repr_html_()


# -- entry points ---------------------------------------------------------------------------------------------------
def _fake_distribution(root, dist: str, module: str, namespace: str, op_name: str) -> None:
    """An installed package as importlib.metadata sees it: a .dist-info with an entry point, and its module."""
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[tinygrad_nb.ops]\n{namespace} = {module}:register\n")
    (root / f"{module}.py").write_text(textwrap.dedent(f"""
        from tinygrad_nb import library
        LOADED = []
        def register():
            LOADED.append(1)
            library.custom_op("{op_name}", lambda x: x * 10)
    """))


def test_entry_points_load_lazily_on_first_use(tmp_path, monkeypatch, ns):
    _fake_distribution(tmp_path, f"pkg_{ns}", f"mod_{ns}", ns, f"{ns}::tenfold")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert library.find(f"{ns}::tenfold") is None  # nothing imported yet
    assert f"mod_{ns}" not in sys.modules
    y = getattr(library.ops, ns).tenfold(tg.tensor([1.5]))  # first use imports the package
    assert y.tolist() == [15.0]
    assert str(library.lookup(f"{ns}::tenfold").origin) == f"package pkg_{ns} (mod_{ns}:register)"
    getattr(library.ops, ns).tenfold(tg.tensor([1.0]))
    assert sys.modules[f"mod_{ns}"].LOADED == [1]  # loaded once


def test_two_installed_packages_with_one_name_fail_naming_both(tmp_path, monkeypatch, ns):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        _fake_distribution(tmp_path / d, f"pkg{d}_{ns}", f"mod{d}_{ns}", ns, f"{ns}::clash")
        monkeypatch.syspath_prepend(str(tmp_path / d))
    with pytest.raises(library.LibraryError, match=rf"{ns}::clash is registered twice: by package pkg\w_{ns} "
                                                   rf"\(mod\w_{ns}:register\) and by package pkg\w_{ns}"):
        library.lookup(f"{ns}::clash")


# -- export / runtime hooks -------------------------------------------------------------------------------------------
def test_export_info_and_kernel_for(ns):
    op = library.custom_op(f"{ns}::scale", lambda x, factor=1.0: x * factor)
    assert library.is_custom_op(f"{ns}::scale") and not library.is_custom_op("Mul")
    info = library.export_info(f"{ns}::scale", {"factor": 2.5})
    assert info == library.ExportInfo(ns, "scale", 1, {"factor": 2.5})
    kernel = library.kernel_for(ns, "scale")
    np.testing.assert_array_equal(kernel(np.array([1.0, 2.0]), **info.attributes), [2.5, 5.0])
    with pytest.raises(library.LibraryError, match=r"keyword argument factor=array\(\[1\]\) cannot be an ONNX"):
        library.export_info(op, {"factor": np.array([1])})
    library.custom_op(f"{ns}::cuda_only", lambda x: x, device_types="cuda")
    with pytest.raises(library.LibraryError, match=rf"{ns}::cuda_only has no kernel for 'cpu' \(it has: cuda\)"):
        library.kernel_for(ns, "cuda_only")


def test_traced_call_carries_name_and_attributes(ns):
    """What the exporter's dispatch observer sees: the op's name in the event and the keyword attributes in
    Function.apply's frame."""
    op = library.custom_op(f"{ns}::scale", lambda x, factor=1.0: x * factor)
    seen = []

    class Observer:
        def op_begin(self, event):
            frame = sys._getframe(1)
            seen.append((event.op, dict(frame.f_locals.get("kwargs") or {})))

        def op_end(self, event):
            pass

    with dispatch.add_observer(Observer()):
        op(tg.tensor([1.0]), factor=4.0)
    assert seen == [(f"{ns}::scale", {"factor": 4.0})]


def test_export_info_makes_a_valid_onnx_custom_domain_node_that_kernel_for_runs(ns):
    """The contract the exporter and the runtime use: a node in the op's domain, attributes from the keywords, and
    the registered kernel executing it."""
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    library.custom_op(f"{ns}::scale", lambda x, factor=1.0, mode="mul": x * factor if mode == "mul" else x + factor)
    info = library.export_info(f"{ns}::scale", {"factor": 2.5, "mode": "add"})
    node = helper.make_node(info.op_type, ["x"], ["y"], domain=info.domain, **info.attributes)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(info.domain, info.domain_version)])
    onnx.checker.check_model(model)
    loaded = onnx.load_from_string(model.SerializeToString()).graph.node[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in loaded.attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    kernel = library.kernel_for(loaded.domain, loaded.op_type)
    np.testing.assert_array_equal(kernel(np.array([1.0, 2.0], np.float32), **attrs), [3.5, 4.5])
    with pytest.raises(library.LibraryError, match="keyword argument 'name' cannot be exported"):
        library.export_info(f"{ns}::scale", {"name": "x"})


def test_list_cuts_a_long_doc_with_an_ellipsis() -> None:
    @library.custom_op("listdoc::long")
    def long_doc(x: np.ndarray) -> np.ndarray:
        """A deliberately long first line of documentation that does not fit in the column."""
        return x

    row = next(r for r in library.list().rows() if r["op"] == "listdoc::long")
    assert row["doc"] == "A deliberately long first line of documentation t…" and len(row["doc"]) == 50
