"""Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and weight decay."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..inplace import writing
from ..tensor import Tensor
from .optimizer import Optimizer, ParamsT


class SGD(Optimizer):
    r"""Stochastic gradient descent, PyTorch's formulas. For each parameter ``p`` with gradient ``g``, step ``t``::

        g <- -g                               if maximize
        g <- g + weight_decay * p             if weight_decay != 0
        if momentum != 0:
            b <- g                            at the first step (no dampening)
            b <- momentum * b + (1 - dampening) * g   afterwards
            g <- g + momentum * b             if nesterov, else  g <- b
        p <- p - lr * g

    The momentum buffer ``b`` is ``state[p]['momentum_buffer']``. Without momentum a step is one in-place array
    operation per parameter.
    """

    _param_shaped_state = ("momentum_buffer",)

    def __init__(self, params: ParamsT, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False):
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                    "nesterov": nesterov, "maximize": maximize}
        super().__init__(params, defaults)

    def _validate_hyperparameters(self, options: dict[str, Any]) -> None:
        lr, momentum = options.get("lr", 0.0), options.get("momentum", 0.0)
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if options.get("weight_decay", 0.0) < 0.0:
            raise ValueError(f"Invalid weight_decay value: {options['weight_decay']}")
        if options.get("nesterov", False) and (momentum <= 0 or options.get("dampening", 0) != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One SGD update of every parameter whose ``grad`` is not None; returns ``closure()``'s loss if given."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
            weight_decay, nesterov, maximize = group["weight_decay"], group["nesterov"], group["maximize"]
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                d, g = p.data, grad.data
                if maximize:
                    g = -g
                if weight_decay != 0:
                    g = g + weight_decay * d
                if momentum != 0:
                    state = self.state[p]
                    buf_t = state.get("momentum_buffer")
                    if buf_t is None:  # first step: b = g
                        buf_t = state["momentum_buffer"] = Tensor._wrap(g.copy(), p.device)
                    else:
                        if buf_t.device is not p.device or buf_t.data.dtype is not d.dtype:  # p moved in place
                            self._follow_parameter(p, state)
                            buf_t = state["momentum_buffer"]
                        with writing(buf_t) as (buf,):
                            buf *= momentum
                            if dampening == 0:
                                buf += g
                            else:
                                buf += (1 - dampening) * g
                    g = g + momentum * buf_t.data if nesterov else buf_t.data
                with writing(p):
                    d -= lr * g
        return loss
