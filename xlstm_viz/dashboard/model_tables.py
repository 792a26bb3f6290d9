"""Block and cell graphs of an xLSTM model -> node/edge tables (no Bokeh here).

A graph here is a list of node names plus directed (src, dst) connections with a polarity and an
enabled flag. Nodes are laid out in columns by longest path from the inputs, so the forward pass
reads left to right; residual connections skip columns.
"""

from __future__ import annotations

import numpy as np

from xlstm_viz.dashboard.colors import KIND_COLORS, POLARITY_COLORS  # noqa: F401  (KIND_COLORS re-exported)
from xlstm_viz.wiring.block_types import find_row

def cell_kind(name: str) -> str:
    """What a node computes: block cells by the kind their block table declares, model-level nodes by name."""
    if name.startswith("blocks.") and name.count(".") == 1:
        return "block"
    if name.startswith("blocks."):
        row = find_row(name.split(".", 2)[2])
        if row is not None:
            return row.node_kind()
    if name == "embedding":
        return "input"
    if name in ("lm_head", "logits"):
        return "output"
    if name == "out_norm":
        return "norm"
    return "residual"  # a cell added by a wiring edit: drawn like the stream cells


def layer_of(names: list[str], connections: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path depth from any source node (the graph must be acyclic)."""
    known = set(names)
    for a, b in connections:
        if a not in known or b not in known:
            missing = a if a not in known else b
            raise ValueError(f"connection {a} -> {b} names unknown node {missing!r}")
    preds: dict[str, list[str]] = {n: [] for n in names}
    for a, b in connections:
        preds[b].append(a)
    depth: dict[str, int] = {}
    visiting: set[str] = set()

    def visit(n: str) -> int:
        if n in depth:
            return depth[n]
        if n in visiting:
            raise ValueError(f"graph has a cycle through {n!r}; the layered layout needs a DAG")
        visiting.add(n)
        depth[n] = 1 + max((visit(p) for p in preds[n]), default=-1)
        visiting.discard(n)
        return depth[n]

    for n in names:
        visit(n)
    return depth


def short_label(name: str) -> str:
    """`blocks.1.mlstm.igate` -> `igate`, `blocks.1.ffn.out` -> `ffn.out`, `blocks.2` -> `block 2`."""
    parts = name.split(".")
    if parts[0] == "blocks" and len(parts) == 2:
        return f"block {parts[1]}"
    if parts[0] == "blocks" and len(parts) > 2:
        rest = parts[2:]
        if rest[0] == "mlstm":
            rest = rest[1:]
        return ".".join(rest)
    return name


def dag_node_table(names: list[str], connections: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    depth = layer_of(names, connections)
    x = np.array([float(depth[n]) for n in names])
    y = np.zeros(len(names))
    for d in set(depth.values()):
        members = [i for i, n in enumerate(names) if depth[n] == d]
        k = len(members)
        y[members] = 1.0 - (np.arange(k) + 0.5) / k if k > 1 else 0.5
    kinds = [cell_kind(n) for n in names]
    return {
        "id": np.array(names, dtype=object),
        "label": np.array([short_label(n) for n in names], dtype=object),
        "kind": np.array(kinds, dtype=object),
        "x": x,
        "y": y,
        "color": np.array([KIND_COLORS[k] for k in kinds], dtype=object),
    }


def dag_edge_table(nodes: dict[str, np.ndarray], connections: list[tuple[str, str]],
                   polarity: dict[tuple[str, str], int] | None = None) -> dict[str, np.ndarray]:
    """Edges with their polarity (+1 normal, -1 flipped, 0 disabled); disabled edges draw dashed grey."""
    polarity = polarity or {}
    pos = {n: i for i, n in enumerate(nodes["id"])}
    src = np.array([pos[a] for a, _ in connections], dtype=np.int64)
    dst = np.array([pos[b] for _, b in connections], dtype=np.int64)
    pol = np.array([int(polarity.get((a, b), 1)) for a, b in connections], dtype=np.int64)
    bad = ~np.isin(pol, (-1, 0, 1))
    if bad.any():
        raise ValueError(f"edge polarity must be -1, 0 or +1, got {pol[bad].tolist()}")
    return {
        "src_id": np.array([a for a, _ in connections], dtype=object),
        "dst_id": np.array([b for _, b in connections], dtype=object),
        "x0": nodes["x"][src],
        "y0": nodes["y"][src],
        "x1": nodes["x"][dst],
        "y1": nodes["y"][dst],
        "polarity": pol,
        "state": np.array([{1: "on", -1: "flipped", 0: "off"}[int(p)] for p in pol], dtype=object),
        "color": np.array([POLARITY_COLORS[int(p)] for p in pol], dtype=object),
        "alpha": np.where(pol == 0, 0.35, 0.8),
    }
