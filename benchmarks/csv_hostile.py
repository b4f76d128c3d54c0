"""How read_csv's time grows on hostile inputs: it must grow like the file, never faster.

    python benchmarks/csv_hostile.py [--rounds 3] [--quick]

Each case is a family of files of growing size (a long run of digits, a header of one name repeated, a header of
many distinct names, one huge text field). For every size it prints the time of ``read_csv``, the time of the
baseline -- Python's ``csv`` module splitting the same file into rows (``list(csv.reader(...))``), measured in the
same run -- and the ratio between them. For every step up in size it prints how much the time grew against how
much the input grew: linear parsing gives a growth near the size factor (about 10x for 10x the input), quadratic
parsing its square (100x). The "growth / size" column is that growth divided by the size factor: near 1 is linear,
near the size factor is quadratic.

Timings are medians of interleaved rounds (``_timing.interleaved_medians``); ``--quick`` skips the largest size of
each case.
"""
from __future__ import annotations

import argparse
import csv
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from _timing import interleaved_medians

from tinygrad_nb.data import read_csv


@dataclass
class Case:
    """A family of hostile files: ``make(n)`` writes the file for size parameter ``n``."""

    name: str
    unit: str
    sizes: list[int]
    make: Callable[[int], bytes]


def digit_run_text(n: int) -> bytes:
    """A column whose one value is n digits and then a letter: a category, after the number regex rejected it."""
    return b"a,b\n" + b"1" * n + b"x,1\n"


def digit_run_number(n: int) -> bytes:
    """A number of n digits (an integer far beyond int64 and float64: read as inf), next to a text column."""
    return b"a,b\n" + b"1" * n + b",x\n"


def repeated_names(n: int) -> bytes:
    """n columns all named "a" (renamed a, a_2, a_3, ...) and one row of numbers."""
    return b",".join([b"a"] * n) + b"\n" + b",".join([b"1"] * n) + b"\n"


def distinct_names(n: int) -> bytes:
    """n columns c0, c1, ... and one row of numbers."""
    return b",".join(b"c%d" % i for i in range(n)) + b"\n" + b",".join([b"1"] * n) + b"\n"


def huge_field(n: int) -> bytes:
    """One quoted text field of n characters (past the csv module's default field limit of 131,072)."""
    return b'a,b\n"' + b"x" * n + b'",1\n'


CASES = [
    Case("digit run, then a letter", "digits", [10_000, 100_000, 1_000_000], digit_run_text),
    Case("digit run (a number)", "digits", [10_000, 100_000, 1_000_000], digit_run_number),
    Case("one name repeated", "columns", [2_000, 20_000, 200_000], repeated_names),
    Case("distinct names", "columns", [10_000, 100_000], distinct_names),
    Case("one huge quoted field", "chars", [100_000, 1_000_000, 10_000_000], huge_field),
]


def csv_module_rows(source: bytes) -> list[list[str]]:
    """The baseline: the csv module splitting the decoded file into rows (no types, no checks)."""
    return list(csv.reader(io.StringIO(source.decode("utf-8"), newline="")))


def run_case(case: Case, rounds: int, quick: bool) -> None:
    print(f"\n{case.name}")
    print(f"  {case.unit:>10}  {'bytes':>10}  {'read_csv':>10}  {'csv module':>10}  {'/ csv':>7}  "
          f"{'growth':>8}  {'size x':>7}  {'growth / size':>13}")
    previous: tuple[int, float] | None = None
    sizes = case.sizes[:-1] if quick and len(case.sizes) > 2 else case.sizes
    for n in sizes:
        source = case.make(n)
        times = interleaved_medians({"read_csv": lambda: read_csv(io.BytesIO(source)),
                                     "csv": lambda: csv_module_rows(source)}, rounds=rounds, warmup=1)
        ours, base = times["read_csv"], times["csv"]
        line = (f"  {n:>10,}  {len(source):>10,}  {ours * 1e3:>8.1f}ms  {base * 1e3:>8.1f}ms  "
                f"{ours / base:>6.1f}x")
        if previous is not None:
            growth, size_factor = ours / previous[1], len(source) / previous[0]
            line += f"  {growth:>7.1f}x  {size_factor:>6.1f}x  {growth / size_factor:>13.2f}"
        print(line)
        previous = (len(source), ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip the largest size of each case")
    args = parser.parse_args()
    csv.field_size_limit(1 << 30)  # (the baseline's limit; read_csv raises its own while it reads)
    warnings.simplefilter("ignore")  # the repeated names' warning
    for case in CASES:
        run_case(case, args.rounds, args.quick)


if __name__ == "__main__":
    main()
