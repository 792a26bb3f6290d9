"""Several matrix-vector products sharing one input in one CUDA launch (kernels/gemv.cu), for decode steps.

A compiled 7B decode step is ~25 small launches a block besides its matmuls, and MLX's bf16 gemv reads weights at
about two thirds of the copy rate (README, Benchmarks). `multi_linear(x, weights, biases)` returns
[cells.linear(x, W, b) for each W, b] (y = x W^T + b in x's dtype, float32 accumulation) from one launch: the q, k,
v, output-gate, input-gate and forget-gate projections of an mLSTM block read one normed vector, the FFN's two up
projections another. The weights are passed as they are (the wiring's masked weights where a wiring masks them), so
nothing is concatenated and an in-place weight edit is seen by the next step.

Off by default: on the H200 (7B shapes, bf16, `python benchmarks/decode_speed.py --rounds 2`) the kernel read the
32 blocks' projection weights at 1,561 GB/s against MLX's matmuls' 2,442 GB/s, and the whole decode step was 0.81x
the MLX path (10.26 against 8.29 ms a token), so the default mode is "mlx" until the kernel is faster. With x's
shared-memory layout free of bank conflicts (gemv.cu, gv_xpos) it read 1,743 GB/s against MLX's 2,858 in the next
run, decode 0.79x (9.68 against 7.68 ms): still slower. Both paths' logits are as far from a float32 run of the same
bf16 weights (0.68 and 0.66 of the logits' range over 8 steps of 32 random blocks), so their difference is bf16
rounding grown over depth, not a kernel error.
Dispatch as in `mlstm_kernels` otherwise: "auto" uses the kernel only on MLX's CUDA backend and only after it matched
`cells.linear` once in this process on small random inputs (float32 and bf16; a mismatch or a compile error warns
and falls back); "kernel" forces it (an error without CUDA); "mlx" forces the reference. The mode comes from the
argument, else XLSTM_VIZ_GEMV_KERNEL, else "mlx". CUDA only: Metal runs `cells.linear` (no Metal twin was written,
since none could be tested here). `multi_linear` returns None where the kernel does not apply (no CUDA, x not
[B, K], K over the shared-memory limit, weights of different dtypes or widths): callers then run `cells.linear`.
"""

from __future__ import annotations

import hashlib

import mlx.core as mx

from xlstm_viz.model import kernel_dispatch, mlstm_kernels
from xlstm_viz.model.cells import linear

ENV = "XLSTM_VIZ_GEMV_KERNEL"
MODES = kernel_dispatch.MODES
# Geometry. `python benchmarks/decode_speed.py --sweep` on the H200 (7B projections alone, THREADS x UNROLL x
# MAX_BLOCKS over 128-512 x 2-8 x 132-1056) read 2,218-2,372 GB/s at 256 x 2 x 132 against 1,743-1,884 here, but
# with it the whole decode step went from 9.68 to 14.28 ms a token (not explained), so this geometry stays.
# 512 x 8 does not launch (too many registers).
THREADS = 256
UNROLL = 4  # 16-byte loads in flight per lane: 4 x 256 threads x 16 B = 16 KB per block
MAX_MATRICES = 6
MAX_BLOCKS = 264  # two resident blocks on each of an H200's 132 SMs; rows beyond are strided over
SHARED_LIMIT = 48000  # bytes of dynamic shared memory without an opt-in attribute: x staged as float, K <= 11776
PASS = 256  # columns a warp covers per pass (32 lanes x 8); x's buffer is K rounded up to it (gemv.cu, gv_xpos)
CHECK_TOLERANCE = {mx.float32: 1e-4, mx.bfloat16: 2e-2}  # max |kernel - ref| / max |ref|; bf16: ~2 ulp of rounding
SOURCE = "gemv.cu"


def source() -> tuple[str, str]:
    """(header, body) of kernels/gemv.cu, from the installed package or a checkout."""
    text = _read(SOURCE)
    header, body = text.split("// --- body ---")
    return header.split("// --- header ---")[1], body


def _read(name: str) -> str:
    from pathlib import Path

    here = Path(__file__).resolve()
    for path in (here.parents[1] / "kernels" / name, here.parents[2] / "kernels" / name):
        if path.is_file():
            return path.read_text()
    raise FileNotFoundError(f"kernel source {name} not found next to the package or in the checkout")


def kernel_name(text: str) -> str:
    return f"xlstm_viz_gemv_{hashlib.sha1(text.encode()).hexdigest()[:12]}"


INPUT_NAMES = ["x", *(f"W{m}" for m in range(MAX_MATRICES)), *(f"b{m}" for m in range(MAX_MATRICES)), "dims"]
OUTPUT_NAMES = [f"y{m}" for m in range(MAX_MATRICES)]

_KERNELS: dict[int, object] = {}
_PLACEHOLDERS: dict = {}
_DIMS: dict = {}


def _kernel(shared: int):
    kernel = _KERNELS.get(shared)
    if kernel is None:
        header, body = source()
        # one kernel object per shared-memory size; they share the compiled module (MLX keys it by name + template)
        kernel = _KERNELS[shared] = mx.fast.cuda_kernel(
            name=kernel_name(header + body), input_names=INPUT_NAMES, output_names=OUTPUT_NAMES, source=body,
            header=header, shared_memory=shared)
    return kernel


def _placeholder(dtype):
    value = _PLACEHOLDERS.get(dtype)
    if value is None:
        value = _PLACEHOLDERS[dtype] = mx.zeros((1,), dtype)
    return value


def shared_bytes(K: int) -> int:
    """x staged as float, K rounded up to whole passes (gemv.cu, gv_xpos)."""
    return 4 * (-(-K // PASS) * PASS)


def launch_geometry(batch: int, rows: int) -> dict:
    """Grid and threadgroup: a warp per output row, at most MAX_BLOCKS blocks (they stride over the rest)."""
    if batch < 1 or rows < 1:
        raise ValueError(f"gemv kernel: batch and rows must be >= 1, got {batch}, {rows}")
    if batch > 65535:
        raise ValueError(f"gemv kernel: batch {batch} exceeds the grid's y limit 65535")
    warps = THREADS // 32
    blocks = min(-(-rows // warps), MAX_BLOCKS)
    return {"grid": (blocks * THREADS, batch, 1), "threadgroup": (THREADS, 1, 1),
            "template": [("THREADS", THREADS), ("UNROLL", UNROLL)]}


def applies(x, weights, biases) -> str | None:
    """Why the kernel cannot compute these products (None: it can)."""
    if x.ndim != 2:
        return f"x has shape {tuple(x.shape)}, not [B, K]"
    if not 1 <= len(weights) <= MAX_MATRICES:
        return f"{len(weights)} matrices (1 to {MAX_MATRICES} per launch)"
    K = x.shape[1]
    if shared_bytes(K) > SHARED_LIMIT:
        return f"K = {K} needs {shared_bytes(K)} bytes of shared memory, over the {SHARED_LIMIT} allowed"
    wdt = weights[0].dtype
    if x.dtype not in (mx.float32, mx.bfloat16, mx.float16) or wdt not in (mx.float32, mx.bfloat16, mx.float16):
        return f"dtypes x {x.dtype}, weights {wdt}"
    for w, b in zip(weights, biases):
        if w.ndim != 2 or w.shape[1] != K or w.dtype != wdt:
            return f"a weight of shape {tuple(w.shape)} / {w.dtype} does not match x [., {K}] / {wdt}"
        if b is not None and (tuple(b.shape) != (w.shape[0],) or b.dtype != wdt):
            return f"a bias of shape {tuple(b.shape)} / {b.dtype} does not match its weight"
    return None


def fused_multi_linear(x, weights, biases=None, out_shapes=None):
    """The products through the kernel (no dispatch, no fallback): [x W_m^T + b_m], each [B, N_m] in x's dtype
    (or out_shapes[m], the same elements)."""
    biases = list(biases) if biases is not None else [None] * len(weights)
    why = applies(x, weights, biases)
    if why is not None:
        raise ValueError(f"gemv kernel: {why}")
    B, K = x.shape
    wdt = weights[0].dtype
    rows = [int(w.shape[0]) for w in weights]
    n = len(weights)
    key = (K, n, *rows, *[int(b is not None) for b in biases])
    dims = _DIMS.get(key)
    if dims is None:  # one device array per layout: a new one per call would be a host copy per launch
        dims = _DIMS[key] = mx.array([K, n, *rows, *[0] * (MAX_MATRICES - n), *[int(b is not None) for b in biases],
                                      *[0] * (MAX_MATRICES - n)], mx.int32)
    ws = list(weights) + [_placeholder(wdt)] * (MAX_MATRICES - n)
    bs = [b if b is not None else _placeholder(wdt) for b in biases] + [_placeholder(wdt)] * (MAX_MATRICES - n)
    shapes = [tuple(out_shapes[m]) if out_shapes else (B, rows[m]) for m in range(n)] + [(1,)] * (MAX_MATRICES - n)
    geometry = launch_geometry(B, sum(rows))
    # MLX's CUDA backend keys a compiled kernel by name and template only, while the signature's pointer types
    # follow the inputs' dtypes: the dtypes go into the template so that each dtype pattern gets its own module.
    template = geometry["template"] + [("TX", x.dtype), ("TW", wdt), ("TY", x.dtype)]
    outs = _kernel(shared_bytes(K))(inputs=[x, *ws, *bs, dims], template=template, grid=geometry["grid"],
                          threadgroup=geometry["threadgroup"], output_shapes=shapes,
                          output_dtypes=[x.dtype] * MAX_MATRICES)
    return list(outs[:n])


def reference(x, weights, biases=None, out_shapes=None):
    biases = list(biases) if biases is not None else [None] * len(weights)
    outs = [linear(x, w, b) for w, b in zip(weights, biases)]
    return [o.reshape(s) for o, s in zip(outs, out_shapes)] if out_shapes else outs


def check_inputs(batch=2, K=200, rows=(37, 5, 64), dtype=mx.float32, seed=0, bias=(False, True, False)):
    """Random x, weights and biases; K = 200 is a multiple of 8 but not of 256 (partial load rounds)."""
    ks = mx.random.split(mx.random.key(seed), 2 * len(rows) + 1)
    x = mx.random.normal((batch, K), key=ks[0]).astype(dtype)
    ws = [(mx.random.normal((n, K), key=ks[1 + m]) / K ** 0.5).astype(dtype) for m, n in enumerate(rows)]
    bs = [mx.random.normal((n,), key=ks[1 + len(rows) + m]).astype(dtype) if has else None
          for m, (n, has) in enumerate(zip(rows, bias))]
    return x, ws, bs


def mismatch(kernel=fused_multi_linear, **shape) -> float:
    """Max over outputs of max |kernel - cells.linear| / max |cells.linear|."""
    x, ws, bs = check_inputs(**shape)
    got, ref = kernel(x, ws, bs), reference(x, ws, bs)
    err = 0.0
    for a, b in zip(got, ref):
        if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
            raise ValueError(f"gemv kernel: output {tuple(a.shape)} {a.dtype}, reference {tuple(b.shape)} {b.dtype}")
        a32, b32 = a.astype(mx.float32), b.astype(mx.float32)
        err = max(err, float(mx.max(mx.abs(a32 - b32))) / max(float(mx.max(mx.abs(b32))), 1e-30))
    return err


_CHECKED: dict[str, bool] = {}


def backend() -> str | None:
    return "cuda" if mlstm_kernels.backend() == "cuda" else None


def self_check() -> bool:
    """Once per process: the kernel against cells.linear in float32 and bf16; warns and returns False on a mismatch
    or a failure."""
    return kernel_dispatch.checked_once(
        _CHECKED, "cuda", lambda: {str(dt): mismatch(dtype=dt) for dt in CHECK_TOLERANCE},
        {str(dt): tol for dt, tol in CHECK_TOLERANCE.items()}, "the gemv kernel (cuda)", "cells.linear",
        "MLX's matmuls")


def resolve_mode(mode: str | None = None) -> str:
    """The argument, else $XLSTM_VIZ_GEMV_KERNEL, else 'mlx' (the kernel is slower than MLX's matmuls, above)."""
    return kernel_dispatch.resolve_mode(ENV, "mlx", mode)


def use_kernel(mode: str | None = None) -> bool:
    chosen = resolve_mode(mode)
    if chosen == "mlx":
        return False
    if chosen == "kernel":
        if backend() is None:
            raise RuntimeError(f"{ENV}/mode 'kernel' forces the gemv kernel, but MLX runs no CUDA backend here "
                               f"(default device {mx.default_device()})")
        return True
    return backend() is not None and self_check()


def warm_up(mode: str | None = None) -> bool:
    """Run the self-check now (it reads values, which mx.compile does not allow while tracing)."""
    return use_kernel(mode)


def multi_linear(x, weights, biases=None, mode: str | None = None, out_shapes=None):
    """[cells.linear(x, W_m, b_m)] through one launch where `use_kernel` picks the kernel and it applies; None
    otherwise (the caller runs cells.linear)."""
    biases = list(biases) if biases is not None else [None] * len(weights)
    if not use_kernel(mode) or applies(x, weights, biases) is not None:
        return None
    return fused_multi_linear(x, weights, biases, out_shapes)
