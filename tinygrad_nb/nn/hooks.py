"""Module backward hooks: ``hook(module, grad_input, grad_output)`` called once per module call during backward.

The hook needs the gradients of *all* the module's inputs at once, but autograd finishes each input's gradient at a
different moment. So, for one call of a hooked module, the inputs that require grad are routed through two tiny ops
(the same idea as PyTorch's ``BackwardHook``)::

    x1, x2 --> _InputGate (one node, a 0-d dummy output) --> _GatedInput(slot 0) = x1 values --> forward(...)
                                                        \\-> _GatedInput(slot 1) = x2 values --/

During backward every ``_GatedInput`` node runs before the gate (the gate is their common input), stores the gradient
it received in the shared :class:`BackwardHookCall` and passes only a zero to the gate. When the gate runs, all input
gradients are known: it calls the hooks, which may replace ``grad_input``, and hands the results to x1, x2.
``grad_output`` is collected by plain tensor hooks on the outputs, which run before anything inside the module.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..autograd import Context, Function, is_grad_enabled
from ..tensor import Tensor

if TYPE_CHECKING:
    from .module import Module


class _InputGate(Function):
    """out = a 0-d zero (a join point);  d(input i) = whatever the module's backward hooks say grad_input[i] is."""

    @staticmethod
    def forward(ctx: Context, *arrays: Any, call: BackwardHookCall) -> Any:
        ctx.call = call
        return ctx.xp.zeros((), dtype=arrays[0].dtype)

    @staticmethod
    def backward(ctx: Context, grad: Any) -> tuple[Any, ...]:
        return ctx.call.run_hooks(ctx.device)


class _GatedInput(Function):
    """out = ``values`` (the module input);  the real gradient is parked in the call, the gate gets a zero."""

    @staticmethod
    def forward(ctx: Context, gate: Any, values: Any, slot: int, call: BackwardHookCall) -> Any:
        ctx.slot, ctx.call = slot, call
        return values

    @staticmethod
    def backward(ctx: Context, grad: Any) -> tuple[Any, None]:
        ctx.call.input_grads[ctx.slot] = grad
        return ctx.xp.zeros((), dtype=grad.dtype), None


class BackwardHookCall:
    """Bookkeeping for one call of a module that has full backward hooks."""

    def __init__(self, module: Module):
        self.module = module
        self.num_args = 0  # grad_input has one entry per positional argument, as in PyTorch
        self.gated_positions: list[int] = []  # the subset that requires grad and goes through the gate
        self.input_grads: list[Any] = []  # arrays deposited by _GatedInput, one per gated position
        self.grad_outputs: list[Tensor | None] = []
        self.outputs_pending = 0

    def wrap_inputs(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        self.num_args = len(args)
        if not is_grad_enabled():
            return args
        self.gated_positions = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
        if not self.gated_positions:
            return args
        self.input_grads = [None] * len(self.gated_positions)
        gate = _InputGate.apply(*[args[i] for i in self.gated_positions], call=self)
        wrapped = list(args)
        for slot, i in enumerate(self.gated_positions):
            wrapped[i] = _GatedInput.apply(gate, args[i].data, slot=slot, call=self)
        return tuple(wrapped)

    def watch_outputs(self, output: Any) -> None:
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        tensors = [o for o in outputs if isinstance(o, Tensor)]
        self.grad_outputs = [None] * len(tensors)
        for slot, t in enumerate(tensors):
            if t.requires_grad:
                self.outputs_pending += 1
                t.register_hook(self._output_hook(slot))

    def _output_hook(self, slot: int) -> Any:
        def capture(grad: Tensor) -> None:
            self.grad_outputs[slot] = grad
            self.outputs_pending -= 1
            if not self.gated_positions and self.outputs_pending == 0:
                # no input needs a gradient, so no gate will run: call the hooks now, with grad_input all None
                self.run_hooks(grad.device)
        return capture

    def run_hooks(self, device: Any) -> tuple[Any, ...]:
        """Call every backward hook of the module; return the (possibly replaced) gradient arrays of the gated
        inputs."""
        slot_of = {position: slot for slot, position in enumerate(self.gated_positions)}
        grad_input: tuple[Tensor | None, ...] = tuple(
            Tensor(self.input_grads[slot_of[p]], device=device)
            if p in slot_of and self.input_grads[slot_of[p]] is not None else None
            for p in range(self.num_args))
        grad_output = tuple(self.grad_outputs)
        name = type(self.module).__name__
        for hook in list(self.module._backward_hooks.values()):
            result = hook(self.module, grad_input, grad_output)
            if result is None:
                continue
            result = tuple(result) if isinstance(result, (tuple, list)) else (result,)
            if len(result) != len(grad_input):
                raise RuntimeError(f"backward hook of {name} returned {len(result)} gradient(s) but the module "
                                   f"was called with {len(grad_input)} positional argument(s)")
            for old, new in zip(grad_input, result):
                if new is not None and old is not None and tuple(new.shape) != tuple(old.shape):
                    raise RuntimeError(f"backward hook of {name} returned a gradient of shape {tuple(new.shape)} "
                                       f"for an input of shape {tuple(old.shape)}")
            grad_input = result
        return tuple(None if grad_input[p] is None else _array_of(grad_input[p]) for p in self.gated_positions)


def _array_of(grad: Any) -> Any:
    return grad.data if isinstance(grad, Tensor) else grad
