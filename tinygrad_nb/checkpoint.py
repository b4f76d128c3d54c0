"""Checkpoints: save and load a whole training state as one file, atomically, verified, versioned.

    tg.save("run.safetensors", model=model, optimizer=opt, scheduler=sched, loader=loader, step=step)
    ckpt = tg.load("run.safetensors", model=model, optimizer=opt, scheduler=sched, loader=loader)
    ckpt.step, ckpt.extra, ckpt.fingerprint

**On disk** a checkpoint is one ordinary safetensors file (any safetensors reader opens it):

* every tensor is stored under a namespaced name: ``model/fc1.weight``, ``optimizer/state/0/exp_avg``, ...;
* the safetensors header's ``__metadata__`` holds ``format`` (``"tinygrad_nb.checkpoint"``), ``format_version``, the
  JSON *manifest* and the manifest's own xxh3-128 hash.

The manifest holds everything that is not a tensor: library version, creation time, step, ``extra``, the RNG states
(ours, numpy's legacy global one, Python's), the module versions, the optimizer/scheduler/loader state with each
tensor replaced by ``{"__tensor__": name}``, a table of every tensor's dtype, shape, device and xxh3-128 hash, and the
run fingerprint. docs/checkpoints.md describes every field.

Files are written by a small streaming writer through :func:`tinygrad_nb.io.atomic_open`, so a crash or Ctrl-C
mid-save leaves the previous file intact (and with ``durable=True``, the default, a power loss too). No tensor is
copied on the way: the arrays of the model, of an :class:`~tinygrad_nb.optim.Optimizer` (read without its copying
``state_dict()``) and of ``extra`` are hashed and written straight from their own memory. Reading parses and
checks the header first (so truncated and garbage files get a clear :class:`CheckpointError`), then reads all tensor
bytes with one ``readinto`` into one buffer, of which each tensor is a view.
"""
from __future__ import annotations

import datetime
import difflib
import json
import math
import mmap
import os
import random
import struct
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np
import xxhash

from . import dtype as dtypes
from .device import Device, DeviceError
from .io import atomic_open, remove_stale_temps, start_writeback
from .optim.optimizer import Optimizer
from .random import get_rng_state, set_rng_state
from .tensor import Tensor

FORMAT_VERSION = 2
FORMAT_NAME = "tinygrad_nb.checkpoint"
_MAX_HEADER_BYTES = 100 * 1024 * 1024
_WRITEBACK_EVERY = 8 * 1024 * 1024  # save starts the disk writes every 8 MiB (see write_safetensors)

# numpy dtype name <-> safetensors dtype code
_SAFETENSORS_DTYPES = {"bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "uint16": "U16",
                       "float16": "F16", "bfloat16": "BF16", "int32": "I32", "uint32": "U32", "float32": "F32",
                       "int64": "I64", "uint64": "U64", "float64": "F64"}
_NUMPY_DTYPES = {code: name for name, code in _SAFETENSORS_DTYPES.items()}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or read: corrupt, truncated, too new, or not matching the model."""


# -- the Checkpoint object -----------------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """What :func:`load` read. ``tensors`` maps namespaced names to tensors; the ``*_state`` fields are the state
    dicts to hand to new objects (``model.load_state_dict(ckpt.model_state)``)."""

    # What a replayed notebook cell cannot make again (see docs/cell_checkpoints.md, "Run-bound values")
    RUN_BOUND_FIELDS: ClassVar[dict[Any, str]] = {("manifest", "created"): "the time it was saved"}

    path: Path
    manifest: dict[str, Any]
    tensors: dict[str, Tensor]
    model_state: dict[str, Tensor] | None = None
    optimizer_state: Any = None
    scheduler_state: Any = None
    loader_state: Any = None
    scaler_state: Any = None  # a GradScaler's (tg.amp), when one was saved
    extra: Any = None
    file_format_version: int = FORMAT_VERSION
    restored: list[str] = field(default_factory=list)
    environment_note: str | None = None  # set by load: how the saving environment differs in ways that change bits

    @property
    def step(self) -> int | None:
        return self.manifest.get("step")

    @property
    def fingerprint(self) -> dict[str, Any] | None:
        return self.manifest.get("fingerprint")

    @property
    def created(self) -> str | None:
        return self.manifest.get("created")

    @property
    def library_version(self) -> str | None:
        return self.manifest.get("library_version")

    @property
    def format_version(self) -> int:
        return int(self.manifest["format_version"])

    def restore_rng(self) -> None:
        """Put the RNG states back as they were at save time (ours, numpy's global, Python's)."""
        _restore_rng(self.manifest.get("rng") or {})

    def __repr__(self) -> str:
        return (f"Checkpoint({str(self.path)!r}, step={self.step}, tensors={len(self.tensors)}, "
                f"format_version={self.format_version}, restored={self.restored})")


# -- save ------------------------------------------------------------------------------------------------------
def save(path: str | os.PathLike[str], model: Any = None, optimizer: Any = None, scheduler: Any = None,
         loader: Any = None, step: int | None = None, extra: Any = None, fingerprint: Any = True,
         durable: bool = True, scaler: Any = None) -> Path:
    """Write one checkpoint file holding the state of everything given. Returns the path.

    ``model``, ``optimizer``, ``scheduler``, ``loader`` and ``scaler`` (a ``tg.amp.GradScaler``) are anything with
    ``state_dict()``. ``extra`` is your own
    data: JSON values (dicts, lists, str, numbers, bool, None), tuples, numpy scalars, arrays and tensors.
    ``fingerprint``: True computes :func:`tinygrad_nb.fingerprint.fingerprint` for ``model``; pass a Fingerprint
    (or its dict) to store your own, or False to store none.

    The file is replaced atomically: a crash, kill or Ctrl-C during ``save`` leaves the previous file intact.
    ``durable=True`` also fsyncs it before the rename (and the folder after), so that a power loss or OS crash cannot
    leave a damaged or missing checkpoint either, and the checkpoint is on disk when ``save`` returns;
    ``durable=False`` skips the fsyncs (faster; like ``torch.save``): see docs/checkpoints.md for the trade-off.

    ``save(obj, path)``, PyTorch's order (the first argument is not a path), stores one object instead, e.g.
    ``tg.save(model.state_dict(), "m.safetensors")``; ``tg.load(path)`` then returns it (see :func:`_save_object`).
    """
    if not isinstance(path, (str, os.PathLike)):  # torch.save(obj, f) order
        return _save_object(path, model, durable)
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    table: dict[str, dict[str, Any]] = {}
    encoder = _Encoder(arrays, table)
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "library": "tinygrad_nb",
        "library_version": _library_version(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
        "step": _check_step(step),
    }
    scaler_section = (("scaler", scaler),) if scaler is not None else ()  # files without a scaler stay as they were
    for section, obj in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler), ("loader", loader),
                         *scaler_section):
        if obj is None:
            manifest[section] = None
            continue
        if not hasattr(obj, "state_dict"):
            raise CheckpointError(f"save: {section}={type(obj).__name__} has no state_dict() method")
        entry: dict[str, Any] = {"class": type(obj).__name__}
        if section == "model":
            entry["versions"] = _module_versions(obj)
        entry["state"] = encoder.encode(_state_dict(obj), (section,))
        manifest[section] = entry
    manifest["extra"] = encoder.encode(extra, ("extra",))
    manifest["rng"] = _capture_rng()
    manifest["fingerprint"] = _fingerprint_dict(fingerprint, model)
    manifest["tensors"] = table
    text = json.dumps(manifest, separators=(",", ":"))
    metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "manifest": text,
                "manifest_xxh3_128": xxhash.xxh3_128_hexdigest(text.encode())}
    with atomic_open(path, "wb", durable=durable) as f:
        write_safetensors(f, arrays, metadata, writeback=True)
    return path


def _save_object(obj: Any, path: Any, durable: bool) -> Path:
    """``tg.save(obj, path)``, as ``torch.save``: one object (a state dict, a tensor, nested dicts/lists/tuples of
    tensors, arrays and JSON values) in the same safetensors + JSON manifest file, under the manifest key
    ``object``; ``tg.load(path)`` returns it. No RNG states and no fingerprint are recorded (``torch.save`` records
    none, and ``tg.load`` of such a file leaves the RNGs alone). Modules and optimizers themselves are refused:
    storing them would need pickle, which tinygrad_nb never uses; their ``state_dict()`` is what to save."""
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"save(obj, f): f must be a path (str or os.PathLike), got {type(path).__name__}; "
                              "file objects are not supported")
    if hasattr(obj, "state_dict") and not isinstance(obj, (dict, Tensor)):
        raise CheckpointError(f"save: a {type(obj).__name__} object cannot be saved whole (that needs pickle, which "
                              "tinygrad_nb never uses); save its state instead: tg.save(obj.state_dict(), path), "
                              "and later obj.load_state_dict(tg.load(path))")
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    table: dict[str, dict[str, Any]] = {}
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "library": "tinygrad_nb", "library_version": _library_version(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"), "step": None,
        "model": None, "optimizer": None, "scheduler": None, "loader": None, "extra": None, "rng": None,
        "fingerprint": None,
    }
    manifest["object"] = _Encoder(arrays, table).encode(obj, ("object",))
    manifest["tensors"] = table
    text = json.dumps(manifest, separators=(",", ":"))
    metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "manifest": text,
                "manifest_xxh3_128": xxhash.xxh3_128_hexdigest(text.encode())}
    with atomic_open(path, "wb", durable=durable) as f:
        write_safetensors(f, arrays, metadata, writeback=True)
    return path


def _state_dict(obj: Any) -> Any:
    """``obj.state_dict()``; for an optimizer with the base class's state_dict, without copying its moments
    (``save`` writes the bytes right away, so it can read them in place). A subclass's own state_dict is called as
    is."""
    if isinstance(obj, Optimizer) and type(obj).state_dict is Optimizer.state_dict:
        return obj.state_dict(copy=False)
    return obj.state_dict()


class _Encoder:
    """Turns a state (nested dicts/lists/tuples of JSON values, scalars, arrays and tensors) into JSON, moving every
    array into ``arrays`` under a namespaced name and describing it in ``table``."""

    def __init__(self, arrays: dict[str, np.ndarray], table: dict[str, dict[str, Any]]):
        self.arrays = arrays
        self.table = table

    def encode(self, value: Any, where: tuple[Any, ...]) -> Any:
        if isinstance(value, np.generic):  # first: np.float64 is also a Python float
            if value.dtype.kind not in "biuf":
                raise CheckpointError(f"{_where(where)} is a numpy {value.dtype} scalar, which a checkpoint cannot "
                                      "store")
            return {"__scalar__": [value.dtype.name, value.item()]}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, Tensor):
            return {"__tensor__": self._store(value.numpy(), "tensor", str(value.device), where)}
        if isinstance(value, np.ndarray):
            return {"__ndarray__": self._store(value, "ndarray", "cpu", where)}
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v, where + (i,)) for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, where + (i,)) for i, v in enumerate(value)]
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: self.encode(v, where + (k,)) for k, v in value.items()}
            return {"__dict__": [[self.encode(k, where + ("<key>",)), self.encode(v, where + (k,))]
                                 for k, v in value.items()]}
        raise CheckpointError(f"{_where(where)} is a {type(value).__name__}, which a checkpoint cannot store (allowed: "
                              "dict, list, tuple, str, int, float, bool, None, numpy scalars and arrays, tensors)")

    def _store(self, array: np.ndarray, kind: str, device: str, where: tuple[Any, ...]) -> str:
        name = "/".join(str(part) for part in where)
        if name in self.arrays:
            raise CheckpointError(f"{_where(where)}: two values would be stored under the same tensor name {name!r}")
        if array.dtype.name not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"{_where(where)} has dtype {array.dtype}, which a checkpoint cannot store")
        array = array if array.flags.c_contiguous else array.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        self.arrays[name] = array
        self.table[name] = {"kind": kind, "dtype": array.dtype.name, "shape": list(array.shape), "device": device,
                            "xxh3_128": _hash(array)}
        return name


def _where(path: tuple[Any, ...]) -> str:
    """('extra', 'cb', 0) -> extra['cb'][0], for error messages."""
    return path[0] + "".join(f"[{part!r}]" for part in path[1:])


def _check_step(step: Any) -> int | None:
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise CheckpointError(f"save: step must be an int or None, got {type(step).__name__}")
    return int(step)


def _hash(array: np.ndarray) -> str:
    return xxhash.xxh3_128_hexdigest(_bytes(array))


def _bytes(array: np.ndarray) -> memoryview:
    """The raw bytes of a C-contiguous array, without a copy."""
    return memoryview(array.reshape(-1).view(np.uint8))


def _library_version() -> str:
    import tinygrad_nb  # noqa: PLC0415 - imported when called: the package imports this module

    return getattr(tinygrad_nb, "__version__", "unknown")


def _module_versions(model: Any) -> dict[str, int]:
    versions = getattr(model, "module_versions", None)
    return dict(versions()) if callable(versions) else {}


def _fingerprint_dict(value: Any, model: Any) -> dict[str, Any] | None:
    if value is False or value is None:
        return None
    if value is True:
        from .fingerprint import fingerprint  # noqa: PLC0415 - loaded only when a save asks for a fingerprint

        return fingerprint(model=model).to_dict()
    if isinstance(value, dict):
        return value
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise CheckpointError(f"save: fingerprint must be True, False, a Fingerprint or a dict, got {type(value).__name__}")


# -- RNG state ---------------------------------------------------------------------------------------------------
def _capture_rng() -> dict[str, Any]:
    name, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    return {
        "tinygrad_nb": get_rng_state(),
        "numpy": {"bit_generator": name, "key": key.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
    }


def _restore_rng(rng: dict[str, Any]) -> None:
    if rng.get("tinygrad_nb") is not None:
        set_rng_state(rng["tinygrad_nb"])
    state = rng.get("numpy")
    if state is not None:
        np.random.set_state((state["bit_generator"], np.array(state["key"], dtype=np.uint32), state["pos"],
                             state["has_gauss"], state["cached_gaussian"]))
    state = rng.get("python")
    if state is not None:
        random.setstate((state["version"], tuple(state["state"]), state["gauss_next"]))


# -- the safetensors file itself -----------------------------------------------------------------------------------
def write_safetensors(f: IO[bytes], arrays: dict[str, np.ndarray], metadata: dict[str, str], *,
                      writeback: bool = False) -> None:
    """Stream ``arrays`` (C-contiguous, little-endian) to ``f`` in the safetensors format.

    Layout: an 8-byte little-endian header length, the JSON header padded with spaces to a multiple of 8, then the
    tensors' bytes back to back. Tensors are ordered by decreasing item size (then name), as the safetensors library
    does, so every tensor starts at an offset aligned to its item size.

    The bytes are written straight from the arrays' memory (no joined copy). ``writeback=True`` asks the kernel every
    8 MiB to start writing what came before to disk (:func:`tinygrad_nb.io.start_writeback`), so the disk works while
    the rest is written: an fsync at the end then finds little left to do, and so does the flush that ext4 starts by
    itself when a file is renamed over another (its ``auto_da_alloc``), which :func:`save` hits even with
    ``durable=False``.
    """
    order = sorted(arrays, key=lambda name: (-arrays[name].dtype.itemsize, name))
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name in order:
        array = arrays[name]
        header[name] = {"dtype": _SAFETENSORS_DTYPES[array.dtype.name], "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    pending = 0
    for name in order:
        data = _bytes(arrays[name])
        if not writeback:
            f.write(data)
            continue
        for start in range(0, len(data), _WRITEBACK_EVERY):
            chunk = data[start:start + _WRITEBACK_EVERY]
            f.write(chunk)
            pending += len(chunk)
            if pending >= _WRITEBACK_EVERY:
                start_writeback(f)
                pending = 0


def read_safetensors(path: Path, use_mmap: bool = True) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Read a safetensors file: its ``__metadata__`` and every tensor, as views into one buffer.

    With ``use_mmap`` the buffer is a copy-on-write memory map of the file (pages are read when first touched; the
    arrays are writable and writes stay private), else all tensor bytes are read with one ``readinto``. Every way a file can be damaged (too short, header cut off, not JSON, offsets past the end, trailing bytes)
    raises :class:`CheckpointError` naming the file and the problem.
    """
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot open: {e}") from e
    with f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise CheckpointError(f"{path}: not a checkpoint: the file is {size} bytes long, too short to hold even "
                                  "the 8-byte header length (truncated or empty)")
        start = f.read(8)
        (header_len,) = struct.unpack("<Q", start)
        if header_len > min(size - 8, _MAX_HEADER_BYTES):
            hint = ""
            if start.startswith((b"PK\x03\x04", b"\x80")):  # a zip (torch.save) or a bare pickle
                hint = (" (it looks like a torch.save file, which is a pickle: tinygrad_nb never unpickles files. "
                        "In PyTorch, write the tensors as safetensors instead, e.g. "
                        "safetensors.torch.save_file(model.state_dict(), path), and read them here with "
                        "safetensors.numpy.load_file)")
            raise CheckpointError(f"{path}: not a checkpoint or truncated: the header length field says "
                                  f"{header_len} bytes but the file has only {size - 8} after it{hint}")
        raw = f.read(header_len)
        try:
            header = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: not a checkpoint or corrupt: the safetensors header is not valid JSON "
                                  f"({e})") from None
        if not isinstance(header, dict):
            raise CheckpointError(f"{path}: corrupt: the safetensors header is not a JSON object")
        metadata = header.pop("__metadata__", None) or {}
        entries = _check_entries(path, header)
        data_len = size - 8 - header_len
        needed = max((entry[2][1] for entry in entries.values()), default=0)
        if needed > data_len:
            raise CheckpointError(f"{path}: truncated: the header describes {needed} bytes of tensor data but only "
                                  f"{data_len} follow it ({needed - data_len} bytes missing; was the copy or the "
                                  "save interrupted?)")
        if needed < data_len:
            raise CheckpointError(f"{path}: corrupt: {data_len - needed} unexpected bytes after the tensor data")
        if use_mmap and data_len > 0:
            # copy-on-write: the arrays are writable, and writes never reach the file
            mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            buffer = np.frombuffer(mapping, dtype=np.uint8, count=data_len, offset=8 + header_len)
        else:
            buffer = np.empty(data_len, dtype=np.uint8)
            if f.readinto(memoryview(buffer)) != data_len:
                raise CheckpointError(f"{path}: truncated while reading (the file shrank during the read)")
    arrays = {}
    for name, (dtype, shape, (start, end)) in entries.items():
        arrays[name] = buffer[start:end].view(dtype).reshape(shape)
    return metadata, arrays


def _check_entries(path: Path, header: dict[str, Any]) -> dict[str, tuple[np.dtype, tuple[int, ...], list[int]]]:
    entries = {}
    for name, entry in header.items():
        try:
            code, shape, (start, end) = entry["dtype"], tuple(int(n) for n in entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: corrupt header entry for tensor {name!r}: {entry!r}") from None
        if code not in _NUMPY_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has unknown dtype {code!r}")
        dtype = _numpy_dtype(path, name, _NUMPY_DTYPES[code])
        if min(shape, default=0) < 0 or not 0 <= start <= end or end - start != math.prod(shape) * dtype.itemsize:
            raise CheckpointError(f"{path}: corrupt header entry for tensor {name!r}: shape {list(shape)} of {code} "
                                  f"does not fit its byte range [{start}, {end})")
        entries[name] = (dtype, shape, [start, end])
    return entries


def _numpy_dtype(path: Path, name: str, dtype_name: str) -> np.dtype:
    if dtype_name == "bfloat16":
        if dtypes.bfloat16 is None:
            raise CheckpointError(f"{path}: tensor {name!r} is bfloat16, which needs the ml_dtypes package")
        return dtypes.bfloat16
    return np.dtype(dtype_name)


# -- load ----------------------------------------------------------------------------------------------------------
def load(path: str | os.PathLike[str], model: Any = None, optimizer: Any = None, scheduler: Any = None,
         loader: Any = None, map_location: str | Device | None = None, restore_rng: bool = True,
         verify: bool = True, strict: bool = True, mmap: bool = True, scaler: Any = None,
         weights_only: bool | None = None) -> Checkpoint | Any:
    """Read a checkpoint, check it, and restore it into the objects given. Returns a :class:`Checkpoint`; for a
    file written by ``tg.save(obj, path)`` (PyTorch's order) it returns that object, as ``torch.load`` does, and
    restores no RNG state.

    ``map_location`` puts every tensor on that device; None puts each back on the device it was saved from.
    ``verify`` checks every tensor's xxh3-128 hash and names any corrupt tensor. ``restore_rng`` puts back the RNG
    states of save time, so dropout and shuffling continue exactly. ``strict`` is passed to
    ``model.load_state_dict``; with strict=True a key mismatch raises a :class:`CheckpointError` with suggestions.
    ``mmap``: cpu tensors of the returned Checkpoint are copy-on-write views of a memory map of the file (fast, and
    safe against :func:`save`, which never modifies a file in place; but do not overwrite the file in place, e.g.
    with ``cp``, while they are alive). ``mmap=False`` reads everything into memory instead.
    Temporary files that killed saves of ``path`` left behind are removed (see :func:`tinygrad_nb.io.remove_stale_temps`).
    ``weights_only`` is accepted for ``torch.load`` code and changes nothing: nothing here is ever unpickled.
    """
    path = Path(path)
    remove_stale_temps(path)
    metadata, arrays = read_safetensors(path, use_mmap=mmap)
    manifest = _read_manifest(path, metadata)
    file_version = manifest["format_version"]
    manifest, arrays = _migrate(path, manifest, arrays)
    _check_table(path, manifest, arrays)
    if verify:
        verify_hashes(path, manifest, arrays)
    tensors = _to_tensors(path, manifest, arrays, map_location)
    if "object" in manifest:  # written by tg.save(obj, path): give obj back, as torch.load does
        given = [name for name, obj in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler),
                                        ("loader", loader), ("scaler", scaler)) if obj is not None]
        if given:
            raise CheckpointError(f"{path} holds one object saved with tg.save(obj, path), not a training bundle, "
                                  f"so load({given[0]}=...) has nothing to restore; use "
                                  f"{given[0]}.load_state_dict(tg.load(path)) if it is that {given[0]}'s state dict")
        return _decode(manifest["object"], tensors, arrays)
    ckpt = Checkpoint(path=path, manifest=manifest, tensors=tensors, file_format_version=file_version)
    states = {}
    for section in ("model", "optimizer", "scheduler", "loader", "scaler"):
        entry = manifest.get(section)
        states[section] = None if entry is None else _decode(entry["state"], tensors, arrays)
    ckpt.model_state, ckpt.optimizer_state = states["model"], states["optimizer"]
    ckpt.scheduler_state, ckpt.loader_state = states["scheduler"], states["loader"]
    ckpt.scaler_state = states["scaler"]
    ckpt.extra = _decode(manifest.get("extra"), tensors, arrays)
    if model is not None:
        _restore_model(path, model, ckpt, strict)
    for section, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("loader", loader), ("scaler", scaler)):
        if obj is None:
            continue
        if states[section] is None:
            raise CheckpointError(f"{path}: load({section}=...) was given but the checkpoint holds no {section} "
                                  "state")
        obj.load_state_dict(states[section])
        ckpt.restored.append(section)
    if restore_rng:
        ckpt.restore_rng()
        ckpt.restored.append("rng")
    _environment_note(path, ckpt)
    return ckpt


def _environment_note(path: Path, ckpt: Checkpoint) -> None:
    """Warn (EnvironmentWarning) when the saving environment differs from this one in a way that can change bits,
    saying whether portable mode was on; the line is also kept as ``ckpt.environment_note`` (None: no difference)."""
    from .fingerprint import EnvironmentWarning, environment_note  # noqa: PLC0415 - loaded only when a load needs it

    recorded = (ckpt.fingerprint or {}).get("environment")
    ckpt.environment_note = environment_note(recorded) if recorded else None
    if ckpt.environment_note:
        warnings.warn(f"{path}: {ckpt.environment_note}", EnvironmentWarning, stacklevel=3)


def _read_manifest(path: Path, metadata: dict[str, str]) -> dict[str, Any]:
    text = metadata.get("manifest")
    if text is None:
        raise CheckpointError(f"{path}: a safetensors file without a tinygrad_nb manifest (not written by "
                              "tinygrad_nb.save; read its tensors with safetensors.numpy.load_file)")
    expected = metadata.get("manifest_xxh3_128")
    if expected is not None and xxhash.xxh3_128_hexdigest(text.encode()) != expected:
        raise CheckpointError(f"{path}: the manifest is corrupt (its xxh3-128 hash does not match the one stored "
                              "next to it)")
    try:
        manifest = json.loads(text)
        version = int(manifest["format_version"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: the manifest is corrupt or has no format_version ({e})") from None
    manifest["format_version"] = version
    if version > FORMAT_VERSION:
        writer = manifest.get("library_version", "a newer version")
        raise CheckpointError(f"{path} uses checkpoint format {version} (written by tinygrad_nb {writer}), but this "
                              f"tinygrad_nb {_library_version()} reads formats up to {FORMAT_VERSION}; upgrade "
                              "tinygrad_nb (pip install -U tinygrad_nb) to load it")
    return manifest


def verify_hashes(path: Path, manifest: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Raise :class:`CheckpointError` naming every tensor whose bytes do not hash to the recorded xxh3-128."""
    corrupt = []
    for name, info in manifest["tensors"].items():
        expected = info.get("xxh3_128")
        if expected is not None and _hash(arrays[name]) != expected:
            corrupt.append(name)
    if corrupt:
        names = ", ".join(repr(name) for name in corrupt)
        what = f"tensor {names} is corrupt: its bytes do" if len(corrupt) == 1 else \
            f"tensors {names} are corrupt: their bytes do"
        raise CheckpointError(f"{path}: {what} not match the xxh3-128 hash recorded at save time (disk or copy "
                              "damage); restore this file from a backup or use an earlier checkpoint")


def _check_table(path: Path, manifest: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    table = manifest.get("tensors")
    if not isinstance(table, dict):
        raise CheckpointError(f"{path}: corrupt: the manifest has no table of tensors")
    missing = [name for name in table if name not in arrays]
    if missing:
        raise CheckpointError(f"{path}: corrupt: tensor(s) {missing} listed in the manifest are not in the file")
    for name, info in table.items():
        array = arrays[name]
        if list(array.shape) != list(info["shape"]) or array.dtype.name != info["dtype"]:
            raise CheckpointError(f"{path}: corrupt: tensor {name!r} is {array.dtype.name}{list(array.shape)} in "
                                  f"the file but {info['dtype']}{list(info['shape'])} in the manifest")


def _to_tensors(path: Path, manifest: dict[str, Any], arrays: dict[str, np.ndarray],
                map_location: str | Device | None) -> dict[str, Tensor]:
    """Tensors for the ``__tensor__`` entries, on ``map_location`` or on the device each was saved from."""
    target = None if map_location is None else Device(map_location)
    tensors = {}
    for name, info in manifest["tensors"].items():
        if info.get("kind", "tensor") != "tensor":
            continue
        device = target
        if device is None:
            try:
                device = Device(info.get("device", "cpu"))
            except DeviceError as e:
                raise CheckpointError(f"{path}: tensor {name!r} was saved on {info.get('device')}, which is not "
                                      f"available here ({e}); pass map_location='cpu' to load it there") from None
        tensors[name] = Tensor(arrays[name], device=device)
    return tensors


def _decode(value: Any, tensors: dict[str, Tensor], arrays: dict[str, np.ndarray]) -> Any:
    """The inverse of :class:`_Encoder`."""
    if isinstance(value, list):
        return [_decode(v, tensors, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__ndarray__" in value:
        return arrays[value["__ndarray__"]]
    if "__scalar__" in value:
        dtype_name, item = value["__scalar__"]
        return np.dtype(dtype_name).type(item)
    if "__tuple__" in value:
        return tuple(_decode(v, tensors, arrays) for v in value["__tuple__"])
    if "__dict__" in value:
        return {_decode(k, tensors, arrays): _decode(v, tensors, arrays) for k, v in value["__dict__"]}
    return {k: _decode(v, tensors, arrays) for k, v in value.items()}


def _restore_model(path: Path, model: Any, ckpt: Checkpoint, strict: bool) -> None:
    state = ckpt.model_state
    if state is None:
        raise CheckpointError(f"{path}: load(model=...) was given but the checkpoint holds no model state")
    versions = ckpt.manifest["model"].get("versions") or {}
    if strict:
        _check_model_keys(path, model, state, versions)
    model.load_state_dict(state, strict=strict, versions=versions)
    ckpt.restored.append("model")


def _check_model_keys(path: Path, model: Any, state: dict[str, Tensor], versions: dict[str, int]) -> None:
    """Before touching the model: do the checkpoint's keys (after the modules' upgrade hooks) match the model's?"""
    upgraded = _upgraded_state(model, dict(state), versions)
    own = model.state_dict()
    missing = [k for k in own if k not in upgraded]
    unexpected = [k for k in upgraded if k not in own]
    if missing or unexpected:
        message = describe_key_mismatch(missing, unexpected, {k: tuple(v.shape) for k, v in own.items()},
                                        {k: tuple(v.shape) for k, v in upgraded.items()})
        raise CheckpointError(f"{path}: the checkpoint's model state does not match {type(model).__name__}: "
                              f"{message}")


def _upgraded_state(model: Any, state: dict[str, Any], versions: dict[str, int]) -> dict[str, Any]:
    """Run each module's ``_upgrade_state_dict`` hook (as Module.load_state_dict does) on a copy of the keys."""
    named_modules = getattr(model, "named_modules", None)
    if not versions or not callable(named_modules):
        return state
    for name, module in named_modules(remove_duplicate=False):
        saved = versions.get(name)
        if saved is not None and saved < type(module)._version:
            module._upgrade_state_dict(state, name + "." if name else "", saved)
    return state


# -- format migrations ---------------------------------------------------------------------------------------------
Migration = Callable[[dict[str, Any], dict[str, np.ndarray]], tuple[dict[str, Any], dict[str, np.ndarray]]]
_migrations: dict[int, Migration] = {}


def register_migration(from_version: int) -> Callable[[Migration], Migration]:
    """Register ``fn(manifest, arrays) -> (manifest, arrays)`` turning format ``from_version`` into the next one."""
    def register(fn: Migration) -> Migration:
        if from_version in _migrations:
            raise ValueError(f"register_migration: a migration from format {from_version} is already registered "
                             f"({_migrations[from_version].__name__})")
        _migrations[from_version] = fn
        return fn

    return register


def _migrate(path: Path, manifest: dict[str, Any], arrays: dict[str, np.ndarray]
             ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    start = manifest["format_version"]
    while manifest["format_version"] < FORMAT_VERSION:
        version = manifest["format_version"]
        migration = _migrations.get(version)
        if migration is None:
            raise CheckpointError(f"{path} uses checkpoint format {version}, and no migration from format {version} "
                                  f"to {version + 1} is registered (this tinygrad_nb reads formats "
                                  f"{min(_migrations, default=FORMAT_VERSION)}..{FORMAT_VERSION})")
        manifest, arrays = migration(manifest, arrays)
        if manifest.get("format_version") != version + 1:
            raise CheckpointError(f"migration {migration.__name__} from format {version} did not produce format "
                                  f"{version + 1}")
    if manifest["format_version"] != start:
        manifest.setdefault("migrated_from", start)
    return manifest, arrays


@register_migration(1)
def _format_1_to_2(manifest: dict[str, Any], arrays: dict[str, np.ndarray]
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Format 1 (tinygrad_nb 0.0.x) joined tensor names with dots (``model.fc1.weight``,
    ``optimizer.state.0.exp_avg``), which is ambiguous since state-dict keys contain dots; it kept no tensor table and
    no hashes, and only our RNG state as ``rng = {seed, offset}``. Format 2 joins with ``/`` (a model key stays one
    part: ``model/fc1.weight``, ``optimizer/state/0/exp_avg``) and adds the table (hash None: a format 1 file has
    nothing to verify against) and the numpy/Python RNG slots (None: not restored)."""
    def new_name(old: str) -> str:
        section, _, rest = old.partition(".")
        return f"model/{rest}" if section == "model" else f"{section}/{rest.replace('.', '/')}"

    def rename(value: Any) -> Any:
        if isinstance(value, list):
            return [rename(v) for v in value]
        if isinstance(value, dict):
            if set(value) == {"__tensor__"} or set(value) == {"__ndarray__"}:
                return {k: new_name(v) for k, v in value.items()}
            return {k: rename(v) for k, v in value.items()}
        return value

    renamed = {new_name(name): array for name, array in arrays.items()}
    upgraded = {k: rename(v) for k, v in manifest.items()}
    upgraded["tensors"] = {name: {"kind": "tensor", "dtype": a.dtype.name, "shape": list(a.shape), "device": "cpu",
                                  "xxh3_128": None} for name, a in renamed.items()}
    upgraded["rng"] = {"tinygrad_nb": manifest.get("rng"), "numpy": None, "python": None}
    upgraded.setdefault("fingerprint", None)
    upgraded["format_version"] = 2
    return upgraded, renamed


# -- key mismatch hints --------------------------------------------------------------------------------------------
def suggest_key_mapping(missing: Iterable[str], unexpected: Iterable[str],
                        expected_shapes: dict[str, tuple[int, ...]] | None = None,
                        found_shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, tuple[str, str]]:
    """Guess which missing key each unexpected key was meant to be: ``{unexpected: (missing, reason)}``.

    First a prefix added or removed on many keys (``module.`` from a wrapper), then a renamed layer: same shape
    (when shapes are given), same last name part (``weight``), most similar name by difflib.
    """
    missing, unexpected = list(missing), list(unexpected)
    expected_shapes, found_shapes = expected_shapes or {}, found_shapes or {}
    mapping: dict[str, tuple[str, str]] = {}
    # 1. a common prefix added to (or removed from) the saved keys
    prefix_votes: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for u in unexpected:
        for m in missing:
            if u.endswith("." + m):
                prefix_votes.setdefault(("strip", u[: len(u) - len(m)]), []).append((u, m))
            elif m.endswith("." + u):
                prefix_votes.setdefault(("add", m[: len(m) - len(u)]), []).append((u, m))
    for (action, prefix), pairs in sorted(prefix_votes.items(), key=lambda item: -len(item[1])):
        carriers = [u for u in unexpected if u.startswith(prefix)] if action == "strip" else \
            [m for m in missing if m.startswith(prefix)]
        which = "unexpected" if action == "strip" else "missing"
        total = len(unexpected) if action == "strip" else len(missing)
        share = f"all {total}" if len(carriers) == total else f"{len(carriers)} of {total}"
        reason = f'{share} {which} keys carry the prefix "{prefix}"'
        if action == "add":
            reason += "; the checkpoint's keys lack it"
        for u, m in pairs:
            if u not in mapping and m not in {target for target, _ in mapping.values()}:
                mapping[u] = (m, reason)
    # 2. renamed layers: same shape and last part, similar name
    taken = {target for target, _ in mapping.values()}
    candidates = []
    for u in unexpected:
        if u in mapping:
            continue
        for m in missing:
            if m in taken or u.rsplit(".", 1)[-1] != m.rsplit(".", 1)[-1]:
                continue
            if u in found_shapes and m in expected_shapes and tuple(found_shapes[u]) != tuple(expected_shapes[m]):
                continue
            candidates.append((difflib.SequenceMatcher(None, u, m).ratio(), u, m))
    for score, u, m in sorted(candidates, key=lambda c: -c[0]):
        if u in mapping or m in taken:
            continue
        old_layer, new_layer = u.rsplit(".", 1)[0], m.rsplit(".", 1)[0]
        shape = f"same shape {tuple(found_shapes[u])}, " if u in found_shapes and m in expected_shapes else ""
        mapping[u] = (m, f'{shape}layer "{old_layer}" renamed "{new_layer}"?')
        taken.add(m)
    return mapping


def describe_key_mismatch(missing: Iterable[str], unexpected: Iterable[str],
                          expected_shapes: dict[str, tuple[int, ...]] | None = None,
                          found_shapes: dict[str, tuple[int, ...]] | None = None, limit: int = 5) -> str:
    """A readable message for a state dict whose keys do not match, with the likely mapping as hints."""
    missing, unexpected = list(missing), list(unexpected)
    lines = [f"{len(missing)} missing key(s), {len(unexpected)} unexpected key(s)"]
    if missing:
        lines.append("  missing: " + _short_list(missing, limit))
    if unexpected:
        lines.append("  unexpected: " + _short_list(unexpected, limit))
    mapping = suggest_key_mapping(missing, unexpected, expected_shapes, found_shapes)
    for u, (m, reason) in list(mapping.items())[:limit]:
        lines.append(f"  hint: unexpected key \"{u}\": did you mean \"{m}\"? ({reason})")
    if len(mapping) > limit:
        lines.append(f"  hint: ... and {len(mapping) - limit} more with the same pattern")
    return "\n".join(lines)


def _short_list(keys: list[str], limit: int) -> str:
    shown = ", ".join(f'"{k}"' for k in keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
