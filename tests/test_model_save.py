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


def _biased_model():
    from xlstm_viz.config import XLSTMConfig
    from xlstm_viz.model import XLSTM

    config = XLSTMConfig(embedding_dim=32, num_heads=2, num_blocks=2, vocab_size=41, chunk_size=8, use_bias=True,
                         weight_mode="fused")
    model = XLSTM(config)
    # Non-zero biases everywhere, so a bias that is dropped or split at the wrong row changes the logits.
    rng = np.random.default_rng(0)
    from mlx.utils import tree_flatten, tree_unflatten

    params = {k: mx.array(rng.normal(size=v.shape).astype(np.float32) * 0.3) for k, v in
              tree_flatten(model.parameters())}
    model.update(tree_unflatten(list(params.items())))
    return model


def test_a_fused_model_with_biases_saves_and_loads_back_to_the_same_logits(tmp_path):
    model = _biased_model()
    model.save(tmp_path / "saved")
    names = _header(tmp_path / "saved")
    assert "backbone.blocks.0.mlstm_layer.qkv_opreact.bias" in names
    assert "backbone.blocks.1.ffn.proj_up_gate_z.bias" in names
    again = xlstm_viz.load_model(tmp_path / "saved")
    ids = mx.array(np.arange(12).reshape(2, 6) % 41)
    np.testing.assert_array_equal(np.array(again(ids)[0]), np.array(model(ids)[0]))


def test_a_fused_config_with_single_mode_tensors_is_refused_naming_them(golden_dir, tmp_path):
    import shutil

    folder = tmp_path / "mixed"
    shutil.copytree(golden_dir / "tiny", folder)  # single-mode tensors ...
    config = json.loads((folder / "config.json").read_text())
    config["weight_mode"] = "fused"  # ... under a config that promises fused ones (what the old save wrote)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(xlstm_viz.CheckpointError, match=r"single-mode tensor in a fused checkpoint: "
                                                         r"backbone\.blocks\.0\.mlstm_layer\.q\.weight"):
        xlstm_viz.load_model(folder)


def test_save_refuses_a_dtype_load_model_cannot_read_back(golden_dir, tmp_path):
    model = xlstm_viz.load_model(golden_dir / "tiny")
    with pytest.raises(ValueError, match=r"save dtype must be None \(as in memory\) or one of .*got 'int8'"):
        model.save(tmp_path / "int8", dtype="int8")  # wrote int8-truncated weights
    assert not (tmp_path / "int8").exists()
    again = xlstm_viz.load_model(model.save(tmp_path / "bf16", dtype="bfloat16"))
    assert again.backbone.embeddings.weight.dtype == mx.float32  # read back, widened to the default load dtype


def test_compiled_refuses_an_unknown_mode_when_it_is_asked_for(golden_dir):
    model = xlstm_viz.load_model(golden_dir / "tiny")
    with pytest.raises(ValueError, match=r"compiled mode must be one of \('chunkwise', 'recurrent'\), got 'step'"):
        model.compiled("step")
