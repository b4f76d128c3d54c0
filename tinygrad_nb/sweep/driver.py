"""``sweep()``: the driver. It asks the search for trials, hands them to an executor, writes every trial as a run in
the store, and shows the sweep live.

Each trial is one :class:`~tinygrad_nb.track.Run` made and written *here*, in the driver process: its config is the
trial's config plus ``sweep.id``, ``sweep.trial`` and ``sweep.seed``; its fingerprint is that of the worker process
that ran it (its machine's CPU, BLAS, numpy, threads and deterministic mode, with the driver's code part), sent as
the trial starts (the driver's own until then, and for good when a worker sends none); its status is finished,
pruned, failed or nan. Workers only send records back. A manifest
``<store dir>/sweeps/<sweep id>.json`` (written atomically after a failed trial, at most once a second
otherwise, and at the end) keeps what the run table has no
column for: the search, the space, each trial's best value, attempts and the traceback of a failed trial.

A trial's *value* is the best value of ``metric`` it logged (min or max by ``mode``); that is what optuna's sampler
is told and what :attr:`SweepResult.best` ranks by.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..io import atomic_write
from ..track.compare import Comparison
from ..track.run import Run
from ..track.sinks import Batch
from ..track.store import RunStore
from .search import Pruning, Search, make_pruner, make_search
from .space import Choice, RandInt, Uniform, normalize, trial_seed
from .worker import TrialSpec, run_config, run_trial

MANIFEST_FORMAT_VERSION = 1


@dataclass
class TrialResult:
    """How one trial ended. ``value``: the best ``metric`` it logged (None if it logged none)."""

    # What a replayed notebook cell cannot make again (see docs/cell_checkpoints.md, "Run-bound values")
    RUN_BOUND_FIELDS: ClassVar[dict[Any, str]] = {"run_id": "a random run id"}

    trial: int
    config: dict[str, Any]
    seed: int
    run_id: str
    status: str = "running"
    value: float | None = None
    last: float | None = None
    steps: int = 0
    attempts: int = 1
    error: str | None = None


@dataclass
class SweepResult:
    """What a sweep did: ``trials`` (by trial id), ``best``; ``str()`` is the trial table."""

    # a fresh random id per sweep (also in every trial's config as ``sweep.id``), so a replayed cell renames it
    RUN_BOUND_FIELDS: ClassVar[dict[Any, str]] = {"id": "a random sweep id"}

    id: str
    name: str
    metric: str
    mode: str
    search: str
    executor: str
    seed: int
    store: str
    trials: list[TrialResult] = field(default_factory=list)

    @property
    def best(self) -> TrialResult | None:
        """The finished trial with the best value (ties: the lower trial id)."""
        done = [t for t in self.trials if t.status == "finished" and t.value is not None and math.isfinite(t.value)]
        if not done:
            return None
        sign = 1.0 if self.mode == "min" else -1.0
        return min(done, key=lambda t: (sign * t.value, t.trial))

    def table(self) -> Comparison:
        """The trials as a :class:`~tinygrad_nb.track.Comparison` (the table ``track.compare`` prints)."""
        keys = sorted({k for t in self.trials for k in t.config})
        if len(self.trials) > 1:
            keys = [k for k in keys if len({repr(t.config.get(k)) for t in self.trials}) > 1]
        columns = ["trial", "status", *[f"config.{k}" for k in keys], f"{self.metric} best", f"{self.metric} last",
                   "steps"]
        rows = [{"trial": t.trial, "status": t.status, **{f"config.{k}": t.config.get(k) for k in keys},
                 f"{self.metric} best": t.value, f"{self.metric} last": t.last, "steps": t.steps}
                for t in sorted(self.trials, key=lambda t: t.trial)]
        return Comparison(columns, rows, keys, [self.metric])

    def __str__(self) -> str:
        best = self.best
        head = f"sweep {self.name}: {len(self.trials)} trials, {self.search} search on {self.executor}"
        if best is not None:
            head += f"; best trial {best.trial} ({self.metric} {best.value:.6g})"
        return head + "\n" + str(self.table())

    __repr__ = __str__

    def runs(self) -> list[Any]:
        """The trials' :class:`~tinygrad_nb.track.RunRecord` s, in trial order."""
        records = RunStore(self.store).resolve([t.run_id for t in sorted(self.trials, key=lambda t: t.trial)])
        return records

    def replay(self, trial: int, train_fn: Callable[..., Any], deterministic: bool | str | None = None) -> Run:
        """Re-run trial ``trial`` here, from its run record (see :func:`replay`)."""
        for t in self.trials:
            if t.trial == trial:
                return replay(t.run_id, train_fn, store=self.store, deterministic=deterministic)
        raise KeyError(f"sweep {self.name}: no trial {trial}; trials are 0..{len(self.trials) - 1}")


class TrialRecordRun(Run):
    """The driver's record of a trial: a :class:`~tinygrad_nb.track.Run` that takes each epoch's aggregates as the
    trial computed them (``record_epoch``) instead of summing the records again. Its own sums would group the values
    by its flushes, which depend on timing, and floating-point sums in other groupings differ in the last bits."""

    def record_epoch(self, summary: dict[str, dict[str, float]], step: int) -> None:
        """What ``epoch_end`` does, with the trial's ``summary`` ({metric: {mean, min, max, last}})."""
        self._flush_pending()
        self._epoch_stats = {}
        if summary:
            record = {f"{name}/epoch_{k}": v for name, s in summary.items() for k, v in s.items()}
            self._emit(Batch(self, "epoch", scalars=[(step, time.time(), record)], epoch=summary))
        self.epoch += 1


class Driver:
    """Owns the search, the pruner, the trials' runs and the view; executors call its ``on_*`` methods."""

    def __init__(self, train_fn: Callable[..., Any], search: Search, pruning: Pruning | None, result: SweepResult,
                 store: RunStore, *, project: str | None, deterministic: bool | str, extra_sinks: Callable[[], list[Any]],
                 view: Any, manifest: dict[str, Any], callbacks: Sequence[Callable[[TrialResult], Any]] = ()):
        self.train_fn = train_fn
        self.search = search
        self.pruning = pruning
        self.result = result
        self.store = store
        self.project = project
        self.deterministic = deterministic
        self.extra_sinks = extra_sinks
        self.view = view
        self.manifest = manifest
        self.callbacks = list(callbacks)
        self.runs: dict[int, TrialRecordRun] = {}
        self.by_trial: dict[int, TrialResult] = {}
        self._next_manifest = 0.0
        from ..fingerprint import fingerprint  # noqa: PLC0415

        try:
            self.fingerprint: dict[str, Any] | None = fingerprint().to_dict()
        except Exception:  # noqa: BLE001 - as track.Run: a fingerprint problem never stops a sweep
            self.fingerprint = None

    # -- starting trials ------------------------------------------------------------------------------------------
    def next_spec(self) -> TrialSpec | None:
        asked = self.search.ask()
        if asked is None:
            return None
        trial, config = asked
        return self._start(trial, config, attempt=1)

    def _start(self, trial: int, config: dict[str, Any], attempt: int) -> TrialSpec:
        seed = trial_seed(self.result.seed, trial)
        name = f"{self.result.name}/t{trial:03d}" + (f"-retry{attempt - 1}" if attempt > 1 else "")
        run = TrialRecordRun(name=name, config=run_config(config, self.result.id, trial, seed), store=self.store,
                  sinks=self.extra_sinks(), project=self.project, fingerprint=False, flush_every=10**9,
                  flush_secs=0.25)
        run.fingerprint = self.fingerprint  # until the worker sends its own (on_fingerprint); kept if it sends none
        run._emit(Batch(run, "status"))  # the row again, now with the fingerprint
        self.runs[trial] = run
        t = TrialResult(trial, dict(config), seed, run.id, attempts=attempt)
        self.by_trial[trial] = t
        if attempt == 1:
            self.result.trials.append(t)
        else:
            self.result.trials[[x.trial for x in self.result.trials].index(trial)] = t
        if self.pruning is not None and attempt == 1:
            self.pruning.start(trial)
        self.view.trial_started(t)
        return TrialSpec(self.result.id, trial, dict(config), seed, run.id, name, self.result.metric, attempt,
                         self.deterministic, self.project)

    @property
    def code_fingerprint(self) -> dict[str, Any] | None:
        """The code part of the driver's fingerprint, handed to workers for theirs: ``train_fn`` is the driver's code
        (a Ray worker's own ``__main__`` is Ray's worker script)."""
        return None if self.fingerprint is None else self.fingerprint.get("code")

    # -- what trials send -----------------------------------------------------------------------------------------
    def on_fingerprint(self, spec: TrialSpec, fingerprint: Any) -> None:
        """The worker that runs ``spec`` sent its process's fingerprint: it replaces the driver's on the trial's run
        (and its row in the store, at once); an equal one changes nothing and writes nothing."""
        run = self.runs.get(spec.trial)
        if run is None or not isinstance(fingerprint, dict) or fingerprint == run.fingerprint:
            return
        run.fingerprint = fingerprint
        run._emit(Batch(run, "status"))  # the row again, now with the worker's fingerprint

    def on_log(self, spec: TrialSpec, records: Iterable[tuple[int, float, dict[str, float]]]) -> None:
        run, t = self.runs[spec.trial], self.by_trial[spec.trial]
        metric, better = self.result.metric, (min if self.result.mode == "min" else max)
        for step, _, values in records:
            run.log(values, step=step)
            t.steps = max(t.steps, step + 1)
            value = values.get(metric)
            if value is not None:
                t.last = value
                if not math.isnan(value):
                    t.value = value if t.value is None else better(t.value, value)
        self.view.trial_logged(t, records)

    def on_epoch(self, spec: TrialSpec, summary: dict[str, dict[str, float]], step: int) -> None:
        self.runs[spec.trial].record_epoch(summary, step)

    def should_prune(self, spec: TrialSpec, step: int, value: float) -> bool:
        return self.pruning is not None and self.pruning.report(spec.trial, step, value)

    def on_end(self, spec: TrialSpec, status: str, error: str | None) -> None:
        run, t = self.runs.pop(spec.trial), self.by_trial[spec.trial]
        run.finish(status if status in ("pruned", "failed", "nan") else None)  # a NaN logged makes "nan" itself
        t.status, t.error = run.status, error
        self.search.tell(spec.trial, t.value, t.status)
        if self.pruning is not None:
            self.pruning.end(spec.trial, t.value, t.status)
        self._save_manifest(force=error is not None)
        self.view.trial_ended(t, self.result)
        for callback in self.callbacks:
            callback(t)

    def on_lost(self, spec: TrialSpec, reason: str) -> TrialSpec | None:
        """The trial's worker died. First time: its run is recorded failed and the trial starts again (a new
        run, attempt 2). Second time: recorded failed for good."""
        if spec.attempt >= 2:
            self.on_end(spec, "failed", f"{reason} (attempt {spec.attempt}; not retried again)")
            return None
        run, t = self.runs.pop(spec.trial), self.by_trial[spec.trial]
        run.finish("failed")
        t.status, t.error = "failed", f"{reason}; retried as a new run"
        self.view.trial_ended(t, self.result)
        return self._start(spec.trial, spec.config, attempt=spec.attempt + 1)

    def on_interrupted(self, specs: Iterable[TrialSpec]) -> None:
        """Ctrl-C (or any error in the driver): unfinished trials are recorded failed; finished ones stay."""
        for spec in specs:
            if spec.trial in self.runs:
                run, t = self.runs.pop(spec.trial), self.by_trial[spec.trial]
                run.finish("failed")
                t.status, t.error = "failed", "interrupted: the sweep was stopped before this trial ended"
        self._save_manifest()

    def _save_manifest(self, force: bool = True) -> None:
        """Write the manifest: at once when ``force`` (a failure, the end), else at most once a second."""
        now = time.monotonic()
        if not force and now < self._next_manifest:
            return
        self._next_manifest = now + 1.0
        self.manifest["trials"] = [asdict(t) for t in sorted(self.result.trials, key=lambda t: t.trial)]
        # not fsynced: rewritten after every trial, and the run store (not this file) is the record of the runs
        atomic_write(manifest_path(self.store, self.result.id), json.dumps(self.manifest, default=repr,
                                                                           sort_keys=True), durable=False)


def manifest_path(store: RunStore, sweep_id: str) -> Path:
    return store.path.parent / "sweeps" / f"{sweep_id}.json"


def describe_space(space: Mapping[str, Any]) -> dict[str, Any]:
    """The space as JSON-able data: ``{"lr": {"loguniform": [1e-4, 0.1]}, "h": {"choice": [32, 64]}, "e": 5}``."""
    out: dict[str, Any] = {}
    for key, value in normalize(space).items():
        if isinstance(value, Choice):
            out[key] = {"choice": list(value.values)}
        elif isinstance(value, Uniform):
            out[key] = {"loguniform" if value.log else "uniform": [value.low, value.high]}
        elif isinstance(value, RandInt):
            out[key] = {"randint": [value.low, value.high]}
        else:
            out[key] = value
    return out


def sweep(train_fn: Callable[[dict[str, Any], Run], Any], space: Mapping[str, Any], *, search: str = "grid",
          trials: int | None = None, executor: str = "local", max_concurrent: int | None = None,
          metric: str = "val_loss", mode: str = "min", early_stop: Any = None, seed: int = 0,
          name: str | None = None, project: str | None = None, store: RunStore | str | os.PathLike[str] | None = None,
          deterministic: bool | str = False, mlflow: str | Mapping[str, Any] | None = None,
          address: str | None = None, resources_per_trial: Mapping[str, float] | None = None,
          live: bool | None = None, start_method: str | None = None,
          callbacks: Sequence[Callable[[TrialResult], Any]] = ()) -> SweepResult:
    """Run ``train_fn(config, run)`` once per trial of a search over ``space``; every trial is a run in the store.

    ``search``: "grid" (every combination; ``trials`` may cap it), "random" or "optuna" (``trials`` needed).
    ``executor``: "local" (a process pool here; ``max_concurrent`` workers, default the CPU count) or "ray" (Ray Tune
    on the Ray at ``address``, or a local one; ``resources_per_trial`` like ``{"cpu": 1, "gpu": 0.5}``).
    ``metric``/``mode``: what a trial is judged by. ``early_stop``: None, "asha" or "median" (Optuna's
    SuccessiveHalving/Median pruner on the local executor, Ray Tune's ASHA/MedianStoppingRule on Ray), or such an
    object itself. ``seed``: the sweep seed; trial ``i`` runs seeded with ``trial_seed(seed, i)``.
    ``deterministic``: run each trial under ``tg.deterministic(mode)``. ``mlflow``: a tracking URI (or
    ``{"tracking_uri": ..., "experiment": ...}``) to mirror every trial's run to. ``live``: the live view (default:
    a widget view in Jupyter, a line per trial elsewhere; False: silent). ``callbacks``: called with each
    :class:`TrialResult` as it ends.

    Ctrl-C stops the sweep: running trials are recorded failed, finished ones stay, and KeyboardInterrupt is raised.
    """
    if mode not in ("min", "max"):
        raise ValueError(f"sweep: mode must be 'min' or 'max', got {mode!r}")
    if executor not in ("local", "ray"):
        raise ValueError(f"sweep: executor must be 'local' or 'ray', got {executor!r}")
    if not callable(train_fn):
        raise TypeError(f"sweep: train_fn must be callable as train_fn(config, run), got {type(train_fn).__name__}")
    run_store = store if isinstance(store, RunStore) else RunStore(store)
    sweep_id = secrets.token_hex(4)
    pruner = make_pruner(early_stop) if executor == "local" else None
    searcher = make_search(search, space, trials, seed, mode, pruner=pruner)
    pruning = Pruning(pruner, mode, searcher, seed) if pruner is not None else None
    if executor == "local":
        from .local import LocalExecutor  # noqa: PLC0415

        runner: Any = LocalExecutor(max_concurrent, start_method)
    else:
        from .ray_executor import RayExecutor  # noqa: PLC0415

        runner = RayExecutor(max_concurrent=max_concurrent, address=address, resources_per_trial=resources_per_trial,
                             early_stop=early_stop, metric=metric, mode=mode)
    result = SweepResult(sweep_id, name or f"sweep-{sweep_id}", metric, mode, search, executor, seed,
                         str(run_store.path))
    manifest = {"format_version": MANIFEST_FORMAT_VERSION, "id": sweep_id, "name": result.name, "search": search,
                "executor": executor, "metric": metric, "mode": mode, "seed": seed, "early_stop": repr(early_stop),
                "space": describe_space(space), "deterministic": deterministic, "started": time.time(),
                "trials": []}
    from .view import make_view  # noqa: PLC0415

    view = make_view(live, result)
    driver = Driver(train_fn, searcher, pruning, result, run_store, project=project, deterministic=deterministic,
                    extra_sinks=_sink_factory(mlflow, result), view=view, manifest=manifest, callbacks=callbacks)
    try:
        runner.run(driver)
        driver._save_manifest()
    finally:
        view.close(result)
        run_store.flush()
    return result


def _sink_factory(mlflow: str | Mapping[str, Any] | None, result: SweepResult) -> Callable[[], list[Any]]:
    if mlflow is None:
        return list
    options = {"tracking_uri": mlflow} if isinstance(mlflow, str) else dict(mlflow)
    options.setdefault("experiment", result.name)
    options.setdefault("tags", {"tinygrad_nb.sweep_id": result.id})
    from .mlflow_sink import MLflowSink  # noqa: PLC0415

    MLflowSink.check_available()
    return lambda: [MLflowSink(**options)]


class _DirectChannel:
    """A replayed trial logs straight into a run of the driver (no worker in between)."""

    def __init__(self, run: TrialRecordRun):
        self.run = run

    def log(self, records: list[tuple[int, float, dict[str, float]]]) -> None:
        for step, _, values in records:
            self.run.log(values, step=step)

    def epoch(self, summary: dict[str, dict[str, float]], step: int) -> None:
        self.run.record_epoch(summary, step)

    def fingerprint(self, fingerprint: dict[str, Any]) -> None:
        if fingerprint != self.run.fingerprint:  # e.g. deterministic mode on: pinned BLAS threads
            self.run.fingerprint = fingerprint
            self.run._emit(Batch(self.run, "status"))

    def should_stop(self, step: int, value: float) -> bool:
        return False


def replay(run_id: str, train_fn: Callable[..., Any], store: RunStore | str | os.PathLike[str] | None = None,
           deterministic: bool | str | None = None) -> Run:
    """Re-run one trial in this process from its run record: the same config and seed (``sweep.seed``), logged to a
    new run (config ``sweep.replay_of`` = the old id) in the same store. Under ``deterministic`` (default: the
    sweep's setting from its manifest) the metrics match the original bit for bit. Never stopped early. The new
    run's fingerprint is this process's, taken in the trial's deterministic mode (as a worker's is)."""
    run_store = store if isinstance(store, RunStore) else RunStore(store)
    record = run_store.get(run_id)
    if "sweep.seed" not in record.config:
        raise ValueError(f"replay: run {record.id} is not a sweep trial (its config has no 'sweep.seed')")
    config = {k: v for k, v in record.config.items() if not k.startswith("sweep.")}
    sweep_id, trial, seed = record.config["sweep.id"], int(record.config["sweep.trial"]), int(record.config["sweep.seed"])
    if deterministic is None:
        path = manifest_path(run_store, sweep_id)
        deterministic = json.loads(path.read_text("utf-8")).get("deterministic", False) if path.exists() else False
    run = TrialRecordRun(name=f"{record.name}-replay", config={**run_config(config, sweep_id, trial, seed),
                                                   "sweep.replay_of": record.id},
              store=run_store, project=record.project, flush_every=10**9)
    spec = TrialSpec(sweep_id, trial, config, seed, run.id, run.name, "", 1, deterministic or False, record.project)
    code = None if run.fingerprint is None else run.fingerprint.get("code")
    status, error = run_trial(train_fn, spec, _DirectChannel(run), code)
    run.finish(status if status in ("failed", "nan") else None)
    run_store.flush()
    if error is not None:
        raise RuntimeError(f"replay of run {record.id} failed:\n{error}")
    return run
