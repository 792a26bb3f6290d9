"""The M = 1 / N = 1 shim of xlstm_viz.blas: matrix-vector products go to sgemv and give the products of sgemm."""

from __future__ import annotations

import numpy as np
import pytest

import xlstm_viz.blas as blas
import mlx.core as mx

from tests.tolerances import F32_ULP

needs_shim = pytest.mark.skipif(blas.gemv_shim is None, reason="no OpenBLAS or no C compiler: the gemv shim is not loaded")

RNG = np.random.default_rng(0)
K, N = 37, 53  # odd sizes, so a swapped row/column count or leading dimension gives a wrong shape or wrong values


def _cases():
    x = RNG.normal(size=(1, K)).astype(np.float32)
    w_nk = RNG.normal(size=(N, K)).astype(np.float32)
    w_kn = RNG.normal(size=(K, N)).astype(np.float32)
    col = RNG.normal(size=(K, 1)).astype(np.float32)
    bias = RNG.normal(size=(N,)).astype(np.float32)
    xb = RNG.normal(size=(3, 1, K)).astype(np.float32)
    wb = RNG.normal(size=(3, N, K)).astype(np.float32)  # one matrix per batch entry (a shared one folds into M = 3)
    return {
        "x @ W.T (decode projection)": (lambda: mx.array(x) @ mx.array(w_nk).T, x @ w_nk.T.astype(np.float64)),
        "x @ W": (lambda: mx.array(x) @ mx.array(w_kn), x.astype(np.float64) @ w_kn),
        "W @ column": (lambda: mx.array(w_nk) @ mx.array(w_kn[:, :1]), w_nk.astype(np.float64) @ w_kn[:, :1]),
        "W.T @ column": (lambda: mx.array(w_kn).T @ mx.array(col), w_kn.T.astype(np.float64) @ col),
        "row of a transposed matrix @ W": (lambda: mx.array(col).T @ mx.array(w_kn), col.T.astype(np.float64) @ w_kn),
        "bias + x @ W.T (addmm, beta 1)": (lambda: mx.addmm(mx.array(bias), mx.array(x), mx.array(w_nk).T),
                                           bias + x.astype(np.float64) @ w_nk.T),
        "batched x @ W.T": (lambda: mx.array(xb) @ mx.array(wb).swapaxes(-1, -2),
                            xb.astype(np.float64) @ wb.swapaxes(-1, -2)),
    }


@needs_shim
@pytest.mark.parametrize("case", list(_cases()))
def test_matrix_vector_products_go_through_sgemv_and_match_float64(case):
    fn, want = _cases()[case]
    before = blas.gemv_shim.xlstm_viz_gemv_calls()
    got = fn()
    mx.eval(got)
    assert blas.gemv_shim.xlstm_viz_gemv_calls() > before, f"{case}: the product did not reach the shim's sgemv path"
    got = np.array(got, np.float64)
    assert got.shape == want.shape
    # a dot product of K terms: a few ULPs of the largest partial sum per term
    allowed = 4 * K * F32_ULP * float(np.max(np.abs(want)))
    assert np.max(np.abs(got - want)) <= allowed, case


@needs_shim
def test_matrix_products_still_go_through_sgemm():
    a = RNG.normal(size=(5, K)).astype(np.float32)
    b = RNG.normal(size=(K, N)).astype(np.float32)
    before = blas.gemv_shim.xlstm_viz_gemv_calls()
    got = mx.array(a) @ mx.array(b)
    mx.eval(got)
    assert blas.gemv_shim.xlstm_viz_gemv_calls() == before
    want = a.astype(np.float64) @ b
    assert np.max(np.abs(np.array(got, np.float64) - want)) <= 4 * K * F32_ULP * float(np.max(np.abs(want)))
