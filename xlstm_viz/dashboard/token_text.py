"""The prompt as text, each token's box coloured by a statistic of that position (with a colour bar).

Tokens are laid out like text: left to right, box width by label length, wrapped at `row_chars` characters, so a
2,000-token prompt reads as a page of lines instead of 2,000 ticks on an axis.
"""

from __future__ import annotations

import numpy as np
from bokeh.models import ColumnDataSource, HoverTool, Range1d
from bokeh.plotting import figure

from xlstm_viz.dashboard import source_updates
from xlstm_viz.dashboard.colors import map_to_palette, update_color_bar, value_color_bar

ROW_CHARS = 96  # characters per line of the layout
LINE_PX = 22


def token_text_table(labels: list[str], values, row_chars: int = ROW_CHARS, symmetric: bool = False) -> dict:
    """Columns of the token boxes: x (centre), y (line, 0 on top and going down), w, label, value, color, pos."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) != len(labels):
        raise ValueError(f"got {len(values)} values for {len(labels)} tokens")
    x, y, w = [], [], []
    col = line = 0
    for label in labels:
        width = max(len(label), 1) + 1  # one character of space after each token
        if col + width > row_chars and col > 0:
            col, line = 0, line + 1
        x.append(col + width / 2)
        y.append(-line)
        w.append(width - 0.15)
        col += width
    return {"x": np.array(x, dtype=np.float64), "y": np.array(y, dtype=np.float64), "w": np.array(w),
            "label": np.array(labels, dtype=object), "value": values,
            "value_text": np.array([f"{v:.4g}" for v in values], dtype=object),
            "color": map_to_palette(values, _palette(symmetric), symmetric=symmetric),
            "pos": np.arange(len(labels))}


def _palette(symmetric):
    from xlstm_viz.dashboard.colors import diverging, viridis

    return diverging() if symmetric else viridis()


class TokenText:
    """A figure made once; `show(labels, values, title)` swaps the boxes' data and the colour bar."""

    def __init__(self, title: str = "prompt coloured by the selected statistic"):
        self.source = ColumnDataSource({k: [] for k in ("x", "y", "w", "label", "value", "value_text", "color",
                                                        "pos")})
        self.x_range, self.y_range = Range1d(0, ROW_CHARS), Range1d(-1, 1)
        fig = figure(title=title, height=140, sizing_mode="stretch_width", x_range=self.x_range,
                     y_range=self.y_range, tools="ypan,ywheel_zoom,reset,save", toolbar_location="right")
        r = fig.rect("x", "y", "w", 0.85, source=self.source, fill_color="color", line_color=None)
        fig.text("x", "y", text="label", source=self.source, text_align="center", text_baseline="middle",
                 text_font_size="8pt", text_color="#ffffff", text_font_style="bold")
        fig.add_tools(HoverTool(renderers=[r], tooltips=[("token", "@label"), ("position", "@pos"),
                                                         ("value", "@value_text")]))
        self.mapper, self.bar = value_color_bar("")
        fig.add_layout(self.bar, "right")
        fig.axis.visible = False
        fig.grid.visible = False
        self.figure = fig

    def show(self, labels, values, title: str, symmetric: bool = False, lines_shown: int = 5) -> None:
        data = token_text_table(labels, values, symmetric=symmetric)
        source_updates.replace_data(self.source, data)
        lines = int(-data["y"].min()) + 1 if len(data["y"]) else 1
        source_updates.set_props(self.y_range, start=-min(lines, lines_shown) + 0.5, end=0.5)
        source_updates.apply(self.mapper, lambda: update_color_bar(self.mapper, self.bar, data["value"], symmetric,
                                                                   title=title))
