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
