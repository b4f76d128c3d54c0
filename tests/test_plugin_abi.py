"""C plugins: the tgnb_plugin.h ABI rules, the example plugin (values, gradients, errors), the build cache, the
%%tg_kernel magic, the example package installed through its entry point, and its cuda kernel (with a GPU)."""
from __future__ import annotations

import itertools
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb import library
from tinygrad_nb.library import builder as build_module

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "extensions" / "tgnb_fused_ops"
EXAMPLE_SOURCE = EXAMPLE / "src" / "tgnb_fused_ops" / "fused_ops.c"
C = 0.7978845608028654

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None and shutil.which("gcc") is None,
                                reason="no C compiler")
_counter = itertools.count()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private build cache per test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("TINYGRAD_NB_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def fused(cache):
    """The example plugin, built from its source with tg.library.build; unregistered afterwards."""
    plugin = library.build(EXAMPLE_SOURCE, name="fused_ops", replace=True)
    yield plugin.ops[0]
    for op in plugin.ops:
        op.remove()


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return 0.5 * x * (1 + np.tanh(C * (x + 0.044715 * x**3)))


def gelu_tanh_grad(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    t = np.tanh(C * (x + 0.044715 * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * C * (1 + 3 * 0.044715 * x * x)


def plugin_source(major: str = "TGNB_ABI_MAJOR", minor: str = "TGNB_ABI_MINOR", plugin_size: str = "sizeof(tgnb_plugin)",
                  op_size: str = "sizeof(tgnb_op)", name: str = "abi::twice", init_body: str = "return &plugin;",
                  extra_plugin_fields: str = "", extra_op_fields: str = "") -> str:
    """A small plugin (y = 2x, and an op that always fails) whose table fields a test can change."""
    return f"""
#include "tgnb_plugin.h"
TGNB_DEFINE_ERRORS()
static int32_t twice(const DLTensor *const *in, int32_t n_in, DLTensor *const *out, int32_t n_out) {{
    const double *x = tgnb_data(in[0]); double *y = tgnb_data(out[0]);
    if (!tgnb_is_dtype(in[0], kDLFloat, 64)) return tgnb_fail("abi::twice wants float64");
    for (int64_t i = 0; i < tgnb_numel(in[0]); ++i) y[i] = 2 * x[i];
    return 0;
}}
static int32_t fails(const DLTensor *const *in, int32_t n_in, DLTensor *const *out, int32_t n_out) {{
    return tgnb_fail("the plugin says no: input too spicy");
}}
static int32_t bad_shape(const DLTensor *const *in, int32_t n_in, DLTensor *const *out, int32_t n_out) {{
    return tgnb_fail("shape function refuses");
}}
typedef struct {{ tgnb_op base; {extra_op_fields} }} op_v;
typedef struct {{ tgnb_plugin base; {extra_plugin_fields} }} plugin_v;
static const op_v op0 = {{{{ {op_size}, "{name}", 1, 1, tgnb_shape_like_input0, twice, NULL, "y = 2x" }}}};
static const op_v op1 = {{{{ {op_size}, "{name}_fails", 1, 1, tgnb_shape_like_input0, fails, NULL, NULL }}}};
static const op_v op2 = {{{{ {op_size}, "{name}_bad_shape", 1, 1, bad_shape, twice, NULL, NULL }}}};
static const tgnb_op *const ops[] = {{&op0.base, &op1.base, &op2.base}};
static const plugin_v plugin_ = {{{{ {plugin_size}, {major}, {minor}, "abi_test", "0.1", 3, ops, tgnb_last_error }}}};
#define plugin plugin_.base
TGNB_EXPORT const tgnb_plugin *tgnb_plugin_init(uint32_t host_major, uint32_t host_minor) {{
    (void)host_major; (void)host_minor; {init_body}
}}
"""


def build_test_plugin(**fields):
    name = f"abi{next(_counter)}::twice"
    plugin = library.build(plugin_source(name=name, **fields), name="abi_test", replace=True)
    return plugin, name


# -- the example plugin ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, atol", [(np.float32, 2e-6), (np.float64, 1e-14)])
def test_fused_gelu_values_match_numpy(fused, dtype, atol):
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.standard_normal(10_000) * 4, [0.0, -0.0, 1e-30, 30.0, -30.0, 1e4]]).astype(dtype)
    y = fused(tg.tensor(data))
    assert y.dtype == tg.float32 if dtype is np.float32 else y.dtype == tg.float64
    np.testing.assert_allclose(y.numpy(), gelu_tanh(data), rtol=1e-5 if dtype is np.float32 else 1e-13, atol=atol)


def test_fused_gelu_propagates_nan_and_inf(fused):
    y = fused(tg.tensor(np.array([np.nan, np.inf, -1.0], np.float32))).numpy()
    assert np.isnan(y[0]) and y[1] == np.inf and y[2] == pytest.approx(gelu_tanh(np.array([-1.0]))[0], rel=1e-6)


def test_fused_gelu_gradients_vs_finite_differences_and_numpy(fused):
    assert tg.gradcheck(fused, [tg.tensor(np.linspace(-4, 4, 17))])
    data = np.random.default_rng(1).standard_normal((64, 33)).astype(np.float32)
    x = tg.tensor(data, requires_grad=True)
    g = np.random.default_rng(2).standard_normal(data.shape).astype(np.float32)
    fused(x).backward(tg.tensor(g))
    assert x.grad.dtype == tg.float32
    np.testing.assert_allclose(x.grad.numpy(), g * gelu_tanh_grad(data), rtol=1e-5, atol=1e-6)


def test_fused_gelu_matches_the_composition_of_primitives(fused):
    data = np.random.default_rng(3).standard_normal(1000).astype(np.float32)
    x1 = tg.tensor(data, requires_grad=True)
    x2 = tg.tensor(data, requires_grad=True)
    fused(x1).sum().backward()
    (0.5 * x2 * (1 + ((x2 + 0.044715 * x2 * x2 * x2) * C).tanh())).sum().backward()
    np.testing.assert_allclose(x1.grad.numpy(), x2.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_fused_gelu_passes_opcheck(fused):
    report = library.opcheck(fused, [tg.randn(3, 4), tg.randn(7, dtype=tg.float64)])
    assert {k: v for k, v in report.results.items() if k != "devices"} == {
        "schema": "ok", "no_mutation": "ok", "gradient": "ok", "dtype": "ok", "deterministic": "ok"}


def test_plugin_error_becomes_a_python_exception_with_the_plugins_message(fused):
    with pytest.raises(library.PluginError, match=r"fused::gelu_tanh \(forward, plugin tgnb_fused_ops\): "
                                                  r"fused::gelu_tanh: expected a float32 or float64 tensor"):
        fused(tg.tensor([1, 2, 3]))
    assert fused(tg.tensor([1.0])).numpy()[0] == pytest.approx(gelu_tanh(np.array([1.0]))[0])  # still works after


def test_non_contiguous_and_read_only_inputs_are_copied_not_refused(fused):
    data = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    view = tg.tensor(data).permute(1, 0)
    np.testing.assert_allclose(fused(view).numpy(), gelu_tanh(data.T), rtol=1e-13)
    frozen = data.copy()
    frozen.flags.writeable = False
    np.testing.assert_allclose(fused(tg.from_numpy(frozen)).numpy(), gelu_tanh(data), rtol=1e-13)


def test_plugin_op_goes_through_dispatch_and_the_profiler(fused):
    assert library.dispatch_table().count("fused::gelu_tanh[cpu] (C plugin)") == 1
    with tg.profile() as prof:
        fused(tg.randn(4, requires_grad=True)).sum().backward()
    assert "fused::gelu_tanh" in str(prof.summary())
    assert str(fused.origin) == "plugin tgnb_fused_ops (fused_ops.so)"  # the file, without the cache key


# -- ABI rules ----------------------------------------------------------------------------------------------------------
def test_a_plugin_claiming_a_future_major_version_is_refused_naming_both(cache):
    before = {name: op for name, op in library.registry._registry.items()}
    with pytest.raises(library.ABIError, match=r"was built for tinygrad_nb plugin ABI 2\.0, but this host speaks "
                                               r"ABI 1\.0: the major versions must match"):
        library.build(EXAMPLE_SOURCE, name="future", defines={"TGNB_ABI_MAJOR": 2})
    assert library.registry._registry == before  # nothing registered from a refused plugin


def test_a_newer_minor_with_larger_structs_loads(cache):
    plugin, name = build_test_plugin(minor="7", plugin_size="sizeof(plugin_v)", op_size="sizeof(op_v)",
                                     extra_plugin_fields="int64_t added_in_1_7; const char *also;",
                                     extra_op_fields="double future_field;")
    assert plugin.abi == (1, 7)
    assert library.lookup(name)(tg.tensor([1.5], dtype=tg.float64)).tolist() == [3.0]


def test_struct_size_below_abi_1_0_is_refused(cache):
    with pytest.raises(library.ABIError, match=r"plugin .*: struct_size is 8 bytes, but ABI 1\.0 needs at least"):
        build_test_plugin(plugin_size="8")
    with pytest.raises(library.ABIError, match=r"plugin abi_test, op 0: struct_size is 12 bytes"):
        build_test_plugin(op_size="12")


def test_a_plugin_may_refuse_the_host(cache):
    with pytest.raises(library.ABIError, match=r"refused this host \(plugin ABI 1\.0\): tgnb_plugin_init returned "
                                               r"NULL"):
        build_test_plugin(init_body="return NULL;")


def test_a_library_without_the_init_function_is_not_a_plugin(cache):
    path = library.build("int not_a_plugin(void) { return 1; }", name="notplugin", load=False)
    with pytest.raises(library.PluginError, match=r"is not a tinygrad_nb plugin: it exports no tgnb_plugin_init"):
        library.load_plugin(path)
    with pytest.raises(library.PluginError, match=r"cannot load plugin /nonexistent\.so"):
        library.load_plugin("/nonexistent.so")


def test_failing_forward_and_shape_functions_raise_their_messages(cache):
    plugin, name = build_test_plugin()
    with pytest.raises(library.PluginError, match=r"_fails \(forward, plugin abi_test\): the plugin says no: "
                                                  r"input too spicy"):
        library.lookup(name + "_fails")(tg.tensor([1.0]))
    with pytest.raises(library.PluginError, match=r"_bad_shape \(shape function, plugin abi_test\): shape function "
                                                  r"refuses"):
        library.lookup(name + "_bad_shape")(tg.tensor([1.0]))
    with pytest.raises(library.PluginError, match=r"twice \(forward, plugin abi_test\): abi::twice wants float64"):
        library.lookup(name)(tg.tensor([1.0], dtype=tg.float32))
    with pytest.raises(RuntimeError, match="is not differentiable"):
        library.lookup(name)(tg.tensor([1.0], dtype=tg.float64, requires_grad=True)).sum().backward()


def test_the_header_is_clean_c99(tmp_path):
    source = tmp_path / "h.c"
    source.write_text('#include "tgnb_plugin.h"\nint main(void) { return (int)sizeof(tgnb_plugin) == 0; }\n')
    compiler = build_module.compiler()
    done = subprocess.run([*compiler, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                           f"-I{build_module.header_dir()}", str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_python_mirror_of_the_structs_matches_the_header(tmp_path):
    """ctypes' offsets and sizes are the C compiler's (the table the host reads is the table the plugin wrote)."""
    from tinygrad_nb.library import plugin as p

    fields = [("DLTensor", p.DLTensor), ("tgnb_op", p.OpTable), ("tgnb_plugin", p.PluginTable)]
    lines = ['#include <stdio.h>', '#include "tgnb_plugin.h"', "int main(void) {"]
    for cname, cls in fields:
        lines.append(f'printf("{cname} %zu\\n", sizeof({cname}));')
        for fname, _ in cls._fields_:
            lines.append(f'printf("{cname}.{fname} %zu\\n", offsetof({cname}, {fname}));')
    lines.append("return 0; }")
    (tmp_path / "m.c").write_text("\n".join(lines))
    subprocess.run([*build_module.compiler(), "-std=c99", f"-I{build_module.header_dir()}", str(tmp_path / "m.c"),
                    "-o", str(tmp_path / "m")], check=True)
    printed = dict(line.rsplit(" ", 1) for line in subprocess.run([str(tmp_path / "m")], capture_output=True,
                                                                   text=True, check=True).stdout.splitlines())
    for cname, cls in fields:
        assert int(printed[cname]) == ctypes_sizeof(cls)
        for fname, _ in cls._fields_:
            assert int(printed[f"{cname}.{fname}"]) == getattr(cls, fname).offset, (cname, fname)


def ctypes_sizeof(cls) -> int:
    import ctypes

    return ctypes.sizeof(cls)


# -- the build cache ----------------------------------------------------------------------------------------------------
def test_cache_is_private_keyed_and_reused(cache, monkeypatch):
    path = library.build(plugin_source(name="cache::a"), name="k", load=False)
    assert path.parent == cache / "plugins" and stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700 and os.stat(path).st_uid == os.getuid()
    assert library.build(plugin_source(name="cache::a"), name="k", load=False) == path  # same key: reused
    assert library.build(plugin_source(name="cache::a"), name="k", flags=["-O1"], load=False) != path  # flags
    assert library.build(plugin_source(name="cache::b"), name="k", load=False) != path  # source

    def no_compiler(*args, **kwargs):
        raise AssertionError("compiled although the cache had it")

    monkeypatch.setattr(build_module, "_compile", no_compiler)
    assert library.build(plugin_source(name="cache::a"), name="k", load=False) == path


def test_cache_key_includes_abi_version_and_compiler(monkeypatch):
    text, flags, cc = "int x;", ["-O2"], build_module.compiler()
    key = build_module.cache_key(text, flags, cc)
    monkeypatch.setattr(build_module, "HOST_ABI_MINOR", 99)
    assert build_module.cache_key(text, flags, cc) != key
    monkeypatch.undo()
    monkeypatch.setattr(build_module, "compiler_identity", lambda command: "another compiler 1.0")
    assert build_module.cache_key(text, flags, cc) != key


def test_a_tampered_cached_library_is_rebuilt_not_loaded(cache, monkeypatch):
    path = library.build(plugin_source(name="cache::t"), name="t", load=False)
    good = path.read_bytes()
    path.write_bytes(good[:-16] + b"\0" * 16)  # same size, different bytes: the recorded hash no longer matches
    compiled = []
    real = build_module._compile
    monkeypatch.setattr(build_module, "_compile", lambda *a: compiled.append(1) or real(*a))
    assert library.build(plugin_source(name="cache::t"), name="t", load=False) == path
    assert compiled == [1] and path.read_bytes() == good


def test_a_cache_folder_others_can_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(library.CacheError, match=r"has mode 0777: other users could write libraries into it; "
                                                 r"refusing to use it. Fix it with: chmod 700"):
        library.build(plugin_source(), cache=shared)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    with pytest.raises(library.CacheError, match="is not a plain folder"):
        library.build(plugin_source(), cache=link)


def test_a_cached_library_writable_by_others_is_refused(cache):
    path = library.build(plugin_source(name="cache::w"), name="w", load=False)
    path.chmod(0o666)
    with pytest.raises(library.CacheError, match="is not a regular file private to this user; refusing to load it"):
        library.build(plugin_source(name="cache::w"), name="w", load=False)


def test_compiler_errors_name_the_callers_file_and_line(cache):
    source = "#include \"tgnb_plugin.h\"\nint f(void) {\n    return undefined_name;\n}\n"
    with pytest.raises(library.CompileError, match=r"compiling cell \[7\] failed:\n(.|\n)*cell \[7\]:4:12: error: "
                                                   r"'undefined_name' undeclared|cell \[7\]:4:12: error: "):
        library.build(source, display_name="cell [7]", first_line=2)


# -- %%tg_kernel --------------------------------------------------------------------------------------------------------
SOFTSIGN = r"""
static int32_t forward(const DLTensor *const *in, int32_t n_in, DLTensor *const *out, int32_t n_out) {
    if (!tgnb_is_dtype(in[0], kDLFloat, 64)) return tgnb_fail("softsign: float64 only");
    const double *x = tgnb_data(in[0]);
    double *y = tgnb_data(out[0]);
    for (int64_t i = 0; i < tgnb_numel(in[0]); ++i) y[i] = x[i] / (1.0 + fabs(x[i]));
    return 0;
}
static int32_t backward(const DLTensor *const *g, int32_t n_out, const DLTensor *const *in, int32_t n_in,
                        DLTensor *const *gi) {
    const double *x = tgnb_data(in[0]), *gg = tgnb_data(g[0]);
    double *d = tgnb_data(gi[0]);
    for (int64_t i = 0; i < tgnb_numel(in[0]); ++i) { double a = 1.0 + fabs(x[i]); d[i] = gg[i] / (a * a); }
    return 0;
}
"""


@pytest.fixture
def shell(cache, ipython):
    """The conftest's in-process IPython with the tinygrad_nb extension and %%tg_kernel loaded."""
    from tinygrad_nb.notebook import extension, kernel_magic, ownership

    extension.load_ipython_extension(ipython)
    kernel_magic.load_ipython_extension(ipython)
    ipython.user_ns["tg"] = tg
    yield ipython
    ownership.registry.release_all()
    kernel_magic.unload_ipython_extension(ipython)
    extension.unload_ipython_extension(ipython)
    for op in library.list():
        if op.namespace.startswith("cellk"):
            op.remove()


def test_tg_kernel_compiles_registers_and_opchecks(shell, capsys):
    name = f"cellk{next(_counter)}::softsign"
    result = shell.run_cell(f"%%tg_kernel {name}\n{SOFTSIGN}", store_history=True)
    assert result.error_in_exec is None, result.error_in_exec
    report = result.result
    assert report.results["gradient"] == "ok" and report.results["no_mutation"] == "ok"
    assert report.results["dtype"].startswith("ok; float32 refused with PluginError")
    assert "registered " + name + " (C, cell [" in capsys.readouterr().out
    op = library.lookup(name)
    assert op.origin.kind == "cell"
    data = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(op(tg.tensor(data)).numpy(), data / (1 + np.abs(data)), rtol=1e-15)


def test_tg_kernel_rerun_replaces_the_op(shell):
    name = f"cellk{next(_counter)}::f"
    cell = f"%%tg_kernel {name} --no-check\n" + SOFTSIGN
    shell.run_cell(cell, store_history=True, cell_id="kernel-cell")
    first = library.lookup(name)
    x = tg.tensor([1.0], dtype=tg.float64, requires_grad=True)
    y_old = first(x)
    shell.run_cell(cell.replace("x[i] / (1.0", "2 * x[i] / (1.0"), store_history=True, cell_id="kernel-cell")
    assert library.lookup(name) is not first and first.removed
    y_old.backward()  # made by the replaced version: still backprops through its own kernel
    assert x.grad.tolist() == [0.25]
    assert library.lookup(name)(tg.tensor([1.0], dtype=tg.float64)).tolist() == [1.0]


def test_tg_kernel_compiler_errors_use_the_cells_line_numbers(shell, capsys):
    name = f"cellk{next(_counter)}::bad"
    cell = ("%%tg_kernel " + name + "\n"
            "static int32_t forward(const DLTensor *const *in, int32_t n, DLTensor *const *out, int32_t m) {\n"
            "    return undefined_thing;\n"
            "}\n")
    shell.run_cell(cell, store_history=True)
    err = capsys.readouterr()
    text = err.out + err.err
    assert "UsageError: %%tg_kernel " + name + ": compiling cell [" in text
    assert "]:3:12: error: " in text and "undefined_thing" in text  # line 3 of the cell, counting the magic line


def test_tg_kernel_without_forward_is_a_usage_error(shell, capsys):
    shell.run_cell("%%tg_kernel cellk::nothing\nint x;\n", store_history=True)
    captured = capsys.readouterr()
    assert "the cell must define forward(...)" in captured.out + captured.err


# -- the example package, installed ----------------------------------------------------------------------------------------
def test_example_package_installs_and_registers_through_its_entry_point(tmp_path, cache):
    pytest.importorskip("setuptools")
    target = tmp_path / "site"
    package = tmp_path / "tgnb_fused_ops"  # a copy: pip builds in the source folder, and the tree stays clean
    shutil.copytree(EXAMPLE, package, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    env = {**os.environ, "TGNB_PLUGIN_INCLUDE": str(build_module.header_dir())}
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "--target", str(target), str(package)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    script = (
        "import sys, numpy as np, tinygrad_nb as tg\n"
        "from tinygrad_nb import library\n"
        "assert library.find('fused::gelu_tanh') is None\n"
        "op = library.ops.fused.gelu_tanh\n"
        "x = tg.tensor(np.linspace(-3, 3, 13), requires_grad=True)\n"
        "op(x).sum().backward()\n"
        "print(op.origin)\n"
        "print(float(abs(op(tg.tensor([1.0])).numpy()[0] - 0.8411919906082768)) < 1e-12)\n"
        "print(tg.gradcheck(op, [tg.tensor(np.linspace(-2, 2, 5))]))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["package tgnb-fused-ops (tgnb_fused_ops:register)", "True", "True"]


# -- cuda --------------------------------------------------------------------------------------------------------------
def test_cuda_raw_kernel_matches_cpu(fused):
    cupy = pytest.importorskip("cupy")
    if not tg.is_cuda_available():
        pytest.skip("no GPU")
    sys.path.insert(0, str(EXAMPLE / "src"))
    try:
        from tgnb_fused_ops import cuda
    finally:
        sys.path.remove(str(EXAMPLE / "src"))
    assert cuda.register()
    report = library.opcheck(fused, [tg.randn(5, 6), tg.randn(4, dtype=tg.float64)])
    assert report.results["devices"] == "ok"
    data = np.random.default_rng(4).standard_normal(4096).astype(np.float32)
    x = tg.tensor(data, device="cuda", requires_grad=True)
    fused(x).sum().backward()
    np.testing.assert_allclose(cupy.asnumpy(x.grad.data), gelu_tanh_grad(data), rtol=1e-5, atol=1e-6)


def test_scalar_and_empty_tensors_cross_the_abi(fused):
    assert fused(tg.zeros(0)).shape == (0,) and fused(tg.zeros(2, 0, 3)).shape == (2, 0, 3)
    x = tg.tensor(2.0, dtype=tg.float64, requires_grad=True)
    y = fused(x)
    y.backward()
    assert y.shape == () and y.item() == pytest.approx(gelu_tanh(np.array(2.0)), rel=1e-14)
    assert x.grad.item() == pytest.approx(gelu_tanh_grad(np.array(2.0)), rel=1e-14)


def test_plugin_calls_from_several_threads_agree(fused):
    """ctypes releases the GIL during the C call: errors are thread-local and results independent."""
    from concurrent.futures import ThreadPoolExecutor

    data = [np.random.default_rng(i).standard_normal(50_000).astype(np.float32) for i in range(8)]

    def work(i: int) -> bool:
        ok = np.allclose(fused(tg.tensor(data[i])).numpy(), gelu_tanh(data[i]), rtol=1e-5, atol=2e-6)
        try:
            fused(tg.tensor([i]))
        except library.PluginError as e:
            return ok and "expected a float32 or float64 tensor" in str(e)
        return False

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(8)))
