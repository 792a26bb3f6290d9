"""Pure-data layer of the dashboard: wiring/trace -> column tables, without Bokeh or a browser."""

import numpy as np
import pytest
from ncps import wirings as ncps_wirings

from xlstm_viz.dashboard import model_graph
from xlstm_viz.dashboard import model_tables as mt
from xlstm_viz.dashboard import trace_tables as tt
from xlstm_viz.dashboard import wiring_tables as wt
from xlstm_viz.dashboard.colors import POLARITY_COLORS, ROLE_COLORS, map_to_palette


def built(w, input_dim):
    w.build(input_dim)
    return w


@pytest.fixture(params=[("autoncp", 7), ("autoncp", 123), ("ncp", 0), ("random", 5), ("fc", 0)])
def wiring(request):
    kind, seed = request.param
    if kind == "autoncp":
        return built(ncps_wirings.AutoNCP(28, 4, 0.5, seed), 6)
    if kind == "ncp":
        return built(ncps_wirings.NCP(10, 8, 3, 4, 4, 5, 3), 5)
    if kind == "random":
        return built(ncps_wirings.Random(12, 3, 0.6, seed), 4)
    return built(ncps_wirings.FullyConnected(9, 2), 3)


def test_node_table_has_every_sensory_input_and_neuron_with_its_role(wiring):
    nodes = wt.node_table(wiring)
    n = wiring.input_dim + wiring.units
    assert len(nodes["id"]) == n
    assert all(len(v) == n for v in nodes.values())
    for row in range(wiring.input_dim, n):
        assert nodes["role"][row] == wiring.get_type_of_neuron(int(nodes["neuron"][row]))
    assert list(nodes["role"][: wiring.input_dim]) == ["sensory"] * wiring.input_dim
    assert [ROLE_COLORS[r] for r in nodes["role"]] == list(nodes["color"])


def test_layout_puts_roles_in_columns_left_to_right_and_inside_the_unit_height(wiring):
    nodes = wt.node_table(wiring)
    for role in set(nodes["role"]):
        xs = nodes["x"][nodes["role"] == role]
        assert np.all(xs == wt.ROLE_ORDER.index(role))
    assert np.all((nodes["y"] > 0) & (nodes["y"] < 1))
    # no two nodes in one column overlap
    for x in np.unique(nodes["x"]):
        ys = nodes["y"][nodes["x"] == x]
        assert len(np.unique(ys)) == len(ys)


def test_edge_table_lists_exactly_the_nonzero_synapses_with_their_polarity(wiring):
    edges = wt.edge_table(wiring)
    A, S = wiring.adjacency_matrix, wiring.sensory_adjacency_matrix
    assert len(edges["src"]) == wiring.synapse_count + wiring.sensory_synapse_count
    for s, d, p, sens in zip(edges["src"], edges["dst"], edges["polarity"], edges["sensory"]):
        assert p == (S[s, d] if sens else A[s, d]) and p != 0
    assert list(edges["color"]) == [POLARITY_COLORS[int(p)] for p in edges["polarity"]]
    # the same synapses and polarities as ncps get_graph
    graph_edges = list(wiring.get_graph().edges(data=True))
    names = [f"{'sensory' if s else 'neuron'}_{a}->neuron_{b}" for s, a, b in zip(edges["sensory"], edges["src"], edges["dst"])]
    assert sorted(names) == sorted(f"{u}->{v}" for u, v, _ in graph_edges)
    pol = dict(zip(names, edges["polarity_name"]))
    assert all(pol[f"{u}->{v}"] == d["polarity"] for u, v, d in graph_edges)


def test_edge_endpoints_are_the_node_positions(wiring):
    nodes = wt.node_table(wiring)
    edges = wt.edge_table(wiring, nodes)
    pos = {i: (x, y) for i, x, y in zip(nodes["id"], nodes["x"], nodes["y"])}
    for a, b, x0, y0, x1, y1 in zip(edges["src_id"], edges["dst_id"], edges["x0"], edges["y0"], edges["x1"], edges["y1"]):
        assert pos[a] == (x0, y0) and pos[b] == (x1, y1)


def test_unbuilt_wiring_is_refused_with_a_message_naming_build():
    with pytest.raises(ValueError, match="build"):
        wt.node_table(ncps_wirings.AutoNCP(10, 2))


def test_aggregation_kicks_in_above_the_edge_limit_and_conserves_counts():
    w = built(ncps_wirings.Random(200, 10, 0.8, 3), 20)
    total = w.synapse_count + w.sensory_synapse_count
    nodes, edges, bundles = wt.graph_tables(w, edge_limit=total - 1)
    assert len(edges["src"]) == 0
    assert bundles["count"].sum() == total
    assert bundles["excitatory"].sum() == int(np.sum(w.adjacency_matrix > 0) + np.sum(w.sensory_adjacency_matrix > 0))
    nodes, edges, bundles = wt.graph_tables(w, edge_limit=total)
    assert len(edges["src"]) == total and len(bundles["count"]) == 0
    with pytest.raises(ValueError, match="edge_limit"):
        wt.graph_tables(w, edge_limit=0)


def test_heatmap_puts_sensory_rows_on_top_and_round_trips_clicks_to_synapses(wiring):
    im = wt.adjacency_image(wiring)
    assert im["rows"] == wiring.input_dim + wiring.units and im["cols"] == wiring.units
    assert list(im["row_kind"][: wiring.input_dim]) == ["sensory"] * wiring.input_dim
    assert np.array_equal(im["image"][::-1], im["matrix"])
    rng = np.random.default_rng(0)
    for _ in range(40):
        kind = "sensory" if rng.random() < 0.3 else "neuron"
        src = int(rng.integers(wiring.input_dim if kind == "sensory" else wiring.units))
        dst = int(rng.integers(wiring.units))
        x, y = wt.cell_center(im, kind, src, dst)
        assert wt.cell_at(im, x, y) == (kind, src, dst)
        # the displayed value is the wiring's polarity for that synapse
        expected = wiring.sensory_adjacency_matrix[src, dst] if kind == "sensory" else wiring.adjacency_matrix[src, dst]
        assert im["image"][int(y), int(x)] == expected
    assert wt.cell_at(im, -0.5, 0.5) is None and wt.cell_at(im, 0.5, im["rows"] + 0.1) is None


def test_heatmap_columns_are_grouped_by_layer_inter_command_motor():
    w = built(ncps_wirings.AutoNCP(28, 4, 0.5, 22222), 6)
    im = wt.adjacency_image(w)
    ranks = [wt.ROLE_ORDER.index(r) for r in im["col_role"]]
    assert ranks == sorted(ranks)
    bands = wt.role_bands(im["col_role"], "cols", im["cols"])
    assert list(bands["role"]) == ["inter", "command", "motor"]
    assert bands["count"].sum() == w.units
    row_bands = wt.role_bands(im["row_role"], "rows", im["rows"])
    assert list(row_bands["role"]) == ["sensory", "inter", "command", "motor"]


def test_polarity_click_cycle_visits_all_three_states():
    seen = [1]
    for _ in range(3):
        seen.append(wt.next_polarity(seen[-1]))
    assert seen == [1, -1, 0, 1]
    with pytest.raises(ValueError, match="polarity"):
        wt.next_polarity(2)


def test_palette_mapping_is_monotone_and_marks_nan_grey():
    pal = ["a", "b", "c", "d"]
    cols = map_to_palette(np.array([0.0, 1.0, 2.0, 3.0, np.nan]), pal)
    assert list(cols) == ["a", "b", "c", "d", "#7f7f7f"]
    sym = map_to_palette(np.array([-2.0, 0.0, 2.0]), ["neg", "mid", "pos"], symmetric=True)
    assert list(sym) == ["neg", "mid", "pos"]


# ---- model graphs (the real BlockWiring / CellWiring of the demo model) --------------------------


@pytest.fixture(scope="module")
def demo():
    import xlstm_viz.blas  # noqa: F401
    import xlstm_viz as xv

    return xv.load_demo()


def test_block_graph_flows_from_embedding_to_head_in_columns(demo):
    names, conns = model_graph.connections(demo.block_wiring)
    nodes = mt.dag_node_table(names, [(a, b) for a, b, _ in conns])
    assert list(nodes["id"]) == ["embedding"] + [f"blocks.{i}" for i in range(demo.config.num_blocks)] + [
        "out_norm", "lm_head"]
    assert list(nodes["x"]) == list(range(len(names)))
    assert nodes["kind"][0] == "input" and nodes["kind"][-1] == "output"


def test_a_skip_edge_of_the_real_block_wiring_is_drawn_and_keeps_the_layering(demo):
    import copy

    bw = copy.deepcopy(demo.block_wiring)
    bw.add_skip("embedding", "blocks.1")
    names, conns = model_graph.connections(bw)
    pairs = [(a, b) for a, b, _ in conns]
    assert ("embedding", "blocks.1") in pairs
    nodes = mt.dag_node_table(names, pairs)
    x = dict(zip(nodes["id"], nodes["x"]))
    assert all(x[a] < x[b] for a, b in pairs)
    edges = mt.dag_edge_table(nodes, pairs, {(a, b): s for a, b, s in conns})
    assert len(edges["src_id"]) == len(pairs)


def test_cell_graph_layers_respect_every_connection_and_residual_skips_columns(demo):
    names, conns = model_graph.connections(demo.cell_wirings[1])
    pairs = [(a, b) for a, b, _ in conns]
    assert set(names) == {n for p in pairs for n in p}
    nodes = mt.dag_node_table(names, pairs)
    x = dict(zip(nodes["id"], nodes["x"]))
    assert all(x[a] < x[b] for a, b in pairs)
    assert x["blocks.1.mlstm.memory"] > x["blocks.1.mlstm.igate"]
    assert x["blocks.1.mid"] - x["blocks.1.in"] > 1  # the residual jumps over the mLSTM cells
    assert set(mt.cell_kind(n) for n in names) >= {"gate", "memory", "projection", "ffn", "norm"}
    # every node the executor runs is a probe of the model: the graph is the model's, not a copy
    assert set(names) <= set(demo.probe_names())


def test_cycles_and_unknown_nodes_are_refused():
    with pytest.raises(ValueError, match="cycle"):
        mt.layer_of(["a", "b"], [("a", "b"), ("b", "a")])
    with pytest.raises(ValueError, match="unknown node 'c'"):
        mt.layer_of(["a", "b"], [("a", "c")])


def test_disabled_and_flipped_edges_of_the_real_cell_wiring_get_their_own_look(demo):
    import copy

    cw = copy.deepcopy(demo.cell_wirings[0])
    model_graph.set_connection(cw, "blocks.0.in", "blocks.0.mlstm.norm_in", 0)
    model_graph.set_connection(cw, "blocks.0.mlstm.norm_in", "blocks.0.mlstm.q", -1)
    names, conns = model_graph.connections(cw)
    state = {(a, b): s for a, b, s in conns}
    assert state[("blocks.0.in", "blocks.0.mlstm.norm_in")] == 0
    assert state[("blocks.0.mlstm.norm_in", "blocks.0.mlstm.q")] == -1
    pairs = [(a, b) for a, b, _ in conns]
    nodes = mt.dag_node_table(names, pairs)
    edges = mt.dag_edge_table(nodes, pairs, state)
    look = dict(zip(zip(edges["src_id"], edges["dst_id"]), edges["state"]))
    assert look[("blocks.0.in", "blocks.0.mlstm.norm_in")] == "off"
    assert look[("blocks.0.mlstm.norm_in", "blocks.0.mlstm.q")] == "flipped"
    assert look[("blocks.0.mlstm.norm_in", "blocks.0.mlstm.k")] == "on"
    alpha = dict(zip(zip(edges["src_id"], edges["dst_id"]), edges["alpha"]))
    assert alpha[("blocks.0.in", "blocks.0.mlstm.norm_in")] < alpha[("blocks.0.mlstm.norm_in", "blocks.0.mlstm.k")]
    with pytest.raises(ValueError, match="polarity"):
        mt.dag_edge_table(nodes, pairs, {pairs[0]: 3})


# ---- traces (real small runs of the demo model) ------------------------------------------------


@pytest.fixture(scope="module")
def runs(demo):
    """(before, after): stats traces of a 6-token prompt, after = block 0's v -> memory switched off."""
    import mlx.core as mx

    ids = mx.array([[5, 70, 8, 75, 2, 5]])
    before = demo.run_with_trace(ids, mode="stats")
    cw = demo.cell_wirings[0]
    model_graph.set_connection(cw, "blocks.0.mlstm.v", "blocks.0.mlstm.memory", 0)
    try:
        after = demo.run_with_trace(ids, mode="stats")
    finally:
        model_graph.set_connection(cw, "blocks.0.mlstm.v", "blocks.0.mlstm.memory", 1)
    return before, after


def test_node_values_reduce_heads_then_pick_the_token_or_aggregate(runs):
    tr = runs[0]
    names = ["embedding", "blocks.0", "blocks.0.mlstm.memory", "lm_head"]
    at2 = tt.node_values(tr, names, "C_norm", token=2)
    assert np.isnan(at2[0]) and np.isnan(at2[1]) and np.isnan(at2[3])  # only the memory has C_norm
    assert at2[2] == pytest.approx(tr.stats["blocks.0.mlstm.memory"]["C_norm"][0, 2].mean())
    mx_ = tt.node_values(tr, names, "absmax", agg="max")
    assert mx_[1] == pytest.approx(tr.stats["blocks.0.out"]["absmax"][0].mean(-1).max())
    assert mx_[3] == pytest.approx(tr.stats["logits"]["absmax"][0].mean(-1).max())
    with pytest.raises(IndexError, match="token 99"):
        tt.node_values(tr, names, "absmax", token=99)
    with pytest.raises(ValueError, match="aggregate"):
        tt.node_values(tr, names, "absmax", agg="median")


def test_head_time_table_covers_every_head_and_token(runs, demo):
    tr = runs[0]
    tab = tt.head_time_table(tr, "blocks.0.mlstm.igate", "exp")
    S, H = tr.tokens.shape[1], demo.config.num_heads
    assert len(tab["pos"]) == S * H
    a = tr.stats["blocks.0.mlstm.igate"]["exp"][0]
    for p, h, v in zip(tab["pos"], tab["head"], tab["value"]):
        assert v == a[int(p), int(h)]
    with pytest.raises(KeyError, match="no statistic 'sigmoid'"):
        tt.head_time_table(tr, "blocks.0.mlstm.igate", "sigmoid")


def test_top_k_is_sorted_by_probability_and_flags_the_actual_next_token(runs):
    tr = runs[0]
    tab = tt.top_k_table(tr, k=3)
    probs = tab["prob"].reshape(-1, 3)
    assert np.all(np.diff(probs, axis=1) <= 0)
    full = tt.softmax(np.asarray(tr.logits[0], dtype=np.float64))
    assert probs[:, 0] == pytest.approx(full.max(-1), rel=1e-6)
    toks = tab["token"].reshape(-1, 3)
    for pos in range(tr.tokens.shape[1] - 1):
        nxt = tr.tokens[0, pos + 1]
        assert tab["is_next"].reshape(-1, 3)[pos].any() == (nxt in toks[pos])


def test_diff_is_after_minus_before_and_rejects_mismatched_runs(runs, demo):
    a, b = runs
    d = tt.diff_trace(b, a)
    want = b.stats["blocks.0.mlstm.memory"]["C_norm"] - a.stats["blocks.0.mlstm.memory"]["C_norm"]
    assert np.abs(want).max() > 0  # switching v off changed the memory
    np.testing.assert_array_equal(d.stats["blocks.0.mlstm.memory"]["C_norm"], want)
    vals = tt.node_values(d, ["blocks.0"], "mean", token=1)
    assert vals[0] == pytest.approx((b.stats["blocks.0.out"]["mean"][0, 1] - a.stats["blocks.0.out"]["mean"][0, 1]).mean())
    import mlx.core as mx

    longer = demo.run_with_trace(mx.array([[5, 70, 8, 75, 2, 5, 9]]), mode="stats")
    with pytest.raises(ValueError, match="same prompt"):
        tt.diff_trace(longer, a)
    change = tt.logit_change_table(b, a)
    assert change["kl"].shape == (a.tokens.shape[1],) and np.all(change["kl"] >= -1e-12) and change["kl"].max() > 0
    same = tt.logit_change_table(a, a)
    assert not same["changed"].any() and np.allclose(same["kl"], 0)


def test_overlay_colours_nan_nodes_grey_and_sizes_grow_with_value():
    cols = tt.overlay_columns(np.array([0.0, 1.0, np.nan, 2.0]))
    assert cols["fill"][2] == "#7f7f7f" and cols["value_text"][2] == "n/a"
    assert cols["size"][0] < cols["size"][1] < cols["size"][3]


def test_bundles_at_500_neurons_leave_and_enter_the_columns_of_their_own_neurons():
    """Above the edge limit each role pair is a ribbon from the span of its source neurons to the span of its
    targets (not a line between column centres, where every bundle of a big wiring fell onto y = 0.5)."""
    from xlstm_viz.dashboard.wiring_view import build_wiring

    w = build_wiring("AutoNCP", 500, 16, 64, seed=3)
    nodes, edges, bundles = wt.graph_tables(w, edge_limit=1000)
    assert len(edges["src"]) == 0
    pairs = list(zip(bundles["src_role"], bundles["dst_role"]))
    assert pairs == [("sensory", "inter"), ("inter", "command"), ("command", "command"), ("command", "motor")]
    full = wt.edge_table(w, nodes)
    y = dict(zip(nodes["id"], nodes["y"]))
    for (a, b), xs, ys in zip(pairs, bundles["xs"], bundles["ys"]):
        m = (full["src_role"] == a) & (full["dst_role"] == b)
        src_y = [y[i] for i in full["src_id"][m]]
        dst_y = [y[i] for i in full["dst_id"][m]]
        xa, xb = wt.ROLE_ORDER.index(a), wt.ROLE_ORDER.index(b)
        at_src = ys[np.isclose(xs, xa)]
        # the ribbon covers its source neurons' span (within half a row), not more
        span = src_y + (dst_y if xa == xb else [])
        assert at_src.min() <= min(src_y) and at_src.max() >= max(src_y)
        assert at_src.max() - at_src.min() <= max(span) - min(span) + 0.01
        if xa != xb:
            at_dst = ys[np.isclose(xs, xb)]
            assert at_dst.min() <= min(dst_y) and at_dst.max() >= max(dst_y)
        else:  # the recurrent command bundle loops out to the right of its column
            assert xs.max() > xa + 0.1 and xs.min() >= xa - 1e-9
    # a balanced bundle reads neutral: its colour is the excitatory share, not the majority
    share = bundles["excitatory"] / bundles["count"]
    assert np.allclose(bundles["excitatory_share"], share)
    assert len({round(float(v), 3) for v in bundles["ys"][0]}) > 2  # a band, not a segment


def test_node_markers_shrink_so_a_tall_column_stays_readable():
    from xlstm_viz.dashboard.wiring_view import build_wiring

    small = wt.node_table(build_wiring("AutoNCP", 20, 4, 5))
    big = wt.node_table(build_wiring("AutoNCP", 500, 16, 64))
    assert small["size"][0] == 12.0
    assert 3.0 <= big["size"][0] < 4.0  # 291 inter neurons in a ~400 px column


def test_heatmap_labels_name_each_row_and_column_by_neuron_id_and_role(wiring):
    im = wt.adjacency_image(wiring)
    roles = wt.neuron_roles(wiring)
    assert list(im["row_label"][: wiring.input_dim]) == [f"s{i} (sensory)" for i in range(wiring.input_dim)]
    for col, nid in enumerate(im["col_id"]):
        assert im["col_label"][col] == f"n{nid} ({roles[nid]})"
    for row in range(wiring.input_dim, im["rows"]):
        nid = im["row_id"][row]
        assert im["row_label"][row] == f"n{nid} ({roles[nid]})"
