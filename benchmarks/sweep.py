"""Per-trial overhead of tg.sweep's executors, and Ray Data batch inference against a plain loop.

    python benchmarks/sweep.py [--trials 40] [--ray-trials 12] [--rows 200000] [--repeats 3] [--no-ray]

**Per-trial overhead.** A tiny ``train_fn`` (three ``run.log`` calls) run as a sweep of ``n`` trials and of 1 trial,
one trial at a time (``max_concurrent=1``); the overhead per trial is ``(T(n) - T(1)) / (n - 1)``, which leaves out
start-up (the worker pool's fork; Ray's start, done before timing). Baseline, measured in the same run: the same
trials by hand in this process, one ``track.Run`` each (what a trial costs without any sweep). Targets from issue 22:
local <= 50 ms, ray <= 200 ms.

**Batch inference.** A ``rows`` x 16 CSV file through a small ONNX MLP: ``map_dataset`` (Ray Data, 2 actors, Parquet
out) against a plain loop in this process (pandas read, the runtime session on 8192-row batches, pyarrow Parquet
write). Rows per second, median of ``repeats``.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import tinygrad_nb as tg
from tinygrad_nb import track


def tiny_train(config: dict[str, Any], run: Any) -> None:
    for step in range(3):
        run.log({"val_loss": config["x"] * (3 - step)}, step=step)


def by_hand(n: int, store: track.RunStore) -> float:
    start = time.perf_counter()
    for i in range(n):
        run = track.Run(config={"x": float(i)}, store=store, fingerprint=False)
        tiny_train({"x": float(i)}, run)
        run.finish()
    store.flush()
    return time.perf_counter() - start


def swept(n: int, store: track.RunStore, executor: str) -> float:
    start = time.perf_counter()
    tg.sweep(tiny_train, {"x": [float(i) for i in range(n)]}, executor=executor, max_concurrent=1, store=store,
             live=False)
    return time.perf_counter() - start


def per_trial(fn: Any, n: int, repeats: int) -> float:
    """Median over repeats of (T(n) - T(1)) / (n - 1)."""
    return statistics.median((fn(n) - fn(1)) / (n - 1) for _ in range(repeats))


def batch_inference(folder: Path, rows: int, repeats: int) -> None:
    import pandas as pd  # noqa: PLC0415
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    from tinygrad_nb import nn  # noqa: PLC0415
    from tinygrad_nb.export import onnx as export_onnx  # noqa: PLC0415

    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
    path = folder / "mlp.onnx"
    export_onnx(model, tg.randn(8, 16), path, validate=False)
    features = np.random.default_rng(0).standard_normal((rows, 16)).astype(np.float32)
    csv = folder / "rows.csv"
    pd.DataFrame({f"f{i}": features[:, i] for i in range(16)}).to_csv(csv, index=False, float_format="%.9g")

    def plain() -> float:
        start = time.perf_counter()
        x = pd.read_csv(csv).to_numpy(np.float32)
        session = tg.runtime.load(path, max_batch=8192)
        name = session.inputs[0].name
        outs = [next(iter(session.run({name: x[i:i + 8192]}).values())) for i in range(0, rows, 8192)]
        y = np.concatenate(outs)
        pq.write_table(pa.table({f"out_{k}": y[:, k] for k in range(y.shape[1])}), folder / "plain.parquet")
        return time.perf_counter() - start

    def on_ray() -> float:
        out = folder / "ray_out"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        tg.runtime.map_dataset(csv, path, batch_size=8192, output=out, concurrency=2)
        return time.perf_counter() - start

    on_ray()  # warm-up: actor start-up and Ray Data's first plan
    plain_s = statistics.median(plain() for _ in range(repeats))
    ray_s = statistics.median(on_ray() for _ in range(repeats))
    print(f"batch inference, {rows} rows x 16 features (CSV in, Parquet out):")
    print(f"  plain loop    {rows / plain_s:12,.0f} rows/s")
    print(f"  Ray Data      {rows / ray_s:12,.0f} rows/s   ({plain_s / ray_s:.2f}x the plain loop)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--ray-trials", type=int, default=12)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        store = track.RunStore(folder / "runs.db")
        hand = per_trial(lambda n: by_hand(n, store), args.trials, args.repeats)
        local = per_trial(lambda n: swept(n, store, "local"), args.trials, args.repeats)
        print(f"per-trial time, tiny train_fn, one trial at a time (median of {args.repeats}):")
        print(f"  by hand (one track.Run each)  {hand * 1e3:8.2f} ms")
        print(f"  local executor                {local * 1e3:8.2f} ms   overhead {(local - hand) * 1e3:.2f} ms "
              f"per trial (target <= 50 ms); {local / hand:.1f}x by hand")
        if not args.no_ray:
            import ray  # noqa: PLC0415

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            swept(2, store, "ray")  # warm-up: Tune's first experiment, worker processes
            on_ray = per_trial(lambda n: swept(n, store, "ray"), args.ray_trials, args.repeats)
            print(f"  ray executor                  {on_ray * 1e3:8.2f} ms   overhead {(on_ray - hand) * 1e3:.2f} ms "
                  f"per trial (target <= 200 ms); {on_ray / local:.1f}x local")
            batch_inference(folder, args.rows, args.repeats)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
