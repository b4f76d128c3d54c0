"""Devices: where a tensor's array lives and which array module (``xp``) computes on it.

A :class:`Device` is a name plus an array module: ``cpu`` uses numpy, ``cuda:N`` uses cupy on GPU ``N``. Every op
is written once against ``xp``, so the same definition runs on both. ``cpu:sim`` is a test-only second CPU device
(numpy-backed but distinct) so transfers, mismatch errors and cross-device loading are exercised without a GPU; turn it
on with :func:`enable_sim_device`.

The default device is ``cpu`` unless ``TINYGRAD_NB_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``, ``auto``) or
:func:`set_default_device` says otherwise. ``auto`` picks cuda when cupy imports and a GPU answers, and otherwise says
once, in one line on stderr, why it fell back.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

_sim_enabled = False
_cache: dict[str, Device] = {}


class DeviceError(RuntimeError):
    """A device that does not exist, is unavailable, or does not match another tensor's device."""


def _import_cupy() -> Any:
    import cupy  # noqa: PLC0415 - optional dependency, imported only when a cuda device is used

    return cupy


class Device:
    """A device by name: ``Device("cpu")``, ``Device("cuda")`` (= ``cuda:0``), ``Device("cuda:1")``.

    Instances are cached, so two tensors are on the same device exactly when ``a.device is b.device``.
    """

    type: str
    index: int | None
    name: str
    xp: Any

    def __new__(cls, spec: str | Device | None = None) -> Device:
        if isinstance(spec, Device):
            return spec
        if spec is None:
            return get_default_device()
        if not isinstance(spec, str):
            raise TypeError(f"Device: expected a name like 'cpu' or 'cuda:0', got {type(spec).__name__}")
        name = spec.strip().lower()
        if name == "cuda":
            name = "cuda:0"
        if name in _cache:
            return _cache[name]
        kind, _, index = name.partition(":")
        if name == "cpu:sim":
            if not _sim_enabled:
                raise DeviceError("'cpu:sim' is a test-only device; call tinygrad_nb.device.enable_sim_device() first")
        elif kind == "cuda" and index.isdigit():
            pass
        elif name != "cpu":
            raise DeviceError(f"unknown device {spec!r}; expected 'cpu', 'cuda' or 'cuda:N'")
        self = object.__new__(cls)
        self.name = name
        self.type = kind
        self.index = int(index) if index.isdigit() else None
        if kind == "cuda":
            try:
                self.xp = _import_cupy()
            except ImportError as e:
                raise DeviceError(f"device {name!r} needs cupy, which is not installed "
                                  "(pip install 'tinygrad_nb[cuda]')") from e
            count = _cuda_device_count(self.xp)
            if self.index >= count:
                raise DeviceError(f"device {name!r} does not exist: {count} GPU(s) visible")
        else:
            self.xp = np
        _cache[name] = self
        return self

    @property
    def is_cuda(self) -> bool:
        return self.type == "cuda"

    def context(self) -> Any:
        """Makes this GPU current for cupy (a no-op context on CPU devices)."""
        if self.type == "cuda":
            return self.xp.cuda.Device(self.index)
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        """Wait for queued GPU work (profilers call this for honest timings); nothing to do on CPU."""
        if self.type == "cuda":
            self.xp.cuda.Device(self.index).synchronize()

    def __repr__(self) -> str:
        return f"device(type={self.type!r}, index={self.index})" if self.type == "cuda" else f"device({self.name!r})"

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = Device(other)
            except (DeviceError, TypeError):
                return False
        return self is other

    def __hash__(self) -> int:
        return hash(self.name)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (Device, (self.name,))


def _cuda_device_count(cupy: Any) -> int:
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # cupy raises CUDARuntimeError when the driver is missing or broken
        return 0


def enable_sim_device(enabled: bool = True) -> None:
    """Turn on the test-only ``cpu:sim`` device (a second, numpy-backed device)."""
    global _sim_enabled
    _sim_enabled = enabled
    if not enabled:
        _cache.pop("cpu:sim", None)


# -- default device -----------------------------------------------------------------------------------------
_default: Device | None = None
_fallback_said = False


def cuda_unavailable_reason() -> str | None:
    """Why cuda cannot be used here, in a few words, or None when a GPU answers."""
    try:
        cupy = _import_cupy()
    except ImportError:
        return "cupy is not installed (pip install 'tinygrad_nb[cuda]')"
    except Exception as e:  # a broken CUDA install can fail at import
        return f"cupy failed to import: {type(e).__name__}: {e}"
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as e:
        return f"CUDA driver error: {type(e).__name__}: {e}"
    return None if count > 0 else "no GPU found"


def is_cuda_available() -> bool:
    """True when cupy imports and sees a GPU (:func:`cuda_unavailable_reason` says why not)."""
    return cuda_unavailable_reason() is None


def _resolve(spec: str | Device) -> Device:
    global _fallback_said
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        reason = cuda_unavailable_reason()
        if reason is None:
            return Device("cuda:0")
        if not _fallback_said:
            print(f"tinygrad_nb: using cpu because {reason}", file=sys.stderr)
            _fallback_said = True
        return Device("cpu")
    return Device(spec)


def set_default_device(spec: str | Device) -> Device:
    """Where new tensors go when no ``device=`` is given: 'cpu', 'cuda', 'cuda:N' or 'auto'. Returns it."""
    global _default
    _default = _resolve(spec)
    return _default


def get_default_device() -> Device:
    """Where new tensors go without ``device=``: set by :func:`set_default_device` or ``TINYGRAD_NB_DEVICE``."""
    global _default
    if _default is None:
        _default = _resolve(os.environ.get("TINYGRAD_NB_DEVICE", "cpu"))
    return _default


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    description: str
    memory_bytes: int | None


def devices() -> list[DeviceInfo]:
    """What is available here: cpu always, each GPU cupy can see, and cpu:sim when enabled."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    found = [DeviceInfo("cpu", f"numpy {np.__version__}, {os.cpu_count()} cores", memory)]
    if _sim_enabled:
        found.append(DeviceInfo("cpu:sim", "test-only second CPU device", memory))
    if is_cuda_available():
        cupy = _import_cupy()
        for i in range(cupy.cuda.runtime.getDeviceCount()):
            props = cupy.cuda.runtime.getDeviceProperties(i)
            name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
            found.append(DeviceInfo(f"cuda:{i}", name, int(props["totalGlobalMem"])))
    return found


# -- transfers ----------------------------------------------------------------------------------------------
def transfer(array: Any, src: Device, dst: Device) -> Any:
    """Copy ``array`` from ``src`` to ``dst`` (a new array; the source is untouched)."""
    if src is dst:
        return array
    if dst.type == "cuda":
        with dst.context():
            return dst.xp.asarray(array)  # from numpy or from another GPU
    if src.type == "cuda":
        return src.xp.asnumpy(array)
    return np.array(array, copy=True)  # cpu <-> cpu:sim: a real copy, as a transfer would be


def array_device(array: Any) -> Device:
    """The device an array lives on (numpy -> cpu, cupy -> its GPU)."""
    if isinstance(array, np.ndarray) or np.isscalar(array):
        return Device("cpu")
    dev = getattr(array, "device", None)
    if dev is not None and hasattr(dev, "id"):
        return Device(f"cuda:{dev.id}")
    return Device("cpu")


def _raise_cpu_allocator_thresholds() -> None:
    """glibc's malloc raises its mmap and trim thresholds only once a large block is freed. Until then (a small model
    never frees one) it returns the memory numpy frees to the OS at every training step, and the next step
    page-faults its activations back in: a third of benchmarks/tiny_gpt.py's step, ~9,000 faults per step. Freeing
    one 16 MiB block at import moves the thresholds to 16 and 32 MiB, as a larger model's first step would. The
    block is never touched (no memory stays in use); other allocators (macOS, Windows, musl) are unaffected."""
    np.empty(16 << 20, dtype=np.uint8)


_raise_cpu_allocator_thresholds()
