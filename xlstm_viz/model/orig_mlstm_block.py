"""The original xLSTM's mLSTM block (xlstm 2.0.6 blocks/mlstm/layer.py) as a block type: layer type "orig_mlstm".

    x~       = LN(x) (1 + w)                                              mlstm.norm_in
    x_m, z   = W_up x~ (the two halves of proj_up)                        mlstm.up, mlstm.z
    x_c      = SiLU(CausalConv1d(x_m))         state: the last K-1 x_m    mlstm.conv
    q, k, v  = BD_q x_c, BD_k x_c, BD_v x_m    (qkv_proj_blocksize blocks) mlstm.q / .k / .v
    i~, f~   = W_{i,f} [q; k; v] + b_{i,f}     one per head, no soft cap  mlstm.igate / .fgate
    h~       = mLSTM(q, k / sqrt(DH), v, i~, f~; C, n, m)  (mlstm_cell.py) mlstm.memory
    out      = x + W_down((GN(h~) (1 + w) + s * x_c) * SiLU(z))             mlstm.norm, .skip, .h, .out, out

The table is `ORIG_MLSTM_BLOCK` in `xlstm_viz.wiring.block_types`; the memory is the 7B block's `mlstm_memory`
cell with `scale_k` (the recurrence is written once, in mlstm_cell.py). Sizes come from the config: the inner width
I `orig_mlstm_inner_dim` (default: proj_factor 2 x D rounded up to a multiple of 64), `orig_mlstm_qkv_blocksize`,
`orig_mlstm_conv_kernel` (official defaults 4 and 4) and `num_heads`. Parameter names follow this package's style: `norm_mlstm`, `mlstm_layer.{proj_up, proj_z, conv1d, q,
k, v, igate, fgate, outnorm, learnable_skip, proj_down}` (proj_up/proj_z are the official proj_up's two halves).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from xlstm_viz.config import XLSTMConfig
from xlstm_viz.model.cells import CellParams, linear
from xlstm_viz.model.mlstm_block import param
from xlstm_viz.model.mlstm_cell import MLSTMState
from xlstm_viz.wiring.block_types import attach_block, attach_cell_function


def concat_linear(x, w, state, p: CellParams):  # W [x_1; x_2; ...] + b (the gates read [q; k; v])
    path = p.weight_path("concat_linear")
    return linear(mx.concatenate(list(x.values()), axis=-1), w(path), w(p.bias_path("concat_linear"))), None


def learnable_skip(x, w, state, p: CellParams):  # GN(h~) + s * x_c
    first, second = _two(x, "learnable_skip")
    return first + w(p.weight_path("learnable_skip")) * second, None


def silu_gated(x, w, state, p: CellParams):  # (...) * SiLU(z)
    first, second = _two(x, "silu_gated")
    return first * nn.silu(second), None


def _two(x, kind):
    if len(x) != 2:
        raise ValueError(f"a {kind!r} cell takes two inputs (in connection order), got {len(x)}: {sorted(x)}")
    return tuple(x.values())


for _name, _fn in (("concat_linear", concat_linear), ("learnable_skip", learnable_skip), ("silu_gated", silu_gated)):
    attach_cell_function(_name, _fn)


def orig_mlstm_dims(config: XLSTMConfig) -> dict:
    # the config checks that num_heads and the q/k/v block size divide I (XLSTMConfig.check_consistency)
    return {"D": config.embedding_dim, "I": config.orig_mlstm_dim, "num_heads": config.num_heads,
            "BS": config.orig_mlstm_qkv_blocksize, "K": config.orig_mlstm_conv_kernel}


class OrigMLSTMBlock(nn.Module):
    block_type = "orig_mlstm"
    norm_offset = True  # its norm weights are offsets from 1 (a profile's norm value v is stored as v - 1)

    def __init__(self, config: XLSTMConfig):
        super().__init__()
        d = orig_mlstm_dims(config)
        D, I, NH, BS, K = d["D"], d["I"], d["num_heads"], d["BS"], d["K"]
        bias = config.use_bias
        self.norm_mlstm = {"weight": mx.zeros((D,))}  # offsets from 1
        qkv = {"weight": mx.zeros((I // BS, BS, BS)), **({"bias": mx.zeros((I,))} if bias else {})}
        self.mlstm_layer = {
            "proj_up": nn.Linear(D, I, bias=bias), "proj_z": nn.Linear(D, I, bias=bias),
            "conv1d": {"weight": mx.zeros((I, 1, K)), "bias": mx.zeros((I,))},
            "q": dict(qkv), "k": dict(qkv), "v": dict(qkv),
            "igate": nn.Linear(3 * I, NH), "fgate": nn.Linear(3 * I, NH),
            "outnorm": {"weight": mx.zeros((I,))}, "learnable_skip": mx.ones((I,)),
            "proj_down": nn.Linear(I, D, bias=bias),
        }
        self._dims = (I, NH, K)

    def param(self, path: str) -> mx.array | None:
        return param(self, path)

    def new_state(self, batch: int) -> dict:
        I, NH, K = self._dims
        return {"mlstm.conv": mx.zeros((batch, K - 1, I)), "mlstm.memory": MLSTMState.zeros(batch, NH, I // NH, I // NH)}


attach_block("orig_mlstm", OrigMLSTMBlock, orig_mlstm_dims)
