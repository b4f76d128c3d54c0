"""The exercises of notebooks 15, 17 and 19, one checker each (same conventions as :mod:`.checkers`).

Each checker runs the learner's function on hidden cases, compares with tinygrad_nb itself
(``F.scaled_dot_product_attention`` and ``tg.gradcheck`` in float64, ``GradScaler``'s scale rule, the sweep's own grid
expansion and ``SweepResult.best``) and, when a value is wrong, tests the known wrong answers to say which mistake it
is. Hints carry only stable text (shapes, positions, powers of two, configs), never a float that depends on the CPU's
kernels. ``tests/test_exercises.py`` runs the notebooks' solutions; ``tests/test_exercises_late.py`` runs the known
wrong answers.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .core import Trial, close, exercise, fmt, which_mistake


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# == 15 mixed precision =============================================================================================
def _sgd_case(seed: int, bad: dict[int, float] | None = None) -> tuple[list[np.ndarray], list[Any]]:
    """Three float32 parameters, the third without a gradient (None), and the gradients of a loss scaled by 2**16
    (``bad``: {index: inf or nan} plants a non-finite value in that gradient)."""
    rng = _rng(seed)
    params = [rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (4,), (2,))]
    grads: list[Any] = [(rng.standard_normal(p.shape) * 1e-3 * 2.0**16).astype(np.float32) for p in params[:2]]
    for index, value in (bad or {}).items():
        grads[index].flat[1] = value
    return params, grads + [None]


def _shown(value: Any) -> str:
    """A returned value in a hint: a bool or None as it is, anything else by its type (no array of floats)."""
    return repr(value) if value is None or isinstance(value, (bool, np.bool_)) else f"a {type(value).__name__}"


@exercise("scaled_sgd_step", "15_mixed_precision", "an SGD step from the gradients of a scaled loss, skipped on "
          "inf/NaN", "scaled_sgd_step(params, grads, scale, lr) -> bool")
def check_scaled_sgd_step(fn: Any, trial: Trial) -> None:
    scale, lr = 2.0**16, 0.1
    with trial.stage("finite gradients of a loss scaled by 2**16: params -= lr * grad / scale in place (vs float64), "
                     "a parameter without gradient (None) untouched, returns True"):
        params, grads = _sgd_case(0)
        before = [p.copy() for p in params]
        g64 = [g.astype(np.float64) for g in grads[:2]]
        stepped = trial.call(params, [g.copy() for g in grads[:2]] + [None], scale, lr,
                             what="finite gradients with scale 2**16", on_error="grads[2] is None: a parameter that "
                             "took no part in the loss has no gradient; leave it as it is")
        ref = [b.astype(np.float64) - lr * g / scale for b, g in zip(before, g64)]
        got = [trial.array(p, f"params[{i}]", b.shape) for i, (p, b) in enumerate(zip(params, before))]
        if not close(got[0], ref[0], rtol=1e-6, atol=1e-7):
            trial.fail(which_mistake([
                (close(got[0], before[0]), "the parameters did not change: update the arrays in place (p -= ..., "
                                           "or p[...] = ...); p = p - ... only gives the name p a new array"),
                (close(got[0], before[0] - lr * g64[0], rtol=1e-5), "the step is 2**16 times too large: the "
                 "gradients are those of the scaled loss, divide them by the scale first"),
                (close(got[0], before[0] - lr * g64[0] * scale, rtol=1e-5), "you multiply by the scale: the "
                 "gradients are already scaled, unscaling divides by it"),
            ], otherwise="params[0] after the step is not params[0] - lr * grads[0] / scale"))
        if not close(got[1], ref[1], rtol=1e-6, atol=1e-7):
            trial.fail("params[0] is right but params[1] is not: step every parameter that has a gradient")
        if not np.array_equal(params[2], before[2]):
            trial.fail("params[2], whose gradient is None, changed: a parameter without a gradient is not stepped")
        if stepped is not True and not (isinstance(stepped, np.bool_) and bool(stepped)):
            trial.fail(f"you return {_shown(stepped)} after a step that ran: return True when the step ran, False "
                       "when it was skipped")
    for where, bad, what in ((0, {0: math.inf}, "an inf in grads[0]"), (1, {1: math.inf}, "an inf in grads[1] only"),
                             (0, {0: math.nan}, "a NaN in grads[0]")):
        with trial.stage(f"{what}: the whole step skipped (no parameter changes), returns False"):
            params, grads = _sgd_case(1, bad)
            before = [p.copy() for p in params]
            stepped = trial.call(params, grads, scale, lr, what=what)
            changed = [not np.array_equal(p, b, equal_nan=True) for p, b in zip(params, before)]
            broken = any(not np.all(np.isfinite(p)) for p in params)
            if any(changed):
                trial.fail(which_mistake([
                    (math.isnan(bad[where]), "a NaN gradient is not caught: np.isinf(nan) is False; np.isfinite "
                                             "is False for inf and NaN alike"),
                    (where == 1 and changed[0] and not changed[1], "params[0] changed although the step was "
                     "skipped: you step each parameter before looking at the next gradient; check every gradient "
                     "first, then step all or none"),
                    (where == 1 and changed[1], "the step ran although grads[1] holds an inf: check every gradient, "
                                                "not only the first"),
                    (broken, f"the step ran with {what}: the parameters now hold inf or NaN; when any gradient is "
                             "not finite, skip the whole step (the scaler then lowers the scale)"),
                ], otherwise=f"the parameters changed with {what}: skip the whole step"))
            if stepped is not False and not (isinstance(stepped, np.bool_) and not bool(stepped)):
                trial.fail(f"you return {_shown(stepped)} for a skipped step: return False when the step was "
                           "skipped")


def _scale_rule(growth_reset: bool = True, inf_reset: bool = True, backoff: float = 0.5, late: bool = False
                ) -> Callable[[float, int, bool, int], tuple[float, int]]:
    """The scale update with one of the known mistakes (the defaults are the right rule, for the wrong ones only:
    the reference is GradScaler's own)."""

    def update(scale: float, good: int, found_inf: bool, interval: int) -> tuple[float, int]:
        if found_inf:
            return scale * backoff, 0 if inf_reset else good
        good += 1
        if (good > interval) if late else (good >= interval):
            return scale * 2.0, 0 if growth_reset else good
        return scale, good

    return update


_INFS = [False, False, True, True, False, False, False, False, False, True, False, False, False, False]


@exercise("update_scale", "15_mixed_precision", "GradScaler's rule: halve on inf/NaN, double after growth_interval "
          "clean steps", "update_scale(scale, good_steps, found_inf, growth_interval) -> (scale, good_steps)")
def check_update_scale(fn: Any, trial: Trial) -> None:
    from ..amp.grad_scaler import _update_scale  # noqa: PLC0415 - the reference: GradScaler's own rule

    def simulate(rule: Callable[..., Any], interval: int, call: bool = False) -> list[tuple[float, int]]:
        scale, good, out = 1024.0, 0, []
        for step, found_inf in enumerate(_INFS):
            result = rule(scale, good, found_inf, interval)
            if call:
                if not isinstance(result, (tuple, list)) or len(result) != 2:
                    trial.fail(f"return a pair (scale, good_steps); step {step} returned {type(result).__name__}")
                result = (trial.number(result[0], "the scale"), int(trial.number(result[1], "good_steps")))
            scale, good = float(result[0]), int(result[1])
            out.append((scale, good))
        return out

    for interval in (3, 1, 4):
        with trial.stage(f"growth_interval={interval}: 14 steps from scale 1024 with inf at steps 2, 3 and 9, the "
                         "same scales and counts as tg.amp.GradScaler"):
            def reference(scale: float, good: int, found_inf: bool, interval: int) -> tuple[float, int]:
                s, g = _update_scale(np.float32(scale), good, found_inf, 2.0, 0.5, interval)
                return float(s), g

            ref = simulate(reference, interval)

            def learner(scale: float, good: int, found_inf: bool, interval: int) -> Any:
                return trial.call(scale, good, found_inf, interval, what=f"scale={fmt(scale)}, good_steps={good}, "
                                  f"found_inf={found_inf}, growth_interval={interval}")

            got = simulate(learner, interval, call=True)
            if got == ref:
                continue
            step = next(i for i, (a, b) in enumerate(zip(got, ref)) if a != b)
            trial.fail(which_mistake(((simulate(rule, interval) == got, hint) for rule, hint in [
                (_scale_rule(backoff=2.0), "on inf/NaN you double the scale: an overflow means the scale is too "
                                           "large; halve it"),
                (_scale_rule(backoff=1.0), "on inf/NaN the scale stays: halve it, or the next step overflows "
                                           "again"),
                (_scale_rule(inf_reset=False), f"after the inf at step {_INFS.index(True)} the scale grows too soon: "
                 "an inf/NaN step restarts the count of clean steps at 0"),
                (_scale_rule(growth_reset=False), "after the first growth the scale doubles at every clean step: "
                                                  "restart the count at 0 when the scale grows"),
                (_scale_rule(late=True), f"the scale grows one step late: it doubles on the clean step that makes "
                                         f"the count reach growth_interval ({interval}), not the one after"),
            ]), otherwise=f"at step {step} (found_inf={_INFS[step]}) you return (scale {fmt(got[step][0])}, "
                          f"good_steps {got[step][1]}); GradScaler has (scale {fmt(ref[step][0])}, good_steps "
                          f"{ref[step][1]})"))


# == 17 attention and a tiny GPT ====================================================================================
def _swap(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(a, -1, -2)


def _attention64(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float | None = None, fill: float = -np.inf,
                 after: bool = False, axis: int = -1, diagonal: int = 1, past: bool = False, transpose: bool = True,
                 ) -> np.ndarray:
    """Causal attention in float64 numpy, with the knobs of the known mistakes."""
    t = q.shape[-2]
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ (_swap(k) if transpose else k)) * scale
    masked = np.tril(np.ones((t, t), dtype=bool), -1) if past else np.triu(np.ones((t, t), dtype=bool), diagonal)
    if not after:
        scores = np.where(masked, fill, scores)
    e = np.exp(scores - scores.max(axis=axis, keepdims=True))
    weights = e / e.sum(axis=axis, keepdims=True)
    if after:
        weights = np.where(masked, 0.0, weights)
    return weights @ v


def _attention_mistakes(q: np.ndarray, k: np.ndarray, v: np.ndarray, got: np.ndarray) -> list[tuple[bool, str]]:
    d, t = q.shape[-1], q.shape[-2]
    return [
        (close(got, _attention64(q, k, v, scale=1.0), rtol=1e-5), "the scores are not scaled: divide q k^T by "
         "sqrt(d), d the last dim of q; without it the softmax saturates as d grows"),
        (close(got, _attention64(q, k, v, scale=1 / d), rtol=1e-5), "you divide the scores by d: the scale is "
                                                                      "1/sqrt(d)"),
        (close(got, _attention64(q, k, v, after=True), rtol=1e-5), "the mask is applied after the softmax: the "
         "future's weight is zeroed but the rest no longer sums to 1; mask the scores before the softmax"),
        (close(got, _attention64(q, k, v, fill=0.0), rtol=1e-5), "the future's scores are set to 0, and exp(0) = 1 "
         "still gives them weight: fill them with -inf so that the softmax gives exactly 0"),
        (close(got, _attention64(q, k, v, diagonal=t), rtol=1e-5), "no position is masked: position t sees the "
         "whole sequence, the future included; mask the scores of s > t"),
        (close(got, _attention64(q, k, v, past=True), rtol=1e-5), "you mask the past (s < t) instead of the "
         "future (s > t): triu, not tril, marks the future"),
        (close(got, _attention64(q, k, v, axis=-2), rtol=1e-5), "the softmax runs over the wrong axis: the weights "
         "of one query (one row of the scores, over the keys: the last dim) must sum to 1"),
        (q.shape[-2] == q.shape[-1] and close(got, _attention64(q, k, v, transpose=False), rtol=1e-5),
         "the scores are q @ k: swap k's last two dims (k.transpose(-2, -1)) so that entry (t, s) is q_t . k_s"),
    ]


@exercise("causal_attention", "17_attention_and_a_tiny_gpt", "scaled dot-product attention with a causal mask",
          "causal_attention(q, k, v) -> Tensor")
def check_causal_attention(fn: Any, trial: Trial) -> None:
    from .. import gradcheck, tensor  # noqa: PLC0415
    from ..nn import functional as F  # noqa: PLC0415

    rng = _rng(17)
    cases = [((5, 4), (5, 3)), ((2, 6, 8), (2, 6, 8)), ((2, 3, 7, 4), (2, 3, 7, 5)), ((4, 4), (4, 4))]
    with trial.stage("values vs F.scaled_dot_product_attention(is_causal=True) in float64 for q of shapes (5, 4), "
                     "(2, 6, 8), (2, 3, 7, 4) and (4, 4) (v's last dim differing from q's)"):
        for qshape, vshape in cases:
            q, k, v = rng.standard_normal(qshape), rng.standard_normal(qshape), rng.standard_normal(vshape)
            what = f"q, k of shape {qshape} and v of shape {vshape}"
            out = trial.call(tensor(q), tensor(k), tensor(v), what=what,
                             on_error="check which dims each product and the mask need: the scores are (..., T, T)")
            ref = F.scaled_dot_product_attention(tensor(q), tensor(k), tensor(v), is_causal=True).numpy()
            got = trial.array(out, f"the result for {what}", ref.shape)
            if close(got, ref, rtol=1e-6, atol=1e-9):
                continue
            if not np.all(np.isfinite(got)):
                trial.fail(f"the result for {what} holds NaN: a row whose scores are all -inf (here the first "
                           "position's, if its own score is masked too) has no softmax; a position must see "
                           "itself (mask s > t, not s >= t)")
            trial.fail(which_mistake(_attention_mistakes(q, k, v, got),
                                     otherwise=f"the result for {what} differs from softmax(q k^T / sqrt(d) + "
                                               "causal mask) v"))
    with trial.stage("the gradient flows to q, k and v (tg.gradcheck in float64)"):
        q, k, v = (tensor(rng.standard_normal((2, 4, 3)), requires_grad=True) for _ in range(3))
        out = trial.call(q, k, v, what="q, k, v of shape (2, 4, 3)")
        if not getattr(out, "requires_grad", False):
            trial.fail("the result does not require grad: compute it with tensor ops (a detour through numpy cuts "
                       "the graph, and nothing would train)")
        try:
            gradcheck(fn, [q, k, v])
        except Exception as e:  # noqa: BLE001
            trial.fail(f"tg.gradcheck fails on your function: {e}")
    with trial.stage("float32 q and k with scores near 1e3 (a sharp attention): finite and right"):
        q, k, v = rng.standard_normal((6, 4)) * 40, rng.standard_normal((6, 4)) * 40, rng.standard_normal((6, 4))
        out = trial.call(tensor(q.astype(np.float32)), tensor(k.astype(np.float32)), tensor(v.astype(np.float32)),
                         what="float32 q, k with scores near 1e3")
        got = trial.array(out, "the result", (6, 4))
        trial.finite(got, "the result for scores near 1e3", "exp of a score of 1e3 overflows float32; subtract "
                     "each row's max before exp (F.softmax does it for you)")
        if not close(got, _attention64(q.astype(np.float32).astype(np.float64), k.astype(np.float32).astype(
                np.float64), v.astype(np.float32).astype(np.float64)), rtol=1e-3, atol=1e-3):
            trial.fail("with float32 scores near 1e3 the result is wrong (finite, but not the attention)")


@exercise("split_heads", "17_attention_and_a_tiny_gpt", "split the width into attention heads",
          "split_heads(x, heads) -> Tensor of shape (B, heads, T, C // heads)")
def check_split_heads(fn: Any, trial: Trial) -> None:
    from .. import tensor  # noqa: PLC0415

    rng = _rng(18)
    with trial.stage("values vs reshape to (B, T, heads, C/heads) and heads before T, for (B, T, C, heads) = "
                     "(2, 5, 12, 3), (2, 4, 8, 4), (1, 3, 6, 1) and (1, 2, 6, 6)"):
        for b, t, c, h in ((2, 5, 12, 3), (2, 4, 8, 4), (1, 3, 6, 1), (1, 2, 6, 6)):
            x, d = rng.standard_normal((b, t, c)), c // h
            what = f"x of shape {(b, t, c)} and heads={h}"
            out = trial.call(tensor(x), h, what=what)
            shape = tuple(getattr(out, "shape", np.shape(out)))
            if shape == (b, t, h, d) and (b, t, h, d) != (b, h, t, d):
                trial.fail(f"for {what} the result has shape {shape}, (B, T, heads, C/heads): each head must hold "
                           "the whole sequence, so the heads dim goes before T (swap dims 1 and 2)")
            got = trial.array(out, f"the result for {what}", (b, h, t, d))
            ref = x.reshape(b, t, h, d).transpose(0, 2, 1, 3)
            if close(got, ref, rtol=0, atol=0):
                continue
            trial.fail(which_mistake([
                (close(got, x.reshape(b, h, t, d), rtol=0, atol=0), f"for {what}: right shape, wrong numbers. "
                 "reshape(B, heads, T, C/heads) cuts each batch's (T, C) block into consecutive pieces, so a head "
                 "gets whole rows of a few positions, not its slice of the width at every position; split the "
                 "width first, then move the heads dim"),
                (close(got, x.reshape(b, t, h, d).reshape(b, h, t, d), rtol=0, atol=0), f"for {what}: right "
                 "shape, wrong numbers. Reshaping (B, T, heads, C/heads) to (B, heads, T, C/heads) does not move "
                 "the dims, it re-cuts the same numbers; swap dims 1 and 2 (transpose)"),
                (close(got, x.reshape(b, t, d, h).transpose(0, 3, 1, 2), rtol=0, atol=0), f"for {what}: head 0 "
                 "holds columns 0, heads, 2*heads, ... of the width: split the width as (heads, C/heads), heads "
                 "first, so that head i holds the columns i*C/heads to (i+1)*C/heads - 1"),
            ], otherwise=f"for {what} head 0 should hold columns 0 to {d - 1} of every position"))
    with trial.stage("the gradient flows back to x (the heads are a view of it for autograd)"):
        x = tensor(rng.standard_normal((2, 3, 8)), requires_grad=True)
        out = trial.call(x, 2, what="x of shape (2, 3, 8) and heads=2")
        if not getattr(out, "requires_grad", False):
            trial.fail("the result does not require grad: use tensor ops (reshape, transpose), not numpy")
        (out * tensor(np.arange(48.0).reshape(2, 3, 8).reshape(2, 3, 2, 4).transpose(0, 2, 1, 3))).sum().backward()
        if x.grad is None or not close(x.grad.numpy(), np.arange(48.0).reshape(2, 3, 8)):
            trial.fail("the gradient that reaches x is wrong: the heads' numbers do not come back to the places "
                       "they came from")


# == 19 ablation sweeps =============================================================================================
_SPACES: list[dict[str, Any]] = [
    {"lr": [0.03, 0.3, 0.003], "hidden": [8, 32]},
    {"act": "relu", "lr": [0.1, 0.01], "epochs": 5, "hidden": (16, 32, 64)},
    {"a": [1, 2], "b": [3, 4], "c": [5, 6, 7]},
    {"opt": ["sgd", "adam"]},
    {"epochs": 3, "act": "tanh"},
]


def _expand(space: dict[str, Any], is_choice: Callable[[Any], bool], first_fastest: bool = False
            ) -> list[dict[str, Any]]:
    """A grid of ``space`` where ``is_choice(value)`` says which values are axes (for the known mistakes)."""
    import itertools  # noqa: PLC0415

    axes = [k for k, v in space.items() if is_choice(v)]
    order = list(reversed(axes)) if first_fastest else axes
    configs = []
    for combo in itertools.product(*(space[k] for k in order)):
        config = {k: v for k, v in space.items() if k not in axes}
        config.update(zip(order, combo))
        configs.append(config)
    return configs


def _grid_mistakes(space: dict[str, Any], got: list[dict[str, Any]]) -> list[tuple[bool, str]]:
    axes = [v for v in space.values() if isinstance(v, (list, tuple))]
    strings = [k for k, v in space.items() if isinstance(v, str)]
    return [
        (len(got) > 1 and all(c is got[0] for c in got), "every config is the same dict object, so they all show "
         "the last combination: make a new dict per combination"),
        (got == _expand(space, lambda v: isinstance(v, (list, tuple)), first_fastest=True), "the first key varies "
         "fastest: tg.sweep's grid varies the last key fastest (trial 1 differs from trial 0 in the last key), as "
         "nested loops over the keys in order do"),
        (len(axes) > 1 and got == [dict({k: v for k, v in space.items() if not isinstance(v, (list, tuple))},
                                        **dict(zip([k for k, v in space.items() if isinstance(v, (list, tuple))], c)))
                                   for c in zip(*axes)], "you pair the lists up (zip) instead of taking "
         "every combination: a grid has len(list 1) * len(list 2) * ... configs"),
        (bool(strings) and any(c.get(strings[0]) != space[strings[0]] and str(c.get(strings[0])) in space[strings[0]]
                               for c in got),
         f"the fixed string {space[strings[0]]!r} of {strings[0]!r} was taken apart letter by letter: iterating a "
         "string gives its characters; only lists and tuples are choices" if strings else ""),
        (any(set(c) != set(space) for c in got), "a config misses some keys of the space: a value that is not a "
                                                 "list is fixed, and goes as it is into every config"),
        (got == _expand(space, lambda v: isinstance(v, list)), "a tuple of values is a choice too (tg.sweep reads "
                                                               "lists and tuples alike): expand it like a list"),
    ]


@exercise("grid", "19_ablation_sweeps", "expand a search space into a grid of configs",
          "grid(space) -> list of dicts")
def check_grid(fn: Any, trial: Trial) -> None:
    from ..sweep.space import grid_configs  # noqa: PLC0415 - the reference: tg.sweep's own expansion

    with trial.stage(f"vs tg.sweep's grid on {len(_SPACES)} spaces: every combination, the last key fastest, fixed "
                     "values (a string included) in every config, tuples as choices, a space without lists"):
        for space in _SPACES:
            given = {k: (list(v) if isinstance(v, list) else v) for k, v in space.items()}
            what = f"space {space}"
            got = trial.call(given, what=what, on_error="a value that is not a list or tuple is fixed: it is not "
                             "expanded, it goes as it is into every config")
            if given != space:
                trial.fail(f"your function changed the space it was given ({what})")
            if not isinstance(got, list) or not all(isinstance(c, dict) for c in got):
                trial.fail(f"return a list of dicts (one config per trial); for {what} got "
                           f"{type(got).__name__}")
            ref = grid_configs(space)
            if got == ref:
                continue
            trial.fail(which_mistake(_grid_mistakes(space, got),
                                     otherwise=f"for {what} you return {len(got)} configs, starting {got[:2]}; "
                                               f"expected {len(ref)}, starting {ref[:2]}"))


def _trials(rows: list[tuple[int, str, float | None]]) -> list[Any]:
    from ..sweep.driver import TrialResult  # noqa: PLC0415

    return [TrialResult(trial=i, config={"lr": 0.1 * (i + 1)}, seed=1000 + i, run_id=f"run{i}", status=status,
                        value=value, steps=8) for i, status, value in rows]


_BEST_CASES: list[tuple[str, str, list[tuple[int, str, float | None]]]] = [
    ("min", "six finished or pruned trials", [(0, "finished", 0.88), (1, "finished", 0.48), (2, "finished", 0.28),
                                              (3, "finished", 0.21), (4, "pruned", 2.28), (5, "pruned", 2.3)]),
    ("min", "a pruned trial with the lowest value", [(0, "finished", 0.9), (1, "pruned", 0.1), (2, "finished", 0.5)]),
    ("max", "mode='max' (an accuracy)", [(0, "finished", 0.81), (1, "finished", 0.97), (2, "finished", 0.62)]),
    ("min", "a tie between trials 5 and 2, listed in the order they finished",
     [(5, "finished", 0.25), (0, "finished", 0.4), (2, "finished", 0.25), (1, "finished", 0.3)]),
    ("min", "a failed trial (value None) and a diverged one (status 'nan', value nan)",
     [(0, "failed", None), (1, "nan", math.nan), (2, "finished", 0.7), (3, "finished", 0.6)]),
    ("min", "no finished trial", [(0, "pruned", 1.2), (1, "failed", None)]),
]


@exercise("pick_best", "19_ablation_sweeps", "pick a sweep's winner: finished trials only, ties to the lower id",
          "pick_best(trials, mode) -> TrialResult or None")
def check_pick_best(fn: Any, trial: Trial) -> None:
    from ..sweep.driver import SweepResult  # noqa: PLC0415 - the reference: SweepResult.best

    with trial.stage(f"vs SweepResult.best on {len(_BEST_CASES)} sweeps: pruned, failed and NaN trials never win, "
                     "mode='max', ties to the lower trial id whatever the list's order, None without a winner"):
        for mode, what, rows in _BEST_CASES:
            trials = _trials(rows)
            ref = SweepResult("s", "s", "val_loss", mode, "grid", "local", 0, "", list(trials)).best
            got = trial.call(list(trials), mode, what=what, on_error="only finished trials with a finite value "
                             "take part; with none, return None" if ref is None or "failed" in what else "")
            if got is ref:
                continue
            if got is not None and not any(got is t for t in trials):
                trial.fail(f"for {what} you return a {type(got).__name__}: return the winning TrialResult itself "
                           "(or None)")
            wrong_mode = SweepResult("s", "s", "val_loss", "max" if mode == "min" else "min", "grid", "local", 0, "",
                                     list(trials)).best
            number, status = getattr(got, "trial", None), getattr(got, "status", None)
            best_is = "largest" if mode == "max" else "smallest"
            trial.fail(which_mistake([
                (ref is None and got is not None, f"for {what} you return trial {number} ({status}): with no "
                                                  "finished trial there is no winner; return None"),
                (status == "pruned", f"for {what} you return pruned trial {number}: a stopped trial never got to "
                                     "the end; only finished trials can win"),
                (status in ("nan", "failed"), f"for {what} you return trial {number} (status {status!r}): only "
                                              "finished trials with a finite value can win"),
                (got is not None and got is wrong_mode, f"for {what} you return trial {number}, the worst: "
                                                        f"mode={mode!r} means the best value is the {best_is}"),
                (got is not None and ref is not None and got.value == ref.value,
                 f"for {what} you return trial {number}: on a tie the lower trial id wins (a sort key of (value, "
                 "trial id)), whatever order the list is in"),
            ], otherwise=f"for {what} you return trial {number}; the winner is trial {getattr(ref, 'trial', None)}"))
