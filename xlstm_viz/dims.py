"""The block dimensions of an xLSTM-Large mLSTM block, derived once from the config fields.

Pure Python (no MLX, no pydantic) so that the wiring package, the config, the model and the loader share it.
The rules are those of the official code (xlstm 2.0.6, `xlstm/xlstm_large/model.py` and `utils.py`):

* `mLSTMLayer`: qk_dim = int(D * qk_dim_factor), v_dim = int(D * v_dim_factor); heads split them evenly.
* `FeedForward`: ffn_dim = round_up_to_next_multiple_of(D * ffn_proj_factor, m) = int((x + m - 1) // m * m) on
  the *float* x = D * f. That is not ceil(x / m) * m: a fraction of x just above a multiple is dropped. For D = 96,
  f = 2.667, m = 64: x = 256.032, the official width is (319.032 // 64) * 64 = 256, ceil gives 320. Only the
  official formula reproduces the official tensor shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def round_up_to_next_multiple_of(x: float, multiple_of: int) -> int:
    """The official `xlstm.xlstm_large.utils.round_up_to_next_multiple_of`, float arithmetic included."""
    return int(((x + multiple_of - 1) // multiple_of) * multiple_of)


@dataclass(frozen=True)
class MLSTMBlockDims:
    embedding_dim: int
    num_heads: int
    qk_dim: int
    v_dim: int
    ffn_dim: int

    @property
    def qk_head_dim(self) -> int:
        return self.qk_dim // self.num_heads

    @property
    def v_head_dim(self) -> int:
        return self.v_dim // self.num_heads


def mlstm_block_dims(embedding_dim: int, num_heads: int, qk_dim_factor: float = 0.5, v_dim_factor: float = 1.0,
                     ffn_proj_factor: float = 2.667, ffn_round_up_to_multiple_of: int = 64) -> MLSTMBlockDims:
    """qk/v/ffn widths of one mLSTM block exactly as the official layers compute them (see module docstring).

    Callers with a validated config (XLSTMConfig) pass checked values; a plain dict (BlockWiring.from_config) may
    not, so the types are guarded here too: `64 * "0.5"` would otherwise be a string of 64 copies.
    """
    for name, value in (("embedding_dim", embedding_dim), ("num_heads", num_heads),
                        ("ffn_round_up_to_multiple_of", ffn_round_up_to_multiple_of)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"config field {name!r} must be a positive integer, got {value!r}")
    for name, value in (("qk_dim_factor", qk_dim_factor), ("v_dim_factor", v_dim_factor),
                        ("ffn_proj_factor", ffn_proj_factor)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"config field {name!r} must be a positive number, got {value!r}")
    return MLSTMBlockDims(
        embedding_dim=embedding_dim,
        num_heads=num_heads,
        qk_dim=int(embedding_dim * qk_dim_factor),
        v_dim=int(embedding_dim * v_dim_factor),
        ffn_dim=round_up_to_next_multiple_of(embedding_dim * ffn_proj_factor, ffn_round_up_to_multiple_of),
    )


def mlstm_block_parameters(dims: MLSTMBlockDims, use_bias: bool = False) -> int:
    """Parameters of one xLSTM-Large block (mLSTM layer + SwiGLU FFN + two RMSNorms), counted from its dimensions."""
    D, QK, V, NH, F = dims.embedding_dim, dims.qk_dim, dims.v_dim, dims.num_heads, dims.ffn_dim
    # q, k, v, ogate, igate, fgate, out_proj, ffn gate/up/down; then gate biases, head-norm weight, two norm weights
    count = (2 * QK + 2 * V + 2 * NH + V + 3 * F) * D + 2 * NH + V + 2 * D
    if use_bias:  # q, k, v, ogate, out_proj, ffn gate/up/down, head norm, two norms
        count += 2 * QK + 2 * V + D + 2 * F + D + V + 2 * D
    return count


def model_parameters(dims: MLSTMBlockDims, num_blocks: int, vocab_size: int, use_bias: bool = False,
                     add_out_norm: bool = True, tie_word_embeddings: bool = False) -> int:
    """Parameters of an all-mLSTM xLSTM-Large model: embedding, blocks, out_norm, lm_head (none when tied)."""
    D = dims.embedding_dim
    heads = 1 if tie_word_embeddings else 2
    out_norm = (2 * D if use_bias else D) if add_out_norm else 0
    return heads * vocab_size * D + num_blocks * mlstm_block_parameters(dims, use_bias) + out_norm


def up_proj_dim(factor: float, embedding_dim: int, multiple_of: int = 64, round_up: bool = True) -> int:
    """The original xLSTM's rule (`xlstm.utils.UpProjConfigMixin._set_proj_up_dim`, used by `xLSTMLMModel` for the
    mLSTM inner width and the sLSTM block's FFN): int(ceil(factor * D / m) * m), or floor when not rounding up.

    A different official function from `round_up_to_next_multiple_of` above (xLSTM-Large); both are reproduced
    float for float, and tests hold each to a table written by the official code."""
    quotient = factor * embedding_dim / multiple_of
    return int((math.ceil(quotient) if round_up else math.floor(quotient)) * multiple_of)
