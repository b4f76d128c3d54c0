"""Stateless neural-network functions (``torch.nn.functional``): layers, activations and losses.

Everything is composed from Tensor ops, so every function is differentiable without a backward of its own; the only
primitive used directly is ``ops.Unfold`` (im2col) for convolution and pooling. Layers in :mod:`tinygrad_nb.nn`
hold parameters and call these.

    from tinygrad_nb.nn import functional as F
    loss = F.cross_entropy(model(x), labels)
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import dtype as dtypes
from .. import ops
from ..autograd import ArgumentError, OutOfRangeError, ShapeError, no_grad
from ..ops.nn import conv_output_size
from ..tensor import Tensor, arange, rand, where

_REDUCTIONS = ("mean", "sum", "none")

__all__ = ["linear", "relu", "gelu", "tanh", "sigmoid", "softmax", "log_softmax", "dropout", "layer_norm",
           "batch_norm", "embedding", "conv2d", "max_pool2d", "one_hot", "mse_loss", "l1_loss", "cross_entropy",
           "nll_loss", "binary_cross_entropy_with_logits"]
# issue 21's functional ops: activations are written once in tinygrad_nb.composite, the rest in functional_ops
from ..composite import (celu, elu, glu, hardshrink, hardsigmoid, hardswish, hardtanh, leaky_relu,  # noqa: E402
                         logsigmoid, mish, normalize, prelu, relu6, selu, silu, softmin, softplus, softshrink,
                         softsign, tanhshrink, threshold)
from .functional_ops import *  # noqa: E402, F403 - conv1d/3d, transposed convs, pools, pad, interpolate, attention
from .functional_ops import __all__ as _ops_all  # noqa: E402

__all__ += ["celu", "elu", "glu", "hardshrink", "hardsigmoid", "hardswish", "hardtanh", "leaky_relu", "logsigmoid",
            "mish", "normalize", "prelu", "relu6", "selu", "silu", "softmin", "softplus", "softshrink", "softsign",
            "tanhshrink", "threshold"]
__all__ += [name for name in _ops_all if name not in __all__]


# -- layers ---------------------------------------------------------------------------------------------------------
def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:  # noqa: A002 - PyTorch names
    """y = x W^T + b, with W of shape (out_features, in_features) and x of shape (..., in_features)."""
    if input.dtype != weight.dtype:  # promote like x @ W.T would
        common = dtypes.result_type(input.dtype, weight.dtype)
        input, weight = input.to(dtype=common), weight.to(dtype=common)
        bias = bias.to(dtype=common) if bias is not None else None
    if bias is None:
        return ops.Linear.apply(input, weight)
    return ops.Linear.apply(input, weight, bias)


def relu(input: Tensor) -> Tensor:  # noqa: A002
    """max(x, 0)."""
    return input.relu()


def gelu(input: Tensor, approximate: str = "none") -> Tensor:  # noqa: A002
    """x * Phi(x) (``approximate="tanh"``: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))))."""
    return input.gelu(approximate=approximate)


def tanh(input: Tensor) -> Tensor:  # noqa: A002
    return input.tanh()


def sigmoid(input: Tensor) -> Tensor:  # noqa: A002
    """1 / (1 + e^-x)."""
    return input.sigmoid()


def softmax(input: Tensor, dim: int) -> Tensor:  # noqa: A002
    """exp(x_i) / sum_j exp(x_j) along ``dim``."""
    return input.softmax(dim)


def log_softmax(input: Tensor, dim: int) -> Tensor:  # noqa: A002
    """x_i - log(sum_j exp(x_j)) along ``dim``; use it (not log(softmax)) for stability."""
    return input.log_softmax(dim)


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:  # noqa: A002
    """Zero each element with probability ``p`` and scale the rest by 1 / (1 - p); identity when not training.

    The mask comes from the central generator, so ``manual_seed`` reproduces it.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    # float32 uniforms whatever the input's dtype: a float64 model draws the same mask as a float32 one
    keep = rand(*input.shape, device=input.device) >= p
    return input * (keep.cast(input.dtype) * (1.0 / (1.0 - p)))


def layer_norm(input: Tensor, normalized_shape: int | Sequence[int], weight: Tensor | None = None,  # noqa: A002
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias over the last ``len(normalized_shape)`` dims (biased var);
    one primitive (:class:`tinygrad_nb.ops.LayerNorm`, its docstring has the gradients)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if input.shape[input.ndim - len(shape):] != shape or input.ndim < len(shape):
        raise ShapeError(f"layer_norm: input of shape {input.shape} does not end with normalized_shape {shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != shape:
            raise ShapeError(f"layer_norm: {name} of shape {tuple(t.shape)} does not match normalized_shape {shape}")
    return ops.LayerNorm.apply(input, weight, bias, len(shape), eps)


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,  # noqa: A002
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise each channel (dim 1) of (N, C, ...) input: (x - mean) / sqrt(var + eps) * weight + bias.

    Training: mean and (biased) var of the batch, and the running statistics, when given, move towards the batch's:
    running = (1 - momentum) running + momentum batch, using the unbiased var (n / (n - 1)) as PyTorch does.
    Otherwise the running statistics are used.
    """
    if input.ndim < 2:
        raise ShapeError(f"batch_norm: expected input of shape (N, C) or (N, C, ...), got {input.shape}")
    channels = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and t.shape != (channels,):
            raise ShapeError(f"batch_norm: {name} has shape {t.shape} but the input {input.shape} has {channels} "
                             "channels")
    stat_shape = (1, channels) + (1,) * (input.ndim - 2)
    if training:
        axes = (0,) + tuple(range(2, input.ndim))
        count = input.numel() // max(channels, 1)
        if count <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input of shape "
                             f"{input.shape}")
        mean = input.mean(axes, keepdim=True)
        centered = input - mean
        var = (centered * centered).mean(axes, keepdim=True)
        with no_grad():
            if running_mean is not None:
                running_mean.copy_(running_mean * (1 - momentum) + mean.reshape(channels) * momentum)
            if running_var is not None:
                unbiased = var.reshape(channels) * (count / (count - 1))
                running_var.copy_(running_var * (1 - momentum) + unbiased * momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are needed when training=False")
        centered = input - running_mean.reshape(stat_shape)
        var = running_var.reshape(stat_shape)
    out = centered / (var + eps).sqrt()
    if weight is not None:
        out = out * weight.reshape(stat_shape)
    if bias is not None:
        out = out + bias.reshape(stat_shape)
    return out


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None) -> Tensor:  # noqa: A002
    """Rows of ``weight`` picked by the integer tensor ``input``: out[..., :] = weight[input[...], :].

    The gradient adds into the picked rows; positions equal to ``padding_idx`` send no gradient to their row.
    """
    if input.dtype.kind not in "iu":
        raise TypeError(f"embedding: expected an integer index tensor, got {input.dtype.name} (shape {input.shape})")
    num_embeddings = weight.shape[0]
    if input.numel():
        low, high = int(input.data.min()), int(input.data.max())
        if low < 0 or high >= num_embeddings:
            raise IndexError(f"embedding: index {low if low < 0 else high} is out of range for {num_embeddings} "
                             f"embeddings (weight shape {weight.shape}, input shape {input.shape})")
    out = weight[input]
    if padding_idx is not None:
        if padding_idx < 0:
            padding_idx += num_embeddings
        # same values either way; the detached copy is what padding positions take, so no gradient reaches the row
        out = where((input == padding_idx).unsqueeze(-1), out.detach(), out)
    return out


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _as_batch(op: str, input: Tensor) -> tuple[Tensor, bool]:  # noqa: A002
    """(N, C, H, W) stays; an unbatched (C, H, W) image gets a batch dim of 1."""
    if input.ndim == 3:
        return input.unsqueeze(0), False
    if input.ndim != 4:
        raise ShapeError(f"{op}: expected input of shape (N, C, H, W) or (C, H, W), got {input.shape}")
    return input, True


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None,  # noqa: A002
           stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
           dilation: int | Sequence[int] = 1, groups: int = 1) -> Tensor:
    """2-D cross-correlation: out[n, o] = bias[o] + sum_c weight[o, c] (*) input[n, c], via im2col and one matmul.

    ``weight`` has shape (out_channels, in_channels / groups, kh, kw); ``padding`` may be "valid" or "same".
    """
    x, batched = _as_batch("conv2d", input)
    n, channels = x.shape[:2]
    out_channels, group_channels, kh, kw = weight.shape
    if channels != group_channels * groups or out_channels % groups:
        raise ShapeError(f"conv2d: input of shape {input.shape} has {channels} channels but weight of shape "
                         f"{weight.shape} with groups={groups} expects {group_channels * groups}")
    stride, dilation = _pair(stride, "conv2d stride"), _pair(dilation, "conv2d dilation")
    if isinstance(padding, str):
        x, padding = _string_padding(x, padding, (kh, kw), stride, dilation)
    else:
        padding = _pair(padding, "conv2d padding")
    # positional: Unfold.backward returns one gradient per positional argument (5), so keywords would not match
    cols = ops.Unfold.apply(x, (kh, kw), stride, padding, dilation)
    out_h = conv_output_size(x.shape[2], kh, stride[0], padding[0], dilation[0])
    out_w = conv_output_size(x.shape[3], kw, stride[1], padding[1], dilation[1])
    positions = out_h * out_w
    if groups == 1:
        out = weight.reshape(out_channels, -1) @ cols  # (O, C*kh*kw) @ (N, C*kh*kw, L) -> (N, O, L)
    else:
        cols = cols.reshape(n, groups, group_channels * kh * kw, positions)
        out = (weight.reshape(groups, out_channels // groups, -1) @ cols).reshape(n, out_channels, positions)
    if bias is not None:
        out = out + bias.reshape(1, out_channels, 1)
    out = out.reshape(n, out_channels, out_h, out_w)
    return out if batched else out.squeeze(0)


def _string_padding(x: Tensor, padding: str, kernel: tuple[int, int], stride: tuple[int, int],
                    dilation: tuple[int, int]) -> tuple[Tensor, tuple[int, int]]:
    """"valid" is no padding; "same" pads so the output has the input's size (stride 1 only)."""
    if padding == "valid":
        return x, (0, 0)
    if padding != "same":
        raise ArgumentError(f"conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    if stride != (1, 1):
        raise ValueError("conv2d: padding='same' is not supported for strided convolutions")
    totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
    if all(t % 2 == 0 for t in totals):
        return x, (totals[0] // 2, totals[1] // 2)
    # an odd total cannot be split evenly: the extra row/column goes after, as in PyTorch
    (th, tw) = totals
    return x.pad((tw // 2, tw - tw // 2, th // 2, th - th // 2)), (0, 0)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 tensor of shape (*tensor.shape, num_classes) with a 1 at each value's position
    (``num_classes=-1``: max value + 1)."""
    if tensor.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expected an integer tensor of class values, got {tensor.dtype.name}")
    if num_classes < 0:
        if tensor.numel() == 0:
            raise ValueError("one_hot: can not infer the number of classes from an empty tensor")
        num_classes = int(tensor.data.max()) + 1
    if tensor.numel():
        low, high = int(tensor.data.min()), int(tensor.data.max())
        if low < 0 or high >= num_classes:
            raise ArgumentError(f"one_hot: class value {low if low < 0 else high} is out of range for "
                             f"num_classes={num_classes}")
    return (tensor.unsqueeze(-1) == arange(num_classes, device=tensor.device)).long()


# -- losses -----------------------------------------------------------------------------------------------------------
def _check_reduction(op: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_same_shape(op: str, input: Tensor, target: Tensor) -> None:  # noqa: A002
    # PyTorch broadcasts with a warning; (N, 1) against (N,) silently becoming (N, N) is a classic bug, so refuse
    if input.shape != target.shape:
        raise ShapeError(f"{op}: input shape {input.shape} and target shape {target.shape} differ; they must match")


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:  # noqa: A002
    """(x - y)^2, averaged (``mean``), summed (``sum``) or per element (``none``)."""
    _check_reduction("mse_loss", reduction)
    _check_same_shape("mse_loss", input, target)
    diff = input - target
    return _reduce(diff * diff, reduction)


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:  # noqa: A002
    """|x - y|, reduced like :func:`mse_loss`."""
    _check_reduction("l1_loss", reduction)
    _check_same_shape("l1_loss", input, target)
    return _reduce((input - target).abs(), reduction)


def _classes_last(op: str, input: Tensor) -> Tensor:  # noqa: A002
    """(C,), (N, C) or (N, C, d1, ...) scores -> (M, C) with one row per scored element."""
    if input.ndim == 0:
        raise ShapeError(f"{op}: expected input of shape (C,), (N, C) or (N, C, d1, ...), got a scalar")
    if input.ndim == 1:
        return input.reshape(1, input.shape[0])
    if input.ndim == 2:
        return input
    order = (0,) + tuple(range(2, input.ndim)) + (1,)
    return input.permute(order).reshape(-1, input.shape[1])


def _element_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of the per-element loss (and of index targets): input's shape without the class dim."""
    return input_shape[:1] + input_shape[2:] if len(input_shape) > 1 else ()


def _nll(op: str, scores: Tensor, target: Tensor, input_shape: tuple[int, ...], weight: Tensor | None,
         ignore_index: int, reduction: str, label_smoothing: float = 0.0, logits: bool = False) -> Tensor:
    """-log_probs[n, target[n]] * weight[target[n]] for (M, C) log-probabilities (or, with ``logits``, scores whose
    log_softmax they are) and class-index targets.

    Elements whose target is ``ignore_index`` contribute 0 and do not count in the mean, which divides by the sum of
    the weights of the counted elements. With label smoothing e, each element's loss is
    (1 - e) * nll + e / C * sum_c(-log_probs[n, c] * weight[c]).
    """
    num_classes = scores.shape[1]
    expected = _element_shape(input_shape)
    if target.shape != expected:
        alternative = f" or class probabilities of shape {input_shape}" if op == "cross_entropy" else ""
        raise ShapeError(f"{op}: target shape {target.shape} does not match input shape {input_shape}: expected "
                         f"class indices of shape {expected}{alternative}")
    if target.dtype.kind not in "iu":
        raise TypeError(f"{op}: expected integer class indices as target, got {target.dtype.name}")
    if weight is not None and weight.shape != (num_classes,):
        raise ShapeError(f"{op}: weight has shape {weight.shape} but the input {input_shape} has {num_classes} "
                         "classes")
    flat = target if target.ndim == 1 else target.reshape(-1)
    # validation reads the index values directly: it needs plain numbers, not graph nodes
    ignored_values = flat.data == ignore_index
    any_ignored = bool(ignored_values.any())
    counted = flat.data[~ignored_values] if any_ignored else flat.data
    if counted.size:
        low, high = int(counted.min()), int(counted.max())
        if low < 0 or high >= num_classes:
            raise OutOfRangeError(f"{op}: target contains class index {low if low < 0 else high}, but the input "
                             f"{input_shape} has {num_classes} classes (valid: 0..{num_classes - 1}, or "
                             f"ignore_index={ignore_index})")
    plain = weight is None and not any_ignored and label_smoothing == 0.0
    if plain and logits and flat.shape[0]:  # the common case of cross_entropy: one fused primitive
        loss = ops.CrossEntropy.apply(scores, flat.data, reduction)
        return loss.reshape(expected) if reduction == "none" else loss
    log_probs = scores.log_softmax(-1) if logits else scores
    rows = arange(flat.shape[0], device=flat.device)
    if plain:
        picked = log_probs[rows, flat]  # a gather and a sum
        if reduction == "mean":  # an empty batch gives NaN, as in PyTorch
            return picked.sum() * (-1.0 / flat.shape[0]) if flat.shape[0] else -picked.mean()
        if reduction == "sum":
            return -picked.sum()
        return (-picked).reshape(expected)
    ignored = flat == ignore_index
    safe_target = where(ignored, 0, flat) if any_ignored else flat  # any valid index; the weight zeroes it
    if weight is not None:
        element_weight = weight.detach().cast(log_probs.dtype)[safe_target]
        if any_ignored:
            element_weight = where(ignored, 0.0, element_weight)
    else:
        element_weight = (~ignored).cast(log_probs.dtype)
    loss = -log_probs[rows, safe_target] * element_weight
    if label_smoothing > 0.0:
        per_class = log_probs if weight is None else log_probs * weight.detach().cast(log_probs.dtype)
        smooth = -per_class.sum(-1)
        if any_ignored:
            smooth = where(ignored, 0.0, smooth)
        loss = loss * (1.0 - label_smoothing) + smooth * (label_smoothing / num_classes)
    if reduction == "none":
        return loss.reshape(expected)
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / element_weight.sum()


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
             ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class-index ``target`` under log-probabilities ``input`` ((N, C) or
    (N, C, d1, ...)): -input[n, target[n]] * weight[target[n]], see :func:`cross_entropy` for the options."""
    _check_reduction("nll_loss", reduction)
    return _nll("nll_loss", _classes_last("nll_loss", input), target, input.shape, weight, ignore_index, reduction)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                  ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy between logits ``input`` ((C,), (N, C) or (N, C, d1, ...)) and ``target``: = nll_loss of
    log_softmax over dim 1.

    ``target`` is either integer class indices of shape (N,) / (N, d1, ...), or float class probabilities of the
    input's shape. ``weight`` (C,) rescales classes; ``ignore_index`` marks index targets to skip;
    ``label_smoothing`` e mixes the target with the uniform distribution: (1 - e) * target + e / C.
    ``reduction="mean"`` divides by the summed weights of counted elements (index targets) or by the number of
    elements (probability targets).
    """
    _check_reduction("cross_entropy", reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ArgumentError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    scores = _classes_last("cross_entropy", input)
    if not dtypes.is_floating(target.dtype):
        return _nll("cross_entropy", scores, target, input.shape, weight, ignore_index, reduction,
                    label_smoothing, logits=True)
    log_probs = scores.log_softmax(-1)
    if target.shape != input.shape:
        raise ShapeError(f"cross_entropy: target shape {target.shape} does not match input shape {input.shape}: "
                         f"expected class indices of shape {_element_shape(input.shape)} or class probabilities "
                         f"of shape {input.shape}")
    num_classes = log_probs.shape[1]
    probs = _classes_last("cross_entropy", target)
    if label_smoothing > 0.0:
        probs = probs * (1.0 - label_smoothing) + label_smoothing / num_classes
    if weight is not None:
        if weight.shape != (num_classes,):
            raise ShapeError(f"cross_entropy: weight has shape {weight.shape} but the input {input.shape} has "
                             f"{num_classes} classes")
        probs = probs * weight.detach()
    loss = -(log_probs * probs).sum(-1)
    if reduction == "none":
        return loss.reshape(_element_shape(input.shape))
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                                     pos_weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """-[p y log(sigmoid(x)) + (1 - y) log(1 - sigmoid(x))] * weight, computed without overflow as

        (1 - y) x + (1 + (p - 1) y) softplus(-x),   softplus(-x) = log(1 + e^-x) = max(-x, 0) + log(1 + e^-|x|)

    where p is ``pos_weight`` (per class, broadcast along the last dim) or 1.
    """
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    _check_same_shape("binary_cross_entropy_with_logits", input, target)
    if target.dtype != input.dtype:
        target = target.cast(input.dtype)
    # |x| as x * sign with a constant sign (+1 at 0), and max(-x, 0) = (|x| - x) / 2: both pieces then take the same
    # branch at x = 0, so the gradient there is the true one (sigmoid(0) - y), which relu/abs subgradients would break
    sign = (input.detach() >= 0).cast(input.dtype) * 2.0 - 1.0
    abs_x = input * sign
    softplus_neg = (abs_x - input) * 0.5 + ((-abs_x).exp() + 1.0).log()
    if pos_weight is None:
        loss = (1.0 - target) * input + softplus_neg
    else:
        loss = (1.0 - target) * input + ((pos_weight - 1.0) * target + 1.0) * softplus_neg
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)
