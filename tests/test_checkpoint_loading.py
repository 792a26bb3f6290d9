"""Strict loading: every problem of a checkpoint folder is named, nothing is skipped."""

import json
import shutil

import mlx.core as mx
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import xlstm_viz
from xlstm_viz.checkpoint import CheckpointError
from xlstm_viz.config import ConfigError, XLSTMConfig


@pytest.fixture
def tiny(tmp_path, golden_dir):
    folder = tmp_path / "tiny"
    shutil.copytree(golden_dir / "tiny", folder)
    (folder / "reference.npz").unlink()
    return folder


def _rewrite(folder, edit):
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors")


def test_sharded_checkpoint_loads_identically_to_single_file(golden_dir):
    ids = mx.array(np.load(golden_dir / "tiny" / "reference.npz")["input_ids"])
    single, _ = xlstm_viz.load_model(golden_dir / "tiny")(ids)
    sharded, _ = xlstm_viz.load_model(golden_dir / "tiny_sharded", progress=False)(ids)
    np.testing.assert_array_equal(np.array(single), np.array(sharded))


def test_config_prefers_xlstm_names_over_hf_aliases():
    config = XLSTMConfig.from_dict({"embedding_dim": 64, "hidden_size": 4096, "num_blocks": 2,
                                    "num_hidden_layers": 32, "num_heads": 4, "vocab_size": 10,
                                    "chunkwise_kernel": "some--future_kernel"})
    assert (config.embedding_dim, config.num_blocks) == (64, 2)
    assert config.chunkwise_kernel == "some--future_kernel"  # unknown kernel names are not an error
    alias_only = XLSTMConfig.from_dict({"hidden_size": 128, "num_hidden_layers": 3, "num_heads": 4, "vocab_size": 10})
    assert (alias_only.embedding_dim, alias_only.num_blocks) == (128, 3)


def test_missing_unexpected_and_misshaped_tensors_are_all_named_in_one_error(tiny):
    def edit(t):
        del t["backbone.blocks.1.mlstm_layer.k.weight"]
        t["backbone.blocks.0.extra.weight"] = np.zeros((3,), np.float32)
        t["backbone.blocks.0.mlstm_layer.igate_preact.bias"] = np.zeros((5,), np.float32)

    _rewrite(tiny, edit)
    with pytest.raises(CheckpointError) as err:
        xlstm_viz.load_model(tiny)
    text = str(err.value)
    assert "missing:    backbone.blocks.1.mlstm_layer.k.weight  expected shape [32, 64]" in text
    assert "unexpected: backbone.blocks.0.extra.weight" in text
    assert "mis-shaped: backbone.blocks.0.mlstm_layer.igate_preact.bias  expected [4], found [5]" in text


def test_config_contradicting_tensor_shapes_is_reported(tiny):
    config = json.loads((tiny / "config.json").read_text())
    config["embedding_dim"] = 128
    (tiny / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config.json says vocab_size=97, embedding_dim=128 but "
                                              r"backbone.embeddings.weight is \[97, 64\]"):
        xlstm_viz.load_model(tiny)


def test_truncated_file_is_detected_from_the_header(tiny):
    data = (tiny / "model.safetensors").read_bytes()
    (tiny / "model.safetensors").write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match="truncated; tensors past the end: .*"):
        xlstm_viz.load_model(tiny)


def test_corrupt_header_is_reported(tiny):
    data = bytearray((tiny / "model.safetensors").read_bytes())
    data[10:20] = b"\xff" * 10
    (tiny / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="header is not valid JSON"):
        xlstm_viz.load_model(tiny)


def test_xlstm_package_naming_gets_a_rename_hint(tiny):
    _rewrite(tiny, lambda t: t.__setitem__("embedding.weight", t.pop("backbone.embeddings.weight")))
    with pytest.raises(CheckpointError, match="rename to backbone.embeddings.weight"):
        xlstm_viz.load_model(tiny)


def test_index_naming_a_missing_shard_is_an_error(tmp_path, golden_dir):
    folder = tmp_path / "sharded"
    shutil.copytree(golden_dir / "tiny_sharded", folder)
    next(folder.glob("model-00002*.safetensors")).unlink()
    with pytest.raises(CheckpointError, match="shard files that do not exist: .*model-00002-of-00002"):
        xlstm_viz.load_model(folder)


def test_bad_config_values_name_the_field(tiny):
    config = json.loads((tiny / "config.json").read_text())
    config["num_heads"] = 5
    (tiny / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="qk_dim .* = 32 must be a positive multiple of num_heads = 5"):
        xlstm_viz.load_model(tiny)


def test_missing_folder_and_missing_weights_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        xlstm_viz.load_model(tmp_path / "nope")
    (tmp_path / "config.json").write_text(json.dumps({"embedding_dim": 64, "num_heads": 4, "num_blocks": 1,
                                                      "vocab_size": 10}))
    with pytest.raises(FileNotFoundError, match="neither model.safetensors nor model.safetensors.index.json"):
        xlstm_viz.load_model(tmp_path)


def test_fused_weight_mode_loads_to_the_same_model(tmp_path, golden_dir):
    ref = np.load(golden_dir / "tiny" / "reference.npz")
    tensors = load_file(golden_dir / "tiny" / "model.safetensors")
    fused = {}
    for name, w in tensors.items():
        if name.endswith("mlstm_layer.q.weight"):
            p = name[: -len("q.weight")]
            fused[p + "qkv_opreact.weight"] = np.concatenate(
                [tensors[p + "q.weight"], tensors[p + "k.weight"], tensors[p + "v.weight"], tensors[p + "ogate_preact.weight"]])
            for leaf in ("weight", "bias"):
                fused[p + f"ifgate_preact.{leaf}"] = np.concatenate(
                    [tensors[p + f"igate_preact.{leaf}"], tensors[p + f"fgate_preact.{leaf}"]])
        elif name.endswith("ffn.proj_up_gate.weight"):
            p = name[: -len("proj_up_gate.weight")]
            fused[p + "proj_up_gate_z.weight"] = np.concatenate([w, tensors[p + "proj_up.weight"]])
        elif not any(s in name for s in (".k.weight", ".v.weight", "ogate_preact", "igate_preact", "fgate_preact",
                                          "proj_up.weight")):
            fused[name] = w
    folder = tmp_path / "fused"
    folder.mkdir()
    save_file(fused, folder / "model.safetensors")
    config = json.loads((golden_dir / "tiny" / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, weight_mode="fused")))
    logits, _ = xlstm_viz.load_model(folder)(mx.array(ref["input_ids"]))
    np.testing.assert_allclose(np.array(logits), ref["logits_chunkwise"], atol=1e-3, rtol=0)


def test_bad_input_ids_are_named(golden_dir):
    model = xlstm_viz.load_model(golden_dir / "tiny")
    with pytest.raises(ValueError, match=r"input_ids\[0, 2\] = 97 is outside the vocabulary \[0, 97\)"):
        model(mx.array([[1, 2, 97]]))
    with pytest.raises(ValueError, match=r"shape \[B, S\], got shape \(3,\)"):
        model(mx.array([1, 2, 3]))
    with pytest.raises(TypeError, match="integer dtype"):
        model(mx.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="mode must be one of"):
        model(mx.array([[1, 2]]), mode="parallel")
    _, state = model(mx.array([[1, 2]]))
    with pytest.raises(ValueError, match=r"state\[0\].C has shape \(1, 4, 8, 16\), expected \(2, 4, 8, 16\)"):
        model(mx.array([[1], [2]]), state=state, mode="recurrent")


def test_generate_streams_greedy_tokens_consistent_with_the_forward(golden_dir):
    model = xlstm_viz.load_model(golden_dir / "tiny")
    prompt = [5, 17, 3, 44]
    tokens = list(xlstm_viz.generate(model, prompt, max_new_tokens=6))
    assert len(tokens) == 6
    ids = list(prompt)
    for tok in tokens:  # each greedy token is the argmax of a full re-run of the sequence so far
        logits, _ = model(mx.array([ids]))
        assert int(mx.argmax(logits[0, -1]).item()) == tok
        ids.append(tok)
    sampled = list(xlstm_viz.generate(model, prompt, max_new_tokens=6, temperature=1.0, top_k=5, seed=3))
    assert sampled == list(xlstm_viz.generate(model, prompt, max_new_tokens=6, temperature=1.0, top_k=5, seed=3))
    with pytest.raises(ValueError, match="needs a tokenizer"):
        next(iter(xlstm_viz.generate(model, "hello", 2)))


def test_generate_text_in_text_out_with_a_tokenizer(tmp_path, golden_dir):
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = tmp_path / "tok"
    shutil.copytree(golden_dir / "tiny", folder)
    vocab = {f"w{i}": i for i in range(97)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))
    model = xlstm_viz.load_model(folder)
    pieces = list(xlstm_viz.generate(model, "w5 w17 w3", max_new_tokens=3))
    assert len(pieces) == 3 and all(isinstance(p, str) and p.strip().startswith("w") for p in pieces)
