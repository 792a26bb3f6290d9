"""NCP-wired sLSTM neurons (layer type "ncp_slstm"): a Neural Circuit Policy whose neurons are sLSTM memory cells.

The block is the cfc / ltc neuron block (xlstm_viz/model/neuron_block.py) with another neuron: RMSNorm -> NCP ->
motor neurons -> W_out -> residual. The NCP is the block's AutoNCP (`config.extra["ncps"]`) and is layered as ncps's
`WiredCfCCell`: one cell per NCP layer l = inter, command, motor. Layer l reads x^l_t, the previous layer's output
at the same token (l = inter: the sensory neurons, i.e. the normed block input), through the synapses into it, and
its own previous output h^l_{t-1} through the synapses inside the layer (the NCP's recurrent command synapses; the
inter and motor layers have none, so their neurons recur only through their own memory c, n, m). Each neuron j is
one scalar sLSTM memory cell (Beck et al. 2024, eqs. 8-17, as `slstm_cell`) with its own gates:

    raw_g,j = sum_s Win_g[j, s] x^l_s,t + sum_k Rec_g[j, k] h^l_k,t-1 + b_g,j      g in (i, f, z, o)
    m_t  = max(raw_i, log sigma(raw_f) + m_{t-1})                                   (stabiliser)
    c_t  = f' c_{t-1} + i' tanh(raw_z),   n_t = f' n_{t-1} + i',   h_t = sigma(raw_o) c_t / n_t

with the weights through the wiring's synapses: for a synapse s -> j of polarity p in {+1, -1, 0},

    Win_g[j, s] = |p| W_g[j, s]   (g = i, f, o: the gates see whether the synapse exists)
    Win_z[j, s] = p |W_z[j, s]|   (the cell input z sees its sign: an excitatory synapse drives the neuron's memory
                                   up, an inhibitory one down, as the sign of an LTC synapse's reversal potential)

and the same rule for Rec from the in-layer synapses. The layers feed forward only, so each runs over the whole
sequence with the sLSTM recurrence `slstm_cell.sequence` (one head of n_l units; R's block is the layer's masked
Rec), one after the other. The masks and signs are read from the wiring as it is now (cached per wiring version),
so removing or flipping a synapse changes the next forward, live, and the NCPS tab's polarity cycle is meaningful.

Cells (table `NCP_SLSTM_BLOCK` in xlstm_viz.wiring.block_types, built by `ncp_block_table`): `ncp.memory` outputs
[h; c; n; m; raw_i; raw_f; raw_z; raw_o] per token, each [B, S, units] in neuron-id order (motor, command, inter,
ncps numbering), and its state (c, n, m, h), [B, 1, units] in the same order; `ncp.neurons` is h (what probes,
per-neuron stats, interventions and the NCPS tab read), `ncp.c`/`ncp.n`/`ncp.m` and `ncp.igate`... the memory and
gates per neuron; `ncp.motor` = h of ids 0..M-1. Parameters: `norm_ncp.weight`, `neurons.layer_L.{W, R, b}` (W
[4, n_l, inputs], R [4, n_l, n_l], b [4, n_l], gates i, f, z, o; rows = the neuron, columns = the presynaptic
neuron), `out_proj.weight`.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from xlstm_viz.model import slstm_cell
from xlstm_viz.model.cells import CellParams, one
from xlstm_viz.model.mlstm_block import param
from xlstm_viz.model.slstm_cell import SLSTMState
from xlstm_viz.model.neuron_block import NeuronBlock, neuron_dims
from xlstm_viz.neurons.base import check_wiring
from xlstm_viz.wiring.block_types import NCP_SLSTM_OUTPUTS, attach_block, attach_cell_function

FORGET_BIAS = 3.0  # sigma(3) = 0.95: a fresh neuron keeps its memory over tens of tokens


def layer_ids(wiring, layer: int) -> tuple[int, int]:
    """[lo, hi) of NCP layer `layer`'s neuron ids (each layer is a contiguous id range in ncps's numbering)."""
    ids = wiring.get_neurons_of_layer(layer)
    lo, hi = int(min(ids)), int(max(ids)) + 1
    if hi - lo != len(ids):
        raise ValueError(f"NCP layer {layer}'s neuron ids {ids} are not contiguous")
    return lo, hi


def synapse_polarities(wiring) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per NCP layer: the polarity of the synapses into it [n_l, inputs] and inside it [n_l, n_l], rows = the
    neuron (float32 +1 / -1 / 0)."""
    out = []
    for layer in range(wiring.num_layers):
        lo, hi = layer_ids(wiring, layer)
        if layer == 0:
            incoming = wiring.sensory_adjacency_matrix[:, lo:hi]
        else:
            plo, phi = layer_ids(wiring, layer - 1)
            incoming = wiring.adjacency_matrix[plo:phi, lo:hi]
        inside = wiring.adjacency_matrix[lo:hi, lo:hi]
        out.append((incoming.T.astype(np.float32), inside.T.astype(np.float32)))
    return out


def through_synapses(weight: mx.array, polarity: mx.array) -> mx.array:
    """Gate weights [4, n, k] as the synapses pass them: |p| W for i, f, o; p |W| for z (see the module docstring)."""
    presence = mx.abs(polarity)
    return mx.concatenate([weight[:2] * presence, (mx.abs(weight[2]) * polarity)[None], weight[3:] * presence])


def ncp_slstm_layer(x, W, R, b, input_polarity, recurrent_polarity, state: SLSTMState, intervene=None):
    """One NCP layer of sLSTM neurons over the sequence. x [B, S, inputs]; W [4, n, inputs], R [4, n, n], b [4, n];
    polarities [n, inputs] and [n, n]; state [B, 1, n] each. Returns slstm_cell.sequence's per-token values
    ([B, S, 1, n]) and the final state. intervene(h [B, 1, n], t): an intervention on h at every step, before it
    recurs (then the steps run one by one through `slstm_cell.step`)."""
    W = through_synapses(W, input_polarity)
    R = through_synapses(R, recurrent_polarity)
    wx = tuple((x @ W[g].T)[:, :, None, :] for g in range(4))
    R, b = R[None], b[:, None, :]
    if intervene is None:
        return slstm_cell.sequence(wx, R, b, state)
    seq = {k: [] for k in slstm_cell.OUTPUTS}
    for t in range(x.shape[1]):
        state, raw = slstm_cell.step(tuple(w[:, t] for w in wx), R, b, state)
        state = SLSTMState(state.c, state.n, state.m, intervene(state.h, t))
        for key, value in zip(("c", "n", "m", "h", *slstm_cell.GATES), (*state.arrays(), *raw)):
            seq[key].append(value)
    return {k: mx.stack(v, axis=1) for k, v in seq.items()}, state


def _slice_state(state: SLSTMState, lo: int, hi: int) -> SLSTMState:
    return SLSTMState(*(a[..., lo:hi] for a in state.arrays()))


def ncp_slstm_memory(x, w, state: SLSTMState | None, p: CellParams):
    """The NCP's sLSTM neurons, layer by layer (inter -> command -> motor). Input [B, S, D] (the sensory neurons);
    output [B, S, 8 * units]: NCP_SLSTM_OUTPUTS (h, c, n, m, raw i, f, z, o), each by neuron id; state (c, n, m, h)
    [B, 1, units] by neuron id."""
    value = one(x, "ncp_slstm_memory").astype(mx.float32)
    I, C, M = (int(p.params[k]) for k in ("inter", "command", "motor"))
    U = I + C + M
    prefix = p.params["prefix"]
    B = value.shape[0]
    if state is None:
        state = SLSTMState.zeros(B, 1, U)
    # ids: motor [0, M), command [M, M+C), inter [M+C, U); layers run inter, command, motor
    ranges = [(M + C, U), (M, M + C), (0, M)]
    seqs, finals = [], []
    for layer, (lo, hi) in enumerate(ranges):
        base = f"{prefix}.layer_{layer}"
        hook = None if p.intervene is None else (lambda h, t, lo=lo, hi=hi: p.intervene(h, lo, hi, t))
        seq, final = ncp_slstm_layer(value, w(f"{base}.W"), w(f"{base}.R"), w(f"{base}.b"),
                                     w(f"{base}.input_polarity"), w(f"{base}.recurrent_polarity"),
                                     _slice_state(state, lo, hi), hook)
        seqs.append(seq)
        finals.append(final)
        value = seq["h"][:, :, 0]
    by_id = lambda parts: mx.concatenate(parts[::-1], axis=-1)  # layers reversed = neuron-id order
    out = mx.concatenate([by_id([s[k][:, :, 0] for s in seqs]) for k in NCP_SLSTM_OUTPUTS], axis=-1)
    new_state = SLSTMState(*(by_id([f.arrays()[i] for f in finals]) for i in range(4)))
    return out, new_state


attach_cell_function("ncp_slstm_memory", ncp_slstm_memory)


class NCPSLSTMNeurons(nn.Module):
    """The neurons' parameters (`layer_L.W`, `layer_L.R`, `layer_L.b`) and the wiring they are wired by."""

    def __init__(self, input_size: int, wiring):
        super().__init__()
        self.wiring = check_wiring(wiring, input_size, "ncp_slstm neurons")
        inputs = input_size
        for layer in range(wiring.num_layers):
            lo, hi = layer_ids(wiring, layer)
            n = hi - lo
            bias = mx.zeros((4, n))
            bias[1] = FORGET_BIAS
            setattr(self, f"layer_{layer}", {
                "W": mx.random.normal((4, n, inputs)) * inputs ** -0.5,
                "R": mx.random.normal((4, n, n)) * n ** -0.5,
                "b": bias,
            })
            inputs = n
        self._cache_version = None
        self._cache = None

    def polarities(self) -> list[tuple[mx.array, mx.array]]:
        """The wiring's synapse polarities per layer, now (rebuilt when its version changes)."""
        if self._cache_version != self.wiring.version or self._cache is None:
            self._cache = [tuple(mx.array(a) for a in pair) for pair in synapse_polarities(self.wiring)]
            self._cache_version = self.wiring.version
        return self._cache


class MemoryNeuronBlock(NeuronBlock):
    """What the ncp_slstm and ncp_mlstm blocks add to a neuron block: each NCP layer's synapse polarities, read
    from the wiring as it is now, as parameters (`neurons.layer_L.input_polarity` / `recurrent_polarity`)."""

    uses_polarity = True

    def param(self, path: str) -> mx.array | None:
        head, _, leaf = path.rpartition(".")
        if leaf in ("input_polarity", "recurrent_polarity") and head.startswith("neurons.layer_"):
            pair = self.neurons.polarities()[int(head.rsplit("_", 1)[1])]
            return pair[0] if leaf == "input_polarity" else pair[1]
        return param(self, path)


class NCPSLSTMBlock(MemoryNeuronBlock):
    block_type = "ncp_slstm"
    synapse_rule = ("An sLSTM neuron uses the sign too: a synapse's presence gates its i, f, o weights and its "
                    "polarity signs its weight into the cell input z.")

    def make_neurons(self, input_size, wiring, settings):
        return NCPSLSTMNeurons(input_size, wiring)

    def new_state(self, batch: int) -> SLSTMState:
        return SLSTMState.zeros(batch, 1, self.wiring.units)


attach_block("ncp_slstm", NCPSLSTMBlock, neuron_dims)
