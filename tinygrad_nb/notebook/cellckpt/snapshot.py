"""Taking a snapshot of the notebook namespace, and putting one back.

One :class:`pickle.Pickler` (one memo) runs over every recordable variable, so objects shared between variables stay
shared on restore (an optimizer's parameters are the model's parameters again). Tensors and numeric numpy arrays are
not pickled: ``persistent_id`` swaps each for a stable uid, and the snapshot keeps a table ``uid -> (blob key, dtype,
shape, ...)`` whose bytes go to the content-addressed store. A tensor's uid lives as long as the tensor (a weakref
cache keyed by ``id``); its hash is reused while its ``version`` counter and its ``data`` object are unchanged, so a
cell that does not touch a 100 MB model hashes nothing. Numpy arrays have no version counter and are re-hashed.
Two distinct arrays with equal bytes get two uids (one blob): they are restored as two arrays.

Functions and classes defined in the notebook (``__main__``) are pickled by name and resolved against the live
namespace on restore. What cannot be pickled (a generator, an open file, a lambda, a module with lambda hooks) is
marked lost, with the cell that last assigned it (``recompute from cell N``); it never fails the cell.
"""
from __future__ import annotations

import io
import pickle
import re
import secrets
import types
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...device import Device
from ...tensor import Tensor
from .store import blob_key, raw_bytes

_SKIP_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}
_CODE_TYPES = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type, types.MethodType)


@dataclass
class _TensorInfo:
    uid: int
    ref: Any  # weakref to the tensor
    version: int = -1
    data_id: int = 0
    key: str | None = None  # the blob key of its bytes at (version, data_id), once hashed


class Tracker:
    """Stable uids for live tensors and arrays, and the cached hash of each tensor's bytes."""

    def __init__(self) -> None:
        # uids are recorded in manifests: a random base keeps another session's uids from naming a live tensor here
        self.next_uid = (secrets.randbits(30) + 1) << 20
        self.by_id: dict[int, _TensorInfo] = {}

    def info(self, obj: Any) -> _TensorInfo:
        info = self.by_id.get(id(obj))
        if info is not None and info.ref() is obj:
            return info
        uid = self.next_uid
        self.next_uid += 1
        ident = id(obj)
        info = _TensorInfo(uid, weakref.ref(obj, lambda r: self._forget(ident, r)))
        self.by_id[id(obj)] = info
        return info

    def _forget(self, ident: int, ref: Any) -> None:
        info = self.by_id.get(ident)
        if info is not None and info.ref is ref:
            del self.by_id[ident]

    def live(self, uid: int) -> Any:
        for info in self.by_id.values():
            if info.uid == uid:
                return info.ref()
        return None

    def live_map(self) -> dict[int, Any]:
        return {info.uid: obj for info in list(self.by_id.values()) if (obj := info.ref()) is not None}


@dataclass
class Snapshot:
    """A namespace, captured: the skeleton pickle, per-variable slices and tensor uids, the tensor table, the lost."""

    skeleton: bytes = b""
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {start, end, tensors: [uid, ...]}
    tensors: dict[int, dict[str, Any]] = field(default_factory=dict)    # index -> record (key filled by finish())
    lost: dict[str, str] = field(default_factory=dict)                  # name -> why
    code: dict[str, str] = field(default_factory=dict)                  # name -> qualified name (kept live)
    pending: dict[int, np.ndarray] = field(default_factory=dict)        # uid -> array still to hash
    infos: dict[int, _TensorInfo] = field(default_factory=dict)
    arrays: dict[int, np.ndarray] = field(default_factory=dict)         # index -> array hashed by finish()
    cached: dict[str, Any] = field(default_factory=dict)                # index -> array of an unchanged tensor

    def finish(self) -> dict[str, np.ndarray]:
        """Hash what is pending (run in the background); return ``{key: bytes}`` of every blob this snapshot names."""
        blobs: dict[str, np.ndarray] = {}
        for uid, array in self.pending.items():
            data = raw_bytes(array)
            key = blob_key(data)
            self.tensors[uid]["key"] = key
            blobs[key] = data
            self.arrays[uid] = array
            info = self.infos.get(uid)
            if info is not None:
                info.key = key
        self.pending.clear()
        skeleton = np.frombuffer(self.skeleton, dtype=np.uint8)
        key = blob_key(skeleton)
        blobs[key] = skeleton
        self.skeleton_key = key
        return blobs


def _is_lambda(value: Any) -> bool:
    return isinstance(value, types.FunctionType) and (value.__name__ == "<lambda>" or "<locals>" in value.__qualname__)


def recordable(name: str, value: Any, hidden: set[str]) -> bool:
    return not (name.startswith("_") or name in _SKIP_NAMES or name in hidden)


class _Pickler(pickle.Pickler):
    def __init__(self, f: Any, snap: Snapshot, tracker: Tracker, main_names: dict[int, str]):
        super().__init__(f, protocol=pickle.HIGHEST_PROTOCOL)
        self.snap, self.tracker, self.main_names = snap, tracker, main_names
        self.current: list[str] = []
        self.var, self.counter = "", 0
        self.index: dict[int, int] = {}  # tracker uid -> index in this snapshot (persistent ids are positional,
        # so the skeleton's bytes depend only on the structure, not on which objects hold it)

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Tensor):
            return ("T", self._tensor(obj))
        if type(obj) is np.ndarray and obj.dtype.kind in "biufc" and obj.dtype.isnative:
            uid = self.tracker.info(obj).uid
            idx = self.index.get(uid)
            if idx is None:
                idx = self.index[uid] = self._new_key()
                self.snap.tensors[idx] = {"kind": "array", "uid": uid, "dtype": obj.dtype.str,
                                          "shape": list(obj.shape)}
                self.snap.pending[idx] = obj
            self._note(idx)
            return ("A", idx)
        if type(obj) is weakref.finalize and obj.alive:
            # e.g. tempfile.TemporaryDirectory: a copy would not own the cleanup, and a checkout that replaced the
            # live object would let its finalizer run (deleting the directory, and a store kept in it)
            raise pickle.PicklingError("it owns a live weakref.finalize (a resource released when the object is "
                                       "garbage collected)")
        if isinstance(obj, (types.FunctionType, type)) and getattr(obj, "__module__", None) == "__main__" \
                and not _is_lambda(obj):
            name = self.main_names.get(id(obj))
            if name is not None:
                return ("G", name)
        return None

    def _new_key(self) -> str:
        """``"<variable>:<n>"``: the n-th new tensor met while pickling that variable. Keys depend only on the
        structure, so the skeleton's bytes do not change when another variable gains or loses tensors."""
        self.counter += 1
        return f"{self.var}:{self.counter - 1}"

    def _note(self, uid: int) -> None:
        if uid not in self.current:
            self.current.append(uid)

    def _tensor(self, t: Tensor) -> int:
        info = self.tracker.info(t)
        idx = self.index.get(info.uid)
        if idx is not None:
            self._note(idx)
            return idx
        idx = self.index[info.uid] = self._new_key()
        uid = idx
        record: dict[str, Any] = {"kind": "tensor", "uid": info.uid, "cls": f"{type(t).__module__}:{type(t).__qualname__}",
                                  "dtype": t.data.dtype.str, "shape": list(t.data.shape), "device": str(t.device),
                                  "requires_grad": bool(t.requires_grad), "grad": None, "version": t.version}
        self.snap.tensors[uid] = record
        self.snap.infos[uid] = info
        data = t.data
        if info.key is not None and info.version == t.version and info.data_id == id(data):
            record["key"] = info.key  # unchanged since it was last hashed
            self.snap.cached[uid] = data  # its bytes, should the store not hold that blob (a new store, gc)
        else:
            info.version, info.data_id, info.key = t.version, id(data), None
            self.snap.pending[uid] = data if type(data) is np.ndarray else np.asarray(t.numpy())
        self._note(uid)
        if t.grad is not None:
            record["grad"] = self._tensor(t.grad)
        return uid


def capture(user_ns: dict[str, Any], hidden: set[str], tracker: Tracker,
            unpicklable: dict[tuple[str, int], str]) -> Snapshot:
    """Snapshot ``user_ns``. ``unpicklable`` caches ``(name, id) -> why`` so known failures are not retried."""
    snap = Snapshot()
    names = [n for n, v in list(user_ns.items()) if recordable(n, v, hidden)]
    main_names = {}
    values = {}
    for name in names:
        value = user_ns[name]
        if isinstance(value, _CODE_TYPES) and not _is_lambda(value):
            snap.code[name] = f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', name)}"
            if isinstance(value, (types.FunctionType, type)) and not _is_lambda(value):
                main_names.setdefault(id(value), name)
            continue
        why = unpicklable.get((name, id(value)))
        if why is not None:
            snap.lost[name] = why
            continue
        values[name] = value
    while True:
        buffer = io.BytesIO()
        pickler = _Pickler(buffer, snap, tracker, main_names)
        failed = None
        for name, value in values.items():
            start = buffer.tell()
            pickler.current, pickler.var, pickler.counter = [], name, 0
            try:
                pickler.dump(value)
            except Exception as e:  # noqa: BLE001 - anything a __reduce__ raises means "not picklable"
                text = re.sub(r" at 0x[0-9a-f]+", "", f"{type(e).__name__}: {e}")  # no addresses in reports
                failed = (name, f"{type(value).__name__} cannot be pickled ({text})"[:200])
                break
            snap.variables[name] = {"start": start, "end": buffer.tell(), "tensors": pickler.current,
                                    "type": type(value).__name__}
        if failed is None:
            break
        # the memo may reference what the failed dump half-wrote: start again without that variable
        name, why = failed
        unpicklable[(name, id(values[name]))] = why
        snap.lost[name] = why
        del values[name]
        snap.variables.clear()
        snap.tensors.clear()
        snap.pending.clear()
        snap.infos.clear()
        snap.cached.clear()
    snap.skeleton = buffer.getvalue()
    return snap


# -- restore -----------------------------------------------------------------------------------------------------
def _class(path: str) -> type:
    import importlib

    module, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class Restorer:
    """Builds tensors and arrays of a commit, reusing live tensors (same uid) whose bytes are already right."""

    def __init__(self, tensors: dict[str, dict[str, Any]], load: Any, tracker: Tracker | None,
                 user_ns: dict[str, Any]):
        self.records = tensors
        self.load = load  # (key, dtype, shape) -> fresh array
        self.tracker = tracker
        self.live = tracker.live_map() if tracker is not None else {}
        self.user_ns = user_ns
        self.built: dict[int, Any] = {}
        self.changed = 0

    def get(self, uid: int) -> Any:
        obj = self.built.get(uid)
        if obj is not None:
            return obj
        record = self.records[uid]
        if record["kind"] == "array":
            obj = self.load(record["key"], record["dtype"], record["shape"])
            self.built[uid] = obj
            return obj
        live = self.live.get(record.get("uid"))
        cls = _class(record["cls"])
        if live is not None and type(live) is cls:
            t = live
            info = self.tracker.info(t)
            same = (info.key == record["key"] and info.version == t.version and info.data_id == id(t.data))
            if not same:
                self._set_data(t, record)
        else:
            t = object.__new__(cls)
            t.device, t._ctx, t._version, t._hooks, t._retains_grad = Device(record["device"]), None, [0], None, False
            self._set_data(t, record)
        self.built[uid] = t
        t.requires_grad = record["requires_grad"]
        t.grad = self.get(record["grad"]) if record.get("grad") is not None else None
        if self.tracker is not None and live is not t and record.get("uid") is not None:
            self.tracker.info(t).uid = record["uid"]  # the rebuilt tensor takes over the recorded identity
        return t

    def _set_data(self, t: Tensor, record: dict[str, Any]) -> None:
        array = self.load(record["key"], record["dtype"], record["shape"])
        device = Device(record["device"])
        t.data = array if device.xp is np else device.xp.asarray(array)
        t.device = device
        t._version[0] += 1
        t._ctx = None
        self.changed += 1
        if self.tracker is not None:
            info = self.tracker.info(t)
            info.version, info.data_id, info.key = t.version, id(t.data), record["key"]


class _Unpickler(pickle.Unpickler):
    def __init__(self, f: Any, restorer: Restorer):
        super().__init__(f)
        self.restorer = restorer

    def persistent_load(self, pid: Any) -> Any:
        kind, ident = pid
        if kind in ("T", "A"):
            return self.restorer.get(ident)
        if kind == "G":
            if ident not in self.restorer.user_ns:
                raise pickle.UnpicklingError(f"{ident} (defined in the notebook) is not in the namespace any more")
            return self.restorer.user_ns[ident]
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


def restore_values(skeleton: bytes, variables: dict[str, dict[str, Any]], restorer: Restorer,
                   ) -> tuple[dict[str, Any], dict[str, str]]:
    """Unpickle every variable (in order, one memo); return ``(values, failures)``."""
    values: dict[str, Any] = {}
    failures: dict[str, str] = {}
    stream = io.BytesIO(skeleton)
    unpickler = _Unpickler(stream, restorer)
    for name, var in sorted(variables.items(), key=lambda kv: kv[1]["start"]):
        stream.seek(var["start"])
        try:
            values[name] = unpickler.load()
        except Exception as e:  # noqa: BLE001
            failures[name] = f"{type(e).__name__}: {e}"[:200]
    return values, failures
