"""NCPS wiring -> plain column tables (dict of numpy arrays) for the graph and heatmap views.

No Bokeh here: every function returns columns that a ColumnDataSource takes as they are, so the
layout and colouring are tested without a browser. Works with any object that has the ncps
`Wiring` members (units, input_dim, output_dim, adjacency_matrix [src, dest],
sensory_adjacency_matrix [sensory_src, dest], get_type_of_neuron).
"""

from __future__ import annotations

import numpy as np

from xlstm_viz.dashboard.colors import POLARITY_COLORS, POLARITY_NAMES, ROLE_COLORS, polarity_color

# Column order of the layered layout: signal flows left to right as in the NCP paper.
ROLE_ORDER = ("sensory", "inter", "command", "motor")
# Above this many synapses the graph draws one bundle per role pair; the heatmap stays exact.
DEFAULT_EDGE_LIMIT = 5000


def _check_built(wiring) -> None:
    if getattr(wiring, "input_dim", None) is None or getattr(wiring, "sensory_adjacency_matrix", None) is None:
        raise ValueError(
            f"wiring {type(wiring).__name__}(units={getattr(wiring, 'units', '?')}) is not built: "
            "call wiring.build(input_dim) first so the sensory synapses exist"
        )


def neuron_roles(wiring) -> np.ndarray:
    """Role of each internal neuron id (ncps numbering: motor first, then command, then inter)."""
    roles = np.array([wiring.get_type_of_neuron(i) for i in range(wiring.units)], dtype=object)
    unknown = set(roles) - set(ROLE_ORDER)
    if unknown:
        raise ValueError(f"get_type_of_neuron returned unknown roles {sorted(unknown)}")
    return roles


def display_order(wiring) -> np.ndarray:
    """Neuron ids sorted by layer (inter, command, motor) and then id: the order rows/columns are shown in."""
    roles = neuron_roles(wiring)
    rank = np.array([ROLE_ORDER.index(r) for r in roles])
    return np.lexsort((np.arange(wiring.units), rank))


def node_table(wiring) -> dict[str, np.ndarray]:
    """One row per node: sensory inputs `s{i}` then neurons `n{i}`, with layered x/y and role colour.

    x is the role column (0 sensory .. 3 motor); y spreads each column evenly over [0, 1] from
    the top, so a column of 3 and a column of 300 both fill the height.
    """
    _check_built(wiring)
    n_in, units = int(wiring.input_dim), int(wiring.units)
    roles = np.concatenate([np.array(["sensory"] * n_in, dtype=object), neuron_roles(wiring)])
    kind = np.array(["sensory"] * n_in + ["neuron"] * units, dtype=object)
    index = np.concatenate([np.arange(n_in), np.arange(units)])
    ids = np.array([f"s{i}" for i in range(n_in)] + [f"n{i}" for i in range(units)], dtype=object)

    x = np.array([float(ROLE_ORDER.index(r)) for r in roles])
    y = np.zeros(len(ids))
    for r in ROLE_ORDER:
        members = np.flatnonzero(roles == r)  # already in id order inside each block
        k = len(members)
        if k:
            y[members] = 1.0 - (np.arange(k) + 0.5) / k

    # Marker size: 12 px for small wirings, shrinking so the tallest column's markers do not merge into a bar
    # at hundreds of neurons (the figure is ~400 px high); 3 px at the smallest, where hover still finds them.
    tallest = max(int(np.sum(roles == r)) for r in ROLE_ORDER)
    size = float(np.clip(320.0 / max(tallest, 1), 3.0, 12.0))

    S = np.asarray(wiring.sensory_adjacency_matrix)
    A = np.asarray(wiring.adjacency_matrix)
    out_deg = np.concatenate([np.count_nonzero(S, axis=1), np.count_nonzero(A, axis=1)])
    in_deg = np.concatenate([np.zeros(n_in, dtype=np.int64), np.count_nonzero(S, axis=0) + np.count_nonzero(A, axis=0)])
    return {
        "id": ids,
        "kind": kind,
        "neuron": index.astype(np.int64),
        "role": roles,
        "x": x,
        "y": y,
        "color": np.array([ROLE_COLORS[r] for r in roles], dtype=object),
        "size": np.full(len(ids), size),
        "in_degree": in_deg.astype(np.int64),
        "out_degree": out_deg.astype(np.int64),
    }


def edge_table(wiring, nodes: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """One row per synapse (sensory synapses first, then internal, row-major as ncps `get_graph`)."""
    _check_built(wiring)
    nodes = node_table(wiring) if nodes is None else nodes
    n_in = int(wiring.input_dim)
    S = np.asarray(wiring.sensory_adjacency_matrix)
    A = np.asarray(wiring.adjacency_matrix)
    ss, sd = np.nonzero(S)
    is_, id_ = np.nonzero(A)
    src_node = np.concatenate([ss, n_in + is_])  # row in the node table
    dst_node = np.concatenate([n_in + sd, n_in + id_])
    pol = np.concatenate([S[ss, sd], A[is_, id_]]).astype(np.int64)
    sensory = np.concatenate([np.ones(len(ss), bool), np.zeros(len(is_), bool)])
    x0, y0 = nodes["x"][src_node], nodes["y"][src_node]
    x1, y1 = nodes["x"][dst_node], nodes["y"][dst_node]
    # Arrow heads sit a little before the target so they are not hidden under its circle.
    dx, dy = x1 - x0, y1 - y0
    length = np.hypot(dx, dy)
    safe = np.where(length > 0, length, 1.0)
    back = np.minimum(0.06, 0.5 * length)
    return {
        "src_id": nodes["id"][src_node],
        "dst_id": nodes["id"][dst_node],
        "src": np.concatenate([ss, is_]).astype(np.int64),
        "dst": np.concatenate([sd, id_]).astype(np.int64),
        "sensory": sensory,
        "src_role": nodes["role"][src_node],
        "dst_role": nodes["role"][dst_node],
        "polarity": pol,
        "polarity_name": np.array([POLARITY_NAMES[int(p)] for p in pol], dtype=object),
        "color": polarity_color(pol),
        "x0": x0,
        "y0": y0,
        "x1": x1,
        "y1": y1,
        "head_x": x1 - dx / safe * back,
        "head_y": y1 - dy / safe * back,
        # the arrow's short stem along the synapse: the browser turns its head in screen space (a marker angle
        # computed from data units points the wrong way when the axes have different scales)
        "stem_x": x1 - dx / safe * (back + np.minimum(0.03, 0.25 * length)),
        "stem_y": y1 - dy / safe * (back + np.minimum(0.03, 0.25 * length)),
    }


def _ribbon(x0, lo0, hi0, x1, lo1, hi1, steps: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Polygon of a band from the span [lo0, hi0] of column x0 to [lo1, hi1] of column x1.

    Between two columns the edges are smooth-step curves, so a band reads as a bundle of synapses. A band
    that starts and ends in the same column (recurrent command -> command synapses) is drawn as a loop
    bulging to the right of that column, so it never hides behind the column's own nodes.
    """
    t = np.linspace(0.0, 1.0, steps)
    if x0 == x1:
        # loop: out along the top half of an ellipse from the source span to the right, back to the target span
        angle = np.pi * t
        reach = 0.32
        mid_hi, mid_lo = max(hi0, hi1), min(lo0, lo1)
        centre, half = (mid_hi + mid_lo) / 2, max((mid_hi - mid_lo) / 2, 0.02)
        outer_x = x0 + reach * np.sin(angle)
        outer_y = centre + half * np.cos(angle)
        inner_x = x0 + 0.6 * reach * np.sin(angle[::-1])
        inner_y = centre + 0.6 * half * np.cos(angle[::-1])
        return np.concatenate([outer_x, inner_x]), np.concatenate([outer_y, inner_y])
    s = t * t * (3 - 2 * t)  # smooth step: leaves and reaches each column horizontally
    xs = x0 + (x1 - x0) * t
    top = hi0 + (hi1 - hi0) * s
    bottom = lo0 + (lo1 - lo0) * s
    return np.concatenate([xs, xs[::-1]]), np.concatenate([top, bottom[::-1]])


def aggregate_edges(edges: dict[str, np.ndarray], nodes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One row per (source role, target role) pair with excitatory/inhibitory counts, drawn as a ribbon.

    Used instead of `edge_table` rows when there are too many synapses to read. The ribbon (`xs`, `ys`
    polygon) runs from the vertical span of the source neurons that have a synapse in this pair to the
    span of the target neurons that receive one, so a 500-neuron wiring keeps its layers: each bundle
    leaves and enters its own column where its neurons are, instead of every bundle running between
    column centres on one line. `alpha` grows with the log of the count; `color` is the majority polarity.
    """
    roles_present = [r for r in ROLE_ORDER if np.any(nodes["role"] == r)]
    pos = dict(zip(nodes["id"], nodes["y"]))
    half = 0.5 / max(1, max(int(np.sum(nodes["role"] == r)) for r in roles_present)) if roles_present else 0.0
    rows = []
    for a in roles_present:
        for b in roles_present:
            m = (edges["src_role"] == a) & (edges["dst_role"] == b)
            if not m.any():
                continue
            exc = int(np.sum(edges["polarity"][m] > 0))
            inh = int(np.sum(edges["polarity"][m] < 0))
            ys = np.array([pos[i] for i in np.unique(edges["src_id"][m])])
            yd = np.array([pos[i] for i in np.unique(edges["dst_id"][m])])
            xs, yy = _ribbon(float(ROLE_ORDER.index(a)), ys.min() - half, ys.max() + half,
                             float(ROLE_ORDER.index(b)), yd.min() - half, yd.max() + half)
            rows.append((a, b, exc, inh, xs, yy, len(ys), len(yd)))
    out = {
        "src_role": np.array([r[0] for r in rows], dtype=object),
        "dst_role": np.array([r[1] for r in rows], dtype=object),
        "excitatory": np.array([r[2] for r in rows], dtype=np.int64),
        "inhibitory": np.array([r[3] for r in rows], dtype=np.int64),
        "sources": np.array([r[6] for r in rows], dtype=np.int64),
        "targets": np.array([r[7] for r in rows], dtype=np.int64),
    }
    out["count"] = out["excitatory"] + out["inhibitory"]
    # Colour = share of excitatory synapses (the view maps it on the polarity colour bar): a bundle of half
    # excitatory and half inhibitory synapses reads neutral, not as the majority's colour.
    out["excitatory_share"] = out["excitatory"] / np.maximum(out["count"], 1)
    top = np.log10(max(2, int(out["count"].max()) if len(rows) else 2))
    out["alpha"] = 0.08 + 0.22 * np.log10(np.maximum(out["count"], 1)) / top
    out["xs"] = [r[4] for r in rows]
    out["ys"] = [r[5] for r in rows]
    return out


def graph_tables(wiring, edge_limit: int = DEFAULT_EDGE_LIMIT) -> tuple[dict, dict, dict]:
    """(nodes, edges, bundles) for the graph view.

    When the synapse count exceeds `edge_limit` the per-synapse table is returned empty and the
    bundles carry the picture; otherwise bundles is empty. `edge_limit` must be positive.
    """
    if edge_limit <= 0:
        raise ValueError(f"edge_limit must be a positive number of synapses, got {edge_limit}")
    nodes = node_table(wiring)
    edges = edge_table(wiring, nodes)
    if len(edges["src"]) > edge_limit:
        bundles = aggregate_edges(edges, nodes)
        edges = {k: v[:0] for k, v in edges.items()}
    else:
        bundles = aggregate_edges({k: v[:0] for k, v in edges.items()}, nodes)
    return nodes, edges, bundles


def adjacency_image(wiring) -> dict:
    """Dense polarity matrix for the heatmap: sensory rows above the internal matrix.

    Rows are sources (all sensory inputs, then neurons in display order), columns are target
    neurons in display order. `image` is flipped vertically because Bokeh draws image row 0 at
    the bottom; `row_to_source`/`col_to_neuron` map a displayed row/column back to wiring ids
    (a sensory row maps to ("sensory", i), a neuron row to ("neuron", id)).
    """
    _check_built(wiring)
    order = display_order(wiring)
    S = np.asarray(wiring.sensory_adjacency_matrix)[:, order]
    A = np.asarray(wiring.adjacency_matrix)[np.ix_(order, order)]
    M = np.vstack([S, A]).astype(np.float32)
    n_in = S.shape[0]
    roles = neuron_roles(wiring)[order]
    row_kind = np.array(["sensory"] * n_in + ["neuron"] * len(order), dtype=object)
    row_id = np.concatenate([np.arange(n_in), order]).astype(np.int64)
    row_role = np.concatenate([np.array(["sensory"] * n_in, dtype=object), roles])
    return {
        "matrix": M,  # display orientation, row 0 = top
        "image": M[::-1].copy(),
        "rows": M.shape[0],
        "cols": M.shape[1],
        "row_kind": row_kind,
        "row_id": row_id,
        "row_role": row_role,
        "col_id": order.astype(np.int64),
        "col_role": roles,
        # hover text per displayed row / column: the node id and its role, as the graph names them
        "row_label": np.array([f"{'s' if k == 'sensory' else 'n'}{i} ({r})" for k, i, r in zip(row_kind, row_id, row_role)],
                              dtype=object),
        "col_label": np.array([f"n{i} ({r})" for i, r in zip(order, roles)], dtype=object),
    }


def role_bands(labels: np.ndarray, axis: str, extent: int) -> dict[str, np.ndarray]:
    """Rectangles marking each contiguous role block along one axis of the heatmap.

    axis "rows": bands span y (top row first, in the flipped image coordinates), "cols": x.
    Returns columns x, y, width, height (rect centre form), role, color, label_x, label_y.
    """
    if axis not in ("rows", "cols"):
        raise ValueError(f"axis must be 'rows' or 'cols', got {axis!r}")
    starts, roles = [], []
    for i, r in enumerate(labels):
        if i == 0 or r != labels[i - 1]:
            starts.append(i)
            roles.append(r)
    ends = starts[1:] + [len(labels)]
    out = {"x": [], "y": [], "width": [], "height": [], "role": [], "color": [], "count": []}
    n = len(labels)
    for s, e, r in zip(starts, ends, roles):
        if axis == "cols":
            out["x"].append((s + e) / 2)
            out["y"].append(-1.0)  # a strip under the matrix
            out["width"].append(e - s)
            out["height"].append(1.5)
        else:
            out["x"].append(-1.0)
            out["y"].append(n - (s + e) / 2)
            out["width"].append(1.5)
            out["height"].append(e - s)
        out["role"].append(r)
        out["color"].append(ROLE_COLORS[r])
        out["count"].append(e - s)
    del extent  # kept in the signature so callers state which extent they mean
    return {k: np.asarray(v, dtype=object if k in ("role", "color") else float) for k, v in out.items()}


def cell_at(image: dict, x: float, y: float) -> tuple[str, int, int] | None:
    """Heatmap coordinate -> ("sensory"|"neuron", src id, dest id), or None outside the matrix."""
    if not (0 <= x < image["cols"] and 0 <= y < image["rows"]):
        return None
    col = int(np.floor(x))
    row = image["rows"] - 1 - int(np.floor(y))  # undo the vertical flip
    return str(image["row_kind"][row]), int(image["row_id"][row]), int(image["col_id"][col])


def cell_center(image: dict, kind: str, src: int, dest: int) -> tuple[float, float]:
    """Inverse of `cell_at`: data coordinates of the centre of a synapse's heatmap cell."""
    rows = np.flatnonzero((image["row_kind"] == kind) & (image["row_id"] == src))
    cols = np.flatnonzero(image["col_id"] == dest)
    if len(rows) != 1 or len(cols) != 1:
        raise ValueError(f"no heatmap cell for {kind} synapse {src}->{dest}")
    return float(cols[0]) + 0.5, float(image["rows"] - 1 - rows[0]) + 0.5


def next_polarity(p: int) -> int:
    """Click cycle +1 -> -1 -> 0 -> +1."""
    cycle = {1: -1, -1: 0, 0: 1}
    if int(p) not in cycle:
        raise ValueError(f"polarity must be -1, 0 or +1, got {p}")
    return cycle[int(p)]


def synapse_counts(wiring) -> dict[str, int]:
    S = np.asarray(wiring.sensory_adjacency_matrix)
    A = np.asarray(wiring.adjacency_matrix)
    return {
        "neurons": int(wiring.units),
        "sensory": int(wiring.input_dim),
        "synapses": int(np.count_nonzero(A)),
        "sensory_synapses": int(np.count_nonzero(S)),
        "excitatory": int(np.sum(A > 0) + np.sum(S > 0)),
        "inhibitory": int(np.sum(A < 0) + np.sum(S < 0)),
    }
