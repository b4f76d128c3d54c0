"""What runs one trial, wherever it runs: seeding, the :class:`TrialRun` handed to ``train_fn``, and the outcome.

``train_fn(config, run)`` logs through ``run`` exactly as through any :class:`~tinygrad_nb.track.Run`. In a trial,
``run`` writes nothing itself: each ``log`` is flushed at once (``flush_every=1``) to a sink that hands the records
to a *channel*: a pipe to the driver (local executor), ``ray.tune.report`` (Ray executor) or the driver's run
directly (:func:`~tinygrad_nb.sweep.replay`). Only the driver writes the run store, so workers on other machines
never touch an SQLite file over a network file system.

When a logged record holds the sweep's metric, the channel is asked whether the trial should stop; if so ``log``
raises :class:`TrialPruned` and the trial ends with status "pruned".

Before ``train_fn`` runs, the trial sends the fingerprint of the process it runs in (:func:`trial_fingerprint`:
this machine's CPU, BLAS, numpy, threads and deterministic mode, with the driver's code part, since ``train_fn`` is
the driver's code) through the channel, and the driver records it on the trial's run. It is computed once per
worker process (and code and deterministic setting), so a trial pays for it only on a fresh worker; a fingerprint
that cannot be computed is not sent (the run keeps the driver's) and never fails the trial.
"""
from __future__ import annotations

import contextlib
import os
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
    def fingerprint(self, fingerprint: dict[str, Any]) -> None: ...


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


# this process's fingerprints by (driver's code, deterministic setting); a forked worker inherits its parent's
# entries, which describe the parent, so the cache is emptied when the pid is not the one that filled it
_fingerprints: dict[tuple[Any, str], dict[str, Any] | None] = {}
_fingerprints_pid = os.getpid()


def trial_fingerprint(code: Mapping[str, Any] | None, deterministic: bool | str = False) -> dict[str, Any] | None:
    """The fingerprint of this process, as a trial records it (``Fingerprint.to_dict()``, plain data): this process's
    environment and data, and ``code``, the code part of the driver's fingerprint (``train_fn`` is the driver's
    code; a worker's own ``__main__`` can be Ray's worker script). Computed once per process for each ``code`` and
    ``deterministic`` (call it inside the trial's deterministic mode: that mode pins the BLAS threads the fingerprint
    records). None when it cannot be computed: as in ``track.Run``, a fingerprint problem never fails a trial.

    The digest stays the one :func:`~tinygrad_nb.fingerprint.fingerprint` gives: the code part counts by its
    content hash, which is the hash of the same source here and in the driver."""
    global _fingerprints_pid
    try:
        if os.getpid() != _fingerprints_pid:
            _fingerprints.clear()
            _fingerprints_pid = os.getpid()
        key = (None if code is None else (code.get("origin"), code.get("xxh3_128")), repr(deterministic))
        if key not in _fingerprints:
            _fingerprints[key] = None  # a failure is not tried again for every trial
            from ..fingerprint import fingerprint  # noqa: PLC0415

            source = None if code is None else code.get("source")
            computed = fingerprint(code=source if source is not None else False).to_dict()
            if code is not None:
                computed["code"] = dict(code)
            _fingerprints[key] = computed
        return _fingerprints[key]
    except Exception:  # noqa: BLE001 - as track.Run: a fingerprint problem never stops a trial
        return None


def run_trial(train_fn: Callable[[dict[str, Any], TrialRun], Any], spec: TrialSpec, channel: Channel,
              code: Mapping[str, Any] | None = None) -> tuple[str, str | None]:
    """Run one trial; return ``(status, traceback text or None)``. Status: "finished", "pruned", "failed" (an
    exception; its traceback comes back) or "nan" (a FloatingPointError, as ``with Run()`` records it). A
    ``train_fn`` that returns a dict of numbers has it logged as one more record. ``code``: the code part of the
    driver's fingerprint, recorded in the fingerprint this trial sends (None: "not recorded")."""
    seed_everything(spec.seed)
    run = TrialRun(spec, channel)
    try:
        if spec.deterministic:
            from ..determinism import deterministic  # noqa: PLC0415

            mode: Any = deterministic(spec.deterministic)
        else:
            mode = contextlib.nullcontext()
        with mode:
            fingerprint = trial_fingerprint(code, spec.deterministic)
            if fingerprint is not None:
                channel.fingerprint(fingerprint)
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
