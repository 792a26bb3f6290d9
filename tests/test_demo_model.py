"""The bundled demo checkpoint ships with the package, runs through the public API and has learned MQAR recall."""

import json

import mlx.core as mx
import numpy as np
import pytest

import xlstm_viz
from xlstm_viz.demo import DEMO_RECIPE, demo_path
from xlstm_viz.tasks import recall_accuracy
from xlstm_viz.training import Curriculum

pytestmark = pytest.mark.numerical


def test_demo_folder_ships_checkpoint_task_and_training_log_within_a_few_megabytes():
    folder = demo_path()
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "task.json", "training_log.csv", "training.json"} <= names
    assert sum(p.stat().st_size for p in folder.iterdir()) < 4 * 2**20


def _recall(model, num_pairs: int, num_queries: int, seed: int, samples: int = 256) -> float:
    rng = np.random.default_rng(seed)  # fresh sequences: training drew from seed 0, its evaluation from 1000
    ids, targets, mask = model.task.sample(rng, num_pairs, num_queries, batch_size=samples,
                                           pad_to_multiple=model.config.chunk_size)
    logits, _ = model(mx.array(ids))
    return recall_accuracy(np.array(logits), targets, mask)


def test_demo_model_recalls_at_least_95_percent_with_more_pairs_than_it_trained_on_most():
    model = xlstm_viz.load_demo()
    assert model.config.vocab_size == len(model.task.labels)
    assert model.task.decode([1])[0] == "?"
    curriculum = Curriculum(**DEMO_RECIPE["curriculum"])
    num_pairs = 2 * curriculum.most_frequent  # 16 pairs; training saw 8 pairs most often
    accuracy = _recall(model, num_pairs, curriculum.num_queries(num_pairs), seed=4242)
    assert accuracy >= 0.95, accuracy


def test_demo_model_recall_breaks_when_its_memory_is_ablated():
    # The recall lives in the matrix memory: cutting the memory cell's output in the second block must destroy it,
    # which a model answering from anything else would survive.
    model = xlstm_viz.load_demo()
    wiring = model.cell_wirings[1]
    wiring.set_enabled("blocks.1.mlstm.memory", "blocks.1.mlstm.norm", False)
    try:
        ablated = _recall(model, 16, 8, seed=7)
    finally:
        wiring.undo()
    assert ablated < 0.2, ablated
    assert _recall(model, 16, 8, seed=7) >= 0.95


def test_training_log_and_summary_record_the_real_run():
    folder = demo_path()
    log = np.genfromtxt(folder / "training_log.csv", delimiter=",", names=True)
    assert log["step"][-1] == DEMO_RECIPE["steps"]
    assert log["loss"][-20:].mean() < 0.1 * log["loss"][:20].mean()
    summary = json.loads((folder / "training.json").read_text())
    assert summary["seed"] == DEMO_RECIPE["seed"] and summary["batch_size"] == DEMO_RECIPE["batch_size"]
    assert summary["eval_accuracy_by_pairs"]["16"] >= 0.95
