"""The MQAR generator: layout, determinism, label round trips and argument errors."""

import numpy as np
import pytest

from xlstm_viz.tasks import MQARTask, recall_accuracy


def _pairs(task, row, num_pairs):
    labels = task.decode(row)
    return labels[0 : 2 * num_pairs : 2], labels[1 : 2 * num_pairs : 2]


def test_same_seed_gives_same_batch_and_other_seed_differs():
    task = MQARTask(num_keys=32, num_values=32)
    a = task.sample(np.random.default_rng(7), num_pairs=8, batch_size=16)
    b = task.sample(np.random.default_rng(7), num_pairs=8, batch_size=16)
    c = task.sample(np.random.default_rng(8), num_pairs=8, batch_size=16)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.input_ids, c.input_ids)


@pytest.mark.parametrize("num_pairs,num_queries", [(1, 1), (5, 3), (16, 16), (32, 7)])
def test_every_query_key_appears_in_the_context_with_its_value(num_pairs, num_queries):
    task = MQARTask(num_keys=32, num_values=8)
    batch = task.sample(np.random.default_rng(0), num_pairs, num_queries, batch_size=50)
    assert batch.input_ids.shape == (50, task.seq_len(num_pairs, num_queries))
    for row, tgt, mask in zip(*batch):
        keys, values = _pairs(task, row, num_pairs)
        assert all(k.startswith("K") for k in keys) and all(v.startswith("V") for v in values)
        assert len(set(keys)) == num_pairs  # one value per key
        memory = dict(zip(keys, values))
        scored = np.flatnonzero(mask)
        assert len(scored) == num_queries
        labels = task.decode(row)
        queried = []
        for pos in scored:
            assert labels[pos - 1] == "?"
            key, want = labels[pos], task.decode([tgt[pos]])[0]
            assert memory[key] == want
            assert labels[pos + 1] == want  # teacher-forced value follows the key
            queried.append(key)
        assert len(set(queried)) == num_queries


def test_padding_to_chunk_multiple_is_masked():
    task = MQARTask(num_keys=16, num_values=16)
    batch = task.sample(np.random.default_rng(1), num_pairs=5, num_queries=2, batch_size=3, pad_to_multiple=16)
    length = task.seq_len(5, 2)
    assert batch.input_ids.shape == (3, 16)
    assert (batch.input_ids[:, length:] == task.pad_id).all()
    assert not batch.loss_mask[:, length:].any()


def test_labels_round_trip_through_encode_and_decode():
    task = MQARTask(num_keys=12, num_values=5)
    assert len(task.labels) == task.vocab_size == 2 + 12 + 5
    assert len(set(task.labels)) == task.vocab_size
    ids = np.arange(task.vocab_size)
    np.testing.assert_array_equal(task.encode(task.decode(ids)), ids)
    np.testing.assert_array_equal(task.encode("K3 V4 ? K3 V4"), task.encode(["K3", "V4", "?", "K3", "V4"]))
    row = task.sample(np.random.default_rng(3), num_pairs=6)[0][0]
    np.testing.assert_array_equal(task.encode(task.decode(row)), row)


def test_task_description_round_trips_through_json(tmp_path):
    task = MQARTask(num_keys=20, num_values=9)
    assert MQARTask.load(task.save(tmp_path / "task.json")) == task
    with pytest.raises(ValueError, match="labels"):
        MQARTask.from_dict({**task.to_dict(), "num_values": 10})
    with pytest.raises(ValueError, match="task="):
        MQARTask.from_dict({"task": "copy", "num_keys": 3, "num_values": 3})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_pairs": 17}, "num_pairs=17 exceeds num_keys=16"),
        ({"num_pairs": 0}, "num_pairs must be"),
        ({"num_pairs": 4, "num_queries": 5}, "num_queries=5 exceeds num_pairs=4"),
        ({"num_pairs": 4, "num_queries": 0}, "num_queries must be"),
        ({"num_pairs": 4, "batch_size": 0}, "batch_size must be"),
        ({"num_pairs": 4, "pad_to_multiple": 0}, "pad_to_multiple must be"),
        ({"num_pairs": 2.5}, "num_pairs must be an int"),
    ],
)
def test_bad_sample_arguments_are_named_in_the_error(kwargs, match):
    task = MQARTask(num_keys=16, num_values=16)
    with pytest.raises((ValueError, TypeError), match=match):
        task.sample(np.random.default_rng(0), **kwargs)


def test_bad_vocabulary_and_labels_are_named_in_the_error():
    with pytest.raises(ValueError, match="num_keys"):
        MQARTask(num_keys=0)
    task = MQARTask(num_keys=4, num_values=4)
    with pytest.raises(ValueError, match="'K9'"):
        task.encode(["K1", "K9"])
    with pytest.raises(ValueError, match="token id 10 at position 1"):
        task.decode([2, 10])
    with pytest.raises(TypeError, match="rng"):
        task.sample(42, num_pairs=2)


def test_recall_accuracy_scores_only_masked_positions():
    task = MQARTask(num_keys=8, num_values=8)
    ids, targets, mask = task.sample(np.random.default_rng(2), num_pairs=4, batch_size=2)
    perfect = np.where(mask, targets, task.pad_id)
    assert recall_accuracy(perfect, targets, mask) == 1.0
    # Wrong everywhere except the scored positions still counts as perfect recall.
    assert recall_accuracy(np.where(mask, targets, task.query_id), targets, mask) == 1.0
    half = perfect.copy()
    scored = np.argwhere(mask)
    for r, c in scored[::2]:
        half[r, c] = task.pad_id
    assert recall_accuracy(half, targets, mask) == pytest.approx(1 - len(scored[::2]) / len(scored))
    logits = np.eye(task.vocab_size)[perfect]  # one-hot logits
    assert recall_accuracy(logits, targets, mask) == 1.0
    with pytest.raises(ValueError, match="no position"):
        recall_accuracy(perfect, targets, np.zeros_like(mask))


def test_previous_key_targets_mark_each_context_value_with_the_key_before_it():
    task = MQARTask(num_keys=8, num_values=8)
    batch = task.sample(np.random.default_rng(3), num_pairs=3, num_queries=2, batch_size=2)
    targets, mask = task.previous_key_targets(batch.input_ids, num_pairs=3)
    labels = task.decode(batch.input_ids[0])
    marked = [i for i in range(len(labels)) if mask[0, i]]
    assert marked == [1, 3, 5]  # the three context values, never a query
    assert all(labels[i].startswith("V") and task.decode([targets[0, i]])[0] == labels[i - 1] for i in marked)
    with pytest.raises(ValueError, match="num_pairs=9 needs 18 context tokens"):
        task.previous_key_targets(batch.input_ids, num_pairs=9)
