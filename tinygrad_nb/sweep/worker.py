"""What runs one trial, wherever it runs: seeding, the :class:`TrialRun` handed to ``train_fn``, and the outcome.

``train_fn(config, run)`` logs through ``run`` exactly as through any :class:`~tinygrad_nb.track.Run`. In a trial,
``run`` writes nothing itself: each ``log`` is flushed at once (``flush_every=1``) to a sink that hands the records
to a *channel*: a pipe to the driver (local executor), ``ray.tune.report`` (Ray executor) or the driver's run
directly (:func:`~tinygrad_nb.sweep.replay`). Only the driver writes the run store, so workers on other machines
never touch an SQLite file over a network file system.

When a logged record holds the sweep's metric, the channel is asked whether the trial should stop; if so ``log``
raises :class:`TrialPruned` and the trial ends with status "pruned".
"""
from __future__ import annotations

import random
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..track.run import Run


class TrialPruned(Exception):  # noqa: N818 - optuna's and Tune's name for the same thing
    """Raised by ``run.log`` inside a trial the sweep's scheduler or pruner decided to stop early."""


@dataclass
class TrialSpec:
    """Everything a worker needs to run one trial (plain data: it is pickled to processes and Ray actors)."""

    sweep_id: str
    trial: int
    config: dict[str, Any]
    seed: int
    run_id: str
    run_name: str
    metric: str
    attempt: int = 1
    deterministic: bool | str = False
    project: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def run_config(self) -> dict[str, Any]:
        """The config a trial's run records: the trial's config plus ``sweep.id``, ``sweep.trial``, ``sweep.seed``."""
        return run_config(self.config, self.sweep_id, self.trial, self.seed)


def run_config(config: Mapping[str, Any], sweep_id: str, trial: int, seed: int) -> dict[str, Any]:
    return {**config, "sweep.id": sweep_id, "sweep.trial": trial, "sweep.seed": seed}


class Channel(Protocol):
    def log(self, records: list[tuple[int, float, dict[str, float]]]) -> None: ...
    def epoch(self, summary: dict[str, dict[str, float]], step: int) -> None: ...
    def should_stop(self, step: int, value: float) -> bool: ...


class _ForwardSink:
    """A track sink that hands each flushed batch to the channel, and asks it whether to stop at the metric."""

    def __init__(self, channel: Channel, metric: str):
        self.channel = channel
        self.metric = metric

    def write(self, batch: Any) -> None:
        if batch.event == "log" and batch.scalars:
            self.channel.log(batch.scalars)
            for step, _, values in batch.scalars:
                value = values.get(self.metric)
                if value is not None and self.channel.should_stop(step, value):
                    raise TrialPruned(f"stopped early at step {step} ({self.metric} {value:.6g})")
        elif batch.event == "epoch":  # the aggregates as computed here: the driver records them, not its own sums
            step = batch.scalars[0][0] if batch.scalars else max(batch.run.step - 1, 0)
            self.channel.epoch(batch.epoch or {}, step)

    def close(self) -> None:
        pass


class TrialRun(Run):
    """The run a ``train_fn`` gets in a sweep: a :class:`~tinygrad_nb.track.Run` whose records go to the sweep
    driver (which writes the run store). ``trial``, ``seed`` and ``sweep_id`` say which trial this is."""

    def __init__(self, spec: TrialSpec, channel: Channel):
        super().__init__(name=spec.run_name, config=spec.run_config, store=False,
                         sinks=[_ForwardSink(channel, spec.metric)], project=spec.project, fingerprint=False,
                         flush_every=1)
        self.id = spec.run_id  # the id of the driver's run, which holds what this one logs
        self.trial = spec.trial
        self.seed = spec.seed
        self.sweep_id = spec.sweep_id


def seed_everything(seed: int) -> None:
    """tinygrad_nb's generator, numpy's legacy global one and Python's ``random``, all from the trial's seed."""
    from ..random import manual_seed  # noqa: PLC0415

    manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def run_trial(train_fn: Callable[[dict[str, Any], TrialRun], Any], spec: TrialSpec,
              channel: Channel) -> tuple[str, str | None]:
    """Run one trial; return ``(status, traceback text or None)``. Status: "finished", "pruned", "failed" (an
    exception; its traceback comes back) or "nan" (a FloatingPointError, as ``with Run()`` records it). A
    ``train_fn`` that returns a dict of numbers has it logged as one more record."""
    seed_everything(spec.seed)
    run = TrialRun(spec, channel)
    try:
        if spec.deterministic:
            from ..determinism import deterministic  # noqa: PLC0415

            with deterministic(spec.deterministic):
                returned = train_fn(dict(spec.config), run)
        else:
            returned = train_fn(dict(spec.config), run)
        if isinstance(returned, Mapping) and returned:
            run.log(dict(returned))
        run.finish()
        return "finished", None
    except TrialPruned:
        run.finish("finished")
        return "pruned", None
    except FloatingPointError:
        run.finish("nan")
        return "nan", traceback.format_exc()
    except Exception:  # noqa: BLE001 - any error in user code fails this trial only; the sweep goes on
        run.finish("failed")
        return "failed", traceback.format_exc()
