"""Colours mean one thing each, and every coloured figure of the app carries a colour bar or legend."""

from __future__ import annotations

import numpy as np
from bokeh.models import ColorBar, Legend

from xlstm_viz.dashboard import colors, trace_tables


def rgb(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


from dashboard_fixtures import app, model  # noqa: F401 - fixtures


def test_a_negative_change_is_purple_a_positive_one_orange_and_neither_is_the_flipped_red():
    cols = trace_tables.overlay_columns(np.array([-2.0, 0.0, 2.0]), symmetric=True)["fill"]
    neg, zero, pos = (rgb(c) for c in cols)
    assert neg[2] > neg[0] > neg[1]  # purple: blue and red over green
    assert pos[0] > pos[1] > pos[2]  # orange: red over green over blue
    assert min(zero) > 230  # 0 is (near) white
    red = colors.POLARITY_COLORS[-1]
    used = set(colors.diverging()) | set(colors.PREDICTION_COLORS.values()) | set(colors.KIND_COLORS.values())
    assert red not in used and colors.BAR_COLOR != red


def test_the_diff_overlay_paints_a_drop_purple_on_the_real_model(app):
    mv = app.model_view
    mv.overlay = "diff vs baseline"
    mv.stat = "absmax"
    # switching block 0's memory path off lowers what the memory cell holds
    app.session.edit_connection("cell", 0, "blocks.0.mlstm.v", "blocks.0.mlstm.memory", 0)
    data = mv.cell_graph.node_source.data
    i = mv.cell_graph.names.index("blocks.0.mlstm.memory")
    assert data["value"][i] < 0
    r, g, b = rgb(data["fill"][i])
    assert b > r > g
    # the colour bar spans the same symmetric range the fills were drawn with, diverging palette included
    lo, hi = colors.value_range(data["value"], symmetric=True)
    assert (mv.cell_graph.mapper.low, mv.cell_graph.mapper.high) == (lo, hi) and lo == -hi
    assert list(mv.cell_graph.mapper.palette) == colors.diverging()
    assert "after - before" in mv.cell_graph.color_bar.title


def figures(app):
    mv, tv, dv, dbg, wv = app.model_view, app.trace_view, app.diff_view, app.debugger_view, app.wiring_view
    figs = {"block graph": mv.block_graph.figure, "cell graph": mv.cell_graph.figure, "connections": mv.matrix_figure,
            "top-k": tv.topk_figure, "selected probe": tv.probe_figure, "diff bars": dv.bar_figure,
            "KL": dv.kl_figure, "debugger blocks": dbg.block_graph.figure, "debugger cells": dbg.cell_graph.figure,
            "NCPS graph": wv.graph_figure, "NCPS adjacency": wv.heatmap_figure}
    figs.update({f"over time {stat} {suffix}": fig for suffix, stat, fig, _ in tv.panels})
    return figs


def test_every_coloured_figure_has_a_colour_bar_or_legend_with_a_title(app):
    app.session.edit_connection("cell", 0, "blocks.0.mlstm.igate", "blocks.0.mlstm.memory", -1)  # a diff to show
    missing = []
    for name, fig in figures(app).items():
        keys = [m for side in (fig.right, fig.below, fig.above, fig.left, fig.center) for m in side
                if isinstance(m, (ColorBar, Legend))]
        ok = any((isinstance(k, ColorBar) and (k.title or "").strip()) or
                 (isinstance(k, Legend) and k.items and all(i.label for i in k.items)) for k in keys)
        if not ok:
            missing.append(name)
    assert missing == []


def test_the_over_time_colour_bars_follow_the_data_they_colour(app):
    tv = app.trace_view
    for suffix, stat, fig, src in tv.panels:
        mapper, bar = tv._bars[id(src)]
        v = np.asarray(src.data["value"], dtype=float)
        if not np.isfinite(v).any():
            continue
        assert (mapper.low, mapper.high) == colors.value_range(v)
        top = int(np.nanargmax(v))
        assert src.data["color"][top] == colors.viridis()[-1] and bar.title
