"""Checkpoint save/load throughput against raw numpy.save / numpy.load of the same arrays, in the same run.

    python benchmarks/checkpoint_io.py [--mb 100] [--repeats 9] [--dir /tmp]

A model of large Linear layers plus its Adam state (two moments per parameter) adds up to about ``--mb`` megabytes.
The variants take turns, round after round (one warm-up round, then ``--repeats``); the median is reported. Ratios are
throughputs relative to numpy (higher is better; targets: save >= 0.7x numpy.save, load >= 1x numpy.load).

* numpy.save: every array written with np.save into one open file, no fsync (numpy's default). Every round
  overwrites the file of the round before (``open(path, "wb")`` truncates it), as every save replaces the previous
  checkpoint: the kernel frees the old file's pages and blocks in the truncation just as in save's rename;
* numpy.save+fsync: the same plus fsync, as durable as ``save(durable=True)`` (but not atomic);
* save durable: ``tinygrad_nb.save`` with its default durable=True: model + optimizer state, hashes, manifest,
  fingerprint, fsync of the file, atomic rename over the previous checkpoint, fsync of the folder;
* save durable=False: the same without the two fsyncs (still atomic against a crash of the process or Ctrl-C).
  Like for like: ``save durable`` vs numpy.save+fsync, ``save durable=False`` vs numpy.save.
* tinygrad_nb.load: map the file, verify every hash, build the tensors (``load(path)``); also with mmap=False (one
  read into memory);
* load into objects: the same plus copying into the model and optimizer (``load(path, model=, optimizer=)``).

``save`` hands the replaced checkpoint to a background thread, which frees it (tinygrad_nb.io); numpy.save frees its
old file in the truncation, before it writes. So each save is timed twice: until ``save`` returns (what a training
loop waits for) and until the replaced file is freed too (the same work as numpy's, the fairest throughput). Before
each variant runs, that freeing is waited for and ``os.sync()`` writes out whatever the previous one left dirty.
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
from tinygrad_nb.io import wait_for_released


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


def timed(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[tuple[float, float]]]:
    """Per variant and round: (seconds until the call returns, seconds until its background freeing is done too).
    The variants take turns (round-robin) so that background load on the machine hits all of them alike, and each
    starts after wait_for_released() and os.sync(), so none pays for another's leftover work."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for round_ in range(repeats + 1):  # round 0 warms up (first writes to fresh page-cache memory are slow on VMs)
        for name, fn in variants.items():
            wait_for_released()
            if hasattr(os, "sync"):
                os.sync()
            start = time.perf_counter()
            fn()
            returned = time.perf_counter()
            wait_for_released()
            done = time.perf_counter()
            if round_ > 0:
                times[name].append((returned - start, done - start))
    return times


def ratio(baseline: list[tuple[float, float]], variant: list[tuple[float, float]], which: int) -> float:
    """Median over the rounds of the throughput ratio within the round (baseline time / variant time): pairs run
    back to back, so this follows the machine's changing load better than a ratio of medians."""
    return statistics.median(b[1] / v[which] for b, v in zip(baseline, variant))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0, help="approximate checkpoint size in MB")
    parser.add_argument("--repeats", type=int, default=9)
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
            "save durable": lambda: save(ckpt, model=model, optimizer=opt, step=1),
            "save durable=False": lambda: save(ckpt, model=model, optimizer=opt, step=1, durable=False),
        }, args.repeats)
        results |= timed({
            "numpy.load": np_load,
            "tinygrad_nb.load": lambda: load(ckpt, restore_rng=False),
            "load, mmap=False": lambda: load(ckpt, restore_rng=False, mmap=False),
            "load into objects": lambda: load(ckpt, model=model, optimizer=opt, restore_rng=False),
        }, args.repeats)
        file_mb = ckpt.stat().st_size / 1e6

    print(f"{len(arrays)} arrays, {total / 1e6:.1f} MB of tensors ({file_mb:.1f} MB file), median of {args.repeats}")
    print(f"  {'':<19} {'returns':>9} {'all done':>9}")
    for name, rounds in results.items():
        returned, done = statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds)
        print(f"  {name:<19} {returned * 1e3:6.1f} ms {done * 1e3:6.1f} ms  {total / returned / 1e9:5.2f} GB/s")
    print("ratios (throughput, higher is better; median of the per-round ratios; numpy's times are the same either "
          "way):")
    print(f"  {'':<40} {'returns':>8} {'all done':>9}")
    for variant in ("save durable", "save durable=False"):
        for baseline in ("numpy.save", "numpy.save+fsync"):
            like = (variant == "save durable") == (baseline == "numpy.save+fsync")
            note = "  like for like" if like else ""
            note += "  (target >= 0.7x)" if baseline == "numpy.save" else ""
            returned, done = ratio(results[baseline], results[variant], 0), ratio(results[baseline], results[variant], 1)
            print(f"  {variant + ' vs ' + baseline:<40} {returned:7.2f}x {done:8.2f}x{note}")
    for name, label in (("tinygrad_nb.load", "load"), ("load, mmap=False", "load (mmap=False)"),
                        ("load into objects", "load into objects")):
        note = "  (target >= 1x)" if name == "tinygrad_nb.load" else ""
        print(f"  {label + ' vs numpy.load':<40} {ratio(results['numpy.load'], results[name], 1):7.2f}x{note}")


if __name__ == "__main__":
    main()
