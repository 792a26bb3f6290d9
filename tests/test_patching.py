"""Activation patching, per-head / per-position interventions and the task score over many sequences, on the demo
model through the public API (model(...), run_with_trace, model.interventions)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from tests.tolerances import assert_close_to_scale


@pytest.fixture(scope="module")
def model():
    import xlstm_viz as xv

    return xv.load_demo()


@pytest.fixture(autouse=True)
def no_interventions_left(model):
    yield
    model.interventions.clear()


@pytest.fixture(scope="module")
def prompts(model):
    from xlstm_viz.execution.patching import corrupt_mqar

    batch = model.task.sample(np.random.default_rng(4), 8)
    clean = batch.input_ids[0]
    corrupted, pos = corrupt_mqar(model.task, clean, batch.loss_mask[0], query=0)
    return clean, corrupted, pos


def logits_of(model, ids):
    return np.array(model(mx.array(np.asarray(ids)[None].astype(np.int32)))[0])[0]


def test_corrupting_an_mqar_value_moves_the_recall_at_its_query(model, prompts):
    from xlstm_viz.execution.patching import Patcher

    clean, corrupted, pos = prompts
    changed = np.flatnonzero(clean != corrupted)
    assert len(changed) == 2 and all(clean[c - 1] == clean[pos] for c in changed)  # context value and query value
    p = Patcher(model, clean, corrupted)
    assert p.answer[pos] == clean[pos + 1] and p.wrong[pos] == corrupted[pos + 1]  # the demo recalls both
    assert p.most_affected_position() == pos


def test_patching_the_last_block_output_everywhere_gives_back_the_clean_logits(model, prompts):
    from xlstm_viz.execution.patching import Patcher

    clean, corrupted, pos = prompts
    last = f"blocks.{model.config.num_blocks - 1}.out"
    r = Patcher(model, clean, corrupted).patch(last)
    assert_close_to_scale(r.logits["patched"], logits_of(model, clean), 64, "denoised logits")
    assert r.recovered[pos] == pytest.approx(1.0, abs=1e-4)
    assert r.kl["patched"].max() < 1e-5 < r.kl["corrupted"][pos]
    noised = Patcher(model, clean, corrupted).patch(last, direction="noise")
    assert_close_to_scale(noised.logits["patched"], logits_of(model, corrupted), 64, "noised logits")
    assert noised.recovered[pos] == pytest.approx(0.0, abs=1e-4)


def test_a_patch_at_one_position_changes_only_that_position_after_the_last_block(model, prompts):
    from xlstm_viz.execution.patching import Patcher

    clean, corrupted, pos = prompts
    r = Patcher(model, clean, corrupted).patch(f"blocks.{model.config.num_blocks - 1}.out", positions=[pos])
    want = logits_of(model, corrupted)
    want[pos] = logits_of(model, clean)[pos]
    assert_close_to_scale(r.logits["patched"], want, 64, "one-position patch")
    assert r.positions == (pos,)


def test_a_head_patch_copies_that_heads_features_and_keeps_the_others(model, prompts):
    clean, corrupted, _ = prompts
    probe, NH = "blocks.0.mlstm.memory", model.config.num_heads
    src = model.run_with_trace(mx.array(clean[None]), probes=[probe], mode="full")
    model.interventions.add(probe, "patch", source_trace=src, heads=[2])
    got = model.run_with_trace(mx.array(corrupted[None]), probes=[probe], mode="full").full[probe]
    model.interventions.clear()
    plain = model.run_with_trace(mx.array(corrupted[None]), probes=[probe], mode="full").full[probe]
    per = got.shape[-1] // NH
    heads = lambda a: a.reshape(*a.shape[:-1], NH, per)  # noqa: E731
    np.testing.assert_array_equal(heads(got)[..., 2, :], heads(src.full[probe])[..., 2, :])
    np.testing.assert_array_equal(heads(got)[..., [0, 1, 3], :], heads(plain)[..., [0, 1, 3], :])
    assert not np.array_equal(heads(got)[..., 2, :], heads(plain)[..., 2, :])


def test_per_head_and_per_position_ablations_zero_only_what_they_name(model, prompts):
    clean = prompts[0]
    NH = model.config.num_heads
    h = model.interventions.add("blocks.1.mlstm.h", "zero", heads=[1], tokens=[3, 5])
    assert h.describe() == "#%d zero blocks.1.mlstm.h heads [1] at tokens [3, 5]" % h.id
    got = model.run_with_trace(mx.array(clean[None]), probes=["blocks.1.mlstm.h"], mode="full").full["blocks.1.mlstm.h"]
    g = got[0].reshape(len(clean), NH, -1)
    assert np.all(g[[3, 5], 1] == 0)
    assert np.all(np.abs(g[[3, 5]][:, [0, 2, 3]]).max(-1) > 0) and np.all(np.abs(g[:3, 1]).max(-1) > 0)
    model.interventions.clear()
    model.interventions.add("blocks.0.mlstm.igate", "zero", heads=[0])  # a gate: one feature per head
    gate = model.run_with_trace(mx.array(clean[None]), probes=["blocks.0.mlstm.igate"], mode="full")
    assert np.all(gate.full["blocks.0.mlstm.igate"][..., 0] == 0) and np.all(gate.full["blocks.0.mlstm.igate"][..., 1] != 0)


def test_bad_heads_positions_and_prompts_are_refused_with_their_names(model, prompts):
    from xlstm_viz.execution.patching import Patcher

    clean, corrupted, _ = prompts
    with pytest.raises(ValueError, match=r"head 4 does not exist .*heads 0\.\.3"):
        model.interventions.add("blocks.0.mlstm.memory", "zero", heads=[4])
    with pytest.raises(ValueError, match=r"'blocks.0.in' has no heads"):
        model.interventions.add("blocks.0.in", "zero", heads=[0])
    with pytest.raises(ValueError, match="head indices"):
        model.interventions.add("blocks.0.mlstm.q", "zero", heads=[-1])
    assert len(model.interventions) == 0
    model.interventions.add("blocks.0.mlstm.q", "zero", tokens=[len(clean)])
    with pytest.raises(ValueError, match=rf"token {len(clean)} is outside the sequence \(positions 0\.\.{len(clean) - 1}\)"):
        model(mx.array(clean[None]))
    model.interventions.clear()
    p = Patcher(model, clean, corrupted)
    with pytest.raises(ValueError, match=rf"position {len(clean)} is outside the prompt"):
        p.patch("blocks.0.out", positions=[len(clean)])
    with pytest.raises(ValueError, match=r"clean 40 tokens, corrupted 39 tokens"):
        Patcher(model, clean, corrupted[:-1])
    with pytest.raises(KeyError, match="no probe matches 'blocks.0.mlstm.memroy'"):
        p.patch("blocks.0.mlstm.memroy")
    assert len(model.interventions) == 0  # a refused patch leaves nothing behind


def test_logit_difference_and_kl_follow_their_definitions():
    from xlstm_viz.execution.patching import kl_per_position, logit_difference

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(5, 7)) * 3
    pa = np.exp(a) / np.exp(a).sum(-1, keepdims=True)
    pb = np.exp(b) / np.exp(b).sum(-1, keepdims=True)
    np.testing.assert_allclose(kl_per_position(a, b), (pa * np.log(pa / pb)).sum(-1), rtol=1e-10)
    assert np.all(kl_per_position(a, a) == 0)
    ans, wrong = np.array([0, 1, 2, 3, 4]), np.array([6, 5, 4, 3, 2])
    np.testing.assert_array_equal(logit_difference(a, ans, wrong), a[np.arange(5), ans] - a[np.arange(5), wrong])


def test_a_position_sweep_finds_where_the_corrupted_value_enters(model, prompts):
    from xlstm_viz.execution.patching import Patcher

    clean, corrupted, pos = prompts
    sweep = Patcher(model, clean, corrupted).sweep("blocks.0.in", over="position")
    row = sweep.values[0]
    assert sweep.at == pos and np.isnan(row[pos + 1:]).all()
    changed = np.flatnonzero(clean != corrupted)
    # the embedding at positions whose token is the same in both prompts carries nothing of the corruption
    same = [t for t in range(pos + 1) if t not in changed]
    np.testing.assert_allclose(row[same], 0.0, atol=1e-4)
    assert row[changed[0]] > 0.5  # the context value the query recalls


# -- results over many sequences -------------------------------------------------------------------------------
def test_task_score_matches_the_training_evaluation_and_its_interval_narrows_with_n(model):
    from xlstm_viz.tasks.scoring import task_score
    from xlstm_viz.training import evaluate

    # 32 pairs: past the demo's training lengths, so recall varies between sequences (at 8 pairs it is ~1 everywhere)
    s = task_score(model, n=256, num_pairs=32, seed=3, num_queries=16, batch_size=128)
    assert s.mean == pytest.approx(evaluate(model, model.task, 32, 256, seed=3, num_queries=16, batch_size=128))
    assert s.low < s.mean < s.high and len(s.per_sequence) == 256
    small = task_score(model, n=64, num_pairs=32, seed=3, num_queries=16, batch_size=128)
    ratio = (small.high - small.low) / (s.high - s.low)
    assert 1.4 < ratio < 2.9, ratio  # ~ sqrt(256 / 64) = 2
    assert "256 sequences of 32 pairs, seed 3" in str(s)


def test_ablating_the_memory_lowers_the_score_beyond_its_paired_interval(model):
    from xlstm_viz.tasks.scoring import score_difference, task_score

    before = task_score(model, n=128, num_pairs=8, seed=1)
    model.interventions.add("blocks.*.mlstm.memory", "zero")
    after = task_score(model, n=128, num_pairs=8, seed=1)
    mean, low, high = score_difference(before, after)
    assert high < 0 and mean == pytest.approx(after.mean - before.mean)
    with pytest.raises(ValueError, match="same sequences"):
        score_difference(before, task_score(model, n=128, num_pairs=8, seed=2))
    with pytest.raises(ValueError, match=r"n must be an integer in \[1, 4096\], got 0"):
        task_score(model, n=0)
