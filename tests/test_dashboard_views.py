"""Bokeh models without a browser: toggles patch data sources in place; views render as notebook widgets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import panel as pn
import pytest

from xlstm_viz.dashboard import trace_tables
from xlstm_viz.dashboard.wiring_view import WiringView, build_wiring, wiring_from_json, wiring_to_json

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_MIME = "application/vnd.holoviews_exec.v0+json"


from dashboard_fixtures import app, model  # noqa: F401 - fixtures


def test_heatmap_click_edits_the_wiring_and_keeps_the_figures():
    pn.extension()
    view = WiringView(build_wiring("AutoNCP", 20, 3, 5, seed=1))
    ids = (view.graph_figure.id, view.heatmap_figure.id)
    src, dst = map(int, np.argwhere(view.wiring.adjacency_matrix != 0)[0])
    before = int(view.wiring.adjacency_matrix[src, dst])
    image_before = view.image_source.data["image"][0].copy()
    view.cycle_synapse("neuron", src, dst)
    assert int(view.wiring.adjacency_matrix[src, dst]) == {1: -1, -1: 0}[before]
    assert not np.array_equal(view.image_source.data["image"][0], image_before)
    assert (view.graph_figure.id, view.heatmap_figure.id) == ids
    assert view.version == 1
    view.undo()
    assert int(view.wiring.adjacency_matrix[src, dst]) == before


def test_wiring_json_round_trips_edits():
    w = build_wiring("Random", 12, 2, 3, sparsity=0.5, seed=4)
    w.set_polarity(0, 1, -1)
    back = wiring_from_json(wiring_to_json(w))
    assert np.array_equal(back.adjacency_matrix, w.adjacency_matrix)
    with pytest.raises(ValueError, match="not valid JSON"):
        wiring_from_json("{nope")


def test_big_wiring_is_bundled_not_drawn_edge_by_edge():
    view = WiringView(build_wiring("Random", 300, 10, 20, sparsity=0.5, seed=0), edge_limit=5000)
    assert len(view.edge_source.data["src"]) == 0
    assert sum(view.bundle_source.data["count"]) == view.wiring.synapse_count + view.wiring.sensory_synapse_count


def test_toggle_reruns_the_model_and_patches_the_overlay_in_place(app):
    mv = app.model_view
    fig_ids = (mv.cell_graph.figure.id, mv.block_graph.figure.id, mv.matrix_figure.id)
    source_id = mv.cell_graph.node_source.id
    memory = mv.cell_graph.names.index("blocks.0.mlstm.memory")
    before = float(mv.cell_graph.node_source.data["value"][memory])
    baseline = app.session.trace
    mv.cycle_cell_connection("blocks.0.mlstm.igate", "blocks.0.mlstm.memory")
    assert app.session.trace is not baseline and app.session.baseline is baseline
    assert float(mv.cell_graph.node_source.data["value"][memory]) != before
    assert (mv.cell_graph.figure.id, mv.block_graph.figure.id, mv.matrix_figure.id) == fig_ids
    assert mv.cell_graph.node_source.id == source_id
    # the diff overlay is after - before, exactly what trace.diff reports
    mv.overlay = "diff vs baseline"
    expected = trace_tables.node_values(baseline.diff(app.session.trace), ["blocks.0.mlstm.memory"], mv.stat)[0]
    assert float(mv.cell_graph.node_source.data["value"][memory]) == pytest.approx(expected)


def test_a_shorter_prompt_moves_the_overlay_token_to_its_last_token_and_the_labels_name_it(app):
    mv = app.model_view
    mv.token = 30
    assert "at token 30" in mv._info.object
    app.session.set_prompt("K3 V4 ? K3")  # 4 tokens: the overlay can only show token 3
    assert mv.token == 3
    assert "at token 3 " in mv._info.object and "token 30" not in mv._info.object
    assert mv.block_graph.color_bar.title.endswith("token 3") and mv.cell_graph.color_bar.title.endswith("token 3")
    names = mv.block_graph.names
    expected = trace_tables.node_values(app.session.trace, names, mv.stat, 3)
    assert np.array_equal(mv.block_graph.node_source.data["value"], expected, equal_nan=True)


def test_debugger_step_moves_the_highlight_to_the_cell_that_ran(app):
    dv = app.debugger_view
    dv.step()
    first = app.session.step_event.name
    dv.step()
    second = app.session.step_event.name
    assert first != second
    assert list(dv.cell_graph.highlight_source.data["id"]) == [second]
    assert second in dv._details.object


def test_a_debugger_run_to_the_end_says_finished_in_both_status_lines_not_not_started(app):
    dv = app.debugger_view
    assert "not started" in dv._details.object
    dv.do("continue")  # no breakpoint: every cell runs
    assert app.session.step_event is None and app.session.debugger_state.get("finished")
    assert dv._status.object == "finished: logits ready"
    assert "finished" in dv._details.object and "not started" not in dv._details.object
    dv.do("reset")
    assert "not started" in dv._details.object


def test_ablation_shows_up_in_the_diff_view(app):
    app.session.ablate("blocks.0.mlstm.out")
    try:
        assert max(app.diff_view.bar_source.data["change"]) > 0
        assert "top-1 prediction changed" in app.diff_view._summary.object
    finally:
        app.session.clear_ablations()


def test_bad_prompt_raises_a_clear_error_and_the_session_keeps_working(app):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        app.session.set_prompt(f"1 2 {app.session.config.vocab_size + 5}")
    app.session.set_prompt("1 2 3 4")
    assert app.session.trace.tokens.shape == (1, 4)


def test_views_render_as_notebook_widgets(app, model):
    pn.extension()
    from xlstm_viz.dashboard import DebuggerView, TraceView
    from xlstm_viz.execution import Debugger

    import mlx.core as mx

    tr = model.run_with_trace(mx.array(np.arange(8, dtype=np.int32)[None] % model.config.vocab_size))
    for obj in (app, TraceView(tr), DebuggerView(Debugger(model, mx.array(np.arange(4, dtype=np.int32)[None]))),
                WiringView()):
        bundle = obj._repr_mimebundle_()
        assert NOTEBOOK_MIME in bundle[0]


def test_trace_view_shows_every_head_and_token_of_the_gates(model):
    import mlx.core as mx
    from xlstm_viz.dashboard import TraceView

    tr = model.run_with_trace(mx.array(np.arange(10, dtype=np.int32)[None] % model.config.vocab_size))
    view = TraceView(tr)
    H = model.config.num_heads
    for suffix, stat, fig, src in view.panels:
        assert len(src.data["pos"]) == 10 * H, suffix
    assert len(view.topk_source.data["pos"]) == 10 * view.top_k


def test_ncps_view_refuses_sizes_above_its_bound_naming_the_value_before_building():
    import time

    from xlstm_viz.dashboard import wiring_view as wv

    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"units=12000 is above the NCPS view's bound of 1024"):
        build_wiring("AutoNCP", 12000, 4, 6)
    with pytest.raises(ValueError, match=r"input_dim=5000 is above"):
        build_wiring("AutoNCP", 28, 4, 5000)
    # the issue 17 import: a small JSON document asking for 12000 neurons is refused before any matrix exists
    with pytest.raises(ValueError, match=r"wiring JSON: units=12000"):
        wiring_from_json('{"class_name": "Wiring", "units": 12000, "adjacency_matrix": [[0]]}')
    with pytest.raises(ValueError, match=r"wiring JSON: units=12000"):
        wiring_from_json('{"class_name": "NCP", "inter_neurons": 10000, "command_neurons": 1996, '
                         '"motor_neurons": 4, "sensory_fanout": 1, "inter_fanout": 1, '
                         '"recurrent_command_synapses": 1, "motor_fanin": 1}')
    assert time.perf_counter() - t < 2.0
    view = WiringView()
    big = wv.wiring_module().AutoNCP(1100, 4)
    big.build(6)
    with pytest.raises(ValueError, match="units=1100"):
        view.set_wiring(big)
    assert view.wiring.units == 28  # the view kept its wiring


def test_builder_sizes_are_number_fields_checked_against_the_bounds():
    pn.extension()
    view = WiringView()
    controls = view.controls()
    fields = {w.name: w for w in controls.select(pn.widgets.IntInput)}
    assert any(n.startswith("units") for n in fields), sorted(fields)
    assert not [w for w in controls.select(pn.widgets.IntSlider)]  # no slider over 3..1024
    units = next(w for n, w in fields.items() if n.startswith("units"))
    units.value = 600
    assert view.units == 600
    with pytest.raises(ValueError, match=r"units \(3..1024\) 5000 is out of range"):
        units.value = 5000  # out of range: refused (a toast in a served page), the field goes back
    assert view.units == 600 and units.value == 600


def test_the_top_k_rank_axis_ticks_whole_ranks_only(app):
    from bokeh.models import SingleIntervalTicker

    tv = app.trace_view
    ticker = tv.topk_figure.yaxis[0].ticker
    # the auto ticker put ticks at -0.5, 0.5, 1.5, 2.5 on a 3-row figure: ranks that do not exist
    assert isinstance(ticker, SingleIntervalTicker) and ticker.interval == 1
    assert sorted(set(tv.topk_source.data["rank"])) == list(range(tv.top_k))
