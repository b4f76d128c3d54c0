"""The custom-op registry: named ops (``namespace::name``) with per-device kernels, autograd and a shape function.

A registered op is a generated :class:`~tinygrad_nb.autograd.Function` subclass named after the op, so every call
goes through ``Function.apply``: the dispatch table, the profiler, the NaN tracer (with the user's line) and export
see it like any built-in primitive. Kernels work on raw arrays (numpy on cpu, cupy on cuda), as ``forward`` does:

* the decorated function is the *generic* kernel (any device, written against numpy's API, which cupy also accepts);
* ``op.register_kernel("cuda")`` adds a device-specific kernel: a subclass of the op's ``Function`` registered with
  :func:`tinygrad_nb.dispatch.register_override`, so ``Function.apply`` selects it by the tensors' device;
* ``op.register_autograd(backward, setup_context=...)`` makes it differentiable (the same ``ctx`` a ``Function`` gets);
* ``op.register_shape(fn)`` says the output's shape and dtype from the inputs' (opcheck, plugins and export use it).

Ops come from modules, notebook cells, installed packages (entry-point group ``tinygrad_nb.ops``, loaded the first
time their namespace is used) and C plugins. Registering a name again from the same origin (a re-run cell, a
reloaded module) replaces the op; tensors the old version made keep their graph nodes, so they still backprop. Two
different packages or modules claiming one name is a :class:`LibraryError` naming both.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib.metadata
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import dispatch
from ..autograd import Function

ENTRY_POINT_GROUP = "tinygrad_nb.ops"
_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)::([A-Za-z_][A-Za-z0-9_]*)$")
_LIBRARY_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class LibraryError(RuntimeError):
    """A registry problem: a bad op name, a name claimed twice, an unknown op, a broken op package."""


@dataclass(frozen=True)
class TensorSpec:
    """What a shape function sees of a tensor argument, and returns for the output: shape and dtype."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @staticmethod
    def of(array: Any) -> TensorSpec:
        return TensorSpec(tuple(int(n) for n in array.shape), np.dtype(array.dtype))


@dataclass(frozen=True)
class Origin:
    """Where an op was registered: ``kind`` is "package", "module", "cell" or "plugin"."""

    kind: str
    name: str  # distribution, module name, cell key, or plugin name
    detail: str = ""  # a readable addition: the entry point, "cell [3] 'first line'", the plugin's file

    def __str__(self) -> str:
        if self.kind == "cell":
            return self.detail or "notebook cell"
        text = f"{self.kind} {self.name}"
        return f"{text} ({self.detail})" if self.detail else text

    def same_owner(self, other: Origin) -> bool:
        return self.kind == other.kind and self.name == other.name


_current_origin: contextvars.ContextVar[Origin | None] = contextvars.ContextVar("tgnb_library_origin", default=None)


@contextlib.contextmanager
def origin_context(origin: Origin) -> Iterator[None]:
    """Ops registered inside this block get ``origin`` (entry-point loading and plugin loading use it)."""
    token = _current_origin.set(origin)
    try:
        yield
    finally:
        _current_origin.reset(token)


def caller_origin() -> Origin:
    """The origin of a registration made now: the active :func:`origin_context`, else the first caller frame outside
    tinygrad_nb.library (a notebook cell, or a module)."""
    explicit = _current_origin.get()
    if explicit is not None:
        return explicit
    from ..debug.provenance import cell_number  # noqa: PLC0415

    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_LIBRARY_DIR):
        frame = frame.f_back
    if frame is None:
        return Origin("module", "?")
    number = cell_number(frame.f_code.co_filename)
    if number is not None:
        return cell_origin(number)
    return Origin("module", str(frame.f_globals.get("__name__", "?")), os.path.basename(frame.f_code.co_filename))


def cell_origin(number: int | None) -> Origin:
    """A notebook cell: identified by the cell-ownership key when the extension tracks cells, else "a cell"."""
    key, label = "cell", f"cell [{number}]" if number is not None else "notebook cell"
    ownership = sys.modules.get("tinygrad_nb.notebook.ownership")  # only when the notebook layer is in use
    if ownership is not None:
        current = ownership.registry.current()
        if current is not None:
            key = current
            info = ownership.registry.cells.get(current)
            label = info.describe() if info is not None else label
    return Origin("cell", key, label)


# -- the op ---------------------------------------------------------------------------------------------------------
Kernel = Callable[..., Any]


class CustomOp:
    """One registered op. Call it like a function on tensors: ``op(x, approximate=True)``.

    Tensor arguments may be positional; plain values are passed through to the kernels (keyword arguments become
    ONNX attributes on export). The op has exactly one output tensor.
    """

    def __init__(self, name: str, kernel: Kernel | None, origin: Origin, doc: str = ""):
        match = _NAME.match(name)
        if match is None:
            raise LibraryError(f"custom op names are 'namespace::name' (identifiers), got {name!r}")
        self.name = name
        self.namespace, self.op_name = match.groups()
        self.origin = origin
        self.doc = doc
        self.generic: Kernel | None = kernel
        self.kernels: dict[str, Kernel] = {}  # device type -> kernel (each also a dispatch override)
        self.nondeterministic: dict[str, str] = {}  # device type -> why the kernel's bits vary between runs
        self.backward_fn: Callable[..., Any] | None = None
        self.setup_context: Callable[..., Any] | None = None
        self.shape_fn: Callable[..., Any] | None = None
        self.plugin: Any = None  # the Plugin a C op came from
        self.function: type[Function] = _make_function(self)
        self._overrides: dict[str, type[Function]] = {}
        self.removed = False

    # -- calling ----------------------------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function.apply(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<custom op {self.name} from {self.origin}; devices: {', '.join(self.devices) or 'none'}>"

    @property
    def devices(self) -> list[str]:
        """Device types with a kernel ("any" for the generic one)."""
        return (["any"] if self.generic is not None else []) + sorted(self.kernels)

    def kernel(self, device_type: str) -> Kernel | None:
        """The kernel that runs on ``device_type``: its own, else the generic one, else None."""
        return self.kernels.get(device_type, self.generic)

    # -- registering ------------------------------------------------------------------------------------------
    def register_kernel(self, device_type: str, fn: Kernel | None = None, *, deterministic: bool = True,
                        reason: str = "") -> Any:
        """Register ``fn(*arrays, **attrs) -> array`` for tensors on ``device_type`` ("cpu", "cuda").

        Usable as a decorator. ``deterministic=False`` (with a ``reason``) marks a kernel whose bits vary between
        runs: in deterministic mode calling it raises :class:`~tinygrad_nb.determinism.DeterminismError`.
        """
        if device_type not in ("cpu", "cuda"):
            raise LibraryError(f"{self.name}: device type must be 'cpu' or 'cuda', got {device_type!r}")

        def register(kernel: Kernel) -> Kernel:
            self.kernels[device_type] = kernel
            if not deterministic:
                from .. import determinism  # noqa: PLC0415

                self.nondeterministic[device_type] = reason or "declared nondeterministic by its kernel"
                determinism.NONDETERMINISTIC[(device_type, self.name)] = self.nondeterministic[device_type]
            override = _make_override(self, device_type, kernel)
            self._overrides[device_type] = override
            if not self.removed:
                dispatch.register_override(self.function, device_type, override)
            return kernel

        return register if fn is None else register(fn)

    def _refresh(self) -> None:
        """Rebuild the forwards after a registration changed what they run."""
        self.function.forward = staticmethod(_forward(self, self.generic))  # type: ignore[method-assign]
        if self.backward_fn is not None:  # called directly: no indirection on the backward path either
            self.function.backward = staticmethod(self.backward_fn)  # type: ignore[method-assign]
        for device_type, override in self._overrides.items():
            override.forward = staticmethod(_forward(self, self.kernels[device_type], device_type))  # type: ignore

    def register_autograd(self, backward: Callable[..., Any],
                          setup_context: Callable[..., Any] | None = None) -> None:
        """Make the op differentiable. ``setup_context(ctx, inputs, output)`` runs after the forward kernel (save
        what backward needs with ``ctx.save_for_backward``; keyword attributes are in ``ctx.attrs``);
        ``backward(ctx, grad) -> one gradient per positional input`` (None for non-tensors), on ``ctx.xp`` arrays."""
        self.backward_fn = backward
        self.setup_context = setup_context
        self._refresh()

    def register_shape(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Register ``fn(*specs, **attrs) -> TensorSpec | (shape, dtype)``: the output's shape and dtype computed from
        :class:`TensorSpec` s of the tensor arguments (plain arguments as given). Usable as a decorator."""
        self.shape_fn = fn
        return fn

    register_fake = register_shape  # PyTorch's name

    def infer(self, *args: Any, **kwargs: Any) -> TensorSpec | None:
        """The output's shape and dtype by the shape function (None when the op has none)."""
        if self.shape_fn is None:
            return None
        specs = [TensorSpec.of(a) if hasattr(a, "shape") and hasattr(a, "dtype") else a for a in args]
        result = self.shape_fn(*specs, **kwargs)
        if isinstance(result, TensorSpec):
            return result
        shape, dtype = result
        return TensorSpec(tuple(int(n) for n in shape), np.dtype(dtype))

    def remove(self) -> None:
        """Unregister: the name becomes free; tensors this op already made still backprop."""
        if _registry.get(self.name) is self:
            del _registry[self.name]
        self._detach()

    def _detach(self) -> None:
        self.removed = True
        for device_type in self._overrides:
            dispatch.remove_override(self.function, device_type)
        if self.nondeterministic:
            from .. import determinism  # noqa: PLC0415

            for device_type, reason in self.nondeterministic.items():
                if determinism.NONDETERMINISTIC.get((device_type, self.name)) is reason:
                    del determinism.NONDETERMINISTIC[(device_type, self.name)]
        registered = getattr(dispatch, "registered_ops", None)
        if isinstance(registered, list) and self.function in registered:
            registered.remove(self.function)


def _make_function(op: CustomOp) -> type[Function]:
    """The op's ``Function``: named after the op; forward runs the generic kernel (device kernels override it)."""
    name = op.name

    def backward(ctx: Any, grad: Any) -> Any:
        if op.backward_fn is None:
            raise RuntimeError(f"{name} is not differentiable: no backward was registered "
                               f"(op.register_autograd(backward, setup_context=...)); run it under no_grad or on "
                               f"inputs that do not require grad")
        return op.backward_fn(ctx, grad)

    return type(name, (Function,), {
        "forward": staticmethod(_forward(op, op.generic)), "backward": staticmethod(backward),
        "__doc__": op.doc or f"custom op {name}", "__module__": f"tinygrad_nb.library[{op.origin}]",
        "__qualname__": name, "custom_op": op,
    })


def _make_override(op: CustomOp, device_type: str, kernel: Kernel) -> type[Function]:
    """A subclass of the op's Function whose forward runs ``kernel`` (selected by dispatch for ``device_type``)."""
    return type(op.name, (op.function,), {"forward": staticmethod(_forward(op, kernel, device_type)),
                                          "__qualname__": f"{op.name}[{device_type}]",
                                          "__module__": op.function.__module__})


def _forward(op: CustomOp, kernel: Kernel | None, device_type: str | None = None) -> Callable[..., Any]:
    """A ``Function.forward`` running ``kernel`` then the op's setup_context, specialised to what is registered now
    (:meth:`CustomOp._refresh` rebuilds it when that changes): the common case costs one extra call, no lookups."""
    name = op.name
    setup = op.setup_context
    if kernel is None:
        def missing(ctx: Any, *arrays: Any, **attrs: Any) -> Any:
            raise LibraryError(f"{name} has no kernel for device type {ctx.device.type!r} "
                               f"(it has: {', '.join(op.devices) or 'none'})")
        return missing
    if device_type is not None and device_type in op.nondeterministic:
        from .. import determinism  # noqa: PLC0415

        def checked(ctx: Any, *arrays: Any, **attrs: Any) -> Any:
            determinism.check(ctx.device, name)
            out = kernel(*arrays, **attrs)
            if setup is not None:
                if attrs:
                    ctx.attrs = attrs
                setup(ctx, arrays, out)
            return out
        return checked
    if setup is None:
        def plain(ctx: Any, *arrays: Any, **attrs: Any) -> Any:
            return kernel(*arrays, **attrs)
        return plain

    def forward(ctx: Any, *arrays: Any, **attrs: Any) -> Any:
        out = kernel(*arrays, **attrs)
        if attrs:
            ctx.attrs = attrs
        setup(ctx, arrays, out)
        return out
    return forward


# -- the registry ---------------------------------------------------------------------------------------------------
_registry: dict[str, CustomOp] = {}
# Called with every newly registered op (whose .remove() unregisters it); the notebook extension appends its cell
# ownership hook here, so an op defined in a cell is removed when that cell runs again. Empty otherwise.
op_listeners: list[Callable[[CustomOp], None]] = []


def register(op: CustomOp, replace: bool = False) -> CustomOp:
    """Add ``op`` to the registry (see the module docstring for when a name may be registered again)."""
    old = _registry.get(op.name)
    if old is not None and not replace:
        interactive = old.origin.kind == "cell" and op.origin.kind == "cell"
        if not (old.origin.same_owner(op.origin) or interactive):
            raise LibraryError(f"{op.name} is registered twice: by {old.origin} and by {op.origin}. "
                               f"Rename one (the namespace is the part before '::'), or pass replace=True to "
                               f"custom_op if replacing it is intended")
    if old is not None:
        old._detach()
    _registry[op.name] = op
    registered = getattr(dispatch, "registered_ops", None)  # the dispatch table's list of custom ops, when present
    if isinstance(registered, list):
        registered.append(op.function)
    for listener in op_listeners:
        listener(op)
    return op


def custom_op(name: str, fn: Kernel | None = None, *, device_types: str | tuple[str, ...] | None = None,
              doc: str | None = None, replace: bool = False) -> Any:
    """Register a custom op named ``"namespace::name"``; usable as a decorator of its kernel.

    ``@custom_op("mylib::gelu_tanh")`` over ``def gelu_tanh(x): ...`` (arrays in, array out) makes that function the
    generic kernel; with ``device_types="cpu"`` it is registered for those device types only. Without a function
    (``op = custom_op("mylib::f")``) the op starts with no kernel. Returns the :class:`CustomOp`.
    """

    def make(kernel: Kernel | None) -> CustomOp:
        docstring = doc if doc is not None else (kernel.__doc__ or "" if kernel is not None else "")
        origin = caller_origin()
        generic = kernel if device_types is None else None
        op = CustomOp(name, generic, origin, doc=" ".join(docstring.split()))
        if kernel is not None and device_types is not None:
            for device_type in (device_types,) if isinstance(device_types, str) else device_types:
                op.register_kernel(device_type, kernel)
        return register(op, replace=replace)

    if fn is not None:
        return make(fn)

    def decorator(kernel: Kernel) -> CustomOp:
        return make(kernel)

    return decorator


def register_kernel(name: str, device_type: str, fn: Kernel | None = None, **options: Any) -> Any:
    """``register_kernel("mylib::gelu_tanh", "cuda")``: the module-level form of :meth:`CustomOp.register_kernel`."""
    return lookup(name).register_kernel(device_type, fn, **options)


def register_autograd(name: str, backward: Callable[..., Any], setup_context: Callable[..., Any] | None = None) -> None:
    """The module-level form of :meth:`CustomOp.register_autograd`."""
    lookup(name).register_autograd(backward, setup_context)


def register_shape(name: str, fn: Callable[..., Any] | None = None) -> Any:
    """The module-level form of :meth:`CustomOp.register_shape` (usable as a decorator)."""
    op = lookup(name)
    return op.register_shape if fn is None else op.register_shape(fn)


def lookup(name: str) -> CustomOp:
    """The op registered as ``name`` (loading the installed package that provides its namespace, if any)."""
    op = _registry.get(name)
    if op is not None:
        return op
    match = _NAME.match(name)
    if match is not None and load_entry_points(match.group(1)):
        op = _registry.get(name)
        if op is not None:
            return op
    known = ", ".join(sorted(_registry)) or "none"
    raise LibraryError(f"no custom op named {name!r} (registered: {known})")


def find(name: str) -> CustomOp | None:
    """The op registered as ``name``, or None (no entry-point loading)."""
    return _registry.get(name)


def all_ops() -> list[CustomOp]:
    """Every registered op (after loading every installed op package), sorted by name."""
    load_entry_points()
    return [_registry[name] for name in sorted(_registry)]


# -- entry points ---------------------------------------------------------------------------------------------------
_loaded_entry_points: set[tuple[str, str]] = set()


def load_entry_points(namespace: str | None = None) -> int:
    """Import the installed op packages (entry-point group ``tinygrad_nb.ops``; the entry point's name is the op
    namespace it provides) for ``namespace``, or all of them; each at most once. Returns how many were loaded now.

    An entry point names a module (registering at import) or a callable (called with no arguments). Ops it
    registers get the origin "package <distribution>".
    """
    loaded = 0
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if namespace is not None and ep.name != namespace:
            continue
        dist = ep.dist.name if ep.dist is not None else "?"
        key = (dist, ep.value)
        if key in _loaded_entry_points:
            continue
        _loaded_entry_points.add(key)
        with origin_context(Origin("package", dist, f"{ep.value}")):
            try:
                target = ep.load()
                if callable(target) and not isinstance(target, type(sys)):
                    target()
            except LibraryError:
                raise
            except Exception as e:
                raise LibraryError(f"loading the op package {dist!r} (entry point {ep.name} = {ep.value} in group "
                                   f"{ENTRY_POINT_GROUP}) failed: {type(e).__name__}: {e}") from e
        loaded += 1
    return loaded


# -- tg.library.ops.<namespace>.<name> ------------------------------------------------------------------------------
class Namespace:
    """``ops.mylib``: attribute access to the ops of one namespace."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, name: str) -> CustomOp:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return lookup(f"{self._name}::{name}")
        except LibraryError as e:
            raise AttributeError(str(e)) from None

    def __dir__(self) -> list[str]:
        prefix = self._name + "::"
        return sorted(n[len(prefix):] for n in _registry if n.startswith(prefix))

    def __repr__(self) -> str:
        return f"<custom op namespace {self._name}: {', '.join(self.__dir__()) or 'empty'}>"


def namespace(name: str) -> Namespace | None:
    """The namespace ``name`` when some op lives in it (after loading its package), else None."""
    prefix = name + "::"
    if not any(n.startswith(prefix) for n in _registry):
        load_entry_points(name)
        if not any(n.startswith(prefix) for n in _registry):
            return None
    return Namespace(name)


class OpsAccessor:
    """``tg.library.ops.mylib.gelu_tanh``: the same access ``tg.ops.mylib.gelu_tanh`` gives once the core's ops
    package has its namespace hook."""

    def __getattr__(self, name: str) -> Namespace:
        if name.startswith("__"):
            raise AttributeError(name)
        found = namespace(name)
        if found is None:
            raise AttributeError(f"no custom op namespace {name!r} (namespaces: "
                                 f"{', '.join(sorted({n.split('::')[0] for n in _registry})) or 'none'})")
        return found

    def __dir__(self) -> list[str]:
        return sorted({n.split("::")[0] for n in _registry})


ops = OpsAccessor()
