"""CfC/LTC behaviour beyond the fixtures: live wiring edits, state-dict round trips and errors, input checks."""

from __future__ import annotations

import numpy as np
import pytest

import xlstm_viz  # noqa: F401  (binds the fast BLAS before MLX loads)
import mlx.core as mx
from mlx.utils import tree_flatten

from xlstm_viz.neurons import CfC, LTC, NeuronStateDictError, cfc_cell, ltc_cell, wired_cfc_cell
from xlstm_viz.wiring import AutoNCP, FullyConnected, Random

from test_neurons_parity import CASES, FIXTURES, REF, assert_close, build


def x_of(name):
    return mx.array(REF[f"{name}/x"])


def weights_with(model, **changes):
    """The model's ncps state dict with some entries replaced via (name, index, value) triples."""
    sd = {k: np.array(v) for k, v in model.state_dict().items()}
    for name, (index, fn) in changes.items():
        sd[name.replace("__", ".")][index] = fn(sd[name.replace("__", ".")][index])
    return sd


# -- live wiring edits ---------------------------------------------------------------------------------------
def test_removing_a_sensory_synapse_masks_exactly_its_ff1_ff2_weights_in_the_next_cfc_forward():
    model, _ = build("cfc_autoncp")
    x = x_of("cfc_autoncp")
    before, _ = model(x)
    S = model.wiring.sensory_adjacency_matrix
    src, dest = map(int, np.argwhere(S != 0)[0])
    col = model.wiring.get_neurons_of_layer(0).index(dest)
    # expected: the unedited wiring, with the two weights that synapse masks set to zero by hand
    twin, _ = build("cfc_autoncp")
    zero = (col, src), lambda v: 0.0
    twin.load_state_dict(weights_with(twin, rnn_cell__layer_0__ff1__weight=zero, rnn_cell__layer_0__ff2__weight=zero))
    expected, _ = twin(x)

    model.wiring.set_polarity(src, dest, 0, sensory=True)
    after, _ = model(x)
    assert float(mx.max(mx.abs(after - before))) > 1e-4
    np.testing.assert_array_equal(np.array(after), np.array(expected))
    model.wiring.undo()
    np.testing.assert_array_equal(np.array(model(x)[0]), np.array(before))


def test_cfc_ignores_polarity_and_in_layer_synapses_as_ncps_does():
    model, _ = build("cfc_autoncp")
    x = x_of("cfc_autoncp")
    before, _ = model(x)
    w = model.wiring
    src, dest = map(int, np.argwhere(w.adjacency_matrix != 0)[0])
    w.set_polarity(src, dest, -int(w.adjacency_matrix[src, dest]))
    command = w.get_neurons_of_layer(1)
    w.set_polarity(command[0], command[1], 1)  # a recurrent command synapse
    np.testing.assert_array_equal(np.array(model(x)[0]), np.array(before))


def test_flipping_an_ltc_synapse_negates_its_trained_reversal_potential_in_the_next_forward():
    model, _ = build("ltc_autoncp_mixed")
    x = x_of("ltc_autoncp_mixed")
    before, _ = model(x)
    A = model.wiring.adjacency_matrix
    src, dest = map(int, np.argwhere(A != 0)[0])
    twin, _ = build("ltc_autoncp_mixed")
    twin.load_state_dict(weights_with(twin, rnn_cell__erev=((src, dest), lambda v: -v)))
    expected, _ = twin(x)

    model.wiring.set_polarity(src, dest, -int(A[src, dest]))
    after, _ = model(x)
    assert float(mx.max(mx.abs(after - before))) > 1e-5
    np.testing.assert_array_equal(np.array(after), np.array(expected))
    model.wiring.undo()
    np.testing.assert_array_equal(np.array(model(x)[0]), np.array(before))


def test_removing_and_adding_ltc_synapses_change_the_masks_and_a_new_synapse_starts_at_its_polarity():
    model, _ = build("ltc_autoncp_mixed")
    w = model.wiring
    A = w.adjacency_matrix
    (s1, d1), (s2, d2) = np.argwhere(A != 0)[0], np.argwhere(A == 0)[0]
    w.set_polarity(int(s1), int(d1), 0)
    w.set_polarity(int(s2), int(d2), -1)
    weights = model.rnn_cell.weights()
    mask, erev = np.array(weights["sparsity_mask"]), np.array(weights["erev"])
    np.testing.assert_array_equal(mask, np.abs(w.adjacency_matrix))
    assert mask[s1, d1] == 0 and mask[s2, d2] == 1 and erev[s2, d2] == -1.0
    trained = np.array(model.rnn_cell.erev)
    keep = (w.adjacency_matrix != 0) & ~((np.arange(A.shape[0])[:, None] == s2) & (np.arange(A.shape[1]) == d2))
    np.testing.assert_array_equal(erev[keep], trained[keep])


def test_an_edited_model_saved_and_loaded_back_with_its_wiring_computes_the_same(tmp_path):
    model, case = build("ltc_autoncp_mixed")
    x = x_of("ltc_autoncp_mixed")
    A = model.wiring.adjacency_matrix
    src, dest = map(int, np.argwhere(A != 0)[0])
    model.wiring.set_polarity(src, dest, -int(A[src, dest]))
    model.wiring.set_polarity(*map(int, np.argwhere(model.wiring.sensory_adjacency_matrix != 0)[0]), 0, sensory=True)
    path = tmp_path / "edited.safetensors"
    model.save_state_dict(path)
    fresh = LTC(case["input_size"], AutoNCP(12, 3), mixed_memory=True)
    fresh.wiring.set_polarity(src, dest, -int(fresh.wiring.adjacency_matrix[src, dest]))
    s, d = map(int, np.argwhere(fresh.wiring.sensory_adjacency_matrix != 0)[0])
    fresh.wiring.set_polarity(s, d, 0, sensory=True)
    fresh.load_state_dict(path)
    np.testing.assert_array_equal(np.array(fresh(x)[0]), np.array(model(x)[0]))


# -- state dicts -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cfc_ncp_no_gate_mixed_proj", "cfc_backbone3_gelu_dropout", "ltc_fc_nomap"])
def test_save_state_dict_round_trips_bit_for_bit_under_ncps_names(tmp_path, name):
    model, case = build(name)
    path = tmp_path / "m.safetensors"
    model.save_state_dict(path)
    assert sorted(mx.load(str(path))) == sorted(k for k, _ in case["state_dict"])
    fresh, _ = build(name, load=False)
    fresh.load_state_dict(path)
    fresh.eval()
    x = x_of(name)
    np.testing.assert_array_equal(np.array(fresh(x)[0]), np.array(model(x)[0]))


def test_load_state_dict_names_every_missing_unexpected_and_misshaped_tensor():
    model, _ = build("cfc_relu_mixed_proj", load=False)
    sd = {k: np.array(v) for k, v in mx.load(str(FIXTURES / "cfc_relu_mixed_proj.safetensors")).items()}
    del sd["lstm.recurrent_map.weight"]
    sd["rnn_cell.gleak"] = np.zeros(3, np.float32)
    sd["fc.weight"] = np.zeros((5, 10), np.float32)
    before = np.array(model.rnn_cell.ff1.weight)
    with pytest.raises(NeuronStateDictError) as err:
        model.load_state_dict(sd)
    text = str(err.value)
    assert "missing: lstm.recurrent_map.weight (shape (40, 10))" in text
    assert "unexpected: rnn_cell.gleak" in text
    assert "wrong shape: fc.weight is (5, 10), expected (4, 10)" in text
    np.testing.assert_array_equal(np.array(model.rnn_cell.ff1.weight), before)  # nothing half-loaded


@pytest.mark.parametrize("name, mask", [("cfc_autoncp", "rnn_cell.layer_0.sparsity_mask"),
                                        ("ltc_random_linear_explicit", "rnn_cell.sensory_sparsity_mask")])
def test_load_state_dict_refuses_masks_that_disagree_with_the_wiring(name, mask):
    model, _ = build(name, load=False)
    model.wiring.set_polarity(*map(int, np.argwhere(model.wiring.sensory_adjacency_matrix != 0)[0]), 0, sensory=True)
    with pytest.raises(NeuronStateDictError, match=f"{mask} differs from the wiring's mask at 1 entries"):
        model.load_state_dict(FIXTURES / f"{name}.safetensors")


def test_load_state_dict_of_a_missing_file_says_which():
    model, _ = build("ltc_default", load=False)
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        model.load_state_dict("/nonexistent/nope.safetensors")


# -- the pure cells take an ncps state dict as it is -----------------------------------------------------------
@pytest.mark.parametrize("name", ["cfc_no_gate_silu", "cfc_autoncp", "ltc_ncp_timefirst_last"])
def test_pure_cells_on_the_ncps_file_reproduce_the_official_outputs(name):
    model, case = build(name, load=False)
    cell = {k[len("rnn_cell."):]: v for k, v in mx.load(str(FIXTURES / f"{name}.safetensors")).items()}
    x = REF[f"{name}/x"]
    if not case["kwargs"].get("batch_first", True):
        x = np.swapaxes(x, 0, 1)
    h = mx.zeros((x.shape[0], model.state_size))
    ys = []
    for t in range(x.shape[1]):
        xt = mx.array(x[:, t])
        if case["cls"] == "LTC":
            y, h = ltc_cell(xt, cell, h, 1.0, model.rnn_cell.config)
        elif "wiring" in case:
            layers = [{k.split(".", 1)[1]: v for k, v in cell.items() if k.startswith(f"layer_{i}.")} for i in range(3)]
            y, h = wired_cfc_cell(xt, layers, h, 1.0, model.rnn_cell.config)
        else:
            y, h = cfc_cell(xt, cell, h, 1.0, model.rnn_cell.config)
        ys.append(y)
    ref_y = REF[f"{name}/y"]
    if case["kwargs"].get("return_sequences", True):
        got = mx.stack(ys, axis=1) if case["kwargs"].get("batch_first", True) else mx.stack(ys, axis=0)
    else:
        got = ys[-1]
    assert_close(got, ref_y, f"{name} via the pure cell")
    assert_close(h, REF[f"{name}/h"], f"{name} state via the pure cell")


# -- input handling --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cfc_relu_mixed_proj", "ltc_ncp_timefirst_last"])
def test_unbatched_input_gives_the_batched_result_of_its_sample(name):
    model, case = build(name)
    bf = case["kwargs"].get("batch_first", True)
    x, h0, ts = REF[f"{name}/x"], REF[f"{name}/hx0"], REF[f"{name}/ts"]
    mixed = case["kwargs"].get("mixed_memory", False)
    x1, ts1 = (x[1], ts[1]) if bf else (x[:, 1], ts[:, 1])
    hx = (mx.array(h0[1]), mx.array(REF[f"{name}/cx0"][1])) if mixed else mx.array(h0[1])
    y, state = model(mx.array(x1), hx, mx.array(ts1))
    ref_y = REF[f"{name}/ts_y"]
    expected = ref_y if not case["kwargs"].get("return_sequences", True) else (ref_y if bf else np.swapaxes(ref_y, 0, 1))
    assert_close(y, expected[1], f"{name} unbatched output")
    assert_close(state[0] if mixed else state, REF[f"{name}/ts_h"][1], f"{name} unbatched state")


def test_timespans_of_shape_b_s_and_b_s_1_agree_and_other_shapes_are_named():
    model, _ = build("cfc_default")
    x = x_of("cfc_default")
    ts = mx.array(REF["cfc_default/ts"])
    np.testing.assert_array_equal(np.array(model(x, None, ts)[0]), np.array(model(x, None, ts[..., None])[0]))
    with pytest.raises(ValueError, match=r"timespans has shape \(6, 3\); for this input it must be \(3, 6\) or \(3, 6, 1\)"):
        model(x, None, ts.T)


def test_per_sample_timespans_change_each_sample_independently():
    model, _ = build("ltc_default")
    x = x_of("ltc_default")
    ts = np.ones((3, 6), np.float32)
    base, _ = model(x, None, mx.array(ts))
    ts[2] = 0.5
    moved, _ = model(x, None, mx.array(ts))
    np.testing.assert_array_equal(np.array(moved[:2]), np.array(base[:2]))
    assert float(mx.max(mx.abs(moved[2] - base[2]))) > 1e-4


def test_bad_states_and_inputs_get_named_errors():
    model, _ = build("cfc_relu_mixed_proj")
    x = x_of("cfc_relu_mixed_proj")
    with pytest.raises(TypeError, match=r"mixed_memory=True, hx must be a pair \(h0, c0\)"):
        model(x, mx.zeros((3, 10)))
    with pytest.raises(ValueError, match=r"hx\[1\] \(c0\) has shape \(3, 9\), expected \(3, 10\)"):
        model(x, (mx.zeros((3, 10)), mx.zeros((3, 9))))
    with pytest.raises(ValueError, match="input has 4 features per step, the module was built for input_size=5"):
        model(mx.zeros((3, 6, 4)))
    ltc, _ = build("ltc_default")
    with pytest.raises(ValueError, match="LTC timespans must all be > 0"):
        ltc(x, None, mx.zeros((3, 6)))


def test_constructor_arguments_are_checked_like_ncps_and_dead_ones_refused():
    with pytest.raises(ValueError, match="Unknown CfC mode 'fast'"):
        CfC(5, 8, mode="fast")
    with pytest.raises(ValueError, match="Unknown activation 'swish'"):
        CfC(5, 8, activation="swish")
    with pytest.raises(ValueError, match="Cannot use backbone_units in wired mode"):
        CfC(5, AutoNCP(12, 3), backbone_units=8)
    with pytest.raises(ValueError, match="has no effect in wired mode"):
        CfC(5, AutoNCP(12, 3), activation="relu")
    with pytest.raises(ValueError, match="its last layer has 8 neurons but output_dim is 3"):
        CfC(5, Random(8, 3, sparsity_level=0.5), proj_size=2)
    with pytest.warns(UserWarning, match="backbone_dropout=0.3 has no effect with backbone_layers=1"):
        CfC(5, 8, backbone_dropout=0.3)
    with pytest.raises(ValueError, match="Unknown LTC input_mapping 'identity'"):
        LTC(5, 8, input_mapping="identity")
    with pytest.raises(ValueError, match="Conflicting input dimensions"):
        LTC(5, _built(FullyConnected(8), 4))


def _built(wiring, d):
    wiring.build(d)
    return wiring


def test_backbone_dropout_acts_in_training_mode_only():
    model, _ = build("cfc_backbone3_gelu_dropout")
    x = x_of("cfc_backbone3_gelu_dropout")
    model.train()
    mx.random.seed(0)
    a, _ = model(x)
    b, _ = model(x)
    assert float(mx.max(mx.abs(a - b))) > 1e-4
    model.eval()
    assert_close(model(x)[0], REF["cfc_backbone3_gelu_dropout/y"], "eval output")


def test_ltc_explicit_constraints_clip_only_without_implicit_constraints():
    model, _ = build("ltc_random_linear_explicit")
    model.rnn_cell.w = -mx.abs(model.rnn_cell.w)
    model.apply_weight_constraints()
    assert float(mx.max(mx.abs(model.rnn_cell.w))) == 0.0
    implicit, _ = build("ltc_default")
    implicit.rnn_cell.w = -mx.abs(implicit.rnn_cell.w)
    implicit.apply_weight_constraints()
    assert float(mx.min(implicit.rnn_cell.w)) < 0.0


def test_wired_cfc_state_order_is_layer_by_layer():
    model = CfC(5, AutoNCP(12, 3))
    w = model.wiring
    assert model.state_order == w.get_neurons_of_layer(0) + w.get_neurons_of_layer(1) + w.get_neurons_of_layer(2)
    assert LTC(5, AutoNCP(12, 3)).state_order == list(range(12))


def test_masked_weights_get_zero_gradient_and_the_others_train():
    import mlx.nn as nn

    for name, param, mask_of in [
        ("cfc_autoncp", "rnn_cell.layer_0.ff1.weight", lambda m: np.array(m.rnn_cell.masks()[0])),
        ("ltc_autoncp_mixed", "rnn_cell.w", lambda m: np.abs(m.wiring.adjacency_matrix)),
        ("ltc_autoncp_mixed", "rnn_cell.sensory_w", lambda m: np.abs(m.wiring.sensory_adjacency_matrix)),
    ]:
        model, _ = build(name)
        x = x_of(name)
        loss = lambda m: mx.sum(m(x)[0] ** 2)
        _, grads = nn.value_and_grad(model, loss)(model)
        g = np.array(dict(tree_flatten(grads))[param])
        mask = mask_of(model)
        assert np.all(g[mask == 0] == 0), f"{name}: masked {param} entries got a gradient"
        assert np.count_nonzero(g[mask != 0]) > 0.5 * np.count_nonzero(mask), f"{name}: {param} barely trains"


def test_ltc_reports_sizes_and_live_synapse_counts_of_its_wiring():
    ltc = LTC(5, AutoNCP(12, 3))
    w = ltc.wiring
    assert (ltc.state_size, ltc.sensory_size, ltc.motor_size, ltc.output_size) == (12, 5, 3, 3)
    sensory = int(np.abs(w.sensory_adjacency_matrix).sum())
    assert ltc.sensory_synapse_count == sensory != ltc.synapse_count
    s, d = map(int, np.argwhere(w.sensory_adjacency_matrix != 0)[0])
    w.set_polarity(s, d, 0, sensory=True)
    assert ltc.sensory_synapse_count == sensory - 1


def test_a_bfloat16_state_dict_loads_as_float32_of_the_same_values(tmp_path):
    tensors = mx.load(str(FIXTURES / "cfc_pure.safetensors"))
    path = tmp_path / "bf16.safetensors"
    mx.save_safetensors(str(path), {k: v.astype(mx.bfloat16) for k, v in tensors.items()})
    model, _ = build("cfc_pure", load=False)
    model.load_state_dict(path)
    ff1 = model.rnn_cell.ff1.weight
    assert ff1.dtype == mx.float32
    np.testing.assert_array_equal(np.array(ff1), np.array(tensors["rnn_cell.ff1.weight"].astype(mx.bfloat16).astype(mx.float32)))


def test_a_new_ltc_starts_with_reversal_potentials_equal_to_the_wiring_polarity():
    ltc = LTC(5, AutoNCP(12, 3))
    sd = ltc.state_dict()
    w = ltc.wiring
    np.testing.assert_array_equal(np.array(sd["rnn_cell.erev"]), w.adjacency_matrix.astype(np.float32))
    np.testing.assert_array_equal(np.array(sd["rnn_cell.sensory_erev"]), w.sensory_adjacency_matrix.astype(np.float32))
    np.testing.assert_array_equal(np.array(sd["rnn_cell.sparsity_mask"]), np.abs(w.adjacency_matrix))


@pytest.mark.parametrize("edit", ["none", "added synapses", "fractional masks"])
def test_the_ltc_sparse_synapse_path_agrees_with_the_dense_one(edit):
    model, _ = build("ltc_autoncp_mixed")
    w = model.wiring
    if edit == "added synapses":  # the synapse lists follow the wiring
        for s, d in np.argwhere(w.adjacency_matrix == 0)[:3]:
            w.set_polarity(int(s), int(d), -1)
        s, d = np.argwhere(w.sensory_adjacency_matrix == 0)[0]
        w.set_polarity(int(s), int(d), 1, sensory=True)
    weights = model.rnn_cell.weights()
    if edit == "fractional masks":  # the pure cell honours mask values, not only their support
        for name in ("sparsity_mask", "sensory_sparsity_mask"):
            weights[name] = weights[name] * mx.random.uniform(0.2, 1.0, weights[name].shape, key=mx.random.key(1))
    assert "synapse_index" in weights and "sensory_synapse_index" in weights  # AutoNCP masks are sparse
    dense = {k: v for k, v in weights.items() if not k.endswith("synapse_index")}
    x, v = mx.array(REF["ltc_autoncp_mixed/x"][:, 0]), mx.array(REF["ltc_autoncp_mixed/hx0"])
    ts = mx.array(REF["ltc_autoncp_mixed/ts"][:, 0])[:, None]
    out_sparse, v_sparse = ltc_cell(x, weights, v, ts, model.rnn_cell.config)
    out_dense, v_dense = ltc_cell(x, dense, v, ts, model.rnn_cell.config)
    assert_close(v_sparse, np.array(v_dense), "state, sparse vs dense")
    assert_close(out_sparse, np.array(out_dense), "output, sparse vs dense")
    assert "synapse_index" not in model.state_dict() and "rnn_cell.synapse_index" not in model.state_dict()
