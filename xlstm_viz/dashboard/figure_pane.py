"""Bokeh figures in a Panel layout that lay themselves out alone, not the whole page with them.

BokehJS lays out a figure together with every layout above it: when a figure's axis changes size (new data, new
tick labels) its next paint re-lays out the page from its layout root, the Tabs with every tab's views (~1,700
views, ~300 ms of the renderer's main thread in software-rendered chromium, twice per click on the Diff tab;
counted in the page by `benchmarks/dashboard_breakdown.py --layouts`). A layout whose parent is not a layout (a
Bokeh `Pane`) is a layout root of its own: its re-layout measures only itself. Its width comes from CSS (the pane
fills its column's width).

Figures that share an x axis (the Over-time panels) go into one group: a Bokeh column or grid inside one pane, so
that their frames stay aligned (BokehJS aligns the frames of the plots it lays out together) and a token's column
lines up from panel to panel.
"""

from __future__ import annotations

import panel as pn
from bokeh.models import Column as BkColumn
from bokeh.models import GridBox as BkGridBox
from bokeh.models import Pane as BkPane

STRETCH = ("stretch_width", "stretch_both", "scale_width", "scale_both")


def figure_pane(*figures, ncols: int | None = None, sizing_mode: str | None = None, **params) -> pn.pane.Bokeh:
    """A Panel pane showing `figures` (one, a column of them, or a grid of `ncols` columns) as a layout root of
    their own (see the module docstring); `sizing_mode` and `params` as for `pn.pane.Bokeh`."""
    if not figures:
        raise ValueError("figure_pane needs at least one figure")
    sizing = sizing_mode if sizing_mode is not None else figures[0].sizing_mode
    if len(figures) == 1:
        inner = figures[0]
    elif ncols is None:
        inner = BkColumn(children=list(figures), sizing_mode=sizing)
    else:
        if ncols < 1:
            raise ValueError(f"figure_pane: ncols must be at least 1, got {ncols}")
        inner = BkGridBox(children=[(f, i // ncols, i % ncols) for i, f in enumerate(figures)], sizing_mode=sizing)
    holder = BkPane(elements=[inner], styles={"width": "100%"} if sizing in STRETCH else {})
    return pn.pane.Bokeh(BkColumn(children=[holder], sizing_mode=sizing), sizing_mode=sizing, **params)
