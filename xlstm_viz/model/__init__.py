"""MLX implementation of the xLSTM-7B architecture (NX-AI "xLSTM Large"), executed by its wirings."""

import xlstm_viz.blas  # noqa: F401  (bind a fast BLAS before MLX loads)

from xlstm_viz.model.mlstm_cell import MLSTMState
from xlstm_viz.model.xlstm import XLSTM

# Observation is layered on the model: execution imports model modules (never the reverse) and attaches
# XLSTM.run_with_trace; loaded here, after the model modules, so that every XLSTM can trace.
import xlstm_viz.execution.trace  # noqa: E402,F401

__all__ = ["XLSTM", "MLSTMState"]
