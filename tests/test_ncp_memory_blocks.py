"""xLSTM memory cells as NCP neurons, wired inter -> command -> motor by the block's AutoNCP: the `ncp_slstm` block
type (each neuron an sLSTM scalar memory cell; xlstm_viz/model/ncp_slstm_block.py) and `ncp_mlstm` (each NCP layer an
mLSTM matrix memory whose value features are the neurons; xlstm_viz/model/ncp_mlstm_block.py)."""

from __future__ import annotations

import numpy as np
import pytest

import xlstm_viz  # noqa: F401  (BLAS before MLX)
import mlx.core as mx

from tests.test_ncps_blocks import MOTOR, UNITS, assert_close, first_synapse, hybrid, ids
from xlstm_viz.model.cells import CellParams
from xlstm_viz.model.ncp_slstm_block import layer_ids
from xlstm_viz.model.mlstm_block import mlstm_memory
from xlstm_viz.model.slstm_block import slstm_memory

MEMORY_BLOCKS = ["ncp_slstm", "ncp_mlstm"]
OUTPUTS = {"ncp_slstm": 8, "ncp_mlstm": 3}  # per-neuron outputs of the memory cell


def stack(blocks) -> "xlstm_viz.model.XLSTM":
    """A small model of these block types whose neuron blocks have a random (non-zero) readout."""
    from xlstm_viz.config import XLSTMConfig
    from xlstm_viz.model import XLSTM

    cfg = XLSTMConfig.from_dict(dict(
        embedding_dim=32, num_heads=2, num_blocks=len(blocks), vocab_size=20, chunk_size=8, block_types=list(blocks),
        ncps={"units": UNITS, "output_size": MOTOR, "sparsity_level": 0.5, "seed": 7},
        bos_token_id=None, eos_token_id=None, pad_token_id=0))
    mx.random.seed(0)
    model = XLSTM(cfg)
    for block in model.blocks:
        if getattr(block, "wiring", None) is not None:
            block.out_proj.weight = mx.random.normal(block.out_proj.weight.shape)
    mx.eval(model.parameters())
    return model


def connect_fully(wiring) -> None:
    """Every synapse of every NCP layer present and excitatory: into the layer and inside it."""
    for layer in range(wiring.num_layers):
        lo, hi = layer_ids(wiring, layer)
        if layer == 0:
            pairs, sensory = [(s, d) for s in range(wiring.input_dim) for d in range(lo, hi)], True
        else:
            plo, phi = layer_ids(wiring, layer - 1)
            pairs, sensory = [(s, d) for s in range(plo, phi) for d in range(lo, hi)], False
        for s, d in pairs:
            wiring.set_polarity(s, d, 1, sensory=sensory)
        for s in range(lo, hi):
            for d in range(lo, hi):
                wiring.set_polarity(s, d, 1)


def test_a_fully_connected_layer_is_the_plain_slstm_memory_cell_on_the_same_weights():
    """With every synapse present and excitatory (and W_z, R_z >= 0, so the synapse rule leaves every weight as
    it is), each NCP layer is the sLSTM block's own memory cell (`slstm_block.slstm_memory`, parity-tested against
    xlstm 2.0.6) with one head of the layer's neurons, fed by the previous layer's h."""
    model, x = hybrid(blocks=("ncp_slstm", "mlstm")), ids(10)
    block = model.blocks[0]
    for layer in range(3):
        p = getattr(block.neurons, f"layer_{layer}")
        p["W"] = mx.concatenate([p["W"][:2], mx.abs(p["W"][2:3]), p["W"][3:]])
        p["R"] = mx.concatenate([p["R"][:2], mx.abs(p["R"][2:3]), p["R"][3:]])
    connect_fully(block.wiring)
    tr = model.run_with_trace(x, mode="full", probes=["blocks.0.ncp.norm_in", "blocks.0.ncp.neurons",
                                                       "blocks.0.ncp.c"])
    value = mx.array(tr.full["blocks.0.ncp.norm_in"])
    for layer in range(3):
        lo, hi = layer_ids(block.wiring, layer)
        n = hi - lo
        p = getattr(block.neurons, f"layer_{layer}")
        gates = {f"slstm.{g}": value @ p["W"][k].T for k, g in enumerate(("igate", "fgate", "zgate", "ogate"))}
        weights = {"R": p["R"].reshape(1, 4 * n, n), "b": p["b"].reshape(4 * n)}  # the vanilla layout, one head
        out, _ = slstm_memory(gates, weights.get, None, CellParams({"num_heads": 1, "recurrent": "R",
                                                                    "recurrent_bias": "b"}, model.config))
        c, h = np.array(out[..., :n]), np.array(out[..., 3 * n:4 * n])  # [c; n; m; h; raw gate pre-activations]
        assert_close(tr.full["blocks.0.ncp.neurons"][..., lo:hi], h, what=f"layer {layer} h vs the sLSTM cell")
        assert_close(tr.full["blocks.0.ncp.c"][..., lo:hi], c, what=f"layer {layer} c vs the sLSTM cell")
        value = mx.array(h)


@pytest.mark.parametrize("kind", MEMORY_BLOCKS)
def test_memory_neurons_chunkwise_and_recurrent_runs_agree_and_state_carries_across_calls(kind):
    model, x = hybrid(blocks=(kind, "mlstm")), ids(12)
    full, state = model(x)
    step, _ = model(x, mode="recurrent")
    assert_close(np.array(step), np.array(full), what="recurrent vs chunkwise logits")
    _, mid = model(x[:, :5])
    rest, end = model(x[:, 5:], state=mid)
    assert_close(np.array(rest), np.array(full[:, 5:]), what="logits after a carried state")
    for k, (got, want) in enumerate(zip(end[0].arrays(), state[0].arrays())):
        assert got.shape == want.shape and got.shape[0] == 2
        assert_close(np.array(got), np.array(want), what=f"neuron state entry {k} after a carried state")
    # the carried state is used: a fresh start on the second half differs
    fresh, _ = model(x[:, 5:])
    assert float(mx.abs(fresh - rest).max()) > 1e-4


def synapse_of(wiring, where: str):
    """(src, dest, sensory) of the first synapse of a kind: sensory -> inter, inter -> command, command -> command
    (the recurrent synapses inside the command layer), command -> motor."""
    if where == "sensory":
        return (*first_synapse(wiring, "sensory"), True)
    A = wiring.adjacency_matrix
    spans = {name: layer_ids(wiring, layer) for layer, name in enumerate(("inter", "command", "motor"))}
    src_kind, dst_kind = {"inter->command": ("inter", "command"), "command->command": ("command", "command"),
                          "command->motor": ("command", "motor")}[where]
    (slo, shi), (dlo, dhi) = spans[src_kind], spans[dst_kind]
    s, d = np.argwhere(A[slo:shi, dlo:dhi] != 0)[0]
    return int(s) + slo, int(d) + dlo, False


WHERE = ["sensory", "inter->command", "command->command", "command->motor"]


@pytest.mark.parametrize("kind", MEMORY_BLOCKS)
@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("edit", ["remove", "flip"])
def test_a_synapse_removal_or_polarity_flip_changes_the_next_forward_and_undo_restores_it(edit, where, kind):
    model, x = hybrid(blocks=(kind, "mlstm")), ids()
    before, _ = model(x)
    wiring = model.blocks[0].wiring
    src, dst, sensory = synapse_of(wiring, where)
    matrix = wiring.sensory_adjacency_matrix if sensory else wiring.adjacency_matrix
    wiring.set_polarity(src, dst, 0 if edit == "remove" else -int(matrix[src, dst]), sensory=sensory)
    after, _ = model(x)
    assert float(mx.abs(after - before).max()) > 1e-4, f"{edit} of a {where} synapse changed nothing"
    wiring.undo()
    again, _ = model(x)
    assert np.array_equal(np.array(again), np.array(before))


def test_polarity_is_the_sign_of_the_synapse_into_the_cell_input_only():
    """A flipped synapse s -> j negates its weight into j's cell input z and leaves its gates' weights: the
    neuron's raw i, f, o at the first token (no recurrence yet) are unchanged, raw z changes; no other neuron's
    gates change at that token."""
    model, x = hybrid(blocks=("ncp_slstm", "mlstm")), ids()
    wiring = model.blocks[0].wiring
    src, dst = first_synapse(wiring, "sensory")
    probes = [f"blocks.0.ncp.{g}gate" for g in "ifzo"]
    before = model.run_with_trace(x, mode="full", probes=probes).full
    wiring.set_polarity(src, dst, -int(wiring.sensory_adjacency_matrix[src, dst]), sensory=True)
    after = model.run_with_trace(x, mode="full", probes=probes).full
    for g in "ifo":
        np.testing.assert_array_equal(after[f"blocks.0.ncp.{g}gate"][:, 0, dst], before[f"blocks.0.ncp.{g}gate"][:, 0, dst])
    assert np.abs(after["blocks.0.ncp.zgate"][:, 0, dst] - before["blocks.0.ncp.zgate"][:, 0, dst]).max() > 1e-5
    lo, hi = layer_ids(wiring, 0)
    others = [j for j in range(lo, hi) if j != dst]
    for g in "ifzo":
        name = f"blocks.0.ncp.{g}gate"
        np.testing.assert_array_equal(after[name][:, 0, others], before[name][:, 0, others])


def test_a_recurrent_command_synapse_feeds_its_target_from_the_previous_token():
    """Removing the in-layer synapse s -> d (s != d) of the command layer changes, at token 1, the gates of d
    alone (d read h_s at token 0 through it); at token 0 nothing changes."""
    model, x = hybrid(blocks=("ncp_slstm", "mlstm")), ids()
    wiring = model.blocks[0].wiring
    lo, hi = layer_ids(wiring, 1)
    src, dst = next((int(s) + lo, int(d) + lo) for s, d in np.argwhere(wiring.adjacency_matrix[lo:hi, lo:hi] != 0)
                    if s != d)
    probes = [f"blocks.0.ncp.{g}gate" for g in "ifzo"]
    before = model.run_with_trace(x, mode="full", probes=probes).full
    wiring.set_polarity(src, dst, 0)
    after = model.run_with_trace(x, mode="full", probes=probes).full
    others = [j for j in range(lo, hi) if j != dst]
    for name in probes:
        np.testing.assert_array_equal(after[name][:, 0], before[name][:, 0])
        np.testing.assert_array_equal(after[name][:, 1, others], before[name][:, 1, others])
    assert np.abs(after["blocks.0.ncp.igate"][:, 1, dst] - before["blocks.0.ncp.igate"][:, 1, dst]).max() > 1e-5


@pytest.mark.parametrize("kind", MEMORY_BLOCKS)
def test_compiled_forward_follows_memory_neuron_wiring_edits(kind):
    model, x = hybrid(blocks=(kind, "mlstm")), ids()
    fn = model.compiled("chunkwise")
    base, _ = fn(x, None)
    wiring = model.blocks[0].wiring
    src, dst, _ = synapse_of(wiring, "command->motor")
    wiring.set_polarity(src, dst, -int(wiring.adjacency_matrix[src, dst]))
    eager, _ = model(x)
    compiled, _ = fn(x, None)
    assert_close(np.array(compiled), np.array(eager), what="compiled after a polarity flip")
    assert float(mx.abs(compiled - base).max()) > 1e-4
    wiring.undo()
    again, _ = fn(x, None)
    assert np.array_equal(np.array(again), np.array(base))


PER_NEURON = {"ncp_slstm": ("neurons", "c", "n", "m", "igate", "fgate", "zgate", "ogate"),
              "ncp_mlstm": ("neurons", "readout", "ogate")}


@pytest.mark.parametrize("kind", MEMORY_BLOCKS)
def test_a_mixed_stack_traces_takes_an_intervention_and_steps_in_the_debugger(kind):
    model, x = stack(("mlstm", kind)), ids(8)
    names = model.probe_names()
    per_neuron = [f"blocks.1.ncp.{c}" for c in PER_NEURON[kind]]
    assert set(per_neuron + ["blocks.1.ncp.motor", "blocks.1.ncp.out"]) <= set(names)
    tr = model.run_with_trace(x)
    for name in per_neuron:
        assert tr.stats[name]["mean"].shape == (2, 8, UNITS), name  # one statistic per neuron and token
    assert tr.stats["blocks.1.ncp.motor"]["mean"].shape == (2, 8, MOTOR)
    h = model.interventions.add("blocks.1.ncp.motor", "zero")
    zeroed = model.run_with_trace(x, mode="full", probes=["blocks.1.ncp.out", "blocks.1.in", "blocks.1.out"])
    model.interventions.remove(h)
    assert np.abs(zeroed.full["blocks.1.ncp.out"]).max() == 0.0
    assert_close(zeroed.full["blocks.1.out"], zeroed.full["blocks.1.in"], what="stream with zeroed motor neurons")
    from xlstm_viz.execution import Debugger

    dbg = Debugger(model, x[:1])
    ev = dbg.run_to("blocks.1.ncp.memory", token=3)
    assert ev.name == "blocks.1.ncp.memory" and ev.token == 3
    assert ev.output.shape[-1] == OUTPUTS[kind] * UNITS and ev.state is not None


@pytest.mark.parametrize("kind", MEMORY_BLOCKS)
def test_the_live_ncps_tab_cycles_a_memory_neurons_synapse_sign_and_reruns(kind):
    """Memory-cell neurons use polarity, so the live tab's click flips a synapse's sign (+1 -> -1) instead of
    removing it (the CfC's rule), and the re-run changes the neuron overlay; undo restores the baseline logits."""
    import panel as pn

    from xlstm_viz.dashboard.ncps_live import LiveNCPSView
    from xlstm_viz.dashboard.session import ModelSession
    from xlstm_viz.tasks import MQARTask

    pn.extension()
    model = hybrid(blocks=(kind, "mlstm"))
    model.task = MQARTask(num_keys=9, num_values=9)
    session = ModelSession(model=model)
    session.mqar_example(4, seed=1)
    view = LiveNCPSView(session, score_pairs=4)
    assert model.blocks[0].synapse_rule in view.wiring_view._title  # the tab says what a click does to these neurons
    baseline = session.trace
    nodes_before = np.array(view.wiring_view.node_source.data["value"], dtype=float).copy()
    wiring = model.blocks[0].wiring
    src, dst = map(int, np.argwhere(wiring.adjacency_matrix[:, :MOTOR] > 0)[0])
    assert view.wiring_view.cycle_synapse("neuron", src, dst) == -1
    assert int(wiring.adjacency_matrix[src, dst]) == -1
    assert session.trace is not baseline
    assert not np.allclose(np.array(view.wiring_view.node_source.data["value"], dtype=float), nodes_before,
                           equal_nan=True)
    view.undo()
    assert np.array_equal(session.trace.logits, baseline.logits)


def test_a_fully_connected_layer_without_in_layer_synapses_is_the_plain_mlstm_memory_on_the_same_weights():
    """With every synapse into each layer present and excitatory, none inside (so r = h~), and W_v >= 0, each NCP
    layer is the mLSTM block's memory cell (`mlstm_block.mlstm_memory`, one head, parity-tested against
    mlstm_kernels) on q, k, v, i, f from the layer's input, times its output gate."""
    model, x = hybrid(blocks=("ncp_mlstm", "mlstm")), ids(11)  # 11 tokens: a ragged last chunk (chunk_size 8)
    block = model.blocks[0]
    wiring = block.wiring
    connect_fully(wiring)
    for layer in range(3):
        lo, hi = layer_ids(wiring, layer)
        for s_ in range(lo, hi):
            for d in range(lo, hi):
                wiring.set_polarity(s_, d, 0)
        p = getattr(block.neurons, f"layer_{layer}")
        p["v"] = mx.abs(p["v"])
    for mode in ("chunkwise", "recurrent"):
        tr = model.run_with_trace(x, mode="full", run_mode=mode, probes=["blocks.0.ncp.norm_in", "blocks.0.ncp.neurons"])
        value = mx.array(tr.full["blocks.0.ncp.norm_in"])
        for layer in range(3):
            lo, hi = layer_ids(wiring, layer)
            p = getattr(block.neurons, f"layer_{layer}")
            gates = value @ p["gates"].T + p["gate_bias"]
            inputs = {"mlstm.q": value @ p["q"].T, "mlstm.k": value @ p["k"].T, "mlstm.v": value @ p["v"].T,
                      "mlstm.igate": gates[..., :1], "mlstm.fgate": gates[..., 1:]}
            h, _ = mlstm_memory(inputs, None, None, CellParams({"num_heads": 1}, model.config, mode))
            h = mx.sigmoid(value @ p["o"].T + p["o_bias"]) * h
            assert_close(tr.full["blocks.0.ncp.neurons"][..., lo:hi], np.array(h),
                         what=f"{mode}: layer {layer} h vs the mLSTM memory cell")
            value = h


def test_an_mlstm_neuron_is_one_column_of_the_memory():
    """Flipping the sensory synapse s -> j changes only v_j, so only neuron j's memory column and readout change:
    every other inter neuron's r and every inter neuron's output gate are bit-identical at every token."""
    model, x = hybrid(blocks=("ncp_mlstm", "mlstm")), ids()
    wiring = model.blocks[0].wiring
    src, dst = first_synapse(wiring, "sensory")
    probes = ["blocks.0.ncp.readout", "blocks.0.ncp.ogate"]
    before = model.run_with_trace(x, mode="full", probes=probes).full
    wiring.set_polarity(src, dst, -int(wiring.sensory_adjacency_matrix[src, dst]), sensory=True)
    after = model.run_with_trace(x, mode="full", probes=probes).full
    lo, hi = layer_ids(wiring, 0)
    others = [j for j in range(lo, hi) if j != dst]
    np.testing.assert_array_equal(after["blocks.0.ncp.readout"][..., others], before["blocks.0.ncp.readout"][..., others])
    np.testing.assert_array_equal(after["blocks.0.ncp.ogate"][..., lo:hi], before["blocks.0.ncp.ogate"][..., lo:hi])
    assert np.abs(after["blocks.0.ncp.readout"][..., dst] - before["blocks.0.ncp.readout"][..., dst]).max() > 1e-5


def test_an_in_layer_mlstm_synapse_is_lateral_at_the_same_token():
    """An in-layer synapse s -> d of an mLSTM layer adds p |L[d, s]| r~_s to d's readout at the same token: the
    readout difference after its removal is exactly that term (s's memory readout), and no other neuron moves."""
    model, x = hybrid(blocks=("ncp_mlstm", "mlstm")), ids()
    block = model.blocks[0]
    wiring = block.wiring
    lo, hi = layer_ids(wiring, 1)
    src, dst = next((int(s) + lo, int(d) + lo) for s, d in np.argwhere(wiring.adjacency_matrix[lo:hi, lo:hi] != 0)
                    if s != d)
    # no in-layer synapse but this one, so neuron s's readout is its own memory readout
    for s_ in range(lo, hi):
        for d in range(lo, hi):
            if (s_, d) != (src, dst):
                wiring.set_polarity(s_, d, 0)
    pol = int(wiring.adjacency_matrix[src, dst])
    before = model.run_with_trace(x, mode="full", probes=["blocks.0.ncp.readout"]).full["blocks.0.ncp.readout"]
    wiring.set_polarity(src, dst, 0)
    after = model.run_with_trace(x, mode="full", probes=["blocks.0.ncp.readout"]).full["blocks.0.ncp.readout"]
    weight = pol * abs(float(block.neurons.layer_1["lateral"][dst - lo, src - lo]))
    assert_close(before[..., dst] - after[..., dst], weight * after[..., src], what="lateral synapse term")
    others = [j for j in range(lo, hi) if j != dst]
    np.testing.assert_array_equal(after[..., others], before[..., others])


@pytest.mark.parametrize("kind", MEMORY_BLOCKS)
def test_a_saved_memory_neuron_model_loads_back_with_the_same_outputs(kind, tmp_path):
    from xlstm_viz.checkpoint import load_model

    model, x = hybrid(blocks=(kind, "mlstm")), ids()
    model.save(tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.config.layer_types() == [kind, "mlstm"]
    np.testing.assert_array_equal(np.array(loaded(x)[0]), np.array(model(x)[0]))


@pytest.mark.numerical
def test_an_slstm_neuron_layer_matches_the_official_slstm_on_its_fixture(golden_dir):
    """The NCP layer function against xlstm 2.0.6's vanilla sLSTM (tests/fixtures/golden/orig_slstm, written by
    tools/make_golden.py): one layer of D neurons fed the official gate pre-activations [W_i x; W_f x; W_z x; W_o x]
    through selection synapses (all excitatory), with the official block-diagonal R as the in-layer synapses
    (present inside each head, polarity = the sign of R_z there, so |p| R = R for i, f, o and p |R_z| = R_z), gives
    the official c, n, m, h."""
    from xlstm_viz.model import slstm_cell
    from xlstm_viz.model.ncp_slstm_block import ncp_slstm_layer
    from xlstm_viz.model.xlstm_original import load_original

    folder = golden_dir / "orig_slstm"
    ref = np.load(folder / "reference.npz")
    model = load_original(folder)
    b = next(j for j, t in enumerate(model.config.layer_types()) if t == "slstm")
    block = model.blocks[b]
    NH = block._dims[1]
    R, bias = slstm_cell.vanilla_layout(block.param("slstm_layer.recurrent_kernel"), block.param("slstm_layer.bias"),
                                        NH, "vanilla")
    R, bias = np.array(R), np.array(bias)
    DH = R.shape[-1]
    D = NH * DH
    R_full = np.zeros((4, D, D), np.float32)
    for h in range(NH):
        R_full[:, h * DH:(h + 1) * DH, h * DH:(h + 1) * DH] = R[h]
    heads = np.kron(np.eye(NH), np.ones((DH, DH))).astype(np.float32)
    recurrent_polarity = heads * np.sign(R_full[2])
    W = np.zeros((4, D, 4 * D), np.float32)
    for g in range(4):
        W[g, :, g * D:(g + 1) * D] = np.eye(D)
    p = f"fwd/block{b}/"
    x = np.concatenate([ref[p + f"{g}gate"] for g in "ifzo"], axis=-1)
    seq, _ = ncp_slstm_layer(mx.array(x), mx.array(W), mx.array(R_full), mx.array(bias.reshape(4, D)),
                             mx.ones((D, 4 * D)), mx.array(recurrent_polarity),
                             slstm_cell.SLSTMState.zeros(x.shape[0], 1, D))
    for key in "cnmh":
        want = ref[p + f"memory_{key}"]
        got = np.array(seq[key][:, :, 0])
        err, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
        assert err <= 5e-6 * scale + 1e-6, f"{key}: max error {err:.3g} vs official (scale {scale:.3g})"


@pytest.mark.parametrize("kind", MEMORY_BLOCKS)
def test_the_over_time_panels_of_a_memory_neuron_block_are_its_own_tables(kind):
    """The Over time tab draws the block type's own panels (h, memory, motor), not those of another neuron table
    whose probe names it shares (the cfc table also has ncp.neurons and ncp.motor)."""
    from xlstm_viz.dashboard import trace_tables
    from xlstm_viz.wiring.block_types import block_table

    model, x = hybrid(blocks=(kind, "mlstm")), ids(6)
    trace = model.run_with_trace(x)
    shown = trace_tables.gate_panels(trace, 0)
    assert [(p, t) for p, _, t in shown] == [(f"blocks.0.{c}", t) for c, _, t in block_table(kind).panels]
