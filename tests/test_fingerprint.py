"""Run fingerprints: code (script or notebook cells), params, data files, environment; digest stability."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb.fingerprint import Fingerprint, fingerprint, hash_file, params_hash


class Model:
    def __init__(self, **tensors: tg.Tensor):
        self.tensors = tensors

    def state_dict(self) -> dict[str, tg.Tensor]:
        return dict(self.tensors)


def test_digest_is_stable_and_tracks_each_part(tmp_path: Path) -> None:
    model = Model(w=tg.randn(3, 3), b=tg.zeros(3))
    data = tmp_path / "train.csv"
    data.write_text("x,y\n1,2\n")
    base = fingerprint(model, code="print(1)", data=[data])
    assert fingerprint(model, code="print(1)", data=[data]).digest == base.digest
    assert len(base.digest) == 16 and int(base.digest, 16) >= 0
    assert fingerprint(model, code="print(2)", data=[data]).digest != base.digest
    model.tensors["b"].data[0] = 1.0
    changed = fingerprint(model, code="print(1)", data=[data])
    assert changed.digest != base.digest and changed.differences(base) == ["params"]
    data.write_text("x,y\n1,3\n")
    assert fingerprint(model, code="print(1)", data=[data]).differences(changed) == ["data"]


def test_parts_and_round_trip_through_dict() -> None:
    fp = fingerprint(Model(w=tg.ones(2, 2)), code="x = 1")
    d = fp.to_dict()
    assert set(d) == {"digest", "code", "params", "data", "environment"}
    assert d["code"] == {"origin": "given", "source": "x = 1", "xxh3_128": d["code"]["xxh3_128"]}
    assert d["params"]["tensors"] == 1 and d["params"]["bytes"] == 16
    env = d["environment"]
    assert env["numpy"] == np.__version__ and env["python"].endswith(sys.version.split()[0])
    assert env["tinygrad_nb"] == tg.__version__ and "mode" in env["determinism"] and env["devices"][0].startswith("cpu")
    assert "name" in env["blas"] and "cupy" in env
    json.dumps(d)  # plain data
    assert Fingerprint.from_dict(json.loads(json.dumps(d))) == fp
    assert fingerprint(code=False).code["xxh3_128"] is None


def test_params_hash_covers_names_dtypes_and_bytes() -> None:
    a = params_hash(Model(w=tg.zeros(4)))
    assert params_hash(Model(w=tg.zeros(4)))["xxh3_128"] == a["xxh3_128"]
    assert params_hash(Model(v=tg.zeros(4)))["xxh3_128"] != a["xxh3_128"]  # name
    assert params_hash(Model(w=tg.zeros(4, dtype=tg.float64)))["xxh3_128"] != a["xxh3_128"]  # dtype
    assert params_hash(Model(w=tg.zeros(2, 2)))["xxh3_128"] != a["xxh3_128"]  # shape, same bytes


def test_file_hash_is_cached_by_size_and_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "d.bin"
    f.write_bytes(b"a" * 1000)
    first = hash_file(f)
    opened: list[str] = []
    real_open = open

    def counting_open(path: str, *args: object, **kwargs: object) -> object:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    assert hash_file(f) == first and opened == []  # cached
    os.utime(f, ns=(first["mtime_ns"] + 10**9, first["mtime_ns"] + 10**9))
    assert hash_file(f)["xxh3_128"] == first["xxh3_128"] and len(opened) == 1  # re-read, same content


def test_data_part_moves_with_content_not_path(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.csv").write_text("1,2\n")
    (tmp_path / "b" / "x.csv").write_text("1,2\n")
    one = fingerprint(code="", data=[tmp_path / "a" / "x.csv"], environment=False)
    two = fingerprint(code="", data=[tmp_path / "b" / "x.csv"], environment=False)
    assert one.digest == two.digest and one.data["files"][0]["path"] != two.data["files"][0]["path"]


def test_code_from_ipython_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    shell = SimpleNamespace(user_ns={"In": ["", "import tinygrad_nb as tg", "model = make()"]})
    monkeypatch.setitem(sys.modules, "IPython", SimpleNamespace(get_ipython=lambda: shell))
    code = fingerprint(environment=False).code
    assert code["origin"] == "ipython cells" and code["source"] == "import tinygrad_nb as tg\n\nmodel = make()"


def test_code_from_the_running_script(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("from tinygrad_nb.fingerprint import fingerprint\n"
                      "c = fingerprint(environment=False).code\n"
                      "print(c['origin']); print(len(c['source']))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(script.resolve()), str(len(script.read_text()))]


def test_data_from_the_loaders_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    record = {"path": "/data/train.csv", "size": 10, "mtime_ns": 1, "xxh3_128": "ab" * 16}
    monkeypatch.setitem(sys.modules, "tinygrad_nb.data", SimpleNamespace(files_read=lambda: [record]))
    data = fingerprint(code=False, environment=False).data
    assert data["source"] == "tinygrad_nb.data" and data["files"] == [record]


# -- what can change bits: BLAS kernel, CPU, numpy SIMD, portable mode --------------------------------------------
def test_environment_records_the_blas_kernel_cpu_and_numpy_simd() -> None:
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    threadpoolctl = pytest.importorskip("threadpoolctl")
    env = fingerprint(code=False).environment
    live = [p for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
    assert [(t["api"], t["version"], t["architecture"], t["num_threads"]) for t in env["blas"]["threads"]] == \
        [(p["internal_api"], p["version"], p.get("architecture"), p["num_threads"]) for p in live]
    assert env["numpy_simd"]["enabled"] == [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]
    if Path("/proc/cpuinfo").exists():
        text = Path("/proc/cpuinfo").read_text()
        assert env["cpu"]["source"] == "/proc/cpuinfo" and env["cpu"]["model"] in text
        assert env["cpu"]["flags"] and all(f in text for f in env["cpu"]["flags"][:5])
    assert env["determinism"]["portable"] is False
    with tg.deterministic("portable"):
        assert fingerprint(code=False).environment["determinism"]["portable"] is True


def test_fingerprint_sees_the_emulated_machine() -> None:
    """OPENBLAS_CORETYPE and NPY_DISABLE_CPU_FEATURES (how the portable tests emulate other CPUs) show up."""
    pytest.importorskip("threadpoolctl")
    import platform

    from tinygrad_nb.fingerprint import environment_note

    probe = ("import json; from tinygrad_nb.fingerprint import bit_environment; print(json.dumps(bit_environment()))")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    default = json.loads(subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                                        check=True).stdout)
    if not default["blas_kernel"] or not default["blas_kernel"][0].startswith("openblas"):
        pytest.skip("numpy's BLAS is not OpenBLAS")
    other = "Nehalem" if not default["blas_kernel"][0].endswith("Nehalem") else "Sandybridge"
    env["OPENBLAS_CORETYPE"] = other
    if platform.machine().lower() in ("x86_64", "amd64") and default["numpy_simd"]:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(default["numpy_simd"])
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"OPENBLAS_CORETYPE={other} cannot run here")
    emulated = json.loads(done.stdout)
    assert emulated["blas_kernel"][0].endswith(other)
    if "NPY_DISABLE_CPU_FEATURES" in env:
        assert emulated["numpy_simd"] == []
    note = environment_note(emulated, default)  # recorded on the emulated machine, read on this one
    assert note.startswith("environment differs in ways that can change bits: ")
    assert f"BLAS kernel {emulated['blas_kernel'][0]} -> {default['blas_kernel'][0]}" in note


def test_environment_note_names_what_differs_and_the_portable_mode() -> None:
    from tinygrad_nb.fingerprint import bit_environment, environment_note

    now = bit_environment()
    assert environment_note(now) is None and environment_note(None) is None
    then = dict(now, blas_kernel=["openblas 0.3.0 Haswell"], numpy_simd=[], cpu_flags="0" * 32)
    kernel = " ".join(now["blas_kernel"] or ["None"])
    simd = " ".join(now["numpy_simd"]) or "none"
    assert environment_note(then, now) == (
        f"environment differs in ways that can change bits: CPU flags, numpy SIMD targets none -> {simd}, BLAS kernel "
        f"openblas 0.3.0 Haswell -> {kernel}; portable mode was off when recorded and is off now "
        "(deterministic('portable') gives the same bits on any CPU, BLAS kernel, thread count and SIMD level)")
    portable_now = dict(now, portable=True)
    assert environment_note(dict(then, portable=True), portable_now) == (
        f"environment differs: CPU flags, numpy SIMD targets none -> {simd}, BLAS kernel openblas 0.3.0 Haswell -> "
        f"{kernel} (portable mode was on both times: these do not change bits)")
    assert environment_note(dict(now, portable=True, numpy="1.0.0"), portable_now) == (
        f"environment differs in ways that can change bits: numpy version 1.0.0 -> {np.__version__}")
    assert environment_note({"numpy": np.__version__}, now) is None  # an older recording: only what it has


def test_load_warns_when_the_saving_environment_can_change_bits(tmp_path: Path) -> None:
    from tinygrad_nb.fingerprint import EnvironmentWarning

    model = tg.nn.Linear(3, 2)
    tg.save(tmp_path / "same.ckpt", model=model)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", EnvironmentWarning)
        assert tg.load(tmp_path / "same.ckpt", model=model).environment_note is None
    fp = fingerprint(model, code=False).to_dict()
    live = fp["environment"]["blas"]["threads"]
    fp["environment"]["blas"]["threads"] = [dict(t, architecture="Prescott") for t in live]
    fp["environment"]["determinism"]["portable"] = True
    if not fp["environment"]["blas"]["threads"]:
        pytest.skip("no BLAS reported by threadpoolctl")
    tg.save(tmp_path / "other.ckpt", model=model, fingerprint=fp)
    with pytest.warns(EnvironmentWarning, match=r"other\.ckpt: environment differs in ways that can change bits: "
                                                r"BLAS kernel .* Prescott -> .*; portable mode was on when recorded "
                                                r"and is off now"):
        ckpt = tg.load(tmp_path / "other.ckpt", model=model)
    assert "Prescott" in ckpt.environment_note


def test_cell_commits_record_the_environment_and_replay_names_what_differs(
        ipython: object, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("IPython")
    from cellckpt_helpers import recording_shell, run_ok

    from tinygrad_nb.fingerprint import bit_environment
    from tinygrad_nb.notebook import cellckpt
    from tinygrad_nb.notebook.cellckpt.trust import SECRET_ENV

    monkeypatch.setenv(SECRET_ENV, str(tmp_path / "secret"))
    shells = recording_shell(ipython, tmp_path)
    shell = next(shells)
    try:
        run_ok(shell, "import tinygrad_nb as tg\nw = tg.ones(2, 2) @ tg.ones(2, 2)", capsys)
        n = shell.execution_count - 1
        rec = cellckpt.recorder(shell)
        rec.wait()
        commit = rec.store.commits[rec.head]
        assert commit.manifest["environment"] == bit_environment()
        out = run_ok(shell, f"%tg_replay {n} --verify", capsys)
        assert "1/1 cells bitwise" in out and "note:" not in out
        commit.manifest["environment"] = dict(commit.manifest["environment"], numpy_simd=["AVX512_SPR"])
        out = run_ok(shell, f"%tg_replay {n} --verify", capsys)
        assert f"note: commit #{commit.seq}: environment differs in ways that can change bits: numpy SIMD targets " \
               f"AVX512_SPR -> {' '.join(bit_environment()['numpy_simd']) or 'none'}; portable mode was off when " \
               "recorded and is off now" in out
    finally:
        next(shells, None)
