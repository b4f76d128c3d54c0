"""``MultiheadAttention`` with PyTorch's parameters, layout and masks, so a ``torch.nn.MultiheadAttention`` state
dict loads as is (``in_proj_weight``, ``in_proj_bias``, ``out_proj.weight``, ``out_proj.bias``; ``q_proj_weight``,
``k_proj_weight``, ``v_proj_weight`` when kdim/vdim differ from embed_dim; ``bias_k``, ``bias_v``).

The math, per head h (head_dim = embed_dim / num_heads):

    Q = query W_q^T + b_q,  K = key W_k^T + b_k,  V = value W_v^T + b_v   (W_q, W_k, W_v: in_proj_weight's thirds)
    head_h = softmax(Q_h K_h^T / sqrt(head_dim) + mask) V_h
    out = concat_h(head_h) W_o^T + b_o                                      (out_proj)

Masks follow PyTorch's MultiheadAttention (opposite to scaled_dot_product_attention's bool convention): a bool
``attn_mask`` or ``key_padding_mask`` is True where attention is NOT allowed; a float mask is added to the scores.
"""
from __future__ import annotations

import math
from typing import Any

from .. import dtype as dtypes
from ..device import Device
from ..tensor import Tensor, cat, empty, where, zeros
from . import functional as F
from . import init
from .linear import Linear
from .module import Module
from .parameter import Parameter


def _additive(mask: Tensor | None, dtype: Any, name: str) -> Tensor | None:
    """PyTorch's ``_canonical_mask``: a bool mask becomes 0 where allowed and -inf where True; a float mask stays
    (converted to the query's dtype)."""
    if mask is None:
        return None
    if mask.dtype == dtypes.bool_:
        return where(mask, -math.inf, 0.0).cast(dtype)
    if not dtypes.is_floating(mask.dtype):
        raise TypeError(f"only bool and floating types of {name} are supported, got {mask.dtype.name}")
    return mask.cast(dtype)


class MultiheadAttention(Module):
    """Attention of ``num_heads`` heads over (L, N, E) queries and (S, N, kdim)/(S, N, vdim) keys/values
    ((N, L, E) with ``batch_first``; unbatched (L, E) works too).

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)`` returns ``(attn_output, attn_weights)``: the weights are
    (N, L, S) averaged over heads, (N, num_heads, L, S) with ``average_attn_weights=False``, or None with
    ``need_weights=False`` (then the heads run through the fused ``F.scaled_dot_product_attention``). ``attn_mask``
    is (L, S) or (N * num_heads, L, S); ``key_padding_mask`` is (N, S). ``is_causal`` is only a hint, as in
    PyTorch: the causal ``attn_mask`` must be given too. ``dropout`` applies to the attention weights in training.

    Initialisation as PyTorch: in_proj (or q/k/v_proj) weights xavier_uniform_, in_proj_bias and out_proj.bias
    zero, out_proj.weight as a Linear's, bias_k/bias_v xavier_normal_.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device: str | Device | None = None,
                 dtype: Any = None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got embed_dim={embed_dim} and "
                             f"num_heads={num_heads} instead")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim must be divisible by num_heads (got embed_dim={embed_dim}, "
                             f"num_heads={num_heads})")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        make = lambda *shape: Parameter(empty(*shape, device=device, dtype=dtype))  # noqa: E731
        if self._qkv_same_embed_dim:
            self.in_proj_weight = make(3 * embed_dim, embed_dim)
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = make(embed_dim, embed_dim)
            self.k_proj_weight = make(embed_dim, self.kdim)
            self.v_proj_weight = make(embed_dim, self.vdim)
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = make(3 * embed_dim)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        if add_bias_kv:
            self.bias_k = make(1, 1, embed_dim)
            self.bias_v = make(1, 1, embed_dim)
        else:
            self.register_parameter("bias_k", None)
            self.register_parameter("bias_v", None)
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for weight in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
            init.xavier_normal_(self.bias_v)

    def _projections(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        e = self.embed_dim
        b = self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:e], b[e:2 * e], b[2 * e:])
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            if query is key and key is value:  # self-attention: one matmul for all three
                return F.linear(query, w, b).chunk(3, -1)
            wq, wk, wv = w[:e], w[e:2 * e], w[2 * e:]
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        batched = query.ndim == 3
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise RuntimeError(f"MultiheadAttention: query, key and value must all be 3-D (batched) or 2-D "
                               f"(unbatched), got {query.shape}, {key.shape} and {value.shape}")
        if is_causal and attn_mask is None:
            raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer module "
                               "method `generate_square_subsequent_mask` to create this mask.")
        if not batched:  # (L, E) -> (L, 1, E); masks get their batch dim too
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:  # (N, L, E) -> (L, N, E), the internal layout; keeps `query is key is value`
            same_kv, same_qk = key is value, query is key
            query = query.transpose(0, 1)
            key = query if same_qk else key.transpose(0, 1)
            value = key if same_kv else value.transpose(0, 1)
        length, batch, e = query.shape
        source = key.shape[0]
        if e != self.embed_dim:
            raise RuntimeError(f"was expecting embedding dimension of {self.embed_dim}, but got {e}")
        if key.shape[:2] != value.shape[:2] or key.shape[1] != batch:
            raise RuntimeError(f"key shape {key.shape} and value shape {value.shape} do not fit query shape "
                               f"{query.shape}")
        dtype = query.dtype
        attn_mask = _additive(attn_mask, dtype, "attn_mask")
        key_padding_mask = _additive(key_padding_mask, dtype, "key_padding_mask")
        if attn_mask is not None:
            expected = [(length, source), (batch * self.num_heads, length, source)]
            if attn_mask.shape not in expected:
                raise RuntimeError(f"The shape of attn_mask is {attn_mask.shape}, but should be {expected[0]} or "
                                   f"{expected[1]}")
            attn_mask = attn_mask if attn_mask.ndim == 3 else attn_mask.unsqueeze(0)
        if key_padding_mask is not None and key_padding_mask.shape != (batch, source):
            raise RuntimeError(f"expecting key_padding_mask shape of {(batch, source)}, but got "
                               f"{key_padding_mask.shape}")

        q, k, v = self._projections(query, key, value)  # (L, N, E), (S, N, E), (S, N, E)
        if self.bias_k is not None:  # one more key/value position, always attended
            k = cat([k, self.bias_k.expand(1, batch, e)])
            v = cat([v, self.bias_v.expand(1, batch, e)])
            attn_mask = None if attn_mask is None else attn_mask.pad((0, 1))
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.pad((0, 1))
        heads, hd = self.num_heads, self.head_dim
        q = q.reshape(length, batch * heads, hd).transpose(0, 1)  # (N H, L, hd)
        k = k.reshape(k.shape[0], batch * heads, hd).transpose(0, 1)
        v = v.reshape(v.shape[0], batch * heads, hd).transpose(0, 1)
        if self.add_zero_attn:  # one more all-zero key/value position
            k = cat([k, zeros(batch * heads, 1, hd, dtype=k.dtype, device=k.device)], dim=1)
            v = cat([v, zeros(batch * heads, 1, hd, dtype=v.dtype, device=v.device)], dim=1)
            attn_mask = None if attn_mask is None else attn_mask.pad((0, 1))
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.pad((0, 1))
        total = k.shape[1]
        if key_padding_mask is not None:  # (N, S) -> (N H, 1, S), merged into attn_mask
            padding = key_padding_mask.reshape(batch, 1, 1, total).expand(batch, heads, 1, total)
            padding = padding.reshape(batch * heads, 1, total)
            attn_mask = padding if attn_mask is None else attn_mask + padding
        dropout_p = self.dropout if self.training else 0.0

        if need_weights:
            scores = (q * (1.0 / math.sqrt(hd))) @ k.transpose(1, 2)  # (N H, L, S)
            if attn_mask is not None:
                scores = scores + attn_mask
            weights = scores.softmax(-1)
            if dropout_p > 0.0:
                weights = F.dropout(weights, dropout_p, True)
            out = weights @ v  # (N H, L, hd)
        else:
            mask = None if attn_mask is None else attn_mask.reshape(-1, heads, attn_mask.shape[1], total) \
                if attn_mask.shape[0] != 1 else attn_mask
            out = F.scaled_dot_product_attention(q.reshape(batch, heads, length, hd),
                                                 k.reshape(batch, heads, total, hd),
                                                 v.reshape(batch, heads, total, hd), attn_mask=mask,
                                                 dropout_p=dropout_p).reshape(batch * heads, length, hd)
        out = out.transpose(0, 1).reshape(length, batch, e)
        out = self.out_proj(out)
        if batched and self.batch_first:
            out = out.transpose(0, 1)
        if not batched:
            out = out.squeeze(1)
        if not need_weights:
            return out, None
        weights = weights.reshape(batch, heads, length, total)
        if average_attn_weights:
            weights = weights.mean(1)
        if not batched:
            weights = weights.squeeze(0)
        return out, weights
