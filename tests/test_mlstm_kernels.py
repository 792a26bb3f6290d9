"""The fused mLSTM step kernels (kernels/mlstm_step.cu, .metal) against the pure-MLX step, and their dispatch."""

from __future__ import annotations

import warnings

import mlx.core as mx
import pytest

from xlstm_viz.model import mlstm_cell, mlstm_kernels
from xlstm_viz.model.mlstm_cell import MLSTMState

BACKEND = mlstm_kernels.backend()
needs_gpu = pytest.mark.skipif(BACKEND is None, reason="no MLX CUDA or Metal backend on this machine: the fused "
                               "mLSTM step kernel cannot run (CPU-only CI runs the dispatch tests below)")


@pytest.fixture(autouse=True)
def fresh_dispatch(monkeypatch):
    monkeypatch.delenv(mlstm_kernels.ENV, raising=False)
    monkeypatch.setattr(mlstm_kernels, "_CHECKED", {})


def _inputs(B, NH, DQK, DV, dtype, seed):
    ks = mx.random.split(mx.random.key(seed), 5)
    q = mx.random.normal((B, NH, DQK), key=ks[0]).astype(dtype)
    k = mx.random.normal((B, NH, DQK), key=ks[1]).astype(dtype)
    v = mx.random.normal((B, NH, DV), key=ks[2]).astype(dtype)
    i = (3 * mx.random.normal((B, NH, 1), key=ks[3])).astype(dtype)
    f = (3 * mx.random.normal((B, NH, 1), key=ks[4])).astype(dtype)
    return q, k, v, i, f


def _rel(a, b):
    return float(mx.max(mx.abs(a - b))) / max(float(mx.max(mx.abs(b))), 1e-30)


# --- without a GPU: sources, geometry, dispatch ---

def test_cuda_and_metal_sources_share_the_algorithm_below_the_backend_prelude():
    cuda, metal = (mlstm_kernels.kernel_source(w) for w in ("cuda", "metal"))
    marker = "// --- common ---"
    assert cuda.split(marker)[1] == metal.split(marker)[1]
    assert "__syncthreads" in cuda.split(marker)[0] and "threadgroup_barrier" in metal.split(marker)[0]
    for equation in ("m_t = max(log sigma(f_t) + m_{t-1}, i_t)", "n_t = f' n_{t-1} + i' k_t",
                     "C_t = f' C_{t-1} + i' k_t v_t^T", "max(|q . n_t|, exp(-m_t)) + eps"):
        assert equation in cuda


def test_kernel_name_carries_backend_and_source_digest():
    a = mlstm_kernels.kernel_name("cuda", "x")
    assert a.startswith("xlstm_viz_mlstm_step_cuda_")
    assert a != mlstm_kernels.kernel_name("cuda", "y") and a != mlstm_kernels.kernel_name("metal", "x")
    with pytest.raises(ValueError, match="backend 'rocm'"):
        mlstm_kernels.kernel_source("rocm")


@pytest.mark.parametrize("B,NH,DQK,DV", [(1, 8, 256, 512), (2, 3, 40, 72), (3, 1, 17, 1), (1, 4, 512, 1024)])
def test_launch_geometry_covers_every_column_of_every_head(B, NH, DQK, DV):
    g = mlstm_kernels.launch_geometry(B, NH, DQK, DV)
    t = dict(g["template"])
    threads = g["threadgroup"][0]
    assert threads == t["THREADS"] == t["COLS"] * t["SPLIT"] and threads & (threads - 1) == 0  # tree reduction
    blocks = g["grid"][0] // threads
    assert g["grid"][0] % threads == 0 and blocks * t["COLS"] >= DV > (blocks - 1) * t["COLS"]
    assert g["grid"][1] == B * NH and (t["DQK"], t["DV"]) == (DQK, DV)
    assert 4 * (2 * DQK + 2 * threads) <= 32 * 1024  # threadgroup memory within Metal's 32 KiB


def test_launch_geometry_at_7b_sizes_fills_an_h200():
    g = mlstm_kernels.launch_geometry(1, 8, 256, 512)
    assert (g["grid"][0] // g["threadgroup"][0]) * g["grid"][1] >= 128  # 132 SMs


def test_launch_geometry_names_a_bad_size():
    with pytest.raises(ValueError, match="dv must be >= 1, got 0"):
        mlstm_kernels.launch_geometry(1, 8, 256, 0)


def test_mode_comes_from_argument_then_environment(monkeypatch):
    assert mlstm_kernels.resolve_mode() == "auto"
    monkeypatch.setenv(mlstm_kernels.ENV, "mlx")
    assert mlstm_kernels.resolve_mode() == "mlx" and mlstm_kernels.resolve_mode("kernel") == "kernel"
    assert mlstm_kernels.use_kernel() is None
    monkeypatch.setenv(mlstm_kernels.ENV, "fast")
    with pytest.raises(ValueError, match="XLSTM_VIZ_MLSTM_KERNEL = 'fast'"):
        mlstm_kernels.resolve_mode()


@pytest.mark.skipif(BACKEND is not None, reason="a GPU backend runs here: the kernel cannot be refused")
def test_forced_kernel_without_a_gpu_backend_is_refused_by_name():
    with pytest.raises(RuntimeError, match="forces the fused mLSTM step, but MLX runs no CUDA or Metal"):
        mlstm_kernels.use_kernel("kernel")


def test_auto_mode_without_a_backend_runs_the_reference(monkeypatch):
    monkeypatch.setattr(mlstm_kernels, "backend", lambda: None)
    args = _inputs(2, 3, 8, 5, mx.float32, 1)
    state = MLSTMState.zeros(2, 3, 8, 5)
    h, s = mlstm_kernels.recurrent_step(*args, state, 1e-6)
    h_ref, s_ref = mlstm_cell.recurrent_step(*args, state, 1e-6)
    assert mx.array_equal(h, h_ref) and mx.array_equal(s.C, s_ref.C) and mlstm_kernels._CHECKED == {}


def _counting(kernel, calls):
    def run(*a, which=None):
        calls.append(which)
        return kernel(*a)
    return run


def test_a_kernel_that_disagrees_warns_once_and_the_reference_runs(monkeypatch):
    calls = []

    def wrong(q, k, v, i, f, state, eps):  # forgets the stabiliser's m_{t-1} in f'
        h, s = mlstm_cell.recurrent_step(q, k, v, i, f, MLSTMState(state.C, state.n, mx.zeros_like(state.m)), eps)
        return h, s

    monkeypatch.setattr(mlstm_kernels, "backend", lambda: "cuda")
    monkeypatch.setattr(mlstm_kernels, "fused_step", _counting(wrong, calls))
    args = _inputs(1, 2, 8, 4, mx.float32, 2)
    state = MLSTMState(mx.ones((1, 2, 8, 4)), mx.ones((1, 2, 8)), mx.full((1, 2, 1), 2.0))
    with pytest.warns(RuntimeWarning, match=r"\(cuda\) did not match the pure-MLX step: relative errors"):
        h, _ = mlstm_kernels.recurrent_step(*args, state, 1e-6)
    checked = len(calls)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h2, _ = mlstm_kernels.recurrent_step(*args, state, 1e-6)  # checked once per process: no second warning
    assert len(calls) == checked  # the stand-in ran only in its self-check
    h_ref, _ = mlstm_cell.recurrent_step(*args, state, 1e-6)
    assert mx.array_equal(h, h_ref) and mx.array_equal(h2, h_ref)


def test_a_kernel_that_agrees_is_used_after_its_self_check(monkeypatch):
    calls = []
    monkeypatch.setattr(mlstm_kernels, "backend", lambda: "metal")
    monkeypatch.setattr(mlstm_kernels, "fused_step", _counting(mlstm_cell.recurrent_step, calls))
    args = _inputs(1, 2, 8, 4, mx.float32, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mlstm_kernels.recurrent_step(*args, MLSTMState.zeros(1, 2, 8, 4), 1e-6)
    assert mlstm_kernels._CHECKED == {"metal": True} and calls[-1] == "metal"
    calls.clear()
    mlstm_kernels.recurrent_step(*args, MLSTMState.zeros(1, 2, 8, 4), 1e-6, mode="mlx")
    assert calls == []  # forced reference


def test_a_kernel_that_raises_falls_back_with_its_error_in_the_warning(monkeypatch):
    def broken(*a, which=None):
        raise RuntimeError("nvrtc: error")

    monkeypatch.setattr(mlstm_kernels, "backend", lambda: "cuda")
    monkeypatch.setattr(mlstm_kernels, "fused_step", broken)
    with pytest.warns(RuntimeWarning, match="it failed: RuntimeError: nvrtc: error"):
        assert mlstm_kernels.use_kernel() is None


# --- with a GPU: the real kernel ---

SHAPES = [(1, 8, 256, 512), (2, 3, 40, 72), (3, 1, 17, 33), (1, 2, 7, 1), (2, 4, 64, 96)]


@needs_gpu
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("B,NH,DQK,DV", SHAPES)
def test_fused_step_matches_the_reference_over_carried_steps(B, NH, DQK, DV, dtype):
    ks = mx.random.split(mx.random.key(7), 3)
    state = MLSTMState(mx.random.normal((B, NH, DQK, DV), key=ks[0]), mx.random.normal((B, NH, DQK), key=ks[1]),
                       mx.random.normal((B, NH, 1), key=ks[2]))
    ref = state
    for t in range(5):
        args = _inputs(B, NH, DQK, DV, dtype, 10 + t)
        h, state = mlstm_kernels.fused_step(*args, state, 1e-6)
        # the kernel widens bf16 inputs first; the reference then sees the same float32 numbers
        h_ref, ref = mlstm_cell.recurrent_step(*(a.astype(mx.float32) for a in args), ref, 1e-6)
        assert h.dtype == state.C.dtype == mx.float32
        for name, a, b in (("h", h, h_ref), ("C", state.C, ref.C), ("n", state.n, ref.n), ("m", state.m, ref.m)):
            assert _rel(a, b) <= 2e-5, (t, name, _rel(a, b))


@needs_gpu
def test_self_check_passes_on_this_backend():
    assert mlstm_kernels.self_check(BACKEND)
    assert max(mlstm_kernels.mismatch(lambda *a: mlstm_kernels.fused_step(*a, which=BACKEND)).values()) <= 1e-5


@needs_gpu
def test_recurrent_sequence_with_the_kernel_matches_the_reference_sequence(monkeypatch):
    B, NH, S, DQK, DV = 2, 3, 7, 24, 40
    ks = mx.random.split(mx.random.key(5), 5)
    q, k = (mx.random.normal((B, NH, S, DQK), key=x) for x in ks[:2])
    v = mx.random.normal((B, NH, S, DV), key=ks[2])
    i, f = (3 * mx.random.normal((B, NH, S), key=x) for x in ks[3:])
    out = {}
    for mode in ("kernel", "mlx"):
        monkeypatch.setenv(mlstm_kernels.ENV, mode)
        out[mode] = mlstm_cell.recurrent(q, k, v, i, f, MLSTMState.zeros(B, NH, DQK, DV), 1e-6, with_trace=True,
                                         step=mlstm_kernels.recurrent_step)
    (h, s, tr), (h_ref, s_ref, tr_ref) = out["kernel"], out["mlx"]
    assert _rel(h, h_ref) <= 2e-5 and _rel(s.C, s_ref.C) <= 2e-5 and _rel(tr.C_norm, tr_ref.C_norm) <= 2e-5
