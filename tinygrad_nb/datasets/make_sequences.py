"""Generate ``sequences.csv``, the bundled toy set of variable-length sequences (deterministic).

    python -m tinygrad_nb.datasets.make_sequences      # rewrites tinygrad_nb/datasets/sequences.csv

Each row is a sequence of 2 to 40 digits (space separated, column ``tokens``) and its ``label``: the parity of the
digit sum (0 even, 1 odd). The draws come from tinygrad_nb's own Philox generator with seed 2024, so the file is the
same on every machine and numpy version.
"""
from __future__ import annotations

from pathlib import Path

from tinygrad_nb.io import atomic_write
from tinygrad_nb.random import Generator

ROWS = 400
MIN_LEN, MAX_LEN = 2, 40
SEED = 2024


def make_rows(rows: int = ROWS, seed: int = SEED) -> list[tuple[str, int]]:
    """(tokens, label) pairs: ``tokens`` is space-separated digits, ``label`` the parity of their sum."""
    gen = Generator(seed)
    lengths = gen.randint(MIN_LEN, MAX_LEN + 1, (rows,))
    out = []
    for length in lengths:
        digits = [int(d) for d in gen.randint(0, 10, (int(length),))]
        out.append((" ".join(map(str, digits)), sum(digits) % 2))
    return out


def main() -> None:
    lines = ["tokens,label"] + [f"{tokens},{label}" for tokens, label in make_rows()]
    atomic_write(Path(__file__).with_name("sequences.csv"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
