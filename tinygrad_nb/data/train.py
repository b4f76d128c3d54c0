"""``tinygrad-nb train data.csv --target COLUMN``: train an MLP on any CSV file, no code.

The whole "no boilerplate" path: read the CSV (types inferred), pick a classifier for a category, bool or small-int
target and a regressor otherwise, one-hot the category features, standardize, split off a validation set
deterministically (``--seed``), train with Adam and print one line per epoch and the final metrics. The run is
recorded in the run store (``tinygrad-nb runs ls`` lists it). A malformed file prints its error (file, line, column,
value) and exits with status 2, and so does a bad option value (argparse's usage error).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import tinygrad_nb as tg
from tinygrad_nb import nn, optim, track
from tinygrad_nb.argtypes import fraction, positive_float, positive_int
from tinygrad_nb.data import CSVError, DataLoader, Table, TensorDataset, read_csv
from tinygrad_nb.nn import functional as F


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("csv", help="the CSV file (header line with column names)")
    parser.add_argument("--target", required=True, help="the column to predict")
    parser.add_argument("--epochs", type=positive_int, default=20, help="passes over the training rows (default 20)")
    parser.add_argument("--lr", type=positive_float, default=3e-3, help="Adam learning rate (default 3e-3)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="rows per step (default 32)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for the split, initialisation and shuffling (default 0)")
    parser.add_argument("--hidden", type=positive_int, default=64,
                        help="units in each of the two hidden layers (default 64)")
    parser.add_argument("--val-fraction", type=fraction, default=0.2,
                        help="share of the rows held out for validation, in [0, 1); 0 holds out none (default 0.2)")
    parser.add_argument("--task", choices=("classification", "regression"), default=None,
                        help="override the choice made from the target's type")
    missing = parser.add_mutually_exclusive_group()
    missing.add_argument("--missing", choices=("error", "drop_row", "mean"), default="error",
                         help="what to do with missing values: report them (default), drop their rows, or use the "
                              "column mean")
    missing.add_argument("--fill", metavar="VALUE", type=_fill_value, default=None,
                         help="replace missing values with VALUE (a number in numeric columns; in category columns "
                              "a category of its own)")
    parser.add_argument("--store", default=None, help="run store file (default ./.tinygrad_nb/runs.db)")


# read_csv's and Table's hints name their Python arguments; the command line has options for them.
CLI_HINTS = [
    ('missing="drop_row", "mean" or ("fill", value)', "--missing drop_row, --missing mean or --fill VALUE"),
    ('"drop_row" or ("fill", value)', "--missing drop_row or --fill VALUE"),
    ("pass task='regression' or read it with dtypes={...: 'category'}", "pass --task regression"),
    ("pass task='classification'", "pass --task classification"),
]


def _fill_value(text: str) -> int | float | str:
    """``--fill`` as read_csv's ``fill=``: an int or a float when it reads as one, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _cli_message(error: BaseException) -> str:
    message = str(error)
    for python, cli in CLI_HINTS:
        message = message.replace(python, cli)
    return message


def main(args: argparse.Namespace) -> int:
    try:
        table = read_csv(args.csv, target=args.target, missing=args.missing, fill=args.fill)
        task = args.task or table.task()
        X, y = table.to_tensors(one_hot=True, task=task)
    except FileNotFoundError:
        print(f"error: {args.csv}: no such file", file=sys.stderr)
        return 2
    except (CSVError, OSError, ValueError, TypeError) as e:
        print(f"error: {_cli_message(e)}", file=sys.stderr)
        return 2
    if len(y) < 2:
        print(f"error: {args.csv}: need at least 2 rows to train, found {len(y)}", file=sys.stderr)
        return 2
    tg.manual_seed(args.seed)
    train_idx, val_idx = _split(len(y), args.val_fraction)
    X = _standardize(X.numpy(), train_idx)
    config = {k: v for k, v in vars(args).items() if k not in ("command", "store")} | {"task": task}
    with track.Run(name=f"train {Path(args.csv).name}", config=config, store=args.store) as run:
        if task == "classification":
            return _classify(table, X, y.numpy(), train_idx, val_idx, args, run)
        return _regress(table, X, y.numpy(), train_idx, val_idx, args, run)


def _split(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """A random (seeded) train/validation split. Nothing is held out with fewer than 10 rows or when the fraction
    rounds to no rows; at least one row is always left to train on."""
    order = tg.randperm(n).numpy()
    n_val = min(round(n * fraction), n - 1)
    if n < 10 or n_val == 0:
        return order, order[:0]
    return order[n_val:], order[:n_val]


def _standardize(X: np.ndarray, train_idx: np.ndarray) -> np.ndarray:
    mean = X[train_idx].mean(axis=0)
    std = X[train_idx].std(axis=0)
    return ((X - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def _mlp(n_in: int, n_out: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))


def _describe(table: Table, X: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, what: str) -> None:
    held_out = f"{len(train_idx)} train / {len(val_idx)} validation rows" if len(val_idx) else \
        f"{len(train_idx)} rows, none held out for validation"
    print(f"{table.source}: {table.num_rows} rows, {X.shape[1]} features -> {table.target} ({what}); {held_out}")


def _classify(table: Table, X: np.ndarray, labels: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
              args: argparse.Namespace, run: track.Run) -> int:
    classes, y = np.unique(labels, return_inverse=True)  # class indices 0..k-1 whatever the labels are
    names = table.vocabularies.get(table.target) or [str(c) for c in classes]
    _describe(table, X, train_idx, val_idx, f"{len(classes)} classes: {', '.join(names[:6])}"
              f"{', ...' if len(names) > 6 else ''}; classification")
    x_all, y_all = tg.tensor(X), tg.tensor(y.astype(np.int64))
    model = _mlp(X.shape[1], len(classes), args.hidden)

    def accuracy(idx: np.ndarray) -> float:
        with tg.no_grad():
            return float((model(x_all[idx]).argmax(dim=1) == y_all[idx]).float().mean().item())

    def loss_fn(out: tg.Tensor, target: tg.Tensor) -> tg.Tensor:
        return F.cross_entropy(out, target)

    def metrics() -> dict[str, float]:
        found = {"train_acc": accuracy(train_idx)}
        if len(val_idx):
            found["val_acc"] = accuracy(val_idx)
        return found

    def report(found: dict[str, float]) -> str:
        val = f"  val acc {found['val_acc']:6.2%}" if "val_acc" in found else ""
        return f"loss {found['loss']:.4f}  train acc {found['train_acc']:6.2%}{val}"

    _fit(model, x_all[train_idx], y_all[train_idx], loss_fn, metrics, report, args, run)
    train = f"train accuracy {accuracy(train_idx):.2%} ({len(train_idx)} rows)"
    print(f"final: val accuracy {accuracy(val_idx):.2%} ({len(val_idx)} rows), {train}" if len(val_idx) else
          f"final: {train}; no rows were held out for validation")
    return 0


def _regress(table: Table, X: np.ndarray, target: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
             args: argparse.Namespace, run: track.Run) -> int:
    _describe(table, X, train_idx, val_idx, f"{table.types[table.target]}; regression")
    mean, std = float(target[train_idx].mean()), float(target[train_idx].std()) or 1.0
    x_all = tg.tensor(X)
    y_scaled = tg.tensor(((target - mean) / std).astype(np.float32).reshape(-1, 1))
    model = _mlp(X.shape[1], 1, args.hidden)

    def scores(idx: np.ndarray) -> tuple[float, float]:
        with tg.no_grad():
            pred = model(x_all[idx]).numpy().reshape(-1) * std + mean
        truth = target[idx].astype(np.float64)
        rmse = math.sqrt(float(np.mean((pred - truth) ** 2)))
        total = float(np.sum((truth - truth.mean()) ** 2))
        r2 = 1.0 - float(np.sum((pred - truth) ** 2)) / total if total > 0 else float("nan")
        return rmse, r2

    def loss_fn(out: tg.Tensor, y: tg.Tensor) -> tg.Tensor:
        return F.mse_loss(out, y)

    def metrics() -> dict[str, float]:
        rmse, r2 = scores(val_idx if len(val_idx) else train_idx)
        prefix = "val" if len(val_idx) else "train"
        return {f"{prefix}_rmse": rmse, f"{prefix}_r2": r2}

    def report(found: dict[str, float]) -> str:
        prefix = "val" if len(val_idx) else "train"
        return f"loss {found['loss']:.4f}  {prefix} RMSE {found[prefix + '_rmse']:.4g}  {prefix} R² " \
               f"{found[prefix + '_r2']:.3f}"

    _fit(model, x_all[train_idx], y_scaled[train_idx], loss_fn, metrics, report, args, run)
    train_rmse, train_r2 = scores(train_idx)
    train = f"train RMSE {train_rmse:.4g}  train R² {train_r2:.3f} ({len(train_idx)} rows)"
    if len(val_idx):
        rmse, r2 = scores(val_idx)
        print(f"final: val RMSE {rmse:.4g}  val R² {r2:.3f} ({len(val_idx)} rows), {train}")
    else:
        print(f"final: {train}; no rows were held out for validation")
    return 0


def _fit(model: nn.Module, x: tg.Tensor, y: tg.Tensor, loss_fn: Any, metrics: Any, report: Any,
         args: argparse.Namespace, run: track.Run) -> None:
    """The training loop: Adam over shuffled batches; each epoch's loss and ``metrics()`` go to the run and to one
    progress line (``report``)."""
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=True)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        total, seen = 0.0, 0
        for xb, yb in loader:
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(yb)
            seen += len(yb)
        model.eval()
        found = {"loss": total / seen} | metrics()
        run.log(found, step=epoch)
        print(f"epoch {epoch:3d}/{args.epochs}  {report(found)}", flush=True)
    print(f"trained {args.epochs} epochs in {time.perf_counter() - start:.1f}s")
