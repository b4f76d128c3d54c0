"""The IPython extension: ``%load_ext tinygrad_nb`` (or ``%load_ext tinygrad_nb.notebook.extension``).

Loading it registers the magics (:mod:`.magics`) and the ``pre_run_cell`` / ``post_run_cell`` handlers that keep
track of which cell is running, so hooks and widgets a cell creates are owned by it and released when that cell is
re-run (:mod:`.ownership`). Unloading removes the magics and handlers; what cells own stays owned (so
``%reload_ext`` does not drop your hooks). IPython is only touched through the ``ipython`` object passed in.
"""
from __future__ import annotations

from typing import Any

from . import ownership

_EVENTS = (("pre_run_cell", ownership.pre_run_cell), ("post_run_cell", ownership.post_run_cell))


def load_ipython_extension(ipython: Any) -> None:
    """Register the tinygrad_nb magics and the cell-ownership event handlers on ``ipython`` (idempotent)."""
    from .magics import TinygradMagics  # noqa: PLC0415

    for name, kind, function in TinygradMagics(ipython).functions():
        ipython.register_magic_function(function, magic_kind=kind, magic_name=name)
    for event, handler in _EVENTS:
        if handler not in ipython.events.callbacks[event]:
            ipython.events.register(event, handler)
    for listeners in _core_handle_listeners():
        if ownership.registry.auto_own not in listeners:
            listeners.append(ownership.registry.auto_own)
    from . import cellckpt  # noqa: PLC0415 - cell checkpoints: %tg_ckpt/%tg_log/%tg_checkout/... and their hooks

    cellckpt.load(ipython)
    from . import lab_comm  # noqa: PLC0415 - the JupyterLab comm: opened only when the Lab extension is there

    lab_comm.load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics and the event handlers (owned objects stay owned)."""
    from .magics import MAGICS  # noqa: PLC0415

    for name, kind, _ in MAGICS:
        ipython.magics_manager.magics[kind].pop(name, None)
    for event, handler in _EVENTS:
        if handler in ipython.events.callbacks[event]:
            ipython.events.unregister(event, handler)
    for listeners in _core_handle_listeners():
        if ownership.registry.auto_own in listeners:
            listeners.remove(ownership.registry.auto_own)
    from . import cellckpt  # noqa: PLC0415

    cellckpt.unload(ipython)
    from . import lab_comm  # noqa: PLC0415

    lab_comm.unload(ipython)


def _core_handle_listeners() -> list[list[Any]]:
    """The core's "a hook/observer handle was created" listener lists, where the core provides them.

    They are the optional seam for automatic ownership (``nn.module.hook_listeners``,
    ``dispatch.observer_listeners`` and ``library.op_listeners`` for custom ops defined in a cell, empty unless this
    extension is loaded); without them only what goes through
    :func:`.ownership.own` is owned.
    """
    from .. import dispatch, library  # noqa: PLC0415
    from ..nn import module  # noqa: PLC0415

    found = []
    for holder, name in ((module, "hook_listeners"), (dispatch, "observer_listeners"), (library, "op_listeners")):
        listeners = getattr(holder, name, None)
        if isinstance(listeners, list):
            found.append(listeners)
    return found
