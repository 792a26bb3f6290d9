"""`Random`: a seeded random subset of all synapses; ncps 1.0.1 draws, including its double sensory draw."""

from __future__ import annotations

import numpy as np

from . import checks
from .neurons import Wiring


class Random(Wiring):
    """ncps's Random wiring. round-half-even(units² · (1 - sparsity_level)) pairs are picked with
    `default_rng(random_seed).choice(pairs, n, replace=False)`, then one polarity `choice([-1, 1, 1])` per
    picked pair. `build` picks the sensory pairs the same way from the same stream.

    Kept on purpose: ncps draws *two* polarities per sensory synapse and keeps the second. Dropping the
    first draw would change every sensory matrix, and reproducing ncps's matrices is the contract."""

    def __init__(self, units, output_dim=None, sparsity_level=0.0, random_seed=1111):
        super().__init__(units)
        self.set_output_dim(self.units if output_dim is None else output_dim)
        checks.number("sparsity_level", sparsity_level)
        if not 0.0 <= sparsity_level < 1.0:
            raise ValueError(f"Invalid sparsity_level {sparsity_level!r}, expected a value in [0, 1)")
        self.sparsity_level = sparsity_level
        self._random_seed = checks.count("random_seed", random_seed, minimum=0)
        self._rng = np.random.default_rng(random_seed)
        count = int(np.round(self.units * self.units * (1 - sparsity_level)))
        # Picking from range(n) spends the same draws as ncps's list of (src, dest) tuples.
        picked = self._rng.choice(self.units * self.units, size=count, replace=False)
        polarities = self._rng.choice([-1, 1, 1], size=count)
        self.adjacency_matrix[picked // self.units, picked % self.units] = polarities

    def _generate_sensory(self) -> None:
        count = int(np.round(self.input_dim * self.units * (1 - self.sparsity_level)))
        picked = self._rng.choice(self.input_dim * self.units, size=count, replace=False)
        polarities = self._rng.choice([-1, 1, 1], size=2 * count)[1::2]  # the second draw of each pair wins
        self.sensory_adjacency_matrix[picked // self.units, picked % self.units] = polarities

    def get_config(self) -> dict:
        return {
            "class_name": type(self).__name__,
            "units": self.units,
            "output_dim": self.output_dim,
            "sparsity_level": self.sparsity_level,
            "random_seed": self._random_seed,
        }

    @classmethod
    def _from_config(cls, config: dict):
        return cls._construct(config)
