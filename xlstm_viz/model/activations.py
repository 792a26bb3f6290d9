"""Point-wise functions of xLSTM-7B, with float32 exp / tanh / sigmoid written in arithmetic for MLX's CPU backend.

MLX's CPU backend evaluates exp, tanh and sigmoid one element at a time through its scalar fallback: on the 2-core CI
machine `mx.exp` takes ~40 ns an element against ~4 ns for NumPy, so the logit soft cap alone (tanh over
512 x 50304 logits) was a third of a D=1024 prefill (`python benchmarks/transcendentals.py` measures it). The
functions below compute the same values from multiplies, adds, one division and bit shifts, which MLX runs (and
mx.compile fuses) at arithmetic speed:

    exp(x)     = 2^n p(r), n = round(x log2 e), r = x - n ln 2 (Cody-Waite split), p the degree-7 Cephes expf
                 polynomial; n added to p's exponent bits (results <= 1 ULP off where e^x is a normal float32,
                 0 where it would be subnormal, x <= -87.33655, inf from 88.72284 on)
    tanh(x)    = x P(x^2) / Q(x^2) on [-7.9, 7.9], +-1 beyond (Eigen's float rational approximation, <= 7 ULP)
    sigmoid(x) = 1 / (1 + exp(-x)) (relative accuracy kept for large negative x)

They are used for float32 inputs of at least FAST_MIN_SIZE elements on the CPU device while `FAST_CPU_MATH` is true (environment variable
XLSTM_VIZ_FAST_MATH=off sets it false; `set_fast_cpu_math` changes it at run time); elsewhere (GPU backends, other
dtypes) MLX's own functions run, unchanged.
"""

from __future__ import annotations

import os

import mlx.core as mx
import mlx.nn as nn

from xlstm_viz.blas import env_switch  # noqa: E402 - the env parsing shared with the BLAS switches (no MLX import)

FAST_CPU_MATH = env_switch("XLSTM_VIZ_FAST_MATH")


def set_fast_cpu_math(on: bool) -> bool:
    """Switch the arithmetic exp/tanh/sigmoid on or off for this process; returns the previous setting.

    Compiled forwards (`XLSTM.compiled`) are re-traced when the setting changes."""
    global FAST_CPU_MATH
    previous, FAST_CPU_MATH = FAST_CPU_MATH, bool(on)
    return previous


# Below this many elements MLX's own function is faster: the arithmetic version is several kernels (the bit
# reinterpretations split the compiled graph), each with a fixed cost of tens of microseconds on the CPU device;
# measured crossover 1,000-4,000 elements (benchmarks/transcendentals.py). Decode steps are mostly below it.
FAST_MIN_SIZE = 4096


def fast_math_applies(x: mx.array) -> bool:
    return FAST_CPU_MATH and x.dtype == mx.float32 and x.size >= FAST_MIN_SIZE and mx.default_device() == mx.cpu


_LOG2E = 1.4426950408889634
_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4  # ln 2 = hi + lo, hi exact in 9 bits (Cephes)
_ROUND = 12582912.0  # 1.5 * 2^23: t = y + _ROUND rounds y to an integer, held in t's low mantissa bits
_EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
_TANH_P = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
           1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)  # odd numerator, highest first
_TANH_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)
_TANH_CLAMP = 7.90531110763549805  # tanh = +-1 in float32 beyond
# The float32 neighbours just outside the x whose e^x is a normal float32 (2^-126 = e^-87.336545, float max =
# e^88.722839): e^x is subnormal at x <= _EXP_LO and overflows at x >= _EXP_HI.
_EXP_LO, _EXP_HI = -87.33655, 88.72284
_INF_BITS, _NAN_BITS = 0x7F800000, 0x7FC00000  # float32 +inf and the quiet NaN, as int32 bits


@mx.compile
def _exp_values(x: mx.array) -> mx.array:
    # Clipped to where e^x is a normal float32 (from e^-87.3365 = 2^-126): below it the result is 0 by a select,
    # never through a product that underflows, because x86 handles every subnormal result in microcode (~100 cycles; the
    # masked half of the mLSTM decay matrix, all -inf, made this kernel 10 ns an element).
    xc = mx.clip(x, _EXP_LO, _EXP_HI)
    t = xc * _LOG2E + _ROUND
    n = t - _ROUND  # round(x log2 e), exact as a float
    r = xc - n * _LN2_HI - n * _LN2_LO  # |r| <= ln2 / 2
    # The Cephes polynomial by Estrin's scheme, not Horner's: mx.compile fuses chains of at most 11 ops into one
    # kernel, and Horner's 10-deep chain alone split e^x into four float kernels.
    c0, c1, c2, c3, c4, c5 = _EXP_POLY
    r2 = r * r
    q = (c5 + c4 * r) + r2 * (c3 + c2 * r) + (r2 * r2) * (c1 + c0 * r)
    p = q * r2 + r + 1.0  # e^r, in [0.7, 1.42]
    # 2^n p by adding n to p's exponent bits (n in [-126, 128] here, so the sum stays a normal float or, at the top,
    # inf), with the out-of-range and NaN results chosen in the same integer kernel (the bit views split the
    # compiled graph). n comes from t's low mantissa bits, not a float-to-int conversion, which with the selects
    # kept g++ from vectorizing the kernel.
    bits = p.view(mx.int32) + mx.left_shift(t.view(mx.int32) - 0x4B400000, 23)
    # Decided on xc, not x, so that x feeds only the clip and whatever computed x fuses into the clip's kernel.
    bits = mx.where(xc <= _EXP_LO, 0, mx.where(xc >= _EXP_HI, _INF_BITS, bits))
    return mx.where(xc != xc, _NAN_BITS, bits).view(mx.float32)


@mx.compile
def _tanh_values(x: mx.array) -> mx.array:
    y = mx.clip(x, -_TANH_CLAMP, _TANH_CLAMP)
    z = y * y
    p = _TANH_P[0]
    for c in _TANH_P[1:]:
        p = p * z + c
    q = _TANH_Q[0]
    for c in _TANH_Q[1:]:
        q = q * z + c
    return y * p / q


@mx.compile
def _soft_cap_values(x: mx.array, cap: mx.array) -> mx.array:
    # One kernel: as three (x / cap, tanh, cap *), each pass wrote its own 100 MB over the D=1024 logits.
    return cap * _tanh_values(x / cap)


@mx.compile
def _sigmoid_values(x: mx.array) -> mx.array:
    return 1.0 / (1.0 + _exp_values(-x))


# Gradients by the calculus, not by differentiating the approximation (the bit reinterpretation has no derivative
# and the rounding step n would otherwise be differentiated as if it were x log2 e): training runs through these.
@mx.custom_function
def _exp_f32(x: mx.array) -> mx.array:
    return _exp_values(x)


@_exp_f32.vjp
def _exp_vjp(primals, cotangent, output):
    return cotangent * output  # d e^x = e^x dx


@mx.custom_function
def _tanh_f32(x: mx.array) -> mx.array:
    return _tanh_values(x)


@_tanh_f32.vjp
def _tanh_vjp(primals, cotangent, output):
    return cotangent * (1.0 - output * output)  # d tanh x = (1 - tanh^2 x) dx


@mx.custom_function
def _soft_cap_f32(x: mx.array, cap: mx.array) -> mx.array:
    return _soft_cap_values(x, cap)


@_soft_cap_f32.vjp
def _soft_cap_vjp(primals, cotangent, output):
    t = output / primals[1]
    return cotangent * (1.0 - t * t), mx.zeros_like(primals[1])  # d cap tanh(x / cap) = (1 - tanh^2) dx; cap fixed


@mx.custom_function
def _sigmoid_f32(x: mx.array) -> mx.array:
    return _sigmoid_values(x)


@_sigmoid_f32.vjp
def _sigmoid_vjp(primals, cotangent, output):
    return cotangent * output * (1.0 - output)  # d sigma = sigma (1 - sigma) dx


def exp(x: mx.array) -> mx.array:
    return _exp_f32(x) if fast_math_applies(x) else mx.exp(x)


def tanh(x: mx.array) -> mx.array:
    return _tanh_f32(x) if fast_math_applies(x) else mx.tanh(x)


def sigmoid(x: mx.array) -> mx.array:
    return _sigmoid_f32(x) if fast_math_applies(x) else mx.sigmoid(x)


def silu(x: mx.array) -> mx.array:
    """x sigma(x) (SwiGLU's gate activation)."""
    return x * _sigmoid_f32(x) if fast_math_applies(x) else nn.silu(x)


def soft_cap(x: mx.array, cap: float | None) -> mx.array:
    """cap * tanh(x / cap): bounds gate pre-activations (cap 15) and logits (cap 30)."""
    if cap is None or cap <= 0:
        return x
    if fast_math_applies(x):
        return _soft_cap_f32(x, mx.array(cap, mx.float32))
    return cap * tanh(x / cap)


def log_sigmoid(x: mx.array) -> mx.array:
    """log(sigmoid(x)) = -softplus(-x), stable for large |x|."""
    return -mx.logaddexp(mx.zeros_like(x), -x)


# The original xLSTM's feed-forward activations (components/feedforward.py `act_fn`), by their official names.
FFN_ACTIVATIONS = {
    "gelu": nn.gelu,  # exact (erf) GELU, as torch.nn.functional.gelu
    "relu": nn.relu,
    "relu^2": lambda x: mx.square(nn.relu(x)),
    "sigmoid": mx.sigmoid,
    "swish": nn.silu,
    "selu": nn.selu,
}
