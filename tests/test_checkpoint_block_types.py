"""`BlockWiring.from_checkpoint` tells each block's type from the block registry: checkpoints saved by the model's
own `save` of every registered block type, a mixed stack, config.json's layer_types winning and checked, and
renamed, foreign or ambiguous tensors refused by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import xlstm_viz  # noqa: F401  (BLAS before MLX)
from xlstm_viz.config import XLSTMConfig
from xlstm_viz.model import XLSTM
from xlstm_viz.wiring import BlockWiring
from xlstm_viz.wiring.block_types import BLOCK_TYPES, BlockTable, detect_block_type

NEURON_TYPES = {"cfc", "ltc", "ncp_slstm", "ncp_mlstm"}


def saved(folder, kinds, ncps=None, keep_types=False):
    """A checkpoint folder written by `XLSTM.save` for a stack of these layer types; config.json without its
    block_types unless keep_types (so only the tensors tell the types)."""
    extra = {"ncps": {"units": 8, "output_size": 2, "sparsity_level": 0.5, "seed": 3, **(ncps or {})}} \
        if NEURON_TYPES & set(kinds) else {}
    cfg = XLSTMConfig.from_dict(dict(embedding_dim=32, num_heads=2, num_blocks=len(kinds), vocab_size=20,
                                     block_types=list(kinds), bos_token_id=None, eos_token_id=None, pad_token_id=0,
                                     **extra))
    XLSTM(cfg).save(folder)
    if not keep_types:
        config = json.loads((folder / "config.json").read_text())
        assert config.pop("block_types") == list(kinds)
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def rename_tensor(folder, old, new):
    weights = load_file(str(folder / "model.safetensors"))
    weights[new] = weights.pop(old)
    save_file(weights, str(folder / "model.safetensors"))


@pytest.mark.parametrize("kind", sorted(BLOCK_TYPES))
def test_a_saved_block_of_every_registered_type_is_detected_from_its_tensors(tmp_path, kind):
    folder = saved(tmp_path, [kind])
    assert [b.block_type for b in BlockWiring.from_checkpoint(folder).blocks] == [kind]


@pytest.mark.parametrize("kind,ncps", [("cfc", {"mode": "pure"}), ("cfc", {"mode": "no_gate"}),
                                       ("ltc", {"input_mapping": None, "output_mapping": None})])
def test_neuron_blocks_are_detected_in_every_cfc_mode_and_ltc_mapping(tmp_path, kind, ncps):
    folder = saved(tmp_path, [kind], ncps=ncps)
    assert [b.block_type for b in BlockWiring.from_checkpoint(folder).blocks] == [kind]


MIXED = ["mlstm", "slstm", "cfc", "ltc", "ncp_slstm", "ncp_mlstm", "orig_mlstm", "mlstm"]


def test_a_mixed_stack_is_detected_block_by_block(tmp_path):
    folder = saved(tmp_path, MIXED)
    wiring = BlockWiring.from_checkpoint(folder)
    assert [b.block_type for b in wiring.blocks] == MIXED
    assert wiring.blocks[0].dims["num_heads"] == 2 and wiring.blocks[7].dims["embedding_dim"] == 32


def test_config_layer_types_win_and_must_fit_the_tensors(tmp_path):
    folder = saved(tmp_path, ["mlstm", "cfc"])
    edit_config(folder, layer_types=["mlstm", "cfc"])
    assert [b.block_type for b in BlockWiring.from_checkpoint(folder).blocks] == ["mlstm", "cfc"]
    edit_config(folder, layer_types=["mlstm", "ltc"])
    with pytest.raises(ValueError, match=r"block 1: config.json gives layer type 'ltc', but the checkpoint lacks "
                                         r"its backbone\.blocks\.1\.neurons\.rnn_cell\.\w+.*the tensors fit 'cfc'"):
        BlockWiring.from_checkpoint(folder)


@pytest.mark.parametrize("config,message", [
    ({"layer_types": ["mlstm"], "block_types": ["slstm"]}, r"layer_types \['mlstm'\] and block_types \['slstm'\] disagree"),
    ({"layer_types": ["mlstm", "gru"]}, r"layer_types\[1\] is 'gru', not a registered block type"),
    ({"block_types": ["mlstm"]}, r"layer_types has 1 entries but the checkpoint has 2 blocks"),
])
def test_bad_config_layer_types_are_named(tmp_path, config, message):
    folder = saved(tmp_path, ["mlstm", "slstm"])
    edit_config(folder, **config)
    with pytest.raises(ValueError, match=message):
        BlockWiring.from_checkpoint(folder)


@pytest.mark.parametrize("kind,old,new", [
    ("slstm", "slstm_layer.zgate.weight", "slstm_layer.z_gate.weight"),
    ("ltc", "neurons.rnn_cell.gleak", "neurons.rnn_cell.g_leak"),
    ("orig_mlstm", "mlstm_layer.proj_up.weight", "mlstm_layer.up_proj.weight"),
])
def test_a_renamed_tensor_is_refused_naming_it_and_the_closest_type(tmp_path, kind, old, new):
    folder = saved(tmp_path, ["mlstm", kind])
    rename_tensor(folder, f"backbone.blocks.1.{old}", f"backbone.blocks.1.{new}")
    with pytest.raises(ValueError) as err:
        BlockWiring.from_checkpoint(folder)
    text = str(err.value)
    assert text.startswith("block 1: its tensors fit no registered block type")
    closest = text.split("closest: ", 1)[1]
    assert closest.startswith(f"'{kind}' lacks backbone.blocks.1.{old}"), text
    if not old.startswith("neurons."):  # a name under a neuron table's "neurons." is its own (read by prefix)
        assert f"does not have backbone.blocks.1.{new}" in closest.split(";")[0], text


def test_a_tensor_foreign_to_the_detected_type_is_refused_with_the_close_name(tmp_path):
    folder = saved(tmp_path, ["mlstm"])
    weights = load_file(str(folder / "model.safetensors"))
    weights["backbone.blocks.0.mlstm_layer.qq.weight"] = np.zeros((2, 2), np.float32)
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match=r"block 0 \(mlstm\): 1 tensor\(s\) that a 'mlstm' block does not have: "
                                         r"backbone\.blocks\.0\.mlstm_layer\.qq\.weight \(close: "
                                         r"backbone\.blocks\.0\.mlstm_layer\.q\.weight\)"):
        BlockWiring.from_checkpoint(folder)


def test_two_tables_with_the_same_checkpoint_names_are_ambiguous_unless_config_chooses(monkeypatch):
    cfc = BLOCK_TYPES["cfc"]
    twin = BlockTable("cfc_twin", cfc.cells, cfc.connections, cfc.dims, signature=cfc.signature, owns=cfc.owns)
    monkeypatch.setitem(BLOCK_TYPES, "cfc_twin", twin)
    names = sorted(cfc.required_weights())
    with pytest.raises(ValueError, match=r"block 3: its tensors fit several block types \('cfc', 'cfc_twin'\); "
                                         "give config.json's layer_types"):
        detect_block_type(3, names)
    assert detect_block_type(3, names, declared="cfc_twin") == "cfc_twin"


def test_a_table_whose_names_contain_anothers_wins_over_it(monkeypatch):
    """The most specific table wins: a table requiring a superset of another's names is the one that fits."""
    slstm = BLOCK_TYPES["slstm"]
    extra = "slstm_layer.extra_gate.weight"
    wider = BlockTable("slstm_wider", slstm.cells, slstm.connections, slstm.dims,
                       signature=(*slstm.signature, extra))
    monkeypatch.setitem(BLOCK_TYPES, "slstm_wider", wider)
    names = sorted(slstm.required_weights())
    assert detect_block_type(0, names) == "slstm"
    assert detect_block_type(0, [*names, extra]) == "slstm_wider"


def test_from_config_reads_layer_types_as_block_types():
    cfg = {"embedding_dim": 32, "num_blocks": 2, "num_heads": 2, "layer_types": ["slstm", "cfc"]}
    assert [b.block_type for b in BlockWiring.from_config(cfg).blocks] == ["slstm", "cfc"]
