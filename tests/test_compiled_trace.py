"""A compiled trace (one mx.compile graph whose outputs are the probes) records what the eager, cell-by-cell trace
records, and follows the model's edits: wirings, interventions and the state it starts from."""

import mlx.core as mx
import numpy as np
import pytest

from xlstm_viz.execution import trace as trace_module

from tolerances import assert_close_to_scale

# Bit-identical on this project's CPU (seen with 0 allowed); a compiled graph may fuse elementwise ops into other
# kernels than the eager one, and so round differently, on other devices.
ULPS = 64


@pytest.fixture
def model(tiny_model):
    return tiny_model


@pytest.fixture
def ids(tiny_ids):
    return tiny_ids


def assert_same_trace(got, want, what=""):
    assert got.probes == want.probes, what
    for probe in want.probes:
        assert got.stats[probe].keys() == want.stats[probe].keys(), (what, probe)
        for stat, value in want.stats[probe].items():
            assert_close_to_scale(got.stats[probe][stat], value, ULPS, f"{what} {probe} {stat}")
    assert got.full.keys() == want.full.keys(), what
    for probe, value in want.full.items():
        assert_close_to_scale(got.full[probe], value, ULPS, f"{what} full {probe}")
    assert_close_to_scale(got.logits, want.logits, ULPS, f"{what} logits")


@pytest.mark.parametrize("mode", ["stats", "full"])
def test_a_compiled_trace_records_what_the_eager_trace_records(model, ids, mode):
    # every probe of the model, the memory cells' norms included; also from a given state (read back, not zero)
    probes = None if mode == "stats" else ["blocks.*.mlstm.h", "blocks.1.in", "blocks.0.out", "logits"]
    _, state = model(ids[:, :3])
    for given in (None, state):
        want = model.run_with_trace(ids, probes=probes, mode=mode, state=given, compiled=False)
        got = model.run_with_trace(ids, probes=probes, mode=mode, state=given, compiled=True)
        assert_same_trace(got, want, f"{mode} from {'zero' if given is None else 'a given'} state")
        assert "blocks.0.mlstm.memory" not in want.stats or "C_norm" in got.stats["blocks.0.mlstm.memory"]
    fresh = model.run_with_trace(ids, compiled=True)
    again = model.run_with_trace(ids, state=state, compiled=True)
    assert not np.allclose(again.stats["blocks.0.mlstm.memory"]["C_norm"], fresh.stats["blocks.0.mlstm.memory"]["C_norm"])


def test_an_edit_reaches_the_next_compiled_trace(model, ids):
    # the graph bakes in the wiring and interventions: each edit must trace a new one, never reuse a stale graph
    before = model.run_with_trace(ids, compiled=True)
    model.cell_wirings[0].set_enabled("blocks.0.mlstm.out", "blocks.0.mid", False)
    edited = model.run_with_trace(ids, compiled=True)
    assert_same_trace(edited, model.run_with_trace(ids, compiled=False), "wiring edit")
    assert not np.allclose(edited.logits, before.logits)
    model.cell_wirings[0].undo()
    handle = model.interventions.add("blocks.0.mlstm.v", "scale", value=2.0)
    scaled = model.run_with_trace(ids, compiled=True)
    assert_same_trace(scaled, model.run_with_trace(ids, compiled=False), "intervention")
    assert not np.allclose(scaled.logits, before.logits)
    model.interventions.remove(handle)
    assert_same_trace(model.run_with_trace(ids, compiled=True), before, "undone")


def test_a_compiled_trace_keeps_one_graph_per_shape_and_selection(model, ids):
    model.run_with_trace(ids, compiled=True)
    graphs = trace_module._COMPILED[id(model)]
    assert len(graphs) == 1
    model.run_with_trace(ids, compiled=True)
    assert len(graphs) == 1  # the same graph again
    model.run_with_trace(ids[:, :5], compiled=True)
    model.run_with_trace(ids, probes=["blocks.0.mlstm.h"], compiled=True)
    assert len(graphs) == 3
    for n in range(2, 2 + trace_module.MAX_COMPILED_TRACES):
        model.run_with_trace(ids[:, :n], compiled=True)
    assert len(graphs) == trace_module.MAX_COMPILED_TRACES  # bounded


def test_a_compiled_recurrent_trace_is_refused_with_the_way_out(model, ids):
    with pytest.raises(ValueError, match="compiled traces run the chunkwise form only.*compiled=False"):
        model.run_with_trace(ids, run_mode="recurrent", compiled=True)
    with pytest.raises(ValueError, match="compiled must be None, True or False, got 'yes'"):
        model.run_with_trace(ids, compiled="yes")


def test_a_compiled_trace_checks_its_ids_like_the_eager_one(model, ids):
    bad = mx.array([[0, model.config.vocab_size]], mx.int32)
    with pytest.raises(ValueError) as compiled:
        model.run_with_trace(bad, compiled=True)
    with pytest.raises(ValueError) as eager:
        model.run_with_trace(bad, compiled=False)
    assert str(compiled.value) == str(eager.value)


def test_a_compiled_trace_reads_the_weights_where_they_are(model, ids):
    # mx.compile(inputs=model.state) re-wraps the module's arrays in new Python objects after a call, but over the
    # same buffers: no copy of the weights (a 7B model's are 14 GB)
    before = np.array(model.blocks[0].mlstm_layer.q.weight, copy=False)
    model.run_with_trace(ids, compiled=True)
    after = np.array(model.blocks[0].mlstm_layer.q.weight, copy=False)
    assert before.__array_interface__["data"][0] == after.__array_interface__["data"][0]


@pytest.mark.parametrize("checkpoint", ["hybrid", "orig_mixed", "orig_slstm"])
def test_a_compiled_trace_of_every_block_type_records_what_the_eager_trace_records(golden_dir, checkpoint):
    # the CfC neuron block of the hybrid demo, the original xLSTM's mLSTM and sLSTM blocks: a GPU traces them
    # compiled by default
    import xlstm_viz
    from xlstm_viz.demo import load_demo

    model = load_demo(name="hybrid") if checkpoint == "hybrid" else xlstm_viz.load_model(golden_dir / checkpoint)
    ids = mx.array(np.random.default_rng(0).integers(0, model.config.vocab_size, (1, 21)), mx.int32)
    assert_same_trace(model.run_with_trace(ids, compiled=True), model.run_with_trace(ids, compiled=False), checkpoint)


def test_a_compiled_trace_keeps_no_probes_alive_once_its_trace_is_dropped(model, ids):
    # the cached graph must not hold a recorder (and with it a whole trace's probes: 12 GB at 7B)
    import gc

    from xlstm_viz.execution.trace import Recorder

    def recorders():
        gc.collect()
        return {id(r) for r in gc.get_objects() if isinstance(r, Recorder)}

    before = recorders()  # whatever other tests left in this process
    model.run_with_trace(ids, compiled=True)
    model.run_with_trace(ids, compiled=True)
    assert recorders() - before == set()


def test_a_compiled_trace_refuses_intervention_positions_past_the_end_like_the_eager_one(model, ids):
    model.interventions.add("blocks.0.mlstm.v", "zero", tokens=[ids.shape[1] + 3])
    with pytest.raises(ValueError) as compiled:
        model.run_with_trace(ids, compiled=True)
    with pytest.raises(ValueError) as eager:
        model.run_with_trace(ids, compiled=False)
    assert str(compiled.value) == str(eager.value) and str(ids.shape[1] + 3) in str(compiled.value)


def test_an_error_raised_while_a_compiled_graph_traces_leaves_the_model_usable(model, ids):
    """mx.compile swaps the model's captured arrays for tracers while it traces and put them back only when the
    function returns: a cell refused inside the forward (here a cell type registered without a function) used to
    leave every weight a tracer, and every later call, eager or compiled, failed with "[eval] Attempting to eval an
    array without a primitive". Now the error is the cell's, and once the cell has a function every path gives the
    logits of before. compiled() with an unknown mode is refused when it is asked for, not while its graph traces."""
    from xlstm_viz.wiring.block_types import CELL_TYPES, CellType, attach_cell_function, register_cell_type

    want, _ = model(ids)
    register_cell_type(CellType("qa_nofn"))
    try:
        wiring = model.cell_wirings[0]
        wiring.add_cell("blocks.0.extra", "qa_nofn", {"features": model.config.embedding_dim})
        wiring.connect("blocks.0.mid", "blocks.0.extra")
        for run in (lambda: model.compiled("chunkwise")(ids, None), lambda: model.compiled_step()(ids[:, :1], None),
                    lambda: model.run_with_trace(ids, compiled=True)):
            with pytest.raises(ValueError, match=r"cell 'blocks\.0\.extra': cell type 'qa_nofn' is registered"):
                run()
        with pytest.raises(ValueError, match=r"mode must be one of \('chunkwise', 'recurrent'\), got 'step'"):
            model.compiled("step")
        # the extra cell feeds nothing: with a function it runs and leaves the logits as they were
        attach_cell_function("qa_nofn", lambda inputs, weights, state, params: (inputs["mid"], None))
        eager, _ = model(ids)
        compiled, _ = model.compiled("chunkwise")(ids, None)
        traced = model.run_with_trace(ids, compiled=True)
    finally:
        del CELL_TYPES["qa_nofn"]
    for what, got in (("eager", eager), ("compiled", compiled), ("compiled trace", traced.logits)):
        assert_close_to_scale(np.array(got), np.array(want), 4, f"{what} logits after the failed traces")
