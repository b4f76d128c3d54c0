"""``fit``: a plain training loop that shows a live dashboard in Jupyter and a text progress line elsewhere.

    history = fit(model, loader, F.cross_entropy, opt, epochs=5, val_loader=val, metrics=["accuracy"])
    history["val_acc"]            # one value per epoch

Per step: forward, loss, ``zero_grad``, backward, ``step``; the loss is logged to the dashboard's LossCurve (and to
``run`` when given). Per epoch: the mean training loss and metrics, then the validation loss and metrics under
``no_grad`` in eval mode. When training ends, is interrupted, or meets a non-finite loss, the dashboard is swapped for
its static PNG before the exception (if any) propagates.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ..autograd import no_grad
from ..debug.guard import check_finite
from ..debug.stats import to_numpy
from . import lab_comm
from .text_progress import TextProgress
from .widgets import Dashboard, in_notebook

Metric = Callable[[Any, Any], float]


def accuracy(output: Any, target: Any) -> float:
    """Fraction of rows whose arg-max matches the integer class target."""
    predicted = to_numpy(output.data).argmax(axis=-1)
    return float(np.mean(predicted == to_numpy(target.data).reshape(predicted.shape)))


def metric_functions(metrics: Sequence[str | Metric] | dict[str, Metric] | str | None) -> dict[str, Metric]:
    """``["accuracy"]`` / ``"acc"`` / ``{name: fn(output, target) -> float}`` / a list of functions -> ``{name: fn}``."""
    if metrics is None:
        return {}
    if isinstance(metrics, dict):
        return dict(metrics)
    if isinstance(metrics, str):
        metrics = [metrics]
    functions: dict[str, Metric] = {}
    for m in metrics:
        if m in ("acc", "accuracy"):
            functions["acc"] = accuracy
        elif callable(m):
            functions[getattr(m, "__name__", "metric")] = m
        else:
            raise ValueError(f"fit: unknown metric {m!r}; use 'accuracy' or a function(output, target) -> float")
    return functions


class History:
    """Per-epoch values: ``history["val_loss"]`` is a list with one number per epoch; ``history.epochs`` the dicts."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def __getitem__(self, name: str) -> list[float]:
        return [e[name] for e in self.epochs if name in e]

    @property
    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.epochs:
            seen.update(dict.fromkeys(e))
        return list(seen)

    def __repr__(self) -> str:
        return f"History(metrics: {', '.join(self.names) or 'none'})"


def evaluate(model: Any, loader: Iterable[Any], loss_fn: Callable[[Any, Any], Any],
             metrics: dict[str, Metric]) -> dict[str, float]:
    """Mean loss and metrics over ``loader`` (weighted by batch size), in eval mode without gradients."""
    was_training = getattr(model, "training", True)
    model.eval()
    totals = dict.fromkeys(["loss", *metrics], 0.0)
    seen = 0
    with no_grad():
        for x, y in loader:
            out = model(x)
            n = int(y.shape[0])
            totals["loss"] += float(loss_fn(out, y).item()) * n
            for name, fn in metrics.items():
                totals[name] += fn(out, y) * n
            seen += n
    model.train(was_training)
    return {name: total / max(seen, 1) for name, total in totals.items()}


def fit(model: Any, loader: Iterable[Any], loss_fn: Callable[[Any, Any], Any], optimizer: Any, epochs: int = 1,
        val_loader: Iterable[Any] | None = None, metrics: Sequence[str | Metric] | dict[str, Metric] | str | None = None,
        run: Any = None, show: bool | None = None, every: int = 10, stop_on_nan: bool = True) -> History:
    """Train ``model`` for ``epochs`` passes over ``loader`` (batches of ``(x, y)``); see the module docstring.

    ``metrics``: ``["accuracy"]`` and/or functions ``fn(output, target) -> float``. ``run``: a ``track.Run`` that gets
    ``loss`` per step and the epoch values (``val_loss``, ``acc``, ``val_acc`` ...) per epoch (it is not finished
    here). ``show``: the live dashboard (default: when running in Jupyter); otherwise a text progress line.
    ``every``: gradient and activation statistics on one step in ``every``. ``stop_on_nan``: raise
    ``NonFiniteError`` at the first non-finite loss.
    """
    functions = metric_functions(metrics)
    live = in_notebook() if show is None else show
    dashboard = Dashboard.for_model(model, every=every, show=True) if live else None
    curve = dashboard.loss if dashboard is not None else None
    steps_per_epoch = len(loader) if hasattr(loader, "__len__") else None
    progress = None if live else TextProgress(epochs, steps_per_epoch)
    history = History()
    step = 0
    loop = lab_comm.loop_started("fit") if run is None else None  # the Lab status bar's steps/s (a run has its own)
    try:
        for epoch in range(epochs):
            model.train()
            totals = dict.fromkeys(["loss", *functions], 0.0)
            seen = 0
            for i, (x, y) in enumerate(loader):
                out = model(x)
                loss = loss_fn(out, y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                value = float(loss.item())
                if curve is not None:
                    curve.log({"loss": value}, step=step)
                if run is not None:
                    run.log({"loss": value}, step=step)
                if value - value != 0.0 and stop_on_nan:  # NaN or inf
                    check_finite(loss, step=step)
                n = int(y.shape[0])
                totals["loss"] += value * n
                for name, fn in functions.items():
                    totals[name] += fn(out, y) * n
                seen += n
                if progress is not None:
                    progress.update(epoch, i, {"loss": value})
                step += 1
                if loop is not None:
                    loop.step = step
            values = {name: total / max(seen, 1) for name, total in totals.items()}
            if val_loader is not None:
                values.update({f"val_{k}": v for k, v in evaluate(model, val_loader, loss_fn, functions).items()})
            per_epoch = {k: v for k, v in values.items() if k != "loss"}  # the per-step loss is plotted already
            if curve is not None and per_epoch:
                curve.log(per_epoch, step=max(step - 1, 0))
            if run is not None:
                if per_epoch:
                    run.log(per_epoch, step=max(step - 1, 0))
                run.epoch_end()
            history.epochs.append(values)
            if progress is not None:
                progress.epoch_end(epoch, values)
    finally:
        lab_comm.loop_finished(loop)
        if dashboard is not None:
            dashboard.finish()
        if progress is not None:
            progress.close()
    return history
