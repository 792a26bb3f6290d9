"""Wiring JSON documents: every wiring class round-trips exactly, and malformed documents are refused at load with an
error that names the field, index or value (property-based with hypothesis, plus the reported cases one by one)."""

import copy
import json
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xlstm_viz.wiring as W
from xlstm_viz.wiring import checks

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
D, NH, QK, V, F = 16, 2, 8, 16, 64


# -- strategies: every wiring class, with edits ----------------------------------------------------------------
@st.composite
def neuron_wirings(draw):
    kind = draw(st.sampled_from(["Wiring", "FullyConnected", "Random", "NCP", "AutoNCP"]))
    seed = draw(st.integers(0, 2**31))
    if kind == "Wiring":
        wiring = W.Wiring(draw(st.integers(1, 8)))
        wiring.set_output_dim(draw(st.integers(1, wiring.units)))
        for src, dst, pol in draw(st.lists(st.tuples(st.integers(0, wiring.units - 1), st.integers(0, wiring.units - 1),
                                                     st.sampled_from([-1, 1])), max_size=5)):
            wiring.add_synapse(src, dst, pol)
    elif kind == "FullyConnected":
        units = draw(st.integers(1, 8))
        wiring = W.FullyConnected(units, draw(st.integers(1, units)), seed, draw(st.booleans()))
    elif kind == "Random":
        units = draw(st.integers(1, 8))
        wiring = W.Random(units, draw(st.integers(1, units)), draw(st.floats(0.0, 0.9)), seed)
    elif kind == "NCP":
        inter, command, motor = draw(st.integers(1, 5)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
        wiring = W.NCP(inter, command, motor, draw(st.integers(0, inter)), draw(st.integers(0, command)),
                       draw(st.integers(0, command * command)), draw(st.integers(0, command)), seed % 2**32)
    else:
        units = draw(st.integers(6, 20))
        wiring = W.AutoNCP(units, draw(st.integers(1, units - 3)), draw(st.floats(0.1, 0.9)), seed % 2**32)
    if draw(st.booleans()):
        wiring.build(draw(st.integers(1, 5)))
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["polarity", "sparsity", "undo"]))
        if action == "polarity":
            wiring.set_polarity(draw(st.integers(0, wiring.units - 1)), draw(st.integers(0, wiring.units - 1)),
                                draw(st.sampled_from([-1, 0, 1])))
        elif action == "sparsity":
            wiring.set_sparsity(draw(st.floats(0.0, 0.9)), seed=draw(st.integers(0, 100)))
        elif wiring.history:
            wiring.undo()
    return wiring


@st.composite
def block_wirings(draw):
    n = draw(st.integers(1, 4))
    wiring = W.BlockWiring.from_config({"embedding_dim": 16, "num_blocks": n, "num_heads": 2})
    for _ in range(draw(st.integers(0, 5))):
        nodes = wiring.nodes
        i = draw(st.integers(0, len(nodes) - 3))
        j = draw(st.integers(i + 2, len(nodes) - 1))
        action = draw(st.sampled_from(["skip", "enabled", "polarity", "remove", "undo"]))
        edge = draw(st.sampled_from(wiring.edges))
        if action == "skip" and (nodes[i], nodes[j]) not in {(e.src, e.dst) for e in wiring.edges}:
            wiring.add_skip(nodes[i], nodes[j], draw(st.sampled_from([-1, 1])))
        elif action == "enabled":
            wiring.set_enabled(edge.src, edge.dst, draw(st.booleans()))
        elif action == "polarity":
            wiring.set_polarity(edge.src, edge.dst, draw(st.sampled_from([-1, 1])))
        elif action == "remove" and edge.kind == "skip":
            wiring.remove_edge(edge.src, edge.dst)
        elif action == "undo" and wiring.history:
            wiring.undo()
    return wiring


@st.composite
def cell_wirings(draw):
    wiring = W.CellWiring.mlstm_block(draw(st.integers(0, 3)), D, NH, QK, V, F, seed=draw(st.integers(0, 1000)))
    p = wiring.prefix + "."
    for _ in range(draw(st.integers(0, 6))):
        c = draw(st.sampled_from(list(wiring.connections.values())))
        action = draw(st.sampled_from(["polarity", "sparsity", "enabled", "cell", "share", "groups", "undo"]))
        if action == "polarity":
            wiring.set_polarity(c.src, c.dst, draw(st.sampled_from([-1, 1])))
        elif action == "sparsity":
            wiring.set_sparsity(c.src, c.dst, draw(st.floats(0.0, 0.9)), seed=draw(st.none() | st.integers(0, 99)))
        elif action == "enabled":
            wiring.set_enabled(c.src, c.dst, draw(st.booleans()))
        elif action == "cell":
            wiring.set_cell_polarity(draw(st.sampled_from(list(wiring.cells))), draw(st.sampled_from([-1, 1])))
        elif action == "share" and not wiring.shared_weights():
            wiring.share_featurizer(draw(st.sampled_from([[p + "mlstm.q", p + "mlstm.k"],
                                                          [p + "mlstm.norm_in", p + "ffn.norm_in"]])))
        elif action == "groups":
            wiring.share_feature_groups(draw(st.sampled_from([p + "mlstm.q", p + "mlstm.h", p + "mlstm.igate"])),
                                        draw(st.sampled_from([2, [[0], [1]], [[1, 0]]])))
        elif action == "undo" and wiring.history:
            wiring.undo()
    return wiring


def any_wiring():
    return st.one_of(neuron_wirings(), block_wirings(), cell_wirings())


def loader(wiring):
    return type(wiring) if isinstance(wiring, (W.BlockWiring, W.CellWiring)) else W.Wiring


# -- round trips -----------------------------------------------------------------------------------------------
@SETTINGS
@given(any_wiring())
def test_every_wiring_class_round_trips_through_json_with_its_history(wiring):
    text = wiring.to_json()
    again = loader(wiring).from_json(text)
    assert type(again) is type(wiring)
    assert again.to_json() == text
    assert again.synapses() == wiring.synapses()
    # The restored history undoes to the same place as the original's.
    steps = len(wiring.history)
    wiring.undo(steps)
    again.undo(steps)
    assert again.to_json() == wiring.to_json()


# -- rejection: random corruptions of valid documents ----------------------------------------------------------
BAD_SCALARS = [2, 5, -2, 0.5, "1", "no", None, True, [1]]


def _corruptions(data):
    """(path description, mutate) pairs that make a valid document invalid, each naming what it broke."""
    out = []

    def put(container, key, value, label):
        def mutate(d):
            target = d
            for k in container:
                target = target[k]
            if isinstance(target, list) and key == len(target):
                target.append(value)
            else:
                target[key] = value
        out.append((label, mutate))

    if data["format"].endswith("neurons/1"):
        n = len(data["adjacency_matrix"])
        for bad in (2, 5, "1", True, 0.5):
            put(["adjacency_matrix", n - 1], 0, bad, "adjacency_matrix")
        put(["adjacency_matrix"], 0, data["adjacency_matrix"][0][:-1] if n > 1 else [], "adjacency_matrix[0]")
        put(["adjacency_matrix"], n - 1, [0] * (n + 1), f"adjacency_matrix[{n - 1}]")
        put([], "sensory_generated", "no", "sensory_generated")
        put([], "input_dim", checks.MAX_INPUTS + 1, "input_dim")
        if data["config"].get("class_name") in ("Random", "AutoNCP"):
            put(["config"], "sparsity_level", "0.5", "sparsity_level")
        for key in ("seed", "random_seed", "erev_init_seed"):
            if key in data["config"]:
                put(["config"], key, "7", key)
        put(["config"], "units", checks.MAX_UNITS + 1, "units") if "units" in data["config"] else None
        history_target = ["synapse", -1, 0]
    elif data["format"].endswith("block/1"):
        for bad in (2, 0, "1", True):
            put(["edges", 0], "polarity", bad, "polarity")
        put(["edges", 0], "enabled", "no", "enabled")
        last = len(data["edges"]) - 1
        put(["edges"], last + 1, {"src": "lm_head", "dst": "embedding", "polarity": 1, "enabled": True, "kind": "skip"},
            "lm_head->embedding")
        put(["edges", 0], "dst", "blocks.99", "blocks.99")
        put(["edges", 0], "kind", "wormhole", "wormhole")
        history_target = ["edge", "blocks.9", "lm_head"]
    else:
        for bad in (2, "1", True):
            put(["connections", 0], "polarity", bad, "polarity")
        put(["connections", 0], "enabled", "no", "enabled")
        put(["connections", 0], "sparsity", "0.5", "sparsity")
        put(["connections", 0], "seed", "7", "seed")
        put([], "seed", "7", "seed")
        put(["connections", 0], "dst", "blocks.0.nonsense", "nonsense")
        put(["connections"], len(data["connections"]),
            {"src": data["connections"][-1]["dst"], "dst": data["connections"][0]["src"], "polarity": 1, "sparsity": 0.0,
             "seed": 0, "enabled": True, "weight": None, "shape": [D]}, "cycle")
        put(["featurizers"], data["prefix"] + ".mlstm.v", data["prefix"] + ".mlstm.q", "featurizers")
        put(["feature_groups"], data["prefix"] + ".mlstm.q", [[0, 2]], "feature_groups")
        history_target = ["connection", data["prefix"] + ".mlstm.q", data["prefix"] + ".nope", "polarity"]

    def bad_history(d):
        d["edits"]["history"].append({"kind": "set_polarity", "version": d["edits"]["version"] + 1,
                                      "changes": [{"target": history_target, "before": 5, "after": 1}]})
        d["edits"]["version"] += 1
    out.append(("edits.history", bad_history))

    def bad_value_in_history(d):
        d["edits"]["history"].append({"kind": "x", "version": 1, "changes": [{"target": [], "before": 0, "after": 1}]})
    out.append(("edits.history", bad_value_in_history))
    return out


@SETTINGS
@given(any_wiring(), st.data())
def test_malformed_documents_are_refused_naming_what_is_wrong(wiring, data):
    valid = wiring.to_dict()
    label, mutate = data.draw(st.sampled_from(_corruptions(json.loads(json.dumps(valid)))))
    broken = json.loads(json.dumps(valid))
    mutate(broken)
    with pytest.raises(ValueError) as info:
        loader(wiring).from_dict(broken)
    assert label in str(info.value), str(info.value)


# -- the reported cases ------------------------------------------------------------------------------------------
def test_units_beyond_the_bound_are_refused_before_anything_is_allocated():
    doc = json.dumps({"format": "xlstm_viz.wiring.neurons/1", "config": {"class_name": "AutoNCP", "units": 20000,
                      "output_size": 4, "sparsity_level": 0.5, "seed": 1}, "input_dim": 3, "sensory_generated": True,
                      "output_dim": 4, "adjacency_matrix": [], "sensory_adjacency_matrix": [], "edits": {}})
    assert len(doc) < 300
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=rf"units must be <= {checks.MAX_UNITS}, got 20000"):
            W.Wiring.from_json(doc)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20  # a 20000-unit wiring would be 1.6 GB of int32 before any check
    with pytest.raises(ValueError, match=rf"input_dim must be <= {checks.MAX_INPUTS}"):
        W.AutoNCP(20, 4).build(checks.MAX_INPUTS + 1)
    with pytest.raises(ValueError, match=r"recurrent_command_synapses must be <= 9, got 10"):
        W.NCP(3, 3, 2, 1, 1, 10, 1)


def test_a_hand_edited_history_cannot_make_undo_write_outside_the_matrix():
    wiring = W.AutoNCP(12, 3, seed=2)
    wiring.build(2)
    wiring.set_polarity(4, 1, -1)
    data = wiring.to_dict()
    data["edits"]["history"][0]["changes"][0]["target"] = ["synapse", -1, 1]
    data["edits"]["history"][0]["changes"][0]["before"] = 5
    with pytest.raises(ValueError, match=r"edits\.history\[0\]\.changes\[0\]\.target \['synapse', -1, 1\]: "
                                         r"src -1 is out of range \[0, 12\)"):
        W.Wiring.from_dict(data)
    data["edits"]["history"][0]["changes"][0]["target"] = ["synapse", 4, 1]
    with pytest.raises(ValueError, match=r"edits\.history\[0\]\.changes\[0\]\.before = 5: a synapse is -1, 0 or \+1"):
        W.Wiring.from_dict(data)
    data["edits"]["history"][0]["changes"][0]["before"] = 0
    data["edits"]["history"][0]["changes"][0]["after"] = 1  # the matrix holds -1: this history does not lead there
    with pytest.raises(ValueError, match=r"after is 1 but the wiring holds -1 at \['synapse', 4, 1\]"):
        W.Wiring.from_dict(data)


def test_matrices_with_bad_entries_or_ragged_rows_name_the_row_and_column():
    data = W.Random(4, sparsity_level=0.5, random_seed=3).to_dict()
    data["adjacency_matrix"][2][3] = 2
    with pytest.raises(ValueError, match=r"adjacency_matrix\[2\]\[3\] = 2: entries must be"):
        W.Wiring.from_dict(data)
    data["adjacency_matrix"][2] = [0, 1]
    with pytest.raises(ValueError, match=r"adjacency_matrix\[2\]: expected a row of 4 entries, got 2 entries \(ragged"):
        W.Wiring.from_dict(data)


def test_string_seeds_and_sparsities_are_refused_in_configs_and_edits():
    data = W.Random(4, sparsity_level=0.5, random_seed=3).to_dict()
    data["config"]["sparsity_level"] = "0.5"
    with pytest.raises(ValueError, match=r"Random config: sparsity_level must be a finite number, got '0\.5'"):
        W.Wiring.from_dict(data)
    data = W.FullyConnected(4).to_dict()
    data["config"]["erev_init_seed"] = "7"
    with pytest.raises(ValueError, match=r"FullyConnected config: erev_init_seed must be an integer, got '7'"):
        W.Wiring.from_dict(data)
    data["config"] = {"class_name": "FullyConnected", "units": 4, "colour": 1}
    with pytest.raises(ValueError, match=r"FullyConnected config: unknown key\(s\) \['colour'\]"):
        W.Wiring.from_dict(data)
    cells = W.CellWiring.mlstm_block(0, D, NH, QK, V, F)
    with pytest.raises(TypeError, match=r"sparsity level of .*mlstm\.q must be a finite number, got '0\.5'"):
        cells.set_sparsity("blocks.0.mlstm.norm_in", "blocks.0.mlstm.q", "0.5")
    with pytest.raises(TypeError, match=r"sparsity level must be a finite number, got '0\.5'"):
        W.AutoNCP(12, 3).set_sparsity("0.5")


def test_block_documents_refuse_back_edges_bad_polarity_and_string_bools():
    wiring = W.BlockWiring.from_config({"embedding_dim": 16, "num_blocks": 3, "num_heads": 2})
    data = wiring.to_dict()
    data["edges"].append({"src": "blocks.2", "dst": "blocks.0", "polarity": 1, "enabled": True, "kind": "skip"})
    with pytest.raises(ValueError, match=r"edges\[\d+\] blocks\.2->blocks\.0: the skip blocks\.2->blocks\.0 points back"):
        W.BlockWiring.from_dict(data)
    data = wiring.to_dict()
    data["edges"][1]["polarity"] = 2
    with pytest.raises(ValueError, match=r"edges\[1\]\.polarity: .*polarity must be -1 or \+1, got 2"):
        W.BlockWiring.from_dict(data)
    data = wiring.to_dict()
    data["edges"][1]["enabled"] = "no"
    with pytest.raises(ValueError, match=r"edges\[1\]\.enabled: Input should be a valid boolean \(got 'no'\)"):
        W.BlockWiring.from_dict(data)
    data = wiring.to_dict()
    del data["edges"][2]
    with pytest.raises(ValueError, match=r"residual edge blocks\.1->blocks\.2 is missing"):
        W.BlockWiring.from_dict(data)


def test_cell_documents_refuse_unknown_cells_cycles_and_inconsistent_shapes():
    wiring = W.CellWiring.mlstm_block(0, D, NH, QK, V, F)
    data = wiring.to_dict()
    data["connections"][3]["src"] = "blocks.0.mlstm.norm_inn"
    with pytest.raises(ValueError, match=r"connections\[3\] blocks\.0\.mlstm\.norm_inn->blocks\.0\.mlstm\.v: unknown cell "
                                         r"'blocks\.0\.mlstm\.norm_inn'; close: \['blocks\.0\.mlstm\.norm_in'"):
        W.CellWiring.from_dict(data)
    data = wiring.to_dict()
    data["connections"].append({"src": "blocks.0.out", "dst": "blocks.0.in", "polarity": 1, "sparsity": 0.0, "seed": 0,
                                "enabled": True, "weight": None, "shape": [D]})
    with pytest.raises(ValueError, match=r"cycle .*blocks\.0\.in.*points back"):
        W.CellWiring.from_dict(data)
    data = wiring.to_dict()
    data["connections"][1]["shape"] = [QK, D + 1]
    with pytest.raises(ValueError, match=r"connections\[1\] .*: shape \[8, 17\] differs from the weight's shape \[8, 16\]"):
        W.CellWiring.from_dict(data)
    data = wiring.to_dict()
    data["cells"][2]["name"] = "blocks.7.mlstm.q"
    with pytest.raises(ValueError, match=r"cells\[2\] 'blocks\.7\.mlstm\.q': cell names start with the prefix 'blocks\.0\.'"):
        W.CellWiring.from_dict(data)


def test_a_valid_document_is_not_modified_by_loading():
    wiring = W.CellWiring.mlstm_block(0, D, NH, QK, V, F)
    wiring.set_sparsity("blocks.0.mlstm.norm_in", "blocks.0.mlstm.q", 0.5, seed=1)
    data = wiring.to_dict()
    before = copy.deepcopy(data)
    W.CellWiring.from_dict(data)
    assert data == before
    np.testing.assert_array_equal(W.CellWiring.from_dict(data).connection("blocks.0.mlstm.norm_in", "blocks.0.mlstm.q").mask,
                                  wiring.connection("blocks.0.mlstm.norm_in", "blocks.0.mlstm.q").mask)
