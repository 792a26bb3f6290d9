"""The bundled hybrid model (an AutoNCP-wired CfC block + an mLSTM block) has learned MQAR, and needs its neurons."""

import json

import mlx.core as mx
import numpy as np
import pytest

import xlstm_viz
from xlstm_viz.demo import HYBRID_RECIPE, demo_path
from xlstm_viz.tasks import recall_accuracy
from xlstm_viz.training import Curriculum

pytestmark = pytest.mark.numerical
# the score the shipped checkpoint is tested at, on fresh data (its training.json has the evaluation at seed 1000)
MIN_RECALL = {8: 0.90}


@pytest.fixture(scope="module")
def model():
    return xlstm_viz.load_demo(name="hybrid")


def _recall(model, num_pairs: int, seed: int, samples: int = 256) -> float:
    curriculum = Curriculum(**HYBRID_RECIPE["curriculum"])
    rng = np.random.default_rng(seed)  # fresh sequences: training drew from seed 0, its evaluation from 1000
    ids, targets, mask = model.task.sample(rng, num_pairs, curriculum.num_queries(num_pairs), batch_size=samples,
                                           pad_to_multiple=model.config.chunk_size)
    logits, _ = model(mx.array(ids))
    return recall_accuracy(np.array(logits), targets, mask)


def test_hybrid_folder_ships_checkpoint_task_and_log_within_a_few_megabytes():
    folder = demo_path("hybrid")
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "task.json", "training_log.csv", "training.json"} <= names
    assert sum(p.stat().st_size for p in folder.iterdir()) < 4 * 2**20


def test_hybrid_model_is_a_cfc_block_wired_by_an_autoncp_then_an_mlstm_block(model):
    assert model.config.layer_types() == ["cfc", "mlstm"]
    wiring = model.blocks[0].wiring
    assert type(wiring).__name__ == "AutoNCP" and wiring.units == HYBRID_RECIPE["config"]["ncps"]["units"]
    assert wiring.input_dim == model.config.embedding_dim  # sensory neurons read the block input


def test_hybrid_model_recalls_on_fresh_sequences(model):
    for pairs, least in MIN_RECALL.items():
        accuracy = _recall(model, pairs, seed=4242)
        assert accuracy >= least, (pairs, accuracy)


def test_hybrid_recall_needs_the_ncp_neurons_and_their_synapses(model):
    """Zeroing the motor neurons (the block's only output) drops recall to near chance; removing every
    command -> motor synapse hurts it too: the recall runs through the wired neurons."""
    base = _recall(model, 8, seed=7)
    handle = model.interventions.add("blocks.0.ncp.motor", "zero")
    try:
        ablated = _recall(model, 8, seed=7)
    finally:
        model.interventions.remove(handle)
    assert ablated < 0.25 and base >= MIN_RECALL[8], (base, ablated)
    wiring = model.blocks[0].wiring
    M = wiring.output_dim
    done = len(wiring.history)
    for src, dst in np.argwhere(wiring.adjacency_matrix[:, :M] != 0)[: len(wiring.adjacency_matrix) // 2]:
        wiring.set_polarity(int(src), int(dst), 0)
    try:
        cut = _recall(model, 8, seed=7)
    finally:
        wiring.undo(len(wiring.history) - done)
    assert cut < base - 0.1, (base, cut)
    assert _recall(model, 8, seed=7) == base


def test_hybrid_training_log_and_summary_record_the_real_run():
    folder = demo_path("hybrid")
    log = np.genfromtxt(folder / "training_log.csv", delimiter=",", names=True)
    assert log["step"][-1] == HYBRID_RECIPE["steps"]
    assert log["loss"][-20:].mean() < 0.1 * log["loss"][:20].mean()
    summary = json.loads((folder / "training.json").read_text())
    assert summary["seed"] == HYBRID_RECIPE["seed"] and summary["batch_size"] == HYBRID_RECIPE["batch_size"]
    assert summary["train_seconds"] < 15 * 60  # the recipe trains on a 2-core CPU in about 10 minutes


def test_the_app_and_the_cli_open_either_bundled_model_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    import panel as pn

    from xlstm_viz.cli import main
    from xlstm_viz.dashboard.app import DashboardApp

    pn.extension()
    hybrid = DashboardApp(model_path="hybrid", threaded=False)
    try:
        names = list(hybrid.tabs()._names)
        assert "NCPS (live model)" in names and "NCPS builder (detached)" in names
        assert hybrid.ncps_live.wiring_view.wiring is hybrid.session.model.blocks[0].wiring
    finally:
        hybrid.session.close()
    demo = DashboardApp(model_path="demo", threaded=False)
    try:
        assert demo.ncps_live is None and "NCPS (live model)" not in list(demo.tabs()._names)
    finally:
        demo.session.close()
    assert main(["info", "--model", "hybrid"]) == 0
    out = capsys.readouterr().out
    assert "block types: cfc, mlstm" in out and "blocks.0 (cfc) neuron wiring: AutoNCP(units=32" in out
    assert main(["info", "--model", "nosuch"]) == 2
