"""Deterministic mode: make a run repeat bit for bit, or say loudly which op stops it from doing so.

    tg.deterministic(True)          # from now on
    with tg.deterministic("warn"):  # only inside the block, then the previous mode comes back
        ...

Four modes:

* ``False`` (the default): every op uses its fastest implementation.
* ``True``: an op with no deterministic implementation on the current device raises :class:`DeterminismError`
  the moment it runs (on cupy: the atomics-based scatter-add in the backward of integer-array indexing, ``cumsum``).
* ``"warn"``: such an op emits one :class:`DeterminismWarning` per (device type, op) and runs anyway.
* ``"portable"``: as ``True``, and the same bits on *any* CPU (any BLAS kernel, thread count or SIMD level, same
  library and numpy versions): matrix products are correctly rounded and exp/log/tanh/sigmoid/pow use the
  library's own float64 kernels (:mod:`tinygrad_nb.portable`). The ops test :data:`portable_mode`, one flag.

Turning the mode on also pins what makes repeated runs differ *outside* the op table: the BLAS thread count (through
``threadpoolctl`` when it is installed; otherwise only the ``OMP_NUM_THREADS``-style environment variables can do it and
they act only when set before numpy is imported, so :func:`state` says whether they were) and the cuBLAS workspace
(``CUBLAS_WORKSPACE_CONFIG=:4096:8``, which must be in the environment before the first GPU use). :func:`state` is
recorded in every run fingerprint. See docs/determinism.md for what is and is not guaranteed.

Ops call :func:`check` with their device and name; with the mode off that costs one comparison.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Any

Mode = bool | str

# (device type, op) pairs whose only implementation here gives run-to-run different bits.
NONDETERMINISTIC: dict[tuple[str, str], str] = {
    ("cuda", "GetItem.backward"): "the gradient of integer-array indexing is a scatter-add done with atomic adds "
                                  "(cupy's add.at / cupyx.scatter_add), whose summation order varies between runs",
    ("cuda", "cumsum"): "cupy's cumsum is a parallel scan whose floating-point summation order is not fixed",
}

CUBLAS_WORKSPACE_CONFIG = ":4096:8"
BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                         "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


class DeterminismError(RuntimeError):
    """An op without a deterministic implementation on this device ran while ``deterministic(True)`` was on."""


class DeterminismWarning(UserWarning):
    """Like :class:`DeterminismError`, under ``deterministic("warn")``: once per (device type, op)."""


_mode: Mode = False
portable_mode = False  # True while the mode is "portable": the ops then call tinygrad_nb.portable's kernels
_warned: set[tuple[str, str]] = set()
_blas_limiter: Any = None  # the threadpoolctl limiter while we hold the BLAS thread count, else None
_blas_threads: int | None = None
_cublas_before_gpu: bool | None = None  # was CUBLAS_WORKSPACE_CONFIG in place before cupy was imported?
# BLAS reads its thread variables once, when numpy loads it; remember what they were when this module was imported.
_blas_env_at_import = {name: os.environ[name] for name in BLAS_THREAD_VARIABLES if name in os.environ}


def _normalise(mode: Mode) -> Mode:
    if mode is True or mode is False or mode == "warn" or mode == "portable":
        return mode
    raise ValueError(f"deterministic: mode must be True, False, 'warn' or 'portable', got {mode!r}")


class deterministic:  # noqa: N801 - used like a function, as torch.set_grad_enabled is
    """Set the deterministic mode now; used in a ``with`` block, the previous mode comes back at its end.

    ``blas_threads`` is the BLAS thread count pinned while the mode is on (1 by default: the same partitioning of
    every matrix product on every machine, at the price of single-threaded BLAS). ``"portable"`` does not need it
    (its products do not depend on the thread count) and leaves the count alone unless ``blas_threads`` is given.
    """

    def __init__(self, mode: Mode = True, *, blas_threads: int | None = None):
        self.previous = _mode
        self.previous_threads = _blas_threads
        mode = _normalise(mode)
        _set_mode(mode, blas_threads if blas_threads is not None or mode == "portable" else 1)

    def __enter__(self) -> deterministic:
        return self

    def __exit__(self, *exc: object) -> None:
        _set_mode(self.previous, self.previous_threads)

    def __repr__(self) -> str:
        return f"deterministic({_mode!r})"


def get_deterministic() -> Mode:
    """The current mode: True, False, "warn" or "portable"."""
    return _mode


def is_deterministic() -> bool:
    """True when the mode is on (True, "warn" or "portable")."""
    return _mode is not False


def check(device: Any, op: str) -> None:
    """Called by an op before it runs: raise or warn if ``op`` is nondeterministic on ``device`` and the mode is on.

    ``device`` is a :class:`~tinygrad_nb.device.Device` or a device type string ("cpu", "cuda").
    """
    if _mode is False:
        return
    device_type = device if isinstance(device, str) else device.type
    device_type = device_type.partition(":")[0]
    reason = NONDETERMINISTIC.get((device_type, op))
    if reason is None:
        return
    message = (f"{op} on {device_type} has no deterministic implementation: {reason}. "
               "Run it on cpu, avoid the op, or use tinygrad_nb.deterministic('warn') to allow it with a warning.")
    if _mode != "warn":
        raise DeterminismError(message)
    if (device_type, op) not in _warned:
        _warned.add((device_type, op))
        warnings.warn(message, DeterminismWarning, stacklevel=3)


def state() -> dict[str, Any]:
    """What deterministic mode controls, as plain data (recorded in run fingerprints)."""
    cupy_imported = "cupy" in sys.modules
    return {
        "mode": _mode,
        "portable": portable_mode,
        "blas_threads": _blas_thread_state(),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "cublas_config_before_gpu": _cublas_before_gpu if cupy_imported else None,
    }


# -- internals --------------------------------------------------------------------------------------------------
def _set_mode(mode: Mode, blas_threads: int | None) -> None:
    """``blas_threads`` None: leave the BLAS thread count as it is (False and "portable" without a count)."""
    global _mode, portable_mode
    _mode = mode
    portable_mode = mode == "portable"
    _warned.clear()
    if mode is False or blas_threads is None:
        _release_blas_threads()
    if mode is not False:
        _prepare_gpu()
        if blas_threads is not None:
            _pin_blas_threads(blas_threads)


def _prepare_gpu() -> None:
    """cuBLAS picks a deterministic workspace only if this variable is set before its first handle is created."""
    global _cublas_before_gpu
    if "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE_CONFIG
        if "cupy" in sys.modules:
            warnings.warn("deterministic: cupy was imported before CUBLAS_WORKSPACE_CONFIG was set; if the GPU has "
                          "already run a matrix product, cuBLAS keeps its nondeterministic workspace. Turn "
                          "deterministic mode on before the first GPU use.", DeterminismWarning, stacklevel=4)
            _cublas_before_gpu = False
            return
    if _cublas_before_gpu is None:
        _cublas_before_gpu = "cupy" not in sys.modules


def _pin_blas_threads(threads: int) -> None:
    """Hold the BLAS thread count at ``threads`` (threadpoolctl), or leave a note why that is impossible."""
    global _blas_limiter, _blas_threads
    if threads < 1:
        raise ValueError(f"deterministic: blas_threads must be >= 1, got {threads}")
    _release_blas_threads()
    _blas_threads = threads
    try:
        import threadpoolctl  # noqa: PLC0415 - optional
    except ImportError:
        for name in BLAS_THREAD_VARIABLES:  # only helps child processes and libraries loaded from now on
            os.environ.setdefault(name, str(threads))
        return
    _blas_limiter = threadpoolctl.threadpool_limits(limits=threads, user_api="blas")


def _release_blas_threads() -> None:
    global _blas_limiter, _blas_threads
    if _blas_limiter is not None:
        _blas_limiter.restore_original_limits()
        _blas_limiter = None
    _blas_threads = None


def _blas_thread_state() -> dict[str, Any]:
    if _blas_limiter is not None:
        return {"pinned": True, "threads": _blas_threads, "method": "threadpoolctl"}
    fixed_at_import = dict(_blas_env_at_import)
    if portable_mode and _blas_threads is None:
        return {"pinned": bool(fixed_at_import), "threads": None,
                "method": "environment" if fixed_at_import else "none", "environment_at_import": fixed_at_import,
                "note": "portable mode: results do not depend on the BLAS thread count, so it is not pinned"}
    return {
        "pinned": bool(fixed_at_import),
        "threads": _blas_threads,
        "method": "environment" if fixed_at_import else "none",
        "environment_at_import": fixed_at_import,
        "note": None if fixed_at_import or _mode is False else
        "threadpoolctl is not installed and no BLAS thread variable (e.g. OMP_NUM_THREADS) was set before numpy "
        "was imported, so the BLAS thread count follows the machine's core count",
    }
