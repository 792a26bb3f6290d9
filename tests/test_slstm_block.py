"""The sLSTM block as a block type of the registry (layer type "slstm"): it runs in the same wiring-driven forward
as the mLSTM block, against the official xlstm 2.0.6 values of the `orig_slstm` fixture (tools/golden_original.py:
per-block intermediates and final states, vanilla backend), and mixed stacks trace, take interventions, step in the
debugger and compile.

The 7B-format model ends in RMSNorm and a soft-capped head where the original ends in LayerNorm(1 + w) without a
cap, so the official logits are not comparable here; every block's output and state is (the stream entering block
1 is block 0's output, so the whole stack is checked)."""

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


def _official_as_registry_model(folder):
    """A 7B-format model of two "slstm" blocks holding the official checkpoint's sLSTM weights."""
    original = xlstm_viz.load_model(folder)
    oc = original.config
    config = XLSTMConfig(embedding_dim=oc.embedding_dim, num_heads=oc.slstm.num_heads, num_blocks=oc.num_blocks,
                         vocab_size=oc.vocab_size, block_types=["slstm"] * oc.num_blocks, use_bias=True,
                         ffn_proj_factor=oc.feedforward.proj_factor,
                         ffn_round_up_to_multiple_of=oc.feedforward.round_proj_up_to_multiple_of)
    assert config.ffn_dim == oc.ffn_dim
    model = XLSTM(config)
    W, F = original.weights, oc.ffn_dim
    new = {"backbone.embeddings.weight": W["token_embedding.weight"]}
    for b in range(oc.num_blocks):
        o, p = f"xlstm_block_stack.blocks.{b}.", f"backbone.blocks.{b}."
        up, up_b = W[o + "ffn.proj_up.weight"], W[o + "ffn.proj_up.bias"]
        new.update({
            p + "norm_slstm.weight": W[o + "xlstm_norm.weight"],
            p + "slstm_layer.conv1d.weight": W[o + "xlstm.conv1d.conv.weight"],
            p + "slstm_layer.conv1d.bias": W[o + "xlstm.conv1d.conv.bias"],
            # the official layer's quirk: the parameter named fgate computes the input gate, igate the forget gate
            p + "slstm_layer.igate.weight": W[o + "xlstm.fgate.weight"],
            p + "slstm_layer.fgate.weight": W[o + "xlstm.igate.weight"],
            p + "slstm_layer.zgate.weight": W[o + "xlstm.zgate.weight"],
            p + "slstm_layer.ogate.weight": W[o + "xlstm.ogate.weight"],
            p + "slstm_layer.recurrent_kernel": W[o + "xlstm.slstm_cell._recurrent_kernel_"],
            p + "slstm_layer.bias": W[o + "xlstm.slstm_cell._bias_"],
            p + "slstm_layer.group_norm.weight": W[o + "xlstm.group_norm.weight"],
            p + "norm_ffn.weight": W[o + "ffn_norm.weight"],
            p + "ffn.proj_up_gate.weight": up[:F], p + "ffn.proj_up_gate.bias": up_b[:F],
            p + "ffn.proj_up.weight": up[F:], p + "ffn.proj_up.bias": up_b[F:],
            p + "ffn.proj_down.weight": W[o + "ffn.proj_down.weight"],
            p + "ffn.proj_down.bias": W[o + "ffn.proj_down.bias"],
        })
    shapes = model.checkpoint_shapes()
    assert set(new) == {k for k in shapes if not k.startswith(("lm_head.", "backbone.out_norm."))}
    assert all(tuple(new[k].shape) == shapes[k] for k in new)
    model.update(tree_unflatten(list(new.items())))
    return model


@pytest.fixture(scope="module")
def official(golden_dir):
    folder = golden_dir / "orig_slstm"
    return _official_as_registry_model(folder), np.load(folder / "reference.npz")


@pytest.mark.parametrize("mode", ["chunkwise", "recurrent"])
def test_slstm_blocks_match_the_official_block_outputs_and_memory_per_token(official, mode):
    model, ref = official
    trace = model.run_with_trace(mx.array(ref["input_ids"]), mode="full", run_mode=mode)
    for b in range(model.config.num_blocks):
        f, p = f"fwd/block{b}/", f"blocks.{b}."
        pairs = {"in": "in", "slstm.conv": "conv", "slstm.igate": "igate", "slstm.fgate": "fgate",
                 "slstm.zgate": "zgate", "slstm.ogate": "ogate", "slstm.norm": "norm", "ffn.out": "ffn_out",
                 "out": "out", "slstm.c": "memory_c", "slstm.n": "memory_n", "slstm.m": "memory_m",
                 "slstm.h": "memory_h"}
        for ours, theirs in pairs.items():
            assert_close_to_scale(trace.full[p + ours], ref[f + theirs], ULPS, f"{mode} {p}{ours} vs {f}{theirs}")


@pytest.mark.parametrize("mode", ["chunkwise", "recurrent"])
def test_slstm_final_states_match_the_official_step(official, mode):
    model, ref = official
    _, state = model(mx.array(ref["input_ids"]), mode=mode)
    for b, entry in enumerate(state):
        key = f"state_step/block{b}/"
        assert_close_to_scale(np.array(entry["slstm.conv"]), ref[key + "conv"], ULPS, key + "conv")
        for name in ("c", "n", "m", "h"):
            assert_close_to_scale(np.array(getattr(entry["slstm.memory"], name)), ref[key + name], ULPS, key + name)


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
