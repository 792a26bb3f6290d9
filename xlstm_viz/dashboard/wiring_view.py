"""NCPS wiring view: layered graph + adjacency heatmap, click to cycle polarity, sparsity and builder forms.

Figures are built once in `__init__`; every edit replaces the ColumnDataSource data only, so a
browser keeps its zoom and the figure ids stay the same.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import panel as pn

from xlstm_viz.dashboard import offline as _offline  # noqa: F401  (notebook comm updates link no CDN stylesheet)
import param
from bokeh.events import Tap
from bokeh.models import (
    Arrow, ColorBar, ColumnDataSource, CustomJSHover, FixedTicker, HoverTool, LinearColorMapper, Range1d, TapTool,
    VeeHead,
)
from bokeh.plotting import figure

from xlstm_viz.dashboard import source_updates, wiring_tables
from xlstm_viz.dashboard.colors import POLARITY_COLORS, POLARITY_NAMES, ROLE_COLORS, add_legend, paper
from xlstm_viz.dashboard.figure_pane import figure_pane
from xlstm_viz.dashboard.inputs import int_input
from xlstm_viz.dashboard.notifications import guarded, page_text, notify_error

WIRING_KINDS = ("AutoNCP", "NCP", "Random", "FullyConnected")
# neuron activity (and its change): diverging, 0 white, as the dashboard's diff colours
from bokeh.palettes import PuOr11 as _PUOR  # noqa: E402

ACTIVITY_PALETTE = tuple(reversed(_PUOR))
# inhibitory red -> grey (half and half) -> excitatory green, the polarity colours of the single synapses
BUNDLE_PALETTE = tuple(
    "#%02x%02x%02x" % tuple(int(round(a + (b - a) * t)) for a, b in zip(lo, hi))
    for lo, hi, steps in (((0xd6, 0x27, 0x28), (0xb0, 0xb0, 0xb0), 32), ((0xb0, 0xb0, 0xb0), (0x2c, 0xa0, 0x2c), 32))
    for t in np.linspace(0, 1, steps)
)
# Bounds of what the NCPS view draws (builder form, JSON import, a model's wiring), checked before any matrix is
# made. Building an ncps-exact NCP draws its synapses one by one (the ncps random stream), and the view's tables
# are dense: measured on the 2-core machine under load, AutoNCP(1000, 16) on 128 inputs takes 3.7 s to build and
# 1.1 s to draw (157k synapses); at 2048 neurons on 256 inputs 16 s + 5 s, and the issue 17 report had
# units=12000 freeze the server. The wiring classes themselves allow up to checks.MAX_UNITS (4096).
MAX_VIEW_UNITS = 1024
MAX_VIEW_INPUTS = 256


# Building a wiring (its synapses are drawn one by one) and its view tables take seconds at the bounds; on the
# server's one thread that froze every session. In a served page they run on this worker (one per process: the
# machine is small, builds queue), and the result reaches the page as a scheduled, held document update.
_builder: ThreadPoolExecutor | None = None
_builder_lock = threading.Lock()


def _builder_pool() -> ThreadPoolExecutor:
    global _builder
    with _builder_lock:
        if _builder is None:
            _builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xlstm-viz-wiring")
        return _builder


def check_view_size(units, input_dim, what: str = "wiring") -> None:
    """Refuse a wiring too large for the NCPS view, naming the value and the bound."""
    if units is not None and units > MAX_VIEW_UNITS:
        raise ValueError(f"{what}: units={units} is above the NCPS view's bound of {MAX_VIEW_UNITS} neurons "
                         "(xlstm_viz.dashboard.wiring_view.MAX_VIEW_UNITS); build it in Python instead")
    if input_dim is not None and input_dim > MAX_VIEW_INPUTS:
        raise ValueError(f"{what}: input_dim={input_dim} is above the NCPS view's bound of {MAX_VIEW_INPUTS} "
                         "sensory inputs (xlstm_viz.dashboard.wiring_view.MAX_VIEW_INPUTS)")


def wiring_module():
    """Our editable wirings when present, else ncps (same constructor API)."""
    try:
        from xlstm_viz import wiring as mod

        mod.AutoNCP  # noqa: B018 - the package may exist as a placeholder without classes
        return mod
    except (ImportError, AttributeError):
        from ncps import wirings as mod

        return mod


def build_wiring(kind: str, units: int, output_dim: int, input_dim: int, sparsity: float = 0.5, seed: int = 22222,
                 inter: int = 0, command: int = 0):
    """A built wiring from the builder form's values; raises ValueError with the offending field."""
    mod = wiring_module()
    if input_dim < 1:
        raise ValueError(f"input_dim must be >= 1, got {input_dim}")
    check_view_size(units, input_dim, f"{kind} builder")
    if kind == "AutoNCP":
        w = mod.AutoNCP(units, output_dim, sparsity_level=sparsity, seed=seed)
    elif kind == "NCP":
        inter = inter or max(1, (units - output_dim) * 6 // 10)
        command = command or max(1, units - output_dim - inter)
        if inter + command + output_dim != units:
            raise ValueError(f"NCP: inter ({inter}) + command ({command}) + motor ({output_dim}) must equal units ({units})")
        fan = max(1, min(inter, int(round(inter * (1 - sparsity)))))
        cfan = max(1, min(command, int(round(command * (1 - sparsity)))))
        w = mod.NCP(inter, command, output_dim, sensory_fanout=fan, inter_fanout=cfan,
                    recurrent_command_synapses=max(1, int(round(command * 2 * (1 - sparsity)))),
                    motor_fanin=max(1, min(command, cfan)), seed=seed)
    elif kind == "Random":
        w = mod.Random(units, output_dim, sparsity_level=sparsity, random_seed=seed)
    elif kind == "FullyConnected":
        w = mod.FullyConnected(units, output_dim, erev_init_seed=seed)
    else:
        raise ValueError(f"wiring kind must be one of {WIRING_KINDS}, got {kind!r}")
    w.build(input_dim)
    return w


def set_synapse(wiring, kind: str, src: int, dest: int, polarity: int) -> None:
    """Edit one synapse through the wiring's own API (undoable `set_polarity` when it has one)."""
    if hasattr(wiring, "set_polarity"):
        wiring.set_polarity(src, dest, polarity, sensory=(kind == "sensory"))
    elif kind == "sensory":
        wiring.add_sensory_synapse(src, dest, polarity)
    else:
        wiring.add_synapse(src, dest, polarity)


def synapse_polarity(wiring, kind: str, src: int, dest: int) -> int:
    m = wiring.sensory_adjacency_matrix if kind == "sensory" else wiring.adjacency_matrix
    return int(m[src, dest])


def wiring_to_json(wiring) -> str:
    """Our wirings' own JSON (matrices + edit history); for ncps wirings, get_config with the matrices."""
    if hasattr(wiring, "to_json"):
        return wiring.to_json()
    cfg = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in wiring.get_config().items()}
    return json.dumps(cfg)


def wiring_from_json(text: str):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"wiring JSON is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("wiring JSON must be an object")
    # sizes are checked before the wiring (and its dense matrices) is made
    config = data.get("config") if isinstance(data.get("config"), dict) else data
    sizes = [config.get(k) for k in ("units", "input_dim")]
    if "inter_neurons" in config:  # an NCP config counts its layers
        layers = [config.get(k) for k in ("inter_neurons", "command_neurons", "motor_neurons")]
        if all(isinstance(v, int) for v in layers):
            sizes[0] = sum(layers)
    sizes[1] = data.get("input_dim", sizes[1])
    if all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in sizes):
        check_view_size(*sizes, what="wiring JSON")
    mod = wiring_module()
    if "format" in data and hasattr(mod.Wiring, "from_dict"):
        return mod.Wiring.from_dict(data)
    if "units" not in data or "adjacency_matrix" not in data:
        raise ValueError("wiring JSON needs 'units' and 'adjacency_matrix' (or be a document written by to_json)")
    return mod.Wiring.from_config(data)


def _held(doc, fn) -> None:
    with source_updates.held(doc):
        fn()


class WiringView(pn.viewable.Viewer):
    """Layered graph and adjacency heatmap of an ncps-style wiring; clicks edit it in place."""

    wiring = param.Parameter(doc="a built ncps-compatible wiring")
    edge_limit = param.Integer(default=wiring_tables.DEFAULT_EDGE_LIMIT, bounds=(1, None),
                               doc="above this many synapses the graph bundles edges per role pair")
    sparsity = param.Number(default=0.5, bounds=(0.0, 0.95), step=0.05, doc="fraction of synapse pairs left empty")
    seed = param.Integer(default=0, bounds=(0, None), doc="seed of the regenerated sparsity mask")
    version = param.Integer(default=0, doc="bumps on every edit (other views watch it)")
    last_edit = param.String(default="", doc="what the last click or control did")

    # builder form
    kind = param.Selector(default="AutoNCP", objects=list(WIRING_KINDS))
    units = param.Integer(default=28, bounds=(3, MAX_VIEW_UNITS))
    output_dim = param.Integer(default=4, bounds=(1, MAX_VIEW_UNITS))
    input_dim = param.Integer(default=6, bounds=(1, MAX_VIEW_INPUTS))
    build_sparsity = param.Number(default=0.5, bounds=(0.0, 0.95), step=0.05)
    build_seed = param.Integer(default=22222, bounds=(0, None))

    def __init__(self, wiring=None, apply_synapse=None, title: str | None = None, polarity_cycle=None, **params):
        if wiring is None:
            wiring = build_wiring("AutoNCP", 28, 4, 6)
        check_view_size(wiring.units, wiring.input_dim, type(wiring).__name__)
        super().__init__(wiring=wiring, **params)
        self._before_rebuild = []  # wirings replaced by a rebuild, for Undo
        self.apply_synapse = apply_synapse
        # what a click does to a synapse's polarity (+1 -> -1 -> 0 -> +1 by default)
        self.polarity_cycle = polarity_cycle or wiring_tables.next_polarity
        self._title = title
        self._overlay = None
        self.strip_source = ColumnDataSource({"x": [], "y": [], "value": [], "label": []})
        self._activity_mapper = LinearColorMapper(palette=ACTIVITY_PALETTE, low=-1.0, high=1.0)
        self._masked_from = None
        self._jobs = 0  # builds asked for (only the latest is shown)
        self.node_source = ColumnDataSource()
        self.edge_source = ColumnDataSource()
        self.bundle_source = ColumnDataSource()
        self.image_source = ColumnDataSource()
        self.band_source = ColumnDataSource()
        self.graph_figure = self._make_graph_figure()
        self.heatmap_figure = self._make_heatmap_figure()
        self._counts = pn.pane.Markdown("", margin=(0, 10))
        self._message = pn.pane.Markdown("", margin=(0, 10))
        self.refresh()

    # -- figures (built once) -------------------------------------------------------------------
    def _make_graph_figure(self):
        fig = figure(title="wiring (sensory | inter | command | motor)", height=430, sizing_mode="stretch_width",
                     tools="pan,wheel_zoom,box_zoom,reset,save", output_backend="webgl",
                     x_range=Range1d(-0.4, 3.4), y_range=Range1d(-0.05, 1.05), toolbar_location="above")
        fig.axis.visible = False
        fig.grid.visible = False
        share = LinearColorMapper(palette=BUNDLE_PALETTE, low=0.0, high=1.0)
        bundles = fig.patches("xs", "ys", source=self.bundle_source,
                              fill_color={"field": "excitatory_share", "transform": share}, fill_alpha="alpha",
                              line_color={"field": "excitatory_share", "transform": share}, line_alpha=0.6,
                              line_width=1)
        self._bundle_bar = ColorBar(color_mapper=share, title="bundle: excitatory share", width=8,
                                    ticker=FixedTicker(ticks=[0, 0.5, 1]), title_text_font_size="8pt",
                                    major_label_text_font_size="8pt", visible=False)
        fig.add_layout(self._bundle_bar, "right")
        edges = fig.segment("x0", "y0", "x1", "y1", source=self.edge_source, line_color="color", line_width=1.2,
                            line_alpha=0.55, selection_line_color="color", selection_line_width=3,
                            nonselection_line_alpha=0.55)
        self.arrows = Arrow(source=self.edge_source, x_start="stem_x", y_start="stem_y", x_end="head_x",
                            y_end="head_y", line_color="color", line_alpha=0.55, line_width=1.2,
                            end=VeeHead(size=7, fill_color="color", line_color="color", fill_alpha=0.8))
        fig.add_layout(self.arrows)
        nodes = fig.scatter("x", "y", source=self.node_source, size="size", fill_color="color", line_color="#333333",
                            line_width=0.5)
        # the live model's activity: the same nodes filled by value, outlined in their role colour
        self._activity_nodes = fig.scatter("x", "y", source=self.node_source, size="size", line_color="color",
                                           line_width=2, fill_color={"field": "value",
                                                                     "transform": self._activity_mapper},
                                           visible=False)
        fig.add_tools(HoverTool(renderers=[nodes, self._activity_nodes],
                                tooltips=[("node", "@id"), ("role", "@role"), ("in/out", "@in_degree / @out_degree"),
                                          ("activity", "@value{0.000}")]))
        fig.add_tools(HoverTool(renderers=[edges], tooltips=[("synapse", "@src_id -> @dst_id"),
                                                             ("roles", "@src_role -> @dst_role"),
                                                             ("polarity", "@polarity_name (@polarity)")],
                                line_policy="interp"))
        fig.add_tools(HoverTool(renderers=[bundles], tooltips=[("bundle", "@src_role -> @dst_role"),
                                                               ("neurons", "@sources -> @targets"),
                                                               ("excitatory", "@excitatory"),
                                                               ("inhibitory", "@inhibitory")]))
        fig.add_tools(TapTool(renderers=[edges]))
        graph_bar = ColorBar(color_mapper=self._activity_mapper, title="activity", width=8, visible=False,
                             title_text_font_size="8pt", major_label_text_font_size="8pt")
        fig.add_layout(graph_bar, "right")
        self._activity_bars = [graph_bar]
        add_legend(fig, [(r, "square", c) for r, c in ROLE_COLORS.items()]
                   + [(f"{POLARITY_NAMES[p]} synapse", "line", POLARITY_COLORS[p]) for p in (1, -1)],
                   title="neuron role / synapse")
        self.edge_source.selected.on_change("indices", self._on_edge_tap)
        self._edge_renderer = edges
        return fig

    def _make_heatmap_figure(self):
        fig = figure(title="adjacency (rows: source, sensory on top; columns: target; click a cell to edit)",
                     height=430, sizing_mode="stretch_width", tools="pan,wheel_zoom,box_zoom,reset,save,tap",
                     output_backend="webgl", toolbar_location="above",
                     # explicit ranges, set to the matrix on every refresh: the matrix fills the plot at any size
                     x_range=Range1d(-2, 1), y_range=Range1d(-2, 1))
        fig.grid.visible = False
        mapper = LinearColorMapper(palette=[POLARITY_COLORS[-1], paper(), POLARITY_COLORS[1]], low=-1.5, high=1.5)
        fig.add_layout(ColorBar(color_mapper=mapper, title="synapse polarity", width=10,
                                ticker=FixedTicker(ticks=[-1, 0, 1]), title_text_font_size="9pt",
                                major_label_overrides={-1: "inhibitory", 0: "none", 1: "excitatory"}), "right")
        img = fig.image(image="image", x=0, y=0, dw="dw", dh="dh", source=self.image_source, color_mapper=mapper)
        fig.rect("x", "y", "width", "height", source=self.band_source, fill_color="color", line_color=None,
                 fill_alpha=0.9)
        # The image glyph's hover only knows pixel values: the neuron under the cursor is looked up in the
        # browser from the displayed row/column (labels sources updated with the matrix).
        self.col_labels = ColumnDataSource({"label": []})
        self.row_labels = ColumnDataSource({"label": []})
        lookup = """const l = src.data.label; const i = %s;
                    return (i >= 0 && i < l.length) ? l[i] : "";"""
        target = CustomJSHover(args={"src": self.col_labels}, code=lookup % "Math.floor(value)")
        source = CustomJSHover(args={"src": self.row_labels}, code=lookup % "l.length - 1 - Math.floor(value)")
        fig.add_tools(HoverTool(renderers=[img], tooltips=[("source", "$y{custom}"), ("target", "$x{custom}"),
                                                           ("polarity", "@image")],
                                formatters={"$x": target, "$y": source}))
        # activity strip above the columns: each target neuron's activity at the overlay's token
        strip = fig.rect("x", "y", 1.0, 1.5, source=self.strip_source, line_color=None,
                         fill_color={"field": "value", "transform": self._activity_mapper})
        fig.add_tools(HoverTool(renderers=[strip], tooltips=[("neuron", "@label"), ("activity", "@value{0.000}")]))
        strip_bar = ColorBar(color_mapper=self._activity_mapper, title="activity (strip above the columns)",
                             height=8, orientation="horizontal", visible=False, title_text_font_size="8pt",
                             major_label_text_font_size="8pt")
        fig.add_layout(strip_bar, "below")
        self._activity_bars.append(strip_bar)
        fig.on_event(Tap, self._on_heatmap_tap)
        fig.xaxis.axis_label = "target neuron (display order)"
        fig.yaxis.axis_label = "source"
        return fig

    # -- data refresh (sources only) ------------------------------------------------------------
    def tables(self, wiring) -> dict:
        """The view's tables of `wiring` (pure numpy: runs on any thread)."""
        nodes, edges, bundles = wiring_tables.graph_tables(wiring, self.edge_limit)
        im = wiring_tables.adjacency_image(wiring)
        bands = [wiring_tables.role_bands(im["col_role"], "cols", im["cols"]),
                 wiring_tables.role_bands(im["row_role"], "rows", im["rows"])]
        nodes["value"] = np.full(len(nodes["id"]), np.nan)
        return {"nodes": nodes, "edges": edges, "bundles": bundles, "image": im,
                "band": {k: np.concatenate([b[k] for b in bands]) for k in bands[0]},
                "counts": wiring_tables.synapse_counts(wiring)}

    def refresh(self, tables: dict | None = None) -> None:
        """Swap the source data for the wiring's tables (computed here unless given)."""
        t = self.tables(self.wiring) if tables is None else tables
        nodes, edges, bundles, im, band = t["nodes"], t["edges"], t["bundles"], t["image"], t["band"]
        self._image = im
        self._edges = edges
        source_updates.replace_data(self.node_source, nodes)
        source_updates.replace_data(self.edge_source, edges)
        source_updates.replace_data(self.bundle_source, bundles)
        source_updates.replace_data(self.image_source, {"image": [im["image"]], "dw": [im["cols"]], "dh": [im["rows"]]})
        source_updates.replace_data(self.band_source, band)
        source_updates.replace_data(self.col_labels, {"label": im["col_label"]})
        source_updates.replace_data(self.row_labels, {"label": im["row_label"]})
        # the role strips sit in [-1.75, -0.25]; the matrix in [0, cols] x [0, rows]
        fig = self.heatmap_figure
        if (fig.x_range.end, fig.y_range.end) != (im["cols"], im["rows"]):
            source_updates.set_props(fig.x_range, start=-1.8, end=im["cols"])
            source_updates.set_props(fig.y_range, start=-1.8, end=im["rows"])
        if self._overlay is not None and len(self._overlay[0]) == self.wiring.units:
            self._apply_overlay()
        c = t["counts"]
        bundled = " (edges bundled per role pair: too many to draw)" if len(bundles["count"]) else ""
        source_updates.set_props(self._bundle_bar, visible=bool(len(bundles["count"])))
        kind = self.wiring_kind()
        was = f" (was {type(self.wiring).__name__}, re-masked)" if kind != type(self.wiring).__name__ else ""
        self._counts.object = (f"**{kind}**{was}: {c['neurons']} neurons, {c['sensory']} sensory inputs, "
                               f"{c['synapses']} synapses + {c['sensory_synapses']} sensory "
                               f"({c['excitatory']} excitatory / {c['inhibitory']} inhibitory){bundled}")

    def _off_thread(self, make, said: str, busy: str) -> None:
        """Show the wiring `make()` returns, built with its tables off the server thread in a served page (inline
        elsewhere); a failure is reported by name and the shown wiring stays. Of several builds asked for in a row,
        the last one is shown."""
        def work():
            wiring = make()
            return wiring, self.tables(wiring)

        def show(value):
            self._masked_from = None
            self.wiring = value[0]
            self._edited(said(value[0]) if callable(said) else said, value[1])

        doc = pn.state.curdoc
        if doc is None or doc.session_context is None:
            show(work())
            return
        self._jobs += 1
        job = self._jobs
        self._message.object = busy
        from panel.io.state import set_curdoc

        def deliver(fut):
            def apply():
                if job != self._jobs:  # a newer build was asked for: this one is not shown
                    return
                exc = fut.exception()
                if exc is not None:
                    self._message.object = f"not built: {page_text(exc)}"
                    notify_error(exc)
                else:
                    show(fut.result())

            if doc.session_context is not None:
                with set_curdoc(doc):
                    pn.state.execute(lambda: _held(doc, apply), schedule=True)

        _builder_pool().submit(work).add_done_callback(deliver)

    def _edited(self, text: str, tables: dict | None = None) -> None:
        self.last_edit = text
        self._message.object = page_text(text)
        self.refresh(tables)
        self.version += 1

    # -- edits ------------------------------------------------------------------------------------
    def cycle_synapse(self, kind: str, src: int, dest: int) -> int:
        """Cycle one synapse +1 -> -1 -> 0 -> +1 and return its new polarity.

        With `apply_synapse` set (the live model's view), the edit is handed to it (a message to the model thread,
        which edits the wiring and re-runs) and the view refreshes when that calls `edited(...)`.
        """
        new = self.polarity_cycle(synapse_polarity(self.wiring, kind, src, dest))
        text = f"{kind} synapse {'s' if kind == 'sensory' else 'n'}{src} -> n{dest}: polarity now {new:+d}"
        if self.apply_synapse is not None:
            self.apply_synapse(kind, src, dest, new, text)
            return new
        set_synapse(self.wiring, kind, src, dest, new)
        self._edited(text)
        return new

    def edited(self, text: str) -> None:
        """Refresh after an edit made elsewhere (the model thread) and announce it."""
        self._edited(text)

    # -- activity overlay (the live model's neurons) ------------------------------------------------
    def set_overlay(self, values, label: str = "activity", symmetric: bool = True) -> None:
        """Colour each neuron by `values` [units] (by neuron id; sensory nodes stay grey) on the graph and in the
        strip above the heatmap's columns; None removes the overlay."""
        if values is None:
            self._overlay = None
        else:
            values = np.asarray(values, dtype=float)
            if values.shape != (self.wiring.units,):
                raise ValueError(f"overlay values have shape {values.shape}, the wiring has {self.wiring.units} neurons")
            self._overlay = (values, label, symmetric)
        self._apply_overlay()

    def _apply_overlay(self) -> None:
        nodes = dict(self.node_source.data)
        strip = {"x": [], "y": [], "value": [], "label": []}
        if self._overlay is None:
            nodes["value"] = np.full(len(nodes["id"]), np.nan)
            visible = False
        else:
            values, label, symmetric = self._overlay
            neuron = np.asarray(nodes["kind"]) == "neuron"
            v = np.full(len(nodes["id"]), np.nan)
            v[neuron] = values[np.asarray(nodes["neuron"])[neuron]]
            nodes["value"] = v
            cols = self._image["col_id"]
            strip = {"x": np.arange(len(cols)) + 0.5, "y": np.full(len(cols), self._image["rows"] + 1.0),
                     "value": values[cols], "label": self._image["col_label"]}
            top = float(np.nanmax(np.abs(values))) if len(values) else 1.0
            top = top if top > 0 else 1.0
            lo, hi = (-top, top) if symmetric else (float(np.nanmin(values)), float(np.nanmax(values)) or 1.0)
            source_updates.set_props(self._activity_mapper, low=lo, high=hi if hi > lo else lo + 1.0)
            for bar in self._activity_bars:
                source_updates.set_props(bar, title=label)
            visible = True
        source_updates.replace_data(self.node_source, nodes)
        source_updates.replace_data(self.strip_source, strip)
        for r in (self._activity_nodes, *self._activity_bars):
            source_updates.set_props(r, visible=visible)
        rows = self._image["rows"] + (2.6 if visible else 0)
        source_updates.set_props(self.heatmap_figure.y_range, end=rows)

    def _on_heatmap_tap(self, event) -> None:
        cell = wiring_tables.cell_at(self._image, event.x, event.y)
        if cell is not None:
            self.cycle_synapse(*cell)

    def _on_edge_tap(self, attr, old, new) -> None:
        if not new:
            return
        i = new[0]
        kind = "sensory" if bool(self._edges["sensory"][i]) else "neuron"
        src, dst = int(self._edges["src"][i]), int(self._edges["dst"][i])
        self.edge_source.selected.indices = []
        self.cycle_synapse(kind, src, dst)

    def apply_sparsity(self, event=None) -> None:
        """Regenerate the synapses at `sparsity` from `seed`, keeping what the wiring's kind allows.

        An NCP (AutoNCP included) is rebuilt with the same layer sizes, so synapses still only run
        sensory -> inter -> command -> motor (a whole-matrix mask would create motor -> inter ones while
        the header still said AutoNCP). Other wirings get a whole-matrix mask; a FullyConnected one is
        then no longer fully connected, and the header says so.
        """
        w, kind = self.wiring, type(self.wiring).__name__
        if self.wiring_kind() in ("AutoNCP", "NCP"):
            self._before_rebuild.append(w)
            if kind == "AutoNCP":
                self.wiring = build_wiring("AutoNCP", w.units, w.output_dim, w.input_dim, self.sparsity, self.seed)
            else:
                inter, command = w._num_inter_neurons, w._num_command_neurons
                self.wiring = build_wiring("NCP", w.units, w.output_dim, w.input_dim, self.sparsity, self.seed,
                                           inter=inter, command=command)
            self._edited(f"{kind} rebuilt at sparsity {self.sparsity:.2f} from seed {self.seed}: the NCP layering "
                         "(sensory -> inter -> command -> motor) is kept; earlier synapse edits were replaced")
            return
        if hasattr(w, "set_sparsity"):
            w.set_sparsity(self.sparsity, seed=self.seed)
        elif kind == "Random":  # an ncps wiring cannot re-mask: rebuild the same kind with the new level
            self._before_rebuild.append(w)
            self.wiring = build_wiring(kind, w.units, w.output_dim, w.input_dim, self.sparsity, self.seed)
        else:
            raise ValueError(f"sparsity regeneration needs xlstm_viz.wiring or an AutoNCP/NCP/Random wiring, got {kind}")
        note = ""
        if self.wiring_kind() == "FullyConnected" and self.sparsity > 0:
            self._masked_from = "FullyConnected"
            note = "; the wiring is no longer fully connected: it is now a Random-style sparse wiring"
        self._edited(f"sparsity {self.sparsity:.2f} regenerated from seed {self.seed}{note}")

    def wiring_kind(self) -> str:
        """What the wiring is now (a masked FullyConnected is shown as Random)."""
        kind = type(self.wiring).__name__
        if kind == "FullyConnected" and self._masked_from == "FullyConnected":
            return "Random"
        return kind

    def undo(self, event=None) -> None:
        if not getattr(self.wiring, "history", ()) and self._before_rebuild:
            self.wiring = self._before_rebuild.pop()
            self._edited("undid the last rebuild")
            return
        if not hasattr(self.wiring, "undo") or not getattr(self.wiring, "history", ()):
            self._message.object = "nothing to undo"
            return
        self.wiring.undo()
        self._edited("undid the last edit")

    def build_from_form(self, event=None) -> None:
        args = (self.kind, self.units, self.output_dim, self.input_dim, self.build_sparsity, self.build_seed)
        what = f"{self.kind}({self.units}, {self.output_dim}) on {self.input_dim} inputs"
        self._off_thread(lambda: build_wiring(*args), f"built {what}", f"_building {what}..._")

    def set_wiring(self, wiring) -> None:
        check_view_size(wiring.units, wiring.input_dim, type(wiring).__name__)
        self._off_thread(lambda: wiring, f"loaded {type(wiring).__name__}", "_drawing the wiring..._")

    def load_json(self, text: str) -> None:
        """Show the wiring of a JSON document (`wiring_to_json`, or an ncps config); parsed off the server thread."""
        self._off_thread(lambda: wiring_from_json(text), lambda w: f"loaded {type(w).__name__}",
                         "_reading the wiring JSON..._")

    # -- layout -----------------------------------------------------------------------------------
    def controls(self):
        sparsity = pn.widgets.FloatSlider.from_param(self.param.sparsity, label="sparsity")
        seed = int_input(self, "seed", "mask seed")
        regen = pn.widgets.Button(label="Regenerate mask", color="primary")
        regen.on_click(self._guarded(self.apply_sparsity))
        undo = pn.widgets.Button(label="Undo", color="default")
        undo.on_click(self._guarded(self.undo))
        build = pn.widgets.Button(label="Build wiring", color="primary")
        build.on_click(self._guarded(self.build_from_form))
        # Number fields, not sliders: sizes run from 3 to thousands, and a slider over that range cannot hit a
        # value (int_input reports an out-of-range entry instead of clamping it).
        form = pn.Column(
            pn.widgets.Select.from_param(self.param.kind, name="kind", width=250),
            int_input(self, "units", f"units (3..{MAX_VIEW_UNITS})", width=250),
            int_input(self, "output_dim", "output_dim (motor neurons)", width=250),
            int_input(self, "input_dim", f"input_dim (sensory, 1..{MAX_VIEW_INPUTS})", width=250),
            pn.widgets.FloatSlider.from_param(self.param.build_sparsity, name="sparsity", width=250),
            int_input(self, "build_seed", "seed", width=250),
        )
        return pn.Column(
            pn.pane.Markdown("#### Edit"), sparsity, seed, pn.Row(regen, undo),
            pn.pane.Markdown("#### New wiring"), form, build,
            width=280,
        )

    @staticmethod
    def _guarded(fn):
        return guarded(fn)

    def __panel__(self):
        return pn.Column(
            *([pn.pane.Markdown(self._title)] if self._title else []),
            self._counts, self._message,
            pn.Row(figure_pane(self.graph_figure, sizing_mode="stretch_width"),
                   figure_pane(self.heatmap_figure, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
            # a live model's wiring is edited by clicks only (the builder would replace it by a detached one)
            *([] if self.apply_synapse is not None else [self.controls()]), sizing_mode="stretch_width",
        )

