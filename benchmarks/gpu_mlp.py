"""GPU step time: tinygrad_nb on cuda vs the same step hand-written in cupy vs PyTorch CUDA.

    python benchmarks/gpu_mlp.py [--rounds 30]

Target (issue 3): within 1.3x of hand-written cupy at batch 1024. Two workloads: the 784-256-128-10 MLP step
(batch 1024) and a matmul-heavy step (4096x4096 layers, batch 1024). GPU work is asynchronous, so every timed
call ends with a stream synchronize. Without a GPU the script says why and exits 0.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from _timing import interleaved_medians, optional_torch

import tinygrad_nb as tg
from tinygrad_nb import device as device_module
from tinygrad_nb import nn, optim
from tinygrad_nb.nn import functional as F

LR = 0.01


def cupy_step_fn(cp: object, sizes: tuple[int, ...], x: object, y: object) -> object:
    """Forward, softmax cross-entropy, backward and SGD for a ReLU MLP, written out in cupy."""
    rng = np.random.default_rng(0)
    params = [(cp.asarray(rng.uniform(-1, 1, (o, i)).astype(np.float32) / np.sqrt(i)), cp.zeros(o, cp.float32))
              for i, o in zip(sizes[:-1], sizes[1:])]
    n = x.shape[0]
    rows = cp.arange(n)

    def step() -> None:
        acts, pre = [x], []
        for k, (w, b) in enumerate(params):
            h = acts[-1] @ w.T + b
            pre.append(h)
            acts.append(cp.maximum(h, 0) if k < len(params) - 1 else h)
        logits = acts[-1]
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = cp.exp(shifted)
        d = exp / exp.sum(axis=1, keepdims=True)
        d[rows, y] -= 1
        d /= n
        for k in range(len(params) - 1, -1, -1):
            w, b = params[k]
            dw, db = d.T @ acts[k], d.sum(0)
            if k > 0:
                d = (d @ w) * (pre[k - 1] > 0)
            w -= LR * dw
            b -= LR * db
        cp.cuda.get_current_stream().synchronize()

    return step


def ours_step_fn(cp: object, sizes: tuple[int, ...], x: tg.Tensor, y: tg.Tensor) -> object:
    layers: list[nn.Module] = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(i, o), nn.ReLU()]
    model = nn.Sequential(*layers[:-1]).to("cuda")
    opt = optim.SGD(model.parameters(), lr=LR)

    def step() -> None:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        cp.cuda.get_current_stream().synchronize()

    return step


def torch_step_fn(torch: object, sizes: tuple[int, ...], x: object, y: object) -> object:
    layers: list[object] = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(i, o), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        torch.cuda.synchronize()

    return step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args()
    reason = device_module.cuda_unavailable_reason()
    if reason is not None:
        print(f"gpu_mlp: skipped, {reason}")
        return 0
    import cupy as cp  # noqa: PLC0415 - only with a GPU

    torch = optional_torch()
    if torch is not None and not torch.cuda.is_available():
        torch = None
    for title, sizes in (("MLP 784-256-128-10", (784, 256, 128, 10)),
                         ("matmul-heavy 4096-4096-4096-10", (4096, 4096, 4096, 10))):
        rng = np.random.default_rng(1)
        x_np = rng.standard_normal((args.batch, sizes[0])).astype(np.float32)
        y_np = rng.integers(0, 10, args.batch)
        contenders = {
            "tinygrad_nb": ours_step_fn(cp, sizes, tg.tensor(x_np, device="cuda"), tg.tensor(y_np, device="cuda")),
            "cupy by hand": cupy_step_fn(cp, sizes, cp.asarray(x_np), cp.asarray(y_np)),
        }
        if torch is not None:
            contenders["pytorch cuda"] = torch_step_fn(torch, sizes, torch.from_numpy(x_np).cuda(),
                                                       torch.from_numpy(y_np).cuda())
        medians = interleaved_medians(contenders, rounds=args.rounds)
        ours = medians["tinygrad_nb"]
        print(f"gpu_mlp: {title}, batch {args.batch}, SGD; median of {args.rounds} interleaved rounds")
        for name, seconds in medians.items():
            print(f"  {name:13s} {seconds * 1e3:8.3f} ms/step   tinygrad_nb / this = {ours / seconds:5.2f}x")
        ratio = ours / medians["cupy by hand"]
        print(f"  target <= 1.3x cupy by hand: {ratio:.2f}x ({'OK' if ratio <= 1.3 else 'ABOVE TARGET'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
