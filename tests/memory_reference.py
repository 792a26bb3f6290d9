"""The test suite's one reference of the mLSTM memory recurrence: per-token ||C_t||_F, ||n_t|| and m_t in float64.

The package computes memory norms in one place, the memory cell's own MemoryTrace (`xlstm_viz/model/mlstm_cell.py`:
recurrent mode reads them off each step's state, chunkwise mode reconstructs them from the chunk-boundary states).
The tests hold that to this loop, written from the paper's equations with nothing shared with the package:

    m_t = max(log sigma(f_t) + m_{t-1}, i_t)
    C_t = exp(log sigma(f_t) + m_{t-1} - m_t) C_{t-1} + exp(i_t - m_t) k_t v_t^T
    n_t = exp(log sigma(f_t) + m_{t-1} - m_t) n_{t-1} + exp(i_t - m_t) k_t
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np


def memory_norms(k, v, i, f, state=None) -> dict[str, np.ndarray]:
    """k [B, S, NH*DQK], v [B, S, NH*DV], i and f [B, S, NH] (the pre-activations the memory cell received), state:
    (C [B, NH, DQK, DV], n [B, NH, DQK], m [B, NH] or [B, NH, 1]) entering the sequence, or None for zeros.
    Returns {"C_norm", "n_norm", "m"}, each [B, S, NH] float64; a NaN gate makes m (and the norms) NaN from its token."""
    k, v, i, f = (np.asarray(a, np.float64) for a in (k, v, i, f))
    B, S, NH = i.shape
    k, v = k.reshape(B, S, NH, -1), v.reshape(B, S, NH, -1)
    if state is None:
        C = np.zeros((B, NH, k.shape[-1], v.shape[-1]))
        n = np.zeros((B, NH, k.shape[-1]))
        m = np.zeros((B, NH))
    else:
        C, n, m = (np.asarray(a, np.float64) for a in state)
        m = m.reshape(B, NH)
    out = {key: np.empty((B, S, NH)) for key in ("C_norm", "n_norm", "m")}
    with np.errstate(invalid="ignore", over="ignore"):
        for t in range(S):
            logf = np.minimum(f[:, t], 0.0) - np.log1p(np.exp(-np.abs(f[:, t])))  # log sigma(f), stable
            m_new = np.maximum(logf + m, i[:, t])
            m_new[np.isnan(logf + m + i[:, t])] = np.nan  # NaN propagates as in mx.maximum
            decay, gain = np.exp(logf + m - m_new), np.exp(i[:, t] - m_new)
            C = decay[..., None, None] * C + gain[..., None, None] * (k[:, t, :, :, None] * v[:, t, :, None, :])
            n = decay[..., None] * n + gain[..., None] * k[:, t]
            m = m_new
            out["C_norm"][:, t] = np.sqrt(np.square(C).sum(axis=(-2, -1)))
            out["n_norm"][:, t] = np.sqrt(np.square(n).sum(axis=-1))
            out["m"][:, t] = m
    return out


class _MemoryInputs:
    """Observer: what each memory cell received (k, v, i, f after the wiring) and the state it started from."""

    stepping = False

    def __init__(self, model):
        self.model = model
        self.seen = {}

    def wants_memory_trace(self, block):
        return False

    def on_cell(self, event):
        if event.cell_type != "mlstm_memory":
            return
        record = self.seen.setdefault(event.block, {"state": None if event.zero_state_in else event.state_in})
        for key, cell in (("k", "mlstm.k"), ("v", "mlstm.v"), ("i", "mlstm.igate"), ("f", "mlstm.fgate")):
            record.setdefault(key, []).append(np.array(event.inputs[cell].astype(mx.float32)))
        params = self.model.cell_wirings[event.block].cells[event.name].params
        if params.get("scale_k"):  # the original mLSTM's memory holds k / sqrt(DH)
            record["k"][-1] = record["k"][-1] / np.sqrt(params["features"] // params["num_heads"])


def reference_norms(model, ids, run_mode="chunkwise", state=None) -> dict[int, dict[str, np.ndarray]]:
    """block -> `memory_norms` over what that block's memory cell received in a forward of `ids`."""
    from xlstm_viz.model.forward import Executor

    observer = _MemoryInputs(model)
    Executor(model).forward_observed(ids, state=state, mode=run_mode, observer=observer)
    out = {}
    for j, record in observer.seen.items():
        given = record["state"]
        given = None if given is None else [np.array(a) for a in given.arrays()]
        out[j] = memory_norms(*(np.concatenate(record[key], axis=1) for key in "kvif"), given)
    return out
