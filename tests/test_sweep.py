"""sweep: search spaces (grid order, random draws, seeds), the local executor writing every trial as a run (config,
seed, fingerprint, status), failures and retries, pruning through Optuna's pruners, Ctrl-C, bit-for-bit replay,
TOML config errors, the CLI and the MLflow sink. The Ray executor is tested in test_sweep_ray.py."""
from __future__ import annotations

import itertools
import json
import math
import os
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb import sweep as sw
from tinygrad_nb import track
from tinygrad_nb.sweep.config import SweepConfigError, load_config
from tinygrad_nb.sweep.search import GridSearch, RandomSearch


# -- spaces and searches ------------------------------------------------------------------------------------------
def test_grid_is_the_product_in_key_order_last_key_fastest() -> None:
    space = {"lr": [0.1, 0.01], "act": sw.choice(["relu", "tanh", "gelu"]), "epochs": 3}
    configs = GridSearch(space).configs
    expected = [{"lr": lr, "act": act, "epochs": 3} for lr, act in itertools.product([0.1, 0.01],
                                                                                   ["relu", "tanh", "gelu"])]
    assert configs == expected
    assert [list(c) for c in configs] == [["lr", "act", "epochs"]] * 6  # the space's key order
    assert GridSearch(space, trials=4).configs == expected[:4]
    with pytest.raises(sw.SpaceError, match="trials=7 but the grid has only 6 points"):
        GridSearch(space, trials=7)


def test_grid_refuses_a_continuous_dimension_naming_the_key() -> None:
    with pytest.raises(sw.SpaceError, match=r"key 'lr' is loguniform\(0.0001, 0.1\); a grid search needs a list"):
        GridSearch({"h": [1, 2], "lr": sw.loguniform(1e-4, 1e-1)})
    with pytest.raises(sw.SpaceError, match="key 'sweep.seed' is reserved"):
        GridSearch({"sweep.seed": [1]})


def test_random_search_draws_each_trial_from_its_own_stream() -> None:
    space = {"lr": sw.loguniform(1e-4, 1e-1), "wd": sw.uniform(0.0, 0.5), "layers": sw.randint(1, 3),
             "act": ["relu", "tanh"], "epochs": 2}
    a = RandomSearch(space, trials=8, seed=7).configs
    # trial i's config does not depend on how many trials there are
    assert RandomSearch(space, trials=3, seed=7).configs == a[:3]
    assert RandomSearch(space, trials=8, seed=8).configs != a
    for i, c in enumerate(a):  # the documented draw: SeedSequence(seed, spawn_key=(1, i)), keys in order
        rng = np.random.default_rng(np.random.SeedSequence(7, spawn_key=(1, i)))
        lr = math.exp(math.log(1e-4) + (math.log(1e-1) - math.log(1e-4)) * rng.random())
        wd = 0.5 * rng.random()
        layers = int(rng.integers(1, 4))
        act = ["relu", "tanh"][int(rng.integers(2))]
        assert c == {"lr": lr, "wd": wd, "layers": layers, "act": act, "epochs": 2}
        assert 1e-4 <= c["lr"] < 1e-1 and 0 <= c["wd"] < 0.5 and c["layers"] in (1, 2, 3)


def test_trial_seeds_are_derived_from_the_sweep_seed_and_trial_id() -> None:
    seeds = [sw.trial_seed(0, i) for i in range(100)]
    assert len(set(seeds)) == 100
    assert seeds[5] == int(np.random.SeedSequence(0, spawn_key=(0, 5)).generate_state(1, np.uint32)[0])
    assert sw.trial_seed(1, 5) != seeds[5]


# -- the local executor -------------------------------------------------------------------------------------------
def noisy_train(config: dict[str, Any], run: Any) -> None:
    """A deterministic train_fn: val_loss from the config plus noise from the trial's seeded generator."""
    noise = tg.randn(4).numpy().astype(np.float64)
    for step in range(4):
        run.log({"val_loss": config["lr"] * (4 - step) + config["h"] * 0.01 + float(noise[step]) * 1e-3,
                 "train_loss": float(noise[step])}, step=step)
    run.epoch_end()
    if "fingerprints" in config:  # leave what this process computes itself, to compare with the run's record
        from tinygrad_nb.fingerprint import environment_info

        Path(config["fingerprints"], f"{run.id}.json").write_text(json.dumps(
            {"pid": os.getpid(), "environment": environment_info()}, default=str))
    if config.get("fail") and config["lr"] == 0.3:
        raise ValueError(f"trial with lr={config['lr']} exploded")


def expected_losses(config: dict[str, Any], seed: int) -> list[float]:
    tg.manual_seed(seed)
    noise = tg.randn(4).numpy().astype(np.float64)
    return [config["lr"] * (4 - s) + config["h"] * 0.01 + float(noise[s]) * 1e-3 for s in range(4)]


GRID12 = {"lr": [0.1, 0.2, 0.3], "h": [1, 2, 3, 4]}


def test_every_trial_is_a_run_with_config_seed_fingerprint_and_status(tmp_path: Path) -> None:
    store = track.RunStore(tmp_path / "runs.db")
    result = sw.sweep(noisy_train, {**GRID12, "fail": True}, max_concurrent=2, store=store, live=False, seed=3)
    assert [t.trial for t in result.trials] == list(range(12))
    records = {r.id: r for r in store.runs()}
    assert len(records) == 12
    for t, config in zip(result.trials, GridSearch({**GRID12, "fail": True}).configs):
        r = records[t.run_id]
        assert t.config == config and t.seed == sw.trial_seed(3, t.trial)
        assert r.config == {**config, "sweep.id": result.id, "sweep.trial": t.trial, "sweep.seed": t.seed}
        assert r.fingerprint is not None and len(r.fingerprint["digest"]) == 16
        losses = expected_losses(config, t.seed)
        steps, values, _ = store.series(r.id, "val_loss")
        assert steps.tolist() == [0, 1, 2, 3] and values.tolist() == losses  # bit for bit, through the pipe
        assert "val_loss/epoch_mean" in store.metric_names(r.id)
        assert t.value == min(losses) and t.last == losses[-1]
        failing = config["lr"] == 0.3
        assert r.status == t.status == ("failed" if failing else "finished")
        if failing:  # the traceback comes back and is kept in the manifest; the sweep went on
            assert "ValueError: trial with lr=0.3 exploded" in t.error
    manifest = json.loads((tmp_path / "sweeps" / f"{result.id}.json").read_text())
    assert [m["status"] for m in manifest["trials"]] == [t.status for t in result.trials]
    assert "exploded" in manifest["trials"][8]["error"]
    assert result.best.trial == 0 and result.best.value == min(expected_losses(GridSearch(GRID12).configs[0],
                                                                               sw.trial_seed(3, 0)))
    table = str(result.table())
    assert table.splitlines()[0].split() == ["trial", "status", "config.h", "config.lr", "val_loss", "best",
                                             "val_loss", "last", "steps"]
    assert track.runs(store, config={"sweep.id": result.id}, status="failed")[0].config["lr"] == 0.3


def test_spawned_workers_get_the_train_fn_pickled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("cloudpickle")
    offset = 0.5  # a closure over a local: only cloudpickle ships it to a spawned process
    # read by OpenBLAS as a spawned worker loads it; this process's BLAS was loaded long ago and keeps its threads
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")

    def train(config: dict[str, Any], run: Any) -> None:
        assert isinstance(run, sw.TrialRun) and run.seed == sw.trial_seed(0, run.trial)
        run.log({"val_loss": config["x"] + offset, "seed": float(run.seed)})

    store = track.RunStore(tmp_path / "r.db")
    result = sw.sweep(train, {"x": [1.0, 2.0]}, max_concurrent=2, store=store, start_method="spawn", live=False)
    assert [(t.status, t.value) for t in result.trials] == [("finished", 1.5), ("finished", 2.5)]
    driver = tg.fingerprint().to_dict()
    for t in result.trials:  # each run records its spawned worker's environment, with the driver's code
        recorded = store.get(t.run_id).fingerprint
        assert recorded["code"] == driver["code"]
        blas = recorded["environment"]["determinism"]["blas_threads"]
        assert blas["environment_at_import"]["OPENBLAS_NUM_THREADS"] == "1"
        openblas = [p for p in recorded["environment"]["blas"]["threads"] or [] if p["api"] == "openblas"]
        assert [p["num_threads"] for p in openblas] == [1] * len(openblas)


def fingerprint_train(config: dict[str, Any], run: Any) -> None:
    """Leaves the fingerprint of the process it runs in, as that process computes it, next to the trial."""
    Path(config["out"], f"{run.id}.json").write_text(json.dumps({"pid": os.getpid(),
                                                                 "fingerprint": tg.fingerprint().to_dict()}))
    run.log({"val_loss": config["x"]}, step=0)


def test_each_trial_records_the_fingerprint_of_the_worker_that_ran_it(tmp_path: Path) -> None:
    store = track.RunStore(tmp_path / "runs.db")
    # deterministic mode is on in the workers (it pins their BLAS threads to 1) and off in this driver process
    result = sw.sweep(fingerprint_train, {"x": [1.0, 2.0, 3.0], "out": str(tmp_path)}, max_concurrent=2,
                      store=store, deterministic=True, live=False)
    driver = tg.fingerprint().to_dict()
    assert driver["environment"]["determinism"]["mode"] is False
    for t in result.trials:
        assert t.status == "finished"
        recorded = store.get(t.run_id).fingerprint
        worker = json.loads((tmp_path / f"{t.run_id}.json").read_text())
        assert worker["pid"] != os.getpid()
        # forked workers: their own code part is the driver's, so the whole fingerprint must match, digest included
        assert recorded == worker["fingerprint"]
        assert recorded["environment"]["determinism"]["mode"] is True
        assert recorded["environment"]["determinism"]["blas_threads"]["pinned"] is True
        assert recorded["digest"] != driver["digest"] and recorded["code"] == driver["code"]


def test_a_worker_without_a_fingerprint_keeps_the_drivers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    fingerprint_module = importlib.import_module("tinygrad_nb.fingerprint")  # tg.fingerprint is the function
    driver_pid, working = os.getpid(), fingerprint_module.environment_info

    def broken_in_workers() -> dict[str, Any]:  # forked workers inherit the patch; only this process is spared
        if os.getpid() != driver_pid:
            raise OSError("cannot read /proc/cpuinfo")
        return working()

    # a fingerprint this process cached for itself (a replay here leaves one) must not be what forked workers send
    with tg.deterministic(True):
        assert sw.worker.trial_fingerprint(tg.fingerprint().to_dict()["code"], True) is not None
    monkeypatch.setattr(fingerprint_module, "environment_info", broken_in_workers)
    store = track.RunStore(tmp_path / "runs.db")
    # deterministic in the workers: a fingerprint they did send would differ from the driver's (mode True there)
    result = sw.sweep(noisy_train, {"lr": [0.1, 0.2], "h": [1]}, max_concurrent=2, store=store, live=False, seed=4,
                      deterministic=True)
    driver = tg.fingerprint().to_dict()
    assert driver["environment"]["determinism"]["mode"] is False
    for t in result.trials:
        assert t.status == "finished" and t.value == min(expected_losses(t.config, t.seed))
        assert store.get(t.run_id).fingerprint == driver


def staged_train(config: dict[str, Any], run: Any) -> None:
    for step in range(6):
        run.log({"val_loss": config["quality"] + 0.1 * (6 - step)}, step=step)


def test_pruning_marks_trials_pruned_and_stops_them_early(tmp_path: Path) -> None:
    store = track.RunStore(tmp_path / "runs.db")
    # one worker: trials run in order; the first two (good) set the median, the worse ones fall below it
    result = sw.sweep(staged_train, {"quality": [0.0, 0.1, 5.0, 6.0, 0.05]}, max_concurrent=1, store=store,
                      early_stop="median", live=False)
    status = {t.config["quality"]: t.status for t in result.trials}
    assert status == {0.0: "finished", 0.1: "finished", 5.0: "pruned", 6.0: "pruned", 0.05: "finished"}
    for t in result.trials:
        r = store.get(t.run_id)
        assert r.status == t.status
        logged = len(store.series(t.run_id, "val_loss")[0])
        assert logged == (1 if t.status == "pruned" else 6)  # MedianPruner judges from the first step on


def test_optuna_search_with_asha_pruner(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    store = track.RunStore(tmp_path / "runs.db")
    result = sw.sweep(staged_train, {"quality": sw.uniform(0.0, 10.0)}, search="optuna", trials=10,
                      max_concurrent=1, store=store, early_stop="asha", live=False, seed=1)
    assert len(result.trials) == 10 and {t.status for t in result.trials} <= {"finished", "pruned"}
    assert any(t.status == "pruned" for t in result.trials)
    assert all(0.0 <= t.config["quality"] < 10.0 for t in result.trials)
    pruned = [t for t in result.trials if t.status == "pruned"]
    assert all(t.steps < 6 for t in pruned)
    assert [r.status for r in (store.get(t.run_id) for t in pruned)] == ["pruned"] * len(pruned)


def dying_train(config: dict[str, Any], run: Any) -> None:
    marker = Path(config["marker"])
    run.log({"val_loss": 1.0}, step=0)
    if config["die"] == "always" or (config["die"] == "once" and not marker.exists()):
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    run.log({"val_loss": 0.5}, step=1)


def test_a_killed_worker_is_retried_once(tmp_path: Path) -> None:
    store = track.RunStore(tmp_path / "runs.db")
    space = {"die": ["once", "always", "never"], "marker": str(tmp_path / "died")}
    result = sw.sweep(dying_train, space, max_concurrent=1, store=store, live=False)
    by = {t.config["die"]: t for t in result.trials}
    assert (by["once"].status, by["once"].attempts, by["once"].value) == ("finished", 2, 0.5)
    assert (by["always"].status, by["always"].attempts) == ("failed", 2)
    assert "worker process died (exit code -9)" in by["always"].error
    assert by["never"].status == "finished"
    runs = store.runs(config={"sweep.id": result.id})
    assert sorted((r.config["die"], r.status) for r in runs) == [
        ("always", "failed"), ("always", "failed"), ("never", "finished"), ("once", "failed"), ("once", "finished")]


def test_ctrl_c_stops_the_sweep_and_keeps_finished_trials(tmp_path: Path) -> None:
    store = track.RunStore(tmp_path / "runs.db")
    ended: list[int] = []

    def interrupt_after_two(trial: Any) -> None:
        ended.append(trial.trial)
        if len(ended) == 2:
            raise KeyboardInterrupt  # what Ctrl-C raises in the driver's wait

    with pytest.raises(KeyboardInterrupt):
        sw.sweep(noisy_train, GRID12, max_concurrent=1, store=store, live=False, callbacks=[interrupt_after_two])
    runs = store.runs()
    assert sorted(r.config["sweep.trial"] for r in runs) == [0, 1]
    assert [r.status for r in runs] == ["finished", "finished"]


def mlp_train(config: dict[str, Any], run: Any) -> None:
    """A small MLP on seeded data: bit-for-bit only in deterministic mode (pinned BLAS threads)."""
    model = tg.nn.Sequential(tg.nn.Linear(8, config["h"]), tg.nn.ReLU(), tg.nn.Linear(config["h"], 1))
    opt = tg.optim.SGD(model.parameters(), lr=config["lr"])
    x, y = tg.randn(64, 8), tg.randn(64, 1)
    for step in range(5):
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log({"val_loss": loss}, step=step)


def test_replaying_a_trial_from_its_run_record_is_bit_for_bit(tmp_path: Path) -> None:
    store = track.RunStore(tmp_path / "runs.db")
    result = sw.sweep(mlp_train, {"lr": [0.05, 0.1], "h": [16, 32]}, max_concurrent=2, store=store,
                      deterministic=True, live=False, seed=11)
    best = result.best
    replayed = result.replay(best.trial, mlp_train)
    record = store.get(replayed.id)
    assert record.config["sweep.replay_of"] == best.run_id and record.config["sweep.seed"] == best.seed
    original = store.series(best.run_id, "val_loss")[1]
    again = store.series(replayed.id, "val_loss")[1]
    assert original.tobytes() == again.tobytes() and len(again) == 5
    other = next(t for t in result.trials if t.trial != best.trial)
    assert store.series(other.run_id, "val_loss")[1].tobytes() != original.tobytes()
    with pytest.raises(ValueError, match="is not a sweep trial"):
        plain = track.Run(store=store, fingerprint=False)
        plain.finish()
        sw.replay(plain.id, mlp_train, store=store)


def test_bad_arguments_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="search='random' needs trials=N"):
        sw.sweep(noisy_train, GRID12, search="random", store=tmp_path / "r.db", live=False)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max', got 'best'"):
        sw.sweep(noisy_train, GRID12, mode="best", store=tmp_path / "r.db", live=False)
    with pytest.raises(ValueError, match="early_stop must be None, 'asha', 'median' or an optuna pruner"):
        sw.sweep(noisy_train, GRID12, early_stop="hyperband", store=tmp_path / "r.db", live=False)


def test_text_view_prints_a_line_per_trial_and_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = sw.sweep(staged_train, {"quality": [0.0, 1.0]}, max_concurrent=1, store=tmp_path / "r.db",
                      name="demo")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[sweep demo] trial 0 finished val_loss 0.1   1 ended; best: trial 0 (0.1)"
    assert out[1] == "[sweep demo] trial 1 finished val_loss 1.1   2 ended; best: trial 0 (0.1)"
    assert out[2] == "sweep demo: 2 trials, grid search on local; best trial 0 (val_loss 0.1)"
    assert out[3:] == str(result.table()).splitlines()


# -- TOML configs and the CLI ---------------------------------------------------------------------------------------
TRAIN_PY = """
def train(config, run):
    for step in range(3):
        run.log({"val_loss": config["lr"] * (3 - step) + config["h"]}, step=step)
"""


def write_config(tmp_path: Path, body: str) -> Path:
    (tmp_path / "train.py").write_text(TRAIN_PY)
    path = tmp_path / "sweep.toml"
    path.write_text(textwrap.dedent(body).lstrip())
    return path


GOOD = """
[sweep]
train = "train.py:train"
max_concurrent = 2
store = "runs.db"
name = "cli"

[space]
lr = [0.1, 0.2]
h = {randint = [1, 3]}
"""


def test_toml_config_resolves_train_space_and_store(tmp_path: Path) -> None:
    kwargs = load_config(write_config(tmp_path, GOOD.replace('{randint = [1, 3]}', '[1, 2]')))
    assert kwargs["space"] == {"lr": [0.1, 0.2], "h": [1, 2]}
    assert kwargs["store"] == str((tmp_path / "runs.db").resolve()) and kwargs["max_concurrent"] == 2
    assert kwargs["train_fn"].__name__ == "train"
    kwargs = load_config(write_config(tmp_path, GOOD))
    assert kwargs["space"]["h"] == sw.randint(1, 3)


@pytest.mark.parametrize(("edit", "message"), [
    (("max_concurrent = 2", 'max_concurrent = "2"'), r"sweep.toml:3: sweep.max_concurrent: expected an integer, "
                                                     r"got '2'"),
    (("name = \"cli\"", "nmae = \"cli\""), r"sweep.toml:5: sweep.nmae: unknown key"),
    (("max_concurrent = 2", 'early_stop = "hyperband"'), r"sweep.toml:3: sweep.early_stop: must be one of 'asha', "
                                                         r"'median', got 'hyperband'"),
    (("h = {randint = [1, 3]}", "h = {normal = [0, 1]}"), r"sweep.toml:9: space.h: a table here is a range"),
    (("h = {randint = [1, 3]}", "h = {uniform = [0]}"), r"sweep.toml:9: space.h: uniform needs \[low, high\]"),
    (("h = {randint = [1, 3]}", "h = {uniform = [2, 1]}"), r"sweep.toml:9: space.h: uniform: need finite low < high"),
    (("h = {randint = [1, 3]}", "h = []"), r"sweep.toml:9: space.h: an empty list has nothing to choose from"),
    (('train = "train.py:train"', 'train = "train.py:nope"'), r"sweep.toml:2: sweep.train: .* has no function 'nope'"),
    (('train = "train.py:train"', 'train = "missing.py:train"'), r"sweep.toml:2: sweep.train: no file .*missing.py"),
    (("[space]", "[spaec]"), r"sweep.toml:7: \[spaec\]: unknown table"),
    (("lr = [0.1, 0.2]", "lr = [0.1, 0.2"), r"sweep.toml:9: not valid TOML: Unclosed array \(at line 9"),
])
def test_toml_errors_name_file_line_and_key(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    path = write_config(tmp_path, GOOD.replace(*edit))
    with pytest.raises(SweepConfigError, match=message):
        load_config(path)


def test_cli_runs_the_sweep_from_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tinygrad_nb.cli import main

    path = write_config(tmp_path, GOOD.replace('{randint = [1, 3]}', '[1, 2]'))
    assert main(["sweep", str(path), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "trial 0: {'lr': 0.1, 'h': 1}", "trial 1: {'lr': 0.1, 'h': 2}", "trial 2: {'lr': 0.2, 'h': 1}",
        "trial 3: {'lr': 0.2, 'h': 2}"]
    assert main(["sweep", str(path)]) == 0
    out = capsys.readouterr().out
    assert "sweep cli: 4 trials, grid search on local; best trial 0 (val_loss 1.1)" in out
    runs = track.RunStore(tmp_path / "runs.db").runs()
    assert sorted((r.config["lr"], r.config["h"], r.status) for r in runs) == [
        (0.1, 1, "finished"), (0.1, 2, "finished"), (0.2, 1, "finished"), (0.2, 2, "finished")]
    bad = write_config(tmp_path, GOOD.replace("max_concurrent = 2", "max_concurrent = 0"))
    assert main(["sweep", str(bad)]) == 2
    assert "sweep.toml:3: sweep.max_concurrent: must be at least 1, got 0" in capsys.readouterr().err


# -- MLflow ---------------------------------------------------------------------------------------------------------
MLFLOW_START_S = 300  # a cold `mlflow server` imports a lot and migrates its SQLite schema: ~25 s on 2 busy cores


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real ``mlflow server`` with a SQLite backend on 127.0.0.1 and a free port, started and stopped here."""
    pytest.importorskip("mlflow")
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tmp_path / "mlflow"
    folder.mkdir()
    mlflow_cli = shutil.which("mlflow") or ""
    command = ([mlflow_cli] if mlflow_cli else [sys.executable, "-m", "mlflow"]) + [
        "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--default-artifact-root", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1"]
    # no background job runner (huey consumers): the sink needs none and they would take the 2 CPUs
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(folder / "server.log", "wb")  # a file, not a pipe nobody reads that could fill and block the server
    # its own process group, so stopping it also stops the workers it spawns
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def stop() -> None:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:  # already gone, group and all
            pass
        try:  # whatever of its group outlived the polite stop (a stuck worker)
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.wait(timeout=30)
        log.close()

    deadline = time.monotonic() + MLFLOW_START_S
    try:
        while True:  # bounded: the deadline, or the server exiting
            if server.poll() is not None:
                pytest.fail(f"mlflow server exited with {server.returncode}:\n"
                            f"{(folder / 'server.log').read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not ready on {url} after {MLFLOW_START_S} s:\n"
                            f"{(folder / 'server.log').read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
    except BaseException:
        stop()
        raise
    try:
        yield url
    finally:
        stop()


def test_mlflow_sink_mirrors_every_trial(mlflow_server: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = mlflow_server  # a real tracking server over HTTP, its runs in SQLite
    store = track.RunStore(tmp_path / "runs.db")
    result = sw.sweep(staged_train, {"quality": [0.0, 9.0, 0.5]}, max_concurrent=1, store=store, live=False,
                      mlflow={"tracking_uri": uri, "experiment": "ablation"}, early_stop="median", name="ml")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("ablation")
    mirrored = {r.data.tags["tinygrad_nb.run_id"]: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(mirrored) == sorted(t.run_id for t in result.trials)
    for t in result.trials:
        m = mirrored[t.run_id]
        assert m.data.params == {"quality": str(t.config["quality"]), "sweep.id": result.id,
                                 "sweep.trial": str(t.trial), "sweep.seed": str(t.seed)}
        assert m.info.status == {"finished": "FINISHED", "pruned": "KILLED"}[t.status]
        history = client.get_metric_history(m.info.run_id, "val_loss")
        steps, values, _ = store.series(t.run_id, "val_loss")
        assert [(h.step, h.value) for h in sorted(history, key=lambda h: h.step)] == list(zip(steps.tolist(),
                                                                                             values.tolist()))
        assert m.data.tags["tinygrad_nb.fingerprint"] == store.get(t.run_id).fingerprint["digest"]


def test_notebook_view_table_and_overlaid_curves_grey_pruned_trials(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("anywidget")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tinygrad_nb.sweep import view

    made: list[Any] = []

    class Recorded(view.NotebookView):
        def __init__(self, result: Any):
            super().__init__(result)
            made.append(self)

    monkeypatch.setattr(view, "NotebookView", Recorded)
    sw.sweep(staged_train, {"quality": [0.0, 0.1, 5.0]}, max_concurrent=1, early_stop="median", live=True,
             store=tmp_path / "r.db", name="nb")
    (shown,) = made
    html = shown.table.value
    assert html.startswith("<b>sweep nb: 3 trials, grid search on local; best trial 0 (val_loss 0.1)</b>")
    assert '<tr style="color: var(--jp-ui-font-color3, #9e9e9e)"><td>2</td><td>pruned</td>' in html
    curves = shown.curves
    assert list(curves._rows) == ["trial 0", "trial 1", "trial 2"]  # one series per trial, one panel
    assert curves.panels() == {"val_loss": ["trial 0", "trial 1", "trial 2"]}
    assert curves.rows("trial 1")[:, 1].tolist() == [0.1 + 0.1 * (6 - s) for s in range(6)]
    fig, ax = plt.subplots()
    curves.draw([ax])
    colors = {str(line.get_label()).rsplit(" ", 1)[0]: matplotlib.colors.to_hex(line.get_color())
              for line in ax.get_lines() if not str(line.get_label()).startswith("_")}
    plt.close(fig)
    assert colors["trial 2"] == "#9e9e9e" and colors["trial 0"] != "#9e9e9e" and colors["trial 1"] != "#9e9e9e"
