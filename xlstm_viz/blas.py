"""Give MLX's Linux CPU wheel a fast BLAS.

The `mlx[cpu]` wheel links a reference BLAS; a 1024x1024 float32 matmul takes ~0.37 s on this project's 2-core CI
machine and ~0.011 s once OpenBLAS provides `cblas_sgemm` (measured with `python benchmarks/blas_speed.py`).
Loading OpenBLAS with RTLD_GLOBAL *before* `mlx.core` is imported makes the dynamic linker bind MLX's BLAS calls to
it, so no `LD_PRELOAD` or re-exec is needed. `import xlstm_viz` imports this module (before MLX, if the user has not
imported MLX already: then it warns).

Set `XLSTM_VIZ_BLAS=/path/to/libopenblas.so` to choose a library, or `XLSTM_VIZ_BLAS=off` to keep MLX's own.
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings

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
    for path in candidates:
        if os.path.exists(path):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError as err:
                if choice:
                    raise OSError(f"XLSTM_VIZ_BLAS={choice!r} could not be loaded: {err}") from err
                continue
            return path
    if choice:
        raise FileNotFoundError(f"XLSTM_VIZ_BLAS={choice!r} does not exist")
    return None


loaded = _load()


def describe() -> str:
    """One line for `xlstm-viz info` and benchmark headers."""
    if loaded:
        return f"BLAS: {loaded}"
    if sys.platform.startswith("linux"):
        return "BLAS: MLX's bundled reference BLAS (slow; `apt-get install libopenblas0-pthread` gives ~30x faster matmuls)"
    return "BLAS: platform default"
