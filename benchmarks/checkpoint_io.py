"""Checkpoint save/load throughput against raw numpy.save / numpy.load of the same arrays, in the same run.

    python benchmarks/checkpoint_io.py [--mb 100] [--repeats 5] [--dir /tmp]

A model of large Linear layers plus its Adam state (two moments per parameter) adds up to about ``--mb`` megabytes.
Every variant runs ``--repeats`` times after one warm-up round; the median is reported. Ratios are throughputs relative to numpy (higher is
better; targets: save >= 0.7x numpy.save, load >= 1x numpy.load).

* numpy.save: every array written with np.save into one open file, no fsync (numpy's default);
* numpy.save+fsync: the same plus fsync, i.e. as durable as tinygrad_nb.save, which always fsyncs (atomic write);
* tinygrad_nb.save: model + optimizer state, hashes, manifest, fingerprint, atomic rename;
* tinygrad_nb.load: map the file, verify every hash, build the tensors (``load(path)``); also with mmap=False (one
  read into memory);
* load into objects: the same plus copying into the model and optimizer (``load(path, model=, optimizer=)``).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import tinygrad_nb as tg
from tinygrad_nb import nn, optim
from tinygrad_nb.checkpoint import load, save


def build(megabytes: float) -> tuple[nn.Module, optim.Optimizer]:
    """Linear(width, width) layers + Adam: parameters are a third of the bytes, the two moments the rest."""
    width = 2048
    layer_bytes = width * (width + 1) * 4 * 3
    layers = max(1, round(megabytes * 1e6 / layer_bytes))
    model = nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])
    opt = optim.Adam(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = tg.ones(*p.shape)
    opt.step()  # creates the moments
    return model, opt


def timed(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per variant. The variants take turns (round-robin) so that background load on the machine
    hits all of them alike, and each starts after os.sync(), so none pays for another's pending disk writes."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(repeats + 1):  # round 0 warms up (first writes to fresh page-cache memory are slow on VMs)
        for name, fn in variants.items():
            if hasattr(os, "sync"):
                os.sync()
            start = time.perf_counter()
            fn()
            if round_ > 0:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0, help="approximate checkpoint size in MB")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()

    model, opt = build(args.mb)
    arrays = [t.numpy() for t in model.state_dict().values()]
    arrays += [v.numpy() for entry in opt.state_dict()["state"].values() for v in entry.values()]
    total = sum(a.nbytes for a in arrays)

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        npy, ckpt = Path(folder) / "arrays.npy", Path(folder) / "checkpoint.safetensors"

        def np_save(fsync: bool = False) -> None:
            with open(npy, "wb") as f:
                for a in arrays:
                    np.save(f, a)
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())

        def np_load() -> list[np.ndarray]:
            with open(npy, "rb") as f:
                return [np.load(f) for _ in arrays]

        results = timed({
            "numpy.save": np_save,
            "numpy.save+fsync": lambda: np_save(fsync=True),
            "tinygrad_nb.save": lambda: save(ckpt, model=model, optimizer=opt, step=1),
        }, args.repeats)
        results |= timed({
            "numpy.load": np_load,
            "tinygrad_nb.load": lambda: load(ckpt, restore_rng=False),
            "load, mmap=False": lambda: load(ckpt, restore_rng=False, mmap=False),
            "load into objects": lambda: load(ckpt, model=model, optimizer=opt, restore_rng=False),
        }, args.repeats)
        file_mb = ckpt.stat().st_size / 1e6

    print(f"{len(arrays)} arrays, {total / 1e6:.1f} MB of tensors ({file_mb:.1f} MB file), median of {args.repeats}")
    for name, seconds in results.items():
        print(f"  {name:<18} {seconds * 1e3:8.1f} ms  {total / seconds / 1e9:6.2f} GB/s")
    print("ratios (throughput, higher is better):")
    print(f"  save vs numpy.save        {results['numpy.save'] / results['tinygrad_nb.save']:.2f}x  (target >= 0.7x)")
    print(f"  save vs numpy.save+fsync  {results['numpy.save+fsync'] / results['tinygrad_nb.save']:.2f}x")
    print(f"  load vs numpy.load        {results['numpy.load'] / results['tinygrad_nb.load']:.2f}x  (target >= 1x)")
    print(f"  load (mmap=False) vs numpy.load  {results['numpy.load'] / results['load, mmap=False']:.2f}x")
    print(f"  load into objects vs numpy.load  {results['numpy.load'] / results['load into objects']:.2f}x")


if __name__ == "__main__":
    main()
