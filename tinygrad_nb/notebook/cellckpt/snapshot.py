"""Taking a snapshot of the notebook namespace, and putting one back.

One :class:`pickle.Pickler` (one memo) runs over every recordable variable, so objects shared between variables stay
shared on restore (an optimizer's parameters are the model's parameters again). Tensors and numeric numpy arrays are
not pickled: ``persistent_id`` swaps each for a stable uid, and the snapshot keeps a table ``uid -> (blob key, dtype,
shape, ...)`` whose bytes go to the content-addressed store. A tensor's uid lives as long as the tensor (a weakref
cache keyed by ``id``); its hash is reused while its ``version`` counter and its ``data`` object are unchanged, so a
cell that does not touch a 100 MB model hashes nothing. Numpy arrays have no version counter and are re-hashed.
Two distinct arrays with equal bytes get two uids (one blob): they are restored as two arrays. Arrays that share
memory (numpy views ``b = a[1:]``, tensors whose ``data`` is one array or views of one, ``t.detach()``) are grouped
by the root of their ``.base`` chain after pickling (:func:`link_views`): each record gets ``view = {root, offset,
strides}`` and a restore rebuilds them as views of the root's restored memory, so a write through one is seen through
the others again. ``t.detach()``'s shared version counter is kept too (``version_of``).

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...device import Device
from ...inplace import replace_data
from ...tensor import Tensor
from .store import blob_key, raw_bytes
from .trust import CheckpointStoreError

_SKIP_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}
_CODE_TYPES = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type, types.MethodType)


@dataclass
class _TensorInfo:
    uid: int
    ref: Any  # weakref to the tensor
    version: int = -1
    data_ref: Any = None  # (a weakref to) the data array those bytes were read from
    key: str | None = None  # the blob key of its bytes at (version, data), once hashed

    def hashed(self, version: int, data: Any, key: str | None) -> None:
        """Remember that ``data`` at ``version`` has the bytes of blob ``key``."""
        self.version, self.key = version, key
        try:
            self.data_ref = weakref.ref(data)
        except TypeError:  # an array type without weakref support: hold it (until the next snapshot replaces it)
            self.data_ref = lambda: data

    def unchanged(self, t: Tensor) -> bool:
        """True when ``t`` still holds the very array last hashed, at the same version. An ``id`` comparison is not
        enough: ``t.data = t.data + g`` twice can put the new array at the freed first one's address."""
        return self.key is not None and self.version == t.version and self.data_ref is not None \
            and self.data_ref() is t.data


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
        self.memory: list[tuple[str, np.ndarray]] = []  # (index, numpy array) of every array and cpu tensor's data
        self.versions: dict[int, str] = {}  # id of a tensor's version counter -> the first index holding it

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
                self.memory.append((idx, obj))
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
        first = self.versions.setdefault(id(t._version), uid)
        if first != uid:
            record["version_of"] = first  # t.detach() shares its version counter with t
        data = t.data
        if type(data) is np.ndarray:
            self.memory.append((uid, data))
        if info.unchanged(t):
            record["key"] = info.key  # unchanged since it was last hashed
            self.snap.cached[uid] = data  # its bytes, should the store not hold that blob (a new store, gc)
        else:
            info.hashed(t.version, data, None)
            self.snap.pending[uid] = data if type(data) is np.ndarray else np.asarray(t.numpy())
        self._note(uid)
        if t.grad is not None:
            record["grad"] = self._tensor(t.grad)
        return uid


def capture(user_ns: dict[str, Any], hidden: set[str], tracker: Tracker,
            unpicklable: dict[tuple[str, int], tuple[Any, str]]) -> Snapshot:
    """Snapshot ``user_ns``. ``unpicklable`` caches ``(name, id) -> (weakref to the object, why)`` so known failures
    are not retried; the weak reference makes sure the entry is about this object, not a new one that happens to
    sit at a freed object's address."""
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
        known = unpicklable.get((name, id(value)))
        if known is not None and known[0]() is value:
            snap.lost[name] = known[1]
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
        try:
            unpicklable[(name, id(values[name]))] = (weakref.ref(values[name]), why)
        except TypeError:
            pass  # no weak references to it: try again next cell rather than risk naming another object
        snap.lost[name] = why
        del values[name]
        snap.variables.clear()
        snap.tensors.clear()
        snap.pending.clear()
        snap.infos.clear()
        snap.cached.clear()
    snap.skeleton = buffer.getvalue()
    link_views(snap, pickler.memory)
    return snap


def _rehash_unversioned(snap: Snapshot, members: list[tuple[str, np.ndarray]]) -> None:
    """A write through one member of a memory-sharing group bumps only its own version counter (a numpy array has
    none): unless all members are tensors sharing one counter, their cached hashes cannot be trusted."""
    counters = set()
    for idx, _ in members:
        info = snap.infos.get(idx)
        t = info.ref() if info is not None and snap.tensors[idx]["kind"] == "tensor" else None
        counters.add(id(t._version) if t is not None else ("array", idx))
    if len(counters) < 2:
        return
    for idx, _ in members:
        data = snap.cached.pop(idx, None)
        if data is not None:
            snap.tensors[idx].pop("key", None)
            snap.pending[idx] = data
            snap.infos[idx].key = None


def _byte_bounds(array: np.ndarray) -> tuple[int, int]:
    low = high = _pointer(array)
    for n, stride in zip(array.shape, array.strides):
        if stride < 0:
            low += (n - 1) * stride
        else:
            high += (n - 1) * stride
    return low, high + array.itemsize


def _pointer(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def link_views(snap: Snapshot, memory: list[tuple[str, np.ndarray]]) -> None:
    """Record which arrays share memory, so a restore rebuilds them as views of one buffer again.

    Every numpy array (a variable, or a cpu tensor's ``data``) is grouped by the array at the end of its ``.base``
    chain (its root). A group of two or more records gets a ``view`` entry per record: ``{root, offset, strides}``,
    ``root`` naming the record whose bytes hold the root's memory (a member that *is* the root, or else an extra
    ``buffer`` record of the root's bytes, named by no variable) and ``offset`` the byte offset from the root's data
    pointer. A lone view is restored as a copy (storing a big root for one small slice would cost more than it keeps).
    """
    groups: dict[int, list[tuple[str, np.ndarray]]] = {}
    if len(memory) < 2:
        return
    roots: dict[int, np.ndarray] = {}
    for idx, array in memory:
        root = array
        while isinstance(root.base, np.ndarray):
            root = root.base
        groups.setdefault(id(root), []).append((idx, array))
        roots[id(root)] = root
    count = 0
    for ident, members in groups.items():
        if len(members) < 2:
            continue
        root = roots[ident]
        if not (root.flags.c_contiguous or root.flags.f_contiguous) or not root.dtype.isnative \
                or root.dtype.kind not in "biufc":
            continue
        start = _pointer(root)
        end = start + root.nbytes
        root_idx = next((idx for idx, array in members if array is root), None)
        if root_idx is None:
            root_idx = f"~root:{count}"
            count += 1
            snap.tensors[root_idx] = {"kind": "buffer", "dtype": root.dtype.str, "shape": list(root.shape)}
            snap.pending[root_idx] = root
        if root.flags.f_contiguous and not root.flags.c_contiguous:
            snap.tensors[root_idx]["layout"] = "F"
        _rehash_unversioned(snap, members)
        for idx, array in members:
            low, high = _byte_bounds(array)
            if array.size and (low < start or high > end):
                continue  # not inside the root's memory (should not happen): restored as a copy
            snap.tensors[idx]["view"] = {"root": root_idx, "offset": _pointer(array) - start,
                                         "strides": list(array.strides)}


# -- restore -----------------------------------------------------------------------------------------------------
def _class(path: str) -> type:
    import importlib

    module, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class Restorer:
    """Builds tensors and arrays of a commit, reusing live tensors (same uid) whose bytes are already right.

    Building changes nothing that exists: what must change in a live tensor (its data, version counter, grad,
    ``requires_grad``) and in the tracker is planned, and made by :meth:`apply` only once every variable has been
    unpickled and every blob read and verified. A checkout that fails before that leaves everything as it was.
    """

    def __init__(self, tensors: dict[str, dict[str, Any]], load: Any, tracker: Tracker | None,
                 user_ns: dict[str, Any]):
        self.records = tensors
        self.load = load  # (key, dtype, shape) -> fresh array
        self.tracker = tracker
        self.live = tracker.live_map() if tracker is not None else {}
        self.user_ns = user_ns
        self.built: dict[int, Any] = {}
        self.changed = 0
        self._writes: list[Callable[[], None]] = []  # the planned changes, in the order they were planned
        self._planned_data: dict[int, Any] = {}  # id(tensor) -> the data array it will hold
        self.members: dict[str, list[str]] = {}  # root record -> the records sharing its memory (itself included)
        for idx, record in tensors.items():
            view = record.get("view")
            if view is not None:
                self.members.setdefault(view["root"], []).append(idx)

    def get(self, uid: int) -> Any:
        obj = self.built.get(uid)
        if obj is not None:
            return obj
        record = self.records[uid]
        view = self._view(uid, record)
        if record["kind"] in ("array", "buffer"):
            obj = view if view is not None else self._live_root(uid, record) if record["kind"] == "buffer" \
                else None
            if obj is None:
                obj = self._load(record)
            self.built[uid] = obj
            return obj
        live = self.live.get(record.get("uid"))
        cls = _class(record["cls"])
        if live is not None and type(live) is cls:
            t = live
            info = self.tracker.info(t)
            same = info.key == record["key"] and info.unchanged(t)
            if same and record.get("view", {}).get("root") == uid:
                same = self._live_root(uid, record) is not None  # a write through another member bumped only its
                # own version counter: reuse this root only when the whole group is unchanged
            if same and view is not None:  # unchanged bytes, but it must still be that view of the restored root
                data = t.data
                same = type(data) is np.ndarray and _pointer(data) == _pointer(view) \
                    and data.strides == view.strides and data.shape == view.shape and data.dtype == view.dtype
            if not same:
                self._set_data(t, record, view)
        else:
            t = object.__new__(cls)  # new: nobody sees it before the switch, so it is built right away
            t.device, t._ctx, t._version, t._hooks, t._retains_grad = Device(record["device"]), None, [0, 0], None, False
            t.requires_grad, t.grad = False, None
            self._set_data(t, record, view, fresh=True)
        self.built[uid] = t
        other = record.get("version_of")
        if other is not None and other in self.records:
            shared = self.get(other)
            if isinstance(shared, Tensor) and t._version is not shared._version:
                self._writes.append(lambda: self._share_version(t, shared))
        requires_grad = bool(record["requires_grad"])
        grad = self.get(record["grad"]) if record.get("grad") is not None else None
        self._writes.append(lambda: self._set_grad(t, requires_grad, grad))
        if self.tracker is not None and live is not t and record.get("uid") is not None:
            recorded_uid = record["uid"]  # the rebuilt tensor takes over the recorded identity
            self._writes.append(lambda: setattr(self.tracker.info(t), "uid", recorded_uid))
        return t

    def apply(self) -> None:
        """Make the planned changes to live tensors and the tracker: the switch, after everything was read."""
        writes, self._writes = self._writes, []
        for write in writes:
            write()
        self._planned_data.clear()

    def _share_version(self, t: Tensor, shared: Tensor) -> None:
        t._version = shared._version
        if self.tracker is not None:
            self.tracker.info(t).version = t.version  # its bytes are right (set or checked when planned)

    @staticmethod
    def _set_grad(t: Tensor, requires_grad: bool, grad: Any) -> None:
        t.requires_grad = requires_grad
        t.grad = grad

    def _data(self, t: Tensor) -> Any:
        """The data ``t`` holds once the planned changes are made."""
        return self._planned_data.get(id(t), t.data)

    def _load(self, record: dict[str, Any]) -> np.ndarray:
        array = self.load(record["key"], record["dtype"], record["shape"])
        return np.asfortranarray(array) if record.get("layout") == "F" else array

    def _live_root(self, uid: str, record: dict[str, Any]) -> np.ndarray | None:
        """The live memory of a root record (a buffer, or a tensor that owns it), when every view of it is a live, unchanged tensor still viewing it
        at the recorded place (then nothing needs rewriting); else None."""
        if self.tracker is None:
            return None
        root = None
        for idx in self.members.get(uid, []):
            member = self.records[idx]
            t = self.live.get(member.get("uid")) if member["kind"] == "tensor" else None
            if t is None or type(t.data) is not np.ndarray:
                return None
            info = self.tracker.info(t)
            if not (info.key == member.get("key") and info.unchanged(t)):
                return None
            base = t.data
            while isinstance(base.base, np.ndarray):
                base = base.base
            if (root is not None and base is not root) or _pointer(t.data) - _pointer(base) != member["view"]["offset"]:
                return None
            root = base
        if root is None or root.dtype.str != record["dtype"] or list(root.shape) != record["shape"]:
            return None
        if record["kind"] == "tensor" and root is not self.live.get(record.get("uid")).data:
            return None
        return root

    def _view(self, uid: Any, record: dict[str, Any]) -> np.ndarray | None:
        """The array of a record that shared memory with others (see :func:`link_views`), as a view of its root's
        restored memory; None for a record that is its own root or shared nothing."""
        view = record.get("view")
        if view is None or view["root"] == uid or view["root"] not in self.records:
            return None
        root = self.get(view["root"])
        if isinstance(root, Tensor):
            root = self._data(root)
        if type(root) is not np.ndarray:
            return None
        flat = root.ravel(order="K").view(np.uint8)
        if flat.base is None or not np.shares_memory(flat, root):
            return None
        return np.ndarray(tuple(record["shape"]), np.dtype(record["dtype"]), buffer=flat, offset=view["offset"],
                          strides=tuple(view["strides"]))

    def _set_data(self, t: Tensor, record: dict[str, Any], view: np.ndarray | None = None,
                  fresh: bool = False) -> None:
        """Plan ``t``'s new data (read and moved to its device now; set by :meth:`apply`). ``fresh``: ``t`` is a
        new tensor, which takes its data at once too."""
        device = Device(record["device"])
        array = view if view is not None and device.xp is np else self._load(record)
        data = array if device.xp is np else device.xp.asarray(array)
        self._planned_data[id(t)] = data
        if fresh:
            t.data, t.device = data, device
        self.changed += 1
        key = record["key"]

        def write() -> None:
            t._ctx = None
            replace_data(t, data, device)
            if self.tracker is not None:
                self.tracker.info(t).hashed(t.version, t.data, key)

        self._writes.append(write)


class _Unpickler(pickle.Unpickler):
    """Resolves a skeleton's persistent ids: tensors and arrays through ``tensor(kind, ident)``, classes and
    functions defined in the notebook from the live namespace."""

    def __init__(self, f: Any, tensor: Callable[[str, Any], Any], user_ns: dict[str, Any]):
        super().__init__(f)
        self.tensor = tensor
        self.user_ns = user_ns

    def persistent_load(self, pid: Any) -> Any:
        kind, ident = pid
        if kind in ("T", "A"):
            return self.tensor(kind, ident)
        if kind == "G":
            if ident not in self.user_ns:
                raise pickle.UnpicklingError(f"{ident} (defined in the notebook) is not in the namespace any more")
            return self.user_ns[ident]
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


def unpickle_variables(skeleton: bytes, variables: dict[str, dict[str, Any]], tensor: Callable[[str, Any], Any],
                       user_ns: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Unpickle every variable (in order, one memo), each tensor/array as ``tensor(kind, ident)`` gives it; return
    ``(values, {name: why it could not be unpickled})``. A :class:`CheckpointStoreError` (a blob that cannot be read)
    is raised, not counted as one variable's failure.

    Unpickling runs code: ``skeleton`` must be this process's own capture or come from
    :meth:`~.store.Store.skeleton`, which gives only the bytes of a commit signed with this user's key."""
    values: dict[str, Any] = {}
    failures: dict[str, str] = {}
    stream = io.BytesIO(skeleton)
    unpickler = _Unpickler(stream, tensor, user_ns)
    for name, var in sorted(variables.items(), key=lambda kv: kv[1]["start"]):
        stream.seek(var["start"])
        try:
            values[name] = unpickler.load()
        except CheckpointStoreError:
            raise  # a blob that cannot be read: the store is damaged, not this one variable
        except Exception as e:  # noqa: BLE001 - anything a class's __setstate__ may raise
            failures[name] = f"{type(e).__name__}: {e}"[:200]
    return values, failures


def restore_values(skeleton: bytes, variables: dict[str, dict[str, Any]], restorer: Restorer,
                   ) -> tuple[dict[str, Any], dict[str, str]]:
    """Unpickle every variable with its tensors and arrays rebuilt by ``restorer``; ``(values, failures)``."""
    return unpickle_variables(skeleton, variables, lambda kind, ident: restorer.get(ident), restorer.user_ns)
