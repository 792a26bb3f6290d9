"""The original xLSTM's blocks as block types of the registry (layer types "slstm" and "orig_mlstm"): they run in
the same wiring-driven forward as the 7B mLSTM block, against the official xlstm 2.0.6 values of the `orig_slstm`
and `orig_mixed` fixtures (tools/golden_original.py: per-block intermediates and final states, vanilla sLSTM
backend), and mixed stacks trace, take interventions, step in the debugger, compile, save, load and open in the
dashboard.

The official logits are compared in test_original_parity.py (the same loaded model); here every block's output and
state is (the stream entering block 1 is block 0's output, so the whole stack is checked)."""

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

import xlstm_viz
from tests.tolerances import assert_close_to_scale
from xlstm_viz.config import XLSTMConfig
from xlstm_viz.execution.debugger import Debugger
from xlstm_viz.model import XLSTM
from xlstm_viz.wiring.block_types import SLSTM_BLOCK

ULPS = 400  # float32 ULPs of the largest official entry; the official float32 run is ~50 from its float64 run
# The official mLSTM forward is the parallel form, whose stabiliser differs from the recurrent one (used here, as by
# the official step) through eps e^m, and the cell output h~ is ill-conditioned near max(|q.n|, e^-m)'s kink:
# test_original_parity.py allows it 2e-4 of its scale, i.e. ~1700 ULPs.
ULPS_MLSTM_H = 1700


def _official_as_registry_model(folder):
    """The official checkpoint as the registry model of "slstm" / "orig_mlstm" blocks (load_model converts it)."""
    model = xlstm_viz.load_model(folder)
    assert isinstance(model, XLSTM)
    return model


@pytest.fixture(scope="module", params=["orig_slstm", "orig_mixed"])
def official(request, golden_dir):
    folder = golden_dir / request.param
    return _official_as_registry_model(folder), np.load(folder / "reference.npz")


SLSTM_PAIRS = {"in": "in", "slstm.conv": "conv", "slstm.igate": "igate", "slstm.fgate": "fgate",
               "slstm.zgate": "zgate", "slstm.ogate": "ogate", "slstm.norm": "norm", "ffn.out": "ffn_out",
               "out": "out", "slstm.c": "memory_c", "slstm.n": "memory_n", "slstm.m": "memory_m", "slstm.h": "memory_h"}
MLSTM_PAIRS = {"in": "in", "mlstm.up": "up", "mlstm.z": "z", "mlstm.conv": "conv", "mlstm.q": "q", "mlstm.k": "k",
               "mlstm.v": "v", "mlstm.igate": "igate", "mlstm.fgate": "fgate", "mlstm.memory": "memory",
               "mlstm.norm": "norm", "mlstm.out": "out_proj", "out": "out"}


@pytest.mark.parametrize("mode", ["chunkwise", "recurrent"])
def test_original_blocks_match_the_official_block_outputs_and_memory_per_token(official, mode):
    model, ref = official
    trace = model.run_with_trace(mx.array(ref["input_ids"]), mode="full", run_mode=mode)
    for b, kind in enumerate(model.config.layer_types()):
        f, p = f"fwd/block{b}/", f"blocks.{b}."
        for ours, theirs in (SLSTM_PAIRS if kind == "slstm" else MLSTM_PAIRS).items():
            # downstream of the mLSTM cell output every value carries its ill-conditioning
            ulps = ULPS_MLSTM_H if "orig_mlstm" in model.config.layer_types()[:b + 1] and ours != "in" else ULPS
            assert_close_to_scale(trace.full[p + ours], ref[f + theirs], ulps, f"{mode} {p}{ours} vs {f}{theirs}")


@pytest.mark.parametrize("mode", ["chunkwise", "recurrent"])
def test_original_blocks_final_states_match_the_official_step(official, mode):
    model, ref = official
    _, state = model(mx.array(ref["input_ids"]), mode=mode)
    for b, (kind, entry) in enumerate(zip(model.config.layer_types(), state)):
        key, cell = f"state_step/block{b}/", "slstm" if kind == "slstm" else "mlstm"
        assert_close_to_scale(np.array(entry[f"{cell}.conv"]), ref[key + "conv"], ULPS, key + "conv")
        for name in ("c", "n", "m", "h") if kind == "slstm" else ("C", "n", "m"):
            assert_close_to_scale(np.array(getattr(entry[f"{cell}.memory"], name)), ref[key + name], ULPS_MLSTM_H,
                                  key + name)


def test_original_mlstm_memory_norms_end_at_the_official_final_state(golden_dir):
    """The trace's memory norms (host recurrence, k scaled like the cell) end at the official final C and n."""
    model = _official_as_registry_model(golden_dir / "orig_mixed")
    ref = np.load(golden_dir / "orig_mixed" / "reference.npz")
    trace = model.run_with_trace(mx.array(ref["input_ids"]))
    for b in (0, 2):
        stats, key = trace.stats[f"blocks.{b}.mlstm.memory"], f"state_step/block{b}/"
        C, n = ref[key + "C"], ref[key + "n"]
        assert_close_to_scale(stats["C_norm"][:, -1], np.sqrt((C ** 2).sum((-2, -1))), ULPS_MLSTM_H, key + "C_norm")
        assert_close_to_scale(stats["n_norm"][:, -1], np.sqrt((n ** 2).sum(-1)), ULPS_MLSTM_H, key + "n_norm")


def _mixed(seed=0):
    config = XLSTMConfig.from_dict(dict(embedding_dim=32, num_heads=4, num_blocks=3, vocab_size=40, chunk_size=4,
             layer_types=["mlstm", "slstm", "mlstm"]))
    model = XLSTM(config)
    rng = np.random.default_rng(seed)
    params = tree_flatten(model.parameters())
    model.update(tree_unflatten([(k, mx.array(rng.normal(0, 0.3, v.shape).astype(np.float32))) for k, v in params]))
    return model, mx.array(rng.integers(0, 40, (2, 9)))


def test_a_mixed_stack_runs_the_same_in_both_modes_compiled_and_after_a_prefill():
    model, ids = _mixed()
    logits, state = model(ids)
    scale = float(np.abs(np.array(logits)).max())
    recurrent, _ = model(ids, mode="recurrent")
    np.testing.assert_allclose(np.array(recurrent), np.array(logits), atol=1e-5 * scale)
    compiled, _ = model.compiled("chunkwise")(ids, None)
    np.testing.assert_allclose(np.array(compiled), np.array(logits), atol=1e-5 * scale)
    head, carried = model(ids[:, :5])
    tail, _ = model.compiled_step()(ids[:, 5:6], carried)
    np.testing.assert_allclose(np.array(tail[:, 0]), np.array(logits[:, 5]), atol=1e-5 * scale)
    assert isinstance(state[1], dict) and set(state[1]) == {"slstm.conv", "slstm.memory"}


def test_a_mixed_stack_traces_slstm_probes_per_head():
    model, ids = _mixed()
    trace = model.run_with_trace(ids)
    for name in ("igate", "fgate", "zgate", "ogate", "c", "n", "m", "h", "conv"):
        stats = trace.stats[f"blocks.1.slstm.{name}"]
        assert stats["mean"].shape == (2, 9, 4), name  # 4 heads
    assert "C_norm" in trace.stats["blocks.0.mlstm.memory"] and "C_norm" in trace.stats["blocks.2.mlstm.memory"]
    # n_t = f' n + i' > 0 for every unit once a token has run
    assert (trace.stats["blocks.1.slstm.n"]["mean"] > 0).all()


def test_an_intervention_on_an_slstm_gate_changes_what_follows_it_only():
    model, ids = _mixed()
    base = model.run_with_trace(ids, mode="full")
    handle = model.interventions.add("blocks.1.slstm.zgate", "zero")
    edited = model.run_with_trace(ids, mode="full")
    assert np.array_equal(edited.full["blocks.1.slstm.igate"], base.full["blocks.1.slstm.igate"])
    assert np.abs(edited.full["blocks.1.slstm.c"] - base.full["blocks.1.slstm.c"]).max() > 1e-3
    assert np.abs(edited.logits - base.logits).max() > 1e-4


def test_the_debugger_steps_into_the_slstm_memory_and_shows_its_state():
    model, ids = _mixed()
    dbg = Debugger(model, ids, mode="recurrent")
    ev = dbg.run_to("blocks.1.slstm.memory", token=2)
    assert ev.name == "blocks.1.slstm.memory" and ev.token == 2
    assert set(ev.state) == {"c", "n", "m", "h"} and ev.state["c"].shape == (2, 4, 8)
    assert ev.output.shape == (2, 1, 4 * 32)
    # the state shown is the one the memory returned: its h is the h slice of the output
    np.testing.assert_allclose(ev.state["h"].reshape(2, 32), ev.output[:, 0, 96:], rtol=1e-6)
    conv = dbg.run_to("blocks.1.slstm.conv", token=3)
    assert set(conv.state) == {"state"} and conv.state["state"].shape == (2, 3, 32)


def test_the_slstm_table_wires_its_probes_and_panels():
    model, _ = _mixed()
    names = model.probe_names()
    assert [n[len("blocks.1."):] for n in names if n.startswith("blocks.1.")] == [r.local for r in SLSTM_BLOCK.cells]
    from xlstm_viz.dashboard import model_tables, trace_tables
    assert model_tables.cell_kind("blocks.1.slstm.conv") == "conv" and model_tables.cell_kind("blocks.1.slstm.c") == "memory"
    trace = model.run_with_trace(mx.array([[1, 2, 3]]))
    assert [p for p, _, _ in trace_tables.gate_panels(trace, 1)] == [f"blocks.1.{c}" for c, _, _ in SLSTM_BLOCK.panels]
    assert [p for p, _, _ in trace_tables.gate_panels(trace, 0)] == [
        "blocks.0.mlstm.igate", "blocks.0.mlstm.fgate", "blocks.0.mlstm.ogate", *["blocks.0.mlstm.memory"] * 3]


def test_a_saved_mixed_checkpoint_loads_and_the_dashboard_draws_traces_and_steps_it(tmp_path, monkeypatch):
    """A mixed stack saved in this package's format: load_model reads it back exactly; the dashboard opens it (not
    refused), colours its block graph by type, draws the sLSTM cell graph and its panels, and steps into the sLSTM
    memory."""
    model, ids = _mixed()
    folder = model.save(tmp_path / "mixed")
    loaded = xlstm_viz.load_model(folder)
    assert loaded.config.layer_types() == ["mlstm", "slstm", "mlstm"]
    np.testing.assert_array_equal(np.array(loaded(ids)[0]), np.array(model(ids)[0]))

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    from xlstm_viz.dashboard import trace_tables
    from xlstm_viz.dashboard.app import DashboardApp
    from xlstm_viz.dashboard.session import load_default_model

    app = DashboardApp(model=load_default_model(folder), threaded=False)
    try:
        app.session.set_prompt("1 2 3 4 5 6")
        trace = app.session.trace
        assert "blocks.1.slstm.c" in trace.stats
        kinds = dict(zip(app.model_view.block_graph.node_source.data["id"],
                         app.model_view.block_graph.node_source.data["kind"]))
        assert kinds["blocks.0"] == kinds["blocks.2"] == "mlstm block" and kinds["blocks.1"] == "slstm block"
        app.model_view.block = 1
        cell_kinds = dict(zip(app.model_view.cell_graph.node_source.data["id"],
                              app.model_view.cell_graph.node_source.data["kind"]))
        assert cell_kinds["blocks.1.slstm.memory"] == "memory" and cell_kinds["blocks.1.slstm.conv"] == "conv"
        # every colour drawn is in a legend: the block graph's layer types, the sLSTM cell graph's conv kind
        labels = lambda fig: [item.label["value"] for item in fig.figure.legend[0].items]  # noqa: E731
        assert {"mlstm block", "slstm block"} <= set(labels(app.model_view.block_graph))
        assert "conv" in labels(app.model_view.cell_graph) and "memory" in labels(app.model_view.cell_graph)
        assert [p for p, _, _ in trace_tables.gate_panels(trace, 1)][:2] == ["blocks.1.slstm.igate",
                                                                            "blocks.1.slstm.fgate"]
        tv = app.trace_view  # the over-time panels follow the shown block's type
        tv.block = 1
        titles = [fig.title.text for _, _, fig, _ in tv.panels]
        assert titles == [title for _, _, title in SLSTM_BLOCK.panels]
        assert all(len(src.data["value"]) == 6 * 4 for _, _, _, src in tv.panels)  # tokens x heads
        tv.block = 0
        assert [fig.title.text for _, _, fig, _ in tv.panels][0] == "input gate exp(i - m)"
        app.session.debug("add_breakpoint", probe="blocks.1.slstm.memory")
        app.session.debug("continue")
        ev = app.session.step_event
        assert ev.name == "blocks.1.slstm.memory" and set(ev.state) == {"c", "n", "m", "h"}
    finally:
        app.session.close()


def test_slstm_heads_are_a_config_field_that_round_trips_and_is_checked_by_name():
    base = dict(embedding_dim=32, num_heads=4, num_blocks=2, vocab_size=40, layer_types=["mlstm", "slstm"])
    config = XLSTMConfig.from_dict({**base, "slstm_num_heads": 2})
    assert XLSTMConfig.from_dict(config.to_dict()) == config
    assert "slstm_num_heads" not in XLSTMConfig.from_dict(base).to_dict()  # unset: 7B configs are written as before
    model = XLSTM(config)
    assert model.blocks[1].new_state(1)["slstm.memory"].c.shape == (1, 2, 16)
    assert model.cell_wirings[1].cells["blocks.1.slstm.memory"].params["num_heads"] == 2
    with pytest.raises(ValueError, match=r"slstm_num_heads or num_heads = 3\) to divide embedding_dim \(32\)"):
        XLSTM(XLSTMConfig.from_dict({**base, "slstm_num_heads": 3}))



def test_a_cuda_layout_checkpoint_loads_to_the_same_registry_model(golden_dir):
    ids = mx.array(np.load(golden_dir / "orig_slstm" / "reference.npz")["input_ids"])
    vanilla = xlstm_viz.load_model(golden_dir / "orig_slstm")(ids)[0]
    cuda = xlstm_viz.load_model(golden_dir / "orig_slstm_cuda")(ids)[0]
    np.testing.assert_array_equal(np.array(cuda), np.array(vanilla))


def test_an_original_checkpoint_traces_and_steps_in_the_dashboard(golden_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    from xlstm_viz.dashboard.app import DashboardApp
    from xlstm_viz.dashboard.session import load_default_model

    app = DashboardApp(model=load_default_model(golden_dir / "orig_mixed"), threaded=False)
    try:
        app.session.set_prompt("1 2 3 4 5")
        trace = app.session.trace
        assert {"blocks.0.mlstm.conv", "blocks.1.slstm.h", "blocks.2.mlstm.memory"} <= set(trace.stats)
        assert "C_norm" in trace.stats["blocks.0.mlstm.memory"]
        kinds = dict(zip(app.model_view.block_graph.node_source.data["id"],
                         app.model_view.block_graph.node_source.data["kind"]))
        assert kinds["blocks.1"] == "slstm block"
        app.session.debug("add_breakpoint", probe="blocks.1.slstm.memory")
        app.session.debug("continue")
        assert set(app.session.step_event.state) == {"c", "n", "m", "h"}
    finally:
        app.session.close()


@pytest.mark.parametrize("run_mode", ["chunkwise", "recurrent"])
def test_original_mlstm_memory_norms_are_the_recurrence_over_its_scaled_keys(golden_dir, run_mode):
    # The original mLSTM's memory stores k / sqrt(DH): its trace's norms are the test reference's recurrence over
    # the keys it received, so scaled, token by token.
    from memory_reference import reference_norms
    from xlstm_viz.execution.trace import Recorder
    from xlstm_viz.model.forward import Executor

    model = xlstm_viz.load_model(golden_dir / "orig_mixed")
    ids = mx.array(np.load(golden_dir / "orig_mixed" / "reference.npz")["input_ids"])
    recorder = Recorder(model, "blocks.*.mlstm.memory", "stats")
    Executor(model).forward_observed(ids, mode=run_mode, observer=recorder)
    got = recorder.finish()[0]
    want = reference_norms(model, ids, run_mode)
    assert got.keys() == {f"blocks.{j}.mlstm.memory" for j in want} and want
    for j, norms in want.items():
        for key in ("C_norm", "n_norm", "m"):
            assert_close_to_scale(got[f"blocks.{j}.mlstm.memory"][key], norms[key], ULPS, f"block {j} {key}")


def test_original_block_sizes_are_config_fields_that_set_shapes_state_and_computation():
    from xlstm_viz.config import ConfigError

    base = dict(embedding_dim=32, num_heads=4, num_blocks=2, vocab_size=40, chunk_size=4,
                layer_types=["orig_mlstm", "slstm"], output_logit_soft_cap=None)
    sizes = dict(orig_mlstm_inner_dim=96, orig_mlstm_qkv_blocksize=8, orig_mlstm_conv_kernel=2, slstm_conv_kernel=3,
                 slstm_ffn_dim=48, slstm_ffn_act="relu")
    config = XLSTMConfig.from_dict({**base, **sizes})
    assert XLSTMConfig.from_dict(config.to_dict()) == config
    assert not set(sizes) & set(XLSTMConfig.from_dict(base).to_dict())  # defaults are not written
    model = XLSTM(config)
    shapes = model.checkpoint_shapes()
    assert shapes["backbone.blocks.0.mlstm_layer.q.weight"] == (12, 8, 8)  # 96 / 8 blocks of 8
    assert shapes["backbone.blocks.0.mlstm_layer.conv1d.weight"] == (96, 1, 2)
    assert shapes["backbone.blocks.1.slstm_layer.conv1d.weight"] == (32, 1, 3)
    assert shapes["backbone.blocks.1.ffn.proj_down.weight"] == (32, 48)
    state = [block.new_state(2) for block in model.blocks]
    assert state[0]["mlstm.conv"].shape == (2, 1, 96) and state[1]["slstm.conv"].shape == (2, 2, 32)
    rng = np.random.default_rng(0)
    model.update(tree_unflatten([(k, mx.array(rng.normal(0, 0.3, v.shape).astype(np.float32)))
                                 for k, v in tree_flatten(model.parameters())]))
    ids = mx.array(rng.integers(0, 40, (2, 7)))
    a, sa = model(ids, mode="chunkwise")
    b, sb = model(ids, mode="recurrent")
    np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-4 * np.abs(np.array(b)).max())
    # the FFN activation is used: gelu instead of relu changes the logits
    gelu = XLSTM(XLSTMConfig.from_dict({**base, **sizes, "slstm_ffn_act": "gelu"}))
    gelu.update(model.parameters())
    assert np.abs(np.array(gelu(ids)[0]) - np.array(a)).max() > 1e-3
    # no conv and no FFN: those cells and parameters are gone, the block state keeps only the memory
    bare = XLSTM(XLSTMConfig.from_dict({**base, "slstm_conv_kernel": 0, "slstm_ffn_act": None}))
    assert not any(".slstm_layer.conv1d." in k or ".ffn." in k or "norm_ffn" in k for k in bare.checkpoint_shapes())
    assert set(bare.blocks[1].new_state(1)) == {"slstm.memory"}
    bare(ids)
    with pytest.raises(ConfigError, match=r"'orig_mlstm_qkv_blocksize' = 5 must divide the orig_mlstm inner width 64"):
        XLSTMConfig.from_dict({**base, "orig_mlstm_qkv_blocksize": 5})
    with pytest.raises(ConfigError, match=r"slstm_ffn_act"):
        XLSTMConfig.from_dict({**base, "slstm_ffn_act": "tanh"})
