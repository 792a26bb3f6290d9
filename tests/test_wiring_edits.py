"""Editing neuron wirings: polarity, sparsity, undo, diff, listeners, version, JSON with edits."""

import json

import numpy as np
import pytest

import xlstm_viz.wiring as W


def built(make=lambda: W.AutoNCP(16, 2, 0.5, 3), input_dim=3):
    wiring = make()
    wiring.build(input_dim)
    return wiring


def snapshot(wiring):
    return wiring.adjacency_matrix.copy(), wiring.sensory_adjacency_matrix.copy()


def test_set_clear_and_flip_synapses_including_sensory():
    wiring = built()
    wiring.set_polarity(5, 0, -1)
    wiring.set_polarity(6, 1, 0)
    wiring.set_polarity(2, 4, 1, sensory=True)
    assert wiring.adjacency_matrix[5, 0] == -1
    assert wiring.adjacency_matrix[6, 1] == 0
    assert wiring.sensory_adjacency_matrix[2, 4] == 1
    with pytest.raises(ValueError, match="got 3"):
        wiring.set_polarity(3, 0, 0, sensory=True)  # input_dim is 3


def test_undo_restores_every_level_exactly():
    wiring = built()
    states = [snapshot(wiring)]
    wiring.set_polarity(5, 0, -1)
    states.append(snapshot(wiring))
    wiring.set_sparsity(0.7, seed=4)
    states.append(snapshot(wiring))
    wiring.set_polarity(0, 1, 1, sensory=True)
    states.append(snapshot(wiring))
    for expected in reversed(states[:-1]):
        wiring.undo()
        np.testing.assert_array_equal(wiring.adjacency_matrix, expected[0])
        np.testing.assert_array_equal(wiring.sensory_adjacency_matrix, expected[1])
    with pytest.raises(ValueError, match="only 0 in the history"):
        wiring.undo()


def test_version_only_increases_and_listeners_hear_every_edit():
    wiring = built()
    events = []
    wiring.add_listener(events.append)
    versions = [wiring.version]
    wiring.set_polarity(5, 0, -1)
    versions.append(wiring.version)
    wiring.add_synapse(5, 0, -1)  # no change: no event, no new version
    versions.append(wiring.version)
    wiring.undo()
    versions.append(wiring.version)
    assert versions == [0, 1, 1, 2]
    assert [e.kind for e in events] == ["set_polarity", "undo"]
    first = events[0].changes[0]
    assert first.target == ("synapse", 5, 0) and first.after == -1 and events[0].version == 1
    assert events[1].undoes == "set_polarity" and events[1].changes[0].after == first.before


def test_every_listener_runs_even_if_one_fails():
    wiring = built()
    heard = []

    def broken(event):
        raise RuntimeError("listener broke")

    wiring.add_listener(broken)
    wiring.add_listener(heard.append)
    with pytest.raises(RuntimeError, match="listener broke"):
        wiring.set_polarity(5, 0, -1)
    assert len(heard) == 1 and wiring.adjacency_matrix[5, 0] == -1
    wiring.remove_listener(broken)
    with pytest.raises(ValueError, match="not registered"):
        wiring.remove_listener(broken)


@pytest.mark.parametrize("level", [0.0, 0.3, 0.75, 0.95])
def test_set_sparsity_regenerates_a_seeded_mask(level):
    a, b = built(), built()
    before = a.adjacency_matrix.copy()
    a.set_sparsity(level, seed=11)
    b.set_sparsity(level, seed=11)
    np.testing.assert_array_equal(a.adjacency_matrix, b.adjacency_matrix)
    np.testing.assert_array_equal(a.sensory_adjacency_matrix, b.sensory_adjacency_matrix)
    size = a.units * a.units
    assert size - int(a.synapse_count) == int(np.round(level * size))
    assert 3 * a.units - int(a.sensory_synapse_count) == int(np.round(level * 3 * a.units))
    kept = (before != 0) & (a.adjacency_matrix != 0)
    np.testing.assert_array_equal(a.adjacency_matrix[kept], before[kept])  # survivors keep their polarity
    c = built()
    c.set_sparsity(level, seed=12)
    if level not in (0.0,):
        assert not np.array_equal(c.adjacency_matrix, a.adjacency_matrix)
    with pytest.raises(ValueError, match="got 1.0"):
        a.set_sparsity(1.0)


def test_diff_lists_added_removed_and_flipped_synapses():
    a = built()
    b = W.Wiring.from_json(a.to_json())
    existing = [(int(s), int(d)) for s, d in zip(*np.nonzero(a.adjacency_matrix))]
    (fs, fd), (rs, rd) = existing[0], existing[1]
    es, ed = next((s, d) for s in range(16) for d in range(16) if a.adjacency_matrix[s, d] == 0)
    ss, sd = next((s, d) for s in range(3) for d in range(16) if a.sensory_adjacency_matrix[s, d] != 0)
    b.set_polarity(fs, fd, -int(a.adjacency_matrix[fs, fd]))
    b.set_polarity(rs, rd, 0)
    b.set_polarity(es, ed, 1)
    b.set_polarity(ss, sd, 0, sensory=True)
    result = W.diff(a, b)
    assert result.flipped == [(f"neuron_{fs}", f"neuron_{fd}")]
    assert result.added == [(f"neuron_{es}", f"neuron_{ed}")]
    assert result.removed == [(f"sensory_{ss}", f"neuron_{sd}"), (f"neuron_{rs}", f"neuron_{rd}")]
    assert not W.diff(a, a)
    b.undo(4)
    assert not W.diff(a, b)


@pytest.mark.parametrize(
    "make",
    [
        lambda: W.FullyConnected(5, 2, 3, False),
        lambda: W.Random(6, 2, 0.4, 5),
        lambda: W.NCP(5, 3, 2, 2, 2, 3, 2, seed=4),
        lambda: W.AutoNCP(30, 4, 0.8, 4),
    ],
)
def test_json_round_trip_is_exact_with_edits_and_history(make, tmp_path):
    wiring = built(make, 4)
    wiring.set_polarity(1, 0, 1 if wiring.adjacency_matrix[1, 0] == 0 else 0)
    wiring.set_sparsity(0.5, seed=2)
    wiring.set_polarity(3, 1, -1 if wiring.sensory_adjacency_matrix[3, 1] != -1 else 1, sensory=True)
    text = wiring.to_json()
    loaded = W.Wiring.from_json(text)
    assert type(loaded) is type(wiring)
    assert loaded.to_json() == text
    assert loaded.version == wiring.version == 3
    np.testing.assert_array_equal(loaded.adjacency_matrix, wiring.adjacency_matrix)
    np.testing.assert_array_equal(loaded.sensory_adjacency_matrix, wiring.sensory_adjacency_matrix)
    loaded.undo(2)
    wiring.undo(2)
    assert loaded.to_json() == wiring.to_json()
    path = tmp_path / "wiring.json"
    wiring.save(path)
    assert W.Wiring.load(path).to_json() == wiring.to_json()
    assert json.loads(path.read_text())["config"]["class_name"] == type(wiring).__name__


def test_unbuilt_wiring_round_trips_and_builds_like_the_original():
    wiring = W.AutoNCP(16, 1, 0.5, 8)
    loaded = W.Wiring.from_json(wiring.to_json())
    wiring.build(3)
    loaded.build(3)
    assert loaded.to_json() == wiring.to_json()


def test_from_json_rejects_other_documents():
    with pytest.raises(ValueError, match="format"):
        W.Wiring.from_json(json.dumps({"format": "something-else"}))
