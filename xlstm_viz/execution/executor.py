"""The wiring-driven forward lives with the model (`xlstm_viz.model.forward`); this name stays for callers."""

from xlstm_viz.model.forward import MODES, Executor, _check_ids  # noqa: F401
