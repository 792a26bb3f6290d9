"""Fused mLSTM kernels and the dispatch between them and the pure-MLX reference: the recurrent step
(kernels/mlstm_step.cu for MLX's CUDA backend, kernels/mlstm_step.metal for Metal; reference
`mlstm_cell.recurrent_step`) and the inter-chunk state recurrence of the chunkwise form (kernels/mlstm_chunk.cu,
.metal; reference `mlstm_cell.chunk_states`, used by `mlstm_cell.chunkwise`). The reference loop runs ~8 launches
per chunk; here each chunk's update is one batched product over all chunks (`mlstm_cell.chunk_updates`) and the
carry across chunk boundaries one scan launch. The intra-chunk part stays MLX matmuls.

One decode step of the pure-MLX path is about ten launches per block, each reading or writing the state C; the kernel
reads C once and writes it once, so a step is bound by the bandwidth of that one pass (benchmarks/kernel_speed.py).

Dispatch (`recurrent_step`, the signature of `mlstm_cell.recurrent_step` plus `mode`): "auto" uses a kernel only where
its backend runs and only after the kernel matched the pure-MLX path once in this process on a small random input (a
mismatch warns and falls back for the rest of the process); "kernel" forces it (an error where no backend runs);
"mlx" forces the reference. The mode comes from the argument, else from the environment variable
XLSTM_VIZ_MLSTM_KERNEL, else "auto". The kernel widens bf16 inputs to float32 before any product (the reference
multiplies k v^T in the input dtype), so it is compared with the reference on float32-widened inputs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import mlx.core as mx

from xlstm_viz.model import kernel_dispatch, mlstm_cell
from xlstm_viz.model.mlstm_cell import MLSTMState

ENV = "XLSTM_VIZ_MLSTM_KERNEL"
MODES = kernel_dispatch.MODES
THREADS = 256  # threads per threadgroup
COLS = 32  # columns of C per threadgroup: one warp's coalesced 128-byte row segment
SOURCES = {"cuda": "mlstm_step.cu", "metal": "mlstm_step.metal"}
CHUNK_SOURCES = {"cuda": "mlstm_chunk.cu", "metal": "mlstm_chunk.metal"}
CHECK_TOLERANCE = 1e-4  # max |kernel - reference| / max |reference|, per output, on the float32 self-check


def backend() -> str | None:
    """'cuda' or 'metal' where MLX runs that GPU backend as the default device and exposes its custom kernels."""
    if mx.default_device() == mx.cpu:
        return None
    cuda = getattr(mx, "cuda", None)
    if cuda is not None and cuda.is_available() and hasattr(mx.fast, "cuda_kernel"):
        return "cuda"
    if mx.metal.is_available() and hasattr(mx.fast, "metal_kernel"):
        return "metal"
    return None


def kernel_source(which: str, kernel: str = "step") -> str:
    """The body of the 'step' or 'chunk' kernel for 'cuda' or 'metal', from the installed package (xlstm_viz/kernels)
    or a checkout."""
    sources = {"step": SOURCES, "chunk": CHUNK_SOURCES}.get(kernel)
    if sources is None:
        raise ValueError(f"no mLSTM kernel {kernel!r}; there are 'step' and 'chunk'")
    if which not in sources:
        raise ValueError(f"no mLSTM {kernel} kernel for backend {which!r}; there are {sorted(sources)}")
    candidates = [Path(__file__).resolve().parents[1] / "kernels" / sources[which],
                  Path(__file__).resolve().parents[2] / "kernels" / sources[which]]
    for path in candidates:
        if path.is_file():
            return path.read_text()
    raise FileNotFoundError(f"kernel source {sources[which]} not found in {[str(c) for c in candidates]}")


def kernel_name(which: str, source: str, kernel: str = "step") -> str:
    """A name with a digest of the source: MLX caches compiled kernels by name (and the CUDA JIT on disk)."""
    return f"xlstm_viz_mlstm_{kernel}_{which}_{hashlib.sha1(source.encode()).hexdigest()[:12]}"


def launch_geometry(batch: int, num_heads: int, dqk: int, dv: int) -> dict:
    """Grid and threadgroup of one step: a threadgroup per COLS columns of one (batch, head)'s C, its THREADS threads
    split into SPLIT row groups. At 7B sizes (B=1, NH=8, DV=512) that is 128 threadgroups, about one per H200 SM."""
    for name, value in (("batch", batch), ("num_heads", num_heads), ("dqk", dqk), ("dv", dv)):
        if value < 1:
            raise ValueError(f"mLSTM step kernel: {name} must be >= 1, got {value}")
    if batch * num_heads > 65535:
        raise ValueError(f"mLSTM step kernel: batch * num_heads = {batch * num_heads} exceeds the grid's y limit 65535")
    blocks = -(-dv // COLS)
    return {"grid": (blocks * THREADS, batch * num_heads, 1), "threadgroup": (THREADS, 1, 1),
            "template": [("DQK", dqk), ("DV", dv), ("THREADS", THREADS), ("COLS", COLS), ("SPLIT", THREADS // COLS)]}


def chunk_launch_geometry(batch: int, num_heads: int, dqk: int, dv: int, chunk: int) -> dict:
    """Grid and threadgroup of the chunk-state scan: a thread per entry of one (batch, head)'s C and n (DQK * DV + DQK
    of them), THREADS to a threadgroup. At 7B sizes (B=1, NH=8, DQK=256, DV=512) that is 8 x 513 threadgroups, about
    four waves on an H200; each thread walks every chunk, reading U_c and writing C_in[c] once (coalesced). The chunk
    length does not enter the scan (the parallel part has summed each chunk's tokens), so any length runs."""
    for name, value in (("batch", batch), ("num_heads", num_heads), ("dqk", dqk), ("dv", dv), ("chunk", chunk)):
        if value < 1:
            raise ValueError(f"mLSTM chunk kernel: {name} must be >= 1, got {value}")
    if batch * num_heads > 65535:
        raise ValueError(f"mLSTM chunk kernel: batch * num_heads = {batch * num_heads} exceeds the grid's y limit 65535")
    entries = dqk * dv + dqk
    if entries >= 2**31:
        raise ValueError(f"mLSTM chunk kernel: DQK * DV + DQK = {entries} entries per head exceed the kernel's int index")
    return {"grid": (-(-entries // THREADS) * THREADS, batch * num_heads, 1), "threadgroup": (THREADS, 1, 1),
            "template": [("DQK", dqk), ("DV", dv), ("THREADS", THREADS)]}


_KERNELS: dict[str, object] = {}
_EPS: dict[float, mx.array] = {}  # one device scalar per eps: a new array per step would be a host copy per launch


def _kernel(which: str):
    kernel = _KERNELS.get(which)
    if kernel is None:
        source = kernel_source(which)
        make = mx.fast.cuda_kernel if which == "cuda" else mx.fast.metal_kernel
        kernel = make(name=kernel_name(which, source), input_names=["q", "k", "v", "i", "f", "C", "n", "m", "eps"],
                      output_names=["h", "C_out", "n_out", "m_out"], source=source)
        _KERNELS[which] = kernel
    return kernel


def _chunk_kernel(which: str):
    key = f"chunk-{which}"
    kernel = _KERNELS.get(key)
    if kernel is None:
        source = kernel_source(which, "chunk")
        make = mx.fast.cuda_kernel if which == "cuda" else mx.fast.metal_kernel
        kernel = make(name=kernel_name(which, source, "chunk"),
                      input_names=["U", "Un", "M", "b_last", "C0", "n0", "m0", "dims"],
                      output_names=["C_in", "n_in", "m_in", "C_out", "n_out", "m_out"], source=source)
        _KERNELS[key] = kernel
    return kernel


def _eps(eps: float) -> mx.array:
    value = _EPS.get(eps)
    if value is None:
        value = _EPS[eps] = mx.array([eps], mx.float32)
    return value


def _dtype_keys(*arrays) -> list:
    """Template entries naming the inputs' dtypes. MLX's CUDA backend keys a compiled custom kernel by name and
    template alone while the signature's pointer types follow the inputs' dtypes, so without these a float32 call
    (the self-check) and a later bf16 call at the same sizes would share one module, which reads bf16 data through
    float pointers. (Metal folds the dtypes into its key; the entries are unused names in the body.)"""
    return [(f"T_IN{j}", a.dtype) for j, a in enumerate(arrays)]


def fused_step(q, k, v, i, f, state: MLSTMState, eps: float, which: str | None = None):
    """One token through the kernel. Shapes as in `mlstm_cell.recurrent_step`; h and the state are float32."""
    which = which or backend()
    if which is None:
        raise RuntimeError("the fused mLSTM step needs MLX's CUDA or Metal backend as the default device; "
                           f"set {ENV}=mlx (or mode='mlx') for the pure-MLX step")
    B, NH, DQK = q.shape
    DV = v.shape[-1]
    C, n, m = state.arrays()
    expect = {"k": (k, (B, NH, DQK)), "v": (v, (B, NH, DV)), "i": (i, (B, NH, 1)), "f": (f, (B, NH, 1)),
              "C": (C, (B, NH, DQK, DV)), "n": (n, (B, NH, DQK)), "m": (m, (B, NH, 1))}
    for name, (a, shape) in expect.items():
        if tuple(a.shape) != shape:
            raise ValueError(f"mLSTM step: {name} has shape {tuple(a.shape)}, expected {shape} from q {tuple(q.shape)}")
    geometry = launch_geometry(B, NH, DQK, DV)
    f32 = [x if x.dtype == mx.float32 else x.astype(mx.float32) for x in (C, n, m)]
    h, C2, n2, m2 = _kernel(which)(
        inputs=[q, k, v, i, f, *f32, _eps(eps)], template=geometry["template"] + _dtype_keys(q, k, v, i, f),
        grid=geometry["grid"], threadgroup=geometry["threadgroup"],
        output_shapes=[(B, NH, DV), (B, NH, DQK, DV), (B, NH, DQK), (B, NH, 1)], output_dtypes=[mx.float32] * 4)
    return h, MLSTMState(C2, n2, m2)


def fused_chunk_states(k, v, a, b_last, state: MLSTMState, which: str | None = None, c_in_dtype=mx.float32):
    """`mlstm_cell.chunk_states` as `mlstm_cell.chunk_updates` (MLX) and one scan launch: the states entering each
    chunk and the final state (float32). c_in_dtype: the dtype the scan writes C_in in (the final state is float32
    always). bf16, when the intra-chunk product q C_in takes bf16 operands anyway: the scan rounds each entry once as
    it stores it (round to nearest even, as astype), which saves a float32 C_in written and read again by a cast
    pass, at 7B sizes 134 MB and 201 MB a block at 2,048 tokens."""
    which = which or backend()
    if which is None:
        raise RuntimeError("the mLSTM chunk-state kernel needs MLX's CUDA or Metal backend as the default device; "
                           f"set {ENV}=mlx (or mode='mlx') for the pure-MLX chunkwise form")
    B, NH, nc, L, DQK = k.shape
    DV = v.shape[-1]
    C, n, m = state.arrays()
    expect = {"v": (v, (B, NH, nc, L, DV)), "a": (a, (B, NH, nc, L)), "b_last": (b_last, (B, NH, nc, 1)),
              "C": (C, (B, NH, DQK, DV)), "n": (n, (B, NH, DQK)), "m": (m, (B, NH, 1))}
    for name, (x, shape) in expect.items():
        if tuple(x.shape) != shape:
            raise ValueError(f"mLSTM chunk states: {name} has shape {tuple(x.shape)}, expected {shape} from k "
                             f"{tuple(k.shape)}")
    if c_in_dtype not in (mx.float32, mx.bfloat16, mx.float16):
        raise ValueError(f"mLSTM chunk states: c_in_dtype must be float32, bfloat16 or float16, got {c_in_dtype}")
    geometry = chunk_launch_geometry(B, NH, DQK, DV, L)
    U, Un, M = mlstm_cell.chunk_updates(k, v, a.astype(mx.float32))  # U in bf16 for bf16 k, v: read as it is
    if which == "metal" and U.dtype != mx.float32:  # the bf16 read has not run on a Mac (no Metal here)
        U = U.astype(mx.float32)
    f32 = [x if x.dtype == mx.float32 else x.astype(mx.float32) for x in (b_last, C, n, m)]
    C_in, n_in, m_in, C2, n2, m2 = _chunk_kernel(which)(
        # U's and C_in's pointer types follow their dtypes, but MLX keys the compiled module by name and template
        # alone: the dtype entries keep float32 and bf16 variants apart (as _dtype_keys does for the step's inputs).
        inputs=[U, Un, M, *f32, mx.array([nc], mx.int32)],
        template=geometry["template"] + [("T_U", U.dtype), ("T_CIN", c_in_dtype)],
        grid=geometry["grid"], threadgroup=geometry["threadgroup"],
        output_shapes=[(B, NH, nc, DQK, DV), (B, NH, nc, DQK), (B, NH, nc, 1), (B, NH, DQK, DV), (B, NH, DQK),
                       (B, NH, 1)],
        output_dtypes=[c_in_dtype] + [mx.float32] * 5)
    return C_in, n_in, m_in, MLSTMState(C2, n2, m2)


def chunk_inputs(batch=2, num_heads=3, chunks=3, chunk=16, dqk=40, dv=72, seed=0, dtype=mx.float32):
    """Random inputs of `chunk_states` as `chunkwise` makes them (a and b_last from random gates), and a non-zero
    starting state. DQK = 40 and DV = 72 leave partial row and column tiles."""
    ks = mx.random.split(mx.random.key(seed), 8)
    k = mx.random.normal((batch, num_heads, chunks, chunk, dqk), key=ks[0]).astype(dtype)
    v = mx.random.normal((batch, num_heads, chunks, chunk, dv), key=ks[1]).astype(dtype)
    i = 3 * mx.random.normal((batch, num_heads, chunks, chunk), key=ks[2])
    f = 3 * mx.random.normal((batch, num_heads, chunks, chunk), key=ks[3])
    b = mx.cumsum(mlstm_cell.log_sigmoid(f), axis=-1)
    b_last = b[..., -1:]
    state = MLSTMState(mx.random.normal((batch, num_heads, dqk, dv), key=ks[4]),
                       mx.random.normal((batch, num_heads, dqk), key=ks[5]),
                       mx.random.normal((batch, num_heads, 1), key=ks[6]))
    return k, v, b_last - b + i, b_last, state


def chunk_mismatch(kernel: Callable, **shape) -> dict[str, float]:
    """Relative max errors of a chunk-state `kernel` against `mlstm_cell.chunk_states` on `chunk_inputs`."""
    args = chunk_inputs(**shape)
    got, ref = kernel(*args), mlstm_cell.chunk_states(*args)
    errors = {}
    for name, x, y in (("C_in", got[0], ref[0]), ("n_in", got[1], ref[1]), ("m_in", got[2], ref[2]),
                       ("C", got[3].C, ref[3].C), ("n", got[3].n, ref[3].n), ("m", got[3].m, ref[3].m)):
        if tuple(x.shape) != tuple(y.shape):
            raise ValueError(f"chunk states: {name} has shape {tuple(x.shape)}, the reference {tuple(y.shape)}")
        scale = max(float(mx.max(mx.abs(y))), 1e-30)
        errors[name] = float(mx.max(mx.abs(x - y))) / scale
    return errors


def _widened(*arrays):
    return [a.astype(mx.float32) for a in arrays]


def mismatch(kernel: Callable, batch=2, num_heads=3, dqk=40, dv=72, steps=3, seed=0) -> dict[str, float]:
    """Relative max errors (per output, over `steps` carried steps) of `kernel` against the pure-MLX step on random
    float32 input with a non-zero starting state. DV = 72 leaves a partial column block."""
    key = mx.random.key(seed)
    ks = mx.random.split(key, 8)
    state = MLSTMState(mx.random.normal((batch, num_heads, dqk, dv), key=ks[0]),
                       mx.random.normal((batch, num_heads, dqk), key=ks[1]),
                       mx.random.normal((batch, num_heads, 1), key=ks[2]))
    ref_state, errors = state, {"h": 0.0, "C": 0.0, "n": 0.0, "m": 0.0}
    for t in range(steps):
        kt = mx.random.split(ks[3 + t % 5], 5)
        q = mx.random.normal((batch, num_heads, dqk), key=kt[0])
        k = mx.random.normal((batch, num_heads, dqk), key=kt[1])
        v = mx.random.normal((batch, num_heads, dv), key=kt[2])
        i = 3 * mx.random.normal((batch, num_heads, 1), key=kt[3])
        f = 3 * mx.random.normal((batch, num_heads, 1), key=kt[4])
        h, state = kernel(q, k, v, i, f, state, 1e-6)
        h_ref, ref_state = mlstm_cell.recurrent_step(q, k, v, i, f, ref_state, 1e-6)
        for name, a, b in (("h", h, h_ref), ("C", state.C, ref_state.C), ("n", state.n, ref_state.n),
                           ("m", state.m, ref_state.m)):
            scale = max(float(mx.max(mx.abs(b))), 1e-30)
            errors[name] = max(errors[name], float(mx.max(mx.abs(a - b))) / scale)
    return errors


_CHECKED: dict[str, bool] = {}


def self_check(which: str, kernel: Callable | None = None, kind: str = "step") -> bool:
    """Once per process, backend and kind ('step' or 'chunk'): whether the kernel matches the reference (`mismatch`,
    `chunk_mismatch`); warns when not. Key in _CHECKED: the backend for the step kernel, 'chunk-<backend>' else."""
    if kind == "step":
        kernel = kernel or (lambda *a: fused_step(*a, which=which))
        measure = mismatch
    else:
        kernel = kernel or (lambda *a: fused_chunk_states(*a, which=which))
        measure = chunk_mismatch
    return kernel_dispatch.checked_once(
        _CHECKED, which if kind == "step" else f"{kind}-{which}", lambda: measure(kernel), CHECK_TOLERANCE,
        f"the fused mLSTM {kind} kernel ({which})", f"the pure-MLX {kind}", f"the pure-MLX {kind}")


def resolve_mode(mode: str | None = None) -> str:
    """The argument, else $XLSTM_VIZ_MLSTM_KERNEL, else 'auto'."""
    return kernel_dispatch.resolve_mode(ENV, "auto", mode)


def use_kernel(mode: str | None = None, kind: str = "step") -> str | None:
    """The backend whose `kind` kernel ('step' or 'chunk') would run, or None for the pure-MLX path."""
    chosen = resolve_mode(mode)
    if chosen == "mlx":
        return None
    which = backend()
    if chosen == "kernel":
        if which is None:
            raise RuntimeError(f"{ENV}/mode 'kernel' forces the fused mLSTM {kind}, but MLX runs no CUDA or Metal "
                               f"backend here (default device {mx.default_device()})")
        return which
    return which if which is not None and self_check(which, kind=kind) else None


def warm_up(mode: str | None = None) -> dict[str, str | None]:
    """Run the self-checks now (they read values, which mx.compile does not allow while it traces): the backend each
    kernel will use, or None. XLSTM.compiled calls it before tracing."""
    return {kind: use_kernel(mode, kind) for kind in ("step", "chunk")}


def chunk_states(k, v, a, b_last, state: MLSTMState, mode: str | None = None, c_in_dtype=mx.float32):
    """`mlstm_cell.chunk_states` through the chunk-state kernel where `use_kernel(kind='chunk')` picks it, else the
    reference loop (whose float32 C_in is then rounded to c_in_dtype, what the kernel stores)."""
    which = use_kernel(mode, "chunk")
    if which is None or (which == "metal" and c_in_dtype != mx.float32):
        # Metal: the bf16 store has not run on a Mac (no Metal here), so its kernel writes float32 and MLX rounds.
        C_in, n_in, m_in, final = (mlstm_cell.chunk_states(k, v, a, b_last, state) if which is None
                                   else fused_chunk_states(k, v, a, b_last, state, which=which))
        return C_in.astype(c_in_dtype), n_in, m_in, final
    return fused_chunk_states(k, v, a, b_last, state, which=which, c_in_dtype=c_in_dtype)


def recurrent_step(q, k, v, i, f, state: MLSTMState, eps: float, mode: str | None = None):
    """`mlstm_cell.recurrent_step` through the fused kernel where `use_kernel` picks it, else the reference."""
    which = use_kernel(mode)
    if which is None:
        return mlstm_cell.recurrent_step(q, k, v, i, f, state, eps)
    return fused_step(q, k, v, i, f, state, eps, which=which)
