"""Wiring-driven execution: the executor, probe names, traces, interventions and the step-through debugger."""

from xlstm_viz.execution.debugger import Breakpoint, Debugger
from xlstm_viz.execution.events import CellEvent
from xlstm_viz.execution.executor import Executor
from xlstm_viz.execution.interventions import Intervention, Interventions
from xlstm_viz.execution.trace import Trace, run_with_trace

__all__ = [
    "Breakpoint", "CellEvent", "Debugger", "Executor", "Intervention", "Interventions", "Trace", "run_with_trace",
]
