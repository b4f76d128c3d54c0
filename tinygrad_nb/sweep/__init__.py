"""Sweeps: a grid or a search of trials, each one a tracked run, on a local process pool or on Ray Tune.

    import tinygrad_nb as tg

    def train(config, run):                      # ordinary code that logs through a track.Run
        ...
        run.log({"val_loss": v})

    result = tg.sweep(train, {"lr": [0.1, 0.01], "hidden": [32, 64]}, metric="val_loss", early_stop="median")
    result.best                                   # TrialResult(trial=..., config=..., value=...)
    tg.sweep.replay(result.best.run_id, train)    # the same config and seed, here

The module is callable: ``tg.sweep(...)`` is :func:`sweep`. See docs/sweeps.md.
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from .driver import SweepResult, TrialResult, replay, sweep
from .space import Choice, RandInt, SpaceError, Uniform, choice, grid, loguniform, randint, trial_seed, uniform
from .worker import TrialPruned, TrialRun

__all__ = ["Choice", "RandInt", "SpaceError", "SweepResult", "TrialPruned", "TrialResult", "TrialRun", "Uniform",
           "choice", "grid", "loguniform", "randint", "replay", "sweep", "trial_seed", "uniform"]


class _CallableModule(types.ModuleType):
    """``tg.sweep(train_fn, space, ...)`` runs a sweep; ``tg.sweep.grid``, ``tg.sweep.replay``... are its parts."""

    def __call__(self, *args: Any, **kwargs: Any) -> SweepResult:
        return sweep(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # pickled by name, as cloudpickle does plain modules (it does not know this subclass): a train_fn that
        # refers to ``tg.sweep`` can still be shipped to spawned workers and Ray
        return importlib.import_module, (self.__name__,)


sys.modules[__name__].__class__ = _CallableModule
