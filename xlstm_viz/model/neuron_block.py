"""The NCP-wired CfC block (layer type "cfc"): a Neural Circuit Policy inside the xLSTM residual stream.

    n_t = RMSNorm(x_t)                                     ncp.norm_in
    h_t = WiredCfC(n_t, h_{t-1})                           ncp.neurons: sensory neurons = the D features of n_t;
                                                           inter -> command -> motor CfC neurons (Hasani et al.
                                                           2022 eq. 10, ncps.torch 1.0.1 `WiredCfCCell`)
    m_t = h_t[motor]                                       ncp.motor (ids 0..M-1, ncps numbering)
    y_t = x_t + W_out m_t                                  ncp.out, out

The neuron-level wiring is the block's AutoNCP (`block.wiring`, settings from `config.extra["ncps"]`). It lives
outside the parameters: `block.param("neurons.rnn_cell.layer_L.sparsity_mask")` is read from the wiring as it is
now (cached per wiring version), so a synapse edit changes the next forward, live, like every other wiring edit.
As in ncps, a CfC uses the synapses' presence (masks over ff1/ff2), not their polarity.

The cell table is `CFC_BLOCK` in `xlstm_viz.wiring.block_types`; `ncp.neurons` outputs every neuron's activity per
token, [B, S, units] in neuron-id order (motor, command, inter), which is what probes, per-neuron stats, traces,
interventions and the NCPS tab's overlays read. Parameters: `norm_ncp.weight`, `neurons.*` (an ncps-named
`xlstm_viz.neurons.CfC`, so `block.neurons.load_state_dict` opens an ncps.torch state_dict), `out_proj.weight`.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from xlstm_viz.config import XLSTMConfig
from xlstm_viz.model.cells import CellParams, one
from xlstm_viz.model.mlstm_block import param
from xlstm_viz.model.norms import RMSNorm
from xlstm_viz.neurons import CfC, CfCCellConfig, wired_cfc_cell
from xlstm_viz.wiring import AutoNCP
from xlstm_viz.wiring.block_types import attach_block, attach_cell_function

NCPS_DEFAULTS = {"units": 24, "output_size": 8, "sparsity_level": 0.5, "seed": 22222, "mode": "default"}
_CFC_PARTS = ("ff1", "ff2", "time_a", "time_b")


def ncps_settings(config: XLSTMConfig) -> dict:
    """The neuron blocks' settings, `config.extra["ncps"]` over NCPS_DEFAULTS (AutoNCP size, sparsity, seed, mode)."""
    given = config.extra.get("ncps") or {}
    if not isinstance(given, dict):
        raise ValueError(f"config field 'ncps' must be an object, got {type(given).__name__}")
    unknown = sorted(set(given) - set(NCPS_DEFAULTS))
    if unknown:
        raise ValueError(f"config field 'ncps' has unknown key(s) {unknown}; known: {sorted(NCPS_DEFAULTS)}")
    return {**NCPS_DEFAULTS, **given}


def state_order(inter: int, command: int, motor: int) -> np.ndarray:
    """Neuron id of each entry of the wired CfC's state: layers inter, command, motor (ncps's layout)."""
    M, C = motor, command
    return np.concatenate([np.arange(M + C, M + C + inter), np.arange(M, M + C), np.arange(M)]).astype(np.int32)


def cfc_neurons(x, w, state, p: CellParams):
    """The wired CfC over the tokens. Input [B, S, D] (the sensory neurons); output every neuron's activity per
    token [B, S, units] by neuron id; state: the activity at the last token [B, units], by neuron id."""
    value = one(x, "cfc_neurons").astype(mx.float32)
    I, C, M = (int(p.params[k]) for k in ("inter", "command", "motor"))
    order = state_order(I, C, M)
    to_ids = mx.array(np.argsort(order).astype(np.int32))
    prefix = p.params["prefix"]
    layers = []
    for layer in range(3):  # an NCP has three layers: inter, command, motor
        base = f"{prefix}.layer_{layer}"
        weights = {f"{part}.{leaf}": w(f"{base}.{part}.{leaf}") for part in _CFC_PARTS for leaf in ("weight", "bias")}
        weights["sparsity_mask"] = w(f"{base}.sparsity_mask")  # the wiring's synapses, live
        layers.append(weights)
    config = CfCCellConfig(ncps_settings(p.config)["mode"])
    B, S, _ = value.shape
    h = mx.zeros((B, I + C + M)) if state is None else mx.take(state, mx.array(order), axis=-1)
    seq = []
    for t in range(S):
        _, h = wired_cfc_cell(value[:, t], layers, h, 1.0, config)
        seq.append(h)
    out = mx.take(mx.stack(seq, axis=1), to_ids, axis=-1)
    return out, out[:, -1]


attach_cell_function("cfc_neurons", cfc_neurons)


class CfCBlock(nn.Module):
    block_type = "cfc"

    def __init__(self, config: XLSTMConfig):
        super().__init__()
        s = ncps_settings(config)
        D = config.embedding_dim
        self.norm_ncp = RMSNorm(D, config.norm_eps, config.use_bias)
        wiring = AutoNCP(int(s["units"]), int(s["output_size"]), sparsity_level=float(s["sparsity_level"]),
                         seed=int(s["seed"]))
        self.neurons = CfC(D, wiring, mode=str(s["mode"]))
        self.out_proj = nn.Linear(wiring.output_dim, D, bias=False)
        # zero readout, like the last projection of a residual branch: a fresh block starts as the identity
        self.out_proj.weight = mx.zeros_like(self.out_proj.weight)

    @property
    def wiring(self):
        """The block's neuron wiring (an AutoNCP); edit it (set_polarity, set_sparsity) and the next forward uses it."""
        return self.neurons.wiring

    def param(self, path: str) -> mx.array | None:
        head, _, leaf = path.rpartition(".")
        if leaf == "sparsity_mask" and head.startswith("neurons.rnn_cell.layer_"):
            return self.neurons.rnn_cell.masks()[int(head.rsplit("_", 1)[1])]
        return param(self, path)

    def new_state(self, batch: int) -> mx.array:
        return mx.zeros((batch, self.wiring.units))


def cfc_dims(config: XLSTMConfig) -> dict:
    s = ncps_settings(config)
    wiring = AutoNCP(int(s["units"]), int(s["output_size"]), sparsity_level=float(s["sparsity_level"]),
                     seed=int(s["seed"]))
    return {"D": config.embedding_dim, "U": wiring.units, "I": wiring._num_inter_neurons,
            "C": wiring._num_command_neurons, "M": wiring.output_dim}


attach_block("cfc", CfCBlock, cfc_dims)
