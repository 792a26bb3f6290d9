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
| `out_norm`                | final RMSNorm [B, S, D]                         | mean, std, absmax, l2                           |
| `logits`                  | cap_30(lm_head) [B, S, V]                       | mean, std, absmax, l2                           |

Memory norms per token: recurrent mode reads them off each step's state; chunkwise mode reconstructs them exactly
from the chunk-boundary states (m_t and n_t in closed form, ‖C_t‖_F by a Gram identity), without a recurrent re-run.
"""

from __future__ import annotations

import difflib
import fnmatch

import mlx.core as mx
import numpy as np

# Probes whose feature axis splits into heads: their stats are per head.
PER_HEAD_CELLS = ("mlstm.q", "mlstm.k", "mlstm.v", "mlstm.ogate", "mlstm.memory", "mlstm.norm", "mlstm.h")
GATE_CELLS = ("mlstm.igate", "mlstm.fgate")
BASE_STATS = ("mean", "std", "absmax", "l2")


def probe_names(model) -> list[str]:
    """All probe names of a model, in execution order (for one token)."""
    names = ["embedding"]
    for wiring in model.cell_wirings:
        names.extend(wiring.order())
    names += ["out_norm", "logits"]
    return names


def select_probes(model, probes) -> list[str]:
    """Resolve names / fnmatch patterns to probe names; an unknown name is an error that suggests close ones."""
    names = probe_names(model)
    if probes is None:
        return names
    if isinstance(probes, str):
        probes = [probes]
    chosen = []
    for pattern in probes:
        hits = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            close = difflib.get_close_matches(pattern, names, n=5)
            raise KeyError(f"no probe matches {pattern!r}; close names: {close or names[:8]}")
        chosen.extend(h for h in hits if h not in chosen)
    return [n for n in names if n in chosen]


def local_name(name: str) -> str:
    """`blocks.3.mlstm.q` -> `mlstm.q`; model-level names are returned as they are."""
    if name.startswith("blocks."):
        return name.split(".", 2)[2]
    return name


def probe_heads(name: str, width: int, num_heads: int) -> int:
    """How many groups a probe's stats are taken over: heads for per-head cells and gates, else 1."""
    local = local_name(name)
    if local in GATE_CELLS:
        return width
    return num_heads if local in PER_HEAD_CELLS and width % num_heads == 0 else 1


def table_columns(layout: tuple[tuple[int, int, int], ...]) -> list[dict[str, tuple[int, int]]]:
    """Where each input of `stats_table(layout)` lands in its output: per input, stat -> (offset, width).

    layout: per input array, (features, heads, kind). kind 1: mean/std/absmax/L2 over each head's features; kind 0:
    the array is copied in as it is (gate values, memory norms) under the stat name "raw".
    Inputs whose heads have the same width are reduced together, so the table costs a few reductions per width
    rather than four per probe.
    """
    columns: list[dict[str, tuple[int, int]]] = [{} for _ in layout]
    offset = 0
    for width, members in _width_classes(layout).items():
        for stat in BASE_STATS:
            for i in members:
                heads = layout[i][1]
                columns[i][stat] = (offset, heads)
                offset += heads
    for i, (features, _, kind) in enumerate(layout):
        if not kind:
            columns[i]["raw"] = (offset, features)
            offset += features
    return columns


def _width_classes(layout) -> dict[int, list[int]]:
    classes: dict[int, list[int]] = {}
    for i, (features, heads, kind) in enumerate(layout):
        if kind:
            classes.setdefault(features // heads, []).append(i)
    return classes


def _stats_table(layout: tuple[tuple[int, int, int], ...]):
    """One compiled function for a whole trace: every probe's stats in one [B, S, C] array (`table_columns`).

    On a small model a stats trace's cost was per-op dispatch, not arithmetic (benchmarks/trace_overhead.py), so
    the inputs are grouped by head width and reduced together.
    """
    classes = _width_classes(layout)

    def table(*arrays):
        B, S = arrays[0].shape[:2]
        columns = []
        for width, members in classes.items():
            parts = [arrays[i].astype(mx.float32).reshape(B, S, layout[i][1], width) for i in members]
            x = parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=2)
            mean = mx.mean(x, axis=-1)
            # std from centred values: the moments form, fused with an FMA on a GPU, left sqrt(rounding) ~1e-4
            # where std is exactly 0 (one-feature gates). This table runs on GPUs, where centring is cheap.
            std = mx.sqrt(mx.mean(mx.square(x - mean[..., None]), axis=-1))
            columns += [mean, std, mx.max(mx.abs(x), axis=-1), mx.sqrt(mx.sum(mx.square(x), axis=-1))]
        columns += [arrays[i].astype(mx.float32) for i, (_, _, kind) in enumerate(layout) if not kind]
        return mx.concatenate(columns, axis=-1)

    return mx.compile(table)


def numpy_stats(arrays: list[np.ndarray], layout: tuple[tuple[int, int, int], ...],
                small: int = 1 << 18) -> list[dict[str, np.ndarray]]:
    """The same stats as `stats_table`, computed with numpy on arrays that already live in host memory.

    On MLX's CPU device the arrays are read in place (no copy) and numpy's reductions were up to 3.6x faster than
    MLX's there (benchmarks/trace_overhead.py); on a GPU the compiled MLX table is used instead, so that only the
    stats cross to the host. Inputs of one head width are reduced together while they are small (per-call overhead
    dominates), one by one when large (the concatenation would copy).
    """
    out: list[dict[str, np.ndarray]] = [{} for _ in layout]
    for width, members in _width_classes(layout).items():
        views = {i: arrays[i].reshape(*arrays[i].shape[:2], layout[i][1], width) for i in members}
        groups = [members] if sum(v.size for v in views.values()) <= small else [[i] for i in members]
        for group in groups:
            x = views[group[0]] if len(group) == 1 else np.concatenate([views[i] for i in group], axis=2)
            shape = x.shape[:3]
            if 8 <= width <= 64:
                # Short heads (q/k/v of the demo: 16, 32 features): features first, so each reduction runs along
                # contiguous rows, which numpy vectorises: 1.5x faster there. For wide rows the transposing copy
                # costs more than it saves (measured at D=512 and 1024), so they are reduced in place.
                x = np.ascontiguousarray(x.reshape(-1, width).T)
                axis = 0
            else:
                axis = -1
            total = x.sum(axis=axis)
            squares = np.einsum("ij,ij->j", x, x) if axis == 0 else np.einsum("...i,...i->...", x, x)
            peak = np.maximum(x.max(axis=axis), -x.min(axis=axis))
            total, squares, peak = (a.reshape(shape) for a in (total, squares, peak))
            mean = total / width
            stats = {"mean": mean, "std": np.sqrt(np.maximum(squares / width - mean * mean, 0.0)),
                     "absmax": peak, "l2": np.sqrt(squares)}
            start = 0
            for i in group:
                heads = layout[i][1]
                out[i] = {k: v[..., start: start + heads] for k, v in stats.items()}
                start += heads
    for i, (_, _, kind) in enumerate(layout):
        if not kind:
            out[i] = {"raw": arrays[i]}
    return out


_TABLES: dict[tuple, object] = {}


def stats_table(layout: tuple[tuple[int, int, int], ...]):
    """The compiled stats function for a layout (cached: a model traced again re-uses it)."""
    fn = _TABLES.get(layout)
    if fn is None:
        if len(_TABLES) >= 32:
            _TABLES.pop(next(iter(_TABLES)))
        fn = _TABLES[layout] = _stats_table(layout)
    return fn
