"""CellWiring: the mLSTM block's cells and connections, masks, sharing, editing and JSON."""

import json

import numpy as np
import pytest

import xlstm_viz.wiring as W

D, NH, QK, V, F = 16, 2, 8, 16, 64

# The contract the executor codes against (cell name suffix, cell_type, weight, weight shape).
EXPECTED_CELLS = [
    ("in", "block_input", None, None),
    ("mlstm.norm_in", "rmsnorm", "norm_mlstm.weight", [D]),
    ("mlstm.q", "linear", "mlstm_layer.q.weight", [QK, D]),
    ("mlstm.k", "linear", "mlstm_layer.k.weight", [QK, D]),
    ("mlstm.v", "linear", "mlstm_layer.v.weight", [V, D]),
    ("mlstm.igate", "gate", "mlstm_layer.igate_preact.weight", [NH, D]),
    ("mlstm.fgate", "gate", "mlstm_layer.fgate_preact.weight", [NH, D]),
    ("mlstm.ogate", "output_gate", "mlstm_layer.ogate_preact.weight", [V, D]),
    ("mlstm.memory", "mlstm_memory", None, None),
    ("mlstm.norm", "multihead_norm", "mlstm_layer.multihead_norm.weight", [V]),
    ("mlstm.h", "product", None, None),
    ("mlstm.out", "linear", "mlstm_layer.out_proj.weight", [D, V]),
    ("mid", "residual", None, None),
    ("ffn.norm_in", "rmsnorm", "norm_ffn.weight", [D]),
    ("ffn.gate", "linear_silu", "ffn.proj_up_gate.weight", [F, D]),
    ("ffn.up", "linear", "ffn.proj_up.weight", [F, D]),
    ("ffn.h", "product", None, None),
    ("ffn.out", "linear", "ffn.proj_down.weight", [D, F]),
    ("out", "residual", None, None),
]
EXPECTED_CONNECTIONS = [
    ("in", "mlstm.norm_in", "norm_mlstm.weight", (D,)),
    ("mlstm.norm_in", "mlstm.q", "mlstm_layer.q.weight", (QK, D)),
    ("mlstm.norm_in", "mlstm.k", "mlstm_layer.k.weight", (QK, D)),
    ("mlstm.norm_in", "mlstm.v", "mlstm_layer.v.weight", (V, D)),
    ("mlstm.norm_in", "mlstm.igate", "mlstm_layer.igate_preact.weight", (NH, D)),
    ("mlstm.norm_in", "mlstm.fgate", "mlstm_layer.fgate_preact.weight", (NH, D)),
    ("mlstm.norm_in", "mlstm.ogate", "mlstm_layer.ogate_preact.weight", (V, D)),
    ("mlstm.q", "mlstm.memory", None, (QK,)),
    ("mlstm.k", "mlstm.memory", None, (QK,)),
    ("mlstm.v", "mlstm.memory", None, (V,)),
    ("mlstm.igate", "mlstm.memory", None, (NH,)),
    ("mlstm.fgate", "mlstm.memory", None, (NH,)),
    ("mlstm.memory", "mlstm.norm", "mlstm_layer.multihead_norm.weight", (V,)),
    ("mlstm.norm", "mlstm.h", None, (V,)),
    ("mlstm.ogate", "mlstm.h", None, (V,)),
    ("mlstm.h", "mlstm.out", "mlstm_layer.out_proj.weight", (D, V)),
    ("in", "mid", None, (D,)),
    ("mlstm.out", "mid", None, (D,)),
    ("mid", "ffn.norm_in", "norm_ffn.weight", (D,)),
    ("ffn.norm_in", "ffn.gate", "ffn.proj_up_gate.weight", (F, D)),
    ("ffn.norm_in", "ffn.up", "ffn.proj_up.weight", (F, D)),
    ("ffn.gate", "ffn.h", None, (F,)),
    ("ffn.up", "ffn.h", None, (F,)),
    ("ffn.h", "ffn.out", "ffn.proj_down.weight", (D, F)),
    ("mid", "out", None, (D,)),
    ("ffn.out", "out", None, (D,)),
]


def block(index=3, seed=0):
    return W.CellWiring.mlstm_block(index, D, NH, QK, V, F, seed=seed)


def test_mlstm_block_has_the_contracted_cells_in_order():
    wiring = block(3)
    got = [
        (name, spec.cell_type, spec.params.get("weight"), spec.params.get("shape"))
        for name, spec in wiring.cells.items()
    ]
    assert got == [(f"blocks.3.{n}", t, w, s) for n, t, w, s in EXPECTED_CELLS]
    gate = wiring.cells["blocks.3.mlstm.igate"].params
    assert gate["bias"] == "mlstm_layer.igate_preact.bias" and gate["bias_shape"] == [NH]
    assert all(isinstance(s, W.CellSpec) and s.polarity == 1 for s in wiring.cells.values())


def test_mlstm_block_has_the_contracted_connections():
    wiring = block(0)
    got = [(c.src, c.dst, c.weight, c.shape) for c in wiring.connections.values()]
    assert got == [(f"blocks.0.{s}", f"blocks.0.{d}", w, sh) for s, d, w, sh in EXPECTED_CONNECTIONS]
    assert list(wiring.connections) == [(c.src, c.dst) for c in wiring.connections.values()]
    c = wiring.connection("blocks.0.mlstm.norm_in", "blocks.0.mlstm.q")
    assert (c.polarity, c.sparsity, c.enabled, c.name) == (1, 0.0, True, "blocks.0.mlstm.norm_in->blocks.0.mlstm.q")


def test_inputs_order_and_stages():
    wiring = block(1)
    assert [c.src for c in wiring.inputs_of("blocks.1.mlstm.memory")] == [
        f"blocks.1.mlstm.{x}" for x in ("q", "k", "v", "igate", "fgate")
    ]
    assert wiring.order() == list(wiring.cells)
    stages = wiring.stages()
    assert stages[2] == [f"blocks.1.mlstm.{x}" for x in ("q", "k", "v", "igate", "fgate", "ogate")]
    assert stages[9] == ["blocks.1.ffn.gate", "blocks.1.ffn.up"] and len(stages) == 13
    seen = set()
    for stage in stages:  # every input of a stage's cells comes from an earlier stage
        for cell in stage:
            assert all(c.src in seen for c in wiring.inputs_of(cell))
        seen.update(stage)


def test_mask_is_seeded_exact_and_cached():
    wiring = block()
    key = ("blocks.3.mlstm.norm_in", "blocks.3.mlstm.v")
    assert wiring.connection(*key).mask is None
    for level in (0.1, 0.5, 0.9):
        wiring.set_sparsity(*key, level)
        connection = wiring.connection(*key)
        mask = connection.mask
        assert mask.dtype == np.float32 and mask.shape == (V, D)
        assert int((mask == 0).sum()) == int(np.round(level * V * D))
        assert connection.mask is mask  # cached
        np.testing.assert_array_equal(W.element_mask(connection.seed, (V, D), level), mask)
    again = block()
    again.set_sparsity(*key, 0.9)
    np.testing.assert_array_equal(again.connection(*key).mask, wiring.connection(*key).mask)
    wiring.set_sparsity(*key, 0.9, seed=123)
    assert not np.array_equal(again.connection(*key).mask, wiring.connection(*key).mask)
    # activation connections mask their (features,) vector
    wiring.set_sparsity("blocks.3.mlstm.q", "blocks.3.mlstm.memory", 0.5)
    assert wiring.connection("blocks.3.mlstm.q", "blocks.3.mlstm.memory").mask.shape == (QK,)


def test_mask_zero_count_rounds_half_to_even():
    # 0.5 * 5 = 2.5 -> 2 and 0.5 * 7 = 3.5 -> 4
    assert int((W.element_mask(1, (5,), 0.5) == 0).sum()) == 2
    assert int((W.element_mask(1, (7,), 0.5) == 0).sum()) == 4


def test_equal_shapes_in_different_blocks_get_different_masks():
    a, b = block(0), block(1)
    a.set_sparsity("blocks.0.mlstm.norm_in", "blocks.0.mlstm.q", 0.5)
    b.set_sparsity("blocks.1.mlstm.norm_in", "blocks.1.mlstm.q", 0.5)
    ma = a.connection("blocks.0.mlstm.norm_in", "blocks.0.mlstm.q").mask
    mb = b.connection("blocks.1.mlstm.norm_in", "blocks.1.mlstm.q").mask
    assert not np.array_equal(ma, mb)


def test_connection_lookup_error_lists_near_names():
    with pytest.raises(KeyError, match=r"no connection blocks\.3\.mlstm\.q->blocks\.3\.mlstm\.norm.*blocks\.3\.mlstm\.q->blocks\.3\.mlstm\.memory"):
        block().connection("blocks.3.mlstm.q", "blocks.3.mlstm.norm")
    with pytest.raises(KeyError, match=r"no cell 'blocks\.3\.mlstm\.qq'.*blocks\.3\.mlstm\.q"):
        block().inputs_of("blocks.3.mlstm.qq")


def test_connect_refuses_cycles_naming_them():
    wiring = block(0)
    with pytest.raises(ValueError, match=r"cycle .*blocks\.0\.out.*blocks\.0\.in"):
        wiring.connect("blocks.0.out", "blocks.0.in")


@pytest.mark.parametrize(
    "args,message",
    [
        ((0, 16, 3, 10, 15, 64), r"qk_dim=10 is not divisible by num_heads=3"),
        ((0, 16, 0, 8, 16, 64), r"num_heads must be >= 1, got 0"),
    ],
)
def test_mlstm_block_validates_dims(args, message):
    with pytest.raises(ValueError, match=message):
        W.CellWiring.mlstm_block(*args)


def test_edits_undo_listeners_version_and_diff():
    wiring = block()
    events = []
    wiring.add_listener(events.append)
    q = ("blocks.3.mlstm.norm_in", "blocks.3.mlstm.q")
    seed_before = wiring.connection(*q).seed
    wiring.set_polarity(*q, -1)
    wiring.set_sparsity(*q, 0.25)
    wiring.set_enabled("blocks.3.in", "blocks.3.mid", False)
    wiring.set_cell_polarity("blocks.3.mlstm.h", -1)
    assert wiring.connection(*q).seed == seed_before  # seed=None keeps the seed
    assert [e.kind for e in events] == ["set_polarity", "set_sparsity", "set_enabled", "set_cell_polarity"]
    assert events[1].changes[0].target == ("connection", *q, "sparsity") and events[1].changes[0].after == 0.25
    result = W.diff(block(), wiring)
    assert result.flipped == [q] and result.removed == [("blocks.3.in", "blocks.3.mid")] and result.added == []
    wiring.undo(4)
    assert wiring.version == 8 and not W.diff(block(), wiring)
    assert wiring.to_dict()["connections"] == block().to_dict()["connections"]
    assert wiring.cells["blocks.3.mlstm.h"].polarity == 1
    with pytest.raises(ValueError, match=r"got 1\.0"):
        wiring.set_sparsity(*q, 1.0)


def test_share_featurizer_validates_shapes_and_exposes_shared_weights():
    wiring = block()
    p = "blocks.3."
    wiring.share_featurizer(cells=[p + "mlstm.q", p + "mlstm.k"])
    assert wiring.shared_weights() == {p + "mlstm.k": p + "mlstm.q"}
    with pytest.raises(ValueError, match=rf"{p}mlstm\.q \[8, 16\] with {p}mlstm\.v \[16, 16\]"):
        wiring.share_featurizer([p + "mlstm.q", p + "mlstm.v"])
    with pytest.raises(ValueError, match=r"have no weight"):
        wiring.share_featurizer([p + "mlstm.h", p + "ffn.h"])
    with pytest.raises(ValueError, match=r"already uses the weight of"):
        wiring.share_featurizer([p + "mlstm.k", p + "mlstm.q"])
    square = W.CellWiring.mlstm_block(3, D, NH, V, V, F)  # qk_dim == v_dim: q, k, v weights all [16, 16]
    square.share_featurizer([p + "mlstm.q", p + "mlstm.k"])
    with pytest.raises(ValueError, match=r"mlstm\.q already lends its weight to \['blocks\.3\.mlstm\.k'\]"):
        square.share_featurizer([p + "mlstm.v", p + "mlstm.q"])
    wiring.share_featurizer([p + "mlstm.norm_in", p + "ffn.norm_in"])  # both [D] norm weights
    wiring.unshare_featurizer(p + "mlstm.k")
    assert wiring.shared_weights() == {p + "ffn.norm_in": p + "mlstm.norm_in"}
    wiring.undo(2)
    assert wiring.shared_weights() == {p + "mlstm.k": p + "mlstm.q"}


def test_share_feature_groups_validates_and_normalises():
    wiring = block()
    q = "blocks.3.mlstm.q"
    wiring.share_feature_groups(q, groups=NH)
    assert wiring.feature_groups() == {q: [[0, 1]]}
    wiring.share_feature_groups("blocks.3.ffn.h", groups=[[0, 2], [1, 3]])
    assert wiring.feature_groups()["blocks.3.ffn.h"] == [[0, 2], [1, 3]]
    with pytest.raises(ValueError, match=r"blocks\.3\.mlstm\.q has 8 features, which do not split into 3"):
        wiring.share_feature_groups(q, groups=3)
    with pytest.raises(ValueError, match=r"must partition range\(G\)"):
        wiring.share_feature_groups(q, groups=[[0, 1], [1, 2]])
    with pytest.raises(ValueError, match=r"groups must be >= 2"):
        wiring.share_feature_groups(q, groups=1)
    wiring.unshare_feature_groups(q)
    assert list(wiring.feature_groups()) == ["blocks.3.ffn.h"]


def test_json_round_trip_is_exact_with_edits_sharing_and_masks(tmp_path):
    wiring = block(2, seed=5)
    q = ("blocks.2.mlstm.norm_in", "blocks.2.mlstm.q")
    wiring.set_sparsity(*q, 0.3, seed=9)
    wiring.set_polarity("blocks.2.ffn.gate", "blocks.2.ffn.h", -1)
    wiring.share_featurizer(["blocks.2.mlstm.q", "blocks.2.mlstm.k"])
    wiring.share_feature_groups("blocks.2.mlstm.v", [[1, 0]])
    text = wiring.to_json()
    loaded = W.CellWiring.from_json(text)
    assert loaded.to_json() == text
    assert json.loads(text)["connections"][1]["seed"] == 9
    np.testing.assert_array_equal(loaded.connection(*q).mask, wiring.connection(*q).mask)
    assert loaded.shared_weights() == wiring.shared_weights() and loaded.feature_groups() == wiring.feature_groups()
    loaded.undo(4)
    wiring.undo(4)
    assert loaded.to_json() == wiring.to_json()
    wiring.save(tmp_path / "cells.json")
    assert W.CellWiring.load(tmp_path / "cells.json").to_json() == wiring.to_json()


def test_connection_validates_its_fields():
    with pytest.raises(ValueError, match=r"polarity of a->b must be one of \(-1, 1\), got 0"):
        W.Connection("a", "b", polarity=0)
    with pytest.raises(ValueError, match=r"sparsity of a->b must be in \[0, 1\), got 1\.5"):
        W.Connection("a", "b", sparsity=1.5)
