"""From-scratch initialisation of a model from a HyperProfile (xlstm_viz.wiring.profiles).

Each parameter is mapped to a profile *kind* (embedding, linear, gate_weight, igate_bias, fgate_bias, norm, bias,
lm_head); the profile draws it. One numpy Generator, seeded, walks the parameters in checkpoint-name order, so a
(profile, seed) pair always gives the same weights.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten


def parameter_kind(name: str) -> str:
    if name.endswith("embeddings.weight"):
        return "embedding"
    if name == "lm_head.weight":
        return "lm_head"
    if ".igate_preact." in name or ".fgate_preact." in name:
        gate = "igate" if ".igate_preact." in name else "fgate"
        return f"{gate}_bias" if name.endswith(".bias") else "gate_weight"
    if "norm" in name.rsplit(".", 2)[-2]:
        return "norm" if name.endswith(".weight") else "bias"
    return "bias" if name.endswith(".bias") else "linear"


def initialize(model, profile, seed: int = 0) -> None:
    from xlstm_viz.wiring.profiles import HyperProfile, load_profile

    if not isinstance(profile, HyperProfile):
        profile = load_profile(profile)
    rng = np.random.default_rng(seed)
    new = []
    for name, value in sorted(tree_flatten(model.parameters())):
        kind = parameter_kind(name)
        fallback = {"lm_head": "linear", "bias": None}.get(kind, kind)
        if kind not in profile.initializers and fallback in profile.initializers:
            kind = fallback
        if kind is None or kind not in profile.initializers:
            array = np.zeros(value.shape, np.float32) if kind in (None, "bias") else None
            if array is None:
                raise KeyError(
                    f"HyperProfile {profile.name!r} has no initializer for {kind!r} (parameter {name}); "
                    f"it defines {sorted(profile.initializers)}"
                )
        else:
            array = profile.init_array(kind, tuple(value.shape), rng)
        new.append((name, mx.array(array, dtype=value.dtype)))
    model.update(tree_unflatten(new))
