"""Liquid time-constant RNN (`LTC`), ncps.torch 1.0.1 semantics on MLX.

The wiring enters the cell the way ncps's does: |adjacency| and |sensory adjacency| mask the synapse *activations*
(so a missing synapse adds to neither sum of the ODE step), and the reversal potentials `erev` / `sensory_erev`
start as the polarity matrices and are trained. State order = neuron ids; output = the first output_dim neurons.

Live edits. Masks are read from the wiring on every forward pass (cached per wiring version). The trained
reversal potentials are kept as parameters, and a polarity edit acts on them relative to the polarity they were
trained with (the wiring when the module was built or a state_dict loaded): a flipped synapse uses `-erev`, a
synapse added where there was none uses its new polarity (ncps's initial value), an unchanged one its trained
`erev`. With no edits this is exactly ncps's computation.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

import xlstm_viz.blas  # noqa: F401  (fast BLAS must be bound before MLX loads)
import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from xlstm_viz.wiring import FullyConnected, Wiring

from .base import LSTMCell, NeuronRNN, check_wiring, mask_problems
from .cells import LTCCellConfig, ltc_cell, synapse_index

INIT_RANGES = {
    "gleak": (0.001, 1.0),
    "vleak": (-0.2, 0.2),
    "cm": (0.4, 0.6),
    "w": (0.001, 1.0),
    "sigma": (3, 8),
    "mu": (0.3, 0.8),
    "sensory_w": (0.001, 1.0),
    "sensory_sigma": (3, 8),
    "sensory_mu": (0.3, 0.8),
}


def effective_erev(erev: mx.array, trained_polarity: np.ndarray, polarity: np.ndarray) -> mx.array:
    """Reversal potentials under the current polarity (see the module docstring)."""
    return _erev_rule(trained_polarity, polarity)(erev)


def _erev_rule(trained_polarity: np.ndarray, polarity: np.ndarray):
    """erev -> effective erev for one pair of polarity matrices (the constants built once per wiring version)."""
    relative = mx.array((polarity * trained_polarity).astype(np.float32))  # +1 kept, -1 flipped, 0 added/removed
    trained = mx.array(trained_polarity != 0)
    fresh = mx.array(polarity.astype(np.float32))
    return lambda erev: mx.where(trained, erev * relative, fresh)


class LTCCell(nn.Module):
    """ncps.torch `LTCCell`'s parameters: gleak, vleak, cm, sigma, mu, w, erev and their sensory_ versions, and
    input_w/input_b/output_w/output_b by the mappings."""

    def __init__(self, wiring: Wiring, config: LTCCellConfig):
        super().__init__()
        self.wiring = wiring
        self.config = config
        n, d = wiring.units, wiring.input_dim

        def init(shape, name):
            low, high = INIT_RANGES[name]
            return mx.random.uniform(low, high, shape)

        self.gleak = init((n,), "gleak")
        self.vleak = init((n,), "vleak")
        self.cm = init((n,), "cm")
        self.sigma = init((n, n), "sigma")
        self.mu = init((n, n), "mu")
        self.w = init((n, n), "w")
        self.erev = mx.array(wiring.erev_initializer(dtype=np.float32))
        self.sensory_sigma = init((d, n), "sensory_sigma")
        self.sensory_mu = init((d, n), "sensory_mu")
        self.sensory_w = init((d, n), "sensory_w")
        self.sensory_erev = mx.array(wiring.sensory_erev_initializer(dtype=np.float32))
        if config.input_mapping in ("affine", "linear"):
            self.input_w = mx.ones((d,))
        if config.input_mapping == "affine":
            self.input_b = mx.zeros((d,))
        if config.output_mapping in ("affine", "linear"):
            self.output_w = mx.ones((config.motor_size,))
        if config.output_mapping == "affine":
            self.output_b = mx.zeros((config.motor_size,))
        self.snapshot_polarity()
        self._cache_version = None
        self._cache = None

    def snapshot_polarity(self) -> None:
        """Take the wiring's polarity now as the one `erev`/`sensory_erev` belong to."""
        self._trained = (self.wiring.adjacency_matrix.copy(), self.wiring.sensory_adjacency_matrix.copy())
        self._cache_version = None

    def _wiring_tensors(self) -> dict:
        if self._cache_version != self.wiring.version or self._cache is None:
            A, S = self.wiring.adjacency_matrix, self.wiring.sensory_adjacency_matrix
            self._cache = {
                "sparsity_mask": mx.array(np.abs(A).astype(np.float32)),
                "sensory_sparsity_mask": mx.array(np.abs(S).astype(np.float32)),
                "erev": _erev_rule(self._trained[0], A),
                "sensory_erev": _erev_rule(self._trained[1], S),
                "synapse_index": synapse_index(A != 0),
                "sensory_synapse_index": synapse_index(S != 0),
            }
            self._cache_version = self.wiring.version
        return self._cache

    def wiring_tensors(self) -> dict[str, mx.array]:
        """Masks and effective reversal potentials from the wiring now, by ncps name."""
        cache = self._wiring_tensors()
        return {
            "sparsity_mask": cache["sparsity_mask"],
            "sensory_sparsity_mask": cache["sensory_sparsity_mask"],
            "erev": cache["erev"](self.erev),
            "sensory_erev": cache["sensory_erev"](self.sensory_erev),
        }

    def weights(self) -> dict:
        """What `ltc_cell` takes: parameters, the wiring's tensors, and the synapse lists of sparse masks."""
        weights = dict(tree_flatten(self.parameters()), **self.wiring_tensors())
        cache = self._wiring_tensors()
        for name in ("synapse_index", "sensory_synapse_index"):
            if cache[name] is not None:
                weights[name] = cache[name]
        return weights


class LTC(NeuronRNN):
    """Applies a Liquid time-constant RNN to a sequence; ncps.torch `LTC`'s arguments and defaults.

    `units`: number of neurons (then a `FullyConnected(units)` wiring, seed 1111, as ncps) or a wiring.
    `input_mapping` / `output_mapping`: "affine", "linear" or None. `implicit_param_constraints=True` keeps w,
    sensory_w, cm and gleak positive through softplus; with False call `apply_weight_constraints()` after each
    optimiser step, as in ncps.
    """

    def __init__(
        self,
        input_size: int,
        units,
        return_sequences: bool = True,
        batch_first: bool = True,
        mixed_memory: bool = False,
        input_mapping: Optional[str] = "affine",
        output_mapping: Optional[str] = "affine",
        ode_unfolds: int = 6,
        epsilon: float = 1e-8,
        implicit_param_constraints: bool = True,
    ):
        super().__init__(input_size, return_sequences, batch_first, mixed_memory)
        if isinstance(units, (int, np.integer)) and not isinstance(units, bool):
            units = FullyConnected(int(units))
        self.wiring = check_wiring(units, self.input_size, "LTC")
        self.state_size = self.wiring.units
        self.output_size = self.wiring.output_dim
        config = LTCCellConfig(self.output_size, input_mapping, output_mapping, ode_unfolds, float(epsilon),
                               bool(implicit_param_constraints))
        self.rnn_cell = LTCCell(self.wiring, config)
        if self.use_mixed:
            self.lstm = LSTMCell(self.input_size, self.state_size)

    @property
    def sensory_size(self) -> int:
        return self.wiring.input_dim

    @property
    def motor_size(self) -> int:
        return self.wiring.output_dim

    @property
    def synapse_count(self):
        return self.wiring.synapse_count

    @property
    def sensory_synapse_count(self):
        """Synapses from the sensory inputs (ncps 1.0.1 returns the inter-neuron count here, a bug)."""
        return self.wiring.sensory_synapse_count

    def apply_weight_constraints(self) -> None:
        """ncps's explicit constraints (implicit_param_constraints=False): clip w, sensory_w, cm, gleak at 0."""
        if not self.rnn_cell.config.implicit_param_constraints:
            for name in ("w", "sensory_w", "cm", "gleak"):
                setattr(self.rnn_cell, name, mx.maximum(getattr(self.rnn_cell, name), 0.0))

    def _cell_weights(self):
        return self.rnn_cell.weights()

    def _step(self, x, weights, h, ts):
        return ltc_cell(x, weights, h, ts, self.rnn_cell.config)

    def _check_timespans(self, ts):
        if not bool(mx.all(ts > 0).item()):
            raise ValueError("LTC timespans must all be > 0 (the ODE step divides by the elapsed time)")

    def _derived_tensors(self):
        return {f"rnn_cell.{k}": v for k, v in self.rnn_cell.wiring_tensors().items()}

    def _check_derived(self, tensors):
        A, S = self.wiring.adjacency_matrix, self.wiring.sensory_adjacency_matrix
        return mask_problems("rnn_cell.sparsity_mask", tensors["rnn_cell.sparsity_mask"], np.abs(A)) + mask_problems(
            "rnn_cell.sensory_sparsity_mask", tensors["rnn_cell.sensory_sparsity_mask"], np.abs(S)
        )

    def _after_load(self):
        self.rnn_cell.snapshot_polarity()


__all__ = ["LTC", "LTCCell", "effective_erev"]
