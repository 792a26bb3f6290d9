"""compute_dtype: activations and matmuls in float32 (the exact path) or bfloat16 (the official autocast), with
states, gate arithmetic and norm reductions float32 either way; its accuracy against the official bf16 run
(tests/fixtures/golden/bf16, made by tools/golden_bf16.py)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import xlstm_viz
from xlstm_viz.cli import main as cli_main
from xlstm_viz.execution.executor import Executor

from tolerances import assert_close_to_scale


class _Dtypes:
    """An observer that records each cell's output dtype (the executor's real forward, nothing replaced)."""

    stepping = False

    def __init__(self):
        self.dtypes: dict[str, mx.Dtype] = {}

    def wants_memory_trace(self, block: int) -> bool:
        return False

    def on_cell(self, event) -> None:
        self.dtypes[event.name] = event.output.dtype


def _run(model, ids):
    observer = _Dtypes()
    logits, state = Executor(model).forward_observed(ids, observer=observer)
    return logits, state, observer.dtypes


@pytest.fixture(scope="module")
def bf16_reference(golden_dir):
    return np.load(golden_dir / "bf16" / "reference.npz")


def test_bfloat16_compute_runs_activations_in_bf16_and_keeps_states_and_logits_float32(golden_dir, bf16_reference):
    ids = mx.array(bf16_reference["input_ids"])
    model = xlstm_viz.load_model(golden_dir / "small", dtype="bfloat16", compute_dtype="bfloat16")
    logits, state, dtypes = _run(model, ids)
    for name in ("embedding", "blocks.0.mlstm.q", "blocks.0.mlstm.v", "blocks.0.mlstm.igate", "blocks.0.mlstm.memory",
                 "blocks.0.mlstm.norm", "blocks.1.ffn.up", "blocks.2.out", "logits"):
        assert dtypes[name] == mx.bfloat16, (name, dtypes[name])
    assert logits.dtype == mx.float32  # widened after the soft cap
    assert all(s.C.dtype == s.n.dtype == s.m.dtype == mx.float32 for s in state)


def test_float32_compute_of_bf16_weights_keeps_every_activation_float32(golden_dir, bf16_reference):
    ids = mx.array(bf16_reference["input_ids"])
    model = xlstm_viz.load_model(golden_dir / "small", dtype="bfloat16")  # compute_dtype="float32" by default
    _, _, dtypes = _run(model, ids)
    assert set(dtypes.values()) == {mx.float32}, {k: v for k, v in dtypes.items() if v != mx.float32}


@pytest.mark.parametrize("weights,expected", [("float32", mx.float32), ("bfloat16", mx.bfloat16),
                                              ("float16", mx.float32)])
def test_auto_compute_follows_the_weights_dtype(golden_dir, weights, expected):
    model = xlstm_viz.load_model(golden_dir / "small", dtype=weights, compute_dtype="auto")
    assert model.activation_dtype == expected
    _, _, dtypes = _run(model, mx.array([[1, 2, 3]]))
    assert dtypes["blocks.0.mlstm.q"] == expected


def test_an_unknown_compute_dtype_is_refused_naming_it(golden_dir):
    with pytest.raises(ValueError, match=r"compute_dtype must be one of .*got 'fp8'"):
        xlstm_viz.load_model(golden_dir / "small", compute_dtype="fp8")
    model = xlstm_viz.load_model(golden_dir / "small")
    model.compute_dtype = "half"
    with pytest.raises(ValueError, match=r"got 'half'"):
        model(mx.array([[1, 2]]))
    with pytest.raises(ValueError, match=r"original xLSTM .* float32 only; got compute_dtype='bfloat16'"):
        xlstm_viz.load_model(golden_dir / "orig_plain", compute_dtype="bfloat16")


def test_bfloat16_compute_is_closer_to_the_official_bf16_run_than_that_is_to_float32(golden_dir, bf16_reference):
    """Measured on this fixture (random weights that saturate the gates on purpose; logit scale ~24): ours bf16 vs
    official bf16 max 4.5 / mean 0.115; official bf16 vs official float32 (the bf16 noise floor) max 8.4 / mean 0.241;
    ours float32 vs official float32 max 1.3e-4. The README's "Compute dtype" section quotes these."""
    ids = mx.array(bf16_reference["input_ids"])
    official_bf16, official_f32 = bf16_reference["logits_chunkwise_bf16"], bf16_reference["logits_chunkwise_f32"]
    floor = np.abs(official_bf16 - official_f32).mean()
    out = {cd: np.array(xlstm_viz.load_model(golden_dir / "small", dtype="bfloat16", compute_dtype=cd)(ids)[0])
           for cd in ("float32", "bfloat16")}
    assert np.abs(out["float32"] - official_f32).max() < 1e-3 * np.abs(official_f32).max()
    ours_vs_official_bf16 = np.abs(out["bfloat16"] - official_bf16).mean()
    assert ours_vs_official_bf16 < 0.75 * floor, (ours_vs_official_bf16, floor)
    # and the switch changes the computation by about the bf16 noise floor
    assert np.abs(out["bfloat16"] - out["float32"]).mean() > 0.5 * floor


def test_info_reports_the_compute_dtype(golden_dir, capsys):
    assert cli_main(["info", "--model", str(golden_dir / "small")]) == 0
    assert "compute dtype: float32 (compute_dtype='float32'; weights float32" in capsys.readouterr().out


def test_a_stats_trace_of_bfloat16_compute_reads_its_bf16_probes(golden_dir, bf16_reference):
    ids = mx.array(bf16_reference["input_ids"][:1, :20])
    model = xlstm_viz.load_model(golden_dir / "small", dtype="bfloat16", compute_dtype="bfloat16")
    trace = model.run_with_trace(ids, mode="stats")
    ref = xlstm_viz.load_model(golden_dir / "small", dtype="bfloat16").run_with_trace(ids, mode="stats")
    assert trace.probes == ref.probes
    for probe in ("blocks.0.mlstm.q", "blocks.1.mlstm.memory"):
        assert trace.stats[probe].keys() == ref.stats[probe].keys()
        for stat, values in trace.stats[probe].items():
            assert np.isfinite(values).all(), (probe, stat)
    # the first projection differs from the float32 run by bf16 rounding alone (later probes by much more: these
    # random weights saturate the gates)
    for stat, values in trace.stats["blocks.0.mlstm.q"].items():
        want = ref.stats["blocks.0.mlstm.q"][stat]
        assert np.abs(values - want).max() <= 2e-2 * np.abs(want).max(), stat


def _bf16_cell_inputs(seed: int):
    """bf16 q, k, v and float32 gates of an odd length (45, chunks of 16), two heads, and the zero state."""
    from xlstm_viz.model.mlstm_cell import MLSTMState

    ks = mx.random.split(mx.random.key(seed), 5)
    B, NH, S, DQK, DV = 1, 2, 45, 16, 24
    q, k = (mx.random.normal((B, NH, S, DQK), key=x).astype(mx.bfloat16) for x in ks[:2])
    v = mx.random.normal((B, NH, S, DV), key=ks[2]).astype(mx.bfloat16)
    i, f = (3 * mx.random.normal((B, NH, S), key=x) for x in ks[3:])
    return q, k, v, i, f, MLSTMState.zeros(B, NH, DQK, DV)


def test_the_chunkwise_cell_takes_bf16_operands_for_its_products_and_stays_within_bf16_of_float32():
    """Under compute_dtype="bfloat16" the chunkwise form's products (q k^T, scores v, q C_in, the chunk updates) take
    bf16 operands, as the official kernels do; states and gates stay float32. So its h differs from the same inputs
    widened first (the float32 path) by bf16 rounding: not zero, and within a few bf16 ulps of the magnitude."""
    from xlstm_viz.model import mlstm_cell

    q, k, v, i, f, state = _bf16_cell_inputs(4)
    h16, s16, _ = mlstm_cell.chunkwise(q, k, v, i, f, state, 1e-6, chunk_size=16)
    wide = [x.astype(mx.float32) for x in (q, k, v)]
    h32, s32, _ = mlstm_cell.chunkwise(*wide, i, f, state, 1e-6, chunk_size=16)
    scale = float(mx.max(mx.abs(h32)))
    diff = float(mx.max(mx.abs(h16 - h32)))
    assert h16.dtype == mx.float32 and s16.C.dtype == mx.float32
    assert 0 < diff <= 8 * 2**-8 * scale, (diff, scale)
    assert mx.array_equal(s16.m, s32.m)  # the stabiliser is float32 gate arithmetic either way


def test_the_memory_norms_of_bfloat16_compute_take_bf16_products_and_stay_within_bf16_of_float32():
    """A trace's chunkwise memory norms (the Gram identity, mlstm_cell._chunk_memory_norms) take the products'
    dtype like the cell: under bf16 inputs they differ from the same inputs widened first by bf16 rounding, not
    zero and within a few bf16 ulps of the magnitude; m is float32 gate arithmetic either way."""
    from xlstm_viz.model import mlstm_cell

    q, k, v, i, f, state = _bf16_cell_inputs(5)
    _, _, t16 = mlstm_cell.chunkwise(q, k, v, i, f, state, 1e-6, chunk_size=16, with_trace=True)
    wide = [x.astype(mx.float32) for x in (q, k, v)]
    _, _, t32 = mlstm_cell.chunkwise(*wide, i, f, state, 1e-6, chunk_size=16, with_trace=True)
    for name in ("C_norm", "n_norm"):
        got, want = np.array(getattr(t16, name)), np.array(getattr(t32, name))
        scale, diff = np.abs(want).max(), np.abs(got - want).max()
        assert 0 < diff <= 8 * 2**-8 * scale, (name, diff, scale)
    assert mx.array_equal(t16.m, t32.m)


def test_a_compute_dtype_changed_between_calls_reaches_the_compiled_paths(golden_dir):
    """model.compute_dtype may be changed between calls: the compiled forward, the compiled decode step (what
    generate runs) and the compiled trace now follow it like the eager forward. The graph signature lacked the
    activation dtype, so a graph traced in float32 kept running in float32 after the switch to bfloat16 (compiled
    bf16 logits equal to the float32 ones, 0.27 away from the eager bf16 run on the golden small model)."""
    model = xlstm_viz.load_model(golden_dir / "small")
    ids = mx.array(np.random.default_rng(0).integers(0, model.config.vocab_size, (2, 13)))
    forward, step = model.compiled("chunkwise"), model.compiled_step()
    for dtype in ("float32", "bfloat16", "float32"):
        model.compute_dtype = dtype
        eager, _ = model(ids)
        eager_step, _ = model(ids[:, :1], mode="recurrent")
        for what, got, want in (("compiled forward", forward(ids, None)[0], eager),
                                ("compiled step", step(ids[:, :1], None)[0], eager_step),
                                ("compiled trace", model.run_with_trace(ids, compiled=True).logits, eager)):
            assert_close_to_scale(np.array(got), np.array(want), 64, f"{what} under compute_dtype={dtype}")


def test_a_config_field_changed_between_calls_reaches_the_compiled_paths(golden_dir):
    """A compiled graph traces the config's numbers in as constants (the gate and logit soft caps, the norms' eps),
    and the graph signature held only chunk_size of the config: after `model.config.gate_soft_cap = 3.0` the
    compiled forward kept the old cap (22.7 from the eager logits on golden small; output_logit_soft_cap 16.6,
    norm_eps 18.5). Every assignment now counts in config.version, which the signature holds."""
    model = xlstm_viz.load_model(golden_dir / "small")
    ids = mx.array(np.random.default_rng(0).integers(0, model.config.vocab_size, (2, 9)))
    forward, step = model.compiled("chunkwise"), model.compiled_step()
    forward(ids, None), step(ids[:, :1], None), model.run_with_trace(ids, compiled=True)  # traced with the old values
    for name, value in (("gate_soft_cap", 3.0), ("output_logit_soft_cap", 5.0), ("norm_eps", 0.5)):
        before = model.config.version
        setattr(model.config, name, value)
        assert model.config.version == before + 1
        eager, _ = model(ids)
        eager_step, _ = model(ids[:, :1], mode="recurrent")
        for what, got, want in (("compiled forward", forward(ids, None)[0], eager),
                                ("compiled step", step(ids[:, :1], None)[0], eager_step),
                                ("compiled trace", model.run_with_trace(ids, compiled=True).logits, eager)):
            assert_close_to_scale(np.array(got), np.array(want), 64, f"{what} after {name} = {value}")
