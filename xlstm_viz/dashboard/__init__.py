"""Panel/Bokeh dashboard: wiring, model, over-time, debugger and diff views, and the served app.

Views load lazily so that `import xlstm_viz.dashboard` does not pull in Panel until a view is used.
"""

from __future__ import annotations

import importlib
import sys
import types

_EXPORTS = {
    "dashboard": "xlstm_viz.dashboard.app",
    "serve": "xlstm_viz.dashboard.app",
    "DashboardApp": "xlstm_viz.dashboard.app",
    "ModelSession": "xlstm_viz.dashboard.session",
    "WiringView": "xlstm_viz.dashboard.wiring_view",
    "ModelView": "xlstm_viz.dashboard.model_view",
    "TraceView": "xlstm_viz.dashboard.trace_view",
    "DebuggerView": "xlstm_viz.dashboard.debugger_view",
    "DiffView": "xlstm_viz.dashboard.diff_view",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xlstm_viz.dashboard' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


class _CallableModule(types.ModuleType):
    """`xlstm_viz.dashboard(...)` must stay the app function even after this subpackage is imported (the import
    system then binds the name `dashboard` on the parent package to this module)."""

    def __call__(self, *args, **kwargs):
        return self.__getattr__("dashboard")(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
