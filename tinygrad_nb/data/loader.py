"""``DataLoader``: batches from a dataset, shuffled by the central RNG, resumable mid-epoch.

The order of every epoch is a pure function of one seed: when the loader is made it draws a 64-bit seed from the
central generator (or from ``generator=``), and epoch ``e`` is shuffled by a Philox stream keyed by ``(seed, e)``. So

* ``tg.manual_seed(0)`` before making the loader gives the same order in every run;
* ``loader.state_dict()`` is three small numbers (seed, epoch, position), and a loader given them with
  ``load_state_dict`` -- in a fresh process too -- continues mid-epoch with the same batches, and its later epochs
  are the ones the interrupted run would have seen;
* other random draws during training (dropout, augmentation) do not change the data order.

Batch samplers (``EpochBatchSampler``, ``BucketBatchSampler``) provide ``batches(epoch)``; the loader fetches them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .. import random
from .collate import default_collate
from .dataset import Dataset

_GOLDEN = 0x9E3779B97F4A7C15  # mixes the epoch number into the seed
_MASK64 = (1 << 64) - 1


def draw_seed(generator: random.Generator | None = None) -> int:
    """A 64-bit seed drawn from ``generator`` (default: the central generator)."""
    hi, lo = (generator or random.default_generator).random_bits(2)
    return (int(hi) << 32) | int(lo)


def epoch_generator(seed: int, epoch: int) -> random.Generator:
    """The Philox stream that shuffles epoch ``epoch`` of a sampler seeded with ``seed``."""
    return random.Generator((seed + epoch * _GOLDEN) & _MASK64)


class EpochBatchSampler:
    """Batches of indices into ``num_samples`` items: in order, or in a fresh permutation each epoch if
    ``shuffle``. ``drop_last`` drops the final short batch."""

    def __init__(self, num_samples: int, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 generator: random.Generator | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = draw_seed(generator) if shuffle else 0

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return (self.num_samples + self.batch_size - 1) // self.batch_size

    def order(self, epoch: int) -> np.ndarray:
        """The sample order of ``epoch``."""
        if not self.shuffle:
            return np.arange(self.num_samples, dtype=np.int64)
        return epoch_generator(self.seed, epoch).randperm(self.num_samples)

    def batches(self, epoch: int) -> list[np.ndarray]:
        order = self.order(epoch)
        return [order[i:i + self.batch_size] for i in range(0, len(self) * self.batch_size, self.batch_size)]

    def state_dict(self) -> dict[str, Any]:
        return {"type": "EpochBatchSampler", "seed": self.seed, "num_samples": self.num_samples,
                "batch_size": self.batch_size, "shuffle": self.shuffle, "drop_last": self.drop_last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_same(self.state_dict(), state, ("type", "num_samples", "batch_size", "shuffle", "drop_last"))
        self.seed = int(state["seed"])


class BucketBatchSampler:
    """Batches of samples of similar length, to keep padding low.

    Each epoch the indices are shuffled, cut into pools of ``bucket_size`` (default 50 batches), each pool is sorted
    by length and cut into batches, and the batch order is shuffled. Every batch then holds neighbours in length,
    while which samples meet and the batch order still change from epoch to epoch.
    """

    def __init__(self, lengths: Sequence[int] | np.ndarray, batch_size: int, shuffle: bool = True,
                 drop_last: bool = False, bucket_size: int | None = None,
                 generator: random.Generator | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.bucket_size = bucket_size or 50 * batch_size
        if self.bucket_size < batch_size:
            raise ValueError(f"bucket_size ({self.bucket_size}) must be at least batch_size ({batch_size})")
        self.seed = draw_seed(generator) if shuffle else 0

    @property
    def num_samples(self) -> int:
        return len(self.lengths)

    def __len__(self) -> int:
        count = 0
        for start in range(0, self.num_samples, self.bucket_size):
            pool = min(self.bucket_size, self.num_samples - start)
            count += pool // self.batch_size if self.drop_last else (pool + self.batch_size - 1) // self.batch_size
        return count

    def batches(self, epoch: int) -> list[np.ndarray]:
        gen = epoch_generator(self.seed, epoch) if self.shuffle else None
        order = gen.randperm(self.num_samples) if gen else np.arange(self.num_samples, dtype=np.int64)
        batches = []
        for start in range(0, len(order), self.bucket_size):
            pool = order[start:start + self.bucket_size]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            for i in range(0, len(pool), self.batch_size):
                batch = pool[i:i + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch)
        if gen is not None:
            batches = [batches[i] for i in gen.randperm(len(batches))]
        return batches

    def state_dict(self) -> dict[str, Any]:
        return {"type": "BucketBatchSampler", "seed": self.seed, "num_samples": self.num_samples,
                "batch_size": self.batch_size, "shuffle": self.shuffle, "drop_last": self.drop_last,
                "bucket_size": self.bucket_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_same(self.state_dict(), state,
                    ("type", "num_samples", "batch_size", "shuffle", "drop_last", "bucket_size"))
        self.seed = int(state["seed"])


def _check_same(mine: dict[str, Any], saved: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if key in saved and saved[key] != mine[key]:
            raise ValueError(f"load_state_dict: the saved loader had {key}={saved[key]!r}, this one has "
                             f"{key}={mine[key]!r}; the order cannot be resumed")


class DataLoader:
    """Iterate over a dataset in batches.

    Args:
        dataset: a :class:`Dataset` (anything with ``__getitem__`` and ``__len__``).
        batch_size: samples per batch.
        shuffle: a new random order every epoch (from the central RNG, or ``generator``).
        drop_last: drop the last batch if it is smaller than ``batch_size``.
        collate_fn: turns a list of samples into a batch (default: :func:`default_collate`; datasets with a
            ``get_batch`` method, like ``TensorDataset``, build whole batches directly).
        generator: a ``tinygrad_nb.random.Generator`` to draw the shuffling seed from.
        batch_sampler: an object with ``batches(epoch)`` and ``__len__`` choosing the indices of every batch
            (exclusive with batch_size, shuffle and drop_last).
        bucket_by: group samples of similar length (see :class:`BucketBatchSampler`): a function from a sample to
            its length (called once per sample), or the list of lengths.

    ``len(loader)`` is the number of batches per epoch. Each ``for batch in loader`` runs one epoch; an epoch left
    early is not continued, except after ``load_state_dict``, which resumes exactly where the state was saved.
    """

    def __init__(self, dataset: Dataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 collate_fn: Callable[[list[Any]], Any] | None = None, generator: random.Generator | None = None,
                 batch_sampler: Any = None, bucket_by: Callable[[Any], int] | Sequence[int] | None = None):
        self.dataset = dataset
        self.collate_fn = collate_fn
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or drop_last or bucket_by is not None:
                raise ValueError("DataLoader: batch_sampler is exclusive with batch_size, shuffle, drop_last and "
                                 "bucket_by")
            self.batch_sampler = batch_sampler
        elif bucket_by is not None:
            lengths = [bucket_by(dataset[i]) for i in range(len(dataset))] if callable(bucket_by) else bucket_by
            if len(lengths) != len(dataset):
                raise ValueError(f"DataLoader: bucket_by gives {len(lengths)} lengths for {len(dataset)} samples")
            self.batch_sampler = BucketBatchSampler(lengths, batch_size, shuffle=shuffle, drop_last=drop_last,
                                                    generator=generator)
        else:
            self.batch_sampler = EpochBatchSampler(len(dataset), batch_size, shuffle, drop_last, generator)
        self.batch_size = batch_size
        self.epoch = 0  # the epoch being iterated (or last iterated)
        self.position = 0  # batches of that epoch already handed out
        self._started = False
        self._resume = False

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[Any]:
        if self._resume:
            self._resume = False
        else:
            if self._started:
                self.epoch += 1
            self.position = 0
        self._started = True
        return self._epoch_batches(self.epoch, self.position)

    def _epoch_batches(self, epoch: int, start: int) -> Iterator[Any]:
        batches = self.batch_sampler.batches(epoch)
        for k in range(start, len(batches)):
            batch = self._fetch(batches[k])
            if self.epoch == epoch:  # an abandoned iterator from an older epoch does not move the position
                self.position = k + 1
            yield batch

    def _fetch(self, indices: np.ndarray) -> Any:
        if self.collate_fn is None and hasattr(self.dataset, "get_batch"):
            return self.dataset.get_batch(indices)
        samples = [self.dataset[int(i)] for i in indices]
        return (self.collate_fn or default_collate)(samples)

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is: the next batch is batch ``position`` of epoch ``epoch`` (plain, JSON-able data)."""
        epoch, position = self.epoch, self.position
        if self._started and position >= len(self):
            epoch, position = epoch + 1, 0  # a finished epoch: resume at the start of the next one
        return {"epoch": epoch, "position": position, "sampler": self.batch_sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (from :meth:`state_dict`): the next iteration resumes mid-epoch."""
        if "sampler" in state and hasattr(self.batch_sampler, "load_state_dict"):
            self.batch_sampler.load_state_dict(state["sampler"])
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        if not 0 <= self.position <= len(self):
            raise ValueError(f"load_state_dict: position {self.position} is outside the {len(self)} batches of an "
                             "epoch")
        if self.position == len(self):
            self.epoch, self.position = self.epoch + 1, 0
        self._started = True
        self._resume = True

    def __repr__(self) -> str:
        return (f"DataLoader({type(self.dataset).__name__} of {len(self.dataset)}, {len(self)} batches of "
                f"{self.batch_size}, {type(self.batch_sampler).__name__})")
