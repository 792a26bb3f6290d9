"""`config.extra["ncps"]`: the LTC block's settings (ncps.torch `LTC`'s arguments) as config keys, each reaching the
computation, and named errors for bad or unread keys."""

from __future__ import annotations

import numpy as np
import pytest

import xlstm_viz  # noqa: F401  (BLAS before MLX)
import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from tests.test_ncps_blocks import MOTOR, UNITS, assert_close, ids
from xlstm_viz.config import XLSTMConfig
from xlstm_viz.model import XLSTM


def ltc_model(blocks=("ltc", "mlstm"), **settings) -> XLSTM:
    cfg = XLSTMConfig.from_dict(dict(
        embedding_dim=32, num_heads=2, num_blocks=len(blocks), vocab_size=20, chunk_size=8, block_types=list(blocks),
        ncps={"units": UNITS, "output_size": MOTOR, "sparsity_level": 0.5, "seed": 7, **settings},
        bos_token_id=None, eos_token_id=None, pad_token_id=0))
    mx.random.seed(0)
    return XLSTM(cfg)


def randomized(model: XLSTM) -> XLSTM:
    """Non-trivial readout and input/output mappings (ncps starts them at the identity, where affine = linear)."""
    block = model.blocks[0]
    mx.random.seed(1)
    block.out_proj.weight = mx.random.normal(block.out_proj.weight.shape)
    cell = block.neurons.rnn_cell
    for name in ("input_w", "input_b", "output_w", "output_b"):
        setattr(cell, name, mx.random.normal((cell.wiring.input_dim if name.startswith("input") else MOTOR,)))
    mx.eval(model.parameters())
    return model


SETTINGS = [("input_mapping", "linear"), ("input_mapping", None), ("output_mapping", "linear"),
            ("output_mapping", None), ("ode_unfolds", 2), ("epsilon", 0.5), ("implicit_param_constraints", False)]


@pytest.mark.parametrize("key,value", SETTINGS, ids=[f"{k}={v}" for k, v in SETTINGS])
def test_each_ltc_setting_reaches_the_ncps_ltc_module_and_changes_the_forward(key, value):
    """The block with a setting runs the parity-tested `neurons.LTC` built with it (its motor output is that
    module's output on the normed input), and differs from the default block on the same weights."""
    base = randomized(ltc_model())
    variant = ltc_model(**{key: value})
    mine = dict(tree_flatten(variant.parameters()))
    # the same weights, less the mapping tensors the setting drops (ncps has no input_b under "linear", ...)
    variant.update(tree_unflatten([(k, v) for k, v in tree_flatten(base.parameters()) if k in mine]))
    dropped = sorted(set(dict(tree_flatten(base.parameters()))) - set(mine))
    if key.endswith("mapping"):
        assert dropped, f"{key}={value!r} should drop a mapping tensor"
    x = ids(10)
    tr = variant.run_with_trace(x, mode="full", probes=["blocks.0.ncp.norm_in", "blocks.0.ncp.motor"])
    y, _ = variant.blocks[0].neurons(mx.array(tr.full["blocks.0.ncp.norm_in"]))
    cell = variant.blocks[0].neurons.rnn_cell.config
    assert getattr(cell, key) == value
    assert_close(tr.full["blocks.0.ncp.motor"], np.array(y), what=f"motor neurons vs neurons.LTC({key}={value!r})")
    assert float(mx.abs(variant(x)[0] - base(x)[0]).max()) > 1e-4, f"{key}={value!r} changed nothing"


def test_explicit_constraints_are_applied_after_each_training_step():
    """implicit_param_constraints false: ncps clips w, sensory_w, cm, gleak at 0 after each optimiser step
    (`LTC.apply_weight_constraints`); the training loop calls it. A large learning rate pushes some of them below 0
    in an AdamW step (about lr per entry; the first step only moves the zero readout), so the clipping is what keeps them >= 0."""
    from xlstm_viz.tasks import MQARTask
    from xlstm_viz.training import Curriculum, train

    task = MQARTask(num_keys=9, num_values=9)
    config = ltc_model(implicit_param_constraints=False).config
    result = train(config, task, steps=3, batch_size=2, lr=1.0, weight_decay=0.0, progress=False, compile=False,
                   curriculum=Curriculum(pair_counts=(2,), weights=(1.0,)), log_every=1)
    cell = result.model.blocks[0].neurons.rnn_cell
    for name in ("w", "sensory_w", "cm", "gleak"):
        assert float(mx.min(getattr(cell, name))) >= 0.0, name
    assert float(mx.max(cell.w)) > 1.0  # the step did move them (uniform init is at most 1)


@pytest.mark.parametrize("settings,message", [
    ({"ode_unfolds": 0}, "'ode_unfolds' must be an int >= 1"),
    ({"ode_unfolds": 2.5}, "'ode_unfolds' must be an int"),
    ({"epsilon": -1.0}, "'epsilon' must be >= 0"),
    ({"epsilon": "small"}, "'epsilon' must be a number"),
    ({"input_mapping": "sigmoid"}, "'input_mapping' must be 'affine', 'linear' or null"),
    ({"implicit_param_constraints": 1}, "'implicit_param_constraints' must be true or false"),
    ({"mode": "fast"}, "'mode' must be one of"),
])
def test_bad_ncps_setting_values_are_named(settings, message):
    with pytest.raises(ValueError, match=message):
        ltc_model(blocks=("ltc", "cfc"), **settings)


def test_a_setting_no_block_reads_is_refused():
    """No switch that does nothing: an LTC key on a model without an LTC block (or the CfC's mode without a CfC)."""
    with pytest.raises(ValueError, match="'ode_unfolds' is read only by ltc blocks"):
        ltc_model(blocks=("cfc", "mlstm"), ode_unfolds=3)
    with pytest.raises(ValueError, match="'mode' is read only by cfc blocks"):
        ltc_model(blocks=("ltc", "mlstm"), mode="pure")
