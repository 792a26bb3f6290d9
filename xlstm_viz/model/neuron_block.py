"""The NCP-wired neuron blocks (layer types "cfc" and "ltc"): a Neural Circuit Policy inside the xLSTM residual stream.

    n_t = RMSNorm(x_t)                                     ncp.norm_in
    h_t = WiredCfC(n_t, h_{t-1})          (cfc)            ncp.neurons: sensory neurons = the D features of n_t;
                                                           inter -> command -> motor CfC neurons (Hasani et al.
                                                           2022 eq. 10, ncps.torch 1.0.1 `WiredCfCCell`)
    v_t = LTC(n_t, v_{t-1})               (ltc)            ncp.neurons: the same NCP, liquid time-constant neurons
                                                           (Hasani et al. 2021 eq. 1 by ncps's semi-implicit Euler
                                                           steps, ncps.torch 1.0.1 `LTCCell`); v = potentials
    m_t = h_t[motor]                      (cfc)            ncp.motor (ids 0..M-1, ncps numbering)
    m_t = output_w * v_t[motor] + output_b  (ltc)          ncp.motor (ncps's output mapping: affine as here,
                                                           linear without output_b, or none)
    y_t = x_t + W_out m_t                                  ncp.out, out

The neuron-level wiring is the block's AutoNCP (`block.wiring`, settings from `config.extra["ncps"]`). It lives
outside the parameters: the masks are read from the wiring as it is now (cached per wiring version), so a synapse
edit changes the next forward, live, like every other wiring edit. A CfC uses the synapses' presence (masks over
ff1/ff2, `block.param("neurons.rnn_cell.layer_L.sparsity_mask")`), not their polarity. An LTC uses both: |adjacency|
masks the synapse activations (`neurons.rnn_cell.sparsity_mask`, `...sensory_sparsity_mask`) and the reversal
potentials follow the polarity (`block.param("neurons.rnn_cell.erev")` is the effective erev of
`xlstm_viz.neurons.LTC`: a flipped synapse uses -erev, the ncps state_dict's value).

Settings (`config.extra["ncps"]`, `ncps_settings`): the AutoNCP's units, output_size, sparsity_level, seed; the
CfC's mode; the LTC's input_mapping / output_mapping ("affine", "linear", null), ode_unfolds (semi-implicit Euler
steps per token), epsilon (added to the potential update's denominator) and implicit_param_constraints (softplus
on w, sensory_w, cm, gleak; false: ncps's explicit clipping after each training step, `LTC.apply_weight_constraints`,
which `xlstm_viz.training.train` calls). A key that no block of the model reads is refused by name.

The cell tables are `CFC_BLOCK` / `LTC_BLOCK` in `xlstm_viz.wiring.block_types` (one builder, `ncp_block_table`);
`ncp.neurons` outputs every neuron's activity (CfC) or potential (LTC) per token, [B, S, units] in neuron-id order
(motor, command, inter), which is what probes, per-neuron stats, traces, interventions and the NCPS tab's overlays
read. Parameters: `norm_ncp.weight`, `neurons.*` (an ncps-named `xlstm_viz.neurons.CfC` / `LTC`, so
`block.neurons.load_state_dict` opens an ncps.torch state_dict), `out_proj.weight`.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from xlstm_viz.config import XLSTMConfig
from xlstm_viz.model.cells import CellParams, one
from xlstm_viz.model.mlstm_block import param
from xlstm_viz.model.norms import RMSNorm
from xlstm_viz.neurons import LTC, CfC, CfCCellConfig, LTCCellConfig, ltc_cell, wired_cfc_cell
from xlstm_viz.wiring import AutoNCP
from xlstm_viz.wiring.block_types import attach_block, attach_cell_function

# The AutoNCP's keys are every neuron block's; "mode" is the CfC's (default | pure | no_gate); the LTC's keys are
# ncps.torch `LTC`'s arguments, defaulting to its defaults (affine input and output mappings, 6 ODE unfolds per
# token, epsilon 1e-8 in the potential's denominator, softplus constraints), so ncps.torch LTC state_dicts load.
NCPS_DEFAULTS = {"units": 24, "output_size": 8, "sparsity_level": 0.5, "seed": 22222, "mode": "default",
                 "input_mapping": "affine", "output_mapping": "affine", "ode_unfolds": 6, "epsilon": 1e-8,
                 "implicit_param_constraints": True}
# The block types that read each key that is not the wiring's (a key no block of the model reads is refused)
NCPS_KEY_READERS = {"mode": ("cfc",), **{k: ("ltc",) for k in ("input_mapping", "output_mapping", "ode_unfolds",
                                                                 "epsilon", "implicit_param_constraints")}}
_CFC_PARTS = ("ff1", "ff2", "time_a", "time_b")
# the LTC cell's tensors by ncps name (rnn_cell.<name>); masks and erev come from the wiring as it is now
_LTC_TENSORS = ("gleak", "vleak", "cm", "sigma", "mu", "w", "erev", "sparsity_mask", "sensory_sigma", "sensory_mu",
                "sensory_w", "sensory_erev", "sensory_sparsity_mask", "input_w", "input_b", "output_w", "output_b",
                "synapse_index", "sensory_synapse_index")


def _check_setting(key: str, value):
    """A named error for a value of `config.extra["ncps"][key]` of the wrong type or range."""
    where = f"config field 'ncps' key {key!r}"
    if key in ("units", "output_size", "seed", "ode_unfolds"):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if key == "seed" else 1):
            raise ValueError(f"{where} must be an int >= {0 if key == 'seed' else 1}, got {value!r}")
    elif key in ("sparsity_level", "epsilon"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f"{where} must be a number, got {value!r}")
        if key == "epsilon" and value < 0:
            raise ValueError(f"{where} must be >= 0, got {value!r}")
    elif key == "mode":
        if value not in ("default", "pure", "no_gate"):
            raise ValueError(f"{where} must be one of 'default', 'pure', 'no_gate', got {value!r}")
    elif key in ("input_mapping", "output_mapping"):
        if value not in ("affine", "linear", None):
            raise ValueError(f"{where} must be 'affine', 'linear' or null (none), got {value!r}")
    elif key == "implicit_param_constraints":
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")


def ncps_settings(config: XLSTMConfig) -> dict:
    """The neuron blocks' settings, `config.extra["ncps"]` over NCPS_DEFAULTS (AutoNCP size, sparsity, seed; the
    CfC's mode; the LTC's mappings, ODE unfolds, epsilon, constraints), each checked by name."""
    given = config.extra.get("ncps") or {}
    if not isinstance(given, dict):
        raise ValueError(f"config field 'ncps' must be an object, got {type(given).__name__}")
    unknown = sorted(set(given) - set(NCPS_DEFAULTS))
    if unknown:
        raise ValueError(f"config field 'ncps' has unknown key(s) {unknown}; known: {sorted(NCPS_DEFAULTS)}")
    kinds = set(config.layer_types())
    for key, value in given.items():
        _check_setting(key, value)
        readers = NCPS_KEY_READERS.get(key)
        if readers is not None and not kinds & set(readers):
            raise ValueError(f"config field 'ncps' key {key!r} is read only by {' / '.join(readers)} blocks, and "
                             f"this model has none (block types: {sorted(kinds)}); remove it")
    return {**NCPS_DEFAULTS, **given}


def ncp_wiring(config: XLSTMConfig) -> AutoNCP:
    """The AutoNCP every neuron block of this config is built with (sensory inputs: the embedding features)."""
    s = ncps_settings(config)
    return AutoNCP(int(s["units"]), int(s["output_size"]), sparsity_level=float(s["sparsity_level"]),
                   seed=int(s["seed"]))


def ltc_config(motor: int, settings: dict) -> LTCCellConfig:
    """The LTC block's cell settings, from `ncps_settings` (ncps.torch `LTC`'s defaults unless the config says)."""
    return LTCCellConfig(int(motor), settings["input_mapping"], settings["output_mapping"],
                         int(settings["ode_unfolds"]), float(settings["epsilon"]),
                         bool(settings["implicit_param_constraints"]))


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
    config = CfCCellConfig(ncps_settings(p.config)["mode"])
    # the "pure" mode's cell is ff1 with its time constant w_tau and amplitude A (ncps's CfCCell), no ff2/time gates
    parts, extra = (("ff1",), ("w_tau", "A")) if config.mode == "pure" else (_CFC_PARTS, ())
    for layer in range(3):  # an NCP has three layers: inter, command, motor
        base = f"{prefix}.layer_{layer}"
        weights = {f"{part}.{leaf}": w(f"{base}.{part}.{leaf}") for part in parts for leaf in ("weight", "bias")}
        weights.update({name: w(f"{base}.{name}") for name in extra})
        weights["sparsity_mask"] = w(f"{base}.sparsity_mask")  # the wiring's synapses, live
        layers.append(weights)
    B, S, _ = value.shape
    h = mx.zeros((B, I + C + M)) if state is None else mx.take(state, mx.array(order), axis=-1)
    spans = [(M + C, M + C + I), (M, M + C), (0, M)]  # each layer's neuron ids
    seq = []
    for t in range(S):
        between = None
        if p.intervene is not None:  # interventions inside the recurrence: on each layer's new h, by neuron id
            between = lambda layer, x, t=t: p.intervene(x[:, None], *spans[layer], t)[:, 0]
        _, h = wired_cfc_cell(value[:, t], layers, h, 1.0, config, between)
        seq.append(h)
    out = mx.take(mx.stack(seq, axis=1), to_ids, axis=-1)
    return out, out[:, -1]


def ltc_neurons(x, w, state, p: CellParams):
    """The LTC over the tokens (unit elapsed time per token, as ncps without timespans). Input [B, S, D] (the
    sensory neurons); output every neuron's potential v per token [B, S, units]; state: v at the last token. The
    LTC's state is already in neuron-id order."""
    value = one(x, "ltc_neurons").astype(mx.float32)
    U, M = int(p.params["units"]), int(p.params["motor"])
    prefix = p.params["prefix"]
    weights = {name: w(f"{prefix}.{name}") for name in _LTC_TENSORS}
    weights = {k: v for k, v in weights.items() if v is not None}  # synapse lists exist only for sparse masks
    config = ltc_config(M, ncps_settings(p.config))
    B, S, _ = value.shape
    v = mx.zeros((B, U)) if state is None else state
    seq = []
    for t in range(S):
        clamp = None
        if p.intervene is not None:  # inside the recurrence: zero / replace / patch hold v after every ODE unfold,
            # a scale acts once per token (after the last unfold), not once per unfold
            clamp = lambda v, last, t=t: p.intervene(v[:, None], 0, U, t, holding_only=not last)[:, 0]
        _, v = ltc_cell(value[:, t], weights, v, 1.0, config, clamp)
        seq.append(v)
    out = mx.stack(seq, axis=1)
    return out, out[:, -1]


def ltc_readout(x, w, state, p: CellParams):
    """The LTC's motor neurons through ncps's output mapping: affine output_w * v[:M] + output_b, linear
    output_w * v[:M], none v[:M]."""
    v = one(x, "ltc_readout")
    prefix, M = p.params["prefix"], int(p.params["motor"])
    mapping = ncps_settings(p.config)["output_mapping"]
    y = v[..., :M]
    if mapping in ("affine", "linear"):
        y = y * w(f"{prefix}.output_w")
    if mapping == "affine":
        y = y + w(f"{prefix}.output_b")
    return y, None


attach_cell_function("cfc_neurons", cfc_neurons)
attach_cell_function("ltc_neurons", ltc_neurons)
attach_cell_function("ltc_readout", ltc_readout)


class NeuronBlock(nn.Module):
    """What the cfc and ltc blocks share: RMSNorm -> NCP-wired neurons (`self.neurons`) -> motor -> W_out."""

    block_type = ""

    def __init__(self, config: XLSTMConfig):
        super().__init__()
        D = config.embedding_dim
        self.norm_ncp = RMSNorm(D, config.norm_eps, config.use_bias)
        wiring = ncp_wiring(config)
        self.neurons = self.make_neurons(D, wiring, ncps_settings(config))
        self.out_proj = nn.Linear(wiring.output_dim, D, bias=False)
        # zero readout, like the last projection of a residual branch: a fresh block starts as the identity
        self.out_proj.weight = mx.zeros_like(self.out_proj.weight)

    def make_neurons(self, input_size: int, wiring, settings: dict) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def wiring(self):
        """The block's neuron wiring (an AutoNCP); edit it (set_polarity, set_sparsity) and the next forward uses it."""
        return self.neurons.wiring

    def param(self, path: str) -> mx.array | None:
        return param(self, path)

    def new_state(self, batch: int) -> mx.array:
        return mx.zeros((batch, self.wiring.units))


class CfCBlock(NeuronBlock):
    block_type = "cfc"
    uses_polarity = False  # the NCPS tab offers no sign edit for it
    synapse_rule = "A CfC uses whether a synapse exists, not its sign (as ncps)."

    def make_neurons(self, input_size, wiring, settings):
        return CfC(input_size, wiring, mode=str(settings["mode"]))

    def param(self, path: str) -> mx.array | None:
        head, _, leaf = path.rpartition(".")
        if leaf == "sparsity_mask" and head.startswith("neurons.rnn_cell.layer_"):
            return self.neurons.rnn_cell.masks()[int(head.rsplit("_", 1)[1])]
        return param(self, path)


class LTCBlock(NeuronBlock):
    block_type = "ltc"
    uses_polarity = True
    synapse_rule = "An LTC uses the sign too (its reversal potentials follow the polarity)."

    def make_neurons(self, input_size, wiring, settings):
        c = ltc_config(wiring.output_dim, settings)
        return LTC(input_size, wiring, input_mapping=c.input_mapping, output_mapping=c.output_mapping,
                   ode_unfolds=c.ode_unfolds, epsilon=c.epsilon, implicit_param_constraints=c.implicit_param_constraints)

    def param(self, path: str) -> mx.array | None:
        head, _, leaf = path.rpartition(".")
        if head == "neurons.rnn_cell":  # from the wiring now (erev: under its current polarity)
            cell = self.neurons.rnn_cell
            if leaf in ("synapse_index", "sensory_synapse_index"):
                return cell._wiring_tensors()[leaf]
            if leaf in ("sparsity_mask", "sensory_sparsity_mask", "erev", "sensory_erev"):
                return cell.wiring_tensors()[leaf]
        return param(self, path)


def neuron_dims(config: XLSTMConfig) -> dict:
    wiring = ncp_wiring(config)
    return {"D": config.embedding_dim, "U": wiring.units, "I": wiring._num_inter_neurons,
            "C": wiring._num_command_neurons, "M": wiring.output_dim}


attach_block("cfc", CfCBlock, neuron_dims)
attach_block("ltc", LTCBlock, neuron_dims)
