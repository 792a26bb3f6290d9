"""The xLSTM-7B block: pre-norm residual around the mLSTM layer, then around a SwiGLU feed-forward.

    x~     = RMSNorm(x) w_in                                            mlstm.norm_in
    q, k, v = W_q x~, W_k x~, W_v x~                                     mlstm.q / .k / .v
    i~, f~ = cap_15(W_i x~ + b_i), cap_15(W_f x~ + b_f)  (one per head)  mlstm.igate / .fgate
    o      = sigma(W_o x~)                                               mlstm.ogate
    h~     = mLSTM(q, k, v, i~, f~; C, n, m)   (mlstm_cell.py)           mlstm.memory
    h      = o * MultiHeadLayerNorm(h~) w                                mlstm.norm, mlstm.h
    y      = x + W_out h                                                 mlstm.out, mid
    out    = y + W_down(SiLU(W_g RMSNorm(y)) * W_u RMSNorm(y))            ffn.norm_in, ffn.gate/up/h/out, out

The topology (cells, connections, checkpoint names = probe names) is the "mlstm" block table in
`xlstm_viz.wiring.block_types`; this file holds the equations, as one pure function per cell type, and the
nn.Module whose parameters carry the checkpoint's names (`norm_mlstm`, `mlstm_layer.q`, ..., `ffn.proj_down`), so
loading is a rename-free match. The model's forward (`xlstm_viz.model.forward`) runs the cells in the wiring's order
and hands each one the values along its incoming connections and the weights as the wiring masks them (`w(path)`), so
wiring edits change the computation without touching the parameters. A cell added to a wiring runs by its type's
function, from the weight its params name: the same arithmetic as the table's cells.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from xlstm_viz.config import XLSTMConfig
from xlstm_viz.model import mlstm_cell, mlstm_kernels
from xlstm_viz.model.activations import sigmoid, silu, soft_cap
from xlstm_viz.model.cells import CellParams, Weights, one, product, total, weighted
from xlstm_viz.model.mlstm_cell import MLSTMState
from xlstm_viz.model.norms import MultiHeadLayerNorm, RMSNorm, multihead_layer_norm, rms_norm
from xlstm_viz.wiring.block_types import attach_block, attach_cell_function


# -- cell functions: (x, w, state, p) -> (output, new_state) --

def block_input(x, w: Weights, state, p: CellParams):
    return one(x, "block_input"), None


def rmsnorm(x, w, state, p):  # x / rms(x) * w (+ b)
    path = p.params.get("weight")
    weight = None if path is None else w(path)
    bias = None if path is None else w(p.bias_path("rmsnorm"))
    return rms_norm(one(x, "rmsnorm"), weight, p.config.norm_eps, bias), None


def linear_cell(x, w, state, p):  # W x (+ b)
    return weighted(x, w, p, "linear"), None


def gate(x, w, state, p):  # i~, f~ = cap_15(W x + b), one per head
    return soft_cap(weighted(x, w, p, "gate"), p.config.gate_soft_cap), None


def output_gate(x, w, state, p):  # o = sigma(W_o x)
    return sigmoid(weighted(x, w, p, "output_gate")), None


def linear_silu(x, w, state, p):  # SwiGLU: the gate branch goes through SiLU
    return silu(weighted(x, w, p, "linear_silu")), None


def multihead_norm(x, w, state, p):  # per-head LayerNorm(h) * w (+ b)
    path = p.params.get("weight")
    weight = None if path is None else w(path)
    bias = None if path is None else w(p.bias_path("multihead_norm"))
    num_heads = int(p.params.get("num_heads", p.config.num_heads))
    return multihead_layer_norm(one(x, "multihead_norm"), weight, num_heads, p.config.norm_eps, bias), None


def product_cell(x, w, state, p):
    return product(x), None


def residual(x, w, state, p):
    return total(x), None


def _heads(x: mx.array, num_heads: int) -> mx.array:
    """[B, S, NH*DH] -> [B, NH, S, DH]; head h is the contiguous slice [h*DH, (h+1)*DH)."""
    B, S, F = x.shape
    return x.reshape(B, S, num_heads, F // num_heads).transpose(0, 2, 1, 3)


# The memory cell's inputs by role: the cells of the table that feed it.
MEMORY_INPUTS = ("mlstm.q", "mlstm.k", "mlstm.v", "mlstm.igate", "mlstm.fgate")


def mlstm_memory(x, w, state: MLSTMState | None, p: CellParams):
    """h~ = mLSTM(q, k, v, i~, f~) from the state (C, n, m); returns (h~ [B, S, NH*DV], new state), and the
    per-token MemoryTrace as a third item when p.trace (chunkwise: reconstructed in closed form)."""
    missing = [name for name in MEMORY_INPUTS if name not in x]
    if missing:
        raise ValueError(f"the mLSTM memory cell needs inputs from {list(MEMORY_INPUTS)}; missing {missing}")
    num_heads = int(p.params.get("num_heads", p.config.num_heads))
    if p.mode == "recurrent" and not p.trace and (x["mlstm.q"].ndim == 2 or x["mlstm.q"].shape[1] == 1):
        return _memory_step(x, state, num_heads, p)
    # q, k, v stay in the activation dtype (bf16 under compute_dtype="bfloat16", as the official autocast hands
    # them to its kernel); the cell widens them where it multiplies, and its states and gates are float32.
    q, k, v = (_heads(x[name], num_heads) for name in MEMORY_INPUTS[:3])
    act_dtype = q.dtype
    i = x["mlstm.igate"].astype(mx.float32).transpose(0, 2, 1)  # [B, NH, S]
    f = x["mlstm.fgate"].astype(mx.float32).transpose(0, 2, 1)
    if state is None:
        state = MLSTMState.zeros(q.shape[0], num_heads, q.shape[-1], v.shape[-1])
    if p.params.get("scale_k"):
        # The original xLSTM's cell scales k by 1/sqrt(DH) where this one scales q: passing q*sqrt(DH) and
        # k/sqrt(DH) makes q^T C and q^T n the official ones and C, n the official states.
        scale = q.shape[-1] ** 0.5
        q, k = q * scale, k / scale
    if p.mode == "recurrent":
        h, state, trace = mlstm_cell.recurrent(q, k, v, i, f, state, p.config.eps, p.trace, mlstm_kernels.recurrent_step)
    else:
        h, state, trace = mlstm_cell.chunkwise(q, k, v, i, f, state, p.config.eps, p.config.chunk_size, p.trace)
    B, NH, S, DV = h.shape
    h = h.astype(act_dtype)  # the official kernel returns h in its input dtype
    h = h.transpose(0, 2, 1, 3).reshape(B, S, NH * DV)  # heads concatenated, as the norm expects
    return (h, state, trace) if p.trace else (h, state)


def _memory_step(x, state: MLSTMState | None, num_heads: int, p: CellParams):
    """One token (a decode step): mlstm_memory without the sequence axis. q [B, NH*DH] or [B, 1, NH*DH] is [B, NH,
    DH] by a reshape alone, so the per-head transposes, the per-token slices and the stack of `mlstm_cell.recurrent`
    drop out: a compiled 7B decode step is host-bound on its graph's nodes (benchmarks/decode_host.py). The output
    keeps the input's shape ([B, NH*DV] or [B, 1, NH*DV])."""
    q, k, v = (x[name] for name in MEMORY_INPUTS[:3])
    lead, B = q.shape[:-1], q.shape[0]
    q, k, v = (a.reshape(B, num_heads, a.shape[-1] // num_heads) for a in (q, k, v))
    i, f = (x[name].astype(mx.float32).reshape(B, num_heads, 1) for name in MEMORY_INPUTS[3:])
    if state is None:
        state = MLSTMState.zeros(B, num_heads, q.shape[-1], v.shape[-1])
    if p.params.get("scale_k"):  # the original mLSTM's k / sqrt(DH), as in mlstm_memory
        scale = q.shape[-1] ** 0.5
        q, k = q * scale, k / scale
    h, state = mlstm_kernels.recurrent_step(q, k, v, i, f, state, p.config.eps)  # mlstm_cell.recurrent_step's eqs.
    return h.astype(x["mlstm.q"].dtype).reshape(*lead, -1), state


for _name, _fn in (("block_input", block_input), ("rmsnorm", rmsnorm), ("linear", linear_cell), ("gate", gate),
                   ("output_gate", output_gate), ("linear_silu", linear_silu), ("multihead_norm", multihead_norm),
                   ("product", product_cell), ("residual", residual)):
    attach_cell_function(_name, _fn)
attach_cell_function("mlstm_memory", mlstm_memory, traces=True)


# -- the module: parameters under the checkpoint's names --

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


def param(module: nn.Module, path: str) -> mx.array | None:
    """The parameter at checkpoint-relative `path` (e.g. "mlstm_layer.q.weight"), None where there is none."""
    node = module
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


class MLSTMBlock(nn.Module):
    block_type = "mlstm"

    def __init__(self, config: XLSTMConfig):
        super().__init__()
        self.norm_mlstm = RMSNorm(config.embedding_dim, config.norm_eps, config.use_bias)
        self.mlstm_layer = MLSTMLayer(config)
        self.norm_ffn = RMSNorm(config.embedding_dim, config.norm_eps, config.use_bias)
        self.ffn = FeedForward(config)
        self._num_heads = config.num_heads

    def param(self, path: str) -> mx.array | None:
        return param(self, path)

    def new_state(self, batch: int) -> MLSTMState:
        layer, nh = self.mlstm_layer, self._num_heads
        return MLSTMState.zeros(batch, nh, layer.q.weight.shape[0] // nh, layer.v.weight.shape[0] // nh)


def mlstm_dims(config: XLSTMConfig) -> dict:
    return {"D": config.embedding_dim, "num_heads": config.num_heads, "QK": config.qk_dim, "V": config.v_dim,
            "F": config.ffn_dim}


attach_block("mlstm", MLSTMBlock, mlstm_dims)
