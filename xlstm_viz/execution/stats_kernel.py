"""The fused CPU kernels behind stats traces on MLX's CPU device (numba, compiled once and cached on disk).

`table_stats`: each row (one head of one token) is read once for its sum, sum of squares and abs-max, and once
more, while it is still in L1, for the centred sum of squares. One call covers every probe of a trace: the probes'
buffers are passed as a table of addresses, so a probe costs a row in that table, not a Python-to-kernel crossing.
numpy needs a pass per reduction plus a copy per head width: on the demo model that took 1.0-1.3 ms after a 3.9 ms
forward, against about 0.3 ms here (benchmarks/trace_overhead.py). `memory_stats`: the mLSTM recurrence for the
per-token memory norms.
numba rather than a C extension: the package stays pure Python (one wheel for every platform), and numba is the
kernel compiler the HoloViz stack already uses (datashader).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

# reassoc lets LLVM split the sums into vector lanes; NaN and inf handling stay IEEE (no nnan/ninf).
_FASTMATH = {"reassoc", "contract", "nsz"}
_ABS = np.int32(0x7FFFFFFF)


def _pointer_at(item):
    """An intrinsic: a typed pointer from an integer address (the caller keeps the arrays alive for the call)."""

    @intrinsic
    def pointer(typingctx, address):
        sig = types.CPointer(item)(types.int64)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

        return sig, codegen

    return pointer


_float32_at = _pointer_at(types.float32)
_int32_at = _pointer_at(types.int32)


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=_FASTMATH)
def table_stats(inputs, mean_out, std_out, l2_out, peak):  # pragma: no cover - compiled; see stats.kernel_stats
    """Stats of every head row of every input, in one call (one Python-to-kernel crossing per trace, not per probe).

    inputs: int64 [n, 4] rows of (address of a C-contiguous float32 buffer, rows, width, first output row); row r of
    an input is its features [r * width, (r + 1) * width). Writes mean, std and l2 to *_out[first + r] and
    peak[first + r] = the int32 bit pattern of max |x| (view it as float32). With the sign bit cleared, float bit
    patterns order like the floats' magnitudes and every NaN lies above inf, so an integer max, which vectorises
    where a NaN-aware float max does not, gives the abs-max and propagates NaN.
    """
    for i in range(inputs.shape[0]):
        rows, width, first = inputs[i, 1], inputs[i, 2], inputs[i, 3]
        x = numba.carray(_float32_at(inputs[i, 0]), (rows, width))
        bits = numba.carray(_int32_at(inputs[i, 0]), (rows, width))
        scale = np.float32(1.0) / np.float32(width)
        for r in range(rows):
            total = np.float32(0.0)
            squares = np.float32(0.0)
            for j in range(width):
                v = x[r, j]
                total += v
                squares += v * v
            mean = total * scale
            centred = np.float32(0.0)
            for j in range(width):
                d = x[r, j] - mean
                centred += d * d
            top = np.int32(0)
            for j in range(width):
                top = max(top, bits[r, j] & _ABS)
            mean_out[first + r] = mean
            std_out[first + r] = np.sqrt(centred * scale)
            l2_out[first + r] = np.sqrt(squares)
            peak[first + r] = top


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=_FASTMATH)
def memory_stats(k, v, i, f, C0, n0, m0, m_out, n_out, C_out):  # pragma: no cover - compiled; tested via Recorder
    """Per-token memory statistics by the mLSTM recurrence (mlstm_cell.recurrent_step), run on the host.

    k [B, S, NH, DQK], v [B, S, NH, DV], i and f [B, S, NH] (pre-activations, as the memory cell received them),
    the state entering the sequence C0 [B, NH, DQK, DV], n0 [B, NH, DQK], m0 [B, NH]. Writes m_t, ||n_t|| and
    ||C_t||_F to m_out, n_out, C_out [B, S, NH]. The gate arithmetic is float64 (scalars), the state float32 as in
    the model; one pass over C per token updates it and sums its squares.
    """
    B, S, NH, DQK = k.shape
    DV = v.shape[3]
    C = np.empty((DQK, DV), np.float32)
    n = np.empty(DQK, np.float32)
    for b in range(B):
        for h in range(NH):
            for p in range(DQK):  # explicit loops: numba's slice assignment took seconds to compile
                n[p] = n0[b, h, p]
                for q in range(DV):
                    C[p, q] = C0[b, h, p, q]
            m = float(m0[b, h])
            for t in range(S):
                ft = float(f[b, t, h])
                it = float(i[b, t, h])
                logf = min(ft, 0.0) - math.log1p(math.exp(-abs(ft)))  # log sigmoid(f), stable
                m_new = max(logf + m, it)  # stabiliser
                if it != it or logf != logf or m != m:
                    m_new = math.nan  # NaN propagates as in mx.maximum
                fa = np.float32(math.exp(logf + m - m_new))
                ia = np.float32(math.exp(it - m_new))
                c_sq = np.float32(0.0)
                n_sq = np.float32(0.0)
                for p in range(DQK):
                    kp = ia * k[b, t, h, p]
                    for q in range(DV):
                        c = fa * C[p, q] + kp * v[b, t, h, q]
                        C[p, q] = c
                        c_sq += c * c
                    n[p] = fa * n[p] + kp
                    n_sq += n[p] * n[p]
                m = m_new
                m_out[b, t, h] = m
                n_out[b, t, h] = math.sqrt(n_sq)
                C_out[b, t, h] = math.sqrt(c_sq)
