"""Turning a list of samples into a batch: ``default_collate``, and padding for variable-length sequences.

    padded = pad_sequence([tg.tensor([1, 2, 3]), tg.tensor([4])], batch_first=True)   # [[1, 2, 3], [4, 0, 0]]
    mask = lengths_to_mask([3, 1])                                                     # True at real positions
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import autograd
from .. import dtype as dtypes
from ..tensor import Tensor, stack, tensor


def default_collate(samples: Sequence[Any]) -> Any:
    """Stack a list of samples into one batch, keeping the sample's structure.

    Tensors and numpy arrays of one shape are stacked along a new first dimension; Python ints become an int64
    tensor, floats a float32 tensor, bools a bool tensor; strings stay a list; tuples, lists and dicts are collated
    element by element (``[(x0, y0), (x1, y1)] -> (stack([x0, x1]), stack([y0, y1]))``).
    """
    if not samples:
        raise ValueError("default_collate: got an empty list of samples")
    first = samples[0]
    if isinstance(first, Tensor):
        _check_same_shapes([s.shape for s in samples])
        return stack(list(samples))
    if isinstance(first, np.ndarray):
        _check_same_shapes([s.shape for s in samples])
        return tensor(np.stack(samples))
    if isinstance(first, (bool, np.bool_)):
        return tensor(np.array(samples, dtype=bool))
    if isinstance(first, (int, np.integer)):
        return tensor(np.array(samples, dtype=np.int64))
    if isinstance(first, (float, np.floating)):
        return tensor(np.array(samples, dtype=dtypes.get_default_dtype()))
    if isinstance(first, str):
        return list(samples)
    if isinstance(first, Mapping):
        return {key: default_collate([s[key] for s in samples]) for key in first}
    if isinstance(first, (tuple, list)):
        sizes = {len(s) for s in samples}
        if len(sizes) > 1:
            raise ValueError(f"default_collate: samples have different lengths {sorted(sizes)}; for variable-length "
                             "sequences pass collate_fn=pad_collate (or pad them with pad_sequence)")
        columns = [default_collate([s[i] for s in samples]) for i in range(len(first))]
        if hasattr(first, "_fields"):  # a namedtuple
            return type(first)(*columns)
        return type(first)(columns) if isinstance(first, tuple) else columns
    raise TypeError(f"default_collate: cannot batch samples of type {type(first).__name__}; pass a collate_fn")


def _check_same_shapes(shapes: list[tuple[int, ...]]) -> None:
    if len(set(shapes)) > 1:
        raise ValueError(f"default_collate: samples have different shapes {shapes[0]} and "
                         f"{next(s for s in shapes if s != shapes[0])}; for variable-length sequences pass "
                         "collate_fn=pad_collate (or pad them with pad_sequence)")


def pad_sequence(sequences: Sequence[Tensor | Any], batch_first: bool = False, padding_value: float = 0.0,
                 return_mask: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Pad tensors of shape (L_i, *) to the longest length and stack them: (T, B, *), or (B, T, *) if
    ``batch_first`` (PyTorch's layout). Lists and arrays are converted with ``tensor()``.

    With ``return_mask`` also returns a bool mask of shape (T, B) / (B, T), True at real (unpadded) positions.
    Gradients flow to the sequences that require them.
    """
    seqs = [s if isinstance(s, Tensor) else tensor(s) for s in sequences]
    if not seqs:
        raise ValueError("pad_sequence: got an empty list of sequences")
    trailing = seqs[0].shape[1:]
    for i, s in enumerate(seqs):
        if s.ndim == 0 or s.shape[1:] != trailing:
            raise ValueError(f"pad_sequence: sequence {i} has shape {s.shape}; every sequence needs shape (L, "
                             f"{', '.join(map(str, trailing))}{',' if len(trailing) == 1 else ''}) like sequence 0")
    lengths = [s.shape[0] for s in seqs]
    longest = max(lengths)
    common = seqs[0].dtype
    for s in seqs[1:]:
        common = dtypes.result_type(common, s.dtype)
    if autograd.is_grad_enabled() and any(s.requires_grad for s in seqs):
        widths = [(0, 0) * len(trailing) + (0, longest - n) for n in lengths]
        padded = stack([s.cast(common).pad(w, value=padding_value) for s, w in zip(seqs, widths)],
                       dim=0 if batch_first else 1)
    else:
        device = seqs[0].device
        xp = device.xp
        with device.context():
            out = xp.full((len(seqs), longest) + trailing, padding_value, dtype=common)
            for i, s in enumerate(seqs):
                out[i, :lengths[i]] = s.to(device=device).data
            if not batch_first:
                out = xp.ascontiguousarray(xp.swapaxes(out, 0, 1))
        padded = Tensor(out, device=device)
    if not return_mask:
        return padded
    return padded, lengths_to_mask(lengths, longest, batch_first=batch_first, device=padded.device)


def lengths_to_mask(lengths: Sequence[int] | Tensor | np.ndarray, max_len: int | None = None,
                    batch_first: bool = True, device: Any = None) -> Tensor:
    """A bool mask, True where ``position < length``: shape (B, T) (or (T, B) when not ``batch_first``)."""
    values = np.asarray(lengths.numpy() if isinstance(lengths, Tensor) else lengths, dtype=np.int64).reshape(-1)
    longest = int(values.max(initial=0)) if max_len is None else int(max_len)
    if device is None and isinstance(lengths, Tensor):
        device = lengths.device
    mask = np.arange(longest)[None, :] < values[:, None]
    return tensor(mask if batch_first else np.ascontiguousarray(mask.T), device=device)


def pad_collate(samples: Sequence[Any], padding_value: float = 0.0) -> Any:
    """A ``collate_fn`` for variable-length data: samples ``(sequence, *rest)`` (or bare sequences) become
    ``(padded (B, T, *), mask (B, T), *default_collate(rest))`` (or ``(padded, mask)``)."""
    if isinstance(samples[0], (tuple, list)) and not isinstance(samples[0], Tensor):
        padded, mask = pad_sequence([s[0] for s in samples], batch_first=True, padding_value=padding_value,
                                    return_mask=True)
        rest = default_collate([tuple(s[1:]) for s in samples])
        return (padded, mask, *rest)
    return pad_sequence(list(samples), batch_first=True, padding_value=padding_value, return_mask=True)


def padding_waste(batches: Sequence[Sequence[int]], lengths: Sequence[int] | np.ndarray) -> float:
    """The fraction of padded positions when each batch (a list of sample indices) is padded to its longest."""
    lengths = np.asarray(lengths)
    padded = sum(len(b) * int(lengths[np.asarray(b)].max()) for b in batches if len(b))
    real = sum(int(lengths[np.asarray(b)].sum()) for b in batches if len(b))
    return 0.0 if padded == 0 else 1.0 - real / padded


