"""tinygrad_nb.optim: optimizers against formulas written out in numpy (and torch.optim when installed), state dicts,
devices, versions, and the learning-rate schedulers.
"""
from __future__ import annotations

import importlib.util
import math
import warnings
from typing import Any

import numpy as np
import pytest
from helpers import to_np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinygrad_nb as tg
from tinygrad_nb import optim
from tinygrad_nb.device import Device
from tinygrad_nb.optim import lr_scheduler

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SHAPES = [(4, 3), (3,), ()]


# -- fixed data and the update formulas written out in numpy ---------------------------------------------------------
def initial_values(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in SHAPES]


def fixed_grads(steps: int, seed: int = 1) -> list[list[np.ndarray]]:
    """grads[t][i]: the gradient of parameter i at step t."""
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) for s in SHAPES] for _ in range(steps)]


def sgd_reference(p: np.ndarray, grads: list[np.ndarray], lr: float, momentum: float = 0, dampening: float = 0,
                  weight_decay: float = 0, nesterov: bool = False, maximize: bool = False) -> list[np.ndarray]:
    """The parameter after each step: PyTorch's SGD, first momentum step b = g (no dampening)."""
    out, buf = [], None
    for g in grads:
        d = -g if maximize else g
        if weight_decay:
            d = d + weight_decay * p
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
        out.append(p)
    return out


def adam_reference(p: np.ndarray, grads: list[np.ndarray], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                   eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, maximize: bool = False,
                   decoupled: bool = False) -> list[np.ndarray]:
    """Adam/AdamW, textbook form: m_hat = m / (1 - b1^t), p -= lr * m_hat / (sqrt(v_hat) + eps) (eps outside the
    bias correction, as in PyTorch)."""
    b1, b2 = betas
    m, v, vmax, out = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p), []
    for t, g in enumerate(grads, start=1):
        g = -g if maximize else g
        if weight_decay:
            if decoupled:
                p = p * (1 - lr * weight_decay)
            else:
                g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        second = vmax if amsgrad else v
        m_hat, second_hat = m / (1 - b1 ** t), second / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(second_hat) + eps)
        out.append(p)
    return out


def make_params(dev: str = "cpu", dtype: Any = np.float64, seed: int = 0) -> list[tg.Tensor]:
    return [tg.tensor(v.astype(dtype), device=dev, requires_grad=True) for v in initial_values(seed)]


def set_grads(params: list[tg.Tensor], grads: list[np.ndarray]) -> None:
    for p, g in zip(params, grads):
        p.grad = tg.tensor(g.astype(p.dtype), device=p.device)


def run(opt: optim.Optimizer, params: list[tg.Tensor], grads: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """Step through ``grads``; the parameters' values after each step."""
    history = []
    for step_grads in grads:
        set_grads(params, step_grads)
        opt.step()
        history.append([to_np(p).copy() for p in params])
    return history


SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.8, nesterov=True),
    dict(lr=0.1, weight_decay=0.01),
    dict(lr=0.1, momentum=0.9, weight_decay=0.1, nesterov=True, maximize=True),
    dict(lr=0.1, momentum=0.5, dampening=0.5, weight_decay=0.05, maximize=True),
]
ADAM_CONFIGS = [
    dict(lr=0.01),
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, amsgrad=True),
    dict(lr=0.01, maximize=True, weight_decay=0.05, amsgrad=True),
    dict(lr=0.01, betas=(0.3, 0.9)),  # 1 - beta1 >= 0.5: lerp's other branch
]
ADAMW_CONFIGS = [dict(lr=0.01), dict(lr=0.01, weight_decay=0.1, amsgrad=True), dict(lr=0.01, maximize=True)]


def _ids(configs: list[dict[str, Any]]) -> list[str]:
    return [",".join(f"{k}={v}" for k, v in c.items()) for c in configs]


# -- update formulas ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", SGD_CONFIGS, ids=_ids(SGD_CONFIGS))
def test_sgd_matches_formulas(dev: str, config: dict[str, Any]) -> None:
    params, grads = make_params(dev), fixed_grads(3)
    history = run(optim.SGD(params, **config), params, grads)
    for i, p0 in enumerate(initial_values()):
        expected = sgd_reference(p0, [g[i] for g in grads], **config)
        for t in range(3):
            np.testing.assert_allclose(history[t][i], expected[t], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("config", ADAM_CONFIGS, ids=_ids(ADAM_CONFIGS))
def test_adam_matches_formulas(dev: str, config: dict[str, Any]) -> None:
    params, grads = make_params(dev), fixed_grads(3)
    history = run(optim.Adam(params, **config), params, grads)
    for i, p0 in enumerate(initial_values()):
        expected = adam_reference(p0, [g[i] for g in grads], **config)
        for t in range(3):
            np.testing.assert_allclose(history[t][i], expected[t], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("config", ADAMW_CONFIGS, ids=_ids(ADAMW_CONFIGS))
def test_adamw_matches_formulas(dev: str, config: dict[str, Any]) -> None:
    params, grads = make_params(dev), fixed_grads(3)
    history = run(optim.AdamW(params, **config), params, grads)
    config = {"weight_decay": 1e-2, **config}  # AdamW's default
    for i, p0 in enumerate(initial_values()):
        expected = adam_reference(p0, [g[i] for g in grads], decoupled=True, **config)
        for t in range(3):
            np.testing.assert_allclose(history[t][i], expected[t], rtol=1e-10, atol=1e-12)


def test_sgd_first_momentum_step_is_the_gradient() -> None:
    (p,) = params = [tg.tensor([1.0, 2.0], requires_grad=True)]
    opt = optim.SGD(params, lr=0.5, momentum=0.9, dampening=0.5)
    set_grads(params, [np.array([2.0, 4.0])])
    opt.step()
    np.testing.assert_array_equal(to_np(opt.state[p]["momentum_buffer"]), [2.0, 4.0])  # b = g, not (1 - d) * g
    np.testing.assert_array_equal(to_np(p), [0.0, 0.0])


@SETTINGS
@given(lr=st.floats(0, 1), momentum=st.floats(0, 0.99), dampening=st.floats(0, 0.9), weight_decay=st.floats(0, 0.5),
       nesterov=st.booleans(), maximize=st.booleans(), seed=st.integers(0, 2**16))
def test_sgd_matches_formulas_for_any_hyperparameters(lr: float, momentum: float, dampening: float,
                                                     weight_decay: float, nesterov: bool, maximize: bool,
                                                     seed: int) -> None:
    if nesterov:
        momentum, dampening = max(momentum, 0.1), 0.0
    config = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                  maximize=maximize)
    params, grads = make_params(seed=seed), fixed_grads(4, seed=seed + 1)
    history = run(optim.SGD(params, **config), params, grads)
    for i, p0 in enumerate(initial_values(seed)):
        np.testing.assert_allclose(history[-1][i], sgd_reference(p0, [g[i] for g in grads], **config)[-1],
                                   rtol=1e-10, atol=1e-12)


@SETTINGS
@given(lr=st.floats(1e-4, 0.5), beta1=st.floats(0, 0.99), beta2=st.floats(0, 0.999), eps=st.floats(1e-10, 1e-2),
       weight_decay=st.floats(0, 0.5), amsgrad=st.booleans(), maximize=st.booleans(), decoupled=st.booleans(),
       seed=st.integers(0, 2**16))
def test_adam_matches_formulas_for_any_hyperparameters(lr: float, beta1: float, beta2: float, eps: float,
                                                      weight_decay: float, amsgrad: bool, maximize: bool,
                                                      decoupled: bool, seed: int) -> None:
    config = dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize)
    params, grads = make_params(seed=seed), fixed_grads(4, seed=seed + 1)
    opt = optim.AdamW(params, **config) if decoupled else optim.Adam(params, **config)
    history = run(opt, params, grads)
    for i, p0 in enumerate(initial_values(seed)):
        expected = adam_reference(p0, [g[i] for g in grads], decoupled=decoupled, **config)[-1]
        np.testing.assert_allclose(history[-1][i], expected, rtol=1e-9, atol=1e-12)


def test_param_groups_use_their_own_hyperparameters() -> None:
    a, b, c = make_params()
    opt = optim.SGD([{"params": [a, b]}, {"params": [c], "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["momentum"] == 0
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["momentum"] == 0.9
    grads = fixed_grads(3)
    history = run(opt, [a, b, c], grads)
    p0 = initial_values()
    np.testing.assert_allclose(history[-1][0], sgd_reference(p0[0], [g[0] for g in grads], lr=0.1)[-1], rtol=1e-12)
    np.testing.assert_allclose(history[-1][2], sgd_reference(p0[2], [g[2] for g in grads], lr=0.5, momentum=0.9)[-1],
                               rtol=1e-12)


def test_add_param_group_fills_defaults_and_trains_the_new_group() -> None:
    a, b, c = make_params()
    opt = optim.Adam([a], lr=0.01)
    opt.add_param_group({"params": [b, c], "lr": 0.1})
    assert opt.param_groups[1]["betas"] == (0.9, 0.999) and opt.param_groups[1]["lr"] == 0.1
    grads = fixed_grads(2)
    history = run(opt, [a, b, c], grads)
    expected = adam_reference(initial_values()[1], [g[1] for g in grads], lr=0.1)
    np.testing.assert_allclose(history[-1][1], expected[-1], rtol=1e-10)


def test_params_without_grad_are_skipped() -> None:
    a, b, _ = params = make_params()
    for opt in (optim.SGD(params, lr=0.1, momentum=0.9), optim.Adam(params, lr=0.1)):
        a.grad, b.grad = tg.tensor(np.ones(a.shape)), None
        before, version = to_np(b).copy(), b.version
        opt.step()
        np.testing.assert_array_equal(to_np(b), before)
        assert b.version == version and b not in opt.state


def test_step_with_closure_computes_the_loss_and_gradients() -> None:
    w = tg.tensor([3.0, -2.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.25)

    def closure() -> tg.Tensor:
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    with tg.no_grad():  # step re-enables grad for the closure, as in PyTorch
        loss = opt.step(closure)
    assert float(loss) == 13.0
    np.testing.assert_allclose(to_np(w), [1.5, -1.0])  # w - 0.25 * 2w


def test_training_loop_reduces_the_loss() -> None:
    rng = np.random.default_rng(0)
    x = tg.tensor(rng.standard_normal((64, 3)))
    y = x @ tg.tensor([[1.0], [-2.0], [0.5]])
    w, b = tg.zeros(3, 1, dtype=tg.float64, requires_grad=True), tg.zeros(1, dtype=tg.float64, requires_grad=True)
    opt = optim.AdamW([w, b], lr=0.1, weight_decay=0.0)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=100)
    losses = []
    for _ in range(100):
        loss = ((x @ w + b - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss))
    assert losses[-1] < 1e-3 * losses[0]
    np.testing.assert_allclose(to_np(w).ravel(), [1.0, -2.0, 0.5], atol=0.05)


def test_works_with_nn_parameters_when_available() -> None:
    nn = pytest.importorskip("tinygrad_nb.nn")
    if not hasattr(nn, "Linear"):
        pytest.skip("tinygrad_nb.nn has no Linear yet")
    layer = nn.Linear(3, 2)
    opt = optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    out = layer(tg.randn(5, 3)).sum()
    out.backward()
    before = [to_np(p).copy() for p in layer.parameters()]
    opt.step()
    assert all(not np.array_equal(b, to_np(p)) for b, p in zip(before, layer.parameters()))


# -- against torch.optim ---------------------------------------------------------------------------------------------
def _torch_run(torch: Any, cls_name: str, config: dict[str, Any], grads: list[list[np.ndarray]]
               ) -> tuple[list[list[np.ndarray]], Any]:
    params = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in initial_values()]
    opt = getattr(torch.optim, cls_name)(params, **config)
    history = []
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        history.append([p.detach().numpy().copy() for p in params])
    return history, opt


TORCH_CASES = ([("SGD", c) for c in SGD_CONFIGS] + [("Adam", c) for c in ADAM_CONFIGS]
               + [("AdamW", c) for c in ADAMW_CONFIGS])


@pytest.mark.parametrize(("cls_name", "config"), TORCH_CASES,
                         ids=[f"{n}:{i}" for n, i in zip([c[0] for c in TORCH_CASES], _ids([c[1] for c in TORCH_CASES]))])
def test_matches_torch_for_five_steps(cls_name: str, config: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    grads = fixed_grads(5)
    expected, torch_opt = _torch_run(torch, cls_name, config, grads)
    params = make_params()
    opt = getattr(optim, cls_name)(params, **config)
    history = run(opt, params, grads)
    for t in range(5):  # agreement is to about one ulp (torch's vectorized kernels use fused multiply-adds)
        for ours, theirs in zip(history[t], expected[t]):
            np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
    # the state matches too, under the same names
    ours_sd, theirs_sd = opt.state_dict()["state"], torch_opt.state_dict()["state"]
    assert ours_sd.keys() == theirs_sd.keys()
    for index, entry in theirs_sd.items():
        for key, value in entry.items():
            if value is None:  # torch may keep a None momentum buffer
                continue
            np.testing.assert_allclose(to_np(ours_sd[index][key]), value.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
@SETTINGS
@given(lr=st.floats(1e-4, 0.5), beta1=st.floats(0, 0.99), beta2=st.floats(0, 0.999),
       weight_decay=st.floats(0, 0.5), amsgrad=st.booleans(), maximize=st.booleans(), decoupled=st.booleans())
def test_adam_matches_torch_for_any_hyperparameters(lr: float, beta1: float, beta2: float, weight_decay: float,
                                                   amsgrad: bool, maximize: bool, decoupled: bool) -> None:
    import torch  # noqa: PLC0415 - optional

    config = dict(lr=lr, betas=(beta1, beta2), weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize)
    cls_name = "AdamW" if decoupled else "Adam"
    grads = fixed_grads(5)
    expected, _ = _torch_run(torch, cls_name, config, grads)
    params = make_params()
    history = run(getattr(optim, cls_name)(params, **config), params, grads)
    for ours, theirs in zip(history[-1], expected[-1]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


# -- state dicts -------------------------------------------------------------------------------------------------
ROUND_TRIP = ([(optim.SGD, c) for c in SGD_CONFIGS[1:4]] + [(optim.Adam, c) for c in ADAM_CONFIGS[3:5]]
              + [(optim.AdamW, ADAMW_CONFIGS[1])])


@pytest.mark.parametrize(("cls", "config"), ROUND_TRIP, ids=[f"{c.__name__}:{i}" for (c, _), i in
                                                              zip(ROUND_TRIP, _ids([c for _, c in ROUND_TRIP]))])
def test_state_dict_round_trip_continues_byte_for_byte(cls: type[optim.Optimizer], config: dict[str, Any]) -> None:
    grads = fixed_grads(5)
    params = make_params()
    uninterrupted = run(cls(params, **config), params, grads)

    params = make_params()
    opt = cls(params, **config)
    run(opt, params, grads[:2])
    saved = opt.state_dict()
    saved_values = [to_np(p).copy() for p in params]

    fresh = [tg.tensor(v.copy(), requires_grad=True) for v in saved_values]
    resumed_opt = cls(fresh, lr=123.0)  # hyperparameters come from the state dict
    resumed_opt.load_state_dict(saved)
    assert resumed_opt.param_groups[0]["lr"] == config["lr"]
    resumed = run(resumed_opt, fresh, grads[2:])
    for t in range(3):
        for ours, theirs in zip(resumed[t], uninterrupted[t + 2]):
            assert ours.tobytes() == theirs.tobytes()


def test_state_dict_layout_and_copies() -> None:
    a, b, c = params = make_params()
    opt = optim.SGD([{"params": [a, b]}, {"params": [c], "lr": 0.5}], lr=0.1, momentum=0.9)
    run(opt, params, fixed_grads(1))
    sd = opt.state_dict()
    assert sd.keys() == {"state", "param_groups"}
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sd["param_groups"][1]["lr"] == 0.5 and sd["param_groups"][0]["momentum"] == 0.9
    assert sorted(sd["state"]) == [0, 1, 2]
    buf = sd["state"][0]["momentum_buffer"]
    assert isinstance(buf, tg.Tensor) and buf is not opt.state[a]["momentum_buffer"]
    saved = to_np(buf).copy()
    run(opt, params, fixed_grads(2, seed=7))
    np.testing.assert_array_equal(to_np(buf), saved)  # later steps leave the saved dict alone
    # loading copies too: stepping the loaded optimizer does not write into the dict it came from
    other = optim.SGD([{"params": make_params()[:2]}, {"params": make_params()[2:]}], lr=0.1, momentum=0.9)
    other.load_state_dict(sd)
    run(other, other.param_groups[0]["params"] + other.param_groups[1]["params"], fixed_grads(1))
    np.testing.assert_array_equal(to_np(buf), saved)


def test_state_dict_keys_may_be_strings() -> None:
    params = make_params()
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    run(opt, params, fixed_grads(1))
    sd = opt.state_dict()
    sd["state"] = {str(k): v for k, v in sd["state"].items()}  # as after a JSON round trip
    fresh = make_params()
    other = optim.SGD(fresh, lr=0.1, momentum=0.9)
    other.load_state_dict(sd)
    np.testing.assert_array_equal(to_np(other.state[fresh[0]]["momentum_buffer"]),
                                  to_np(opt.state[params[0]]["momentum_buffer"]))


def test_load_state_dict_errors() -> None:
    a, b, c = params = make_params()
    opt = optim.Adam(params)
    run(opt, params, fixed_grads(1))
    sd = opt.state_dict()
    with pytest.raises(ValueError, match=r"different number of parameter groups: 1 in the state dict, 2 in this"):
        optim.Adam([{"params": [a]}, {"params": [b, c]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"doesn't match the size of optimizer's group: group 0 has 3 parameters in "
                                         r"the state dict but 2 in this optimizer"):
        optim.Adam([a, b]).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"expects a dict with 'state' and 'param_groups'"):
        optim.Adam(params).load_state_dict({"state": {}})
    wrong_shape = optim.Adam([a, c, b]).state_dict()
    wrong_shape["state"] = sd["state"]
    with pytest.raises(ValueError, match=r"state 'exp_avg' of parameter 1 has shape \(3,\), but the parameter has "
                                         r"shape \(\)"):
        optim.Adam([a, c, b]).load_state_dict(wrong_shape)
    unknown = {"state": {7: sd["state"][0]}, "param_groups": sd["param_groups"]}
    with pytest.raises(ValueError, match=r"state for parameter 7, which is in none of its parameter groups"):
        optim.Adam(params).load_state_dict(unknown)
    # a failed load leaves the optimizer as it was
    target = optim.Adam(params, lr=0.5)
    with pytest.raises(ValueError):
        target.load_state_dict(unknown)
    assert target.param_groups[0]["lr"] == 0.5 and not target.state


def test_state_follows_parameters_to_another_device() -> None:
    params = make_params("cpu")
    opt = optim.Adam(params, lr=0.01, amsgrad=True)
    grads = fixed_grads(4)
    run(opt, params, grads[:2])
    sd = opt.state_dict()

    moved = [tg.tensor(to_np(p).astype(np.float32), device="cpu:sim", requires_grad=True) for p in params]
    other = optim.Adam(moved, lr=0.01, amsgrad=True)
    other.load_state_dict(sd)
    for p in moved:
        state = other.state[p]
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            assert state[key].device == "cpu:sim" and state[key].dtype == np.float32, key
        assert state["step"].device == "cpu" and state["step"].dtype == np.float32 and float(state["step"]) == 2.0
    history = run(other, moved, grads[2:])
    expected = run(opt, params, grads[2:])
    for ours, theirs in zip(history[-1], expected[-1]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    assert all(p.device == "cpu:sim" for p in moved)


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), lambda ps: optim.Adam(ps)],
                         ids=["sgd_momentum", "adam"])
def test_state_follows_a_parameter_moved_in_place(make: Any) -> None:
    """A parameter whose array moves to another device or dtype (as nn.Module.to does) takes its state along."""
    (p,) = params = [tg.tensor([1.0, 2.0], requires_grad=True)]
    opt = make(params)
    run(opt, params, [[np.ones(2)]])
    sim = Device("cpu:sim")
    moved = p.detach().to(device=sim, dtype=tg.float32)
    p.data, p.device = moved.data, moved.device
    run(opt, params, [[np.ones(2)]])
    for key, value in opt.state[p].items():
        if key != "step":
            assert value.device is sim and value.dtype == np.float32, key


def test_state_follows_an_nn_module_moved_with_to() -> None:
    nn = pytest.importorskip("tinygrad_nb.nn")
    if not hasattr(nn, "Linear") or not hasattr(nn.Module, "to"):
        pytest.skip("tinygrad_nb.nn has no Linear/Module.to yet")
    model = nn.Linear(3, 2)
    opt = optim.AdamW(model.parameters(), lr=0.01)
    model(tg.randn(4, 3)).sum().backward()
    opt.step()
    model.to("cpu:sim").to(tg.float64)
    opt.zero_grad()
    model(tg.randn(4, 3, dtype=tg.float64, device="cpu:sim")).sum().backward()
    opt.step()
    for p in model.parameters():
        assert opt.state[p]["exp_avg"].device == "cpu:sim" and opt.state[p]["exp_avg"].dtype == np.float64


# -- versions and zero_grad -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1), lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: optim.Adam(ps, amsgrad=True), lambda ps: optim.AdamW(ps)],
                         ids=["sgd", "sgd_momentum", "adam", "adamw"])
def test_step_bumps_versions(dev: str, make: Any) -> None:
    params = make_params(dev)
    opt = make(params)
    set_grads(params, fixed_grads(1)[0])
    opt.step()
    before = [p.version for p in params]
    state_before = {id(t): t.version for s in opt.state.values() for t in s.values()}
    opt.step()
    assert [p.version for p in params] == [v + 1 for v in before]
    for s in opt.state.values():
        for t in s.values():
            assert t.version == state_before[id(t)] + 1


def test_zero_grad(dev: str) -> None:
    params = make_params(dev)
    opt = optim.SGD(params, lr=0.1)
    set_grads(params, fixed_grads(1)[0])
    grads = [p.grad for p in params]
    opt.zero_grad(set_to_none=False)
    for p, g in zip(params, grads):
        assert p.grad is g and not to_np(g).any()
        assert g.version == 1
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    opt.zero_grad()  # nothing to do, no error
    opt.step()  # no gradients: nothing changes
    assert all(p.version == 0 for p in params)


# -- constructor validation --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("make", "message"), [
    (lambda p: optim.SGD(p, lr=-0.1), "Invalid learning rate: -0.1"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-1), "Invalid momentum value: -1"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1e-3), "Invalid weight_decay value: -0.001"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov momentum requires"),
    (lambda p: optim.Adam(p, lr=-1), "Invalid learning rate: -1"),
    (lambda p: optim.Adam(p, eps=-1e-8), "Invalid epsilon value: -1e-08"),
    (lambda p: optim.Adam(p, betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    (lambda p: optim.AdamW(p, betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
    (lambda p: optim.AdamW(p, weight_decay=-0.5), "Invalid weight_decay value: -0.5"),
    (lambda p: optim.SGD([], lr=0.1), "optimizer got an empty parameter list"),
    (lambda p: optim.SGD([p[0], p[1], p[0]], lr=0.1), r"same parameter twice in one parameter group \(positions 0 "
                                                       r"and 2"),
    (lambda p: optim.SGD([{"params": p[:2]}, {"params": p[1:]}], lr=0.1),
     "some parameters appear in more than one parameter group"),
    (lambda p: optim.SGD([p[0] * 2], lr=0.1), "can't optimize a non-leaf Tensor"),
    (lambda p: optim.SGD([{"lr": 0.1}]), "param_group must have a 'params' entry"),
])
def test_invalid_arguments_raise_value_error(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(make_params())


def test_invalid_argument_types_raise_type_error() -> None:
    p = make_params()
    with pytest.raises(TypeError, match="should be an iterable of Tensors or dicts, but got a Tensor"):
        optim.SGD(p[0], lr=0.1)
    with pytest.raises(TypeError, match="optimizer can only optimize Tensors, but one of the params is numpy.ndarray"):
        optim.SGD([np.ones(3)], lr=0.1)
    with pytest.raises(TypeError, match="ordering of tensors in sets will change between runs"):
        optim.SGD({p[0]}, lr=0.1)
    with pytest.raises(TypeError, match="param_group must be a dict"):
        optim.SGD(p[:1], lr=0.1).add_param_group([p[1]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Invalid learning rate: -2"):
        optim.SGD(p[:1], lr=0.1).add_param_group({"params": [p[1]], "lr": -2})


# -- learning-rate schedulers ------------------------------------------------------------------------------------
BASE_LRS = [0.1, 0.02]


def _optimizer(lrs: list[float] = BASE_LRS) -> optim.SGD:
    return optim.SGD([{"params": [tg.zeros(1, requires_grad=True)], "lr": lr} for lr in lrs], lr=lrs[0])


def _lrs(sched: lr_scheduler.LRScheduler, epochs: int) -> list[list[float]]:
    """The lrs in effect at epochs 0..epochs-1 (read before each step)."""
    out = []
    for _ in range(epochs):
        out.append([g["lr"] for g in sched.optimizer.param_groups])
        sched.optimizer.step()
        sched.step()
    return out


class Warmup:
    """A callable object: its __dict__ is saved by LambdaLR.state_dict()."""

    def __init__(self, steps: int):
        self.steps = steps

    def __call__(self, epoch: int) -> float:
        return min(1.0, (epoch + 1) / self.steps)


SCHEDULERS: dict[str, tuple[Any, Any]] = {
    # name: (make(module, optimizer) -> scheduler, closed form (base_lr, epoch) -> lr); module is ours or torch's
    "StepLR": (lambda m, o: m.StepLR(o, step_size=3, gamma=0.5), lambda b, t: b * 0.5 ** (t // 3)),
    "MultiStepLR": (lambda m, o: m.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.1),
                    lambda b, t: b * 0.1 ** sum(m <= t for m in [2, 5, 5, 9])),
    "ExponentialLR": (lambda m, o: m.ExponentialLR(o, gamma=0.9), lambda b, t: b * 0.9 ** t),
    "CosineAnnealingLR": (lambda m, o: m.CosineAnnealingLR(o, T_max=7, eta_min=0.001),
                          lambda b, t: 0.001 + (b - 0.001) * (1 + math.cos(math.pi * t / 7)) / 2),
    "LambdaLR": (lambda m, o: m.LambdaLR(o, lambda t: 0.95 ** t + 0.01), lambda b, t: b * (0.95 ** t + 0.01)),
    "LambdaLR-list": (lambda m, o: m.LambdaLR(o, [Warmup(4), lambda t: 1 / (t + 1)]), None),
    "LinearLR": (lambda m, o: m.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=4),
                 lambda b, t: b * (0.25 + 0.75 * min(t, 4) / 4)),
    "LinearLR-decay": (lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=6),
                       lambda b, t: b * (1.0 - 0.9 * min(t, 6) / 6)),
}


@pytest.mark.parametrize("name", [n for n, (_, f) in SCHEDULERS.items() if f is not None])
def test_scheduler_matches_closed_form(name: str) -> None:
    make, closed = SCHEDULERS[name]
    lrs = _lrs(make(lr_scheduler, _optimizer()), 30)
    for t, row in enumerate(lrs):
        for base, lr in zip(BASE_LRS, row):
            assert lr == pytest.approx(closed(base, t), rel=1e-12, abs=1e-15), (t, base)


def test_lambda_lr_with_one_function_per_group() -> None:
    lrs = _lrs(SCHEDULERS["LambdaLR-list"][0](lr_scheduler, _optimizer()), 6)
    assert lrs == [[0.1 * min(1.0, (t + 1) / 4), 0.02 * (1 / (t + 1))] for t in range(6)]


def test_cosine_recursive_agrees_with_closed_form_over_several_cycles() -> None:
    sched = lr_scheduler.CosineAnnealingLR(_optimizer(), T_max=10, eta_min=1e-4)
    for _ in range(95):  # past T_max the cosine keeps going (the lr rises again)
        sched.optimizer.step()
        sched.step()
        closed = sched._get_closed_form_lr()
        for lr, expected in zip(sched.get_last_lr(), closed):
            assert abs(lr - expected) < 1e-12


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_matches_torch(name: str) -> None:
    torch = pytest.importorskip("torch")
    make = SCHEDULERS[name][0]
    torch_opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in BASE_LRS])
    torch_sched = make(torch.optim.lr_scheduler, torch_opt)
    ours = _lrs(make(lr_scheduler, _optimizer()), 25)
    theirs = []
    for _ in range(25):
        theirs.append([g["lr"] for g in torch_opt.param_groups])
        torch_opt.step()
        torch_sched.step()
    for a, b in zip(ours, theirs):
        assert a == pytest.approx(b, rel=1e-14, abs=1e-16)


def test_chained_schedulers_match_torch() -> None:
    torch = pytest.importorskip("torch")
    ours_opt = _optimizer()
    ours = [lr_scheduler.LinearLR(ours_opt, start_factor=0.5, total_iters=3),
            lr_scheduler.ExponentialLR(ours_opt, gamma=0.9)]
    torch_opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in BASE_LRS])
    theirs = [torch.optim.lr_scheduler.LinearLR(torch_opt, start_factor=0.5, total_iters=3),
              torch.optim.lr_scheduler.ExponentialLR(torch_opt, gamma=0.9)]
    for _ in range(8):
        assert [g["lr"] for g in ours_opt.param_groups] == pytest.approx([g["lr"] for g in torch_opt.param_groups],
                                                                          rel=1e-14)
        ours_opt.step()
        torch_opt.step()
        for s in ours + theirs:
            s.step()


def test_scheduler_sets_initial_lr_and_base_lrs() -> None:
    opt = _optimizer()
    sched = lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=2)
    assert [g["initial_lr"] for g in opt.param_groups] == BASE_LRS
    assert sched.base_lrs == BASE_LRS and sched.last_epoch == 0
    assert sched.get_last_lr() == [0.05, 0.01] == [g["lr"] for g in opt.param_groups]
    with pytest.raises(KeyError, match=r"'initial_lr' is not specified in param_groups\[0\]"):
        lr_scheduler.StepLR(_optimizer(), step_size=2, last_epoch=3)
    with pytest.raises(TypeError, match="list is not an Optimizer"):
        lr_scheduler.StepLR([], step_size=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
        lr_scheduler.LambdaLR(_optimizer(), [lambda t: 1.0])


def test_scheduler_warns_when_stepped_before_the_optimizer() -> None:
    sched = lr_scheduler.StepLR(_optimizer(), step_size=2)
    with pytest.warns(UserWarning, match=r"lr_scheduler.step\(\)` before `optimizer.step\(\)"):
        sched.step()
    sched = lr_scheduler.StepLR(_optimizer(), step_size=2)
    sched.optimizer.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_state_dict_round_trip(name: str) -> None:
    make = SCHEDULERS[name][0]
    opt = _optimizer()
    sched = make(lr_scheduler, opt)
    _lrs(sched, 5)
    sd, opt_sd = sched.state_dict(), opt.state_dict()
    assert "optimizer" not in sd and not any(callable(v) and not isinstance(v, type) for v in sd.values())
    expected = _lrs(sched, 10)

    fresh_opt = _optimizer([1.0, 1.0])
    fresh = make(lr_scheduler, fresh_opt)  # construct the scheduler, then load the optimizer and the scheduler (PyTorch's order)
    fresh_opt.load_state_dict(opt_sd)
    fresh.load_state_dict(sd)
    assert fresh.last_epoch == 5 and fresh.base_lrs == BASE_LRS
    assert _lrs(fresh, 10) == expected


def test_lambda_lr_state_dict_saves_callable_objects_not_functions() -> None:
    opt = _optimizer()
    warmup = Warmup(4)
    sched = lr_scheduler.LambdaLR(opt, [warmup, lambda t: 1.0])
    sd = sched.state_dict()
    assert sd["lr_lambdas"] == [{"steps": 4}, None]
    sd["lr_lambdas"][0]["steps"] = 8  # the saved dict is a copy
    assert warmup.steps == 4
    other = Warmup(1)
    lr_scheduler.LambdaLR(_optimizer(), [other, lambda t: 1.0]).load_state_dict(sd)
    assert other.steps == 8


def test_scheduler_step_with_epoch_uses_the_closed_form() -> None:
    sched = lr_scheduler.StepLR(_optimizer(), step_size=3, gamma=0.5)
    sched.optimizer.step()
    with pytest.warns(UserWarning, match="epoch parameter in `scheduler.step\\(\\)` is deprecated"):
        sched.step(7)
    assert sched.last_epoch == 7 and sched.get_last_lr() == [0.1 * 0.25, 0.02 * 0.25]


def test_scheduler_argument_errors() -> None:
    with pytest.raises(ValueError, match="Starting multiplicative factor expected to be greater than 0"):
        lr_scheduler.LinearLR(_optimizer(), start_factor=0)
    with pytest.raises(ValueError, match="Ending multiplicative factor expected to be between 0 and 1"):
        lr_scheduler.LinearLR(_optimizer(), end_factor=1.5)
    with pytest.raises(ValueError, match="step_size must be a positive integer, got 0"):
        lr_scheduler.StepLR(_optimizer(), step_size=0)
    with pytest.raises(ValueError, match="T_max must be positive, got 0"):
        lr_scheduler.CosineAnnealingLR(_optimizer(), T_max=0)


def test_state_dict_copy_false_shares_the_live_state() -> None:
    p = tg.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = tg.tensor([1.0, 1.0])
    opt.step()
    live = opt.state[p]["momentum_buffer"]
    assert opt.state_dict(copy=False)["state"][0]["momentum_buffer"] is live
    copied = opt.state_dict()["state"][0]["momentum_buffer"]
    assert copied is not live and not np.shares_memory(copied.numpy(), live.numpy())
    assert opt.state_dict(copy=False)["param_groups"] == opt.state_dict()["param_groups"]


@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=0.1, momentum=0.9), lambda p: optim.Adam(p, lr=0.1),
                                  lambda p: optim.AdamW(p, lr=0.1)], ids=["sgd", "adam", "adamw"])
def test_a_step_that_makes_nan_is_silent_like_pytorch(make: Any) -> None:
    w = tg.tensor([1.0, 2.0], requires_grad=True)
    opt = make([w])
    w.grad = tg.tensor([float("nan"), float("inf")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning would fail the test
        opt.step()
        opt.step()
    assert not np.isfinite(w.numpy()).any()
