"""Checkpoints: byte-for-byte round trips, damaged files, atomic writes, versions and migrations, key-mismatch hints.

The exact-resume test at the end (train 20 steps == train 10, save, load in a fresh process, train 10 more) runs
tests/resume_script.py in subprocesses.
"""
from __future__ import annotations

import json
import math
import os
import queue
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy

import tinygrad_nb as tg
from tinygrad_nb import checkpoint
from tinygrad_nb import io as tio
from tinygrad_nb.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    describe_key_mismatch,
    load,
    save,
    suggest_key_mapping,
    write_safetensors,
)

HERE = Path(__file__).parent


class DictModel:
    """The smallest thing with state_dict/load_state_dict (no dependency on tinygrad_nb.nn)."""

    def __init__(self, tensors: dict[str, tg.Tensor]):
        self.tensors = tensors
        self.loaded: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, tg.Tensor]:
        return dict(self.tensors)

    def load_state_dict(self, state: dict[str, Any], strict: bool = True, versions: Any = None) -> None:
        self.loaded = state
        for k, v in state.items():
            self.tensors[k].data[...] = v.numpy()


class StateHolder:
    """An optimizer/scheduler/loader stand-in: hands back whatever state it was given."""

    def __init__(self, state: Any):
        self.state = state
        self.loaded: Any = None

    def state_dict(self) -> Any:
        return self.state

    def load_state_dict(self, state: Any) -> None:
        self.loaded = state


def all_dtype_tensors() -> dict[str, tg.Tensor]:
    rng = np.random.default_rng(0)
    arrays = {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f64": rng.standard_normal((2, 3, 2)),
        "f16": rng.standard_normal(5).astype(np.float16),
        "i64": rng.integers(-2**62, 2**62, size=(4,)),
        "i32": rng.integers(-9, 9, size=(2, 2)).astype(np.int32),
        "i16": np.array([-3, 7], dtype=np.int16),
        "i8": np.array([-128, 127], dtype=np.int8),
        "u8": np.array([0, 255, 7], dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "special": np.array([np.nan, np.inf, -np.inf, -0.0], dtype=np.float32),
        "transposed": np.arange(12, dtype=np.float32).reshape(3, 4).T,  # not C-contiguous
    }
    if tg.bfloat16 is not None:
        arrays["bf16"] = rng.standard_normal(6).astype(tg.bfloat16)
    return {name: tg.Tensor(a) for name, a in arrays.items()}


def header_of(path: Path) -> tuple[int, dict[str, Any]]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return n, json.loads(raw[8:8 + n])


# -- round trips ---------------------------------------------------------------------------------------------------
def test_every_dtype_round_trips_byte_for_byte(tmp_path: Path) -> None:
    tensors = all_dtype_tensors()
    path = save(tmp_path / "c.safetensors", model=DictModel(tensors), fingerprint=False)
    ckpt = load(path)
    assert list(ckpt.model_state) == list(tensors)  # order kept
    for name, t in tensors.items():
        got = ckpt.model_state[name]
        assert got.dtype == t.dtype and got.shape == t.shape, name
        assert got.numpy().tobytes() == np.ascontiguousarray(t.numpy()).tobytes(), name
        assert ckpt.tensors[f"model/{name}"] is got


def test_manifest_fields_and_structures_round_trip(tmp_path: Path) -> None:
    opt_state = {"state": {0: {"step": tg.tensor(3.0), "exp_avg": tg.randn(2, 2)}, 1: {"step": 7}},
                 "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1], "name": None}]}
    extra = {"note": "héllo ✓", "nan": math.nan, "big": 2**70, "tuple": (1, "a", (2.5,)), "int_keys": {1: "x", 2: [3]},
             "np_scalar": np.float32(0.1), "np_int": np.int64(-4), "np_f64": np.float64(0.3), "np_bool": np.True_,
             "array": np.arange(6).reshape(2, 3),
             "tensor": tg.ones(2), "__dunder": True}
    model = DictModel({"w": tg.randn(2, 2)})
    path = save(tmp_path / "c.safetensors", model=model, optimizer=StateHolder(opt_state),
                scheduler=StateHolder({"last_epoch": 4, "base_lrs": [0.1]}), loader=StateHolder({"epoch": 1,
                "perm": np.array([2, 0, 1])}), step=42, extra=extra)
    opt, sched, loader = StateHolder(None), StateHolder(None), StateHolder(None)
    ckpt = load(path, model=DictModel({"w": tg.zeros(2, 2)}), optimizer=opt, scheduler=sched, loader=loader)
    assert ckpt.step == 42
    assert ckpt.restored == ["model", "optimizer", "scheduler", "loader", "rng"]
    m = ckpt.manifest
    assert m["format_version"] == FORMAT_VERSION and m["library_version"] == tg.__version__
    assert m["created"].endswith("+00:00") and m["tensors"]["model/w"]["shape"] == [2, 2]
    assert m["tensors"]["model/w"]["dtype"] == "float32" and len(m["tensors"]["model/w"]["xxh3_128"]) == 32
    # optimizer: int keys, tuples, tensors and plain numbers come back as they were
    assert set(opt.loaded["state"]) == {0, 1} and opt.loaded["state"][1] == {"step": 7}
    assert opt.loaded["param_groups"] == opt_state["param_groups"]
    assert isinstance(opt.loaded["param_groups"][0]["betas"], tuple)
    assert opt.loaded["state"][0]["exp_avg"].numpy().tobytes() == opt_state["state"][0]["exp_avg"].numpy().tobytes()
    assert sched.loaded == {"last_epoch": 4, "base_lrs": [0.1]}
    assert isinstance(loader.loaded["perm"], np.ndarray) and loader.loaded["perm"].tolist() == [2, 0, 1]
    e = ckpt.extra
    assert e["note"] == "héllo ✓" and math.isnan(e["nan"]) and e["big"] == 2**70
    assert e["tuple"] == (1, "a", (2.5,)) and e["int_keys"] == {1: "x", 2: [3]} and e["__dunder"] is True
    assert type(e["np_scalar"]) is np.float32 and e["np_scalar"] == np.float32(0.1)
    assert type(e["np_int"]) is np.int64 and e["np_int"] == -4
    assert type(e["np_f64"]) is np.float64 and e["np_f64"] == 0.3 and type(e["np_bool"]) is np.bool_
    assert e["array"].tolist() == [[0, 1, 2], [3, 4, 5]] and e["tensor"].tolist() == [1.0, 1.0]


def test_rng_states_are_saved_and_restored(tmp_path: Path) -> None:
    tg.manual_seed(123)
    tg.rand(5)
    np.random.seed(7)
    np.random.standard_normal()  # leaves a cached gaussian in the legacy state
    random.seed(9)
    path = save(tmp_path / "c.safetensors", fingerprint=False)
    expected = (tg.rand(4).numpy().tobytes(), np.random.standard_normal(3).tobytes(), random.random())
    tg.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    load(path)
    assert (tg.rand(4).numpy().tobytes(), np.random.standard_normal(3).tobytes(), random.random()) == expected
    tg.manual_seed(0)
    load(path, restore_rng=False)
    assert tg.get_rng_state() == {"seed": 0, "offset": 0}


def test_map_location_and_saved_device(tmp_path: Path) -> None:
    model = DictModel({"a": tg.randn(2, device="cpu:sim"), "b": tg.randn(3)})
    path = save(tmp_path / "c.safetensors", model=model, fingerprint=False)
    ckpt = load(path)
    assert str(ckpt.model_state["a"].device) == "cpu:sim" and str(ckpt.model_state["b"].device) == "cpu"
    ckpt = load(path, map_location="cpu:sim")
    assert all(str(t.device) == "cpu:sim" for t in ckpt.tensors.values())
    assert ckpt.model_state["b"].numpy().tobytes() == model.tensors["b"].numpy().tobytes()


def test_saved_device_unavailable_suggests_map_location(tmp_path: Path) -> None:
    path = save(tmp_path / "c.safetensors", model=DictModel({"w": tg.ones(2)}), fingerprint=False)
    _rewrite_manifest(path, lambda m: m["tensors"]["model/w"].update(device="cuda:7"))
    with pytest.raises(CheckpointError, match=r"'model/w' was saved on cuda:7.*map_location='cpu'"):
        load(path)
    assert load(path, map_location="cpu").model_state["w"].tolist() == [1.0, 1.0]


def test_file_is_plain_safetensors(tmp_path: Path) -> None:
    tensors = {"w": tg.randn(3, 2), "b": tg.zeros(2)}
    path = save(tmp_path / "c.safetensors", model=DictModel(tensors), step=1)
    plain = safetensors.numpy.load_file(str(path))
    assert sorted(plain) == ["model/b", "model/w"]
    assert plain["model/w"].tobytes() == tensors["w"].numpy().tobytes()
    with safetensors.safe_open(str(path), framework="np") as f:
        meta = f.metadata()
    assert meta["format"] == "tinygrad_nb.checkpoint" and meta["format_version"] == str(FORMAT_VERSION)
    assert json.loads(meta["manifest"])["step"] == 1


def test_fingerprint_is_stored(tmp_path: Path) -> None:
    model = DictModel({"w": tg.randn(3)})
    ckpt = load(save(tmp_path / "c.safetensors", model=model))
    fp = ckpt.fingerprint
    assert set(fp) == {"digest", "code", "params", "data", "environment"} and len(fp["digest"]) == 16
    assert fp["environment"]["numpy"] == np.__version__ and fp["params"]["tensors"] == 1
    assert load(save(tmp_path / "d.safetensors", fingerprint=False)).fingerprint is None


def test_unstorable_extra_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"extra\['run'\]\['callback'\] is a function"):
        save(tmp_path / "c.safetensors", extra={"run": {"callback": lambda: 0}})
    with pytest.raises(CheckpointError, match=r"extra\['items'\]\[1\] is a set"):
        save(tmp_path / "c.safetensors", extra={"items": [1, {2}]})
    with pytest.raises(CheckpointError, match="step must be an int"):
        save(tmp_path / "c.safetensors", step=1.5)
    assert not list(tmp_path.iterdir())  # nothing was written


# -- damaged files -------------------------------------------------------------------------------------------------
def saved(tmp_path: Path) -> Path:
    model = DictModel({"fc.weight": tg.randn(8, 8), "fc.bias": tg.randn(8)})
    opt = StateHolder({"state": {0: {"exp_avg": tg.randn(8, 8)}}, "param_groups": []})
    return save(tmp_path / "c.safetensors", model=model, optimizer=opt, step=3, fingerprint=False)


@pytest.mark.parametrize("name", ["model/fc.weight", "model/fc.bias", "optimizer/state/0/exp_avg"])
def test_flipped_byte_names_the_corrupt_tensor(tmp_path: Path, name: str) -> None:
    path = saved(tmp_path)
    n, header = header_of(path)
    start, end = header[name]["data_offsets"]
    raw = bytearray(path.read_bytes())
    raw[8 + n + (start + end) // 2] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=rf"tensor '{name}' is corrupt") as info:
        load(path)
    assert str(path) in str(info.value) and "other" not in str(info.value)
    assert load(path, verify=False).step == 3  # verify=False skips the hashes


def test_flipped_byte_in_manifest(tmp_path: Path) -> None:
    path = saved(tmp_path)
    raw = path.read_bytes()
    i = raw.index(b'\\"step\\":3')  # inside the manifest string of the JSON header
    path.write_bytes(raw[:i + 9] + b"4" + raw[i + 10:])
    with pytest.raises(CheckpointError, match="manifest is corrupt"):
        load(path)


@pytest.mark.parametrize("keep", [0, 5, 8, 20, "header", "half", "minus1"])
def test_truncated_file(tmp_path: Path, keep: Any) -> None:
    path = saved(tmp_path)
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    cut = {"header": 8 + n, "half": 8 + n + (len(raw) - 8 - n) // 2, "minus1": len(raw) - 1}.get(keep, keep)
    path.write_bytes(raw[:cut])
    with pytest.raises(CheckpointError, match="truncated|too short") as info:
        load(path)
    assert str(path) in str(info.value)


def test_garbage_and_foreign_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(struct.pack("<Q", 16) + b"not json at all!" + b"\0" * 64)
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load(garbage)
    noise = tmp_path / "noise.bin"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load(noise)
    foreign = tmp_path / "foreign.safetensors"
    safetensors.numpy.save_file({"x": np.zeros(3, np.float32)}, str(foreign))
    with pytest.raises(CheckpointError, match="without a tinygrad_nb manifest"):
        load(foreign)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load(tmp_path / "missing.safetensors")
    padded = saved(tmp_path)
    padded.write_bytes(padded.read_bytes() + b"xx")
    with pytest.raises(CheckpointError, match="2 unexpected bytes"):
        load(padded)


# -- atomic writes -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("durable", [True, False], ids=["durable", "not-durable"])
def test_interrupted_save_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    durable: bool) -> None:
    path = saved(tmp_path)
    before = path.read_bytes()
    real_write = checkpoint.write_safetensors
    calls = []

    def half_then_interrupt(f: Any, arrays: dict[str, np.ndarray], metadata: dict[str, str], **kw: Any) -> None:
        """The real writer, stopped by Ctrl-C once half the file is out (and handed to the kernel's writeback)."""
        class Half:
            written = 0

            def write(self, data: Any) -> int:
                n = f.write(data)
                self.written += n
                if self.written > 32 * 1024 * 1024:
                    raise KeyboardInterrupt
                return n

            def flush(self) -> None:
                f.flush()

            def fileno(self) -> int:
                return f.fileno()

        calls.append(kw)
        real_write(Half(), arrays, metadata, **kw)

    monkeypatch.setattr(checkpoint, "write_safetensors", half_then_interrupt)
    big = DictModel({f"w{i}": tg.ones(1024, 1024) for i in range(16)})  # 64 MB
    with pytest.raises(KeyboardInterrupt):
        save(path, model=big, step=99, durable=durable, fingerprint=False)
    assert calls == [{"writeback": True}]
    assert path.read_bytes() == before and load(path).step == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # the temporary file is gone


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "not-durable"])
def test_durable_fsyncs_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool) -> None:
    """durable=True: the file's data is fsynced before the rename, the folder after; durable=False: no fsync. Both
    replace atomically and write the same bytes."""
    path = saved(tmp_path)
    events: list[str] = []
    real_fsync, real_replace = tio.os.fsync, tio.os.replace

    def fsync(fd: int) -> None:
        events.append("fsync dir" if Path(f"/proc/self/fd/{fd}").resolve() == tmp_path.resolve() else "fsync file")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(tio.os, "fsync", fsync)
    monkeypatch.setattr(tio.os, "replace", replace)
    model = DictModel(all_dtype_tensors())
    save(path, model=model, step=5, durable=durable, fingerprint=False)
    monkeypatch.undo()
    if durable:
        expected = ["fsync file", "replace", "fsync dir"] if Path("/proc/self/fd").is_dir() else \
            ["fsync file", "replace", "fsync file"]
        assert events == expected
    else:
        assert events == ["replace"]
    ckpt = load(path)
    assert ckpt.step == 5
    for name, t in model.tensors.items():  # byte for byte, either way
        assert ckpt.model_state[name].numpy().tobytes() == np.ascontiguousarray(t.numpy()).tobytes(), name
    other = save(tmp_path / "other.safetensors", model=model, step=5, durable=not durable, fingerprint=False)
    n, header = header_of(path)
    n2, header2 = header_of(other)
    for h in (header, header2):
        h["__metadata__"].pop("manifest_xxh3_128")
        h["__metadata__"]["manifest"] = {k: v for k, v in json.loads(h["__metadata__"]["manifest"]).items()
                                         if k != "created"}
    assert header == header2 and path.read_bytes()[8 + n:] == other.read_bytes()[8 + n2:]


def test_replaced_file_is_released_in_the_background(tmp_path: Path) -> None:
    """Saving over a large checkpoint frees the old file on the io module's thread; nothing stays open after
    wait_for_released, and tensors still mapped from the old file keep their values."""
    path = tmp_path / "c.safetensors"
    first = {f"w{i}": tg.full((1024, 1024), float(i)) for i in range(4)}  # 16 MB: above the 8 MB threshold
    save(path, model=DictModel(first), fingerprint=False)
    old = load(path)  # mmap of the first file
    tio.wait_for_released()
    fds_before = _open_fds()
    for step in range(3):
        save(path, model=DictModel({k: v + 1 for k, v in first.items()}), step=step, fingerprint=False)
    tio.wait_for_released()
    assert _open_fds() == fds_before
    assert old.model_state["w3"].numpy()[0, 0] == 3.0 and load(path).model_state["w3"].numpy()[0, 0] == 4.0
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def _open_fds() -> set[str] | None:
    folder = Path("/proc/self/fd")
    return {p.name for p in folder.iterdir()} if folder.is_dir() else None


def test_release_queue_after_fork_closes_the_childs_copies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    pending: queue.Queue[int] = queue.Queue()
    pending.put(fd)
    monkeypatch.setattr(tio, "_release_queue", pending)
    tio._after_fork_in_child()
    assert tio._release_queue is None
    with pytest.raises(OSError):
        os.fstat(fd)  # closed


def test_atomic_write_keeps_its_api(tmp_path: Path) -> None:
    tio.atomic_write(tmp_path / "a.txt", "text")
    tio.atomic_write(tmp_path / "a.txt", b"bytes", durable=False)
    assert (tmp_path / "a.txt").read_bytes() == b"bytes"
    with tio.atomic_open(tmp_path / "b.txt", "w") as f:
        f.write("x")
    with pytest.raises(ValueError), tio.atomic_open(tmp_path / "c.txt", "a"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_optimizer_is_saved_without_copying_its_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """save reads an Optimizer's moments in place (no state_dict() copies) and stores exactly what state_dict() would
    give; an optimizer class with its own state_dict() is still asked for it."""
    from tinygrad_nb import nn, optim
    from tinygrad_nb.optim import optimizer as optimizer_module

    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    opt = optim.Adam([{"params": model[0].parameters()}, {"params": model[1].parameters(), "lr": 0.5}], lr=1e-3,
                     betas=(0.8, 0.9))
    for p in model.parameters():
        p.grad = tg.randn(*p.shape)
    opt.step()
    copies = []
    real_copy = optimizer_module._copy_value
    monkeypatch.setattr(optimizer_module, "_copy_value", lambda v: copies.append(v) or real_copy(v))
    fast = save(tmp_path / "fast.safetensors", model=model, optimizer=opt, fingerprint=False)
    assert copies == []
    monkeypatch.undo()
    copied = save(tmp_path / "copied.safetensors", model=model, optimizer=StateHolder(opt.state_dict()),
                  fingerprint=False)
    a, b = load(fast), load(copied)
    assert a.manifest["optimizer"]["state"] == b.manifest["optimizer"]["state"]
    assert a.manifest["tensors"] == b.manifest["tensors"]
    for name in a.tensors:
        assert a.tensors[name].numpy().tobytes() == b.tensors[name].numpy().tobytes(), name
    fresh = optim.Adam([{"params": model[0].parameters()}, {"params": model[1].parameters(), "lr": 0.5}])
    load(fast, optimizer=fresh)
    assert fresh.param_groups[1]["lr"] == 0.5 and fresh.param_groups[0]["betas"] == (0.8, 0.9)

    class Custom(optim.SGD):
        def state_dict(self) -> dict[str, Any]:
            state = super().state_dict()
            state["custom"] = 7
            return state

    custom = save(tmp_path / "custom.safetensors", optimizer=Custom(model.parameters(), lr=0.1), fingerprint=False)
    assert load(custom).optimizer_state["custom"] == 7


WRITER = """
import sys, tinygrad_nb as tg
from tinygrad_nb.checkpoint import save
class M:
    def __init__(self, n): self.t = {f"w{i}": tg.randn(1024, 1024) for i in range(n)}
    def state_dict(self): return self.t
save(sys.argv[1], model=M(1), step=0, fingerprint=False)
big = M(16)  # 64 MB, written tensor by tensor
print("ready", flush=True)
step = 1
while True:
    save(sys.argv[1], model=big, step=step, fingerprint=False)
    step += 1
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_process_killed_mid_save(tmp_path: Path, sig: int) -> None:
    path = tmp_path / "c.safetensors"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 20
        writing = False
        while not writing and time.monotonic() < deadline:
            writing = any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
        proc.send_signal(sig)  # while the temporary file is being written (or just renamed)
        assert writing
        proc.wait(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode != 0
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != path.name]
    if sig == signal.SIGINT:
        assert leftovers == []  # Ctrl-C runs the cleanup
    else:
        assert all(name.startswith(f".{path.name}.") and name.endswith(".tmp") for name in leftovers)
    ckpt = load(path)  # the old file or a complete new one, never a torn mix
    assert ckpt.step is not None and len(ckpt.tensors) in (1, 16)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # load removed the killed save's temporary file


# -- versions ------------------------------------------------------------------------------------------------------
def _rewrite_manifest(path: Path, change: Any) -> None:
    """Edit a saved checkpoint's manifest (keeping its hash consistent) to simulate other versions."""
    with safetensors.safe_open(str(path), framework="np") as f:
        arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        meta = f.metadata()
    manifest = json.loads(meta["manifest"])
    change(manifest)
    text = json.dumps(manifest)
    meta.update(manifest=text, manifest_xxh3_128=checkpoint.xxhash.xxh3_128_hexdigest(text.encode()))
    with open(path, "wb") as f:
        write_safetensors(f, arrays, meta)


def test_newer_format_is_refused(tmp_path: Path) -> None:
    path = saved(tmp_path)
    _rewrite_manifest(path, lambda m: m.update(format_version=FORMAT_VERSION + 1, library_version="9.0.0"))
    with pytest.raises(CheckpointError) as info:
        load(path)
    message = str(info.value)
    assert f"format {FORMAT_VERSION + 1}" in message and f"up to {FORMAT_VERSION}" in message
    assert "tinygrad_nb 9.0.0" in message and "upgrade tinygrad_nb" in message


def test_format_1_file_is_migrated(tmp_path: Path) -> None:
    """A format-1 file (dotted tensor names, no tensor table, no hashes, only our RNG state), written by the
    safetensors library itself."""
    w, exp_avg = np.arange(6, dtype=np.float32).reshape(2, 3), np.full((2, 3), 0.5, np.float32)
    manifest_v1 = {
        "format_version": 1, "library_version": "0.0.9", "created": "2024-01-01T00:00:00+00:00", "step": 10,
        "model": {"class": "Net", "versions": {"": 1}, "state": {"fc1.weight": {"__tensor__": "model.fc1.weight"}}},
        "optimizer": {"class": "Adam", "state": {"state": {"__dict__": [[0, {"exp_avg": {"__tensor__":
                      "optimizer.state.0.exp_avg"}, "step": 10}]]}, "param_groups": [{"lr": 0.01, "params": [0]}]}},
        "scheduler": None, "loader": None, "extra": {"epoch": 2}, "rng": {"seed": 5, "offset": 77},
    }
    path = tmp_path / "v1.safetensors"
    safetensors.numpy.save_file({"model.fc1.weight": w, "optimizer.state.0.exp_avg": exp_avg}, str(path),
                                metadata={"format_version": "1", "manifest": json.dumps(manifest_v1)})
    opt = StateHolder(None)
    ckpt = load(path, optimizer=opt)
    assert ckpt.file_format_version == 1 and ckpt.format_version == FORMAT_VERSION
    assert ckpt.manifest["migrated_from"] == 1
    assert sorted(ckpt.tensors) == ["model/fc1.weight", "optimizer/state/0/exp_avg"]
    assert ckpt.model_state["fc1.weight"].numpy().tobytes() == w.tobytes()
    assert opt.loaded["state"][0]["exp_avg"].numpy().tobytes() == exp_avg.tobytes()
    assert opt.loaded["state"][0]["step"] == 10 and ckpt.step == 10 and ckpt.extra == {"epoch": 2}
    assert tg.get_rng_state() == {"seed": 5, "offset": 77}
    assert ckpt.manifest["tensors"]["model/fc1.weight"]["xxh3_128"] is None  # format 1 had nothing to verify


def test_missing_migration_and_registration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = saved(tmp_path)
    _rewrite_manifest(path, lambda m: m.update(format_version=0))
    with pytest.raises(CheckpointError, match="no migration from format 0 to 1 is registered"):
        load(path)
    # migrations chain: with a (pretend) current format 4, a format 2 manifest goes through 2 -> 3 -> 4
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 4)
    monkeypatch.setattr(checkpoint, "_migrations", {})

    @checkpoint.register_migration(2)
    def two_to_three(manifest: dict[str, Any], arrays: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return {**manifest, "format_version": 3, "seen": ["2->3"]}, {**arrays, "new": np.zeros(1)}

    @checkpoint.register_migration(3)
    def three_to_four(manifest: dict[str, Any], arrays: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return {**manifest, "format_version": 4, "seen": manifest["seen"] + ["3->4"]}, arrays

    with pytest.raises(ValueError, match="already registered"):
        checkpoint.register_migration(3)(three_to_four)
    manifest, arrays = checkpoint._migrate(path, {"format_version": 2}, {})
    assert manifest == {"format_version": 4, "seen": ["2->3", "3->4"], "migrated_from": 2} and list(arrays) == ["new"]

    checkpoint._migrations[3] = lambda manifest, arrays: (manifest, arrays)  # forgets to bump the version
    with pytest.raises(CheckpointError, match="did not produce format 4"):
        checkpoint._migrate(path, {"format_version": 2}, {})


# -- key-mismatch hints --------------------------------------------------------------------------------------------
def test_hint_for_added_prefix() -> None:
    own = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    saved_keys = ["module." + k for k in own]
    mapping = suggest_key_mapping(own, saved_keys)
    assert {u: m for u, (m, _) in mapping.items()} == dict(zip(saved_keys, own))
    message = describe_key_mismatch(own, saved_keys)
    assert ('unexpected key "module.fc1.weight": did you mean "fc1.weight"? (all 4 unexpected keys carry the prefix '
            '"module.")') in message
    assert message.startswith("4 missing key(s), 4 unexpected key(s)")


def test_hint_for_removed_prefix() -> None:
    message = describe_key_mismatch(["net.w", "net.b"], ["w", "b"])
    assert 'unexpected key "w": did you mean "net.w"? (all 2 missing keys carry the prefix "net."' in message


def test_hint_for_renamed_layer_uses_shapes() -> None:
    missing = ["encoder.linear1.weight", "encoder.linear1.bias", "head.weight"]
    unexpected = ["encoder.fc1.weight", "encoder.fc1.bias", "classifier.weight"]
    expected_shapes = {"encoder.linear1.weight": (4, 3), "encoder.linear1.bias": (4,), "head.weight": (2, 4)}
    found_shapes = {"encoder.fc1.weight": (4, 3), "encoder.fc1.bias": (4,), "classifier.weight": (2, 4)}
    mapping = suggest_key_mapping(missing, unexpected, expected_shapes, found_shapes)
    assert {u: m for u, (m, _) in mapping.items()} == dict(zip(unexpected, missing))
    assert 'layer "encoder.fc1" renamed "encoder.linear1"' in mapping["encoder.fc1.weight"][1]
    # a different shape rules a candidate out
    assert suggest_key_mapping(["a.weight"], ["b.weight"], {"a.weight": (3,)}, {"b.weight": (4,)}) == {}


def test_load_into_mismatched_model_raises_with_hint(tmp_path: Path) -> None:
    class Wrapped(DictModel):
        def state_dict(self) -> dict[str, tg.Tensor]:
            return {"module." + k: v for k, v in self.tensors.items()}

    path = save(tmp_path / "c.safetensors", model=Wrapped({"fc1.weight": tg.ones(2, 2), "fc1.bias": tg.ones(2)}),
                fingerprint=False)
    target = DictModel({"fc1.weight": tg.zeros(2, 2), "fc1.bias": tg.zeros(2)})
    with pytest.raises(CheckpointError, match=r'did you mean "fc1.weight"\? \(all 2 unexpected keys carry the '
                                              r'prefix "module.\"\)'):
        load(path, model=target)
    assert target.loaded is None  # nothing was touched
    load(path, model=DictModel({"module.fc1.weight": tg.zeros(2, 2), "module.fc1.bias": tg.zeros(2)}))


# -- memory-mapped loading -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_mmap", [True, False], ids=["mmap", "read"])
def test_loaded_tensors_are_private_and_writable(tmp_path: Path, use_mmap: bool) -> None:
    tensors = all_dtype_tensors()
    path = save(tmp_path / "c.safetensors", model=DictModel(tensors), fingerprint=False)
    before = path.read_bytes()
    ckpt = load(path, mmap=use_mmap)
    for name, t in tensors.items():
        assert ckpt.model_state[name].numpy().tobytes() == np.ascontiguousarray(t.numpy()).tobytes(), name
    ckpt.model_state["f32"].data[...] = 0.0  # in place, copy-on-write
    ckpt.model_state["f32"].add_(1.0)
    assert ckpt.model_state["f32"].numpy().tolist() == np.ones((3, 4)).tolist()
    assert path.read_bytes() == before and load(path).model_state["f32"].numpy().tobytes() == tensors["f32"].numpy(
    ).tobytes()
    save(path, model=DictModel({"w": tg.ones(2)}), fingerprint=False)  # replacing the file under a live mapping
    assert ckpt.model_state["f64"].numpy().tobytes() == tensors["f64"].numpy().tobytes()


# -- with tinygrad_nb.nn modules -----------------------------------------------------------------------------------
nn = pytest.importorskip("tinygrad_nb.nn")


class Block(nn.Module):
    """Version 2 renamed ``proj`` to ``linear``; the upgrade hook maps old checkpoints."""

    _version = 2

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 4)

    def _upgrade_state_dict(self, state_dict: dict[str, Any], prefix: str, saved_version: int) -> None:
        if saved_version < 2:
            for suffix in ("weight", "bias"):
                old = f"{prefix}proj.{suffix}"
                if old in state_dict:
                    state_dict[f"{prefix}linear.{suffix}"] = state_dict.pop(old)


class OldBlock(nn.Module):
    _version = 1

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 4)


def test_module_version_upgrade_hook_renames_parameters(tmp_path: Path) -> None:
    old = nn.Sequential(OldBlock(), nn.ReLU())
    path = save(tmp_path / "old.safetensors", model=old, fingerprint=False)
    assert load(path).manifest["model"]["versions"] == {"": 1, "0": 1, "0.proj": 1, "1": 1}
    new = nn.Sequential(Block(), nn.ReLU())
    ckpt = load(path, model=new)
    assert "model" in ckpt.restored
    assert new[0].linear.weight.numpy().tobytes() == old[0].proj.weight.numpy().tobytes()
    assert new[0].linear.bias.numpy().tobytes() == old[0].proj.bias.numpy().tobytes()


def test_nn_model_key_mismatch_hints(tmp_path: Path) -> None:
    class Net(nn.Module):
        def __init__(self, name: str) -> None:
            super().__init__()
            setattr(self, name, nn.Linear(3, 4))
            self.head = nn.Linear(4, 2)

    class Wrapper(nn.Module):
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

    path = save(tmp_path / "wrapped.safetensors", model=Wrapper(Net("fc1")), fingerprint=False)
    with pytest.raises(CheckpointError) as info:
        load(path, model=Net("fc1"))
    assert ('unexpected key "module.fc1.weight": did you mean "fc1.weight"? (all 4 unexpected keys carry the prefix '
            '"module.")') in str(info.value)
    renamed = save(tmp_path / "renamed.safetensors", model=Net("fc1"), fingerprint=False)
    target = Net("encoder")
    before = target.encoder.weight.numpy().copy()
    with pytest.raises(CheckpointError, match=r'unexpected key "fc1.weight": did you mean "encoder.weight"\? \(same '
                                              r'shape \(4, 3\), layer "fc1" renamed "encoder"\?\)'):
        load(renamed, model=target)
    assert np.array_equal(target.encoder.weight.numpy(), before)  # untouched
    load(renamed, model=target, strict=False)  # loads what matches (head), as Module.load_state_dict does


# -- exact resume in a fresh process -------------------------------------------------------------------------------
def run_script(*args: str) -> dict[str, Any]:
    out = Path(args[1])
    subprocess.run([sys.executable, str(HERE / "resume_script.py"), *args], check=True, timeout=120)
    return json.loads(out.read_text())


def test_resume_in_fresh_process_is_bit_identical(tmp_path: Path) -> None:
    """20 steps straight == 10 steps, save, load in a new process, 10 more: losses and parameters, bit for bit
    (dropout masks, mid-epoch shuffled DataLoader, Adam moments, StepLR)."""
    pytest.importorskip("tinygrad_nb.data")
    ckpt = str(tmp_path / "run.safetensors")
    full = run_script("full", str(tmp_path / "full.json"))
    first = run_script("first", str(tmp_path / "first.json"), ckpt)
    resumed = run_script("resume", str(tmp_path / "resume.json"), ckpt)
    assert len(full["losses"]) == 20 and len(first["losses"]) == 10 and len(resumed["losses"]) == 10
    assert first["losses"] + resumed["losses"] == full["losses"]
    assert resumed["params"] == full["params"] and resumed["lr"] == full["lr"]
    recorded = resumed["recorded"]
    assert recorded["restored"] == ["model", "optimizer", "scheduler", "loader", "rng"]
    assert recorded["extra"] == {"vocabularies": {"species": ["setosa", "versicolor", "virginica"]}}
    assert [Path(f["path"]).name for f in recorded["data"]] == ["iris.csv"]  # data fingerprint from read_csv
    assert recorded["code"] == str((HERE / "resume_script.py").resolve())
    # control: without the RNG state the dropout masks differ, so the run does too
    no_rng = run_script("resume-without-rng", str(tmp_path / "no_rng.json"), ckpt)
    assert no_rng["losses"] != resumed["losses"]


def test_several_corrupt_tensors_are_all_named(tmp_path: Path) -> None:
    path = saved(tmp_path)
    n, header = header_of(path)
    raw = bytearray(path.read_bytes())
    for name in ("model/fc.bias", "model/fc.weight"):
        raw[8 + n + header[name]["data_offsets"][0]] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="tensors 'model/fc.weight', 'model/fc.bias' are corrupt"):
        load(path)
