"""``tg.autocast``: run ops in a lower precision where the policy table says so (see :mod:`.policy`).

    with tg.autocast(device_type="cpu", dtype=tg.bfloat16):
        loss = F.cross_entropy(model(x), y)      # Linear in bfloat16, the loss in float32
    loss.backward()                              # parameters' gradients arrive in float32, their own dtype

**How it hooks in.** ``Function.apply`` (every op's hot path) starts with ``if _autocast:``, a truthiness check of
``dispatch.autocast_hooks``. Outside an enabled autocast region that list is empty and the check is all an op pays.
Inside one, it holds :func:`_cast_arguments`, which looks the op's name up in the policy table and casts its tensor
arguments through ``ops.Cast``: a recorded graph node, so each gradient flows back cast to its input's dtype
(float32 master weights get float32 gradients) and the profiler, the NaN tracer and export see the casts as ops.

**CPU reality.** numpy has no BLAS for float16 (its matmul is ~175x slower than float32) and ml_dtypes' bfloat16
matmul returns float32. So on CPU a "lower" op *stores* its inputs and output in 16 bits (the saved activations,
the memory saving, are real) while :func:`tinygrad_nb.ops.matmul.mm` multiplies them in float32 and rounds the
result once. On cuda, cupy computes in the low dtype.

The state is per device type ("cpu", "cuda") and process-wide (not per thread, unlike PyTorch's).
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

from .. import autograd, dispatch, ops
from .. import dtype as dtypes
from ..tensor import Tensor
from .policy import FLOAT32, LOWER, category_of

_DEFAULT_DTYPE = {"cpu": dtypes.bfloat16, "cuda": dtypes.float16}
_LOW = tuple(d for d in (dtypes.float16, dtypes.bfloat16) if d is not None)
_active: dict[str, Any] = {}  # device type -> autocast dtype, for device types inside an enabled region
_cast = ops.Cast.apply
_cache_enabled = [True]  # the innermost enabled region's cache_enabled
# id(parameter) -> (parameter, its array, its version, dtype, the cast): a weight used by several lower ops in one
# region (an RNN's, a tied embedding) is cast once, as PyTorch does. Emptied when the last region is left.
_weight_casts: dict[int, tuple[Any, Any, int, Any, Tensor]] = {}


def _cast_weight(t: Tensor, dtype: Any) -> Tensor:
    """``Cast(t, dtype)``, reused for a leaf that requires grad while it is unchanged (same array, same version)
    and its cast's graph node was not freed by a backward."""
    if not (_cache_enabled[-1] and t.requires_grad and t._ctx is None and autograd._grad_enabled):
        return _cast(t, dtype)
    found = _weight_casts.get(id(t))
    if found is not None:
        tensor, array, version, cast_dtype, cast = found
        if tensor is t and array is t.data and version == t._version[0] and cast_dtype == dtype \
                and cast._ctx is not None and cast._ctx.saved is not autograd._FREED:
            return cast
    cast = _cast(t, dtype)
    _weight_casts[id(t)] = (t, t.data, t._version[0], dtype, cast)
    return cast


def _eligible(t: Any) -> bool:
    """A tensor autocast may cast: floating and not float64 (as PyTorch: float64 stays float64)."""
    return isinstance(t, Tensor) and dtypes.is_floating(t.data.dtype) and t.data.dtype != dtypes.float64


def _cast_arguments(op: type, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The autocast hook: ``args`` cast by the policy of ``op`` for the device type of its first tensor."""
    category = category_of.get(op.__name__)
    if category is None:
        return args
    device = next((a.device for a in args if isinstance(a, Tensor)), None)
    if device is None:
        return args
    low = _active.get(device.type)
    if low is None:
        return args
    if category is LOWER or category is FLOAT32:
        target = low if category is LOWER else dtypes.float32
        if not any(_eligible(a) and a.data.dtype != target for a in args):
            return args
        cast = _cast_weight if category is LOWER else _cast
        return tuple(cast(a, target) if _eligible(a) and a.data.dtype != target else a for a in args)
    # promote: the widest floating dtype among the tensor arguments
    floats = {a.data.dtype for a in args if isinstance(a, Tensor) and dtypes.is_floating(a.data.dtype)}
    if len(floats) < 2:
        return args
    widest = dtypes.float64 if dtypes.float64 in floats else dtypes.float32
    return tuple(_cast(a, widest) if isinstance(a, Tensor) and a.data.dtype in floats and a.data.dtype != widest
                 else a for a in args)


def _sync_hook() -> None:
    """Install the hook while some device type is inside an enabled region; remove it otherwise (zero cost)."""
    hooks = dispatch.autocast_hooks
    if _active and not hooks:
        hooks.append(_cast_arguments)
    elif not _active and hooks:
        hooks.clear()
    if not _active:
        _weight_casts.clear()  # the casts hold the graph of the last forward: let it go with the region


class autocast:  # noqa: N801 - PyTorch name
    """Context manager and decorator: inside it, ops on tensors of ``device_type`` follow the autocast policy.

    ``device_type``: "cpu" or "cuda". ``dtype``: the low-precision dtype (default bfloat16 on cpu, float16 on cuda,
    as in PyTorch). ``enabled=False`` turns autocast off inside the block (regions nest; the innermost wins).
    ``cache_enabled`` (default True): inside the region a parameter (a leaf that requires grad) is cast to the low
    dtype once and reused by every lower op until it changes (an optimizer step) or a backward frees the cast;
    leaving the last region empties the cache, as in PyTorch.
    """

    def __init__(self, device_type: str, dtype: Any = None, enabled: bool = True, cache_enabled: bool | None = None):
        if not isinstance(device_type, str):
            raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
        if device_type not in _DEFAULT_DTYPE:
            raise RuntimeError(f"User specified an unsupported autocast device_type '{device_type}'")
        self.device_type = device_type
        self.fast_dtype = dtypes.to_dtype(dtype) if dtype is not None else _DEFAULT_DTYPE[device_type]
        self._enabled = bool(enabled)
        if self._enabled and self.fast_dtype not in _LOW:
            warnings.warn(f"In {device_type} autocast, but the target dtype is not supported. Disabling autocast.\n"
                          f"{device_type} Autocast only supports dtypes of torch.bfloat16, torch.float16 currently.",
                          stacklevel=2)
            self._enabled = False
        self._cache = True if cache_enabled is None else bool(cache_enabled)
        self._previous: list[Any] = []  # one entry per active entry of this object (it may be re-entered)

    def __enter__(self) -> autocast:
        self._previous.append(_active.get(self.device_type))
        _cache_enabled.append(self._cache)
        if self._enabled:
            _active[self.device_type] = self.fast_dtype
        else:
            _active.pop(self.device_type, None)
        _sync_hook()
        return self

    def __exit__(self, *exc: object) -> None:
        previous = self._previous.pop()
        _cache_enabled.pop()
        if previous is None:
            _active.pop(self.device_type, None)
        else:
            _active[self.device_type] = previous
        _sync_hook()

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return wrapper

    def __repr__(self) -> str:
        return f"autocast(device_type={self.device_type!r}, dtype={self.fast_dtype.name}, enabled={self._enabled})"


def is_autocast_enabled(device_type: str = "cpu") -> bool:
    """True inside an enabled autocast region for ``device_type``."""
    return device_type in _active


def get_autocast_dtype(device_type: str = "cpu") -> Any:
    """The dtype autocast uses for ``device_type`` now (its default when no region is active)."""
    return _active.get(device_type, _DEFAULT_DTYPE.get(device_type))
