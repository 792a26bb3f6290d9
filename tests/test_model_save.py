"""XLSTM.save writes folders that the official loader accepts (checked by tools/golden_model.py, recorded in
tests/fixtures/golden/tiny_fused/official_accepts_save.json) and that load_model reads back unchanged."""

import json

import mlx.core as mx
import numpy as np
import pytest
from safetensors import safe_open

import xlstm_viz

pytestmark = pytest.mark.numerical


def _header(folder):
    with safe_open(str(folder / "model.safetensors"), "numpy") as fh:
        return {k: list(fh.get_slice(k).get_shape()) for k in fh.keys()}


def test_official_fused_checkpoint_loads_to_the_tiny_model(golden_dir):
    ref = np.load(golden_dir / "tiny" / "reference.npz")
    model = xlstm_viz.load_model(golden_dir / "tiny_fused")
    logits, _ = model(mx.array(ref["input_ids"]))
    np.testing.assert_allclose(np.array(logits), ref["logits_chunkwise"], atol=1e-3, rtol=0)


def test_saving_a_fused_model_writes_the_layout_the_official_loader_accepted(golden_dir, tmp_path):
    accepted = json.loads((golden_dir / "tiny_fused" / "official_accepts_save.json").read_text())
    assert accepted["official_strict_load"] == "ok" and accepted["weight_mode"] == "fused"
    xlstm_viz.load_model(golden_dir / "tiny_fused").save(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["weight_mode"] == accepted["weight_mode"]
    assert _header(tmp_path / "saved") == accepted["tensors"]


def test_a_saved_fused_model_loads_back_to_the_same_logits(golden_dir, tmp_path):
    ids = mx.array(np.load(golden_dir / "tiny" / "reference.npz")["input_ids"])
    model = xlstm_viz.load_model(golden_dir / "tiny_fused")
    model.save(tmp_path / "saved")
    again = xlstm_viz.load_model(tmp_path / "saved")
    assert again.config.weight_mode == "fused"
    np.testing.assert_array_equal(np.array(again(ids)[0]), np.array(model(ids)[0]))


def test_saving_a_single_mode_model_keeps_the_single_names(golden_dir, tmp_path):
    xlstm_viz.load_model(golden_dir / "tiny").save(tmp_path / "saved")
    assert _header(tmp_path / "saved") == _header(golden_dir / "tiny")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["weight_mode"] == "single"
