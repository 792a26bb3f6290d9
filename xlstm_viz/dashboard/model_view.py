"""Model view: block graph, the selected block's cell graph and its connection heatmap, with run overlays.

Node colour and size show a statistic of the last run at a token (or aggregated over tokens), or
its change against the baseline run. Selecting and editing are separate gestures: a click on a
block selects it, a click on an edge or a heatmap cell selects that connection, and only the
"Set on / flipped / off" buttons edit it. The model then re-runs off the UI thread and the view
says what the edit did (old -> new state, recall accuracy before -> after).
"""

from __future__ import annotations

import numpy as np
import panel as pn

from xlstm_viz.dashboard import offline as _offline  # noqa: F401  (notebook comm updates link no CDN stylesheet)
import param
from bokeh.events import Tap
from bokeh.models import ColumnDataSource, CustomJSHover, HoverTool, Range1d
from bokeh.plotting import figure

from xlstm_viz.dashboard import source_updates, trace_tables, wiring_tables
from xlstm_viz.dashboard.colors import state_color_bar
from xlstm_viz.dashboard.dag_figure import DagFigure
from xlstm_viz.dashboard.figure_export import download_buttons
from xlstm_viz.dashboard.figure_pane import figure_pane
from xlstm_viz.dashboard.inputs import int_input
from xlstm_viz.dashboard.model_tables import short_label
from xlstm_viz.dashboard.notifications import guarded
from xlstm_viz.dashboard.session import STATE_NAMES

# Units of the node statistics: activations carry the model's own (unnamed) unit.
STAT_UNITS = {"exp": "exp(i - m), no unit", "sigmoid": "sigma(f), 0..1", "m": "log scale (stabilizer)",
              "C_norm": "Frobenius norm", "n_norm": "L2 norm", "l2": "L2 norm"}
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


def value_title(stat: str, where: str, diff: bool) -> str:
    """Colour-bar title: what the node fill shows and in which unit."""
    unit = STAT_UNITS.get(stat, "activation units")
    what = f"{stat} after - before" if diff else stat
    return f"{what} ({unit}), mean over heads, {where}"


class ModelView(pn.viewable.Viewer):
    stat = param.Selector(default="absmax", objects=list(STATS), doc="statistic shown on the nodes")
    token = param.Integer(default=-1, bounds=(-1, None), doc="token position; -1 = aggregate over tokens")
    aggregate = param.Selector(default="mean", objects=list(trace_tables.AGGREGATES))
    overlay = param.Selector(default="run", objects=["run", "diff vs baseline"])
    block = param.Integer(default=0, bounds=(0, None))
    sparsity = param.Number(default=0.5, bounds=(0.0, 0.95), step=0.05)
    seed = param.Integer(default=0, bounds=(0, None))
    selected = param.Parameter(default=None, doc="(scope, block, src, dst) of the selected connection, or None")

    def __init__(self, session, **params):
        super().__init__(**params)
        self.session = session
        self.param.block.bounds = (0, session.config.num_blocks - 1)
        self.block_graph = DagFigure("blocks (click one to show its cells, an edge to select it)", height=240,
                                     on_node_tap=self._select_block_node, on_edge_tap=self._select_block_edge)
        self.cell_graph = DagFigure(self._cell_title(0), height=460, on_edge_tap=self._select_cell_edge,
                                    legend_place="below")
        self.matrix_source = ColumnDataSource({"image": [], "dw": [], "dh": []})
        self.matrix_figure = self._make_matrix_figure()
        self._info = pn.pane.Markdown("", margin=(0, 10))
        self._selection = pn.pane.Markdown("_no connection selected: click an edge or a heatmap cell_",
                                           margin=(0, 10))
        self._set_buttons = {}
        for state in (1, -1, 0):
            b = pn.widgets.Button(label=f"Set {STATE_NAMES[state]}", disabled=True, width=110,
                                  color="danger" if state != 1 else "primary")
            b.on_click(guarded(lambda e, st=state: self.set_selected(st)))
            self._set_buttons[state] = b
        session.param.watch(self._on_result, ["result"])
        self.param.watch(self._on_overlay_params, ["stat", "token", "aggregate", "overlay"])
        self.param.watch(self._on_block, ["block"])
        self.refresh_graphs()
        self.refresh_overlay()

    def _make_matrix_figure(self):
        self.x_range, self.y_range = Range1d(0, 1), Range1d(0, 1)
        fig = figure(title="connections of the block (rows: from, columns: to; click to select)", height=460,
                     width=560, tools="tap,reset,save", x_range=self.x_range, y_range=self.y_range,
                     toolbar_location="above", output_backend="webgl")
        mapper, bar = state_color_bar("connection")
        fig.add_layout(bar, "right")
        img = fig.image(image="image", x=0, y=0, dw="dw", dh="dh", source=self.matrix_source, color_mapper=mapper)
        # the image hover knows only the cursor position: the cell names are looked up in the browser
        self.matrix_names = ColumnDataSource({"name": []})
        lookup = "const l = src.data.name; const i = %s; return (i >= 0 && i < l.length) ? l[i] : '';"
        to = CustomJSHover(args={"src": self.matrix_names}, code=lookup % "Math.floor(value)")
        frm = CustomJSHover(args={"src": self.matrix_names}, code=lookup % "l.length - 1 - Math.floor(value)")
        fig.add_tools(HoverTool(renderers=[img], tooltips=[("from (row)", "$y{custom}"), ("to (column)", "$x{custom}"),
                                                           ("state", "@image")],
                                formatters={"$x": to, "$y": frm}))
        fig.on_event(Tap, self._on_matrix_tap)
        fig.xaxis.major_label_orientation = 1.2
        return fig

    # -- data ---------------------------------------------------------------------------------------
    def refresh_graphs(self) -> None:
        graphs = self.session.result.graphs  # the latest result's tables: views never call into the model thread
        names, conns = graphs.block
        self._block_graph = (names, conns)
        # Pass the current overlay in so a redraw never flashes uncoloured nodes.
        self.block_graph.set_graph(names, conns, *self.overlay_values(names),
                                   layer_types=self.session.model.config.layer_types(), info=graphs.info)
        cnames, cconns = graphs.of("cell", self.block)
        self._cell_graph = (cnames, cconns)
        self.cell_graph.set_graph(cnames, cconns, *self.overlay_values(cnames), info=graphs.info)
        source_updates.set_props(self.cell_graph.figure.title, text=self._cell_title(self.block))
        mat = connection_matrix(cnames, cconns)
        self._matrix = mat
        source_updates.replace_data(self.matrix_source, {"image": [mat["image"]], "dw": [mat["cols"]],
                                                         "dh": [mat["rows"]]})
        source_updates.replace_data(self.matrix_names, {"name": list(cnames)})
        labels = {i: short_label(n) for i, n in enumerate(cnames)}
        if getattr(self, "_axis_names", None) == list(cnames):
            self._show_selection()
            return  # same cells: new tickers would make Bokeh re-walk the document for nothing
        self._axis_names = list(cnames)

        def axes():
            self.x_range.update(start=0, end=mat["cols"])
            self.y_range.update(start=0, end=mat["rows"])
            self.matrix_figure.xaxis.ticker = [i + 0.5 for i in range(mat["cols"])]
            self.matrix_figure.xaxis.major_label_overrides = {i + 0.5: labels[i] for i in labels}
            self.matrix_figure.yaxis.ticker = [i + 0.5 for i in range(mat["rows"])]
            self.matrix_figure.yaxis.major_label_overrides = {mat["rows"] - 1 - i + 0.5: labels[i] for i in labels}

        source_updates.apply(self.matrix_figure, axes)
        self._show_selection()

    @staticmethod
    def _cell_title(block: int) -> str:
        return f"cells of block {block} (click an edge to select it)"

    def overlay_values(self, names) -> tuple[np.ndarray, bool]:
        s = self.session
        if s.trace is None:
            return np.full(len(names), np.nan), False
        token = None if self.token < 0 else min(self.token, s.trace.tokens.shape[1] - 1)
        if self.overlay == "run" or s.baseline is None:
            return trace_tables.node_values(s.trace, names, self.stat, token, self.aggregate), False
        diff = s.result.diff  # computed once per run on the model thread
        if diff is None:
            return np.full(len(names), np.nan), True
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
        title = value_title(self.stat, tok, diff=self.overlay != "run" and s.baseline is not None)
        self.block_graph.set_value_title(title)
        self.cell_graph.set_value_title(title)

    # -- callbacks ------------------------------------------------------------------------------------
    def _on_result(self, event):
        # the view is a function of the result: the graphs are redrawn only when their tables changed
        old = event.old
        if old is None or old.graphs is not event.new.graphs:
            self.refresh_graphs()
        if not self._clamp_token():  # (a clamped token has redrawn the overlay already)
            self.refresh_overlay()

    def _clamp_token(self) -> bool:
        """After a shorter prompt, move the token to the run's last one (True if it moved): the overlay shows that
        token, so the slider, the info line and the colour bar title must name it, not the one past the end."""
        trace = self.session.trace
        if trace is None or self.token <= trace.tokens.shape[1] - 1:
            return False
        self.token = trace.tokens.shape[1] - 1
        return True

    def _on_overlay_params(self, *events):
        self.refresh_overlay()

    def _on_block(self, *events):
        self.refresh_graphs()
        self.refresh_overlay()

    def _select_block_node(self, name: str):
        if name.startswith("blocks.") and name.count(".") == 1:
            self.block = int(name.split(".")[1])

    def _select_block_edge(self, src, dst):
        self.select_connection("block", None, src, dst)

    def _select_cell_edge(self, src, dst):
        self.select_connection("cell", self.block, src, dst)

    def _on_matrix_tap(self, event):
        cell = matrix_cell_at(self._matrix, event.x, event.y)
        if cell is not None:
            self.select_connection("cell", self.block, *cell)

    def select_connection(self, scope: str, block: int | None, src: str, dst: str) -> None:
        """Select a connection for editing (no edit happens here)."""
        conns = self._block_graph[1] if scope == "block" else self._cell_graph[1]
        if not any(a == src and b == dst for a, b, _ in conns):
            raise ValueError(f"no connection {src} -> {dst} in the {scope} wiring"
                             + ("" if block is None else f" of block {block}"))
        self.selected = (scope, block, src, dst)
        self._show_selection()

    def _selected_state(self):
        if self.selected is None:
            return None
        scope, block, src, dst = self.selected
        if scope == "cell" and block != self.block:
            return None  # the cell graph shows another block now
        conns = self._block_graph[1] if scope == "block" else self._cell_graph[1]
        return next((s for a, b, s in conns if a == src and b == dst), None)

    def _show_selection(self) -> None:
        state = self._selected_state()
        if state is None:
            self.selected = None
            self._selection.object = "_no connection selected: click an edge or a heatmap cell_"
            self.block_graph.highlight_edge(None)
            self.cell_graph.highlight_edge(None)
        else:
            scope, block, src, dst = self.selected
            where = "block wiring" if scope == "block" else f"cell wiring of block {block}"
            self._selection.object = f"selected ({where}): `{src}` -> `{dst}`, now **{STATE_NAMES[state]}**"
            (self.block_graph if scope == "block" else self.cell_graph).highlight_edge(src, dst)
            (self.cell_graph if scope == "block" else self.block_graph).highlight_edge(None)
        for st, b in self._set_buttons.items():
            b.disabled = state is None or st == state

    def set_selected(self, state: int):
        """Edit the selected connection to +1 (on), -1 (flipped) or 0 (off); the session reports the change."""
        if self.selected is None:
            raise ValueError("select a connection first: click an edge or a heatmap cell")
        scope, block, src, dst = self.selected
        return self.session.edit_connection(scope, block, src, dst, state)

    def cycle_cell_connection(self, src: str, dst: str):
        """Select a cell connection and move it one step along on -> flipped -> off -> on."""
        self.select_connection("cell", self.block, src, dst)
        return self.set_selected(wiring_tables.next_polarity(self._selected_state()))

    def apply_sparsity(self, event=None):
        self.session.sparsify(self.block, self.sparsity, self.seed)

    def export_graph(self, scope: str, fmt: str = "svg") -> bytes:
        """The block graph (scope "block") or the shown block's cell graph, with the current overlay, as a file."""
        from xlstm_viz.dashboard.figure_export import graph_plot

        names, conns = self._block_graph if scope == "block" else self._cell_graph
        values, sym = self.overlay_values(names)
        tok = "aggregate " + self.aggregate if self.token < 0 else f"token {self.token}"
        title = "blocks" if scope == "block" else f"cells of block {self.block}"
        return graph_plot(names, conns, values, title, value_title(self.stat, tok, diff=sym),
                          info=self.session.result.graphs.info, symmetric=sym, fmt=fmt)

    # -- layout ---------------------------------------------------------------------------------------
    def controls(self):
        token = pn.widgets.IntSlider.from_param(self.param.token, label="token (-1 = all)", end=64, width=230)

        def sync_token(*_):
            if self.session.tokens is not None:
                token.end = max(0, len(self.session.tokens) - 1)

        self.session.param.watch(sync_token, ["tokens"])
        sync_token()
        sparsify = pn.widgets.Button(label="Sparsify block", color="warning")
        sparsify.on_click(guarded(lambda e: self.apply_sparsity()))
        w = 230
        return pn.Column(
            pn.widgets.Select.from_param(self.param.stat, label="statistic", width=w), token,
            pn.widgets.Select.from_param(self.param.aggregate, label="aggregate", width=w),
            pn.widgets.RadioButtonGroup.from_param(self.param.overlay, width=w),
            int_input(self, "block", "block", width=w),
            pn.widgets.FloatSlider.from_param(self.param.sparsity, label="cell sparsity", width=w),
            int_input(self, "seed", "sparsity seed", width=w), sparsify,
            width=250,
        )

    def __panel__(self):
        return pn.Row(
            self.controls(),
            pn.Column(self._info, self._selection, pn.Row(*self._set_buttons.values()),
                      figure_pane(self.block_graph.figure, sizing_mode="stretch_width"),
                      download_buttons("block_graph", lambda fmt: self.export_graph("block", fmt), "block graph"),
                      figure_pane(self.cell_graph.figure, sizing_mode="stretch_width"),
                      download_buttons("cell_graph", lambda fmt: self.export_graph("cell", fmt), "cell graph"),
                      figure_pane(self.matrix_figure), sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
