"""CfC, LTC and LSTM cells as pure functions `(inputs, weights, state, ...) -> (output, state)`.

`weights` is a flat dict keyed by ncps.torch 1.0.1's own parameter names *relative to the cell*
(`ff1.weight`, `backbone.0.bias`, `gleak`, `sensory_erev`, `sparsity_mask`, ...), so a cell's slice of an ncps
state_dict can be passed as it is. Masks and reversal potentials are ordinary entries of that dict: the modules
in cfc.py / ltc.py fill them from the wiring before every call, which is how a synapse edit reaches the next
forward pass without touching the parameters.

`ts` (elapsed time) is a Python float or an array broadcastable to [B, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

import xlstm_viz.blas  # noqa: F401  (fast BLAS must be bound before MLX loads)
import mlx.core as mx
import mlx.nn as nn

CFC_MODES = ("default", "pure", "no_gate")
ACTIVATIONS: dict[str, Callable[[mx.array], mx.array]] = {
    "silu": nn.silu,
    "relu": nn.relu,
    "tanh": mx.tanh,
    "gelu": nn.gelu,  # exact (erf) GELU, as torch.nn.GELU()
    "lecun_tanh": lambda x: 1.7159 * mx.tanh(0.666 * x),  # ncps's LeCun module (its constants)
}
LTC_MAPPINGS = ("affine", "linear", None)


def _linear(x: mx.array, weights: dict, name: str, mask: Optional[mx.array] = None) -> mx.array:
    w = weights[f"{name}.weight"]
    if mask is not None:
        w = w * mask
    bias = weights.get(f"{name}.bias")
    return x @ w.T if bias is None else mx.addmm(bias, x, w.T)


def backbone_indices(weights: dict) -> list[int]:
    """Positions of the Linear layers in ncps's `backbone` nn.Sequential (0, 2, then every 2 or 3 with dropout)."""
    return sorted({int(k.split(".")[1]) for k in weights if k.startswith("backbone.") and k.endswith(".weight")})


@dataclass(frozen=True)
class CfCCellConfig:
    mode: str = "default"
    activation: str = "lecun_tanh"

    def __post_init__(self):
        if self.mode not in CFC_MODES:
            raise ValueError(f"Unknown CfC mode {self.mode!r}; valid modes are {list(CFC_MODES)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {self.activation!r}; valid activations are {sorted(ACTIVATIONS)}")


def cfc_cell(
    inputs: mx.array,
    weights: dict,
    h: mx.array,
    ts=1.0,
    config: CfCCellConfig = CfCCellConfig(),
    dropout: Optional[Callable[[mx.array], mx.array]] = None,
) -> tuple[mx.array, mx.array]:
    """One CfC step (Hasani et al. 2022, eq. 10, closed-form continuous-time cell), ncps.torch `CfCCell.forward`.

    `weights` may hold `sparsity_mask` ([hidden, in+hidden]); it multiplies the ff1/ff2 weights only (as ncps).
    `dropout` runs after the second and later backbone layers (where ncps's nn.Sequential puts its Dropout).
    """
    x = mx.concatenate([inputs, h], axis=-1)
    act = ACTIVATIONS[config.activation]
    for n, index in enumerate(backbone_indices(weights)):
        x = act(_linear(x, weights, f"backbone.{index}"))
        if dropout is not None and n > 0:
            x = dropout(x)
    mask = weights.get("sparsity_mask")
    ff1 = _linear(x, weights, "ff1", mask)
    if config.mode == "pure":
        # direct solution approximation: x(t) = -A exp(-t (w_tau + f)) f + A
        A = weights["A"]
        new_h = -A * mx.exp(-ts * (mx.abs(weights["w_tau"]) + mx.abs(ff1))) * ff1 + A
    else:
        ff1 = mx.tanh(ff1)
        ff2 = mx.tanh(_linear(x, weights, "ff2", mask))
        t_interp = mx.sigmoid(_linear(x, weights, "time_a") * ts + _linear(x, weights, "time_b"))
        if config.mode == "no_gate":
            new_h = ff1 + t_interp * ff2
        else:  # gated interpolation between the two heads
            new_h = ff1 * (1.0 - t_interp) + t_interp * ff2
    return new_h, new_h


def wired_cfc_cell(
    inputs: mx.array, layers: list[dict], h: mx.array, ts=1.0, config: CfCCellConfig = CfCCellConfig(),
    between: Optional[Callable] = None,
) -> tuple[mx.array, mx.array]:
    """ncps `WiredCfCCell.forward`: one CfC cell per wiring layer, each fed by the previous layer's new state.

    The state is the layers' states concatenated in layer order (NCP: inter, command, motor); the output is the
    last layer's state. Each layer's `weights` carries its own `sparsity_mask`. `between(layer, state)` (not
    ncps's): an intervention on each layer's new state before it is kept and feeds the next layer.
    """
    sizes = [int(w["ff1.bias"].shape[0]) for w in layers]
    if h.shape[-1] != sum(sizes):
        raise ValueError(f"wired CfC state has {h.shape[-1]} units, the layers hold {sizes} = {sum(sizes)}")
    parts = mx.split(h, [sum(sizes[: i + 1]) for i in range(len(sizes) - 1)], axis=-1)
    x, new = inputs, []
    for weights, part in zip(layers, parts):
        x, _ = cfc_cell(x, weights, part, ts, config)
        if between is not None:
            x = between(len(new), x)
        new.append(x)
    return x, mx.concatenate(new, axis=-1)


@dataclass(frozen=True)
class LTCCellConfig:
    motor_size: int
    input_mapping: Optional[str] = "affine"
    output_mapping: Optional[str] = "affine"
    ode_unfolds: int = 6
    epsilon: float = 1e-8
    implicit_param_constraints: bool = True

    def __post_init__(self):
        for name in ("input_mapping", "output_mapping"):
            if getattr(self, name) not in LTC_MAPPINGS:
                raise ValueError(f"Unknown LTC {name} {getattr(self, name)!r}; valid values are {list(LTC_MAPPINGS)}")
        if not isinstance(self.ode_unfolds, int) or isinstance(self.ode_unfolds, bool) or self.ode_unfolds < 1:
            raise ValueError(f"ode_unfolds must be a positive int, got {self.ode_unfolds!r}")


def ltc_cell(
    inputs: mx.array, weights: dict, v: mx.array, ts=1.0, config: LTCCellConfig = None,
    clamp: Optional[Callable] = None,
) -> tuple[mx.array, mx.array]:
    """One LTC step (Hasani et al. 2021), ncps.torch `LTCCell.forward`: `ode_unfolds` semi-implicit Euler steps of

        cm dv/dt = gleak (vleak - v) + sum_j w_j sigma(v_j) (erev_j - v)

    with synapse activations `w * sigmoid(sigma (v_pre - mu))` masked by `sparsity_mask` (and the sensory ones by
    `sensory_sparsity_mask`); `erev` / `sensory_erev` are the reversal potentials. Output: the first
    `motor_size` neurons, then the output mapping.

    Optional `synapse_index` / `sensory_synapse_index` entries (from `synapse_index(mask)`, not ncps tensors) make
    the step evaluate only the pairs that have a synapse; the result is the same up to float32 summation order.
    `clamp(v, last)` (not ncps's): an intervention on the potentials after every ODE unfold (last: the step's final
    unfold), so a clamped value holds throughout the step.
    """
    c = config
    positive = nn.softplus if c.implicit_param_constraints else (lambda a: a)
    if c.input_mapping in ("affine", "linear"):
        inputs = inputs * weights["input_w"]
    if c.input_mapping == "affine":
        inputs = inputs + weights["input_b"]

    def prepare(prefix):  # the loop-invariant part of a synapse population
        index = weights.get(prefix + "synapse_index")
        if index is None:
            take = lambda name: weights[prefix + name]
        else:  # only the pairs with a synapse, flattened to [nnz]
            take = lambda name: weights[prefix + name].reshape(-1)[index[0]]
        return index, positive(take("w")), take("sigma"), take("mu"), take("sparsity_mask"), take("erev")

    def drive(pre, population):  # (sum over sources of act * erev, sum of act), act = w sigmoid(sigma (pre - mu))
        index, w, sigma, mu, mask, erev = population
        if index is None:  # [B, src, dest]
            act = w * mx.sigmoid(sigma * (pre[..., None] - mu)) * mask
            return mx.sum(act * erev, axis=1), mx.sum(act, axis=1)
        _, src, scatter = index  # [B, nnz], summed into the targets by a one-hot [nnz, dest]
        act = w * mx.sigmoid(sigma * (mx.take(pre, src, axis=1) - mu)) * mask
        return (act * erev) @ scatter, act @ scatter

    # the sensory drive does not depend on v: computed once per step
    num_sensory, den_sensory = drive(inputs, prepare("sensory_"))
    synapses = prepare("")
    cm_t = positive(weights["cm"]) / (ts / c.ode_unfolds)
    gleak = positive(weights["gleak"])
    for unfold in range(c.ode_unfolds):
        num, den = drive(v, synapses)
        numerator = cm_t * v + gleak * weights["vleak"] + (num + num_sensory)
        denominator = cm_t + gleak + (den + den_sensory)
        v = numerator / (denominator + c.epsilon)
        if clamp is not None:
            v = clamp(v, unfold == c.ode_unfolds - 1)

    out = v[..., : c.motor_size] if c.motor_size < v.shape[-1] else v
    if c.output_mapping in ("affine", "linear"):
        out = out * weights["output_w"]
    if c.output_mapping == "affine":
        out = out + weights["output_b"]
    return out, v


def synapse_index(mask: np.ndarray):
    """(flat pair index [nnz], source index [nnz], one-hot of the target [nnz, dest]) of a sparse [src, dest] mask,
    for `ltc_cell`; None when at least half of the pairs have a synapse (then the dense step is as fast)."""
    src, dest = np.nonzero(mask)
    if len(src) == 0 or len(src) >= 0.5 * mask.size:
        return None
    scatter = np.zeros((len(src), mask.shape[1]), np.float32)
    scatter[np.arange(len(src)), dest] = 1.0
    flat = (src * mask.shape[1] + dest).astype(np.int32)
    return mx.array(flat), mx.array(src.astype(np.int32)), mx.array(scatter)


def lstm_cell(inputs: mx.array, weights: dict, state: tuple[mx.array, mx.array]) -> tuple[mx.array, tuple]:
    """ncps's mixed-memory `LSTMCell` (forget-gate bias +1), which runs before the CfC/LTC cell each step."""
    h, c = state
    z = _linear(inputs, weights, "input_map") + h @ weights["recurrent_map.weight"].T
    i, ig, fg, og = mx.split(z, 4, axis=-1)
    c = c * mx.sigmoid(fg + 1.0) + mx.tanh(i) * mx.sigmoid(ig)
    h = mx.tanh(c) * mx.sigmoid(og)
    return h, (h, c)
