"""Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019), PyTorch's single-tensor formulas."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..device import Device
from ..inplace import writing
from ..tensor import Tensor
from .optimizer import Optimizer, ParamsT, power


class Adam(Optimizer):
    r"""Adam, PyTorch's formulas. For each parameter ``p`` with gradient ``g``; ``t`` counts this parameter's steps::

        g <- -g                                  if maximize
        p <- p * (1 - lr * weight_decay)         if decoupled_weight_decay (AdamW)
        g <- g + weight_decay * p                otherwise, if weight_decay != 0
        m <- beta1 * m + (1 - beta1) * g         (computed as lerp(m, g, 1 - beta1))
        v <- beta2 * v + (1 - beta2) * g * g
        v_max <- max(v_max, v)                   if amsgrad (then used in place of v below)
        p <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    State per parameter: ``step`` (a float32 scalar tensor on cpu, as in PyTorch), ``exp_avg`` (m), ``exp_avg_sq``
    (v) and, with amsgrad, ``max_exp_avg_sq``.
    """

    _param_shaped_state = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False):
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad,
                    "maximize": maximize, "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def _validate_hyperparameters(self, options: dict[str, Any]) -> None:
        lr, eps, betas = options.get("lr", 0.0), options.get("eps", 0.0), options.get("betas", (0.0, 0.0))
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        if not 0.0 <= options.get("weight_decay", 0.0):
            raise ValueError(f"Invalid weight_decay value: {options['weight_decay']}")

    def _init_state(self, p: Tensor, amsgrad: bool) -> dict[str, Any]:
        """Lazy state: zeros like ``p`` (on its device) and a step counter."""
        state = self.state[p]
        xp = p.device.xp
        with p.device.context():
            state["step"] = Tensor._wrap(np.zeros((), dtype=np.float32), Device("cpu"))
            state["exp_avg"] = Tensor._wrap(xp.zeros_like(p.data), p.device)
            state["exp_avg_sq"] = Tensor._wrap(xp.zeros_like(p.data), p.device)
            if amsgrad:
                state["max_exp_avg_sq"] = Tensor._wrap(xp.zeros_like(p.data), p.device)
        return state

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adam update of every parameter whose ``grad`` is not None; returns ``closure()``'s loss if given."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            weight_decay, amsgrad, maximize = group["weight_decay"], group["amsgrad"], group["maximize"]
            decoupled = group.get("decoupled_weight_decay", False)
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                state = self.state.get(p)
                if not state:
                    state = self._init_state(p, amsgrad)
                elif state["exp_avg"].device is not p.device or state["exp_avg"].data.dtype is not p.data.dtype:
                    self._follow_parameter(p, state)  # p was moved in place (nn.Module.to)
                if amsgrad and "max_exp_avg_sq" not in state:  # amsgrad switched on after some steps
                    state["max_exp_avg_sq"] = Tensor._wrap(p.device.xp.zeros_like(p.data), p.device)
                written = [p, state["step"], state["exp_avg"], state["exp_avg_sq"]]
                if amsgrad:
                    written.append(state["max_exp_avg_sq"])
                with writing(*written):  # bumps every version when the update is done
                    xp, d, g = p.device.xp, p.data, grad.data
                    if maximize:
                        g = -g

                    step_t = state["step"]
                    step_t.data += 1
                    step = float(step_t.data)

                    if weight_decay != 0:
                        if decoupled:
                            d *= 1 - lr * weight_decay
                        else:
                            g = g + weight_decay * d

                    m_t, v_t = state["exp_avg"], state["exp_avg_sq"]
                    m, v = m_t.data, v_t.data
                    tmp = xp.subtract(g, m, out=xp.empty_like(m))  # m.lerp_(g, 1 - beta1), PyTorch's two branches
                    weight = 1 - beta1
                    if abs(weight) < 0.5:
                        tmp *= weight
                        m += tmp
                    else:
                        tmp *= 1 - weight
                        xp.subtract(g, tmp, out=m)
                    v *= beta2  # v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    xp.multiply(g, 1 - beta2, out=tmp)
                    tmp *= g
                    v += tmp

                    bias_correction1 = 1 - power(beta1, step)
                    bias_correction2 = 1 - power(beta2, step)
                    step_size = lr / bias_correction1
                    if amsgrad:
                        vmax_t = state["max_exp_avg_sq"]
                        xp.maximum(vmax_t.data, v, out=vmax_t.data)
                        v = vmax_t.data
                    denom = xp.sqrt(v, out=tmp)
                    denom /= power(bias_correction2, 0.5)
                    denom += eps
                    update = xp.multiply(m, step_size, out=xp.empty_like(m))  # p.addcdiv_(m, denom, value=-step_size)
                    update /= denom
                    d -= update
        return loss


class AdamW(Adam):
    r"""Adam with decoupled weight decay: ``p <- p * (1 - lr * weight_decay)`` before the Adam update (which then
    sees the plain gradient). Same formulas and state as :class:`Adam`; ``weight_decay`` defaults to 1e-2.
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)
