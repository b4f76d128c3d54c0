"""``Parameter``: a tensor that a :class:`~tinygrad_nb.nn.Module` registers as one of its learnable weights."""
from __future__ import annotations

from typing import Any

from ..device import Device
from ..tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor with ``requires_grad=True`` that modules collect in ``parameters()`` and ``state_dict()``.

    ``Parameter(tensor)`` shares memory with ``tensor`` (as in PyTorch); ``Parameter(array)`` wraps an array.
    Assigning a Parameter to a module attribute registers it; a plain Tensor attribute is not a parameter.
    """

    def __init__(self, data: Any = None, requires_grad: bool = True):
        if data is None:
            data = Tensor([]).float()
        # Tensor(data) alone would infer the device from the array, which loses 'cpu:sim' (a numpy array too)
        device: Device | None = data.device if isinstance(data, Tensor) else None
        super().__init__(data, device=device, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
