"""The static memory plan: a liveness walk assigns every intermediate to a region of one arena per batch-size bucket.

For a bucket (the input shapes with the batch dimension rounded up to a power of two) the planner knows every
value's shape from one reference run. Then:

1. Each value gets a *root* buffer: its own, or its input's when the op is a view (Reshape, Transpose, Slice...) or
   an elementwise op whose first input dies at this step (written in place). Kernels' temporaries are roots too.
2. A root lives from the step that writes it to the last step that reads it (or any view of it).
3. Roots are placed in the arena greedily by size, largest first, each at the lowest offset that overlaps no placed
   root alive at the same time. The arena's size is the planned peak; the largest sum of sizes alive at one step
   is the lower bound any plan must reach.

Any batch size up to the bucket's uses the same offsets (every shape is at most the bucket's), so one arena serves
the whole bucket and steady-state calls allocate nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ALIGN = 64


@dataclass
class Root:
    """One buffer of the plan: who owns it, its size in bytes, its lifetime (steps), its place in the arena."""

    label: str
    size: int
    start: int
    end: int
    offset: int = 0
    persistent: bool = False


@dataclass
class Plan:
    """The arena layout of one bucket."""

    bucket: tuple[tuple[int, ...], ...]
    steps: int
    roots: list[Root] = field(default_factory=list)
    root_of: dict[str, int] = field(default_factory=dict)  # value name -> index in roots
    scratch_of: dict[int, list[int]] = field(default_factory=dict)  # step -> roots of its temporaries
    arena_bytes: int = 0
    lower_bound: int = 0
    step_labels: list[str] = field(default_factory=list)

    def place(self) -> None:
        """Assign offsets (greedy by size) and compute the arena size and the liveness lower bound."""
        placed: list[Root] = []
        for root in sorted(self.roots, key=lambda r: (-r.size, r.start, r.label)):
            offset = 0
            clashes = sorted((r for r in placed if r.start <= root.end and root.start <= r.end),
                             key=lambda r: r.offset)
            for other in clashes:
                if offset + root.size <= other.offset:
                    break
                offset = max(offset, _aligned(other.offset + other.size))
            root.offset = offset
            placed.append(root)
        self.arena_bytes = max((r.offset + r.size for r in self.roots), default=0)
        live = [0] * (self.steps + 2)
        for r in self.roots:
            for t in range(r.start + 1, r.end + 2):
                live[t] += r.size
        self.lower_bound = max(live, default=0)


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN
