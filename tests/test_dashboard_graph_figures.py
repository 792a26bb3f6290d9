"""The block and cell graphs say what they draw: arrowheads on directed edges, labels beside the markers, weight
shapes and parameter counts on the nodes, and names (not indices) in the hovers."""

import numpy as np
from bokeh.models import Arrow, CustomJSHover, HoverTool

from dashboard_fixtures import app, model  # noqa: F401 - fixtures
from xlstm_viz.dashboard import model_graph
from xlstm_viz.dashboard.dag_figure import DagFigure


def test_node_parameter_counts_add_up_to_the_model_and_show_the_weight_shape(model):
    info = model_graph.node_info(model)
    assert info["blocks.0.mlstm.q"] == ("64x128 · 8.2k", 64 * 128)
    assert info["blocks.0.mlstm.igate"][1] == 4 * 128 + 4  # weight and bias
    for i in range(model.config.num_blocks):
        cells = sum(n for name, (_, n) in info.items() if name.startswith(f"blocks.{i}."))
        assert cells == info[f"blocks.{i}"][1]  # the cell table's shapes account for every weight of the block
    top = [n for name, (_, n) in info.items() if name.count(".") == 0 or (name.startswith("blocks.")
                                                                         and name.count(".") == 1)]
    assert sum(top) == model.num_parameters()


def test_neuron_cell_counts_the_module_under_its_prefix():
    import xlstm_viz as xv

    hybrid = xv.load_demo(name="hybrid")
    info = model_graph.node_info(hybrid)
    cells = sum(n for name, (_, n) in info.items() if name.startswith("blocks.0."))
    assert info["blocks.0.ncp.neurons"][1] > 0 and cells == info["blocks.0"][1]


def test_cell_graph_nodes_carry_their_shape_and_count_beside_the_marker(app):
    g = app.model_view.cell_graph
    data = g.node_source.data
    q = list(data["id"]).index("blocks.0.mlstm.q")
    assert data["info_label"][q] == "64x128 · 8.2k" and data["params"][q] == 8192
    memory = list(data["id"]).index("blocks.0.mlstm.memory")
    assert data["info_label"][memory] == "" and data["info"][memory] == "d=128"  # weightless: hover only
    for text in (g.labels, g.info_labels):
        assert text.glyph.x_offset > 0 and text.glyph.angle != 0  # beside the marker, not on it
    block = app.model_view.block_graph.node_source.data
    assert block["info_label"][list(block["id"]).index("blocks.0")] == "214.4k params"


def test_every_edge_has_an_arrowhead_pointing_at_its_target_before_the_marker(app):
    g = app.model_view.cell_graph
    arrows = [a for a in g.figure.center if isinstance(a, Arrow)]
    assert arrows and arrows[0].source is g.edge_source and arrows[0].end is not None
    e = {k: np.asarray(v, dtype=float) for k, v in g.edge_source.data.items()
         if k in ("x0", "y0", "x1", "y1", "hx0", "hy0", "hx1", "hy1")}
    assert len(e["x0"]) == len(g.connections) > 0
    assert np.all(e["hx1"] > e["hx0"]) and np.all(e["hx1"] < e["x1"]) and np.all(e["hx0"] >= e["x0"])
    # the head lies on the edge (same line through source and target)
    slope = (e["y1"] - e["y0"]) / (e["x1"] - e["x0"])
    np.testing.assert_allclose(e["hy1"], e["y0"] + slope * (e["hx1"] - e["x0"]), atol=1e-12)


def test_graph_hovers_name_nodes_and_connections():
    fig = DagFigure("t")
    fig.set_graph(["a", "b"], [("a", "b", 1)], info={"a": ("2x2 · 4", 4)})
    tips = [dict(t.tooltips) for t in fig.figure.tools if isinstance(t, HoverTool)]
    assert {"node": "@id", "kind": "@kind", "weights": "@info", "value": "@value_text"} in tips
    assert any(t.get("connection") == "@src_id -> @dst_id" for t in tips)
    assert list(fig.node_source.data["id"]) == ["a", "b"] and list(fig.node_source.data["info"]) == ["2x2 · 4", ""]


def test_connection_heatmap_hover_looks_up_cell_names(app):
    mv = app.model_view
    hover = next(t for t in mv.matrix_figure.tools if isinstance(t, HoverTool))
    assert dict(hover.tooltips)["from (row)"] == "$y{custom}"
    assert all(isinstance(f, CustomJSHover) for f in hover.formatters.values())
    assert list(mv.matrix_names.data["name"]) == mv.cell_graph.names
    mv.block = 1
    assert mv.matrix_names.data["name"][0].startswith("blocks.1.")


def test_trace_and_kl_hovers_show_the_token_text(app):
    tv = app.trace_view
    data = tv.probe_source.data
    shown = list(tv.formatter.args["labels"])  # the axis' token texts
    assert list(data["token"]) == [shown[int(p)] for p in data["pos"]] and len(set(data["token"])) > 1
    labels = [app.session.decode_one(int(t)) for t in np.asarray(app.session.trace.tokens)[0]]
    app.model_view.cycle_cell_connection("blocks.0.mlstm.igate", "blocks.0.mlstm.memory")
    kl = app.diff_view.logit_source.data
    assert list(kl["token"]) == labels
    tips = [dict(t.tooltips) for t in app.diff_view.kl_figure.tools if isinstance(t, HoverTool)]
    assert tips[0]["token"] == "@token"


def test_ncps_synapses_have_arrowheads_turned_by_the_browser_along_each_synapse():
    from xlstm_viz.dashboard.wiring_view import WiringView, build_wiring

    view = WiringView(build_wiring("AutoNCP", 28, 4, 6))
    arrows = [a for a in view.graph_figure.center if isinstance(a, Arrow)]
    assert arrows and arrows[0].source is view.edge_source and arrows[0].end is not None
    e = {k: np.asarray(v, dtype=float) for k, v in view.edge_source.data.items()
         if k in ("x0", "y0", "x1", "y1", "stem_x", "stem_y", "head_x", "head_y")}
    assert len(e["x0"]) > 0
    d0 = np.hypot(e["x1"] - e["stem_x"], e["y1"] - e["stem_y"])
    d1 = np.hypot(e["x1"] - e["head_x"], e["y1"] - e["head_y"])
    assert np.all(d1 < d0) and np.all(d1 > 0)  # stem -> head points at the target and stops short of it
    # stem and head lie on the synapse (cross product with its direction is zero)
    for px, py in (("stem_x", "stem_y"), ("head_x", "head_y")):
        cross = (e["x1"] - e["x0"]) * (e[py] - e["y0"]) - (e["y1"] - e["y0"]) * (e[px] - e["x0"])
        np.testing.assert_allclose(cross, 0.0, atol=1e-12)
