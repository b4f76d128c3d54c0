"""The exercises of the teaching notebooks, one checker each.

Every checker compares the learner's function with tinygrad_nb itself (autograd in float64, ``gradcheck``,
``optim.Adam``, ``F.conv2d``, ...) on hidden cases chosen to expose the usual mistakes, and when a value is wrong it
tests the known wrong answers (a swapped gradient, a sum for a mean, statistics from the test rows, ...) to say
*which* mistake it is. ``tests/test_exercises.py`` runs each notebook's solution (it must pass) and one known wrong
answer per exercise (it must get its hint).
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from .. import autograd
from ..tensor import Tensor
from .core import Trial, close, exercise, fmt, which_mistake

F64 = "float64"


def _t(x: Any, requires_grad: bool = False, dtype: str = F64) -> Tensor:
    return Tensor(np.array(x, dtype=dtype), requires_grad=requires_grad)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _gradcheck(trial: Trial, fn: Any, inputs: list[Tensor]) -> None:
    """``tg.gradcheck(fn, inputs)`` (float64 finite differences vs the backward); a disagreement becomes the hint."""
    try:
        autograd.gradcheck(fn, inputs)
    except autograd.GradcheckError as e:
        trial.fail(f"tg.gradcheck disagrees: {e}")


# == 00 autograd from scratch =======================================================================================
def _scalar_grads(build: Any, *values: float, grad: float) -> list[float]:
    """d(grad * build(*xs))/dxs by tinygrad_nb's autograd in float64."""
    xs = [_t(v, requires_grad=True) for v in values]
    (build(*xs) * grad).backward()
    return [float(x.grad.item()) for x in xs]


def _chain_rule_hint(op: str, g: float) -> str:
    return (f"with out.grad = {fmt(g)} your gradient lacks that factor: the local derivative of {op} must be "
            "multiplied by out.grad, the gradient arriving from above (the chain rule)")


@exercise("mul_backward", "00_autograd_from_scratch", "the backward of out = a * b",
          "mul_backward(a, b, out_grad) -> (grad_a, grad_b)")
def check_mul_backward(fn: Any, trial: Trial) -> None:
    cases = [(2.0, -3.0, 1.0), (0.5, 4.0, 3.0), (-1.5, -2.0, -0.5)]
    with trial.stage("returns a pair (grad_a, grad_b) of numbers"):
        out = trial.call(2.0, -3.0, 1.0, what="a=2, b=-3, out_grad=1")
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            trial.fail(f"{trial.name} should return two numbers (grad_a, grad_b); got {type(out).__name__}")
        for v, what in zip(out, ("grad_a", "grad_b")):
            trial.number(v, what)
    with trial.stage(f"both gradients vs tinygrad_nb's autograd on {len(cases)} cases, out_grad != 1 included"):
        for a, b, g in cases:
            da, db = (trial.number(v, n) for v, n in zip(trial.call(a, b, g, what=f"a={a}"), ("grad_a", "grad_b")))
            ra, rb = _scalar_grads(lambda x, y: x * y, a, b, grad=g)
            if close([da, db], [ra, rb]):
                continue
            trial.fail(which_mistake([
                (close([da, db], [rb, ra]),
                 "grad_a and grad_b are swapped round: out = a * b changes by b for each unit of a, so the "
                 "gradient reaching a is made of the *other* factor"),
                (g != 1 and close([da, db], [ra / g, rb / g]), _chain_rule_hint("a * b", g)),
            ], otherwise=f"for a={fmt(a)}, b={fmt(b)}, out_grad={fmt(g)} you return ({fmt(da)}, {fmt(db)}); autograd "
                         f"gives ({fmt(ra)}, {fmt(rb)})"))


@exercise("tanh_backward", "00_autograd_from_scratch", "the backward of out = tanh(x)",
          "tanh_backward(x, out, out_grad) -> grad_x")
def check_tanh_backward(fn: Any, trial: Trial) -> None:
    cases = [(0.5, 1.0), (-1.2, 2.0), (0.0, -0.5), (2.0, 3.0), (25.0, 1.0), (-400.0, 1.0), (800.0, 2.0)]
    with trial.stage(f"vs tinygrad_nb's autograd at {len(cases)} points, saturated ones (x = 25, -400, 800) "
                     "included"):
        for x, g in cases:
            out = math.tanh(x)
            try:
                got = fn(x, out, g)
            except OverflowError:
                trial.fail(f"overflows for x = {fmt(x)}: exp or cosh of a large |x| (or its square) does not fit in a "
                           "float; write the derivative in terms of out, which is already tanh(x) and never "
                           "overflows")
            except Exception as e:  # noqa: BLE001
                trial.fail(f"{trial.name} raised {type(e).__name__} for x={fmt(x)}: {e}")
            got = trial.number(got, "grad_x")
            (ref,) = _scalar_grads(lambda t: t.tanh(), x, grad=g)
            if close(got, ref, atol=1e-12):
                continue
            trial.fail(which_mistake([
                (not math.isfinite(got),
                 f"gives {fmt(got)} for x = {fmt(x)} where tanh is flat (the gradient is ~0): an overflow "
                 "inside your formula; write it in terms of out = tanh(x)"),
                (close(got, (1 - x * x) * g),
                 "you used x where the formula needs tanh(x): d tanh(x)/dx = 1 - tanh(x)**2, and out "
                 "already holds tanh(x)"),
                (g != 1 and close(got * g, ref, atol=1e-12), _chain_rule_hint("tanh", g)),
            ], otherwise=f"for x={fmt(x)}, out_grad={fmt(g)} you return {fmt(got)}; autograd gives {fmt(ref)}"))


@exercise("pow_backward", "00_autograd_from_scratch", "the backward of out = x ** n (n a constant)",
          "pow_backward(x, n, out_grad) -> grad_x")
def check_pow_backward(fn: Any, trial: Trial) -> None:
    cases = [(3.0, 2, 1.0), (2.0, 3, 0.5), (-1.5, 3, 2.0), (4.0, 0.5, 1.0), (2.0, -1, 1.0), (0.0, 2, 1.0),
             (5.0, 0, 1.0)]
    with trial.stage(f"vs tinygrad_nb's autograd for {len(cases)} exponents (2, 3, 0.5, -1, 0), x = 0 included"):
        for x, n, g in cases:
            got = trial.number(trial.call(x, n, g, what=f"x={fmt(x)}, n={n}"), "grad_x")
            (ref,) = _scalar_grads(lambda t, n=n: t ** n, x, grad=g)
            if close(got, ref, atol=1e-12):
                continue
            trial.fail(which_mistake([
                (close(got, n * x ** n * g) and not close(ref, n * x ** n * g),
                 f"for x={fmt(x)}, n={n} you return n * x**n (times out_grad): the power rule lowers the "
                 "exponent by one"),
                (close(got, x ** (n - 1) * g) if x != 0 else False,
                 f"for x={fmt(x)}, n={n} the factor n is missing (the power rule brings the exponent down "
                 "in front)"),
                (g != 1 and close(got * g, ref, atol=1e-12), _chain_rule_hint("x ** n", g)),
            ], otherwise=f"for x={fmt(x)}, n={n}, out_grad={fmt(g)} you return {fmt(got)}; autograd gives {fmt(ref)}"))


@exercise("adam_step", "00_autograd_from_scratch", "one step of Adam, written by hand",
          "adam_step(param, grad, m, v, t, lr, betas, eps) -> (param, m, v)")
def check_adam_step(fn: Any, trial: Trial) -> None:
    from ..optim import Adam  # noqa: PLC0415

    rng = _rng(1)
    lr, betas, eps = 0.01, (0.9, 0.999), 1e-8
    p0 = rng.standard_normal(4)
    grads = [rng.standard_normal(4) * s for s in (1.0, 0.1, 3.0, 1.0, 0.5)]
    ref_param = _t(p0, requires_grad=True)
    opt = Adam([ref_param], lr=lr, betas=betas, eps=eps)
    p, m, v = p0.copy(), np.zeros(4), np.zeros(4)
    with trial.stage("returns (param, m, v), arrays of param's shape"):
        out = trial.call(p.copy(), grads[0].copy(), m.copy(), v.copy(), 1, lr, betas, eps, what="step t=1")
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            trial.fail(f"{trial.name} should return three arrays (param, m, v); got {type(out).__name__}")
        for value, what in zip(out, ("param", "m", "v")):
            trial.array(value, what, p.shape)
    with trial.stage(f"param, m and v vs tinygrad_nb.optim.Adam over {len(grads)} steps (t = 1 first), "
                     "gradients of different scales"):
        for t, g in enumerate(grads, 1):
            ref_param.grad = _t(g)
            opt.step()
            ref_p = ref_param.detach().numpy().copy()
            ref_m = betas[0] * m + (1 - betas[0]) * g
            ref_v = betas[1] * v + (1 - betas[1]) * g * g
            got = trial.call(p.copy(), g.copy(), m.copy(), v.copy(), t, lr, betas, eps, what=f"step t={t}")
            got_p, got_m, got_v = (trial.array(x, n, p.shape) for x, n in zip(got, ("param", "m", "v")))
            if not close(got_m, ref_m):
                trial.fail(f"at step t={t} m is wrong: m is the running average of the gradients, "
                           "beta1 * m + (1 - beta1) * grad")
            if not close(got_v, ref_v):
                if close(got_v, betas[1] * v + (1 - betas[1]) * np.abs(g)):
                    trial.fail(f"at step t={t} v averages |grad|; Adam's v averages the squared gradient")
                trial.fail(f"at step t={t} v is wrong: v is the running average of the squared gradients")
            if not close(got_p, ref_p, rtol=1e-6, atol=1e-10):
                moved = float(np.abs(got_p - p).max() / lr)
                no_correction = p - lr * ref_m / (np.sqrt(ref_v) + eps)
                m_hat, v_hat = ref_m / (1 - betas[0] ** t), ref_v / (1 - betas[1] ** t)
                trial.fail(which_mistake([
                    (close(got_p, no_correction),
                     f"at step t={t} your param moved by up to {moved:.2f} x lr; Adam's early steps move "
                     "by about lr: m and v start at 0, so divide them by (1 - beta**t) (bias "
                     "correction) before using them"),
                    (close(got_p, 2 * p - ref_p), "the step goes uphill: subtract the update from param"),
                    (close(got_p, p - lr * m_hat / (v_hat + eps)),
                     "the update divides by v; divide by its square root, so the step does not depend on "
                     "the gradient's scale"),
                ], otherwise=f"at step t={t} param differs from optim.Adam's by up to "
                             f"{np.abs(got_p - ref_p).max():.3g}"))
            p, m, v = ref_p, ref_m, ref_v


# == 01 first steps =================================================================================================
@exercise("mse_grad", "01_first_steps", "the mean squared error and its gradient, by hand",
          "mse_grad(pred, target) -> (loss, grad)")
def check_mse_grad(fn: Any, trial: Trial) -> None:
    rng = _rng(2)
    cases = [(rng.standard_normal(5), rng.standard_normal(5)),
             (rng.standard_normal((4, 3)), rng.standard_normal((4, 3)))]
    with trial.stage("returns (loss, grad): a number and an array of pred's shape"):
        pred, target = cases[0]
        out = trial.call(pred.copy(), target.copy(), what="pred of shape (5,)")
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            trial.fail(f"{trial.name} should return (loss, grad); got {type(out).__name__}")
        trial.number(out[0], "loss")
        trial.array(out[1], "grad", pred.shape)
    with trial.stage("loss and gradient vs F.mse_loss and autograd in float64, for 1-D and 2-D inputs"):
        from ..nn import functional as F  # noqa: PLC0415

        for pred, target in cases:
            loss, grad = trial.call(pred.copy(), target.copy(), what=f"pred of shape {pred.shape}")
            loss, grad = trial.number(loss, "loss"), trial.array(grad, "grad", pred.shape)
            p = _t(pred, requires_grad=True)
            ref = F.mse_loss(p, _t(target))
            ref.backward()
            ref_loss, ref_grad, n = float(ref.item()), p.grad.numpy(), pred.size
            if not close(loss, ref_loss):
                trial.hint(which_mistake([
                    (close(loss, ref_loss * n),
                     f"the loss is {n}x too big for {n} elements: you summed the squared errors; the mean "
                     "divides by the number of elements"),
                    (pred.ndim == 2 and close(loss, ref_loss * pred.shape[-1]),
                     "the loss averages over rows only; the mean is over all elements"),
                ], otherwise=f"the loss for pred of shape {pred.shape} is {fmt(loss)}, F.mse_loss gives "
                             f"{fmt(ref_loss)}"))
            if not close(grad, ref_grad):
                trial.hint(which_mistake([
                    (close(grad, -ref_grad),
                     "the gradient has the wrong sign: differentiate with respect to pred, "
                     "d(pred - target)/dpred = +1"),
                    (close(grad, ref_grad * n),
                     f"the gradient is {n}x too big: the 1/N of the mean carries into the gradient"),
                    (close(grad, ref_grad / 2), "the gradient is half of autograd's: d(e**2)/de = 2e"),
                ], otherwise=f"the gradient for pred of shape {pred.shape} differs from autograd's by up to "
                             f"{np.abs(grad - ref_grad).max():.3g}"))
            trial.stop_if_failed()


@exercise("accuracy", "01_first_steps", "accuracy from logits and labels",
          "accuracy(logits, labels) -> float")
def check_accuracy(fn: Any, trial: Trial) -> None:
    rng = _rng(3)
    logits = rng.standard_normal((12, 10))
    labels = logits.argmax(1).copy()
    labels[[1, 4, 7]] = (labels[[1, 4, 7]] + 1) % 10          # 9 of 12 right
    cases = [(logits, labels, 9 / 12), (logits[:5], logits[:5].argmax(1), 1.0),
             (logits[:10], (logits[:10].argmax(1) + 1) % 10, 0.0)]
    with trial.stage("a fraction in [0, 1] for 3 batches (9 of 12 right, all right, none right)"):
        for lg, lb, ref in cases:
            got = trial.number(trial.call(_t(lg, dtype="float32"), _t(lb, dtype="int64"), what=f"{len(lb)} samples",
                                          on_error="logits are (samples, classes): the prediction of a sample is "
                                                   "the argmax of its row, over dim 1"), "accuracy")
            if close(got, ref):
                continue
            trial.fail(which_mistake([
                (close(got, ref * len(lb)),
                 f"got {fmt(got)} for {len(lb)} samples: that is the count of right answers; accuracy is "
                 "the fraction"),
                (close(got, ref * 100),
                 f"got {fmt(got)}: a percentage; return the fraction (format it with :.1% to print it)"),
            ], otherwise=f"got {fmt(got)} for a batch where {ref:.0%} of the predictions are right: the prediction is "
                         "the class with the largest logit in each row (argmax over dim 1)"))


# == 03 csv to training =============================================================================================
@exercise("standardize", "03_csv_to_training", "standardise features without leaking the test rows",
          "standardize(train, test) -> (train_scaled, test_scaled)")
def check_standardize(fn: Any, trial: Trial) -> None:
    rng = _rng(4)
    train = rng.normal([5.0, -2.0, 100.0], [2.0, 0.5, 30.0], size=(20, 3))
    test = rng.normal([9.0, -1.0, 60.0], [2.0, 0.5, 30.0], size=(6, 3))  # shifted: leakage changes the numbers
    with trial.stage("returns two arrays shaped like train and test"):
        out = trial.call(train.copy(), test.copy(), what="train (20, 3), test (6, 3)")
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            trial.fail(f"{trial.name} should return (train_scaled, test_scaled); got {type(out).__name__}")
        trial.array(out[0], "train_scaled", train.shape)
        trial.array(out[1], "test_scaled", test.shape)
    with trial.stage("both sets scaled with the training rows' mean and std only (either ddof)"):
        a, b = (trial.array(x, n) for x, n in zip(trial.call(train.copy(), test.copy()), ("train_scaled",
                                                                                            "test_scaled")))
        if any(close(a, (train - train.mean(0)) / train.std(0, ddof=d)) and
               close(b, (test - train.mean(0)) / train.std(0, ddof=d)) for d in (0, 1)):
            pass
        else:
            both = np.concatenate([train, test])
            trial.fail(which_mistake([
                (any(close(b, (test - both.mean(0)) / both.std(0, ddof=d)) for d in (0, 1)),
                 "the statistics include the test rows (leakage): the test set must stay unseen, so "
                 "compute mean and std on the training rows only"),
                (any(close(b, (test - test.mean(0)) / test.std(0, ddof=d)) for d in (0, 1)),
                 "the test rows are scaled with their own mean and std: use the training rows' statistics "
                 "for both sets, as the model will for any new row"),
                (abs(a.mean(0)).max() > 1e-9,
                 f"the scaled training columns have means {np.round(a.mean(0), 3).tolist()}; they should "
                 "be 0: subtract each column's mean (axis 0), not the row's or the whole table's"),
            ], otherwise="the scaled columns are not (x - mean) / std with the training rows' per-column statistics"))
    with trial.stage("a constant training column gives finite values"):
        const = train.copy()
        const[:, 1] = 3.0
        a, b = (trial.array(x, n) for x, n in zip(trial.call(const, test.copy(), what="a constant column"),
                                                    ("train_scaled", "test_scaled")))
        trial.finite(np.concatenate([a, b]), "with a constant training column the result",
                     "its std is 0; keep such a column finite (for example divide by 1 where the std is 0)")


@exercise("confusion_matrix", "03_csv_to_training", "a confusion matrix: which classes are mistaken for which",
          "confusion_matrix(predicted, true, n_classes) -> array")
def check_confusion_matrix(fn: Any, trial: Trial) -> None:
    predicted = np.array([0, 2, 1, 2, 2, 0, 1, 1, 2, 0])
    true = np.array([0, 1, 1, 2, 2, 0, 2, 1, 2, 1])
    ref = np.zeros((4, 4), dtype=np.int64)
    np.add.at(ref, (true, predicted), 1)                  # rows: the true class, columns: the prediction
    with trial.stage("an (n_classes, n_classes) array of counts, a class that never occurs included"):
        got = trial.array(trial.call(predicted.copy(), true.copy(), 4, what="10 samples, 4 classes"), "the matrix")
        if got.shape == (3, 3):
            trial.fail("the matrix is 3x3 for n_classes=4: class 3 never occurs here but still gets its row and "
                       "column (size the matrix from n_classes, not from the values seen)")
        got = trial.array(got, "the matrix", (4, 4))
    with trial.stage("counts vs the reference: rows are the true class, columns the prediction (as scikit-learn)"):
        if close(got, ref):
            return
        trial.fail(which_mistake([
            (close(got, ref.T),
             "the matrix is transposed: row i should hold the samples whose *true* class is i, and "
             "column j those predicted as j"),
            (close(got, ref / ref.sum()) or close(got, ref / np.maximum(ref.sum(1, keepdims=True), 1)),
             "these are fractions; the matrix holds counts (normalise it when you print it, if you like)"),
            (close(got.sum(), len(true)) is False,
             f"the counts add up to {fmt(got.sum())}, not to the {len(true)} samples: each sample adds 1 "
             "to exactly one cell"),
        ], otherwise="the counts are in the wrong cells: sample k adds 1 at row true[k], column predicted[k]"))


@exercise("softplus_backward", "06_custom_layer_and_op", "the backward of softplus with a beta, stable for any x",
          "softplus_backward(x, beta, grad) -> grad_x")
def check_softplus_backward(fn: Any, trial: Trial) -> None:
    x = np.array([-800.0, -30.0, -1.5, 0.0, 0.7, 2.0, 30.0, 800.0])
    g = np.array([1.0, 2.0, -0.5, 1.5, 3.0, -1.0, 0.5, 2.0])
    with trial.stage("an array shaped like x"):
        trial.array(trial.call(x[2:6].copy(), 2.0, g[2:6].copy(), what="x of shape (4,)"), "grad_x", (4,))
    with trial.stage("vs tinygrad_nb's autograd for beta = 1, 2 and 0.5 (x in [-1.5, 2])"):
        for beta in (1.0, 2.0, 0.5):
            xs, gs = x[2:6], g[2:6]
            xt = _t(xs, requires_grad=True)
            ((1 + (xt * beta).exp()).log() / beta * _t(gs)).sum().backward()
            got = trial.array(trial.call(xs.copy(), beta, gs.copy(), what=f"beta={beta}"), "grad_x", xs.shape)
            ref = xt.grad.numpy()
            if close(got, ref):
                continue
            trial.fail(which_mistake([
                (beta != 1 and close(got, gs / (1 + np.exp(-xs))),
                 f"with beta={fmt(beta)} your gradient is sigmoid(x): the beta belongs inside, "
                 "sigmoid(beta * x) (with beta = 1 the two agree, which is why gradcheck needs beta != 1)"),
                (beta != 1 and close(got, ref * beta),
                 f"with beta={fmt(beta)} your gradient is beta times too large: the chain rule's beta "
                 "cancels the 1/beta in front of the log"),
                (close(got * gs, ref) and not close(gs, 1),
                 "multiply by grad, the gradient arriving from above (the chain rule)"),
            ], otherwise=f"for beta={fmt(beta)} your gradient differs from autograd's by up to "
                         f"{np.abs(got - ref).max():.3g}"))
    with trial.stage("finite and right for x = +-30 and +-800"):
        got = trial.array(trial.call(x.copy(), 1.0, g.copy(), what="x up to +-800"), "grad_x", x.shape)
        ref = g * np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))
        trial.finite(got, "for x = +-800 the gradient", "exp(800) overflows: write the sigmoid so that exp only "
                     "sees -|x| (or use 1 / (1 + exp(-x)), which tends to 0 and 1 without dividing inf by inf)")
        if not close(got, ref, atol=1e-12):
            trial.fail(f"for large |x| the gradient differs from sigmoid(x) * grad by up to "
                       f"{np.abs(got - ref).max():.3g}")


# == 06 custom layer and op =========================================================================================
def _layernorm_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(-1, keepdims=True) + eps) * w + b


@exercise("layernorm_backward", "06_custom_layer_and_op", "the backward of LayerNorm, checked by gradcheck",
          "layernorm_backward(x, weight, grad_out, eps) -> (grad_x, grad_weight, grad_bias)")
def check_layernorm_backward(fn: Any, trial: Trial) -> None:
    from ..nn import functional as F  # noqa: PLC0415

    rng = _rng(5)
    x = rng.standard_normal((4, 6)) * 2 + 1
    x[2] = 0.3 + 1e-3 * rng.standard_normal(6)       # a row of variance ~1e-6: eps matters there
    w, b, eps = rng.standard_normal(6), rng.standard_normal(6), 1e-5
    g = rng.standard_normal((4, 6))
    with trial.stage("returns (grad_x, grad_weight, grad_bias) shaped like x, weight and bias"):
        out = trial.call(x.copy(), w.copy(), g.copy(), eps, what="x of shape (4, 6)")
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            trial.fail(f"{trial.name} should return three arrays (grad_x, grad_weight, grad_bias); got "
                       f"{type(out).__name__}")
        for value, what, shape in zip(out, ("grad_x", "grad_weight", "grad_bias"), (x.shape, w.shape, w.shape)):
            if np.asarray(value).shape == (x.shape[0],) + shape[-1:] and shape == w.shape:
                trial.fail(f"{what} has shape {np.asarray(value).shape}: one row per sample; the weight is shared by "
                           "all rows, so its gradient adds up their contributions (sum over dim 0)")
            trial.array(value, what, shape)
    with trial.stage("all three gradients vs autograd through F.layer_norm in float64 (a row of variance 1e-6 "
                     "included)"):
        xt, wt, bt = _t(x, True), _t(w, True), _t(b, True)
        (F.layer_norm(xt, 6, wt, bt, eps) * _t(g)).sum().backward()
        dx, dw, db = (trial.array(v, n) for v, n in zip(trial.call(x.copy(), w.copy(), g.copy(), eps),
                                                         ("grad_x", "grad_weight", "grad_bias")))
        if not close(db, bt.grad.numpy()):
            trial.hint("grad_bias is wrong: bias is added to every row, so it collects grad_out from all of them")
        if not close(dw, wt.grad.numpy()):
            trial.hint("grad_weight is wrong: weight multiplies the *normalised* x, row by row")
        if not close(dx, xt.grad.numpy(), rtol=1e-6, atol=1e-8):
            constant_stats = g * w / np.sqrt(x.var(-1, keepdims=True) + eps)
            x0 = _t(x, True)
            (F.layer_norm(x0, 6, _t(w), _t(b), 0.0) * _t(g)).sum().backward()
            trial.hint(which_mistake([
                (close(dx, constant_stats),
                 "grad_x treats the mean and the variance as constants, but both depend on every x of "
                 "the row (check: the true grad_x sums to 0 over each row, yours does not)"),
                (close(dx, x0.grad.numpy(), rtol=1e-6, atol=1e-8),
                 "grad_x is wrong only for the row of tiny variance (~1e-6): eps must enter the backward "
                 "exactly where it enters the forward, inside the square root"),
            ], otherwise=f"grad_x differs from autograd's by up to {np.abs(dx - xt.grad.numpy()).max():.3g}"))
        trial.stop_if_failed()
    with trial.stage("tg.gradcheck (finite differences, float64) of a tg.Function using your backward"):

        class LayerNormByHand(autograd.Function):
            @staticmethod
            def forward(ctx: Any, x: Any, w: Any, b: Any) -> Any:
                ctx.save_for_backward(x, w)
                return _layernorm_forward(x, w, b, eps)

            @staticmethod
            def backward(ctx: Any, grad: Any) -> Any:
                x, w = ctx.saved_tensors
                return tuple(np.asarray(v, dtype=np.float64) for v in fn(x.copy(), w.copy(), grad.copy(), eps))

        _gradcheck(trial, LayerNormByHand.apply, [_t(x[:3]), _t(w), _t(b)])


# == 07 gradients and activations ===================================================================================
@exercise("dead_unit_fraction", "07_gradients_and_activations", "the fraction of dead ReLU units (not sparsity)",
          "dead_unit_fraction(acts) -> float")
def check_dead_unit_fraction(fn: Any, trial: Trial) -> None:
    rng = _rng(6)
    acts = np.maximum(rng.standard_normal((16, 10)), 0)   # about half the entries are 0
    acts[:, [2, 5, 7]] = 0                                # 3 dead units of 10
    acts[4] = 0                                           # one sample where every unit is off
    alive = np.maximum(rng.standard_normal((8, 5)), 0) + np.eye(8, 5)  # every unit fires at least once
    cases = [(acts, 0.3), (alive, 0.0), (np.zeros((3, 4)), 1.0)]
    with trial.stage("the fraction of units that are 0 for every sample, on 3 batches (0%, 30% and 100% dead)"):
        for a, ref in cases:
            got = trial.number(trial.call(a.copy(), what=f"acts of shape {a.shape}"), "fraction")
            if close(got, ref):
                continue
            trial.fail(which_mistake([
                (close(got, (a == 0).mean()),
                 f"got {fmt(got)} = the fraction of entries that are 0 (sparsity, {a.size} entries); a "
                 "unit is dead when its column is 0 for *every* sample"),
                (close(got, (a == 0).all(1).mean()),
                 f"got {fmt(got)}: the fraction of samples (rows) where every unit is 0; units are the "
                 "columns (dim 1), so reduce over the samples (dim 0)"),
                (close(got, ref * a.shape[1]),
                 f"got {fmt(got)}: the number of dead units; return the fraction of the {a.shape[1]} units"),
            ], otherwise=f"got {fmt(got)} for acts of shape {a.shape} where {ref:.0%} of the units are dead"))


@exercise("clip_grad_norm", "07_gradients_and_activations", "clip the gradients by their joint norm",
          "clip_grad_norm(grads, max_norm) -> (clipped_grads, total_norm)")
def check_clip_grad_norm(fn: Any, trial: Trial) -> None:
    from ..nn import Parameter  # noqa: PLC0415
    from ..nn.utils import clip_grad_norm_  # noqa: PLC0415

    rng = _rng(10)
    big = [rng.standard_normal((3, 4)) * 2, rng.standard_normal(4) * 0.1, rng.standard_normal((2, 2)) * 5]
    small = [a * 1e-3 for a in big]

    def reference(grads: list[np.ndarray], max_norm: float) -> tuple[list[np.ndarray], float]:
        params = [Parameter(_t(np.zeros_like(a))) for a in grads]
        for p, a in zip(params, grads):
            p.grad = _t(a)
        total = float(clip_grad_norm_(params, max_norm).item())
        return [p.grad.numpy() for p in params], total

    with trial.stage("returns (a list of arrays shaped like grads, a number)"):
        out = trial.call([a.copy() for a in big], 1.0, what="three gradients, max_norm=1")
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            trial.fail(f"{trial.name} should return (clipped_grads, total_norm); got {type(out).__name__}")
        if len(out[0]) != len(big):
            trial.fail(f"{len(out[0])} clipped gradients for {len(big)} inputs")
        for a, b in zip(out[0], big):
            trial.array(a, "a clipped gradient", b.shape)
        trial.number(out[1], "total_norm")
    with trial.stage("vs nn.utils.clip_grad_norm_ for gradients above and below max_norm"):
        for grads, what in ((big, "gradients with a joint norm of ~11, max_norm=1"),
                            (small, "gradients with a joint norm of ~0.01, max_norm=1")):
            clipped, total = trial.call([a.copy() for a in grads], 1.0, what=what)
            clipped = [trial.array(a, "a clipped gradient", b.shape) for a, b in zip(clipped, grads)]
            total = trial.number(total, "total_norm")
            ref, ref_total = reference(grads, 1.0)
            joint = math.sqrt(sum(float((a * a).sum()) for a in grads))
            if not close(total, ref_total, rtol=1e-6):
                if close(total, math.sqrt(sum(float((a * a).sum()) for a in clipped))):
                    trial.fail("total_norm is the norm *after* clipping; return the norm before (what you would "
                               "log to see how large the gradients were)")
                trial.fail(f"total_norm is {fmt(total)}, the joint 2-norm of all gradients is {fmt(ref_total)}")
            if all(close(a, b, rtol=1e-6, atol=1e-12) for a, b in zip(clipped, ref)):
                continue
            per_tensor = [a * min(1.0, 1.0 / (np.linalg.norm(a) + 1e-6)) for a in grads]
            trial.fail(which_mistake([
                (joint < 1 and not all(close(a, b) for a, b in zip(clipped, grads)),
                 "gradients below max_norm were rescaled: clipping only ever shrinks, it never scales up"),
                (all(close(a, b, rtol=1e-5) for a, b in zip(clipped, per_tensor)),
                 "each gradient was clipped by its own norm; clip_grad_norm uses the joint norm of all "
                 "of them, so the direction of the whole update is kept"),
            ], otherwise=f"for {what} the clipped gradients differ from clip_grad_norm_'s"))


# == 10 reproducibility =============================================================================================
_GENERATORS = ("tinygrad_nb", "numpy", "random")
_UNSEEDED = {
    "tinygrad_nb": "the runs depend on the state tinygrad_nb's generator was in before the call: something draws from "
                   "it (the model's initialisation, the loader's shuffle seed, a dropout mask) before tg.manual_seed "
                   "runs, or it never runs: seed it first thing in the function, before anything random",
    "numpy": "numpy's global generator (np.random.normal, np.random.rand, np.random.shuffle, ...) is not seeded: "
             "tg.manual_seed does not reach it; draw from a generator of your own made from seed",
    "random": "Python's random module (random.random, random.shuffle, ...) is not seeded: tg.manual_seed does not "
              "reach it; use a generator of your own made from seed",
}


@contextmanager
def _global_generators_kept() -> Iterator[None]:
    """Put tinygrad_nb's, numpy's and Python's global generators back as they were (a check must not move them)."""
    import random  # noqa: PLC0415

    from .. import random as tg_random  # noqa: PLC0415

    states = (tg_random.get_rng_state(), np.random.get_state(), random.getstate())
    try:
        yield
    finally:
        tg_random.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


def _set_generators(k: int, pinned: tuple[str, ...] = ()) -> None:
    """Seed every global generator with ``1000 + k``, except the ``pinned`` ones, which always get 7."""
    import random  # noqa: PLC0415

    from .. import random as tg_random  # noqa: PLC0415

    seeders = {"tinygrad_nb": tg_random.manual_seed, "numpy": np.random.seed, "random": random.seed}
    for name, seeder in seeders.items():
        seeder(7 if name in pinned else 1000 + k)


def _reproducibility_data() -> tuple[Tensor, Tensor]:
    rng = _rng(10)
    x = rng.standard_normal((48, 6)).astype(np.float32)
    return Tensor(x), Tensor((x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64))


@exercise("reproducible_train", "10_reproducibility", "a training loop that repeats bit for bit from its seed",
          "reproducible_train(seed, X, y) -> list of losses")
def check_reproducible_train(fn: Any, trial: Trial) -> None:
    x, y = _reproducibility_data()

    def losses(k: int, seed: int, pinned: tuple[str, ...] = ()) -> np.ndarray:
        _set_generators(k, pinned)
        out = trial.call(seed, x, y, what=f"seed={seed}")
        if isinstance(out, Tensor) or not isinstance(out, (list, tuple, np.ndarray)):
            trial.fail(f"{trial.name} should return the list of losses (Python floats, one per step); got "
                       f"{type(out).__name__}")
        return trial.array(out, "the losses")

    with _global_generators_kept():
        with trial.stage("returns one finite loss per step"):
            first = losses(1, 0)
            if first.ndim != 1 or first.size == 0:
                trial.fail(f"the losses should be a flat list with one number per step; got shape {first.shape}")
            trial.finite(first, "a loss", "the training diverged; keep the loop as given (lr, model, data)")
        with trial.stage("the same seed twice gives bit-identical losses, whatever state tinygrad_nb's, numpy's and "
                         "Python's global generators were left in"):
            if np.array_equal(first, losses(2, 0)):
                pass
            else:
                if not np.array_equal(losses(1, 0, _GENERATORS), losses(2, 0, _GENERATORS)):
                    trial.fail("two runs with seed=0 differ even with every global generator in the same state: "
                               "something else changes between calls (a model or optimizer made outside the "
                               "function keeps training, the clock, a set's order)")
                for name in _GENERATORS:   # vary one generator at a time: those that change the losses are unseeded
                    if not np.array_equal(*(losses(k, 0, tuple(g for g in _GENERATORS if g != name)) for k in (1, 2))):
                        trial.hint(_UNSEEDED[name])
                trial.stop_if_failed()
                trial.fail("two runs with seed=0 differ, but never when only one global generator changes: seed "
                           "every generator the function draws from")
        with trial.stage("seeds 0 and 1 give different runs"):
            if np.array_equal(losses(1, 0), losses(1, 1)):
                trial.fail("seeds 0 and 1 give the same losses: the seed argument is not used (a constant in "
                           "tg.manual_seed?)")


@exercise("random_eval_loss", "10_reproducibility",
          "an evaluation on random rows that does not disturb the training's random stream",
          "random_eval_loss(model, X, y, n) -> float")
def check_random_eval_loss(fn: Any, trial: Trial) -> None:
    from .. import factories, nn  # noqa: PLC0415
    from .. import random as tg_random  # noqa: PLC0415
    from ..autograd import no_grad  # noqa: PLC0415
    from ..nn import functional as F  # noqa: PLC0415

    x, y = _reproducibility_data()
    n = 10
    with _global_generators_kept():
        tg_random.manual_seed(5)
        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
        model.train()
        state = tg_random.get_rng_state()

        def draws_after(start: dict[str, int], call: bool) -> np.ndarray:
            tg_random.set_rng_state(start)
            if call:
                trial.call(model, x, y, n, what=f"X of shape {tuple(x.shape)}, n={n}")
            return factories.rand(4).numpy()

        with trial.stage("leaves tinygrad_nb's random stream where it was (the training's next draws do not "
                         "change)"):
            got = draws_after(state, True)
            if not np.array_equal(got, draws_after(state, False)):
                tg_random.manual_seed(123)
                other = tg_random.get_rng_state()
                if np.array_equal(got, draws_after(other, True)):
                    trial.fail("your function re-seeds tinygrad_nb's generator: every draw after it restarts from "
                               "that seed, so the training's later shuffles and dropout masks repeat; draw the rows "
                               "from the current stream, inside a block that puts the stream back afterwards")
                trial.fail("calling your function moved tinygrad_nb's random stream: the training's draws after it "
                           "(dropout masks, shuffles) differ from a run without the evaluation; draw inside a block "
                           "that puts the stream back afterwards")
        with trial.stage(f"the mean cross-entropy of the model in eval mode on the rows tg.randperm(len(X))[:{n}] "
                         "drawn from the current stream"):
            tg_random.set_rng_state(state)
            got = trial.number(trial.call(model, x, y, n, what=f"n={n}"), "the loss")

            def reference(mode: str, rows: bool = True) -> float:
                tg_random.set_rng_state(state)
                index = factories.randperm(len(x))[:n] if rows else slice(None)
                model.train(mode == "train")
                with no_grad():
                    value = float(F.cross_entropy(model(x[index]), y[index]).item())
                model.train()
                return value

            if not close(got, reference("eval"), rtol=1e-5, atol=1e-6):
                trial.fail(which_mistake([
                    (close(got, reference("train"), rtol=1e-5, atol=1e-6),
                     "dropout was on during the evaluation: the loss is the one of the model in training "
                     "mode; switch the model to eval mode for the evaluation"),
                    (close(got, reference("eval", rows=False), rtol=1e-5, atol=1e-6),
                     f"you evaluated every row of X; evaluate the {n} rows tg.randperm(len(X))[:{n}]"),
                ], otherwise=f"the loss is {fmt(got)}; the model in eval mode on the rows tg.randperm(len(X))[:{n}] "
                             f"(drawn from tinygrad_nb's current stream, not numpy's) gives {fmt(reference('eval'))}"))
        with trial.stage("puts the model back in the mode it was in (training, or eval)"):
            for training in (True, False):
                model.train(training)
                tg_random.set_rng_state(state)
                trial.call(model, x, y, n)
                if model.training != training:
                    trial.fail("the model is left in eval mode: the training that follows would run without dropout; "
                               "remember model.training and restore it" if training else
                               "the model was in eval mode and your function left it in training mode: restore the "
                               "mode it had, rather than always calling model.train()")


# == 11 NaN hunting =================================================================================================
def _tensor_out(trial: Trial, out: Any, shape: tuple[int, ...], what: str) -> Tensor:
    if not isinstance(out, Tensor):
        trial.fail(f"{trial.name} should return a tinygrad_nb Tensor (so autograd can differentiate it); got "
                   f"{type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        trial.fail(f"{what} has shape {tuple(out.shape)}, expected {tuple(shape)}")
    return out


def _overflow_hints(trial: Trial, got: np.ndarray, rows: np.ndarray) -> None:
    """Hints for non-finite results on the rows of float32 logits ``rows`` (``got``: one result row per row)."""
    bad = ~np.isfinite(got.reshape(len(rows), -1)).all(axis=-1)
    if not bad.any():
        return
    first = rows[bad][0]
    if first.max() - first.min() < 1000 and first.max() >= 89:
        trial.fail(f"overflows for logits >= 89 (row {fmt(list(first))} gives {_nonfinite(got[bad][0])}): exp(89) is "
                   "beyond float32's largest number 3.4e38; subtract each row's max before exp (the result does not "
                   "change)")
    trial.fail(f"row {fmt(list(first))} gives {_nonfinite(got[bad][0])}: exp of a logit 1e4 below the row's max "
               "underflows to 0 and log(0) = -inf; stay in log space (subtract the log of the sum of exps) instead "
               "of taking the log of a softmax")


def _nonfinite(row: np.ndarray) -> str:
    return "NaN" if np.isnan(row).any() else "-inf" if np.isneginf(row).any() else "inf"


@exercise("log_softmax", "11_nan_hunting", "a numerically stable log_softmax over the last dim",
          "log_softmax(x) -> Tensor")
def check_log_softmax(fn: Any, trial: Trial) -> None:
    from ..nn import functional as F  # noqa: PLC0415

    rng = _rng(7)
    with trial.stage("values vs F.log_softmax in float64 for shapes (4, 4), (3, 5), (5,) and (2, 3, 4)"):
        for shape in [(4, 4), (3, 5), (5,), (2, 3, 4)]:
            x = rng.standard_normal(shape) * 3
            got = _tensor_out(trial, trial.call(_t(x), what=f"x of shape {shape}", on_error=(
                "a reduction over the last dim drops that dim, so its result no longer lines up with x; keep it "
                "with keepdim=True")), shape, "the result")
            got = got.detach().numpy().astype(np.float64)
            ref = F.log_softmax(_t(x), -1).numpy()
            if close(got, ref, atol=1e-10):
                continue
            lse = np.log(np.exp(x).sum(-1))
            trial.fail(which_mistake([
                (close(np.exp(got), np.exp(ref)) is False and close(got, np.exp(ref)),
                 "you return the softmax (probabilities); take its log, or better compute the log directly"),
                (len(shape) >= 2 and close(got, F.log_softmax(_t(x), 0).numpy()),
                 f"normalised over dim 0 for shape {shape}: the classes are the last dim, so exp of each "
                 "row (dim -1) should sum to 1"),
                (len(shape) == 2 and shape[0] == shape[1] and close(got, x - lse[None, :]),
                 f"for a square input {shape} the per-row statistic broadcast along the wrong dim: a "
                 f"{lse.shape}-shaped result of a reduction lines up with the last dim; keep the reduced "
                 "dim (keepdim=True)"),
            ], otherwise=f"values for x of shape {shape} differ from F.log_softmax by up to "
                         f"{np.nanmax(np.abs(got - ref)):.3g}"))
    with trial.stage("float32 logits of 89, 1e4 and -1e4 give finite, right values"):
        rows = np.array([[89.0, 0.0, -1.0], [1e4, 0.0, -1e4], [-1e4, 0.0, 1.0], [0.5, 0.25, 0.0]], dtype=np.float32)
        got_t = _tensor_out(trial, trial.call(_t(rows, dtype="float32"), what="float32 logits up to 1e4"),
                            rows.shape, "the result")
        if str(got_t.dtype) != "float32":
            trial.fail(f"float32 input gave a {got_t.dtype} result: keep the input's dtype")
        got = got_t.detach().numpy().astype(np.float64)
        _overflow_hints(trial, got, rows)
        ref = F.log_softmax(_t(rows.astype(np.float64)), -1).numpy()
        if not close(got, ref, rtol=1e-5, atol=1e-4):
            trial.fail(f"large float32 logits give values off by up to {np.abs(got - ref).max():.3g}")
    with trial.stage("tg.gradcheck in float64 (the gradient flows through your ops)"):
        x = _t(rng.standard_normal((3, 5)))
        probe = fn(_t(x.numpy(), requires_grad=True))
        if not probe.requires_grad:
            trial.fail("the result does not require grad: it was computed outside autograd (numpy, .item(), "
                       ".detach() or .data); use Tensor operations only")
        _gradcheck(trial, fn, [x])


@exercise("cross_entropy", "11_nan_hunting", "a numerically stable cross-entropy from logits",
          "cross_entropy(logits, target) -> Tensor")
def check_cross_entropy(fn: Any, trial: Trial) -> None:
    from ..nn import functional as F  # noqa: PLC0415

    rng = _rng(8)
    with trial.stage("the mean loss vs F.cross_entropy in float64 for batches of 1, 4 and 6 samples"):
        for n, c in [(4, 3), (1, 5), (6, 6)]:
            x, y = rng.standard_normal((n, c)) * 2, rng.integers(0, c, n)
            got = _tensor_out(trial, trial.call(_t(x), _t(y, dtype="int64"), what=f"logits of shape {(n, c)}"), (),
                              "the loss")
            got_v, ref = float(got.detach().item()), float(F.cross_entropy(_t(x), _t(y, dtype="int64")).item())
            if close(got_v, ref):
                continue
            logp = F.log_softmax(_t(x), -1).numpy()
            trial.fail(which_mistake([
                (close(got_v, -ref),
                 "the loss is negative: cross-entropy is minus the log-probability of the right class"),
                (n > 1 and close(got_v, ref * n),
                 f"the loss is {n}x too big for a batch of {n}: average over the samples, not sum"),
                (close(got_v, -logp.mean()),
                 "you average the log-probabilities of every class; only the target class of each row "
                 "counts (index row i at column target[i])"),
            ], otherwise=f"for logits of shape {(n, c)} the loss is {fmt(got_v)}, F.cross_entropy gives {fmt(ref)}"))
    with trial.stage("float32 logits of 89 and 1e4 give a finite, right loss"):
        rows = np.array([[89.0, 0.0, -1.0], [1e4, 0.0, -1e4], [-1e4, 0.0, 1.0]], dtype=np.float32)
        y = np.array([1, 0, 0])
        per_row = np.array([float(_tensor_out(trial, trial.call(_t(row[None], dtype="float32"),
                                                                _t(target[None], dtype="int64"),
                                                                what=f"float32 logits {fmt(list(row))}"),
                                              (), "the loss").detach().item()) for row, target in zip(rows, y)])
        _overflow_hints(trial, per_row, rows)
        got = _tensor_out(trial, trial.call(_t(rows, dtype="float32"), _t(y, dtype="int64"),
                                            what="float32 logits up to 1e4"), (), "the loss")
        value = float(got.detach().item())
        ref = float(F.cross_entropy(_t(rows.astype(np.float64)), _t(y, dtype="int64")).item())
        if not close(value, ref, rtol=1e-5):
            trial.fail(f"with large float32 logits the loss is {fmt(value)}, F.cross_entropy gives {fmt(ref)}")
    with trial.stage("tg.gradcheck in float64 with respect to the logits"):
        x, y = _t(rng.standard_normal((4, 3))), _t(rng.integers(0, 3, 4), dtype="int64")
        if not fn(_t(x.numpy(), requires_grad=True), y).requires_grad:
            trial.fail("the loss does not require grad: it was computed outside autograd (numpy, .item(), "
                       ".detach() or .data); use Tensor operations only")
        _gradcheck(trial, lambda logits: fn(logits, y), [x])


# == 13 export and inference ========================================================================================
@exercise("outputs_agree", "13_export_and_inference",
          "compare the runtime's outputs with the eager model's: a tolerance that fits the dtype",
          "outputs_agree(actual, expected) -> bool")
def check_outputs_agree(fn: Any, trial: Trial) -> None:
    rng = _rng(13)
    x, w = rng.standard_normal((32, 64)), rng.standard_normal((64, 10)) / 4
    exact64 = x @ w                                       # values of size ~1, like a small model's logits
    e32 = exact64.astype(np.float32)
    ulps = rng.integers(-2, 3, e32.shape).astype(np.float32)
    near_zero = np.zeros((4, 10), dtype=np.float32)
    same_rows = np.repeat(e32[:1], 4, axis=0)
    with_nan = e32.copy()
    with_nan[3, 4] = np.nan
    one_off = e32.copy()
    one_off[5, 2] += 0.5
    ulps64 = exact64 + np.spacing(exact64) * rng.integers(-2, 3, exact64.shape)
    # (actual, expected, the right answer, what it is, the hint when the answer is wrong)
    accept = [
        (e32.copy(), e32, "identical float32 outputs",
         "rejects identical outputs: it should return True when they agree"),
        (e32 + ulps * np.spacing(e32), e32, "float32 outputs 2 ULP apart (another summation order in the matrix "
         "product)", "rejects float32 outputs that differ by at most 2 ULP (what another summation order in the "
         "matrix product gives): exact equality is too strict for floating point; compare with a tolerance"),
        (near_zero + np.float32(2e-6), near_zero, "2e-6 against an exact 0",
         "rejects 2e-06 against 0: near 0 a relative tolerance allows nothing (rtol * 0), yet the rounding error of "
         "a sum is about eps times the size of its *terms*, not of its result; add an absolute tolerance (atol) of "
         "that size"),
        (ulps64, exact64, "float64 outputs 2 ULP apart",
         "rejects float64 outputs 2 ULP apart: the tolerance must allow rounding in float64 too"),
    ]
    reject = [
        (one_off, e32, "one element off by 0.5", "accepts outputs where one element is off by 0.5: compare every "
         "element, not a summary (a mean, a sum, a norm)"),
        (e32 + np.float32(1e-3), e32, "float32 outputs off by 1e-3 everywhere (a missing bias)",
         "accepts float32 outputs off by 1e-3 everywhere (a missing bias of that size is a real bug): float32 "
         "carries about 7 significant digits, so rounding explains a relative difference near 1e-6, not 1e-3"),
        (with_nan, e32, "an output holding a NaN", "accepts an output holding a NaN: every comparison with NaN is "
         "False, so `not (diff > tol).any()` lets it through; ask that every element is close instead"),
        (same_rows[:1], same_rows, "shape (1, 10) against (4, 10)", "accepts an output of shape (1, 10) for an "
         "expected (4, 10): np.allclose broadcasts the shapes; compare the shapes first"),
        (e32.astype(np.float64), e32, "float64 output for a float32 model", "accepts a float64 output for a "
         "float32 model: a runtime that changes the dtype has a bug (and doubles the memory); compare the dtypes "
         "too, as torch.testing.assert_close does"),
        (exact64 * (1 + 1e-6), exact64, "float64 outputs off by a relative 1e-6", "for float64 you accept a "
         "relative error of 1e-6 (float32's tolerance?), which is billions of float64 ULP: choose the tolerance "
         "from the dtype (np.finfo(dtype).eps)"),
    ]
    with trial.stage("returns a bool"):
        got = trial.call(e32.copy(), e32.copy(), what="two identical float32 arrays")
        if not isinstance(got, (bool, np.bool_)):
            trial.fail(f"{trial.name} should return True or False; got {type(got).__name__} (np.allclose gives a "
                       "bool; a comparison array needs .all())")
    for cases, right, verdict in ((accept, True, "accepts"), (reject, False, "rejects")):
        with trial.stage(f"{verdict} " + ", ".join(what for _, _, what, _ in cases)):
            for actual, expected, what, hint in cases:
                got = trial.call(actual.copy(), expected.copy(), what=what)
                if bool(got) != right:
                    trial.hint(hint)
            trial.stop_if_failed()


@exercise("batched_predict", "13_export_and_inference", "batch inference: collate single samples into batches",
          "batched_predict(predict, samples, batch_size) -> list")
def check_batched_predict(fn: Any, trial: Trial) -> None:
    rng = _rng(14)
    rows = [rng.standard_normal(4) for _ in range(10)]
    weight = rng.standard_normal((4, 3))
    reference = [r @ weight for r in rows]
    calls: list[tuple[int, int]] = []          # (batch size, samples read so far) at each call of predict
    pulled = [0]

    def predict(batch: Any) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float64)
        if batch.ndim != 2 or batch.shape[1] != 4:
            raise ValueError(f"predict takes a (batch, 4) array, got shape {batch.shape}: stack the samples along a "
                             "new first axis")
        calls.append((len(batch), pulled[0]))
        return batch @ weight

    def lazily(items: list[np.ndarray]) -> Iterator[np.ndarray]:
        for item in items:
            pulled[0] += 1
            yield item.copy()

    def outputs(samples: Any, what: str, n: int) -> list[np.ndarray]:
        calls.clear()
        pulled[0] = 0
        out = trial.call(predict, samples, 4, what=what, on_error="" if isinstance(samples, list) else (
            "a generator has no len() and can be read only once: take the samples batch_size at a time as they "
            "come"))
        try:
            out = list(out)
        except TypeError:
            trial.fail(f"{trial.name} should return a list (or an iterator) of results; got {type(out).__name__}")
        if len(out) == len(calls) != n:
            trial.fail(f"you return {len(out)} results for {n} samples: one per batch; return one per sample (the "
                       "rows of each batch's output)")
        if n % 4 and len(out) == n - n % 4:
            trial.fail(f"{len(out)} results for {n} samples in batches of 4: the last, partial batch ({n % 4} "
                       "samples) is missing")
        if len(out) != n:
            trial.fail(f"{len(out)} results for {n} samples")
        return [trial.array(o, "each result", (3,)) for o in out]

    with trial.stage("one result per sample, in order, for 10 samples in a list, in batches of 4 (the last has "
                     "2)"):
        got = outputs(rows, "10 samples in a list", 10)
        if not all(close(a, b) for a, b in zip(got, reference)):
            if sorted(map(tuple, np.round(got, 9))) == sorted(map(tuple, np.round(reference, 9))):
                trial.fail("the results are out of order: result i must be sample i's")
            trial.fail("the results differ from predict's output for each sample")
    with trial.stage("calls predict once per batch of at most batch_size samples (4, 4, 2)"):
        sizes = [size for size, _ in calls]
        if sizes and max(sizes) == 1:
            trial.fail("you call predict once per sample: collect batch_size samples and call it once per batch "
                       "(that is what amortises the cost of a call)")
        if sizes != [4, 4, 2]:
            trial.fail(f"predict was called with batches of {sizes}; expected [4, 4, 2]")
    with trial.stage("reads a generator lazily: at most one batch ahead, no len()"):
        got = outputs(lazily(rows), "10 samples from a generator", 10)
        if not all(close(a, b) for a, b in zip(got, reference)):
            trial.fail("from a generator the results differ from predict's output for each sample")
        if calls and calls[0][1] > 4 + 1:
            trial.fail(f"you read {calls[0][1]} samples before the first batch ran: the whole input was read first "
                       "(list(samples)?), which fails for an input larger than memory; hold one batch at a time")
    with trial.stage("an empty input gives no result and no call to predict"):
        got = outputs(lazily([]), "an empty generator", 0)
        if calls:
            trial.fail("for an empty input you called predict with an empty batch; call it only for a batch with "
                       "samples in it")


# == 16 custom ops ==================================================================================================
def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return (np.log(np.exp(x - m).sum(-1, keepdims=True)) + m)[..., 0]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@contextmanager
def _exercise_op(name: str, kernel: Any, shape: Any, backward: Any, setup_context: Any) -> Iterator[Any]:
    """A custom op ``exercises::name`` registered for the time of a check (then removed: the name is free again)."""
    from .. import library  # noqa: PLC0415

    op = library.custom_op(f"exercises::{name}", kernel, replace=True)
    op.register_shape(shape)
    op.register_autograd(backward, setup_context=setup_context)
    try:
        yield op
    finally:
        op.remove()


def _opcheck_stage(trial: Trial, op: Any, samples: list[Any]) -> None:
    from .. import library  # noqa: PLC0415

    try:
        library.opcheck(op, samples)
    except library.OpCheckError as e:
        trial.fail(f"library.opcheck fails: {e}")


@exercise("logsumexp_kernel", "16_custom_ops", "a stable logsumexp kernel for a custom op",
          "logsumexp_kernel(x) -> array")
def check_logsumexp_kernel(fn: Any, trial: Trial) -> None:
    rng = _rng(16)
    with trial.stage("the last dim reduced: shape x.shape[:-1], the input's dtype"):
        x = rng.standard_normal((3, 5))
        got = trial.array(trial.call(x.copy(), what="x of shape (3, 5)", on_error=(
            "a reduction over the last dim drops that dim, so its result no longer lines up with the rows; keep it "
            "with keepdims=True")), "the result")
        if got.shape == (5,):
            trial.fail("reduced over dim 0: logsumexp reduces the last dim (each row gives one number)")
        got = trial.array(got, "the result", (3,))
        out32 = trial.call(x.astype(np.float32), what="float32 x of shape (3, 5)")
        if np.asarray(out32).dtype != np.float32:
            trial.fail(f"float32 input gave a {np.asarray(out32).dtype} result: the op's shape function declares the "
                       "input's dtype (a float64 array or constant in the computation upcasts)")
    with trial.stage("leaves its input unchanged"):
        x = rng.standard_normal((3, 4))
        before = x.copy()
        trial.call(x, what="x of shape (3, 4)")
        if not np.array_equal(x, before):
            trial.fail("your kernel changed its input (an in-place x -= ... ?): the caller's tensor would change "
                       "under it; an op must compute into new arrays")
    with trial.stage("values vs log(sum(exp(x))) in float64 for shapes (3, 5), (4, 4), (5,) and (2, 3, 4)"):
        for shape in [(3, 5), (4, 4), (5,), (2, 3, 4)]:
            x = rng.standard_normal(shape) * 3
            ref = np.log(np.exp(x).sum(-1))
            got = trial.array(trial.call(x.copy(), what=f"x of shape {shape}", on_error=(
                "a reduction over the last dim drops that dim, so its result no longer lines up with the rows; keep it "
                "with keepdims=True")), "the result", ref.shape)
            if close(got, ref, atol=1e-12):
                continue
            if len(shape) == 2 and shape[0] == shape[1]:
                m = x.max(-1)
                if close(got, np.log(np.exp(x - m[None, :]).sum(-1)) + m):
                    trial.fail(f"for a square input {shape} the row max broadcast along the wrong dim: a reduction "
                               "without keepdims=True lines up with the last dim, not the rows")
            trial.fail(f"values for x of shape {shape} differ from log(sum(exp(x))) by up to "
                       f"{np.nanmax(np.abs(got - ref)):.3g}")
    with trial.stage("float32 rows of 89, 1e4 and -1e4 and a row of all -inf (a fully masked row) give the right "
                     "values"):
        rows = np.array([[89.0, 0.0, -1.0], [1e4, 0.0, -1e4], [-1e4, -1e4, -1e4], [-np.inf] * 3], dtype=np.float32)
        ref = _logsumexp(rows.astype(np.float64))
        got = trial.array(trial.call(rows.copy(), what="float32 rows of 89, 1e4, -1e4 and -inf"), "the result", (4,))
        if np.isposinf(got[:2]).any():
            trial.fail("overflows for a row holding 89 (float32 exp(89) is inf): subtract each row's max before exp, "
                       "and add it back after the log")
        if got[2] == -np.inf:
            trial.fail("the row (-1e4, -1e4, -1e4) gives -inf, the true value is -1e4 + log 3: exp underflows to 0 "
                       "and log(0) = -inf; subtract each row's max before exp")
        if np.isnan(got[3]):
            trial.fail("a row of all -inf (a fully masked row) gives NaN, torch.logsumexp gives -inf: its max is -inf "
                       "and -inf - (-inf) is NaN; subtract 0 where the max is not finite")
        if not close(got, ref, rtol=1e-6):
            trial.fail(f"the float32 rows give {fmt(list(got))}, the right values are {fmt(list(ref))}")

    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        ctx.save_for_backward(*inputs)

    def backward(ctx: Any, grad: Any) -> Any:
        (x,) = ctx.saved_tensors
        return grad[..., None] * _softmax(x)

    with _exercise_op("logsumexp", fn, lambda x: (x.shape[:-1], x.dtype), backward, setup_context) as op:
        with trial.stage("passes library.opcheck as op exercises::logsumexp (schema, no mutation, gradient, float32 "
                         "vs float64, determinism)"):
            _opcheck_stage(trial, op, [Tensor(rng.standard_normal((3, 4)).astype(np.float32)),
                                       Tensor(rng.standard_normal((2, 3, 5)))])


@exercise("softmax_backward", "16_custom_ops", "the backward of a softmax op, from its saved output",
          "softmax_backward(y, grad) -> grad_x")
def check_softmax_backward(fn: Any, trial: Trial) -> None:
    from ..nn import functional as F  # noqa: PLC0415

    rng = _rng(17)
    with trial.stage("returns an array shaped like y, and leaves y and grad unchanged"):
        y, g = _softmax(rng.standard_normal((3, 5))), rng.standard_normal((3, 5))
        y0, g0 = y.copy(), g.copy()
        trial.array(trial.call(y, g, what="y of shape (3, 5)", on_error=(
            "a reduction over the last dim drops that dim, so its result no longer lines up with the rows; keep it "
            "with keepdims=True")), "grad_x", (3, 5))
        if not np.array_equal(y, y0):
            trial.fail("your backward modified y in place: y is the op's output, which the caller still holds; "
                       "compute into new arrays")
        if not np.array_equal(g, g0):
            trial.fail("your backward modified grad in place: the same gradient array may feed other ops; compute "
                       "into new arrays")
    with trial.stage("vs autograd through F.softmax in float64 for shapes (3, 5), (4, 4), (2, 3, 4) and (5,)"):
        for shape in [(3, 5), (4, 4), (2, 3, 4), (5,)]:
            x, g = rng.standard_normal(shape) * 2, rng.standard_normal(shape)
            xt = _t(x, requires_grad=True)
            (F.softmax(xt, -1) * _t(g)).sum().backward()
            ref, y = xt.grad.numpy(), _softmax(x)
            got = trial.array(trial.call(y.copy(), g.copy(), what=f"y of shape {shape}"), "grad_x", shape)
            if close(got, ref, atol=1e-12):
                continue
            trial.fail(which_mistake([
                (close(got, -ref), "the gradient has the wrong sign"),
                (close(got, y * (1 - y) * g),
                 "you treat softmax as elementwise: y * (1 - y) * grad is only the diagonal of its "
                 "Jacobian; every output of a row depends on every input of the row through the shared sum, "
                 "so every grad of the row contributes"),
                (close(got, g - (g * y).sum(-1, keepdims=True)),
                 "the result must still be multiplied by y: d y_i / d x_j = y_i (delta_ij - y_j)"),
                (len(shape) >= 2 and close(got, y * (g - (g * y).sum(0, keepdims=True))),
                 f"summed over dim 0 for shape {shape}: the softmax couples the entries of a row (the last "
                 "dim)"),
                (len(shape) == 2 and shape[0] == shape[1] and close(got, y * (g - (g * y).sum(-1)[None, :])),
                 f"for a square input {shape} the row sum broadcast along the wrong dim: keep the reduced "
                 "dim (keepdims=True)"),
            ], otherwise=f"for y of shape {shape} grad_x differs from autograd's by up to "
                         f"{np.abs(got - ref).max():.3g}"))

    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        ctx.save_for_backward(output)

    def backward(ctx: Any, grad: Any) -> Any:
        (y,) = ctx.saved_tensors
        return fn(y, grad)

    with _exercise_op("softmax", _softmax, lambda x: (x.shape, x.dtype), backward, setup_context) as op:
        with trial.stage("passes library.opcheck as the backward of op exercises::softmax (gradcheck included)"):
            _opcheck_stage(trial, op, [Tensor(rng.standard_normal((3, 4)).astype(np.float32)),
                                       Tensor(rng.standard_normal((2, 3, 5)))])


# == 18 convolution =================================================================================================
@exercise("conv_output_size", "18_convolution", "the output size of a convolution",
          "conv_output_size(size, kernel, stride, padding) -> int")
def check_conv_output_size(fn: Any, trial: Trial) -> None:
    from ..nn import functional as F  # noqa: PLC0415

    cases = [(8, 3, 1, 0), (8, 3, 1, 1), (8, 3, 2, 1), (7, 3, 2, 0), (28, 5, 1, 2), (8, 8, 1, 0), (9, 2, 3, 0)]
    with trial.stage(f"vs the output width of F.conv2d for {len(cases)} (size, kernel, stride, padding), odd "
                     "sizes with stride > 1 included"):
        for size, k, s, p in cases:
            what = f"size={size}, kernel={k}, stride={s}, padding={p}"
            got = trial.call(size, k, s, p, what=what)
            ref = F.conv2d(_t(np.zeros((1, 1, 1, size))), _t(np.zeros((1, 1, 1, k))), stride=(1, s),
                           padding=(0, p)).shape[-1]
            if isinstance(got, float) and not float(got).is_integer():
                trial.fail(f"got {fmt(got)} for {what}: a size is a whole number; a window that does not fit is "
                           "dropped (round down)")
            got = trial.number(got, "the size")
            if got == ref:
                continue
            trial.fail(which_mistake([
                (got == (size + p - k) // s + 1, f"wrong for {what}: padding adds p pixels on *both* sides"),
                (got == (size + 2 * p - k) // s, f"one short for {what}: count the window at position 0 as well"),
            ], otherwise=f"got {fmt(got)} for {what}; F.conv2d's output is {ref} wide"))


@exercise("conv2d", "18_convolution", "a convolution layer with loops or im2col, by hand",
          "conv2d(x, weight) -> out")
def check_conv2d(fn: Any, trial: Trial) -> None:
    from ..nn import functional as F  # noqa: PLC0415

    rng = _rng(9)
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 2))   # a non-square kernel
    ref = F.conv2d(_t(x), _t(w)).numpy()
    with trial.stage("the output shape (N, C_out, H - kh + 1, W - kw + 1) for a non-square kernel"):
        out = trial.call(x.copy(), w.copy(), what="x (2, 3, 6, 5), weight (4, 3, 3, 2)")
        got = trial.array(out, "the output")
        if got.shape != ref.shape:
            if got.shape == (2, 4, 6 - 2 + 1, 5 - 3 + 1):
                trial.fail(f"shape {got.shape}, expected {ref.shape}: the kernel's height (dim 2) runs along the "
                           "image's height (dim 2), its width along the width")
            trial.fail(f"the output has shape {got.shape}, expected {ref.shape} (batch, out channels, rows, columns)")
    with trial.stage("values vs F.conv2d in float64"):
        got = trial.array(trial.call(x.copy(), w.copy()), "the output", ref.shape)
        if not close(got, ref, atol=1e-10):
            trial.fail(which_mistake([
                (close(got, F.conv2d(_t(x), _t(w[:, :, ::-1, ::-1].copy())).numpy()),
                 "you flipped the kernel: that is the textbook convolution; deep learning's conv2d is a "
                 "cross-correlation, weight[i, j] meets x[row + i, col + j]"),
                (close(got, F.conv2d(_t(x[:, :1]), _t(w[:, :1])).numpy()),
                 "only input channel 0 is used: each output channel sums over every input channel"),
            ], otherwise=f"values differ from F.conv2d by up to {np.abs(got - ref).max():.3g}"))


@exercise("init_std", "18_convolution", "the initialisation scale that keeps activations steady (He / Xavier)",
          "init_std(fan_in, nonlinearity) -> float")
def check_init_std(fn: Any, trial: Trial) -> None:
    from ..nn import init  # noqa: PLC0415

    cases = [(64, "relu"), (9, "relu"), (64, "tanh"), (300, "linear")]
    with trial.stage("vs nn.init.calculate_gain(...) / sqrt(fan_in) for relu, tanh and linear layers"):
        for fan_in, nl in cases:
            got = trial.number(trial.call(fan_in, nl, what=f"fan_in={fan_in}, '{nl}'"), "the std")
            ref = init.calculate_gain(nl) / math.sqrt(fan_in)
            if close(got, ref):
                continue
            gain = init.calculate_gain(nl)
            trial.fail(which_mistake([
                (close(got, gain / fan_in),
                 f"for fan_in={fan_in} the std falls like 1/fan_in: the variance of a sum of fan_in terms "
                 "grows like fan_in, so the std must shrink like 1/sqrt(fan_in)"),
                (close(got, 1 / math.sqrt(fan_in)) and gain != 1,
                 f"for '{nl}' the gain is missing: " + (
                     "ReLU zeroes half its inputs and so halves the variance, which the gain sqrt(2) gives back"
                     if nl == "relu" else "tanh squashes its inputs, and its gain 5/3 compensates")),
            ], otherwise=f"for fan_in={fan_in}, '{nl}' you return {fmt(got)}, nn.init expects {fmt(ref)}"))
