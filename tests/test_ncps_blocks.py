"""The `cfc` and `ltc` block types: NCP-wired CfC / LTC neurons in an xLSTM stack, live synapse edits (presence for
both, polarity for the LTC), probes, debugger, live view."""

from __future__ import annotations

import numpy as np
import pytest

import xlstm_viz  # noqa: F401  (BLAS before MLX)
import mlx.core as mx

from tests.tolerances import assert_close_to_scale

ULPS = 200  # float32 rounding of a 12-step recurrence, summed in a different order


def assert_close(got, want, what):
    assert_close_to_scale(got, want, ULPS, what)
from xlstm_viz.config import XLSTMConfig
from xlstm_viz.model import XLSTM

UNITS, MOTOR = 16, 4
NEURON_BLOCKS = ["cfc", "ltc"]


def hybrid(seed: int = 0, blocks=("cfc", "mlstm")) -> XLSTM:
    cfg = XLSTMConfig.from_dict(dict(
        embedding_dim=32, num_heads=2, num_blocks=len(blocks), vocab_size=20, chunk_size=8, block_types=list(blocks),
        ncps={"units": UNITS, "output_size": MOTOR, "sparsity_level": 0.5, "seed": 7},
        bos_token_id=None, eos_token_id=None, pad_token_id=0))
    mx.random.seed(seed)
    model = XLSTM(cfg)
    block = model.blocks[0]
    block.out_proj.weight = mx.random.normal(block.out_proj.weight.shape)  # a fresh block's readout is zero
    if blocks[0] == "ltc":  # ncps starts the LTC's mappings at the identity; random ones show each is applied
        cell = block.neurons.rnn_cell
        for name in ("input_w", "input_b", "output_w", "output_b"):
            setattr(cell, name, mx.random.normal(getattr(cell, name).shape))
    mx.eval(model.parameters())  # evaluated here: a session runs the model on its own thread
    return model


def ids(S: int = 12, seed: int = 0) -> mx.array:
    return mx.array(np.random.default_rng(seed).integers(0, 20, (2, S)).astype(np.int32))


def first_synapse(wiring, kind="neuron"):
    m = wiring.sensory_adjacency_matrix if kind == "sensory" else wiring.adjacency_matrix
    return tuple(map(int, np.argwhere(m != 0)[0]))


@pytest.mark.parametrize("kind", NEURON_BLOCKS)
def test_chunkwise_and_recurrent_runs_agree_and_state_carries_across_calls(kind):
    model, x = hybrid(blocks=(kind, "mlstm")), ids(12)
    full, state = model(x)
    step, _ = model(x, mode="recurrent")
    assert_close(np.array(step), np.array(full), what="recurrent vs chunkwise logits")
    first, mid = model(x[:, :5])
    rest, end = model(x[:, 5:], state=mid)
    assert_close(np.array(rest), np.array(full[:, 5:]), what="logits after a carried state")
    assert_close(np.array(end[0]), np.array(state[0]), what="neuron state after a carried state")
    assert state[0].shape == (2, UNITS)


@pytest.mark.parametrize("kind", NEURON_BLOCKS)
def test_block_neurons_are_the_ncps_module_on_the_normed_input(kind):
    """The block's cell is the parity-tested `neurons.CfC` / `neurons.LTC` (tests/test_neurons_parity.py vs
    ncps.torch): its motor output is exactly that module's output on the normed block input (the LTC's through its
    affine output mapping)."""
    model, x = hybrid(blocks=(kind, "mlstm")), ids(10)
    tr = model.run_with_trace(x, mode="full", probes=["blocks.0.ncp.norm_in", "blocks.0.ncp.motor",
                                                       "blocks.0.ncp.neurons"])
    block = model.blocks[0]
    y, h = block.neurons(mx.array(tr.full["blocks.0.ncp.norm_in"]))
    assert_close(tr.full["blocks.0.ncp.motor"], np.array(y), what="motor neurons vs ncps CfC output")
    # the neuron probe is by neuron id: its last token is the module's final state put back in id order
    order = np.asarray(block.neurons.state_order)
    last = np.empty_like(np.array(h))
    last[:, order] = np.array(h)
    assert_close(tr.full["blocks.0.ncp.neurons"][:, -1], last, what="neuron activity at the last token")


@pytest.mark.parametrize("block", NEURON_BLOCKS)
@pytest.mark.parametrize("kind", ["neuron", "sensory"])
def test_a_synapse_edit_changes_the_next_forward_and_undo_restores_it(kind, block):
    model, x = hybrid(blocks=(block, "mlstm")), ids()
    before, _ = model(x)
    wiring = model.blocks[0].wiring
    src, dst = first_synapse(wiring, kind)
    wiring.set_polarity(src, dst, 0, sensory=(kind == "sensory"))
    after, _ = model(x)
    assert float(mx.abs(after - before).max()) > 1e-4
    wiring.undo()
    again, _ = model(x)
    assert np.array_equal(np.array(again), np.array(before))


@pytest.mark.parametrize("kind", NEURON_BLOCKS)
def test_compiled_forward_follows_neuron_wiring_edits(kind):
    model, x = hybrid(blocks=(kind, "mlstm")), ids()
    fn = model.compiled("chunkwise")
    base, _ = fn(x, None)
    wiring = model.blocks[0].wiring
    wiring.set_polarity(*first_synapse(wiring), 0)
    eager, _ = model(x)
    compiled, _ = fn(x, None)
    assert_close(np.array(compiled), np.array(eager), what="compiled after a synapse edit")
    assert float(mx.abs(compiled - base).max()) > 1e-4
    wiring.undo()  # a second edit: the graph traced after the first one must not be reused
    again, _ = fn(x, None)
    assert np.array_equal(np.array(again), np.array(base))


@pytest.mark.parametrize("kind", ["neuron", "sensory"])
def test_an_ltc_polarity_flip_changes_the_next_forward_compiled_too_and_undo_restores_it(kind):
    """The LTC's reversal potentials follow the synapse polarity: flipping a synapse's sign (presence unchanged)
    changes the next forward, eager and compiled alike (a CfC, like ncps, sees only presence)."""
    model, x = hybrid(blocks=("ltc", "mlstm")), ids()
    fn = model.compiled("chunkwise")
    before, _ = fn(x, None)
    wiring = model.blocks[0].wiring
    sensory = kind == "sensory"
    src, dst = first_synapse(wiring, kind)
    matrix = wiring.sensory_adjacency_matrix if sensory else wiring.adjacency_matrix
    wiring.set_polarity(src, dst, -int(matrix[src, dst]), sensory=sensory)
    eager, _ = model(x)
    compiled, _ = fn(x, None)
    assert float(mx.abs(eager - before).max()) > 1e-4
    assert_close(np.array(compiled), np.array(eager), what="compiled after a polarity flip")
    # the block reads the module's effective reversal potentials: the flipped synapse's erev changed sign
    name = "sensory_erev" if sensory else "erev"
    cell = model.blocks[0].neurons.rnn_cell
    assert float(model.blocks[0].param(f"neurons.rnn_cell.{name}")[src, dst]) == -float(getattr(cell, name)[src, dst])
    wiring.undo()
    again, _ = fn(x, None)
    assert np.array_equal(np.array(again), np.array(before))


def test_a_cfc_polarity_flip_changes_nothing():
    model, x = hybrid(), ids()
    before, _ = model(x)
    wiring = model.blocks[0].wiring
    src, dst = first_synapse(wiring)
    wiring.set_polarity(src, dst, -int(wiring.adjacency_matrix[src, dst]))
    after, _ = model(x)
    assert np.array_equal(np.array(after), np.array(before))


@pytest.mark.parametrize("kind", NEURON_BLOCKS)
def test_per_neuron_probes_stats_interventions_and_debugger_stepping(kind):
    model, x = hybrid(blocks=(kind, "mlstm")), ids(8)
    names = model.probe_names()
    assert {"blocks.0.ncp.neurons", "blocks.0.ncp.motor", "blocks.0.ncp.out"} <= set(names)
    tr = model.run_with_trace(x)
    stats = tr.stats["blocks.0.ncp.neurons"]
    assert stats["value"].shape == (2, 8, UNITS)  # one statistic per neuron and token
    assert stats["mean"].shape == (2, 8, UNITS)
    # zeroing the motor neurons removes the block's contribution: the stream passes through unchanged
    h = model.interventions.add("blocks.0.ncp.motor", "zero")
    zeroed = model.run_with_trace(x, mode="full", probes=["blocks.0.ncp.out", "blocks.0.in", "blocks.0.out"])
    model.interventions.remove(h)
    assert np.abs(zeroed.full["blocks.0.ncp.out"]).max() == 0.0
    assert_close(zeroed.full["blocks.0.out"], zeroed.full["blocks.0.in"], what="stream with zeroed motor neurons")
    # the debugger stops at the neuron cell, per token, with its state
    from xlstm_viz.execution import Debugger

    dbg = Debugger(model, x[:1])
    ev = dbg.run_to("blocks.0.ncp.neurons", token=3)
    assert ev.name == "blocks.0.ncp.neurons" and ev.token == 3
    assert ev.output.shape[-1] == UNITS and ev.state is not None


def test_bad_ncps_settings_are_named():
    with pytest.raises(ValueError, match="unknown key"):
        XLSTM(XLSTMConfig.from_dict(dict(embedding_dim=32, num_heads=2, num_blocks=1, vocab_size=20,
                                         block_types=["cfc"], ncps={"neurons": 3})))
    with pytest.raises(ValueError, match="output_size"):
        XLSTM(XLSTMConfig.from_dict(dict(embedding_dim=32, num_heads=2, num_blocks=1, vocab_size=20,
                                         block_types=["cfc"], ncps={"units": 6, "output_size": 5})))


def test_live_ncps_view_toggle_reruns_the_model_and_updates_overlays_and_diff():
    import panel as pn

    from xlstm_viz.dashboard.ncps_live import LiveNCPSView
    from xlstm_viz.dashboard.session import ModelSession
    from xlstm_viz.tasks import MQARTask

    pn.extension()
    model = hybrid()
    model.task = MQARTask(num_keys=9, num_values=9)  # 20 tokens = the model's vocabulary
    session = ModelSession(model=model)
    session.mqar_example(4, seed=1)
    view = LiveNCPSView(session, score_pairs=4)
    assert view.wiring_view.wiring is model.blocks[0].wiring  # the loaded model's wiring, not a detached one
    assert view.score is not None and view.baseline_score == view.score
    baseline = session.trace
    nodes_before = np.array(view.wiring_view.node_source.data["value"], dtype=float).copy()
    strip_before = np.array(view.wiring_view.strip_source.data["value"], dtype=float).copy()
    assert not np.isnan(nodes_before[model.config.embedding_dim:]).any()  # every neuron has an overlay value
    assert np.abs(view.diff_source.data["change"]).max() == 0.0
    # toggle the command -> motor synapse with the largest effect candidate: the first one feeding a motor neuron
    wiring = model.blocks[0].wiring
    src, dst = map(int, np.argwhere(wiring.adjacency_matrix[:, :MOTOR] != 0)[0])
    view.wiring_view.cycle_synapse("neuron", src, dst)
    assert int(wiring.adjacency_matrix[src, dst]) == 0 or wiring.history  # edited on the model thread
    assert session.trace is not baseline and session.baseline is baseline
    nodes_after = np.array(view.wiring_view.node_source.data["value"], dtype=float)
    assert not np.allclose(nodes_after, nodes_before, equal_nan=True)
    assert not np.allclose(np.array(view.wiring_view.strip_source.data["value"], dtype=float), strip_before)
    assert np.abs(view.diff_source.data["change"]).max() > 0.0
    assert "synapse" in session.last_action
    view.undo()
    assert np.array_equal(session.trace.logits, baseline.logits)


def test_a_synapse_edit_is_an_edit_log_action_that_exports_applies_and_undoes():
    """The live tab's synapse toggles go through the one edit path: the session's edits document carries them (as
    "neuron" wiring edits), `xlstm_viz.apply_edits` reproduces them on a fresh model, and Undo reverts them."""
    from xlstm_viz.dashboard.session import ModelSession
    from xlstm_viz.tasks import MQARTask

    model = hybrid()
    model.task = MQARTask(num_keys=9, num_values=9)
    session = ModelSession(model=model)
    session.mqar_example(4, seed=1)
    ids = mx.array(session.tokens[None])
    before = np.array(model(ids)[0])
    wiring = model.blocks[0].wiring
    src, dst = map(int, np.argwhere(wiring.adjacency_matrix[:, :MOTOR] != 0)[0])
    session.edit_synapse(0, "neuron", src, dst, 0)
    edited = np.array(model(ids)[0])
    assert np.abs(edited - before).max() > 0
    doc = session.edits_doc()
    assert [e["wiring"] for a in doc["actions"] for e in a["edits"]] == ["neuron"]
    fresh = hybrid()
    report = xlstm_viz.apply_edits(fresh, doc)
    assert not report.refused and int(fresh.blocks[0].wiring.adjacency_matrix[src, dst]) == 0
    np.testing.assert_array_equal(np.array(fresh(ids)[0]), edited)
    session.undo()
    np.testing.assert_array_equal(np.array(model(ids)[0]), before)


@pytest.mark.parametrize("kind", NEURON_BLOCKS)
def test_the_over_time_panels_of_a_neuron_block_come_from_its_own_table(kind, tmp_path):
    """The cfc and ltc tables have the same cell names, so only the block's layer type (the trace's meta) tells the
    LTC's "neuron potential" panel from the CfC's "neuron activity"; a saved trace and a diff keep it."""
    from xlstm_viz.dashboard import trace_tables
    from xlstm_viz.execution import Trace
    from xlstm_viz.wiring.block_types import block_table

    model, x = hybrid(blocks=(kind, "mlstm")), ids(6)
    trace = model.run_with_trace(x)
    want = [(f"blocks.0.{c}", t) for c, _, t in block_table(kind).panels]
    assert [(p, t) for p, _, t in trace_tables.gate_panels(trace, 0)] == want
    assert ("neuron potential (per neuron)" in [t for _, t in want]) == (kind == "ltc")
    again = Trace.load(trace.save(tmp_path / "t.npz"))
    assert [(p, t) for p, _, t in trace_tables.gate_panels(again, 0)] == want
    assert [(p, t) for p, _, t in trace_tables.gate_panels(trace.diff(trace), 0)] == want
    with pytest.raises(ValueError, match=r"block 2 is not in this trace: it has blocks 0\.\.1"):
        trace_tables.gate_panels(trace, 2)


@pytest.mark.parametrize("mode", ["pure", "no_gate"])
def test_a_cfc_block_in_every_ncps_mode_runs_as_its_ncps_module(mode):
    """`ncps: {"mode": "pure"}` built a block whose forward read ff2 / time_a / time_b, which a pure CfC does not
    have (its cell is ff1 with w_tau and A): every forward failed with KeyError: 'A'. Now the block's motor output
    is the parity-tested CfC module's in each mode, eager, recurrent and compiled."""
    cfg = XLSTMConfig.from_dict(dict(
        embedding_dim=32, num_heads=2, num_blocks=2, vocab_size=20, chunk_size=8, block_types=["cfc", "mlstm"],
        ncps={"units": UNITS, "output_size": MOTOR, "sparsity_level": 0.5, "seed": 7, "mode": mode},
        bos_token_id=None, eos_token_id=None, pad_token_id=0))
    mx.random.seed(0)
    model = XLSTM(cfg)
    block = model.blocks[0]
    block.out_proj.weight = mx.random.normal(block.out_proj.weight.shape)
    x = ids(10)
    tr = model.run_with_trace(x, mode="full", probes=["blocks.0.ncp.norm_in", "blocks.0.ncp.motor"])
    y, _ = block.neurons(mx.array(tr.full["blocks.0.ncp.norm_in"]))
    assert_close(tr.full["blocks.0.ncp.motor"], np.array(y), what=f"{mode} motor neurons vs the CfC module")
    full, _ = model(x)
    for what, got in (("recurrent", model(x, mode="recurrent")[0]), ("compiled", model.compiled("chunkwise")(x, None)[0])):
        assert_close(np.array(got), np.array(full), what=f"{mode} {what} vs chunkwise logits")
