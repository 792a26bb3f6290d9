"""What every cell function shares: the `CellParams` it is called with, the weighted product, sums and products.

A cell function is pure (see `xlstm_viz.wiring.block_types`):

    fn(x: dict[str, mx.array], w: Weights, state, p: CellParams) -> (output, new_state)

The built-in functions are attached to the cell registry by the block modules that use them
(`xlstm_viz.model.mlstm_block` for the 7B block's types).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import mlx.core as mx

Weights = Callable[[str], "mx.array | None"]


@dataclass(frozen=True)
class CellParams:
    """What a cell function reads besides its inputs, weights and state.

    params: the wiring's cell params (checkpoint-relative `weight` / `bias` paths, `num_heads`, ...); config: the
    model config of the block; mode: "chunkwise" or "recurrent"; trace: the observer asked this (memory) cell for
    its per-token statistics, returned as a third item (True: all of them, or a tuple naming the ones wanted)."""

    params: dict
    config: Any
    mode: str = "chunkwise"
    trace: bool | tuple = False
    # A neuron cell's interventions inside its recurrence (`Interventions.inside_hook`; None: none): the cell calls
    # intervene(values [B, T, hi - lo], lo, hi, t) on neurons lo..hi-1 (by id) at each step t (None: all T tokens at
    # once, for a layer without a path from its own previous output) before they feed anything; holding_only=True
    # applies only the kinds that set a value (zero, replace, patch), for a cell that clamps within a step.
    intervene: Any = None
    # W x + b already computed for this cell (a decode step's grouped projections, forward._grouped_products):
    # `weighted` returns it instead of multiplying again.
    product: Any = None

    def weight_path(self, kind: str) -> str:
        path = self.params.get("weight")
        if path is None:
            raise ValueError(f"a {kind!r} cell needs params['weight'] (a checkpoint weight of its block)")
        return path

    def bias_path(self, kind: str) -> str:
        """The bias the row names, else the one next to the weight (`x.weight` -> `x.bias`; absent -> no bias)."""
        return self.params.get("bias") or self.weight_path(kind).rsplit(".", 1)[0] + ".bias"


def linear(x: mx.array, weight: mx.array, bias: mx.array | None = None) -> mx.array:
    """y = x W^T (+ b); weights are stored [out, in] as in PyTorch.

    The product runs in the activations' dtype, which the model's compute_dtype sets: with float32 activations
    (compute_dtype="float32", the default) bfloat16 weights are widened inside the product, so a bf16 checkpoint
    halves memory without rounding every activation to 8 mantissa bits (which moved saturated-gate logits by up to ~8
    on the parity fixtures); with bf16 activations ("bfloat16"/"auto") it is a bf16 matmul, as the official autocast.
    """
    if weight.dtype != x.dtype:
        weight = weight.astype(x.dtype)
        bias = None if bias is None else bias.astype(x.dtype)
    if bias is not None:
        return mx.addmm(bias, x, weight.T)
    return x @ weight.T


def one(x: dict[str, mx.array], kind: str) -> mx.array:
    """The single input of a one-input cell; any other count is an error naming the inputs."""
    if len(x) != 1:
        raise ValueError(f"a {kind!r} cell takes one input, got {len(x)}: {sorted(x)}")
    (value,) = x.values()
    return value


def weighted(x: dict[str, mx.array], w: Weights, p: CellParams, kind: str) -> mx.array:
    """W x + b for a cell whose params name its weight (and, optionally, its bias)."""
    if p.product is not None:
        return p.product
    return linear(one(x, kind), w(p.weight_path(kind)), w(p.bias_path(kind)))


def total(x: dict[str, mx.array]) -> mx.array:
    """Residual sums in connection order, so the default wiring adds exactly like the official code."""
    values = iter(x.values())
    out = next(values)
    for value in values:
        out = out + value
    return out


def product(x: dict[str, mx.array]) -> mx.array:
    values = iter(x.values())
    out = next(values)
    for value in values:
        out = out * value
    return out


def headwise(x: mx.array, w: mx.array, b: mx.array | None = None) -> mx.array:
    """LinearHeadwiseExpand: block-diagonal y_h = W_h x_h, W [NB, out, in] over NB consecutive feature blocks."""
    nb, _, din = w.shape
    y = mx.einsum("...hd,hod->...ho", x.reshape(*x.shape[:-1], nb, din), w)
    y = y.reshape(*x.shape[:-1], -1)
    return y if b is None else y + b


def causal_conv(x: mx.array, w: mx.array, b: mx.array, history: mx.array) -> tuple[mx.array, mx.array]:
    """Depthwise causal Conv1d (CausalConv1d): y_t = b + sum_j w[:, 0, j] x_{t-KS+1+j}, x [B, S, F], w [F, 1, KS].

    `history` holds the KS-1 inputs before x ([B, KS-1, F], zeros at the start); returns y and the new history."""
    ks = w.shape[-1]
    xp = mx.concatenate([history, x], axis=1)
    S = x.shape[1]
    y = b + sum(w[:, 0, j] * xp[:, j : j + S] for j in range(ks))
    return y, xp[:, xp.shape[1] - (ks - 1) :]
