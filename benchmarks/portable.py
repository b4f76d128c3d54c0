"""What deterministic("portable") costs: the MLP training step of benchmarks/mlp_step.py in portable mode vs plain
deterministic mode, measured in the same run.

    python benchmarks/portable.py [--rounds 15] [--batch 128]

Target (issue 20): portable <= 4x plain deterministic mode. Both run with the BLAS pinned to one thread (plain
deterministic mode's default, so the comparison is like for like; portable mode itself does not need the pin). The
two contenders train their own copy of the same model and alternate in rounds: each round enters the mode, runs
``settle`` untimed steps, times ``per_round`` steps back to back, and leaves the mode. Also printed: the matrix
products alone (float32 BLAS vs the correctly rounded product) for the step's six shapes, and how many outputs
needed the exact path, and the step with Tanh activations (which run the portable exp kernels) instead of ReLU.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from mlp_step import LR, initial_weights, make_batch, tinygrad_model, tinygrad_step

import tinygrad_nb as tg
from tinygrad_nb import nn, optim, portable

SETTLE, PER_ROUND = 2, 4


def model_with(activation: str) -> tuple[nn.Module, optim.Optimizer]:
    """benchmarks/mlp_step.py's model (ReLU), or the same weights with Tanh (which runs the exp kernels)."""
    model, opt = tinygrad_model(initial_weights())
    if activation == "tanh":
        model = nn.Sequential(*[nn.Tanh() if isinstance(m, nn.ReLU) else m for m in model])
    return model, opt


def step_medians(rounds: int, batch: int, activation: str = "relu") -> dict[str, float]:
    x_np, y_np = make_batch(batch)
    x, y = tg.tensor(x_np), tg.tensor(y_np)
    contenders = {mode: model_with(activation) for mode in ("plain deterministic", "portable")}
    flags: dict[str, bool | str] = {"plain deterministic": True, "portable": "portable"}
    samples: dict[str, list[float]] = {mode: [] for mode in contenders}
    for _ in range(rounds + 1):  # the first round is warm-up
        for mode, (model, opt) in contenders.items():
            with tg.deterministic(flags[mode], blas_threads=1):
                for _ in range(SETTLE):
                    tinygrad_step(model, opt, x, y)
                start = time.perf_counter()
                for _ in range(PER_ROUND):
                    tinygrad_step(model, opt, x, y)
                samples[mode].append((time.perf_counter() - start) / PER_ROUND)
    return {mode: statistics.median(values[1:]) for mode, values in samples.items()}


def matmul_medians(batch: int, repeats: int = 30) -> tuple[float, float, int, int]:
    """(float32 BLAS seconds, portable seconds, exact-path outputs, outputs) over the step's six products."""
    rng = np.random.default_rng(0)
    sizes = (784, 256, 128, 10)
    shapes = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        shapes += [((batch, fan_in), (fan_in, fan_out)), ((batch, fan_out), (fan_out, fan_in)),
                   ((fan_out, batch), (batch, fan_in))]  # forward, dx, dW
    operands = [(rng.normal(size=a).astype(np.float32), (rng.normal(size=b) / np.sqrt(b[0])).astype(np.float32))
                for a, b in shapes]
    exact_calls = [0]
    real_exact = portable._recompute

    def counting(out: np.ndarray, todo: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        exact_calls[0] += len(todo)
        real_exact(out, todo, a, b)

    portable._recompute = counting
    try:
        outputs = sum(a.shape[0] * b.shape[1] for a, b in operands)
        for a, b in operands:
            portable.matmul(a, b)
        exact = exact_calls[0]
        timings = {"blas": [], "portable": []}
        for _ in range(repeats):
            for name, fn in (("blas", np.matmul), ("portable", portable.matmul)):
                start = time.perf_counter()
                for a, b in operands:
                    fn(a, b)
                timings[name].append(time.perf_counter() - start)
    finally:
        portable._recompute = real_exact
    return statistics.median(timings["blas"]), statistics.median(timings["portable"]), exact, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    medians = step_medians(args.rounds, args.batch)
    plain, ours = medians["plain deterministic"], medians["portable"]
    print(f"portable: 784-256-128-10 MLP, batch {args.batch}, SGD lr {LR}, BLAS pinned to 1 thread; medians of "
          f"{args.rounds} rounds of {PER_ROUND} steps after {SETTLE} untimed ones")
    print(f"  plain deterministic {plain * 1e3:7.3f} ms/step")
    print(f"  portable            {ours * 1e3:7.3f} ms/step   portable / plain = {ours / plain:5.2f}x")
    ratio = ours / plain
    print(f"  target <= 4x plain deterministic mode: {ratio:.2f}x ({'OK' if ratio <= 4 else 'ABOVE TARGET'})")
    tanh = step_medians(args.rounds, args.batch, "tanh")
    print(f"  with Tanh instead of ReLU: plain {tanh['plain deterministic'] * 1e3:.3f} ms, portable "
          f"{tanh['portable'] * 1e3:.3f} ms/step ({tanh['portable'] / tanh['plain deterministic']:.2f}x)")
    with tg.deterministic(True, blas_threads=1):
        blas, exact_product, exact, outputs = matmul_medians(args.batch)
    print(f"  the step's six matrix products alone: float32 BLAS {blas * 1e3:.3f} ms, correctly rounded "
          f"{exact_product * 1e3:.3f} ms ({exact_product / blas:.2f}x); exact path for {exact} of {outputs} outputs")


if __name__ == "__main__":
    main()
