"""NCP-wired mLSTM neurons (layer type "ncp_mlstm"): each NCP layer is an mLSTM matrix memory, one neuron per value
feature.

The block is the neuron block of xlstm_viz/model/neuron_block.py (RMSNorm -> NCP -> motor neurons -> W_out ->
residual) with the block's AutoNCP (`config.extra["ncps"]`), layered as ncps's `WiredCfCCell`: layer l = inter,
command, motor reads x^l_t, the previous layer's output at the same token (inter: the sensory neurons, the normed
block input). Layer l is one mLSTM head (Beck et al. 2024, eqs. 19-27, `mlstm_cell`) whose value features are its
n_l neurons: neuron j is column j of the matrix memory C, with its own value input and output gate.

    pre_s   = 1 if presynaptic neuron s has a synapse into any neuron of the layer, else 0
    q_t = W_q (pre * x_t),  k_t = W_k (pre * x_t)              [n_l], the layer's query and key (d_qk = n_l)
    i_t = w_i . (pre * x_t) + b_i,  f_t = w_f . (pre * x_t) + b_f   the layer's scalar input and forget gates
    v_t,j = sum_s p_js |W_v[j, s]| x_t,s                        neuron j's value: through its synapses, signed
    o_t,j = sigma(sum_s |p_js| W_o[j, s] x_t,s + b_o,j)          neuron j's output gate: through its synapses
    C_t, n_t, m_t, h~_t = mLSTM(q, k, v, i, f)                 (mlstm_cell.chunkwise / recurrent, stabilised)
    r_t,j = h~_t,j + sum_{s in layer} p_js |L[j, s]| h~_t,s     in-layer synapses s -> j: j also reads s's memory
    h_t,j = o_t,j r_t,j

p_js in {+1, -1, 0} is the polarity of the synapse s -> j: its presence gates W_o (and, through pre, q/k/i/f), its
sign signs the value it delivers (excitatory writes +|w| x into the neuron's memory column, inhibitory -|w| x; the
sign of an sLSTM neuron's z weight and of an LTC synapse's reversal potential play the same role). The mLSTM's
recurrence is its matrix memory, with no path from h_{t-1}; a synapse inside a layer (the NCP's recurrent command
synapses) is therefore lateral: neuron j adds neuron s's memory readout at the same token (a path from h_{t-1} would
lose the chunkwise-parallel form). Masks and signs are read from the wiring now (cached per wiring version), so
every synapse edit of the NCPS tab changes the next forward.

Cells (`NCP_MLSTM_BLOCK`, built by `ncp_block_table`): `ncp.memory` outputs [h; r; o] per token, each
[B, S, units] by neuron id (motor, command, inter); `ncp.neurons` = h, `ncp.readout` = r, `ncp.ogate` = o. State:
`NCPMLSTMState`, each layer's (C, n, m). Parameters: `norm_ncp.weight`, `neurons.layer_L.{q, k, v, o, gates,
gate_bias, o_bias, lateral}`, `out_proj.weight`.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from xlstm_viz.model import mlstm_cell, mlstm_kernels
from xlstm_viz.model.cells import CellParams, one
from xlstm_viz.model.mlstm_block import param
from xlstm_viz.model.mlstm_cell import MLSTMState
from xlstm_viz.model.ncp_slstm_block import MemoryNeuronBlock, NCPSLSTMNeurons, layer_ids
from xlstm_viz.model.neuron_block import neuron_dims
from xlstm_viz.neurons.base import check_wiring
from xlstm_viz.wiring.block_types import NCP_MLSTM_OUTPUTS, attach_block, attach_cell_function

FORGET_BIAS = 3.0  # sigma(3) = 0.95: a fresh layer keeps its memory over tens of tokens
LAYERS = ("inter", "command", "motor")


@dataclass
class NCPMLSTMState:
    """Each NCP layer's mLSTM memory: C [B, 1, n_l, n_l], n [B, 1, n_l], m [B, 1, 1], float32."""

    C_inter: mx.array
    n_inter: mx.array
    m_inter: mx.array
    C_command: mx.array
    n_command: mx.array
    m_command: mx.array
    C_motor: mx.array
    n_motor: mx.array
    m_motor: mx.array

    @classmethod
    def zeros(cls, batch: int, sizes) -> "NCPMLSTMState":
        parts = []
        for n in sizes:
            parts += list(MLSTMState.zeros(batch, 1, n, n).arrays())
        return cls(*parts)

    def arrays(self) -> tuple:
        return tuple(getattr(self, f"{a}_{layer}") for layer in LAYERS for a in "Cnm")

    def layer(self, l: int) -> MLSTMState:
        return MLSTMState(*self.arrays()[3 * l: 3 * l + 3])

    @classmethod
    def of_layers(cls, states) -> "NCPMLSTMState":
        return cls(*(a for s in states for a in s.arrays()))


def ncp_mlstm_layer(x, weights: dict, input_polarity, lateral_polarity, state: MLSTMState, mode: str, eps: float,
                    chunk_size: int):
    """One NCP layer of mLSTM neurons over the sequence (the module docstring's equations). x [B, S, inputs];
    weights: the layer's q, k [d, inputs], v, o [n, inputs], gates [2, inputs], gate_bias [2], o_bias [n],
    lateral [n, n]; polarities [n, inputs] and [n, n], rows = the neuron. Returns h, r, o ([B, S, n] each) and
    the new state."""
    presence = mx.abs(input_polarity)
    pre = x * mx.max(presence, axis=0)  # the presynaptic neurons of the layer
    q, k = pre @ weights["q"].T, pre @ weights["k"].T
    i, f = (pre @ weights["gates"].T + weights["gate_bias"]).transpose(2, 0, 1)[:, :, None]  # [B, 1, S] each
    v = x @ (input_polarity * mx.abs(weights["v"])).T
    o = mx.sigmoid(x @ (presence * weights["o"]).T + weights["o_bias"])
    heads = lambda a: a[:, None]  # one head: [B, 1, S, features]
    if mode == "recurrent":
        h, state, _ = mlstm_cell.recurrent(heads(q), heads(k), heads(v), i, f, state, eps,
                                           step=mlstm_kernels.recurrent_step)
    else:
        h, state, _ = mlstm_cell.chunkwise(heads(q), heads(k), heads(v), i, f, state, eps, chunk_size)
    h = h[:, 0]
    r = h + h @ (lateral_polarity * mx.abs(weights["lateral"])).T
    return o * r, r, o, state


def ncp_mlstm_memory(x, w, state: NCPMLSTMState | None, p: CellParams):
    """The NCP's mLSTM layers inter -> command -> motor. Input [B, S, D] (the sensory neurons); output
    [B, S, 3 * units]: NCP_MLSTM_OUTPUTS (h, r, o), each by neuron id; state: NCPMLSTMState."""
    value = one(x, "ncp_mlstm_memory").astype(mx.float32)
    I, C, M = (int(p.params[k]) for k in ("inter", "command", "motor"))
    prefix = p.params["prefix"]
    if state is None:
        state = NCPMLSTMState.zeros(value.shape[0], (I, C, M))
    ranges = [(M + C, I + C + M), (M, M + C), (0, M)]  # each layer's neuron ids
    outs, finals = [], []
    for layer in range(3):
        base = f"{prefix}.layer_{layer}"
        weights = {name: w(f"{base}.{name}") for name in ("q", "k", "v", "o", "gates", "gate_bias", "o_bias",
                                                          "lateral")}
        h, r, o, final = ncp_mlstm_layer(value, weights, w(f"{base}.input_polarity"), w(f"{base}.recurrent_polarity"),
                                         state.layer(layer), p.mode, p.config.eps, p.config.chunk_size)
        if p.intervene is not None:  # no path from h_{t-1}: every token at once, before h feeds the next layer
            h = p.intervene(h, *ranges[layer])
        outs.append((h, r, o))
        finals.append(final)
        value = h
    by_id = lambda parts: mx.concatenate(parts[::-1], axis=-1)  # layers reversed = neuron-id order
    out = mx.concatenate([by_id([o[k] for o in outs]) for k in range(len(NCP_MLSTM_OUTPUTS))], axis=-1)
    return out, NCPMLSTMState.of_layers(finals)


attach_cell_function("ncp_mlstm_memory", ncp_mlstm_memory)


class NCPMLSTMNeurons(NCPSLSTMNeurons):
    """The neurons' parameters (`layer_L.q`, ...) and the wiring they are wired by; polarities as ncp_slstm's."""

    def __init__(self, input_size: int, wiring):
        nn.Module.__init__(self)
        self.wiring = check_wiring(wiring, input_size, "ncp_mlstm neurons")
        inputs = input_size
        for layer in range(wiring.num_layers):
            lo, hi = layer_ids(wiring, layer)
            n = hi - lo
            scale = inputs ** -0.5
            setattr(self, f"layer_{layer}", {
                "q": mx.random.normal((n, inputs)) * scale, "k": mx.random.normal((n, inputs)) * scale,
                "v": mx.random.normal((n, inputs)) * scale, "o": mx.random.normal((n, inputs)) * scale,
                "gates": mx.random.normal((2, inputs)) * scale, "gate_bias": mx.array([0.0, FORGET_BIAS]),
                "o_bias": mx.zeros((n,)), "lateral": mx.random.normal((n, n)) * n ** -0.5,
            })
            inputs = n
        self._cache_version = None
        self._cache = None


class NCPMLSTMBlock(MemoryNeuronBlock):
    block_type = "ncp_mlstm"
    synapse_rule = ("An mLSTM neuron uses the sign too: a synapse's presence gates its output gate (and the layer's "
                    "q, k, i, f), its polarity signs the value it writes into the neuron's memory column.")

    def make_neurons(self, input_size, wiring, settings):
        return NCPMLSTMNeurons(input_size, wiring)

    def new_state(self, batch: int) -> NCPMLSTMState:
        return NCPMLSTMState.zeros(batch, [hi - lo for lo, hi in (layer_ids(self.wiring, l) for l in range(3))])


attach_block("ncp_mlstm", NCPMLSTMBlock, neuron_dims)
