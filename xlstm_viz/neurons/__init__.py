"""Neurons that run a wiring: CfC and LTC with ncps.torch 1.0.1 semantics, on MLX.

* `CfC`, `LTC`: mlx.nn modules with ncps.torch's constructor arguments, defaults, forward `(x, hx, timespans)`,
  parameter names (so `load_state_dict` opens a trained ncps.torch model saved with safetensors) and wiring use.
* `cells`: the same steps as pure functions `(inputs, weights, state, ts, config) -> (output, state)`, with
  weights keyed by ncps names relative to the cell; what a block registry wraps. A module hands its cell
  exactly these: `m.rnn_cell.weights()` (parameters plus the masks / reversal potentials of the wiring as it is
  now) and `m.rnn_cell.config`; then `cfc_cell` (unwired CfC, with `m.rnn_cell.dropout()` as its dropout),
  `wired_cfc_cell` (wired CfC, one dict per layer) or `ltc_cell`, and `lstm_cell` with `m.lstm`'s parameters
  before it when mixed_memory is on.
  `m.state_order` maps state entries to wiring neuron ids.
"""

from .base import NeuronStateDictError
from .cells import (
    ACTIVATIONS,
    CFC_MODES,
    CfCCellConfig,
    LTCCellConfig,
    cfc_cell,
    lstm_cell,
    ltc_cell,
    wired_cfc_cell,
)
from .cfc import CfC, cfc_layer_masks
from .ltc import LTC, effective_erev

__all__ = [
    "CfC",
    "LTC",
    "NeuronStateDictError",
    "cfc_cell",
    "wired_cfc_cell",
    "ltc_cell",
    "lstm_cell",
    "CfCCellConfig",
    "LTCCellConfig",
    "cfc_layer_masks",
    "effective_erev",
    "ACTIVATIONS",
    "CFC_MODES",
]
