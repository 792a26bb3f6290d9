"""The tensors of one debugger stop as 2-D arrays for heatmaps (no Bokeh here): the memory C per head, n per head,
the gate vectors and the cell output split by head.

A stop (`StepEvent`) holds the cell's inputs and output as numpy, and at `blocks.i.mlstm.memory` the state after
it (C [B, NH, DQK, DV], n [B, NH, DQK], m [B, NH]). The last token of the stop's span is shown (one token per stop
in recurrent mode); batch row 0.
"""

from __future__ import annotations

import numpy as np

from xlstm_viz.execution.interventions import has_heads
from xlstm_viz.execution.probes import GATE_CELLS, local_name

GATE_ROWS = ("i (input gate, pre-activation)", "f (forget gate, pre-activation)", "sigmoid(f)", "m (stabilizer)")


def _last_token(a: np.ndarray) -> np.ndarray:
    """[B, S, F] -> [F] of batch 0, last token; [B, F] -> [F]."""
    a = np.asarray(a, dtype=np.float64)
    return a[0, -1] if a.ndim == 3 else a[0] if a.ndim == 2 else a.ravel()


def memory_grid(C: np.ndarray, gap: int = 1) -> tuple[np.ndarray, list[float]]:
    """C [B, NH, DQK, DV] -> one image [DQK, NH * (DV + gap) - gap], heads side by side with NaN gaps between them,
    and the x centre of each head (for its axis label)."""
    c = np.asarray(C, dtype=np.float64)[0]
    NH, DQK, DV = c.shape
    img = np.full((DQK, NH * (DV + gap) - gap), np.nan)
    centres = []
    for h in range(NH):
        x0 = h * (DV + gap)
        img[:, x0:x0 + DV] = c[h]
        centres.append(x0 + DV / 2)
    return img, centres


def by_head(vector: np.ndarray, name: str, num_heads: int) -> np.ndarray:
    """A cell output [F] -> [rows, F / rows]: one row per head for per-head cells, a gate as [1, NH], else [1, F]."""
    v = np.asarray(vector, dtype=np.float64).ravel()
    local = local_name(name)
    if local in GATE_CELLS:
        return v[None, :]
    if has_heads(name) and v.size % num_heads == 0:
        return v.reshape(num_heads, -1)
    return v[None, :]


def stop_tables(ev, num_heads: int) -> dict:
    """What the inspector draws for one stop. Keys: output [rows, F] (+ output_rows: row labels), and at a memory
    stop C (image + head centres), n [NH, DQK], gates [4, NH] (rows GATE_ROWS); absent keys have no data here."""
    if ev is None:
        return {}
    out = by_head(_last_token(ev.output), ev.name, num_heads)
    rows = [f"head {h}" for h in range(out.shape[0])] if out.shape[0] > 1 else ["all features"]
    tables = {"output": out, "output_rows": rows}
    if ev.state is not None and "C" in ev.state:
        tables["C"], tables["C_heads"] = memory_grid(ev.state["C"])
        tables["n"] = np.asarray(ev.state["n"], dtype=np.float64)[0]
        m = np.asarray(ev.state["m"], dtype=np.float64).reshape(-1)[: tables["n"].shape[0]]
        block = f"blocks.{ev.block}."
        gates = {k[len(block):] if k.startswith(block) else k: v for k, v in ev.inputs.items()}
        i = gates.get("mlstm.igate")
        f = gates.get("mlstm.fgate")
        if i is not None and f is not None:
            i, f = _last_token(i), _last_token(f)
            tables["gates"] = np.stack([i, f, 1.0 / (1.0 + np.exp(-f)), m])
    return tables


def token_label(ev, decode=None, tokens=None) -> str | None:
    """The label of the stop's token (`K3`), `#id` if it does not decode, None without a token."""
    if ev is None or ev.token is None or tokens is None or not 0 <= ev.token < len(tokens):
        return None
    if decode is None:
        return str(int(tokens[ev.token]))
    try:
        return str(decode(int(tokens[ev.token])))
    except (ValueError, IndexError, KeyError):
        return f"#{int(tokens[ev.token])}"


def stop_title(ev, decode=None, tokens=None) -> str:
    """`blocks.0.mlstm.memory at token 5 ("K3")`: the stop and its token label."""
    if ev is None:
        return "not started"
    if ev.token is None:
        return f"{ev.name} (all tokens at once)"
    label = token_label(ev, decode, tokens)
    return f"{ev.name} at token {ev.token}" + ("" if label is None else f' ("{label}")')
