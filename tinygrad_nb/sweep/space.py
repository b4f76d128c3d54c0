"""Search spaces: what each config key may take, and the trial configs a grid or a random search makes of them.

    space = {"lr": sweep.loguniform(1e-4, 1e-1),   # continuous: random and optuna search only
             "hidden": [32, 64],                   # a plain list is a choice (a grid axis)
             "act": sweep.choice(["relu", "tanh"]),
             "epochs": 5}                          # anything else is a fixed value

A **grid** is the Cartesian product of the choices, in the order the keys are given, the last key varying fastest
(``{"a": [1, 2], "b": [3, 4]}`` -> (1,3) (1,4) (2,3) (2,4)); a continuous dimension in a grid is an error naming the
key. A **random** search draws trial ``i`` from its own stream, ``SeedSequence(seed, spawn_key=(1, i))``, so trial
``i``'s config does not depend on how many trials ran before it or in which order.

Seeds: trial ``i`` of a sweep with seed ``s`` gets ``trial_seed(s, i)``, the first 32-bit word of
``SeedSequence(s, spawn_key=(0, i))`` (numpy's SeedSequence mixes the key with the seed by a hash, so neighbouring
trials get unrelated seeds and the same (s, i) gives the same seed on every machine).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


class SpaceError(ValueError):
    """A search space that cannot be searched the way asked; the message names the key."""


@dataclass(frozen=True)
class Choice:
    """One of ``values`` (a grid axis; uniform for random search; categorical for optuna)."""

    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if len(self.values) == 0:
            raise SpaceError("choice: needs at least one value")


@dataclass(frozen=True)
class Uniform:
    """A float in [low, high); ``log=True``: uniform in log space (low > 0)."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise SpaceError(f"uniform: need finite low < high, got {self.low!r}, {self.high!r}")
        if self.log and self.low <= 0:
            raise SpaceError(f"loguniform: low must be > 0, got {self.low!r}")


@dataclass(frozen=True)
class RandInt:
    """An int in [low, high] (both ends included)."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise SpaceError(f"randint: need low <= high, got {self.low!r}, {self.high!r}")


Dimension = Choice | Uniform | RandInt


def choice(values: Sequence[Any]) -> Choice:
    """One of ``values``; a grid search tries each."""
    return Choice(tuple(values))


grid = choice  # ``sweep.grid([1, 2])`` reads better in a grid search; the same thing


def uniform(low: float, high: float) -> Uniform:
    return Uniform(float(low), float(high))


def loguniform(low: float, high: float) -> Uniform:
    return Uniform(float(low), float(high), log=True)


def randint(low: int, high: int) -> RandInt:
    """An integer in [low, high], both included (unlike numpy's ``integers``)."""
    return RandInt(int(low), int(high))


def normalize(space: Mapping[str, Any]) -> dict[str, Any]:
    """Plain lists/tuples become :class:`Choice`; dimensions and fixed values stay as they are."""
    if not isinstance(space, Mapping):
        raise SpaceError(f"space: expected a dict of config keys, got {type(space).__name__}")
    out: dict[str, Any] = {}
    for key, value in space.items():
        if not isinstance(key, str):
            raise SpaceError(f"space: keys must be strings, got {key!r}")
        if key == "sweep" or key.startswith("sweep."):
            raise SpaceError(f"space: key {key!r} is reserved (runs record sweep.id, sweep.trial, sweep.seed)")
        out[key] = Choice(tuple(value)) if isinstance(value, (list, tuple)) else value
    return out


def is_dimension(value: Any) -> bool:
    return isinstance(value, (Choice, Uniform, RandInt))


def grid_configs(space: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the choices (the last key varies fastest); fixed values in every config."""
    space = normalize(space)
    for key, value in space.items():
        if isinstance(value, (Uniform, RandInt)):
            raise SpaceError(f"space: key {key!r} is {_describe(value)}; a grid search needs a list of values "
                             "(use search='random' or 'optuna' for continuous ranges)")
    axes = [(k, v.values) for k, v in space.items() if isinstance(v, Choice)]
    fixed = {k: v for k, v in space.items() if not isinstance(v, Choice)}
    configs = []
    for combo in itertools.product(*(values for _, values in axes)):
        config = dict(fixed)
        config.update(zip((k for k, _ in axes), combo))
        configs.append({k: config[k] for k in space})  # the space's key order
    return configs


def sample(space: Mapping[str, Any], seed: int, trial: int) -> dict[str, Any]:
    """Trial ``trial``'s config of a random search (its own stream: see the module docstring)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, trial)))
    config = {}
    for key, value in normalize(space).items():
        if isinstance(value, Choice):
            config[key] = value.values[int(rng.integers(len(value.values)))]
        elif isinstance(value, Uniform):
            u = float(rng.random())
            if value.log:
                lo, hi = math.log(value.low), math.log(value.high)
                config[key] = math.exp(lo + (hi - lo) * u)
            else:
                config[key] = value.low + (value.high - value.low) * u
        elif isinstance(value, RandInt):
            config[key] = int(rng.integers(value.low, value.high + 1))
        else:
            config[key] = value
    return config


def suggest(space: Mapping[str, Any], trial: Any) -> dict[str, Any]:
    """A config from an optuna trial (``suggest_categorical`` / ``suggest_float`` / ``suggest_int``)."""
    config = {}
    for key, value in normalize(space).items():
        if isinstance(value, Choice):
            bad = [v for v in value.values if v is not None and not isinstance(v, (bool, int, float, str))]
            if bad:
                raise SpaceError(f"space: key {key!r}: optuna chooses only among None, bool, int, float and str; "
                                 f"got {bad[0]!r}")
            config[key] = trial.suggest_categorical(key, list(value.values))
        elif isinstance(value, Uniform):
            config[key] = trial.suggest_float(key, value.low, value.high, log=value.log)
        elif isinstance(value, RandInt):
            config[key] = trial.suggest_int(key, value.low, value.high)
        else:
            config[key] = value
    return config


def trial_seed(seed: int, trial: int) -> int:
    """The seed of trial ``trial`` in a sweep seeded ``seed`` (see the module docstring)."""
    return int(np.random.SeedSequence(seed, spawn_key=(0, trial)).generate_state(1, np.uint32)[0])


def _describe(value: Any) -> str:
    if isinstance(value, Uniform):
        return f"{'loguniform' if value.log else 'uniform'}({value.low!r}, {value.high!r})"
    if isinstance(value, RandInt):
        return f"randint({value.low!r}, {value.high!r})"
    return repr(value)


DIMENSION_KINDS = {"choice": lambda a: choice(a), "grid": lambda a: choice(a),
                   "uniform": lambda a: uniform(*a), "loguniform": lambda a: loguniform(*a),
                   "randint": lambda a: randint(*a)}
