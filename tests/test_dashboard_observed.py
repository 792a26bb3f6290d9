"""Dashboard behaviours that used to survive a break of their code: each test sees the effect on the real model."""

from __future__ import annotations

import numpy as np
import pytest



@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    import xlstm_viz.blas  # noqa: F401


def new_app(key=None):
    from xlstm_viz.dashboard.app import DashboardApp

    return DashboardApp(session_key=key, threaded=False)  # its own demo model


def masks(model, block):
    return {(c.src, c.dst): (c.sparsity, c.seed, None if c.mask is None else c.mask.copy())
            for c in model.cell_wirings[block].connections.values()}


def button(view, label):
    import panel as pn

    found = [w for w in view.controls().select(pn.widgets.Button) if w.label == label]
    assert len(found) == 1, f"no single button {label!r}"
    return found[0]


def test_the_sparsify_block_button_masks_that_blocks_weights_and_the_next_run_changes(cache):
    app = new_app()
    mv, s = app.model_view, app.session
    before = s.trace.logits.copy()
    untouched = masks(s.model, 0)
    mv.param.update(block=1, sparsity=0.5, seed=3)
    button(mv, "Sparsify block").clicks += 1
    weighted = [c for c in s.model.cell_wirings[1].connections.values() if c.weight is not None]
    assert weighted and all(c.sparsity == 0.5 and c.seed == 3 for c in weighted)
    for c in weighted:  # exactly half of each weight is masked
        assert int((c.mask == 0).sum()) == round(0.5 * c.mask.size)
    assert masks(s.model, 0).keys() == untouched.keys()
    assert all(masks(s.model, 0)[k][0] == 0 for k in untouched)  # block 0 is not touched
    assert s.edits[-1] == ("sparsity", 1, "", "", 0.5, 3)
    assert not np.allclose(s.trace.logits, before)  # the model re-ran on the masked weights
    assert "sparsity 0.5 (seed 3)" in s.last_action
    s.close()


def test_replaying_a_sparsity_edit_rebuilds_the_same_masks_and_outputs(cache):
    a = new_app()
    a.session.sparsify(1, 0.4, seed=7)
    b = new_app()
    b.session.import_edits(a.session.edits_doc())  # the exported edits file: the wirings' own history entries
    ma, mb = masks(a.session.model, 1), masks(b.session.model, 1)
    assert ma.keys() == mb.keys()
    for k in ma:
        assert ma[k][:2] == mb[k][:2] and (ma[k][2] is None) == (mb[k][2] is None)
        if ma[k][2] is not None:
            np.testing.assert_array_equal(ma[k][2], mb[k][2])
    assert b.session.edits == a.session.edits
    np.testing.assert_allclose(b.session.trace.logits, a.session.trace.logits, rtol=1e-5,
                               atol=1e-5 * np.abs(a.session.trace.logits).max())
    a.session.close(), b.session.close()


def test_set_baseline_makes_the_current_run_the_reference_of_the_diff(cache):
    app = new_app()
    s, dv = app.session, app.diff_view
    s.edit_connection("cell", 0, "blocks.0.mlstm.v", "blocks.0.mlstm.memory", 0)
    assert dv.bar_source.data["change"].max() > 0  # against the unedited baseline
    acc_edited = s.accuracy
    button_ = [w for w in dv.__panel__().select(__import__("panel").widgets.Button)
               if w.label == "Use current run as baseline"][0]
    button_.clicks += 1
    assert s.baseline is s.trace and s.baseline_accuracy == acc_edited and s.baseline_edits == 1
    assert dv.bar_source.data["change"].max() == 0 and "changed at **0 /" in dv._summary.object
    s.edit_connection("cell", 0, "blocks.0.mlstm.v", "blocks.0.mlstm.memory", 1)  # undo the edit
    assert dv.bar_source.data["change"].max() > 0  # now measured against the edited run
    assert f"recall accuracy **{acc_edited:.3f} -> {s.accuracy:.3f}**" in dv._summary.object
    s.close()


def test_the_diff_views_kl_is_kl_of_before_against_after_on_real_runs(cache):
    app = new_app()
    s, dv = app.session, app.diff_view
    s.edit_connection("cell", 1, "blocks.1.mlstm.q", "blocks.1.mlstm.memory", -1)
    lb = np.asarray(s.baseline.logits[0], dtype=np.float64)
    la = np.asarray(s.trace.logits[0], dtype=np.float64)
    lb, la = lb - np.log(np.exp(lb).sum(-1, keepdims=True)), la - np.log(np.exp(la).sum(-1, keepdims=True))
    forward = np.sum(np.exp(lb) * (lb - la), axis=-1)  # KL(before || after)
    backward = np.sum(np.exp(la) * (la - lb), axis=-1)
    shown = np.asarray(dv.logit_source.data["kl"])
    scale = np.abs(forward).max()
    assert scale > 1e-3 and np.abs(forward - backward).max() > 1e-2 * scale  # the direction matters here
    np.testing.assert_allclose(shown, forward, rtol=1e-9, atol=1e-12 * scale)
    assert "KL(before || after)" in dv.kl_figure.title.text
    s.close()
