"""Issue 21's layers: activation modules, Conv1d/Conv3d/ConvTranspose1d/2d, pools, Upsample, LSTM/GRU/RNN,
MultiheadAttention, the Transformer layers and nn.utils.

Each is checked three ways: values against a formula or hand-computed result written here, gradients against finite
differences (gradcheck in float64), and, when PyTorch is installed, outputs and state-dict keys against PyTorch with
the same weights loaded through ``load_state_dict``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from helpers import t64

import tinygrad_nb as tg
from tinygrad_nb import nn


def _torch():
    return pytest.importorskip("torch")


def call_with(module: nn.Module, params: dict[str, tg.Tensor], *args: Any) -> Any:
    """Run ``module`` with some parameters temporarily replaced (so gradcheck can perturb them)."""
    saved = {}
    for name, value in params.items():
        owner_name, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        saved[name] = (owner, leaf, owner._parameters[leaf])
        owner._parameters[leaf] = value
    try:
        return module(*args)
    finally:
        for owner, leaf, original in saved.values():
            owner._parameters[leaf] = original


def gradcheck_module(module: nn.Module, inputs: Sequence[tg.Tensor], pick: Any = None) -> bool:
    """gradcheck of a float64 module with respect to its inputs and every parameter (``pick`` selects the output
    to check when the module returns a tuple)."""
    names = [name for name, _ in module.named_parameters()]
    values = [t64(p.numpy()) for _, p in module.named_parameters()]
    n = len(inputs)

    def fn(*args: tg.Tensor) -> tg.Tensor:
        out = call_with(module, dict(zip(names, args[n:])), *args[:n])
        return pick(out) if pick is not None else out

    return tg.gradcheck(fn, list(inputs) + values)


def copy_from_torch(theirs: Any, ours: nn.Module) -> None:
    """Load a torch module's state dict into ours, after checking that the keys (in order) and shapes match."""
    state = theirs.state_dict()
    assert list(state) == list(ours.state_dict())
    assert [tuple(v.shape) for v in state.values()] == [v.shape for v in ours.state_dict().values()]
    ours.load_state_dict({k: tg.tensor(v.detach().cpu().numpy()) for k, v in state.items()})


def close(ours: tg.Tensor, theirs: Any, atol: float = 1e-10) -> None:
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-7, atol=atol)


# -- activation modules ------------------------------------------------------------------------------------------
SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0, x)


ACTIVATIONS = {  # name: (module factory for a module namespace m, numpy formula)
    "SiLU": (lambda m: m.SiLU(), lambda x: x / (1 + np.exp(-x))),
    "Mish": (lambda m: m.Mish(), lambda x: x * np.tanh(_softplus(x))),
    "LeakyReLU": (lambda m: m.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    "ReLU6": (lambda m: m.ReLU6(), lambda x: np.clip(x, 0, 6)),
    "Hardswish": (lambda m: m.Hardswish(), lambda x: x * np.clip(x + 3, 0, 6) / 6),
    "Hardsigmoid": (lambda m: m.Hardsigmoid(), lambda x: np.clip(x / 6 + 0.5, 0, 1)),
    "Hardtanh": (lambda m: m.Hardtanh(-0.5, 2.0), lambda x: np.clip(x, -0.5, 2.0)),
    "ELU": (lambda m: m.ELU(0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(x))),
    "CELU": (lambda m: m.CELU(2.0), lambda x: np.where(x > 0, x, 2.0 * np.expm1(x / 2.0))),
    "SELU": (lambda m: m.SELU(), lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x))),
    "Softplus": (lambda m: m.Softplus(beta=2.0, threshold=5.0),
                 lambda x: np.where(2 * x > 5, x, _softplus(2 * x) / 2)),
    "LogSigmoid": (lambda m: m.LogSigmoid(), lambda x: -_softplus(-x)),
    "Softsign": (lambda m: m.Softsign(), lambda x: x / (1 + np.abs(x))),
    "Tanhshrink": (lambda m: m.Tanhshrink(), lambda x: x - np.tanh(x)),
    "Hardshrink": (lambda m: m.Hardshrink(0.6), lambda x: np.where(np.abs(x) > 0.6, x, 0)),
    "Softshrink": (lambda m: m.Softshrink(0.6), lambda x: np.where(x > 0.6, x - 0.6, np.where(x < -0.6, x + 0.6, 0))),
    "Threshold": (lambda m: m.Threshold(0.3, -2.0), lambda x: np.where(x > 0.3, x, -2.0)),
    "GLU": (lambda m: m.GLU(-1), lambda x: x[..., :3] / (1 + np.exp(-x[..., 3:]))),
    "Softmin": (lambda m: m.Softmin(-1), lambda x: np.exp(-x) / np.exp(-x).sum(-1, keepdims=True)),
    "PReLU": (lambda m: m.PReLU(), lambda x: np.where(x > 0, x, 0.25 * x)),
}


def _activation_input() -> np.ndarray:
    """(4, 6) values in [-4, 4], kept away from the kinks (0, +-0.6, 0.3, -3, 3, -0.5, 2, 2.5)."""
    x = np.random.default_rng(1).uniform(-4, 4, size=(4, 6))
    kinks = np.array([0.0, 0.6, -0.6, 0.3, -3.0, 3.0, -0.5, 2.0, 2.5, 6.0])
    near = np.abs(x[..., None] - kinks).min(-1) < 0.05
    return np.where(near, x + 0.1, x)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_module_values_and_gradients(name: str) -> None:
    make, formula = ACTIVATIONS[name]
    x = _activation_input()
    module = make(nn).double()
    np.testing.assert_allclose(module(t64(x)).numpy(), formula(x), rtol=1e-9, atol=1e-12)
    assert gradcheck_module(module, [t64(x)])


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_module_vs_torch(name: str) -> None:
    torch = _torch()
    make, _ = ACTIVATIONS[name]
    x = _activation_input()
    ours, theirs = make(nn).double(), make(torch.nn).double()
    assert repr(ours) == repr(theirs)
    copy_from_torch(theirs, ours)
    close(ours(t64(x)), theirs(torch.tensor(x)))


def test_prelu_per_channel() -> None:
    m = nn.PReLU(3, init=0.1).double()
    assert m.weight.shape == (3,) and m.weight.numpy().tolist() == [float(np.float32(0.1))] * 3  # made in float32
    with tg.no_grad():
        m.weight.copy_(tg.tensor([0.1, 0.2, 0.3]))
    x = np.random.default_rng(2).normal(size=(2, 3, 4))
    np.testing.assert_allclose(m(t64(x)).numpy(), np.where(x > 0, x, np.array([0.1, 0.2, 0.3])[:, None] * x))
    assert gradcheck_module(m, [t64(x)])


def test_hardtanh_refuses_inverted_bounds() -> None:
    with pytest.raises(ValueError, match=r"min_val \(2.0\) cannot be greater than max_val \(1.0\)"):
        nn.Hardtanh(2.0, 1.0)


# -- convolutions ----------------------------------------------------------------------------------------------------
def _conv1d_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: int, dilation: int,
                      groups: int) -> np.ndarray:
    """Direct loops: out[n, o, t] = b[o] + sum_{c, k} w[o, c, k] x[n, g c, t stride + k dilation - padding]."""
    n, cin, length = x.shape
    cout, cg, k = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding)))
    out_len = (length + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    out = np.zeros((n, cout, out_len))
    og = cout // groups
    for o in range(cout):
        g = o // og
        for t in range(out_len):
            window = xp[:, g * cg:(g + 1) * cg, t * stride: t * stride + dilation * (k - 1) + 1: dilation]
            out[:, o, t] = (window * w[o]).sum(axis=(1, 2)) + b[o]
    return out


def test_conv1d_values_and_gradients() -> None:
    rng = np.random.default_rng(3)
    m = nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2).double()
    x = rng.normal(size=(2, 4, 9))
    want = _conv1d_reference(x, m.weight.numpy(), m.bias.numpy(), 2, 1, 2, 2)
    np.testing.assert_allclose(m(t64(x)).numpy(), want, rtol=1e-10, atol=1e-12)
    assert m(t64(x[0])).shape == (6, 4)  # unbatched (C, L)
    assert gradcheck_module(nn.Conv1d(2, 3, 2, padding=1).double(), [t64(rng.normal(size=(1, 2, 5)))])


def test_conv_transpose2d_is_the_adjoint_of_conv2d() -> None:
    """<conv_transpose2d(y, W), x> = <y, conv2d(x, W)> for every x, y: the defining property, checked exactly."""
    rng = np.random.default_rng(4)
    t = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, bias=False).double()
    y = rng.normal(size=(1, 3, 4, 4))
    out = t(t64(y))
    assert out.shape == (1, 2, 7, 7)  # (4 - 1) 2 - 2 + 3 = 7
    x = rng.normal(size=out.shape)
    conv = tg.nn.functional.conv2d(t64(x), t.weight, None, 2, 1)  # same weight read as (C_out=3, C_in=2, 3, 3)
    assert math.isclose(float((out * t64(x)).sum().item()), float((conv * t64(y)).sum().item()), rel_tol=1e-12)
    assert gradcheck_module(nn.ConvTranspose2d(2, 2, 2, stride=2).double(), [t64(rng.normal(size=(1, 2, 2, 3)))])


def test_conv_transpose2d_output_size() -> None:
    t = nn.ConvTranspose2d(2, 2, 3, stride=2, padding=1)
    x = tg.randn(1, 2, 4, 4)
    assert t(x).shape == (1, 2, 7, 7)
    assert t(x, output_size=(8, 8)).shape == (1, 2, 8, 8)
    assert t(x, output_size=(1, 2, 8, 7)).shape == (1, 2, 8, 7)
    with pytest.raises(ValueError, match=r"requested an output size of \[9, 9\], but valid sizes range from 7 to 8"):
        t(x, output_size=(9, 9))


def test_conv_argument_errors() -> None:
    with pytest.raises(ValueError, match=r"Conv1d: in_channels \(3\) and out_channels \(4\) must both be divisible"):
        nn.Conv1d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        nn.Conv1d(2, 2, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="Only 'zeros' padding mode is supported for ConvTranspose2d"):
        nn.ConvTranspose2d(2, 2, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        nn.Conv1d(2, 2, 3, stride=2, padding="same")


CONVS = {  # name: (constructor args, input shape, keyword args)
    "Conv1d": ((4, 6, 3), (2, 4, 9), dict(stride=2, padding=1, groups=2)),
    "Conv1d reflect": ((2, 3, 3), (2, 2, 7), dict(padding=2, padding_mode="reflect")),
    "Conv1d circular same": ((2, 3, 4), (2, 2, 7), dict(padding="same", padding_mode="circular")),
    "Conv3d": ((2, 4, 2), (1, 2, 4, 5, 3), dict(stride=(1, 2, 1), padding=1, dilation=(2, 1, 1))),
    "ConvTranspose1d": ((4, 6, 3), (2, 4, 5), dict(stride=2, padding=1, output_padding=1, groups=2)),
    "ConvTranspose2d": ((3, 4, (3, 2)), (2, 3, 4, 5), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))),
}


@pytest.mark.parametrize("name", CONVS)
def test_conv_modules_vs_torch(name: str) -> None:
    torch = _torch()
    args, shape, kwargs = CONVS[name]
    cls = name.split()[0]
    theirs = getattr(torch.nn, cls)(*args, **kwargs).double()
    ours = getattr(nn, cls)(*args, **kwargs).double()
    assert repr(ours) == repr(theirs)
    copy_from_torch(theirs, ours)
    x = np.random.default_rng(5).normal(size=shape)
    close(ours(t64(x)), theirs(torch.tensor(x)))


# -- pooling and upsampling ------------------------------------------------------------------------------------------
def test_pool_module_values() -> None:
    x = t64(np.arange(16.0).reshape(1, 1, 4, 4))
    assert nn.AvgPool2d(2)(x).numpy().tolist() == [[[[2.5, 4.5], [10.5, 12.5]]]]
    assert nn.AdaptiveAvgPool2d(1)(x).numpy().tolist() == [[[[7.5]]]]
    assert nn.AdaptiveAvgPool2d((None, 1))(x).numpy()[0, 0, :, 0].tolist() == [1.5, 5.5, 9.5, 13.5]
    assert nn.AdaptiveMaxPool2d(2)(x).numpy().tolist() == [[[[5.0, 7.0], [13.0, 15.0]]]]
    line = t64(np.arange(6.0).reshape(1, 1, 6))
    assert nn.AvgPool1d(3)(line).numpy().tolist() == [[[1.0, 4.0]]]
    assert nn.MaxPool1d(2)(line).numpy().tolist() == [[[1.0, 3.0, 5.0]]]
    assert nn.AdaptiveAvgPool1d(2)(line).numpy().tolist() == [[[1.0, 4.0]]]
    assert nn.AvgPool2d(2, padding=1, count_include_pad=False)(x).numpy()[0, 0, 0].tolist() == [0.0, 1.5, 3.0]
    values, indices = nn.MaxPool2d(2, return_indices=True)(x)
    assert indices.numpy().tolist() == [[[[5, 7], [13, 15]]]]
    assert nn.MaxUnpool2d(2)(values, indices).numpy().sum() == 5 + 7 + 13 + 15
    assert nn.MaxPool2d(3, stride=2, ceil_mode=True)(x).shape == (1, 1, 2, 2)
    assert gradcheck_module(nn.AvgPool2d(2, stride=1), [t64(np.random.default_rng(6).normal(size=(1, 2, 3, 3)))])


def test_upsample_values() -> None:
    x = t64(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    assert nn.Upsample(scale_factor=2)(x).numpy()[0, 0].tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4],
                                                                     [3, 3, 4, 4]]
    corners = nn.UpsamplingBilinear2d(size=3)(x).numpy()[0, 0]  # align_corners=True: the corners stay
    assert corners.tolist() == [[1.0, 1.5, 2.0], [2.0, 2.5, 3.0], [3.0, 3.5, 4.0]]
    assert gradcheck_module(nn.Upsample(scale_factor=2, mode="bilinear"), [x])
    shuffled = nn.PixelShuffle(2)(t64(np.arange(8.0).reshape(1, 4, 1, 2)))
    assert shuffled.shape == (1, 1, 2, 4) and nn.PixelUnshuffle(2)(shuffled).numpy().ravel().tolist() == list(range(8))


POOLS = {  # name: (factory taking a module namespace, input shape)
    "AvgPool1d": (lambda m: m.AvgPool1d(3, stride=2, padding=1), (2, 3, 8)),
    "AvgPool2d": (lambda m: m.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
                  (2, 3, 7, 6)),
    "AvgPool2d divisor": (lambda m: m.AvgPool2d(2, divisor_override=3), (1, 2, 4, 4)),
    "AvgPool3d": (lambda m: m.AvgPool3d(2, stride=1), (1, 2, 3, 4, 3)),
    "AdaptiveAvgPool1d": (lambda m: m.AdaptiveAvgPool1d(3), (2, 3, 7)),
    "AdaptiveAvgPool2d": (lambda m: m.AdaptiveAvgPool2d((3, 2)), (2, 3, 7, 5)),
    "AdaptiveMaxPool2d": (lambda m: m.AdaptiveMaxPool2d((3, 2)), (2, 3, 7, 5)),
    "MaxPool1d": (lambda m: m.MaxPool1d(3, stride=2, padding=1, ceil_mode=True), (2, 3, 8)),
    "MaxPool2d ceil": (lambda m: m.MaxPool2d(3, stride=2, ceil_mode=True), (2, 3, 7, 6)),
    "Upsample nearest": (lambda m: m.Upsample(scale_factor=2), (2, 3, 3, 4)),
    "Upsample bilinear": (lambda m: m.Upsample(size=(5, 7), mode="bilinear"), (2, 3, 3, 4)),
    "Upsample bicubic": (lambda m: m.Upsample(scale_factor=1.5, mode="bicubic", align_corners=True), (1, 2, 4, 4)),
    "Upsample linear": (lambda m: m.Upsample(scale_factor=3, mode="linear"), (2, 3, 5)),
    "UpsamplingNearest2d": (lambda m: m.UpsamplingNearest2d(scale_factor=2), (1, 2, 3, 3)),
    "PixelShuffle": (lambda m: m.PixelShuffle(2), (2, 8, 3, 3)),
}


@pytest.mark.parametrize("name", POOLS)
def test_pool_and_upsample_modules_vs_torch(name: str) -> None:
    torch = _torch()
    make, shape = POOLS[name]
    ours, theirs = make(nn), make(torch.nn)
    assert repr(ours) == repr(theirs)
    x = np.random.default_rng(7).normal(size=shape)
    close(ours(t64(x)), theirs(torch.tensor(x)))


# -- recurrent layers ------------------------------------------------------------------------------------------------
def test_lstm_with_zero_weights_has_a_known_value() -> None:
    """All weights 0: every gate is sigmoid(0) = 1/2 and g = tanh(0) = 0, so c_t = c_{t-1} / 2 and
    h_t = tanh(c_t) / 2."""
    lstm = nn.LSTM(2, 3).double()
    cell = nn.LSTMCell(2, 3).double()
    with tg.no_grad():
        for p in [*lstm.parameters(), *cell.parameters()]:
            p.zero_()
    c0 = np.ones((1, 1, 3))
    out, (h, c) = lstm(t64(np.ones((2, 1, 2))), (t64(np.zeros((1, 1, 3))), t64(c0)))
    want_c = [0.5, 0.25]
    np.testing.assert_allclose(out.numpy()[:, 0, 0], [math.tanh(v) / 2 for v in want_c])
    np.testing.assert_allclose(c.numpy(), np.full((1, 1, 3), 0.25))
    np.testing.assert_allclose(h.numpy(), np.full((1, 1, 3), math.tanh(0.25) / 2))
    h1, c1 = cell(t64(np.ones((1, 2))), (t64(np.zeros((1, 3))), t64(np.ones((1, 3)))))
    np.testing.assert_allclose(h1.numpy(), np.full((1, 3), math.tanh(0.5) / 2))
    np.testing.assert_allclose(c1.numpy(), np.full((1, 3), 0.5))


def test_rnn_matches_its_cell_step_by_step() -> None:
    """A one-layer RNN/GRU over a sequence equals its cell applied step by step with the same weights."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 2, 3))
    for seq_cls, cell_cls in ((nn.RNN, nn.RNNCell), (nn.GRU, nn.GRUCell), (nn.LSTM, nn.LSTMCell)):
        seq, cell = seq_cls(3, 5).double(), cell_cls(3, 5).double()
        cell.load_state_dict({k.removesuffix("_l0"): v for k, v in seq.state_dict().items()})
        out, _ = seq(t64(x))
        state = None
        for t in range(4):
            state = cell(t64(x[t]), state)
            h = state[0] if isinstance(state, tuple) else state
            np.testing.assert_allclose(out.numpy()[t], h.numpy(), rtol=1e-12, atol=1e-14)


RECURRENT = {  # name: (class name, keyword args)
    "RNN": ("RNN", {}),
    "RNN relu bidirectional": ("RNN", dict(nonlinearity="relu", bidirectional=True)),
    "LSTM": ("LSTM", {}),
    "LSTM 2 layers bidirectional": ("LSTM", dict(num_layers=2, bidirectional=True)),
    "LSTM projections": ("LSTM", dict(num_layers=2, proj_size=2)),
    "GRU batch_first": ("GRU", dict(num_layers=2, batch_first=True)),
    "GRU no bias": ("GRU", dict(bias=False, bidirectional=True)),
}


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_modules_vs_torch(name: str) -> None:
    torch = _torch()
    cls, kwargs = RECURRENT[name]
    theirs = getattr(torch.nn, cls)(3, 4, **kwargs).double()
    ours = getattr(nn, cls)(3, 4, **kwargs).double()
    assert repr(ours) == repr(theirs)
    copy_from_torch(theirs, ours)
    rng = np.random.default_rng(9)
    x = rng.normal(size=(2, 5, 3))
    layers = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
    h0 = rng.normal(size=(layers, 2 if kwargs.get("batch_first") else 5, kwargs.get("proj_size") or 4))
    if cls == "LSTM":
        c0 = rng.normal(size=(layers, h0.shape[1], 4))
        out, (h, c) = ours(t64(x), (t64(h0), t64(c0)))
        tout, (th, tc) = theirs(torch.tensor(x), (torch.tensor(h0), torch.tensor(c0)))
        close(c, tc)
    else:
        out, h = ours(t64(x), t64(h0))
        tout, th = theirs(torch.tensor(x), torch.tensor(h0))
    close(out, tout)
    close(h, th)
    unbatched, _ = ours(t64(x[0]))
    tunbatched, _ = theirs(torch.tensor(x[0]))
    close(unbatched, tunbatched)


def test_cells_vs_torch() -> None:
    torch = _torch()
    rng = np.random.default_rng(10)
    x, h, c = rng.normal(size=(3, 4)), rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    theirs, ours = torch.nn.LSTMCell(4, 5).double(), nn.LSTMCell(4, 5).double()
    copy_from_torch(theirs, ours)
    (h1, c1), (th1, tc1) = ours(t64(x), (t64(h), t64(c))), theirs(torch.tensor(x), (torch.tensor(h), torch.tensor(c)))
    close(h1, th1)
    close(c1, tc1)


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_recurrent_gradcheck(cls: str) -> None:
    module = getattr(nn, cls)(2, 3, bidirectional=True).double()
    x = t64(np.random.default_rng(11).normal(size=(3, 1, 2)))
    assert gradcheck_module(module, [x], pick=lambda out: out[0])


def test_recurrent_errors() -> None:
    lstm = nn.LSTM(3, 4)
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size. Expected 3, got 2"):
        lstm(tg.zeros(5, 1, 2))
    with pytest.raises(RuntimeError, match=r"Expected hidden state size \(1, 2, 4\), got \[1, 3, 4\]"):
        lstm(tg.zeros(5, 2, 3), (tg.zeros(1, 3, 4), tg.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match="LSTM: Expected input to be 2D or 3D, got 4D instead"):
        lstm(tg.zeros(1, 1, 1, 3))
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        nn.GRU(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="Unknown nonlinearity 'sigmoid'"):
        nn.RNN(3, 4, nonlinearity="sigmoid")


def test_recurrent_dropout_between_layers_only_in_training() -> None:
    gru = nn.GRU(3, 4, num_layers=2, dropout=0.5)
    x = tg.randn(6, 2, 3)
    gru.eval()
    first, _ = gru(x)
    second, _ = gru(x)
    np.testing.assert_array_equal(first.numpy(), second.numpy())
    gru.train()
    tg.manual_seed(1)
    a, _ = gru(x)
    tg.manual_seed(2)
    b, _ = gru(x)
    assert not np.array_equal(a.numpy(), b.numpy())


# -- attention -------------------------------------------------------------------------------------------------------
def _mha_reference(module: nn.MultiheadAttention, q: np.ndarray, k: np.ndarray, v: np.ndarray,
                   bool_mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Multi-head attention in plain numpy on (L, N, E) inputs; ``bool_mask`` (L, S) True = not allowed."""
    e, heads = module.embed_dim, module.num_heads
    hd = e // heads
    w, b = module.in_proj_weight.numpy(), module.in_proj_bias.numpy()
    qp, kp, vp = q @ w[:e].T + b[:e], k @ w[e:2 * e].T + b[e:2 * e], v @ w[2 * e:].T + b[2 * e:]
    length, batch, _ = q.shape
    out = np.zeros((length, batch, e))
    weights = np.zeros((batch, heads, length, k.shape[0]))
    for n in range(batch):
        for h in range(heads):
            part = slice(h * hd, (h + 1) * hd)
            scores = qp[:, n, part] @ kp[:, n, part].T / math.sqrt(hd)
            if bool_mask is not None:
                scores = np.where(bool_mask, -np.inf, scores)
            p = np.exp(scores - scores.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            weights[n, h] = p
            out[:, n, part] = p @ vp[:, n, part]
    return out @ module.out_proj.weight.numpy().T + module.out_proj.bias.numpy(), weights


def test_multihead_attention_against_numpy() -> None:
    rng = np.random.default_rng(12)
    m = nn.MultiheadAttention(6, 2).double()
    with tg.no_grad():  # a non-zero bias, so the reference checks where it goes
        m.in_proj_bias.copy_(tg.tensor(rng.normal(size=18)))
    q, k, v = rng.normal(size=(3, 2, 6)), rng.normal(size=(4, 2, 6)), rng.normal(size=(4, 2, 6))
    mask = np.array([[False, True, False, False]] * 3)
    want, want_w = _mha_reference(m, q, k, v, mask)
    out, weights = m(t64(q), t64(k), t64(v), attn_mask=tg.tensor(mask), average_attn_weights=False)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(weights.numpy(), want_w, rtol=1e-10, atol=1e-12)
    assert np.all(weights.numpy()[..., 1] == 0)  # the masked key gets no weight
    mean_out, mean_w = m(t64(q), t64(k), t64(v), attn_mask=tg.tensor(mask))
    np.testing.assert_allclose(mean_w.numpy(), want_w.mean(1), rtol=1e-10, atol=1e-12)
    fused, none = m(t64(q), t64(k), t64(v), attn_mask=tg.tensor(mask), need_weights=False)
    assert none is None
    np.testing.assert_allclose(fused.numpy(), want, rtol=1e-10, atol=1e-12)


def test_multihead_attention_key_padding_equals_dropping_the_keys() -> None:
    """Masking key positions out by key_padding_mask gives exactly the result without those keys."""
    rng = np.random.default_rng(13)
    m = nn.MultiheadAttention(4, 2, batch_first=True).double()
    q, kv = rng.normal(size=(1, 3, 4)), rng.normal(size=(1, 5, 4))
    padding = tg.tensor([[False, False, True, False, True]])
    masked, _ = m(t64(q), t64(kv), t64(kv), key_padding_mask=padding)
    dropped, _ = m(t64(q), t64(kv[:, [0, 1, 3]]), t64(kv[:, [0, 1, 3]]))
    np.testing.assert_allclose(masked.numpy(), dropped.numpy(), rtol=1e-12)


def test_multihead_attention_gradcheck() -> None:
    rng = np.random.default_rng(14)
    m = nn.MultiheadAttention(4, 2, add_bias_kv=True).double()
    x = t64(rng.normal(size=(3, 2, 4)))
    assert gradcheck_module(m, [x, x, x], pick=lambda out: out[0])
    m2 = nn.MultiheadAttention(4, 2, kdim=3, vdim=2).double()
    assert gradcheck_module(m2, [t64(rng.normal(size=(2, 1, 4))), t64(rng.normal(size=(3, 1, 3))),
                                 t64(rng.normal(size=(3, 1, 2)))], pick=lambda out: out[0])


def test_multihead_attention_errors() -> None:
    with pytest.raises(ValueError, match=r"embed_dim must be divisible by num_heads \(got embed_dim=6, num_heads=4\)"):
        nn.MultiheadAttention(6, 4)
    m = nn.MultiheadAttention(4, 2)
    x = tg.zeros(3, 2, 4)
    with pytest.raises(RuntimeError, match=r"The shape of attn_mask is \(3, 2\), but should be \(3, 3\)"):
        m(x, x, x, attn_mask=tg.zeros(3, 2))
    with pytest.raises(RuntimeError, match="Need attn_mask if specifying the is_causal hint"):
        m(x, x, x, is_causal=True)
    with pytest.raises(RuntimeError, match="was expecting embedding dimension of 4, but got 5"):
        m(tg.zeros(3, 2, 5), x, x)


MHA = {  # name: (constructor kwargs, masks builder (L, S, N) -> dict of numpy masks)
    "plain": ({}, lambda L, S, N, r: {}),
    "bool attn_mask": ({}, lambda L, S, N, r: {"attn_mask": np.triu(np.ones((L, S), bool), 1)}),
    "float attn_mask": ({}, lambda L, S, N, r: {"attn_mask": r.normal(size=(L, S))}),
    "per-head 3-D mask": ({}, lambda L, S, N, r: {"attn_mask": r.normal(size=(N * 2, L, S))}),
    "key_padding_mask": ({}, lambda L, S, N, r: {"key_padding_mask": np.eye(N, S, 1, dtype=bool)}),
    "both masks, batch_first": (dict(batch_first=True), lambda L, S, N, r: {
        "attn_mask": np.eye(L, S, 2, dtype=bool), "key_padding_mask": np.eye(N, S, 1, dtype=bool)}),
    "kdim/vdim": (dict(kdim=3, vdim=5), lambda L, S, N, r: {}),
    "bias_kv zero_attn": (dict(add_bias_kv=True, add_zero_attn=True),
                          lambda L, S, N, r: {"key_padding_mask": np.eye(N, S, 1, dtype=bool)}),
    "no bias": (dict(bias=False), lambda L, S, N, r: {}),
}


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("name", MHA)
def test_multihead_attention_vs_torch(name: str, need_weights: bool) -> None:
    torch = _torch()
    kwargs, masks = MHA[name]
    theirs = torch.nn.MultiheadAttention(8, 2, **kwargs).double()
    ours = nn.MultiheadAttention(8, 2, **kwargs).double()
    copy_from_torch(theirs, ours)
    r = np.random.default_rng(15)
    length, source, batch = 4, 5, 3
    first = (lambda a, b: (b, a)) if kwargs.get("batch_first") else (lambda a, b: (a, b))
    q = r.normal(size=(*first(length, batch), 8))
    k = r.normal(size=(*first(source, batch), kwargs.get("kdim", 8)))
    v = r.normal(size=(*first(source, batch), kwargs.get("vdim", 8)))
    m = masks(length, source, batch, r)
    out, w = ours(t64(q), t64(k), t64(v), need_weights=need_weights, **{a: tg.tensor(b) for a, b in m.items()})
    tout, tw = theirs(torch.tensor(q), torch.tensor(k), torch.tensor(v), need_weights=need_weights,
                      **{a: torch.tensor(b) for a, b in m.items()})
    close(out, tout)
    if need_weights:
        close(w, tw)
    else:
        assert w is None and tw is None


# -- transformer layers ------------------------------------------------------------------------------------------
def test_transformer_encoder_layer_formula() -> None:
    """Post-norm: norm2(h + ff(h)) with h = norm1(x + self_attn(x)), from the submodules called one by one."""
    rng = np.random.default_rng(16)
    layer = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0).double()
    x = t64(rng.normal(size=(3, 2, 4)))
    attn = layer.self_attn(x, x, x, need_weights=False)[0]
    h = layer.norm1(x + attn)
    want = layer.norm2(h + layer.linear2(layer.linear1(h).relu()))
    np.testing.assert_allclose(layer(x).numpy(), want.numpy(), rtol=1e-12)
    pre = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0, norm_first=True).double()
    pre.load_state_dict(layer.state_dict())
    n1 = pre.norm1(x)
    h = x + pre.self_attn(n1, n1, n1, need_weights=False)[0]
    want = h + pre.linear2(pre.linear1(pre.norm2(h)).relu())
    np.testing.assert_allclose(pre(x).numpy(), want.numpy(), rtol=1e-12)


def test_transformer_state_dict_keys() -> None:
    layer = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6)
    assert list(layer.state_dict()) == [
        "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
        "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias", "norm1.weight", "norm1.bias",
        "norm2.weight", "norm2.bias"]
    stack = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(4))
    keys = list(stack.state_dict())
    assert keys[0] == "layers.0.self_attn.in_proj_weight" and keys[12] == "layers.1.self_attn.in_proj_weight"
    assert keys[-2:] == ["norm.weight", "norm.bias"]
    assert stack.layers[0].linear1.weight is not stack.layers[1].linear1.weight  # deep copies, as PyTorch
    assert np.array_equal(stack.layers[0].linear1.weight.numpy(), stack.layers[1].linear1.weight.numpy())


def test_transformer_gradcheck() -> None:
    rng = np.random.default_rng(17)
    enc = nn.TransformerEncoderLayer(4, 2, dim_feedforward=5, dropout=0.0).double()
    mask = nn.Transformer.generate_square_subsequent_mask(3, dtype=tg.float64)
    x = t64(rng.normal(size=(3, 1, 4)))
    assert gradcheck_module(enc, [x, mask])
    dec = nn.TransformerDecoderLayer(4, 2, dim_feedforward=5, dropout=0.0, norm_first=True).double()
    assert gradcheck_module(dec, [x, t64(rng.normal(size=(2, 1, 4)))])


def test_square_subsequent_mask_value() -> None:
    mask = nn.Transformer.generate_square_subsequent_mask(3).numpy()
    inf = float("inf")
    assert mask.tolist() == [[0.0, -inf, -inf], [0.0, 0.0, -inf], [0.0, 0.0, 0.0]]


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_layers_vs_torch(norm_first: bool, activation: str) -> None:
    torch = _torch()
    r = np.random.default_rng(18)
    kw = dict(dim_feedforward=16, dropout=0.0, norm_first=norm_first, activation=activation)
    atol = 1e-10 if activation == "relu" else 1e-6  # our erf is good to ~1e-7
    enc_t = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, **kw), 2,
                                        norm=torch.nn.LayerNorm(8), enable_nested_tensor=False).double()
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, **kw), 2, norm=nn.LayerNorm(8)).double()
    copy_from_torch(enc_t, enc)
    x = r.normal(size=(5, 3, 8))
    causal = np.triu(np.ones((5, 5), dtype=bool), 1)  # bool, like the padding mask (PyTorch warns on a mix)
    padding = np.eye(3, 5, 2, dtype=bool)
    close(enc(t64(x), mask=tg.tensor(causal), src_key_padding_mask=tg.tensor(padding)),
          enc_t(torch.tensor(x), mask=torch.tensor(causal), src_key_padding_mask=torch.tensor(padding)), atol)
    dec_t = torch.nn.TransformerDecoderLayer(8, 2, **kw).double()
    dec = nn.TransformerDecoderLayer(8, 2, **kw).double()
    copy_from_torch(dec_t, dec)
    tgt = r.normal(size=(4, 3, 8))
    tmask = torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64)
    close(dec(t64(tgt), t64(x), tgt_mask=tg.tensor(tmask.numpy()), memory_key_padding_mask=tg.tensor(padding)),
          dec_t(torch.tensor(tgt), torch.tensor(x), tgt_mask=tmask, memory_key_padding_mask=torch.tensor(padding)),
          atol)


def test_full_transformer_vs_torch() -> None:
    torch = _torch()
    theirs = torch.nn.Transformer(8, 2, 2, 1, 16, dropout=0.0, batch_first=True).double()
    ours = nn.Transformer(8, 2, 2, 1, 16, dropout=0.0, batch_first=True).double()
    copy_from_torch(theirs, ours)
    r = np.random.default_rng(19)
    src, tgt = r.normal(size=(2, 5, 8)), r.normal(size=(2, 4, 8))
    tmask = torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64)
    close(ours(t64(src), t64(tgt), tgt_mask=tg.tensor(tmask.numpy())),
          theirs(torch.tensor(src), torch.tensor(tgt), tgt_mask=tmask))


def test_transformer_dropout_only_in_training() -> None:
    layer = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.5)
    x = tg.randn(3, 2, 4)
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), layer(x).numpy())
    layer.train()
    tg.manual_seed(0)
    a = layer(x).numpy()
    tg.manual_seed(1)
    assert not np.array_equal(a, layer(x).numpy())


# -- nn.utils --------------------------------------------------------------------------------------------------------
def _params_with_grads(*grads: list[float]) -> list[nn.Parameter]:
    params = []
    for g in grads:
        p = nn.Parameter(tg.zeros(len(g), dtype=tg.float64))
        p.grad = tg.tensor(np.array(g, dtype=np.float64))
        params.append(p)
    return params


def test_clip_grad_norm_values() -> None:
    params = _params_with_grads([3.0, 0.0], [0.0, 4.0])  # joint 2-norm 5
    total = nn.utils.clip_grad_norm_(params, max_norm=1.0)
    assert total.item() == 5.0
    scale = 1.0 / (5.0 + 1e-6)
    np.testing.assert_allclose(params[0].grad.numpy(), [3 * scale, 0.0], rtol=1e-15)
    np.testing.assert_allclose(params[1].grad.numpy(), [0.0, 4 * scale], rtol=1e-15)
    untouched = _params_with_grads([0.3, 0.4])
    assert math.isclose(nn.utils.clip_grad_norm_(untouched, 1.0).item(), 0.5)
    np.testing.assert_array_equal(untouched[0].grad.numpy(), [0.3, 0.4])  # factor clamped to 1
    inf_norm = _params_with_grads([1.0, -7.0], [2.0])
    assert nn.utils.clip_grad_norm_(inf_norm, 3.5, norm_type="inf" and math.inf).item() == 7.0
    np.testing.assert_allclose(inf_norm[0].grad.numpy(), [0.5, -3.5], rtol=1e-6)
    one_norm = _params_with_grads([1.0, -2.0], [3.0])
    assert nn.utils.clip_grad_norm_(one_norm, 100.0, norm_type=1).item() == 6.0
    no_grad = nn.Parameter(tg.zeros(2))
    assert nn.utils.clip_grad_norm_([no_grad], 1.0).item() == 0.0 and no_grad.grad is None


def test_clip_grad_norm_non_finite() -> None:
    params = _params_with_grads([1.0, math.inf])
    with pytest.raises(RuntimeError, match="The total norm of order 2.0 for gradients from `parameters` is non-finite"):
        nn.utils.clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    assert nn.utils.clip_grad_norm_(params, 1.0).item() == math.inf
    grad = params[0].grad.numpy()  # scaled by 1 / inf: 1 * 0 = 0 and inf * 0 = NaN, as PyTorch
    assert grad[0] == 0.0 and np.isnan(grad[1])


def test_clip_grad_value_and_vector_round_trip() -> None:
    params = _params_with_grads([-3.0, 0.2, 5.0], [0.7])
    nn.utils.clip_grad_value_(params, 0.5)
    assert params[0].grad.numpy().tolist() == [-0.5, 0.2, 0.5] and params[1].grad.numpy().tolist() == [0.5]
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    vec = nn.utils.parameters_to_vector(model.parameters())
    assert vec.shape == (3 * 2 + 2 + 2 + 1,)
    expected = np.concatenate([p.numpy().ravel() for p in model.parameters()])
    np.testing.assert_array_equal(vec.numpy(), expected)
    nn.utils.vector_to_parameters(tg.arange(11, dtype=tg.float32), model.parameters())
    assert model[0].weight.numpy().tolist() == [[0, 1, 2], [3, 4, 5]] and model[1].bias.numpy().tolist() == [10]
    (nn.utils.parameters_to_vector(model.parameters()) * tg.arange(11, dtype=tg.float32)).sum().backward()
    assert model[0].bias.grad.numpy().tolist() == [6, 7]  # gradients flow back through parameters_to_vector
    with pytest.raises(RuntimeError, match=r"vec of shape \(3,\) does not hold the 11 values"):
        nn.utils.vector_to_parameters(tg.zeros(3), model.parameters())
    with pytest.raises(TypeError, match="expected a Tensor, but got: list"):
        nn.utils.vector_to_parameters([0.0] * 11, model.parameters())


def test_nn_utils_vs_torch() -> None:
    torch = _torch()
    r = np.random.default_rng(20)
    grads = [r.normal(size=(3, 4)), r.normal(size=(5,))]
    for norm_type, max_norm in ((2.0, 1.0), (1.0, 2.0), (math.inf, 0.5), (3.0, 0.7), (2.0, 100.0)):
        ours = [nn.Parameter(tg.zeros(*g.shape, dtype=tg.float64)) for g in grads]
        theirs = [torch.nn.Parameter(torch.zeros(*g.shape, dtype=torch.float64)) for g in grads]
        for p, q, g in zip(ours, theirs, grads):
            p.grad, q.grad = tg.tensor(g), torch.tensor(g)
        total = nn.utils.clip_grad_norm_(ours, max_norm, norm_type)
        ttotal = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
        assert math.isclose(total.item(), ttotal.item(), rel_tol=1e-12)
        for p, q in zip(ours, theirs):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-12)
    ours = [nn.Parameter(tg.zeros(*g.shape, dtype=tg.float64)) for g in grads]
    theirs = [torch.nn.Parameter(torch.zeros(*g.shape, dtype=torch.float64)) for g in grads]
    for p, q, g in zip(ours, theirs, grads):
        p.grad, q.grad = tg.tensor(g), torch.tensor(g)
    nn.utils.clip_grad_value_(ours, 0.3)
    torch.nn.utils.clip_grad_value_(theirs, 0.3)
    for p, q in zip(ours, theirs):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())
