"""The exercises of notebooks 02, 04, 08, 09 and 12, one checker each (same conventions as :mod:`.checkers`).

Each checker runs the learner's function on hidden cases, compares with tinygrad_nb itself (``Module.parameters``,
``load_state_dict``, ``tg.save``/``tg.load`` and an uninterrupted run, ``tg.gradcheck``, the loader's own shuffle)
and, when a value is wrong, tests the known wrong answers to say which mistake it is. ``tests/test_exercises.py``
runs the notebooks' solutions; ``tests/test_exercises_more.py`` runs one known wrong answer per exercise.
"""
from __future__ import annotations

import functools
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..tensor import Tensor
from .core import Trial, close, exercise, fmt, which_mistake


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _keeps_rng(checker: Callable[[Any, Trial], None]) -> Callable[[Any, Trial], None]:
    """Run ``checker`` inside ``tg.fork_rng()``: the models and loaders it builds draw (and re-seed) the global
    generator, and a check must not change what the notebook draws after it."""

    @functools.wraps(checker)
    def checked(fn: Any, trial: Trial) -> None:
        from ..random import fork_rng  # noqa: PLC0415

        with fork_rng():
            checker(fn, trial)

    return checked


# == 02 building models =============================================================================================
def _models_to_count() -> list[tuple[str, Any]]:
    """Models whose trainable count exposes the usual slips: a frozen layer, a weight shared by two layers, a
    BatchNorm (running statistics are buffers, not parameters)."""
    from .. import nn  # noqa: PLC0415

    frozen = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    frozen[0].requires_grad_(False)
    shared = nn.Linear(4, 4)
    return [("nn.Sequential(Linear(64, 32), ReLU(), Linear(32, 10))",
             nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))),
            ("a Sequential using the same Linear(4, 4) twice", nn.Sequential(shared, nn.ReLU(), shared)),
            ("Linear(8, 4) followed by BatchNorm1d(4)", nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4))),
            ("a Sequential whose first Linear(6, 5) is frozen", frozen)]


@exercise("count_parameters", "02_building_models", "the number of trainable numbers in a model",
          "count_parameters(model) -> int")
@_keeps_rng
def check_count_parameters(fn: Any, trial: Trial) -> None:
    models = _models_to_count()
    with trial.stage(f"vs Module.parameters() on {len(models)} models: frozen, shared and BatchNorm included"):
        for what, model in models:
            got = trial.number(trial.call(model, what=what), "the count")
            params = list(model.parameters())
            ref = sum(p.numel() for p in params if p.requires_grad)
            if got == ref:
                continue
            state = model.state_dict()
            trial.fail(which_mistake([
                (got == len([p for p in params if p.requires_grad]) or got == len(params),
                 f"for {what} you return {fmt(got)}: that is the number of parameter *tensors*; count "
                 "the numbers in each (numel)"),
                (got == sum(p.numel() for p in params),
                 f"for {what} you return {fmt(got)}, which counts the frozen layer too: only parameters "
                 "with requires_grad=True are trained"),
                (got == sum(int(np.prod(t.shape)) for t in state.values()),
                 f"for {what} you return {fmt(got)}: the state_dict lists a shared weight under each of "
                 "its names and holds buffers (BatchNorm's running statistics) too; count "
                 "model.parameters(), which gives each parameter once"),
            ], otherwise=f"for {what} you return {fmt(got)}; it has {ref} trainable numbers"))


def _rename_case() -> tuple[Any, Any, dict[str, str]]:
    """An old model (a Sequential with 12 layers: keys '0.', '2.', '10.', ...) and a new one with named layers."""
    from .. import nn  # noqa: PLC0415

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp, self.mid, self.out = nn.Linear(5, 4), nn.Linear(4, 4), nn.Linear(4, 3)
            self.norm = nn.LayerNorm(3)

        def forward(self, x: Tensor) -> Tensor:
            return self.norm(self.out(self.mid(self.inp(x).relu()).relu()))

    layers: list[Any] = [nn.Linear(5, 4), nn.ReLU()] + [nn.Identity()] * 8 + [nn.Linear(4, 4), nn.ReLU(),
                                                                                nn.Linear(4, 3), nn.LayerNorm(3)]
    old = nn.Sequential(*layers)
    renames = {"0.": "inp.", "10.": "mid.", "12.": "out.", "13.": "norm."}
    return old, Net(), renames


@exercise("rename_keys", "02_building_models", "rename a state_dict's keys to load it into another model",
          "rename_keys(state_dict, renames) -> dict")
@_keeps_rng
def check_rename_keys(fn: Any, trial: Trial) -> None:
    old, new, renames = _rename_case()
    state = old.state_dict()
    before = dict(state)
    with trial.stage("returns a dict with every key renamed by its prefix ('0.' does not touch '10.')"):
        out = trial.call(state, dict(renames), what="a 14-layer Sequential's state_dict")
        if not isinstance(out, dict):
            trial.fail(f"{trial.name} should return a dict; got {type(out).__name__}")
        if list(state) != list(before) or any(state[k] is not before[k] for k in before):
            trial.fail("your function changed the state_dict it was given; build and return a new dict")
        expected = {}
        for key in state:
            prefix = next(p for p in renames if key.startswith(p))
            expected[renames[prefix] + key[len(prefix):]] = key
        if set(out) != set(expected):
            mangled = sorted(set(out) - set(expected))
            missing = sorted(set(expected) - set(out))
            if any(k.startswith("1inp.") or "inp." in k[1:] for k in mangled):
                became = next((k for k in mangled if k.endswith("weight")), mangled[0])
                trial.fail(f"key '10.weight' became {became!r}: replacing '0.' anywhere in a key also changes "
                           "'10.'; rename only a key that *starts* with the old prefix, and only that start")
            if len(out) < len(state):
                trial.fail(f"you return {len(out)} keys for {len(state)}: missing {missing[:3]}")
            trial.fail(f"unexpected keys {mangled[:3]}; expected keys such as {missing[:3]}")
        for new_key, old_key in expected.items():
            if out[new_key] is not state[old_key] and not close(np.asarray(out[new_key].numpy()),
                                                                 state[old_key].numpy()):
                trial.fail(f"{new_key!r} does not hold the values of {old_key!r}")
    with trial.stage("the result loads into the new model (load_state_dict, strict) and gives the same outputs"):
        from .. import no_grad  # noqa: PLC0415

        try:
            new.load_state_dict(out)
        except Exception as e:  # noqa: BLE001
            trial.fail(f"load_state_dict refused the result: {e}")
        x = Tensor(_rng(3).standard_normal((6, 5)).astype(np.float32))
        with no_grad():
            if not close(new(x).numpy(), old(x).numpy(), rtol=1e-5, atol=1e-6):
                trial.fail("the new model's outputs differ from the old one's: a tensor went under the wrong name")


# == 04 checkpoints and resume ======================================================================================
def _run(seed: int) -> tuple[Any, Any, Any, Any]:
    """A small run with everything a resume needs: dropout (RNG), Adam, StepLR, a shuffling loader."""
    from .. import data, manual_seed, nn, optim  # noqa: PLC0415

    manual_seed(seed)
    g = _rng(7)
    x = Tensor(g.standard_normal((40, 6)).astype(np.float32))
    y = Tensor(g.integers(0, 3, 40))
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    loader = data.DataLoader(data.TensorDataset(x, y), batch_size=8, shuffle=True)
    return model, opt, sched, loader


def _steps(model: Any, opt: Any, sched: Any, loader: Any, steps: int, it: Any = None
           ) -> list[tuple[bytes, float, float]]:
    """Train ``steps`` steps from where ``it`` (or a new pass over ``loader``) is; each step's (batch bytes, loss,
    learning rate). The scheduler steps at each epoch's end."""
    from ..nn import functional as F  # noqa: PLC0415

    out = []
    it = iter(loader) if it is None else it
    while len(out) < steps:
        try:
            xb, yb = next(it)
        except StopIteration:
            sched.step()
            it = iter(loader)
            continue
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append((xb.numpy().tobytes(), float(loss.item()), float(opt.param_groups[0]["lr"])))
    return out


def _compare_continuations(trial: Trial, ref: list[Any], got: list[Any], missing_hint: dict[str, str]) -> None:
    """Fail with the hint of the first thing that differs: the batches, the learning rate, the losses."""
    for k, ((rb, rl, rlr), (gb, gl, glr)) in enumerate(zip(ref, got)):
        if rb != gb:
            trial.fail(f"after the resume, batch {k + 1} differs from the uninterrupted run's: "
                       + missing_hint["loader"])
        if rlr != glr:
            trial.fail(f"after the resume, step {k + 1} uses lr {fmt(glr)} instead of {fmt(rlr)}: "
                       + missing_hint["scheduler"])
        if rl != gl:
            trial.fail(f"after the resume, the batches and the learning rate match but the loss of step {k + 1} "
                       f"differs ({fmt(gl)} vs {fmt(rl)}): " + missing_hint["rest"])


def _interrupted() -> tuple[list[Any], Any, tuple[Any, Any, Any, Any]]:
    """The reference continuation and final model (an uninterrupted run), and a run stopped mid-epoch."""
    model, opt, sched, loader = _run(0)
    ref = _steps(model, opt, sched, loader, 11)[-4:]         # steps 8-11: the rest of epoch 2 and into epoch 3
    run = _run(0)
    _steps(*run, 7)                          # stopped after step 7, in the middle of epoch 2 (the loader knows where)
    return ref, model, run


@exercise("save_checkpoint", "04_checkpoints_and_resume", "save everything an exact resume needs",
          "save_checkpoint(path, model, optimizer, scheduler, loader)")
@_keeps_rng
def check_save_checkpoint(fn: Any, trial: Trial) -> None:
    from ..checkpoint import load  # noqa: PLC0415

    ref, _, run = _interrupted()
    with tempfile.TemporaryDirectory() as tmp, \
            trial.stage("saved in the middle of an epoch, then loaded into a run with another seed: the next 4 "
                        "batches, learning rates and losses equal an uninterrupted run's, byte for byte"):
        path = Path(tmp) / "run.safetensors"
        trial.call(path, *run, what="a run stopped after 7 steps")
        if not path.exists():
            trial.fail(f"nothing was written at the path given ({path.name}): pass the path to tg.save")
        ckpt = load(path, restore_rng=False)
        for name, state, why in [
                ("model", ckpt.model_state, "the weights"),
                ("optimizer", ckpt.optimizer_state, "Adam's moments and step count"),
                ("loader", ckpt.loader_state, "the shuffle order and the position in the epoch: without it the "
                                              "next batch is not the one the run would have seen"),
                ("scheduler", ckpt.scheduler_state, "the learning rate's schedule")]:
            if state is None:
                trial.fail(f"the checkpoint has no {name} state ({why}); pass {name}= to tg.save")
        model, opt, sched, loader = _run(123)
        load(path, model=model, optimizer=opt, scheduler=sched, loader=loader)
        _compare_continuations(trial, ref, _steps(model, opt, sched, loader, 4),
                               {"loader": "the loader's state is wrong", "scheduler": "the scheduler's state is "
                                "wrong", "rest": "save the checkpoint with tg.save, which also stores the RNG"})


@exercise("resume_run", "04_checkpoints_and_resume", "resume from a checkpoint into brand-new objects",
          "resume_run(path, model, optimizer, scheduler, loader)")
@_keeps_rng
def check_resume_run(fn: Any, trial: Trial) -> None:
    from ..checkpoint import save  # noqa: PLC0415

    ref, ref_model, run = _interrupted()
    with tempfile.TemporaryDirectory() as tmp, \
            trial.stage("a run with another seed, resumed from a mid-epoch checkpoint: the next 4 batches, "
                        "learning rates and losses equal an uninterrupted run's, byte for byte"):
        path = Path(tmp) / "run.safetensors"
        model, opt, sched, loader = run
        save(path, model=model, optimizer=opt, scheduler=sched, loader=loader, step=7)
        fresh = _run(123)
        trial.call(path, *fresh, what="a checkpoint saved after 7 steps")
        _compare_continuations(trial, ref, _steps(*fresh, 4), {
            "loader": "restore the loader too (its shuffle order and position in the epoch)",
            "scheduler": "restore the scheduler too (the learning rate depends on the epoch)",
            "rest": "the dropout masks differ; keep tg.load's restore_rng=True so that the random generator "
                    "continues where it was saved"})
        if not all(p.numpy().tobytes() == q.numpy().tobytes() for p, q in zip(ref_model.parameters(),
                                                                                  fresh[0].parameters())):
            trial.fail("the parameters after the 4 steps differ from the uninterrupted run's")


# == 08 dynamic models ==============================================================================================
def _padded(seed: int, negative: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """x (3, 5, 4) with garbage (7.0) at the padded positions, and its mask (lengths 5, 2, 3)."""
    rng = _rng(seed)
    x = rng.standard_normal((3, 5, 4)) - (3.0 if negative else 0.0)
    mask = np.arange(5)[None, :] < np.array([5, 2, 3])[:, None]
    return np.where(mask[..., None], x, 7.0), mask


def _masked_reduce_stage(fn: Any, trial: Trial, reference: Any, wrong: list[tuple[Any, str]],
                         negative: bool) -> None:
    from .. import gradcheck, tensor  # noqa: PLC0415

    x, mask = _padded(4, negative)
    out = trial.call(tensor(x, requires_grad=True), tensor(mask), what="x (3, 5, 4), lengths 5, 2, 3")
    got = trial.array(out, "the result", (3, 4))
    ref = reference(x, mask)
    if not close(got, ref):
        trial.fail(which_mistake(((close(got, candidate(x, mask)), hint) for candidate, hint in wrong),
                                 otherwise=f"row 1 (length 2) gives {fmt(list(got[1]))}; expected {fmt(list(ref[1]))}"))
    if not getattr(out, "requires_grad", False):
        trial.fail("the result does not require grad: compute it with tensor ops so that the loss can flow back")
    try:
        gradcheck(lambda t: fn(t, tensor(mask)), [tensor(x)])
    except Exception as e:  # noqa: BLE001
        trial.fail(f"tg.gradcheck fails on your function: {e}")


@exercise("masked_mean", "08_dynamic_models", "the mean over the real time steps of a padded batch",
          "masked_mean(x, mask) -> Tensor")
@_keeps_rng
def check_masked_mean(fn: Any, trial: Trial) -> None:
    def ref(x: np.ndarray, m: np.ndarray) -> np.ndarray:
        return (x * m[..., None]).sum(1) / m.sum(1, keepdims=True)

    with trial.stage("(batch, time, features) with garbage at padded steps: values vs numpy, tg.gradcheck"):
        _masked_reduce_stage(fn, trial, ref, [
            (lambda x, m: x.mean(1), "the padded steps are averaged in: multiply by the mask (or select) first"),
            (lambda x, m: (x * m[..., None]).mean(1), "you divide by the padded length (5) for every row; divide "
                                                      "each row by its own number of real steps, mask.sum(1)"),
            (lambda x, m: (x * m[..., None]).sum(1) / m.sum(), "you divide by the number of real steps of the whole "
                                                               "batch; divide each row by its own"),
        ], negative=False)


@exercise("masked_max", "08_dynamic_models", "max-pooling over the real time steps of a padded batch",
          "masked_max(x, mask) -> Tensor")
@_keeps_rng
def check_masked_max(fn: Any, trial: Trial) -> None:
    def ref(x: np.ndarray, m: np.ndarray) -> np.ndarray:
        return np.where(m[..., None], x, -np.inf).max(1)

    def zeroed(x: np.ndarray, m: np.ndarray) -> np.ndarray:
        return (x * m[..., None]).max(1)

    for negative in (False, True):
        with trial.stage("values vs numpy and tg.gradcheck, " + ("features that are all negative (padding "
                                                                "zeroed by a mask would win)" if negative
                                                                else "garbage 7.0 at the padded steps")):
            _masked_reduce_stage(fn, trial, ref, [
                (lambda x, m: x.max(1), "the padded steps take part (their garbage value 7 wins): exclude them"),
                (zeroed, "with all-negative features the max is 0, the value you gave the padded steps: a padded "
                         "step must never win, so fill it with -inf (masked_fill), not 0"),
            ], negative=negative)


# == 09 ablations ===================================================================================================
@exercise("make_loader", "09_ablations_runs_and_metrics", "a shuffling loader whose order depends only on the seed",
          "make_loader(dataset, seed) -> DataLoader")
@_keeps_rng
def check_make_loader(fn: Any, trial: Trial) -> None:
    from .. import data, get_rng_state, manual_seed, randn  # noqa: PLC0415

    dataset = data.TensorDataset(Tensor(np.arange(40)))

    def order(loader: Any) -> list[int]:
        try:
            return [int(v) for (xb,) in loader for v in np.asarray(xb.numpy()).ravel()]
        except Exception as e:  # noqa: BLE001
            trial.fail(f"iterating what {trial.name} returned raised {type(e).__name__}: {e} (return the "
                       "DataLoader)")
        raise AssertionError("unreachable")

    with trial.stage("one epoch covers every sample once, shuffled"):
        manual_seed(1)
        loader = trial.call(dataset, 0, what="seed=0")
        first = order(loader)
        if sorted(first) != list(range(40)):
            trial.fail(f"one epoch gives {len(first)} samples, {len(set(first))} distinct; expected each of the 40 "
                       "once")
        if first == list(range(40)):
            trial.fail("the samples come in their stored order: turn shuffle on (a fixed order would also be "
                       "controlled, but every variant would learn from sorted batches)")
    with trial.stage("the order depends on the seed only: not on the global RNG's state, which a wider model's "
                     "initialisation changes"):
        manual_seed(2)
        randn(128, 32)                                  # a different model drew more numbers before the loader
        state = get_rng_state()
        again = order(trial.call(dataset, 0, what="seed=0 after another model's initialisation"))
        if again != first:
            trial.fail("with the same seed the order changed after the global generator drew other numbers (as a "
                       "wider model's initialisation does): give the loader a generator of its own, seeded with "
                       "seed")
        if not np.array_equal(np.asarray(get_rng_state(), dtype=object), np.asarray(state, dtype=object)):
            trial.fail("make_loader changed the global generator's state (tg.manual_seed?): that also resets "
                       "every later draw (dropout masks, the next model's weights); seed a generator of the "
                       "loader's own instead")
        other = order(trial.call(dataset, 1, what="seed=1"))
        if other == first:
            trial.fail("seeds 0 and 1 give the same order: the seed is not used")
    with trial.stage("each epoch is reshuffled"):
        loader = trial.call(dataset, 0, what="seed=0")
        if order(loader) == order(loader):
            trial.fail("the second epoch repeats the first one's order: create the generator once, in the loader, "
                       "not a fixed permutation")


@exercise("one_change_variants", "09_ablations_runs_and_metrics", "variants that each change one setting",
          "one_change_variants(baseline, changes) -> dict")
@_keeps_rng
def check_one_change_variants(fn: Any, trial: Trial) -> None:
    baseline = {"hidden": 32, "lr": 3e-3, "dropout": 0.0, "seed": 0}
    changes = {"wider": ("hidden", 128), "faster lr": ("lr", 1e-2), "dropout": ("dropout", 0.3)}
    with trial.stage("one config per change, each differing from the baseline in exactly that setting, the "
                     "baseline untouched"):
        given = dict(baseline)
        out = trial.call(given, dict(changes), what="3 changes")
        if given != baseline:
            trial.fail(f"your function changed the baseline (now {given}): every variant must start from an "
                       "unchanged copy, {**baseline, key: value}")
        if not isinstance(out, dict) or set(out) != set(changes):
            keys = sorted(out) if isinstance(out, dict) else type(out).__name__
            trial.fail(f"expected a dict with one config per change {sorted(changes)}; got {keys}")
        for name, (key, value) in changes.items():
            config = out[name]
            if not isinstance(config, dict):
                trial.fail(f"variant {name!r} should be a config dict; got {type(config).__name__}")
            differs = sorted(k for k in set(config) | set(baseline) if config.get(k) != baseline.get(k))
            if differs != [key] or config[key] != value:
                trial.fail(f"variant {name!r} differs from the baseline in {differs}; it should differ in "
                           f"{key!r} only: changes pile up when every variant starts from the previous one")
        if len({id(c) for c in out.values()}) < len(out):
            trial.fail("two variants are the same dict object; build a new dict for each")


# == 12 profiling ===================================================================================================
@exercise("linear_flops", "12_profiling", "the FLOPs of a Linear layer's forward and backward",
          "linear_flops(n, in_features, out_features) -> (forward, backward)")
@_keeps_rng
def check_linear_flops(fn: Any, trial: Trial) -> None:
    cases = [(64, 64, 10), (1, 3, 5), (32, 128, 7)]
    with trial.stage(f"(forward, backward) of the matrix products for {len(cases)} shapes, N = 1 included"):
        for n, i, o in cases:
            out = trial.call(n, i, o, what=f"n={n}, in={i}, out={o}")
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                trial.fail(f"{trial.name} should return two numbers (forward, backward); got {type(out).__name__}")
            fwd, bwd = (trial.number(v, w) for v, w in zip(out, ("forward", "backward")))
            ref = 2 * n * i * o
            if fwd == ref / 2:
                trial.fail(f"for n={n}, in={i}, out={o} the forward is {fmt(fwd)} = N*i*o, the number of "
                           "multiply-adds; each is two floating-point operations")
            if fwd != ref:
                trial.fail(f"for n={n}, in={i}, out={o} the forward is {fmt(fwd)}; count one multiply and one add "
                           "per weight and per row")
            if bwd == ref:
                trial.fail(f"the backward is {fmt(bwd)}, the same as the forward: it computes two products, the "
                           "input's gradient (grad_out @ W) and the weight's (grad_out.T @ x)")
            if bwd != 2 * ref:
                trial.fail(f"for n={n}, in={i}, out={o} the backward is {fmt(bwd)}; count each of its two matrix "
                           "products like the forward's")


@exercise("matmul_intensity", "12_profiling", "FLOPs per byte moved by a matrix product",
          "matmul_intensity(n, k, m, itemsize) -> float")
@_keeps_rng
def check_matmul_intensity(fn: Any, trial: Trial) -> None:
    cases = [(64, 64, 10, 4), (1, 4096, 4096, 4), (512, 512, 512, 2), (8, 3, 5, 8)]
    with trial.stage(f"(n, k) @ (k, m), each array read or written once, for {len(cases)} shapes and itemsizes "
                     "2, 4 and 8"):
        for n, k, m, size in cases:
            got = trial.number(trial.call(n, k, m, size, what=f"n={n}, k={k}, m={m}, itemsize={size}"),
                               "the intensity")
            flops, elements = 2 * n * k * m, n * k + k * m + n * m
            ref = flops / (elements * size)
            if math.isclose(got, ref, rel_tol=1e-9):
                continue
            trial.fail(which_mistake([
                (math.isclose(got, flops / elements, rel_tol=1e-9),
                 f"for itemsize={size} you divide by the number of elements, not of bytes"),
                (math.isclose(got, ref / 2, rel_tol=1e-9), "the result is half: a multiply-add is two FLOPs"),
                (math.isclose(got, flops / ((n * k + k * m) * size), rel_tol=1e-9),
                 "the bytes miss the output: the (n, m) result is written to memory too"),
            ], otherwise=f"for n={n}, k={k}, m={m}, itemsize={size} you return {fmt(got)}; expected {fmt(ref)}"))


# == 05 cpu and gpu =================================================================================================
class _SimDevice:
    """Turns on ``cpu:sim`` (a second numpy device, so that device slips show on a machine without a GPU) and puts
    back the previous setting and default device afterwards."""

    def __enter__(self) -> str:
        from .. import device  # noqa: PLC0415

        self.was_on, self.default = device._sim_enabled, device.get_default_device()
        device.enable_sim_device()
        return "cpu:sim"

    def __exit__(self, *exc: object) -> None:
        from .. import device  # noqa: PLC0415

        device.set_default_device(self.default)
        device.enable_sim_device(self.was_on)


_CREATED_ON_DEFAULT = ("a tensor made inside your function (tg.full, tg.zeros, tg.arange, tg.tensor...) goes to the "
                       "default device, cpu; make it with device=labels.device")


@exercise("smooth_targets", "05_cpu_and_gpu", "label-smoothed targets, made on the labels' device",
          "smooth_targets(labels, num_classes, smoothing) -> Tensor")
@_keeps_rng
def check_smooth_targets(fn: Any, trial: Trial) -> None:
    from .. import tensor  # noqa: PLC0415

    labels = np.array([0, 2, 1, 2, 3])
    cases = [(4, 0.1), (4, 0.0), (5, 0.3)]

    def ref(c: int, s: float) -> np.ndarray:
        return (1 - s) * np.eye(c)[labels] + s / c

    with trial.stage(f"values (PyTorch's label_smoothing: 1 - s on the label, plus s / C everywhere), float32, for "
                     f"{len(cases)} (classes, smoothing)"):
        for c, s in cases:
            out = trial.call(tensor(labels), c, s, what=f"num_classes={c}, smoothing={s}")
            got = trial.array(out, "the targets", (len(labels), c))
            if str(getattr(out, "dtype", "")) != "float32":
                trial.fail(f"the targets have dtype {getattr(out, 'dtype', type(out).__name__)}; make them float32 "
                           "like the logits")
            if close(got, ref(c, s), rtol=1e-6, atol=1e-7):
                continue
            trial.fail(which_mistake([
                (close(got, (1 - s) * np.eye(c)[labels] + s / (c - 1) * (1 - np.eye(c)[labels]), atol=1e-7),
                 f"for C={c}, s={s} you spread s / (C - 1) over the other classes; PyTorch's label "
                 "smoothing mixes in the uniform distribution: s / C on *every* class"),
                (not close(got.sum(1), np.ones(len(labels)), atol=1e-6),
                 f"for C={c}, s={s} a row sums to {fmt(float(got.sum(1)[0]))}; each row is a "
                 "probability distribution and must sum to 1"),
            ], otherwise=f"for C={c}, s={s}, label {labels[0]} your row is {fmt(list(got[0]))}; expected "
                         f"{fmt(list(ref(c, s)[0]))}"))
    with _SimDevice() as other, trial.stage("labels on another device (cpu:sim): the targets are made there too"):
        try:
            out = fn(tensor(labels, device=other), 4, 0.1)
        except Exception as e:  # noqa: BLE001
            trial.fail(f"{trial.name} raised {type(e).__name__} for labels on {other}: {e} ({_CREATED_ON_DEFAULT})")
        if str(out.device) != other:
            trial.fail(f"the targets are on {out.device} while the labels are on {other}: {_CREATED_ON_DEFAULT}")


@exercise("device_accuracy", "05_cpu_and_gpu", "accuracy of a model wherever it lives",
          "device_accuracy(model, x, y) -> float")
@_keeps_rng
def check_device_accuracy(fn: Any, trial: Trial) -> None:
    from .. import nn, no_grad, tensor  # noqa: PLC0415

    g = _rng(5)
    x = tensor(g.standard_normal((20, 6)).astype(np.float32))
    y = tensor(g.integers(0, 3, 20))
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    model.eval()
    with no_grad():
        ref = float((model(x).numpy().argmax(1) == y.numpy()).mean())
    model.train()
    with _SimDevice() as other, trial.stage(f"model on {other}, data on cpu: the accuracy as a Python float, "
                                            "dropout off, the model left in training mode as it was"):
        model.to(other)
        try:
            out = fn(model, x, y)
        except Exception as e:  # noqa: BLE001
            trial.fail(f"{trial.name} raised {type(e).__name__} with the model on {other} and the data on cpu: {e} "
                       "(move the data to the model's device, next(model.parameters()).device)")
        if hasattr(out, "device"):
            trial.fail(f"you return a Tensor (on {out.device}); return a Python float (.item()), which is also "
                       "the moment a GPU result is copied back")
        got = trial.number(out, "the accuracy")
        if not model.training:
            trial.fail("the model is left in eval mode: put back the mode it had (model.train(was_training))")
        if not math.isclose(got, ref, abs_tol=1e-6):
            if math.isclose(got, ref * 100, abs_tol=1e-4):
                trial.fail(f"got {fmt(got)}: a percentage; return a fraction in [0, 1]")
            trial.fail(f"got {fmt(got)}, expected {fmt(ref)}: evaluate in eval mode (dropout off) and compare the "
                       "argmax of the logits with y")
