"""One-way data flow: one result per command, the diff computed once, views that never call into the model thread,
undo/redo/reset through the session, and one copy of the weights shared by every session."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    import xlstm_viz.blas  # noqa: F401


def new_app(key=None):
    from xlstm_viz.dashboard.app import DashboardApp

    return DashboardApp(session_key=key, threaded=False)


def test_an_edit_computes_the_trace_diff_once_and_the_views_never_call_the_model_thread(cache, monkeypatch):
    from xlstm_viz.dashboard import session as session_mod
    from xlstm_viz.dashboard import trace_tables

    app = new_app()
    app.model_view.overlay = "diff vs baseline"  # the model view paints the diff too
    calls = {"diff": 0, "worker": 0}
    real_diff, real_worker = trace_tables.stats_diff, session_mod.ModelSession.on_worker

    def counting_diff(*a, **k):
        calls["diff"] += 1
        return real_diff(*a, **k)

    def counting_worker(self, fn):
        calls["worker"] += 1
        return real_worker(self, fn)

    monkeypatch.setattr(trace_tables, "stats_diff", counting_diff)
    monkeypatch.setattr(session_mod.ModelSession, "on_worker", counting_worker)
    seq = app.session.result.seq
    app.session.edit_connection("cell", 1, "blocks.1.mlstm.v", "blocks.1.mlstm.memory", -1)
    r = app.session.result
    assert r.seq == seq + 1  # one result for the edit and its re-run
    assert calls == {"diff": 1, "worker": 1}, calls  # the command itself; views read the result
    bars = dict(app.diff_view.bar_source.data)
    assert len(bars["probe"]) and max(bars["change"]) > 0
    assert r.diff.stats is not None and np.isfinite(app.model_view.overlay_values(r.graphs.block[0])[0]).any()
    app.close()


def test_a_toggle_updates_data_sources_and_keeps_figures_and_tickers(cache):
    app = new_app()
    mv = app.model_view
    fig, ticker = mv.matrix_figure, mv.matrix_figure.xaxis[0].ticker
    graph_fig = mv.cell_graph.figure
    app.session.edit_connection("cell", 0, "blocks.0.mlstm.v", "blocks.0.mlstm.memory", -1)
    assert mv.matrix_figure is fig and mv.cell_graph.figure is graph_fig
    assert mv.matrix_figure.xaxis[0].ticker is ticker  # a new ticker made Bokeh re-walk the whole document
    state = mv._matrix["matrix"][mv._matrix["names"].index("blocks.0.mlstm.v"),
                                 mv._matrix["names"].index("blocks.0.mlstm.memory")]
    assert state == -1  # ... and the data did change
    app.close()


def test_undo_redo_and_reset_in_the_session_restore_the_outputs(cache):
    app = new_app()
    s = app.session
    ref = s.trace.logits.copy()
    s.edit_connection("block", None, "blocks.0", "blocks.1", 0)
    s.sparsify(1, 0.5, seed=2)
    edited = s.trace.logits.copy()
    s.undo()
    s.undo()
    np.testing.assert_array_equal(s.trace.logits, ref)
    assert s.result.redoable == 2 and s.edits == []
    s.redo()
    s.redo()
    np.testing.assert_array_equal(s.trace.logits, edited)
    assert "redid" in s.last_action
    s.reset_edits()
    np.testing.assert_array_equal(s.trace.logits, ref)
    assert s.edits == [] and s.result.undoable == 0
    app.close()


def test_sessions_share_one_copy_of_the_weights_and_keep_their_own_wirings(cache):
    a, b = new_app(), new_app()
    ma, mb = a.session.model, b.session.model
    assert ma is not mb and ma.backbone is mb.backbone  # the same parameter arrays
    assert ma.block_wiring is not mb.block_wiring and ma.interventions is not mb.interventions
    before = b.session.trace.logits.copy()
    a.session.edit_connection("block", None, "blocks.0", "blocks.1", 0)
    a.session.ablate("blocks.0.mlstm.igate")
    b.session.run()
    np.testing.assert_array_equal(b.session.trace.logits, before)  # nothing of a's reached b
    assert b.session.ablations() == [] and not np.allclose(a.session.trace.logits, before)
    a.close(), b.close()


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_each_further_session_costs_less_than_50_mb(cache):
    import gc

    apps = [new_app()]
    gc.collect()
    start = rss_mb()
    for _ in range(4):
        apps.append(new_app())
    gc.collect()
    per = (rss_mb() - start) / 4
    assert per < 50, f"{per:.1f} MB per session"
    for a in apps:
        a.close()


def test_the_sidebar_undo_redo_and_reset_buttons_act_on_the_model_edits(cache):
    import panel as pn

    app = new_app()
    buttons = {b.label: b for b in app.sidebar().select(pn.widgets.Button)}
    undo, redo, reset = buttons["Undo edit"], buttons["Redo edit"], buttons["Reset edits"]
    assert undo.disabled and redo.disabled and reset.disabled
    ref = app.session.trace.logits.copy()
    app.session.edit_connection("block", None, "blocks.0", "blocks.1", 0)
    assert not undo.disabled and redo.disabled
    undo.clicks += 1
    np.testing.assert_array_equal(app.session.trace.logits, ref)
    assert undo.disabled and not redo.disabled
    redo.clicks += 1
    assert app.session.edits == [("block", None, "blocks.0", "blocks.1", 0)]
    reset.clicks += 1
    assert app.session.edits == [] and reset.disabled
    np.testing.assert_array_equal(app.session.trace.logits, ref)
    app.close()
