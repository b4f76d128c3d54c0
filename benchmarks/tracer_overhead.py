"""Overhead of the NaN/inf tracer (and the profiler) on the op_overhead workload.

    python benchmarks/tracer_overhead.py [--ops 1000] [--repeats 200]

The workload is the core op-overhead run: a chain of ``--ops`` tiny ops on a 4-element float32 tensor (alternating
``y * 1.0001`` and ``y + 0.5``), then ``backward()``. Time per op = (forward + backward) / ops, median of
``--repeats`` runs, in four states:

* never:     the tracer was never enabled (no observer was ever registered): a second process of this script that
             never turns anything on, asked for one sample per round;
* on:        ``debug.set_detect_anomaly(True)``: every forward op records its source line and every forward and
             backward output is checked for NaN/inf;
* off again: after ``set_detect_anomaly(False)`` (must equal "never": the observer list is empty again);
* profiler:  ``with tinygrad_nb.profiler.profile():`` for comparison (every 4th round).

All states are sampled round by round (never, on, off again, [profiler]) so that load on the machine affects them
alike.

Targets: off-again / never ~= 1.00x (zero measurable overhead), on / never <= 3x.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time

import numpy as np

import tinygrad_nb as tg
from tinygrad_nb import debug, dispatch
from tinygrad_nb.profiler import profile


def workload(ops: int) -> None:
    x = tg.tensor(np.ones(4, np.float32), requires_grad=True)
    y = x
    for _ in range(ops // 2):
        y = y * 1.0001
        y = y + 0.5
    y.sum().backward()


def sample(ops: int) -> float:
    """Seconds for one run of the workload, garbage collection paused."""
    gc.disable()
    try:
        t0 = time.perf_counter()
        workload(ops)
        return time.perf_counter() - t0
    finally:
        gc.enable()


def per_op(samples: list[float], ops: int) -> float:
    return statistics.median(samples) / ops * 1e6


def child(ops: int) -> None:
    """The "never" process: runs one sample per line read from stdin, answers with the seconds it took."""
    workload(ops)
    for _ in sys.stdin:
        print(sample(ops), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    ops, repeats = args.ops, args.repeats
    if args.child:
        child(ops)
        return
    assert not dispatch.observers, "another observer is registered; run this benchmark on its own"
    never_process = subprocess.Popen([sys.executable, __file__, "--child", "--ops", str(ops)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
    assert never_process.stdin is not None and never_process.stdout is not None
    workload(ops)  # warm up
    never_samples, on_samples, off_samples, prof_samples = [], [], [], []
    for i in range(repeats):  # interleaved round by round, so load on the machine hits every state alike
        never_process.stdin.write("\n")
        never_process.stdin.flush()
        never_samples.append(float(never_process.stdout.readline()))
        debug.set_detect_anomaly(True)
        on_samples.append(sample(ops))
        debug.set_detect_anomaly(False)
        assert not dispatch.observers
        off_samples.append(sample(ops))
        if i % 4 == 0:
            with profile():
                prof_samples.append(sample(ops))
    never_process.stdin.close()
    never_process.wait()
    never = per_op(never_samples, ops)
    on, off, prof = per_op(on_samples, ops), per_op(off_samples, ops), per_op(prof_samples, ops)
    print(f"op_overhead workload: {ops} ops (4-element mul/add) + backward, median of {repeats} repeats")
    print(f"  tracer never enabled:       {never:7.2f} us/op   1.00x")
    print(f"  tracer enabled then off:    {off:7.2f} us/op   {off / never:.2f}x   (target ~1.00x)")
    print(f"  tracer on:                  {on:7.2f} us/op   {on / never:.2f}x   (target <= 3x)")
    print(f"  profiler on (for reference): {prof:6.2f} us/op   {prof / never:.2f}x")


if __name__ == "__main__":
    main()
