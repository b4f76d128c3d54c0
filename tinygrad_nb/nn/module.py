"""``Module``: the base class of every layer and model (PyTorch's ``nn.Module`` semantics).

Assigning a :class:`Parameter`, a ``Module`` or (after ``register_buffer``) a buffer tensor to an attribute registers
it; everything else (``parameters()``, ``state_dict()``, ``to()``, ``train()``, ``repr``) walks those registries.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from .. import dtype as dtypes
from ..autograd import ArgumentError, no_grad
from ..device import Device
from ..inplace import replace_data
from ..tensor import HookDict, RemovableHandle, Tensor
from .hooks import BackwardHookCall
from .parameter import Parameter

# Called with every module hook handle as it is created. Empty (so free) unless a tool needs to know, e.g. the
# notebook extension, which makes the cell that registered a hook own it and removes it when the cell re-runs.
hook_listeners: list[Callable[[RemovableHandle], None]] = []


class StateDictKeyError(KeyError, RuntimeError):
    """``load_state_dict(strict=True)``: keys missing from or unexpected in the state dict.

    A ``KeyError`` (it is about keys) and a ``RuntimeError`` (what PyTorch raises), so either ``except`` catches it.
    """

    def __str__(self) -> str:
        return str(self.args[0])  # KeyError would print the repr of the message, quotes and escaped newlines


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` could not match: model keys absent from the state dict, and the other way round."""

    missing_keys: list[str]
    unexpected_keys: list[str]

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return f"IncompatibleKeys(missing_keys={self.missing_keys}, unexpected_keys={self.unexpected_keys})"


class Module:
    """Base class for layers and models: subclass it, create sub-layers in ``__init__``, compute in ``forward``.

        class MLP(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(784, 256)
                self.fc2 = nn.Linear(256, 10)
            def forward(self, x):
                return self.fc2(self.fc1(x).relu())

    ``_version`` is the layout version of this class's state dict; bump it when the keys change and override
    :meth:`_upgrade_state_dict` so checkpoints saved with the old layout still load.
    """

    _version: int = 1
    training: bool

    def __init__(self) -> None:
        # object.__setattr__: our own __setattr__ needs these registries to exist already
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_forward_pre_hooks", HookDict())
        object.__setattr__(self, "_forward_hooks", HookDict())
        object.__setattr__(self, "_backward_hooks", HookDict())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # the hot path: three truthiness checks, then forward
        if self._forward_pre_hooks or self._forward_hooks or self._backward_hooks:
            return self._call_with_hooks(*args, **kwargs)
        return self.forward(*args, **kwargs)

    def _call_with_hooks(self, *args: Any, **kwargs: Any) -> Any:
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        backward_call = None
        if self._backward_hooks:
            backward_call = BackwardHookCall(self)
            args = backward_call.wrap_inputs(args)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        if backward_call is not None:
            backward_call.watch_outputs(output)
        return output

    # -- registration -------------------------------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        registries = self.__dict__
        params, buffers, modules = (registries.get("_parameters"), registries.get("_buffers"),
                                    registries.get("_modules"))
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            self._forget(name, keep=self._parameters)  # replacing a parameter keeps its place in the order
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(nn.Parameter or None expected)")
            params[name] = None
        elif isinstance(value, Module):
            if modules is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            self._forget(name, keep=modules)
            modules[name] = value
        elif modules is not None and name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' "
                                "(nn.Module or None expected)")
            modules[name] = None
        elif buffers is not None and name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' (Tensor or None "
                                "expected)")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str, keep: dict[str, Any]) -> None:
        """Remove ``name`` from the instance dict and every registry but ``keep`` (it is about to be set there)."""
        self.__dict__.pop(name, None)
        for registry in (self._parameters, self._buffers, self._modules):
            if registry is not keep:
                registry.pop(name, None)
        self._non_persistent_buffers.discard(name)

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: parameters, buffers and children live in the registries
        registries = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            found = registries.get(registry)
            if found is not None and name in found:
                return found[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))

    def _check_new_name(self, kind: str, name: Any, registry: dict[str, Any]) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {kind} before Module.__init__() call")
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if name == "":
            raise KeyError(f'{kind} name must not be empty')
        if "." in name:
            raise KeyError(f'{kind} name must not contain ".", got "{name}"')
        if name not in registry and (name in self.__dict__ or hasattr(type(self), name)
                                     or any(name in r for r in (self._parameters, self._buffers, self._modules))):
            raise KeyError(f"attribute '{name}' already exists")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add ``param`` as a learnable parameter named ``name`` (None reserves the name, e.g. ``bias=False``)."""
        self._check_new_name("parameter", name, self._parameters)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                            "(nn.Parameter or None required)")
        if param is not None and not param.is_leaf:
            raise ValueError(f"cannot assign a non-leaf tensor to parameter '{name}'; use .detach() first")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add a tensor that is state but not learnable (e.g. BatchNorm's running mean).

        Buffers move with ``to()``; persistent ones are part of ``state_dict()``.
        """
        self._check_new_name("buffer", name, self._buffers)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' (Tensor or None "
                            "required)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module (same as ``self.name = module`` but the name may be any string, e.g. ``"0"``)."""
        self._check_new_name("module", name, self._modules)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target: str) -> Module:
        """The submodule at dotted path ``target`` ("" is self)."""
        module = self
        if target == "":
            return module
        for part in target.split("."):
            child = module._modules.get(part)
            if child is None:
                raise AttributeError(f"{type(module).__name__} has no submodule `{part}` (looking up {target!r})")
            module = child
        return module

    # -- iteration ----------------------------------------------------------------------------------------------
    def named_modules(self, memo: set[int] | None = None, prefix: str = "", remove_duplicate: bool = True
                      ) -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module and every descendant, parents before children."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is None:
                continue
            yield from child.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen: set[int] = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator[Module]:
        for _, child in self.named_children():
            yield child

    def _named_members(self, registry: str, prefix: str, recurse: bool, remove_duplicate: bool
                       ) -> Iterator[tuple[str, Tensor]]:
        seen: set[int] = set()  # by id: Tensor.__eq__ is elementwise, so tensors do not go in plain sets
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse \
            else iter([(prefix, self)])
        for module_prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield module_prefix + ("." if module_prefix else "") + name, value

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
                         ) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) pairs; a parameter shared by two layers is listed once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)  # type: ignore[return-value]

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
                      ) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # -- modes and gradients ------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (dropout active, batch norm uses batch statistics) here and in every descendant."""
        if not isinstance(mode, bool):
            raise ValueError(f"train: mode is expected to be a bool, got {type(mode).__name__}")
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze every parameter."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's ``.grad`` (or fill it with zeros when ``set_to_none=False``)."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.zero_()

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call ``fn`` on every descendant, then on self (e.g. custom weight initialisation)."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # -- devices and dtypes -------------------------------------------------------------------------------------
    def to(self, *args: Any, device: str | Device | None = None, dtype: Any = None) -> Module:
        """Move and/or cast every parameter and buffer in place: ``to("cuda")``, ``to(float64)``, ``to(tensor)``.

        The Parameter objects stay the same (only their arrays are replaced), so an optimizer created before
        ``to()`` keeps working. Only floating tensors change dtype; integer buffers just move.
        """
        for a in args:
            if isinstance(a, (str, Device)):
                device = a
            elif isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            else:
                dtype = a
        if dtype is not None:
            dtype = dtypes.to_dtype(dtype)
            if not dtypes.is_floating(dtype):
                raise TypeError(f"nn.Module.to only accepts floating point dtypes, but got {dtype.name}")
        target = Device(device) if device is not None else None
        for module in self.modules():
            for t in list(module._parameters.values()) + list(module._buffers.values()):
                if t is None:
                    continue
                _move_in_place(t, target, dtype)
                if t.grad is not None:
                    _move_in_place(t.grad, target, dtype)
        return self

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self, device: int | None = None) -> Module:
        return self.to(f"cuda:{device if device is not None else 0}")

    def float(self) -> Module:
        return self.to(dtypes.float32)

    def double(self) -> Module:
        return self.to(dtypes.float64)

    def half(self) -> Module:
        return self.to(dtypes.float16)

    # -- state dict ---------------------------------------------------------------------------------------------
    def _state_items(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """(key, tensor) for every parameter and persistent buffer, in PyTorch's order: a module's own parameters,
        its buffers, then each child's. Shared modules appear under every name, as in PyTorch. ``prefix`` is
        prepended to every key as is (PyTorch style: ``"encoder."``)."""
        for module_name, module in self.named_modules(remove_duplicate=False):
            dotted = prefix + (module_name + "." if module_name else "")
            for name, p in module._parameters.items():
                if p is not None:
                    yield dotted + name, p
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent_buffers:
                    yield dotted + name, b

    def state_dict(self, prefix: str = "", keep_vars: bool = False) -> OrderedDict[str, Tensor]:
        """Every parameter and persistent buffer by dotted name (``"fc1.weight"``).

        Values are detached tensors sharing memory (and the version counter) with the module's own, unless
        ``keep_vars=True`` returns the Parameter objects themselves.
        """
        return OrderedDict((key, t if keep_vars else t.detach()) for key, t in self._state_items(prefix))

    def module_versions(self) -> dict[str, int]:
        """``{dotted module name: class _version}`` for this module ("") and every submodule; checkpoints save it
        so :meth:`load_state_dict` can upgrade old layouts."""
        return {name: type(module)._version for name, module in self.named_modules(remove_duplicate=False)}

    def _upgrade_state_dict(self, state_dict: dict[str, Any], prefix: str, saved_version: int) -> None:
        """Rewrite, in place, this module's entries of ``state_dict`` (keys starting with ``prefix``, e.g.
        ``"encoder.attn."``) from the layout of ``saved_version`` to the current ``_version``. Default: nothing."""

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True,
                        versions: dict[str, int] | None = None) -> IncompatibleKeys:
        """Copy values from ``state_dict`` into the parameters and buffers (in place: same objects, versions bump).

        ``strict=True`` raises :class:`StateDictKeyError` listing missing and unexpected keys; a value whose shape
        differs from the model's raises ``ValueError`` naming the key and both shapes. Nothing is copied unless
        every check passes. ``versions`` (from :meth:`module_versions` at save time) triggers
        :meth:`_upgrade_state_dict` for every submodule saved with an older ``_version``. Returns
        ``(missing_keys, unexpected_keys)``.
        """
        state = OrderedDict(state_dict)  # upgrades rename keys in this copy, never in the caller's dict
        if versions is not None:
            for name, module in self.named_modules(remove_duplicate=False):
                saved = versions.get(name)
                if saved is not None and saved < type(module)._version:
                    module._upgrade_state_dict(state, name + "." if name else "", saved)
        expected = OrderedDict(self._state_items())
        missing = [key for key in expected if key not in state]
        unexpected = [key for key in state if key not in expected]
        if strict and (missing or unexpected):
            lines = [f"Error(s) in loading state_dict for {type(self).__name__}:"]
            if missing:
                lines.append("    Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
            if unexpected:
                lines.append("    Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
            raise StateDictKeyError("\n".join(lines))
        mismatches = []
        for key, tensor in expected.items():
            if key in state:
                shape = _shape_of(state[key])
                if shape != tensor.shape:
                    mismatches.append(f"size mismatch for {key}: copying a param with shape {shape} from checkpoint, "
                                      f"the shape in current model is {tensor.shape}")
        if mismatches:  # PyTorch: RuntimeError (ArgumentError is one, and a ValueError)
            raise ArgumentError(f"Error(s) in loading state_dict for {type(self).__name__}:\n    "
                             + "\n    ".join(mismatches))
        with no_grad():
            for key, tensor in expected.items():
                if key in state:
                    value = state[key]
                    # numpy/cupy arrays and other array-likes (torch tensors) are wrapped first; copy_ then moves
                    # the values to the model's device and dtype
                    tensor.copy_(value if isinstance(value, Tensor) else Tensor(value))
        return IncompatibleKeys(missing, unexpected)

    # -- hooks --------------------------------------------------------------------------------------------------
    def register_forward_pre_hook(self, hook: Callable[[Module, tuple[Any, ...]], Any]) -> RemovableHandle:
        """``hook(module, args)`` runs before ``forward``; returning a value (or tuple) replaces ``args``."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        _announce(handle)
        return handle

    def register_forward_hook(self, hook: Callable[[Module, tuple[Any, ...], Any], Any]) -> RemovableHandle:
        """``hook(module, args, output)`` runs after ``forward``; returning a value replaces the output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        _announce(handle)
        return handle

    def register_full_backward_hook(
            self, hook: Callable[[Module, tuple[Tensor | None, ...], tuple[Tensor | None, ...]], Any]
    ) -> RemovableHandle:
        """``hook(module, grad_input, grad_output)`` runs once the gradients of the module's inputs are known.

        ``grad_input`` has one entry per positional argument (None for non-tensors and inputs without gradient),
        ``grad_output`` one per output tensor. Returning a tuple replaces ``grad_input`` for the rest of the backward
        pass. If no input requires grad, the hook runs when the output gradients arrive, with ``grad_input`` all
        None.
        """
        handle = RemovableHandle(self._backward_hooks)
        self._backward_hooks[handle.id] = hook
        _announce(handle)
        return handle

    # -- printing -----------------------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text inside this module's parentheses in ``repr`` (its constructor arguments); override it."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): {_indent(repr(child), 2)}" for name, child in self._modules.items()]
        lines = extra_lines + child_lines
        text = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                text += extra_lines[0]
            else:
                text += "\n  " + "\n  ".join(lines) + "\n"
        return text + ")"


def _indent(text: str, spaces: int) -> str:
    """Indent every line but the first (a child's repr continues after "(name): ")."""
    lines = text.split("\n")
    return lines[0] if len(lines) == 1 else lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _shape_of(value: Any) -> tuple[int, ...]:
    return tuple(int(n) for n in value.shape) if hasattr(value, "shape") else tuple(np.shape(value))


def _move_in_place(t: Tensor, device: Device | None, dtype: Any) -> None:
    """Give ``t`` the array of ``t.to(device, dtype)`` (dtype only if t is floating); bump its version if changed."""
    cast = dtype if dtype is not None and dtypes.is_floating(t.dtype) else None
    with no_grad():
        moved = t.detach().to(device=device, dtype=cast)
    if moved.data is t.data:
        return
    replace_data(t, moved.data, moved.device)  # bumps the version: checkpoints must not treat it as unchanged


def _announce(handle: RemovableHandle) -> None:
    for listener in hook_listeners:
        listener(handle)
