"""Attention: the fused ``scaled_dot_product_attention`` primitive vs the same attention composed of primitives
(matmul, scale, additive causal mask, softmax, matmul), and vs PyTorch's when installed.

    python benchmarks/attention.py [--rounds 30]

Forward + backward of causal self-attention at a tiny-GPT shape (batch 16, 4 heads, 64 positions, head dim 16,
float32). All contenders are timed in interleaved rounds (see _timing.py) in one run; medians and ratios are printed.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved_medians, optional_torch  # noqa: E402

import tinygrad_nb as tg  # noqa: E402
from tinygrad_nb.nn import functional as F  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    batch, heads, length, dim = 16, 4, 64, 16
    arrays = [np.random.default_rng(i).standard_normal((batch, heads, length, dim)).astype(np.float32)
              for i in range(3)]
    q, k, v = (tg.tensor(a, requires_grad=True) for a in arrays)
    mask = tg.tensor(np.triu(np.full((length, length), -np.inf, np.float32), 1))

    def fused() -> None:
        F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()

    def composed() -> None:
        scores = (q @ k.transpose(-2, -1)) * (1 / math.sqrt(dim)) + mask
        (scores.softmax(-1) @ v).sum().backward()

    contenders = {"fused primitive": fused, "composed": composed}
    torch = optional_torch()
    if torch is not None:
        tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in arrays)

        def reference() -> None:
            torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True).sum().backward()
        contenders["torch"] = reference
    times = interleaved_medians(contenders, rounds=args.rounds)
    base = times["fused primitive"]
    print(f"causal attention fwd+bwd, (B, H, T, D) = {(batch, heads, length, dim)}, float32")
    for name, seconds in times.items():
        print(f"  {name:16s} {seconds * 1e3:8.2f} ms   {seconds / base:5.2f}x the fused primitive")


if __name__ == "__main__":
    main()
