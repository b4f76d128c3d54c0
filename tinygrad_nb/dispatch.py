"""Dispatch: which implementation runs an op on a device, and who gets told about it.

* **Overrides.** Every op has one generic ``xp`` implementation (its ``Function`` class). A device may replace a
  single op, e.g. a fused cupy kernel: ``register_override(ops.Gelu, "cuda", FusedGelu)``. The replacement is a
  ``Function`` subclass too, so it brings its own backward. ``dispatch_table()`` prints what runs where.
* **Observers.** The profiler, the NaN tracer and (later) autocast attach here with :func:`add_observer`. An observer
  gets ``op_begin(event)`` and ``op_end(event)`` for every forward op and every backward node. When no observer is
  registered, the op's hot path pays for one truthiness check of ``observers`` and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .autograd import Context, Function

overrides: dict[tuple[type, str], type] = {}
observers: list[Observer] = []
# Called with every new ObserverHandle (empty unless a tool such as the notebook extension wants to own them).
observer_listeners: list[Any] = []
# Autocast (tinygrad_nb.amp): while an enabled autocast region is active this holds one function
# ``(op, args) -> args`` that casts an op's tensor arguments by the policy table; empty otherwise, so ops pay one
# truthiness check. Mutated in place, never rebound (autograd binds it once).
autocast_hooks: list[Any] = []


@dataclass
class OpEvent:
    """What an observer sees about one op call.

    ``phase`` is "forward" or "backward". In the forward phase ``inputs`` are the argument tensors (and plain values)
    and ``output`` is the result tensor (set before ``op_end``). In the backward phase ``inputs`` is the incoming
    gradient array and ``output`` the tuple of gradient arrays produced for the node's inputs. ``ctx`` is the graph
    node (None when no graph is recorded); observers may attach data to it, e.g. where the op was called.
    ``kwargs`` are the op's keyword arguments in the forward phase (``axis=``, ``keepdims=``: what export needs).
    """

    phase: str
    op: str
    device: Any
    inputs: tuple[Any, ...]
    output: Any = None
    ctx: Context | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)


class Observer(Protocol):
    def op_begin(self, event: OpEvent) -> None: ...

    def op_end(self, event: OpEvent) -> None: ...


class Handle:
    """The one handle protocol (observers here, tensor and module hooks in ``tensor.RemovableHandle``): ``remove()``
    undoes the registration, ``active`` is True until then, and a ``with`` block removes it on exit."""

    def remove(self) -> None:
        raise NotImplementedError

    @property
    def active(self) -> bool:
        raise NotImplementedError

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class ObserverHandle(Handle):
    """Returned by :func:`add_observer`; ``remove()`` (or leaving a ``with`` block) detaches the observer."""

    def __init__(self, observer: Observer):
        self.observer = observer
        self._removed = False

    def remove(self) -> None:
        """Detach the observer; only the first call does anything, so a stale handle cannot detach the same
        observer object after it was added again."""
        if self._removed:
            return
        self._removed = True
        if self.observer in observers:
            observers.remove(self.observer)

    @property
    def active(self) -> bool:
        """True until the observer is removed through this handle."""
        return not self._removed


def add_observer(observer: Observer) -> ObserverHandle:
    observers.append(observer)
    handle = ObserverHandle(observer)
    for listener in observer_listeners:
        listener(handle)
    return handle


def register_override(op: type[Function], device_type: str, implementation: type[Function]) -> None:
    """Run ``implementation`` instead of ``op`` for tensors on devices of ``device_type`` ('cpu' or 'cuda')."""
    overrides[(op, device_type)] = implementation


def remove_override(op: type[Function], device_type: str) -> None:
    overrides.pop((op, device_type), None)


def implementation_for(op: type[Function], device_type: str) -> type[Function]:
    return overrides.get((op, device_type), op)


registered_ops: list[type] = []  # custom ops' Functions, kept by tinygrad_nb.library (the core never imports it)


def dispatch_table() -> str:
    """A printable table: every built-in op, then every registered custom op, and which implementation runs on each
    device type."""
    from . import ops  # noqa: PLC0415 - the op table imports dispatch, so look it up lazily

    rows = [("op", "cpu", "cuda")]
    for op in (*ops.PRIMITIVES, *registered_ops):
        rows.append((op.__name__, _impl_name(op, "cpu"), _impl_name(op, "cuda")))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _impl_name(op: type, device_type: str) -> str:
    impl = implementation_for(op, device_type)
    return "generic (xp)" if impl is op else f"{impl.__module__}.{impl.__qualname__}"
