"""Interventions on a neuron block's neurons inside the recurrence (`inside=True`): applied to the neuron's state at
every step, so they reach the neurons it feeds (an ablation in ncps terms), unlike the default downstream ones."""

from __future__ import annotations

import numpy as np
import pytest

import xlstm_viz  # noqa: F401  (BLAS before MLX)
import mlx.core as mx

from tests.test_ncps_blocks import MOTOR, assert_close, hybrid, ids
from xlstm_viz.model.ncp_slstm_block import layer_ids

ALL_NEURON_BLOCKS = ["cfc", "ltc", "ncp_slstm", "ncp_mlstm"]
PROBES = ["blocks.0.ncp.neurons", "blocks.0.ncp.motor"]


def command_neuron(model) -> int:
    """A command neuron with a synapse onto a motor neuron (so ablating it must reach the motor neurons)."""
    A = model.blocks[0].wiring.adjacency_matrix
    lo, hi = layer_ids(model.blocks[0].wiring, 1)
    return next(c for c in range(lo, hi) if np.abs(A[c, :MOTOR]).sum() > 0)


def moved(got, base) -> bool:
    """got differs from base by more than float32 noise, relative to base's scale (a deep NCP layer's activity
    can be ~1e-5 in a fresh block)."""
    return float(np.abs(got - base).max()) > 1e-3 * max(float(np.abs(base).max()), 1e-30)


def run(model, x, run_mode="chunkwise"):
    return model.run_with_trace(x, mode="full", probes=PROBES, run_mode=run_mode).full


@pytest.mark.parametrize("kind", ALL_NEURON_BLOCKS)
def test_a_neuron_zeroed_inside_the_recurrence_reaches_the_motor_neurons_and_downstream_does_not(kind):
    model, x = hybrid(blocks=(kind, "mlstm")), ids()
    c = command_neuron(model)
    base = run(model, x)
    h = model.interventions.add("blocks.0.ncp.neurons", "zero", heads=[c])
    downstream = run(model, x)
    model.interventions.remove(h)
    h = model.interventions.add("blocks.0.ncp.neurons", "zero", heads=[c], inside=True)
    inside = run(model, x)
    recurrent = run(model, x, "recurrent")
    model.interventions.remove(h)
    for got in (downstream, inside):
        assert np.abs(got["blocks.0.ncp.neurons"][..., c]).max() == 0.0
    # downstream: the recurrence ran as before, the motor neurons did not see it
    np.testing.assert_array_equal(downstream["blocks.0.ncp.motor"], base["blocks.0.ncp.motor"])
    # inside: the command neuron's synapses carried the zero to the motor neurons
    assert moved(inside["blocks.0.ncp.motor"], base["blocks.0.ncp.motor"])
    # the same ablation token by token (a recurrent run sees one token per call)
    assert_close(recurrent["blocks.0.ncp.neurons"], inside["blocks.0.ncp.neurons"], what="recurrent vs chunkwise")


@pytest.mark.parametrize("kind", ["ncp_slstm", "ncp_mlstm"])
def test_zeroing_a_memory_neuron_inside_equals_removing_its_outgoing_synapses(kind):
    """For sLSTM / mLSTM neurons a neuron's h reaches the others only through its synapses, so zeroing its h at
    every step (inside) leaves every other neuron as the wiring without that neuron's synapses does. The sLSTM case
    takes a command neuron with a recurrent synapse onto another command neuron (h_{t-1} through R); the mLSTM's
    in-layer synapses read the memory readout, not h, so its case takes an inter neuron."""
    model, x = hybrid(blocks=(kind, "mlstm")), ids()
    wiring = model.blocks[0].wiring
    A = wiring.adjacency_matrix
    lo, hi = layer_ids(wiring, 1 if kind == "ncp_slstm" else 0)
    in_layer = lambda j: any(A[j, d] != 0 for d in range(lo, hi) if d != j)
    s = next(j for j in range(lo, hi) if np.abs(A[j]).sum() > 0 and (kind != "ncp_slstm" or in_layer(j)))
    h = model.interventions.add("blocks.0.ncp.neurons", "zero", heads=[s], inside=True)
    ablated = run(model, x)["blocks.0.ncp.neurons"]
    model.interventions.remove(h)
    for d in np.flatnonzero(wiring.adjacency_matrix[s]):
        wiring.set_polarity(s, int(d), 0)
    cut = run(model, x)["blocks.0.ncp.neurons"]
    others = [j for j in range(wiring.units) if j != s]
    assert_close(ablated[..., others], cut[..., others], what="inside ablation vs the synapses removed")


@pytest.mark.parametrize("kind", ALL_NEURON_BLOCKS)
def test_an_inside_intervention_from_a_token_on_leaves_earlier_tokens_and_patches_by_token(kind):
    """tokens= limits the steps: before the first one nothing changes; a patch from a clean run inside the
    recurrence restores the clean run exactly (the patched neurons are the clean ones at every step)."""
    model, x = hybrid(blocks=(kind, "mlstm")), ids()
    c = command_neuron(model)
    base = run(model, x)
    h = model.interventions.add("blocks.0.ncp.neurons", "scale", value=-3.0, heads=[c], tokens=[4, 5, 6, 7, 8],
                                inside=True)
    late = run(model, x)
    model.interventions.remove(h)
    np.testing.assert_array_equal(late["blocks.0.ncp.motor"][:, :4], base["blocks.0.ncp.motor"][:, :4])
    # at the first scaled step the neuron had its clean state: scaled once (not again downstream, nor per LTC unfold)
    assert_close(late["blocks.0.ncp.neurons"][:, 4, c], -3.0 * base["blocks.0.ncp.neurons"][:, 4, c],
                 what="the neuron at the first scaled token")
    assert moved(late["blocks.0.ncp.motor"][:, 4:], base["blocks.0.ncp.motor"][:, 4:])
    if kind != "ltc":  # the layers feed forward within a token: the motor layer reads the scaled neuron at once
        # (an LTC's scale acts after a token's last ODE unfold, so its synapses carry it from the next token on)
        assert moved(late["blocks.0.ncp.motor"][:, 4], base["blocks.0.ncp.motor"][:, 4])
    clean = model.run_with_trace(x, mode="full", probes=["blocks.0.ncp.neurons"])
    wiring = model.blocks[0].wiring
    src, dst = map(int, np.argwhere(wiring.adjacency_matrix != 0)[0])
    wiring.set_polarity(src, dst, 0)  # corrupt the run; patching every neuron inside brings the clean one back
    h = model.interventions.add("blocks.0.ncp.neurons", "patch", source_trace=clean, inside=True)
    patched = run(model, x)
    model.interventions.remove(h)
    assert_close(patched["blocks.0.ncp.motor"], base["blocks.0.ncp.motor"], what="patched inside vs clean")


def test_inside_is_refused_on_a_cell_without_a_neuron_recurrence():
    model = hybrid()
    with pytest.raises(ValueError, match=r"'blocks.1.mlstm.h' is not the neurons of a neuron block"):
        model.interventions.add("blocks.1.mlstm.h", "zero", inside=True)
    with pytest.raises(TypeError, match="inside must be True or False"):
        model.interventions.add("blocks.0.ncp.neurons", "zero", inside="yes")
    item = model.interventions.add("blocks.0.ncp.neurons", "zero", heads=[3], inside=True)
    assert "inside the recurrence" in item.describe()


def test_a_neuron_index_past_the_block_is_refused_when_added_naming_the_cell():
    model = hybrid()
    with pytest.raises(ValueError, match=r"head 99 does not exist in 'blocks.0.ncp.neurons': that cell has heads"):
        model.interventions.add("blocks.0.ncp.neurons", "zero", heads=[99], inside=True)
    assert len(model.interventions) == 0


def test_an_inside_ablation_survives_a_session_save_and_restore_and_is_in_the_snippet():
    from xlstm_viz.dashboard.session import ModelSession
    from xlstm_viz.dashboard.snippet import python_snippet
    from xlstm_viz.tasks import MQARTask

    model = hybrid(blocks=("ncp_slstm", "mlstm"))
    model.task = MQARTask(num_keys=9, num_values=9)
    c = command_neuron(model)
    session = ModelSession(model=model)
    session.mqar_example(4, seed=1)
    model.interventions.add("blocks.0.ncp.neurons", "zero", heads=[c], inside=True)
    session.run().result(timeout=120)
    logits = session.trace.logits.copy()
    saved = session.state_dict()
    assert "inside=True" in python_snippet({"actions": []}, model.interventions.list())
    other = hybrid(blocks=("ncp_slstm", "mlstm"))
    other.task = model.task
    restored = ModelSession(model=other)
    report = restored.restore(saved).result(timeout=120)
    assert not report.refused, report.refused
    assert [i.inside for i in other.interventions.list()] == [True]
    np.testing.assert_array_equal(restored.trace.logits, logits)


@pytest.mark.parametrize("kind", ALL_NEURON_BLOCKS)
def test_the_compiled_forward_applies_an_inside_intervention(kind):
    model, x = hybrid(blocks=(kind, "mlstm")), ids()
    fn = model.compiled("chunkwise")
    base, _ = fn(x, None)
    h = model.interventions.add("blocks.0.ncp.neurons", "zero", heads=[command_neuron(model)], inside=True)
    eager, _ = model(x)
    compiled, _ = fn(x, None)
    assert_close(np.array(compiled), np.array(eager), what="compiled with an inside intervention")
    assert moved(np.array(compiled), np.array(base))
    model.interventions.remove(h)
    np.testing.assert_array_equal(np.array(fn(x, None)[0]), np.array(base))
