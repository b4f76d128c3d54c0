"""Datasets: ``Dataset`` (the interface), ``TensorDataset``, ``Subset`` and ``random_split`` (PyTorch's names)."""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import random
from ..tensor import Tensor, from_numpy, tensor
from .collate import default_collate


class Dataset:
    """A map from an index ``0 <= i < len(dataset)`` to a sample; subclasses define ``__getitem__`` and ``__len__``.

    A dataset may also define ``get_batch(indices) -> batch`` to build a whole batch at once; ``DataLoader`` then
    uses it instead of fetching and collating the samples one by one (when no ``collate_fn`` is given).
    """

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")


class TensorDataset(Dataset):
    """Samples are the rows of tensors sharing their first dimension: ``dataset[i] == (X[i], y[i])``.

    Numpy arrays are accepted and wrapped (sharing memory). Batches are gathered with one indexing operation per
    tensor (:meth:`get_batch`), with no per-sample Python loop.
    """

    def __init__(self, *tensors: Tensor | np.ndarray):
        if not tensors:
            raise ValueError("TensorDataset: expected at least one tensor")
        self.tensors = tuple(from_numpy(t) if isinstance(t, np.ndarray) else t for t in tensors)
        for i, t in enumerate(self.tensors):
            if not isinstance(t, Tensor):
                raise TypeError(f"TensorDataset: argument {i} is {type(t).__name__}, expected a Tensor or array")
            if t.ndim == 0 or t.shape[0] != self.tensors[0].shape[0]:
                raise ValueError(f"TensorDataset: all tensors need the same first dimension; tensor 0 has shape "
                                 f"{self.tensors[0].shape}, tensor {i} has shape {t.shape}")

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def get_batch(self, indices: np.ndarray) -> tuple[Tensor, ...]:
        """The rows at ``indices`` of every tensor, as a tuple of batched tensors."""
        index_on: dict[Any, Tensor] = {}
        batch = []
        for t in self.tensors:
            if t.device not in index_on:
                index_on[t.device] = tensor(np.asarray(indices, dtype=np.int64), device=t.device)
            batch.append(t[index_on[t.device]])
        return tuple(batch)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, renumbered from 0."""

    def __init__(self, dataset: Dataset, indices: Sequence[int] | np.ndarray):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> Any:
        """One sample for an int; for a slice, range, list or array of positions, their batch (``get_batch``)."""
        if isinstance(index, (int, np.integer)):
            return self.dataset[int(self.indices[index])]
        positions = np.arange(len(self.indices))[index] if isinstance(index, slice) else np.asarray(index)
        return self.get_batch(positions)

    def __len__(self) -> int:
        return len(self.indices)

    def get_batch(self, indices: np.ndarray) -> Any:
        """The underlying dataset's batch when it can build one, else its samples through ``default_collate``."""
        rows = self.indices[np.asarray(indices, dtype=np.int64)]
        if hasattr(self.dataset, "get_batch"):
            return self.dataset.get_batch(rows)
        return default_collate([self.dataset[int(i)] for i in rows])


def random_split(dataset: Dataset, lengths: Sequence[int | float],
                 generator: random.Generator | None = None) -> list[Subset]:
    """Split into non-overlapping random subsets of the given lengths (or fractions summing to 1), drawn from the
    central generator (or ``generator``): the same seed gives the same split."""
    n = len(dataset)
    if all(isinstance(x, float) for x in lengths) and abs(sum(lengths) - 1.0) < 1e-6:
        sizes = [int(np.floor(n * f)) for f in lengths]
        for i in range(n - sum(sizes)):  # hand out the remainder round-robin, like PyTorch
            sizes[i % len(sizes)] += 1
    else:
        sizes = [int(x) for x in lengths]
    if sum(sizes) != n:
        raise ValueError(f"random_split: lengths {list(lengths)} sum to {sum(sizes)}, but the dataset has {n} samples")
    order = (generator or random.default_generator).randperm(n)
    bounds = np.cumsum([0] + sizes)
    return [Subset(dataset, order[a:b]) for a, b in itertools.pairwise(bounds)]
