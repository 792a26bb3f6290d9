"""Model view: block graph, the selected block's cell graph and its connection heatmap, with run overlays.

Node colour and size show a statistic of the last run at a token (or aggregated over tokens), or
its change against the baseline run. Clicking a cell-graph edge or a heatmap cell cycles that
connection on (+1) -> flipped (-1) -> off (0) -> on; the model re-runs off the UI thread.
"""

from __future__ import annotations

import numpy as np
import panel as pn

from xlstm_viz.dashboard import offline as _offline  # noqa: F401  (notebook comm updates link no CDN stylesheet)
import param
from bokeh.events import Tap
from bokeh.models import ColumnDataSource, HoverTool, LinearColorMapper, Range1d
from bokeh.plotting import figure

from xlstm_viz.dashboard import source_updates, trace_tables, wiring_tables
from xlstm_viz.dashboard.colors import POLARITY_COLORS
from xlstm_viz.dashboard.dag_figure import DagFigure
from xlstm_viz.dashboard.model_tables import short_label

STATS = ("absmax", "mean", "std", "l2", "exp", "sigmoid", "value", "C_norm", "n_norm", "m")
NO_CONNECTION = np.nan  # heatmap cells with no connection stay blank


def connection_matrix(names, conns) -> dict:
    """Cells x cells matrix of connection states (+1/-1/0) with NaN where no connection exists."""
    index = {n: i for i, n in enumerate(names)}
    M = np.full((len(names), len(names)), NO_CONNECTION, dtype=np.float64)
    for a, b, s in conns:
        M[index[a], index[b]] = s
    return {"matrix": M, "image": M[::-1].copy(), "rows": len(names), "cols": len(names), "names": list(names)}


def matrix_cell_at(mat: dict, x: float, y: float) -> tuple[str, str] | None:
    if not (0 <= x < mat["cols"] and 0 <= y < mat["rows"]):
        return None
    r = mat["rows"] - 1 - int(np.floor(y))
    c = int(np.floor(x))
    if np.isnan(mat["matrix"][r, c]):
        return None
    return mat["names"][r], mat["names"][c]


def matrix_cell_center(mat: dict, src: str, dst: str) -> tuple[float, float]:
    r, c = mat["names"].index(src), mat["names"].index(dst)
    return c + 0.5, mat["rows"] - 1 - r + 0.5


class ModelView(pn.viewable.Viewer):
    stat = param.Selector(default="absmax", objects=list(STATS), doc="statistic shown on the nodes")
    token = param.Integer(default=-1, bounds=(-1, None), doc="token position; -1 = aggregate over tokens")
    aggregate = param.Selector(default="mean", objects=list(trace_tables.AGGREGATES))
    overlay = param.Selector(default="run", objects=["run", "diff vs baseline"])
    block = param.Integer(default=0, bounds=(0, None))
    sparsity = param.Number(default=0.5, bounds=(0.0, 0.95), step=0.05)
    seed = param.Integer(default=0, bounds=(0, None))

    def __init__(self, session, **params):
        super().__init__(**params)
        self.session = session
        self.param.block.bounds = (0, session.config.num_blocks - 1)
        self.block_graph = DagFigure("blocks: embedding -> blocks -> head (click a block)", height=240,
                                     on_node_tap=self._select_block_node, on_edge_tap=self._cycle_block_edge)
        self.cell_graph = DagFigure("cells of block 0 (click an edge to cycle on -> flipped -> off)", height=380,
                                    on_edge_tap=self._cycle_cell_edge)
        self.matrix_source = ColumnDataSource({"image": [], "dw": [], "dh": []})
        self.matrix_figure = self._make_matrix_figure()
        self._info = pn.pane.Markdown("", margin=(0, 10))
        session.param.watch(self._on_trace, ["trace", "baseline"])
        session.param.watch(self._on_graph, ["graph_version"])
        self.param.watch(self._on_overlay_params, ["stat", "token", "aggregate", "overlay"])
        self.param.watch(self._on_block, ["block"])
        self.refresh_graphs()
        self.refresh_overlay()

    def _make_matrix_figure(self):
        self.x_range, self.y_range = Range1d(0, 1), Range1d(0, 1)
        fig = figure(title="connections of the block (rows: from, columns: to; click to cycle)", height=460,
                     width=560, tools="tap,reset,save", x_range=self.x_range, y_range=self.y_range,
                     toolbar_location="above", output_backend="webgl")
        mapper = LinearColorMapper(palette=[POLARITY_COLORS[-1], "#bbbbbb", POLARITY_COLORS[1]], low=-1.5, high=1.5,
                                   nan_color="#ffffff")
        img = fig.image(image="image", x=0, y=0, dw="dw", dh="dh", source=self.matrix_source, color_mapper=mapper)
        fig.add_tools(HoverTool(renderers=[img], tooltips=[("to (col)", "$x{0}"), ("from (row)", "$y{0}"),
                                                           ("state", "@image")]))
        fig.on_event(Tap, self._on_matrix_tap)
        fig.xaxis.major_label_orientation = 1.2
        return fig

    # -- data ---------------------------------------------------------------------------------------
    def refresh_graphs(self) -> None:
        names, conns = self.session.graph("block")
        self._block_graph = (names, conns)
        # Pass the current overlay in so a redraw never flashes uncoloured nodes.
        self.block_graph.set_graph(names, conns, *self.overlay_values(names))
        cnames, cconns = self.session.graph("cell", self.block)
        self._cell_graph = (cnames, cconns)
        self.cell_graph.set_graph(cnames, cconns, *self.overlay_values(cnames))
        source_updates.set_props(self.cell_graph.figure.title,
                                 text=f"cells of block {self.block} (click an edge to cycle on -> flipped -> off)")
        mat = connection_matrix(cnames, cconns)
        self._matrix = mat
        source_updates.replace_data(self.matrix_source, {"image": [mat["image"]], "dw": [mat["cols"]],
                                                         "dh": [mat["rows"]]})
        labels = {i: short_label(n) for i, n in enumerate(cnames)}

        def axes():
            self.x_range.update(start=0, end=mat["cols"])
            self.y_range.update(start=0, end=mat["rows"])
            self.matrix_figure.xaxis.ticker = [i + 0.5 for i in range(mat["cols"])]
            self.matrix_figure.xaxis.major_label_overrides = {i + 0.5: labels[i] for i in labels}
            self.matrix_figure.yaxis.ticker = [i + 0.5 for i in range(mat["rows"])]
            self.matrix_figure.yaxis.major_label_overrides = {mat["rows"] - 1 - i + 0.5: labels[i] for i in labels}

        source_updates.apply(self.matrix_figure, axes)

    def overlay_values(self, names) -> tuple[np.ndarray, bool]:
        s = self.session
        if s.trace is None:
            return np.full(len(names), np.nan), False
        token = None if self.token < 0 else min(self.token, s.trace.tokens.shape[1] - 1)
        if self.overlay == "run" or s.baseline is None:
            return trace_tables.node_values(s.trace, names, self.stat, token, self.aggregate), False
        diff = trace_tables.diff_trace(s.trace, s.baseline)
        return trace_tables.node_values(diff, names, self.stat, token, self.aggregate), True

    def refresh_overlay(self) -> None:
        for fig, (names, _) in ((self.block_graph, self._block_graph), (self.cell_graph, self._cell_graph)):
            values, sym = self.overlay_values(names)
            fig.set_values(values, symmetric=sym)
        s = self.session
        acc = "" if s.accuracy is None else f" recall accuracy {s.accuracy:.3f}"
        if s.baseline_accuracy is not None and self.overlay != "run":
            acc += f" (baseline {s.baseline_accuracy:.3f})"
        tok = "aggregate " + self.aggregate if self.token < 0 else f"token {self.token}"
        self._info.object = f"overlay: **{self.stat}** at {tok} ({self.overlay}).{acc}"

    # -- callbacks ------------------------------------------------------------------------------------
    def _on_trace(self, *events):
        self.refresh_overlay()

    def _on_graph(self, *events):
        self.refresh_graphs()
        self.refresh_overlay()

    def _on_overlay_params(self, *events):
        self.refresh_overlay()

    def _on_block(self, *events):
        self.refresh_graphs()
        self.refresh_overlay()

    def _select_block_node(self, name: str):
        if name.startswith("blocks.") and name.count(".") == 1:
            self.block = int(name.split(".")[1])

    def cycle_cell_connection(self, src: str, dst: str):
        state = next(s for a, b, s in self._cell_graph[1] if a == src and b == dst)
        return self.session.edit_connection("cell", self.block, src, dst, wiring_tables.next_polarity(state))

    def _cycle_cell_edge(self, src, dst):
        self.cycle_cell_connection(src, dst)

    def _cycle_block_edge(self, src, dst):
        state = next(s for a, b, s in self._block_graph[1] if a == src and b == dst)
        self.session.edit_connection("block", None, src, dst, wiring_tables.next_polarity(state))

    def _on_matrix_tap(self, event):
        cell = matrix_cell_at(self._matrix, event.x, event.y)
        if cell is not None:
            self.cycle_cell_connection(*cell)

    def apply_sparsity(self, event=None):
        self.session.sparsify(self.block, self.sparsity, self.seed)

    # -- layout ---------------------------------------------------------------------------------------
    def controls(self):
        token = pn.widgets.IntSlider.from_param(self.param.token, name="token (-1 = all)", end=64, width=230)

        def sync_token(*_):
            if self.session.tokens is not None:
                token.end = max(0, len(self.session.tokens) - 1)

        self.session.param.watch(sync_token, ["tokens"])
        sync_token()
        sparsify = pn.widgets.Button(name="Sparsify block", button_type="warning")
        sparsify.on_click(lambda e: self.apply_sparsity())
        w = 230
        return pn.Column(
            pn.widgets.Select.from_param(self.param.stat, name="statistic", width=w), token,
            pn.widgets.Select.from_param(self.param.aggregate, name="aggregate", width=w),
            pn.widgets.RadioButtonGroup.from_param(self.param.overlay, width=w),
            pn.widgets.IntInput.from_param(self.param.block, name="block", width=w),
            pn.widgets.FloatSlider.from_param(self.param.sparsity, name="cell sparsity", width=w),
            pn.widgets.IntInput.from_param(self.param.seed, name="sparsity seed", width=w), sparsify,
            width=250,
        )

    def __panel__(self):
        return pn.Row(
            self.controls(),
            pn.Column(self._info, pn.pane.Bokeh(self.block_graph.figure, sizing_mode="stretch_width"),
                      pn.pane.Bokeh(self.cell_graph.figure, sizing_mode="stretch_width"),
                      pn.pane.Bokeh(self.matrix_figure), sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
