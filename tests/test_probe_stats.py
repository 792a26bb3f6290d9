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
    # and how a trace's forward runs by default (run_with_trace(compiled=None))
    assert ("traces run cell by cell (run_with_trace(compiled=True)" if mx.default_device() == mx.cpu
            else "chunkwise traces run as one compiled graph") in out


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
    assert "__shfl_xor_sync" in source and "SELECT_INPUTS" in source
    with pytest.raises(FileNotFoundError, match="kernel source nothing.cu not found"):
        stats_gpu._source("nothing.cu")


def test_the_cuda_kernel_name_changes_with_its_source_and_input_count():
    # MLX caches compiled custom kernels by name, also on disk: an edited kernel under its old name would run stale.
    source = stats_gpu._source("probe_stats.cu")
    names = {stats_gpu.kernel_name(3, source), stats_gpu.kernel_name(4, source), stats_gpu.kernel_name(3, source + " ")}
    assert len(names) == 3 and all(n.startswith("xlstm_viz_probe_stats_") for n in names)


def _emulate(inputs, plan):
    """What probe_stats.cu computes, task by task from the plan, in numpy: each input read in the dtype its task
    names (the kernel casts the input's pointer by that code, whatever MLX declared)."""
    codes = {0: np.float32, 1: None, 2: np.float16}
    flat = [np.array(a.astype(mx.float32) if a.dtype == mx.bfloat16 else a).reshape(-1) for a in inputs]
    out = np.full(plan.size, np.nan, np.float32)
    tasks = np.array(plan.tasks)
    assert tasks.shape == (plan.blocks * stats_gpu.THREADS // stats_gpu.WARP, stats_gpu.TASK_FIELDS)  # a task a warp
    for input_, offset, width, rows, dest, kind, dtype in tasks:
        if not width:
            continue
        assert dtype == stats_gpu.DTYPES[inputs[input_].dtype]  # read as what it is
        if kind:
            x = flat[input_][offset:offset + rows * width].astype(np.float64)
            assert x.size == rows * width  # the task's rows lie inside its input
            x = x.reshape(rows, width)
            out[dest:dest + 4 * rows] = np.stack([x.mean(1), x.std(1), np.abs(x).max(1),
                                                  np.sqrt(np.square(x).sum(1))], axis=1).reshape(-1)
        else:
            assert rows == 1
            out[dest:dest + width] = flat[input_][offset:offset + width]
    assert set(codes) >= set(np.unique(tasks[:, 6]))
    return out


def test_fused_plan_covers_every_row_and_copy_in_each_inputs_own_dtype(arrays_and_layout):
    # CI has no CUDA: the plan the kernel follows is checked by running its tasks in numpy. Every number of the
    # output is written (none stays NaN), each view reads back the reference, shared tensors are one input, and
    # bf16 / float16 probes reach the kernel as they are: no float32 copy (at 7B, 24.5 GB of them per trace).
    arrays, layout = arrays_and_layout
    device = [mx.array(a) for a in arrays]
    device[0] = device[0].astype(mx.bfloat16)
    device[1] = device[1].astype(mx.float16)
    device[3] = device[2]  # a raw column that is also a probe: one input, read twice
    arrays = [np.array(a.astype(mx.float32)) for a in device]
    inputs, plan = stats_gpu.prepare(device, layout)
    assert len(inputs) == len(arrays) - 1
    assert inputs[0] is device[0] and inputs[1] is device[1]  # not widened
    out = _emulate(inputs, plan)
    assert not np.isnan(out).any()
    _assert_same(stats_gpu.unpack(out, plan), numpy_stats(arrays, layout), rtol=1e-5, atol=1e-5)
    assert stats_gpu.prepare(device, layout)[1] is plan  # cached per structure
    assert stats_gpu.prepare([device[0].astype(mx.float32)] + device[1:], layout)[1] is not plan  # dtypes are in it
    widened, _ = stats_gpu.prepare([device[0].astype(mx.int32)], ((64, 4, 1),))
    assert widened[0].dtype == mx.float32  # a dtype the kernel does not read is widened first


def test_fused_plan_refuses_offsets_past_int32():
    with pytest.raises(ValueError, match="too large for the CUDA kernel's int32 offsets"):
        stats_gpu.prepare([mx.zeros((1, 2**17, 2**14), mx.bfloat16)], ((2**14, 1, 1),))


@needs_cuda
def test_fused_cuda_kernel_reads_bf16_and_float16_probes_as_they_are(arrays_and_layout):
    arrays, layout = arrays_and_layout
    device = [mx.array(a) for a in arrays]
    device[0], device[1], device[4] = device[0].astype(mx.bfloat16), device[1].astype(mx.float16), device[4].astype(
        mx.bfloat16)
    arrays = [np.array(a.astype(mx.float32)) for a in device]  # the values the kernel sees
    _assert_same(stats_gpu.fused_stats(device, layout), numpy_stats(arrays, layout), rtol=1e-4, atol=1e-5)


@needs_cuda
def test_fused_cuda_kernel_gives_the_reference_stats_on_every_row_path():
    # probe_stats.cu takes a different path by row width and alignment: held rows (<= 1,024 bf16 per row), wide
    # rows in two passes (the FFN's 10,944 features), one number a load for odd widths and unaligned views, and a
    # lane per row for narrow rows; tasks cover many rows, the last one of an input fewer.
    rng = np.random.default_rng(3)
    big = mx.array(rng.normal(size=(4 * 256 + 8,)).astype(np.float32)).astype(mx.bfloat16)
    unaligned = big[3:3 + 4 * 256].reshape(1, 4, 256)  # contiguous, 6 bytes past a 16-byte boundary
    device = [
        mx.array(rng.normal(1.0, 2.0, size=(1, 70, 2048)).astype(np.float32)).astype(mx.bfloat16),  # 8 heads of 256
        mx.array(rng.normal(size=(2, 5, 10944)).astype(np.float32)).astype(mx.bfloat16),  # wide
        mx.array(rng.normal(size=(1, 9, 1001)).astype(np.float32)).astype(mx.bfloat16),  # odd width
        unaligned,
        mx.array(rng.normal(size=(3, 50, 12)).astype(np.float32)),  # narrow: 2 heads of 6
        mx.array(rng.normal(size=(1, 33, 512 * 3)).astype(np.float32)).astype(mx.float16),  # 3 heads of 512
    ]
    layout = ((2048, 8, 1), (10944, 1, 1), (1001, 1, 1), (256, 1, 1), (12, 2, 1), (1536, 3, 1))
    assert stats_gpu.rows_per_task(256) < 70 * 8  # an input of several tasks
    arrays = [np.array(a.astype(mx.float32)) for a in device]  # the values the kernel sees
    _assert_same(stats_gpu.fused_stats(device, layout), numpy_stats(arrays, layout), rtol=2e-4, atol=2e-5)
    # a wide row is read once (Chan's merge of per-load moments): its std stays centred under a large mean
    rng = np.random.default_rng(4)
    x = (1000.0 + 1e-3 * rng.normal(size=(1, 3, 4096))).astype(np.float32)
    got = stats_gpu.fused_stats([mx.array(x)], ((4096, 1, 1),))[0]["std"]
    np.testing.assert_allclose(got, numpy_stats([x], ((4096, 1, 1),))[0]["std"], rtol=0.05)
