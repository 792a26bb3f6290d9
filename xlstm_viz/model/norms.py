"""Normalisations of xLSTM-7B: RMSNorm before each sub-layer and a per-head LayerNorm after the mLSTM cell."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


def _per_row(stat: mx.array) -> mx.array:
    """A per-row statistic (reduced without keepdims) as a column to broadcast against its rows.

    mx.compile fuses a keepdims statistic's rsqrt into the broadcasting kernel after the broadcast, so the CPU
    backend evaluated one rsqrt per element instead of per row (MLX's rsqrt is scalar code there): a compiled
    RMSNorm over [512, 256] took 2.3x its time this way, and the D=256 prefill 4.7% more CPU time (one process,
    alternating, 2-core CI machine). expand_dims is not fused, so the statistic's arithmetic stays on the reduced
    array; the values are bit-identical.
    """
    return mx.expand_dims(stat, -1)


def rms_norm(x: mx.array, weight: mx.array | None, eps: float, bias: mx.array | None = None) -> mx.array:
    """x / sqrt(mean(x^2) + eps) * w, reduced in float32 (norm_reduction_force_float32) and rounded to x's dtype
    before the weight multiplies, as the official. One fused kernel (mx.fast.rms_norm, bit for bit the composed
    ops on the CPU) instead of a reduction and two elementwise launches: a 7B decode step is bound by its ~25
    launches per block, not by their bytes (on a GPU; see below for the CPU)."""
    fused = weight is None or weight.dtype == x.dtype  # a bf16 weight on float32 activations promotes after
    if mx.default_device() == mx.cpu and x.size > x.shape[-1]:
        # The CPU has no rms_norm kernel: mx.fast runs its composed fallback, and under mx.compile that fallback's
        # keepdims rsqrt is fused after the broadcast (one rsqrt per element). The same ops with the statistic per
        # row: bit-identical, 1.7-1.8x less CPU time compiled at [512, 256] and [512, 1024]. A single row (a decode
        # step) keeps the fallback, one kernel there instead of two.
        xf = x.astype(mx.float32)
        y = (xf * _per_row(mx.rsqrt(mx.mean(mx.square(xf), axis=-1) + eps))).astype(x.dtype)
        if weight is not None:
            y = y * weight
    else:
        y = mx.fast.rms_norm(x, weight if fused else None, eps)
        if weight is not None and not fused:
            y = y * weight
    if bias is not None:
        y = y + bias
    return y


def multihead_layer_norm(
    h: mx.array, weight: mx.array | None, num_heads: int, eps: float, bias: mx.array | None = None
) -> mx.array:
    """Per-head LayerNorm (mean-centred, biased variance) over each head's DV features; h is [..., NH*DV].

    The weight is flat (NH*DV), as the checkpoint stores it. Not an RMSNorm: using one moves 7B-style logits by ~18.
    """
    shape = h.shape
    x = h.astype(mx.float32).reshape(*shape[:-1], num_heads, shape[-1] // num_heads)
    # (x - mean) / sqrt(var + eps) per head in one fused kernel (bit for bit the composed ops on the CPU)
    y = mx.fast.layer_norm(x, None, None, eps).reshape(shape).astype(h.dtype)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


class RMSNorm(nn.Module):
    def __init__(self, dims: int, eps: float, use_bias: bool = False):
        super().__init__()
        self.weight = mx.ones((dims,))
        if use_bias:
            self.bias = mx.zeros((dims,))
        self.eps = eps

    def __call__(self, x: mx.array) -> mx.array:
        return rms_norm(x, self.weight, self.eps, self.get("bias"))


class MultiHeadLayerNorm(nn.Module):
    def __init__(self, num_heads: int, dims: int, eps: float, use_bias: bool = False):
        super().__init__()
        self.weight = mx.ones((dims,))
        if use_bias:
            self.bias = mx.zeros((dims,))
        self.num_heads = num_heads
        self.eps = eps

    def __call__(self, h: mx.array) -> mx.array:
        return multihead_layer_norm(h, self.weight, self.num_heads, self.eps, self.get("bias"))


# The original xLSTM's norms (xlstm 2.0.6 components/ln.py): eps 1e-5, no bias, the weight stored as an offset from 1.
LN_EPS = 1e-5


def layer_norm(x: mx.array, w: mx.array | None, eps: float = LN_EPS) -> mx.array:
    """LayerNorm with biased variance and no bias; scale = 1 + w (the checkpoint stores the offset w)."""
    mean = mx.mean(x, axis=-1, keepdims=True)
    var = mx.mean(mx.square(x - mean), axis=-1)
    y = (x - mean) * _per_row(mx.rsqrt(var + eps))
    return y if w is None else y * (1.0 + w)


def group_norm(x: mx.array, w: mx.array | None, num_heads: int, eps: float = LN_EPS) -> mx.array:
    """MultiHeadLayerNorm: a LayerNorm per head over its DH features of x [..., NH*DH], then the flat 1 + w."""
    shape = x.shape
    y = layer_norm(x.reshape(*shape[:-1], num_heads, shape[-1] // num_heads), None, eps).reshape(shape)
    return y if w is None else y * (1.0 + w)
