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
