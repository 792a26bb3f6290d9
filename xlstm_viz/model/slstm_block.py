"""The sLSTM block (the original xLSTM's, blocks/slstm/block.py) as a block type of the registry: layer type "slstm".

    x~    = LN(x) (1 + w)                                              slstm.norm_in
    x_c   = SiLU(CausalConv1d(x~))            state: the last K-1 x~    slstm.conv
    W_i x_c, W_f x_c, W_z x~, W_o x~          block-diagonal, per head  slstm.igate / fgate / zgate / ogate
    raw_g = W_g x + R_g h_{t-1} + b_g         R block-diagonal per head
    m_t   = max(raw_i, log sigma(raw_f) + m_{t-1})                       (stabiliser; m_1 = raw_i)
    c_t   = f' c_{t-1} + i' tanh(raw_z),  n_t = f' n_{t-1} + i'         i' = exp(raw_i - m_t), f' = exp(log sigma f + m_{t-1} - m_t)
    h_t   = sigma(raw_o) c_t / n_t                                        slstm.memory -> slstm.c / n / m / h
                                                                          and slstm.raw_i / raw_f / raw_z / raw_o
    y     = x + GN(h) (1 + w)                                            slstm.norm, mid
    out   = y + W_down(act(W_g LN(y)) * W_u LN(y))  (act: GELU)            ffn.norm_in, ffn.gate/up/h/out, out

Sizes come from the config: conv1d_kernel_size `slstm_conv_kernel` (0: no conv, the i and f gates read x~), the
FFN width `slstm_ffn_dim` and its activation `slstm_ffn_act` (None: no FFN, out = y); the table drops the absent
cells (`CellRow.when`).

The recurrence itself is `xlstm_viz.model.slstm_cell` (parity-tested against xlstm 2.0.6 `backend="vanilla"`); the table that wires these cells, and so their probe names, is `SLSTM_BLOCK` in
`xlstm_viz.wiring.block_types`; the dashboard's sLSTM panels are that table's `panels`. Parameter names follow this
package's 7B naming (`norm_slstm`, `slstm_layer.*`, `norm_ffn`, `ffn.proj_up_gate` / `proj_up` / `proj_down`); the
recurrent kernel is stored in the official vanilla layout [NH, 4*DH, DH] (gates i, f, z, o) with bias [4*D].
The forget and input gates here are named by their role (the official layer swaps the names `igate`/`fgate`).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from xlstm_viz.config import XLSTMConfig
from xlstm_viz.model import slstm_cell
from xlstm_viz.model.activations import FFN_ACTIVATIONS
from xlstm_viz.model.cells import CellParams, causal_conv, headwise, one, weighted
from xlstm_viz.model.mlstm_block import param
from xlstm_viz.model.norms import LN_EPS, group_norm, layer_norm
from xlstm_viz.model.slstm_cell import SLSTMState
from xlstm_viz.wiring.block_types import attach_block, attach_cell_function

GATES = ("igate", "fgate", "zgate", "ogate")


def layernorm(x, w, state, p: CellParams):  # LN(x) (1 + w), no bias
    path = p.params.get("weight")
    return layer_norm(one(x, "layernorm"), None if path is None else w(path), LN_EPS), None


def conv(x, w, state, p: CellParams):  # x_c = SiLU(causal conv(x) + b); the state is the last K-1 inputs
    value = one(x, "causal_conv")
    weight, bias = w(p.weight_path("causal_conv")), w(p.bias_path("causal_conv"))
    if state is None:
        state = mx.zeros((value.shape[0], weight.shape[-1] - 1, value.shape[-1]), value.dtype)
    y, history = causal_conv(value, weight, bias, state)
    return nn.silu(y), history


def headwise_cell(x, w, state, p: CellParams):  # y_h = W_h x_h per head (+ b)
    return headwise(one(x, "headwise"), w(p.weight_path("headwise")), w(p.bias_path("headwise"))), None


def slstm_memory(x, w, state: SLSTMState | None, p: CellParams):
    """The sLSTM recurrence over the sequence (it has no parallel form, so both modes run it token by token):
    returns [c; n; m; h; raw_i; raw_f; raw_z; raw_o] per token, [B, S, 8*D] (raw_g = W_g x + R_g h_{t-1} + b_g, the
    pre-activations the recurrence computed), and the new state (c, n, m, h)."""
    missing = [g for g in GATES if f"slstm.{g}" not in x]
    if missing:
        raise ValueError(f"the sLSTM memory cell needs inputs from {[f'slstm.{g}' for g in GATES]}; missing "
                         f"{[f'slstm.{g}' for g in missing]}")
    num_heads = int(p.params["num_heads"])
    B, S, D = x["slstm.igate"].shape
    DH = D // num_heads
    R, b = slstm_cell.vanilla_layout(w(p.params["recurrent"]), w(p.params["recurrent_bias"]), num_heads, "vanilla")
    if state is None:
        state = SLSTMState.zeros(B, num_heads, DH)
    wx = tuple(x[f"slstm.{g}"].astype(mx.float32).reshape(B, S, num_heads, DH) for g in GATES)
    seq, state = slstm_cell.sequence(wx, R, b, state)
    return mx.concatenate([seq[k].reshape(B, S, D) for k in ("c", "n", "m", "h", *slstm_cell.GATES)], axis=-1), state


def state_slice(x, w, state, p: CellParams):
    offset, width = int(p.params["offset"]), int(p.params["width"])
    return one(x, "state_slice")[..., offset: offset + width], None


def group_norm_cell(x, w, state, p: CellParams):  # per-head LN(h) (1 + w)
    path = p.params.get("weight")
    num_heads = int(p.params.get("num_heads", p.config.num_heads))  # the table's rows give it
    return group_norm(one(x, "group_norm"), None if path is None else w(path), num_heads, LN_EPS), None


def linear_act(x, w, state, p: CellParams):  # the FFN's gate branch: act(W_g y) (official default: exact GELU)
    act = p.params.get("act", "gelu")
    if act not in FFN_ACTIVATIONS:
        raise ValueError(f"a 'linear_act' cell's params['act'] must be one of {sorted(FFN_ACTIVATIONS)}, got {act!r}")
    return FFN_ACTIVATIONS[act](weighted(x, w, p, "linear_act")), None


for _name, _fn in (("layernorm", layernorm), ("causal_conv", conv), ("headwise", headwise_cell),
                   ("slstm_memory", slstm_memory), ("state_slice", state_slice), ("group_norm", group_norm_cell),
                   ("linear_act", linear_act)):
    attach_cell_function(_name, _fn)


class SLSTMBlock(nn.Module):
    block_type = "slstm"
    norm_offset = True  # its norm weights are offsets from 1 (a profile's norm value v is stored as v - 1)

    def __init__(self, config: XLSTMConfig):
        super().__init__()
        d = slstm_dims(config)
        D, NH, DH, K, F = d["D"], d["num_heads"], d["DH"], d["K"], d["F"]
        self.norm_slstm = {"weight": mx.zeros((D,))}  # offsets from 1: zeros = the identity scale
        self.slstm_layer = {
            **({"conv1d": {"weight": mx.zeros((D, 1, K)), "bias": mx.zeros((D,))}} if K > 0 else {}),
            **{g: {"weight": mx.zeros((NH, DH, DH))} for g in GATES},
            "recurrent_kernel": mx.zeros((NH, 4 * DH, DH)),
            "bias": mx.zeros((4 * D,)),
            "group_norm": {"weight": mx.zeros((D,))},
        }
        if d["act"] is not None:  # the block's feed-forward (an official sLSTM block may have none)
            self.norm_ffn = {"weight": mx.zeros((D,))}
            bias = config.use_bias  # the FFN's linears have biases with use_bias (the official `feedforward.bias`)
            self.ffn = {"proj_up_gate": nn.Linear(D, F, bias=bias), "proj_up": nn.Linear(D, F, bias=bias),
                        "proj_down": nn.Linear(F, D, bias=bias)}
        self._dims = (D, NH, DH, K)

    def param(self, path: str) -> mx.array | None:
        return param(self, path)

    def new_state(self, batch: int) -> dict:
        D, NH, DH, K = self._dims
        conv = {"slstm.conv": mx.zeros((batch, K - 1, D))} if K > 0 else {}
        return {**conv, "slstm.memory": SLSTMState.zeros(batch, NH, DH)}


def slstm_dims(config: XLSTMConfig) -> dict:
    D, NH = config.embedding_dim, config.slstm_num_heads or config.num_heads
    if D % NH:
        raise ValueError(f"an sLSTM block needs its heads (slstm_num_heads or num_heads = {NH}) to divide "
                         f"embedding_dim ({D})")
    return {"D": D, "num_heads": NH, "DH": D // NH, "K": config.slstm_conv_kernel, "F": config.slstm_ffn_width,
            "act": config.slstm_ffn_act}


attach_block("slstm", SLSTMBlock, slstm_dims)
