"""The Ray executor: trials as Ray Tune trials, on a local Ray or a cluster (``address``), the same sweep code.

How the parts map onto Tune:

* **Which trials**: a Tune ``Searcher`` that asks the sweep's own search (grid, random or optuna in the driver), so
  trial ids, configs and seeds are those the local executor would use. Each suggested Tune config is one
  :class:`~.worker.TrialSpec`.
* **Records back**: in the trial, ``run.log`` buffers records; each value of the sweep's metric is sent with the
  buffered records as one ``tune.report`` (one Tune iteration), and the trial's end as a last report. A Tune
  ``Callback`` in the driver hands them to the driver, which writes the run store; workers never write it. The
  trial's first report also carries its worker process's fingerprint (``sweep_fingerprint``, computed once per
  worker process), which the driver records on the trial's run: the machine that ran the trial, not the driver's.
  A trial that dies before its first report keeps the driver's.
* **Early stopping**: Tune's schedulers, ``"asha"`` (ASHAScheduler) or ``"median"`` (MedianStoppingRule), or any
  ``TrialScheduler`` given; both count time in metric reports (``training_iteration``). A trial Tune stops ends
  without its last report: the driver records it "pruned".
* **Failures**: an exception in ``train_fn`` is caught in the trial and reported (recorded failed with its
  traceback; Tune does not retry it). A worker that dies is retried once by Tune (``FailureConfig(max_failures=1)``)
  as a new run; a second death is recorded failed.
"""
from __future__ import annotations

import importlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .worker import TrialSpec, run_trial


class _TuneChannel:
    """In the trial: buffers records and epoch ends; reports them with each metric value (and at the end)."""

    def __init__(self, metric: str):
        self.metric = metric
        self.events: list[Any] = []
        self.pending_fingerprint: dict[str, Any] | None = None

    def log(self, records: list[tuple[int, float, dict[str, float]]]) -> None:
        self.events.append(["log", [[step, t, values] for step, t, values in records]])

    def epoch(self, summary: dict[str, dict[str, float]], step: int) -> None:
        self.events.append(["epoch", summary, step])

    def fingerprint(self, fingerprint: dict[str, Any]) -> None:
        # rides on the first report: a report of its own would be a Tune iteration, which ASHA counts as time
        self.pending_fingerprint = fingerprint

    def should_stop(self, step: int, value: float) -> bool:
        self.report({self.metric: value, "sweep_step": step})
        return False  # Tune stops a trial itself when its scheduler says so

    def report(self, metrics: dict[str, Any]) -> None:
        from ray import tune  # noqa: PLC0415

        events, self.events = self.events, []
        if self.pending_fingerprint is not None:
            metrics = {**metrics, "sweep_fingerprint": self.pending_fingerprint}
            self.pending_fingerprint = None
        tune.report({**metrics, "sweep_events": events})


def _make_trainable(train_fn: Any, code: dict[str, Any] | None) -> Any:
    """The Tune trainable; ``code`` (the driver's fingerprint's code part) goes to the workers with it, once."""

    def sweep_trial(config: dict[str, Any]) -> None:
        spec = TrialSpec(**config["sweep_spec"])
        channel = _TuneChannel(spec.metric)
        status, error = run_trial(train_fn, spec, channel, code)
        channel.report({"sweep_end": status, "sweep_error": error or ""})

    return sweep_trial


class RayExecutor:
    """Runs trials with Ray Tune. ``address``: a Ray cluster ("ray://host:10001", "auto", ...); None: the Ray this
    process already joined, else a new local one. ``resources_per_trial``: e.g. ``{"cpu": 1, "gpu": 0.5}``."""

    name = "ray"

    def __init__(self, max_concurrent: int | None = None, address: str | None = None,
                 resources_per_trial: Mapping[str, float] | None = None, early_stop: Any = None,
                 metric: str = "val_loss", mode: str = "min"):
        try:
            import ray  # noqa: F401, PLC0415
            from ray import tune  # noqa: F401, PLC0415
        except ImportError:
            raise ImportError("executor='ray' needs Ray Tune: pip install 'tinygrad_nb[sweep]' (ray[tune])") from None
        self.max_concurrent = max_concurrent
        self.address = address
        self.resources = dict(resources_per_trial or {"cpu": 1})
        self.metric, self.mode = metric, mode
        self.scheduler = _scheduler(early_stop, metric, mode)

    def run(self, driver: Any) -> None:
        import ray  # noqa: PLC0415
        from ray import tune  # noqa: PLC0415
        from ray.tune import Callback  # noqa: PLC0415
        from ray.tune.search import Searcher  # noqa: PLC0415

        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False)
        specs: dict[str, TrialSpec] = {}
        endings: dict[str, tuple[str, str | None]] = {}
        done: set[str] = set()

        class DriverSearcher(Searcher):
            """Tune asks the sweep's search for each trial."""

            def suggest(self, trial_id: str) -> dict[str, Any] | None:
                spec = driver.next_spec()
                if spec is None:
                    return Searcher.FINISHED
                specs[trial_id] = spec
                return {"sweep_spec": asdict(spec)}

            def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                                  error: bool = False) -> None:
                pass  # the callback below ends the trial in the driver

        def end(trial_id: str, status: str, error: str | None) -> None:
            if trial_id in specs and trial_id not in done:
                done.add(trial_id)
                driver.on_end(specs[trial_id], status, error)

        class DriverCallback(Callback):
            """Runs in the driver: every result's records go to the driver, which writes the run store."""

            def on_trial_result(self, iteration: int, trials: Any, trial: Any, result: dict[str, Any],
                                **info: Any) -> None:
                spec = specs.get(trial.trial_id)
                if spec is None or trial.trial_id in done:
                    return
                if result.get("sweep_fingerprint"):
                    driver.on_fingerprint(spec, result["sweep_fingerprint"])
                for event in result.get("sweep_events") or []:
                    if event[0] == "log":
                        driver.on_log(spec, [(int(s), float(t), v) for s, t, v in event[1]])
                    else:
                        driver.on_epoch(spec, event[1], int(event[2]))
                if "sweep_end" in result:
                    endings[trial.trial_id] = (result["sweep_end"], result.get("sweep_error") or None)

            def on_trial_complete(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
                status, error = endings.pop(trial.trial_id, ("pruned", None))  # no last report: Tune stopped it
                end(trial.trial_id, status, error)

            def on_trial_error(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
                try:
                    error = str(trial.get_error())
                except Exception:  # noqa: BLE001 - the message is a courtesy; the status is what counts
                    error = f"see {trial.error_file}"
                end(trial.trial_id, "failed", f"the Ray trial failed, retried once (its worker died or could not "
                                              f"start): {error}")

            def on_trial_recover(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
                spec = specs.get(trial.trial_id)
                if spec is not None and trial.trial_id not in done:
                    endings.pop(trial.trial_id, None)
                    retry = driver.on_lost(spec, "its Ray worker died")
                    if retry is not None:
                        specs[trial.trial_id] = retry

        storage = tempfile.mkdtemp(prefix="tinygrad_nb-sweep-")
        saved = {k: os.environ.get(k) for k in ("TUNE_DISABLE_STRICT_METRIC_CHECKING",
                                               "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "RAY_AIR_NEW_OUTPUT")}
        # the last report of a trial carries no metric (strict checking would refuse it); the driver is the logger
        os.environ.update({"TUNE_DISABLE_STRICT_METRIC_CHECKING": "1", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
                           "RAY_AIR_NEW_OUTPUT": "0"})
        # Tune's own result files are off (the driver is the logger): its notes that it cannot find them are noise
        quiet = [logging.getLogger(n) for n in ("ray.tune", "ray.train")]
        levels = [q.level for q in quiet]
        for q in quiet:
            q.setLevel(logging.ERROR)
        try:
            _ship_by_value(driver.train_fn)
            trainable = tune.with_resources(_make_trainable(driver.train_fn, driver.code_fingerprint),
                                           self.resources)
            total = driver.search.total
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=DriverSearcher(), scheduler=self.scheduler,
                                            num_samples=total if total is not None else -1,
                                            max_concurrent_trials=self.max_concurrent, reuse_actors=True),
                run_config=tune.RunConfig(name=f"sweep-{driver.result.id}", storage_path=storage, verbose=0,
                                          callbacks=[DriverCallback()],
                                          failure_config=tune.FailureConfig(max_failures=1)))
            tuner.fit()
        except BaseException:
            driver.on_interrupted([specs[t] for t in specs if t not in done])
            raise
        finally:
            for q, level in zip(quiet, levels):
                q.setLevel(level)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            shutil.rmtree(storage, ignore_errors=True)
        unfinished = [specs[t] for t in specs if t not in done]
        if unfinished:  # Tune stops gracefully on Ctrl-C and returns; the sweep reports it as an interrupt
            driver.on_interrupted(unfinished)
            raise KeyboardInterrupt(f"sweep {driver.result.name}: stopped with {len(unfinished)} trials unfinished")


def _ship_by_value(train_fn: Any) -> None:
    """Ray's workers import a pickled function's module by name; a ``train.py`` next to the script or notebook is
    not importable there. Such a module (not ``__main__``, not installed in site-packages, not tinygrad_nb) is
    pickled by value instead, with the code itself."""
    module = sys.modules.get(getattr(train_fn, "__module__", None) or "")
    file = getattr(module, "__file__", None)
    if module is None or file is None or module.__name__ == "__main__" or module.__name__.startswith("tinygrad_nb"):
        return
    if any(part in ("site-packages", "dist-packages") for part in Path(file).parts):
        return
    for name in ("ray.cloudpickle", "cloudpickle"):  # Ray pickles with its own copy of cloudpickle
        try:
            importlib.import_module(name).register_pickle_by_value(module)
        except (ImportError, ValueError):
            pass


def _scheduler(early_stop: Any, metric: str, mode: str) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler  # noqa: PLC0415

    if early_stop is None:
        return FIFOScheduler()
    if isinstance(early_stop, TrialScheduler):
        return early_stop
    if early_stop == "asha":
        return ASHAScheduler(time_attr="training_iteration", metric=metric, mode=mode, grace_period=1,
                             reduction_factor=2)
    if early_stop == "median":
        return MedianStoppingRule(time_attr="training_iteration", metric=metric, mode=mode, grace_period=1,
                                  min_samples_required=2)
    raise ValueError(f"sweep: early_stop must be None, 'asha', 'median' or a ray.tune scheduler on the ray "
                     f"executor, got {early_stop!r}")
