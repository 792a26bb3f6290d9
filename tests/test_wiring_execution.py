"""Wiring edits and interventions as the executor runs them, observed through the public API only (model(...),
run_with_trace, compiled(), Debugger, model.interventions, CellWiring methods).

Where an edit has a closed-form equivalent, the reference is a second checkpoint whose tensors were changed by hand
(copied rows, negated or shared weights) and loaded with `load_model`: the edit must give that model's logits."""


import mlx.core as mx
import numpy as np
import pytest

from xlstm_viz.execution import Debugger

from edited_checkpoints import NH, assert_close, block, edited_checkpoint, folder, full, ids, logits, model  # noqa: F401 - fixtures


# -- polarity and masks ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["connection", "cell"])
def test_a_flipped_value_path_equals_a_checkpoint_with_the_value_weight_negated(model, folder, ids, tmp_path, how):
    wiring = model.cell_wirings[0]
    if how == "connection":
        wiring.set_polarity("blocks.0.mlstm.norm_in", "blocks.0.mlstm.v", -1)
    else:
        wiring.set_cell_polarity("blocks.0.mlstm.v", -1)

    def negate(t):
        t[block(0) + "mlstm_layer.v.weight"] = -t[block(0) + "mlstm_layer.v.weight"]

    reference = edited_checkpoint(folder, tmp_path, negate)
    for mode in ("chunkwise", "recurrent"):
        assert_close(logits(model, ids, mode), logits(reference, ids, mode))


def test_a_flipped_activation_connection_subtracts_what_it_carries(model, ids):
    base = full(model, ids, ["blocks.1.in", "blocks.1.mlstm.out"])
    model.cell_wirings[1].set_polarity("blocks.1.mlstm.out", "blocks.1.mid", -1)
    mid = full(model, ids, ["blocks.1.mid"])["blocks.1.mid"]
    assert_close(mid, base["blocks.1.in"] - base["blocks.1.mlstm.out"])


@pytest.mark.parametrize("run_mode", ["chunkwise", "recurrent"])
def test_an_activation_mask_zeroes_the_features_its_connection_carries(model, ids, run_mode):
    base = full(model, ids, ["blocks.0.in", "blocks.0.mlstm.out"], run_mode)
    wiring = model.cell_wirings[0]
    wiring.set_sparsity("blocks.0.mlstm.out", "blocks.0.mid", 0.25, seed=3)
    mask = wiring.connection("blocks.0.mlstm.out", "blocks.0.mid").mask
    assert mask.shape == (64,) and int((mask == 0).sum()) == 16
    mid = full(model, ids, ["blocks.0.mid"], run_mode)["blocks.0.mid"]
    assert_close(mid, base["blocks.0.in"] + base["blocks.0.mlstm.out"] * mask)
    np.testing.assert_array_equal(mid[..., mask == 0], base["blocks.0.in"][..., mask == 0])


# -- interventions in recurrent mode and under compile -----------------------------------------------------------
def test_token_limited_interventions_act_on_those_tokens_only_in_recurrent_mode(model, ids):
    base = full(model, ids, ["blocks.0.mlstm.v", "logits"], "recurrent")
    model.interventions.add("blocks.0.mlstm.v", "zero", tokens=[5, 9])
    got = full(model, ids, ["blocks.0.mlstm.v", "logits"], "recurrent")
    v = got["blocks.0.mlstm.v"]
    assert not v[:, [5, 9]].any()
    keep = [t for t in range(ids.shape[1]) if t not in (5, 9)]
    np.testing.assert_array_equal(v[:, keep], base["blocks.0.mlstm.v"][:, keep])
    np.testing.assert_array_equal(got["logits"][:, :5], base["logits"][:, :5])  # causal: earlier tokens untouched
    assert not np.allclose(got["logits"][:, 5], base["logits"][:, 5], atol=1e-3)
    assert_close(got["logits"], logits(model, ids, "chunkwise"), rel=2e-4)  # both modes apply it alike


def test_patch_interventions_apply_token_by_token_in_recurrent_mode(model, ids):
    clean = model.run_with_trace(ids, probes=["blocks.1.mlstm.h"], mode="full")
    corrupted = mx.array(np.array(ids)[:, ::-1].copy())
    model.interventions.add("blocks.1.mlstm.h", "patch", source_trace=clean)
    got = full(model, corrupted, ["blocks.1.mlstm.h", "logits"], "recurrent")
    np.testing.assert_array_equal(got["blocks.1.mlstm.h"], clean.full["blocks.1.mlstm.h"])
    assert_close(got["logits"], logits(model, corrupted, "chunkwise"), rel=2e-4)
    model.interventions.clear()
    assert not np.allclose(logits(model, corrupted, "recurrent"), got["logits"], atol=1e-3)


@pytest.mark.parametrize("mode", ["chunkwise", "recurrent"])
def test_compiled_functions_retrace_when_the_interventions_change(model, ids, mode):
    x = ids if mode == "chunkwise" else ids[:, :1]
    run = model.compiled(mode)
    base = np.array(run(x, None)[0])
    assert_close(base, logits(model, x, mode))
    first = model.interventions.add("blocks.0.mlstm.v", "scale", value=0.0)
    scaled = np.array(run(x, None)[0])
    assert not np.allclose(scaled, base, atol=1e-3)
    assert_close(scaled, logits(model, x, mode))
    model.interventions.remove(first)  # same count, different intervention: must still re-trace
    model.interventions.add("blocks.1.mlstm.out", "zero")
    zeroed = np.array(run(x, None)[0])
    assert not np.allclose(zeroed, scaled, atol=1e-3)
    assert_close(zeroed, logits(model, x, mode))
    model.interventions.clear()
    np.testing.assert_array_equal(np.array(run(x, None)[0]), base)


# -- the debugger's default saturation threshold ------------------------------------------------------------------
def test_saturated_breakpoint_defaults_to_95_percent_of_the_gate_soft_cap(model, ids):
    cap = model.config.gate_soft_cap
    gates = np.zeros((ids.shape[0], ids.shape[1], NH), np.float32)
    gates[:, 0] = 0.94 * cap  # below the default threshold
    gates[:, 1, 2] = -0.96 * cap  # above it (the sign does not matter)
    model.interventions.add("blocks.0.mlstm.igate", "replace", value=gates)
    dbg = Debugger(model, ids, mode="recurrent")
    dbg.add_breakpoint(probe="blocks.0.mlstm.igate", condition="saturated")
    ev = dbg.continue_()
    assert (ev.name, ev.token) == ("blocks.0.mlstm.igate", 1)
    assert dbg.continue_() is None  # no other token passes 95%
    dbg.reset()
    dbg.breakpoints.clear()
    dbg.add_breakpoint(probe="blocks.0.mlstm.igate", condition="saturated>0.9")
    assert dbg.continue_().token == 0
