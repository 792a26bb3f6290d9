"""The arithmetic float32 exp / tanh / sigmoid / silu of xlstm_viz.model.activations (MLX's CPU backend).

Accuracy is checked against float64 NumPy in float32 ULPs of each reference value, over the whole float32 range the
model can produce, plus the special values; the switch and the size threshold are checked by what they change.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from xlstm_viz.model import activations as A

pytestmark = pytest.mark.skipif(mx.default_device() != mx.cpu, reason="the arithmetic path is for the CPU device")

# Measured maxima on the grid below: exp 0.97, tanh 6.6, sigmoid 2.4, silu 2.4 ULPs (MLX's own: exp inf - it
# overflows from 88.0 on -, tanh 2.1, sigmoid 64).
ULPS = {"exp": 1.5, "tanh": 8.0, "sigmoid": 3.0, "silu": 3.0}
REFERENCE = {
    "exp": np.exp,
    "tanh": np.tanh,
    "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)),
    "silu": lambda v: v / (1.0 + np.exp(-v)),
}


@pytest.fixture
def fast_on():
    previous = A.set_fast_cpu_math(True)
    yield
    A.set_fast_cpu_math(previous)


def _grid() -> np.ndarray:
    tiny = np.geomspace(1e-9, 30.0, 50_001).astype(np.float32)
    return np.concatenate([np.linspace(-120.0, 100.0, 400_001, dtype=np.float32), tiny, -tiny])


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """ULPs of the reference where it is a normal float32 (0 elsewhere)."""
    normal = np.isfinite(want) & (np.abs(want) >= np.finfo(np.float32).tiny) & (np.abs(want) <= np.finfo(np.float32).max)
    err = np.zeros(want.shape)
    err[normal] = np.abs(got[normal] - want[normal]) / np.spacing(np.abs(want[normal]).astype(np.float32))
    return err


@pytest.mark.parametrize("name", sorted(ULPS))
def test_fast_function_is_within_a_few_ulps_of_float64(name, fast_on):
    xs = _grid()
    if name == "silu":  # x sigma(x) with sigma(x) subnormal (x < -87) is imprecise in float32 (MLX's silu alike)
        xs = xs[xs > -87.0]
    assert xs.size >= A.FAST_MIN_SIZE
    got = np.array(getattr(A, name)(mx.array(xs))).astype(np.float64)
    with np.errstate(over="ignore"):
        want = REFERENCE[name](xs.astype(np.float64))
    err = _ulps(got, want)
    assert err.max() <= ULPS[name], f"{name}: {err.max():.2f} ULPs at x = {xs[np.argmax(err)]}"


def test_fast_functions_keep_special_values(fast_on):
    specials = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, -200.0, 200.0], np.float32)
    x = mx.array(np.resize(specials, A.FAST_MIN_SIZE))  # large enough for the arithmetic path
    n = specials.size
    got = {name: np.array(getattr(A, name)(x))[:n] for name in ("exp", "tanh", "sigmoid")}
    np.testing.assert_array_equal(got["exp"], [0.0, np.inf, np.nan, 1.0, 1.0, 0.0, np.inf])
    np.testing.assert_array_equal(got["tanh"], [-1.0, 1.0, np.nan, 0.0, -0.0, -1.0, 1.0])
    assert np.signbit(got["tanh"][4]), "tanh(-0) is -0"
    np.testing.assert_array_equal(got["sigmoid"], [0.0, 1.0, np.nan, 0.5, 0.5, 0.0, 1.0])


def test_switch_changes_the_computation_and_compiled_model_retraces(fast_on):
    from xlstm_viz.config import XLSTMConfig
    from xlstm_viz.model import XLSTM

    x = mx.array(np.linspace(-20, 20, 8192, dtype=np.float32))
    fast = np.array(A.tanh(x))
    A.set_fast_cpu_math(False)
    mlx_own = np.array(A.tanh(x))
    np.testing.assert_array_equal(mlx_own, np.array(mx.tanh(x)))
    assert not np.array_equal(fast, mlx_own), "the switch must change which tanh runs"

    config = XLSTMConfig(embedding_dim=64, num_heads=2, num_blocks=1, vocab_size=512, chunk_size=16)
    model = XLSTM(config)
    ids = mx.array(np.arange(32, dtype=np.int32)[None] * 7 % 512)  # logits 32 x 512: the arithmetic path
    forward = model.compiled("chunkwise")
    A.set_fast_cpu_math(True)
    on, _ = forward(ids, None)
    A.set_fast_cpu_math(False)
    off, _ = forward(ids, None)
    eager_off, _ = model(ids)
    on, off, eager_off = np.array(on), np.array(off), np.array(eager_off)
    assert not np.array_equal(on, off), "compiled() kept the graph traced with the other setting"
    np.testing.assert_allclose(off, eager_off, rtol=0, atol=64 * np.finfo(np.float32).eps * np.abs(eager_off).max())
    np.testing.assert_allclose(on, off, rtol=0, atol=64 * np.finfo(np.float32).eps * np.abs(off).max())


def test_small_or_non_float32_arrays_use_mlx_functions(fast_on):
    small = mx.array(np.linspace(-5, 5, A.FAST_MIN_SIZE - 1, dtype=np.float32))
    np.testing.assert_array_equal(np.array(A.tanh(small)), np.array(mx.tanh(small)))
    np.testing.assert_array_equal(np.array(A.exp(small)), np.array(mx.exp(small)))
    big16 = mx.array(np.linspace(-5, 5, 2 * A.FAST_MIN_SIZE, dtype=np.float32)).astype(mx.bfloat16)
    assert A.tanh(big16).dtype == mx.bfloat16
    np.testing.assert_array_equal(np.array(A.sigmoid(big16).astype(mx.float32)),
                                  np.array(mx.sigmoid(big16).astype(mx.float32)))
    big = mx.array(np.linspace(-5, 5, A.FAST_MIN_SIZE, dtype=np.float32))
    assert A.fast_math_applies(big) and not A.fast_math_applies(small)


@pytest.mark.parametrize("name", ["exp", "tanh", "sigmoid", "silu"])
def test_gradients_of_fast_functions_match_mlx_functions(name, fast_on):
    # Training differentiates through these: the bit-level exp has no derivative of its own.
    reference = {"exp": mx.exp, "tanh": mx.tanh, "sigmoid": mx.sigmoid, "silu": lambda v: v * mx.sigmoid(v)}[name]
    x = mx.array(np.linspace(-6, 6, 2 * A.FAST_MIN_SIZE, dtype=np.float32))
    assert A.fast_math_applies(x)
    got = np.array(mx.grad(lambda v: mx.sum(getattr(A, name)(v) * v))(x))
    want = np.array(mx.grad(lambda v: mx.sum(reference(v) * v))(x))
    np.testing.assert_allclose(got, want, rtol=0, atol=32 * np.finfo(np.float32).eps * np.abs(want).max())


def test_soft_cap_in_one_kernel_equals_its_three_step_form_and_its_gradient(fast_on):
    # The fused cap * tanh(x / cap) (the logit cap 30, the gate cap 15) gives the values of the composed functions
    # and the derivative 1 - tanh^2(x / cap).
    x = mx.array(np.linspace(-400, 400, 2 * A.FAST_MIN_SIZE, dtype=np.float32))
    for cap in (30.0, 15.0):
        got = np.array(A.soft_cap(x, cap))
        np.testing.assert_array_equal(got, np.array(cap * A.tanh(x / cap)))
        grad = np.array(mx.grad(lambda v: mx.sum(A.soft_cap(v, cap) * v))(x))
        want = np.array(mx.grad(lambda v: mx.sum(cap * mx.tanh(v / cap) * v))(x))
        np.testing.assert_allclose(grad, want, rtol=0, atol=32 * np.finfo(np.float32).eps * np.abs(want).max())



def _every_float32(lo: float, hi: float) -> np.ndarray:
    """Every float32 in [lo, hi], lo and hi of one sign (their bit patterns then order like their magnitudes)."""
    a, b = sorted((abs(np.float32(lo)).view(np.int32), abs(np.float32(hi)).view(np.int32)))
    return np.arange(a, b + 1, dtype=np.int32).view(np.float32) * np.float32(np.sign(lo))


@pytest.mark.parametrize("lo, hi", [(-87.35, -87.32), (88.70, 88.74)], ids=["subnormal end", "overflow end"])
def test_exp_at_the_ends_of_the_normal_range_is_close_zero_or_inf(lo, hi, fast_on):
    # Every float32 around e^x = 2^-126 and e^x = float max: a normal result within the ULPs above, a subnormal one
    # 0 (flushed: the arithmetic never forms a subnormal product, which x86 runs in microcode), an overflow inf.
    xs = _every_float32(lo, hi)
    xs = np.resize(xs, max(xs.size, A.FAST_MIN_SIZE))
    got = np.array(A.exp(mx.array(xs))).astype(np.float64)
    with np.errstate(over="ignore"):
        want = np.exp(xs.astype(np.float64))
        normal = (want >= np.finfo(np.float32).tiny) & np.isfinite(want.astype(np.float32))
    assert normal.any() and (~normal).any()
    err = _ulps(got[normal], want[normal])
    assert err.max() <= ULPS["exp"], f"{err.max():.2f} ULPs at x = {xs[normal][np.argmax(err)]}"
    np.testing.assert_array_equal(got[~normal], np.where(want[~normal] < 1, 0.0, np.inf))


def test_the_on_off_environment_switches_refuse_a_value_they_do_not_know():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = ("import xlstm_viz, xlstm_viz.blas as b; from xlstm_viz.model import activations as a, XLSTM; "
            "from xlstm_viz.config import XLSTMConfig; XLSTM(XLSTMConfig(embedding_dim=32, num_heads=2, num_blocks=1, "
            "vocab_size=10)); print(a.FAST_CPU_MATH, b.gemv_shim is not None or b.loaded is None, b.malloc_tuned)")

    def run(**env):
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root,
                              env={**os.environ, "PYTHONPATH": str(root), **env})

    off = run(XLSTM_VIZ_FAST_MATH="no", XLSTM_VIZ_MALLOC="no")
    assert off.returncode == 0, off.stderr
    assert off.stdout.split()[0] == "False" and off.stdout.split()[2] == "False"  # "no" was read as on
    for name in ("XLSTM_VIZ_FAST_MATH", "XLSTM_VIZ_MALLOC", "XLSTM_VIZ_BLAS_GEMV"):
        bad = run(**{name: "disable"})
        assert bad.returncode != 0 and f"{name}='disable': expected one of off/0/false/no/none" in bad.stderr, bad
