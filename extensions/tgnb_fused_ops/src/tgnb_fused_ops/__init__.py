"""tgnb_fused_ops: an example tinygrad_nb plugin package (a fused GELU-tanh with backward, written in C).

Installed, it registers through the entry point ``fused = "tgnb_fused_ops:register"`` in the group
``tinygrad_nb.ops``: the first use of ``tg.ops.fused`` (or ``tg.library.lookup("fused::gelu_tanh")``) calls
:func:`register`, which loads the compiled library with ``tg.library.load_plugin``. On cuda tensors the same op
runs a ``cupy.RawKernel`` (:mod:`tgnb_fused_ops.cuda`) when cupy is installed.
"""
from __future__ import annotations

from pathlib import Path

__version__ = "1.0.0"
HERE = Path(__file__).resolve().parent


def library_path() -> Path:
    """The compiled plugin (``_fused_ops*.so`` next to this file)."""
    found = sorted(HERE.glob("_fused_ops*.so")) + sorted(HERE.glob("_fused_ops*.pyd"))
    if not found:
        raise FileNotFoundError(f"tgnb_fused_ops: the compiled plugin is missing from {HERE}; reinstall the package")
    return found[0]


def source_path() -> Path:
    """The C source (for building it yourself with ``tg.library.build``)."""
    return HERE / "fused_ops.c"


def register() -> object:
    """Load the plugin and register its ops (plus the cuda kernel when cupy is available)."""
    from tinygrad_nb import library  # noqa: PLC0415

    plugin = library.load_plugin(library_path())
    from . import cuda  # noqa: PLC0415

    cuda.register()
    return plugin
