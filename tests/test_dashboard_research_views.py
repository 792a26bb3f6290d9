"""The research views without a browser: tensor inspector, long-trace paging, token text, the 32-block strip,
the patching tab, the score over sequences, per-head ablations from the diff tab, CSV and "copy as Python"."""

from __future__ import annotations

import io

import mlx.core as mx
import numpy as np
import pandas as pd
import pytest

from dashboard_fixtures import app, model  # noqa: F401 - fixtures


# -- tensor inspector ------------------------------------------------------------------------------------------
def test_the_inspector_draws_c_per_head_n_and_the_gates_of_the_stop(model):
    from xlstm_viz.dashboard.debugger_view import DebuggerView
    from xlstm_viz.dashboard.tensor_tables import memory_grid
    from xlstm_viz.execution import Debugger

    ids = model.task.encode("K3 V7 K9 V1 ? K3 V7")
    dbg = Debugger(model, mx.array(ids[None]), mode="recurrent")
    view = DebuggerView(dbg)
    dbg.run_to("blocks.1.mlstm.memory", token=5)
    view.param.update(event=dbg.current, state={})
    ev = dbg.current
    C = view.inspector.panels["C"]["source"].data["image"][0]
    NH, DQK, DV = ev.state["C"].shape[1:]
    assert C.shape == (DQK, NH * (DV + 1) - 1)
    for h in range(NH):
        np.testing.assert_array_equal(C[:, h * (DV + 1): h * (DV + 1) + DV], ev.state["C"][0, h])
    assert np.isnan(C[:, DV]).all()  # the gap between heads 0 and 1
    np.testing.assert_array_equal(view.inspector.panels["n"]["source"].data["image"][0], ev.state["n"][0])
    gates = view.inspector.panels["gates"]["source"].data["image"][0]
    np.testing.assert_array_equal(gates[0], ev.inputs["mlstm.igate"][0, -1])
    np.testing.assert_allclose(gates[2], 1 / (1 + np.exp(-ev.inputs["mlstm.fgate"][0, -1].astype(np.float64))))
    np.testing.assert_array_equal(gates[3], ev.state["m"][0].ravel())
    assert 'at token 5 ("K3")' in view.inspector.panels["C"]["figure"].title.text
    assert "token **5** `K3`" in view._details.object
    lim = np.abs(ev.state["C"]).max()
    assert view.inspector.ranges()["C"] == pytest.approx((-lim, lim))
    np.testing.assert_array_equal(memory_grid(ev.state["C"])[0], C)


def test_the_shared_scale_switch_puts_every_heatmap_on_one_range(model):
    from xlstm_viz.dashboard.debugger_view import DebuggerView
    from xlstm_viz.execution import Debugger

    dbg = Debugger(model, mx.array(model.task.encode("K3 V7 ? K3")[None]), mode="recurrent")
    view = DebuggerView(dbg)
    dbg.run_to("blocks.0.mlstm.memory", token=2)
    view.param.update(event=dbg.current, state={})
    own = view.inspector.ranges()
    assert len({own[k] for k in ("C", "n", "gates", "output")}) == 4
    view.shared_scale = True
    shared = view.inspector.ranges()
    assert len(set(shared.values())) == 1
    assert shared["C"][1] == pytest.approx(max(hi for _, hi in own.values()))
    view.shared_scale = False
    assert view.inspector.ranges() == own


def test_a_stop_outside_the_memory_says_where_c_and_n_are_shown(model):
    from xlstm_viz.dashboard.debugger_view import DebuggerView
    from xlstm_viz.execution import Debugger

    dbg = Debugger(model, mx.array(model.task.encode("K3 V7")[None]), mode="recurrent")
    view = DebuggerView(dbg)
    view.do("step")
    assert view.inspector.panels["C"]["source"].data["image"] == []
    assert "blocks.i.mlstm.memory" in view.inspector.panels["C"]["figure"].title.text
    out = view.inspector.panels["output"]["source"].data["image"][0]
    assert out.shape == (1, model.config.embedding_dim)  # the embedding has no heads


# -- depth and length ------------------------------------------------------------------------------------------
def test_a_2000_token_trace_pages_and_labels_its_axis_through_one_ticker(model):
    from xlstm_viz.dashboard.trace_view import WINDOW, TraceView

    rng = np.random.default_rng(0)
    ids = rng.integers(2, 130, size=2000).astype(np.int32)
    tr = model.run_with_trace(mx.array(ids[None]))
    view = TraceView(tr, decode=lambda i: model.task.decode([i])[0])
    ticker, formatter = view.ticker, view.formatter
    assert (view.x_range.start, view.x_range.end) == (-0.5, WINDOW - 0.5)
    assert len(formatter.args["labels"]) == 2000 and formatter.args["labels"][7] == model.task.decode([ids[7]])[0]
    assert all(f.xaxis[0].ticker is ticker for _, _, f, _ in view.panels)
    view.first_token = 1000
    assert (view.x_range.start, view.x_range.end) == (999.5, 999.5 + WINDOW)
    view.first_token = 5000  # past the end: the last page
    assert view.x_range.end == 1999.5
    view.window = 64
    assert view.x_range.end - view.x_range.start == 64
    view.trace = model.run_with_trace(mx.array(ids[None, :1500]))
    assert view.ticker is ticker and view.formatter is formatter and len(formatter.args["labels"]) == 1500
    text = view.token_text.source.data
    assert len(text["label"]) == 1500 and (text["x"] + text["w"] / 2).max() <= 96
    assert view.token_text.mapper.low == pytest.approx(text["value"].min())


def test_token_text_wraps_like_text_and_colours_by_the_value():
    from xlstm_viz.dashboard.token_text import token_text_table

    t = token_text_table(["ab", "cdef", "g"] * 20, np.arange(60.0), row_chars=20)
    assert t["y"][0] == 0 and t["y"].min() < -5 and (t["x"] + t["w"] / 2).max() <= 20
    assert t["color"][0] != t["color"][-1]
    with pytest.raises(ValueError, match="got 2 values for 3 tokens"):
        token_text_table(["a", "b", "c"], [1, 2])


def test_a_32_block_graph_is_a_strip_that_scrolls_to_the_highlighted_block():
    import xlstm_viz as xv
    from xlstm_viz.config import XLSTMConfig
    from xlstm_viz.dashboard import model_graph
    from xlstm_viz.dashboard.dag_figure import LABEL_ROOM, MAX_COLUMNS, DagFigure

    deep = xv.XLSTM(XLSTMConfig(embedding_dim=32, num_heads=2, num_blocks=32, vocab_size=130))
    fig = DagFigure("blocks")
    fig.set_graph(*model_graph.connections(deep.block_wiring))
    assert len(fig.node_source.data["id"]) == 35
    width = MAX_COLUMNS + LABEL_ROOM  # 14 columns, and room for the last one's rotated label
    assert fig.x_range.end - fig.x_range.start == pytest.approx(width)
    fig.highlight("blocks.25")
    x = fig.node_source.data["x"][list(fig.node_source.data["id"]).index("blocks.25")]
    assert fig.x_range.start < x < fig.x_range.end and fig.x_range.end - fig.x_range.start == pytest.approx(width)
    small = DagFigure("blocks")
    small.set_graph(["embedding", "blocks.0", "lm_head"], [("embedding", "blocks.0", 1), ("blocks.0", "lm_head", 1)])
    assert (small.x_range.start, small.x_range.end) == (-0.5, pytest.approx(2.5 + LABEL_ROOM))


def test_the_debuggers_narrow_cell_graph_shows_a_few_columns_and_pans_to_the_stop(app):
    from xlstm_viz.dashboard.dag_figure import LABEL_ROOM, MAX_COLUMNS
    from xlstm_viz.dashboard.debugger_view import DEBUG_COLUMNS

    dv = app.debugger_view
    graph = dv.cell_graph
    if not graph.names:  # the debugger tab draws when first shown
        dv._draw_cell_graph(0)
    xs = np.asarray(graph.node_source.data["x"], dtype=float)
    assert xs.max() + 1 > DEBUG_COLUMNS  # an mLSTM block is wider than the strip
    assert DEBUG_COLUMNS < MAX_COLUMNS
    assert graph.x_range.end - graph.x_range.start == pytest.approx(DEBUG_COLUMNS + LABEL_ROOM)
    last = graph.names[int(np.argmax(xs))]
    graph.highlight(last)  # what a stop at the block's last cell does
    assert graph.x_range.start < xs.max() < graph.x_range.end - LABEL_ROOM
    assert graph.x_range.end - graph.x_range.start == pytest.approx(DEBUG_COLUMNS + LABEL_ROOM)
    # names only on the narrow graph; the Model tab's wide one also shows the shape / parameter line
    assert graph.info_labels.visible is False and app.model_view.cell_graph.info_labels.visible is True
    with pytest.raises(ValueError, match="max_columns must be at least 2, got 1"):
        type(graph)("cells", max_columns=1)


# -- patching and scores in the app ------------------------------------------------------------------------------
def test_the_patching_tab_patches_sweeps_and_exports_its_table(app):
    pv = app.patching_view
    pv.use_current()
    assert pv.clean != pv.corrupted and len(pv.clean.split()) == len(pv.corrupted.split())
    pv.param.update(probe="blocks.1.out", heads="all", positions="all")
    pv.run_patch()
    S = len(app.session.tokens)
    d = pv.ld_source.data
    assert len(d["position"]) == S
    np.testing.assert_allclose(d["patched"], d["clean"], atol=1e-3)  # the last block's output restores clean
    assert "recovered **1.000**" in pv._summary.object
    frame = pd.read_csv(io.StringIO(pv.result_frame().to_csv(index=False)))
    assert list(frame.columns[:3]) == ["position", "clean_token", "corrupted_token"] and len(frame) == S
    pv.param.update(probe="blocks.0.mlstm.memory", heads="1", positions="all")
    pv.run_patch()
    assert pv.result.heads == (1,) and "heads [1]" in pv._summary.object
    pv.param.update(sweep_probes="blocks.*.out", sweep_over="head")
    with pytest.raises(ValueError, match="'blocks.0.mlstm.out' has no heads"):
        pv.run_sweep()
    pv.param.update(sweep_probes="blocks.*.mlstm.h", sweep_over="head")
    pv.run_sweep()
    assert len(pv.sweep_source.data["value"]) == 2 * app.session.config.num_heads
    assert list(pv.sweep_rows.factors) == ["blocks.1.mlstm.h", "blocks.0.mlstm.h"]
    assert pv.sweep_mapper.low == -pv.sweep_mapper.high
    assert len(app.session.model.interventions) == 0


def test_patching_inputs_are_refused_by_name(app):
    pv = app.patching_view
    pv.use_current()
    pv.heads = "one"
    with pytest.raises(ValueError, match="heads: 'one' is not an index"):
        pv.run_patch()
    pv.param.update(heads="all", positions="999")
    with pytest.raises(ValueError, match="position 999 is outside the prompt"):
        pv.run_patch()
    pv.param.update(positions="all", corrupted="K1 V2")
    with pytest.raises(ValueError, match="same length"):
        pv.run_patch()


def test_the_score_over_sequences_reports_the_paired_change_of_an_ablation(app):
    pv = app.patching_view
    pv.param.update(score_n=64, score_pairs=8, score_seed=0)
    pv.run_score()
    assert "64 sequences of 8 pairs, seed 0" in pv._score.object
    app.session.ablate("blocks.1.mlstm.memory", rerun=False)
    pv.run_score()
    diff = pv.score.mean - pv.reference_score.mean
    assert diff < 0 and f"**{diff:+.3f}**" in pv._score.object


def test_per_head_and_position_ablations_from_the_diff_tab(app):
    dv = app.diff_view
    dv.param.update(ablate_probe="blocks.0.mlstm.h", ablate_heads="0, 2", ablate_positions="3")
    dv.ablate()
    assert app.session.ablations() == ["#%d zero blocks.0.mlstm.h heads [0, 2] at tokens [3]"
                                       % app.session.model.interventions.list()[0].id]
    assert "heads [0, 2] at tokens [3]" in app.session.last_action
    dv.param.update(ablate_heads="9")
    with pytest.raises(ValueError, match="head 9 does not exist"):
        dv.ablate()
    dv.param.update(ablate_heads="all", ablate_positions="400")
    with pytest.raises(ValueError, match="ablation position 400 is outside the prompt"):
        dv.ablate()
    csv = pd.read_csv(io.StringIO(dv.diff_csv()))
    assert set(csv["table"]) == {"per position", "per probe"} and csv["kl"].max() > 0


def test_the_python_snippet_rebuilds_the_edited_model(app):
    s = app.session
    s.edit_connection("cell", 1, "blocks.1.mlstm.k", "blocks.1.mlstm.memory", -1)
    s.sparsify(0, 0.5, seed=3)
    s.ablate("blocks.1.mlstm.h", heads=[1], tokens=[2, 4])
    code = app.python_snippet()
    scope: dict = {}
    exec(compile(code, "reproduce_edits.py", "exec"), scope)  # the script as a user would run it
    want = np.array(s.model(mx.array(s.tokens[None]))[0])
    np.testing.assert_array_equal(np.array(scope["logits"]), want)
    unedited = np.array(scope["xv"].load_demo()(mx.array(s.tokens[None]))[0])
    assert np.abs(unedited - want).max() > 1e-3  # the snippet carries the edits
    s.sparsify(0, 0.0, seed=0)


def test_every_coloured_figure_of_the_new_views_has_a_colour_bar_or_legend(app):
    from bokeh.models import ColorBar, Legend

    figs = (list(app.debugger_view.inspector.figures) + [app.trace_view.token_text.figure]
            + [app.patching_view.ld_figure, app.patching_view.kl_figure, app.patching_view.sweep_figure])
    for fig in figs:
        annotations = fig.right + fig.left + fig.above + fig.below + fig.center
        assert any(isinstance(a, (ColorBar, Legend)) for a in annotations), fig.title.text
    bars = [a for f in app.debugger_view.inspector.figures for a in f.right if isinstance(a, ColorBar)]
    assert [b.title for b in bars] == ["C_t entry", "n_t entry", "gate value", "output value"]


def test_the_diff_figures_y_axes_place_their_labels_from_the_axis_line(app):
    """Their width then does not follow the tick labels' width, and a toggle re-lays out no diff figure (the browser
    side: tests/ui/test_dashboard_click_cost_browser.py)."""
    from xlstm_viz.dashboard.diff_view import AXIS_ROOM, TICK_ROOM

    dv = app.diff_view
    for fig in (dv.bar_figure, dv.kl_figure):
        (axis,) = fig.yaxis
        assert axis.axis_label and axis.axis_label_standoff_mode == "axis", fig.title.text
        assert axis.axis_label_standoff == TICK_ROOM < AXIS_ROOM == fig.min_border_left
