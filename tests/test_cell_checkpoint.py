"""Cell checkpoints and replay: commits after cells, checkout/undo/diff, bitwise replay, lost objects, dedup storage.

Cells run in an in-process IPython shell (as a notebook runs them); one test executes a real notebook with nbclient.
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from tinygrad_nb.checkpoint import _capture_rng
from tinygrad_nb.notebook import cellckpt
from tinygrad_nb.notebook.cellckpt import CheckpointStoreError
from tinygrad_nb.notebook.cellckpt.session import compare_arrays

IPython = pytest.importorskip("IPython")
from cellckpt_helpers import recording_shell, run, run_ok  # noqa: E402
from IPython.core.error import UsageError


@pytest.fixture
def shell(ipython: Any, tmp_path: Path) -> Iterator[Any]:
    yield from recording_shell(ipython, tmp_path)


@pytest.fixture(autouse=True)
def _secret_key(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This user's checkpoint signing key in a temporary folder, not in the real home (kernels started by nbclient
    inherit the variable)."""
    from tinygrad_nb.notebook.cellckpt.trust import SECRET_ENV

    path = tmp_path_factory.mktemp("secret") / "ckpt_secret"
    monkeypatch.setenv(SECRET_ENV, str(path))
    return path


def count(ip: Any) -> int:
    return ip.execution_count - 1  # the In[N] of the cell that just ran


def replay_last_cell(ip: Any, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """``%tg_replay N --verify`` of the cell that just ran; its report row."""
    run_ok(ip, f"%tg_replay {count(ip)} --verify", capsys)
    return cellckpt.recorder(ip).last_replay[0]


TRAIN_SETUP = ("import tinygrad_nb as tg, numpy as np\n"
               "tg.manual_seed(0)\n"
               "model = tg.nn.Sequential(tg.nn.Linear(6, 8), tg.nn.ReLU(), tg.nn.Linear(8, 2))\n"
               "opt = tg.optim.Adam(model.parameters(), lr=0.01)\n"
               "x = tg.randn(16, 6)\n"
               "y = tg.randn(16, 2)")
TRAIN_STEP = ("for _ in range(3):\n"
              "    loss = ((model(x) - y) ** 2).mean()\n"
              "    opt.zero_grad(); loss.backward(); opt.step()\n"
              "noise = tg.randn(3) * 0.1")


def test_commit_records_cell_rng_and_namespace(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(shell, TRAIN_SETUP, capsys)
    setup = count(shell)
    run_ok(shell, TRAIN_STEP, capsys)
    rec = cellckpt.recorder(shell)
    commit = rec.resolve("HEAD")
    assert commit.path.name.endswith(".json.gz")
    body, signature = gzip.decompress(commit.path.read_bytes()).splitlines()  # the manifest, then its signature
    m = json.loads(body)
    assert m["format"] == "tinygrad_nb.cell_checkpoint" and m["format_version"] == 3
    assert set(json.loads(signature)["signature"]) == {"alg", "key", "mac"} and commit.trusted
    assert m["cell"]["source"] == TRAIN_STEP and m["cell"]["execution_count"] == setup + 1 and m["cell"]["success"]
    assert len(m["cell"]["source_xxh3_128"]) == 32
    assert set(m["rng_before"]) == {"tinygrad_nb", "numpy", "python"}
    # numpy's and Python's states are blobs: the state after the setup cell is the one before the step, stored once
    previous = rec.resolve(str(setup)).manifest
    assert set(m["rng_before"]["numpy"]) == {"$blob"} and m["rng_before"]["numpy"] == previous["rng_after"]["numpy"]
    assert {m["rng_before"]["numpy"]["$blob"], m["rng_before"]["python"]["$blob"]} <= set(m["blobs"])
    assert rec.store.rng(m["rng_after"]) == _capture_rng()  # read back: the states now (no cell ran since)
    assert {"model", "opt", "x", "y", "loss", "noise"} <= set(m["variables"])
    assert m["parent"] == rec.resolve(str(setup)).seq
    # the packs are safetensors files holding the blobs named by their xxh3-128 keys
    from tinygrad_nb.checkpoint import read_safetensors
    keys = set()
    for pack in (rec.root / "packs").glob("*.safetensors"):
        keys |= set(read_safetensors(pack)[1])
    assert set(m["blobs"]) <= keys
    # a failing cell is recorded with its error; silent runs and our own magics are not recorded
    before = len(rec.store.commits)
    run(shell, "z = 1\nraise ValueError('boom')")
    shell.run_cell("q = 2", silent=True)
    run_ok(shell, "%tg_log", capsys)
    rec.wait()
    assert len(rec.store.commits) == before + 1
    failed = rec.resolve("HEAD").manifest["cell"]
    assert failed["success"] is False and failed["error"] == "ValueError: boom"


def test_checkout_restores_values_and_aliases(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(shell, TRAIN_SETUP + "\na = np.arange(4.0)\nb = a.copy()\nc = a\nholder = {'w': model[0].weight, "
           "'n': 3}", capsys)
    setup = count(shell)
    ns = shell.user_ns
    w0 = ns["model"][0].weight.numpy().copy()
    run_ok(shell, TRAIN_STEP + "\na += 1\nholder['n'] = 4\nextra = 5", capsys)
    assert not np.array_equal(ns["model"][0].weight.numpy(), w0)
    out = run_ok(shell, f"%tg_checkout {setup}", capsys)
    assert out.startswith("checked out #") and "removed" in out and "extra" in out
    model, opt = ns["model"], ns["opt"]
    np.testing.assert_array_equal(model[0].weight.numpy(), w0)
    assert "extra" not in ns and "loss" not in ns
    assert opt.param_groups[0]["params"][0] is model[0].weight  # the optimizer's params are the model's again
    assert ns["holder"]["w"] is model[0].weight and ns["holder"]["n"] == 3
    assert ns["c"] is ns["a"] and ns["b"] is not ns["a"]  # an alias stays an alias, equal arrays stay distinct
    np.testing.assert_array_equal(ns["a"], np.arange(4.0))
    assert opt.state == {} or all(len(s) == 0 for s in opt.state.values())  # Adam had not stepped yet
    # a cell after the checkout branches from it; %tg_undo goes back to before that cell
    run_ok(shell, "model[0].weight.fill_(0) if False else None\nextra2 = 7", capsys)
    assert ns["extra2"] == 7
    out = run_ok(shell, "%tg_undo", capsys)
    assert "extra2" not in ns and "removed extra2" in out
    np.testing.assert_array_equal(ns["model"][0].weight.numpy(), w0)
    # diff names the changed variables with max abs / ULP for tensors
    out = run_ok(shell, f"%tg_diff {setup} {setup + 1}", capsys)
    assert "model" in out and "opt" in out and "extra" in out and "added" in out
    row = next(line for line in out.splitlines() if line.startswith("model"))
    assert float(row.split()[2]) > 0 and int(row.split()[3]) > 0


def test_checkout_keeps_numpy_views(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(shell, "import numpy as np\na = np.arange(10.0)\nb = a[1:]\nc = a[::2]\n"
           "f = np.zeros((4, 5), order='F')\np = f[1:, ::2]\n"
           "r1, r2 = (lambda r: (r[:4], r[2:]))(np.arange(6.0))", capsys)  # r1, r2: views of a root not in ns
    setup = count(shell)
    run_ok(shell, "a[:] = -1\nf[:] = 3\nr1[:] = 9", capsys)
    run_ok(shell, f"%tg_checkout {setup}", capsys)
    ns = shell.user_ns
    a, b, c = ns["a"], ns["b"], ns["c"]
    np.testing.assert_array_equal(a, np.arange(10.0))
    assert np.shares_memory(a, b) and np.shares_memory(a, c) and b.strides == (8,) and c.strides == (16,)
    a[3] = 100.0  # a write through a is seen through b and c, as before
    assert b[2] == 100.0 and c.tolist()[:2] == [0.0, 2.0]
    a[2] = 50.0
    assert c[1] == 50.0
    f, p = ns["f"], ns["p"]
    assert f.flags.f_contiguous and np.shares_memory(f, p) and p.strides == (8, 64)
    f[1, 0] = 7.0
    assert p[0, 0] == 7.0
    r1, r2 = ns["r1"], ns["r2"]
    np.testing.assert_array_equal(r1, np.arange(4.0))
    r1[3] = 42.0
    assert np.shares_memory(r1, r2) and r2[1] == 42.0


def test_checkout_keeps_tensors_sharing_memory(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(shell, "import tinygrad_nb as tg, numpy as np\nt = tg.Tensor(np.arange(12.0, dtype=np.float32).reshape(3, 4))\n"
           "v = t.detach()\nw = tg.Tensor._wrap(t.data[1], t.device)\n"
           "own = tg.Tensor(np.zeros(8, dtype=np.float32))\nhalf = tg.Tensor._wrap(own.data[4:], own.device)", capsys)
    setup = count(shell)
    run_ok(shell, "t.fill_(0) if hasattr(t, 'fill_') else t.data.fill(0)\nhalf[0] = 5.0\nq = 1", capsys)
    run_ok(shell, f"%tg_checkout {setup}", capsys)
    ns = shell.user_ns
    t, v, w, own, half = (ns[n] for n in ("t", "v", "w", "own", "half"))
    np.testing.assert_array_equal(t.numpy(), np.arange(12.0).reshape(3, 4))
    assert np.shares_memory(t.data, v.data) and np.shares_memory(t.data, w.data) and t._version is v._version
    assert np.shares_memory(own.data, half.data) and own.data[4] == 0.0
    t.data[1, 2] = 99.0
    assert w.data[2] == 99.0 and v.data[1, 2] == 99.0
    # a write through one member only bumps its own version: the next commit must still record the right bytes
    run_ok(shell, "half[1] = 6.0", capsys)
    changed = count(shell)
    run_ok(shell, "own.data[:] = 1.0\nq = 2", capsys)
    run_ok(shell, f"%tg_checkout {changed}", capsys)
    own, half = shell.user_ns["own"], shell.user_ns["half"]
    assert own.data[5] == 6.0 and np.shares_memory(own.data, half.data)


def test_equal_arrays_stay_distinct_after_checkout(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(shell, "import tinygrad_nb as tg, numpy as np\nx = np.ones(5)\ny = np.ones(5)\n"
           "s = tg.Tensor(np.ones(5, dtype=np.float32))\nu = tg.Tensor(np.ones(5, dtype=np.float32))", capsys)
    setup = count(shell)
    run_ok(shell, "q = 1", capsys)
    run_ok(shell, f"%tg_checkout {setup}", capsys)
    ns = shell.user_ns
    assert not np.shares_memory(ns["x"], ns["y"]) and not np.shares_memory(ns["s"].data, ns["u"].data)
    ns["x"][0] = 3.0
    ns["s"].data[0] = 3.0
    assert ns["y"][0] == 1.0 and ns["u"].data[0] == 1.0
    m = cellckpt.recorder(shell).resolve(str(setup)).manifest
    assert not any("view" in r for r in m["tensors"].values())


def test_checkout_errors_are_usage_errors(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(shell, "v = 1", capsys)
    for line, message in [("%tg_checkout 999", "%tg_checkout: no checkpoint of cell In[999]"),
                          ("%tg_checkout banana", "%tg_checkout: 'banana' is not a REF"),
                          ("%tg_checkout", "%tg_checkout: which commit?"),
                          ("%tg_checkout #999", "%tg_checkout: #999: no commit #999"),
                          ("%tg_ckpt every=0", "%tg_ckpt: every=N needs a positive integer"),
                          ("%tg_ckpt budget=lots", "%tg_ckpt: budget: expected a size"),
                          ("%tg_diff 1", "%tg_diff: expected two commits")]:
        result = run(shell, line)
        assert isinstance(result.error_in_exec, UsageError), line
        assert str(result.error_in_exec).startswith(message), str(result.error_in_exec)


def test_replay_verifies_bitwise_and_names_the_diverged_variable(shell: Any,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(shell, TRAIN_SETUP, capsys)
    first = count(shell)
    run_ok(shell, TRAIN_STEP, capsys)
    run_ok(shell, "import os\nsalt = tg.tensor(np.frombuffer(os.urandom(16), dtype=np.float32).copy())\n"
           "total = float(loss.item())", capsys)
    last = count(shell)
    out = run_ok(shell, f"%tg_replay {first}..{last} --verify", capsys)
    rows = cellckpt.recorder(shell).last_replay
    assert [r["result"] for r in rows] == ["bitwise", "bitwise", "diverged"], out
    assert rows[2]["variable"] == "salt" and rows[2]["index"] is not None
    assert "diverged: salt first differs at index" in out and "2/3 cells bitwise" in out
    # a single cell replays from the state before it
    out = run_ok(shell, f"%tg_replay {first + 1} --verify", capsys)
    assert [r["result"] for r in cellckpt.recorder(shell).last_replay] == ["bitwise"]


def test_replay_reports_outputs_differ_for_non_tensor_values(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(shell, "import time\nimport tinygrad_nb as tg\nt = tg.ones(3)\n"
           "stamp = {'config': {'lr': 0.1}, 'meta': [1, {'ns': time.time_ns()}]}", capsys)
    recorded = shell.user_ns["stamp"]["meta"][1]["ns"]
    row = replay_last_cell(shell, capsys)
    now = shell.user_ns["stamp"]["meta"][1]["ns"]
    assert row["result"] == "outputs differ"
    assert row["detail"] == f"stamp['meta'][1]['ns']: {recorded} -> {now}"  # the first differing place, both values


def test_replay_re_makes_temporary_directories(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # a temporary directory gets a new random name on every run: paths in it, and text naming them, still compare
    run_ok(shell, "import tempfile, time\nfrom pathlib import Path\nimport tinygrad_nb as tg\n"
           "tmp = Path(tempfile.mkdtemp())\ncsv = tmp / 'data.csv'\nmessage = f'{csv}:3: column x is not a number'\n"
           "w = tg.ones(2)", capsys)
    recorded = shell.user_ns["tmp"]
    row = replay_last_cell(shell, capsys)
    assert shell.user_ns["tmp"] != recorded
    assert row["result"] == "bitwise", row
    # csv's pickle refers to the parts of tmp's path it shares, so only tmp and the message are compared anew
    assert row["run_bound"] == ["tmp (a new temporary directory)", "message (a new temporary directory)"]
    assert str(shell.user_ns["csv"]).startswith(str(shell.user_ns["tmp"]))
    assert "run-bound, re-made: tmp (a new temporary directory), message" in row["detail"]
    # anything else that differs inside such a path is still a difference
    run_ok(shell, "stamped = tmp / str(time.time_ns())", capsys)
    row = replay_last_cell(shell, capsys)
    assert row["result"] == "outputs differ" and row["detail"].startswith("stamped: '/"), row
    for folder in {recorded, shell.user_ns["tmp"]}:
        folder.rmdir()


def test_replay_compares_a_run_except_its_run_bound_fields(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(shell, "import tinygrad_nb as tg\nfrom tinygrad_nb import track\nimport os\n"
           "with track.Run(name='a', config={'lr': 0.1}, store=False) as run:\n    run.log({'loss': 1.0})", capsys)
    row = replay_last_cell(shell, capsys)
    assert row["result"] == "bitwise", row
    assert row["run_bound"][0].startswith("run (") and "id" in row["run_bound"][0], row  # named, not hidden
    # a config that is not reproducible (not drawn from the recorded RNG states): the run's random id and times
    # must not hide that
    run_ok(shell, "with track.Run(name='b', config={'seed': os.urandom(4).hex()}, store=False) as run2:\n    pass", capsys)
    row = replay_last_cell(shell, capsys)
    assert row["result"] == "outputs differ" and row["detail"].startswith("run2.config['seed']: "), row


def test_a_cell_can_declare_run_bound_variables(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(shell, "import os, time\nimport numpy as np\nimport tinygrad_nb as tg\n"
           "# tg-replay: run-bound log_lines, started (they hold wall-clock times)\n"
           "started = time.time()\nlog_lines = [{'time': time.time(), 'loss': 0.5}]\nkept = time.time_ns()", capsys)
    row = replay_last_cell(shell, capsys)
    # declared ones are named, not compared; an undeclared one still differs
    assert row["result"] == "outputs differ" and row["detail"].startswith("kept: "), row
    run_ok(shell, "del kept", capsys)
    run_ok(shell, "later = time.time()  # a later cell keeps the earlier declaration: later is compared", capsys)
    run_ok(shell, "log_lines.append({'time': time.time()})", capsys)
    m = count(shell)
    run_ok(shell, f"%tg_replay {m - 1}..{m} --verify", capsys)
    rows = cellckpt.recorder(shell).last_replay
    assert rows[0]["result"] == "outputs differ" and rows[0]["detail"].startswith("later: "), rows
    assert rows[1]["result"] == "outputs differ" and rows[1]["detail"].startswith("later: "), rows
    assert "log_lines (declared run-bound)" in rows[1]["run_bound"], rows
    # a declaration never hides tensors: their bytes are always compared
    run_ok(shell, "# tg-replay: run-bound noise\nnoise = tg.tensor(np.frombuffer(os.urandom(16), dtype=np.float32).copy())",
           capsys)
    row = replay_last_cell(shell, capsys)
    assert row["result"] == "diverged" and row["variable"] == "noise", row


def test_replayed_cell_sees_the_history_it_first_ran_with(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # a run's code fingerprint hashes the cells run so far (In): the replay must not add later cells to it
    run_ok(shell, "import tinygrad_nb as tg\ncode = tg.fingerprint(code=None).code['xxh3_128']", capsys)
    n = count(shell)
    run_ok(shell, "later = 1", capsys)
    recorded = shell.user_ns["code"]
    run_ok(shell, f"%tg_replay {n} --verify", capsys)
    row = cellckpt.recorder(shell).last_replay[0]
    assert row["result"] == "bitwise" and shell.user_ns["code"] == recorded, row
    assert shell.user_ns["In"][-1].startswith("get_ipython().run_line_magic('tg_replay'")  # In is whole again


def test_replay_runs_each_cell_as_the_cell_it_was(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # code that names its own cell (NaN reports say "cell [5], line 3") must see the recorded number again
    run_ok(shell, "import inspect\nimport tinygrad_nb as tg\nfrom tinygrad_nb.debug import provenance\n"
           "t = tg.ones(2)\nme = provenance.cell_number(inspect.currentframe().f_code.co_filename)", capsys)
    n = count(shell)
    assert shell.user_ns["me"] == n  # the number the tracer's reports use (IPython names the cell's code by it)
    run_ok(shell, "later = 1", capsys)
    before = shell.execution_count
    run_ok(shell, f"%tg_replay {n} --verify", capsys)
    row = cellckpt.recorder(shell).last_replay[0]
    assert row["result"] == "bitwise", row
    assert shell.execution_count == before + 1  # the replay left the counter as it found it


def test_unpicklable_objects_are_lost_not_fatal(shell: Any, capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("hi")
    run_ok(shell, f"import tinygrad_nb as tg\nt = tg.ones(2)\ngen = (i for i in range(3))\n"
           f"fh = open({str(tmp_path / 'f.txt')!r})\nsquare = lambda v: v * v\n"
           "def helper(v):\n    return v + 1\nkeep = 1", capsys)
    n = count(shell)
    run_ok(shell, "t += 1\nkeep = 2", capsys)
    m = cellckpt.recorder(shell).resolve("HEAD").manifest
    assert set(m["lost"]) == {"gen", "fh", "square"}
    assert "generator cannot be pickled" in m["lost"]["gen"]["why"] and m["lost"]["gen"]["cell"] == n
    assert "helper" in m["code"]
    out = run_ok(shell, f"%tg_checkout {n}", capsys)
    assert f"not restored: gen: recompute from cell In[{n}]" in out and "not restored: square" in out
    ns = shell.user_ns
    assert ns["keep"] == 1 and ns["t"].numpy().tolist() == [1.0, 1.0] and ns["helper"](1) == 2
    assert ns["square"](3) == 9 and list(ns["gen"]) == [0, 1, 2]  # lost objects are left as they are
    ns["fh"].close()


def test_a_picklable_object_at_a_freed_unpicklable_ones_address_is_recorded(
        shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # failures are cached per (name, id); an object of the same class re-created under the same name often lands at
    # the freed one's address (same id), which must not make it "lost" too. The address reuse is made certain here
    # by moving the cache entry to the new object's id.
    run_ok(shell, "class Box:\n    def __init__(self, f=None):\n        self.f = f\nbox = Box(lambda v: v)", capsys)
    rec = cellckpt.recorder(shell)
    assert set(rec.resolve("HEAD").manifest["lost"]) == {"box"}
    run_ok(shell, "box = Box()", capsys)
    (key,) = [k for k in rec.unpicklable if k[0] == "box"]
    rec.unpicklable[("box", id(shell.user_ns["box"]))] = rec.unpicklable.pop(key)
    run_ok(shell, "other = 1", capsys)
    m = rec.resolve("HEAD").manifest
    assert "box" not in m["lost"] and "box" in m["variables"]


def test_storage_is_deduplicated_and_gc_respects_the_budget(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # 10 MiB of random bits: nothing to compress, so the store's size counts the copies
    run_ok(shell, "import numpy as np\nimport tinygrad_nb as tg\n"
           "big = tg.tensor(np.random.default_rng(0).integers(-2**31, 2**31, 2_621_440, dtype=np.int32))\n"
           "small = tg.ones(4)", capsys)
    run_ok(shell, "small += 1", capsys)
    run_ok(shell, "other = 3", capsys)
    rec = cellckpt.recorder(shell)
    rec.wait()
    total = rec.store.total_bytes()
    assert 10 * 2**20 <= total < 11 * 2**20  # the 10 MiB tensor is stored once
    same = [c.manifest["tensors"][c.manifest["variables"]["big"]["tensors"][0]]["key"]
            for c in rec.store.commits.values() if "big" in c.manifest["variables"]]
    assert len(same) == 3 and len(set(same)) == 1
    # a changed big tensor makes a new blob; a small budget then drops the oldest commits and their blobs
    run_ok(shell, "big += 1", capsys)
    oldest = min(rec.store.commits)
    run_ok(shell, "%tg_ckpt budget=25MB", capsys)
    run_ok(shell, "big += 1", capsys)
    rec.wait()
    assert rec.store.total_bytes() <= 25 * 2**20
    assert rec.head in rec.store.commits and oldest not in rec.store.commits
    assert 20 * 2**20 <= rec.store.total_bytes()  # the two newest versions of big are kept
    expected = shell.user_ns["big"].numpy() - 1
    run_ok(shell, "%tg_checkout HEAD~1", capsys)
    assert np.array_equal(shell.user_ns["big"].numpy(), expected)


def test_compressible_blobs_are_stored_compressed_and_read_back_exactly(shell: Any,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # 8 MB of images with few distinct values and a ReLU's zeros compress; the bytes read back are the same
    run_ok(shell, "import numpy as np\nimport tinygrad_nb as tg\n"
           "pixels = tg.tensor(np.random.default_rng(0).integers(0, 17, (2000, 1000)).astype(np.float32) / 16)\n"
           "hidden = (tg.randn(1000, 1000) - 0.5).relu()\nlabels = np.arange(100_000) % 10", capsys)
    rec = cellckpt.recorder(shell)
    rec.wait()
    raw = {name: shell.user_ns[name].numpy().copy() if name != "labels" else shell.user_ns[name].copy()
           for name in ("pixels", "hidden", "labels")}
    assert rec.store.total_bytes() < sum(a.nbytes for a in raw.values()) / 3
    (pack,) = (rec.root / "packs").glob("*.safetensors")
    from tinygrad_nb.checkpoint import read_safetensors
    codecs = json.loads(read_safetensors(pack)[0]["codecs"])
    assert sorted(set(codecs.values())) == ["zlib:4", "zlib:8"]  # float32 tensors, int64 labels
    run_ok(shell, "pixels.mul_(0)\nhidden.mul_(0)\nlabels = None", capsys)
    run_ok(shell, "%tg_checkout HEAD~1", capsys)
    for name, expected in raw.items():
        value = shell.user_ns[name]
        got = value if isinstance(value, np.ndarray) else value.numpy()
        assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes(), name


def test_blob_codec_round_trips_and_skips_incompressible_bytes() -> None:
    from tinygrad_nb.notebook.cellckpt.store import decode_blob, encode_blob

    rng = np.random.default_rng(1)
    for itemsize in (1, 2, 4, 8):
        data = (rng.integers(0, 3, 40_000, dtype=np.uint8) * 7).astype(np.uint8)  # few values: compressible
        stored, codec = encode_blob(data, itemsize)
        assert codec == f"zlib:{itemsize}" and stored.nbytes < data.nbytes / 2
        assert decode_blob(stored, codec).tobytes() == data.tobytes()
    noise = rng.integers(0, 256, 100_000, dtype=np.uint8)
    stored, codec = encode_blob(noise, 4)
    assert codec is None and stored is noise
    assert encode_blob(np.zeros(100, np.uint8), 4)[1] is None  # too small to bother
    assert encode_blob(np.zeros(1001, np.uint8), 4)[1] == "zlib:1"  # not a whole number of items: unshuffled
    with pytest.raises(ValueError, match="unknown blob codec 'lz4:4'"):
        decode_blob(noise, "lz4:4")


def test_unchanged_tensors_are_not_rehashed(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(shell, "import tinygrad_nb as tg\nw = tg.randn(1000)", capsys)
    rec = cellckpt.recorder(shell)
    rec.wait()
    run_ok(shell, "q = 1", capsys)
    rec.wait()
    m = rec.resolve("HEAD").manifest
    assert m["tensors"][m["variables"]["w"]["tensors"][0]]["key"]
    run_ok(shell, "%tg_ckpt off", capsys)
    run_ok(shell, "r = 1", capsys)
    assert rec.resolve("HEAD").seq == m["seq"]
    run_ok(shell, "%tg_ckpt on every=2", capsys)
    out = run_ok(shell, "%tg_ckpt status", capsys)
    assert out.startswith("cell checkpoints: on, every 2 cells;")


def test_compare_arrays_reports_index_abs_and_ulp() -> None:
    a = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    b = a.copy()
    assert compare_arrays(a, b) is None
    b[1, 0] = np.nextafter(np.float32(3.0), np.float32(4.0))
    d = compare_arrays(a, b)
    assert d["index"] == (1, 0) and d["max_ulp"] == 1 and d["max_abs"] == pytest.approx(2.384e-7, rel=1e-3)
    # -0.0 and 0.0 differ in their bytes (not bitwise) though no number lies between them; the same NaN is equal
    assert compare_arrays(np.array([-0.0]), np.array([0.0])) == {"index": (0,), "max_abs": 0.0, "max_ulp": 0,
                                                                  "nan_appeared": 0, "nan_vanished": 0}
    assert compare_arrays(np.array([np.nan]), np.array([np.nan])) is None


def test_notebook_checkout_and_replay_under_nbclient(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    cells = [
        "%load_ext tinygrad_nb",                                                                    # 0
        TRAIN_SETUP,                                                                                # 1
        TRAIN_STEP,                                                                                 # 2
        "import os\nsalt = tg.tensor(np.frombuffer(os.urandom(8), dtype=np.float32).copy())",      # 3
        "w_trained = model[0].weight.numpy().copy()",                                               # 4
        "%tg_replay 2..4 --verify",                                                                 # 5
        "%tg_checkout 2\nprint(opt.param_groups[0]['params'][0] is model[0].weight, 'salt' in dir())",  # 6
        "%tg_log",                                                                                  # 7
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    def text(i: int) -> str:
        return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in nb.cells[i].outputs)

    replay = text(5)
    assert "2/3 cells bitwise" in replay, replay
    assert "diverged: salt first differs at index" in replay
    assert text(6).splitlines()[-1] == "True False", text(6)
    assert "In[4]" in text(7) and "stderr" not in [o.get("name") for c in nb.cells for o in c.outputs]
    assert (tmp_path / ".tinygrad_nb" / "checkpoints").is_dir()


def test_a_cell_of_checkpoint_magics_and_comments_is_not_recorded() -> None:
    from tinygrad_nb.notebook.cellckpt.session import _is_own_magic_cell

    assert _is_own_magic_cell("# NBVAL_SKIP: nbval runs cells without history\n%tg_log")
    assert not _is_own_magic_cell("# a comment\nx = 1")
    assert not _is_own_magic_cell("# only a comment")


def test_checkout_keeps_objects_owning_a_finalizer(shell: Any, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: a store kept in a TemporaryDirectory of the namespace (notebook 10) was deleted by a replay.

    The checkout before the replay replaced the live TemporaryDirectory with an unpickled copy, so the original was
    garbage collected and its finalizer removed the directory, packs included ("p000002.safetensors: no such
    checkpoint file"). Objects owning a live weakref.finalize are now lost (left in place), never replaced.
    """
    run_ok(shell, "import tempfile, numpy as np\nworkdir = tempfile.TemporaryDirectory()", capsys)
    workdir = shell.user_ns["workdir"]
    run_ok(shell, "%tg_ckpt dir={workdir.name}/checkpoints on", capsys)
    run_ok(shell, "a = np.arange(1000.0)", capsys)
    run_ok(shell, "a = a * 2\nb = a + 1", capsys)
    out = run_ok(shell, "%tg_replay #2 --verify", capsys)
    assert "1/1 cells bitwise" in out, out
    assert shell.user_ns["workdir"] is workdir
    packs = Path(workdir.name) / "checkpoints" / "packs"
    assert sorted(p.name for p in packs.glob("*.safetensors")) == ["p000001.safetensors", "p000002.safetensors"]
    out = run_ok(shell, "%tg_ckpt status", capsys)
    assert "2 commits" in out, out
    out = run_ok(shell, "%tg_checkout #1\n%tg_log", capsys)
    assert "not restored: workdir" in out and "live weakref.finalize" in out, out
    assert shell.user_ns["workdir"] is workdir and Path(workdir.name).is_dir()
    workdir.cleanup()


def test_replaying_a_middle_cell_after_checkout_is_bitwise(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Restored objects hold unpickled (not interned) strings, a replayed cell's new objects interned ones: the
    skeleton bytes of every later variable shift (memo indices), yet no value differs."""
    run_ok(shell, "import tinygrad_nb as tg, numpy as np\nfrom tinygrad_nb.data import DataLoader, TensorDataset\n"
           "tg.manual_seed(0)\nmodel_a = tg.nn.Sequential(tg.nn.Linear(6, 8), tg.nn.ReLU(), tg.nn.Linear(8, 2))\n"
           "x = tg.randn(16, 6)\ny = tg.randn(16, 2)", capsys)
    first = count(shell)
    run_ok(shell, "model_b = tg.nn.Linear(4, 4)\nopt = tg.optim.Adam(model_a.parameters(), lr=0.01)\n"
           "loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)\ncfg = {'name': 'run'}", capsys)
    run_ok(shell, "model_a = tg.nn.Linear(6, 2)\nw = tg.randn(3, 3)", capsys)
    last = count(shell)
    out = run_ok(shell, f"%tg_replay {last} --verify", capsys)
    assert [r["result"] for r in cellckpt.recorder(shell).last_replay] == ["bitwise"], out
    out = run_ok(shell, f"%tg_replay {first}..{last} --verify", capsys)
    assert "3/3 cells bitwise" in out, out
    # the same cell run by hand after a checkout: %tg_diff sees only what it changed
    run_ok(shell, f"%tg_checkout {last - 1}", capsys)
    run_ok(shell, "model_a = tg.nn.Linear(6, 2)\nw = tg.randn(3, 3)", capsys)
    out = run_ok(shell, f"%tg_diff {last} HEAD", capsys)
    assert "model_b" not in out and "opt" not in out and "loader" not in out and "cfg" not in out, out
    # a real change of a non-tensor value, and a broken alias, are still reported
    run_ok(shell, f"%tg_checkout {last}", capsys)
    run_ok(shell, "cfg = {'name': 'other'}", capsys)
    out = run_ok(shell, f"%tg_diff {last} HEAD", capsys)
    assert "cfg" in out and "model_b" not in out, out
    row = next(r for r in cellckpt.recorder(shell).diff(cellckpt.recorder(shell).resolve(str(last)),
                                                        cellckpt.recorder(shell).resolve("HEAD"))
               if r["variable"] == "cfg")
    assert row["change"] == "changed" and row["where"].startswith("cfg['name']: ") and "-> 'other'" in row["where"]


def test_canonical_form_keeps_aliasing_and_ignores_string_identity() -> None:
    import io
    import pickle

    from tinygrad_nb.notebook.cellckpt.canonical import canonical_digests

    def digests(values: dict[str, Any]) -> dict[str, str]:
        buffer, variables = io.BytesIO(), {}
        pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
        for name, value in values.items():
            start = buffer.tell()
            pickler.dump(value)
            variables[name] = {"start": start, "end": buffer.tell()}
        return canonical_digests(buffer.getvalue(), variables)

    key = b"weight".decode()  # equal to, but not the same object as, the literal
    shared = [1]
    a = digests({"p": {"weight": 1}, "q": {"weight": 2}, "r": [shared, shared]})
    b = digests({"p": {key: 1}, "q": {"weight": 2}, "r": [shared, shared]})
    assert a == b
    c = digests({"p": {"weight": 1}, "q": {"weight": 2}, "r": [shared, [1]]})
    assert c["r"] != a["r"] and c["p"] == a["p"]


def test_log_widget_browses_the_history_and_checks_out(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ipywidgets")
    from tinygrad_nb.notebook.cellckpt.widget import HistoryBrowser, timeline_png

    run_ok(shell, "import tinygrad_nb as tg\nt = tg.ones(3)\ngen = (i for i in range(2))", capsys)
    first = count(shell)
    run_ok(shell, "t.mul_(2)\nnote = '<b>not html</b>'", capsys)
    run(shell, "u = 1\nraise ValueError('x')")
    rec = cellckpt.recorder(shell)
    rows = rec.timeline()
    assert [r["ok"] for r in rows] == [True, True, False] and rows[0]["lost"] == ["gen"] and rows[-1]["head"]
    assert rows[0]["bytes"] > 0 and rows[0]["cell"] == f"In[{first}]" and rows[0]["replay"] is None
    assert timeline_png(rows).startswith(b"\x89PNG") and timeline_png([]).startswith(b"\x89PNG")

    browser = HistoryBrowser(rec)
    assert bytes(browser.figure.value).startswith(b"\x89PNG")
    assert [label for label, _ in browser.picker.options] == [
        f"#1 In[{first}] ok", f"#2 In[{first + 1}] ok", f"#3 In[{first + 2}] error (HEAD)"]
    assert browser.picker.value == 3 and "failed: ValueError: x" in browser.details.value
    browser.picker.value = 2  # picking a commit shows its source (escaped) and what changed since its parent
    assert "t.mul_(2)" in browser.details.value and "&lt;b&gt;not html&lt;/b&gt;" in browser.details.value
    assert "changed since #1:</b> t changed (max abs 1, max ULP 8388608), note added" in browser.details.value
    browser.picker.value = 1
    assert "<b>recorded:</b> t" in browser.details.value and "<b>lost:</b> gen" in browser.details.value
    # the button checks the picked commit out, as %tg_checkout does, and the timeline moves HEAD there
    browser.checkout_button.click()
    assert shell.user_ns["t"].numpy().tolist() == [1.0, 1.0, 1.0] and "note" not in shell.user_ns
    assert browser.status.value.startswith("checked out #1 (In[") and "not restored: gen" in browser.status.value
    assert rec.head == 1 and browser.picker.value == 1 and browser.picker.options[0][0].endswith("(HEAD)")
    # a replay's verdicts show in the timeline rows and in the details
    run_ok(shell, f"%tg_replay {first}..{first + 1} --verify", capsys)
    assert [r["replay"] for r in rec.timeline()] == ["bitwise", "bitwise", None]
    browser.refresh(pick=2)
    assert "<b>last replay:</b> bitwise (" in browser.details.value
    assert browser._repr_mimebundle_()["text/plain"].startswith("VBox(")
    # outside Jupyter the magic prints the table
    out = run_ok(shell, "%tg_log --widget", capsys)
    assert "commit" in out and "error" in out and "*" in out
    result = run(shell, "%tg_log --bogus")
    assert isinstance(result.error_in_exec, UsageError) and "%tg_log: unknown argument" in str(result.error_in_exec)


def test_a_replaced_data_array_at_a_reused_address_is_rehashed(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # Gradient accumulation replaces .grad.data without bumping its version; the new array can sit at the freed
    # old array's address (same id), which must not pass for "unchanged".
    run_ok(shell, "import tinygrad_nb as tg, numpy as np\nw = tg.zeros(8)", capsys)
    rec = cellckpt.recorder(shell)
    for step in range(1, 6):
        run_ok(shell, "w.data = w.data + 1\nw.data = w.data + 1", capsys)
        rec.wait()
        m = rec.resolve("HEAD").manifest
        record = m["tensors"][m["variables"]["w"]["tensors"][0]]
        recorded = rec.store.array(record["key"], record["dtype"], record["shape"])
        np.testing.assert_array_equal(recorded, np.full(8, 2.0 * step, dtype=np.float32))


# -- comparing values (no shell) --------------------------------------------------------------------------------------
def _compare(old: Any, new: Any) -> tuple[Any, list[Any]]:
    from tinygrad_nb.notebook.cellckpt.values import ValueComparer

    return ValueComparer().compare([("v", old, new)])["v"]


def test_values_compare_numbers_bit_for_bit_and_name_the_place() -> None:
    assert _compare({"a": [1.0, float("nan")]}, {"a": [1.0, float("nan")]}) == (None, [])
    real, _ = _compare({"a": [1.0, 0.0]}, {"a": [1.0, -0.0]})
    assert str(real) == "v['a'][1]: 0.0 -> -0.0"
    real, _ = _compare({"a": 1, "b": 2}, {"a": 1})
    assert str(real) == "v['b'] is missing"
    real, _ = _compare([1, 2], [1, 2, 3])
    assert str(real) == "len(v): 2 -> 3"
    real, _ = _compare({"x": 1}, {"x": True})  # equal in Python, but not the same value
    assert str(real) == "v['x']: 1 -> True"


def test_temporary_directory_renames_must_be_consistent() -> None:
    import os
    import tempfile

    def tmp(name: str) -> str:
        return os.path.join(tempfile.gettempdir(), "tmp" + name)

    a, b, c = tmp("aaaaaaaa"), tmp("bbbbbbbb"), tmp("cccccccc")
    real, bound = _compare([a, a + "/x.csv"], [b, b + "/x.csv"])
    assert real is None and [d.why for d in bound] == ["a new temporary directory"] * 2
    # one recorded folder cannot become two different ones
    real, _ = _compare([a, a + "/x.csv"], [b, c + "/x.csv"])
    assert real is not None and real.path == "v[1]"
    # a name of another shape is not a temporary directory
    real, _ = _compare(os.path.join(tempfile.gettempdir(), "run-1"), os.path.join(tempfile.gettempdir(), "run-2"))
    assert real is not None


def test_declared_string_fields_rename_everywhere() -> None:
    class Job:
        RUN_BOUND_FIELDS: ClassVar[dict[Any, str]] = {"id": "a random id", ("times", "*", 1): "wall-clock time"}

        def __init__(self, id: str, times: list[tuple[str, float]], lr: float):
            self.id, self.times, self.lr = id, times, lr

    old = {"log": "logs/ab12.jsonl", "job": Job("ab12", [("start", 1.5)], 0.1)}
    new = {"log": "logs/cd34.jsonl", "job": Job("cd34", [("start", 2.5)], 0.1)}
    real, bound = _compare(old, new)  # the log path is met before the job that declares its id: two walks
    assert real is None, real
    assert sorted(d.path for d in bound) == ["v['job'].id", "v['job'].times[0][1]", "v['log']"]
    new["job"].lr = 0.2
    real, _ = _compare(old, new)
    assert str(real) == "v['job'].lr: 0.1 -> 0.2"


def test_declared_run_bound_comment() -> None:
    from tinygrad_nb.notebook.cellckpt.values import declared_run_bound

    source = ("x = 1\n# tg-replay: run-bound records, trace (they hold times)\n  #tg-replay: run-bound  a b\n"
              "# tg-replay: run-bound\ny = 2  # tg-replay: run-bound z\n")
    assert declared_run_bound(source) == ["records", "trace", "a", "b"]


def test_a_format_1_store_is_still_read(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # format 1: plain .json manifests holding the RNG states inline
    run_ok(shell, "import numpy as np\nimport tinygrad_nb as tg\nt = tg.ones(3)\nnp.random.seed(7)", capsys)
    run_ok(shell, "t.mul_(5)\ndraw = np.random.rand()", capsys)
    rec = cellckpt.recorder(shell)
    rec.wait()
    for commit in rec.store.commits.values():
        m = dict(commit.manifest, format_version=1)
        for which in ("rng_before", "rng_after"):
            m[which] = rec.store.rng(m[which])
        commit.path.with_name(commit.path.name[:-3]).write_text(json.dumps(m))
        commit.path.unlink()
    rec.set_root(rec.root)  # forget the open store: read it again from disk
    assert len(rec.store.commits) == 2 and all(c.path.suffix == ".json" for c in rec.store.commits.values())
    # written before manifests were signed: refused until trusted, then read as before
    assert [c.seq for c in rec.store.untrusted()] == [1, 2]
    result = run(shell, "%tg_checkout #1")
    assert isinstance(result.error_in_exec, UsageError)
    assert str(result.error_in_exec).startswith(f"%tg_checkout: commit #1 in {rec.root} is not trusted: it is not "
                                                "signed")
    assert "run %tg_ckpt trust" in str(result.error_in_exec)
    out = run_ok(shell, "%tg_ckpt trust", capsys)
    assert out.startswith(f"trusted 2 commits (#1-#2) of {rec.root}: signed with your key")
    expected = shell.user_ns["draw"]
    run_ok(shell, "%tg_replay #2 --verify", capsys)
    assert rec.last_replay[0]["result"] == "bitwise" and shell.user_ns["draw"] == expected
    run_ok(shell, "%tg_checkout #1", capsys)
    assert shell.user_ns["t"].numpy().tolist() == [1.0, 1.0, 1.0]


def test_gc_repacks_compressed_blobs_keeping_their_codec(tmp_path: Path) -> None:
    from tinygrad_nb.notebook.cellckpt.store import Store, blob_key

    store = Store(tmp_path / "store", budget=1)  # any budget is exceeded: gc drops every commit it may
    kept = (np.arange(200_000) % 5).astype(np.float32).view(np.uint8)  # compressible
    dropped = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8)  # not
    keys = {name: blob_key(data) for name, data in (("kept", kept), ("dropped", dropped))}
    store.write_commit(1, {"blobs": {k: {} for k in keys.values()}},
                       {keys["kept"]: kept, keys["dropped"]: dropped}, {keys["kept"]: 4})
    store.write_commit(2, {"blobs": {keys["kept"]: {}}}, {})
    assert store.where[keys["kept"]] == 1 and store.total_bytes() < dropped.nbytes + kept.nbytes / 4
    report = store.gc(keep={2})
    assert report["commits_dropped"] == 1 and report["packs_removed"] == 0  # pack 1 rewritten, not removed
    assert keys["dropped"] not in store.where and keys["kept"] in store.where
    again = Store(tmp_path / "store")  # from disk: the repacked blob is still compressed and reads back exactly
    assert again.total_bytes() < kept.nbytes / 4
    assert again.read_blob(keys["kept"]).tobytes() == kept.tobytes()

    # a damaged compressed blob is named, not a bare zlib error
    pack = again.pack_path(again.where[keys["kept"]])
    data = bytearray(pack.read_bytes())
    data[-40:] = b"\0" * 40
    pack.write_bytes(bytes(data))
    with pytest.raises(CheckpointStoreError, match=f"blob {keys['kept']} in {pack.name} is damaged"):
        Store(tmp_path / "store").read_blob(keys["kept"])


def test_replay_of_a_deeply_nested_value_says_it_differs(shell: Any, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    run_ok(shell, "import os\nchain = [os.urandom(2).hex()]\nfor _ in range(200):\n    chain = [chain]", capsys)
    n = count(shell)
    row = replay_last_cell(shell, capsys)
    assert row["result"] == "outputs differ" and row["detail"].startswith("chain[0][0]"), row
    assert "..." in row["detail"] and len(row["detail"]) < 200, row  # a long path is shortened
    # past the recursion limit the walk gives up: the variable differs, and the report says it cannot say where
    from tinygrad_nb.notebook.cellckpt import values

    def too_deep(self: Any, pairs: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(values.ValueComparer, "compare", too_deep)
    run_ok(shell, f"%tg_replay {n} --verify", capsys)
    row = cellckpt.recorder(shell).last_replay[0]
    assert row["result"] == "outputs differ"
    assert row["detail"] == "chain differs (not a tensor; nested too deeply to say where)", row
