"""Point-wise functions of xLSTM-7B."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


def soft_cap(x: mx.array, cap: float | None) -> mx.array:
    """cap * tanh(x / cap): bounds gate pre-activations (cap 15) and logits (cap 30)."""
    if cap is None or cap <= 0:
        return x
    return cap * mx.tanh(x / cap)


def log_sigmoid(x: mx.array) -> mx.array:
    """log(sigmoid(x)) = -softplus(-x), stable for large |x|."""
    return -mx.logaddexp(mx.zeros_like(x), -x)


# The original xLSTM's feed-forward activations (components/feedforward.py `act_fn`), by their official names.
FFN_ACTIVATIONS = {
    "gelu": nn.gelu,  # exact (erf) GELU, as torch.nn.functional.gelu
    "relu": nn.relu,
    "relu^2": lambda x: mx.square(nn.relu(x)),
    "sigmoid": mx.sigmoid,
    "swish": nn.silu,
    "selu": nn.selu,
}
