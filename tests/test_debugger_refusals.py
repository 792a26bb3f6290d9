"""The debugger and the interventions refuse what they cannot do when it is added, with a message naming it, instead
of accepting it and then failing every step or silently doing nothing."""

import mlx.core as mx
import numpy as np
import pytest

import xlstm_viz
from xlstm_viz.execution import Debugger


@pytest.fixture
def model(golden_dir):
    return xlstm_viz.load_model(golden_dir / "tiny")


@pytest.fixture
def ids(golden_dir):
    return mx.array(np.load(golden_dir / "tiny" / "reference.npz")["input_ids"])


@pytest.mark.parametrize("condition, message", [
    ("absmax>1e", r"'absmax>1e': '1e' is not a number"),
    ("absmax>abc", r"'abc' is not a number"),
    ("absmax>-1", r"threshold must be a finite number >= 0"),
    ("absmax>nan", r"threshold must be a finite number >= 0"),
    ("saturated>2", r"'saturated>2': F is a fraction of the gate soft cap, in \(0, 1\]"),
    ("saturated>0", r"F is a fraction"),
    ("absmax<3", r"unknown breakpoint condition 'absmax<3'"),
])
def test_malformed_breakpoint_conditions_are_refused_when_added(model, ids, condition, message):
    dbg = Debugger(model, ids[:, :3], mode="recurrent")
    with pytest.raises(ValueError, match=message):
        dbg.add_breakpoint(condition=condition)
    assert dbg.breakpoints == []
    assert dbg.step().name == "embedding"  # the debugger still steps


def test_well_formed_thresholds_with_exponents_and_spaces_work(model, ids):
    dbg = Debugger(model, ids[:, :3], mode="recurrent")
    dbg.add_breakpoint(condition="absmax > 1e-3")
    ev = dbg.continue_()
    assert ev.name == "embedding" and ev.summary["absmax"] > 1e-3


def test_breakpoint_tokens_outside_the_sequence_are_refused(model, ids):
    dbg = Debugger(model, ids[:, :4], mode="recurrent")
    with pytest.raises(ValueError, match=r"breakpoint token 4 is outside the sequence: positions are 0\.\.3"):
        dbg.add_breakpoint(probe="logits", token=4)
    with pytest.raises(TypeError, match=r"breakpoint token must be an integer position, got 1\.5"):
        dbg.add_breakpoint(probe="logits", token=1.5)


def test_run_to_refuses_unknown_probes_tokens_past_the_end_and_targets_already_run(model, ids):
    dbg = Debugger(model, ids[:, :4], mode="recurrent")
    with pytest.raises(KeyError, match=r"no probe matches 'blocks\.1\.mlstm\.memroy'; close names: \['blocks\.1\.mlstm\.memory'"):
        dbg.run_to(probe="blocks.1.mlstm.memroy")
    with pytest.raises(ValueError, match=r"run_to token 4 is outside the sequence: positions are 0\.\.3"):
        dbg.run_to(probe="blocks.0.mlstm.q", token=4)
    assert dbg.history == []  # nothing ran
    ev = dbg.run_to(probe="blocks.1.mlstm.q", token=2)
    assert (ev.name, ev.token) == ("blocks.1.mlstm.q", 2)
    ran = len(dbg.history)
    with pytest.raises(ValueError, match=r"run_to blocks\.0\.mlstm\.q @ token 2: it has already run \(the debugger is "
                                         r"at blocks\.1\.mlstm\.q, token 2\); reset\(\) to run it again"):
        dbg.run_to(probe="blocks.0.mlstm.q", token=2)
    with pytest.raises(ValueError, match=r"@ token 1: it has already run"):
        dbg.run_to(token=1)
    assert len(dbg.history) == ran  # a refused run_to does not move the debugger
    ev = dbg.run_to(probe="blocks.1.mlstm.k", token=2)  # later in the same token: still ahead
    assert (ev.name, ev.token) == ("blocks.1.mlstm.k", 2)
    ev = dbg.run_to(probe="blocks.0.mlstm.q")  # without a token: the next one, in token 3
    assert (ev.name, ev.token) == ("blocks.0.mlstm.q", 3)
    assert dbg.continue_() is None
    with pytest.raises(ValueError, match=r"the forward pass has finished; reset\(\) to run it again"):
        dbg.run_to(probe="logits")


def test_interventions_on_unknown_probes_or_with_bad_values_are_refused(model, ids):
    base = np.array(model(ids)[0])
    cases = [
        (dict(probe="blocks.0.mlstm.qq", kind="zero"), KeyError,
         r"no probe matches 'blocks\.0\.mlstm\.qq', so the intervention would do nothing; close names: \['blocks\.0\.mlstm\.q'"),
        (dict(probe="blocks.*.nothing", kind="zero"), KeyError, r"no probe matches 'blocks\.\*\.nothing'"),
        (dict(probe="blocks.0.mlstm.q", kind="zero", tokens=[-1]), ValueError, r"tokens must be .* positions >= 0, got \[-1\]"),
        (dict(probe="blocks.0.mlstm.q", kind="zero", tokens=[1.5]), ValueError, r"got \[1\.5\]"),
        (dict(probe="blocks.0.mlstm.q", kind="zero", tokens=[]), ValueError, r"non-empty"),
        (dict(probe="blocks.0.mlstm.q", kind="scale", value=float("nan")), ValueError, r"finite number as value, got nan"),
        (dict(probe="blocks.0.mlstm.q", kind="scale", value=True), ValueError, r"got True"),
        (dict(probe="blocks.0.mlstm.q", kind="zero", value=3.0), ValueError, r"a 'zero' intervention takes no value"),
        (dict(probe="blocks.0.mlstm.q", kind="replace", value="ones"), ValueError, r"numeric \[B, S, \.\.\.\] array"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            model.interventions.add(**kwargs)
    assert len(model.interventions) == 0
    np.testing.assert_array_equal(np.array(model(ids)[0]), base)
    handle = model.interventions.add("blocks.*.mlstm.q", "zero", tokens=np.array([1, 2]))  # a pattern that matches
    assert handle.tokens == (1, 2)
    assert not np.allclose(np.array(model(ids)[0]), base)


def test_a_bad_mode_or_state_is_refused_when_the_debugger_is_made(model, ids):
    """The forward the debugger steps is a generator, so an unknown mode or a state of the wrong shape or block
    type used to be accepted by Debugger(...) and only raised at the first step. Now they are refused by name when
    given; a good state still starts the run from it (the stepped logits equal the model's from that state)."""
    with pytest.raises(ValueError, match=r"mode must be one of \('chunkwise', 'recurrent'\), got 'step'"):
        Debugger(model, ids, mode="step")
    _, state = model(ids[:, :3])
    with pytest.raises(TypeError, match=r"state\[0\] must be a MLSTMState .*got NoneType"):
        Debugger(model, ids[:, 3:], state=[None] * len(state))
    B = ids.shape[0]
    with pytest.raises(ValueError, match=rf"state\[0\]\.C has shape \({B}, .*\), expected \({2 * B}, .*\) \(batch {2 * B}\)"):
        Debugger(model, mx.concatenate([ids[:, 3:], ids[:, 3:]]), state=state)
    dbg = Debugger(model, ids[:, 3:], state=state)
    assert dbg.continue_() is None
    want, _ = model(ids[:, 3:], state=state, mode="recurrent")
    np.testing.assert_array_equal(dbg.logits, np.array(want))


def test_a_source_trace_given_to_an_intervention_that_does_not_patch_is_refused(model, ids):
    source = model.run_with_trace(ids, probes=["blocks.0.mlstm.h"], mode="full")
    with pytest.raises(ValueError, match=r"source_trace= is for 'patch' interventions; a 'zero' intervention"):
        model.interventions.add("blocks.0.mlstm.h", "zero", source_trace=source)  # was a zero that ignored it
    assert model.interventions.list() == []
    patched = model.interventions.add("blocks.0.mlstm.h", "patch", source_trace=source)
    assert patched.source is source


def test_a_breakpoint_on_a_name_close_to_no_probe_lists_some_probe_names(model, ids):
    dbg = Debugger(model, ids[:, :3])
    with pytest.raises(KeyError, match=r"no probe matches 'nosuch'; close names: \['embedding', 'blocks\.0\.in'"):
        dbg.add_breakpoint(probe="nosuch")  # was "close names: []"
