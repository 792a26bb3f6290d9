"""HyperProfiles: bundled profiles load, validate, and initialise parameters as documented."""

import json

import numpy as np
import pytest
from pydantic import ValidationError

import xlstm_viz.wiring as W

NH, D = 8, 64


def test_bundled_profiles_are_listed_and_load_by_name():
    names = W.list_profiles()
    assert {"xlstm-large", "golden-random", "mqar-demo"} <= set(names)
    for name in names:
        profile = W.load_profile(name)
        assert profile.name == name and profile.description
        assert W.HyperProfile.from_json(profile.to_json()) == profile


def test_xlstm_large_matches_the_transformers_init():
    profile, rng = W.load_profile("xlstm-large"), np.random.default_rng(0)
    block = "backbone.blocks.0."
    init = lambda name, shape: profile.init_parameter(name, shape, rng)  # noqa: E731
    assert not init(block + "mlstm_layer.igate_preact.weight", (NH, D)).any()
    assert not init(block + "mlstm_layer.fgate_preact.weight", (NH, D)).any()
    np.testing.assert_array_equal(init(block + "mlstm_layer.igate_preact.bias", (NH,)), np.full(NH, -10.0, np.float32))
    np.testing.assert_array_equal(init(block + "mlstm_layer.fgate_preact.bias", (NH,)), np.linspace(3, 6, NH).astype(np.float32))
    np.testing.assert_array_equal(init(block + "mlstm_layer.multihead_norm.weight", (D,)), np.ones(D, np.float32))
    np.testing.assert_array_equal(init("backbone.out_norm.weight", (D,)), np.ones(D, np.float32))
    q = init(block + "mlstm_layer.q.weight", (256, 256))
    assert q.dtype == np.float32 and abs(float(q.std()) - 0.02) < 0.001 and abs(float(q.mean())) < 0.001


def test_init_is_deterministic_for_a_seeded_generator():
    profile = W.load_profile("golden-random")
    a = profile.init_array("gate_weight", (4, 8), np.random.default_rng(3))
    b = profile.init_array("gate_weight", (4, 8), np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)


def test_golden_random_gate_preactivations_reach_the_soft_cap():
    profile, rng = W.load_profile("golden-random"), np.random.default_rng(1)
    x = rng.standard_normal((256, D)).astype(np.float32)  # RMS-normalised input has unit scale
    w = profile.init_array("gate_weight", (NH, D), rng)
    b = profile.init_array("igate_bias", (NH,), rng)
    preact = x @ w.T + b
    assert (np.abs(preact) > profile.extras["gate_soft_cap"]).mean() > 0.05


def test_mqar_linear_init_scales_with_fan_in():
    profile = W.load_profile("mqar-demo")
    w = profile.init_array("linear", (512, 400), np.random.default_rng(0))
    assert abs(float(w.std()) - 1 / np.sqrt(400)) < 0.002


def test_profiles_are_immutable():
    profile = W.load_profile("xlstm-large")
    with pytest.raises(ValidationError, match="frozen"):
        profile.name = "other"
    with pytest.raises(TypeError):
        profile.initializers["linear"] = {"dist": "constant", "value": 0.0}


def base():
    return W.load_profile("xlstm-large").to_dict()


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d["initializers"].update(linear={"dist": "cauchy", "std": 1}), r"initializers\.linear: Input tag 'cauchy' found using 'dist'"),
        (lambda d: d["initializers"].update(linear={"dist": "normal"}), r"initializers\.linear\.std: missing"),
        (lambda d: d["initializers"].update(linear={"dist": "normal", "std": 1, "sigma": 2}), r"initializers\.linear\.sigma: unknown field"),
        (lambda d: d["initializers"].update(linear={"dist": "normal", "std": -1}), r"initializers\.linear\.std: Input should be greater than or equal to 0 \(got -1\)"),
        (lambda d: d["initializers"].update(norm={"dist": "uniform", "low": 2, "high": 1}), r"initializers\.norm: Value error, low 2\.0 is above high 1\.0"),
        (lambda d: d["initializers"].update(norm={"dist": "constant", "value": "one"}), r"initializers\.norm\.value: Input should be a valid number \(got 'one'\)"),
        (lambda d: d["initializers"].update(norm={"dist": "constant", "value": float("nan")}), r"initializers\.norm\.value: Value error, must be a finite number, got nan"),
        (lambda d: d["initializers"].update(norm={"dist": "normal", "std": 1, "scale": "fan_out"}), r"initializers\.norm\.scale: Input should be 'fan_in' \(got 'fan_out'\)"),
        (lambda d: d.update(colour="red"), r"colour: unknown field"),
        (lambda d: d.update(constraints={"logits": {"max": 30}}), r"constraints: unknown field \(profiles no longer have 'constraints' or 'solver'"),
        (lambda d: d.update(solver={"optimizer": "adamw"}), r"solver: unknown field"),
        (lambda d: d.pop("initializers"), r"initializers: missing"),
        (lambda d: d.update(name=""), r"name: String should have at least 1 character"),
        (lambda d: d.update(description=3), r"description: Input should be a valid string \(got 3\)"),
        (lambda d: d.update(extras=[1, 2]), r"extras: Input should be a valid dictionary"),
    ],
)
def test_invalid_profiles_are_rejected_naming_the_field(mutate, message):
    data = base()
    mutate(data)
    with pytest.raises(ValueError, match=message):
        W.HyperProfile.from_dict(data)


def test_load_profile_from_a_path_and_unknown_names(tmp_path):
    data = base()
    data["name"] = "mine"
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    assert W.load_profile(path).name == "mine"
    with pytest.raises(ValueError, match=r"no bundled profile 'nope'; available: \[.*'xlstm-large'"):
        W.load_profile("nope")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON"):
        W.load_profile(tmp_path / "broken.json")


def test_missing_initializer_kind_and_unknown_parameter_names_are_errors():
    profile = W.load_profile("xlstm-large")
    with pytest.raises(KeyError, match=r"no initializer for 'conv'"):
        profile.init_array("conv", (3,), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"no initializer kind for parameter 'backbone\.blocks\.0\.scale'"):
        W.parameter_kind("backbone.blocks.0.scale")


def test_a_profile_initialises_a_stack_of_every_block_type_and_offset_norms_get_the_profiles_scale():
    """XLSTM(config, init_profile=...) (and train(init=...)) failed for every stack with an sLSTM, original mLSTM,
    LTC or memory-neuron block ("no initializer kind for parameter '...recurrent_kernel'" / 'learnable_skip' /
    'cm' / 'layer_0.R' / 'gate_bias'). Now those parameters without a kind keep the values their module was built
    with (the official / ncps initialisation), and the norms that store an offset from 1 (sLSTM and original mLSTM
    blocks, a layernorm_offset out_norm) get the profile's scale as 1 + w, not 1 + the scale."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from xlstm_viz.config import XLSTMConfig
    from xlstm_viz.model import XLSTM

    types = ["mlstm", "slstm", "orig_mlstm", "cfc", "ltc", "ncp_slstm", "ncp_mlstm"]
    config = XLSTMConfig.from_dict(dict(embedding_dim=32, num_heads=2, num_blocks=len(types), vocab_size=20,
                                        block_types=types, out_norm_type="layernorm_offset",
                                        ncps={"units": 12, "output_size": 4, "seed": 7},
                                        bos_token_id=None, eos_token_id=None, pad_token_id=0))
    mx.random.seed(0)
    built = dict(tree_flatten(XLSTM(config).parameters()))
    mx.random.seed(0)
    model = XLSTM(config, init_profile="xlstm-large", seed=3)
    params = dict(tree_flatten(model.parameters()))
    scale = float(params["backbone.blocks.0.norm_mlstm.weight"][0])  # the profile's norm scale, on the 7B block
    offsets = [n for n in params if n.endswith("norm.weight") or "norm_" in n]
    for name in offsets:
        j = name.split(".")[2] if name.startswith("backbone.blocks.") else None
        stored = 1 + np.array(params[name]) if (j in ("1", "2") or name == "backbone.out_norm.weight") else \
            np.array(params[name])
        np.testing.assert_array_equal(stored, np.full(stored.shape, scale, np.float32), err_msg=name)
    kept = [n for n in params if n.endswith(("recurrent_kernel", "learnable_skip", "rnn_cell.cm", "rnn_cell.gleak",
                                             "layer_0.R", "layer_0.gate_bias"))]
    assert len(kept) == 6
    for name in kept:
        np.testing.assert_array_equal(np.array(params[name]), np.array(built[name]), err_msg=name)
    drawn = "backbone.blocks.1.slstm_layer.igate.weight"
    assert float(mx.abs(params[drawn]).max()) > 0 and not np.array_equal(np.array(params[drawn]),
                                                                          np.array(built[drawn]))
    again = dict(tree_flatten(XLSTM(config, init_profile="xlstm-large", seed=3).parameters()))
    np.testing.assert_array_equal(np.array(again[drawn]), np.array(params[drawn]))
    logits, _ = model(mx.array([[1, 2, 3, 4, 5]]))
    assert np.isfinite(np.array(logits)).all()
