"""What a reload restores, what a model edit does to the debugger, and what 'Regenerate mask' keeps."""

from __future__ import annotations

import numpy as np
import pytest

from xlstm_viz.dashboard import wiring_tables
from xlstm_viz.dashboard.wiring_view import WiringView, build_wiring


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    import xlstm_viz.blas  # noqa: F401


def new_app(key):
    from xlstm_viz.dashboard.app import DashboardApp

    return DashboardApp(session_key=key, threaded=False)  # its own demo model: edits never leak between apps


def test_a_reload_restores_the_example_its_accuracy_and_the_unedited_baseline(cache):
    a = new_app("reload1")
    a.param.update(pairs=5, example_seed=3)
    a._example()
    assert a.session.accuracy == 1.0
    base_logits = a.session.baseline.logits.copy()
    a.session.edit_connection("block", None, "blocks.0", "blocks.1", 0)
    a.session.edit_connection("cell", 1, "blocks.1.mlstm.v", "blocks.1.mlstm.memory", -1)
    acc_edited = a.session.accuracy
    assert acc_edited < 1.0
    edited_logits = a.session.trace.logits.copy()
    a.session.close()

    b = new_app("reload1")
    s = b.session
    assert (b.pairs, b.example_seed) == (5, 3) and s.example == (5, 3)
    assert s.edits == a.session.edits
    assert s.accuracy == acc_edited  # it came back as None when the prompt was restored as text
    assert s.baseline_accuracy == 1.0 and s.baseline_edits == 0
    np.testing.assert_allclose(s.baseline.logits, base_logits, rtol=1e-5, atol=1e-5 * np.abs(base_logits).max())
    np.testing.assert_allclose(s.trace.logits, edited_logits, rtol=1e-5, atol=1e-5 * np.abs(edited_logits).max())
    b.session.close()


def test_a_baseline_set_after_an_edit_comes_back_with_that_edit(cache):
    a = new_app("reload2")
    a.session.edit_connection("block", None, "blocks.0", "blocks.1", 0)
    a.session.set_baseline()
    acc = a.session.accuracy
    a.session.edit_connection("block", None, "blocks.0", "blocks.1", 1)
    a.session.close()
    b = new_app("reload2")
    assert b.session.baseline_edits == 1 and b.session.baseline_accuracy == acc
    assert b.session.accuracy == 1.0
    b.session.close()


def test_a_model_edit_restarts_the_debugger_and_keeps_its_breakpoints(cache):
    a = new_app("dbg")
    s = a.session
    s.debug("add_breakpoint", probe="blocks.1.mlstm.memory")
    s.debug("continue")
    assert s.step_event is not None and s.step_event.name == "blocks.1.mlstm.memory"
    s.edit_connection("cell", 0, "blocks.0.mlstm.igate", "blocks.0.mlstm.memory", -1)
    assert s.step_event is None  # the old stop point is stale
    assert s.debugger_state["stop_reason"].startswith("restarted: cell wiring of block 0")
    assert [d for _, d, _ in s.debugger_state["breakpoints"]] == ["#1 blocks.1.mlstm.memory"]
    a.debugger_view._from_session()
    assert a.debugger_view._status.alert_type == "warning" and "starts again" in a.debugger_view._status.object
    s.debug("step")
    assert s.step_event.index == 0  # from the first cell again, on the edited model
    s.debug("continue")
    assert s.step_event.name == "blocks.1.mlstm.memory"
    s.set_prompt("K3 V7 ? K3")  # a new prompt: fresh debugger, same breakpoints
    assert s.step_event is None
    s.debug("continue")
    assert s.step_event.name == "blocks.1.mlstm.memory"
    s.close()


ALLOWED = {("inter", "command"), ("command", "command"), ("command", "motor")}


def layering_violations(w) -> list:
    roles = wiring_tables.neuron_roles(w)
    src, dst = np.nonzero(w.adjacency_matrix)
    bad = [(int(a), int(b), roles[a], roles[b]) for a, b in zip(src, dst) if (roles[a], roles[b]) not in ALLOWED]
    sensory_to = {roles[b] for b in np.nonzero(w.sensory_adjacency_matrix)[1]}
    return bad + ([("sensory", sorted(sensory_to))] if sensory_to - {"inter"} else [])


@pytest.mark.parametrize("kind", ["AutoNCP", "NCP"])
def test_regenerating_an_ncp_mask_keeps_the_ncp_layering_and_says_so(kind):
    view = WiringView(build_wiring(kind, 28, 4, 6, seed=1))
    assert layering_violations(view.wiring) == []
    for level, seed in ((0.3, 5), (0.7, 11)):
        view.param.update(sparsity=level, seed=seed)
        view.apply_sparsity()
        assert layering_violations(view.wiring) == []
        assert type(view.wiring).__name__ == kind and f"**{kind}**" in view._counts.object
        assert "NCP layering" in view.last_edit
    view.undo()
    view.undo()
    assert layering_violations(view.wiring) == [] and view.last_edit == "undid the last rebuild"


def test_masking_a_fully_connected_wiring_says_it_is_no_longer_fully_connected():
    view = WiringView(build_wiring("FullyConnected", 12, 3, 4, seed=1))
    view.param.update(sparsity=0.5, seed=2)
    view.apply_sparsity()
    assert int((view.wiring.adjacency_matrix == 0).sum()) > 0
    assert view._counts.object.startswith("**Random** (was FullyConnected, re-masked)")
    assert "no longer fully connected" in view.last_edit


def test_undone_edits_can_be_redone_after_a_reload_in_their_order(cache):
    a = new_app("reload_redo")
    a.session.edit_connection("block", None, "blocks.0", "blocks.1", 0)
    a.session.edit_connection("cell", 1, "blocks.1.mlstm.v", "blocks.1.mlstm.memory", -1)
    both = a.session.trace.logits.copy()
    a.session.undo()
    a.session.undo()
    fresh = a.session.trace.logits.copy()
    assert a.session.result.redoable == 2
    a.session.close()

    b = new_app("reload_redo")
    s = b.session
    assert s.result.redoable == 2 and s.result.undoable == 0 and not s.result.refused
    np.testing.assert_allclose(s.trace.logits, fresh, rtol=1e-5, atol=1e-5 * np.abs(fresh).max())
    s.redo()
    assert s.edits == [("block", None, "blocks.0", "blocks.1", 0)]  # redo order kept: the last undone comes back first
    s.redo()
    assert len(s.edits) == 2 and s.result.redoable == 0
    np.testing.assert_allclose(s.trace.logits, both, rtol=1e-5, atol=1e-5 * np.abs(both).max())
    b.session.close()

    c = new_app("reload_redo")  # and a redone state is what the next reload shows
    assert len(c.session.edits) == 2 and c.session.result.redoable == 0
    c.session.close()


def test_a_saved_redo_list_that_is_not_a_list_of_actions_is_refused_by_name(cache):
    from xlstm_viz.dashboard.persistence import check_session

    with pytest.raises(ValueError, match='"redo" must be a list of edit actions'):
        check_session({"redo": [1, 2]})


@pytest.mark.parametrize("kind", ["cfc", "ltc", "ncp_slstm", "ncp_mlstm"])
def test_a_synapse_edit_in_one_session_leaves_the_other_sessions_on_the_same_weights_unchanged(cache, monkeypatch,
                                                                                              kind):
    # Sessions of one server share the loaded weights (model.shared_view()); a neuron block's AutoNCP lives on its
    # modules, which the views shared: a synapse removed in one browser tab was removed in every tab.
    from pathlib import Path

    from tests.test_ncps_blocks import first_synapse, hybrid
    from xlstm_viz.dashboard import session as session_mod

    base = hybrid(blocks=(kind, "mlstm"))
    monkeypatch.setitem(session_mod._shared, str(Path("xv-shared-test-model").resolve()), base)
    a, b = (session_mod.ModelSession(model_path="xv-shared-test-model") for _ in range(2))
    try:
        assert a.model.blocks[0].wiring is not b.model.blocks[0].wiring
        for s in (a, b):
            s.set_prompt("1 2 3 4 5 6 7 8 9 10")
        logits = np.array(b.trace.logits)
        src, dst = first_synapse(base.blocks[0].wiring)
        new = 0 if kind in ("cfc",) else -int(base.blocks[0].wiring.adjacency_matrix[src, dst])
        a.edit_synapse(0, "neuron", src, dst, new)
        assert int(a.model.blocks[0].wiring.adjacency_matrix[src, dst]) == new
        assert np.abs(np.array(a.trace.logits) - logits).max() > 0  # the edit changed session a's run
        for other in (b.model, base):
            assert int(other.blocks[0].wiring.adjacency_matrix[src, dst]) != new
        b.run()
        assert np.array_equal(np.array(b.trace.logits), logits)  # and nothing of session b's
        a.undo()
        assert np.array_equal(np.array(a.trace.logits), logits)
    finally:
        a.close()
        b.close()


def test_the_live_ncps_task_score_names_no_edited_run_as_its_baseline_after_a_reload(cache):
    import numpy as np

    from xlstm_viz.dashboard.app import DashboardApp

    first = DashboardApp(model_path="hybrid", session_key="ncps-score", threaded=False)
    live = first.ncps_live
    unedited = live.score
    assert live.baseline_score == unedited
    w = first.session.model.blocks[0].wiring
    src, dst = (int(v) for v in np.argwhere(w.adjacency_matrix[:, : w.output_dim] != 0)[0])
    first.session.edit_synapse(0, "neuron", src, dst, 0)
    edited = live.score
    assert edited != unedited and live.baseline_score == unedited
    assert f"(baseline {unedited:.1%})" in live._score_pane.object
    first.close()
    again = DashboardApp(model_path="hybrid", session_key="ncps-score", threaded=False)  # the reload
    live = again.ncps_live
    assert again.session.edits == [("neuron", 0, "neuron", src, dst, 0)] and live.score == edited
    # the restored baseline run is the unedited one; the edited run's score must not stand in for its score
    assert live.baseline_score is None and f"(baseline {edited:.1%})" not in live._score_pane.object
    assert "baseline run was not scored" in live._score_pane.object
    again.session.set_baseline()  # the edited run is the baseline now: so is its score
    assert live.baseline_score == edited
    again.close()


def test_the_status_line_says_token_for_a_one_token_prompt_and_tokens_for_more(cache):
    a = new_app("status-plural")
    s = a.session
    s.set_prompt("3")
    assert s.status.startswith("ran 1 token in "), s.status
    s.set_prompt("3 4")
    assert s.status.startswith("ran 2 tokens in "), s.status
    a.session.close()
