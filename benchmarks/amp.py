"""Mixed precision: what autocast costs when off, and what it saves and costs when on.

    python benchmarks/amp.py [--rounds 15] [--ops 1000] [--batch 128] [--width 512]

1. **Off-cost of the autocast hook.** ``Function.apply`` starts with ``if _autocast:``. The baseline is the same
   ``apply`` compiled from its source without those two lines, in this process; the two are timed in alternating
   rounds on the op-overhead workload (a chain of tiny ``y * 1.0001`` / ``y + 0.5`` ops, then backward). Target:
   ratio ~1.00 (one truthiness check of a module global, a few ns of ~1 us per op).
2. **An MLP training step** (``--width`` wide, 3 Linear layers, batch ``--batch``) in float32, under bf16 autocast
   and under fp16 autocast (+ GradScaler): activation memory (bytes of the arrays the graph saves for backward)
   and step time (forward, backward, SGD step), each as a ratio to float32. On CPU the memory ratio is the win;
   the time is not (matmuls run in float32 plus the casts, and numpy's 16-bit elementwise loops are slow). With
   ``--device cuda`` (cupy) the same on the GPU.
"""
from __future__ import annotations

import argparse
import gc
import inspect
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved_medians  # noqa: E402

import tinygrad_nb as tg  # noqa: E402
from tinygrad_nb import autograd, nn, optim  # noqa: E402
from tinygrad_nb.nn import functional as F  # noqa: E402


def apply_without_hook() -> classmethod:
    """``Function.apply`` as it would be without the autocast hook: its source minus the two hook lines."""
    source = textwrap.dedent(inspect.getsource(autograd.Function.apply.__func__))
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("if _autocast:"))
    del lines[start:start + 2]
    lines = [line for line in lines if not line.strip().startswith("@classmethod")]
    namespace: dict[str, object] = {}
    exec("\n".join(lines), autograd.__dict__, namespace)  # noqa: S102 - our own source, minus two lines
    return classmethod(namespace["apply"])


def op_chain(ops: int) -> None:
    x = tg.tensor(np.ones(4, np.float32), requires_grad=True)
    y = x
    for _ in range(ops // 2):
        y = y * 1.0001
        y = y + 0.5
    y.sum().backward()


def off_cost(ops: int, rounds: int) -> None:
    with_hook = autograd.Function.__dict__["apply"]
    without = apply_without_hook()

    def run(apply: classmethod) -> None:
        autograd.Function.apply = apply
        gc.disable()
        try:
            op_chain(ops)
        finally:
            gc.enable()
            autograd.Function.apply = with_hook

    medians = interleaved_medians({"without hook": lambda: run(without), "with hook": lambda: run(with_hook)},
                                  rounds=rounds, warmup=2, clock=time.thread_time)
    base = medians["without hook"]
    print(f"autocast off-cost ({ops} ops + backward, median of {rounds} interleaved rounds, thread CPU time)")
    for name, seconds in medians.items():
        print(f"  {name:13s} {seconds / ops * 1e6:7.3f} us/op   {seconds / base:5.3f}x")


def saved_bytes(root: tg.Tensor) -> int:
    """Bytes of the distinct arrays the graph of ``root`` keeps for backward (its activation memory)."""
    seen: set[int] = set()
    total = 0
    stack, visited = [root], set()
    while stack:
        t = stack.pop()
        ctx = t._ctx
        if ctx is None or id(ctx) in visited:
            continue
        visited.add(id(ctx))
        for a in ctx.saved if isinstance(ctx.saved, tuple) else ():
            if a is not None and hasattr(a, "nbytes"):
                owner = a.base if getattr(a, "base", None) is not None else a
                if id(owner) not in seen:
                    seen.add(id(owner))
                    total += owner.nbytes
        stack.extend(p for p in ctx.parents if isinstance(p, tg.Tensor))
    return total


def mlp_steps(batch: int, width: int, rounds: int, device: str) -> None:
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                          nn.Linear(width, 10)).to(device)
    opt = optim.SGD(model.parameters(), lr=1e-3)
    x = tg.randn(batch, width, device=device)
    y = tg.randint(0, 10, (batch,), device=device)
    modes = {"float32": None, "bf16 autocast": tg.bfloat16, "fp16 autocast": tg.float16}
    scalers = {name: tg.amp.GradScaler(enabled=low is not None and low == tg.float16) for name, low in modes.items()}
    memory = {}
    for name, low in modes.items():
        with tg.autocast(device if device == "cpu" else "cuda", dtype=low, enabled=low is not None):
            loss = F.cross_entropy(model(x), y)
        memory[name] = saved_bytes(loss)
        del loss

    def step(name: str) -> None:
        low = modes[name]
        with tg.autocast(device if device == "cpu" else "cuda", dtype=low, enabled=low is not None):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        scaler = scalers[name]
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device != "cpu":
            tg.tensor([0.0], device=device).numpy()  # synchronise

    medians = interleaved_medians({name: (lambda name=name: step(name)) for name in modes}, rounds=rounds,
                                  warmup=2)
    print(f"MLP {width}-{width}-{width}-10, batch {batch}, on {device}: forward + backward + SGD step "
          f"(median of {rounds} interleaved rounds)")
    print(f"  {'mode':14s} {'saved for backward':>19s} {'ratio':>6s}  {'step':>9s} {'ratio':>6s}")
    for name in modes:
        print(f"  {name:14s} {memory[name] / 2**20:15.2f} MiB {memory[name] / memory['float32']:6.2f}  "
              f"{medians[name] * 1e3:6.2f} ms {medians[name] / medians['float32']:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    off_cost(args.ops, args.rounds * 4)
    mlp_steps(args.batch, args.width, args.rounds, args.device)


if __name__ == "__main__":
    main()
