"""The norms (xlstm_viz/model/norms.py) against their composed formulas, eager and under mx.compile.

Their fast forms (mx.fast kernels, a per-row statistic broadcast after its rsqrt) are claimed to be bit for bit the
composed ops on the CPU; float64 numpy bounds them at a few float32 ulps of each output's magnitude.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from xlstm_viz.model import norms

EPS = 1e-6
ULP = np.finfo(np.float32).eps


def _inputs(shape, seed=0, size=3.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * size + size / 6).astype(np.float32)  # a mean away from 0, as activations have
    w = (1.0 + 0.1 * rng.standard_normal(shape[-1])).astype(np.float32)
    return x, w


def _rms_composed(x, w, eps):
    return x * mx.rsqrt(mx.mean(mx.square(x), axis=-1, keepdims=True) + eps) * w


def _ln_composed(x, eps):
    mean = mx.mean(x, axis=-1, keepdims=True)
    return (x - mean) * mx.rsqrt(mx.mean(mx.square(x - mean), axis=-1, keepdims=True) + eps)


def _rms_f64(x, w, eps):
    x = x.astype(np.float64)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _ln_f64(x, eps):
    x = x.astype(np.float64)
    c = x - x.mean(axis=-1, keepdims=True)
    return c / np.sqrt(np.mean(c * c, axis=-1, keepdims=True) + eps)


def _close_to_f64(got, want, ulps=8):
    got = np.array(got, dtype=np.float64)
    # the error of a row's statistic is added to every output of the row: measured against the row's size, not
    # against an output that happens to be near 0
    scale = np.maximum(np.abs(want), np.sqrt(np.mean(want * want, axis=-1, keepdims=True)))
    worst = float(np.max(np.abs(got - want) / scale))
    assert worst <= ulps * ULP, f"off by {worst / ULP:.1f} float32 ulps of the output's magnitude"


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("size", [3.0, 1e-3], ids=["large", "small"])  # small: eps is 10% of mean(x^2)
@pytest.mark.parametrize("shape", [(512, 256), (3, 7, 96)])
def test_rms_norm_is_the_composed_formula(shape, compiled, size):
    x, w = _inputs(shape, size=size)
    fn = (lambda a, b: norms.rms_norm(a, b, EPS))
    got = (mx.compile(fn) if compiled else fn)(mx.array(x), mx.array(w))
    want = _rms_composed(mx.array(x), mx.array(w), EPS)
    np.testing.assert_array_equal(np.array(got), np.array(want))
    _close_to_f64(got, _rms_f64(x, w, EPS))


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("size", [3.0, 3e-3], ids=["large", "small"])  # small: eps is 10% of the variance
@pytest.mark.parametrize("shape", [(512, 256), (2, 5, 4, 64)])
def test_layer_norm_is_the_composed_formula(shape, compiled, size):
    x, w = _inputs(shape, size=size)
    fn = (lambda a, b: norms.layer_norm(a, b))
    got = (mx.compile(fn) if compiled else fn)(mx.array(x), mx.array(w))
    want = _ln_composed(mx.array(x), norms.LN_EPS) * (1.0 + mx.array(w))
    np.testing.assert_array_equal(np.array(got), np.array(want))
    _close_to_f64(got, _ln_f64(x, norms.LN_EPS) * (1.0 + w.astype(np.float64)))


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_group_norm_is_a_layer_norm_per_head(compiled):
    x, w = _inputs((2, 9, 4 * 32), size=3e-3)
    fn = (lambda a, b: norms.group_norm(a, b, 4))
    got = (mx.compile(fn) if compiled else fn)(mx.array(x), mx.array(w))
    heads = _ln_f64(x.reshape(2, 9, 4, 32), norms.LN_EPS).reshape(2, 9, 128)
    _close_to_f64(got, heads * (1.0 + w.astype(np.float64)))


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_multihead_layer_norm_is_a_layer_norm_per_head(compiled):
    x, w = _inputs((2, 9, 4 * 32), size=1e-3)
    fn = (lambda a, b: norms.multihead_layer_norm(a, b, 4, EPS))
    got = (mx.compile(fn) if compiled else fn)(mx.array(x), mx.array(w))
    want = _ln_composed(mx.array(x).reshape(2, 9, 4, 32), EPS).reshape(2, 9, 128) * mx.array(w)
    np.testing.assert_array_equal(np.array(got), np.array(want))
    _close_to_f64(got, _ln_f64(x.reshape(2, 9, 4, 32), EPS).reshape(2, 9, 128) * w)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape", [(512, 256), (1, 1, 256)], ids=["rows", "one-row"])  # the CPU's two paths
def test_rms_norm_is_mlx_fast_rms_norm(shape, dtype, compiled):
    # mx.fast.rms_norm evaluated eagerly: the reduction in float32, rounded to x's dtype before the weight
    x, w = _inputs(shape)
    x, w = mx.array(x).astype(getattr(mx, dtype)), mx.array(w).astype(getattr(mx, dtype))
    fn = (lambda a, b: norms.rms_norm(a, b, EPS))
    got = (mx.compile(fn) if compiled else fn)(x, w)
    want = mx.fast.rms_norm(x, w, EPS)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(np.array(got.astype(mx.float32)), np.array(want.astype(mx.float32)))
