"""Colours shared by every dashboard view, so a role or a polarity looks the same everywhere."""

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
    global _DIVERGING
    if _DIVERGING is None:
        from bokeh.palettes import RdBu11

        # RdBu runs red -> blue; reverse so negative is blue and positive red (bigger = warmer).
        _DIVERGING = list(reversed(RdBu11))
    return _DIVERGING


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
    out = np.full(v.shape, "#7f7f7f", dtype=object)
    if not finite.any():
        return out
    if symmetric:
        m = float(np.max(np.abs(v[finite]))) if hi is None else float(hi)
        lo, hi = -m, m
    lo = float(np.min(v[finite])) if lo is None else float(lo)
    hi = float(np.max(v[finite])) if hi is None else float(hi)
    span = hi - lo
    t = np.full(v.shape, 0.5) if span <= 0 else (v - lo) / span  # flat data sits mid-palette
    idx = np.clip((np.nan_to_num(t) * (len(palette) - 1)).round().astype(int), 0, len(palette) - 1)
    pal = np.asarray(palette, dtype=object)
    out[finite] = pal[idx[finite]]
    return out
