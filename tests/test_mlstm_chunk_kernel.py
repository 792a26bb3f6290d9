"""The chunk-state kernels (kernels/mlstm_chunk.cu, .metal: the inter-chunk recurrence of the chunkwise mLSTM)
against the pure-MLX `mlstm_cell.chunk_states`, and their dispatch from `mlstm_cell.chunkwise`."""

from __future__ import annotations

import warnings

import mlx.core as mx
import numpy as np
import pytest

from xlstm_viz.model import mlstm_cell, mlstm_kernels
from xlstm_viz.model.mlstm_cell import MLSTMState

BACKEND = mlstm_kernels.backend()
needs_gpu = pytest.mark.skipif(BACKEND is None, reason="no MLX CUDA or Metal backend on this machine: the mLSTM "
                               "chunk-state kernel cannot run (CPU-only CI runs the source, geometry and dispatch "
                               "tests below)")


@pytest.fixture(autouse=True)
def fresh_dispatch(monkeypatch):
    monkeypatch.delenv(mlstm_kernels.ENV, raising=False)
    monkeypatch.setattr(mlstm_kernels, "_CHECKED", {})


def _rel(a, b):
    return float(mx.max(mx.abs(a - b))) / max(float(mx.max(mx.abs(b))), 1e-30)


def _sequence(B, NH, S, DQK, DV, dtype, seed):
    ks = mx.random.split(mx.random.key(seed), 5)
    q, k = (mx.random.normal((B, NH, S, DQK), key=x).astype(dtype) for x in ks[:2])
    v = mx.random.normal((B, NH, S, DV), key=ks[2]).astype(dtype)
    i, f = (3 * mx.random.normal((B, NH, S), key=x) for x in ks[3:])
    return q, k, v, i, f


# --- without a GPU: sources, geometry, dispatch ---

def test_cuda_and_metal_chunk_sources_share_the_algorithm_below_the_backend_prelude():
    cuda, metal = (mlstm_kernels.kernel_source(w, "chunk") for w in ("cuda", "metal"))
    marker = "// --- common ---"
    assert cuda.split(marker)[1] == metal.split(marker)[1]
    assert "blockIdx" in cuda.split(marker)[0] and "threadgroup_position_in_grid" in metal.split(marker)[0]
    for equation in ("m_c = max(b_last_c + m_{c-1}, M_c)",
                     "C_c = exp(b_last_c + m_{c-1} - m_c) C_{c-1} + exp(M_c - m_c) U_c"):
        assert equation in cuda
    assert mlstm_kernels.kernel_name("cuda", cuda, "chunk").startswith("xlstm_viz_mlstm_chunk_cuda_")
    with pytest.raises(ValueError, match="no mLSTM kernel 'scan'"):
        mlstm_kernels.kernel_source("cuda", "scan")


def _scan_as_the_kernel_runs_it(U, Un, M, b_last, state, geometry):
    """The scan kernel's body in numpy, one lane per thread of `geometry` (every entry of C, then of n; idle lanes
    past the end), so the parallel/sequential split and the index plan are checked where no GPU runs."""
    B, NH, nc, DQK, DV = U.shape
    CE, threads = DQK * DV, geometry["threadgroup"][0]
    lanes = geometry["grid"][0]
    assert lanes % threads == 0 and geometry["grid"][1] == B * NH
    u = np.zeros((B * NH, nc, lanes), np.float32)
    u[:, :, :CE] = np.asarray(U).reshape(B * NH, nc, CE)
    u[:, :, CE:CE + DQK] = np.asarray(Un).reshape(B * NH, nc, DQK)
    acc = np.zeros((B * NH, lanes), np.float32)
    acc[:, :CE] = np.asarray(state.C).reshape(B * NH, CE)
    acc[:, CE:CE + DQK] = np.asarray(state.n).reshape(B * NH, DQK)
    m = np.asarray(state.m).reshape(B * NH, 1)
    g, Mc = np.asarray(b_last).reshape(B * NH, nc), np.asarray(M).reshape(B * NH, nc)
    entering, m_in = [], []
    for c in range(nc):
        entering.append(acc.copy())
        m_in.append(m.copy())
        m_new = np.maximum(g[:, c:c + 1] + m, Mc[:, c:c + 1])
        acc = np.exp(g[:, c:c + 1] + m - m_new) * acc + np.exp(Mc[:, c:c + 1] - m_new) * u[:, c]
        m = m_new
    entering = np.stack(entering, 1)
    shape = lambda x, *tail: x.reshape(B, NH, *tail)
    return (shape(entering[..., :CE], nc, DQK, DV), shape(entering[..., CE:CE + DQK], nc, DQK),
            shape(np.stack(m_in, 1), nc, 1), shape(acc[:, :CE], DQK, DV), shape(acc[:, CE:CE + DQK], DQK),
            shape(m, 1))


def _carried_stabiliser_dominates(k, v, a, b_last, state):
    """The same inputs with the carried m raised until m_c = b_last_c + m_{c-1} beats M_c by 4 in the first chunk of
    every head, so the scan's exp(M_c - m_c) < 1 (with the random gates alone M_c wins almost always, and that factor
    is exactly 1)."""
    lead = mx.max(a[:, :, 0], axis=-1, keepdims=True) - b_last[:, :, 0] - state.m  # [B, NH, 1]
    return k, v, a, b_last, MLSTMState(state.C, state.n, state.m + mx.maximum(lead, 0.0) + 4.0)


@pytest.mark.parametrize("carried", [False, True], ids=["chunk-max", "carried-max"])
@pytest.mark.parametrize("shape", [dict(batch=2, num_heads=3, chunks=3, chunk=16, dqk=40, dv=72),
                                   dict(batch=1, num_heads=2, chunks=4, chunk=200, dqk=8, dv=1),
                                   dict(batch=3, num_heads=1, chunks=5, chunk=7, dqk=17, dv=33)],
                         ids=["partial-threadgroup", "long-chunk", "odd"])
def test_chunk_updates_and_the_scan_plan_reproduce_the_reference_recurrence(shape, carried):
    k, v, a, b_last, state = mlstm_kernels.chunk_inputs(**shape, seed=5)
    if carried:
        k, v, a, b_last, state = _carried_stabiliser_dominates(k, v, a, b_last, state)
        assert float(mx.max(b_last[:, :, 0] + state.m - mx.max(a[:, :, 0], axis=-1, keepdims=True))) > 0
    U, Un, M = mlstm_cell.chunk_updates(k, v, a)
    geometry = mlstm_kernels.chunk_launch_geometry(shape["batch"], shape["num_heads"], shape["dqk"], shape["dv"],
                                                   shape["chunk"])
    got = _scan_as_the_kernel_runs_it(U, Un, M, b_last, state, geometry)
    ref = mlstm_cell.chunk_states(k, v, a, b_last, state)
    for name, x, y in zip(("C_in", "n_in", "m_in", "C", "n", "m"), got, (*ref[:3], *ref[3].arrays())):
        y = np.asarray(y)
        assert x.shape == y.shape, name
        assert np.max(np.abs(x - y)) <= 2e-5 * np.max(np.abs(y)), (name, np.max(np.abs(x - y)))


@pytest.mark.parametrize("B,NH,DQK,DV", [(1, 8, 256, 512), (2, 3, 40, 72), (3, 1, 17, 33), (4, 4, 512, 1024)])
def test_chunk_launch_geometry_gives_every_entry_of_c_and_n_one_thread(B, NH, DQK, DV):
    g = mlstm_kernels.chunk_launch_geometry(B, NH, DQK, DV, 64)
    threads = g["threadgroup"][0]
    assert g["grid"][0] % threads == 0 and g["grid"][0] - threads < DQK * DV + DQK <= g["grid"][0]
    assert g["grid"][1] == B * NH and dict(g["template"]) == {"DQK": DQK, "DV": DV, "THREADS": threads}


def test_chunk_launch_geometry_names_a_bad_size():
    with pytest.raises(ValueError, match="chunk must be >= 1, got 0"):
        mlstm_kernels.chunk_launch_geometry(1, 8, 256, 512, 0)
    with pytest.raises(ValueError, match="batch \\* num_heads = 70000 exceeds the grid's y limit"):
        mlstm_kernels.chunk_launch_geometry(70000, 1, 8, 8, 64)


def _counting(kernel, calls):
    def run(*a, which=None, c_in_dtype=mx.float32):
        calls.append(which)
        C_in, *rest = kernel(*a)
        return C_in.astype(c_in_dtype), *rest
    return run


def test_chunkwise_takes_its_chunk_states_from_the_dispatch(monkeypatch):
    calls = []
    monkeypatch.setattr(mlstm_kernels, "backend", lambda: "cuda")
    monkeypatch.setattr(mlstm_kernels, "fused_chunk_states", _counting(mlstm_cell.chunk_states, calls))
    args = _sequence(2, 3, 21, 8, 6, mx.float32, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h, s, _ = mlstm_cell.chunkwise(*args, MLSTMState.zeros(2, 3, 8, 6), 1e-6, chunk_size=8)
    assert mlstm_kernels._CHECKED == {"chunk-cuda": True} and calls[-1] == "cuda"
    calls.clear()
    monkeypatch.setenv(mlstm_kernels.ENV, "mlx")
    h_ref, s_ref, _ = mlstm_cell.chunkwise(*args, MLSTMState.zeros(2, 3, 8, 6), 1e-6, chunk_size=8)
    assert calls == []  # forced pure MLX: on the CPU device the closed form, elsewhere the loop the fake kernel ran
    assert _rel(h, h_ref) <= 1e-5 and _rel(s.C, s_ref.C) <= 1e-5


@pytest.mark.parametrize("with_trace", [False, True], ids=["untraced", "memory-norms"])
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16], ids=["float32", "bfloat16"])
def test_chunkwise_asks_for_c_in_in_the_products_dtype_also_when_the_norms_read_it(monkeypatch, dtype, with_trace):
    asked = []

    def kernel(k, v, a, b_last, state, which=None, c_in_dtype=mx.float32):
        asked.append(c_in_dtype)
        C_in, n_in, m_in, final = mlstm_cell.chunk_states(k, v, a, b_last, state)
        return C_in.astype(c_in_dtype), n_in, m_in, final

    monkeypatch.setattr(mlstm_kernels, "backend", lambda: "cuda")
    monkeypatch.setattr(mlstm_kernels, "fused_chunk_states", kernel)
    args = _sequence(1, 2, 19, 8, 6, dtype, 3)
    h, _, trace = mlstm_cell.chunkwise(*args, MLSTMState.zeros(1, 2, 8, 6), 1e-6, chunk_size=8, with_trace=with_trace)
    monkeypatch.setenv(mlstm_kernels.ENV, "mlx")
    h_ref, _, trace_ref = mlstm_cell.chunkwise(*args, MLSTMState.zeros(1, 2, 8, 6), 1e-6, chunk_size=8,
                                               with_trace=with_trace)
    assert asked[-1] == dtype  # a trace's memory norms take C_in in the products' dtype too (_chunk_memory_norms)
    # Rounding C_in where it is stored or inside the product is the same rounding: the results agree exactly.
    assert mx.array_equal(h, h_ref) or _rel(h, h_ref) <= 1e-6
    if with_trace:
        assert _rel(trace.C_norm, trace_ref.C_norm) <= 1e-5


def test_the_reference_dispatch_rounds_c_in_to_the_dtype_asked_for():
    args = mlstm_kernels.chunk_inputs(seed=4)
    C_in, n_in, m_in, final = mlstm_kernels.chunk_states(*args, mode="mlx", c_in_dtype=mx.bfloat16)
    ref = mlstm_cell.chunk_states(*args)
    assert C_in.dtype == mx.bfloat16 and n_in.dtype == final.C.dtype == mx.float32
    assert mx.array_equal(C_in, ref[0].astype(mx.bfloat16)) and mx.array_equal(final.C, ref[3].C)


def test_a_chunk_kernel_that_disagrees_warns_once_and_the_reference_runs(monkeypatch):
    calls = []

    def wrong(k, v, a, b_last, state):  # drops the carried-in stabiliser m
        return mlstm_cell.chunk_states(k, v, a, b_last, MLSTMState(state.C, state.n, mx.zeros_like(state.m)))

    monkeypatch.setattr(mlstm_kernels, "backend", lambda: "cuda")
    monkeypatch.setattr(mlstm_kernels, "fused_chunk_states", _counting(wrong, calls))
    args = mlstm_kernels.chunk_inputs(seed=3)
    with pytest.warns(RuntimeWarning, match=r"chunk kernel \(cuda\) did not match the pure-MLX chunk: relative"):
        got = mlstm_kernels.chunk_states(*args)
    checked = len(calls)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mlstm_kernels.chunk_states(*args)  # checked once per process
    assert len(calls) == checked
    assert mx.array_equal(got[0], mlstm_cell.chunk_states(*args)[0])


def test_a_chunk_kernel_that_raises_falls_back(monkeypatch):
    def broken(*a, which=None):
        raise RuntimeError("nvrtc: too much shared memory")

    monkeypatch.setattr(mlstm_kernels, "backend", lambda: "cuda")
    monkeypatch.setattr(mlstm_kernels, "fused_chunk_states", broken)
    with pytest.warns(RuntimeWarning, match="it failed: RuntimeError: nvrtc: too much shared memory"):
        assert mlstm_kernels.use_kernel(kind="chunk") is None


@pytest.mark.skipif(BACKEND is not None, reason="a GPU backend runs here: the kernel cannot be refused")
def test_forced_chunk_kernel_without_a_gpu_backend_is_refused_by_name():
    with pytest.raises(RuntimeError, match="forces the fused mLSTM chunk, but MLX runs no CUDA or Metal"):
        mlstm_kernels.chunk_states(*mlstm_kernels.chunk_inputs(), mode="kernel")


# --- the closed form of the recurrence (the CPU device's pure-MLX path) ---

CLOSED_FORM_SHAPES = [dict(batch=2, num_heads=3, chunks=3, chunk=16, dqk=40, dv=72),
                      dict(batch=1, num_heads=4, chunks=8, chunk=64, dqk=32, dv=64),  # model_speed d256's cell
                      dict(batch=3, num_heads=1, chunks=1, chunk=7, dqk=17, dv=33),  # one chunk: no recurrence
                      dict(batch=1, num_heads=2, chunks=40, chunk=4, dqk=8, dv=12)]  # many short chunks


def _gate_inputs(shape, seed, gate_scale, forget_shift):
    """chunk_inputs with gates scaled and shifted: strong forgetting (long sums of log sigma(f) of -15 per token)
    and saturated input gates, where a closed form written as differences of cumulative sums would cancel."""
    B, NH, nc, L, DQK, DV = (shape[k] for k in ("batch", "num_heads", "chunks", "chunk", "dqk", "dv"))
    ks = mx.random.split(mx.random.key(seed), 7)
    k = mx.random.normal((B, NH, nc, L, DQK), key=ks[0])
    v = mx.random.normal((B, NH, nc, L, DV), key=ks[1])
    i = mx.clip(gate_scale * mx.random.normal((B, NH, nc, L), key=ks[2]), -15, 15)
    f = mx.clip(gate_scale * mx.random.normal((B, NH, nc, L), key=ks[3]) + forget_shift, -15, 15)
    b = mx.cumsum(mlstm_cell.log_sigmoid(f), axis=-1)
    state = MLSTMState(mx.random.normal((B, NH, DQK, DV), key=ks[4]), mx.random.normal((B, NH, DQK), key=ks[5]),
                       5 * mx.random.normal((B, NH, 1), key=ks[6]))
    return k, v, b[..., -1:] - b + i, b[..., -1:], state


@pytest.mark.parametrize("gates", [(1, 3), (10, 0), (10, -10), (3, 8)], ids=["mild", "wide", "forgetting", "keeping"])
@pytest.mark.parametrize("shape", CLOSED_FORM_SHAPES, ids=lambda s: "-".join(map(str, s.values())))
def test_closed_form_chunk_states_match_the_loop(shape, gates):
    from tolerances import assert_close_to_scale

    args = _gate_inputs(shape, 5, *gates)
    got, ref = mlstm_cell.chunk_states_parallel(*args), mlstm_cell.chunk_states(*args)
    for name, a, b in (("C_in", got[0], ref[0]), ("n_in", got[1], ref[1]), ("m_in", got[2], ref[2]),
                       ("C", got[3].C, ref[3].C), ("n", got[3].n, ref[3].n), ("m", got[3].m, ref[3].m)):
        assert a.dtype == mx.float32 and a.shape == b.shape, name
        assert_close_to_scale(a, b, 16, name)  # measured at most 3.2 ULPs of the largest entry


def test_chunkwise_on_the_cpu_takes_the_closed_form_and_matches_the_loop(monkeypatch):
    args = _sequence(2, 3, 45, 8, 6, mx.float32, 3)  # 45: a ragged last chunk
    state = MLSTMState(mx.random.normal((2, 3, 8, 6)), mx.random.normal((2, 3, 8)), mx.ones((2, 3, 1)))
    h, s, trace = mlstm_cell.chunkwise(*args, state, 1e-6, chunk_size=8, with_trace=True)
    used = []
    monkeypatch.setattr(mlstm_cell, "chunk_states_parallel", lambda *a: used.append(1) or mlstm_cell.chunk_states(*a))
    monkeypatch.setattr(mlstm_cell, "_COMPILED", {})
    h_ref, s_ref, trace_ref = mlstm_cell.chunkwise(*args, state, 1e-6, chunk_size=8, with_trace=True)
    assert used == ([1] if mx.default_device() == mx.cpu else [])
    for a, b in ((h, h_ref), (s.C, s_ref.C), (s.n, s_ref.n), (s.m, s_ref.m), (trace.C_norm, trace_ref.C_norm)):
        assert _rel(a, b) <= 1e-5


# --- with a GPU: the real kernel ---

def _tolerance(dtype):
    """Relative to the reference's magnitude. bf16 k and v: the kernel path's chunk updates take bf16 operands (as the
    official kernels' products do) while the reference widens them, so the two differ by a few bf16 roundings."""
    return 2e-5 if dtype == mx.float32 else 4 * 2**-8


SHAPES = [dict(batch=1, num_heads=8, chunks=4, chunk=64, dqk=256, dv=512),  # xLSTM-7B heads
          dict(batch=2, num_heads=3, chunks=3, chunk=16, dqk=40, dv=72),  # partial row and column tiles
          dict(batch=3, num_heads=1, chunks=5, chunk=7, dqk=17, dv=33),
          dict(batch=1, num_heads=2, chunks=2, chunk=128, dqk=64, dv=96),
          dict(batch=1, num_heads=2, chunks=3, chunk=256, dqk=16, dv=24),  # chunks longer than the old kernel staged
          dict(batch=2, num_heads=4, chunks=1, chunk=64, dqk=64, dv=1)]


@needs_gpu
@pytest.mark.parametrize("carried", [False, True], ids=["chunk-max", "carried-max"])
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s.values())))
def test_chunk_kernel_matches_the_reference(shape, dtype, carried):
    args = mlstm_kernels.chunk_inputs(**shape, seed=11, dtype=dtype)
    if carried:
        args = _carried_stabiliser_dominates(*args)
    got = mlstm_kernels.fused_chunk_states(*args)
    ref = mlstm_cell.chunk_states(*args)  # widens bf16 k, v first; the kernel path's products take them as bf16
    for name, a, b in (("C_in", got[0], ref[0]), ("n_in", got[1], ref[1]), ("m_in", got[2], ref[2]),
                       ("C", got[3].C, ref[3].C), ("n", got[3].n, ref[3].n), ("m", got[3].m, ref[3].m)):
        assert a.dtype == mx.float32 and a.shape == b.shape, name
        tolerance = 2e-5 if name.startswith("m") else _tolerance(dtype)  # m: float32 gate arithmetic on both paths
        assert _rel(a, b) <= tolerance, (name, _rel(a, b))


@needs_gpu
@pytest.mark.parametrize("out_dtype", [mx.bfloat16, mx.float16], ids=["bfloat16", "float16"])
def test_chunk_kernel_stores_c_in_rounded_once_in_the_dtype_asked_for(out_dtype):
    args = mlstm_kernels.chunk_inputs(**SHAPES[0], seed=5, dtype=mx.bfloat16)
    wide = mlstm_kernels.fused_chunk_states(*args)
    narrow = mlstm_kernels.fused_chunk_states(*args, c_in_dtype=out_dtype)
    assert narrow[0].dtype == out_dtype and narrow[3].C.dtype == mx.float32
    assert mx.array_equal(narrow[0], wide[0].astype(out_dtype))  # the store rounds as astype does
    for a, b in ((narrow[1], wide[1]), (narrow[3].C, wide[3].C), (narrow[3].m, wide[3].m)):
        assert mx.array_equal(a, b)


@needs_gpu
def test_chunk_kernel_reads_bf16_chunk_updates_exactly_as_their_float32_widening(monkeypatch):
    args = mlstm_kernels.chunk_inputs(**SHAPES[1], seed=6, dtype=mx.bfloat16)
    assert mlstm_cell.chunk_updates(*args[:3])[0].dtype == mx.bfloat16  # what the kernel is handed
    narrow = mlstm_kernels.fused_chunk_states(*args)
    real = mlstm_cell.chunk_updates
    monkeypatch.setattr(mlstm_cell, "chunk_updates", lambda *a: (real(*a)[0].astype(mx.float32), *real(*a)[1:]))
    wide = mlstm_kernels.fused_chunk_states(*args)
    for a, b in zip((*narrow[:3], *narrow[3].arrays()), (*wide[:3], *wide[3].arrays())):
        assert mx.array_equal(a, b)


@needs_gpu
def test_chunk_self_check_passes_on_this_backend():
    assert mlstm_kernels.self_check(BACKEND, kind="chunk")
    errors = mlstm_kernels.chunk_mismatch(lambda *a: mlstm_kernels.fused_chunk_states(*a, which=BACKEND))
    assert max(errors.values()) <= 1e-5, errors


@needs_gpu
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16], ids=["float32", "bfloat16"])
def test_chunkwise_with_the_kernel_matches_the_reference_over_odd_lengths_and_carried_states(monkeypatch, dtype):
    B, NH, DQK, DV, L = 2, 3, 24, 40, 16
    parts = [_sequence(B, NH, S, DQK, DV, dtype, 20 + S) for S in (37, 5, 50)]  # 37, 50: not chunk multiples
    out = {}
    for mode in ("kernel", "mlx"):
        monkeypatch.setenv(mlstm_kernels.ENV, mode)
        state, hs = MLSTMState.zeros(B, NH, DQK, DV), []
        for part in parts:  # each call starts from the state the previous call left
            h, state, trace = mlstm_cell.chunkwise(*part, state, 1e-6, chunk_size=L, with_trace=True)
            hs.append((h, trace.C_norm))
        out[mode] = hs, state
    (hs, s), (hs_ref, s_ref) = out["kernel"], out["mlx"]
    for (h, cn), (h_ref, cn_ref) in zip(hs, hs_ref):
        assert _rel(h, h_ref) <= _tolerance(dtype) and _rel(cn, cn_ref) <= _tolerance(dtype)
    assert _rel(s.C, s_ref.C) <= _tolerance(dtype) and _rel(s.n, s_ref.n) <= _tolerance(dtype)
    assert _rel(s.m, s_ref.m) <= 2e-5  # gate arithmetic: float32 on both paths
