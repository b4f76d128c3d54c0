"""``Optimizer``: the base class of every optimizer (parameter groups, per-parameter state, checkpointing).

An optimizer holds ``param_groups`` (a list of dicts: ``'params'`` plus that group's hyperparameters, missing ones
filled from ``defaults``) and ``state`` (a dict keyed by parameter, holding that parameter's buffers as Tensors so a
checkpoint can save them). Subclasses implement ``step()`` with in-place arithmetic on the raw arrays
(``p.data``, ``p.grad.data``) through the parameter's array module ``xp``, so one definition runs on numpy and cupy
with no autograd bookkeeping, inside ``with inplace.writing(p, ...):``, which bumps each written tensor's
version when the update is done (the sanctioned internal API: docs/architecture.md).
"""
from __future__ import annotations

import copy
import functools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .. import determinism, portable
from .. import dtype as dtypes
from ..autograd import enable_grad
from ..device import Device
from ..inplace import writing
from ..tensor import Tensor

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]]


class _RequiredParameter:
    """Sentinel default for a hyperparameter every parameter group must give (PyTorch's ``optim.optimizer.required``)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required: Any = _RequiredParameter()


def power(base: float, exponent: float) -> float:
    """``base ** exponent`` of hyperparameters (bias corrections, decay factors); in ``deterministic("portable")``
    mode by the library's own kernel, since C's ``pow`` can differ by an ulp between CPUs."""
    return portable.scalar_pow(base, exponent) if determinism.portable_mode else base ** exponent


def cosine(angle: float, turns: float) -> float:
    """``math.cos(angle)``, where ``turns`` is the same angle in turns (angle / 2 pi, computed without pi); in
    ``deterministic("portable")`` mode cos(2 pi turns) by the library's own kernel instead of libm's."""
    return portable.scalar_cos_turns(turns) if determinism.portable_mode else math.cos(angle)


class Optimizer:
    """Base class: ``Optimizer(params, defaults)``.

    ``params`` is an iterable of Tensors, or of dicts ``{'params': [...], 'lr': ...}`` (one per parameter group; keys
    a group leaves out take the value from ``defaults``). Each parameter may appear only once across all groups.
    """

    #: state entries that have the parameter's shape (checked when a state dict is loaded)
    _param_shaped_state: tuple[str, ...] = ()

    def __init__(self, params: ParamsT, defaults: dict[str, Any]):
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            "but got a Tensor; wrap it in a list: [tensor]")
        if isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering of "
                            "tensors in sets will change between runs. Please use a list instead.")
        self._validate_hyperparameters(defaults)
        self.defaults = defaults
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        self._opt_called = False  # set by step(); schedulers use it to warn about calling them first
        groups = list(params)
        if len(groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Wrap each subclass's ``step`` so calling it records ``_opt_called`` (one attribute store per step) and runs
        with numpy's floating-point warnings off: like PyTorch's, and like every op, a step that makes inf or NaN does
        so silently (the NaN tracer and ``debug.Guard`` are how to find it)."""
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_records_call", False):
            @functools.wraps(step)
            def recorded_step(self: Optimizer, *args: Any, **kw: Any) -> Any:
                self._opt_called = True
                with np.errstate(all="ignore"):
                    return step(self, *args, **kw)

            recorded_step._records_call = True  # type: ignore[attr-defined]
            cls.step = recorded_step  # type: ignore[method-assign]

    # -- hyperparameters and groups -------------------------------------------------------------------------------
    def _validate_hyperparameters(self, options: dict[str, Any]) -> None:
        """Raise ValueError for invalid hyperparameters (subclasses override; called on defaults and each group)."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (e.g. unfreezing layers while fine-tuning)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("param_group must have a 'params' entry (the tensors to optimize)")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering of "
                            "tensors in sets will change between runs. Please use a list instead.")
        params = list(params)
        seen: dict[int, int] = {}
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is "
                                f"{type(p).__module__}.{type(p).__qualname__}")
            if p._ctx is not None:
                raise ValueError("can't optimize a non-leaf Tensor (it was computed from other tensors); optimize the "
                                 "leaves it came from, or .detach() it and set requires_grad=True")
            if id(p) in seen:
                raise ValueError(f"optimizer got the same parameter twice in one parameter group (positions "
                                 f"{seen[id(p)]} and {i}, shape {p.shape}); each parameter may appear only once")
            seen[id(p)] = i
        for existing in self.param_groups:
            if any(id(q) in seen for q in existing["params"]):
                raise ValueError("some parameters appear in more than one parameter group")
        group["params"] = params
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            group.setdefault(name, default)
        self._validate_hyperparameters(group)
        self.param_groups.append(group)

    # -- gradients and steps --------------------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: set each ``p.grad`` to None (default; frees memory) or fill it with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if grad._ctx is not None:
                        grad = p.grad = grad.detach()
                    with writing(grad):
                        grad.data[...] = 0

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; ``closure`` (re-evaluates the loss) is called first if given."""
        raise NotImplementedError

    @staticmethod
    def _run_closure(closure: Callable[[], Any] | None) -> Any:
        if closure is None:
            return None
        with enable_grad():
            return closure()

    def _follow_parameter(self, p: Tensor, state: dict[str, Any]) -> None:
        """Move ``p``'s state tensors to ``p``'s device and dtype after the parameter moved in place (as
        ``nn.Module.to`` does); ``step`` stays a cpu float32 scalar."""
        for key, value in state.items():
            if key != "step" and isinstance(value, Tensor) and (value.device is not p.device or value.dtype != p.dtype):
                cast = p.dtype if dtypes.is_floating(p.dtype) and dtypes.is_floating(value.dtype) else None
                state[key] = value.to(device=p.device, dtype=cast)

    # -- checkpointing ------------------------------------------------------------------------------------------
    def state_dict(self, *, copy: bool = True) -> dict[str, Any]:
        """The optimizer's state in PyTorch's layout, with parameters replaced by their index::

            {'state': {0: {'momentum_buffer': Tensor}, ...},
             'param_groups': [{'lr': 0.1, ..., 'params': [0, 1]}, ...]}

        Everything is copied, so later steps do not change a saved state dict. ``copy=False`` shares the live
        tensors and values instead: only for writing them out at once (``tinygrad_nb.save`` does).
        """
        copy_value = _copy_value if copy else _same
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy_value(v) for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state: dict[int, dict[str, Any]] = {}
        for group in self.param_groups:
            for p in group["params"]:
                entry = self.state.get(p)
                if entry:
                    state[index[id(p)]] = {k: copy_value(v) for k, v in entry.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a dict from :meth:`state_dict` (possibly saved from another device or dtype).

        Groups are matched by position and must have the same number of parameters. Hyperparameters come from the
        state dict. State tensors are copied onto each parameter's device and dtype, except ``step``, which stays a
        float32 cpu tensor (as in PyTorch: reading it each step must not wait on a GPU).
        """
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            found = sorted(map(str, state_dict)) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"load_state_dict expects a dict with 'state' and 'param_groups' (as returned by "
                             f"Optimizer.state_dict()), got {found}")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has a different number of parameter groups: {len(saved_groups)} in "
                             f"the state dict, {len(self.param_groups)} in this optimizer")
        id_map: dict[int, Tensor] = {}
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(f"loaded state dict contains a parameter group that doesn't match the size of "
                                 f"optimizer's group: group {i} has {len(saved['params'])} parameters in the state "
                                 f"dict but {len(group['params'])} in this optimizer")
            id_map.update(zip((_index(k) for k in saved["params"]), group["params"]))

        state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        for key, entry in state_dict["state"].items():
            k = _index(key)
            if k not in id_map:
                raise ValueError(f"loaded state dict has state for parameter {key!r}, which is in none of its parameter "
                                 f"groups (they hold {sorted(id_map)})")
            p = id_map[k]
            state[p] = {name: self._place_state(p, k, name, value) for name, value in entry.items()}

        groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            new = {k: _copy_value(v) for k, v in saved.items() if k != "params"}
            for name, default in self.defaults.items():
                new.setdefault(name, default)
            new["params"] = group["params"]
            groups.append(new)
        self.state, self.param_groups = state, groups

    def _place_state(self, p: Tensor, index: int, key: str, value: Any) -> Any:
        """A copy of one loaded state value, on ``p``'s device and (floating parameters) dtype."""
        if key == "step":
            step = value.numpy() if isinstance(value, Tensor) else _to_numpy(value)
            return Tensor._wrap(np.array(step, dtype=np.float32), Device("cpu"))
        if not isinstance(value, Tensor):
            if not hasattr(value, "__array__") and not hasattr(value, "__cuda_array_interface__"):
                return _copy_value(value)  # plain values (numbers, None, ...) as they are
            value = Tensor(value)
        source = value.detach()
        dtype = p.dtype if dtypes.is_floating(p.dtype) and dtypes.is_floating(source.dtype) else None
        placed = source.to(device=p.device, dtype=dtype)
        if placed.data is source.data:
            placed = Tensor._wrap(source.data.copy(), source.device)  # never share memory with the state dict
        if key in self._param_shaped_state and placed.shape != p.shape:
            raise ValueError(f"loaded state dict: state {key!r} of parameter {index} has shape {placed.shape}, but "
                             f"the parameter has shape {p.shape}")
        return placed

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {group[k]}" for k in sorted(group) if k != "params")
        lines.append(")")
        return "\n".join(lines)


def _index(key: Any) -> Any:
    """State dict indices may come back as strings (e.g. from JSON); turn '3' into 3."""
    return int(key) if isinstance(key, str) and key.isdigit() else key


def _to_numpy(value: Any) -> np.ndarray:
    get = getattr(value, "get", None)  # cupy arrays copy to the host with .get()
    return np.asarray(get() if callable(get) and hasattr(value, "__cuda_array_interface__") else value)


def _same(value: Any) -> Any:
    return value


def _copy_value(value: Any) -> Any:
    """A copy that shares no mutable memory with ``value`` (tensors and arrays copied, containers rebuilt)."""
    if isinstance(value, Tensor):
        return Tensor._wrap(value.data.copy(), value.device)
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return value
    if type(value) is list:
        return [_copy_value(v) for v in value]
    if type(value) is tuple:
        return tuple(_copy_value(v) for v in value)
    if type(value) is dict:
        return {k: _copy_value(v) for k, v in value.items()}
    return copy.deepcopy(value)  # arrays, Counters, other objects
