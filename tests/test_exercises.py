"""tinygrad_nb.exercises: every notebook's solution passes its checker, every known wrong answer gets its hint, and
the progress file and %tg_exercises behave.

The solutions are read from the notebooks themselves (the code cells tagged ``solution``), so the cell a learner
expands is the one tested here; nbval also runs them in place. The wrong answers below are the mistakes each checker
claims to recognise: each must fail with the hint written for it, never with a generic one.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_gets_hint

import tinygrad_nb as tg
from tinygrad_nb import exercises
from tinygrad_nb.exercises import REGISTRY, ProgressError, check, progress, run
from tinygrad_nb.nn import functional as F

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture(autouse=True)
def progress_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Progress files go to a temporary folder, never next to the real notebooks."""
    monkeypatch.setenv(progress.ENV_DIR, str(tmp_path / "progress"))
    monkeypatch.setattr(exercises, "last_notebook", None)
    return tmp_path / "progress"


# -- the notebooks' solutions ---------------------------------------------------------------------------------------
def solution_cells() -> dict[str, tuple[str, str]]:
    """``{exercise id: (notebook, source)}`` of the code cells tagged ``solution`` (metadata ``exercise``: the id)."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            meta = cell.get("metadata", {})
            if cell["cell_type"] == "code" and "solution" in meta.get("tags", []):
                found[meta["exercise"]] = (path.stem, "".join(cell["source"]))
    return found


SOLUTIONS = solution_cells()


def prelude() -> dict[str, Any]:
    """What the notebooks import before their exercises."""
    from tinygrad_nb import data, nn, optim  # noqa: PLC0415

    return {"math": math, "np": np, "tg": tg, "nn": nn, "F": F, "check": check, "data": data, "optim": optim}


def test_every_exercise_has_one_solution_cell_in_its_notebook() -> None:
    assert sorted(SOLUTIONS) == sorted(REGISTRY)
    for exercise_id, (notebook, _) in SOLUTIONS.items():
        assert REGISTRY[exercise_id].notebook == notebook


@pytest.mark.parametrize("exercise_id", sorted(REGISTRY))
def test_the_notebook_solution_passes(exercise_id: str) -> None:
    notebook, source = SOLUTIONS[exercise_id]
    namespace = prelude()
    exec(compile(source, f"{notebook}:{exercise_id}", "exec"), namespace)  # noqa: S102 - our own notebook's cell
    result = run(exercise_id, namespace[exercise_id])
    assert result.passed, str(result)
    assert result.hints == [] and len(result.verified) >= 1
    assert str(result).startswith(f"✓ {exercise_id}: passed. Verified:")


# -- known wrong answers get their own hint --------------------------------------------------------------------------
def _adam(p: Any, g: Any, m: Any, v: Any, t: int, lr: float, betas: Any, eps: float, correct: bool = True,
          root: bool = True) -> tuple[Any, Any, Any]:
    b1, b2 = betas
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    m_hat, v_hat = (m / (1 - b1 ** t), v / (1 - b2 ** t)) if correct else (m, v)
    return p - lr * m_hat / ((np.sqrt(v_hat) if root else v_hat) + eps), m, v


def _log_softmax(x: Any) -> Any:
    shifted = x - x.max(dim=-1, keepdim=True).values.detach()
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


def _log_of_softmax(x: Any) -> Any:
    e = (x - x.max(dim=-1, keepdim=True).values).exp()
    return (e / e.sum(dim=-1, keepdim=True)).log()


def _ln(x: Any, w: Any, g: Any, eps: float) -> tuple[Any, Any, Any]:
    inv = 1 / np.sqrt(x.var(-1, keepdims=True) + eps)
    xhat, gx = (x - x.mean(-1, keepdims=True)) * inv, g * w
    dx = inv * (gx - gx.mean(-1, keepdims=True) - xhat * (gx * xhat).mean(-1, keepdims=True))
    return dx, (g * xhat).sum(0), g.sum(0)


def _conv(x: Any, w: Any) -> Any:
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    out = np.zeros((n, o, h - kh + 1, wd - kw + 1))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nchw,oc->nohw", x[:, :, i:i + h - kh + 1, j:j + wd - kw + 1], w[:, :, i, j])
    return out


def _standardize(a: Any, b: Any, stats: Any = None) -> tuple[Any, Any]:
    s = a if stats is None else stats
    mean, std = s.mean(0), s.std(0)
    return (a - mean) / std, (b - mean) / std


def _confusion(predicted: Any, true: Any, n: int) -> Any:
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (true, predicted), 1)
    return counts


def _norm(grads: Any) -> float:
    return math.sqrt(sum(float((a * a).sum()) for a in grads))


def _clip(grads: Any, max_norm: float) -> Any:
    return [a * min(1.0, max_norm / (_norm(grads) + 1e-6)) for a in grads]


def _train(noise: str = "own", seed_first: bool = True, constant: bool = False, model: Any = None,
           python_random: bool = False) -> Any:
    """A reproducible_train with one of the usual slips: numpy's or Python's global generator, a late or constant
    seed, a model made outside (it keeps training from call to call)."""
    import random  # noqa: PLC0415

    from tinygrad_nb import nn  # noqa: PLC0415

    def reproducible_train(seed: int, x: Any, y: Any, steps: int = 6) -> list[float]:
        s = 0 if constant else seed
        if seed_first:
            tg.manual_seed(s)
        net = model or nn.Sequential(nn.Linear(x.shape[1], 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
        if not seed_first:
            tg.manual_seed(s)
        opt = tg.optim.SGD(net.parameters(), lr=0.1)
        loader = tg.data.DataLoader(tg.data.TensorDataset(x, y), batch_size=16, shuffle=True)
        rng, losses = np.random.default_rng(s), []
        for _, (xb, yb) in zip(range(steps), loader):
            jitter = rng.normal(0, 0.1, size=xb.shape) if noise == "own" else np.random.normal(0, 0.1, size=xb.shape)
            if python_random:
                jitter = jitter * random.random()
            loss = F.cross_entropy(net(xb + tg.tensor(jitter.astype(np.float32))), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    return reproducible_train


def _eval_loss(fork: bool = True, reseed: bool = False, eval_mode: bool = True, restore: str = "saved",
               all_rows: bool = False) -> Any:
    """A random_eval_loss with one slip: no fork_rng, a re-seed, dropout on, the mode not (or wrongly) restored."""
    from contextlib import nullcontext  # noqa: PLC0415

    def random_eval_loss(model: Any, x: Any, y: Any, n: int) -> float:
        was = model.training
        if reseed:
            tg.manual_seed(0)
        with tg.fork_rng() if fork else nullcontext(), tg.no_grad():   # dropout's masks, if on, drawn inside too
            rows = slice(None) if all_rows else tg.randperm(len(x))[:n]
            model.train(not eval_mode)
            loss = F.cross_entropy(model(x[rows]), y[rows]).item()
        if restore == "saved":
            model.train(was)
        elif restore == "train":
            model.train()
        return loss

    return random_eval_loss


def _close_enough(a: Any, e: Any, rtol: float = 1.3e-6, atol: float = 1e-5) -> bool:
    return a.shape == e.shape and a.dtype == e.dtype and bool(np.allclose(a, e, rtol=rtol, atol=atol))


def _batches(samples: Any, size: int) -> Any:
    batch: list[Any] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == size:
            yield batch
            batch = []
    yield batch                             # the last one, empty when the samples divide evenly


def _predict_all(predict: Any, samples: Any, size: int, empty_too: bool = False) -> list[Any]:
    return [r for b in _batches(samples, size) if b or empty_too
            for r in predict(np.stack(b) if b else np.zeros((0, 4)))]


def _lse(x: Any) -> Any:
    m = x.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return np.log(np.exp(x - m).sum(-1)) + m[..., 0]


def _lse_in_place(x: Any) -> Any:
    m = x.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    x -= m
    return np.log(np.exp(x).sum(-1)) + m[..., 0]


def _softmax_grad_in_place(y: Any, g: Any) -> Any:
    g -= (g * y).sum(-1, keepdims=True)
    g *= y
    return g


GAINS = {"relu": math.sqrt(2), "tanh": 5 / 3, "linear": 1.0}

WRONG: list[tuple[str, str, Any, str]] = [
    # exercise, mistake, wrong answer, the start of the hint it must get
    ("mul_backward", "swapped", lambda a, b, g: (a * g, b * g), "grad_a and grad_b are swapped round"),
    ("mul_backward", "no chain rule", lambda a, b, g: (b, a), "with out.grad = 3 your gradient lacks that factor"),
    ("mul_backward", "not a pair", lambda a, b, g: b * g, "<lambda> should return two numbers (grad_a, grad_b)"),
    ("tanh_backward", "x for tanh(x)", lambda x, out, g: (1 - x * x) * g, "you used x where the formula needs"),
    ("tanh_backward", "overflow", lambda x, out, g: g / math.cosh(x) ** 2, "overflows for x = -400"),
    ("tanh_backward", "no chain rule", lambda x, out, g: 1 - out * out, "with out.grad = 2 your gradient lacks"),
    ("pow_backward", "exponent not lowered", lambda x, n, g: n * x ** n * g, "for x=3, n=2 you return n * x**n"),
    ("pow_backward", "no factor n", lambda x, n, g: x ** (n - 1) * g, "for x=3, n=2 the factor n is missing"),
    ("adam_step", "no bias correction", lambda *a: _adam(*a, correct=False),
     "at step t=1 your param moved by up to 3.16 x lr"),
    ("adam_step", "no square root", lambda *a: _adam(*a, root=False), "the update divides by v"),
    ("adam_step", "uphill", lambda p, *a: (2 * p - _adam(p, *a)[0],) + _adam(p, *a)[1:], "the step goes uphill"),
    ("adam_step", "m from |g|", lambda p, g, m, v, *a: _adam(p, g, m, v, *a)[0:1] + (m,) + _adam(p, g, m, v, *a)[2:],
     "at step t=1 m is wrong"),
    ("mse_grad", "sum", lambda p, t: (((p - t) ** 2).sum(), 2 * (p - t) / p.size), "the loss is 5x too big for 5"),
    ("mse_grad", "no 1/N", lambda p, t: (((p - t) ** 2).mean(), 2 * (p - t)), "the gradient is 5x too big"),
    ("mse_grad", "no 2", lambda p, t: (((p - t) ** 2).mean(), (p - t) / p.size), "the gradient is half"),
    ("mse_grad", "sign", lambda p, t: (((p - t) ** 2).mean(), 2 * (t - p) / p.size), "the gradient has the wrong sign"),
    ("mse_grad", "shape", lambda p, t: (((p - t) ** 2).mean(), (2 * (p - t) / p.size)[None]), "grad has shape (1, 5)"),
    ("accuracy", "count", lambda lg, y: (lg.argmax(1) == y).sum().item(), "got 9 for 12 samples: that is the count"),
    ("accuracy", "percent", lambda lg, y: 100 * (lg.argmax(1) == y).float().mean().item(), "got 75: a percentage"),
    ("accuracy", "dim 0", lambda lg, y: (lg.argmax(0) == y).float().mean().item(), "<lambda> raised ShapeError"),
    ("standardize", "leakage", lambda a, b: _standardize(a, b, np.concatenate([a, b])),
     "the statistics include the test rows (leakage)"),
    ("standardize", "test's own stats", lambda a, b: (_standardize(a, a)[0], _standardize(b, b)[0]),
     "the test rows are scaled with their own mean and std"),
    ("standardize", "whole table", lambda a, b: ((a - a.mean()) / a.std(), (b - a.mean()) / a.std()),
     "the scaled training columns have means"),
    ("standardize", "constant column", _standardize, "with a constant training column the result is not finite"),
    ("confusion_matrix", "transposed", lambda p, t, n: _confusion(t, p, n), "the matrix is transposed"),
    ("confusion_matrix", "sized from the data", lambda p, t, n: _confusion(p, t, int(max(p.max(), t.max())) + 1),
     "the matrix is 3x3 for n_classes=4"),
    ("confusion_matrix", "fractions", lambda p, t, n: _confusion(p, t, n) / len(p), "these are fractions"),
    ("softplus_backward", "beta forgotten", lambda x, b, g: g / (1 + np.exp(-x)),
     "with beta=2 your gradient is sigmoid(x)"),
    ("softplus_backward", "extra beta", lambda x, b, g: b * g / (1 + np.exp(-b * x)),
     "with beta=2 your gradient is beta times too large"),
    ("softplus_backward", "inf / inf", lambda x, b, g: g * np.exp(b * x) / (1 + np.exp(b * x)),
     "for x = +-800 the gradient is not finite"),
    ("clip_grad_norm", "per tensor", lambda gs, mx: ([a * min(1, mx / (np.linalg.norm(a) + 1e-6)) for a in gs],
                                                     _norm(gs)), "each gradient was clipped by its own norm"),
    ("clip_grad_norm", "scaled up", lambda gs, mx: ([a * mx / (_norm(gs) + 1e-6) for a in gs], _norm(gs)),
     "gradients below max_norm were rescaled"),
    ("clip_grad_norm", "norm after", lambda gs, mx: (_clip(gs, mx), _norm(_clip(gs, mx))),
     "total_norm is the norm *after* clipping"),
    ("layernorm_backward", "constant statistics",
     lambda x, w, g, eps: (g * w / np.sqrt(x.var(-1, keepdims=True) + eps),) + _ln(x, w, g, eps)[1:],
     "grad_x treats the mean and the variance as constants"),
    ("layernorm_backward", "no eps", lambda x, w, g, eps: _ln(x, w, g, 0.0)[:1] + _ln(x, w, g, eps)[1:],
     "grad_x is wrong only for the row of tiny variance"),
    ("layernorm_backward", "weight not summed", lambda x, w, g, eps: (_ln(x, w, g, eps)[0], g * w, g.sum(0)),
     "grad_weight has shape (4, 6): one row per sample"),
    ("layernorm_backward", "bias not summed right", lambda x, w, g, eps: _ln(x, w, g, eps)[:2] + (g.mean(0),),
     "grad_bias is wrong"),
    ("dead_unit_fraction", "sparsity", lambda a: float((a == 0).mean()), "got 0.65 = the fraction of entries"),
    ("dead_unit_fraction", "rows", lambda a: float((a == 0).all(1).mean()), "got 0.0625: the fraction of samples"),
    ("dead_unit_fraction", "count", lambda a: int((a == 0).all(0).sum()), "got 3: the number of dead units"),
    ("log_softmax", "naive", lambda x: x - x.exp().sum(-1, keepdim=True).log(), "overflows for logits >= 89"),
    ("log_softmax", "log of softmax", _log_of_softmax, "row (1e+04, 0, -1e+04) gives -inf: exp of a logit 1e4 below"),
    ("log_softmax", "dim 0", lambda x: x - x.exp().sum(0, keepdim=True).log(), "normalised over dim 0"),
    ("log_softmax", "no keepdim", lambda x: x - x.exp().sum(-1).log(), "for a square input (4, 4) the per-row"),
    ("log_softmax", "numpy", lambda x: tg.tensor(_log_softmax(x).detach().numpy()), "the result does not require grad"),
    ("log_softmax", "softmax", lambda x: F.softmax(x, -1), "you return the softmax"),
    ("cross_entropy", "sum", lambda lg, t: -_log_softmax(lg)[tg.arange(lg.shape[0]), t].sum(),
     "the loss is 4x too big for a batch of 4"),
    ("cross_entropy", "sign", lambda lg, t: _log_softmax(lg)[tg.arange(lg.shape[0]), t].mean(), "the loss is negative"),
    ("cross_entropy", "every class", lambda lg, t: -_log_softmax(lg).mean(), "you average the log-probabilities"),
    ("cross_entropy", "naive", lambda lg, t: -(lg.exp() / lg.exp().sum(-1, keepdim=True)).log()[
        tg.arange(lg.shape[0]), t].mean(), "overflows for logits >= 89"),
    ("reproducible_train", "numpy unseeded", _train(noise="global"), "numpy's global generator (np.random.normal"),
    ("reproducible_train", "seeded after the model", _train(seed_first=False),
     "the runs depend on the state tinygrad_nb's generator was in before the call"),
    ("reproducible_train", "Python's random", _train(python_random=True), "Python's random module (random.random"),
    ("reproducible_train", "constant seed", _train(constant=True), "seeds 0 and 1 give the same losses"),
    ("reproducible_train", "model made outside", _train(model=tg.nn.Sequential(tg.nn.Linear(6, 3))),
     "two runs with seed=0 differ even with every global generator in the same state"),
    ("random_eval_loss", "no fork", _eval_loss(fork=False), "calling your function moved tinygrad_nb's random stream"),
    ("random_eval_loss", "re-seeds", _eval_loss(fork=False, reseed=True),
     "your function re-seeds tinygrad_nb's generator"),
    ("random_eval_loss", "dropout on", _eval_loss(eval_mode=False), "dropout was on during the evaluation"),
    ("random_eval_loss", "every row", _eval_loss(all_rows=True), "you evaluated every row of X"),
    ("random_eval_loss", "left in eval", _eval_loss(restore="no"), "the model is left in eval mode"),
    ("random_eval_loss", "always train()", _eval_loss(restore="train"),
     "the model was in eval mode and your function left it in training mode"),
    ("outputs_agree", "numpy's defaults", lambda a, e: np.allclose(a, e), "rejects 2e-06 against 0"),
    ("outputs_agree", "exact", lambda a, e: np.array_equal(a, e), "rejects float32 outputs that differ by at most 2"),
    ("outputs_agree", "too loose", lambda a, e: _close_enough(a, e, atol=1e-2), "accepts float32 outputs off by 1e-3"),
    ("outputs_agree", "a mean", lambda a, e: a.shape == e.shape and a.dtype == e.dtype and abs((a - e).mean()) < 2e-3,
     "accepts outputs where one element is off by 0.5"),
    ("outputs_agree", "NaN slips through", lambda a, e: a.shape == e.shape and a.dtype == e.dtype and not (
        np.abs(a - e) > 1e-5 + 1.3e-6 * np.abs(e)).any(), "accepts an output holding a NaN"),
    ("outputs_agree", "broadcasts", lambda a, e: np.allclose(a, e, rtol=1.3e-6, atol=1e-5), "accepts an output of "
     "shape (1, 10) for an expected (4, 10)"),
    ("outputs_agree", "no dtype", lambda a, e: a.shape == e.shape and np.allclose(a, e, rtol=1.3e-6, atol=1e-5),
     "accepts a float64 output for a float32 model"),
    ("outputs_agree", "float32's tolerance for float64", _close_enough, "for float64 you accept a relative error"),
    ("outputs_agree", "an array", lambda a, e: np.isclose(a, e), "<lambda> should return True or False"),
    ("batched_predict", "drops the last batch", lambda p, s, b: [r for i in range(len(s) // b)
                                                               for r in p(np.stack(s[i * b:(i + 1) * b]))],
     "8 results for 10 samples in batches of 4: the last, partial batch (2 samples) is missing"),
    ("batched_predict", "len()", lambda p, s, b: [r for i in range(0, len(s), b) for r in p(np.stack(s[i:i + b]))],
     "<lambda> raised TypeError for 10 samples from a generator"),
    ("batched_predict", "reads everything", lambda p, s, b: _predict_all(p, list(s), b),
     "you read 10 samples before the first batch ran"),
    ("batched_predict", "one result per batch", lambda p, s, b: [p(np.stack(x)) for x in _batches(s, b) if x],
     "you return 3 results for 10 samples: one per batch"),
    ("batched_predict", "concatenate", lambda p, s, b: [r for x in _batches(s, b) if x for r in p(np.concatenate(x))],
     "<lambda> raised ValueError for 10 samples in a list: predict takes a (batch, 4) array, got shape (16,)"),
    ("batched_predict", "one by one", lambda p, s, b: [p(x[None])[0] for x in s], "you call predict once per sample"),
    ("batched_predict", "(1, 3) results", lambda p, s, b: [r[None] for r in _predict_all(p, s, b)],
     "each result has shape (1, 3), expected (3,)"),
    ("batched_predict", "empty batch", lambda p, s, b: _predict_all(p, s, b, empty_too=True),
     "for an empty input you called predict with an empty batch"),
    ("logsumexp_kernel", "naive", lambda x: np.log(np.exp(x).sum(-1)), "overflows for a row holding 89"),
    ("logsumexp_kernel", "in place", _lse_in_place, "your kernel changed its input"),
    ("logsumexp_kernel", "masked row", lambda x: np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1),
     "a row of all -inf (a fully masked row) gives NaN"),
    ("logsumexp_kernel", "no keepdims", lambda x: np.log(np.exp(x - x.max(-1)).sum(-1)) + x.max(-1),
     "<lambda> raised ValueError for x of shape (3, 5)"),
    ("logsumexp_kernel", "keeps the dim", lambda x: _lse(x)[..., None], "the result has shape (3, 1), expected (3,)"),
    ("logsumexp_kernel", "upcasts", lambda x: _lse(x.astype(np.float64)), "float32 input gave a float64 result"),
    ("logsumexp_kernel", "dim 0", lambda x: _lse(x.T).T, "reduced over dim 0"),
    ("softmax_backward", "diagonal only", lambda y, g: g * y * (1 - y), "you treat softmax as elementwise"),
    ("softmax_backward", "sign", lambda y, g: -y * (g - (g * y).sum(-1, keepdims=True)), "the gradient has the wrong"),
    ("softmax_backward", "no factor y", lambda y, g: g - (g * y).sum(-1, keepdims=True),
     "the result must still be multiplied by y"),
    ("softmax_backward", "dim 0", lambda y, g: y * (g - (g * y).sum(0, keepdims=True)), "summed over dim 0"),
    ("softmax_backward", "no keepdims", lambda y, g: y * (g - (g * y).sum(-1)),
     "<lambda> raised ValueError for y of shape (3, 5)"),
    ("softmax_backward", "in place", _softmax_grad_in_place, "your backward modified grad in place"),
    ("conv_output_size", "padding once", lambda s, k, st, p: (s + p - k) // st + 1, "wrong for size=8, kernel=3, "
     "stride=1, padding=1: padding adds p pixels on *both* sides"),
    ("conv_output_size", "no floor", lambda s, k, st, p: (s + 2 * p - k) / st + 1, "got 4.5 for size=8"),
    ("conv_output_size", "no +1", lambda s, k, st, p: (s + 2 * p - k) // st, "one short for size=8"),
    ("conv2d", "flipped", lambda x, w: _conv(x, w[:, :, ::-1, ::-1]), "you flipped the kernel"),
    ("conv2d", "one channel", lambda x, w: _conv(x[:, :1], w[:, :1]), "only input channel 0 is used"),
    ("conv2d", "kh and kw swapped", lambda x, w: _conv(x, w.transpose(0, 1, 3, 2)), "shape (2, 4, 5, 3), expected"),
    ("init_std", "no gain", lambda fan_in, nl: 1 / math.sqrt(fan_in), "for 'relu' the gain is missing"),
    ("init_std", "1/fan_in", lambda fan_in, nl: GAINS[nl] / fan_in, "for fan_in=64 the std falls like 1/fan_in"),
]


@pytest.mark.parametrize(("exercise_id", "mistake", "wrong", "hint"), WRONG, ids=[f"{e}-{m}" for e, m, _, _ in WRONG])
def test_a_known_mistake_gets_its_hint(exercise_id: str, mistake: str, wrong: Any, hint: str) -> None:
    assert_gets_hint(exercise_id, wrong, hint)


def test_every_exercise_has_a_known_mistake() -> None:
    from test_exercises_late import WRONG_LATE  # noqa: PLC0415 - notebooks 15, 17, 19 (checkers_late.py)
    from test_exercises_more import WRONG_MORE  # noqa: PLC0415 - notebooks 02, 04, 08, 09, 12 (checkers_more.py)
    from test_exercises_serving import WRONG_SERVING  # noqa: PLC0415 - notebook 14 (checkers_serving.py)

    assert {e for e, _, _, _ in WRONG + WRONG_MORE + WRONG_LATE + WRONG_SERVING} == set(REGISTRY)


def test_an_exception_in_the_learners_code_is_a_hint_naming_the_input() -> None:
    def mse_grad(pred: Any, target: Any) -> Any:
        raise KeyError("oops")

    result = run("mse_grad", mse_grad)
    assert result.hints == ["mse_grad raised KeyError for pred of shape (5,): 'oops'"]


def test_check_takes_a_function() -> None:
    result = check.mse_grad(3.0)
    assert not result.passed
    assert result.hints == ["check.mse_grad takes your function (mse_grad(pred, target) -> (loss, grad)), not a float"]


def test_an_unknown_exercise_names_the_known_ones() -> None:
    with pytest.raises(AttributeError, match=r"no exercise named 'msegrad'; the exercises are: accuracy, adam_step"):
        check.msegrad  # noqa: B018
    assert "mse_grad" in dir(check)


# -- progress ----------------------------------------------------------------------------------------------------------
def test_progress_counts_attempts_and_a_pass_stays(progress_dir: Path) -> None:
    assert progress.load("01_first_steps") == {}
    assert not check.mse_grad(lambda p, t: (((p - t) ** 2).sum(), 2 * (p - t)))
    assert progress.load("01_first_steps") == {"mse_grad": {"passed": False, "attempts": 1}}
    namespace = prelude()
    exec(SOLUTIONS["mse_grad"][1], namespace)  # noqa: S102 - the cell ends with check.mse_grad(mse_grad)
    assert progress.load("01_first_steps")["mse_grad"] == {"passed": True, "attempts": 2, "first_passed_attempt": 2}
    assert not check.mse_grad(lambda p, t: (0.0, p))       # a later wrong try does not undo the pass
    doc = json.loads((progress_dir / "01_first_steps.json").read_text())
    assert doc == {"format_version": 1, "notebook": "01_first_steps",
                   "exercises": {"mse_grad": {"passed": True, "attempts": 3, "first_passed_attempt": 2}}}
    assert [p.name for p in progress_dir.iterdir()] == ["01_first_steps.json"]   # no temp file left behind
    assert exercises.last_notebook == "01_first_steps"


def test_the_progress_file_sits_next_to_the_notebook(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(progress.ENV_DIR)
    nb = tmp_path / "course"
    nb.mkdir()
    monkeypatch.setenv("JPY_SESSION_NAME", str(nb / "07_gradients_and_activations.ipynb"))
    assert progress.progress_path("07_gradients_and_activations") == (
        nb / ".tinygrad_nb" / "exercises" / "07_gradients_and_activations.json")
    monkeypatch.delenv("JPY_SESSION_NAME")
    monkeypatch.chdir(tmp_path)
    assert progress.progress_dir() == tmp_path / ".tinygrad_nb" / "exercises"


def test_a_corrupt_progress_file_is_named_with_line_and_column(progress_dir: Path) -> None:
    progress_dir.mkdir(parents=True)
    path = progress_dir / "11_nan_hunting.json"
    path.write_text('{"format_version": 1,\n "exercises": {oops}}')
    with pytest.raises(ProgressError, match=rf"^{path}: not valid JSON \(line 2, column 16: "):
        progress.load("11_nan_hunting")
    # the check still answers; only saving is skipped, and it says so
    result = check.log_softmax(lambda x: x)
    assert not result.passed and result.note.startswith(f"progress not saved: {path}: not valid JSON")
    assert str(result).endswith(")") and "progress not saved" in str(result)


@pytest.mark.parametrize(("content", "message"), [
    ('{"format_version": 2, "exercises": {}}', "field 'format_version' is 2; this tinygrad_nb reads version 1"),
    ('[1, 2]', "expected a JSON object, got list"),
    ('{"format_version": 1, "exercises": {"mse_grad": {"passed": "yes", "attempts": 1}}}',
     "field 'exercises.mse_grad.passed' must be a bool, got 'yes'"),
    ('{"format_version": 1, "exercises": []}', "field 'exercises' must be an object of objects"),
])
def test_bad_progress_fields_are_named(progress_dir: Path, content: str, message: str) -> None:
    progress_dir.mkdir(parents=True)
    (progress_dir / "03_csv_to_training.json").write_text(content)
    with pytest.raises(ProgressError, match=f"03_csv_to_training.json: {message}"):
        progress.load("03_csv_to_training")


# -- %tg_exercises -----------------------------------------------------------------------------------------------------
@pytest.fixture
def shell(ipython: Any) -> Any:
    from tinygrad_nb.notebook import extension, ownership  # noqa: PLC0415

    extension.load_ipython_extension(ipython)
    yield ipython
    ownership.registry.release_all()
    extension.unload_ipython_extension(ipython)


def magic(shell: Any, line: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    result = shell.run_cell(line, store_history=True)
    out = capsys.readouterr().out
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return out


def test_tg_exercises_lists_done_and_to_do(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    namespace = prelude()
    exec(SOLUTIONS["dead_unit_fraction"][1], namespace)  # noqa: S102
    check.dead_unit_fraction(namespace["dead_unit_fraction"])
    out = magic(shell, "%tg_exercises", capsys)
    assert out.splitlines() == [
        "07_gradients_and_activations: 1 of 2 exercises done",
        "  ✓ dead_unit_fraction  the fraction of dead ReLU units (not sparsity)",
        "  · clip_grad_norm      clip the gradients by their joint norm   to do: write clip_grad_norm(grads, max_norm) "
        "-> (clipped_grads, total_norm), then check.clip_grad_norm(...)"]
    check.mse_grad(lambda p, t: (0.0, p))
    check.mse_grad(lambda p, t: (0.0, p))
    out = magic(shell, "%tg_exercises 01_first_steps.ipynb --attempts", capsys)
    assert out.splitlines() == [
        "01_first_steps: 0 of 2 exercises done",
        "  · mse_grad  the mean squared error and its gradient, by hand   to do: write mse_grad(pred, target) -> "
        "(loss, grad), then check.mse_grad(...)   (2 tries)",
        "  · accuracy  accuracy from logits and labels   to do: write accuracy(logits, labels) -> float, then "
        "check.accuracy(...)"]
    out = magic(shell, "%tg_exercises --all", capsys)
    assert [line for line in out.splitlines() if not line.startswith("  ")] == [
        f"{nb}: {1 if nb.startswith('07') else 0} of {len(exercises.exercises_of(nb))} exercises done"
        for nb in exercises.notebooks()]


def test_tg_exercises_errors_are_one_line(shell: Any, capsys: pytest.CaptureFixture[str],
                                          progress_dir: Path) -> None:
    from IPython.core.error import UsageError  # noqa: PLC0415

    with pytest.raises(UsageError, match=r"%tg_exercises: 'nope' has no exercises; the notebooks with exercises are: "
                                         r"00_autograd_from_scratch, 01_first_steps"):
        magic(shell, "%tg_exercises nope", capsys)
    progress_dir.mkdir(parents=True)
    (progress_dir / "01_first_steps.json").write_text("{")
    with pytest.raises(UsageError, match=r"%tg_exercises: .*01_first_steps.json: not valid JSON"):
        magic(shell, "%tg_exercises 01_first_steps", capsys)
