"""Loading binary plugins (``extensions/c_abi/tgnb_plugin.h``) with ctypes: no compiler needed.

``load_plugin(path)`` opens the shared library, calls ``tgnb_plugin_init(HOST_ABI_MAJOR, HOST_ABI_MINOR)``, checks
the table's ABI version (the major must match; a newer minor is fine: the host reads only the fields inside each
struct's ``struct_size``) and registers each op as a :class:`~.registry.CustomOp` with a cpu kernel and, when the
plugin has one, a backward. Tensors cross as DLPack ``DLTensor`` s: numpy's ``__dlpack__`` capsules for data, and
metadata-only structs for the shape function. A callback that fails (non-zero return) becomes a
:class:`PluginError` carrying the plugin's own message.
"""
from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .registry import CustomOp, LibraryError, Origin, TensorSpec, _current_origin, register

HOST_ABI_MAJOR = 1
HOST_ABI_MINOR = 0
MAX_NDIM = 32  # TGNB_MAX_NDIM


class PluginError(LibraryError):
    """A plugin could not be loaded, or one of its callbacks reported an error (the message is the plugin's)."""


class ABIError(PluginError):
    """The plugin was built for an ABI this host cannot use; the message names both versions."""


# -- the C structs (tgnb_plugin.h, ABI 1.0) ----------------------------------------------------------------------------
class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32), ("dtype", DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


_ONE = ctypes.c_void_p * 1
_PP = ctypes.POINTER(ctypes.c_void_p)  # DLTensor *const *: a ctypes void* array is passed as is
SHAPE_FN = ctypes.CFUNCTYPE(ctypes.c_int32, _PP, ctypes.c_int32, _PP, ctypes.c_int32)
FORWARD_FN = ctypes.CFUNCTYPE(ctypes.c_int32, _PP, ctypes.c_int32, _PP, ctypes.c_int32)
BACKWARD_FN = ctypes.CFUNCTYPE(ctypes.c_int32, _PP, ctypes.c_int32, _PP, ctypes.c_int32, _PP)
ERROR_FN = ctypes.CFUNCTYPE(ctypes.c_char_p)


class OpTable(ctypes.Structure):
    """``tgnb_op``."""

    _fields_ = [("struct_size", ctypes.c_uint32), ("name", ctypes.c_char_p), ("n_inputs", ctypes.c_int32),
                ("n_outputs", ctypes.c_int32), ("shape", SHAPE_FN), ("forward", FORWARD_FN),
                ("backward", BACKWARD_FN), ("doc", ctypes.c_char_p)]


class PluginTable(ctypes.Structure):
    """``tgnb_plugin``."""

    _fields_ = [("struct_size", ctypes.c_uint32), ("abi_major", ctypes.c_uint32), ("abi_minor", ctypes.c_uint32),
                ("name", ctypes.c_char_p), ("version", ctypes.c_char_p), ("n_ops", ctypes.c_int32),
                ("ops", ctypes.POINTER(ctypes.c_void_p)), ("last_error", ERROR_FN)]


def _read_struct(address: int, cls: type[ctypes.Structure], required: str, what: str) -> ctypes.Structure:
    """Copy a versioned struct from ``address``: only the bytes inside its ``struct_size`` (rule 2 of the ABI);
    fields beyond it stay zero (absent). ``required`` is the last field the host cannot do without."""
    size = ctypes.c_uint32.from_address(address).value
    needed = getattr(cls, required).offset + getattr(cls, required).size
    if size < needed:
        raise ABIError(f"{what}: struct_size is {size} bytes, but ABI {HOST_ABI_MAJOR}.0 needs at least {needed}")
    result = cls()
    ctypes.memmove(ctypes.addressof(result), address, min(size, ctypes.sizeof(cls)))
    return result


# -- dtypes ---------------------------------------------------------------------------------------------------------
_DL_CODES = {"i": 0, "u": 1, "f": 2, "b": 6}
_NP_KINDS = {0: "i", 1: "u", 2: "f", 6: "b"}


def dl_dtype(dtype: np.dtype) -> tuple[int, int]:
    """(DLPack type code, bits) of a numpy dtype."""
    if dtype.kind not in _DL_CODES:
        raise PluginError(f"dtype {dtype} cannot cross the plugin ABI (DLPack has no code for it)")
    return _DL_CODES[dtype.kind], dtype.itemsize * 8


def np_dtype(code: int, bits: int, lanes: int = 1) -> np.dtype:
    """The numpy dtype of a DLPack (code, bits, lanes)."""
    if lanes != 1 or code not in _NP_KINDS:
        raise PluginError(f"the plugin reported DLPack dtype code={code} bits={bits} lanes={lanes}, which has no "
                          f"numpy equivalent here")
    return np.dtype(f"{_NP_KINDS[code]}{bits // 8}" if code != 6 else "?")


# -- moving arrays across -------------------------------------------------------------------------------------------
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
# numpy's ``__dlpack__`` returns a "dltensor" capsule holding a DLManagedTensor*, whose first member is the DLTensor:
# the capsule's pointer is the DLTensor* the plugin gets. The capsule frees the struct when collected (never renamed
# "used_dltensor", since the host keeps ownership), so it must outlive the call.


def _meta(specs: list[TensorSpec], keep: list[Any]) -> Any:
    """An array of pointers to metadata-only DLTensors (data NULL) for a shape function's inputs."""
    pointers = (ctypes.c_void_p * len(specs))()
    for i, spec in enumerate(specs):
        shape = (ctypes.c_int64 * max(len(spec.shape), 1))(*spec.shape)
        code, bits = dl_dtype(spec.dtype)
        t = DLTensor(None, DLDevice(1, 0), len(spec.shape), DLDataType(code, bits, 1),
                     ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64)), None, 0)
        keep.extend((shape, t))
        pointers[i] = ctypes.addressof(t)
    return pointers


# -- the plugin -----------------------------------------------------------------------------------------------------
@dataclass
class Plugin:
    """A loaded plugin: its name, version, ABI, file and ops. Keeps the shared library loaded."""

    name: str
    version: str
    abi: tuple[int, int]
    path: str
    ops: list[CustomOp] = field(default_factory=list)
    library: Any = field(default=None, repr=False)
    table: Any = field(default=None, repr=False)

    def last_error(self) -> str:
        message = self.table.last_error()
        return message.decode("utf-8", "replace") if message else "(the plugin gave no message)"

    def __repr__(self) -> str:
        return (f"<plugin {self.name} {self.version} (ABI {self.abi[0]}.{self.abi[1]}): "
                f"{', '.join(op.name for op in self.ops)}>")


class _PluginOp:
    """The Python side of one C op: the shape cache, the cpu kernel, setup_context and backward."""

    def __init__(self, plugin: Plugin, table: OpTable):
        self.plugin = plugin
        self.table = table  # keeps the function pointers alive
        self.name = table.name.decode()
        self.n_inputs = table.n_inputs
        self.shape_fn: Callable[..., int] = table.shape
        self.forward_fn: Callable[..., int] = table.forward
        self.backward_fn: Callable[..., int] | None = table.backward if table.backward else None
        self.shapes: dict[tuple[Any, ...], TensorSpec] = {}
        self.input_array = ctypes.c_void_p * self.n_inputs  # DLTensor *const * for this op's inputs

    def fail(self, what: str) -> PluginError:
        return PluginError(f"{self.name} ({what}, plugin {self.plugin.name}): {self.plugin.last_error()}")

    def infer(self, *specs: TensorSpec) -> TensorSpec:
        """Call the plugin's shape function (answers are cached per input shapes and dtypes, as the ABI allows)."""
        key = tuple((s.shape, s.dtype.str) for s in specs)
        known = self.shapes.get(key)
        if known is not None:
            return known
        keep: list[Any] = []
        inputs = _meta(list(specs), keep)
        shape = (ctypes.c_int64 * MAX_NDIM)()
        out = DLTensor(None, DLDevice(1, 0), 0, DLDataType(0, 0, 1), ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64)),
                       None, 0)
        out_ptrs = _ONE(ctypes.addressof(out))
        if self.shape_fn(inputs, len(specs), out_ptrs, 1) != 0:
            raise self.fail("shape function")
        if not 0 <= out.ndim <= MAX_NDIM:
            raise PluginError(f"{self.name}: the shape function reported ndim {out.ndim}")
        spec = TensorSpec(tuple(shape[i] for i in range(out.ndim)), np_dtype(out.dtype.code, out.dtype.bits,
                                                                             out.dtype.lanes))
        self.shapes[key] = spec
        return spec

    def shape(self, *args: Any, **attrs: Any) -> TensorSpec:
        return self.infer(*[a for a in args if isinstance(a, TensorSpec)])

    def kernel(self, *arrays: Any, **attrs: Any) -> np.ndarray:
        """The cpu kernel: contiguous inputs, an output allocated from the shape function, one C call."""
        if attrs:
            raise TypeError(f"{self.name}: plugin ops take no keyword attributes in ABI 1.x, got {sorted(attrs)}")
        if len(arrays) != self.n_inputs:
            raise TypeError(f"{self.name} takes {self.n_inputs} tensor input(s), got {len(arrays)}")
        inputs = [_contiguous(a) for a in arrays]
        key = tuple([(a.shape, a.dtype.str) for a in inputs])
        spec = self.shapes.get(key) or self.infer(*[TensorSpec.of(a) for a in inputs])
        out = np.empty(spec.shape, spec.dtype)
        keep = [a.__dlpack__() for a in inputs]  # the capsules own the DLTensors until the call returns
        out_capsule = out.__dlpack__()
        in_ptrs = self.input_array(*[_capsule_pointer(c, b"dltensor") for c in keep])
        out_ptrs = _ONE(_capsule_pointer(out_capsule, b"dltensor"))
        if self.forward_fn(in_ptrs, self.n_inputs, out_ptrs, 1) != 0:
            raise self.fail("forward")
        return out

    def setup_context(self, ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.save_for_backward(*inputs)

    def backward(self, ctx: Any, grad: Any) -> tuple[Any, ...]:
        """The vector-Jacobian product through the plugin's backward (gradients shaped like the inputs)."""
        inputs = [_contiguous(a) for a in ctx.saved_tensors]
        grad = _contiguous(grad)
        grads = [np.empty_like(a) for a in inputs]
        keep = [grad.__dlpack__(), *[a.__dlpack__() for a in inputs], *[g.__dlpack__() for g in grads]]
        pointers = [_capsule_pointer(c, b"dltensor") for c in keep]
        n = self.n_inputs
        g_ptrs = _ONE(pointers[0])
        in_ptrs = self.input_array(*pointers[1:1 + n])
        gin_ptrs = self.input_array(*pointers[1 + n:])
        assert self.backward_fn is not None
        if self.backward_fn(g_ptrs, 1, in_ptrs, n, gin_ptrs) != 0:
            raise self.fail("backward")
        return tuple(grads)


def _contiguous(array: Any) -> np.ndarray:
    """A C-contiguous, writeable-exportable numpy array (numpy's DLPack export refuses read-only arrays)."""
    if type(array) is not np.ndarray:
        if hasattr(array, "get"):
            raise PluginError("C plugin ops in ABI 1.x run on cpu tensors only; move the tensor with .to('cpu')")
        array = np.asarray(array)
    if not array.flags.c_contiguous or not array.flags.writeable:
        array = np.array(array, order="C", copy=True)
    return array


def load_plugin(path: str | os.PathLike[str], *, replace: bool = False) -> Plugin:
    """Load the plugin at ``path`` and register its ops; returns the :class:`Plugin`.

    Raises :class:`ABIError` when its ABI major differs from this host's (the message names both versions) and
    :class:`PluginError` for a file that is not a plugin or a malformed table.
    """
    path = os.fspath(path)
    try:
        library = ctypes.CDLL(os.path.abspath(path))
    except OSError as e:
        raise PluginError(f"cannot load plugin {path}: {e}") from e
    try:
        init = library.tgnb_plugin_init
    except AttributeError:
        raise PluginError(f"{path} is not a tinygrad_nb plugin: it exports no tgnb_plugin_init") from None
    init.restype = ctypes.c_void_p
    init.argtypes = [ctypes.c_uint32, ctypes.c_uint32]
    address = init(HOST_ABI_MAJOR, HOST_ABI_MINOR)
    if not address:
        raise ABIError(f"plugin {path} refused this host (plugin ABI {HOST_ABI_MAJOR}.{HOST_ABI_MINOR}): "
                       f"tgnb_plugin_init returned NULL")
    major = ctypes.c_uint32.from_address(address + PluginTable.abi_major.offset).value
    minor = ctypes.c_uint32.from_address(address + PluginTable.abi_minor.offset).value
    if major != HOST_ABI_MAJOR:
        raise ABIError(f"plugin {path} was built for tinygrad_nb plugin ABI {major}.{minor}, but this host speaks "
                       f"ABI {HOST_ABI_MAJOR}.{HOST_ABI_MINOR}: the major versions must match. Rebuild the plugin "
                       f"against extensions/c_abi/tgnb_plugin.h (ABI {HOST_ABI_MAJOR}.x)")
    table = _read_struct(address, PluginTable, "last_error", f"plugin {path}")
    if not table.last_error or not table.name:
        raise PluginError(f"plugin {path}: its table has no name or no last_error function (both are required)")
    plugin = Plugin(table.name.decode(), (table.version or b"").decode(), (major, minor), path, library=library,
                    table=table)
    # the file's name without build()'s cache key, so the origin reads the same on every machine
    origin = _current_origin.get() or Origin("plugin", plugin.name, re.sub(r"-[0-9a-f]{24}(?=\.so$)", "",
                                                                           os.path.basename(path)))
    made = []
    for i in range(table.n_ops):
        op_table = _read_struct(table.ops[i], OpTable, "doc", f"plugin {plugin.name}, op {i}")
        name = (op_table.name or b"?").decode()
        if op_table.n_outputs != 1 or op_table.n_inputs < 1:
            raise PluginError(f"plugin {plugin.name}: op {name} has {op_table.n_inputs} inputs and "
                              f"{op_table.n_outputs} outputs; ABI 1.x needs >= 1 input and exactly 1 output")
        if not op_table.forward or not op_table.shape:
            raise PluginError(f"plugin {plugin.name}: op {name} has no forward or no shape function")
        c_op = _PluginOp(plugin, op_table)
        op = CustomOp(name, None, origin, doc=(op_table.doc or b"").decode())
        op.plugin = plugin
        op.register_kernel("cpu", c_op.kernel)
        op.register_shape(c_op.shape)
        if c_op.backward_fn is not None:
            op.register_autograd(c_op.backward, c_op.setup_context)
        op.c_op = c_op  # type: ignore[attr-defined]
        made.append(op)
    for op in made:
        register(op, replace=replace)
    plugin.ops = made
    return plugin
