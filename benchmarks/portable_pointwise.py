"""What portable mode's pointwise kernels cost, and that they cost nothing when the mode is off.

    python benchmarks/portable_pointwise.py [--rounds 15]

1. Mode off: a pointwise op's forward + backward on a one-element tensor (where per-op overhead dominates) against
   the same op built the way it was before portable mode covered it (``ctx.xp`` directly, no flag check), the two
   alternating in rounds; the median ratio should be 1 within noise.
2. Mode on: each portable kernel on a 128x256 float32 array against numpy's own (SIMD) function, medians of repeats.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import tinygrad_nb as tg
from tinygrad_nb import portable
from tinygrad_nb.autograd import Function
from tinygrad_nb.ops import pointwise


def unchecked_sin() -> type[Function]:
    """Sin as it was built before: forward and derivative on ``ctx.xp``, no portable-mode check."""
    def fwd(ctx, a):  # noqa: ANN001, ANN202
        out = ctx.xp.sin(a)
        ctx.save_for_backward(a, out)
        return out

    def bwd(ctx, g):  # noqa: ANN001, ANN202
        a, _ = ctx.saved_tensors
        return g * ctx.xp.cos(a)

    return type("Sin", (Function,), {"forward": staticmethod(fwd), "backward": staticmethod(bwd),
                                     "__module__": pointwise.__name__})


def per_call(fn, number: int) -> float:  # noqa: ANN001
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds

    x = tg.tensor(np.float32([0.5]), requires_grad=True)
    seed = tg.tensor(np.float32([1.0]))
    contenders = {"before (ctx.xp)": unchecked_sin(), "now (flag check)": pointwise.Sin}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, op in contenders.items():
            times[name].append(per_call(lambda op=op: op.apply(x).backward(seed), 2000) * 1e6)
    before, now = (statistics.median(times[name]) for name in contenders)
    print(f"mode off, Sin forward+backward, 1 element: before {before:.2f} us, now {now:.2f} us, "
          f"ratio {now / before:.3f} (median of {rounds} alternating rounds)")

    a = np.random.default_rng(0).uniform(-0.9, 0.9, (128, 256)).astype(np.float32)
    pairs = [("sin", np.sin), ("cos", np.cos), ("tan", np.tan), ("arcsin", np.arcsin), ("arctan", np.arctan),
             ("sinh", np.sinh), ("arcsinh", np.arcsinh), ("arctanh", np.arctanh), ("log1p", np.log1p),
             ("log2", np.log2), ("exp2", np.exp2), ("erf", None), ("exp", np.exp), ("tanh", np.tanh)]
    print("mode on, 128x256 float32:")
    positive = np.abs(a) + np.float32(0.1)
    for name, reference in pairs:
        x = positive if name == "log2" else a
        ours = statistics.median(per_call(lambda name=name: getattr(portable, name)(x), 10) for _ in range(5))
        if reference is None:
            print(f"  {name:8s} portable {ours * 1e3:7.3f} ms (numpy has no {name})")
            continue
        theirs = statistics.median(per_call(lambda f=reference: f(x), 50) for _ in range(5))
        print(f"  {name:8s} portable {ours * 1e3:7.3f} ms, numpy {theirs * 1e3:6.3f} ms, {ours / theirs:5.1f}x")


if __name__ == "__main__":
    main()
