"""The multi-matrix gemv kernel (kernels/gemv.cu, CUDA only) against cells.linear, and the decode step's grouped
projections (forward._product_groups) with and without it."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from xlstm_viz.config import XLSTMConfig
from xlstm_viz.model import XLSTM, gemv_kernels
from xlstm_viz.model.forward import Executor

CUDA = gemv_kernels.backend()
needs_cuda = pytest.mark.skipif(CUDA is None, reason="no MLX CUDA backend on this machine: the gemv kernel is "
                                "CUDA-only (the planning and dispatch tests below run everywhere)")


@pytest.fixture(autouse=True)
def fresh_dispatch(monkeypatch):
    monkeypatch.delenv(gemv_kernels.ENV, raising=False)
    monkeypatch.setattr(gemv_kernels, "_CHECKED", {})


def _model(dtype="float32", blocks=2, width=64, seed=0):
    config = XLSTMConfig.from_dict(dict(embedding_dim=width, num_heads=4, num_blocks=blocks, vocab_size=97,
                                        chunk_size=8))
    model = XLSTM(config, compute_dtype=dtype, seed=seed)
    if dtype == "bfloat16":
        from mlx.utils import tree_map
        model.update(tree_map(lambda p: p.astype(mx.bfloat16), model.parameters()))
    return model


def _decode(model, steps=3, batch=2):
    ids = mx.array(np.random.default_rng(1).integers(0, 97, (batch, steps)), mx.int32)
    state, out = None, []
    for t in range(steps):
        logits, state = Executor(model).forward(ids[:, t:t + 1], state=state, mode="recurrent")
        out.append(logits)
    return mx.concatenate(out, axis=1), state


# --- everywhere: source, geometry, planning, dispatch ---

def test_source_has_header_and_body_and_names_carry_a_digest():
    header, body = gemv_kernels.source()
    assert "gv_load8" in header and "__shfl_xor_sync" in body and "extern __shared__ float xs[]" in body
    assert gemv_kernels.kernel_name("a") != gemv_kernels.kernel_name("b")


@pytest.mark.parametrize("rows", [1, 7, 8, 4096, 12304, 50304])
def test_launch_geometry_gives_every_row_a_warp(rows):
    g = gemv_kernels.launch_geometry(3, rows)
    blocks = g["grid"][0] // g["threadgroup"][0]
    assert g["grid"][1] == 3 and 1 <= blocks <= gemv_kernels.MAX_BLOCKS
    warps = blocks * g["threadgroup"][0] // 32
    assert warps >= min(rows, gemv_kernels.MAX_BLOCKS * 8)  # rows beyond are strided over by the same warps
    assert (blocks - 1) * 8 < rows  # no block without a row


def test_applies_names_what_the_kernel_cannot_take():
    x = mx.zeros((1, 64))
    assert gemv_kernels.applies(x, [mx.zeros((5, 64))], [None]) is None
    assert "not [B, K]" in gemv_kernels.applies(mx.zeros((1, 1, 64)), [mx.zeros((5, 64))], [None])
    assert "over the 48000 allowed" in gemv_kernels.applies(mx.zeros((1, 16384)), [mx.zeros((5, 16384))], [None])
    # x is staged in whole 256-column passes: 11,776 columns fill 47,104 bytes, one more needs a 48,128-byte pass
    assert gemv_kernels.applies(mx.zeros((1, 11776)), [mx.zeros((5, 11776))], [None]) is None
    assert "48128 bytes" in gemv_kernels.applies(mx.zeros((1, 11777)), [mx.zeros((5, 11777))], [None])
    assert "does not match" in gemv_kernels.applies(x, [mx.zeros((5, 64)), mx.zeros((5, 64), mx.bfloat16)],
                                                    [None, None])
    assert "7 matrices" in gemv_kernels.applies(x, [mx.zeros((5, 64))] * 7, [None] * 7)


def test_mode_setting(monkeypatch):
    monkeypatch.setenv(gemv_kernels.ENV, "mlx")
    assert gemv_kernels.use_kernel() is False
    monkeypatch.setenv(gemv_kernels.ENV, "fast")
    with pytest.raises(ValueError, match="XLSTM_VIZ_GEMV_KERNEL = 'fast'"):
        gemv_kernels.use_kernel()
    monkeypatch.delenv(gemv_kernels.ENV)
    # off unless asked for: slower than MLX's matmuls on the H200 (module docstring)
    assert gemv_kernels.resolve_mode() == "mlx" and gemv_kernels.use_kernel() is False
    if CUDA is None:
        with pytest.raises(RuntimeError, match="no CUDA backend"):
            gemv_kernels.use_kernel("kernel")
        assert gemv_kernels.multi_linear(mx.zeros((1, 8)), [mx.zeros((3, 8))]) is None


def test_the_mlstm_block_groups_its_projections_by_input():
    model = _model()
    plan = Executor(model)._plan(0)
    names = {src: [[plan.steps[i].local for i in g] for g in groups] for src, groups in plan.product_groups.items()}
    assert sorted(names["mlstm.norm_in"][0]) == sorted(["mlstm.q", "mlstm.k", "mlstm.v", "mlstm.igate", "mlstm.fgate",
                                                        "mlstm.ogate"])
    assert sorted(names["ffn.norm_in"][0]) == ["ffn.gate", "ffn.up"]
    assert names["mlstm.h"] == [["mlstm.out"]] and names["ffn.h"] == [["ffn.out"]]
    # a disabled or flipped input is not a plain product of the shared value: its cell leaves the group
    model.cell_wirings[0].set_polarity("blocks.0.mlstm.norm_in", "blocks.0.mlstm.k", -1)
    plan = Executor(model)._plan(0)
    grouped = {plan.steps[i].local for g in plan.product_groups["mlstm.norm_in"] for i in g}
    assert "mlstm.k" not in grouped and "mlstm.q" in grouped


def test_grouped_products_reach_the_cells_of_a_masked_decode_step(monkeypatch):
    """The plumbing without a GPU: multi_linear replaced by its reference, called with the wiring's masked weights;
    the decode logits must equal the ungrouped path's. (On CUDA the real kernel runs in the test further down.)"""
    model = _model()
    model.cell_wirings[0].set_sparsity("blocks.0.mlstm.norm_in", "blocks.0.mlstm.q", 0.5, seed=7)
    want, _ = _decode(model)
    calls = []

    def reference(x, weights, biases=None, mode=None, out_shapes=None):
        calls.append(len(weights))
        return gemv_kernels.reference(x, weights, biases)
    monkeypatch.setattr(gemv_kernels, "multi_linear", reference)
    monkeypatch.setattr(gemv_kernels, "use_kernel", lambda mode=None: True)
    got, _ = _decode(model)
    assert calls and max(calls) == 6  # q, k, v, igate, fgate, ogate in one call
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-5, atol=1e-5)


# --- on CUDA: the kernel itself ---

@needs_cuda
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("B,K,rows,bias", [
    (1, 4096, (2048, 2048, 4096, 4096, 8, 8), (False,) * 4 + (True, True)),  # an mLSTM block's six at 7B
    (1, 10944, (4096,), (False,)),  # the FFN's down projection
    (3, 200, (37, 5, 64), (False, True, False)),  # batch > 1, K not a multiple of 256
    (2, 776, (300, 3), (True, False)),  # three passes, the last one partial (x's shared layout, gemv.cu gv_xpos)
    (2, 37, (9, 1), (True, False)),  # K not a multiple of 8: scalar loads
])
def test_kernel_matches_linear(dtype, B, K, rows, bias):
    err = gemv_kernels.mismatch(batch=B, K=K, rows=rows, dtype=dtype, bias=bias, seed=K)
    assert err <= gemv_kernels.CHECK_TOLERANCE[dtype], err


@needs_cuda
def test_kernel_output_shapes_and_dtype():
    x, ws, bs = gemv_kernels.check_inputs(batch=2, K=64, rows=(12, 8), dtype=mx.bfloat16)
    ys = gemv_kernels.fused_multi_linear(x, ws, bs, out_shapes=[(2, 3, 4), (2, 8)])
    assert [tuple(y.shape) for y in ys] == [(2, 3, 4), (2, 8)] and all(y.dtype == mx.bfloat16 for y in ys)
    ref = gemv_kernels.reference(x, ws, bs)
    assert float(mx.max(mx.abs(ys[0].reshape(2, 12).astype(mx.float32) - ref[0].astype(mx.float32)))) < 0.05


@needs_cuda
def test_self_check_passes_and_a_broken_kernel_falls_back(monkeypatch):
    assert gemv_kernels.self_check() is True
    monkeypatch.setattr(gemv_kernels, "_CHECKED", {})
    monkeypatch.setattr(gemv_kernels, "mismatch", lambda **kw: 1.0)
    with pytest.warns(RuntimeWarning, match="did not match"):  # "auto": the default mode "mlx" checks nothing
        assert gemv_kernels.use_kernel("auto") is False


@needs_cuda
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_decode_with_the_kernel_matches_the_mlx_path(monkeypatch, dtype):
    model = _model(dtype, width=72)
    model.cell_wirings[1].set_sparsity("blocks.1.ffn.h", "blocks.1.ffn.out", 0.9, seed=1)
    monkeypatch.setenv(gemv_kernels.ENV, "mlx")
    want, want_state = _decode(model)
    monkeypatch.setenv(gemv_kernels.ENV, "kernel")
    got, got_state = _decode(model)
    scale = float(mx.max(mx.abs(want)))
    tol = 1e-4 if dtype == "float32" else 5e-2
    assert float(mx.max(mx.abs(got - want))) <= tol * scale
    # an in-place weight edit is seen by the next step (nothing concatenated or cached)
    w = model.blocks[0].mlstm_layer.v.weight
    model.blocks[0].mlstm_layer.v.weight = w * 0
    monkeypatch.setenv(gemv_kernels.ENV, "mlx")
    want2, _ = _decode(model)
    monkeypatch.setenv(gemv_kernels.ENV, "kernel")
    got2, _ = _decode(model)
    assert float(mx.max(mx.abs(got2 - want2))) <= tol * scale and float(mx.max(mx.abs(want2 - want))) > tol * scale
