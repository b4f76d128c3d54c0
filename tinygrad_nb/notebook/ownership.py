"""Cell ownership: hooks and widgets created while a notebook cell runs belong to that cell.

When the *same* cell runs again, everything it owned from its previous run is removed (hook handles, dispatch
observers, profiles, anomaly tracers) or closed (widgets) before the new run starts, so re-running a cell never
leaves two copies of a hook behind::

    from tinygrad_nb.notebook.ownership import own
    own(model.register_forward_hook(print_shapes))     # removed when this cell is re-run
    own(tracer, cleanup=tracer.disable)                 # any object, with an explicit cleanup

A cell is identified by the ``cell_id`` the front end sends (JupyterLab and Notebook 7 do; IPython passes it to the
``pre_run_cell`` event as ``info.cell_id``). Without one (plain IPython, nbclient) the key is a hash of the cell's
source, so an *edited* cell counts as a new cell, and two cells with identical source share their objects.

``%load_ext tinygrad_nb`` installs :func:`pre_run_cell` / :func:`post_run_cell` as IPython event handlers. Outside
a running cell (scripts, or before the extension is loaded) :func:`own` does nothing and returns its argument.
This module does not import IPython.
"""
from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CLEANUP_METHODS = ("remove", "close", "stop", "disable")  # tried in this order when own() gets no cleanup


@dataclass
class Owned:
    """One object owned by a cell, with what releases it and a label for ``%tg_hooks``."""

    obj: Any
    cleanup: Callable[[], Any]
    label: str


@dataclass
class CellInfo:
    """What the registry remembers about a cell: its key, last execution count and first source line."""

    key: str
    execution_count: int | None
    first_line: str

    def describe(self) -> str:
        number = f"cell [{self.execution_count}]" if self.execution_count is not None else "cell"
        return f"{number} {self.first_line!r}" if self.first_line else number


def cell_key(cell_id: str | None, raw_cell: str) -> str:
    """The registry key of a cell: ``id:<cell_id>`` when the front end sent one, else ``src:<hash of source>``."""
    if cell_id:
        return f"id:{cell_id}"
    return "src:" + hashlib.sha1(raw_cell.encode("utf-8", "replace")).hexdigest()[:16]


class CellRegistry:
    """Which cell owns what. One instance per process (:data:`registry`); the extension feeds it cell events."""

    def __init__(self) -> None:
        self.owned: dict[str, list[Owned]] = {}
        self.cells: dict[str, CellInfo] = {}
        self._running: list[str] = []  # keys of the cells running now, innermost last (run_cell can nest)

    # -- cell events --------------------------------------------------------------------------------------------
    def start_cell(self, cell_id: str | None, raw_cell: str, execution_count: int | None = None) -> str:
        """A cell is about to run: release what its previous run owned and make it the current cell."""
        key = cell_key(cell_id, raw_cell)
        self.release(key)
        first = next((line.strip() for line in raw_cell.splitlines() if line.strip()), "")
        self.cells[key] = CellInfo(key, execution_count, first[:60])
        self._running.append(key)
        return key

    def end_cell(self, cell_id: str | None = None, raw_cell: str | None = None) -> None:
        """The current cell finished (successfully or not); what it owns stays owned until it runs again.

        Given the cell, only that cell is ended (IPython reports the end of an empty cell it never started).
        """
        if not self._running:
            return
        if raw_cell is not None and self._running[-1] != cell_key(cell_id, raw_cell):
            return
        key = self._running.pop()
        # Handles the cell already removed itself (a `with` block, a magic's own tracer) need no owner any more.
        if key in self.owned:
            self.owned[key] = [entry for entry in self.owned[key] if getattr(entry.obj, "active", True)]

    def current(self) -> str | None:
        return self._running[-1] if self._running else None

    # -- owning -------------------------------------------------------------------------------------------------
    def own(self, obj: Any, cleanup: Callable[[], Any] | None = None, label: str | None = None) -> Any:
        """Make the current cell own ``obj``; returns ``obj``. A no-op outside a running cell."""
        key = self.current()
        if key is None:
            return obj
        if cleanup is None:
            cleanup = _default_cleanup(obj)
        entries = self.owned.setdefault(key, [])
        existing = next((entry for entry in entries if entry.obj is obj), None)
        if existing is None:
            # A handle made inside obj (a Profile's or a tracer's observer handle, a widget's hooks) was owned
            # automatically a moment ago; obj's own cleanup releases it, so it is obj's part, not a second row.
            parts = _parts(obj)
            entries[:] = [entry for entry in entries if not any(entry.obj is part for part in parts)]
            entries.append(Owned(obj, cleanup, label or type(obj).__name__))
        elif label is not None:  # owned automatically when it was created; the user's name is better
            existing.label = label
        return obj

    def disown(self, obj: Any) -> bool:
        """Forget ``obj`` without releasing it (it stays active). True when it was owned."""
        for entries in self.owned.values():
            for entry in entries:
                if entry.obj is obj:
                    entries.remove(entry)
                    return True
        return False

    def release(self, key: str) -> int:
        """Remove/close everything the cell ``key`` owns; returns how many objects were released.

        A cleanup that fails is reported on stderr and does not stop the others.
        """
        entries = self.owned.pop(key, [])
        for entry in reversed(entries):  # newest first, like unwinding
            try:
                entry.cleanup()
            except Exception as e:  # noqa: BLE001 - one broken widget must not keep the other hooks alive
                print(f"tinygrad_nb: could not release {entry.label}: {type(e).__name__}: {e}", file=sys.stderr)
        return len(entries)

    def release_all(self) -> int:
        return sum(self.release(key) for key in list(self.owned))

    def live(self) -> list[tuple[CellInfo, list[Owned]]]:
        """Cells that own something, with their objects, in the order the cells first owned something."""
        return [(self.cells.get(key, CellInfo(key, None, "")), list(entries))
                for key, entries in self.owned.items() if entries]

    def auto_own(self, handle: Any) -> None:
        """Callback for the core's "handle created" lists (when the core has them): own every new handle."""
        self.own(handle)


def _parts(obj: Any) -> list[Any]:
    """The objects ``obj`` holds directly: its attribute values and the items of list, tuple and dict attributes."""
    try:
        values = list(vars(obj).values())
    except TypeError:  # no __dict__ (ints, slotted objects)
        return []
    parts = []
    for value in values:
        parts.append(value)
        if isinstance(value, (list, tuple)):
            parts.extend(value)
        elif isinstance(value, dict):
            parts.extend(value.values())
    return parts


def _default_cleanup(obj: Any) -> Callable[[], Any]:
    for name in CLEANUP_METHODS:
        method = getattr(obj, name, None)
        if callable(method):
            return method
    raise TypeError(f"own: {type(obj).__name__} has none of the methods {', '.join(CLEANUP_METHODS)}; "
                    "pass cleanup=... to say how to release it")


registry = CellRegistry()


# -- module-level API -----------------------------------------------------------------------------------------------
def own(obj: Any, cleanup: Callable[[], Any] | None = None, label: str | None = None) -> Any:
    """Make the running cell own ``obj`` (released when that cell is re-run); returns ``obj``.

    ``obj`` needs ``remove()``, ``close()``, ``stop()`` or ``disable()``, or give ``cleanup``. Outside a running
    cell (no notebook, or the extension not loaded) it returns ``obj`` and does nothing else.
    """
    return registry.own(obj, cleanup=cleanup, label=label)


def disown(obj: Any) -> bool:
    """Stop owning ``obj`` (it is not released). True when it was owned."""
    return registry.disown(obj)


def current_cell() -> str | None:
    """The registry key of the cell running now (``id:...`` or ``src:...``), or None outside a cell."""
    return registry.current()


def pre_run_cell(info: Any) -> None:
    """IPython ``pre_run_cell`` handler: ``info`` has ``raw_cell`` and (IPython >= 8, ipykernel >= 6) ``cell_id``."""
    shell = _shell()
    count = getattr(shell, "execution_count", None) if shell is not None else None
    registry.start_cell(getattr(info, "cell_id", None), getattr(info, "raw_cell", "") or "", count)


def post_run_cell(result: Any) -> None:
    """IPython ``post_run_cell`` handler: ``result.info`` is the ``info`` that ``pre_run_cell`` got."""
    info = getattr(result, "info", None)
    if info is None:
        registry.end_cell()
        return
    cell_id, raw_cell = getattr(info, "cell_id", None), getattr(info, "raw_cell", "") or ""
    # The number IPython stored the cell under (its In [N]) is the result's; shell.execution_count, read in
    # pre_run_cell, is the same in IPython 8 and 9 but is not a documented promise.
    count = getattr(result, "execution_count", None)
    cell = registry.cells.get(cell_key(cell_id, raw_cell))
    if count is not None and cell is not None:
        cell.execution_count = count
    registry.end_cell(cell_id, raw_cell)


def _shell() -> Any:
    module = sys.modules.get("IPython")
    return module.get_ipython() if module is not None else None
