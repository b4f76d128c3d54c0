"""Cell-level checkpoints and bitwise replay (see docs/cell_checkpoints.md).

:func:`load` / :func:`unload` are called by the IPython extension; they register the ``%tg_ckpt`` family of magics
and the pre/post_run_cell handlers of one :class:`~.session.Recorder` per shell.
"""
from __future__ import annotations

from typing import Any

from .session import Recorder
from .trust import CheckpointStoreError, CheckpointTrustError

__all__ = ["CheckpointStoreError", "CheckpointTrustError", "Recorder", "load", "recorder", "unload"]

_recorders: dict[int, tuple[Recorder, Any, Any]] = {}


def recorder(ipython: Any) -> Recorder | None:
    """The recorder attached to ``ipython`` (None when the extension is not loaded)."""
    entry = _recorders.get(id(ipython))
    return entry[0] if entry is not None else None


def load(ipython: Any) -> Recorder:
    from .magics import CheckpointMagics

    entry = _recorders.get(id(ipython))
    if entry is None:
        rec = Recorder(ipython)
        entry = (rec, rec.pre_run_cell, rec.post_run_cell)
        _recorders[id(ipython)] = entry
    rec, pre, post = entry
    for name, kind, function in CheckpointMagics(rec).functions():
        ipython.register_magic_function(function, magic_kind=kind, magic_name=name)
    if pre not in ipython.events.callbacks["pre_run_cell"]:
        ipython.events.register("pre_run_cell", pre)
    if post not in ipython.events.callbacks["post_run_cell"]:
        ipython.events.register("post_run_cell", post)
    return rec


def unload(ipython: Any) -> None:
    from .magics import MAGICS

    entry = _recorders.pop(id(ipython), None)
    for name, kind, _ in MAGICS:
        ipython.magics_manager.magics[kind].pop(name, None)
    if entry is None:
        return
    rec, pre, post = entry
    for event, handler in (("pre_run_cell", pre), ("post_run_cell", post)):
        if handler in ipython.events.callbacks[event]:
            ipython.events.unregister(event, handler)
    rec.close()
