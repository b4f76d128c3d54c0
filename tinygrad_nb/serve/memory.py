"""Predictable memory: what a server holds, from the runtime's memory plan for its max batch, against a limit.

    planned = weights                      the session's constants (held since load)
            + arenas                       one per batch-size bucket up to --max-batch (runtime/plan.py)
            + outside the arenas           batch-broadcast constants and Relu's zeros (known after warm-up)
            + staging                      one buffer per input and output for the max batch (the batcher's)
            + queue                        --max-queue samples of inputs and outputs waiting or being answered

The server checks the first four parts before it allocates an arena (from the plan alone), then again after
warm-up with what binding really allocated, and refuses to start when the total is above ``--memory-limit``, with a
message naming both numbers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3}


class MemoryLimitError(RuntimeError):
    """The planned memory of a server is above its ``memory_limit`` (the message names both, in bytes)."""


def parse_bytes(text: str | int) -> int:
    """``"256MB"`` -> 256000000, ``"1.5GiB"``, ``"4096"``; ValueError naming the text otherwise."""
    if isinstance(text, int):
        if text <= 0:
            raise ValueError(f"memory size must be positive, got {text}")
        return text
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise ValueError(f"cannot read a memory size from {text!r}: write e.g. 256MB, 1.5GiB or 4096 (bytes)")
    value = int(float(m.group(1)) * _UNITS[unit])
    if value <= 0:
        raise ValueError(f"memory size must be positive, got {text!r}")
    return value


def human(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


@dataclass
class MemoryBudget:
    """The planned bytes of one server, by part."""

    weights: int
    arenas: int
    outside: int
    staging: int
    queue: int
    max_batch: int

    @property
    def total(self) -> int:
        return self.weights + self.arenas + self.outside + self.staging + self.queue

    def parts(self) -> dict[str, int]:
        return {"weights": self.weights, "arenas": self.arenas, "outside_arenas": self.outside,
                "staging": self.staging, "queue": self.queue, "total": self.total}

    def check(self, limit: int | None, when: str) -> None:
        if limit is not None and self.total > limit:
            detail = ", ".join(f"{k} {v}" for k, v in self.parts().items() if k != "total")
            raise MemoryLimitError(f"planned memory {self.total} bytes ({human(self.total)}) for --max-batch "
                                   f"{self.max_batch} exceeds --memory-limit {limit} bytes ({human(limit)}) "
                                   f"({when}; {detail}): lower --max-batch or --max-queue, or raise the limit")


def bucket_sizes(session: Any, max_batch: int) -> list[int]:
    """The batch sizes whose buckets serve every batch of 1..max_batch samples (powers of two, and max_batch)."""
    sizes, b = [], 1
    while b < max_batch:
        sizes.append(b)
        b *= 2
    return sizes + [max_batch]


def sample_bytes(specs: Any) -> int:
    """Bytes of one sample of every input (non-batch dims must be fixed)."""
    return sum(int(np.prod([d for d in s.shape[1:]], dtype=np.int64)) * s.dtype.itemsize for s in specs)


def plan(session: Any, max_batch: int, max_queue_samples: int, output_sample_bytes: int = 0) -> MemoryBudget:
    """The budget from the session's memory plan (plans the buckets it lacks; allocates no arena)."""
    symbolic = [s.name for s in session.inputs if any(not isinstance(d, int) for d in s.shape[1:])]
    if symbolic:
        raise ValueError(f"input {symbolic[0]!r} has a symbolic non-batch dimension; a server plans its memory for "
                         "fixed sample shapes (export the model with fixed shapes past the batch dimension)")
    report = session.memory_plan(batch_sizes=bucket_sizes(session, max_batch))
    wanted = set()
    for b in bucket_sizes(session, max_batch):
        shapes = tuple((b, *s.shape[1:]) if batched else tuple(s.shape)
                       for s, batched in zip(session.inputs, session.batched))
        wanted.add(session.bucket_of(shapes))
    arenas = sum(p.arena_bytes for p in report.plans if p.bucket in wanted)
    weights = sum(int(a.nbytes) for a in session.consts.values())
    per_sample = sample_bytes(session.inputs) + output_sample_bytes
    return MemoryBudget(weights=weights, arenas=arenas, outside=session.outside_arena_bytes(),
                        staging=max_batch * per_sample, queue=max_queue_samples * per_sample, max_batch=max_batch)
