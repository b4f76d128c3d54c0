"""Run fingerprints: what a result depended on, in four hashed parts.

    fp = tg.fingerprint(model)
    fp.digest          # '3f9a0c...' (16 hex digits over all four parts)
    fp.to_dict()       # the parts, as stored in every checkpoint

* **code**: the source of the running script (``__main__.__file__``), or in IPython/Jupyter the sources of the cells
  executed so far (the ``In`` history);
* **params**: xxh3-128 over the model's state (names, dtypes, shapes and bytes);
* **data**: the full-content xxh3-128 of every file read through ``tinygrad_nb.data`` loaders (that module caches each
  hash by path, size and mtime), or of the files you pass;
* **environment**: Python, numpy, cupy and BLAS versions, the BLAS kernel really in use and its threads
  (threadpoolctl: ``architecture``, ``internal_api``, ``version``, ``num_threads``), the CPU model and flags, numpy's
  enabled SIMD targets, devices, and the deterministic-mode state (including whether portable mode is on).

Two runs with the same digest ran the same code on the same parameters and data in the same environment.
:func:`bit_environment` is the part of the environment that can change floating-point bits (recorded with every
cell checkpoint commit) and :func:`environment_note` says, in one line, what of it differs between a recording and
now, and whether portable mode (which makes the hardware parts irrelevant) was on.
"""
from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from . import determinism, device

_file_hash_cache: dict[str, tuple[int, int, str]] = {}


@dataclass(frozen=True)
class Fingerprint:
    """The four parts of a run fingerprint and a short combined ``digest``."""

    code: dict[str, Any]
    params: dict[str, Any] | None
    data: dict[str, Any]
    environment: dict[str, Any]
    digest: str

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "code": self.code, "params": self.params, "data": self.data,
                "environment": self.environment}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fingerprint:
        return cls(code=d["code"], params=d["params"], data=d["data"], environment=d["environment"],
                   digest=d["digest"])

    def differences(self, other: Fingerprint | dict[str, Any]) -> list[str]:
        """Which parts differ from ``other`` (e.g. a checkpoint's fingerprint): ['code', 'environment.numpy', ...]."""
        theirs = other if isinstance(other, dict) else other.to_dict()
        mine = self.to_dict()
        changed = [part for part in ("code", "params", "data") if _content_hash(mine[part]) !=
                   _content_hash(theirs.get(part))]
        env, other_env = self.environment, theirs.get("environment") or {}
        changed += [f"environment.{k}" for k in sorted(set(env) | set(other_env)) if env.get(k) != other_env.get(k)]
        return changed

    def __repr__(self) -> str:
        return f"Fingerprint(digest={self.digest!r}, code={self.code.get('origin')!r})"


def fingerprint(model: Any = None, *, code: str | bool | None = None,
                data: Iterable[str | os.PathLike[str]] | None = None, environment: bool = True) -> Fingerprint:
    """Fingerprint the current run.

    ``model``: anything with ``state_dict()`` (its parameter bytes are hashed). ``code``: None finds the running
    script or notebook cells, a string is used as the source, False leaves code out. ``data``: None takes the files
    read through ``tinygrad_nb.data`` loaders; a list of paths hashes those files instead.
    """
    code_part = _code_part(code)
    params_part = None if model is None else params_hash(model)
    data_part = _data_part(data)
    env_part = environment_info() if environment else {}
    combined = [_content_hash(code_part), _content_hash(params_part), _content_hash(data_part),
                _content_hash(env_part)]
    digest = xxhash.xxh3_128_hexdigest(json.dumps(combined).encode())[:16]
    return Fingerprint(code=code_part, params=params_part, data=data_part, environment=env_part, digest=digest)


# -- code ----------------------------------------------------------------------------------------------------------
def code_source() -> tuple[str, str | None]:
    """(origin, source) of the running program: IPython cells, the ``__main__`` script, or ('unknown', None)."""
    shell = _ipython_shell()
    if shell is not None:
        cells = [cell for cell in shell.user_ns.get("In", []) if cell]
        return "ipython cells", "\n\n".join(cells)
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file and Path(main_file).is_file():
        return str(Path(main_file).resolve()), Path(main_file).read_text(encoding="utf-8", errors="replace")
    return "unknown", None


def _ipython_shell() -> Any:
    if "IPython" not in sys.modules:  # never import IPython from the core
        return None
    get_ipython = getattr(sys.modules["IPython"], "get_ipython", None)
    return get_ipython() if callable(get_ipython) else None


def _code_part(code: str | bool | None) -> dict[str, Any]:
    if code is False:
        return {"origin": "not recorded", "xxh3_128": None, "source": None}
    origin, source = ("given", code) if isinstance(code, str) else code_source()
    digest = None if source is None else xxhash.xxh3_128_hexdigest(source.encode())
    return {"origin": origin, "xxh3_128": digest, "source": source}


# -- params --------------------------------------------------------------------------------------------------------
def params_hash(model: Any) -> dict[str, Any]:
    """xxh3-128 over every entry of ``model.state_dict()``: name, dtype, shape and bytes, in order."""
    hasher = xxhash.xxh3_128()
    count = nbytes = 0
    for name, value in model.state_dict().items():
        array = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
        array = array if array.flags.c_contiguous else array.copy(order="C")
        hasher.update(f"{name}|{array.dtype.name}|{list(array.shape)}|".encode())
        hasher.update(memoryview(array.reshape(-1).view(np.uint8)))
        count += 1
        nbytes += array.nbytes
    return {"xxh3_128": hasher.hexdigest(), "tensors": count, "bytes": nbytes}


# -- data ----------------------------------------------------------------------------------------------------------
def hash_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """{path, size, mtime_ns, xxh3_128} of a file's full content; cached while its size and mtime stay the same."""
    resolved = str(Path(path).resolve())
    stat = os.stat(resolved)
    cached = _file_hash_cache.get(resolved)
    if cached is not None and cached[:2] == (stat.st_size, stat.st_mtime_ns):
        digest = cached[2]
    else:
        hasher = xxhash.xxh3_128()
        with open(resolved, "rb") as f:
            while chunk := f.read(1 << 22):
                hasher.update(chunk)
        digest = hasher.hexdigest()
        _file_hash_cache[resolved] = (stat.st_size, stat.st_mtime_ns, digest)
    return {"path": resolved, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "xxh3_128": digest}


def _data_part(data: Iterable[str | os.PathLike[str]] | None) -> dict[str, Any]:
    if data is not None:
        files, source = [hash_file(p) for p in data], "given"
    else:
        try:
            from .data import files_read  # noqa: PLC0415 - data sits above the core
        except ImportError:
            files, source = [], "unavailable (tinygrad_nb.data not importable)"
        else:
            files, source = [dict(f) for f in files_read()], "tinygrad_nb.data"
    files = sorted(files, key=lambda f: f["path"])
    content = sorted(f["xxh3_128"] for f in files)  # the content, not where it lies, identifies the data
    return {"source": source, "files": files, "xxh3_128": xxhash.xxh3_128_hexdigest(json.dumps(content).encode())}


# -- environment ---------------------------------------------------------------------------------------------------
def environment_info() -> dict[str, Any]:
    """Versions and settings that can change numerical results."""
    import tinygrad_nb  # noqa: PLC0415 - imported when called: the package imports this module

    info: dict[str, Any] = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "machine": platform.machine(),
        "tinygrad_nb": getattr(tinygrad_nb, "__version__", None),
        "numpy": np.__version__,
        "cupy": _cupy_version(),
        "blas": _blas_info(),
        "cpu": cpu_info(),
        "numpy_simd": numpy_simd(),
        "default_device": str(device.get_default_device()),
        "devices": _device_names(),
        "determinism": determinism.state(),
    }
    return info


def _cupy_version() -> str | None:
    """cupy's version without importing it (importing cupy can initialise CUDA)."""
    if "cupy" in sys.modules:
        return getattr(sys.modules["cupy"], "__version__", None)
    return _installed_cupy_version()


@functools.cache
def _installed_cupy_version() -> str | None:
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name == "cupy" or name.startswith("cupy-"):
            return dist.version
    return None


def _blas_info() -> dict[str, Any]:
    """numpy's BLAS (name, version from the build config) and, with threadpoolctl, the live thread counts."""
    info: dict[str, Any] = {}
    try:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        info = {"name": blas.get("name"), "version": blas.get("version")}
    except (TypeError, ValueError, AttributeError):  # numpy < 1.25 has no mode="dicts"
        info = {"name": None, "version": None}
    try:
        import threadpoolctl  # noqa: PLC0415 - optional
    except ImportError:
        info["threads"] = None
    else:
        info["threads"] = [{"api": p.get("internal_api"), "version": p.get("version"),
                            "architecture": p.get("architecture"), "threading_layer": p.get("threading_layer"),
                            "num_threads": p.get("num_threads")}
                           for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
    return info


@functools.cache
def cpu_info() -> dict[str, Any]:
    """The CPU model and its feature flags (Linux: /proc/cpuinfo; elsewhere what ``platform`` knows), with an
    xxh3-128 of the sorted flags for short comparisons."""
    model, flags, source = platform.processor() or platform.machine(), [], "platform"
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    if fields:
        source = "/proc/cpuinfo"
        model = fields.get("model name") or " ".join(
            f"{k} {fields[k]}" for k in ("CPU implementer", "CPU architecture", "CPU variant", "CPU part")
            if k in fields) or model  # ARM kernels name the core by implementer and part
        flags = sorted(set((fields.get("flags") or fields.get("Features") or "").split()))
    return {"model": model, "flags": flags, "flags_xxh3": xxhash.xxh3_128_hexdigest(" ".join(flags).encode()),
            "source": source}


@functools.cache
def numpy_simd() -> dict[str, Any]:
    """numpy's SIMD: the baseline it was built for and the dispatch targets enabled on this CPU (what
    ``NPY_DISABLE_CPU_FEATURES`` and the CPU decide; they choose numpy's exp/log/tanh/sum loops)."""
    try:
        from numpy._core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy < 2
        try:
            from numpy.core._multiarray_umath import (  # type: ignore[no-redef]
                __cpu_baseline__, __cpu_dispatch__, __cpu_features__)
        except ImportError:
            return {"baseline": None, "enabled": None}
    return {"baseline": list(__cpu_baseline__),
            "enabled": [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]}


class EnvironmentWarning(UserWarning):
    """``tg.load``: the checkpoint was written in an environment that can give other bits (see environment_note)."""


# -- what can change bits ------------------------------------------------------------------------------------------
# bit_environment key -> (label, True when portable mode makes it irrelevant)
BIT_RELEVANT: dict[str, tuple[str, bool]] = {
    "tinygrad_nb": ("tinygrad_nb version", False),
    "numpy": ("numpy version", False),
    "cupy": ("cupy version", False),
    "machine": ("CPU architecture", True),
    "cpu": ("CPU model", True),
    "cpu_flags": ("CPU flags", True),
    "numpy_simd": ("numpy SIMD targets", True),
    "blas_kernel": ("BLAS kernel", True),
    "blas_threads": ("BLAS threads", True),
}


def bit_environment(environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """The part of an :func:`environment_info` (default: the current one) that can change floating-point bits, as
    short plain data: versions, CPU architecture/model/flags hash, numpy SIMD targets, BLAS kernel and threads, and
    whether portable mode is on. Keys an older recording lacks are None."""
    if environment is None:  # only what is needed (a cell checkpoint commit calls this for every cell)
        import tinygrad_nb  # noqa: PLC0415 - the package imports this module

        environment = {"tinygrad_nb": getattr(tinygrad_nb, "__version__", None), "numpy": np.__version__,
                       "cupy": _cupy_version(), "machine": platform.machine(), "cpu": cpu_info(),
                       "numpy_simd": numpy_simd(), "blas": _blas_info(), "determinism": determinism.state()}
    env = environment
    cpu = env.get("cpu") or {}
    live = (env.get("blas") or {}).get("threads")
    kernels = None if live is None else [" ".join(str(t.get(k)) for k in ("api", "version", "architecture"))
                                         for t in live if "architecture" in t] or None
    return {
        "tinygrad_nb": env.get("tinygrad_nb"),
        "numpy": env.get("numpy"),
        "cupy": env.get("cupy"),
        "machine": env.get("machine"),
        "cpu": cpu.get("model"),
        "cpu_flags": cpu.get("flags_xxh3"),
        "numpy_simd": (env.get("numpy_simd") or {}).get("enabled"),
        "blas_kernel": kernels,
        "blas_threads": None if live is None else [t.get("num_threads") for t in live],
        "portable": (env.get("determinism") or {}).get("portable"),
    }


def environment_note(recorded: dict[str, Any] | None, current: dict[str, Any] | None = None) -> str | None:
    """One line on how ``recorded`` (a :func:`bit_environment`, or a full environment) differs from ``current``
    (default: now) in ways that can change bits, and whether portable mode was on; None when nothing differs.

    With portable mode on in both, only version changes can change bits; the hardware differences are named as
    harmless. Keys missing on either side (older recordings) are not compared.
    """
    if not recorded:
        return None
    recorded = bit_environment(recorded) if _is_full(recorded) else recorded
    now = bit_environment(current) if current is None or _is_full(current) else current
    changed = [key for key in BIT_RELEVANT if recorded.get(key) is not None and now.get(key) is not None
               and recorded.get(key) != now.get(key)]
    if not changed:
        return None
    portable_then, portable_now = bool(recorded.get("portable")), bool(now.get("portable"))
    both_portable = portable_then and portable_now

    def describe(key: str) -> str:
        then, later = recorded[key], now[key]
        if key == "cpu_flags":
            return BIT_RELEVANT[key][0]  # hashes say nothing to a reader
        show = (lambda v: " ".join(map(str, v)) or "none") if isinstance(then, list) else str
        return f"{BIT_RELEVANT[key][0]} {show(then)} -> {show(later)}"

    versions = [describe(k) for k in changed if not BIT_RELEVANT[k][1]]
    hardware = [describe(k) for k in changed if BIT_RELEVANT[k][1]]
    mode = (f"portable mode was {'on' if portable_then else 'off'} when recorded and is "
            f"{'on' if portable_now else 'off'} now")
    if both_portable:
        parts = []
        if versions:
            parts.append("environment differs in ways that can change bits: " + ", ".join(versions))
        if hardware:
            parts.append(("also " if versions else "environment differs: ") + ", ".join(hardware) +
                         " (portable mode was on both times: these do not change bits)")
        return "; ".join(parts)
    return ("environment differs in ways that can change bits: " + ", ".join(versions + hardware) + f"; {mode}" +
            ("" if not hardware else " (deterministic('portable') gives the same bits on any CPU, BLAS kernel, "
             "thread count and SIMD level)"))


def _is_full(environment: dict[str, Any]) -> bool:
    """An environment_info (rather than a bit_environment)?"""
    return "determinism" in environment or "blas" in environment


def _device_names() -> list[str]:
    """cpu always; the GPUs only if cupy is already in use (we never initialise CUDA just to fingerprint)."""
    names = [f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"]
    if "cupy" in sys.modules:
        names += [f"{d.name}: {d.description}" for d in device.devices() if d.name.startswith("cuda")]
    return names


def _content_hash(part: dict[str, Any] | None) -> str | None:
    """A part's own content hash (code, params, data: where they came from does not count), else a hash of it all."""
    if part is None:
        return None
    if "xxh3_128" in part:
        return part["xxh3_128"]
    return xxhash.xxh3_128_hexdigest(json.dumps(part, sort_keys=True, default=str).encode())
