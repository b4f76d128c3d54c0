"""Cell checkpoint trust and integrity (issue 19, items 1-3; issue 24's NaN diff).

* A store not signed with this user's key (copied in with a notebook) is never unpickled nor replayed: checkout,
  undo, diff and replay refuse it, say why and how to trust it; ``%tg_ckpt trust`` accepts it.
* Every blob is checked against its key on read; a skeleton also against the SHA-256 its signed manifest names.
* A checkout happens completely or not at all.
* ``%tg_diff`` counts NaNs that appear or vanish, without numpy warnings.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import pathlib
import pickle
import stat
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tinygrad_nb.checkpoint import _capture_rng
from tinygrad_nb.notebook import cellckpt
from tinygrad_nb.notebook.cellckpt import CheckpointStoreError, CheckpointTrustError, trust
from tinygrad_nb.notebook.cellckpt.session import compare_arrays
from tinygrad_nb.notebook.cellckpt.store import Store, blob_key

IPython = pytest.importorskip("IPython")
from cellckpt_helpers import recording_shell, run, run_ok  # noqa: E402
from IPython.core.error import UsageError


@pytest.fixture
def shell(ipython: Any, tmp_path: Path) -> Iterator[Any]:
    yield from recording_shell(ipython, tmp_path)


@pytest.fixture(autouse=True)
def secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This user's key in a temporary folder (never the real home)."""
    path = tmp_path / "home" / "ckpt_secret"
    monkeypatch.setenv(trust.SECRET_ENV, str(path))
    return path


def refused(ip: Any, source: str, cause: type[Exception]) -> str:
    """Run a magic that must be refused: its one-line UsageError's text (caused by ``cause``)."""
    result = run(ip, source)
    error = result.error_in_exec
    assert isinstance(error, UsageError), repr(error)
    assert isinstance(error.__cause__, cause), repr(error.__cause__)
    return str(error)


class Touch:
    """An attacker's pickle payload: unpickling it creates ``path`` (``pathlib.Path.touch``), returning None."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return pathlib.Path.touch, (self.path,)


def craft_store(root: Path, marker: Path, key_file: Path | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two commits whose skeleton creates ``marker`` when unpickled and whose cells create ``marker.cell`` when run;
    signed with the key in ``key_file`` (another user's), or unsigned when None."""
    mine = os.environ[trust.SECRET_ENV]
    if key_file is not None:
        monkeypatch.setenv(trust.SECRET_ENV, str(key_file))
    payload = pickle.dumps(Touch(marker), protocol=pickle.HIGHEST_PROTOCOL)
    skeleton = np.frombuffer(payload, dtype=np.uint8)
    key = blob_key(skeleton)
    store = Store(root)
    for seq in (1, 2):
        manifest = {
            "parent": seq - 1 or None, "created": "2024-01-01T00:00:00+00:00",
            "cell": {"id": None, "execution_count": seq, "source": f"Path({str(marker) + '.cell'!r}).touch()",
                     "source_xxh3_128": "0" * 32, "success": True, "error": None},
            "rng_before": None, "rng_after": None,
            "variables": {"x": {"start": 0, "end": len(payload), "tensors": [], "type": "NoneType", "fp": str(seq)}},
            "tensors": {}, "lost": {}, "code": {}, "skeleton": key, "skeleton_bytes": len(payload),
            "skeleton_sha256": hashlib.sha256(payload).hexdigest(), "blobs": {key: {}},
        }
        store.write_commit(seq, manifest, {key: skeleton} if seq == 1 else {})
    if key_file is None:  # strip the signature lines: an unsigned (format 2 style) store
        for path in (root / "commits").glob("*.json.gz"):
            body = gzip.decompress(path.read_bytes()).splitlines()[0]
            path.write_bytes(gzip.compress(body))
    monkeypatch.setenv(trust.SECRET_ENV, mine)


# -- item 1: trust -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("foreign", ["other key", "unsigned"])
def test_a_foreign_store_is_never_unpickled_nor_replayed(foreign: str, shell: Any, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    root = tmp_path / "copied_with_the_notebook"
    craft_store(root, marker, tmp_path / "attacker_secret" if foreign == "other key" else None, monkeypatch)
    run_ok(shell, "x = 41", capsys)  # recorded into our own store first: then switch to the copied one
    rec = cellckpt.recorder(shell)
    rec.set_root(root)
    why = ("it was signed with another user's key (or before your key was replaced)" if foreign == "other key" else
           "it is not signed (copied from elsewhere, or written before tinygrad_nb signed its checkpoints)")
    rng_before = _capture_rng()

    # every magic that would unpickle a skeleton or run a cell names the first commit it refuses (#1: the parent of
    # #2, which %tg_undo checks out and %tg_replay #2 starts from)
    for magic in ("%tg_checkout #1", "%tg_undo", "%tg_diff #1 #2", "%tg_replay #1..#2 --verify", "%tg_replay #2"):
        text = refused(shell, magic, CheckpointTrustError)
        name = magic.split()[0]
        assert text == (f"{name}: commit #1 in {root} is not trusted: {why}. Its variables are pickles and its "
                        "cell is code: restoring or replaying it would run that code. If you trust where this store "
                        "came from, run %tg_ckpt trust (it signs the store's commits with your key: you accept that "
                        "their code may run); else record elsewhere (%tg_ckpt dir=PATH)"), magic
    with pytest.raises(CheckpointTrustError, match=r"commit #2 in .* is not trusted"):
        rec.checkout(rec.resolve("#2"))
    with pytest.raises(CheckpointTrustError, match=r"commit #2 in .* is not trusted"):
        rec.store.skeleton(rec.resolve("#2"))
    assert not marker.exists() and not Path(str(marker) + ".cell").exists()
    assert shell.user_ns["x"] == 41 and rec.head == 2 and _capture_rng() == rng_before

    # status and log say which commits are not trusted and how to accept them
    note = ("not trusted (not signed with your key): 2 commits (#1-#2); they cannot be checked out, diffed or "
            "replayed until you run %tg_ckpt trust, which accepts that their code may run")
    assert run_ok(shell, "%tg_ckpt status", capsys).splitlines()[1] == note
    assert run_ok(shell, "%tg_log", capsys).splitlines()[-1] == note

    # trusting it is the user's explicit yes: its commits are signed with our key, and their code runs
    out = run_ok(shell, "%tg_ckpt trust", capsys)
    assert out.splitlines()[0] == (f"trusted 2 commits (#1-#2) of {root}: signed with your key; their pickled "
                                   "values and cells may now run on %tg_checkout, %tg_undo, %tg_diff and %tg_replay")
    assert len(out.splitlines()) == 2  # then the status line, with no note
    assert run_ok(shell, "%tg_ckpt trust", capsys).startswith(f"every commit of {root} is already trusted")
    assert Store(root).untrusted() == []  # read again from disk: signed
    out = run_ok(shell, "%tg_checkout #1", capsys)
    assert out.startswith("checked out #1 (In[1]): 1 variables restored") and marker.exists()
    assert shell.user_ns["x"] is None


def test_the_history_widget_refuses_a_foreign_commit(shell: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ipywidgets")
    from tinygrad_nb.notebook.cellckpt.widget import HistoryBrowser

    marker = tmp_path / "pwned"
    craft_store(tmp_path / "foreign", marker, tmp_path / "attacker_secret", monkeypatch)
    rec = cellckpt.recorder(shell)
    rec.set_root(tmp_path / "foreign")
    browser = HistoryBrowser(rec)  # shows HEAD (#2): its details say why it is not trusted, without a diff
    assert "<b>not trusted:</b> it was signed with another user&#x27;s key" in browser.details.value
    assert "changed since" not in browser.details.value
    browser.picker.value = 1
    browser.check_out()
    assert "commit #1 in" in browser.status.value and "is not trusted" in browser.status.value
    assert not marker.exists() and rec.head == 2


def test_a_manifest_changed_after_signing_is_refused(shell: Any, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(shell, "import tinygrad_nb as tg\nw = tg.ones(3)", capsys)
    run_ok(shell, "w.mul_(2)", capsys)
    rec = cellckpt.recorder(shell)
    rec.wait()
    path = rec.resolve("#1").path
    body, signature = gzip.decompress(path.read_bytes()).splitlines()
    manifest = json.loads(body)
    manifest["cell"]["source"] = "import os; os.remove('precious')"  # what replay would run
    path.write_bytes(gzip.compress(json.dumps(manifest, separators=(",", ":")).encode() + b"\n" + signature))
    rec.set_root(rec.root)
    text = refused(shell, "%tg_replay #1", CheckpointTrustError)
    assert text.startswith(f"%tg_replay: commit #1 in {rec.root} is not trusted: its signature does not match its "
                           "manifest (the manifest was changed after it was written).")
    assert [c.seq for c in rec.store.untrusted()] == [1]
    out = run_ok(shell, "%tg_checkout #2", capsys)  # the other commit is still ours
    assert out.startswith("checked out #2") and shell.user_ns["w"].numpy().tolist() == [2.0, 2.0, 2.0]


def test_the_signature_covers_the_skeleton_bytes(shell: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    run_ok(shell, "cfg = {'lr': 0.1}", capsys)
    rec = cellckpt.recorder(shell)
    rec.wait()
    commit = rec.resolve("HEAD")
    key = commit.manifest["skeleton"]
    assert commit.manifest["skeleton_sha256"] == hashlib.sha256(rec.store.read_blob(key).tobytes()).hexdigest()
    # another pickle that hashed to the same xxh3-128 key (xxh3 is not a cryptographic hash) is still caught
    evil = np.frombuffer(pickle.dumps(Touch(tmp_path / "pwned")), dtype=np.uint8)
    real_read_blob = Store.read_blob
    monkeypatch.setattr(Store, "read_blob", lambda self, k: evil if k == key else real_read_blob(self, k))
    text = refused(shell, "%tg_checkout HEAD", CheckpointStoreError)
    pack = rec.store.pack_path(rec.store.where[key]).name
    assert text == (f"%tg_checkout: cell checkpoint store {rec.root}: blob {key} in {pack} (the skeleton of commit "
                    f"#{commit.seq}) does not match the SHA-256 its signed manifest names")
    assert not (tmp_path / "pwned").exists() and shell.user_ns["cfg"] == {"lr": 0.1}


def test_the_key_lives_outside_the_notebook_folder_readable_by_its_owner_only(
        secret: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert trust.secret_path() == secret
    key = trust.secret_key()
    assert len(key) == 32 and secret.read_bytes() == key and trust.secret_key() == key
    if os.name == "posix":
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert [p.name for p in secret.parent.iterdir()] == ["ckpt_secret"]  # no temporary file left behind
    # without the variable: $XDG_DATA_HOME, else ~/.local/share
    monkeypatch.delenv(trust.SECRET_ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert trust.secret_path() == tmp_path / "xdg" / "tinygrad_nb" / "ckpt_secret"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert trust.secret_path() == tmp_path / "user" / ".local" / "share" / "tinygrad_nb" / "ckpt_secret"
    # a truncated key is an error, never silently replaced (which would distrust every store)
    monkeypatch.setenv(trust.SECRET_ENV, str(tmp_path / "short"))
    (tmp_path / "short").write_bytes(b"abc")
    with pytest.raises(CheckpointTrustError, match=r"holds 3 bytes, too few to be a key: remove it"):
        trust.secret_key()


# -- item 2: every blob is verified on read ----------------------------------------------------------------------------
def _flip_byte_of_blob(store: Store, key: str) -> Path:
    """Flip one byte in the middle of blob ``key``'s data in its pack file; the pack's path."""
    pack = store.pack_path(store.where[key])
    data = bytearray(pack.read_bytes())
    (header_len,) = struct.unpack("<Q", data[:8])
    begin, end = json.loads(data[8:8 + header_len])[key]["data_offsets"]
    data[8 + header_len + (begin + end) // 2] ^= 0x01
    pack.write_bytes(bytes(data))
    return pack


def test_a_flipped_byte_in_a_pack_is_named_and_changes_nothing(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(shell, "import tinygrad_nb as tg\ntg.manual_seed(0)\nw = tg.randn(64, 64)\nv = w.numpy().copy()", capsys)
    run_ok(shell, "w.mul_(2)\nstep = 1", capsys)
    rec = cellckpt.recorder(shell)
    rec.wait()
    first = rec.resolve("#1")
    key = first.manifest["tensors"][first.manifest["variables"]["w"]["tensors"][0]]["key"]
    pack = _flip_byte_of_blob(rec.store, key)
    rec.set_root(rec.root)  # a fresh read of the store (nothing cached)
    ns = shell.user_ns
    w, data, version = ns["w"], ns["w"].data, ns["w"].version
    expected = w.numpy().copy()
    text = refused(shell, "%tg_checkout #1", CheckpointStoreError)
    assert text == (f"%tg_checkout: cell checkpoint store {rec.root}: blob {key} in {pack.name} is damaged: its "
                    "bytes do not hash to its key")
    assert ns["w"] is w and w.data is data and w.version == version and ns["step"] == 1 and rec.head == 2
    np.testing.assert_array_equal(w.numpy(), expected)
    with pytest.raises(CheckpointStoreError, match=f"blob {key} in {pack.name} is damaged"):
        rec.store.read_blob(key)


# -- item 3: a checkout happens completely or not at all ---------------------------------------------------------------
def _state(ns: dict[str, Any]) -> dict[str, Any]:
    """What must not change when a checkout fails: which objects the names hold, the tensors' data and versions."""
    names = {n: id(v) for n, v in ns.items() if not n.startswith("_") and n not in ("In", "Out")}
    tensors = {n: (id(v.data), v.version, v.numpy().tobytes()) for n, v in ns.items() if hasattr(v, "_version")}
    return {"names": names, "tensors": tensors, "rng": _capture_rng()}


SETUP = ("import numpy as np, random\nimport tinygrad_nb as tg\ntg.manual_seed(0)\nnp.random.seed(1)\n"
         "a = tg.randn(32, 32)\nb = tg.randn(32, 32)\nnp.random.rand(); random.random()")
STEP = "a.add_(1)\nb.mul_(3)\nc = 5\nnp.random.rand(); random.random()"


def test_a_damaged_rng_blob_fails_the_checkout_before_anything_changes(
        shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(shell, SETUP, capsys)
    run_ok(shell, STEP, capsys)
    rec = cellckpt.recorder(shell)
    rec.wait()
    key = rec.resolve("#1").manifest["rng_after"]["numpy"]["$blob"]
    pack = _flip_byte_of_blob(rec.store, key)
    rec.set_root(rec.root)
    before = _state(shell.user_ns)
    text = refused(shell, "%tg_undo", CheckpointStoreError)
    assert text == (f"%tg_undo: cell checkpoint store {rec.root}: blob {key} in {pack.name} is damaged: its bytes "
                    "do not hash to its key")
    assert _state(shell.user_ns) == before and rec.head == 2


def test_a_failure_midway_through_a_checkout_changes_nothing(shell: Any, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    run_ok(shell, SETUP, capsys)
    run_ok(shell, STEP, capsys)
    rec = cellckpt.recorder(shell)
    rec.wait()
    before = _state(shell.user_ns)
    reads: list[str] = []
    real_array = Store.array

    def second_read_fails(self: Store, key: str, dtype: str, shape: list[int]) -> np.ndarray:
        reads.append(key)
        if len(reads) == 2:  # the first tensor is already planned
            raise CheckpointStoreError(f"injected: blob {key} in p000001.safetensors is damaged")
        return real_array(self, key, dtype, shape)

    monkeypatch.setattr(Store, "array", second_read_fails)
    text = refused(shell, "%tg_checkout #1", CheckpointStoreError)
    assert text.startswith("%tg_checkout: injected: blob ") and len(reads) == 2
    assert _state(shell.user_ns) == before and rec.head == 2
    monkeypatch.setattr(Store, "array", real_array)
    out = run_ok(shell, "%tg_checkout #1", capsys)  # the same checkout, undisturbed, then does everything
    assert out.split(": ", 1)[1].startswith("2 variables restored, 2 tensors rewritten, removed c")
    assert out.startswith("checked out #1 (In[")
    assert rec.head == 1 and "c" not in shell.user_ns and _capture_rng() == rec.store.rng(
        rec.resolve("#1").manifest["rng_after"])


def test_renamed_manifest_keys_are_store_errors_and_change_nothing(shell: Any, capsys: pytest.CaptureFixture[str]
                                                                   ) -> None:
    run_ok(shell, SETUP, capsys)
    run_ok(shell, STEP, capsys)
    rec = cellckpt.recorder(shell)
    rec.wait()
    m = rec.resolve("#1").manifest
    before = _state(shell.user_ns)
    record = m["tensors"][m["variables"]["a"]["tensors"][0]]
    record["kee"] = record.pop("key")  # a renamed key in a tensor record
    text = refused(shell, "%tg_checkout #1", CheckpointStoreError)
    assert text == (f"%tg_checkout: cell checkpoint store {rec.root}: the manifest of commit #1 is damaged "
                    "(KeyError: \"tensor record 'a:0' has no key\")")
    record["key"] = record.pop("kee")
    m["rng_after"]["numpy"] = {"$blb": m["rng_after"]["numpy"]["$blob"]}  # a renamed blob reference
    text = refused(shell, "%tg_checkout #1", CheckpointStoreError)
    assert text.startswith(f"%tg_checkout: cell checkpoint store {rec.root}: the rng_after RNG states of commit #1 "
                           "cannot be restored (KeyError: ")
    assert _state(shell.user_ns) == before and rec.head == 2


def test_a_blob_with_the_right_key_but_no_rng_state_inside_is_named(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    garbage = np.frombuffer(b"not zlib at all", dtype=np.uint8)
    key = blob_key(garbage)
    store.write_commit(1, {"blobs": {key: {}}}, {key: garbage})
    with pytest.raises(CheckpointStoreError, match=rf"the numpy RNG state \(blob {key} in p000001.safetensors\) is "
                                                   r"damaged \(Error -3 while decompressing data"):
        store.rng({"numpy": {"$blob": key}})
    with pytest.raises(CheckpointStoreError, match=r"blob 0+ is not stored"):
        store.read_blob("0" * 32)
    with pytest.raises(CheckpointStoreError, match=rf"blob {key} in p000001.safetensors \(15 bytes\) is not a <f4 "
                                                   r"array of shape \[4\]"):
        store.array(key, "<f4", [4])


# -- issue 24: NaN appearing or vanishing is a difference --------------------------------------------------------------
def test_compare_arrays_counts_nans_that_appear_or_vanish_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = compare_arrays(np.array([1.0, 2.0], np.float32), np.array([1.0, np.nan], np.float32))
        assert d == {"index": (1,), "max_abs": 0.0, "max_ulp": 0, "nan_appeared": 1, "nan_vanished": 0}
        d = compare_arrays(np.array(3.0), np.array(np.nan))  # a scalar: numpy's "All-NaN slice" warning before
        assert d == {"index": (), "max_abs": 0.0, "max_ulp": 0, "nan_appeared": 1, "nan_vanished": 0}
        d = compare_arrays(np.array([np.nan, np.nan, 1.0]), np.array([0.5, 2.0, 1.25]))
        assert d == {"index": (0,), "max_abs": 0.25, "max_ulp": 1 << 50, "nan_appeared": 0, "nan_vanished": 2}
        d = compare_arrays(np.array([np.inf, 1.0]), np.array([np.inf, -np.inf]))  # inf - inf is not a NaN gap
        assert d == {"index": (1,), "max_abs": np.inf, "max_ulp": d["max_ulp"], "nan_appeared": 0,
                     "nan_vanished": 0}
        assert compare_arrays(np.array([1 + 2j]), np.array([1 + 3j]))["max_abs"] == 1.0


def test_diff_reports_nans_that_appear_or_vanish(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(shell, "import tinygrad_nb as tg\nt = tg.tensor([1.0, 2.0])\ns = tg.tensor(3.0)\n"
           "u = tg.tensor([float('nan'), 1.0])", capsys)
    run_ok(shell, "t = tg.tensor([1.0, float('nan')])\ns = tg.tensor(float('nan'))\nu = tg.tensor([0.5, 1.5])",
           capsys)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run_ok(shell, "%tg_diff #1 #2", capsys)
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []
    assert out.splitlines() == [
        "#1 -> #2: 3 variables differ",
        "variable  change   max_abs  max_ulp  where",
        "--------  -------  -------  -------  ---------------------------",
        "t         changed  0        0        nan appeared in 1 element",
        "s         changed  0        0        nan appeared in 1 element",
        "u         changed  0.5      4194304  nan vanished from 1 element",
    ]
