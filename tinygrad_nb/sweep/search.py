"""Searches: which config each trial gets (grid, random, optuna), and early stopping through Optuna's pruners.

A search hands out trials with :meth:`Search.ask` (``(trial id, config)``, or None when it has no more) and hears
how each ended with :meth:`Search.tell`. Trial ids count from 0 in the order trials are asked for. Grid and random
searches know every config up front; optuna's sampler (TPE, seeded with the sweep seed) learns from the trials
told so far, so its configs depend on which trials had ended when a new one was asked for.

Early stopping on the local executor goes through an Optuna pruner (``"asha"``: SuccessiveHalvingPruner,
``"median"``: MedianPruner, or any ``optuna.pruners.BasePruner``), run in the driver on a study that records each
trial's reported values. The Ray executor uses Ray Tune's schedulers instead (see :mod:`.ray_executor`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .space import SpaceError, grid_configs, normalize, sample, suggest


class Search:
    """Base class: a fixed list of configs handed out in order."""

    name = "fixed"

    def __init__(self, configs: list[dict[str, Any]]):
        self.configs = configs
        self.next_id = 0

    @property
    def total(self) -> int | None:
        return len(self.configs)

    def ask(self) -> tuple[int, dict[str, Any]] | None:
        if self.next_id >= len(self.configs):
            return None
        trial = self.next_id
        self.next_id += 1
        return trial, dict(self.configs[trial])

    def tell(self, trial: int, value: float | None, status: str) -> None:
        """Trial ``trial`` ended with ``status`` ("finished", "pruned", "failed", "nan") and best ``value``."""


class GridSearch(Search):
    name = "grid"

    def __init__(self, space: Mapping[str, Any], trials: int | None = None):
        configs = grid_configs(space)
        if trials is not None:
            if trials > len(configs):
                raise SpaceError(f"grid search: trials={trials} but the grid has only {len(configs)} points")
            configs = configs[:trials]
        super().__init__(configs)


class RandomSearch(Search):
    name = "random"

    def __init__(self, space: Mapping[str, Any], trials: int, seed: int):
        super().__init__([sample(space, seed, i) for i in range(trials)])


class OptunaSearch(Search):
    """Configs from an Optuna sampler (TPE seeded with the sweep seed unless ``sampler`` is given)."""

    name = "optuna"

    def __init__(self, space: Mapping[str, Any], trials: int, seed: int, mode: str, sampler: Any = None,
                 pruner: Any = None):
        optuna = _optuna("search='optuna'")
        super().__init__([])
        self.space = normalize(space)
        self.trials = trials
        self.study = _study(optuna, mode, sampler or optuna.samplers.TPESampler(seed=seed), pruner)
        self.optuna_trials: dict[int, Any] = {}

    @property
    def total(self) -> int | None:
        return self.trials

    def ask(self) -> tuple[int, dict[str, Any]] | None:
        if self.next_id >= self.trials:
            return None
        trial = self.next_id
        self.next_id += 1
        optuna_trial = self.study.ask()
        self.optuna_trials[trial] = optuna_trial
        return trial, suggest(self.space, optuna_trial)

    def tell(self, trial: int, value: float | None, status: str) -> None:
        optuna_trial = self.optuna_trials.pop(trial, None)
        if optuna_trial is not None:
            _tell(self.study, optuna_trial, value, status)


class Pruning:
    """Early stopping through an Optuna pruner, in the driver: ``report(trial, step, value)`` is True when the
    trial should stop. Uses the optuna search's own study, or a study of its own (grid and random searches)."""

    def __init__(self, pruner: Any, mode: str, search: Search, seed: int):
        optuna = _optuna("early_stop on the local executor")
        self.pruner = pruner
        if isinstance(search, OptunaSearch):
            self.study, self.trials, self.owns_trials = search.study, search.optuna_trials, False
        else:
            self.study = _study(optuna, mode, optuna.samplers.RandomSampler(seed=seed), pruner)
            self.trials, self.owns_trials = {}, True
        self.reported: dict[int, set[int]] = {}

    def start(self, trial: int) -> None:
        if self.owns_trials:
            self.trials[trial] = self.study.ask()

    def report(self, trial: int, step: int, value: float) -> bool:
        optuna_trial = self.trials.get(trial)
        if optuna_trial is None or not math.isfinite(value):
            return False
        seen = self.reported.setdefault(trial, set())
        if step in seen:
            return False  # optuna keeps the first value reported at a step; judge each step once
        seen.add(step)
        optuna_trial.report(value, step)
        return bool(optuna_trial.should_prune())

    def end(self, trial: int, value: float | None, status: str) -> None:
        self.reported.pop(trial, None)
        if self.owns_trials:
            optuna_trial = self.trials.pop(trial, None)
            if optuna_trial is not None:
                _tell(self.study, optuna_trial, value, status)


def make_pruner(early_stop: Any) -> Any:
    """An Optuna pruner from ``early_stop`` ("asha", "median" or a pruner object); None stays None."""
    if early_stop is None:
        return None
    optuna = _optuna("early_stop on the local executor")
    if isinstance(early_stop, optuna.pruners.BasePruner):
        return early_stop
    if early_stop == "asha":
        return optuna.pruners.SuccessiveHalvingPruner()
    if early_stop == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    raise ValueError(f"sweep: early_stop must be None, 'asha', 'median' or an optuna pruner on the local executor, "
                     f"got {early_stop!r}")


def make_search(search: str, space: Mapping[str, Any], trials: int | None, seed: int, mode: str,
                pruner: Any = None) -> Search:
    if search == "grid":
        return GridSearch(space, trials)
    if search in ("random", "optuna"):
        if trials is None or trials < 1:
            raise ValueError(f"sweep: search={search!r} needs trials=N (N >= 1), got {trials!r}")
        if search == "random":
            return RandomSearch(space, trials, seed)
        return OptunaSearch(space, trials, seed, mode, pruner=pruner)
    raise ValueError(f"sweep: search must be 'grid', 'random' or 'optuna', got {search!r}")


def _optuna(what: str) -> Any:
    try:
        import optuna  # noqa: PLC0415 - optional: the [sweep] extra
    except ImportError:
        raise ImportError(f"{what} needs optuna: pip install 'tinygrad_nb[sweep]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial would drown the sweep's table
    return optuna


def _study(optuna: Any, mode: str, sampler: Any, pruner: Any) -> Any:
    return optuna.create_study(direction="minimize" if mode == "min" else "maximize", sampler=sampler,
                               pruner=pruner or optuna.pruners.NopPruner())


def _tell(study: Any, optuna_trial: Any, value: float | None, status: str) -> None:
    from optuna.trial import TrialState  # noqa: PLC0415

    if status == "pruned":
        study.tell(optuna_trial, state=TrialState.PRUNED)
    elif status == "finished" and value is not None and math.isfinite(value):
        study.tell(optuna_trial, value)
    else:
        study.tell(optuna_trial, state=TrialState.FAIL)
