"""The JupyterLab server extension (tinygrad_nb.labext): what its readers return for real stores (and damaged ones),
path confinement, and the REST handlers in a real jupyter_server on 127.0.0.1: auth required, traversal refused,
read-only, nothing unpickled. Also the packaging: the built Lab extension is where the wheel installs it from."""
from __future__ import annotations

import gzip
import json
import math
import os
import pickle
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tinygrad_nb import track
from tinygrad_nb.labext import readers

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tinygrad-nb-lab-server-test"


# -- fixtures -------------------------------------------------------------------------------------------------------
def make_runs(folder: Path) -> tuple[str, str]:
    """Two real runs in folder/.tinygrad_nb/runs.db: "base" (lr 0.1, 30 steps, finished) and "hot" (lr 0.5, a NaN
    at step 7, status nan). Returns their ids."""
    db = folder / readers.RUNS_DB
    with track.Run(name="base", config={"lr": 0.1, "opt": {"name": "sgd"}}, store=db) as a:
        for step in range(30):
            a.log({"loss": 1.0 / (step + 1), "acc": step / 30})
    with track.Run(name="hot", config={"lr": 0.5, "opt": {"name": "sgd"}}, store=db) as b:
        for step in range(10):
            b.log({"loss": math.nan if step == 7 else 2.0 - step * 0.1})
    track.flush_all()
    return a.id, b.id


def raw_sql(db: Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    conn = sqlite3.connect(str(db))
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def write_manifest(store: Path, seq: int, manifest: dict[str, Any] | bytes) -> Path:
    path = store / "commits" / f"c{seq:06d}.json.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode() + b"\nsignature-line\n"
    path.write_bytes(gzip.compress(body))
    return path


def manifest(seq: int, source: str, **cell: Any) -> dict[str, Any]:
    from tinygrad_nb.notebook.cellckpt.store import FORMAT_NAME

    return {"format": FORMAT_NAME, "format_version": 3, "seq": seq, "parent": seq - 1 if seq > 1 else None,
            "pack_bytes": 100 * seq, "created": "2026-01-01T00:00:00+00:00",
            "cell": {"id": f"cell-{seq}", "execution_count": seq + 1, "source": source, "success": True,
                     "error": None, **cell},
            "variables": {"x": {}, "y": {}}, "lost": {"gen": {"why": "a generator", "cell": seq + 1}},
            "skeleton": "0" * 32, "blobs": {}}


def refuse_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on in the test, any unpickling (pickle.load/loads, also under their C names) fails it."""
    import _pickle  # noqa: PLC0415

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the server unpickled something")

    for module in (pickle, _pickle):
        monkeypatch.setattr(module, "loads", refuse)
        monkeypatch.setattr(module, "load", refuse)


# -- path confinement -----------------------------------------------------------------------------------------------
def test_resolve_inside_accepts_paths_under_the_root(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert readers.resolve_inside(tmp_path, "") == tmp_path.resolve()
    assert readers.resolve_inside(tmp_path, "a/b") == (tmp_path / "a" / "b").resolve()
    assert readers.resolve_inside(tmp_path, "a/../a/b/nb.ipynb") == (tmp_path / "a" / "b" / "nb.ipynb").resolve()


@pytest.mark.parametrize(("relative", "message"), [
    ("..", "'..' leads outside the server's root directory"),
    ("a/../../x", "'a/../../x' leads outside the server's root directory"),
    ("/etc", "'/etc': must be relative to the server's root directory"),
    ("C:/x", "'C:/x': must be relative to the server's root directory"),
    ("a\\..\\..", "NUL bytes and backslashes are not allowed"),
    ("a\x00b", "NUL bytes and backslashes are not allowed"),
])
def test_resolve_inside_refuses_traversal(tmp_path: Path, relative: str, message: str) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(readers.PathRefused) as info:
        readers.resolve_inside(tmp_path, relative, "dir")
    assert str(info.value).startswith("dir ") and message in str(info.value)


def test_resolve_inside_refuses_a_symlink_leading_out(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "escape").symlink_to(outside, target_is_directory=True)
    with pytest.raises(readers.PathRefused, match="'escape/x' leads outside"):
        readers.resolve_inside(root, "escape/x")


# -- readers on real and damaged stores -----------------------------------------------------------------------------
def test_list_runs_reads_a_real_store(tmp_path: Path) -> None:
    base, hot = make_runs(tmp_path)
    runs = readers.list_runs(tmp_path / readers.RUNS_DB)
    assert [r["id"] for r in runs] == [hot, base]  # newest first
    by_id = {r["id"]: r for r in runs}
    assert by_id[base]["status"] == "finished" and by_id[hot]["status"] == "nan"
    assert by_id[base]["config"] == {"lr": 0.1, "opt.name": "sgd"}
    assert by_id[base]["last"] == {"acc": 29 / 30, "loss": 1 / 30} and by_id[base]["last_step"] == 29
    assert by_id[hot]["last"]["loss"] == pytest.approx(2.0 - 9 * 0.1) and by_id[hot]["nonfinite"] == []
    json.dumps(runs, allow_nan=False)  # strict JSON: what the handler sends
    assert readers.list_runs(tmp_path / "absent.db") == []


def test_list_runs_tolerates_malformed_rows(tmp_path: Path) -> None:
    base, _ = make_runs(tmp_path)
    db = tmp_path / readers.RUNS_DB
    raw_sql(db, "INSERT INTO runs (id, name, status, start_time) VALUES ('broken', 'b', 'weird', 5.0)")
    raw_sql(db, "INSERT OR REPLACE INTO config VALUES (?, 'lr', 'not json')", (base,))
    raw_sql(db, "INSERT INTO metrics VALUES (?, 'loss', 3, 0, 2, X'00', X'00', X'00')", (base,))
    readers._cache.clear()
    runs = {r["id"]: r for r in readers.list_runs(db)}
    assert runs["broken"]["status"] == "damaged"
    assert runs["broken"]["damage"] == ["status 'weird' is unknown"]
    assert runs[base]["status"] == "damaged"
    assert any("config 'lr'" in d for d in runs[base]["damage"]), runs[base]["damage"]
    assert "1 metric chunk damaged" in runs[base]["damage"]
    assert runs[base]["last"] == {"acc": 29 / 30, "loss": 1 / 30}  # the good chunks still read
    assert runs[base]["config"] == {"opt.name": "sgd"}  # the bad key left out
    json.dumps(list(runs.values()), allow_nan=False)


def test_run_series_downsamples_and_sends_nan_as_null(tmp_path: Path) -> None:
    base, hot = make_runs(tmp_path)
    runs = readers.run_series(tmp_path / readers.RUNS_DB, [base[:5], hot], max_points=4)
    assert [r["id"] for r in runs] == [base, hot]
    loss = runs[0]["metrics"]["loss"]
    assert loss["steps"] == [0, 10, 19, 29]  # first and last kept, evenly spaced
    assert loss["values"] == [1.0, 1 / 11, 1 / 20, 1 / 30]
    hot_loss = readers.run_series(tmp_path / readers.RUNS_DB, [hot])[0]["metrics"]["loss"]
    assert hot_loss["steps"] == list(range(10)) and hot_loss["values"][7] is None
    with pytest.raises(track.UnknownRunError, match="run 'nope' not found"):
        readers.run_series(tmp_path / readers.RUNS_DB, ["nope"])


def test_list_commits_reads_manifests_and_skips_damaged_ones(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "ckpt"
    write_manifest(store, 1, manifest(1, "\n\nx = 1\ny = 2"))
    write_manifest(store, 2, manifest(2, "x += 1", success=False, error="ValueError: boom"))
    write_manifest(store, 3, b"\x00not json")
    write_manifest(store, 4, {"format": "something else", "seq": 4})
    (store / "commits" / "c000005.json.gz").write_bytes(b"not gzip")
    (store / "packs").mkdir()
    (store / "packs" / "p000001.safetensors").write_bytes(b"x" * 123)
    refuse_unpickling(monkeypatch)
    out = readers.list_commits(store)
    assert [c["seq"] for c in out["commits"]] == [1, 2]
    first, second = out["commits"]
    assert first["source"] == "x = 1" and first["cell_id"] == "cell-1" and first["execution_count"] == 2
    assert first["lost"] == {"gen": 2} and first["variables"] == 2 and first["bytes"] == 100
    assert second["ok"] is False and second["error"] == "ValueError: boom"
    assert [d["file"] for d in out["damaged"]] == ["c000003.json.gz", "c000004.json.gz", "c000005.json.gz"]
    assert "not a tinygrad_nb cell checkpoint manifest" in out["damaged"][1]["why"]
    assert out["bytes"] == 123
    assert readers.list_commits(tmp_path / "absent") == {"commits": [], "damaged": [], "bytes": 0}


def test_list_commits_of_a_recorded_notebook(ipython: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Commits a real recorder wrote (in the folder the server derives from the notebook's path)."""
    pytest.importorskip("IPython")
    from cellckpt_helpers import recording_shell, run_ok  # noqa: PLC0415

    shells = recording_shell(ipython, tmp_path)
    ip = next(shells)
    try:
        from tinygrad_nb.notebook import cellckpt  # noqa: PLC0415

        rec = cellckpt.recorder(ip)
        rec.set_root(readers.checkpoint_dir(tmp_path / "my nb.ipynb"))
        run_ok(ip, "import tinygrad_nb as tg\nx = tg.ones(3)", capsys)
        run_ok(ip, "x.mul_(2)", capsys)
        rec.wait()
    finally:
        next(shells, None)
    refuse_unpickling(monkeypatch)
    out = readers.list_commits(readers.checkpoint_dir(tmp_path / "my nb.ipynb"))
    assert [(c["seq"], c["source"], c["ok"]) for c in out["commits"]] == [(1, "import tinygrad_nb as tg", True),
                                                                         (2, "x.mul_(2)", True)]
    assert out["damaged"] == [] and out["bytes"] > 0


# -- the REST handlers in a real server -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    pytest.importorskip("jupyter_server")
    tmp = tmp_path_factory.mktemp("labserver")
    root = tmp / "root"
    (root / "sub").mkdir(parents=True)
    (tmp / "secret").mkdir()
    (root / "escape").symlink_to(tmp / "secret", target_is_directory=True)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_DATA_DIR=str(tmp / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), PYTHONWARNINGS="ignore")
    port = _free_port()
    command = [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
               f"--ServerApp.root_dir={root}", "--ServerApp.jpserver_extensions={'tinygrad_nb.labext': True}"]
    log = open(tmp / "server.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            _get(base, "/api/status")
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"jupyter_server did not start; log:\n{(tmp / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)
    yield base, root
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _get(base: str, path: str, token: str | None = TOKEN, method: str = "GET") -> Any:
    headers = {"Authorization": f"token {token}"} if token else {}
    request = urllib.request.Request(f"{base}{path}", method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _status(base: str, path: str, token: str | None = TOKEN, method: str = "GET") -> tuple[int, str]:
    try:
        _get(base, path, token, method)
    except urllib.error.HTTPError as e:
        body = e.read().decode()
        try:
            return e.code, json.loads(body).get("message", "")
        except ValueError:
            return e.code, body
    return 200, ""


API = "/tinygrad-nb/api"


def test_rest_runs_and_series(server: tuple[str, Path]) -> None:
    base, root = server
    a, b = make_runs(root / "sub")
    reply = _get(base, f"{API}/runs?dir=sub")
    assert reply["exists"] is True and reply["store"] == ".tinygrad_nb/runs.db"
    assert [r["id"] for r in reply["runs"]] == [b, a]
    assert reply["runs"][1]["last"]["loss"] == 1 / 30
    series = _get(base, f"{API}/runs/series?dir=sub&ids={a},{b}&points=3")["runs"]
    assert series[0]["metrics"]["loss"]["steps"] == [0, 14, 29]
    assert series[1]["metrics"]["loss"]["steps"] == [0, 4, 9]  # round(4.5) == 4
    assert series[1]["metrics"]["loss"]["values"] == pytest.approx([2.0, 1.6, 1.1])
    assert _get(base, f"{API}/runs")["runs"] == [] and _get(base, f"{API}/runs")["exists"] is False
    code, message = _status(base, f"{API}/runs/series?dir=sub&ids=zzzz")
    assert code == 404 and "run 'zzzz' not found" in message
    assert _status(base, f"{API}/runs/series?dir=sub")[0] == 400
    code, message = _status(base, f"{API}/runs/series?dir=sub&ids=" + ",".join(["a"] * 17))
    assert code == 400 and message == "ids: at most 16 runs can be compared, got 17"


def test_rest_checkpoints(server: tuple[str, Path]) -> None:
    base, root = server
    store = readers.checkpoint_dir(root / "sub" / "train.ipynb")
    write_manifest(store, 1, manifest(1, "w = 1"))
    reply = _get(base, f"{API}/checkpoints?notebook=sub/train.ipynb")
    assert [c["source"] for c in reply["commits"]] == ["w = 1"]
    assert _get(base, f"{API}/checkpoints?store=sub/.tinygrad_nb/checkpoints/train")["commits"] == reply["commits"]
    assert _status(base, f"{API}/checkpoints")[0] == 400


@pytest.mark.parametrize("path", [f"{API}/runs", f"{API}/runs/series?ids=a,b", f"{API}/checkpoints?notebook=x"])
def test_rest_requires_authentication(server: tuple[str, Path], path: str) -> None:
    base, _ = server
    assert _status(base, path, token=None)[0] == 403
    assert _status(base, path, token="wrong-token")[0] == 403


@pytest.mark.parametrize("path", [f"{API}/runs?dir=..", f"{API}/runs?dir=/etc", f"{API}/runs?dir=sub/../..",
                                  f"{API}/runs?dir=escape", f"{API}/runs/series?dir=..&ids=a",
                                  f"{API}/checkpoints?notebook=../x.ipynb", f"{API}/checkpoints?store=/tmp",
                                  f"{API}/checkpoints?notebook=escape/x.ipynb"])
def test_rest_refuses_traversal(server: tuple[str, Path], path: str) -> None:
    base, _ = server
    code, message = _status(base, path)
    assert code == 403 and ("outside the server's root directory" in message or "must be relative" in message), \
        (code, message)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_rest_is_read_only(server: tuple[str, Path], method: str) -> None:
    base, _ = server
    assert _status(base, f"{API}/runs", method=method)[0] == 405


def test_server_side_has_no_unpickling_code() -> None:
    """The server modules read JSON and SQLite only; the one unpickling gate (Store.skeleton) is never called."""
    import re  # noqa: PLC0415

    for name in ("__init__.py", "handlers.py", "readers.py"):
        text = (ROOT / "tinygrad_nb" / "labext" / name).read_text()
        assert not re.search(r"import pickle|pickle\.load|Unpickler|\.skeleton\(|\bStore\(", text), name


# -- packaging ------------------------------------------------------------------------------------------------------
def test_built_extension_is_committed_small_and_matches_the_source() -> None:
    """The wheel's shared-data maps tinygrad_nb/labext/labextension to share/jupyter/labextensions/tinygrad-nb-lab;
    its package.json is the source's, and the whole build stays under 100 KB."""
    built = ROOT / "tinygrad_nb" / "labext" / "labextension"
    meta = json.loads((built / "package.json").read_text())
    source = json.loads((ROOT / "extensions" / "jupyterlab" / "package.json").read_text())
    assert meta["name"] == source["name"] == "tinygrad-nb-lab" and meta["version"] == source["version"]
    assert meta["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry.")
    assert (built / meta["jupyterlab"]["_build"]["load"]).is_file()
    total = sum(p.stat().st_size for p in built.rglob("*") if p.is_file())
    assert total <= 100 * 1024, total
    assert all(v.startswith("^4.") or k in ("@jupyterlab/coreutils", "@jupyterlab/services") or
               not k.startswith("@jupyterlab/") for k, v in source["dependencies"].items()), source["dependencies"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"tinygrad_nb/labext/labextension" = "share/jupyter/labextensions/tinygrad-nb-lab"' in pyproject
    assert '= "etc/jupyter/jupyter_server_config.d/tinygrad_nb.json"' in pyproject
    config = json.loads((ROOT / "tinygrad_nb" / "labext" / "jupyter-config" / "tinygrad_nb.json").read_text())
    assert config == {"ServerApp": {"jpserver_extensions": {"tinygrad_nb.labext": True}}}
