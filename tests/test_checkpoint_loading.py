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


# -- malformed files, crafted byte by byte: each is refused before any tensor is read, naming file and tensor --------

import os
import struct
import warnings

from safetensors import SafetensorError, safe_open

from xlstm_viz.checkpoint import SUPPORTED_DTYPES, NonFiniteWeightsWarning
from xlstm_viz.wiring.headers import read_entries


def _write_raw(path, header, data=b"", raw=None):
    """A safetensors file from a header object (or raw header bytes) and a data buffer, without the library."""
    head = raw if raw is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + data)


def _entry(dtype, shape, start, stop):
    return {"dtype": dtype, "shape": shape, "data_offsets": [start, stop]}


MALFORMED = {  # name: (header, data bytes, what the error must say)
    "header_is_a_list": ([_entry("F32", [2], 0, 8)], b"\0" * 8, r"header must be a JSON object of tensors, got a JSON array: \[\{"),
    "header_is_a_number": (3, b"", "header must be a JSON object of tensors, got a JSON number: 3"),
    "string_data_offsets": ({"w": {"dtype": "F32", "shape": [2], "data_offsets": "08"}}, b"\0" * 8,
                            r"w: data_offsets '08' is not a pair of integers"),
    "overlapping_offsets": ({"a": _entry("F32", [4], 0, 16), "b": _entry("F32", [4], 8, 24)}, b"\0" * 24,
                            r"b: bytes \[8, 24\) overlap a \[0, 16\): two tensors would share data"),
    "span_not_dtype_times_shape": ({"w": _entry("F32", [3], 0, 16)}, b"\0" * 16,
                                   r"w: data_offsets \[0, 16\] span 16 bytes but F32 \[3\] needs 12"),
    "offsets_past_the_end": ({"w": _entry("F32", [4], 0, 16)}, b"\0" * 8,
                             r"file is \d+ bytes but its tensors need .*: truncated; tensors past the end: w"),
    "trailing_bytes": ({"w": _entry("F32", [2], 0, 8)}, b"\0" * 16, "8 trailing bytes"),
    "hole_between_tensors": ({"a": _entry("F32", [2], 0, 8), "b": _entry("F32", [2], 16, 24)}, b"\0" * 24,
                             "b: starts at 16 but the previous tensor ends at 8: 8 bytes belong to no tensor"),
    "negative_shape": ({"w": _entry("F32", [-2], 0, 8)}, b"\0" * 8, r"w: shape \[-2\] is not a list of non-negative"),
    "integer_dtype": ({"w": _entry("I32", [2], 0, 8)}, b"\0" * 8, r"w: dtype 'I32' is not supported \(supported: "),
    "metadata_not_strings": ({"__metadata__": {"x": 1}, "w": _entry("F32", [2], 0, 8)}, b"\0" * 8,
                             "'__metadata__' must be an object of strings"),
}
# What the reference parser refuses too; it accepts integer dtypes (valid safetensors, not model weights) and
# duplicate names (the last one silently wins), which the loader refuses.
LIBRARY_ACCEPTS = {"integer_dtype"}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_safetensors_file_is_refused_naming_file_and_tensor(tmp_path, case):
    header, data, message = MALFORMED[case]
    path = tmp_path / "model.safetensors"
    _write_raw(path, header, data)
    with pytest.raises(CheckpointError, match=message) as err:
        read_entries(path)
    assert str(path) in str(err.value)
    if case not in LIBRARY_ACCEPTS:  # the checks agree with the reference implementation of the format
        with pytest.raises(SafetensorError):
            safe_open(str(path), framework="numpy")


def test_duplicate_tensor_names_in_a_header_are_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    one = json.dumps(_entry("F32", [2], 0, 8))
    _write_raw(path, None, b"\0" * 8, raw=f'{{"w": {one}, "w": {one}}}'.encode())
    with pytest.raises(CheckpointError, match=r"header has duplicate keys \['w'\]"):
        read_entries(path)


def _tiny_tensors(golden_dir):
    return load_file(golden_dir / "tiny" / "model.safetensors")


def _write_tiny_raw(folder, tensors, dtypes=None, edit_header=None):
    """Write tensors (float32 numpy) as a safetensors file by hand, each in dtypes.get(name, 'F32')."""
    header, chunks, offset = {}, [], 0
    for name, w in tensors.items():
        dtype = (dtypes or {}).get(name, "F32")
        if dtype == "BF16":  # the top 16 bits of each float32 (truncation: exact for the test's expected values)
            raw = (np.ascontiguousarray(w, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            raw = np.ascontiguousarray(w, {"F32": "<f4", "F16": "<f2", "F64": "<f8"}[dtype]).tobytes()
        header[name] = _entry(dtype, list(w.shape), offset, offset + len(raw))
        chunks.append(raw)
        offset += len(raw)
    if edit_header:
        edit_header(header)
    _write_raw(folder / "model.safetensors", header, b"".join(chunks))


def test_overlapping_tensor_offsets_in_a_checkpoint_are_refused_not_loaded(tiny, golden_dir):
    tensors = _tiny_tensors(golden_dir)
    q, k = "backbone.blocks.0.mlstm_layer.q.weight", "backbone.blocks.0.mlstm_layer.k.weight"
    _write_tiny_raw(tiny, tensors, edit_header=lambda h: h[k].__setitem__("data_offsets", h[q]["data_offsets"]))
    # k's own bytes are now covered by nothing, which is named too
    with pytest.raises(CheckpointError, match=rf"({q}|{k}): bytes \[(\d+), (\d+)\) overlap ({q}|{k}) \[\2, \3\): "
                                              "two tensors would share data"):
        xlstm_viz.load_model(tiny)


def test_header_shape_that_contradicts_the_offsets_is_named(tiny, golden_dir):
    name = "backbone.blocks.1.ffn.proj_down.weight"
    _write_tiny_raw(tiny, _tiny_tensors(golden_dir), edit_header=lambda h: h[name].__setitem__("shape", [64, 100]))
    with pytest.raises(CheckpointError, match=rf"{name}: data_offsets .* span \d+ bytes but F32 \[64, 100\] needs"):
        xlstm_viz.load_model(tiny)


@pytest.mark.parametrize("dtype", SUPPORTED_DTYPES)
def test_every_supported_dtype_loads_to_the_stored_values(tiny, golden_dir, dtype):
    tensors = _tiny_tensors(golden_dir)
    _write_tiny_raw(tiny, tensors, dtypes=dict.fromkeys(tensors, dtype))
    model = xlstm_viz.load_model(tiny)
    from mlx.utils import tree_flatten

    params = dict(tree_flatten(model.parameters()))
    for name, w in tensors.items():
        if dtype == "BF16":
            expected = ((w.view(np.uint32) >> 16) << 16).view(np.float32)
        else:  # F16 rounds once on the way in; F64 holds the float32 values exactly and narrows back to them
            expected = w.astype({"F32": np.float32, "F16": np.float16, "F64": np.float64}[dtype]).astype(np.float32)
        got = np.array(params[name])
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected, err_msg=name)


def test_unsupported_dtype_in_a_checkpoint_names_the_tensor(tiny, golden_dir):
    tensors = _tiny_tensors(golden_dir)
    name = "backbone.out_norm.weight"
    _write_tiny_raw(tiny, tensors, edit_header=lambda h: h[name].__setitem__("dtype", "I32"))
    with pytest.raises(CheckpointError, match=rf"{name}: dtype 'I32' is not supported \(supported: \['F32', "):
        xlstm_viz.load_model(tiny)


def test_nan_and_inf_weights_load_with_a_warning_naming_the_tensors(tiny, golden_dir):
    tensors = _tiny_tensors(golden_dir)
    tensors["backbone.blocks.0.ffn.proj_up.weight"][3, 5] = np.nan
    tensors["lm_head.weight"][0, :2] = [np.inf, -np.inf]
    save_file(tensors, tiny / "model.safetensors")
    with pytest.warns(NonFiniteWeightsWarning) as record:
        model = xlstm_viz.load_model(tiny)
    text = str(record[0].message)
    assert "2 tensors hold NaN/Inf" in text
    assert "backbone.blocks.0.ffn.proj_up.weight (1 NaN, 0 Inf of" in text and "lm_head.weight (0 NaN, 2 Inf of" in text
    assert np.isnan(np.array(model.blocks[0].ffn.proj_up.weight)[3, 5])  # loaded as stored, not replaced
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xlstm_viz.load_model(golden_dir / "tiny")  # a clean checkpoint loads silently


@pytest.fixture
def sharded(tmp_path, golden_dir):
    folder = tmp_path / "sharded"
    shutil.copytree(golden_dir / "tiny_sharded", folder)
    return folder


def _edit_index(folder, edit):
    path = folder / "model.safetensors.index.json"
    index = json.loads(path.read_text())
    edit(index)
    path.write_text(json.dumps(index))
    return index


def test_index_whose_weight_map_is_a_list_is_named(sharded):
    _edit_index(sharded, lambda i: i.__setitem__("weight_map", sorted(i["weight_map"])))
    with pytest.raises(CheckpointError, match=r"'weight_map' must be an object \{tensor name: shard file\}, got list"):
        xlstm_viz.load_model(sharded)


def test_index_mapping_a_tensor_to_a_shard_without_it_is_named(sharded):
    index = _edit_index(sharded, lambda i: i["weight_map"].__setitem__("backbone.blocks.0.extra.weight",
                                                                       i["weight_map"]["lm_head.weight"]))
    shard = index["weight_map"]["lm_head.weight"]
    with pytest.raises(CheckpointError, match=rf"'backbone.blocks.0.extra.weight' is mapped to {shard} by the index "
                                              "but that shard has no such tensor"):
        xlstm_viz.load_model(sharded)


def test_index_shard_names_outside_the_folder_are_refused(sharded):
    _edit_index(sharded, lambda i: i["weight_map"].__setitem__("lm_head.weight", "../elsewhere.safetensors"))
    with pytest.raises(CheckpointError, match=r"must be file names in this folder; bad entries: "
                                              r"\{'lm_head.weight': '../elsewhere.safetensors'\}"):
        xlstm_viz.load_model(sharded)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json"])
def test_fifo_in_place_of_a_checkpoint_file_is_refused_without_blocking(tiny, name):
    """In a subprocess with a time limit: a reader blocked on a FIFO can hold the GIL (the tokenizers library does),
    so a regression would hang a thread-based test instead of failing it."""
    import subprocess
    import sys

    (tiny / name).unlink(missing_ok=True)
    os.mkfifo(tiny / name)
    code = ("import sys, xlstm_viz\n"
            "try:\n    xlstm_viz.load_model(sys.argv[1])\n"
            "except xlstm_viz.CheckpointError as err:\n    print(err); sys.exit(3)\n")
    try:
        done = subprocess.run([sys.executable, "-c", code, str(tiny)], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"load_model blocked on the FIFO {name} for 60 s")
    assert done.returncode == 3, done.stderr[-2000:]
    assert f"{tiny / name} is a FIFO (named pipe), not a regular file" in done.stdout


def test_symlink_loop_and_dangling_symlink_are_named_as_such(tiny):
    weights = tiny / "model.safetensors"
    weights.unlink()
    weights.symlink_to(weights)
    with pytest.raises(CheckpointError, match=rf"{weights} is a symlink loop"):
        xlstm_viz.load_model(tiny)
    weights.unlink()
    weights.symlink_to(tiny / "gone.safetensors")
    with pytest.raises(CheckpointError, match=rf"{weights} is a symlink to '.*gone.safetensors', which does not exist"):
        xlstm_viz.load_model(tiny)


def test_non_utf8_config_json_is_named_with_the_byte(tiny):
    config = (tiny / "config.json").read_bytes()
    (tiny / "config.json").write_bytes(config[:-1] + b', "note": "caf\xe9"}')
    with pytest.raises(CheckpointError, match=r"config.json .*config.json is not UTF-8 text: byte 0xe9 at offset \d+"):
        xlstm_viz.load_model(tiny)


def test_block_wiring_reads_config_json_through_the_same_checks(tiny):
    from xlstm_viz.wiring import BlockWiring

    (tiny / "config.json").write_bytes(b'{"embedding_dim": 64, "note": "\xff"}')
    with pytest.raises(CheckpointError, match=r"is not UTF-8 text: byte 0xff at offset 31"):
        BlockWiring.from_checkpoint(tiny)


# -- reading: one tensor at a time, about one copy of the weights in the target dtype --------------------------------


def test_bf16_checkpoint_loads_to_float32_holding_one_copy_of_the_weights(tiny, golden_dir):
    """MLX's allocator peak while loading a BF16 file as float32: the float32 weights plus one tensor in flight
    (its BF16 read and its cast), not the whole BF16 file alongside the float32 copy (1.5x)."""
    tensors = _tiny_tensors(golden_dir)
    _write_tiny_raw(tiny, tensors, dtypes=dict.fromkeys(tensors, "BF16"))
    target = sum(w.size * 4 for w in tensors.values())
    largest = max(w.size for w in tensors.values()) * (2 + 4)
    mx.eval(mx.zeros(1))
    before = mx.get_active_memory()
    mx.reset_peak_memory()
    model = xlstm_viz.load_model(tiny)
    peak = mx.get_peak_memory() - before
    assert sum(p.nbytes for _, p in __import__("mlx.utils").utils.tree_flatten(model.parameters())) == target
    assert peak <= target + largest, f"peak {peak} B for {target} B of float32 weights (largest tensor {largest} B)"


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
def test_memory_mapped_reader_gives_the_same_bits_as_mx_load(tiny, golden_dir, monkeypatch, dtype):
    from mlx.utils import tree_flatten

    import xlstm_viz.checkpoint as checkpoint

    tensors = _tiny_tensors(golden_dir)
    _write_tiny_raw(tiny, tensors, dtypes=dict.fromkeys(tensors, dtype))
    for target in ("float32", "bfloat16"):
        lazy = dict(tree_flatten(xlstm_viz.load_model(tiny, dtype=target).parameters()))
        with monkeypatch.context() as m:
            m.setattr(checkpoint, "_lazy_arrays", lambda file, entries: None)  # the path F64 files take
            mapped = dict(tree_flatten(xlstm_viz.load_model(tiny, dtype=target).parameters()))
        assert lazy.keys() == mapped.keys()
        for name in lazy:
            assert lazy[name].dtype == mapped[name].dtype
            assert mx.array_equal(lazy[name], mapped[name], equal_nan=True).item(), (target, name)


def test_one_f64_tensor_among_f32_loads_the_same_model(tiny, golden_dir):
    """mx.load refuses a whole file for one F64 tensor; such a file is read memory-mapped, with the same result."""
    from mlx.utils import tree_flatten

    tensors = _tiny_tensors(golden_dir)
    _write_tiny_raw(tiny, tensors, dtypes={"backbone.blocks.1.mlstm_layer.v.weight": "F64"})
    mixed = dict(tree_flatten(xlstm_viz.load_model(tiny).parameters()))
    reference = dict(tree_flatten(xlstm_viz.load_model(golden_dir / "tiny").parameters()))
    assert mixed.keys() == reference.keys()
    for name in reference:
        assert mx.array_equal(mixed[name], reference[name]).item(), name
