"""``MLflowSink``: a track sink that mirrors one run to an MLflow tracking server (or any MLflow tracking URI).

    with track.Run(config=..., sinks=[MLflowSink("http://127.0.0.1:5000", experiment="ablations")]) as run:
        ...

The SQLite run store stays the source of truth; MLflow gets a copy: the config as params (flattened, ``opt.lr``),
every scalar as a metric at its step, the status at the end (finished -> FINISHED, pruned -> KILLED, failed and
nan -> FAILED) and the tags ``tinygrad_nb.run_id`` / ``tinygrad_nb.fingerprint``. ``tg.sweep(..., mlflow=URI)``
adds one to every trial's run (experiment: the sweep's name). Metrics are sent with ``log_batch`` at each flush
of the run, in the driver, never from workers.
"""
from __future__ import annotations

import math
from typing import Any

from ..track.store import flatten_config

_STATUS = {"finished": "FINISHED", "pruned": "KILLED", "failed": "FAILED", "nan": "FAILED"}
_BATCH = 1000  # MLflow's log_batch takes at most 1000 metrics per call


class MLflowSink:
    def __init__(self, tracking_uri: str, experiment: str = "tinygrad_nb", tags: dict[str, str] | None = None):
        self.check_available()
        from mlflow.tracking import MlflowClient  # noqa: PLC0415

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.tags = dict(tags or {})
        self.mlflow_run_id: str | None = None

    @staticmethod
    def check_available() -> None:
        try:
            import mlflow  # noqa: F401, PLC0415
        except ImportError:
            raise ImportError("the MLflow sink needs mlflow: pip install mlflow") from None

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(self.experiment)
        except Exception:  # noqa: BLE001 - another trial created it meanwhile
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id

    def write(self, batch: Any) -> None:
        from mlflow.entities import Metric, Param, RunTag  # noqa: PLC0415

        run = batch.run
        if self.mlflow_run_id is None:
            tags = {**self.tags, "tinygrad_nb.run_id": run.id}
            created = self.client.create_run(self._experiment_id(), run_name=run.name, tags=tags)
            self.mlflow_run_id = created.info.run_id
            params = [Param(k, str(v)[:6000]) for k, v in flatten_config(run.config).items()]
            for i in range(0, len(params), 100):  # log_batch: at most 100 params per call
                self.client.log_batch(self.mlflow_run_id, params=params[i:i + 100])
        if batch.event in ("status", "end") and run.fingerprint and "digest" in run.fingerprint:
            self.client.log_batch(self.mlflow_run_id, tags=[RunTag("tinygrad_nb.fingerprint",
                                                                   str(run.fingerprint["digest"]))])
        if batch.event == "log" and batch.scalars:
            metrics = [Metric(name, value if math.isfinite(value) else float("nan"), int(t * 1000), step)
                       for step, t, values in batch.scalars for name, value in values.items()]
            for i in range(0, len(metrics), _BATCH):
                self.client.log_batch(self.mlflow_run_id, metrics=metrics[i:i + _BATCH])
        if batch.event == "end":
            self.client.set_terminated(self.mlflow_run_id, status=_STATUS.get(run.status, "FAILED"))

    def close(self) -> None:
        pass
