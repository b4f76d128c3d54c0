"""``tinygrad-nb demo``: train a small MLP on the bundled 8x8 digits and show progress as it goes.

Everything a first user touches is here in about sixty lines: a bundled dataset turned into tensors, a shuffled
DataLoader, an ``nn.Sequential`` model, Adam, the training loop, and evaluation under ``no_grad``. It runs in a few
seconds on two cores and reaches about 97% test accuracy. The run is recorded in the run store, so
``tinygrad-nb runs ls`` lists it.
"""
from __future__ import annotations

import argparse
import sys
import time

import tinygrad_nb as tg
from tinygrad_nb import datasets, nn, optim, track
from tinygrad_nb.argtypes import positive_float, positive_int
from tinygrad_nb.data import DataLoader, TensorDataset
from tinygrad_nb.nn import functional as F


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=positive_int, default=15, help="passes over the training set (default 15)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for the split, initialisation and shuffling (default 0)")
    parser.add_argument("--lr", type=positive_float, default=3e-3, help="Adam learning rate (default 3e-3)")
    parser.add_argument("--store", default=None, help="run store file (default ./.tinygrad_nb/runs.db)")


def accuracy(model: nn.Module, x: tg.Tensor, y: tg.Tensor) -> float:
    with tg.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean().item())


def main(args: argparse.Namespace) -> int:
    tg.manual_seed(args.seed)
    x, y = datasets.load("digits").to_tensors(target="digit")
    x = x / 16.0  # pixel intensities are 0..16
    order = tg.randperm(len(y))
    test_idx, train_idx = order[:360], order[360:]
    loader = DataLoader(TensorDataset(x[train_idx], y[train_idx]), batch_size=64, shuffle=True)

    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))
    opt = optim.Adam(model.parameters(), lr=args.lr)
    print(f"digits: {len(train_idx)} train / {len(test_idx)} test images of 8x8 pixels, 10 classes")
    print(model)
    config = {"epochs": args.epochs, "seed": args.seed, "lr": args.lr}
    with track.Run(name="demo", project="digits", config=config, store=args.store) as run:
        _train(model, opt, loader, x[test_idx], y[test_idx], args, run)
    return 0


def _train(model: nn.Module, opt: optim.Optimizer, loader: DataLoader, x_test: tg.Tensor, y_test: tg.Tensor,
           args: argparse.Namespace, run: track.Run) -> None:
    live = sys.stdout.isatty()  # redraw one line in a terminal; one line per epoch in logs and notebooks
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        seen = correct = 0
        total_loss = 0.0
        for step, (xb, yb) in enumerate(loader, 1):
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(yb)
            total_loss += loss.item() * len(yb)
            correct += int((logits.argmax(dim=1) == yb).sum().item())
            if live:
                print(f"\repoch {epoch:2d}/{args.epochs}  step {step:2d}/{len(loader)}  "
                      f"loss {total_loss / seen:.4f}  train acc {correct / seen:6.2%}", end="", flush=True)
        model.eval()
        test_acc = accuracy(model, x_test, y_test)
        run.log({"loss": total_loss / seen, "train_acc": correct / seen, "test_acc": test_acc}, step=epoch)
        line = (f"epoch {epoch:2d}/{args.epochs}  loss {total_loss / seen:.4f}  train acc {correct / seen:6.2%}  "
                f"test acc {test_acc:6.2%}")
        print(("\r" + line + " " * 8) if live else line, flush=True)
    print(f"done in {time.perf_counter() - start:.1f}s: test accuracy {accuracy(model, x_test, y_test):.2%}")
