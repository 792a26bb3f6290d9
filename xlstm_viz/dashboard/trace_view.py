"""Over-time view of a trace: per-head gate and memory heatmaps, top-k predictions, any probe's statistic."""

from __future__ import annotations

import numpy as np
import panel as pn

from xlstm_viz.dashboard import offline as _offline  # noqa: F401  (notebook comm updates link no CDN stylesheet)
import param
from bokeh.models import (BasicTicker, ColumnDataSource, CustomJS, CustomJSTickFormatter, HoverTool, Range1d,
                          SingleIntervalTicker)
from bokeh.plotting import figure

from xlstm_viz.dashboard import source_updates, trace_tables
from xlstm_viz.dashboard.colors import prob_color, probability_palette, update_color_bar, value_color_bar
from xlstm_viz.dashboard.figure_export import download_buttons
from xlstm_viz.dashboard.figure_pane import figure_pane
from xlstm_viz.dashboard.inputs import int_input
from xlstm_viz.dashboard.token_text import TokenText

PANEL_HEIGHT = 150
WINDOW = 256  # tokens shown at once by default; longer traces page (and pan/zoom) instead of squeezing
# The x axis labels tokens through one ticker and one formatter shared by every panel, made once: a run changes
# only the formatter's labels, and the ticker picks a readable number of ticks at every zoom level.
TICK_CODE = "const i = Math.round(tick); return (Math.abs(tick - i) < 1e-6 && i >= 0 && i < labels.length) ? labels[i] : '';"


def _empty_heat():
    return {k: [] for k in ("pos", "token", "head", "value", "color", "value_text")}


TOPK_TEXT_MIN_PX = 16  # pixels per token column below which the top-k texts (7pt, ~3 characters) overlap


class TraceView(pn.viewable.Viewer):
    """Show a Trace; set `trace` to a new one (or follow a session) and the figures update in place."""

    trace = param.Parameter(default=None, doc="xlstm_viz.execution.Trace (numpy)")
    block = param.Integer(default=0, bounds=(0, None))
    probe = param.Selector(default=None, objects=[], doc="any recorded probe")
    stat = param.Selector(default="absmax", objects=["absmax"])
    top_k = param.Integer(default=3, bounds=(1, 10))
    first_token = param.Integer(default=0, bounds=(0, None), doc="first token position shown")
    window = param.Integer(default=WINDOW, bounds=(8, 4096), doc="how many tokens are shown at once")

    def __init__(self, trace=None, decode=None, session=None, **params):
        super().__init__(**params)
        self.decode = decode
        self.x_range = Range1d(-0.5, 1.5)
        self.ticker = BasicTicker(desired_num_ticks=24, min_interval=1)
        self.formatter = CustomJSTickFormatter(args={"labels": []}, code=TICK_CODE)
        self.token_text = TokenText()
        self._bars = {}  # id(source) -> (colour mapper, colour bar) of that heatmap
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
        mapper, bar = value_color_bar("")
        fig.add_layout(bar, "right")
        self._bars[id(source)] = (mapper, bar)
        r = fig.rect("pos", "head", 1, 1, source=source, fill_color="color", line_color=None)
        fig.add_tools(HoverTool(renderers=[r], tooltips=[("token", "@token"), ("position", "@pos{0}"),
                                                         ("head", "@head{0}"),
                                                         ("value", "@value_text")]))
        fig.yaxis.axis_label = "head"
        fig.xaxis.ticker, fig.xaxis.formatter = self.ticker, self.formatter
        fig.xaxis.major_label_orientation = 1.0
        fig.grid.visible = False
        return fig

    def _topk_figure(self):
        fig = figure(title="top-k next-token predictions (darker = more probable, bold = the actual next token)",
                     height=140, sizing_mode="stretch_width", x_range=self.x_range, tools="xpan,xwheel_zoom,reset",
                     toolbar_location="right")
        fig.rect("pos", "rank", 0.95, 0.9, source=self.topk_source, fill_color="color", line_color=None)
        mapper, bar = value_color_bar("p", palette=probability_palette(), low=0.0, high=1.0)
        fig.add_layout(bar, "right")
        # dark text in either theme: the cells are light to mid blue
        self.topk_text = fig.text("pos", "rank", text="text", source=self.topk_source, text_align="center",
                                  text_baseline="middle", text_font_size="7pt", text_color="#111111")
        # The token texts are drawn only while a column is wide enough for one (TOPK_TEXT_MIN_PX): at 256 tokens
        # in view they would be a smear of overlapping glyphs. The page decides, since only it knows the width;
        # zooming in (or fewer tokens shown) brings them back. The colours and the tooltip stay either way.
        show = CustomJS(args={"fig": fig, "xr": self.x_range, "text": self.topk_text},
                        code=f"""const span = xr.end - xr.start, w = fig.inner_width;
if (span > 0 && w > 0) {{ const on = w / span >= {TOPK_TEXT_MIN_PX}; if (text.visible != on) text.visible = on; }}""")
        self.x_range.js_on_change("start", show)
        self.x_range.js_on_change("end", show)
        fig.js_on_change("inner_width", show)
        fig.add_tools(HoverTool(tooltips=[("pos", "@pos{0}"), ("rank", "@rank{0}"), ("token", "@text"),
                                          ("p", "@prob{0.000}")]))
        fig.y_range.flipped = True
        fig.xaxis.ticker, fig.xaxis.formatter = self.ticker, self.formatter
        fig.yaxis.axis_label = "rank"
        fig.yaxis.ticker = SingleIntervalTicker(interval=1)  # ranks are whole numbers (the auto ticker drew 0.5, 1.5)
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
        # Decide the probe before touching the options: new options make the linked select pick their first entry
        # (`embedding`) and write it back, which used to replace the user's probe.
        keep = self.probe if self.probe in probes else (
            next((p for p in probes if p.endswith("mlstm.h")), probes[0]) if probes else None)
        if list(self.param.probe.objects) != probes:
            self.param.probe.objects = probes
        if self.probe != keep:
            self.probe = keep
        self.refresh()

    @param.depends("block", "probe", "stat", "top_k", watch=True)
    def refresh(self):
        tr = self.trace
        if tr is None:
            return
        S = tr.tokens.shape[1]
        labels = trace_tables.token_labels(tr.tokens[0], self.decode)

        short = [lab.split(":", 1)[1] for lab in labels]
        if list(self.formatter.args.get("labels", [])) != short:
            source_updates.apply(self.formatter, lambda: setattr(self.formatter, "args", {"labels": short}))
        self._set_window(S)
        # The panels of the shown block's type (its table's `panels`: the mLSTM gates and memory, or the sLSTM's);
        # slots this block type does not use stay empty.
        shown = trace_tables.gate_panels(tr, self.block)
        for k, (_, _, fig, src) in enumerate(self.panels):
            probe, use, title = shown[k] if k < len(shown) else (None, None, "")
            data = self._with_tokens(trace_tables.head_time_table(tr, probe, use), short) if use else _empty_heat()
            source_updates.replace_data(src, data)
            source_updates.set_props(fig.title, text=title)
            self._match_bar(src, data["value"], use or "no data")
        if self.probe in tr.stats:
            names = sorted(tr.stats[self.probe])
            if self.param.stat.objects != names:
                self.param.stat.objects = names
            if self.stat not in names:
                self.stat = "absmax" if "absmax" in names else names[0]
                return  # the stat change re-enters refresh
            data = self._with_tokens(trace_tables.head_time_table(tr, self.probe, self.stat), short)
            source_updates.replace_data(self.probe_source, data)
            self._match_bar(self.probe_source, data["value"], self.stat)
            source_updates.set_props(self.probe_figure.title, text=f"{self.probe}: {self.stat}")
            per_token = np.asarray(tr.stats[self.probe][self.stat][0], dtype=np.float64)
            per_token = per_token.mean(-1) if per_token.ndim == 2 else per_token
            self.token_text.show(short, per_token, f"{self.probe}: {self.stat}, mean over heads")
        topk = trace_tables.top_k_table(tr, self.top_k, decode=self.decode)
        topk["color"] = np.array([prob_color(p) for p in topk["prob"]], dtype=object)
        topk["text"] = np.array([f"*{t}*" if n else t for t, n in zip(topk["text"], topk["is_next"])], dtype=object)
        source_updates.replace_data(self.topk_source, topk)

    @staticmethod
    def _with_tokens(data: dict, short: list[str]) -> dict:
        """The token text of each cell, for the hover (the axis shows only some of them)."""
        return {**data, "token": np.array([short[int(p)] for p in data["pos"]], dtype=object)}

    @param.depends("first_token", "window", watch=True)
    def _page(self):
        if self.trace is not None:
            self._set_window(self.trace.tokens.shape[1])

    def _set_window(self, S: int) -> None:
        """Show tokens [first_token, first_token + window) (all of them when they fit)."""
        start = min(self.first_token, max(S - self.window, 0))
        end = min(start + self.window, S)
        source_updates.set_props(self.x_range, start=start - 0.5, end=end - 0.5)

    def _match_bar(self, source, values, title) -> None:
        mapper, bar = self._bars[id(source)]
        source_updates.apply(mapper, lambda: update_color_bar(mapper, bar, values, title=title))

    def export_heatmap(self, fmt: str = "svg") -> bytes:
        """The selected probe's statistic over heads and tokens (the bottom heatmap) as a file."""
        from xlstm_viz.dashboard.figure_export import trace_heatmap

        return trace_heatmap(self.trace, self.probe, self.stat, decode=self.decode, fmt=fmt)

    def __panel__(self):
        # a FlexBox wraps the fields onto a second line where a Row ran past the card (at 1280 px "tokens shown"
        # was cut off at the right edge)
        controls = pn.FlexBox(
            int_input(self, "block", "block", width=100),
            pn.widgets.Select.from_param(self.param.probe, label="probe", width=260),
            pn.widgets.Select.from_param(self.param.stat, label="statistic", width=140),
            int_input(self, "top_k", "top-k", width=80),
            int_input(self, "first_token", "first token shown", width=120),
            int_input(self, "window", "tokens shown", width=100),
            flex_wrap="wrap", sizing_mode="stretch_width",
        )
        # one group: the panels share the x axis, their frames stay aligned (figure_pane.py)
        figs = [self.token_text.figure, self.topk_figure, *(f for _, _, f, _ in self.panels), self.probe_figure]
        return pn.Column(controls, figure_pane(*figs, sizing_mode="stretch_width"),
                         download_buttons("trace_heatmap", self.export_heatmap, "probe heatmap"),
                         sizing_mode="stretch_width")
