"""A view update sends a data source's columns only when they change.

Bokeh sends every assignment of `ColumnDataSource.data`, equal or not, and the page repaints the figure for each (axes
measured, every glyph drawn): a debugger step re-sent the empty heatmaps of the panels not at the stop and the ring of
the block it was already on, four of its six figure paints (`benchmarks/dashboard_breakdown.py --action step`).
"""

from __future__ import annotations

import copy

import mlx.core as mx
import numpy as np
from bokeh.document import Document
from bokeh.models import ColumnDataSource

from dashboard_fixtures import model  # noqa: F401 - fixture
from xlstm_viz.dashboard import source_updates


def _data_events(doc):
    events = []
    doc.on_change(lambda event: events.append(event) if getattr(event, "attr", None) == "data" else None)
    return events


def test_equal_columns_send_nothing_and_changed_ones_are_sent():
    source = ColumnDataSource({"x": [0.0, 1.0], "image": [np.array([[1.0, np.nan]]), np.zeros((1, 2))], "name": ["a", "b"]})
    doc = Document()
    doc.add_root(source)
    events = _data_events(doc)
    # the same values in new objects (NaN matching NaN, arrays compared by value)
    source_updates.replace_data(source, {"x": [0.0, 1.0], "image": [np.array([[1.0, np.nan]]), np.zeros((1, 2))], "name": ["a", "b"]})
    assert events == []
    two = [np.array([[1.0, 2.0]]), np.zeros((1, 2))]
    source_updates.replace_data(source, {"x": [0.0, 1.0], "image": two, "name": ["a", "b"]})
    assert len(events) == 1
    source_updates.replace_data(source, {"x": [0.0, 1.0], "image": two, "name": ["a", "c"]})
    source_updates.replace_data(source, {"x": [0.0], "image": two[:1], "name": ["a"]})
    source_updates.replace_data(source, {"x": [0.0], "image": two[:1]})  # a column less
    assert len(events) == 4
    assert list(source.data) == ["x", "image"]


def test_same_data_tells_apart_what_the_page_would_draw_differently():
    same = source_updates.same_data
    assert same({"a": np.array([1.0, np.nan])}, {"a": np.array([1.0, np.nan])})
    assert same({"a": []}, {"a": []})
    assert same({"s": np.array(["x", "y"])}, {"s": ["x", "y"]})  # the page draws a list and an array alike
    assert not same({"s": np.array(["x", "y"])}, {"s": ["x", "z"]})
    assert not same({"a": np.zeros((2, 2))}, {"a": np.zeros((2, 3))})
    assert not same({"a": np.zeros(2)}, {"a": np.array([0.0, 1e-300])})
    assert not same({"a": [1]}, {"a": [True]})
    assert not same({"a": [1]}, {"b": [1]})


def test_a_debugger_step_sends_only_the_sources_it_changes(model):  # noqa: F811
    from xlstm_viz.dashboard.debugger_view import DebuggerView
    from xlstm_viz.execution import Debugger

    dbg = Debugger(model, mx.array(model.task.encode("K3 V7 K9 V1 ? K3")[None]), mode="recurrent")
    view = DebuggerView(dbg)
    figures = [view.block_graph.figure, view.cell_graph.figure, *view.inspector.figures]
    doc = Document()
    for fig in figures:
        doc.add_root(fig)
    sources = {m.id: m for m in doc.models if isinstance(m, ColumnDataSource)}
    events = _data_events(doc)
    sent = 0
    for _ in range(12):  # through the first block's cells: heatmaps empty, then filled, the ring moving or not
        before = {sid: copy.deepcopy(dict(s.data)) for sid, s in sources.items()}
        events.clear()
        view.do("step")
        for event in events:
            assert not source_updates.same_data(before[event.model.id], dict(event.model.data)), (
                f"step {view.state.get('steps')}: {event.model.id} re-sent unchanged columns {list(event.model.data)}")
        sent += len(events)
    assert sent > 12  # the steps did send what changed (the heatmaps, the moving ring)
