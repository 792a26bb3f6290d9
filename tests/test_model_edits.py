"""One edit path: the wirings' own histories, ordered by an edit log; redo; the exported file; apply_edits."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

import xlstm_viz
from xlstm_viz.model_edits import EditLog


@pytest.fixture(scope="module")
def base():
    return xlstm_viz.load_demo()


def logits(model):
    ids = mx.array(np.arange(1, 17, dtype=np.int32)[None])
    return np.array(model(ids)[0])


def test_redo_reapplies_an_undone_edit_and_a_new_edit_clears_it(base):
    w = base.shared_view().block_wiring
    w.set_enabled("blocks.0", "blocks.1", False)
    w.undo()
    assert w.edge("blocks.0", "blocks.1").enabled and w.redoable == 1
    w.redo()
    assert not w.edge("blocks.0", "blocks.1").enabled and len(w.history) == 1
    w.undo()
    w.set_polarity("blocks.0", "blocks.1", -1)
    assert w.redoable == 0
    with pytest.raises(ValueError, match="only 0 were undone"):
        w.redo()


def test_an_exported_edits_file_applied_to_a_fresh_model_gives_the_same_outputs(base, tmp_path):
    edited = base.shared_view()
    log = EditLog(edited)
    log.record("toggle", lambda: edited.block_wiring.set_enabled("blocks.0", "blocks.1", False))
    log.record("flip", lambda: edited.cell_wirings[1].set_polarity("blocks.1.mlstm.v", "blocks.1.mlstm.memory", -1))
    path = tmp_path / "edits.json"
    path.write_text(json.dumps(log.to_doc()))
    fresh = base.shared_view()
    assert not np.allclose(logits(fresh), logits(edited))
    report = xlstm_viz.apply_edits(fresh, path)
    assert report.applied == ["toggle", "flip"] and report.refused == []
    np.testing.assert_array_equal(logits(fresh), logits(edited))
    fresh.cell_wirings[1].undo()  # the edits joined the wirings' own histories
    fresh.block_wiring.undo()
    np.testing.assert_array_equal(logits(fresh), logits(base))


def test_apply_edits_refuses_an_action_whose_before_values_do_not_match_and_applies_the_rest(base):
    a = base.shared_view()
    log = EditLog(a)
    log.record("off", lambda: a.block_wiring.set_enabled("blocks.0", "blocks.1", False))
    log.record("flip", lambda: a.cell_wirings[0].set_polarity("blocks.0.mlstm.v", "blocks.0.mlstm.memory", -1))
    doc = log.to_doc()
    target = base.shared_view()
    target.block_wiring.set_enabled("blocks.0", "blocks.1", False)  # already off: "off" no longer finds "on"
    report = xlstm_viz.apply_edits(target, doc)
    assert report.applied == ["flip"] and len(report.refused) == 1
    assert report.refused[0].startswith("action 0 (off)") and "expected" in report.refused[0]
    with pytest.raises(ValueError, match='"format": "xlstm-viz-edits"'):
        xlstm_viz.apply_edits(target, {"edits": []})


def test_the_log_undoes_redoes_and_resets_whole_actions_across_wirings(base):
    m = base.shared_view()
    log = EditLog(m)
    ref = logits(m)

    def both():
        m.block_wiring.set_enabled("blocks.0", "blocks.1", False)
        m.cell_wirings[1].set_polarity("blocks.1.mlstm.v", "blocks.1.mlstm.memory", -1)

    log.record("both", both)
    edited = logits(m)
    log.undo()
    np.testing.assert_array_equal(logits(m), ref)
    log.redo()
    np.testing.assert_array_equal(logits(m), edited)
    log.record("more", lambda: m.cell_wirings[0].set_enabled("blocks.0.mlstm.v", "blocks.0.mlstm.memory", False))
    assert log.reset() == 2
    np.testing.assert_array_equal(logits(m), ref)
    assert m.block_wiring.history == () and all(w.history == () for w in m.cell_wirings)


def test_a_failing_action_is_rolled_back_whole(base):
    m = base.shared_view()
    log = EditLog(m)

    def half():
        m.block_wiring.set_enabled("blocks.0", "blocks.1", False)
        raise ValueError("second step refused")

    with pytest.raises(ValueError, match="second step"):
        log.record("half", half)
    assert m.block_wiring.edge("blocks.0", "blocks.1").enabled and log.actions == []


def test_a_config_field_assigned_on_a_shared_view_changes_that_view_only(base):
    """The forward reads its numbers (soft caps, eps, chunk_size) from model.config, and a field may be assigned
    between calls; a shared_view used to share the config object, so one dashboard session's assignment changed the
    model and every other session. The view's forward follows its own config, the others keep theirs."""
    a, b = base.shared_view(), base.shared_view()
    before = logits(base)
    a.config.gate_soft_cap = 0.5
    assert base.config.gate_soft_cap != 0.5 and b.config.gate_soft_cap != 0.5
    np.testing.assert_array_equal(logits(base), before)
    np.testing.assert_array_equal(logits(b), before)
    assert not np.allclose(logits(a), before)
