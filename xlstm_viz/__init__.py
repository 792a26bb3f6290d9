"""xlstm-viz: visualize, probe and step through wired xLSTM models on MLX.

The heavy parts (MLX, Panel) load on first use so that `import xlstm_viz` stays cheap and the wiring
module works without MLX.
"""

from __future__ import annotations

import importlib
import os

__version__ = "0.1.0"

# Full float32 matmuls. MLX runs float32 matmuls at TF32 precision by default on CUDA (and on M5-class Metal). The
# parity tests then fail by 1e-2 on the logits (measured on an H100), and a debugger that compares numbers must not
# do that. It takes effect only if set before MLX's first operation; export MLX_ENABLE_TF32=1 to trade precision
# for speed.
os.environ.setdefault("MLX_ENABLE_TF32", "0")

# Notebook outputs embed BokehJS and Panel instead of linking their CDNs, so that they render offline (read by Panel's
# `pn.extension()`, which must therefore run after `import xlstm_viz`; see xlstm_viz/dashboard/offline.py).
# Export PANEL_INLINE=0 first for small CDN-linked outputs.
os.environ.setdefault("PANEL_INLINE", "1")

# Bind OpenBLAS before anything imports MLX (a dlopen, no MLX import): `import xlstm_viz; import mlx.core` then gets
# ~30x faster CPU matmuls on Linux. Without this line that common order silently kept MLX's reference BLAS.
from xlstm_viz import blas as _blas  # noqa: E402,F401

# public name -> module that defines it
_EXPORTS = {
    "load_model": "xlstm_viz.checkpoint",
    "XLSTMConfig": "xlstm_viz.config",
    "XLSTM": "xlstm_viz.model",
    "generate": "xlstm_viz.generation",
    "MLSTMState": "xlstm_viz.model",
    "Trace": "xlstm_viz.execution.trace",
    "Debugger": "xlstm_viz.execution.debugger",
    "CheckpointError": "xlstm_viz.checkpoint",
    "NonFiniteWeightsWarning": "xlstm_viz.checkpoint",
    "load_demo": "xlstm_viz.demo",
    "apply_edits": "xlstm_viz.model_edits",
    "dashboard": "xlstm_viz.dashboard.app",
    "WiringView": "xlstm_viz.dashboard.wiring_view",
    "ModelView": "xlstm_viz.dashboard.model_view",
    "TraceView": "xlstm_viz.dashboard.trace_view",
    "DebuggerView": "xlstm_viz.dashboard.debugger_view",
    "DiffView": "xlstm_viz.dashboard.diff_view",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xlstm_viz' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
