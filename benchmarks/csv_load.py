"""read_csv against pandas.read_csv on a 50 MB numeric CSV (the issue's target: within 2x of pandas).

    python benchmarks/csv_load.py [--mb 50] [--rounds 5] [--full-precision] [--no-arrow]

The file is generated in a temporary folder: 8 float columns (measurement-like values with up to 6 decimals, some
in exponent notation) and 2 int columns, about 500k rows for 50 MB. ``--full-precision`` also times a file of
17-significant-digit floats (what ``repr``/``to_csv`` writes for computed values), which the vectorized path can only
partly handle (Python's ``float`` finishes the rest), as an honest second number. Timings are medians of interleaved
rounds in one process; pandas is optional (only the baseline).

``read_csv`` is timed twice: as installed (with pyarrow, its pyarrow parser, see tinygrad_nb/data/arrowparse.py) and
with the numpy parser only (``fastparse.ENGINE = "numpy"``); both must give identical tables. ``--no-arrow`` times
only the numpy parser.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from _timing import interleaved_medians

from tinygrad_nb.data import arrowparse, fastparse, read_csv

ARROW, NUMPY, PANDAS = "read_csv (pyarrow)", "read_csv (numpy only)", "pandas.read_csv"


def write_numeric_csv(path: Path, megabytes: float, full_precision: bool = False, seed: int = 0) -> int:
    """Write a numeric CSV of about ``megabytes`` MB; returns the number of rows."""
    rng = np.random.default_rng(seed)
    rows_per_mb = 5_000 if full_precision else 15_500
    n = int(megabytes * rows_per_mb)
    columns = []
    for j in range(8):
        values = rng.normal(size=n) * 10.0 ** rng.integers(-2, 4)
        if full_precision:
            columns.append(np.array([repr(float(v)) for v in values]))
        elif j == 7:
            columns.append(np.char.mod("%.3e", values))
        else:
            columns.append(np.char.mod(f"%.{rng.integers(1, 7)}f", values))
    columns += [rng.integers(-1000, 100_000, n).astype(str), rng.integers(0, 10, n).astype(str)]
    header = ",".join([f"f{j}" for j in range(8)] + ["count", "label"])
    with open(path, "w") as f:
        f.write(header + "\n")
        for start in range(0, n, 100_000):
            block = [c[start:start + 100_000] for c in columns]
            f.write("\n".join(",".join(row) for row in zip(*block)) + "\n")
    return n


def read_with(path: Path, engine: str):
    """read_csv with the fast path's engine set to ``engine`` ("auto": pyarrow when installed)."""
    saved, fastparse.ENGINE = fastparse.ENGINE, engine
    try:
        return read_csv(path)
    finally:
        fastparse.ENGINE = saved


def same_tables(a, b) -> bool:
    """Bit for bit: names, types, dtypes, values, missing counts."""
    return (a.names == b.names and a.types == b.types and a.missing == b.missing
            and all(a[n].dtype == b[n].dtype and a[n].tobytes() == b[n].tobytes() for n in a.names))


def compare(path: Path, rounds: int, arrow: bool) -> None:
    size = os.path.getsize(path) / 1e6
    contenders = {}
    if arrow:
        data = path.read_bytes()  # the pyarrow parser must take this file, not give it to the others
        arrowparse.parse_numeric(data, data.index(b"\n") + 1, data[:data.index(b"\n")].count(b",") + 1, ",")
        contenders[ARROW] = lambda: read_with(path, "auto")
    contenders[NUMPY] = lambda: read_with(path, "numpy")
    try:
        import pandas
    except ImportError:
        pandas = None
        print("pandas is not installed (pip install pandas): timing read_csv alone")
    if pandas is not None:
        contenders[PANDAS] = lambda: pandas.read_csv(path)
    table = read_with(path, "numpy")
    if arrow:
        assert same_tables(table, read_with(path, "auto")), "the pyarrow and numpy parsers disagree"
    if pandas is not None:  # the same numbers (pandas' default float parser may differ in the last bit)
        frame = pandas.read_csv(path)
        for name in table.names:
            assert np.allclose(table[name], frame[name].to_numpy(), rtol=1e-15, atol=0), name
    times = interleaved_medians(contenders, rounds=rounds, warmup=1)
    print(f"{path.name}: {size:.1f} MB, {table.num_rows} rows x {len(table.names)} columns "
          f"(medians of {rounds} interleaved rounds)")
    for name, seconds in times.items():
        print(f"  {name:22s} {seconds * 1000:8.1f} ms   {size / seconds:6.1f} MB/s")
    if pandas is not None:
        for name in (ARROW, NUMPY):
            if name in times:
                print(f"  ratio {name} / pandas: {times[name] / times[PANDAS]:.2f}x (target: at most 2x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0, help="file size in MB (default 50)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per contender (default 5)")
    parser.add_argument("--full-precision", action="store_true", help="also time 17-digit floats")
    parser.add_argument("--no-arrow", action="store_true", help="time only the numpy parser, not pyarrow's")
    args = parser.parse_args()
    arrow = not args.no_arrow and arrowparse.available()
    if not args.no_arrow and not arrow:
        print("pyarrow is not installed (pip install pyarrow): timing the numpy parser only")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "numeric.csv"
        write_numeric_csv(path, args.mb)
        compare(path, args.rounds, arrow)
        if args.full_precision:
            path = Path(folder) / "full_precision.csv"
            write_numeric_csv(path, args.mb, full_precision=True)
            compare(path, args.rounds, arrow)


if __name__ == "__main__":
    main()
