"""Interventions live with the model (`xlstm_viz.model.interventions`), which applies them; this name stays."""

from xlstm_viz.model.interventions import KINDS, Intervention, Interventions, has_heads  # noqa: F401
