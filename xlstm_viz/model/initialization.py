"""From-scratch initialisation of a model from a HyperProfile (xlstm_viz.wiring.profiles).

One numpy Generator, seeded, walks the parameters in checkpoint-name order and the profile draws each one by its
kind (`parameter_kind`: embedding, linear, gate_weight, igate_bias, fgate_bias, norm, ...), so a (profile, seed)
pair always gives the same weights.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from xlstm_viz.wiring.profiles import HyperProfile, load_profile


def initialize(model, profile, seed: int = 0) -> None:
    if not isinstance(profile, HyperProfile):
        profile = load_profile(profile)
    rng = np.random.default_rng(seed)
    new = [
        (name, mx.array(profile.init_parameter(name, tuple(value.shape), rng), dtype=value.dtype))
        for name, value in sorted(tree_flatten(model.parameters()))
    ]
    model.update(tree_unflatten(new))
