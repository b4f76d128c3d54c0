"""The exercises of notebooks 02, 04, 08, 09 and 12 (tinygrad_nb/exercises/checkers_more.py): every known wrong answer
gets the hint written for it, never a generic one. Their solutions are run by tests/test_exercises.py, which reads
them out of the notebooks; its coverage test also counts the mistakes listed here.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import assert_gets_hint

import tinygrad_nb as tg
from tinygrad_nb import data
from tinygrad_nb.exercises import checkers_more, progress, run


@pytest.fixture(autouse=True)
def progress_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.ENV_DIR, str(tmp_path / "progress"))


def _rename_anywhere(state: Any, renames: Any) -> dict[str, Any]:
    out = {}
    for key, value in state.items():
        for old, new in renames.items():
            key = key.replace(old, new, 1) if old in key else key
        out[key] = value
    return out


def _rename_dropping(state: Any, renames: Any) -> dict[str, Any]:
    return {new + k[len(old):]: v for k, v in state.items() for old, new in renames.items()
            if k.startswith(old) and old != "13."}


def _rename_in_place(state: Any, renames: Any) -> dict[str, Any]:
    for key in list(state):
        old = next(p for p in renames if key.startswith(p))
        state[renames[old] + key[len(old):]] = state.pop(key)
    return state


def _save(**which: bool) -> Any:
    def save_checkpoint(path: Any, model: Any, optimizer: Any, scheduler: Any, loader: Any) -> None:
        objects = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "loader": loader}
        tg.save(path, **{k: v for k, v in objects.items() if which.get(k, True)})

    return save_checkpoint


def _resume(restore_rng: bool = True, **which: bool) -> Any:
    def resume_run(path: Any, model: Any, optimizer: Any, scheduler: Any, loader: Any) -> None:
        objects = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "loader": loader}
        tg.load(path, restore_rng=restore_rng, **{k: v for k, v in objects.items() if which.get(k, True)})

    return resume_run


def _zeroed_max(x: Any, mask: Any) -> Any:
    return (x * mask.unsqueeze(-1).to(x.dtype)).max(dim=1).values


def _cumulative(baseline: Any, changes: Any) -> dict[str, Any]:
    config, out = dict(baseline), {}
    for name, (key, value) in changes.items():
        config[key] = value
        out[name] = dict(config)
    return out


def _in_place(baseline: Any, changes: Any) -> dict[str, Any]:
    out = {}
    for name, (key, value) in changes.items():
        config = baseline
        config[key] = value
        out[name] = config
    return out


def _global_seed_loader(dataset: Any, seed: int) -> Any:
    tg.manual_seed(seed)
    return data.DataLoader(dataset, batch_size=8, shuffle=True)


WRONG_MORE: list[tuple[str, str, Any, str]] = [
    # exercise, mistake, wrong answer, the start of the hint it must get
    ("count_parameters", "tensors", lambda m: len(list(m.parameters())), "for nn.Sequential(Linear(64, 32), ReLU(), "
     "Linear(32, 10)) you return 4: that is the number of parameter *tensors*"),
    ("count_parameters", "frozen counted", lambda m: sum(p.numel() for p in m.parameters()),
     "for a Sequential whose first Linear(6, 5) is frozen you return 53, which counts the frozen layer too"),
    ("count_parameters", "state_dict", lambda m: sum(int(np.prod(t.shape)) for t in m.state_dict().values()),
     "for a Sequential using the same Linear(4, 4) twice you return 40: the state_dict lists a shared weight"),
    ("rename_keys", "replace anywhere", _rename_anywhere, "key '10.weight' became '1inp.weight'"),
    ("rename_keys", "keys dropped", _rename_dropping, "you return 6 keys for 8: missing ['norm.bias'"),
    ("rename_keys", "in place", _rename_in_place, "your function changed the state_dict it was given"),
    ("save_checkpoint", "no loader", _save(loader=False), "the checkpoint has no loader state"),
    ("save_checkpoint", "no scheduler", _save(scheduler=False), "the checkpoint has no scheduler state"),
    ("resume_run", "no loader", _resume(loader=False), "after the resume, batch 1 differs from the uninterrupted"),
    ("resume_run", "no scheduler", _resume(scheduler=False), "after the resume, step 4 uses lr 0.01 instead of 0.005"),
    ("resume_run", "no rng", _resume(restore_rng=False), "after the resume, the batches and the learning rate match"),
    ("masked_mean", "padding averaged", lambda x, m: x.mean(1), "the padded steps are averaged in"),
    ("masked_mean", "padded length", lambda x, m: (x * m.unsqueeze(-1).to(x.dtype)).mean(1),
     "you divide by the padded length (5) for every row"),
    ("masked_mean", "numpy", lambda x, m: tg.tensor((x.numpy() * m.numpy()[..., None]).sum(1) / m.numpy().sum(1,
                                                    keepdims=True)), "the result does not require grad"),
    ("masked_max", "padding included", lambda x, m: x.max(dim=1).values, "the padded steps take part"),
    ("masked_max", "zeroed padding", _zeroed_max, "with all-negative features the max is 0"),
    ("make_loader", "global generator", lambda ds, seed: data.DataLoader(ds, batch_size=8, shuffle=True),
     "with the same seed the order changed after the global generator drew other numbers"),
    ("make_loader", "reseeds global", _global_seed_loader, "make_loader changed the global generator's state"),
    ("make_loader", "no shuffle", lambda ds, seed: data.DataLoader(ds, batch_size=8), "the samples come in their "
     "stored order"),
    ("make_loader", "seed ignored", lambda ds, seed: data.DataLoader(ds, batch_size=8, shuffle=True,
                                                                     generator=tg.random.Generator(seed=0)),
     "seeds 0 and 1 give the same order"),
    ("one_change_variants", "cumulative", _cumulative, "variant 'faster lr' differs from the baseline in "
     "['hidden', 'lr']"),
    ("one_change_variants", "in place", _in_place, "your function changed the baseline"),
    ("linear_flops", "multiply-adds", lambda n, i, o: (n * i * o, 2 * n * i * o), "for n=64, in=64, out=10 the "
     "forward is 4.096e+04 = N*i*o, the number of multiply-adds"),
    ("linear_flops", "one product backward", lambda n, i, o: (2 * n * i * o, 2 * n * i * o),
     "the backward is 8.192e+04, the same as the forward"),
    ("matmul_intensity", "elements", lambda n, k, m, s: 2 * n * k * m / (n * k + k * m + n * m),
     "for itemsize=4 you divide by the number of elements"),
    ("matmul_intensity", "no output", lambda n, k, m, s: 2 * n * k * m / ((n * k + k * m) * s),
     "the bytes miss the output"),
    ("matmul_intensity", "MACs", lambda n, k, m, s: n * k * m / ((n * k + k * m + n * m) * s), "the result is half"),
]


def _targets(device_aware: bool = True, other: bool = False) -> Any:
    def smooth_targets(labels: Any, num_classes: int, smoothing: float) -> Any:
        n, spread = labels.shape[0], smoothing / ((num_classes - 1) if other else num_classes)
        kw = {"device": labels.device} if device_aware else {}
        targets = tg.full((n, num_classes), spread, **kw)
        targets[tg.arange(n, **kw), labels] = 1 - smoothing + (0 if other else spread)
        return targets

    return smooth_targets


def _accuracy(move: bool = True, restore: bool = True, item: bool = True, percent: bool = False) -> Any:
    def device_accuracy(model: Any, x: Any, y: Any) -> Any:
        device = next(model.parameters()).device
        model.eval()
        with tg.no_grad():
            right = (model(x.to(device) if move else x).argmax(1) == y.to(device)).float().mean()
        if restore:
            model.train()
        return (right.item() * (100 if percent else 1)) if item else right

    return device_accuracy


WRONG_MORE += [
    ("smooth_targets", "default device", _targets(device_aware=False), "smooth_targets raised DeviceError for labels "
     "on cpu:sim"),
    ("smooth_targets", "s / (C - 1)", _targets(other=True), "for C=4, s=0.1 you spread s / (C - 1)"),
    ("smooth_targets", "int64", lambda lb, c, s: tg.nn.functional.one_hot(lb, c), "the targets have dtype int64"),
    ("device_accuracy", "data not moved", _accuracy(move=False), "device_accuracy raised DeviceError with the model "
     "on cpu:sim"),
    ("device_accuracy", "a tensor", _accuracy(item=False), "you return a Tensor (on cpu:sim)"),
    ("device_accuracy", "eval mode kept", _accuracy(restore=False), "the model is left in eval mode"),
    ("device_accuracy", "percent", _accuracy(percent=True), "got 40: a percentage"),
]


def test_a_check_leaves_the_random_state_and_the_devices_as_they_were() -> None:
    from tinygrad_nb import device  # noqa: PLC0415

    tg.manual_seed(3)
    state, sim_on = tg.get_rng_state(), device._sim_enabled   # conftest turns cpu:sim on for the whole suite
    for sim in (False, True):
        device.enable_sim_device(sim)
        for exercise_id in ("count_parameters", "resume_run", "make_loader", "smooth_targets", "device_accuracy"):
            run(exercise_id, lambda *a: None)
            assert device._sim_enabled is sim and str(tg.get_default_device()) == "cpu"
    device.enable_sim_device(sim_on)
    assert np.array_equal(np.asarray(tg.get_rng_state(), dtype=object), np.asarray(state, dtype=object))


@pytest.mark.parametrize(("exercise_id", "mistake", "wrong", "hint"), WRONG_MORE,
                         ids=[f"{e}-{m}" for e, m, _, _ in WRONG_MORE])
def test_a_known_mistake_gets_its_hint(exercise_id: str, mistake: str, wrong: Any, hint: str) -> None:
    assert_gets_hint(exercise_id, wrong, hint)


def test_every_exercise_here_has_a_known_mistake() -> None:
    ids = {name for name, value in vars(checkers_more).items() if name.startswith("check_") and callable(value)}
    assert {f"check_{e}" for e, _, _, _ in WRONG_MORE} == ids


def test_a_checkpoint_exercise_leaves_no_file_behind(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile  # noqa: PLC0415

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert run("save_checkpoint", _save()).passed
    assert list(tmp_path.iterdir()) == []
