"""The sLSTM cell (scalar memory, exponential gating, block-diagonal recurrence) of the original xLSTM.

Semantics of the official `vanilla` backend (xlstm 2.0.6, blocks/slstm/src/vanilla/slstm.py), per unit of head h:

    raw_g = W_g x_t + R_g^(h) h_{t-1} + b_g            for g in (i, f, z, o); R^(h) is head h's DH x DH block
    m_t   = max(raw_i, log sigma(raw_f) + m_{t-1})     (stabiliser; m_t = raw_i at the very first step, see below)
    i'_t  = min(exp(raw_i - m_t), 1)
    f'_t  = min(exp(log sigma(raw_f) + m_{t-1} - m_t), 1)
    c_t   = f'_t c_{t-1} + i'_t tanh(raw_z)
    n_t   = f'_t n_{t-1} + i'_t
    h_t   = sigma(raw_o) c_t / n_t

with c_0 = n_0 = m_0 = h_0 = 0. The recurrence feeds h (before the block's group norm) back through R.

"First step": the official code sets m_t = raw_i when n is zero *everywhere in the state tensor* (all batch rows and
units), not per unit: `if torch.all(n == 0.0)`. We test the same whole-tensor condition so that a batch whose state
is fresh behaves identically; a state with any non-zero n takes the max everywhere.

Weight layouts. The vanilla backend stores R as `_recurrent_kernel_` [NH, 4*DH, DH] (gate-major rows: row g*DH + o
of head h holds R_g[o, :]) and the bias as `_bias_` [4*NH*DH] (gate-major). The cuda backend stores R as
[NH, DH, 4*DH] (input-major) and the bias as [NH*4*DH] (head-major). `vanilla_layout` converts the cuda form.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx

from xlstm_viz.model.activations import log_sigmoid

GATES = ("i", "f", "z", "o")
OUTPUTS = (*GATES, "c", "n", "m", "h")  # what `sequence` returns per token, in this order


@dataclass
class SLSTMState:
    """Memory of one sLSTM block, [B, NH, DH] each, float32: cell c, normaliser n, stabiliser m, hidden h."""

    c: mx.array
    n: mx.array
    m: mx.array
    h: mx.array

    @classmethod
    def zeros(cls, batch: int, num_heads: int, head_dim: int) -> "SLSTMState":
        z = mx.zeros((batch, num_heads, head_dim), mx.float32)
        return cls(z, z, z, z)

    def arrays(self) -> tuple[mx.array, mx.array, mx.array, mx.array]:
        return self.c, self.n, self.m, self.h


def vanilla_layout(recurrent_kernel: mx.array, bias: mx.array, num_heads: int, backend: str):
    """(R [NH, 4, DH_out, DH_in], b [4, NH, DH]) from a checkpoint's `_recurrent_kernel_`, `_bias_` of `backend`."""
    NH = num_heads
    if backend == "vanilla":
        DH = recurrent_kernel.shape[-1]
        return recurrent_kernel.reshape(NH, 4, DH, DH), bias.reshape(4, NH, DH)
    if backend == "cuda":
        DH = recurrent_kernel.shape[1]
        R = recurrent_kernel.reshape(NH, DH, 4, DH).transpose(0, 2, 3, 1)  # [h, d_in, g, o] -> [h, g, o, d_in]
        return R, bias.reshape(NH, 4, DH).transpose(1, 0, 2)
    raise ValueError(f"sLSTM backend must be 'vanilla' or 'cuda', got {backend!r}")


def step(
    wx: tuple[mx.array, mx.array, mx.array, mx.array], R: mx.array, b: mx.array, state: SLSTMState
) -> tuple[SLSTMState, tuple[mx.array, mx.array, mx.array, mx.array]]:
    """One token. wx: W_g x_t for g = i, f, z, o, [B, NH, DH] each; R [NH, 4, DH, DH] and b [4, NH, DH] as
    `vanilla_layout` returns them. Returns the new state and the raw pre-activations (i, f, z, o)."""
    c, n, m, h = state.arrays()
    # Block-diagonal recurrence: head h's previous output feeds only head h's four gates.
    ry = mx.einsum("bhd,hgod->gbho", h, R)
    raw_i, raw_f, raw_z, raw_o = (wx[g] + ry[g] + b[g] for g in range(4))
    log_f_plus_m = m + log_sigmoid(raw_f)
    m_new = mx.where(mx.all(n == 0.0), raw_i, mx.maximum(raw_i, log_f_plus_m))  # stabiliser
    i_act = mx.minimum(mx.exp(raw_i - m_new), 1.0)
    f_act = mx.minimum(mx.exp(log_f_plus_m - m_new), 1.0)
    c_new = f_act * c + i_act * mx.tanh(raw_z)
    n_new = f_act * n + i_act
    h_new = mx.sigmoid(raw_o) * c_new / n_new
    return SLSTMState(c_new, n_new, m_new, h_new), (raw_i, raw_f, raw_z, raw_o)


def sequence(
    wx: tuple[mx.array, mx.array, mx.array, mx.array], R: mx.array, b: mx.array, state: SLSTMState
) -> tuple[dict[str, mx.array], SLSTMState]:
    """A sequence, token by token (the sLSTM has no parallel form). wx: [B, S, NH, DH] each.

    Returns per-token values {h, c, n, m, i, f, z, o} ([B, S, NH, DH] each; i..o are the raw pre-activations) and
    the final state."""
    seq: dict[str, list[mx.array]] = {k: [] for k in OUTPUTS}
    for t in range(wx[0].shape[1]):
        state, raw = step(tuple(w[:, t] for w in wx), R, b, state)
        for key, value in zip(("c", "n", "m", "h", *GATES), (*state.arrays(), *raw)):
            seq[key].append(value)
    return {k: mx.stack(v, axis=1) for k, v in seq.items()}, state
