"""``nn.utils``: gradient clipping and flattening parameters into one vector (PyTorch's names and semantics).

    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    opt.step()
"""
from __future__ import annotations

import math
from collections.abc import Iterable

from ..autograd import no_grad
from ..tensor import Tensor, cat, stack, tensor

Parameters = Tensor | Iterable[Tensor]


def _with_grads(parameters: Parameters) -> list[Tensor]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p for p in params if p.grad is not None]


def get_total_norm(tensors: Iterable[Tensor], norm_type: float = 2.0) -> Tensor:
    """The ``norm_type``-norm of all the tensors' elements taken together: (sum_i ||t_i||_p^p)^(1/p), computed as
    PyTorch does, as the norm of the per-tensor norms (``inf``: the largest absolute value). A 0-d tensor in the
    first tensor's dtype and device; 0 for no tensors."""
    tensors = list(tensors)
    p = float(norm_type)
    if not tensors:
        return tensor(0.0)
    device = tensors[0].device
    with no_grad():
        norms = [_vector_norm(t.detach().to(device), p) for t in tensors]
        return _vector_norm(stack(norms), p)


def _vector_norm(x: Tensor, p: float) -> Tensor:
    if x.numel() == 0:
        return x.sum() * 0.0
    if p == math.inf:
        return x.abs().amax()
    if p == -math.inf:
        return x.abs().amin()
    if p == 0:
        return (x != 0).sum().cast(x.dtype)
    if p == 1:
        return x.abs().sum()
    if p == 2:
        return (x * x).sum().sqrt()
    return (x.abs() ** p).sum() ** (1.0 / p)


def clip_grad_norm_(parameters: Parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None) -> Tensor:
    """Scale the gradients of ``parameters`` in place so that their joint ``norm_type``-norm is at most
    ``max_norm``: each grad *= min(1, max_norm / (total_norm + 1e-6)). Returns the total norm before clipping (a
    0-d tensor). A non-finite total norm scales every gradient to NaN, or raises a RuntimeError with
    ``error_if_nonfinite=True``. ``foreach`` is accepted and ignored. Parameters without a gradient are skipped."""
    grads = [p.grad for p in _with_grads(parameters)]
    if not grads:
        return tensor(0.0)
    total = get_total_norm(grads, norm_type)
    if error_if_nonfinite and not math.isfinite(total.item()):
        raise RuntimeError(f"The total norm of order {float(norm_type)} for gradients from `parameters` is "
                           "non-finite, so it cannot be clipped. To disable this error and scale the gradients by "
                           "the non-finite norm anyway, set `error_if_nonfinite=False`")
    with no_grad():
        factor = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(factor.to(g.device).cast(g.dtype))  # always, as PyTorch: a factor of 1 changes nothing
    return total


def clip_grad_value_(parameters: Parameters, clip_value: float, foreach: bool | None = None) -> None:
    """Clamp every gradient of ``parameters`` elementwise to [-clip_value, clip_value], in place."""
    clip_value = float(clip_value)
    with no_grad():
        for p in _with_grads(parameters):
            p.grad.clamp_(-clip_value, clip_value)


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """All parameters flattened and joined into one 1-D tensor, in iteration order (differentiable: gradients flow
    back to each parameter). They must share a device."""
    params = list(parameters)
    if not params:
        raise RuntimeError("parameters_to_vector: expected a non-empty iterable of tensors")
    device = params[0].device
    for i, p in enumerate(params):
        if p.device is not device:
            raise TypeError(f"Found two parameters on different devices, this is currently not supported "
                            f"(parameter 0 on {device}, parameter {i} on {p.device})")
    return cat([p.reshape(-1) for p in params])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """The inverse of :func:`parameters_to_vector`: copy consecutive slices of the 1-D ``vec`` into the
    parameters' values, in place (not recorded by autograd)."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected a Tensor, but got: {type(vec).__name__}")
    params = list(parameters)
    total = sum(p.numel() for p in params)
    if vec.ndim != 1 or vec.numel() != total:
        raise RuntimeError(f"vector_to_parameters: vec of shape {vec.shape} does not hold the {total} values of the "
                           f"{len(params)} parameters (expected shape ({total},))")
    offset = 0
    with no_grad():
        for p in params:
            n = p.numel()
            p.copy_(vec[offset:offset + n].reshape(p.shape))
            offset += n
