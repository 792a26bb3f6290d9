"""The forward's events live with the model (`xlstm_viz.model.observer`); this name stays for callers."""

from xlstm_viz.model.observer import CellEvent, Observer, StateEvent  # noqa: F401
