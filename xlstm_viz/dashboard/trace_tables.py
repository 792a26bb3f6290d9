"""Trace -> plain column tables for the over-time, overlay and diff views (no Bokeh here).

A trace (xlstm_viz.execution) holds `tokens` [B,S], `logits` [B,S,V], `probes` and
`stats[probe][stat]` arrays of shape [B,S,H]. These functions pick one batch row and turn those
arrays into the columns the views draw.
"""

from __future__ import annotations

import fnmatch

import numpy as np

from xlstm_viz.dashboard.colors import diverging, map_to_palette, viridis
from xlstm_viz.wiring.block_types import MLSTM_BLOCK, block_table, cell_type

# How a graph node reads its value from a trace: block-level nodes use the residual stream they emit.
BLOCK_NODE_PROBES = {"embedding": "embedding", "out_norm": "out_norm", "lm_head": "logits"}
AGGREGATES = ("mean", "max", "min", "last")
# The per-head gate/memory panels of the over-time view: (probe suffix, preferred stat, readable title), declared by
# each block type's table (wiring.block_types); the view's fixed panels are the mLSTM block's.
GATE_PANELS = MLSTM_BLOCK.panels


def probe_for_node(name: str) -> str:
    """Probe whose statistics colour a graph node (`blocks.3` -> `blocks.3.out`, cells map to themselves)."""
    if name in BLOCK_NODE_PROBES:
        return BLOCK_NODE_PROBES[name]
    parts = name.split(".")
    if len(parts) == 2 and parts[0] == "blocks" and parts[1].isdigit():
        return f"{name}.out"
    return name


def stat_names(trace, probe: str) -> list[str]:
    if probe not in trace.stats:
        raise KeyError(f"probe {probe!r} is not in the trace; recorded probes: {list(trace.stats)[:12]}...")
    return list(trace.stats[probe])


def _stat(trace, probe: str, stat: str, batch: int) -> np.ndarray:
    stats = trace.stats.get(probe)
    if stats is None:
        raise KeyError(f"probe {probe!r} is not in the trace")
    if stat not in stats:
        raise KeyError(f"probe {probe!r} has no statistic {stat!r}; it has {sorted(stats)}")
    a = np.asarray(stats[stat])
    if a.ndim != 3:
        raise ValueError(f"trace.stats[{probe!r}][{stat!r}] must be [B,S,H], got shape {a.shape}")
    if not 0 <= batch < a.shape[0]:
        raise IndexError(f"batch row {batch} out of range for trace with batch size {a.shape[0]}")
    return a[batch]  # [S, H]


def reduce_tokens(values: np.ndarray, token: int | None, agg: str) -> np.ndarray:
    """[S, ...] -> [...]: the value at one token, or an aggregate over all tokens."""
    if token is not None:
        if not -values.shape[0] <= token < values.shape[0]:
            raise IndexError(f"token {token} out of range for a sequence of {values.shape[0]} tokens")
        return values[token]
    if agg == "mean":
        return np.nanmean(values, axis=0) if np.isfinite(values).any() else values[0] * np.nan
    if agg == "max":
        return np.max(values, axis=0)
    if agg == "min":
        return np.min(values, axis=0)
    if agg == "last":
        return values[-1]
    raise ValueError(f"aggregate must be one of {AGGREGATES}, got {agg!r}")


def node_values(trace, names, stat: str, token: int | None = None, agg: str = "mean", batch: int = 0) -> np.ndarray:
    """Value of `stat` per graph node (averaged over heads); NaN where the node has no such probe/stat.

    NaN rather than an error because a block graph mixes nodes with different statistics
    (logits has no C_norm); the view draws those nodes grey.
    """
    out = np.full(len(names), np.nan)
    for i, name in enumerate(names):
        probe = probe_for_node(name)
        stats = trace.stats.get(probe)
        if stats is None or stat not in stats:
            continue
        per_token = np.nanmean(_stat(trace, probe, stat, batch), axis=1)  # heads -> one value
        out[i] = float(reduce_tokens(per_token, token, agg))
    return out


def overlay_columns(values: np.ndarray, symmetric: bool = False, size_range=(10.0, 30.0)) -> dict[str, np.ndarray]:
    """Fill colour and marker size per node from its value; symmetric=True for diffs (0 = white)."""
    v = np.asarray(values, dtype=np.float64)
    pal = diverging() if symmetric else viridis()
    colors = map_to_palette(v, pal, symmetric=symmetric)
    mag = np.abs(v) if symmetric else v
    finite = np.isfinite(mag)
    size = np.full(v.shape, size_range[0])
    if finite.any():
        lo, hi = float(np.min(mag[finite])), float(np.max(mag[finite]))
        t = np.zeros(v.shape) if hi <= lo else (np.nan_to_num(mag, nan=lo) - lo) / (hi - lo)
        size = size_range[0] + t * (size_range[1] - size_range[0])
    text = np.array(["n/a" if not np.isfinite(x) else f"{x:.4g}" for x in v], dtype=object)
    return {"value": v, "fill": colors, "size": size, "value_text": text}


def safe_decode(decode):
    """Wrap a decoder so an id it cannot name (e.g. beyond a task's vocabulary) shows as `#id`, not an error."""
    if decode is None:
        return None

    def run(i: int) -> str:
        try:
            return str(decode(int(i)))
        except (ValueError, IndexError, KeyError):
            return f"#{int(i)}"

    return run


def token_labels(tokens: np.ndarray, decode=None) -> list[str]:
    """Readable label per position: `pos:text` (or `pos:id` without a tokenizer)."""
    labels = []
    decode = safe_decode(decode)
    for p, t in enumerate(np.asarray(tokens).tolist()):
        text = decode(int(t)) if decode is not None else str(t)
        labels.append(f"{p}:{text}")
    return labels


def head_time_table(trace, probe: str, stat: str, batch: int = 0, symmetric: bool = False) -> dict[str, np.ndarray]:
    """Rect-glyph columns for a [heads x tokens] heatmap of one statistic."""
    a = _stat(trace, probe, stat, batch)  # [S, H]
    S, H = a.shape
    pos = np.repeat(np.arange(S), H)
    head = np.tile(np.arange(H), S)
    val = a.reshape(-1).astype(np.float64)
    return {
        "pos": pos.astype(np.float64),
        "head": head.astype(np.float64),
        "value": val,
        "color": map_to_palette(val, diverging() if symmetric else viridis(), symmetric=symmetric),
        "value_text": np.array([f"{x:.4g}" for x in val], dtype=object),
    }


def gate_panels(trace, block: int, layer_type: str | None = None) -> list[tuple[str, str, str]]:
    """(probe, stat, title) of the gate/memory panels that this trace can draw for a block: the panels of the block's
    own table, by its layer type (`layer_type`, else the trace's `meta["layer_types"]`; block types share cell names,
    e.g. the cfc and ltc tables have the same ones, so the recorded probes cannot tell them apart). A memory cell's
    panel shows only its own statistics (its mean over features is not what the panel means)."""
    if layer_type is None:
        types = trace.meta.get("layer_types")
        if types is None:
            raise ValueError("the trace does not say its blocks' layer types (meta['layer_types'], written by "
                             "run_with_trace): pass layer_type")
        if not 0 <= block < len(types):
            raise ValueError(f"block {block} is not in this trace: it has blocks 0..{len(types) - 1}")
        layer_type = types[block]
    table = block_table(layer_type)
    panels = []
    for suffix, stat, title in table.panels:
        probe = f"blocks.{block}.{suffix}"
        stats = trace.stats.get(probe, {})
        if stat in stats:
            panels.append((probe, stat, title))
        elif stats and not cell_type(table.row(suffix).cell_type).state and "mean" in stats:
            panels.append((probe, "mean", title))
    return panels


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - np.max(logits, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - np.max(logits, axis=axis, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def top_k_table(trace, k: int = 5, batch: int = 0, decode=None) -> dict[str, np.ndarray]:
    """Top-k next-token predictions per position: columns pos, rank, token, prob, text, is_next.

    `is_next` marks the prediction that equals the actual next input token (what a reader checks first).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    decode = safe_decode(decode)
    logits = np.asarray(trace.logits)[batch]  # [S, V]
    probs = softmax(logits.astype(np.float64))
    k = min(k, probs.shape[-1])
    top = np.argsort(-probs, axis=-1)[:, :k]  # [S, k]
    S = top.shape[0]
    tokens = np.asarray(trace.tokens)[batch]
    nxt = np.concatenate([tokens[1:], [-1]])
    pos = np.repeat(np.arange(S), k)
    rank = np.tile(np.arange(k), S)
    tok = top.reshape(-1)
    return {
        "pos": pos.astype(np.float64),
        "rank": rank.astype(np.float64),
        "token": tok.astype(np.int64),
        "prob": probs[np.arange(S)[:, None], top].reshape(-1),
        "text": np.array([decode(int(t)) if decode else str(int(t)) for t in tok], dtype=object),
        "is_next": tok == np.repeat(nxt, k),
    }


def match_probes(trace, pattern: str) -> list[str]:
    return [p for p in trace.probes if fnmatch.fnmatchcase(p, pattern)]


def stats_diff(trace, baseline) -> dict[str, dict[str, np.ndarray]]:
    """`trace - baseline` per probe/stat (the change a toggle made), on probes/stats both runs have.

    Uses `trace.diff` from xlstm_viz.execution when it exists so the sign convention is theirs;
    otherwise subtracts here. Shapes must agree: the same prompt must have been run twice.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for probe, stats in trace.stats.items():
        base = baseline.stats.get(probe)
        if base is None:
            continue
        for name, a in stats.items():
            if name not in base:
                continue
            a, b = np.asarray(a), np.asarray(base[name])
            if a.shape != b.shape:
                raise ValueError(
                    f"cannot diff {probe}.{name}: shapes {a.shape} vs baseline {b.shape}; run the same prompt for both"
                )
            out.setdefault(probe, {})[name] = a.astype(np.float64) - b.astype(np.float64)
    return out


class StatsView:
    """Minimal trace-like wrapper (stats, probes, tokens, logits) so diffs reuse the overlay functions."""

    def __init__(self, stats, probes, tokens, logits):
        self.stats, self.probes, self.tokens, self.logits = stats, probes, tokens, logits


def diff_trace(trace, baseline) -> StatsView:
    return StatsView(
        stats_diff(trace, baseline),
        [p for p in trace.probes if p in baseline.stats],
        np.asarray(trace.tokens),
        np.asarray(trace.logits, dtype=np.float64) - np.asarray(baseline.logits, dtype=np.float64),
    )


def logit_change_table(trace, baseline, batch: int = 0, decode=None) -> dict[str, np.ndarray]:
    """Per position: top-1 prediction and its probability before vs after, and the KL(before || after)."""
    la = log_softmax(np.asarray(baseline.logits, dtype=np.float64)[batch])
    lb = log_softmax(np.asarray(trace.logits, dtype=np.float64)[batch])
    pa, pb = np.exp(la), np.exp(lb)
    a1, b1 = pa.argmax(-1), pb.argmax(-1)
    # KL(before || after) = sum p_before (log p_before - log p_after), in nats; log-softmax keeps tiny p exact
    kl = np.sum(pa * (la - lb), axis=-1)
    dec = safe_decode(decode) or (lambda t: str(int(t)))
    return {
        "pos": np.arange(len(a1)).astype(np.float64),
        "token": np.array([dec(t) for t in np.asarray(trace.tokens)[batch]], dtype=object),  # the input there
        "before": np.array([dec(t) for t in a1], dtype=object),
        "after": np.array([dec(t) for t in b1], dtype=object),
        "p_before": pa[np.arange(len(a1)), a1],
        "p_after": pb[np.arange(len(b1)), b1],
        "changed": a1 != b1,
        "kl": kl,
    }
