"""The xLSTM-7B block: pre-norm residual around the mLSTM layer, then around a SwiGLU feed-forward.

Parameters carry the checkpoint's names (`norm_mlstm`, `mlstm_layer.q`, ..., `ffn.proj_down`) so that loading is a
rename-free match. The computation is written as *cells*, one small function each, named like the cell wiring
(`mlstm.q`, `mlstm.memory`, `ffn.out`, ...). The executor (xlstm_viz.execution) runs them in the wiring's order and
hands each cell the values that flow along its incoming connections (`x`, keyed by source cell) and the weights as
the wiring masks them (`w(path)`), so wiring edits change the computation without touching the parameters.
"""

from __future__ import annotations

from typing import Callable

import mlx.core as mx
import mlx.nn as nn

from xlstm_viz.config import XLSTMConfig
from xlstm_viz.model import mlstm_cell
from xlstm_viz.model.activations import sigmoid, silu, soft_cap
from xlstm_viz.model.mlstm_cell import MemoryTrace, MLSTMState
from xlstm_viz.model.norms import MultiHeadLayerNorm, RMSNorm, multihead_layer_norm, rms_norm

Weights = Callable[[str], mx.array]


class CellContext:
    """What a cell may need besides its inputs: evaluation mode, the block's recurrent state, trace requests."""

    __slots__ = ("mode", "state", "want_memory_trace", "memory_trace")

    def __init__(self, mode: str, state: MLSTMState | None, want_memory_trace: bool = False):
        self.mode = mode
        self.state = state
        self.want_memory_trace = want_memory_trace
        self.memory_trace: MemoryTrace | None = None


def linear(x: mx.array, weight: mx.array, bias: mx.array | None = None) -> mx.array:
    """y = x W^T (+ b); weights are stored [out, in] as in PyTorch.

    Activations stay float32 whatever the weight dtype: bfloat16 weights are widened inside the product, so a bf16
    checkpoint halves memory without rounding every activation to 8 mantissa bits (which moved saturated-gate logits
    by up to ~8 on the parity fixtures).
    """
    if weight.dtype != x.dtype:
        weight = weight.astype(x.dtype)
        bias = None if bias is None else bias.astype(x.dtype)
    if bias is not None:
        return mx.addmm(bias, x, weight.T)
    return x @ weight.T


def _sum(x: dict[str, mx.array]) -> mx.array:
    """Residual sums in connection order, so the default wiring adds exactly like the official code."""
    values = iter(x.values())
    total = next(values)
    for value in values:
        total = total + value
    return total


def _product(x: dict[str, mx.array]) -> mx.array:
    values = iter(x.values())
    total = next(values)
    for value in values:
        total = total * value
    return total


def _heads(x: mx.array, num_heads: int) -> mx.array:
    """[B, S, NH*DH] -> [B, NH, S, DH]; head h is the contiguous slice [h*DH, (h+1)*DH)."""
    B, S, F = x.shape
    return x.reshape(B, S, num_heads, F // num_heads).transpose(0, 2, 1, 3)


class MLSTMLayer(nn.Module):
    def __init__(self, config: XLSTMConfig):
        super().__init__()
        D, bias = config.embedding_dim, config.use_bias
        self.q = nn.Linear(D, config.qk_dim, bias=bias)
        self.k = nn.Linear(D, config.qk_dim, bias=bias)
        self.v = nn.Linear(D, config.v_dim, bias=bias)
        self.ogate_preact = nn.Linear(D, config.v_dim, bias=bias)
        self.igate_preact = nn.Linear(D, config.num_heads, bias=True)  # gates always have a bias
        self.fgate_preact = nn.Linear(D, config.num_heads, bias=True)
        self.multihead_norm = MultiHeadLayerNorm(config.num_heads, config.v_dim, config.norm_eps, config.use_bias)
        self.out_proj = nn.Linear(config.v_dim, D, bias=bias)


class FeedForward(nn.Module):
    def __init__(self, config: XLSTMConfig):
        super().__init__()
        D, F, bias = config.embedding_dim, config.ffn_dim, config.use_bias
        self.proj_up_gate = nn.Linear(D, F, bias=bias)
        self.proj_up = nn.Linear(D, F, bias=bias)
        self.proj_down = nn.Linear(F, D, bias=bias)


class MLSTMBlock(nn.Module):
    block_type = "mlstm"

    def __init__(self, config: XLSTMConfig):
        super().__init__()
        self.norm_mlstm = RMSNorm(config.embedding_dim, config.norm_eps, config.use_bias)
        self.mlstm_layer = MLSTMLayer(config)
        self.norm_ffn = RMSNorm(config.embedding_dim, config.norm_eps, config.use_bias)
        self.ffn = FeedForward(config)
        self._cfg = (config.num_heads, config.norm_eps, config.eps, config.gate_soft_cap, config.chunk_size)
        self._cells = {
            "mlstm.norm_in": self._norm_in,
            "mlstm.q": self._projection("mlstm_layer.q"),
            "mlstm.k": self._projection("mlstm_layer.k"),
            "mlstm.v": self._projection("mlstm_layer.v"),
            "mlstm.igate": self._gate("mlstm_layer.igate_preact"),
            "mlstm.fgate": self._gate("mlstm_layer.fgate_preact"),
            "mlstm.ogate": self._ogate,
            "mlstm.memory": self._memory,
            "mlstm.norm": self._multihead_norm,
            "mlstm.h": lambda x, w, ctx: _product(x),
            "mlstm.out": self._projection("mlstm_layer.out_proj"),
            "mid": lambda x, w, ctx: _sum(x),
            "ffn.norm_in": self._ffn_norm_in,
            "ffn.gate": self._ffn_gate,
            "ffn.up": self._projection("ffn.proj_up"),
            "ffn.h": lambda x, w, ctx: _product(x),
            "ffn.out": self._projection("ffn.proj_down"),
            "out": lambda x, w, ctx: _sum(x),
        }

    # -- parameter access by checkpoint-relative path, e.g. "mlstm_layer.q.weight" --
    def param(self, path: str) -> mx.array | None:
        node = self
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                return None
        return node

    def cell_names(self) -> list[str]:
        return list(self._cells)

    def run_cell(self, local: str, x: dict[str, mx.array], w: Weights, ctx: CellContext,
                 cell_type: str | None = None, params: dict | None = None) -> mx.array:
        cell = self._cells.get(local)
        if cell is not None:
            return cell(x, w, ctx)
        # A cell added by a wiring edit: computed by its registered type from the weight its params name.
        fn = _TYPE_FUNCTIONS.get(cell_type)
        if fn is None:
            raise ValueError(
                f"cell {local!r} of type {cell_type!r} cannot run as an added cell; types that can: "
                f"{sorted(_TYPE_FUNCTIONS)}")
        return fn(self, x, w, params or {})

    def new_state(self, batch: int) -> MLSTMState:
        layer = self.mlstm_layer
        nh = self._cfg[0]
        return MLSTMState.zeros(batch, nh, layer.q.weight.shape[0] // nh, layer.v.weight.shape[0] // nh)

    # -- cells --
    def _norm_in(self, x, w, ctx):
        (value,) = x.values()
        return rms_norm(value, w("norm_mlstm.weight"), self._cfg[1], self.param("norm_mlstm.bias"))

    def _ffn_norm_in(self, x, w, ctx):
        (value,) = x.values()
        return rms_norm(value, w("norm_ffn.weight"), self._cfg[1], self.param("norm_ffn.bias"))

    def _projection(self, module: str):
        def cell(x, w, ctx):
            (value,) = x.values()
            return linear(value, w(f"{module}.weight"), self.param(f"{module}.bias"))

        return cell

    def _gate(self, module: str):
        def cell(x, w, ctx):  # i~, f~ = cap_15(W x + b), one per head
            (value,) = x.values()
            return soft_cap(linear(value, w(f"{module}.weight"), self.param(f"{module}.bias")), self._cfg[3])

        return cell

    def _ogate(self, x, w, ctx):  # o = sigma(W_o x)
        (value,) = x.values()
        return sigmoid(linear(value, w("mlstm_layer.ogate_preact.weight"), self.param("mlstm_layer.ogate_preact.bias")))

    def _ffn_gate(self, x, w, ctx):  # SwiGLU: the gate branch goes through SiLU
        (value,) = x.values()
        return silu(linear(value, w("ffn.proj_up_gate.weight"), self.param("ffn.proj_up_gate.bias")))

    def _memory(self, x, w, ctx: CellContext):
        num_heads, _, eps, _, chunk = self._cfg
        q, k, v = (_heads(x[f"mlstm.{name}"], num_heads).astype(mx.float32) for name in "qkv")
        i = x["mlstm.igate"].astype(mx.float32).transpose(0, 2, 1)  # [B, NH, S]
        f = x["mlstm.fgate"].astype(mx.float32).transpose(0, 2, 1)
        state = ctx.state if ctx.state is not None else self.new_state(q.shape[0])
        if ctx.mode == "recurrent":
            h, ctx.state, trace = mlstm_cell.recurrent(q, k, v, i, f, state, eps, ctx.want_memory_trace)
        else:
            h, ctx.state, trace = mlstm_cell.chunkwise(q, k, v, i, f, state, eps, chunk, ctx.want_memory_trace)
        ctx.memory_trace = trace
        B, NH, S, DV = h.shape
        return h.transpose(0, 2, 1, 3).reshape(B, S, NH * DV)  # heads concatenated, as the norm expects

    def _multihead_norm(self, x, w, ctx):
        (value,) = x.values()
        out = multihead_layer_norm(
            value, w("mlstm_layer.multihead_norm.weight"), self._cfg[0], self._cfg[1],
            self.param("mlstm_layer.multihead_norm.bias"),
        )
        return out


def _one(x: dict[str, mx.array], cell_type: str) -> mx.array:
    if len(x) != 1:
        raise ValueError(f"a {cell_type!r} cell takes one input, got {len(x)}: {sorted(x)}")
    (value,) = x.values()
    return value


def _weighted(kind: str, post):
    def fn(block: MLSTMBlock, x, w, params):
        path = params.get("weight")
        if path is None:
            raise ValueError(f"an added {kind!r} cell needs params['weight'] (a checkpoint weight of its block)")
        bias = block.param(path.rsplit(".", 1)[0] + ".bias")
        return post(block, linear(_one(x, kind), w(path), bias))

    return fn


def _added_norm(kind: str):
    def fn(block: MLSTMBlock, x, w, params):
        path = params.get("weight")
        bias = None if path is None else block.param(path.rsplit(".", 1)[0] + ".bias")
        weight = None if path is None else w(path)
        value = _one(x, kind)
        if kind == "rmsnorm":
            return rms_norm(value, weight, block._cfg[1], bias)
        return multihead_layer_norm(value, weight, int(params.get("num_heads", block._cfg[0])), block._cfg[1], bias)

    return fn


# Cell types (wiring.block_types) that a cell added to a wiring runs by: the same arithmetic as the named cells.
_TYPE_FUNCTIONS = {
    "block_input": lambda block, x, w, params: _one(x, "block_input"),
    "linear": _weighted("linear", lambda block, y: y),
    "gate": _weighted("gate", lambda block, y: soft_cap(y, block._cfg[3])),
    "output_gate": _weighted("output_gate", lambda block, y: sigmoid(y)),
    "linear_silu": _weighted("linear_silu", lambda block, y: silu(y)),
    "rmsnorm": _added_norm("rmsnorm"),
    "multihead_norm": _added_norm("multihead_norm"),
    "product": lambda block, x, w, params: _product(x),
    "residual": lambda block, x, w, params: _sum(x),
}
