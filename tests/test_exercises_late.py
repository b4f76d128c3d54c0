"""The exercises of notebooks 15, 17 and 19 (tinygrad_nb/exercises/checkers_late.py): every known wrong answer gets
the hint written for it, never a generic one, and a right answer passes. The notebooks' own solutions are run by
tests/test_exercises.py, which reads them out of the notebooks; its coverage test also counts the mistakes here.
"""
from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from helpers import assert_gets_hint

import tinygrad_nb as tg
from tinygrad_nb.exercises import checkers_late, progress, run
from tinygrad_nb.nn import functional as F


@pytest.fixture(autouse=True)
def progress_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.ENV_DIR, str(tmp_path / "progress"))


# -- 15: scaled_sgd_step, update_scale ------------------------------------------------------------------------------
def _sgd(unscale: float = -1.0, check: str = "isfinite", first_only: bool = False, step_each: bool = False,
         rebind: bool = False, returns: Any = "bool") -> Any:
    def scaled_sgd_step(params: Any, grads: Any, scale: float, lr: float) -> Any:
        factor = scale ** unscale
        is_bad = (lambda g: not np.all(np.isfinite(g))) if check == "isfinite" else (lambda g: bool(np.isinf(g).any()))
        present = [(p, g) for p, g in zip(params, grads) if g is not None]
        if step_each:
            for p, g in present:
                if is_bad(g):
                    return False
                p -= lr * g * factor
            return True
        if check != "none" and any(is_bad(g) for _, g in present[:1 if first_only else None]):
            return False
        for p, g in present:
            if rebind:
                p = p - lr * g * factor  # noqa: PLW2901 - the mistake under test
            else:
                p -= lr * g * factor
        return True if returns == "bool" else None

    return scaled_sgd_step


def _update(backoff: float = 0.5, inf_reset: bool = True, growth_reset: bool = True, late: bool = False) -> Any:
    def update_scale(scale: float, good: int, found_inf: bool, interval: int) -> tuple[float, int]:
        if found_inf:
            return scale * backoff, (0 if inf_reset else good)
        good += 1
        if (good > interval) if late else (good >= interval):
            return scale * 2, (0 if growth_reset else good)
        return scale, good

    return update_scale


# -- 17: causal_attention, split_heads ------------------------------------------------------------------------------
def _attention(scale: str = "sqrt", fill: float = -math.inf, after: bool = False, dim: int = -1, diagonal: int = 1,
               transpose: bool = True, stable: bool = True, numpy: bool = False) -> Any:
    def causal_attention(q: Any, k: Any, v: Any) -> Any:
        t, d = q.shape[-2], q.shape[-1]
        s = {"sqrt": 1 / math.sqrt(d), "none": 1.0, "d": 1 / d}[scale]
        scores = (q @ (k.transpose(-2, -1) if transpose else k)) * s
        future = tg.triu(tg.ones(t, t, dtype=tg.bool), diagonal=diagonal)
        if not after:
            scores = scores.masked_fill(future, fill)
        if stable:
            weights = F.softmax(scores, dim=dim)
        else:
            e = scores.exp()
            weights = e / e.sum(dim=-1, keepdim=True)
        if after:
            weights = weights.masked_fill(future, 0.0)
        out = weights @ v
        return tg.tensor(out.numpy()) if numpy else out

    return causal_attention


def _past_masked(q: Any, k: Any, v: Any) -> Any:
    t = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return F.softmax(scores.masked_fill(tg.tril(tg.ones(t, t, dtype=tg.bool), diagonal=-1), -math.inf), -1) @ v


def _split(kind: str = "right") -> Any:
    def split_heads(x: Any, heads: int) -> Any:
        b, t, c = x.shape
        d = c // heads
        if kind == "reshape":
            return x.reshape(b, heads, t, d)
        if kind == "no transpose":
            return x.reshape(b, t, heads, d)
        if kind == "recut":
            return x.reshape(b, t, heads, d).reshape(b, heads, t, d)
        if kind == "interleaved":
            return x.reshape(b, t, d, heads).permute(0, 3, 1, 2)
        if kind == "numpy":
            return tg.tensor(x.numpy().reshape(b, t, heads, d).transpose(0, 2, 1, 3))
        return x.reshape(b, t, heads, d).transpose(1, 2)

    return split_heads


# -- 19: grid, pick_best ----------------------------------------------------------------------------------------
def _grid(kind: str = "right") -> Any:
    def grid(space: dict[str, Any]) -> list[dict[str, Any]]:
        choice = (lambda v: isinstance(v, list)) if kind == "tuple fixed" else (
            (lambda v: not isinstance(v, (int, float))) if kind == "strings" else
            (lambda v: isinstance(v, (list, tuple))))
        keys = [k for k, v in space.items() if choice(v)]
        fixed = {k: v for k, v in space.items() if k not in keys}
        if kind == "first fastest":
            combos = [tuple(reversed(c)) for c in itertools.product(*(space[k] for k in reversed(keys)))]
        elif kind == "zip":
            combos = list(zip(*(space[k] for k in keys)))
        else:
            combos = list(itertools.product(*(space[k] for k in keys)))
        out, shared = [], {}
        for combo in combos:
            config = shared if kind == "shared" else ({} if kind == "no fixed" else dict(fixed))
            if kind == "shared":
                config.update(fixed)
            config.update(zip(keys, combo))
            out.append(config)
        return out

    return grid


def _best(kind: str = "right") -> Any:
    def pick_best(trials: list[Any], mode: str) -> Any:
        if kind == "no filter":
            done = [t for t in trials if t.value is not None and not math.isnan(t.value)]
        elif kind == "not pruned":
            done = [t for t in trials if t.status != "pruned"]
        elif kind == "status only":
            done = [t for t in trials if t.status in ("finished", "nan")]
        else:
            done = [t for t in trials if t.status == "finished" and t.value is not None and math.isfinite(t.value)]
        if not done:
            return None
        sign = 1 if (mode == "min" or kind == "mode ignored") else -1
        if kind == "first in list":
            return min(done, key=lambda t: sign * t.value)
        if kind == "id":
            return min(done, key=lambda t: (sign * t.value, t.trial)).trial
        if kind == "empty raises":
            pass
        return min(done, key=lambda t: (sign * t.value, t.trial))

    return pick_best


def _sgd_all(params: Any, grads: Any, scale: float, lr: float) -> bool:
    for p, g in zip(params, grads):
        p -= lr * g / scale
    return True


_sgd_all.__name__ = "scaled_sgd_step"


def _grid_all(space: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(space, combo)) for combo in itertools.product(*space.values())]


_grid_all.__name__ = "grid"


def _best_empty_raises(trials: list[Any], mode: str) -> Any:
    sign = 1 if mode == "min" else -1
    return min((t for t in trials if t.status == "finished" and t.value is not None and math.isfinite(t.value)),
               key=lambda t: (sign * t.value, t.trial))


_best_empty_raises.__name__ = "pick_best"


RIGHT_LATE: dict[str, Any] = {"scaled_sgd_step": _sgd(), "update_scale": _update(), "causal_attention": _attention(),
                              "split_heads": _split(), "grid": _grid(), "pick_best": _best()}

WRONG_LATE: list[tuple[str, str, Any, str]] = [
    # exercise, mistake, wrong answer, the start of the hint it must get
    ("scaled_sgd_step", "not unscaled", _sgd(unscale=0.0), "the step is 2**16 times too large"),
    ("scaled_sgd_step", "multiplied", _sgd(unscale=1.0), "you multiply by the scale"),
    ("scaled_sgd_step", "rebinds", _sgd(rebind=True), "the parameters did not change: update the arrays in place"),
    ("scaled_sgd_step", "returns None", _sgd(returns=None), "you return None after a step that ran"),
    ("scaled_sgd_step", "no check", _sgd(check="none"), "the step ran with an inf in grads[0]"),
    ("scaled_sgd_step", "first only", _sgd(first_only=True), "the step ran although grads[1] holds an inf"),
    ("scaled_sgd_step", "step each", _sgd(step_each=True), "params[0] changed although the step was skipped"),
    ("scaled_sgd_step", "isinf", _sgd(check="isinf"), "a NaN gradient is not caught"),
    ("scaled_sgd_step", "None grad", _sgd_all, "scaled_sgd_step raised TypeError for finite gradients with scale "
     "2**16"),
    ("update_scale", "doubles on inf", _update(backoff=2.0), "on inf/NaN you double the scale"),
    ("update_scale", "no backoff", _update(backoff=1.0), "on inf/NaN the scale stays"),
    ("update_scale", "count not reset on inf", _update(inf_reset=False), "after the inf at step 2 the scale grows too "
                                                                          "soon"),
    ("update_scale", "count not reset on growth", _update(growth_reset=False), "after the first growth the scale "
                                                                                "doubles at every clean step"),
    ("update_scale", "one late", _update(late=True), "the scale grows one step late"),
    ("update_scale", "not a pair", lambda s, g, f, i: s / 2 if f else s, "return a pair (scale, good_steps)"),
    ("causal_attention", "no scale", _attention(scale="none"), "the scores are not scaled"),
    ("causal_attention", "1/d", _attention(scale="d"), "you divide the scores by d"),
    ("causal_attention", "mask after softmax", _attention(after=True), "the mask is applied after the softmax"),
    ("causal_attention", "fill 0", _attention(fill=0.0), "the future's scores are set to 0"),
    ("causal_attention", "no mask", _attention(diagonal=10), "no position is masked"),
    ("causal_attention", "past masked", _past_masked, "you mask the past (s < t)"),
    ("causal_attention", "wrong axis", _attention(dim=-2), "the softmax runs over the wrong axis"),
    ("causal_attention", "diagonal masked", _attention(diagonal=0), "the result for q, k of shape (5, 4) and v of "
                                                                    "shape (5, 3) holds NaN"),
    ("causal_attention", "k not transposed", _attention(transpose=False), "causal_attention raised"),
    ("causal_attention", "numpy detour", _attention(numpy=True), "the result does not require grad"),
    ("causal_attention", "unstable softmax", _attention(stable=False), "the result for scores near 1e3 is not finite"),
    ("split_heads", "reshape", _split("reshape"), "for x of shape (2, 5, 12) and heads=3: right shape, wrong numbers. "
                                                  "reshape(B, heads, T, C/heads)"),
    ("split_heads", "no transpose", _split("no transpose"), "for x of shape (2, 5, 12) and heads=3 the result has "
                                                            "shape (2, 5, 3, 4), (B, T, heads, C/heads)"),
    ("split_heads", "recut", _split("recut"), "for x of shape (2, 5, 12) and heads=3: right shape, wrong numbers. "
                                              "reshape(B, heads, T, C/heads)"),
    ("split_heads", "interleaved", _split("interleaved"), "for x of shape (2, 5, 12) and heads=3: head 0 holds "
                                                          "columns 0, heads"),
    ("split_heads", "numpy", _split("numpy"), "the result does not require grad"),
    ("grid", "first fastest", _grid("first fastest"), "the first key varies fastest"),
    ("grid", "zip", _grid("zip"), "you pair the lists up (zip)"),
    ("grid", "shared dict", _grid("shared"), "every config is the same dict object"),
    ("grid", "string taken apart", _grid("strings"), "the fixed string 'relu' of 'act' was taken apart"),
    ("grid", "fixed dropped", _grid("no fixed"), "a config misses some keys of the space"),
    ("grid", "tuple fixed", _grid("tuple fixed"), "a tuple of values is a choice too"),
    ("grid", "int iterated", _grid_all, "grid raised TypeError for space {'act': 'relu'"),
    ("pick_best", "pruned wins", _best("no filter"), "for a pruned trial with the lowest value you return pruned "
                                                     "trial 1"),
    ("pick_best", "mode ignored", _best("mode ignored"), "for mode='max' (an accuracy) you return trial 2, the "
                                                         "worst"),
    ("pick_best", "first in list", _best("first in list"), "for a tie between trials 5 and 2, listed in the order "
                                                           "they finished you return trial 5: on a tie the lower"),
    ("pick_best", "None value", _best("not pruned"), "pick_best raised TypeError for a failed trial (value None)"),
    ("pick_best", "nan status", _best("status only"), "for a failed trial (value None) and a diverged one (status "
                                                      "'nan', value nan) you return trial 1 (status 'nan')"),
    ("pick_best", "an id", _best("id"), "for six finished or pruned trials you return a int: return the winning "
                                        "TrialResult"),
    ("pick_best", "empty raises", _best_empty_raises, "pick_best raised ValueError for no finished trial"),
]


@pytest.mark.parametrize("exercise_id", sorted(RIGHT_LATE))
def test_a_right_answer_passes(exercise_id: str) -> None:
    result = run(exercise_id, RIGHT_LATE[exercise_id])
    assert result.passed, str(result)
    assert result.hints == [] and len(result.verified) >= 2 or exercise_id in ("grid", "pick_best")


@pytest.mark.parametrize(("exercise_id", "mistake", "wrong", "hint"), WRONG_LATE,
                         ids=[f"{e}-{m}" for e, m, _, _ in WRONG_LATE])
def test_a_known_mistake_gets_its_hint(exercise_id: str, mistake: str, wrong: Any, hint: str) -> None:
    assert_gets_hint(exercise_id, wrong, hint)


def test_every_exercise_here_has_a_known_mistake_and_a_right_answer() -> None:
    ids = {name[len("check_"):] for name, value in vars(checkers_late).items()
           if name.startswith("check_") and callable(value)}
    assert {e for e, _, _, _ in WRONG_LATE} == ids == set(RIGHT_LATE)


def test_the_hints_hold_no_kernel_dependent_float() -> None:
    """Every hint a wrong answer gets here is the same text whatever the CPU's kernels: no float beyond the
    configs' and the scales' own (a BLAS-dependent last digit would make the notebooks' stored outputs flaky)."""
    import re  # noqa: PLC0415

    for exercise_id, _, wrong, _ in WRONG_LATE:
        for hint in run(exercise_id, wrong).hints:
            assert not re.search(r"\d\.\d{4,}", hint), hint


def test_the_attention_reference_is_the_fused_op() -> None:
    """The checker's float64 reference agrees with F.scaled_dot_product_attention (the float32 stage uses it)."""
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 3))
    fused = F.scaled_dot_product_attention(tg.tensor(q), tg.tensor(k), tg.tensor(v), is_causal=True).numpy()
    np.testing.assert_allclose(checkers_late._attention64(q, k, v), fused, rtol=1e-12, atol=1e-12)


def test_a_check_leaves_the_random_state_as_it_was() -> None:
    tg.manual_seed(5)
    state = tg.get_rng_state()
    for exercise_id, fn in RIGHT_LATE.items():
        assert run(exercise_id, fn).passed
    assert np.array_equal(np.asarray(tg.get_rng_state(), dtype=object), np.asarray(state, dtype=object))
