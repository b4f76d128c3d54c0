"""Issue 21's nn.functional ops (activations, convolutions, pooling, padding modes, interpolation, attention): values
against numpy references and PyTorch (when installed), gradients against finite differences in float64 on every
device, PyTorch's error types and messages."""
from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import t64, to_np

import tinygrad_nb as tg
from tinygrad_nb.nn import functional as F

RNG = np.random.default_rng(2121)


def torch_or_skip():  # noqa: ANN201 - the torch module
    return pytest.importorskip("torch")


def normal(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0, x)


def _elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


ACTIVATIONS = {  # name: (F call, numpy reference, kinks to keep finite differences away from)
    "silu": (F.silu, lambda x: x * _sigmoid(x), ()),
    "mish": (F.mish, lambda x: x * np.tanh(_softplus(x)), ()),
    "softplus": (F.softplus, _softplus, ()),
    "softplus_beta": (lambda t: F.softplus(t, beta=2.0, threshold=3.0),
                      lambda x: np.where(2 * x > 3, x, _softplus(2 * x) / 2), (1.5,)),
    "logsigmoid": (F.logsigmoid, lambda x: -_softplus(-x), ()),
    "leaky_relu": (lambda t: F.leaky_relu(t, 0.1), lambda x: np.where(x > 0, x, 0.1 * x), (0,)),
    "relu6": (F.relu6, lambda x: np.clip(x, 0, 6), (0, 6)),
    "hardtanh": (F.hardtanh, lambda x: np.clip(x, -1, 1), (-1, 1)),
    "hardsigmoid": (F.hardsigmoid, lambda x: np.clip(x / 6 + 0.5, 0, 1), (-3, 3)),
    "hardswish": (F.hardswish, lambda x: x * np.clip(x + 3, 0, 6) / 6, (-3, 3)),
    "elu": (lambda t: F.elu(t, 0.7), lambda x: _elu(x, 0.7), (0,)),
    "celu": (lambda t: F.celu(t, 1.5), lambda x: np.where(x > 0, x, 1.5 * np.expm1(np.minimum(x, 0) / 1.5)), (0,)),
    "selu": (F.selu, lambda x: 1.0507009873554804934193349852946 * _elu(x, 1.6732632423543772848170429916717), (0,)),
    "softsign": (F.softsign, lambda x: x / (1 + np.abs(x)), (0,)),
    "tanhshrink": (F.tanhshrink, lambda x: x - np.tanh(x), ()),
    "hardshrink": (F.hardshrink, lambda x: np.where(np.abs(x) > 0.5, x, 0), (-0.5, 0.5)),
    "softshrink": (F.softshrink, lambda x: np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0)), (-0.5, 0.5)),
    "threshold": (lambda t: F.threshold(t, 0.2, -3.0), lambda x: np.where(x > 0.2, x, -3.0), (0.2,)),
    "glu": (F.glu, lambda x: x[..., :2] * _sigmoid(x[..., 2:]), ()),
    "softmin": (lambda t: F.softmin(t, 1), lambda x: np.exp(-x) / np.exp(-x).sum(1, keepdims=True), ()),
    "normalize": (F.normalize, lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), ()),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_values_and_gradients(name: str, dev: str) -> None:
    fn, reference, kinks = ACTIVATIONS[name]
    x = normal(3, 4) * 4
    for k in kinks:
        x = np.where(np.abs(x - k) < 0.05, k + 0.2, x)
    np.testing.assert_allclose(to_np(fn(t64(x, dev))), reference(x), rtol=1e-10, atol=1e-12)
    assert tg.gradcheck(fn, [t64(x, dev)])


def test_activations_match_torch_in_float32_and_do_not_overflow(dev: str) -> None:
    torch = torch_or_skip()
    tf = torch.nn.functional
    x = np.concatenate([normal(20) * 5, [-200.0, -90.0, 0.0, 90.0, 200.0]]).astype(np.float32)
    for name in ("silu", "mish", "softplus", "logsigmoid", "elu", "celu", "selu", "hardswish", "hardsigmoid"):
        ours = getattr(F, name)(tg.tensor(x, device=dev))
        theirs = getattr(tf, name)(torch.tensor(x))
        assert ours.dtype == np.float32, name
        np.testing.assert_allclose(to_np(ours), theirs.numpy(), rtol=2e-6, atol=1e-6, err_msg=name)
        t = tg.tensor(x, device=dev, requires_grad=True)
        getattr(F, name)(t).sum().backward()
        tt = torch.tensor(x, requires_grad=True)
        getattr(tf, name)(tt).sum().backward()
        assert np.isfinite(to_np(t.grad)).all(), name
        np.testing.assert_allclose(to_np(t.grad), tt.grad.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def test_prelu_and_glu_errors(dev: str) -> None:
    x, w = normal(2, 3, 4), np.array([0.1, 0.2, 0.3])
    expected = np.where(x > 0, x, x * w[None, :, None])
    np.testing.assert_allclose(to_np(F.prelu(t64(x, dev), t64(w, dev))), expected)
    assert tg.gradcheck(F.prelu, [t64(np.where(np.abs(x) < 0.05, 0.3, x), dev), t64(w, dev)])
    with pytest.raises(RuntimeError, match="Halving dimension must be even, but dimension 1 is size 5"):
        F.glu(tg.ones(2, 5, device=dev))


# -- convolutions ---------------------------------------------------------------------------------------------------
def _conv1d_reference(x: np.ndarray, w: np.ndarray, stride: int, padding: int, dilation: int) -> np.ndarray:
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding)))
    k = w.shape[2]
    length = (x.shape[2] - dilation * (k - 1) - 1) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], length))
    for i in range(length):
        window = x[:, :, i * stride: i * stride + dilation * (k - 1) + 1: dilation]
        out[:, :, i] = np.einsum("nck,ock->no", window, w)
    return out


def test_conv1d_against_a_direct_loop_and_gradients(dev: str) -> None:
    x, w, b = normal(2, 3, 11), normal(4, 3, 3), normal(4)
    out = F.conv1d(t64(x, dev), t64(w, dev), t64(b, dev), stride=2, padding=1, dilation=2)
    np.testing.assert_allclose(to_np(out), _conv1d_reference(x, w, 2, 1, 2) + b[None, :, None], rtol=1e-12)
    np.testing.assert_allclose(to_np(F.conv1d(t64(x[0], dev), t64(w, dev))), _conv1d_reference(x, w, 1, 0, 1)[0],
                               rtol=1e-12)
    assert tg.gradcheck(lambda a, c, d: F.conv1d(a, c, d, 2, 1, 2), [t64(x, dev), t64(w, dev), t64(b, dev)])
    assert tg.gradcheck(lambda a, c: F.conv1d(a, c, None, padding="same", groups=1), [t64(x, dev), t64(w, dev)])


def test_conv_transpose2d_is_the_adjoint_of_conv2d(dev: str) -> None:
    # <conv2d(x, w), y> = <x, conv_transpose2d(y, w)> for every x, y: the definition of the transposed convolution
    x, w = normal(2, 4, 9, 8), normal(6, 2, 3, 2)
    kwargs = {"stride": (2, 3), "padding": (1, 0), "dilation": (1, 2), "groups": 2}
    y = normal(*F.conv2d(t64(x, dev), t64(w, dev), **kwargs).shape)
    left = (to_np(F.conv2d(t64(x, dev), t64(w, dev), **kwargs)) * y).sum()
    # the output_padding that gives back x's size: H - ((h - 1) stride - 2 padding + dilation (k - 1) + 1)
    extra = tuple(n - ((m - 1) * s - 2 * p + d * (k - 1) + 1) for n, m, s, p, d, k in
                  zip(x.shape[2:], y.shape[2:], (2, 3), (1, 0), (1, 2), w.shape[2:]))
    back = F.conv_transpose2d(t64(y, dev), t64(w, dev), output_padding=extra, **kwargs)
    assert back.shape == x.shape
    np.testing.assert_allclose((x * to_np(back)).sum(), left, rtol=1e-10)
    assert tg.gradcheck(lambda a, c, d: F.conv_transpose2d(a, c, d, 2, 1, 1, 2), [t64(normal(1, 4, 3, 2), dev),
                                                                                   t64(normal(4, 3, 3, 2), dev),
                                                                                   t64(normal(6), dev)])
    assert tg.gradcheck(lambda a, c: F.conv_transpose1d(a, c, None, 2, 1, 1), [t64(normal(2, 4, 5), dev),
                                                                                t64(normal(4, 3, 3), dev)])
    with pytest.raises(RuntimeError, match="output padding must be smaller than either stride or dilation"):
        F.conv_transpose2d(tg.ones(1, 4, 3, 3, device=dev), tg.ones(4, 2, 3, 3, device=dev), output_padding=1)


def test_conv3d_gradients_and_fold_unfold_round_trip(dev: str) -> None:
    assert tg.gradcheck(lambda a, c, d: F.conv3d(a, c, d, (2, 1, 1), 1, (1, 1, 2), 2),
                        [t64(normal(1, 4, 3, 4, 5), dev), t64(normal(2, 2, 2, 2, 2), dev), t64(normal(2), dev)])
    x = normal(2, 3, 5, 6)
    cols = F.unfold(t64(x, dev), (2, 3), padding=1, stride=(1, 2))
    counts = F.fold(F.unfold(t64(np.ones_like(x), dev), (2, 3), padding=1, stride=(1, 2)), (5, 6), (2, 3),
                    padding=1, stride=(1, 2))
    np.testing.assert_allclose(to_np(F.fold(cols, (5, 6), (2, 3), padding=1, stride=(1, 2))), x * to_np(counts))
    assert tg.gradcheck(lambda c: F.fold(c, (4, 5), 2), [t64(normal(1, 8, 12), dev)])
    with pytest.raises(RuntimeError, match=r"fold: input of shape \(1, 8, 11\) does not fit output_size \(4, 5\)"):
        F.fold(tg.ones(1, 8, 11, device=dev), (4, 5), 2)


CONV_CASES = [
    ("conv1d", (2, 4, 9), (6, 2, 3), {"stride": 2, "padding": 1, "groups": 2}),
    ("conv1d", (2, 4, 9), (6, 4, 4), {"padding": "same", "dilation": 2}),
    ("conv3d", (2, 4, 5, 6, 7), (6, 2, 2, 3, 2), {"stride": (2, 1, 2), "padding": (1, 0, 1), "dilation": (1, 2, 1),
                                                  "groups": 2}),
    ("conv3d", (1, 2, 4, 5, 6), (3, 2, 3, 2, 3), {"padding": "same"}),
    ("conv_transpose2d", (2, 4, 5, 6), (4, 3, 3, 2), {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}),
    ("conv_transpose2d", (1, 2, 4, 3), (2, 3, 2, 3), {"stride": (1, 3), "padding": (0, 1), "dilation": 2}),
    ("conv_transpose1d", (2, 4, 6), (4, 5, 3), {"stride": 3, "padding": 2, "output_padding": 1}),
]


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_convolutions_match_torch(case: int, dev: str) -> None:
    torch = torch_or_skip()
    name, xs, ws, kwargs = CONV_CASES[case]
    x, w = normal(*xs), normal(*ws)
    out_channels = ws[0] if "transpose" not in name else ws[1] * kwargs.get("groups", 1)
    b = normal(out_channels)
    ours = getattr(F, name)(t64(x, dev), t64(w, dev), t64(b, dev), **kwargs)
    theirs = getattr(torch.nn.functional, name)(torch.tensor(x), torch.tensor(w), torch.tensor(b), **kwargs)
    np.testing.assert_allclose(to_np(ours), theirs.numpy(), rtol=1e-10, atol=1e-10)


# -- pooling ---------------------------------------------------------------------------------------------------------
def _avg_pool_reference(x: np.ndarray, k: int, s: int, p: int, ceil_mode: bool, count_include_pad: bool
                        ) -> np.ndarray:
    """PyTorch's avg_pool2d, window by window."""
    n, c, h, w = x.shape

    def size(length: int) -> int:
        out = (length + 2 * p - k + (s - 1 if ceil_mode else 0)) // s + 1
        return out - 1 if ceil_mode and (out - 1) * s >= length + p else out
    oh, ow = size(h), size(w)
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s - p, j * s - p
            r1, c1 = min(r0 + k, h + p), min(c0 + k, w + p)
            pool = (r1 - r0) * (c1 - c0)
            r0c, c0c, r1c, c1c = max(r0, 0), max(c0, 0), min(r1, h), min(c1, w)
            total = x[:, :, r0c:r1c, c0c:c1c].sum((2, 3))
            out[:, :, i, j] = total / (pool if count_include_pad else (r1c - r0c) * (c1c - c0c))
    return out


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d_against_the_window_definition(ceil_mode: bool, count_include_pad: bool, dev: str) -> None:
    x = normal(2, 3, 7, 8)
    out = F.avg_pool2d(t64(x, dev), 3, 2, 1, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    np.testing.assert_allclose(to_np(out), _avg_pool_reference(x, 3, 2, 1, ceil_mode, count_include_pad), rtol=1e-12)
    assert tg.gradcheck(lambda a: F.avg_pool2d(a, 3, 2, 1, ceil_mode, count_include_pad), [t64(x[:1, :1], dev)])
    np.testing.assert_allclose(to_np(F.avg_pool2d(t64(x, dev), 2, divisor_override=3)),
                               x[:, :, :6].reshape(2, 3, 3, 2, 4, 2).sum((3, 5)) / 3, rtol=1e-12)


def test_max_pool2d_indices_unpool_and_adaptive(dev: str) -> None:
    x = normal(2, 3, 7, 8)
    for ceil_mode in (False, True):
        values, indices = F.max_pool2d(t64(x, dev), 3, 2, 1, ceil_mode=ceil_mode, return_indices=True)
        flat = x.reshape(2, 3, -1)
        picked = np.take_along_axis(flat, to_np(indices).reshape(2, 3, -1), 2).reshape(values.shape)
        np.testing.assert_array_equal(to_np(values), picked)  # every index points at its window's maximum
        np.testing.assert_array_equal(to_np(values), to_np(F.max_pool2d(t64(x, dev), 3, 2, 1, ceil_mode=ceil_mode)))
    values, indices = F.max_pool2d(t64(x, dev), 2, return_indices=True)
    unpooled = to_np(F.max_unpool2d(values, indices, 2, output_size=(7, 8)))
    assert ((unpooled != 0).sum((2, 3)) == 12).all()
    np.testing.assert_array_equal(unpooled.reshape(2, 3, -1)[np.arange(2)[:, None, None], np.arange(3)[None, :, None],
                                                             to_np(indices).reshape(2, 3, -1)],
                                  to_np(values).reshape(2, 3, -1))
    assert tg.gradcheck(lambda a: F.max_pool2d(a, 2, 2, return_indices=True)[0], [t64(x[:1, :2], dev)])
    assert tg.gradcheck(lambda a: F.max_unpool2d(a, indices[:1, :2], 2, output_size=(7, 8)),
                        [t64(to_np(values)[:1, :2], dev)])
    np.testing.assert_allclose(to_np(F.adaptive_avg_pool2d(t64(x, dev), (1, 4))), x.mean(2, keepdims=True)
                               .reshape(2, 3, 1, 4, 2).mean(4), rtol=1e-12)
    assert tg.gradcheck(lambda a: F.adaptive_avg_pool2d(a, (3, 5)), [t64(x[:1, :1], dev)])
    np.testing.assert_array_equal(to_np(F.adaptive_max_pool2d(t64(x, dev), 1)), x.max((2, 3), keepdims=True))
    with pytest.raises(ValueError, match=r"padding \(2, 2\) should be at most half of the kernel size \(3, 3\)"):
        F.avg_pool2d(t64(x, dev), 3, padding=2)
    with pytest.raises(RuntimeError, match=r"max_unpool2d: Expected shape of indices to be same as that of the input"):
        F.max_unpool2d(values, indices[:, :1], 2)


POOL_CASES = [
    ("avg_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}),
    ("avg_pool2d", {"kernel_size": (2, 3), "stride": (1, 2), "padding": (1, 0)}),
    ("max_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "return_indices": True}),
    ("max_pool2d", {"kernel_size": 2, "dilation": 2, "return_indices": True}),
    ("adaptive_avg_pool2d", {"output_size": (3, 5)}),
    ("adaptive_max_pool2d", {"output_size": (3, 5)}),
    ("avg_pool1d", {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("max_pool1d", {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
    ("adaptive_avg_pool1d", {"output_size": 5}),
]


@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_pooling_matches_torch(case: int, dev: str) -> None:
    torch = torch_or_skip()
    name, kwargs = POOL_CASES[case]
    x = normal(2, 3, 7, 8) if not name.endswith("1d") else normal(2, 3, 9)
    ours = getattr(F, name)(t64(x, dev), **kwargs)
    theirs = getattr(torch.nn.functional, name)(torch.tensor(x), **kwargs)
    ours, theirs = (ours, theirs) if isinstance(ours, tuple) else ((ours,), (theirs,))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(to_np(a), b.numpy(), rtol=1e-12, atol=1e-12)


# -- padding, interpolation -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,numpy_mode", [("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")])
def test_pad_modes_match_numpy(mode: str, numpy_mode: str, dev: str) -> None:
    x = normal(2, 3, 5, 6)
    out = F.pad(t64(x, dev), (2, 1, 3, 0), mode=mode)
    np.testing.assert_array_equal(to_np(out), np.pad(x, ((0, 0), (0, 0), (3, 0), (2, 1)), mode=numpy_mode))
    assert tg.gradcheck(lambda a: F.pad(a, (2, 1, 3, 0), mode=mode), [t64(x[:1, :1], dev)])
    np.testing.assert_array_equal(to_np(F.pad(t64(x, dev), (1, 1), value=-2.0)),
                                  np.pad(x, ((0, 0), (0, 0), (0, 0), (1, 1)), constant_values=-2.0))


def test_pad_errors(dev: str) -> None:
    with pytest.raises(RuntimeError, match="Padding size should be less than the corresponding input dimension"):
        F.pad(tg.ones(1, 1, 3, device=dev), (3, 0), mode="reflect")
    with pytest.raises(NotImplementedError, match="Unrecognised padding mode wrap"):
        F.pad(tg.ones(1, 1, 3, device=dev), (1, 0), mode="wrap")


def test_interpolate_nearest_and_linear_definitions(dev: str) -> None:
    x = normal(1, 2, 4, 6)
    out = F.interpolate(t64(x, dev), scale_factor=2)
    np.testing.assert_array_equal(to_np(out), x.repeat(2, 2).repeat(2, 3))
    # align_corners=True: the corners stay, the rest is linear in between
    line = np.array([[[0.0, 3.0, 9.0]]])
    np.testing.assert_allclose(to_np(F.interpolate(t64(line, dev), size=5, mode="linear", align_corners=True)),
                               [[[0.0, 1.5, 3.0, 6.0, 9.0]]])
    np.testing.assert_allclose(to_np(F.interpolate(t64(line, dev), size=6, mode="linear", align_corners=False)),
                               [[[0.0, 0.75, 2.25, 4.5, 7.5, 9.0]]])
    assert tg.gradcheck(lambda a: F.interpolate(a, size=(7, 4), mode="bilinear", align_corners=False),
                        [t64(x, dev)])
    assert tg.gradcheck(lambda a: F.interpolate(a, scale_factor=1.5, mode="bicubic", align_corners=True),
                        [t64(x, dev)])
    assert tg.gradcheck(lambda a: F.interpolate(a, size=(3, 9), mode="nearest"), [t64(x, dev)])
    with pytest.raises(ValueError, match="only one of size or scale_factor should be defined"):
        F.interpolate(t64(x, dev), size=3, scale_factor=2)
    with pytest.raises(NotImplementedError, match="Got 4D input, but linear mode needs 3D input"):
        F.interpolate(t64(x, dev), size=3, mode="linear")


INTERPOLATE = [("nearest", None), ("nearest-exact", None), ("bilinear", False), ("bilinear", True),
               ("bicubic", False), ("bicubic", True), ("area", None)]


@pytest.mark.parametrize("mode,align_corners", INTERPOLATE)
def test_interpolate_matches_torch(mode: str, align_corners: bool | None, dev: str) -> None:
    torch = torch_or_skip()
    x = normal(2, 3, 7, 8)
    for kwargs in ({"size": (5, 13)}, {"scale_factor": 1.7}, {"scale_factor": (2, 0.5)}):
        ours = F.interpolate(t64(x, dev), mode=mode, align_corners=align_corners, **kwargs)
        theirs = torch.nn.functional.interpolate(torch.tensor(x), mode=mode, align_corners=align_corners, **kwargs)
        np.testing.assert_allclose(to_np(ours), theirs.numpy(), rtol=1e-10, atol=1e-10, err_msg=str(kwargs))
    x3 = normal(1, 2, 3, 4, 5)
    ours = F.interpolate(t64(x3, dev), size=(4, 6, 3), mode="trilinear", align_corners=False)
    theirs = torch.nn.functional.interpolate(torch.tensor(x3), size=(4, 6, 3), mode="trilinear", align_corners=False)
    np.testing.assert_allclose(to_np(ours), theirs.numpy(), rtol=1e-10, atol=1e-10)


def test_pixel_shuffle_round_trip(dev: str) -> None:
    x = normal(2, 8, 3, 4)
    up = F.pixel_shuffle(t64(x, dev), 2)
    assert up.shape == (2, 2, 6, 8)
    np.testing.assert_array_equal(to_np(up)[0, 1, 3, 5], x[0, 1 * 4 + 1 * 2 + 1, 1, 2])
    np.testing.assert_array_equal(to_np(F.pixel_unshuffle(up, 2)), x)


# -- attention -----------------------------------------------------------------------------------------------------
def _attention_reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, bias: np.ndarray | float = 0.0,
                         scale: float | None = None) -> np.ndarray:
    s = q @ np.swapaxes(k, -1, -2) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale) + bias
    p = np.exp(s - s.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True) @ v


def test_scaled_dot_product_attention_values_and_gradients(dev: str) -> None:
    q, k, v = normal(2, 3, 5, 4), normal(2, 3, 6, 4), normal(2, 3, 6, 7)
    out = F.scaled_dot_product_attention(t64(q, dev), t64(k, dev), t64(v, dev))
    np.testing.assert_allclose(to_np(out), _attention_reference(q, k, v), rtol=1e-12)
    causal = np.where(np.tril(np.ones((5, 6), dtype=bool)), 0.0, -np.inf)
    out = F.scaled_dot_product_attention(t64(q, dev), t64(k, dev), t64(v, dev), is_causal=True, scale=0.5)
    np.testing.assert_allclose(to_np(out), _attention_reference(q, k, v, causal, 0.5), rtol=1e-12)
    mask = RNG.random((5, 6)) > 0.3
    mask[:, 0] = True
    out = F.scaled_dot_product_attention(t64(q, dev), t64(k, dev), t64(v, dev), attn_mask=tg.tensor(mask, device=dev))
    np.testing.assert_allclose(to_np(out), _attention_reference(q, k, v, np.where(mask, 0.0, -np.inf)), rtol=1e-12)
    bias = normal(5, 6)
    args = [t64(q[:1, :2], dev), t64(k[:1, :2], dev), t64(v[:1, :2], dev), t64(bias, dev)]
    assert tg.gradcheck(lambda a, b, c, m: F.scaled_dot_product_attention(a, b, c, attn_mask=m), args)
    assert tg.gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True), args[:3])
    shared = t64(normal(1, 6, 4), dev)  # one key/value set broadcast over the batch: gradients summed back
    assert tg.gradcheck(lambda a, b: F.scaled_dot_product_attention(a, b, b[..., :3]), [t64(q[:, 0], dev), shared])

    def dropped(a: tg.Tensor, b: tg.Tensor, c: tg.Tensor) -> tg.Tensor:
        tg.manual_seed(5)  # the same mask on every call, so finite differences see one function
        return F.scaled_dot_product_attention(a, b, c, dropout_p=0.3)
    assert tg.gradcheck(dropped, args[:3])


def test_attention_fully_masked_rows_and_errors(dev: str) -> None:
    q = t64(normal(1, 2, 3), dev)
    mask = tg.tensor([[True, True], [False, False]], device=dev)
    out = to_np(F.scaled_dot_product_attention(q, q, q, attn_mask=mask))
    assert np.isfinite(out).all() and (out[0, 1] == 0).all()  # as PyTorch: 0, not NaN
    with tg.debug.detect_anomaly():  # the -inf of a bool mask or is_causal is never an op's output: no false alarm
        F.scaled_dot_product_attention(q, q, q, attn_mask=mask[:1].expand(2, 2)).sum()
        F.scaled_dot_product_attention(q, q, q, is_causal=True).sum()
    with pytest.raises(RuntimeError, match="Explicit attn_mask should not be set when is_causal=True"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=mask, is_causal=True)
    with pytest.raises(RuntimeError, match=r"query \(1, 2, 3\), key \(1, 2, 2\) and value"):
        F.scaled_dot_product_attention(q, q[..., :2], q)


def test_attention_matches_torch_including_gqa_and_float32(dev: str) -> None:
    torch = torch_or_skip()
    q, k, v = (normal(2, 4, 5, 8).astype(np.float32), normal(2, 2, 7, 8).astype(np.float32),
               normal(2, 2, 7, 3).astype(np.float32))
    mask = normal(5, 7).astype(np.float32)
    ours = F.scaled_dot_product_attention(*(tg.tensor(a, device=dev, requires_grad=True) for a in (q, k, v)),
                                          attn_mask=tg.tensor(mask, device=dev), enable_gqa=True)
    theirs = torch.nn.functional.scaled_dot_product_attention(torch.tensor(q), torch.tensor(k), torch.tensor(v),
                                                              attn_mask=torch.tensor(mask), enable_gqa=True)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(to_np(ours), theirs.numpy(), rtol=1e-5, atol=1e-6)
    tensors = [tg.tensor(a, device=dev, requires_grad=True) for a in (q, k[:, :1], v[:, :1])]
    F.scaled_dot_product_attention(*tensors, is_causal=True).sum().backward()
    reference = [torch.tensor(a, requires_grad=True) for a in (q, k[:, :1], v[:, :1])]
    torch.nn.functional.scaled_dot_product_attention(*reference, is_causal=True).sum().backward()
    for ours_t, theirs_t in zip(tensors, reference):
        np.testing.assert_allclose(to_np(ours_t.grad), theirs_t.grad.numpy(), rtol=1e-4, atol=1e-5)
