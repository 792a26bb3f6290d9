"""Per-head interventions and per-head stats split each cell by its own block's heads, not the model's num_heads."""

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

from xlstm_viz.config import XLSTMConfig
from xlstm_viz.model import XLSTM

pytestmark = pytest.mark.numerical

D, NH, SLSTM_NH = 32, 4, 2


def mixed(seed=0):
    """mLSTM (4 heads), sLSTM (2 heads: slstm_num_heads), mLSTM: a stack whose blocks disagree on their head count."""
    config = XLSTMConfig.from_dict(dict(embedding_dim=D, num_heads=NH, slstm_num_heads=SLSTM_NH, num_blocks=3,
                                        vocab_size=40, chunk_size=4, layer_types=["mlstm", "slstm", "mlstm"]))
    model = XLSTM(config)
    rng = np.random.default_rng(seed)
    params = tree_flatten(model.parameters())
    model.update(tree_unflatten([(k, mx.array(rng.normal(0, 0.3, v.shape).astype(np.float32))) for k, v in params]))
    return model, mx.array(rng.integers(0, 40, (2, 7)))


def test_each_cell_reports_the_heads_of_its_own_block():
    model, _ = mixed()
    assert model.cell_heads("blocks.0.mlstm.q") == NH and model.cell_heads("blocks.0.mlstm.igate") == NH
    for name in ("zgate", "c", "h", "norm", "conv"):
        assert model.cell_heads(f"blocks.1.slstm.{name}") == SLSTM_NH, name
    for name in ("blocks.1.ffn.up", "blocks.1.mid", "embedding", "logits"):
        assert model.cell_heads(name) is None, name


def test_a_head_ablation_on_an_slstm_cell_zeroes_that_blocks_head_of_features():
    # sLSTM head 1 of 2 is features 16..31; with the model's 4 heads it would have been 8..15
    model, ids = mixed()
    probe = "blocks.1.slstm.zgate"
    before = model.run_with_trace(ids, probes=[probe], mode="full").full[probe]
    model.interventions.add(probe, "zero", heads=[1])
    after = model.run_with_trace(ids, probes=[probe], mode="full").full[probe]
    per = D // SLSTM_NH
    assert np.abs(before[..., per:]).min() > 0  # the ablated features were not zero to begin with
    np.testing.assert_array_equal(after[..., per:], 0.0)
    np.testing.assert_array_equal(after[..., :per], before[..., :per])


def test_a_head_beyond_the_probed_blocks_heads_is_refused_naming_the_probe():
    model, _ = mixed()
    with pytest.raises(ValueError, match=r"head 3 does not exist in 'blocks.1.slstm.h': that cell has heads 0..1"):
        model.interventions.add("blocks.1.slstm.h", "zero", heads=[3])
    # a pattern over both block types: every match must have the head
    with pytest.raises(ValueError, match=r"head 2 does not exist in 'blocks.1.slstm.norm'"):
        model.interventions.add("blocks.*.*.norm", "zero", heads=[2])
    model.interventions.add("blocks.0.mlstm.h", "zero", heads=[3])  # the mLSTM block has 4
    assert len(model.interventions) == 1


def test_heads_on_a_cell_without_heads_are_refused_naming_the_probe():
    from test_ncps_blocks import hybrid

    model = hybrid(blocks=("cfc", "mlstm"))
    for probe in ("blocks.0.ncp.out", "blocks.1.ffn.up"):
        with pytest.raises(ValueError, match=rf"'{probe}' has no heads .* so heads=\[0\] cannot select any"):
            model.interventions.add(probe, "zero", heads=[0])
    model.interventions.add("blocks.1.mlstm.igate", "zero", heads=[1])  # the mLSTM block of the hybrid has 2


def test_a_neuron_blocks_heads_are_its_neurons_checked_when_added():
    from test_ncps_blocks import hybrid

    model = hybrid(blocks=("cfc", "mlstm"))
    for probe in ("blocks.0.ncp.neurons", "blocks.0.ncp.motor"):
        units = model.cell_heads(probe)
        assert units == model.cell_wirings[0].cells[probe].params["features"]
        model.interventions.add(probe, "zero", heads=[units - 1])
        with pytest.raises(ValueError, match=rf"head {units} does not exist in '{probe}': that cell has heads "
                                             rf"0\.\.{units - 1}"):
            model.interventions.add(probe, "zero", heads=[units])


def test_stats_of_an_slstm_cell_are_per_head_of_its_block():
    model, ids = mixed()
    trace = model.run_with_trace(ids, probes=["blocks.1.slstm.h", "blocks.0.mlstm.h"], mode="full")
    for probe, heads in (("blocks.1.slstm.h", SLSTM_NH), ("blocks.0.mlstm.h", NH)):
        x = trace.full[probe].astype(np.float64)
        x = x.reshape(*x.shape[:-1], heads, -1)
        np.testing.assert_allclose(trace.stats[probe]["mean"], x.mean(-1), rtol=1e-5, atol=1e-6, err_msg=probe)
        np.testing.assert_allclose(trace.stats[probe]["l2"], np.sqrt((x * x).sum(-1)), rtol=1e-5, err_msg=probe)


def test_a_head_sweep_covers_each_probes_own_heads_and_refuses_a_headless_one():
    from xlstm_viz.execution.patching import Patcher

    model, ids = mixed()
    clean = np.array(ids[0])
    corrupted = clean.copy()
    corrupted[2] = (corrupted[2] + 1) % 40
    patcher = Patcher(model, clean, corrupted)
    sweep = patcher.sweep(["blocks.0.mlstm.h", "blocks.1.slstm.h"], over="head", at=6, metric="logit_diff")
    assert sweep.columns == list(range(NH))
    assert np.isfinite(sweep.values[0]).all()  # the mLSTM block: 4 heads
    assert np.isfinite(sweep.values[1, :SLSTM_NH]).all() and np.isnan(sweep.values[1, SLSTM_NH:]).all()
    with pytest.raises(ValueError, match=r"cannot sweep over heads: 'blocks.1.ffn.up' has no heads"):
        patcher.sweep(["blocks.0.mlstm.h", "blocks.1.ffn.up"], over="head")
    assert len(model.interventions) == 0
