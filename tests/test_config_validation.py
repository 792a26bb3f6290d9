"""Every XLSTMConfig field is type- and range-checked (pydantic) before any module is built; errors name field and value."""

import dataclasses
import json
import shutil
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest
from safetensors import safe_open

import xlstm_viz
from xlstm_viz.config import ConfigError, XLSTMConfig
from xlstm_viz.dims import model_parameters
from xlstm_viz.model import XLSTM

SMALL = dict(embedding_dim=64, num_heads=4, num_blocks=2, vocab_size=50)
FIELDS = [f for f in dataclasses.fields(XLSTMConfig) if f.name != "extra"]


@pytest.fixture
def tiny(tmp_path, golden_dir):
    folder = tmp_path / "tiny"
    shutil.copytree(golden_dir / "tiny", folder)
    return folder


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("field,value,message", [
    ("qk_dim_factor", "0.5", "config field 'qk_dim_factor' = '0.5' (str): input should be a valid number"),
    ("ffn_round_up_to_multiple_of", 0, "config field 'ffn_round_up_to_multiple_of' = 0 (int): input should be greater than 0"),
    ("norm_eps", "1e-6", "config field 'norm_eps' = '1e-6' (str): input should be a valid number"),
    ("num_heads", 4.0, "config field 'num_heads' = 4.0 (float): input should be a valid integer"),
    ("use_bias", 0, "config field 'use_bias' = 0 (int): input should be a valid boolean"),
    ("weight_mode", "fuse", "config field 'weight_mode' = 'fuse' (str): input should be 'single' or 'fused'"),
    ("gate_soft_cap", -15.0, "config field 'gate_soft_cap' = -15.0 (float): input should be greater than 0"),
    ("block_types", ["mlstm", 7], "config field 'block_types[1]' = 7 (int): input should be a valid string"),
    ("pad_token_id", -1, "config field 'pad_token_id' = -1 (int): input should be greater than or equal to 0"),
])
def test_a_bad_config_json_value_is_refused_naming_field_and_value(tiny, field, value, message):
    _edit_config(tiny, **{field: value})
    with pytest.raises(ConfigError) as err:
        xlstm_viz.load_model(tiny)
    assert str(err.value).startswith(str(tiny / "config.json")) and message in str(err.value)


def test_every_field_is_type_checked():
    for f in FIELDS:
        with pytest.raises(ConfigError, match=f"config field '{f.name}' = {{'x': 1}} \\(dict\\)"):
            XLSTMConfig(**{**SMALL, f.name: {"x": 1}})


def test_every_numeric_field_is_range_checked():
    numeric = [f for f in FIELDS if isinstance(f.default, (int, float)) and not isinstance(f.default, bool)]
    assert {"embedding_dim", "norm_eps", "ffn_round_up_to_multiple_of", "chunk_size", "eos_token_id"} <= {
        f.name for f in numeric}
    for f in numeric:
        with pytest.raises(ConfigError, match=f"config field '{f.name}' = -1 \\(int\\): input should be greater"):
            XLSTMConfig(**{**SMALL, f.name: -1})


def test_all_bad_fields_are_listed_in_one_error():
    with pytest.raises(ConfigError) as err:
        XLSTMConfig.from_dict({**SMALL, "norm_eps": "1e-6", "chunk_size": 0})
    assert "'norm_eps'" in str(err.value) and "'chunk_size'" in str(err.value)


def test_a_config_changed_after_it_was_made_is_checked_before_modules_are_built():
    config = XLSTMConfig(**SMALL)
    config.num_heads = 3  # valid alone; inconsistent with the width until embedding_dim changes too
    with pytest.raises(ConfigError, match="num_heads = 3"):
        XLSTM(config)


def test_a_field_assigned_a_bad_value_after_the_config_was_made_is_refused_at_once_and_kept():
    """A model reads its config on every call (chunk_size may be changed between calls): `model.config.chunk_size
    = 0` was accepted and the next forward failed with ZeroDivisionError (integer modulo by zero), "4" with a
    TypeError inside the cell. Now the assignment is refused with the field's message and the field keeps its
    value, so the model still runs."""
    model = XLSTM(XLSTMConfig(**SMALL))
    ids = mx.array([[1, 2, 3, 4, 5]])
    want, _ = model(ids)
    for name, value, message in (("chunk_size", 0, "input should be greater than 0"),
                                 ("chunk_size", "4", "input should be a valid integer"),
                                 ("norm_eps", "1e-6", "input should be a valid number"),
                                 ("gate_soft_cap", float("nan"), "input should be a finite number")):
        before = getattr(model.config, name)
        with pytest.raises(ConfigError, match=rf"config field '{name}' = .*: {message}"):
            setattr(model.config, name, value)
        assert getattr(model.config, name) == before
    np.testing.assert_array_equal(np.array(model(ids)[0]), np.array(want))
    model.config.chunk_size = 2  # a good value still goes in, and is used
    np.testing.assert_allclose(np.array(model(ids)[0]), np.array(want), rtol=1e-4, atol=1e-5)


def test_hf_extras_are_kept_and_written_back():
    config = XLSTMConfig.from_dict({**SMALL, "torch_dtype": "bfloat16", "transformers_version": "4.48"})
    assert config.extra == {"torch_dtype": "bfloat16", "transformers_version": "4.48"}
    again = XLSTMConfig.from_dict(config.to_dict())
    assert again == config and again.to_dict()["transformers_version"] == "4.48"


def test_a_config_json_that_is_not_utf8_is_named(tiny):
    (tiny / "config.json").write_bytes(b'{"embedding_dim": 64, "x": "\xff"}')
    # load_model refuses the file at its boundary (the checkpoint reader), XLSTMConfig.from_json on its own.
    with pytest.raises(xlstm_viz.CheckpointError, match=r"config\.json .*config\.json is not UTF-8"):
        xlstm_viz.load_model(tiny)
    with pytest.raises(ConfigError, match="config.json is not UTF-8"):
        XLSTMConfig.from_json(tiny / "config.json")


def test_a_config_that_fits_only_in_bfloat16_is_not_refused(monkeypatch):
    import xlstm_viz.model.xlstm as xlstm_module

    config = XLSTMConfig(**SMALL)
    count = XLSTM(config).num_parameters()
    monkeypatch.setattr(xlstm_module, "machine_memory_bytes", lambda: 3 * count)  # < float32, > bfloat16
    XLSTM(config)
    monkeypatch.setattr(xlstm_module, "machine_memory_bytes", lambda: 2 * count - 1)
    with pytest.raises(ConfigError, match=f"describes {count:,} parameters"):
        XLSTM(config)


def test_a_million_blocks_is_refused_at_once_naming_parameters_and_memory():
    # In a subprocess: before the check, building the modules took 13 s and then aborted the whole process.
    code = ("from xlstm_viz.config import XLSTMConfig; from xlstm_viz.model import XLSTM; "
            "XLSTM(XLSTMConfig(num_blocks=1000000))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert "ConfigError: the config describes 201,666,988,094,464 parameters" in result.stderr
    assert "GiB even in bfloat16) but this machine has" in result.stderr and "num_blocks=1000000" in result.stderr


@pytest.mark.parametrize("changes", [{}, {"use_bias": True}, {"add_out_norm": False, "qk_dim_factor": 0.25},
                                     {"tie_word_embeddings": True, "embedding_dim": 96}])
def test_the_parameter_estimate_is_the_models_count(changes):
    config = XLSTMConfig(**{**SMALL, **changes})
    assert model_parameters(config.dims, config.num_blocks, config.vocab_size, config.use_bias, config.add_out_norm,
                            config.tie_word_embeddings) == XLSTM(config).num_parameters()


def test_tied_embeddings_make_the_embedding_matrix_the_head(golden_dir, tmp_path):
    folder = tmp_path / "tied"
    shutil.copytree(golden_dir / "tiny", folder)
    _edit_config(folder, tie_word_embeddings=True)
    with safe_open(str(golden_dir / "tiny" / "model.safetensors"), "numpy") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys() if k != "lm_head.weight"}
    from safetensors.numpy import save_file
    save_file(tensors, folder / "model.safetensors")
    model = xlstm_viz.load_model(folder)  # no lm_head.weight in the file, and none expected
    assert "lm_head.weight" not in model.checkpoint_shapes()

    ids = mx.array(np.load(golden_dir / "tiny" / "reference.npz")["input_ids"])
    trace = model.run_with_trace(ids, probes=["out_norm", "logits"], mode="full")
    E = tensors["backbone.embeddings.weight"].astype(np.float64)
    want = 30.0 * np.tanh(trace.full["out_norm"].astype(np.float64) @ E.T / 30.0)
    np.testing.assert_allclose(trace.full["logits"], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())

    model.save(tmp_path / "saved")
    with safe_open(str(tmp_path / "saved" / "model.safetensors"), "numpy") as fh:
        assert "lm_head.weight" not in fh.keys()
    again = xlstm_viz.load_model(tmp_path / "saved")
    np.testing.assert_array_equal(np.array(again(ids)[0]), np.array(model(ids)[0]))
    # a tied checkpoint that still carries lm_head.weight is refused by name, not silently half-used
    with pytest.raises(xlstm_viz.CheckpointError, match="unexpected: lm_head.weight"):
        shutil.copy(golden_dir / "tiny" / "model.safetensors", folder / "model.safetensors")
        xlstm_viz.load_model(folder)


@pytest.mark.parametrize("field, value, message", [
    ("norm_reduction_force_float32", False, "'norm_reduction_force_float32' = False: xlstm-viz reduces every norm in float32"),
    ("inference_state_dtype", "bfloat16", "'inference_state_dtype' = 'bfloat16': xlstm-viz keeps the memory states in float32"),
])
def test_config_values_the_forward_would_ignore_are_refused(tiny, field, value, message):
    # Both change the official computation; this forward reduces norms and keeps states in float32 whatever they
    # say, so a checkpoint that asks for bf16 reductions or states is refused by name instead of run otherwise.
    with pytest.raises(ConfigError, match=message):
        XLSTMConfig(**SMALL, **{field: value})
    _edit_config(tiny, **{field: value})
    with pytest.raises(ConfigError, match=message):
        xlstm_viz.load_model(tiny)


def test_the_float32_states_and_reductions_that_the_config_promises_are_what_runs(tiny):
    model = xlstm_viz.load_model(tiny, dtype="bfloat16", compute_dtype="bfloat16")
    _, state = model(mx.array([[1, 2, 3]]), mode="chunkwise")
    assert model.config.inference_state_dtype == "float32" and model.config.norm_reduction_force_float32
    assert {state[0].C.dtype, state[0].n.dtype, state[0].m.dtype} == {mx.float32}
