"""The mLSTM cell (matrix memory), stabilised with the max-state m, in two evaluation orders.

Notation follows the xLSTM paper / mlstm_kernels: per batch and head, with C_0 = 0, n_0 = 0, m_0 = 0,

    m_t  = max(log sigma(f_t) + m_{t-1}, i_t)                      (stabiliser)
    C_t  = exp(log sigma(f_t) + m_{t-1} - m_t) C_{t-1} + exp(i_t - m_t) k_t v_t^T
    n_t  = exp(log sigma(f_t) + m_{t-1} - m_t) n_{t-1} + exp(i_t - m_t) k_t
    h_t  = (q_t/sqrt(DQK))^T C_t / (max(|(q_t/sqrt(DQK)) . n_t|, exp(-m_t)) + eps)

k is not scaled. `recurrent_step` evaluates this token by token; `chunkwise` evaluates the same function chunk by
chunk (intra-chunk in parallel, a recurrence over chunk boundaries) and reproduces the recurrent m_t exactly.
States, gates, stabiliser and normaliser are float32 whatever the weight dtype (as in the 7B inference code); with
bf16 activations (compute_dtype="bfloat16") the chunkwise form's matrix products take bf16 operands, as the
official kernels do, and the recurrent step widens them.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx

from xlstm_viz.model.activations import exp, log_sigmoid

# The official inference path pads a ragged last chunk with q = k = v = 0, i = -25, f = +25 (the pad tokens then
# leave the state as it is up to ~1e-11); we pad the same way so that final states match it bit for bit in spirit.
PAD_IGATE = -25.0
PAD_FGATE = 25.0


@dataclass
class MLSTMState:
    """Memory of one mLSTM block: C [B, NH, DQK, DV], n [B, NH, DQK], m [B, NH, 1], float32."""

    C: mx.array
    n: mx.array
    m: mx.array

    @classmethod
    def zeros(cls, batch: int, num_heads: int, dqk: int, dv: int) -> "MLSTMState":
        return cls(
            C=mx.zeros((batch, num_heads, dqk, dv), mx.float32),
            n=mx.zeros((batch, num_heads, dqk), mx.float32),
            m=mx.zeros((batch, num_heads, 1), mx.float32),
        )

    def arrays(self) -> tuple[mx.array, mx.array, mx.array]:
        return self.C, self.n, self.m


@dataclass
class MemoryTrace:
    """Per-token memory statistics, [B, NH, S] each: ||C_t||_F, ||n_t||_2 and m_t (None: not asked for)."""

    C_norm: mx.array | None
    n_norm: mx.array | None
    m: mx.array

    FIELDS = ("C_norm", "n_norm", "m")


def _wanted(with_trace) -> tuple[str, ...]:
    """with_trace: False, True (every field) or the MemoryTrace fields asked for (m always comes: it is free)."""
    if not with_trace:
        return ()
    return MemoryTrace.FIELDS if with_trace is True else tuple(with_trace)


@mx.compile
def _state_norms(C, n):
    """||C_t||_F and ||n_t|| of one token's state (compiled: one fused launch instead of four)."""
    return mx.sqrt(mx.sum(C * C, axis=(-2, -1))), mx.sqrt(mx.sum(n * n, axis=-1))


def recurrent_step(
    q: mx.array, k: mx.array, v: mx.array, i: mx.array, f: mx.array, state: MLSTMState, eps: float
) -> tuple[mx.array, MLSTMState]:
    """One token. q, k [B, NH, DQK]; v [B, NH, DV]; i, f [B, NH, 1]. Returns h [B, NH, DV] and the new state."""
    C, n, m = state.arrays()
    q, k, v = (x.astype(mx.float32) for x in (q, k, v))  # bf16 activations (compute_dtype) widen here
    logf = log_sigmoid(f)
    m_new = mx.maximum(logf + m, i)  # stabiliser
    f_act = exp(logf + m - m_new)
    i_act = exp(i - m_new)
    C = f_act[..., None] * C + i_act[..., None] * (k[..., :, None] * v[..., None, :])
    n = f_act * n + i_act * k
    q_scaled = q * (q.shape[-1] ** -0.5)
    numerator = (q_scaled[..., None, :] @ C).squeeze(-2)
    qn = mx.sum(q_scaled * n, axis=-1, keepdims=True)
    denominator = mx.maximum(mx.abs(qn), exp(-m_new)) + eps
    return numerator / denominator, MLSTMState(C, n, m_new)


def recurrent(
    q: mx.array, k: mx.array, v: mx.array, i: mx.array, f: mx.array, state: MLSTMState, eps: float,
    with_trace=False, step=None,
) -> tuple[mx.array, MLSTMState, MemoryTrace | None]:
    """Token-by-token loop over a sequence. q, k [B, NH, S, DQK]; v [B, NH, S, DV]; i, f [B, NH, S]. Each step runs
    `step` (same arguments and results as `recurrent_step`, the reference and the default): the mLSTM block passes
    `mlstm_kernels.recurrent_step`, which runs the fused kernel where `mlstm_kernels.use_kernel` picks it (a GPU
    backend that passed its self-check). Passed in, because mlstm_kernels imports this module.
    with_trace: False, True or the MemoryTrace fields wanted; the norms are read off each step's state."""
    step = recurrent_step if step is None else step
    wanted = _wanted(with_trace)
    norms = "C_norm" in wanted or "n_norm" in wanted
    hs, cn, nn_, ms = [], [], [], []
    for t in range(q.shape[2]):
        h, state = step(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t, None], f[:, :, t, None], state, eps)
        hs.append(h)
        if norms:
            c_norm, n_norm = _state_norms(state.C, state.n)
            cn.append(c_norm)
            nn_.append(n_norm)
        if wanted:
            ms.append(state.m[..., 0])
    trace = None
    if wanted:
        stacked = lambda parts, name: mx.stack(parts, -1) if name in wanted else None
        trace = MemoryTrace(stacked(cn, "C_norm"), stacked(nn_, "n_norm"), mx.stack(ms, -1))
    return mx.stack(hs, axis=2), state, trace


def chunkwise(
    q: mx.array, k: mx.array, v: mx.array, i: mx.array, f: mx.array, state: MLSTMState, eps: float,
    chunk_size: int, with_trace=False,
) -> tuple[mx.array, MLSTMState, MemoryTrace | None]:
    """Chunkwise-parallel form. Shapes as in `recurrent`. Returns h [B, NH, S, DV], the final state, and if asked
    the per-token memory statistics, reconstructed exactly from the chunk-boundary states (no recurrent re-run).

    Evaluated as one compiled graph per shape (`_compiled_chunkwise`): at the sizes the visualizer runs, the ~60 ops
    of a chunkwise pass (and ~20 more for the norms) cost more in dispatch than in arithmetic."""
    wanted = _wanted(with_trace)
    fn = _compiled_chunkwise(chunk_size, float(eps), wanted, _chunk_kernel_mode())
    out = fn(q, k, v, i, f, *state.arrays())
    h, final = out[0], MLSTMState(*out[1:4])
    trace = None
    if wanted:
        norms = dict(zip(_trace_outputs(wanted), out[4:]))
        trace = MemoryTrace(C_norm=norms.get("C_norm"), n_norm=norms.get("n_norm"), m=norms["m"])
    return h, final, trace


def _trace_outputs(wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The MemoryTrace fields a chunkwise pass returns for `wanted`, in output order (m always: it is free)."""
    return tuple(name for name in MemoryTrace.FIELDS if name in wanted or name == "m") if wanted else ()


def _chunk_kernel_mode() -> str:
    """'kernel' where mlstm_kernels runs the chunk-state kernel here, else 'mlx'; decided before tracing, because its
    self-check reads values (mx.compile does not allow that while it traces)."""
    from xlstm_viz.model import mlstm_kernels  # imports this module

    return "mlx" if mlstm_kernels.use_kernel(None, "chunk") is None else "kernel"


_COMPILED: dict[tuple, object] = {}


def _compiled_chunkwise(chunk_size: int, eps: float, wanted: tuple[str, ...], kernel_mode: str):
    """`_chunkwise` under mx.compile, one per (chunk size, eps, fields, chunk-state path, fast CPU math, device);
    mx.compile itself keeps a graph per input shape and dtype."""
    from xlstm_viz.model import activations

    key = (chunk_size, eps, wanted, kernel_mode, activations.FAST_CPU_MATH, str(mx.default_device()))
    fn = _COMPILED.get(key)
    if fn is None:
        def run(q, k, v, i, f, C, n, m):
            h, final, norms = _chunkwise(q, k, v, i, f, MLSTMState(C, n, m), eps, chunk_size, wanted, kernel_mode)
            return (h, *final.arrays(), *(norms[name] for name in _trace_outputs(wanted)))

        fn = _COMPILED[key] = mx.compile(run)
    return fn


_DTYPE_NAMES = {mx.float32: "float32", mx.bfloat16: "bfloat16", mx.float16: "float16"}


def _chunkwise(q, k, v, i, f, state: MLSTMState, eps: float, chunk_size: int, wanted: tuple[str, ...],
               kernel_mode: str | None = None):
    """The chunkwise form (traced by `_compiled_chunkwise`): h, the final state and the wanted norms by name."""
    from xlstm_viz.model import mlstm_kernels  # imports this module

    B, NH, S, DQK = q.shape
    DV = v.shape[-1]
    L = chunk_size
    pad = (-S) % L
    if pad:
        q = mx.pad(q, [(0, 0), (0, 0), (0, pad), (0, 0)])
        k = mx.pad(k, [(0, 0), (0, 0), (0, pad), (0, 0)])
        v = mx.pad(v, [(0, 0), (0, 0), (0, pad), (0, 0)])
        i = mx.pad(i, [(0, 0), (0, 0), (0, pad)], constant_values=PAD_IGATE)
        f = mx.pad(f, [(0, 0), (0, 0), (0, pad)], constant_values=PAD_FGATE)
    nc = (S + pad) // L
    k_in, v_in = k.reshape(B, NH, nc, L, DQK), v.reshape(B, NH, nc, L, DV)  # the kernel reads bf16 as it is
    # The products run in the activations' dtype: under compute_dtype="bfloat16" bf16 operands, accumulated in
    # float32 and rounded to bf16 once (the official kernels' tl.dot takes bf16 operands too); the gates, decay
    # matrix, stabiliser, normaliser and states stay float32. (On an H200 at 7B sizes the float32 products were most
    # of the cell.)
    mm = q.dtype if q.dtype in (mx.bfloat16, mx.float16) else mx.float32
    q, k, v = (x.astype(mx.float32) for x in (q, k, v))  # bf16 activations (compute_dtype) widen here
    q = q.reshape(B, NH, nc, L, DQK) * (DQK**-0.5)
    k = k.reshape(B, NH, nc, L, DQK)
    v = v.reshape(B, NH, nc, L, DV)
    i = i.reshape(B, NH, nc, L)
    b = mx.cumsum(log_sigmoid(f.reshape(B, NH, nc, L)), axis=-1)  # b_t = sum_{s<=t in chunk} log sigma(f_s)
    b_last = b[..., -1:]
    a = b_last - b + i  # log weight of token s in the chunk-end state

    # Inter-chunk recurrence over chunk boundaries: the states entering each chunk (one kernel launch where
    # mlstm_kernels picks the chunk-state kernel, else the reference loop `chunk_states`; on the CPU device the
    # closed form `chunk_states_parallel`, whose ~20 ops replace the loop's ~8 per chunk).
    if kernel_mode != "kernel" and mx.default_device() == mx.cpu:
        C_in, n_in, m_in, final = chunk_states_parallel(k, v, a, b_last, state)
    else:
        # C_in in the products' dtype: q C_in reads it so, and so do a trace's memory norms (below)
        C_in, n_in, m_in, final = mlstm_kernels.chunk_states(k_in, v_in, a, b_last, state, mode=kernel_mode,
                                                             c_in_dtype=mm)

    # Intra-chunk, all chunks at once: log D_ts = b_t - b_s + i_s for s <= t.
    log_d = b[..., :, None] - b[..., None, :] + i[..., None, :]
    causal = mx.tril(mx.ones((L, L), dtype=mx.bool_))
    log_d = mx.where(causal, log_d, -mx.inf)
    m_inter = b + m_in  # carried-in memory, [B, NH, nc, L]
    m_t = mx.maximum(m_inter, mx.max(log_d, axis=-1))  # equals the recurrent m_t
    d = exp(log_d - m_t[..., None])
    alpha = exp(m_inter - m_t)
    q_mm = q.astype(mm)  # q scaled in float32, then rounded once
    product = lambda a, b: (a.astype(mm) @ b.astype(mm)).astype(mx.float32)
    scores = product(q_mm, k_in.swapaxes(-1, -2)) * d
    numerator = alpha[..., None] * product(q_mm, C_in) + product(scores, v_in)
    qn = alpha * (q @ n_in[..., None])[..., 0] + mx.sum(scores, axis=-1)
    denominator = mx.maximum(mx.abs(qn), exp(-m_t)) + eps
    h = (numerator / denominator[..., None]).reshape(B, NH, nc * L, DV)[:, :, :S]

    norms = {}
    if wanted:
        tokens = lambda x: x.reshape(B, NH, nc * L)[:, :, :S]
        norms["m"] = tokens(m_t)
        if "C_norm" in wanted:
            C_norm, n_norm = _chunk_memory_norms(alpha, d, k_in, v_in, C_in, n_in, _DTYPE_NAMES[mm])
            norms["C_norm"] = tokens(C_norm)
            if "n_norm" in wanted:
                norms["n_norm"] = tokens(n_norm)
        elif "n_norm" in wanted:
            norms["n_norm"] = tokens(_chunk_n_norms(alpha, d, k, n_in))
    return h, final, norms


def chunk_states(k, v, a, b_last, state: MLSTMState):
    """The inter-chunk recurrence of `chunkwise`, the reference: k [B, NH, nc, L, DQK], v [B, NH, nc, L, DV], a = the
    log weight of each token in its chunk-end state [B, NH, nc, L], b_last = the chunk's summed log forget gates
    [B, NH, nc, 1]. Returns the states entering each chunk, C_in [B, NH, nc, DQK, DV], n_in [B, NH, nc, DQK],
    m_in [B, NH, nc, 1], and the state after the last chunk. With M_c = max_s a_cs:
        m_c = max(b_last_c + m_{c-1}, M_c)                                   (stabiliser at chunk ends)
        C_c = exp(b_last_c + m_{c-1} - m_c) C_{c-1} + sum_s exp(a_cs - m_c) k_s v_s^T
        n_c = exp(b_last_c + m_{c-1} - m_c) n_{c-1} + sum_s exp(a_cs - m_c) k_s
    """
    k, v = k.astype(mx.float32), v.astype(mx.float32)
    C, n, m = state.arrays()
    C_in, n_in, m_in = [], [], []
    for c in range(k.shape[2]):
        C_in.append(C)
        n_in.append(n)
        m_in.append(m)
        m_new = mx.maximum(b_last[:, :, c] + m, mx.max(a[:, :, c], axis=-1, keepdims=True))
        decay = exp(b_last[:, :, c] + m - m_new)  # [B, NH, 1]
        w = exp(a[:, :, c] - m_new)  # [B, NH, L]
        kw = k[:, :, c] * w[..., None]
        C = decay[..., None] * C + kw.swapaxes(-1, -2) @ v[:, :, c]
        n = decay * n + mx.sum(kw, axis=-2)
        m = m_new
    return mx.stack(C_in, axis=2), mx.stack(n_in, axis=2), mx.stack(m_in, axis=2), MLSTMState(C, n, m)


def chunk_updates(k, v, a):
    """The parallel part of the inter-chunk recurrence, every chunk at once: with M_c = max_s a_cs,
        U_c = sum_s exp(a_cs - M_c) k_s v_s^T  [B, NH, nc, DQK, DV],   u_c = sum_s exp(a_cs - M_c) k_s  [B, NH, nc, DQK]
    (u_c and M_c float32; with bf16 k and v the product takes bf16 operands, as `chunkwise`'s others, and U_c comes
    back in bf16, the product's float32 accumulation rounded once: widening it here would write and read the
    largest array of the cell again in float32, which the scan kernel avoids by reading bf16 as it is). Each weight
    is at most 1, so nothing overflows whatever the gates; a carry across chunks then rescales U_c by
    exp(M_c - m_c) <= 1 (the GPU scan kernel, `chunk_states_parallel` on the CPU). One batched matmul instead of one
    per chunk: the products run in parallel over the chunks, the carry only rescales and adds."""
    M = mx.max(a, axis=-1, keepdims=True)
    kw = k.astype(mx.float32) * exp(a - M)[..., None]
    if v.dtype in (mx.bfloat16, mx.float16):  # bf16 activations: bf16 operands, as chunkwise's other products
        return kw.astype(v.dtype).swapaxes(-1, -2) @ v, mx.sum(kw, axis=-2), M
    return kw.swapaxes(-1, -2) @ v.astype(mx.float32), mx.sum(kw, axis=-2), M


def chunk_states_parallel(k, v, a, b_last, state: MLSTMState):
    """`chunk_states` in closed form, with no loop over chunks (the CPU path: on MLX's CPU device each op of the
    loop costs tens of microseconds whatever its size). Same arguments and results. Chunks are numbered 1..nc here,
    b_last_l being chunk l's summed log forget gates. Row r = 0..nc is the state after r chunks; column j = 0..nc is
    a source: j = 0 the incoming state (C_0, n_0, m_0), j >= 1 chunk j's own part
        U_j = sum_s exp(a_js - M_j) k_s v_s^T,   u_j = sum_s exp(a_js - M_j) k_s,   M_j = max_s a_js.
    Unrolling the recurrence of `chunk_states`, with S_rj = sum_{j < l <= r} b_last_l (the log forget weight from
    source j to row r, summed in chunk order, never as a difference of two cumulative sums, which would cancel) and
    A_rj = S_rj + M_j (M_0 = m_0) for j <= r:
        m_r = max_{j <= r} A_rj                                       (the stabiliser of the loop, unrolled)
        C_r = sum_{j <= r} exp(A_rj - m_r) U_j,   n_r = sum_{j <= r} exp(A_rj - m_r) u_j   (U_0 = C_0, u_0 = n_0)
    so all boundary states are one [nc+1, nc+1] weight matrix times the stacked U (exact up to rounding). Its cost
    grows as nc^2 DQK DV against the U products' nc L DQK DV: at 64-token chunks it stays below them up to ~4,000
    tokens."""
    k, v = k.astype(mx.float32), v.astype(mx.float32)
    C0, n0, m0 = state.arrays()
    B, NH, nc, L, DQK = k.shape
    DV = v.shape[-1]
    U, u, M = chunk_updates(k, v, a)  # every chunk in one batched product
    # S_rj as the running sum over chunks of b_last [chunk after source j]: row r of the exclusive cumulative
    # sum (index l here is 0-based: chunk l + 1).
    chunk = mx.arange(nc)
    src = mx.arange(nc + 1)
    terms = mx.where(chunk[None, :] >= src[:, None], b_last[..., 0][..., None, :], 0.0)  # [B, NH, j, l]
    terms = mx.pad(terms, [(0, 0), (0, 0), (0, 0), (0, 1)])
    S = mx.cumsum(terms, axis=-1, inclusive=False).swapaxes(-1, -2)  # [B, NH, r, j]
    M_src = mx.concatenate([m0, M[..., 0]], axis=-1)  # [B, NH, nc + 1]
    A = mx.where(src[None, :] <= src[:, None], S + M_src[..., None, :], -mx.inf)
    m = mx.max(A, axis=-1, keepdims=True)  # [B, NH, nc + 1, 1]
    W = exp(A - m)
    C = (W @ mx.concatenate([C0[:, :, None], U], axis=2).reshape(B, NH, nc + 1, DQK * DV)).reshape(
        B, NH, nc + 1, DQK, DV)
    n = W @ mx.concatenate([n0[:, :, None], u], axis=2)
    return C[:, :, :nc], n[:, :, :nc], m[:, :, :nc], MLSTMState(C[:, :, nc], n[:, :, nc], m[:, :, nc])


@mx.compile
def _chunk_memory_norms(alpha, d, k, v, C_in, n_in, mm: str = "float32"):
    """||C_t||_F and ||n_t|| for every token of every chunk, from the states entering the chunks, without forming C_t.

    n_t = alpha_t n_in + sum_s D_ts k_s, and by the Gram identity (exact, O(L^2) per chunk):
    ||alpha C_in + sum_s D_ts k_s v_s^T||^2 = alpha^2 ||C_in||^2 + 2 alpha sum_s D_ts k_s^T C_in v_s
                                             + sum_{s,s'} D_ts D_ts' (k_s . k_s') (v_s . v_s')
    The products take `mm` operands (a dtype name: mx.compile takes no Dtype arguments), as the cell's own do (compute_dtype="bfloat16": bf16 operands, float32
    accumulation, one rounding of each product; the float32 path is exact float32); the sums are float32. In bf16
    these products were most of a 7B stats trace's memory norms (+24-27 ms of a ~70 ms forward on an H200 in
    float32, issue 16).
    Compiled: the trace's ~20 small ops per block cost more in dispatch than in arithmetic (one graph per shape).
    """
    mm = getattr(mx, mm)
    product = lambda a, b: (a.astype(mm) @ b.astype(mm)).astype(mx.float32)
    v32 = v.astype(mx.float32)
    n_t = alpha[..., None] * n_in[:, :, :, None, :] + product(d, k)
    gram = product(k, k.swapaxes(-1, -2)) * product(v, v.swapaxes(-1, -2))
    C_in = C_in.astype(mm)  # as the chunk-state kernel stores it: the same norms whoever computed C_in
    cross = mx.sum(product(k, C_in) * v32, axis=-1)  # k_s^T C_in v_s, [B, NH, nc, L]
    C32 = C_in.astype(mx.float32)
    c_sq = (
        alpha**2 * mx.sum(C32 * C32, axis=(-2, -1))[..., None]
        + 2 * alpha * (d @ cross[..., None])[..., 0]
        + mx.sum(product(d, gram) * d, axis=-1)
    )
    return mx.sqrt(mx.maximum(c_sq, 0.0)), mx.sqrt(mx.sum(n_t * n_t, axis=-1))



@mx.compile
def _chunk_n_norms(alpha, d, k, n_in):
    """||n_t|| alone (n_t = alpha_t n_in + sum_s D_ts k_s), for a trace that does not ask for ||C_t||."""
    n_t = alpha[..., None] * n_in[:, :, :, None, :] + d @ k
    return mx.sqrt(mx.sum(n_t * n_t, axis=-1))
