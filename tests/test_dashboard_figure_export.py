"""Server-side SVG/PNG export: each file is a real figure of the current result (title, colour bar or legend, the
drawn data), drawn with matplotlib without a browser, and it changes when an edit changes the result."""

import io
import xml.etree.ElementTree as ET

import numpy as np
import panel as pn
import pytest
from PIL import Image

from dashboard_fixtures import app, model  # noqa: F401 - fixtures

SVG = "{http://www.w3.org/2000/svg}"


def svg_texts(data: bytes) -> list[str]:
    root = ET.fromstring(data)  # parses: a well-formed SVG document
    assert root.tag == SVG + "svg"
    return [t.text.strip() for t in root.iter(SVG + "text") if t.text]


def png_pixels(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    return np.asarray(img.convert("RGB"), dtype=np.int64)


def downloads(view) -> dict:
    """{filename: FileDownload} of a view's layout."""
    return {w.filename: w for w in view.__panel__().select(pn.widgets.FileDownload)}


def test_trace_heatmap_export_has_title_colour_bar_and_tokens_and_follows_the_statistic(app):
    tv = app.trace_view
    tv.probe, tv.stat = "blocks.0.mlstm.h", "absmax"
    texts = svg_texts(tv.export_heatmap("svg"))
    assert "blocks.0.mlstm.h: absmax" in texts and "head" in texts
    assert texts.count("absmax") >= 1 and "K11" in texts  # colour bar label, token ticks
    a = png_pixels(tv.export_heatmap("png"))
    tv.stat = "mean"
    b = png_pixels(tv.export_heatmap("png"))
    assert a.shape[2] == 3 and a.shape[0] > 100 and (a.shape != b.shape or np.abs(a - b).sum() > 0)
    assert "blocks.0.mlstm.h: mean" in svg_texts(tv.export_heatmap("svg"))


def test_trace_heatmap_export_changes_with_an_edit(app):
    tv = app.trace_view
    tv.probe, tv.stat = "blocks.0.mlstm.memory", "C_norm"
    before = png_pixels(tv.export_heatmap("png"))
    app.model_view.cycle_cell_connection("blocks.0.mlstm.igate", "blocks.0.mlstm.memory")
    after = png_pixels(tv.export_heatmap("png"))
    assert before.shape == after.shape and np.abs(before - after).sum() > 0


def changed_bars(data: bytes) -> list[int]:
    """Positions of the KL bars drawn as 'top-1 prediction changed'."""
    ids = [e.get("id", "") for e in ET.fromstring(data).iter()]
    return sorted(int(i.rsplit("-", 1)[1]) for i in ids if i.startswith("kl-changed-"))


def test_diff_plot_export_shows_the_edit_with_its_legend(app):
    dv = app.diff_view
    quiet = dv.export_plot("svg")  # first run = baseline: nothing changed yet
    texts = svg_texts(quiet)
    assert "largest change per probe (after - before)" in texts and "top-1 prediction changed" in texts
    app.model_view.cycle_cell_connection("blocks.0.mlstm.igate", "blocks.0.mlstm.memory")
    edited = dv.export_plot("svg")
    # one 'changed' KL bar at each position whose top-1 prediction changed, none before the edit
    changed = np.flatnonzero(app.session.result.logit_change["changed"]).tolist()
    assert changed and changed_bars(quiet) == [] and changed_bars(edited) == changed


def test_graph_export_names_nodes_with_shapes_and_follows_the_overlay(app):
    mv = app.model_view
    texts = svg_texts(mv.export_graph("cell", "svg"))
    assert "memory" in texts and "64x128 · 8.2k" in texts and "cells of block 0" in texts
    assert any(t.startswith("absmax (activation units)") for t in texts)  # the colour bar's title
    assert "edge on" in texts and "memory" in texts  # legend
    blocks = svg_texts(mv.export_graph("block", "svg"))
    assert "block 0" in blocks and "214.4k params" in blocks
    a = png_pixels(mv.export_graph("cell", "png"))
    mv.stat = "l2"
    b = png_pixels(mv.export_graph("cell", "png"))
    assert a.shape == b.shape and np.abs(a - b).sum() > 0
    assert any(t.startswith("l2 (L2 norm)") for t in svg_texts(mv.export_graph("cell", "svg")))


def node_fills(data: bytes) -> list[str]:
    """Fill colour of each node marker, in node order."""
    group = next(e for e in ET.fromstring(data).iter() if e.get("id") == "nodes")
    fills = []
    for use in group.iter(SVG + "use"):
        style = dict(kv.strip().split(": ") for kv in use.get("style", "").split(";") if ":" in kv)
        fills.append(style["fill"])
    return fills


def test_graph_export_fills_each_node_by_its_overlay_value(app):
    mv = app.model_view
    names = mv.cell_graph.names
    values, _ = mv.overlay_values(names)
    fills = node_fills(mv.export_graph("cell", "svg"))
    assert len(fills) == len(names)
    # the browser's viridis ends: the largest value is yellow, the smallest dark purple
    from xlstm_viz.dashboard.colors import viridis

    assert fills[int(np.nanargmax(values))].lower() == viridis()[-1].lower() == "#fde724"
    assert fills[int(np.nanargmin(values))].lower() == viridis()[0].lower() == "#440154"


def test_an_exported_diff_graph_colours_each_node_as_the_browser_does_purple_negative(app):
    mv = app.model_view
    app.session.edit_connection("cell", 0, "blocks.0.mlstm.memory", "blocks.0.mlstm.norm", 0)
    mv.overlay = "diff vs baseline"
    names = mv.cell_graph.names
    values, symmetric = mv.overlay_values(names)
    assert symmetric and np.nanmin(values) < 0
    fills = node_fills(mv.export_graph("cell", "svg"))
    assert [f.lower() for f in fills] == [str(c).lower() for c in mv.cell_graph.node_source.data["fill"]]
    from xlstm_viz.dashboard.colors import diverging

    i = int(np.nanargmax(np.abs(values)))  # the largest change sits at an end of the palette, by its sign
    assert fills[i].lower() == (diverging()[0] if values[i] < 0 else diverging()[-1]).lower()


def test_each_view_offers_svg_and_png_downloads_of_its_figure(app):
    mv = downloads(app.model_view)
    assert {"block_graph.svg", "block_graph.png", "cell_graph.svg", "cell_graph.png"} <= set(mv)
    assert {"trace_heatmap.svg", "trace_heatmap.png"} <= set(downloads(app.trace_view))
    assert {"diff_plot.svg", "diff_plot.png"} <= set(downloads(app.diff_view))
    data = mv["cell_graph.svg"].callback().getvalue()
    assert "cells of block 0" in svg_texts(data)
    assert png_pixels(mv["block_graph.png"].callback().getvalue()).size


def test_unknown_format_and_missing_statistic_are_refused_by_name(app):
    with pytest.raises(ValueError, match="figure format 'pdf'"):
        app.model_view.export_graph("cell", "pdf")
    from xlstm_viz.dashboard.figure_export import trace_heatmap

    with pytest.raises(ValueError, match="no statistic 'nope' of probe 'blocks.0.mlstm.h'"):
        trace_heatmap(app.session.trace, "blocks.0.mlstm.h", "nope")
