"""Probe points: every cell of every wiring is a probe, named like the cell.

| probe                     | value (shape)                                   | stats (each [B, S, H])                          |
|---------------------------|-------------------------------------------------|-------------------------------------------------|
| `embedding`               | token embeddings [B, S, D]                      | mean, std, absmax, l2 (H = 1)                   |
| `blocks.i.in`             | residual stream entering block i [B, S, D]      | mean, std, absmax, l2                           |
| `blocks.i.mlstm.norm_in`  | RMSNorm(stream) * w [B, S, D]                   | mean, std, absmax, l2                           |
| `blocks.i.mlstm.q/k/v`    | projections [B, S, NH*DQK or NH*DV]             | per head (H = NH)                               |
| `blocks.i.mlstm.igate`    | cap(W_i x + b_i) [B, S, NH]                     | value, exp (= exp(i_t - m_t), needs `.memory`)  |
| `blocks.i.mlstm.fgate`    | cap(W_f x + b_f) [B, S, NH]                     | value, sigmoid (= sigma(f_t))                   |
| `blocks.i.mlstm.ogate`    | sigma(W_o x) [B, S, NH*DV]                      | per head                                        |
| `blocks.i.mlstm.memory`   | cell output h before the norm [B, S, NH*DV]     | per head, plus C_norm (‖C_t‖_F), n_norm, m      |
| `blocks.i.mlstm.norm`     | per-head LayerNorm(h) * w [B, S, NH*DV]         | per head                                        |
| `blocks.i.mlstm.h`        | ogate * norm [B, S, NH*DV]                      | per head                                        |
| `blocks.i.mlstm.out`      | out_proj [B, S, D]                              | mean, std, absmax, l2                           |
| `blocks.i.mid`            | stream after the mLSTM residual [B, S, D]       | mean, std, absmax, l2                           |
| `blocks.i.ffn.norm_in`    | RMSNorm(mid) * w [B, S, D]                      | mean, std, absmax, l2                           |
| `blocks.i.ffn.gate/up/h`  | SiLU(W_g x), W_u x, their product [B, S, F]     | mean, std, absmax, l2                           |
| `blocks.i.ffn.out`        | proj_down [B, S, D]                             | mean, std, absmax, l2                           |
| `blocks.i.out`            | stream leaving block i [B, S, D]                | mean, std, absmax, l2                           |
| sLSTM blocks ("slstm"):   |                                                 |                                                 |
| `blocks.i.slstm.norm_in`  | LN(stream) (1 + w) [B, S, D]                    | mean, std, absmax, l2                           |
| `blocks.i.slstm.conv`     | SiLU(causal conv) [B, S, D]                     | per head                                        |
| `blocks.i.slstm.igate/fgate/zgate/ogate` | block-diagonal W_g x [B, S, D]   | per head                                        |
| `blocks.i.slstm.memory`   | [c; n; m; h] per token [B, S, 4D]               | mean, std, absmax, l2                           |
| `blocks.i.slstm.c/n/m/h`  | the sLSTM memory's c, n, m, h [B, S, D]         | per head                                        |
| `blocks.i.slstm.norm`     | GroupNorm(h) (1 + w) [B, S, D]                  | per head                                        |
| `blocks.i.mid`, `ffn.*`, `out` | as in the mLSTM block, with LN (1 + w) and GELU(W_g x) | as above                              |
| `out_norm`                | final RMSNorm [B, S, D]                         | mean, std, absmax, l2                           |
| `logits`                  | cap_30(lm_head) [B, S, V]                       | mean, std, absmax, l2                           |

The statistics themselves are computed in `xlstm_viz.execution.stats`.

Memory norms per token come from one place, the memory cell's own MemoryTrace (`model/mlstm_cell.py`), on every
device and stats backend, over exactly what the memory cell received and from the state it started with: recurrent
mode reads them off each step's state; chunkwise mode reconstructs them exactly from the chunk-boundary states (m_t
and n_t in closed form, ‖C_t‖_F by a Gram identity) inside the cell's compiled graph, without a recurrent re-run.
The tests hold them to a float64 reference recurrence (tests/memory_reference.py) and to the final state.
"""

from __future__ import annotations

import difflib
import fnmatch

from xlstm_viz.wiring.block_types import HeadRuleSet

# Probes whose feature axis splits into heads (their stats are per head), and the scalar-per-head gates: read
# from the block tables (wiring.block_types), where each cell's head rule is declared; live, so every registered
# block type counts.
PER_HEAD_CELLS = HeadRuleSet("heads")
GATE_CELLS = HeadRuleSet("features")


def probe_names(model) -> list[str]:
    """All probe names of a model, in execution order (for one token): `model.probe_names()`."""
    return model.probe_names()


def select_probes(model, probes) -> list[str]:
    """Resolve names / fnmatch patterns to probe names; an unknown name is an error that suggests close ones."""
    names = probe_names(model)
    if probes is None:
        return names
    if isinstance(probes, str):
        probes = [probes]
    known, chosen = set(names), set()
    for pattern in probes:
        if not isinstance(pattern, str):
            raise TypeError(f"probe names and patterns are strings, got {pattern!r} ({type(pattern).__name__})")
        if pattern in known:  # an exact name (the common case: a list from another trace); fnmatch is slow per name
            chosen.add(pattern)
            continue
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            close = difflib.get_close_matches(pattern, names, n=5)
            raise KeyError(f"no probe matches {pattern!r}; close names: {close or names[:8]}")
        chosen.update(hits)
    return [n for n in names if n in chosen]


def local_name(name: str) -> str:
    """`blocks.3.mlstm.q` -> `mlstm.q`; model-level names are returned as they are."""
    if name.startswith("blocks."):
        return name.split(".", 2)[2]
    return name


def probe_heads(local: str, width: int, num_heads: int) -> int:
    """How many groups a probe's stats are taken over: heads for per-head cells and gates, else 1. local: the
    probe's `local_name` (`mlstm.q`); the Recorder splits every name once, before its per-probe loop."""
    if local in GATE_CELLS:
        return width
    return num_heads if local in PER_HEAD_CELLS and width % num_heads == 0 else 1
