"""The model executes its wirings: edits change the next forward, traces see every cell, the debugger steps."""

import mlx.core as mx
import numpy as np
import pytest

import xlstm_viz
from xlstm_viz.execution import Debugger, Trace

from memory_reference import reference_norms
from tolerances import assert_close_to_scale

pytestmark = pytest.mark.numerical


@pytest.fixture
def model(golden_dir):
    return xlstm_viz.load_model(golden_dir / "tiny")


@pytest.fixture
def ids(golden_dir):
    return mx.array(np.load(golden_dir / "tiny" / "reference.npz")["input_ids"])


def logits_of(model, ids, mode="chunkwise"):
    return np.array(model(ids, mode=mode)[0])


def full(model, ids, probes, run_mode="chunkwise"):
    return model.run_with_trace(ids, probes=probes, mode="full", run_mode=run_mode).full


# -- block wiring --------------------------------------------------------------------------------------------
def test_disabled_block_edge_lets_the_stream_pass_through(model, ids):
    base = full(model, ids, ["embedding", "blocks.*.in", "blocks.0.out"])
    model.block_wiring.set_enabled("blocks.0", "blocks.1", False)
    edited = full(model, ids, ["blocks.1.in", "blocks.0.out"])
    np.testing.assert_array_equal(edited["blocks.0.out"], base["blocks.0.out"])  # block 0 still runs
    np.testing.assert_allclose(edited["blocks.1.in"], base["embedding"], atol=1e-5)  # its contribution is gone
    model.block_wiring.undo()
    np.testing.assert_array_equal(full(model, ids, ["blocks.1.in"])["blocks.1.in"], base["blocks.1.in"])


def test_negative_block_polarity_subtracts_the_contribution(model, ids):
    base = full(model, ids, ["embedding", "blocks.0.out"])
    model.block_wiring.set_polarity("blocks.0", "blocks.1", -1)
    got = full(model, ids, ["blocks.1.in"])["blocks.1.in"]
    contribution = base["blocks.0.out"] - base["embedding"]
    np.testing.assert_allclose(got, base["embedding"] - contribution, atol=1e-4)


def test_skip_edge_adds_a_block_output_further_down(model, ids):
    base = full(model, ids, ["blocks.0.in", "blocks.0.out", "blocks.1.out"])
    model.block_wiring.add_skip("blocks.0", "out_norm")
    got = full(model, ids, ["out_norm", "blocks.1.out"])
    stream = base["blocks.1.out"] + (base["blocks.0.out"] - base["blocks.0.in"])
    w = np.array(model.backbone.out_norm.weight)
    expected = stream / np.sqrt((stream**2).mean(-1, keepdims=True) + 1e-6) * w
    np.testing.assert_allclose(got["out_norm"], expected, atol=1e-4)


# -- cell wiring -----------------------------------------------------------------------------------------------
def test_sparsity_mask_multiplies_the_weight_it_feeds_without_touching_parameters(model, ids):
    wiring = model.cell_wirings[0]
    weight_before = model.blocks[0].mlstm_layer.q.weight
    wiring.set_sparsity("blocks.0.mlstm.norm_in", "blocks.0.mlstm.q", 0.5, seed=7)
    mask = wiring.connection("blocks.0.mlstm.norm_in", "blocks.0.mlstm.q").mask
    assert mask.shape == (32, 64) and (mask == 0).sum() == 32 * 64 // 2
    # eager: a compiled trace (the default on GPUs) leaves the weight's buffer in place but mx.compile re-wraps the
    # module's arrays in new Python objects (test_compiled_trace.py), so `is` below would not say "no copy"
    got = model.run_with_trace(ids, probes=["blocks.0.mlstm.norm_in", "blocks.0.mlstm.q"], mode="full",
                               compiled=False).full
    expected = got["blocks.0.mlstm.norm_in"] @ (np.array(weight_before) * mask).T
    np.testing.assert_allclose(got["blocks.0.mlstm.q"], expected, atol=1e-4)
    assert model.blocks[0].mlstm_layer.q.weight is weight_before  # no reload, no copy


def test_connection_polarity_flips_what_flows_along_it(model, ids):
    base = full(model, ids, ["blocks.1.mlstm.memory", "blocks.1.mlstm.norm"])
    # h is linear in q and its denominator uses |q.n|: flipping q flips h and its per-head LayerNorm exactly.
    model.cell_wirings[1].set_polarity("blocks.1.mlstm.q", "blocks.1.mlstm.memory", -1)
    got = full(model, ids, ["blocks.1.mlstm.memory", "blocks.1.mlstm.norm"])
    np.testing.assert_allclose(got["blocks.1.mlstm.memory"], -base["blocks.1.mlstm.memory"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["blocks.1.mlstm.norm"], -base["blocks.1.mlstm.norm"], atol=1e-4)


def test_disabled_connection_equals_zeroing_intervention(model, ids):
    model.cell_wirings[0].set_enabled("blocks.0.mlstm.out", "blocks.0.mid", False)
    by_wiring = logits_of(model, ids)
    model.cell_wirings[0].undo()
    handle = model.interventions.add("blocks.0.mlstm.out", "zero")
    by_hook = logits_of(model, ids)
    np.testing.assert_array_equal(by_wiring, by_hook)
    model.interventions.remove(handle)
    assert not np.allclose(logits_of(model, ids), by_hook)


def test_edits_apply_in_recurrent_mode_too(model, ids):
    model.cell_wirings[1].set_sparsity("blocks.1.ffn.h", "blocks.1.ffn.out", 0.9, seed=1)
    np.testing.assert_allclose(logits_of(model, ids, "recurrent"), logits_of(model, ids, "chunkwise"), atol=2e-3)


def test_compiled_step_follows_wiring_edits(model, ids):
    step = model.compiled_step()
    token = ids[:, :1]
    eager, _ = model(token, mode="recurrent")
    compiled, _ = step(token, None)
    np.testing.assert_allclose(np.array(compiled), np.array(eager), atol=1e-5)
    model.cell_wirings[0].set_polarity("blocks.0.mlstm.norm_in", "blocks.0.mlstm.v", -1)
    eager2, _ = model(token, mode="recurrent")
    compiled2, _ = step(token, None)
    assert not np.allclose(np.array(eager2), np.array(eager))
    np.testing.assert_allclose(np.array(compiled2), np.array(eager2), atol=1e-5)


def test_compiled_prefill_follows_a_changed_chunk_size(model, ids, monkeypatch):
    from xlstm_viz.model import mlstm_cell

    seen = []
    real = mlstm_cell.chunkwise
    monkeypatch.setattr(mlstm_cell, "chunkwise", lambda *a, **kw: seen.append(kw.get("chunk_size", a[7])) or real(*a, **kw))
    prefill = model.compiled("chunkwise")
    first, _ = prefill(ids, None)
    model.config.chunk_size = 4
    again, _ = prefill(ids, None)
    assert seen[0] != 4 and seen[-1] == 4  # traced again with the new chunk length
    np.testing.assert_allclose(np.array(again), np.array(first), atol=1e-4 * float(np.max(np.abs(np.array(first)))))


def test_compiled_step_fed_its_own_state_decodes_like_eager_and_a_changed_state_is_still_checked(model, ids):
    step = model.compiled_step()
    eager_state, compiled_state = None, None
    for t in range(3):  # the second and third calls get back the list the previous call returned
        token = ids[:, t : t + 1]
        eager, eager_state = model(token, state=eager_state, mode="recurrent")
        compiled, compiled_state = step(token, compiled_state)
        np.testing.assert_allclose(np.array(compiled), np.array(eager), atol=1e-5)
    from xlstm_viz.model.mlstm_cell import MLSTMState

    good = compiled_state[0]
    compiled_state[0] = MLSTMState(good.C[:, :1], good.n, good.m)  # same list object, one entry replaced
    with pytest.raises(ValueError, match=r"state\[0\]\.C has shape"):
        step(ids[:, :1], compiled_state)
    compiled_state[0] = good
    good.n = good.n[..., :1]  # same entry object, one array replaced
    with pytest.raises(ValueError, match=r"state\[0\]\.n has shape"):
        step(ids[:, :1], compiled_state)


def test_compiled_step_checks_each_batch_size_against_its_own_zero_state(model, ids):
    # The step keeps each batch size's zero state (no per-step rebuild): a later batch size gets its own, a state
    # of another batch size is still refused by name, and a fresh start equals the eager zero-state step.
    step = model.compiled_step()
    first = ids[:1, :1]  # batch 1
    tokens = mx.concatenate([first, ids[:1, 1:2]], axis=0)  # batch 2
    one, state1 = step(first, None)
    two, state2 = step(tokens, None)
    eager, _ = model(tokens, mode="recurrent")
    np.testing.assert_allclose(np.array(two), np.array(eager), atol=1e-5)
    assert_close_to_scale(np.array(two[:1]), np.array(one), 1000, "batch 2 row 0 vs batch 1")  # batched matmuls
    assert tuple(state2[0].C.shape)[0] == 2 and tuple(state1[0].C.shape)[0] == 1
    with pytest.raises(ValueError, match=r"state\[0\]\.C has shape \(1, .*\), expected \(2, .*\) \(batch 2\)"):
        step(tokens, state1)
    with pytest.raises(ValueError, match=r"state\[0\]\.C has shape \(2, .*\), expected \(1, .*\) \(batch 1\)"):
        step(first, state2)
    again, _ = step(ids[:1, 1:2], state1)  # the cached zero states were not consumed by the first steps
    ref, _ = model(ids[:1, :2], mode="recurrent")
    np.testing.assert_allclose(np.array(again), np.array(ref[:, 1:2]), atol=1e-5)

# -- traces ----------------------------------------------------------------------------------------------------
def test_stats_trace_records_per_head_gate_and_memory_statistics(model, ids):
    trace = model.run_with_trace(ids)
    assert trace.probes == model.probe_names()
    B, S = ids.shape
    heads = model.config.num_heads
    assert trace.stats["blocks.0.mlstm.q"]["mean"].shape == (B, S, heads)
    assert trace.stats["blocks.0.mid"]["l2"].shape == (B, S, 1)
    memory = trace.stats["blocks.1.mlstm.memory"]
    assert {"C_norm", "n_norm", "m"} <= set(memory)
    igate = trace.stats["blocks.1.mlstm.igate"]
    assert np.all(igate["exp"] <= 1.0 + 1e-6)  # exp(i - m) <= 1 because m_t >= i_t
    assert np.abs(igate["value"]).max() <= model.config.gate_soft_cap
    f = trace.stats["blocks.1.mlstm.fgate"]
    np.testing.assert_allclose(f["sigmoid"], 1 / (1 + np.exp(-f["value"])), atol=1e-6)
    np.testing.assert_allclose(trace.logits, logits_of(model, ids), atol=1e-6)

@pytest.mark.parametrize("run_mode", ["chunkwise", "recurrent"])
def test_stats_equal_numpy_statistics_of_the_full_tensors_per_head(model, ids, run_mode):
    # Check every probe's stats against numpy on the recorded tensors. In chunkwise mode a tensor that two probes see
    # (blocks.1.in is blocks.0.out) is reduced once and shared.
    trace = model.run_with_trace(ids, mode="full", run_mode=run_mode)
    heads = model.config.num_heads
    for probe in trace.probes:
        x = trace.full[probe].astype(np.float64)
        local = probe.split(".", 2)[-1]
        if local in ("mlstm.igate", "mlstm.fgate"):
            groups = x.shape[-1]
        elif local in ("mlstm.q", "mlstm.k", "mlstm.v", "mlstm.ogate", "mlstm.memory", "mlstm.norm", "mlstm.h"):
            groups = heads
        else:
            groups = 1
        x = x.reshape(*x.shape[:2], groups, -1)
        expected = {"mean": x.mean(-1), "std": x.std(-1), "absmax": np.abs(x).max(-1), "l2": np.sqrt((x * x).sum(-1))}
        for stat, value in expected.items():
            np.testing.assert_allclose(trace.stats[probe][stat], value, rtol=1e-4, atol=1e-5, err_msg=f"{probe}.{stat}")
        if local == "mlstm.fgate":
            np.testing.assert_allclose(trace.stats[probe]["value"], trace.full[probe], atol=1e-6)



def _stats(model, ids, probes, run_mode, backend, state=None):
    from xlstm_viz.execution.executor import Executor
    from xlstm_viz.execution.trace import Recorder

    recorder = Recorder(model, probes, "stats", stats_on=backend)
    Executor(model).forward_observed(ids, state=state, mode=run_mode, observer=recorder)
    return recorder.finish()[0]


@pytest.mark.parametrize("run_mode", ["chunkwise", "recurrent"])
def test_memory_norms_are_the_recurrence_over_what_the_cell_received_on_every_backend(model, ids, run_mode):
    # The memory cell's own trace is the one source of memory norms: every stats backend passes it through, from
    # the zero state and from a given state (read back, not assumed zero), and it is the recurrence of the test
    # reference over the k, v, i, f the cell received.
    from xlstm_viz.execution import stats_gpu

    _, state = model(ids[:, :3])
    probes = ["blocks.*.mlstm.memory", "blocks.*.mlstm.igate"]
    backends = ("kernel", "numpy", "mlx") + (("fused",) if stats_gpu.available() else ())
    for given in (None, state):
        want = reference_norms(model, ids, run_mode, given)
        for backend in backends:
            got = _stats(model, ids, probes, run_mode, backend, state=given)
            for j in range(model.config.num_blocks):
                memory = got[f"blocks.{j}.mlstm.memory"]
                for stat, ulps in (("m", 400), ("n_norm", 2000), ("C_norm", 2000)):
                    assert_close_to_scale(memory[stat], want[j][stat], ulps, f"{backend} {given is None} {j} {stat}")
                igate = got[f"blocks.{j}.mlstm.igate"]
                np.testing.assert_allclose(igate["exp"], np.exp(igate["value"] - want[j]["m"]), rtol=1e-4)
    fresh = _stats(model, ids, probes, run_mode, "kernel")
    again = _stats(model, ids, probes, run_mode, "kernel", state=state)
    assert not np.allclose(again["blocks.0.mlstm.memory"]["C_norm"], fresh["blocks.0.mlstm.memory"]["C_norm"])


@pytest.mark.parametrize("backend", ["kernel", "mlx"])
def test_chunkwise_memory_reconstruction_matches_recurrent_states(model, ids, backend):
    # The cell's own trace in both modes: the Gram reconstruction in chunkwise mode against the per-step states in
    # recurrent mode, whichever backend reduces the probes.
    chunk = _stats(model, ids, "blocks.*.mlstm.memory", "chunkwise", backend)
    rec = _stats(model, ids, "blocks.*.mlstm.memory", "recurrent", backend)
    assert set(chunk) == {"blocks.0.mlstm.memory", "blocks.1.mlstm.memory"}
    for probe in chunk:
        # ULPs of the largest value; measured at most 42 (m) and 24 (norms) on OpenBLAS and reference BLAS.
        for stat, ulps in (("m", 400), ("n_norm", 2000), ("C_norm", 2000)):
            assert_close_to_scale(chunk[probe][stat], rec[probe][stat], ulps, f"{probe} {stat}")
    # and the last token's norms equal the final state's (measured 1 ULP)
    _, state = model(ids)
    last = {k: v[:, -1] for k, v in rec["blocks.0.mlstm.memory"].items()}
    assert_close_to_scale(last["m"], np.array(state[0].m)[..., 0], 100, "last m")
    np.testing.assert_allclose(last["n_norm"], np.linalg.norm(np.array(state[0].n), axis=-1), rtol=1e-4)
    np.testing.assert_allclose(last["C_norm"], np.linalg.norm(np.array(state[0].C), axis=(-2, -1)), rtol=1e-4)


def test_trace_round_trips_through_npz_and_diffs(model, ids, tmp_path):
    base = model.run_with_trace(ids, probes=["blocks.*.mlstm.igate", "blocks.1.out", "logits"], mode="full")
    path = base.save(tmp_path / "trace.npz")
    again = Trace.load(path)
    assert again.probes == base.probes and again.meta["mode"] == "full"
    for probe in base.probes:
        for stat in base.stats[probe]:
            np.testing.assert_array_equal(again.stats[probe][stat], base.stats[probe][stat])
    np.testing.assert_array_equal(again.full["blocks.1.out"], base.full["blocks.1.out"])
    model.cell_wirings[1].set_enabled("blocks.1.ffn.out", "blocks.1.out", False)
    after = model.run_with_trace(ids, probes=base.probes, mode="full")
    delta = base.diff(after)
    assert delta.summary()["blocks.0.mlstm.igate"] == 0.0  # upstream of the edit: unchanged
    assert delta.summary()["blocks.1.out"] > 0.0
    np.testing.assert_allclose(delta.logits, after.logits - base.logits)


def test_unknown_probe_names_suggest_close_ones(model, ids):
    with pytest.raises(KeyError, match="blocks.0.mlstm.igate"):
        model.run_with_trace(ids, probes=["blocks.0.mlstm.igat"])
    with pytest.raises(ValueError, match="trace mode"):
        model.run_with_trace(ids, mode="everything")
    with pytest.raises(TypeError, match="probe names and patterns are strings, got 3"):
        model.run_with_trace(ids, probes=["blocks.0.mlstm.q", 3])


def test_probe_selection_mixes_names_and_patterns_in_execution_order(model):
    from xlstm_viz.execution.probes import select_probes

    got = select_probes(model, ["logits", "blocks.1.mlstm.q", "blocks.0.*gate", "blocks.1.mlstm.q"])
    assert got == ["blocks.0.mlstm.igate", "blocks.0.mlstm.fgate", "blocks.0.mlstm.ogate", "blocks.0.ffn.gate",
                   "blocks.1.mlstm.q", "logits"]


# -- interventions ---------------------------------------------------------------------------------------------
def test_scale_replace_and_patch_interventions(model, ids):
    base = full(model, ids, ["blocks.0.mlstm.v"])["blocks.0.mlstm.v"]
    h = model.interventions.add("blocks.0.mlstm.v", "scale", value=2.0)
    np.testing.assert_allclose(full(model, ids, ["blocks.0.mlstm.v"])["blocks.0.mlstm.v"], 2 * base, rtol=1e-6)
    model.interventions.remove(h)
    replacement = np.ones_like(base)
    model.interventions.add("blocks.0.mlstm.v", "replace", value=replacement, tokens=[3])
    got = full(model, ids, ["blocks.0.mlstm.v"])["blocks.0.mlstm.v"]
    np.testing.assert_array_equal(got[:, 3], replacement[:, 3])
    np.testing.assert_array_equal(got[:, 4], base[:, 4])
    model.interventions.clear()
    # activation patching: run a corrupted input, patch one probe from the clean run
    clean = model.run_with_trace(ids, probes=["blocks.1.mlstm.h"], mode="full")
    corrupted = mx.array(np.array(ids)[:, ::-1].copy())
    model.interventions.add("blocks.1.mlstm.h", "patch", source_trace=clean)
    patched = full(model, corrupted, ["blocks.1.mlstm.h"])["blocks.1.mlstm.h"]
    np.testing.assert_array_equal(patched, clean.full["blocks.1.mlstm.h"])
    assert [i.kind for i in model.interventions.list()] == ["patch"]
    with pytest.raises(ValueError, match="intervention kind"):
        model.interventions.add("blocks.0.mlstm.v", "ablate")


# -- debugger --------------------------------------------------------------------------------------------------
def test_stepping_every_cell_reaches_the_normal_logits(model, ids):
    dbg = Debugger(model, ids[:, :5], mode="recurrent")
    names = []
    while (ev := dbg.step()) is not None:
        names.append(ev.name)
    per_token = model.probe_names()
    assert names == per_token * 5
    np.testing.assert_allclose(dbg.logits, logits_of(model, ids[:, :5], "recurrent"), atol=1e-6)
    assert dbg.finished and dbg.stop_reason == "end"


def test_step_over_step_token_and_run_to(model, ids):
    dbg = Debugger(model, ids, mode="recurrent")
    assert dbg.step().name == "embedding"
    assert dbg.step().name == "blocks.0.in"
    ev = dbg.step_over()
    assert ev.name == "blocks.0.out" and ev.token == 0
    ev = dbg.step_token()
    assert ev.name == "logits" and ev.token == 0
    ev = dbg.run_to(probe="blocks.1.mlstm.memory", token=3)
    assert (ev.name, ev.token) == ("blocks.1.mlstm.memory", 3)
    assert set(ev.state) == {"C", "n", "m"} and ev.state["C"].shape == (2, 4, 8, 16)
    assert set(ev.inputs) == {"mlstm.q", "mlstm.k", "mlstm.v", "mlstm.igate", "mlstm.fgate"}
    assert dbg.continue_() is None
    np.testing.assert_allclose(dbg.logits, logits_of(model, ids, "recurrent"), atol=1e-6)


def test_breakpoints_on_probe_names_and_conditions(model, ids):
    dbg = Debugger(model, ids, mode="chunkwise")
    bp = dbg.add_breakpoint(probe="blocks.1.mlstm.*gate")
    ev = dbg.continue_()
    assert ev.name == "blocks.1.mlstm.igate" and ev.token is None and "breakpoint" in dbg.stop_reason
    dbg.remove_breakpoint(bp)
    dbg.reset()
    dbg.add_breakpoint(condition="saturated>0.9")
    ev = dbg.continue_()
    assert ev.name == "blocks.0.mlstm.igate"  # the fixture drives the gates into the soft cap
    dbg.reset()
    dbg.breakpoints.clear()
    dbg.add_breakpoint(condition="absmax>1e9")
    assert dbg.continue_() is None
    with pytest.raises(ValueError, match="unknown breakpoint condition"):
        dbg.add_breakpoint(condition="big")
    with pytest.raises(KeyError, match="no probe matches"):
        dbg.add_breakpoint(probe="blocks.9.mlstm.q")


def test_nan_breakpoint_points_to_the_first_cell_that_produced_it(model, ids):
    v = np.array(model.blocks[1].mlstm_layer.v.weight)
    v[3, 5] = np.nan
    model.blocks[1].mlstm_layer.v.weight = mx.array(v)
    dbg = Debugger(model, ids, mode="recurrent")
    dbg.add_breakpoint(condition="nonfinite")
    ev = dbg.continue_()
    assert ev.name == "blocks.1.mlstm.v" and ev.token == 0
    assert dbg.stop_reason == "nonfinite at blocks.1.mlstm.v"
    assert all(np.isfinite(x).all() for x in ev.inputs.values()) and ev.summary["nonfinite"] > 0


def test_every_stats_backend_agrees_with_the_numpy_reference(model, ids):
    # CI has only the CPU device (the numba kernel); the compiled MLX table that GPUs use must give the same stats, and
    # every backend passes the memory cell's own norms through.
    from xlstm_viz.execution.executor import Executor
    from xlstm_viz.execution.trace import Recorder

    results = {}
    from xlstm_viz.execution import stats_gpu

    backends = ("numpy", "kernel", "mlx") + (("fused",) if stats_gpu.available() else ())  # fused: CUDA only
    expected_logits = logits_of(model, ids)
    for backend in backends:
        recorder = Recorder(model, None, "stats", stats_on=backend)
        logits, _ = Executor(model).forward_observed(ids, observer=recorder)
        results[backend], _ = recorder.finish(logits)
        # the logits come back with the stats (on a GPU in the same copy)
        np.testing.assert_allclose(recorder.host_logits, expected_logits, atol=1e-6, err_msg=backend)
    for backend in backends[1:]:
        assert results["numpy"].keys() == results[backend].keys()
        for probe, stats in results["numpy"].items():
            assert stats.keys() == results[backend][probe].keys(), probe
            for stat, value in stats.items():
                # Memory stats: the kernel runs the recurrence with float64 gates, MLX in float32, so m (a running
                # sum of log sigma(f)) differs by float32 rounding of its magnitude.
                atol = 1e-6 if stat in ("mean", "std", "absmax", "l2") else 2e-6 * max(1.0, np.abs(value).max())
                np.testing.assert_allclose(results[backend][probe][stat], value, rtol=1e-4, atol=atol,
                                           err_msg=f"{backend}: {probe}.{stat}")
    with pytest.raises(ValueError, match="stats_on must be one of .* got 'gpu'"):
        Recorder(model, None, "stats", stats_on="gpu")


def test_bfloat16_weights_trace_alike_on_every_backend(model, ids):
    # bf16 weights: probes, gate values and the memory cell's inputs must reach the host kernels as float32.
    from mlx.utils import tree_map

    model.update(tree_map(lambda p: p.astype(mx.bfloat16), model.parameters()))
    host = _stats(model, ids, None, "chunkwise", "kernel")
    device = _stats(model, ids, None, "chunkwise", "mlx")
    assert host.keys() == device.keys() and "C_norm" in host["blocks.1.mlstm.memory"]
    for probe, stats in device.items():
        for stat, value in stats.items():
            np.testing.assert_allclose(host[probe][stat], value, rtol=1e-3, atol=1e-4 * max(1.0, np.abs(value).max()),
                                       err_msg=f"{probe}.{stat}")


@pytest.mark.parametrize("run_mode", ["chunkwise", "recurrent"])
def test_memory_norms_of_an_edited_wiring_are_the_recurrence_over_what_the_cell_received(model, ids, run_mode):
    # A flipped k, a disabled forget gate and a scaled v reach the memory cell; its norms, token by token, are the
    # reference recurrence over those edited inputs (not over the probes' unedited values).
    probes = ["blocks.*.mlstm.memory", "blocks.*.mlstm.igate"]
    before = _stats(model, ids, probes, run_mode, "kernel")
    wiring = model.cell_wirings[1]
    wiring.set_polarity("blocks.1.mlstm.k", "blocks.1.mlstm.memory", -1)
    wiring.set_enabled("blocks.1.mlstm.fgate", "blocks.1.mlstm.memory", False)
    model.interventions.add("blocks.1.mlstm.v", "scale", value=2.0)
    after = _stats(model, ids, probes, run_mode, "kernel")
    want = reference_norms(model, ids, run_mode)[1]
    memory = "blocks.1.mlstm.memory"
    assert not np.allclose(after[memory]["C_norm"], before[memory]["C_norm"])
    for stat, ulps in (("m", 400), ("n_norm", 2000), ("C_norm", 2000)):
        assert_close_to_scale(after[memory][stat], want[stat], ulps, stat)


@pytest.mark.parametrize("run_mode", ["chunkwise", "recurrent"])
def test_memory_norms_follow_edits_of_what_the_memory_cell_receives(model, ids, run_mode):
    # The norms come from the memory cell's own trace, so they see the wiring's edits: a flipped k, a disabled
    # forget gate and a scaled v change C and n, and the last token's norms are the edited run's final state.
    probes = ["blocks.*.mlstm.memory", "blocks.*.mlstm.igate"]
    before = _stats(model, ids, probes, run_mode, "kernel")
    wiring = model.cell_wirings[1]
    wiring.set_polarity("blocks.1.mlstm.k", "blocks.1.mlstm.memory", -1)
    wiring.set_enabled("blocks.1.mlstm.fgate", "blocks.1.mlstm.memory", False)
    model.interventions.add("blocks.1.mlstm.v", "scale", value=2.0)
    after = _stats(model, ids, probes, run_mode, "kernel")
    _, state = model(ids, mode=run_mode)
    memory = "blocks.1.mlstm.memory"
    assert not np.allclose(after[memory]["C_norm"], before[memory]["C_norm"])
    np.testing.assert_allclose(after[memory]["C_norm"][:, -1], np.linalg.norm(np.array(state[1].C), axis=(-2, -1)),
                               rtol=1e-4)
    np.testing.assert_allclose(after[memory]["n_norm"][:, -1], np.linalg.norm(np.array(state[1].n), axis=-1),
                               rtol=1e-4)
    assert_close_to_scale(after[memory]["m"][:, -1], np.array(state[1].m)[..., 0], 100, "last m")
    np.testing.assert_allclose(after["blocks.1.mlstm.igate"]["exp"],
                               np.exp(after["blocks.1.mlstm.igate"]["value"] - after[memory]["m"]), rtol=1e-6)


@pytest.mark.parametrize("run_mode", ["chunkwise", "recurrent"])
def test_a_trace_asks_the_memory_cell_only_for_the_norms_its_probes_need(model, ids, run_mode):
    # exp(i - m) of the input gate needs m alone: the cell is asked for ("m",) and computes no C or n norms, and the
    # gate's exp is the one of a trace that also records the memory.
    from xlstm_viz.execution.executor import Executor
    from xlstm_viz.execution.trace import Recorder
    from xlstm_viz.model.mlstm_cell import MemoryTrace

    gate_only = Recorder(model, "blocks.*.mlstm.igate", "stats", stats_on="mlx")
    assert gate_only.wants_memory_trace(0) == ("m",)
    assert Recorder(model, "blocks.*.mlstm.memory", "stats").wants_memory_trace(1) == MemoryTrace.FIELDS
    assert not Recorder(model, "blocks.*.mlstm.q", "stats").wants_memory_trace(0)
    seen = []
    on_cell = gate_only.on_cell
    gate_only.on_cell = lambda event: (seen.append(event.memory_trace) if getattr(event, "memory_trace", None) else None,
                                       on_cell(event))
    Executor(model).forward_observed(ids, mode=run_mode, observer=gate_only)
    gate = gate_only.finish()[0]
    assert len(seen) >= model.config.num_blocks  # recurrent mode: one event per block and token
    assert all(t.C_norm is None and t.n_norm is None and t.m is not None for t in seen)
    both = Recorder(model, ["blocks.*.mlstm.memory", "blocks.*.mlstm.igate"], "stats", stats_on="mlx")
    Executor(model).forward_observed(ids, mode=run_mode, observer=both)
    both = both.finish()[0]
    for j in range(model.config.num_blocks):
        probe = f"blocks.{j}.mlstm.igate"
        np.testing.assert_array_equal(gate[probe]["exp"], both[probe]["exp"])


def test_an_unobserved_decode_step_runs_flat_and_gives_the_observed_steps_logits(model, ids):
    # Without observer or interventions a recurrent span drops the sequence axis (CellType.flat_step): the compiled
    # step's graph then has no flatten/unflatten around its projections and no per-head transposes, and its logits
    # and states are the observed step's, which keeps [B, 1, F] for the events.
    import re
    import tempfile
    from pathlib import Path

    from xlstm_viz.execution.executor import Executor
    from xlstm_viz.execution.trace import Recorder
    from xlstm_viz.model.forward import state_arrays

    _, state = model(ids[:, :4])
    token = ids[:, 4:5]
    step = model.compiled_step()
    logits, new_state = step(token, state)
    observed, observed_state = Executor(model).forward_observed(token, state=state, mode="recurrent",
                                                                observer=Recorder(model, None, "stats"))
    np.testing.assert_allclose(np.array(logits), np.array(observed), rtol=1e-5, atol=1e-5)
    for a, b in zip([x for s in new_state for x in state_arrays(s)],
                    [x for s in observed_state for x in state_arrays(s)]):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-5, atol=1e-6)
    assert logits.shape == (ids.shape[0], 1, model.config.vocab_size)
    flat = [x for s in state for x in state_arrays(s)]
    out = step.graph(token, flat)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "step.dot"
        mx.export_to_dot(str(path), out[0], *out[1])
        primitives = re.findall(r'label ="([A-Za-z]+)', path.read_text())
    assert "Flatten" not in primitives and "Unflatten" not in primitives
    model.interventions.add("blocks.0.mlstm.v", "scale", value=2.0)  # patched runs keep the sequence axis
    patched, _ = model(token, state=state, mode="recurrent")
    assert patched.shape == logits.shape and not np.allclose(np.array(patched), np.array(logits))


def test_a_state_of_another_block_type_or_not_an_mx_array_is_refused_by_name_before_the_forward():
    """Swapping two blocks' states in a mixed stack, a tuple for an MLSTMState, a numpy array or an integer array
    for a neuron block's state: each is refused by check_state naming the entry, what it must be and the block type
    (they used to reach MLX: AttributeError 'MLSTMState' object has no attribute 'shape', a take() type error, or
    'state[0].C has shape None'), in the eager forward, the compiled forward and a trace alike."""
    from xlstm_viz.config import XLSTMConfig
    from xlstm_viz.model import XLSTM

    cfg = XLSTMConfig.from_dict(dict(embedding_dim=32, num_heads=2, num_blocks=4, vocab_size=20, chunk_size=4,
                                     block_types=["mlstm", "slstm", "cfc", "ncp_mlstm"],
                                     ncps={"units": 12, "output_size": 4, "seed": 7},
                                     bos_token_id=None, eos_token_id=None, pad_token_id=0))
    model = XLSTM(cfg)
    x = mx.array(np.arange(14).reshape(2, 7) % 20)
    _, state = model(x)
    cases = {
        "swapped": ([state[1], state[0], *state[2:]],
                    r"state\[0\] must be a MLSTMState \(C, n, m\), got dict \(block 0 is a 'mlstm' block\)"),
        "tuple": ([tuple(state[0].arrays()), *state[1:]], r"state\[0\] must be a MLSTMState .*got tuple"),
        "mlstm state into cfc": ([*state[:2], state[0], state[3]],
                                 r"state\[2\] must be an mx.array of shape \(2, 12\), got MLSTMState "
                                 r"\(block 2 is a 'cfc' block\)"),
        "numpy": ([*state[:2], np.array(state[2]), state[3]], r"state\[2\] must be an mx.array .*got ndarray"),
        "integer": ([*state[:2], state[2].astype(mx.int32), state[3]],
                    r"state\[2\] must have a floating dtype .*got mlx.core.int32 \(block 2 is a 'cfc' block\)"),
        "slstm into ncp_mlstm": ([*state[:3], state[1]["slstm.memory"]],
                                 r"state\[3\] must be a NCPMLSTMState .*got SLSTMState"),
    }
    for what, (bad, message) in cases.items():
        for run in (lambda s: model(x, state=s), lambda s: model.compiled("chunkwise")(x, s),
                    lambda s: model.run_with_trace(x, state=s)):
            with pytest.raises(TypeError, match=message):
                run(bad)
    rest, _ = model(x, state=state)  # the real state still runs
    assert rest.shape == (2, 7, 20)


def test_a_run_continued_from_a_state_refuses_interventions_limited_to_token_positions(model, ids):
    """Positions count from the start of the sequence, but a run continued from a state took its first token as
    position 0: with tokens=[0], a prefill in two parts zeroed position 0 of each part, and every decode step of
    generate / compiled_step zeroed its token (logits 19.8 away from the full run on golden small). Such a run is
    now refused by name on every path; an intervention without positions still continues exactly."""
    handle = model.interventions.add("blocks.0.mlstm.h", "zero", tokens=[0])
    _, state = model(ids[:, :4])
    message = r"intervention #\d+ zero blocks\.0\.mlstm\.h at tokens \[0\] is limited to token positions"
    for run in (lambda: model(ids[:, 4:], state=state), lambda: model(ids[:, 4:], state=state, mode="recurrent"),
                lambda: model.compiled("chunkwise")(ids[:, 4:], state),
                lambda: model.compiled_step()(ids[:, 4:5], state),
                lambda: model.run_with_trace(ids[:, 4:], state=state),
                lambda: Debugger(model, ids[:, 4:], state=state).step(),
                lambda: xlstm_viz.generate(model, [1, 2, 3], max_new_tokens=4)):
        with pytest.raises(ValueError, match=message):
            run()
    model.interventions.remove(handle)
    model.interventions.add("blocks.0.mlstm.h", "scale", value=0.5)
    full, _ = model(ids)
    _, state = model(ids[:, :4])
    rest, _ = model(ids[:, 4:], state=state)
    assert_close_to_scale(np.array(rest), np.array(full[:, 4:]), 64, "continued run with an every-position scale")


def test_trace_summary_refuses_a_statistic_no_probe_has(model, ids):
    trace = model.run_with_trace(ids, probes=["blocks.0.mlstm.igate"])
    assert trace.summary("mean")["blocks.0.mlstm.igate"] == float(np.max(np.abs(trace.stats["blocks.0.mlstm.igate"]["mean"])))
    with pytest.raises(KeyError, match=r"no probe of this trace has the statistic 'abs_max'; its statistics are \["):
        trace.summary("abs_max")  # was {}: read as "nothing changed" in a diff


@pytest.mark.parametrize("kwargs, message", [
    ({"k": -1}, r"top_k k must be an integer in \[1, "),  # k=-1 returned all but one token per position
    ({"k": 0}, r"top_k k must be an integer in \[1, "),
    ({"batch": 1}, r"top_k batch 1 is outside the trace's batch: rows are 0..0"),
])
def test_trace_top_k_refuses_a_k_or_batch_outside_the_trace(model, ids, kwargs, message):
    trace = model.run_with_trace(ids[:1], probes=["logits"])
    top_ids, probs = trace.top_k(3)
    assert top_ids.shape == probs.shape == (ids.shape[1], 3) and np.all(np.diff(probs, axis=-1) <= 0)
    with pytest.raises(ValueError, match=message):
        trace.top_k(**kwargs)
