"""From-scratch initialisation of a model from a HyperProfile (xlstm_viz.wiring.profiles).

One numpy Generator, seeded, walks the parameters in checkpoint-name order and the profile draws each one by its
kind (`parameter_kind`: embedding, linear, gate_weight, igate_bias, fgate_bias, norm, ...), so a (profile, seed)
pair always gives the same weights.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from xlstm_viz.wiring.profiles import HyperProfile, load_profile, parameter_kind


def initialize(model, profile, seed: int = 0) -> None:
    """Draw every parameter the profile has a kind for. The other block types' parameters that have no kind (an
    sLSTM's `recurrent_kernel`, the original mLSTM's `learnable_skip`, an LTC's `cm`/`gleak`/..., the memory
    neurons' `W`/`R`) keep the values their module was built with (the official / ncps initialisation); a
    parameter of the 7B's mLSTM block or outside the blocks without a kind is still an error."""
    if not isinstance(profile, HyperProfile):
        profile = load_profile(profile)
    rng = np.random.default_rng(seed)
    types = model.config.layer_types()
    new = []
    for name, value in sorted(tree_flatten(model.parameters())):
        parts = name.split(".")
        j = int(parts[2]) if parts[:2] == ["backbone", "blocks"] else None
        try:
            kind = parameter_kind(name)
        except ValueError:
            if j is not None and types[j] != "mlstm":
                continue
            raise
        array = profile.init_parameter(name, tuple(value.shape), rng)
        # a norm whose weight is stored as an offset from 1 (LN(x) (1 + w)): the profile's scale v is w = v - 1
        offset = (getattr(model.blocks[j], "norm_offset", False) if j is not None
                  else name == "backbone.out_norm.weight" and model.config.out_norm_type == "layernorm_offset")
        if kind == "norm" and offset:
            array = array - 1
        new.append((name, mx.array(array, dtype=value.dtype)))
    model.update(tree_unflatten(new))
