"""`FullyConnected`: every neuron (and, after build, every input) feeds every neuron; ncps 1.0.1 draws."""

from __future__ import annotations

import numpy as np

from . import checks
from .neurons import Wiring


class FullyConnected(Wiring):
    """ncps's FullyConnected: polarities `choice([-1, 1, 1])` (P(-1) = 1/3) from `default_rng(erev_init_seed)`,
    row-major, the diagonal skipped without a draw when `self_connections` is False; `build` continues the
    same stream for the sensory synapses."""

    def __init__(self, units, output_dim=None, erev_init_seed=1111, self_connections=True):
        super().__init__(units)
        self.set_output_dim(self.units if output_dim is None else output_dim)
        self.self_connections = checks.flag("self_connections", self_connections)
        self._erev_init_seed = checks.count("erev_init_seed", erev_init_seed, minimum=0)
        self._rng = np.random.default_rng(erev_init_seed)
        off_diagonal = ~np.eye(self.units, dtype=bool)
        where = off_diagonal if not self.self_connections else np.ones_like(off_diagonal)
        # One vector draw equals ncps's per-synapse scalar draws: each takes one bounded u32 in turn.
        self.adjacency_matrix[where] = self._rng.choice([-1, 1, 1], size=int(where.sum()))

    def _generate_sensory(self) -> None:
        self.sensory_adjacency_matrix[:] = self._rng.choice([-1, 1, 1], size=self.sensory_adjacency_matrix.shape)

    def get_config(self) -> dict:
        return {
            "class_name": type(self).__name__,
            "units": self.units,
            "output_dim": self.output_dim,
            "erev_init_seed": self._erev_init_seed,
            "self_connections": self.self_connections,
        }

    @classmethod
    def _from_config(cls, config: dict):
        return cls._construct(config)
