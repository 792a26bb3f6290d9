"""Over-time view of a trace: per-head gate and memory heatmaps, top-k predictions, any probe's statistic."""

from __future__ import annotations

import numpy as np
import panel as pn

from xlstm_viz.dashboard import offline as _offline  # noqa: F401  (notebook comm updates link no CDN stylesheet)
import param
from bokeh.models import ColumnDataSource, FixedTicker, HoverTool, Range1d
from bokeh.plotting import figure

from xlstm_viz.dashboard import source_updates, trace_tables

PANEL_HEIGHT = 150


def _empty_heat():
    return {k: [] for k in ("pos", "head", "value", "color", "value_text")}


class TraceView(pn.viewable.Viewer):
    """Show a Trace; set `trace` to a new one (or follow a session) and the figures update in place."""

    trace = param.Parameter(default=None, doc="xlstm_viz.execution.Trace (numpy)")
    block = param.Integer(default=0, bounds=(0, None))
    probe = param.Selector(default=None, objects=[], doc="any recorded probe")
    stat = param.Selector(default="absmax", objects=["absmax"])
    top_k = param.Integer(default=3, bounds=(1, 10))

    def __init__(self, trace=None, decode=None, session=None, **params):
        super().__init__(**params)
        self.decode = decode
        self.x_range = Range1d(-0.5, 1.5)
        self.panels = []  # (title pane, figure, source)
        for suffix, stat, title in trace_tables.GATE_PANELS:
            src = ColumnDataSource(_empty_heat())
            self.panels.append((suffix, stat, self._heat_figure(title, src), src))
        self.probe_source = ColumnDataSource(_empty_heat())
        self.probe_figure = self._heat_figure("selected probe", self.probe_source)
        self.topk_source = ColumnDataSource({k: [] for k in ("pos", "rank", "token", "prob", "text", "is_next",
                                                              "color")})
        self.topk_figure = self._topk_figure()
        if session is not None:
            self.decode = decode or session.decode_one
            session.param.watch(lambda e: setattr(self, "trace", e.new), ["trace"])
            trace = trace if trace is not None else session.trace
        if trace is not None:
            self.trace = trace

    def _heat_figure(self, title, source):
        fig = figure(title=title, height=PANEL_HEIGHT, sizing_mode="stretch_width", x_range=self.x_range,
                     tools="xpan,xwheel_zoom,reset,save", toolbar_location="right", output_backend="webgl")
        r = fig.rect("pos", "head", 1, 1, source=source, fill_color="color", line_color=None)
        fig.add_tools(HoverTool(renderers=[r], tooltips=[("token", "@pos{0}"), ("head", "@head{0}"),
                                                         ("value", "@value_text")]))
        fig.yaxis.axis_label = "head"
        fig.grid.visible = False
        return fig

    def _topk_figure(self):
        fig = figure(title="top-k next-token predictions (darker = more probable, bold = the actual next token)",
                     height=140, sizing_mode="stretch_width", x_range=self.x_range, tools="xpan,xwheel_zoom,reset",
                     toolbar_location="right")
        fig.rect("pos", "rank", 0.95, 0.9, source=self.topk_source, fill_color="color", line_color=None)
        fig.text("pos", "rank", text="text", source=self.topk_source, text_align="center", text_baseline="middle",
                 text_font_size="8pt")
        fig.add_tools(HoverTool(tooltips=[("pos", "@pos{0}"), ("rank", "@rank{0}"), ("token", "@text"),
                                          ("p", "@prob{0.000}")]))
        fig.y_range.flipped = True
        fig.yaxis.axis_label = "rank"
        fig.grid.visible = False
        return fig

    # -- updates ----------------------------------------------------------------------------------------
    @param.depends("trace", watch=True)
    def _trace_changed(self):
        tr = self.trace
        if tr is None:
            return
        probes = list(tr.probes)
        nblocks = 1 + max([int(p.split(".")[1]) for p in probes if p.startswith("blocks.")], default=0)
        self.param.block.bounds = (0, nblocks - 1)
        self.param.probe.objects = probes
        if self.probe not in probes:
            self.probe = next((p for p in probes if p.endswith("mlstm.h")), probes[0]) if probes else None
        self.refresh()

    @param.depends("block", "probe", "stat", "top_k", watch=True)
    def refresh(self):
        tr = self.trace
        if tr is None:
            return
        S = tr.tokens.shape[1]
        labels = trace_tables.token_labels(tr.tokens[0], self.decode)

        def axes():
            self.x_range.update(start=-0.5, end=S - 0.5)
            for _, _, fig, _ in self.panels:
                fig.xaxis.ticker = FixedTicker(ticks=list(range(S)))
                fig.xaxis.major_label_overrides = {i: labels[i].split(":", 1)[1] for i in range(S)}
                fig.xaxis.major_label_orientation = 1.2 if S > 16 else 0.0

        source_updates.apply(self.x_range, axes)
        for suffix, stat, fig, src in self.panels:
            probe = f"blocks.{self.block}.{suffix}"
            stats = tr.stats.get(probe, {})
            use = stat if stat in stats else ("mean" if "mean" in stats and suffix != "mlstm.memory" else None)
            data = trace_tables.head_time_table(tr, probe, use) if use else _empty_heat()
            source_updates.replace_data(src, data)
        if self.probe in tr.stats:
            names = sorted(tr.stats[self.probe])
            if self.param.stat.objects != names:
                self.param.stat.objects = names
            if self.stat not in names:
                self.stat = "absmax" if "absmax" in names else names[0]
                return  # the stat change re-enters refresh
            source_updates.replace_data(self.probe_source, trace_tables.head_time_table(tr, self.probe, self.stat))
            source_updates.set_props(self.probe_figure.title, text=f"{self.probe}: {self.stat}")
        topk = trace_tables.top_k_table(tr, self.top_k, decode=self.decode)
        shade = (255 - np.clip(topk["prob"], 0, 1) * 180).astype(int)
        topk["color"] = np.array([f"#{v:02x}{v:02x}ff" for v in shade], dtype=object)
        topk["text"] = np.array([f"*{t}*" if n else t for t, n in zip(topk["text"], topk["is_next"])], dtype=object)
        source_updates.replace_data(self.topk_source, topk)

    def __panel__(self):
        controls = pn.Row(
            pn.widgets.IntInput.from_param(self.param.block, name="block", width=100),
            pn.widgets.Select.from_param(self.param.probe, name="probe", width=260),
            pn.widgets.Select.from_param(self.param.stat, name="statistic", width=140),
            pn.widgets.IntInput.from_param(self.param.top_k, name="top-k", width=80),
        )
        figs = [pn.pane.Bokeh(f, sizing_mode="stretch_width") for _, _, f, _ in self.panels]
        return pn.Column(controls, pn.pane.Bokeh(self.topk_figure, sizing_mode="stretch_width"), *figs,
                         pn.pane.Bokeh(self.probe_figure, sizing_mode="stretch_width"), sizing_mode="stretch_width")
