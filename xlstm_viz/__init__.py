"""xlstm-viz: visualize, probe and step through wired xLSTM models on MLX.

The heavy parts (MLX, Panel) load on first use so that `import xlstm_viz` stays cheap and the wiring
module works without MLX.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

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
    "load_demo": "xlstm_viz.demo",
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
