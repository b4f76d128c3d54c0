"""tinygrad_nb: a small, readable tensor/autograd library with notebook-native tooling.

    import tinygrad_nb as tg
    x = tg.randn(3, 4, requires_grad=True)
    (x * x).sum().backward()
    x.grad  # 2 * x
"""
from . import autograd, device, dispatch, ops, random
from .autograd import Function, GradcheckError, ShapeError, enable_grad, grad, gradcheck, is_grad_enabled, no_grad
from .autograd import set_grad_enabled
from .device import Device, DeviceError, devices, get_default_device, is_cuda_available, set_default_device
from .dtype import (bfloat16, bool_, double, float16, float32, float64, get_default_dtype, half, int8, int16, int32,
                    int64, long, set_default_dtype, short, uint8)
from .random import fork_rng, get_rng_state, manual_seed, set_rng_state
from .tensor import (RemovableHandle, Tensor, arange, cat, cumsum, empty, eye, floor_divide, from_dlpack, from_numpy, full,
                     full_like, is_tensor, linspace, maximum, minimum, ones, ones_like, rand, rand_like, randint,
                     randn, randn_like, randperm, stack, tensor, where, zeros, zeros_like)
from .composite import *  # noqa: E402, F403 - issue 21's ops: math, activations, sort, gather/scatter, einsum...
from .composite import TORCH_FUNCTIONS as _torch_functions  # noqa: E402

globals().update({k: v for k, v in _torch_functions.items() if k not in globals()})  # tg.sum(x), tg.exp(x), ...

# Built on the core above (see DESIGN.md for the dependency direction).
from . import data, datasets, nn, optim  # noqa: E402
from .checkpoint import Checkpoint, CheckpointError, load, register_migration, save, suggest_key_mapping  # noqa: E402
from .determinism import DeterminismError, deterministic, get_deterministic  # noqa: E402
from .fingerprint import Fingerprint, fingerprint  # noqa: E402
from .profiler import profile  # noqa: E402
from . import debug, track  # noqa: E402
from . import library  # noqa: E402 - custom ops: registry, opcheck, C plugins
from . import amp  # noqa: E402 - mixed precision: autocast policy, GradScaler, precision check
from .amp import autocast  # noqa: E402


def __getattr__(name: str) -> object:
    """``tg.export`` and ``tg.runtime`` load on first use (neither imports onnx until one of its functions runs)."""
    if name in ("export", "runtime", "serve", "sweep"):  # serve: starlette/uvicorn only when a Server is built
        # sweep: a callable module, tg.sweep(train_fn, space, ...)
        import importlib  # noqa: PLC0415

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'tinygrad_nb' has no attribute {name!r}")

__version__ = "0.1.0"
bool = bool_  # noqa: A001 - PyTorch spells the dtype tinygrad_nb.bool
float = float32  # noqa: A001
int = int32  # noqa: A001


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext tinygrad_nb``: register the magics and the cell hooks (see docs/magics.md)."""
    from .notebook.extension import load_ipython_extension as load  # noqa: PLC0415 - IPython only when asked

    load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext tinygrad_nb``: remove the magics' cell hooks again."""
    from .notebook.extension import unload_ipython_extension as unload  # noqa: PLC0415

    unload(ipython)
