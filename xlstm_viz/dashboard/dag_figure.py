"""A layered DAG figure (block graph or cell graph) built once; graph, overlay and highlight are data updates."""

from __future__ import annotations

import numpy as np
from bokeh.models import Arrow, ColumnDataSource, HoverTool, Range1d, TapTool, VeeHead
from bokeh.plotting import figure

from xlstm_viz.dashboard import model_tables, source_updates, trace_tables
from xlstm_viz.dashboard.colors import (
    add_legend, graph_legend_items, kind_legend_items, muted_text, paper, themed, update_color_bar, value_color_bar,
)

# Labels sit up and to the right of their marker, rotated, so neighbouring columns' labels do not run into
# each other (two parallel labels one column, ~30 px, apart are 30 sin(0.9) = 23 px apart: the height of the
# name above the label's baseline plus the shape / parameter line below it).
LABEL_ANGLE = 0.9  # radians
# An edge's arrowhead sits this many columns before its target (every edge goes at least one column right), so
# it is not hidden under the target's marker.
HEAD_BACK = 0.38
HEAD_STEM = 0.12

LABEL_ROOM = 0.4  # columns of room right of the last column, for its rotated label

# Columns shown at once: a deeper graph (32 blocks = 35 columns) is a strip that pans sideways (drag, or the
# debugger's stop moves it), so labels keep their size instead of overlapping.
MAX_COLUMNS = 14


class DagFigure:
    """Nodes coloured/sized by a statistic, edges coloured by state.

    A tap only selects: `on_node_tap(name)` / `on_edge_tap(src, dst)` get names, and no callback may edit the
    model (an edge ends at a node's centre, so a tap on a node also hits the edges into it).
    """

    def __init__(self, title: str, height: int = 360, on_node_tap=None, on_edge_tap=None, color_bar: bool = True,
                 legend_place: str = "right", max_columns: int = MAX_COLUMNS, info_labels: bool = True):
        # A narrow figure (the debugger's, ~330 px) shows fewer columns at once than a wide one, so that each column
        # keeps room for its rotated label; the rest of the graph pans into view (scroll_to).
        if int(max_columns) < 2:
            raise ValueError(f"DagFigure: max_columns must be at least 2, got {max_columns}")
        self.max_columns = int(max_columns)
        self.node_source = ColumnDataSource(self._empty_nodes())
        self.edge_source = ColumnDataSource(self._empty_edges())
        self.highlight_source = ColumnDataSource({"x": [], "y": [], "id": []})
        self.edge_highlight_source = ColumnDataSource({"x0": [], "y0": [], "x1": [], "y1": [], "id": []})
        self.on_node_tap, self.on_edge_tap = on_node_tap, on_edge_tap
        self.x_range, self.y_range = Range1d(-0.5, 1.5), Range1d(-0.1, 1.3)  # room above for the labels
        # The 2D canvas: a graph is tens to a few hundred glyphs, and a WebGL canvas is copied into the 2D one on
        # every paint (blit_webgl: ~40 ms of a debugger step's ~270 ms of renderer CPU in software-drawn chromium).
        fig = figure(title=title, height=height, sizing_mode="stretch_width", tools="pan,wheel_zoom,reset,save",
                     output_backend="canvas", x_range=self.x_range, y_range=self.y_range, toolbar_location="above",
                     min_border_left=10, min_border_right=10)  # no axes: the width goes to the columns
        fig.axis.visible = False
        fig.grid.visible = False
        edges = fig.segment("x0", "y0", "x1", "y1", source=self.edge_source, line_color="color", line_width=2.5,
                            line_alpha="alpha", line_dash="dash", nonselection_line_alpha="alpha")
        fig.segment("x0", "y0", "x1", "y1", source=self.edge_highlight_source, line_color="#e31a1c", line_width=9,
                    line_alpha=0.45)
        fig.scatter("x", "y", source=self.highlight_source, size=44, fill_color=None, line_color="#e31a1c",
                    line_width=4)
        nodes = fig.scatter("x", "y", source=self.node_source, size="size", fill_color="fill", line_color="color",
                            line_width=3, nonselection_fill_alpha=1.0)
        # direction: a short arrow (VeeHead) on each edge just before its target, drawn in the edge's colour
        self.arrows = Arrow(source=self.edge_source, x_start="hx0", y_start="hy0", x_end="hx1", y_end="hy1",
                            line_color="color", line_alpha="alpha", line_width=2.5,
                            end=VeeHead(size=9, fill_color="color", line_color="color", fill_alpha="alpha",
                                        line_alpha="alpha"))
        fig.add_layout(self.arrows)
        style = dict(source=self.node_source, angle=LABEL_ANGLE, x_offset=9, y_offset=-7, text_align="left",
                     background_fill_color=paper(), background_fill_alpha=0.7, padding=1)
        self.labels = fig.text("x", "y", text="label", text_font_size="9pt", text_baseline="bottom",
                               text_color=themed("#000000"), **style)
        self.info_labels = fig.text("x", "y", text="info_label", text_font_size="7pt", text_baseline="top",
                                    text_color=muted_text(), **style)
        # Without the shape / parameter line a label is one 9pt line: in a narrow figure the six parallel labels of
        # a column of gates fit between their markers (the line stays in the hover tooltip).
        self.info_labels.visible = bool(info_labels)
        fig.add_tools(HoverTool(renderers=[nodes], tooltips=[("node", "@id"), ("kind", "@kind"),
                                                             ("weights", "@info"), ("value", "@value_text")]))
        fig.add_tools(HoverTool(renderers=[edges], tooltips=[("connection", "@src_id -> @dst_id"), ("state", "@state")],
                                line_policy="interp"))
        fig.add_tools(TapTool(renderers=[nodes, edges]))
        self.node_source.selected.on_change("indices", self._node_tapped)
        self.edge_source.selected.on_change("indices", self._edge_tapped)
        # A legend (edge colour = connection state, node outline = cell kind; added with the first graph) and
        # a colour bar for the node fill (the overlay value) whose range follows every set_values.
        self._legend = None
        self._legend_kinds: set[str] = set()  # node kinds the legend lists
        self._legend_place = legend_place
        self.mapper = self.color_bar = None
        if color_bar:
            self.mapper, self.color_bar = value_color_bar("node fill: no run yet", orientation="horizontal")
            fig.add_layout(self.color_bar, "below")
        self.figure = fig
        self.names: list[str] = []
        self.connections: list[tuple[str, str]] = []

    @staticmethod
    def _empty_nodes():
        return {k: [] for k in ("id", "label", "info", "info_label", "params", "kind", "x", "y", "color", "value",
                                "fill", "size", "value_text")}

    @staticmethod
    def _empty_edges():
        return {k: [] for k in ("src_id", "dst_id", "x0", "y0", "x1", "y1", "hx0", "hy0", "hx1", "hy1", "polarity",
                                "state", "color", "alpha", "dash")}

    def set_graph(self, names, conns_with_state, values=None, symmetric=False, layer_types=None,
                  info=None) -> None:
        """Lay out `names` with [(src, dst, state)] and draw; keeps the figure, swaps the data. `layer_types`: the
        model's, to colour block nodes by type; `info`: {name: (shape/parameter line, count)} shown on the nodes."""
        conns = [(a, b) for a, b, _ in conns_with_state]
        pol = {(a, b): s for a, b, s in conns_with_state}
        nodes = model_tables.dag_node_table(list(names), conns, layer_types, info)
        edges = model_tables.dag_edge_table(nodes, conns, pol)
        edges.update(model_tables.arrow_columns(edges, HEAD_BACK, HEAD_STEM))
        nodes["color"] = np.array([themed(c) for c in nodes["color"]], dtype=object)  # black memory ring in dark
        edges["dash"] = np.array(["dashed" if p == 0 else "solid" for p in edges["polarity"]], dtype=object)
        self.names, self.connections = list(names), conns
        self._nodes = nodes
        if self._legend is None:  # built before the figure is shown, so no document lock is needed
            below = self._legend_place == "below"
            self._legend = add_legend(self.figure, graph_legend_items(nodes["kind"]), title="edge / outline",
                                      place=self._legend_place, orientation="vertical",
                                      ncols=4 if below else "auto")
        else:  # a block of another type brings cell kinds the legend does not list yet (sLSTM: conv)
            missing = [k for k in dict.fromkeys(nodes["kind"]) if k not in self._legend_kinds]
            if missing:
                source_updates.apply(self.figure, lambda: self._extend_legend(missing))
        self._legend_kinds.update(nodes["kind"])
        values = np.full(len(names), np.nan) if values is None else values
        nodes.update(trace_tables.overlay_columns(values, symmetric=symmetric))
        self._update_bar(values, symmetric)
        source_updates.replace_data(self.node_source, nodes)
        source_updates.replace_data(self.edge_source, edges)
        xmax = float(nodes["x"].max()) if len(nodes["x"]) else 1.0
        self._xmax = xmax
        source_updates.set_props(self.x_range, start=-0.5, end=min(xmax, self.max_columns - 1) + 0.5 + LABEL_ROOM)

    def _extend_legend(self, kinds) -> None:
        from bokeh.models import LegendItem

        for label, color in kind_legend_items(kinds):
            r = self.figure.scatter([np.nan], [np.nan], size=10, fill_color=paper(), line_color=themed(color),
                                    line_width=3)
            self._legend.items.append(LegendItem(label=label, renderers=[r]))

    def set_values(self, values, symmetric: bool = False) -> None:
        """Overlay only: patch fill/size/value columns (cheap; the layout stays)."""
        cols = trace_tables.overlay_columns(values, symmetric=symmetric)
        n = len(self.names)
        if len(cols["value"]) != n:
            raise ValueError(f"got {len(cols['value'])} overlay values for {n} nodes")
        patch = {k: [(slice(0, n), list(v))] for k, v in cols.items()}
        source_updates.apply(self.node_source, lambda: self.node_source.patch(patch))
        self._update_bar(values, symmetric)

    def _update_bar(self, values, symmetric: bool) -> None:
        if self.mapper is not None:
            source_updates.apply(self.mapper, lambda: update_color_bar(self.mapper, self.color_bar, values, symmetric))

    def set_value_title(self, text: str) -> None:
        """What the node fill shows, with its unit (the colour bar's title)."""
        if self.color_bar is not None:
            source_updates.set_props(self.color_bar, title=text)

    def highlight(self, name: str | None) -> None:
        if name is None or name not in self.names:
            data = {"x": [], "y": [], "id": []}
        else:
            i = self.names.index(name)
            data = {"x": [float(self._nodes["x"][i])], "y": [float(self._nodes["y"][i])], "id": [name]}
            self.scroll_to(float(self._nodes["x"][i]))
        source_updates.replace_data(self.highlight_source, data)

    def scroll_to(self, x: float) -> None:
        """Pan a strip (more than max_columns columns) so that column `x` is in view; a shorter graph stays put."""
        xmax = getattr(self, "_xmax", 0.0)
        if xmax < self.max_columns:
            return
        start, end = self.x_range.start, self.x_range.end
        if start is not None and end is not None and start + 0.5 <= x <= end - 0.5 - LABEL_ROOM:
            return
        first = min(max(x - self.max_columns // 2, 0.0), xmax - self.max_columns + 1)
        source_updates.set_props(self.x_range, start=first - 0.5, end=first + self.max_columns - 0.5 + LABEL_ROOM)

    def highlight_edge(self, src: str | None, dst: str | None = None) -> None:
        """Mark the selected connection (a wide translucent band under it); None clears it."""
        data = {"x0": [], "y0": [], "x1": [], "y1": [], "id": []}
        if src is not None and src in self.names and dst in self.names:
            i, j = self.names.index(src), self.names.index(dst)
            x, y = self._nodes["x"], self._nodes["y"]
            data = {"x0": [float(x[i])], "y0": [float(y[i])], "x1": [float(x[j])], "y1": [float(y[j])],
                    "id": [f"{src} -> {dst}"]}
        source_updates.replace_data(self.edge_highlight_source, data)

    def _node_tapped(self, attr, old, new):
        if new and self.on_node_tap is not None:
            name = self.names[new[0]]
            self.node_source.selected.indices = []
            self.on_node_tap(name)

    def _edge_tapped(self, attr, old, new):
        if new and self.on_edge_tap is not None:
            a, b = self.connections[new[0]]
            self.edge_source.selected.indices = []
            self.on_edge_tap(a, b)
