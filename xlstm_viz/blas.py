"""Give MLX's Linux CPU wheel a fast BLAS.

The `mlx[cpu]` wheel links a reference BLAS; a 1024x1024 float32 matmul takes ~0.37 s on this project's 2-core CI
machine and ~0.011 s once OpenBLAS provides `cblas_sgemm` (measured with `python benchmarks/blas_speed.py`).
Loading OpenBLAS with RTLD_GLOBAL *before* `mlx.core` is imported makes the dynamic linker bind MLX's BLAS calls to
it, so no `LD_PRELOAD` or re-exec is needed. `import xlstm_viz` imports this module (before MLX, if the user has not
imported MLX already: then it warns).

Set `XLSTM_VIZ_BLAS=/path/to/libopenblas.so` to choose a library, or `XLSTM_VIZ_BLAS=off` to keep MLX's own.

MLX sends every float32 product to `cblas_sgemm`, also the matrix-vector products of decoding (one token: M = 1).
OpenBLAS < 0.3.27 packs the whole weight matrix for those, so the 206 MB lm_head of the D=1024 benchmark took 36 ms
through sgemm against 7 ms through `cblas_sgemv` (measured on the 2-core CI machine). Where a C compiler exists, a
15-line shim (`_GEMV_SHIM`, compiled once into the user cache) is loaded ahead of OpenBLAS: it defines
`cblas_sgemm`, hands M = 1 and N = 1 products to OpenBLAS's sgemv and everything else to OpenBLAS's sgemm.
`XLSTM_VIZ_BLAS_GEMV=off` skips it.

MLX's CPU allocator takes every buffer from malloc and frees it when the array dies, and glibc serves blocks above its
mmap threshold (at most 32 MB, and always for a thread's arena, where MLX evaluates) with a fresh mmap each time: the
kernel then zeroes every page on first touch, ~25,000 page faults for a 100 MB result (the D=1024 logits), which
took an elementwise multiply over them from ~12 ms to ~70 ms (measured on the 2-core CI machine). `tune_malloc`
sets `M_MMAP_MAX=0`, so large blocks come from the main heap, and `M_TRIM_THRESHOLD` to 1 GiB, so a freed block
stays there for the next array of its size; the cost is that up to 1 GiB freed at the top of the heap stays
resident, like a GPU allocator's buffer cache. These are process-wide settings, so importing xlstm_viz leaves them
alone: the first `XLSTM` model built (or loaded) in a process applies them, once. `XLSTM_VIZ_MALLOC=off` keeps
glibc's defaults.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

# Debian/Ubuntu (libopenblas0-pthread), Fedora, Conda, Homebrew-on-Linux locations, in order of preference.
_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblasp.so.0",
    "/usr/lib64/libopenblas.so.0",
    os.path.join(sys.prefix, "lib", "libopenblas.so.0"),
)

loaded: str | None = None
"""Path of the BLAS library this module loaded, or None (macOS, disabled, or none found)."""

gemv_shim: ctypes.CDLL | None = None
"""The loaded M = 1 / N = 1 forwarding shim (its `xlstm_viz_gemv_calls()` counts forwarded products), or None."""

# CBLAS enums: CblasRowMajor 101, CblasColMajor 102, CblasNoTrans 111, CblasTrans 112 (ConjTrans 113 = Trans for real).
_GEMV_SHIM = r"""
#include <string.h>
typedef void (*sgemm_t)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
typedef void (*sgemv_t)(int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
static sgemm_t real_sgemm;
static sgemv_t real_sgemv;
static long calls;
void xlstm_viz_gemv_bind(void *gemm, void *gemv) { real_sgemm = (sgemm_t)gemm; real_sgemv = (sgemv_t)gemv; }
long xlstm_viz_gemv_calls(void) { return calls; }
static void gemv(int tr, int rows, int cols, float alpha, const float *a, int lda, const float *x, int incx,
                 float beta, float *y, int incy, int n) {
    if (beta == 0.0f) { for (int j = 0; j < n; j++) y[(long)j * incy] = 0.0f; }  /* y may hold NaN garbage */
    calls++;
    real_sgemv(101, tr, rows, cols, alpha, a, lda, x, incx, beta, y, incy);
}
void cblas_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
    if (order == 102) {  /* column-major C = op(A) op(B) is row-major C^T = op(B)^T op(A)^T */
        int t = ta; ta = tb; tb = t; t = M; M = N; N = t;
        const float *p = A; A = B; B = p; t = lda; lda = ldb; ldb = t;
    }
    int tra = ta != 111, trb = tb != 111;
    if (K > 0 && M == 1) {  /* y[N] = op(B)^T x, x = row 0 of op(A) */
        gemv(trb ? 111 : 112, trb ? N : K, trb ? K : N, alpha, B, ldb, A, tra ? lda : 1, beta, C, 1, N);
    } else if (K > 0 && N == 1) {  /* y[M] = op(A) x, x = column 0 of op(B), y = column 0 of C */
        gemv(tra ? 112 : 111, tra ? K : M, tra ? M : K, alpha, A, lda, B, trb ? 1 : ldb, beta, C, ldc, M);
    } else {
        real_sgemm(order == 102 ? 101 : order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
}
"""


_OFF = {"off", "0", "none", "false", "no"}
_ON = {"", "on", "1", "true", "yes"}


def env_switch(name: str) -> bool:
    """An on/off environment variable (unset: on). A value that is neither is refused by name: `=disable` once
    left the switch on without a word."""
    value = os.environ.get(name, "").strip().lower()
    if value in _OFF:
        return False
    if value in _ON:
        return True
    raise ValueError(f"{name}={os.environ[name]!r}: expected one of off/0/false/no/none (switch off) or "
                     f"on/1/true/yes (the default)")


def _load_gemv_shim(blas: ctypes.CDLL) -> ctypes.CDLL | None:
    """Compile (once, into the user cache) and load the shim with RTLD_GLOBAL; None without a C compiler."""
    if not env_switch("XLSTM_VIZ_BLAS_GEMV"):
        return None
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xlstm_viz"
    lib = cache / f"gemv_shim_{hashlib.sha256(_GEMV_SHIM.encode()).hexdigest()[:16]}.so"
    try:
        if not lib.exists():
            if cc is None:
                return None
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                src, out = Path(tmp) / "shim.c", Path(tmp) / "shim.so"
                src.write_text(_GEMV_SHIM)
                subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(src)], check=True,
                               capture_output=True, timeout=60)
                os.replace(out, lib)  # atomic: a concurrent import sees the old state or a complete library
        shim = ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    except (OSError, subprocess.SubprocessError):
        return None
    shim.xlstm_viz_gemv_bind(ctypes.cast(blas.cblas_sgemm, ctypes.c_void_p), ctypes.cast(blas.cblas_sgemv, ctypes.c_void_p))
    shim.xlstm_viz_gemv_calls.restype = ctypes.c_long
    return shim


core: str | None = None
"""OpenBLAS's kernel set (openblas_get_corename), e.g. 'SkylakeX', 'Haswell', 'Zen'; None without OpenBLAS."""

core_forced: str | None = None
"""The OPENBLAS_CORETYPE this module chose for the load (see `_coretype_hint`), or None."""

_AVX512_SKYLAKEX = {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"}


def _coretype_hint() -> str | None:
    """'SkylakeX' on an Intel CPU with AVX-512 when the user has not set OPENBLAS_CORETYPE, else None.

    OpenBLAS picks its kernels from the CPU model number, and 0.3.21 (Debian 12) does not know newer Intel models:
    on the 2-core CI machine's Xeon (family 6, model 207) it fell back to 'Prescott', SSE3 kernels, and a
    512x1024x4096 sgemm through MLX ran at 20 GFLOP/s on one thread against 145 with SkylakeX (97 with Haswell, 143
    with Cooperlake; 2 threads: 214 SkylakeX). SkylakeX's sgemm is the one OpenBLAS uses on every AVX-512 Intel core
    it knows (Cooperlake and Sapphire Rapids take their float32 kernels from it), so forcing it costs a known CPU
    nothing; AMD CPUs and CPUs without AVX-512 are left to OpenBLAS's detection."""
    if "OPENBLAS_CORETYPE" in os.environ:
        return None
    try:
        with open("/proc/cpuinfo") as f:
            head = f.read(16384).split("\n\n", 1)[0]  # the first processor's entry
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in head.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    if fields.get("vendor_id") != "GenuineIntel" or not _AVX512_SKYLAKEX <= set(fields.get("flags", "").split()):
        return None
    return "SkylakeX"


def _load() -> str | None:
    if not sys.platform.startswith("linux"):
        return None  # macOS MLX uses Accelerate/Metal already
    choice = os.environ.get("XLSTM_VIZ_BLAS", "").strip()
    if choice.lower() in {"off", "0", "none", "false"}:
        return None
    candidates = (choice,) if choice else _CANDIDATES
    if "mlx.core" in sys.modules:  # too late: MLX has already bound its BLAS symbols (measured: no effect)
        found = next((path for path in candidates if os.path.exists(path)), None)
        if found:
            warnings.warn(
                f"mlx.core was imported before xlstm_viz, so MLX keeps its reference BLAS (CPU matmuls ~30x slower) "
                f"although {found} is installed: import xlstm_viz first, or set LD_PRELOAD={found}",
                RuntimeWarning, stacklevel=3,
            )
        return None
    global gemv_shim, core, core_forced
    for path in candidates:
        if os.path.exists(path):
            try:
                # RTLD_LOCAL first, so that the shim (global, loaded next) precedes OpenBLAS's own cblas_sgemm.
                # OpenBLAS reads OPENBLAS_CORETYPE once, when it is loaded: set only for that, the user's environment
                # (and what subprocesses inherit) stays as it was.
                hint = _coretype_hint()
                if hint:
                    os.environ["OPENBLAS_CORETYPE"] = hint
                try:
                    blas = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
                finally:
                    if hint:
                        del os.environ["OPENBLAS_CORETYPE"]
                if hasattr(blas, "openblas_get_corename"):
                    blas.openblas_get_corename.restype = ctypes.c_char_p
                    core = blas.openblas_get_corename().decode()
                    core_forced = hint
                gemv_shim = _load_gemv_shim(blas)
                global _lib
                _lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError as err:
                if choice:
                    raise OSError(f"XLSTM_VIZ_BLAS={choice!r} could not be loaded: {err}") from err
                continue
            return path
    if choice:
        raise FileNotFoundError(f"XLSTM_VIZ_BLAS={choice!r} does not exist")
    return None


_lib: ctypes.CDLL | None = None

loaded = _load()


def set_threads(n: int) -> bool:
    """Set OpenBLAS's thread count for this process; False where this module loaded no OpenBLAS.

    The dashboard server calls it with 1: the demo model's products are tiny, and OpenBLAS's idle workers spin
    (sched_yield) after each one on the cores the browser needs. Process-wide, so the library's benchmarks,
    which run in their own processes, keep OpenBLAS's default."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"BLAS thread count must be a positive int, got {n!r}")
    if _lib is None or not hasattr(_lib, "openblas_set_num_threads"):
        return False
    _lib.openblas_set_num_threads(n)
    return True


def threads() -> int | None:
    """OpenBLAS's current thread count, or None without OpenBLAS."""
    if _lib is None or not hasattr(_lib, "openblas_get_num_threads"):
        return None
    return int(_lib.openblas_get_num_threads())

# glibc mallopt parameters (malloc.h); mallopt returns 1 on success.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
TRIM_THRESHOLD = 1 << 30

malloc_tuned = False
"""Whether `tune_malloc` changed glibc's malloc settings for this process."""

_malloc_tried = False


def tune_malloc() -> bool:
    """Large blocks from the heap and kept there (see the module docstring); False where not glibc or switched off.

    Called by `XLSTM.__init__`; only the first call of a process acts (a user who set mallopt after that keeps
    their settings), later ones return what it did."""
    global malloc_tuned, _malloc_tried
    if _malloc_tried:
        return malloc_tuned
    _malloc_tried = True
    if not sys.platform.startswith("linux"):
        return False
    if not env_switch("XLSTM_VIZ_MALLOC"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs: their malloc, their defaults
        return False
    malloc_tuned = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return malloc_tuned



def describe() -> str:
    """One line for `xlstm-viz info` and benchmark headers."""
    malloc = "; malloc keeps large blocks (M_MMAP_MAX=0)" if malloc_tuned else ""
    if loaded:
        kernels = f" ({core} kernels{', OPENBLAS_CORETYPE set by xlstm_viz' if core_forced else ''})" if core else ""
        return (f"BLAS: {loaded}{kernels}" + ("; M=1/N=1 products via sgemv" if gemv_shim is not None else "")
                + malloc)
    if sys.platform.startswith("linux"):
        return "BLAS: MLX's bundled reference BLAS (slow; `apt-get install libopenblas0-pthread` gives ~30x faster matmuls)" + malloc
    return "BLAS: platform default"
