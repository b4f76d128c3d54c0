"""sweep on Ray Tune: a 12-trial grid gives the same results per trial as the local executor (same configs, seeds
and metric bits), a raising trial is recorded failed with its traceback, and ASHA stops trials early (pruned).
A local Ray with 2 CPUs, started and stopped here; skipped where Ray Tune is not installed.

On a machine loaded far beyond its cores, ``ray.init`` itself can fail ("The current node timed out during
startup"): the raylet waits a fixed ~15 s for its dashboard agent to start (ray-project/ray#65983), no setting
lengthens it."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.tune")

import tinygrad_nb as tg  # noqa: E402
from tinygrad_nb import sweep as sw  # noqa: E402
from tinygrad_nb import track  # noqa: E402

from test_sweep import GRID12, noisy_train, staged_train  # noqa: E402


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    import os

    # a loaded 2-core CI machine can take longer than Ray's default to register the node
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def test_ray_gives_the_same_results_as_local(local_ray: None, tmp_path: Path) -> None:
    store = track.RunStore(tmp_path / "runs.db")
    space = {**GRID12, "fail": True, "fingerprints": str(tmp_path)}  # each trial leaves its process's environment
    on_ray = sw.sweep(noisy_train, space, executor="ray", max_concurrent=2, store=store, live=False, seed=5)
    local = sw.sweep(noisy_train, space, executor="local", max_concurrent=2, store=store, live=False, seed=5)
    assert len(on_ray.trials) == len(local.trials) == 12
    for a, b in zip(sorted(on_ray.trials, key=lambda t: t.trial), local.trials):
        assert (a.trial, a.config, a.seed, a.status, a.value, a.last) == (b.trial, b.config, b.seed, b.status,
                                                                          b.value, b.last)
        assert store.metric_names(a.run_id) == store.metric_names(b.run_id)
        for name in store.metric_names(a.run_id):
            assert store.series(a.run_id, name)[1].tobytes() == store.series(b.run_id, name)[1].tobytes()
        record = store.get(a.run_id)
        assert record.status == a.status and record.config["sweep.seed"] == a.seed
        if a.config["lr"] == 0.3:  # raised in the Ray worker: recorded failed with its traceback, not retried
            assert a.status == "failed" and "ValueError: trial with lr=0.3 exploded" in a.error and a.attempts == 1
    driver = tg.fingerprint().to_dict()
    # each run records the environment of the process that ran it; a Ray worker's differs from this driver's (Ray
    # sets OMP_NUM_THREADS to the trial's CPUs there: 1 BLAS thread), which the driver's own fingerprint would hide
    for t in [*on_ray.trials, *local.trials]:
        recorded = store.get(t.run_id).fingerprint
        worker = json.loads((tmp_path / f"{t.run_id}.json").read_text())
        assert worker["pid"] != os.getpid()
        assert recorded["environment"] == worker["environment"] and recorded["code"] == driver["code"]


def test_asha_on_ray_prunes_worse_trials(local_ray: None, tmp_path: Path) -> None:
    store = track.RunStore(tmp_path / "runs.db")
    # each trial is worse than every earlier one: once two trials reached a rung, a newcomer is in the worse half
    result = sw.sweep(staged_train, {"quality": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]}, executor="ray", max_concurrent=1,
                      store=store, early_stop="asha", live=False)
    statuses = [t.status for t in sorted(result.trials, key=lambda t: t.trial)]
    assert statuses[0] == "finished" and "pruned" in statuses
    assert set(statuses) <= {"finished", "pruned"}
    for t in result.trials:
        assert store.get(t.run_id).status == t.status
        if t.status == "pruned":
            assert t.steps < 6


def test_ray_data_batch_inference_equals_the_runtime(local_ray: None, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    import numpy as np

    import tinygrad_nb as tg
    from tinygrad_nb import nn
    from tinygrad_nb.export import onnx as export_onnx

    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    path = tmp_path / "mlp.onnx"
    export_onnx(model, tg.randn(8, 6), path, validate=False)
    rng = np.random.default_rng(0)
    rows = 100_000
    features = rng.standard_normal((rows, 6)).astype(np.float32)
    frame = pd.DataFrame({"id": np.arange(rows), **{f"f{i}": features[:, i] for i in range(6)}})
    csv = tmp_path / "rows.csv"
    frame.to_csv(csv, index=False, float_format="%.9g")  # 9 digits: float32 round-trips exactly
    out = tg.runtime.map_dataset(csv, path, batch_size=8192, output=tmp_path / "scored", passthrough=["id"])
    got = pd.read_parquet(out).sort_values("id")
    assert got["id"].tolist() == list(range(rows))
    session = tg.runtime.load(path)
    (name,) = [o for o in session.run({session.inputs[0].name: features[:2]})]
    want = np.concatenate([session.run({session.inputs[0].name: features[i:i + 8192]})[name]
                           for i in range(0, rows, 8192)])
    ray_out = got[[f"{name}_{k}" for k in range(3)]].to_numpy()
    # Ray may cut batches at other rows than 8192-row steps (block boundaries), and BLAS may sum a product of a
    # different row count in another order: equal to float32 rounding, not bit for bit
    assert ray_out.dtype == np.float32
    np.testing.assert_allclose(ray_out, want, rtol=1e-5, atol=1e-6)
    assert np.abs(want).max() > 0.1  # a real output, not zeros on both sides
