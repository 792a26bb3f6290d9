"""MLX implementation of the xLSTM-7B architecture (NX-AI "xLSTM Large"), executed by its wirings."""

import xlstm_viz.blas  # noqa: F401  (bind a fast BLAS before MLX loads)

from xlstm_viz.model.mlstm_cell import MLSTMState
from xlstm_viz.model.xlstm import XLSTM

__all__ = ["XLSTM", "MLSTMState"]
