"""Colours, colour bars and legends of every dashboard view, in one place, so a meaning has one colour.

Red means one thing: a flipped (inhibitory, polarity -1) connection. Diffs use a purple-orange
diverging palette (negative purple, positive orange, 0 white), predictions that changed are black.
Every figure that colours something carries a colour bar (continuous values) or a legend (categories)
built by the helpers at the end of this module.
"""

from __future__ import annotations

import numpy as np

# Role colours follow ncps `draw_graph` (tab10) and add the command colour its docs pass by hand.
ROLE_COLORS = {
    "sensory": "#bcbd22",  # tab:olive
    "inter": "#1f77b4",  # tab:blue
    "command": "#17becf",  # tab:cyan
    "motor": "#ff7f0e",  # tab:orange
}
POLARITY_COLORS = {1: "#2ca02c", -1: "#d62728", 0: "#d0d0d0"}  # excitatory green, inhibitory red, none grey
POLARITY_NAMES = {1: "excitatory", -1: "inhibitory", 0: "none"}
# The model graphs call the same states on / flipped / off (a disabled connection is drawn dashed).
CONNECTION_STATE_NAMES = {1: "on", -1: "flipped", 0: "off"}
# Cell kind -> node outline colour in the model graphs (what a cell computes); no red, no connection green.
KIND_COLORS = {
    "input": "#bcbd22",
    "block": "#1f77b4",
    "mlstm block": "#1f77b4",  # block nodes by layer type (block graph of a mixed stack)
    "slstm block": "#e7ba52",  # not red: red marks flipped connections
    "projection": "#9467bd",
    "gate": "#17becf",
    "memory": "#000000",
    "conv": "#393b79",  # not the green of an "on" edge
    "norm": "#8c564b",
    "ffn": "#e377c2",
    "residual": "#7f7f7f",
    "output": "#ff7f0e",
}
# Top-1 prediction of a position, before vs after an edit (diff view).
PREDICTION_COLORS = {"changed": "#000000", "same": "#b0b0b0"}
BAR_COLOR = "#6a51a3"  # magnitudes (bars) that are not a category
NAN_COLOR = "#7f7f7f"

# The dark theme (`?theme=dark`, the header's switch, which reloads the page): black marks become near-white and
# white paper (label backgrounds, "none" cells) becomes the dark figure background, so every mark stays visible.
DARK_INK, DARK_PAPER, DARK_MUTED = "#f0f0f0", "#2f3136", "#c0c0c0"


def dark_theme() -> bool:
    """True in a page (or notebook) set to Panel's dark theme; read when a figure or table is built."""
    import panel as pn

    return pn.config.theme == "dark"


def themed(color: str) -> str:
    """`color` as drawn in the current theme: black <-> near-white ink, white paper <-> the dark background."""
    if not dark_theme() or not isinstance(color, str):
        return color
    return {"#000000": DARK_INK, "#ffffff": DARK_PAPER}.get(color.lower(), color)


def paper() -> str:
    return themed("#ffffff")


def muted_text() -> str:
    """Secondary text (a node's shape / parameter line)."""
    return DARK_MUTED if dark_theme() else "#555555"


# Sequential palette for statistic overlays (Viridis256 subsampled), diverging one for diffs.
_VIRIDIS = None
_DIVERGING = None


def viridis() -> list[str]:
    global _VIRIDIS
    if _VIRIDIS is None:
        from bokeh.palettes import Viridis256

        _VIRIDIS = list(Viridis256)
    return _VIRIDIS


def diverging() -> list[str]:
    """Palette for signed changes, most negative first: purple (negative) -> white (0) -> orange (positive)."""
    global _DIVERGING
    if _DIVERGING is None:
        from bokeh.palettes import PuOr11

        # Bokeh's PuOr11 runs dark purple (#2d004b) -> white -> dark orange (#7f3b08): negative purple.
        _DIVERGING = list(PuOr11)
    return _DIVERGING


def probability_palette(n: int = 64) -> list[str]:
    """White-blue ramp for probabilities 0 -> 1 (the top-k cells), the same ramp as their colour bar."""
    return [prob_color(p) for p in np.linspace(0.0, 1.0, n)]


def prob_color(p: float) -> str:
    v = int(255 - np.clip(p, 0.0, 1.0) * 180)
    return f"#{v:02x}{v:02x}ff"


def role_color(role: str) -> str:
    if role not in ROLE_COLORS:
        raise ValueError(f"unknown neuron role {role!r}; expected one of {sorted(ROLE_COLORS)}")
    return ROLE_COLORS[role]


def polarity_color(values: np.ndarray) -> np.ndarray:
    """Colour string per polarity value in {-1, 0, +1}."""
    values = np.asarray(values)
    out = np.empty(values.shape, dtype=object)
    for p, c in POLARITY_COLORS.items():
        out[values == p] = c
    bad = ~np.isin(values, list(POLARITY_COLORS))
    if bad.any():
        raise ValueError(f"polarity values must be -1, 0 or +1, got {np.unique(values[bad]).tolist()}")
    return out


def map_to_palette(values: np.ndarray, palette: list[str], lo: float | None = None, hi: float | None = None,
                   symmetric: bool = False) -> np.ndarray:
    """Colour per value on a linear scale; non-finite values get grey so a NaN is visible, not hidden."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    out = np.full(v.shape, NAN_COLOR, dtype=object)
    if not finite.any():
        return out
    lo, hi = value_range(v, lo, hi, symmetric)
    span = hi - lo
    t = np.full(v.shape, 0.5) if span <= 0 else (v - lo) / span  # flat data sits mid-palette
    idx = np.clip((np.nan_to_num(t) * (len(palette) - 1)).round().astype(int), 0, len(palette) - 1)
    pal = np.asarray(palette, dtype=object)
    out[finite] = pal[idx[finite]]
    return out


def value_range(values, lo=None, hi=None, symmetric: bool = False) -> tuple[float, float]:
    """The (low, high) that map_to_palette spreads the palette over; a colour bar uses the same pair."""
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return (0.0, 1.0) if lo is None or hi is None else (float(lo), float(hi))
    if symmetric:
        m = float(np.max(np.abs(finite))) if hi is None else float(hi)
        m = m if m > 0 else 1.0
        return -m, m
    lo = float(np.min(finite)) if lo is None else float(lo)
    hi = float(np.max(finite)) if hi is None else float(hi)
    if hi <= lo:  # flat data sits mid-palette; give the bar a visible span around it
        return lo - 0.5, lo + 0.5
    return lo, hi


# -- colour bars and legends (Bokeh) ------------------------------------------------------------------------
def value_color_bar(title: str, palette: list[str] | None = None, low: float = 0.0, high: float = 1.0,
                    orientation: str = "vertical"):
    """(LinearColorMapper, ColorBar) for a figure whose fill colours come from `map_to_palette`.

    Vertical bars (placed right) want a short title; horizontal ones (placed below) can carry a sentence.
    """
    from bokeh.models import ColorBar, LinearColorMapper

    mapper = LinearColorMapper(palette=palette or viridis(), low=low, high=high, nan_color=NAN_COLOR)
    # A horizontal bar starts at the frame's left edge: its title runs on to the right, longer than the bar, and
    # at the right edge it would be cut off where the figure fills its column.
    size = {"width": 10} if orientation == "vertical" else {"height": 8, "width": 260, "location": "top_left"}
    bar = ColorBar(color_mapper=mapper, title=title, orientation=orientation, title_text_font_size="9pt",
                   title_text_font_style="normal", major_label_text_font_size="8pt", padding=4, **size)
    return mapper, bar


def update_color_bar(mapper, bar, values, symmetric: bool = False, title: str | None = None) -> None:
    """Match a colour bar to the values just drawn (same palette, same low/high as map_to_palette)."""
    lo, hi = value_range(values, symmetric=symmetric)
    mapper.update(palette=diverging() if symmetric else viridis(), low=lo, high=hi)
    if title is not None:
        bar.title = title


def state_color_bar(title: str = "connection"):
    """ColorBar for a polarity image (-1 flipped, 0 off, +1 on); blank cells are 'no connection'."""
    from bokeh.models import ColorBar, FixedTicker, LinearColorMapper

    mapper = LinearColorMapper(palette=[POLARITY_COLORS[-1], POLARITY_COLORS[0], POLARITY_COLORS[1]], low=-1.5,
                               high=1.5, nan_color=paper())
    bar = ColorBar(color_mapper=mapper, title=title + " (blank: none)", width=10, ticker=FixedTicker(ticks=[-1, 0, 1]),
                   major_label_overrides={-1: "flipped", 0: "off", 1: "on"}, title_text_font_size="9pt")
    return mapper, bar


def add_legend(fig, items, title: str | None = None, glyph: str = "line", place: str = "right",
               orientation: str = "vertical", ncols: int | str = "auto"):
    """A legend of categories [(label, colour)], drawn with empty glyphs so it never depends on the data."""
    from bokeh.models import Legend, LegendItem

    entries = []
    for label, g, color in _legend_rows(items, glyph):
        color = themed(color)
        # One point at NaN: drawn nowhere, but the legend shows its glyph (empty renderers lose it under WebGL).
        if g == "line":
            r = fig.line([np.nan], [np.nan], line_color=color, line_width=3)
        elif g == "ring":
            r = fig.scatter([np.nan], [np.nan], size=10, fill_color=paper(), line_color=color, line_width=3)
        else:
            r = fig.scatter([np.nan], [np.nan], size=10, marker="square", fill_color=color, line_color=color)
        entries.append(LegendItem(label=label, renderers=[r]))
    legend = Legend(items=entries, title=title, label_text_font_size="8pt", title_text_font_size="9pt",
                    glyph_height=12, glyph_width=16, spacing=0, padding=4, margin=4,
                    orientation=orientation, click_policy="none", ncols=ncols)
    fig.add_layout(legend, place)
    return legend


def _legend_rows(items, glyph):
    """[(label, colour)] with one glyph, or [(label, glyph, colour)] rows that mix glyphs."""
    return [(i[0], glyph, i[1]) if len(i) == 2 else i for i in items]


def graph_legend_items(kinds):
    """One legend for a model graph: edge colour = connection state, node outline = cell kind."""
    return ([(f"edge {CONNECTION_STATE_NAMES[s]}", "line", POLARITY_COLORS[s]) for s in (1, -1, 0)]
            + [(k, "ring", c) for k, c in kind_legend_items(kinds)])


def connection_legend_items():
    return [(CONNECTION_STATE_NAMES[s], POLARITY_COLORS[s]) for s in (1, -1, 0)]


def kind_legend_items(kinds):
    """Legend entries for the cell kinds present, in KIND_COLORS order."""
    present = set(kinds)
    return [(k, c) for k, c in KIND_COLORS.items() if k in present]
