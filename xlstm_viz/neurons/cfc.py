"""Closed-form continuous-time RNN (`CfC`), ncps.torch 1.0.1 semantics on MLX.

Unwired (`units` an int): one CfC cell with a backbone MLP. Wired (`units` a Wiring): ncps's `WiredCfCCell`, one
cell per wiring layer (NCP: inter, command, motor), whose ff1/ff2 weights are masked by the wiring: layer 0 by
|sensory_adjacency[:, layer]|, layer l by |adjacency[layer l-1, layer l]|, each stacked with an all-ones block for
the layer's own recurrent input. As in ncps, polarity and the synapses inside a layer do not enter a CfC.
The masks are read from the wiring on every forward pass (cached per wiring version), so a synapse edit changes
the next call. Parameter names are ncps's (`rnn_cell.layer_0.ff1.weight`, `rnn_cell.backbone.0.bias`, ...).
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

import xlstm_viz.blas  # noqa: F401  (fast BLAS must be bound before MLX loads)
import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from xlstm_viz.wiring import Wiring

from .base import LSTMCell, NeuronRNN, check_count, check_wiring, xavier_uniform, mask_problems
from .cells import ACTIVATIONS, CfCCellConfig, cfc_cell, wired_cfc_cell


class _Slot(nn.Module):
    """A parameterless layer of ncps's backbone nn.Sequential (activation or Dropout). It only holds its place
    so that the Linear layers get ncps's indices (`backbone.0`, `backbone.2`, `backbone.5`, ...)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind


class CfCCell(nn.Module):
    """ncps.torch `CfCCell`'s parameters (`backbone.*`, `ff1`, `ff2`, `time_a`, `time_b`; `w_tau`, `A` in pure mode)."""

    def __init__(self, input_size, hidden_size, mode="default", activation="lecun_tanh", backbone_units=128,
                 backbone_layers=1, backbone_dropout=0.0):
        super().__init__()
        self.config = CfCCellConfig(mode, activation)
        self.hidden_size = hidden_size
        self.backbone_dropout = float(backbone_dropout)
        if backbone_layers > 0:
            self.backbone = [nn.Linear(input_size + hidden_size, backbone_units), _Slot(activation)]
            for _ in range(1, backbone_layers):
                self.backbone += [nn.Linear(backbone_units, backbone_units), _Slot(activation)]
                if self.backbone_dropout > 0.0:
                    self.backbone.append(_Slot("dropout"))
        cat = hidden_size + input_size if backbone_layers == 0 else backbone_units
        self.ff1 = nn.Linear(cat, hidden_size)
        if self.config.mode == "pure":
            self.w_tau = mx.zeros((1, hidden_size))
            self.A = mx.ones((1, hidden_size))
        else:
            self.ff2 = nn.Linear(cat, hidden_size)
            self.time_a = nn.Linear(cat, hidden_size)
            self.time_b = nn.Linear(cat, hidden_size)
        # ncps: xavier_uniform_ on every 2-D trainable parameter (w_tau and A included), torch defaults for biases
        for path, value in tree_flatten(self.parameters()):
            if value.ndim == 2:
                _set(self, path, xavier_uniform(value.shape))

    def weights(self) -> dict:
        return dict(tree_flatten(self.parameters()))

    def dropout(self):
        """Inverted dropout after the second and later backbone layers, in training mode only (as torch)."""
        p = self.backbone_dropout
        if not (self.training and p > 0.0):
            return None
        return lambda z: z * mx.random.bernoulli(1.0 - p, z.shape) / (1.0 - p)


def _set(module: nn.Module, path: str, value: mx.array) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        module = module[int(part)] if isinstance(module, list) else getattr(module, part)
    setattr(module, leaf, value)


def cfc_layer_masks(wiring: Wiring) -> list[np.ndarray]:
    """ncps `WiredCfCCell`'s sparsity masks, one per layer, in Linear's [out, in] layout (float32 0/1)."""
    masks = []
    for layer in range(wiring.num_layers):
        ids = wiring.get_neurons_of_layer(layer)
        if layer == 0:
            incoming = wiring.sensory_adjacency_matrix[:, ids]
        else:
            incoming = wiring.adjacency_matrix[np.ix_(wiring.get_neurons_of_layer(layer - 1), ids)]
        stacked = np.concatenate([incoming, np.ones((len(ids), len(ids)))], axis=0)
        masks.append(np.abs(stacked.T).astype(np.float32))
    return masks


class WiredCfCCell(nn.Module):
    """ncps.torch `WiredCfCCell`: `layer_0`, `layer_1`, ... CfC cells without backbone, masked by the wiring."""

    def __init__(self, input_size, wiring: Wiring, mode="default"):
        super().__init__()
        self.wiring = wiring
        self.layer_sizes = [len(wiring.get_neurons_of_layer(layer)) for layer in range(wiring.num_layers)]
        in_features = input_size
        for layer, size in enumerate(self.layer_sizes):
            setattr(self, f"layer_{layer}", CfCCell(in_features, size, mode, "lecun_tanh", 0, 0, 0.0))
            in_features = size
        self.config = CfCCellConfig(mode)
        self._masks_version = None
        self._masks = None

    @property
    def layers(self) -> list[CfCCell]:
        return [getattr(self, f"layer_{layer}") for layer in range(len(self.layer_sizes))]

    def masks(self) -> list[mx.array]:
        """The wiring's masks now (rebuilt when the wiring's version changes)."""
        if self._masks_version != self.wiring.version or self._masks is None:
            self._masks = [mx.array(m) for m in cfc_layer_masks(self.wiring)]
            self._masks_version = self.wiring.version
        return self._masks

    def weights(self) -> list[dict]:
        return [dict(layer.weights(), sparsity_mask=m) for layer, m in zip(self.layers, self.masks())]


class CfC(NeuronRNN):
    """Applies a Closed-form Continuous-time RNN to a sequence; ncps.torch `CfC`'s arguments and defaults.

    `units`: number of hidden units, or a wiring (then the backbone arguments are refused, as in ncps).
    `proj_size`: a final Linear of the outputs (`fc`). `mixed_memory`: an LSTM (`lstm`) runs before the cell each
    step. `backbone_dropout` acts in training mode only (MLX modules start in training mode, as torch's: call
    `.eval()` for inference).
    """

    def __init__(
        self,
        input_size: int,
        units,
        proj_size: Optional[int] = None,
        return_sequences: bool = True,
        batch_first: bool = True,
        mixed_memory: bool = False,
        mode: str = "default",
        activation: str = "lecun_tanh",
        backbone_units: Optional[int] = None,
        backbone_layers: Optional[int] = None,
        backbone_dropout: Optional[float] = None,
    ):
        super().__init__(input_size, return_sequences, batch_first, mixed_memory)
        CfCCellConfig(mode, activation)  # validates both
        self.wired_mode = not isinstance(units, (int, np.integer)) or isinstance(units, bool)
        if self.wired_mode:
            for name, value in (("backbone_units", backbone_units), ("backbone_layers", backbone_layers),
                                ("backbone_dropout", backbone_dropout)):
                if value is not None:
                    raise ValueError(f"Cannot use {name} in wired mode")
            if activation != "lecun_tanh":
                raise ValueError(
                    f"activation={activation!r} has no effect in wired mode: a wired CfC has no backbone, and "
                    "the activation is only used there"
                )
            self.wiring = check_wiring(units, self.input_size, "CfC")
            self.state_size = self.wiring.units
            self.rnn_cell = WiredCfCCell(self.input_size, self.wiring, mode)
            # ncps's wired output is the last layer's whole state: the motor neurons for an NCP, all units for a
            # one-layer wiring (FullyConnected, Random), whatever output_dim says
            self.output_size = self.rnn_cell.layer_sizes[-1]
            if proj_size is not None and self.output_size != self.wiring.output_dim:
                raise ValueError(
                    f"proj_size with this wiring: its last layer has {self.output_size} neurons but output_dim is "
                    f"{self.wiring.output_dim}; ncps builds fc for output_dim and then fails on the "
                    f"{self.output_size}-wide output. Use a wiring with output_dim == units or an NCP."
                )
        else:
            self.wiring = None
            backbone_units = 128 if backbone_units is None else check_count("backbone_units", backbone_units)
            backbone_layers = 1 if backbone_layers is None else check_count("backbone_layers", backbone_layers, 0)
            backbone_dropout = 0.0 if backbone_dropout is None else float(backbone_dropout)
            if not 0.0 <= backbone_dropout < 1.0:
                raise ValueError(f"backbone_dropout must be in [0, 1), got {backbone_dropout!r}")
            if backbone_dropout > 0.0 and backbone_layers < 2:
                warnings.warn(
                    f"backbone_dropout={backbone_dropout} has no effect with backbone_layers={backbone_layers}: "
                    "ncps applies dropout only after the second and later backbone layers",
                    stacklevel=2,
                )
            if backbone_layers == 0 and activation != "lecun_tanh":
                raise ValueError(f"activation={activation!r} has no effect with backbone_layers=0 (no backbone)")
            self.state_size = check_count("units", units)
            self.output_size = self.state_size
            self.rnn_cell = CfCCell(self.input_size, self.state_size, mode, activation, backbone_units,
                                    backbone_layers, backbone_dropout)
        if self.use_mixed:
            self.lstm = LSTMCell(self.input_size, self.state_size)
        self.proj_size = None if proj_size is None else check_count("proj_size", proj_size)
        if self.proj_size is not None:
            self.fc = nn.Linear(self.output_size, self.proj_size)

    @property
    def mode(self) -> str:
        return self.rnn_cell.config.mode

    @property
    def state_order(self) -> list[int]:
        if not self.wired_mode:
            return list(range(self.state_size))
        return [i for layer in range(self.wiring.num_layers) for i in self.wiring.get_neurons_of_layer(layer)]

    def _cell_weights(self):
        return self.rnn_cell.weights()

    def _step(self, x, weights, h, ts):
        if self.wired_mode:
            return wired_cfc_cell(x, weights, h, ts, self.rnn_cell.config)
        return cfc_cell(x, weights, h, ts, self.rnn_cell.config, self.rnn_cell.dropout())

    def _readout(self, out):
        return out if self.proj_size is None else self.fc(out)

    def _derived_tensors(self):
        if not self.wired_mode:
            return {}
        return {f"rnn_cell.layer_{i}.sparsity_mask": m for i, m in enumerate(self.rnn_cell.masks())}

    def _check_derived(self, tensors):
        problems = []
        for i, mask in enumerate(cfc_layer_masks(self.wiring) if self.wired_mode else []):
            name = f"rnn_cell.layer_{i}.sparsity_mask"
            problems += mask_problems(name, tensors[name], mask)
        return problems


__all__ = ["CfC", "CfCCell", "WiredCfCCell", "cfc_layer_masks", "ACTIVATIONS"]
