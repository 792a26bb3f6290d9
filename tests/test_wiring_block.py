"""BlockWiring: discovery from checkpoint headers, edges, stages, cycles, editing and JSON."""

import json
import struct
import time

import numpy as np
import pytest

import xlstm_viz.wiring as W
from xlstm_viz.wiring.headers import read_header

D7, NH7, F7, V7 = 4096, 8, 10944, 50304


def mlstm_block_shapes(i, d, nh, qk, v, f):
    p = f"backbone.blocks.{i}."
    return {
        p + "norm_mlstm.weight": [d],
        p + "mlstm_layer.q.weight": [qk, d],
        p + "mlstm_layer.k.weight": [qk, d],
        p + "mlstm_layer.v.weight": [v, d],
        p + "mlstm_layer.ogate_preact.weight": [v, d],
        p + "mlstm_layer.igate_preact.weight": [nh, d],
        p + "mlstm_layer.igate_preact.bias": [nh],
        p + "mlstm_layer.fgate_preact.weight": [nh, d],
        p + "mlstm_layer.fgate_preact.bias": [nh],
        p + "mlstm_layer.multihead_norm.weight": [v],
        p + "mlstm_layer.out_proj.weight": [d, v],
        p + "norm_ffn.weight": [d],
        p + "ffn.proj_up_gate.weight": [f, d],
        p + "ffn.proj_up.weight": [f, d],
        p + "ffn.proj_down.weight": [d, f],
    }


def model_shapes(num_blocks, d, nh, qk, v, f, vocab):
    shapes = {"backbone.embeddings.weight": [vocab, d]}
    for i in range(num_blocks):
        shapes.update(mlstm_block_shapes(i, d, nh, qk, v, f))
    shapes["backbone.out_norm.weight"] = [d]
    shapes["lm_head.weight"] = [vocab, d]
    return shapes


def write_header_only_shard(path, shapes):
    """A safetensors header with honest offsets but no tensor bytes: enough for a header-only reader,
    and a reader that touched tensor data would fail on it."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


def write_sharded_checkpoint(folder, shapes, config, num_shards):
    names = list(shapes)
    weight_map = {}
    for s in range(num_shards):
        shard = f"model-{s + 1:05d}-of-{num_shards:05d}.safetensors"
        part = names[s::num_shards]
        write_header_only_shard(folder / shard, {n: shapes[n] for n in part})
        weight_map.update({n: shard for n in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(config))


def make_tiny_checkpoint(folder, num_blocks=3, d=16, nh=2, vocab=32):
    """A real (loadable) single-file checkpoint with random tensors, in the NX-AI 7B naming."""
    from safetensors.numpy import save_file

    f = 64
    rng = np.random.default_rng(0)
    shapes = model_shapes(num_blocks, d, nh, d // 2, d, f, vocab)
    save_file({n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}, str(folder / "model.safetensors"))
    config = {"embedding_dim": d, "num_heads": nh, "num_blocks": num_blocks, "vocab_size": vocab, "model_type": "xlstm"}
    (folder / "config.json").write_text(json.dumps(config))
    return config


@pytest.fixture
def ckpt_7b(tmp_path):
    config = {"embedding_dim": D7, "num_heads": NH7, "num_blocks": 32, "vocab_size": V7, "model_type": "xlstm"}
    write_sharded_checkpoint(tmp_path, model_shapes(32, D7, NH7, D7 // 2, D7, F7, V7), config, num_shards=6)
    return tmp_path


def test_from_checkpoint_on_7b_index_discovers_32_mlstm_blocks_and_their_dims(ckpt_7b):
    wiring = W.BlockWiring.from_checkpoint(ckpt_7b)
    assert wiring.nodes == ("embedding", *(f"blocks.{i}" for i in range(32)), "out_norm", "lm_head")
    assert all(b.block_type == "mlstm" for b in wiring.blocks)
    assert wiring.blocks[5].dims == {"embedding_dim": D7, "qk_dim": 2048, "v_dim": D7, "num_heads": NH7, "ffn_dim": F7}
    assert wiring.blocks[5].params["mlstm_layer.igate_preact.weight"] == (NH7, D7)
    assert wiring.model_params["lm_head.weight"] == (V7, D7)
    roles = wiring.roles()
    assert roles["embedding"] == "sensory" and roles["blocks.7"] == "inter" and roles["lm_head"] == roles["out_norm"] == "motor"
    assert [(e.src, e.dst, e.kind) for e in wiring.edges][:2] == [("embedding", "blocks.0", "residual"), ("blocks.0", "blocks.1", "residual")]
    assert len(wiring.edges) == 34 and all(e.polarity == 1 and e.enabled for e in wiring.edges)


def test_from_checkpoint_on_7b_index_takes_well_under_100_ms(ckpt_7b):
    W.BlockWiring.from_checkpoint(ckpt_7b)  # warm imports and the file cache
    best = min(_timed(lambda: W.BlockWiring.from_checkpoint(ckpt_7b)) for _ in range(5))
    assert best < 0.05, f"from_checkpoint took {best * 1000:.1f} ms"


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_from_checkpoint_reads_a_real_single_file_checkpoint(tmp_path):
    make_tiny_checkpoint(tmp_path, num_blocks=3)
    wiring = W.BlockWiring.from_checkpoint(tmp_path)
    assert [b.block_type for b in wiring.blocks] == ["mlstm"] * 3
    assert wiring.blocks[0].dims["qk_dim"] == 8
    assert read_header(tmp_path / "model.safetensors")["lm_head.weight"]["shape"] == [32, 16]


def test_unknown_block_type_error_names_the_keys(tmp_path):
    shapes = model_shapes(1, 16, 2, 8, 16, 64, 32)
    shapes["backbone.blocks.1.mystery.weight"] = [3]
    write_sharded_checkpoint(tmp_path, shapes, {}, num_shards=1)
    with pytest.raises(ValueError, match=r"block 1: its tensors fit no registered block type.*"
                                         r"does not have backbone\.blocks\.1\.mystery\.weight"):
        W.BlockWiring.from_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda shapes, cfg: cfg.update(num_blocks=5), "num_blocks is 5 but the checkpoint has 2"),
        (lambda shapes, cfg: cfg.update(embedding_dim=32), "embedding_dim is 32 but block 0 has width 16"),
        (lambda shapes, cfg: shapes.pop("backbone.blocks.1.mlstm_layer.v.weight"), r"block 1: .*closest: 'mlstm' lacks backbone\.blocks\.1\.mlstm_layer\.v\.weight;"),
        (lambda shapes, cfg: [shapes.pop(k) for k in list(shapes) if k.startswith("backbone.blocks.0.")], r"blocks \[0\] have no parameters"),
    ],
)
def test_inconsistent_checkpoints_are_errors_naming_the_problem(tmp_path, mutate, message):
    shapes, config = model_shapes(2, 16, 2, 8, 16, 64, 32), {"num_blocks": 2, "embedding_dim": 16}
    mutate(shapes, config)
    write_sharded_checkpoint(tmp_path, shapes, config, num_shards=2)
    with pytest.raises(ValueError, match=message):
        W.BlockWiring.from_checkpoint(tmp_path)


def test_index_pointing_at_a_missing_tensor_is_an_error(tmp_path):
    write_sharded_checkpoint(tmp_path, model_shapes(1, 16, 2, 8, 16, 64, 32), {}, num_shards=1)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    index["weight_map"]["backbone.blocks.0.extra.weight"] = next(iter(index["weight_map"].values()))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"'backbone\.blocks\.0\.extra\.weight' is mapped to"):
        W.BlockWiring.from_checkpoint(tmp_path)


def test_from_config_accepts_dicts_and_objects_with_the_same_result():
    cfg = {"embedding_dim": 64, "num_blocks": 4, "num_heads": 4, "vocab_size": 100}

    class Obj:
        embedding_dim, num_blocks, num_heads, vocab_size = 64, 4, 4, 100

    a, b = W.BlockWiring.from_config(cfg), W.BlockWiring.from_config(Obj())
    assert a.nodes == b.nodes and [x.dims for x in a.blocks] == [x.dims for x in b.blocks]
    assert a.blocks[0].dims == {"embedding_dim": 64, "qk_dim": 32, "v_dim": 64, "num_heads": 4, "ffn_dim": 192}
    with pytest.raises(ValueError, match="no num_heads"):
        W.BlockWiring.from_config({"embedding_dim": 64, "num_blocks": 2})


def test_from_config_accepts_the_project_xlstm_config():
    from xlstm_viz import config as config_module
    config = config_module.XLSTMConfig(embedding_dim=64, num_heads=4, num_blocks=3, vocab_size=100)
    wiring = W.BlockWiring.from_config(config)
    assert wiring.blocks[2].dims["qk_dim"] == config.qk_dim and wiring.blocks[2].dims["ffn_dim"] == config.ffn_dim


def small():
    return W.BlockWiring.from_config({"embedding_dim": 16, "num_blocks": 4, "num_heads": 2})


def test_skip_edges_feed_incoming_and_keep_stages_sequential():
    wiring = small()
    wiring.add_skip("blocks.0", "blocks.3", polarity=-1)
    incoming = wiring.incoming("blocks.3")
    assert [(e.src, e.kind, e.polarity) for e in incoming] == [("blocks.0", "skip", -1), ("blocks.2", "residual", 1)]
    assert wiring.order() == list(wiring.nodes)
    assert wiring.stages() == [[n] for n in wiring.nodes]
    wiring.add_skip("embedding", "out_norm")
    assert [e.src for e in wiring.incoming("out_norm")] == ["embedding", "blocks.3"]


def test_backward_skip_is_refused_with_the_cycle_named():
    wiring = small()
    with pytest.raises(ValueError, match=r"cycle blocks\.1 -> blocks\.2 -> blocks\.3 -> blocks\.1|cycle blocks\.3 -> blocks\.1 -> blocks\.2 -> blocks\.3"):
        wiring.add_skip("blocks.3", "blocks.1")
    with pytest.raises(ValueError, match=r"cycle blocks\.2 -> blocks\.2"):
        wiring.add_skip("blocks.2", "blocks.2")
    assert wiring.version == 0 and len(wiring.edges) == 6


def test_edges_errors_name_the_edge_and_near_names():
    wiring = small()
    with pytest.raises(KeyError, match=r"no node 'blocks\.9'.*blocks\."):
        wiring.add_skip("blocks.9", "blocks.3")
    with pytest.raises(KeyError, match=r"no edge blocks\.0->blocks\.2; close: .*'blocks\.0->blocks\.1'"):
        wiring.set_enabled("blocks.0", "blocks.2", False)
    with pytest.raises(ValueError, match="residual edge blocks.0->blocks.1 cannot be removed"):
        wiring.remove_edge("blocks.0", "blocks.1")
    wiring.add_skip("blocks.0", "blocks.2")
    with pytest.raises(ValueError, match="already exists"):
        wiring.add_skip("blocks.0", "blocks.2")


def test_block_edits_undo_notify_and_round_trip_json():
    wiring = small()
    events = []
    wiring.add_listener(events.append)
    wiring.add_skip("blocks.0", "blocks.2")
    wiring.set_polarity("blocks.1", "blocks.2", -1)
    wiring.set_enabled("blocks.2", "blocks.3", False)
    wiring.add_skip("blocks.1", "lm_head")
    wiring.remove_edge("blocks.1", "lm_head")
    assert [e.kind for e in events] == ["add_skip", "set_polarity", "set_enabled", "add_skip", "remove_edge"]
    assert wiring.version == 5
    loaded = W.BlockWiring.from_json(wiring.to_json())
    assert loaded.to_json() == wiring.to_json()
    assert W.diff(small(), loaded).added == [("blocks.0", "blocks.2")]
    assert W.diff(small(), loaded).removed == [("blocks.2", "blocks.3")]
    assert W.diff(small(), loaded).flipped == [("blocks.1", "blocks.2")]
    loaded.undo(5)
    wiring.undo(5)
    assert [e for e in loaded.edges] == [e for e in small().edges] == wiring.edges
    assert loaded.version == 10


def test_checkpoint_wiring_round_trips_json_with_param_shapes(ckpt_7b, tmp_path):
    wiring = W.BlockWiring.from_checkpoint(ckpt_7b)
    wiring.add_skip("blocks.3", "blocks.30")
    path = tmp_path / "blocks.json"
    wiring.save(path)
    loaded = W.BlockWiring.load(path)
    assert loaded.to_json() == wiring.to_json()
    assert loaded.blocks[3].params == wiring.blocks[3].params
