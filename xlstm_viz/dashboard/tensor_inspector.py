"""Heatmaps of the tensors at a debugger stop: C per head, n per head, the gate vectors and the output by head.

Figures and sources are built once; a stop swaps the image data and the colour bars' ranges. Each heatmap has its
own diverging scale around 0 unless `shared` is set, then all of them use the largest |value| of the stop.
"""

from __future__ import annotations

import numpy as np
from bokeh.models import ColumnDataSource, FixedTicker, HoverTool, Range1d
from bokeh.plotting import figure

from xlstm_viz.dashboard import source_updates
from xlstm_viz.dashboard.colors import diverging, value_color_bar
from xlstm_viz.dashboard.tensor_tables import GATE_ROWS

# key -> (title, colour bar title with the unit, x axis, y axis)
PANELS = {
    "C": ("memory C_t per head (k feature x v feature)", "C_t entry", "v feature (heads side by side)", "k feature"),
    "n": ("normalizer n_t per head", "n_t entry", "k feature", "head"),
    "gates": ("gates per head", "gate value", "head", ""),
    "output": ("cell output at the stop", "output value", "feature", ""),
}


def _empty():
    return {"image": [], "x": [], "y": [], "dw": [], "dh": []}


class TensorInspector:
    def __init__(self, height: int = 190):
        self.panels = {}
        self.shared = False
        for key, (title, unit, xlabel, ylabel) in PANELS.items():
            xr, yr = Range1d(0, 1), Range1d(0, 1)
            fig = figure(title=title, height=height if key != "C" else height + 60, sizing_mode="stretch_width",
                         x_range=xr, y_range=yr, tools="pan,wheel_zoom,reset,save", toolbar_location="right")
            source = ColumnDataSource(_empty())
            mapper, bar = value_color_bar(unit, palette=diverging(), low=-1.0, high=1.0)
            fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=source, color_mapper=mapper)
            fig.add_layout(bar, "right")
            fig.add_tools(HoverTool(tooltips=[("tensor", key), (xlabel or "column", "$x{0}"),
                                              (ylabel or "row", "$y{0}"), (unit, "@image{0.0000}")]))
            fig.xaxis.axis_label, fig.yaxis.axis_label = xlabel, ylabel
            fig.grid.visible = False
            # tickers made once: a stop changes their ticks, never swaps the models (that re-walks the document)
            xt, yt = FixedTicker(ticks=[]), FixedTicker(ticks=[])
            if key == "C":
                fig.xaxis.ticker = xt
            elif key == "gates":
                fig.xaxis.ticker, fig.yaxis.ticker = xt, yt
            else:
                fig.yaxis.ticker = yt
            self.panels[key] = {"figure": fig, "source": source, "mapper": mapper, "bar": bar, "x": xr, "y": yr,
                                "xticks": xt, "yticks": yt}
        self.tables: dict = {}

    @property
    def figures(self):
        return [p["figure"] for p in self.panels.values()]

    def ranges(self) -> dict[str, tuple[float, float]]:
        """(low, high) of each panel's colour mapper, as drawn."""
        return {k: (p["mapper"].low, p["mapper"].high) for k, p in self.panels.items()}

    def set_shared(self, shared: bool) -> None:
        self.shared = bool(shared)
        self.show(self.tables)

    def show(self, tables: dict, title: str | None = None) -> None:
        self.tables = tables
        images = {k: tables.get(k) for k in self.panels}
        limits = {k: _absmax(a) for k, a in images.items()}
        common = max([v for v in limits.values() if v is not None], default=1.0)
        for key, panel in self.panels.items():
            img = images[key]
            if img is None:
                source_updates.replace_data(panel["source"], _empty())
                source_updates.set_props(panel["figure"].title, text=f"{PANELS[key][0]}: not at this stop"
                                         + (" (C and n are shown at blocks.i.mlstm.memory)" if key in ("C", "n",
                                                                                                    "gates") else ""))
                continue
            img = np.asarray(img, dtype=np.float64)
            H, W = img.shape
            lim = common if self.shared else (limits[key] or 1.0)
            source_updates.replace_data(panel["source"], {"image": [img], "x": [0], "y": [0], "dw": [W], "dh": [H]})
            source_updates.set_props(panel["mapper"], low=-lim, high=lim)
            scale = "shared scale" if self.shared else "own scale"
            source_updates.set_props(panel["figure"].title, text=f"{PANELS[key][0]} [{H}x{W}, {scale}]"
                                     + (f": {title}" if title else ""))
            source_updates.set_props(panel["x"], start=0, end=W)
            source_updates.set_props(panel["y"], start=0, end=H)
            self._ticks(key, panel, tables, H)

    def _ticks(self, key, panel, tables, H) -> None:
        fig, xt, yt = panel["figure"], panel["xticks"], panel["yticks"]

        def apply():
            if key == "C":
                centres = [float(c) for c in tables.get("C_heads", [])]
                xt.ticks = centres
                fig.xaxis.major_label_overrides = {c: f"head {h}" for h, c in enumerate(centres)}
            elif key in ("n", "output"):
                rows = tables.get("output_rows") if key == "output" else [f"head {h}" for h in range(H)]
                yt.ticks = [r + 0.5 for r in range(H)]
                fig.yaxis.major_label_overrides = {r + 0.5: rows[r] for r in range(H)}
            elif key == "gates":
                yt.ticks = [r + 0.5 for r in range(H)]
                fig.yaxis.major_label_overrides = {r + 0.5: GATE_ROWS[r].split(" (")[0] for r in range(H)}
                W = tables["gates"].shape[1]
                xt.ticks = [c + 0.5 for c in range(W)]
                fig.xaxis.major_label_overrides = {c + 0.5: f"head {c}" for c in range(W)}

        source_updates.apply(fig, apply)


def _absmax(a) -> float | None:
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float64)
    finite = a[np.isfinite(a)]
    m = float(np.abs(finite).max()) if finite.size else 0.0
    return m if m > 0 else 1.0
