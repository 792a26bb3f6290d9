"""Block and cell graphs of an xLSTM model -> node/edge tables (no Bokeh here).

A graph here is a list of node names plus directed (src, dst) connections with a polarity and an
enabled flag. Nodes are laid out in columns by longest path from the inputs, so the forward pass
reads left to right; residual connections skip columns.
"""

from __future__ import annotations

import numpy as np

from xlstm_viz.dashboard.colors import KIND_COLORS, POLARITY_COLORS  # noqa: F401  (KIND_COLORS re-exported)
from xlstm_viz.wiring.block_types import find_row

def cell_kind(name: str, layer_types: list[str] | None = None) -> str:
    """What a node computes: block cells by the kind their block table declares, model-level nodes by name; a block
    node by its layer type ("slstm block") where `layer_types` is given and that type has a colour."""
    if name.startswith("blocks.") and name.count(".") == 1:
        kind = f"{layer_types[int(name.split('.')[1])]} block" if layer_types else "block"
        return kind if kind in KIND_COLORS else "block"
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
    """`blocks.1.mlstm.igate` -> `igate`, `blocks.1.slstm.c` -> `c`, `blocks.1.ffn.out` -> `ffn.out`, `blocks.2` ->
    `block 2`: a block's own layer prefix is dropped, the FFN's kept."""
    parts = name.split(".")
    if parts[0] == "blocks" and len(parts) == 2:
        return f"block {parts[1]}"
    if parts[0] == "blocks" and len(parts) > 2:
        rest = parts[2:]
        if rest[0] in ("mlstm", "slstm") and len(rest) > 1:
            rest = rest[1:]
        return ".".join(rest)
    return name


def dag_node_table(names: list[str], connections: list[tuple[str, str]],
                   layer_types: list[str] | None = None, info: dict | None = None) -> dict[str, np.ndarray]:
    """Nodes in longest-path columns; `info` {name: (line, parameter count)} (model_graph.node_info) gives each
    node its shape / parameter line ("" and 0 where it has none)."""
    info = info or {}
    depth = layer_of(names, connections)
    x = np.array([float(depth[n]) for n in names])
    y = np.zeros(len(names))
    for d in set(depth.values()):
        members = [i for i, n in enumerate(names) if depth[n] == d]
        k = len(members)
        y[members] = 1.0 - (np.arange(k) + 0.5) / k if k > 1 else 0.5
    kinds = [cell_kind(n, layer_types) for n in names]
    return {
        "id": np.array(names, dtype=object),
        "label": np.array([short_label(n) for n in names], dtype=object),
        "info": np.array([info.get(n, ("", 0))[0] for n in names], dtype=object),
        "params": np.array([int(info.get(n, ("", 0))[1]) for n in names], dtype=np.int64),
        # on the node itself only where it has weights (the hover shows every node's line)
        "info_label": np.array([info[n][0] if info.get(n, ("", 0))[1] else "" for n in names], dtype=object),
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


def arrow_columns(edges: dict[str, np.ndarray], back: float, stem: float) -> dict[str, np.ndarray]:
    """Start and end of each edge's arrowhead: on the edge, ending `back` columns before its target (edges of the
    layered layout always run right), `stem` columns long."""
    x0, y0, x1, y1 = (np.asarray(edges[k], dtype=np.float64) for k in ("x0", "y0", "x1", "y1"))
    dx = np.where(x1 - x0 > 0, x1 - x0, 1.0)
    slope = (y1 - y0) / dx
    hx1 = x1 - np.minimum(back, 0.5 * dx)
    hx0 = hx1 - stem
    return {"hx0": hx0, "hy0": y1 - slope * (x1 - hx0), "hx1": hx1, "hy1": y1 - slope * (x1 - hx1)}
