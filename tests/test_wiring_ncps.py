"""Our NCPS wirings reproduce ncps 1.0.1's matrices bit for bit, and fix its bugs."""

import json

import ncps.wirings as ncps_wirings  # test dependency (pyproject [test]): missing it must fail, not skip
import numpy as np
import pytest


import xlstm_viz.wiring as W


def assert_same_wiring(ours, theirs, input_dim):
    ours.build(input_dim)
    theirs.build(input_dim)
    assert ours.units == theirs.units and ours.output_dim == theirs.output_dim
    assert ours.adjacency_matrix.dtype == theirs.adjacency_matrix.dtype == np.int32
    np.testing.assert_array_equal(ours.adjacency_matrix, theirs.adjacency_matrix)
    np.testing.assert_array_equal(ours.sensory_adjacency_matrix, theirs.sensory_adjacency_matrix)
    assert ours.synapse_count == theirs.synapse_count
    assert ours.sensory_synapse_count == theirs.sensory_synapse_count


# Each parametrized case loops over seeds and input dims; the counts add up to several hundred configurations.
SEEDS = (0, 1, 7, 1111, 22222, 2**32 - 1)


@pytest.mark.parametrize("units", [1, 2, 5, 12, 33])
@pytest.mark.parametrize("self_connections", [True, False])
def test_fully_connected_matches_ncps_for_many_seeds(units, self_connections):
    for seed in SEEDS:
        for input_dim in (1, 3, 8):
            assert_same_wiring(
                W.FullyConnected(units, None, seed, self_connections),
                ncps_wirings.FullyConnected(units, None, seed, self_connections),
                input_dim,
            )


@pytest.mark.parametrize("units", [1, 2, 3, 5, 10, 23])
@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.75, 0.875, 0.9])
def test_random_matches_ncps_for_many_seeds(units, sparsity):
    for seed in SEEDS[:4]:
        for input_dim in (1, 3, 5):
            assert_same_wiring(
                W.Random(units, None, sparsity, seed), ncps_wirings.Random(units, None, sparsity, seed), input_dim
            )


def test_random_synapse_counts_round_half_to_even_like_ncps():
    # 5*5*0.5 = 12.5 -> 12 and 3*5*0.5 = 7.5 -> 8: both are exact .5 cases, so the rounding rule decides.
    ours = W.Random(5, sparsity_level=0.5, random_seed=3)
    ours.build(3)
    assert int(ours.synapse_count) == int(np.round(12.5)) == 12
    assert int(ours.sensory_synapse_count) == int(np.round(7.5)) == 8
    assert_same_wiring(W.Random(5, None, 0.5, 3), ncps_wirings.Random(5, None, 0.5, 3), 3)


@pytest.mark.parametrize(
    "units,sparsity,input_dim",
    [
        (101, 0.5, 2),  # 10201 pairs, k=5100 > N//50: Generator's tail-shuffle path
        (101, 0.99, 120),  # N > 10000 but k=102 <= N//50: Floyd path; sensory 12120 pairs takes the tail shuffle
        (100, 0.0, 101),  # exactly 10000 pairs stays on Floyd; sensory 10100 pairs does not
    ],
)
def test_random_matches_ncps_above_10000_pairs(units, sparsity, input_dim):
    assert_same_wiring(W.Random(units, None, sparsity, 5), ncps_wirings.Random(units, None, sparsity, 5), input_dim)


AUTO_SHAPES = [(4, 1), (16, 1), (28, 4), (30, 4), (64, 8), (19, 16), (150, 10)]


@pytest.mark.parametrize("units,outputs", AUTO_SHAPES)
@pytest.mark.parametrize("sparsity", [0.1, 0.3, 0.5, 0.75, 0.8, 0.9, 1.0])
def test_autoncp_matches_ncps_for_many_seeds(units, outputs, sparsity):
    seeds = SEEDS if units < 100 else SEEDS[:2]
    for seed in seeds:
        for input_dim in (1, 6, 20):
            assert_same_wiring(
                W.AutoNCP(units, outputs, sparsity, seed), ncps_wirings.AutoNCP(units, outputs, sparsity, seed), input_dim
            )


def test_autoncp_sparsity_0_8_uses_ncps_float_truncation():
    # 1 - 0.8 = 0.19999999999999996, so int(10 * density) is 1, not 2.
    cfg = W.AutoNCP(30, 4, 0.8, 1)
    assert (cfg._num_inter_neurons, cfg._num_command_neurons) == (16, 10)
    assert (cfg._sensory_fanout, cfg._inter_fanout, cfg._recurrent_command_synapses, cfg._motor_fanin) == (3, 1, 3, 1)
    assert_same_wiring(W.AutoNCP(30, 4, 0.8, 1), ncps_wirings.AutoNCP(30, 4, 0.8, 1), 5)


@pytest.mark.parametrize(
    "args",
    [
        (5, 3, 2, 2, 2, 3, 2),
        (5, 3, 2, 0, 1, 0, 0),  # zero fanouts: everything comes from the fill-up stages
        (10, 8, 6, 10, 8, 20, 8),  # full fanouts
        (1, 1, 1, 1, 1, 1, 1),  # size-1 populations consume no draws
        (40, 12, 3, 5, 4, 7, 3),
    ],
)
def test_ncp_matches_ncps_for_explicit_parameters(args):
    for seed in SEEDS:
        for input_dim in (1, 2, 9):
            assert_same_wiring(W.NCP(*args, seed=seed), ncps_wirings.NCP(*args, seed=seed), input_dim)


def test_graph_matches_ncps_graph():
    ours, theirs = W.AutoNCP(28, 4, 0.5, 3), ncps_wirings.AutoNCP(28, 4, 0.5, 3)
    ours.build(6)
    theirs.build(6)
    g_ours, g_theirs = ours.get_graph(), theirs.get_graph()
    assert list(g_ours.nodes(data=True)) == list(g_theirs.nodes(data=True))
    assert list(g_ours.edges(data=True)) == list(g_theirs.edges(data=True))


def test_initializers_and_layers_match_ncps():
    ours, theirs = W.AutoNCP(16, 1, 0.5, 9), ncps_wirings.AutoNCP(16, 1, 0.5, 9)
    ours.build(3)
    theirs.build(3)
    np.testing.assert_array_equal(ours.erev_initializer(), theirs.erev_initializer())
    np.testing.assert_array_equal(ours.sensory_erev_initializer(), theirs.sensory_erev_initializer())
    assert ours.num_layers == theirs.num_layers == 3
    for layer in range(3):
        assert list(ours.get_neurons_of_layer(layer)) == list(theirs.get_neurons_of_layer(layer))
    assert [ours.get_type_of_neuron(i) for i in range(16)] == [theirs.get_type_of_neuron(i) for i in range(16)]


# ---- the bugs ncps has and we fix ----------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: W.FullyConnected(6, 2, 5),
        lambda: W.Random(6, 2, 0.4, 5),
        lambda: W.NCP(5, 3, 2, 2, 2, 3, 2, seed=4),
        lambda: W.AutoNCP(28, 4, 0.5, 4),
    ],
)
def test_build_twice_with_same_dim_changes_nothing(make):
    wiring = make()
    wiring.build(4)
    first = (wiring.adjacency_matrix.copy(), wiring.sensory_adjacency_matrix.copy())
    wiring.build(4)
    np.testing.assert_array_equal(wiring.adjacency_matrix, first[0])
    np.testing.assert_array_equal(wiring.sensory_adjacency_matrix, first[1])


def test_ncps_itself_grows_on_second_build_which_we_do_not():
    theirs = ncps_wirings.AutoNCP(28, 4, 0.5)
    theirs.build(6)
    before = int(theirs.synapse_count)
    theirs.build(6)
    ours = W.AutoNCP(28, 4, 0.5)
    ours.build(6)
    ours.build(6)
    assert int(theirs.synapse_count) > before == int(ours.synapse_count)


def test_build_with_other_dim_names_both_dims():
    wiring = W.AutoNCP(16, 1)
    wiring.build(3)
    with pytest.raises(ValueError, match=r"input_dim=3.*input_dim=4"):
        wiring.build(4)


@pytest.mark.parametrize(
    "make",
    [
        lambda: W.FullyConnected(7, 3, 99, False),
        lambda: W.Random(7, 3, 0.6, 99),
        lambda: W.NCP(5, 4, 2, 3, 2, 5, 3, seed=2**31 + 5),
        lambda: W.AutoNCP(30, 4, 0.8, 123),
    ],
)
def test_config_round_trips_through_json_and_returns_the_right_class(make):
    original = make()
    config = original.get_config()
    text = json.dumps(config)
    frozen = json.loads(text)
    rebuilt = W.Wiring.from_config(frozen)
    assert type(rebuilt) is type(original)
    assert json.loads(text) == frozen  # from_config did not mutate the caller's dict
    assert rebuilt.get_config() == config
    original.build(5)
    rebuilt.build(5)
    np.testing.assert_array_equal(rebuilt.adjacency_matrix, original.adjacency_matrix)
    np.testing.assert_array_equal(rebuilt.sensory_adjacency_matrix, original.sensory_adjacency_matrix)


def test_ncp_config_has_counts_and_the_real_seed_and_does_not_reseed():
    wiring = W.NCP(5, 3, 2, 2, 2, 3, 2, seed=77)
    config = wiring.get_config()  # ncps's get_config re-seeds its RNG here
    assert config["inter_neurons"] == 5 and config["seed"] == 77
    wiring.build(3)
    reference = ncps_wirings.NCP(5, 3, 2, 2, 2, 3, 2, seed=77)
    reference.build(3)
    np.testing.assert_array_equal(wiring.adjacency_matrix, reference.adjacency_matrix)


def test_ncp_from_an_ncps_config_with_seed_none_explains_why_it_cannot():
    config = ncps_wirings.NCP(5, 3, 2, 2, 2, 3, 2, seed=1).get_config()
    assert config["seed"] is None and isinstance(config["inter_neurons"], list)
    with pytest.raises(ValueError, match="seed None"):
        W.NCP.from_config(config)
    rebuilt = W.NCP.from_config({**config, "seed": 1})  # id lists are read as counts
    assert (rebuilt._num_inter_neurons, rebuilt._num_command_neurons, rebuilt._num_motor_neurons) == (5, 3, 2)


def test_base_wiring_config_round_trips_matrices_as_int32():
    wiring = W.Wiring(3)
    wiring.set_output_dim(1)
    wiring.build(2)
    wiring.add_synapse(0, 1, -1)
    wiring.add_sensory_synapse(1, 2, 1)
    rebuilt = W.Wiring.from_config(json.loads(json.dumps(wiring.get_config())))
    assert type(rebuilt) is W.Wiring and rebuilt.adjacency_matrix.dtype == np.int32
    np.testing.assert_array_equal(rebuilt.adjacency_matrix, wiring.adjacency_matrix)
    np.testing.assert_array_equal(rebuilt.sensory_adjacency_matrix, wiring.sensory_adjacency_matrix)


def test_from_config_refuses_a_config_of_another_class():
    with pytest.raises(ValueError, match="AutoNCP.*not a Random"):
        W.Random.from_config(W.AutoNCP(16, 1).get_config())


def test_get_graph_honours_include_sensory_neurons():
    wiring = W.AutoNCP(16, 1)
    graph = wiring.get_graph(include_sensory_neurons=False)  # works before build, too
    assert set(graph.nodes) == {f"neuron_{i}" for i in range(16)}
    wiring.build(4)
    without = wiring.get_graph(include_sensory_neurons=False)
    with_sensory = wiring.get_graph()
    assert not any(n.startswith("sensory_") for n in without.nodes)
    assert {f"sensory_{i}" for i in range(4)} <= set(with_sensory.nodes)
    assert without.number_of_edges() == int(wiring.synapse_count)
    assert with_sensory.number_of_edges() == int(wiring.synapse_count + wiring.sensory_synapse_count)


def test_erev_initializer_honours_dtype():
    wiring = W.FullyConnected(4)
    assert wiring.erev_initializer(dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="before build"):
        wiring.sensory_erev_initializer()


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: W.AutoNCP(16, 1, sparsity_level=0.05), r"0\.05"),
        (lambda: W.AutoNCP(16, 14), r"output_size=14"),
        (lambda: W.Random(4, sparsity_level=1.0), r"1\.0"),
        (lambda: W.NCP(5, 3, 2, 2, 2, 3, motor_fanin=4), r"motor_fanin is 4.*3 command"),
        (lambda: W.NCP(5, 3, 2, sensory_fanout=6, inter_fanout=2, recurrent_command_synapses=3, motor_fanin=2), r"sensory_fanout is 6"),
        (lambda: W.NCP(0, 3, 2, 0, 2, 3, 2), r"inter_neurons must be >= 1, got 0"),
        (lambda: W.FullyConnected(4, output_dim=5), r"output_dim must be <= 4, got 5"),
        (lambda: W.FullyConnected(4).add_synapse(0, 9, 1), r"dest must be <= 3, got 9"),
        (lambda: W.FullyConnected(4).add_synapse(0, 1, 2), r"polarity must be one of \(-1, 1\), got 2"),
        (lambda: W.FullyConnected(4).add_sensory_synapse(0, 1, 1), r"before build"),
        (lambda: W.FullyConnected(2.5), r"units must be an integer, got 2\.5"),
    ],
)
def test_bad_arguments_raise_errors_naming_the_value(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_draw_graph_does_not_mutate_colors_or_explains_missing_matplotlib():
    wiring = W.AutoNCP(16, 1)
    wiring.build(2)
    colors = {"command": "tab:purple"}
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        with pytest.raises(ImportError, match="pip install matplotlib"):
            wiring.draw_graph(neuron_colors=colors)
    else:
        handles = wiring.draw_graph(neuron_colors=colors, layout="layered")
        assert [h.get_label() for h in handles][0] == "Command neurons"
    assert colors == {"command": "tab:purple"}


# ---- roles and layout ----------------------------------------------------------------------------


def test_roles_put_motor_ids_first_then_command_then_inter():
    wiring = W.AutoNCP(28, 4, 0.5)
    wiring.build(6)
    roles = wiring.roles()
    assert [roles[f"neuron_{i}"] for i in range(28)] == ["motor"] * 4 + ["command"] * 9 + ["inter"] * 15
    assert sum(r == "sensory" for r in roles.values()) == 6


def test_layered_layout_puts_roles_in_columns_left_to_right():
    wiring = W.AutoNCP(28, 4, 0.5)
    wiring.build(6)
    pos = W.layered_layout(wiring)
    roles = wiring.roles()
    column_x = {role: {pos[n][0] for n, r in roles.items() if r == role} for role in W.ROLE_ORDER}
    assert all(len(xs) == 1 for xs in column_x.values())
    xs = [column_x[r].pop() for r in ("sensory", "inter", "command", "motor")]
    assert xs == sorted(xs) and len(set(xs)) == 4
    assert pos == W.layered_layout(wiring)  # deterministic
    assert set(pos) == set(roles)
    unbuilt = W.layered_layout(W.FullyConnected(3, 1))  # no sensory column, inter then motor
    assert unbuilt["neuron_1"][0] < unbuilt["neuron_0"][0]
