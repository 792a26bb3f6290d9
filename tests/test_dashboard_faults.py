"""Session files and edits under faults: corrupt files, bad edits, reloads, two tabs, clean-up, thread reuse."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from xlstm_viz.dashboard.persistence import SessionFileError, SessionStore, cache_dir, prune, valid_key


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    import xlstm_viz.blas  # noqa: F401

    return cache_dir()


def new_app(key, threaded=False):
    from xlstm_viz.dashboard.app import DashboardApp

    return DashboardApp(session_key=key, threaded=threaded)


def saved(root, key) -> dict:
    return json.loads((root / f"{key}.json").read_text())


def test_a_key_with_a_trailing_newline_is_refused():
    assert valid_key("abc") and not valid_key("abc\n") and not valid_key("../x") and not valid_key("a" * 65)
    with pytest.raises(ValueError, match="must be 1-64"):
        SessionStore("abc\n")


CORRUPT = {
    "list": ("[1, 2]", "top level must be a JSON object"),
    "prompt": ('{"prompt": 123}', '"prompt" must be text'),
    "json": ('{"prompt": "K1', "not a session file"),
    "example": ('{"example": ["a", 1]}', '"example" must be'),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_a_corrupt_session_file_is_named_once_moved_aside_and_not_overwritten(cache, case):
    text, message = CORRUPT[case]
    cache.mkdir(parents=True)
    (cache / "bad.json").write_text(text)
    app = new_app("bad")
    assert any(message in n and "moved to" in n for n in app._notices), app._notices
    aside = [p for p in cache.iterdir() if p.name.startswith("bad.json.corrupt-")]
    assert len(aside) == 1 and aside[0].read_text() == text  # the original bytes, kept
    assert app.session.trace is not None  # the session started fresh and ran
    app.session.close()
    again = new_app("bad")
    assert again._notices == []  # said once: the next reload finds the fresh file
    again.session.close()


def test_a_saved_ncps_wiring_without_input_dim_is_refused_and_the_rest_comes_back(cache):
    a = new_app("ncps")
    a.session.edit_connection("block", None, "blocks.0", "blocks.1", 0)
    a.session.close()
    data = saved(cache, "ncps")
    wiring = json.loads(data["ncps_wiring"]) if data.get("ncps_wiring") else {"units": 4, "adjacency_matrix": []}
    wiring.pop("input_dim", None)
    wiring.pop("sensory_adjacency_matrix", None)
    data["ncps_wiring"] = json.dumps({"units": 4, "adjacency_matrix": [[0] * 4] * 4, "format": 1})
    (cache / "ncps.json").write_text(json.dumps(data))
    b = new_app("ncps")
    assert any("saved NCPS wiring refused" in n for n in b._notices), b._notices
    assert b.session.edits == [("block", None, "blocks.0", "blocks.1", 0)]
    b.session.close()


def test_one_bad_saved_edit_is_refused_by_name_and_the_good_ones_apply(cache):
    a = new_app("mixed")
    a.session.edit_connection("block", None, "blocks.0", "blocks.1", 0)
    a.session.edit_connection("cell", 1, "blocks.1.mlstm.v", "blocks.1.mlstm.memory", -1)
    a.session.close()
    data = saved(cache, "mixed")
    bad = json.loads(json.dumps(data["edits"][0]))
    bad["edits"][0]["changes"][0]["target"] = ["edge", "blocks.0", "blocks.9"]
    data["edits"].insert(1, bad)
    data["edits"].append(["cell", 7, "x", "y", 1])  # a format-1 tuple naming a block that does not exist
    (cache / "mixed.json").write_text(json.dumps(data))
    b = new_app("mixed")
    r = b.session.result
    assert b.session.edits == [("block", None, "blocks.0", "blocks.1", 0),
                               ("cell", 1, "blocks.1.mlstm.v", "blocks.1.mlstm.memory", -1)]
    assert len(r.refused) == 2, r.refused
    assert any("action 1" in x and "blocks.9" in x for x in r.refused), r.refused
    assert any("saved edit 3" in x and "block 7" in x for x in r.refused), r.refused
    b.session.close()


def test_ablations_and_breakpoints_are_saved_and_come_back(cache):
    a = new_app("abl")
    a.session.ablate("blocks.0.mlstm.igate")
    a.session.debug("add_breakpoint", probe="blocks.1.mlstm.memory", condition="absmax>0.5")
    logits = a.session.trace.logits.copy()
    a.session.close()
    b = new_app("abl")
    assert [x.split(" ", 1)[1] for x in b.session.ablations()] == ["zero blocks.0.mlstm.igate"]
    np.testing.assert_allclose(b.session.trace.logits, logits, rtol=1e-5, atol=1e-5 * np.abs(logits).max())
    b.session.debug("continue")
    assert [d for _, d, _ in b.session.debugger_state["breakpoints"]] == ["#1 blocks.1.mlstm.memory if absmax>0.5"]
    assert b.session.step_event.name == "blocks.1.mlstm.memory"
    b.session.close()


def test_a_per_head_per_position_ablation_comes_back_with_its_heads_and_positions(cache):
    a = new_app("abl_heads")
    a.session.ablate("blocks.0.mlstm.h", heads=[1], tokens=[2])
    logits = a.session.trace.logits.copy()
    a.session.close()
    b = new_app("abl_heads")
    assert [x.split(" ", 1)[1] for x in b.session.ablations()] == ["zero blocks.0.mlstm.h heads [1] at tokens [2]"]
    np.testing.assert_allclose(b.session.trace.logits, logits, rtol=1e-5, atol=1e-5 * np.abs(logits).max())
    b.session.close()


@pytest.mark.parametrize("reloads", [3])
def test_edits_survive_repeated_reloads_of_a_threaded_session(cache, reloads):
    a = new_app("reloads", threaded=True)
    a.session.edit_connection("block", None, "blocks.0", "blocks.1", 0).result(timeout=120)
    a.session.edit_connection("cell", 0, "blocks.0.mlstm.v", "blocks.0.mlstm.memory", -1).result(timeout=120)
    a.close()
    want = [("block", None, "blocks.0", "blocks.1", 0), ("cell", 0, "blocks.0.mlstm.v", "blocks.0.mlstm.memory", -1)]
    for _ in range(reloads):
        b = new_app("reloads", threaded=True)
        b.session.submit(lambda: None).result(timeout=120)  # after the restore command
        assert b.session.edits == want
        assert [a["key"] for a in saved(cache, "reloads")["edits"]] == [list(w) for w in want]
        b.close()


def test_saves_are_ordered_a_stale_revision_is_dropped(tmp_path):
    store = SessionStore("order", root=tmp_path)
    assert store.save({"prompt": "new"}, revision=2)
    assert not store.save({"prompt": "old"}, revision=1)
    assert json.loads(store.path.read_text())["prompt"] == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["order.json"]  # no temp file left behind


def test_the_same_key_in_two_tabs_keeps_both_tabs_edits(cache):
    first = new_app("shared")
    second = new_app("shared")
    assert second.store.key != "shared" and any("open in another tab" in n for n in second._notices)
    first.session.edit_connection("block", None, "blocks.0", "blocks.1", 0)
    second.session.edit_connection("cell", 1, "blocks.1.mlstm.v", "blocks.1.mlstm.memory", -1)
    assert [e["key"][0] for e in saved(cache, "shared")["edits"]] == ["block"]
    assert [e["key"][0] for e in saved(cache, second.store.key)["edits"]] == ["cell"]
    first.close(), second.close()
    third = new_app("shared")  # both tabs closed: the key is free again
    assert third.store.key == "shared" and third.session.edits == [("block", None, "blocks.0", "blocks.1", 0)]
    third.close()


def test_old_and_surplus_session_files_are_pruned(tmp_path):
    for i in range(6):
        p = tmp_path / f"k{i}.json"
        p.write_text("{}")
        os.utime(p, (time.time() - i * 3600, time.time() - i * 3600))  # k0 newest
    old = tmp_path / "old.json"
    old.write_text("{}")
    os.utime(old, (time.time() - 40 * 86400,) * 2)
    (tmp_path / "notes.txt").write_text("not a session")
    gone = prune(tmp_path, max_age_days=30, max_files=4)
    assert sorted(p.name for p in gone) == ["k4.json", "k5.json", "old.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k0.json", "k1.json", "k2.json", "k3.json", "notes.txt"]


def test_closed_sessions_hand_their_model_thread_to_the_next_one(cache):
    from xlstm_viz.dashboard.session import ModelSession

    def tasks():
        return len(os.listdir("/proc/self/task"))

    s = ModelSession(threaded=True)
    s.mqar_example(4, 0).result(timeout=120)
    s.close()
    time.sleep(0.3)
    before = tasks()
    for _ in range(10):
        s = ModelSession(threaded=True)
        s.mqar_example(4, 0).result(timeout=120)
        s.close()
        time.sleep(0.05)
    time.sleep(0.3)
    assert tasks() - before <= 2, (before, tasks())  # was +1 native thread (MLX's stream thread) per session


def test_a_model_thread_job_that_fails_reports_its_error_and_resolves_its_future(cache):
    # session.submit runs the Patching tab's patch / sweep / score; its failure path read `exc` after the except
    # block when the page ran the callback later (NameError there), so the future never resolved, and it never
    # told the page: a failed patch showed no message at all.
    import queue

    import xlstm_viz as xv
    from xlstm_viz.dashboard.session import ModelSession

    seen, later = [], queue.Queue()
    s = ModelSession(model=xv.load_demo(), threaded=True, on_error=seen.append, dispatch=later.put)
    try:
        def work():
            raise KeyError("no probe matches 'blocks.7.nothing'")

        fut = s.submit(work)
        later.get(timeout=30)()  # what the page's next-tick callback runs, after the model thread's except block
        with pytest.raises(KeyError, match="blocks.7.nothing"):
            fut.result(timeout=1)
        assert len(seen) == 1 and isinstance(seen[0], KeyError) and "blocks.7.nothing" in str(seen[0])
        ok = s.submit(lambda: 42)  # the model thread keeps working
        later.get(timeout=30)()
        assert ok.result(timeout=1) == 42
    finally:
        s.close()
