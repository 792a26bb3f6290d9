"""The MQAR training path: a few dozen steps of a tiny xLSTM lower the loss, and the outputs load back."""

import csv
import json

import numpy as np
import pytest

from xlstm_viz.tasks import MQARTask
from xlstm_viz.training import LOG_FIELDS, Curriculum


def test_curriculum_ramp_starts_with_the_smallest_pair_count_and_reaches_all():
    cur = Curriculum(pair_counts=(2, 4, 8), weights=(0.2, 0.3, 0.5), ramp_steps=100)
    rng = np.random.default_rng(0)
    assert {cur.num_pairs(0, rng) for _ in range(50)} == {2}
    late = [cur.num_pairs(1000, rng) for _ in range(2000)]
    assert set(late) == {2, 4, 8}
    assert cur.most_frequent == 8
    assert abs(late.count(8) / len(late) - 0.5) < 0.05


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"pair_counts": (2, 4), "weights": (1.0,)}, "weights has 1 entries but pair_counts has 2"),
        ({"pair_counts": (), "weights": ()}, "empty"),
        ({"pair_counts": (0,), "weights": (1.0,)}, "pair_counts must be >= 1"),
        ({"pair_counts": (2,), "weights": (-1.0,)}, "weights must be >= 0"),
        ({"pair_counts": (2,), "weights": (1.0,), "ramp_steps": -1}, "ramp_steps"),
    ],
)
def test_bad_curriculum_is_named_in_the_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Curriculum(**kwargs)


TINY = {"embedding_dim": 32, "num_heads": 2, "num_blocks": 1, "vocab_size": 18, "chunk_size": 8,
        "pad_token_id": 0, "bos_token_id": None, "eos_token_id": None}


def test_a_few_dozen_steps_lower_the_loss_and_the_checkpoint_loads_back(tmp_path):
    import xlstm_viz
    from xlstm_viz.training import train

    import mlx.core as mx

    task = MQARTask(num_keys=8, num_values=8)
    result = train(TINY, task, steps=40, batch_size=16, lr=1e-2, seed=0, log_every=1, progress=False,
                   curriculum=Curriculum(pair_counts=(2, 3), weights=(0.5, 0.5)), out_dir=tmp_path,
                   warmup_steps=4)
    losses = [row["loss"] for row in result.log]
    assert len(losses) == 40
    # Chance level is log(num_values) ~ 2.08 once the model predicts "some value"; it must get clearly below.
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3, losses

    with open(tmp_path / "training_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == LOG_FIELDS and len(rows) == 40
    assert float(rows[-1]["loss"]) == pytest.approx(losses[-1])
    assert MQARTask.load(tmp_path / "task.json") == task
    summary = json.loads((tmp_path / "training.json").read_text())
    assert summary["steps"] == 40 and summary["train_seconds"] > 0

    loaded = xlstm_viz.load_model(tmp_path)
    ids, _, _ = task.sample(np.random.default_rng(5), num_pairs=3, batch_size=2, pad_to_multiple=8)
    want, _ = result.model(mx.array(ids))
    got, _ = loaded(mx.array(ids))
    np.testing.assert_allclose(np.array(got), np.array(want), atol=1e-5)


def test_vocabulary_too_small_for_the_task_is_named_in_the_error(tmp_path):
    from xlstm_viz.training import train

    with pytest.raises(ValueError, match="vocab_size=18 is smaller than the task vocabulary"):
        train(TINY, MQARTask(num_keys=16, num_values=16), steps=1, progress=False)


def test_previous_key_scaffold_is_trained_only_while_switched_on(tmp_path):
    from xlstm_viz.training import train

    task = MQARTask(num_keys=8, num_values=8)
    common = dict(steps=30, batch_size=16, lr=1e-2, seed=0, log_every=1, progress=False, warmup_steps=3,
                  curriculum=Curriculum(pair_counts=(3,), weights=(1.0,)))
    on = train(TINY, task, previous_key_weight=1.0, **common).log
    off = train(TINY, task, previous_key_weight=0.0, **common).log
    # With the scaffold on, the model learns to name the key before each value; off, that loss stays near chance.
    assert on[-1]["previous_key_loss"] < 0.5 * off[-1]["previous_key_loss"], (on[-1], off[-1])
    with pytest.raises(ValueError, match="previous_key_weight must be a finite number >= 0, got -1"):
        train(TINY, task, previous_key_weight=-1, **common)
