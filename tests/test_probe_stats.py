"""The fused CPU stats kernel and the GPU stats table give the numpy reference's numbers, edge cases included."""

import mlx.core as mx
import numpy as np
import pytest

from xlstm_viz.execution import stats_gpu
from xlstm_viz.execution.stats import kernel_stats, numpy_stats, stats_table, table_columns

pytestmark = pytest.mark.numerical


def _table_stats(arrays, layout):
    table = np.array(stats_table(layout)(*[mx.array(a) for a in arrays]))
    return [{s: table[..., o: o + w] for s, (o, w) in cols.items()} for cols in table_columns(layout)]


def _assert_same(got, want, rtol=1e-5, atol=1e-6):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.keys() == w.keys(), i
        for stat in w:
            assert g[stat].shape == w[stat].shape, (i, stat)
            np.testing.assert_allclose(g[stat], w[stat], rtol=rtol, atol=atol, err_msg=f"input {i}, {stat}")


@pytest.fixture
def arrays_and_layout():
    rng = np.random.default_rng(0)
    B, S = 2, 7
    arrays = [
        rng.normal(size=(B, S, 64)).astype(np.float32),  # 4 heads of 16
        rng.normal(3.0, 2.0, size=(B, S, 384)).astype(np.float32),  # one wide row
        rng.normal(size=(B, S, 4)).astype(np.float32),  # gate values: 4 heads of one feature
        rng.normal(size=(B, S, 4)).astype(np.float32),  # a raw column
        rng.normal(size=(B, S, 1000)).astype(np.float32) * 30,  # logits-like, a width no vector unroll divides
    ]
    layout = ((64, 4, 1), (384, 1, 1), (4, 4, 1), (4, 4, 0), (1000, 1, 1))
    return arrays, layout


def test_kernel_and_table_give_the_reference_stats(arrays_and_layout):
    arrays, layout = arrays_and_layout
    want = numpy_stats(arrays, layout)
    _assert_same(kernel_stats(arrays, layout), want)
    _assert_same(_table_stats(arrays, layout), want, rtol=1e-4, atol=1e-5)
    assert want[0]["mean"].shape == (2, 7, 4) and want[3]["raw"].shape == (2, 7, 4)
    np.testing.assert_array_equal(want[2]["std"], 0.0)  # one feature per head: std is exactly 0
    np.testing.assert_array_equal(kernel_stats(arrays, layout)[2]["std"], 0.0)


def test_kernel_std_is_centred_so_a_large_mean_does_not_swamp_a_small_spread():
    # The moments form E[x^2] - E[x]^2 in float32 loses everything here; the centred form keeps 1e-3 of spread.
    rng = np.random.default_rng(1)
    x = (1000.0 + 1e-3 * rng.normal(size=(1, 3, 256))).astype(np.float32)
    layout = ((256, 1, 1),)
    got = kernel_stats([x], layout)[0]["std"]
    want = numpy_stats([x], layout)[0]["std"]
    np.testing.assert_allclose(got, want, rtol=0.05)


def test_kernel_and_table_propagate_nan_and_inf_like_numpy():
    x = np.zeros((1, 4, 32), np.float32)
    x[0, 0, 3] = np.nan
    x[0, 1, 5] = -np.nan
    x[0, 2, 7] = -np.inf
    x[0, 3, :] = -2.0
    got = kernel_stats([x], ((32, 1, 1),))[0]
    table = _table_stats([x], ((32, 1, 1),))[0]
    with np.errstate(invalid="ignore"):  # inf - inf in numpy's centring, as in the kernel
        want = numpy_stats([x], ((32, 1, 1),))[0]
    for stat in ("mean", "std", "absmax", "l2"):
        np.testing.assert_array_equal(got[stat], want[stat], err_msg=stat)
        np.testing.assert_array_equal(table[stat], want[stat], err_msg=f"table {stat}")
    assert np.isnan(got["absmax"][0, 0, 0]) and np.isnan(got["absmax"][0, 1, 0])
    assert got["absmax"][0, 2, 0] == np.inf and got["absmax"][0, 3, 0] == 2.0


def test_kernel_reads_non_contiguous_inputs_correctly():
    x = np.random.default_rng(2).normal(size=(1, 32, 5)).astype(np.float32).transpose(0, 2, 1)  # [1, 5, 32] strided
    layout = ((32, 2, 1),)
    _assert_same(kernel_stats([x], layout), numpy_stats([x], layout))


def test_without_numba_a_stats_trace_warns_and_gives_the_same_stats(golden_dir, tmp_path):
    import subprocess
    import sys

    import xlstm_viz

    code = f"""
import sys, warnings
sys.modules["numba"] = None  # import numba now raises ImportError
import xlstm_viz, numpy as np, mlx.core as mx  # xlstm_viz first: the same BLAS as this process
mx.set_default_device(mx.cpu)  # the kernel path is the CPU device's
model = xlstm_viz.load_model({str(golden_dir / "tiny")!r})
ids = mx.array(np.load({str(golden_dir / "tiny" / "reference.npz")!r})["input_ids"])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model.run_with_trace(ids).save({str(tmp_path / "fallback.npz")!r})
print("|".join(str(w.message) for w in caught))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "the numba stats kernel is unavailable (ModuleNotFoundError: import of numba halted" in out
    device = mx.default_device()
    mx.set_default_device(mx.cpu)
    try:
        model = xlstm_viz.load_model(golden_dir / "tiny")
        ids = mx.array(np.load(golden_dir / "tiny" / "reference.npz")["input_ids"])
        fallback, kernel = xlstm_viz.Trace.load(tmp_path / "fallback.npz"), model.run_with_trace(ids)
    finally:
        mx.set_default_device(device)
    assert fallback.stats.keys() == kernel.stats.keys()
    for probe, stats in kernel.stats.items():
        assert stats.keys() == fallback.stats[probe].keys(), probe
        for stat, value in stats.items():
            np.testing.assert_allclose(fallback.stats[probe][stat], value, rtol=1e-4,
                                       atol=2e-6 * max(1.0, np.abs(value).max()), err_msg=f"{probe}.{stat}")


def test_cli_info_names_the_stats_path(capsys):
    from xlstm_viz.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    if mx.default_device() == mx.cpu:  # CI
        assert "stats traces: numba" in out and "kernel on MLX's buffers" in out
    elif stats_gpu.available():
        assert "stats traces: one fused CUDA launch" in out
    else:
        assert "stats traces: one compiled MLX table on Device(gpu" in out


needs_cuda = pytest.mark.skipif(not stats_gpu.available(), reason="the fused kernel is CUDA source: run on a CUDA machine")


@needs_cuda
def test_fused_cuda_kernel_gives_the_reference_stats(arrays_and_layout):
    arrays, layout = arrays_and_layout
    _assert_same(stats_gpu.fused_stats([mx.array(a) for a in arrays], layout), numpy_stats(arrays, layout),
                 rtol=1e-4, atol=1e-5)
    x = np.zeros((1, 4, 32), np.float32)
    x[0, 0, 3], x[0, 1, 5], x[0, 2, 7], x[0, 3, :] = np.nan, -np.nan, -np.inf, -2.0
    got = stats_gpu.fused_stats([mx.array(x)], ((32, 1, 1),))[0]
    with np.errstate(invalid="ignore"):
        want = numpy_stats([x], ((32, 1, 1),))[0]
    for stat in ("mean", "std", "absmax", "l2"):
        np.testing.assert_array_equal(got[stat], want[stat], err_msg=stat)


def test_asking_for_the_fused_kernel_off_cuda_names_the_requirement(golden_dir):
    import xlstm_viz
    from xlstm_viz.execution.trace import Recorder

    model = xlstm_viz.load_model(golden_dir / "tiny")
    if stats_gpu.available():
        assert Recorder(model, None, "stats").stats_on == "fused"  # the default on CUDA
    else:
        with pytest.raises(ValueError, match="stats_on='fused' needs MLX's CUDA backend"):
            Recorder(model, None, "stats", stats_on="fused")


def test_the_cuda_kernel_source_ships_with_the_package():
    # Loaded from xlstm_viz/kernels when installed, from <repo>/kernels in a checkout; both are the same file.
    source = stats_gpu._source("probe_stats.cu")
    assert "__shfl_down_sync" in source and "SELECT_INPUTS" in source
    with pytest.raises(FileNotFoundError, match="kernel source nothing.cu not found"):
        stats_gpu._source("nothing.cu")


def test_the_cuda_kernel_name_changes_with_its_source_and_input_count():
    # MLX caches compiled custom kernels by name, also on disk: an edited kernel under its old name would run stale.
    source = stats_gpu._source("probe_stats.cu")
    names = {stats_gpu.kernel_name(3, source), stats_gpu.kernel_name(4, source), stats_gpu.kernel_name(3, source + " ")}
    assert len(names) == 3 and all(n.startswith("xlstm_viz_probe_stats_") for n in names)


def _memory_inputs(rng, B, S, NH, DQK, DV, state):
    k = rng.normal(size=(B, S, NH * DQK)).astype(np.float32)
    v = rng.normal(size=(B, S, NH * DV)).astype(np.float32)
    i = rng.normal(0.0, 3.0, size=(B, S, NH)).astype(np.float32)
    f = rng.normal(2.0, 3.0, size=(B, S, NH)).astype(np.float32)
    given = None
    if state:
        given = (rng.normal(size=(B, NH, DQK, DV)).astype(np.float32), rng.normal(size=(B, NH, DQK)).astype(np.float32),
                 rng.normal(size=(B, NH, 1)).astype(np.float32))
    return k, v, i, f, given


def _host_norms(k, v, i, f, given, NH):
    from memory_reference import memory_norms  # the test suite's reference recurrence

    return memory_norms(k, v, i, f, given)


def _memories(specs):
    """Memory jobs of the given shapes, as numpy (for the references) and as stats_gpu.Memory (MLX)."""
    rng = np.random.default_rng(3)
    host, device = [], []
    for B, S, NH, DQK, DV, state in specs:
        k, v, i, f, given = _memory_inputs(rng, B, S, NH, DQK, DV, state)
        host.append((k, v, i, f, given, NH))
        device.append(stats_gpu.Memory(mx.array(k), mx.array(v), mx.array(i), mx.array(f),
                                       None if given is None else tuple(mx.array(a) for a in given), NH))
    return host, device


def _rows_recurrence(k, v, i, f, C0, n0, m0):
    """One head's recurrence in float64 numpy for some rows of C and n: per token the rows' sums of squares and m.
    k [S, rows], v [S, DV], i and f [S], C0 [rows, DV], n0 [rows], m0 a scalar."""
    C, n, m = C0.astype(np.float64), n0.astype(np.float64), float(m0)
    C_sq, n_sq, ms = [], [], []
    with np.errstate(invalid="ignore"):
        for t in range(len(i)):
            logf = min(f[t], 0.0) - np.log1p(np.exp(-abs(f[t])))
            m_new = max(logf + m, i[t]) if not np.isnan([logf, m, i[t]]).any() else np.nan
            C = np.exp(logf + m - m_new) * C + np.exp(i[t] - m_new) * np.outer(k[t], v[t])
            n = np.exp(logf + m - m_new) * n + np.exp(i[t] - m_new) * k[t]
            m = m_new
            C_sq.append(np.square(C).sum()), n_sq.append(np.square(n).sum()), ms.append(m)
    return np.array(C_sq), np.array(n_sq), np.array(ms)


def _emulate(inputs, plan):
    """What probe_stats.cu computes, task by task from the plan, in numpy."""
    flat = [np.array(a).reshape(-1) for a in inputs]
    out = np.full(plan.size, np.nan, np.float32)
    tasks, memory = np.array(plan.tasks), np.array(plan.memory)
    jobs = memory[stats_gpu.HEADER:].reshape(-1, stats_gpu.MEMORY_ROW)
    assert len(jobs) == memory[0]
    assert len(tasks) == (plan.blocks - len(jobs)) * stats_gpu.THREADS // stats_gpu.WARP  # a task per warp
    for input_, offset, width, dest, kind in tasks:
        x = flat[input_][offset:offset + width].astype(np.float64)
        if width and kind:
            out[dest:dest + 4] = x.mean(), x.std(), np.abs(x).max(), np.sqrt(np.square(x).sum())
        elif width:
            out[dest:dest + width] = x
    template = dict(plan.template)
    DV, ROWS = template["DV"], template["ROWS"]
    for k, v, i, f, C0, n0, m0, B, b, h, S, NH, DQK, g, G, dest in jobs:
        rows = slice(g * ROWS, min(DQK, (g + 1) * ROWS))
        kk = flat[k].reshape(B, S, NH, DQK)[b, :, h, rows]
        vv = flat[v].reshape(B, S, NH, DV)[b, :, h]
        ii, ff = flat[i].reshape(B, S, NH)[b, :, h], flat[f].reshape(B, S, NH)[b, :, h]
        if C0 < 0:
            state = np.zeros((kk.shape[1], DV)), np.zeros(kk.shape[1]), 0.0
        else:
            state = (flat[C0].reshape(B, NH, DQK, DV)[b, h, rows], flat[n0].reshape(B, NH, DQK)[b, h, rows],
                     flat[m0].reshape(B, NH)[b, h])
        plane = B * S * NH
        for c, values in enumerate(_rows_recurrence(kk, vv, ii, ff, *state)):
            if c == 2 and g:
                continue  # m: block 0 of the head
            start = dest + (c * G + g) * plane if c < 2 else dest + 2 * G * plane
            out[start:start + plane].reshape(B, S, NH)[b, :, h] = values
    return out


MEMORY_SPECS = [
    (2, 70, 2, 16, 32, False),  # two chunks of tokens, the zero state, one block per head (the demo's head size)
    (1, 5, 3, 24, 40, True),  # DV divides no block size; a given state
    (1, 20, 1, 128, 256, True),  # D=1024 with 4 heads: 16 blocks of 8 rows per head
    (1, 3, 2, 256, 512, True),  # xLSTM-7B's head: 64 blocks of 4 rows, 21 tokens per chunk
]


@pytest.mark.parametrize("spec", MEMORY_SPECS, ids=lambda s: "x".join(map(str, s[:5])))
def test_fused_plan_covers_every_row_copy_and_memory_head(arrays_and_layout, spec):
    # CI has no CUDA: the plan the kernel follows is checked by running its tasks in numpy. Every number of the
    # output is written (none stays NaN), each view reads back the reference, shared tensors are one input.
    arrays, layout = arrays_and_layout
    host, memories = _memories([spec, spec])
    device = [mx.array(a) for a in arrays]
    device[3] = device[2]  # a raw column that is also a probe: one input, read twice
    arrays[3] = arrays[2]
    inputs, plan = stats_gpu.prepare(device, layout, memories)
    assert len(inputs) == len(arrays) - 1 + sum(4 + 3 * (m.state is not None) for m in memories)
    out = _emulate(inputs, plan)
    assert not np.isnan(out).any()
    columns, norms = stats_gpu.unpack(out, plan)
    _assert_same(columns, numpy_stats(arrays, layout), rtol=1e-5, atol=1e-5)
    for got, (k, v, i, f, given, NH) in zip(norms, host):
        want = _host_norms(k, v, i, f, given, NH)
        for stat in ("C_norm", "n_norm", "m"):
            np.testing.assert_allclose(got[stat], want[stat], rtol=1e-5, err_msg=stat)
    assert stats_gpu.prepare(device, layout, memories)[1] is plan  # cached per structure


def test_fused_plan_refuses_memories_of_different_head_sizes():
    _, memories = _memories(MEMORY_SPECS[:2])
    with pytest.raises(ValueError, match=r"must share the model's head size: DQK x DV \(16, 32\) and \(24, 40\)"):
        stats_gpu.prepare([], (), memories)
    _, (wide,) = _memories([(1, 2, 1, 2, 4096, False)])
    with pytest.raises(ValueError, match="DQK x DV = 2 x 4096 does not fit the CUDA kernel"):
        stats_gpu.prepare([], (), [wide])


@needs_cuda
@pytest.mark.parametrize("spec", MEMORY_SPECS, ids=lambda s: "x".join(map(str, s[:5])))
def test_fused_kernel_runs_the_memory_recurrences_like_the_host(arrays_and_layout, spec):
    arrays, layout = arrays_and_layout
    host, memories = _memories([spec, spec])
    device = [mx.array(a) for a in arrays]
    device[1] = device[1].astype(mx.bfloat16)  # a bf16 probe reaches the kernel as float32
    arrays[1] = np.array(device[1].astype(mx.float32))
    columns, norms = stats_gpu.fused_stats(device, layout, memories)
    _assert_same(columns, numpy_stats(arrays, layout), rtol=1e-4, atol=1e-5)
    for got, (k, v, i, f, given, NH) in zip(norms, host):
        want = _host_norms(k, v, i, f, given, NH)
        for stat in ("C_norm", "n_norm", "m"):
            np.testing.assert_allclose(got[stat], want[stat], rtol=1e-4, atol=1e-5, err_msg=stat)


@needs_cuda
def test_fused_kernel_propagates_a_nan_gate_like_the_host():
    # a NaN forget gate poisons m (and the state) from its token on, as in the model's recurrence
    ((k, v, i, f, given, NH),), _ = _memories(MEMORY_SPECS[:1])
    f = f.copy()
    f[1, 40, 0] = np.nan
    bad = stats_gpu.Memory(mx.array(k), mx.array(v), mx.array(i), mx.array(f), None, NH)
    _, (got,) = stats_gpu.fused_stats([], (), [bad])
    with np.errstate(invalid="ignore"):
        want = _host_norms(k, v, i, f, None, NH)
    for stat in ("C_norm", "n_norm", "m"):
        np.testing.assert_array_equal(np.isnan(got[stat]), np.isnan(want[stat]), err_msg=stat)
    assert np.isnan(got["m"][1, 40:, 0]).all() and not np.isnan(got["m"][1, :40, 0]).any()
