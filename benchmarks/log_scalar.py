"""Cost of ``run.log`` per logged scalar, amortized, against appending to a plain Python list.

    python benchmarks/log_scalar.py [--n 200000] [--repeats 5]

Each repeat logs ``n`` single-scalar records (``run.log({"loss": x})``) into a fresh run backed by a run store in a
temporary folder. Three numbers per repeat, medians printed:

* ``log calls``: the time spent inside ``run.log`` in the training loop, including the periodic flushes that convert
  values and hand them to the store's queue (the part a training loop actually waits for);
* ``log + drain``: the same plus ``run.flush()``, which waits until the writer thread has committed every row to
  SQLite (the end-to-end cost per scalar, writer thread included);
* ``list.append``: the baseline ``records.append((i, {"loss": x}))``.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tinygrad_nb import track


def bench_log(n: int, folder: Path, repeat: int) -> tuple[float, float, int]:
    store = track.RunStore(folder / f"runs{repeat}.db")
    run = track.Run(store=store, fingerprint=False)
    run.flush()
    log = run.log
    t0 = time.perf_counter()
    for i in range(n):
        log({"loss": i * 0.001})
    t1 = time.perf_counter()
    run.flush()
    t2 = time.perf_counter()
    run.finish()
    rows = store.count("metrics")
    return (t1 - t0) / n * 1e6, (t2 - t0) / n * 1e6, rows


def bench_list(n: int) -> float:
    records: list = []
    append = records.append
    t0 = time.perf_counter()
    for i in range(n):
        append((i, {"loss": i * 0.001}))
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    calls, drained, baseline = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            c, d, rows = bench_log(args.n, Path(tmp), r)
            assert rows == args.n, f"expected {args.n} rows, the store has {rows}"
            calls.append(c)
            drained.append(d)
            baseline.append(bench_list(args.n))
    c, d, b = statistics.median(calls), statistics.median(drained), statistics.median(baseline)
    print(f"run.log, {args.n} scalars x {args.repeats} repeats (median):")
    print(f"  log calls (training loop):     {c:.3f} us/scalar  ({c / b:.1f}x list.append)")
    print(f"  log + drain to SQLite:         {d:.3f} us/scalar  ({d / b:.1f}x list.append)")
    print(f"  list.append baseline:          {b:.3f} us/scalar")
    print(f"  target <= 2 us/scalar amortized: {'met' if d <= 2.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
