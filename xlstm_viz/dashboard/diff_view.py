"""Diff view: what a toggle or an ablation changed against the baseline run.

Per probe, the largest absolute change of a statistic (bars), and per position the top-1 prediction
before vs after with KL(before || after); recall accuracy before vs after when the prompt is an
MQAR example. The model view's "diff vs baseline" overlay paints the same change on the graphs.
"""

from __future__ import annotations

import io

import numpy as np
import panel as pn

from xlstm_viz.dashboard import offline as _offline  # noqa: F401  (notebook comm updates link no CDN stylesheet)
import param
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Range1d
from bokeh.plotting import figure

from xlstm_viz.dashboard import source_updates, trace_tables
from xlstm_viz.dashboard.colors import BAR_COLOR, PREDICTION_COLORS, add_legend, themed
from xlstm_viz.dashboard.figure_export import download_buttons
from xlstm_viz.dashboard.figure_pane import figure_pane
from xlstm_viz.dashboard.notifications import guarded


def probe_change_table(diff, stat: str = "mean") -> dict[str, np.ndarray]:
    """max |after - before| of `stat` per probe, in execution order (`diff`: trace_tables.diff_trace)."""
    probes = [p for p in diff.probes if p in diff.stats and stat in diff.stats[p]]
    diff = diff.stats
    change = np.array([float(np.max(np.abs(diff[p][stat]))) if diff[p][stat].size else 0.0 for p in probes])
    return {"probe": np.array(probes, dtype=object), "change": change,
            "text": np.array([f"{c:.3g}" for c in change], dtype=object)}


AXIS_ROOM = 90  # px left of a diff figure's frame: its y axis label and tick labels up to "0.00025" or "1.5e-05"
# px from a diff figure's y axis line to its axis label: the ticks and the widest tick labels fit in front of it
# (tick 6 + standoff and padding ~11 + "0.00015", the widest BasicTickFormatter gives, ~40 px at 11px helvetica).
# Placed from the axis (not after the tick labels), the label stays put and the axis keeps its width when a toggle
# changes the value range and so the tick labels' width: BokehJS then re-lays out no figure per toggle (an axis whose
# size changed made it lay out its figure again).
TICK_ROOM = 60


def fixed_width_y_axis(fig, room: int = TICK_ROOM) -> None:
    """Give `fig`'s y axes a width that does not depend on their tick labels: the axis label `room` px from the
    axis line (Bokeh's axis_label_standoff_mode "axis": the panel is then room + the label's height wide)."""
    for axis in fig.yaxis:
        axis.axis_label_standoff_mode = "axis"
        axis.axis_label_standoff = room


def value_top(values) -> float:
    """The top of a value axis from 0 that shows every bar of `values` (>= 0) with 5% room; 1 when all are 0."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size else 0.0
    return top * 1.05 if top > 0 else 1.0


def accepts_inside(probe: str) -> bool:
    """Whether `probe` (blocks.{j}.{local}) is a cell whose interventions may act inside its recurrence."""
    from xlstm_viz.wiring.block_types import INSIDE_PROBES

    parts = str(probe).strip().split(".", 2)
    return len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit() and parts[2] in INSIDE_PROBES


class DiffView(pn.viewable.Viewer):
    stat = param.Selector(default="mean", objects=["mean", "absmax", "std", "l2"])
    ablate_probe = param.String(default="blocks.0.mlstm.igate", doc="cell whose output is zeroed")
    ablate_heads = param.String(default="all", doc="heads to zero: 'all' or e.g. '0, 2'")
    ablate_positions = param.String(default="all", doc="token positions to zero: 'all' or e.g. '5, 9'")
    ablate_inside = param.Boolean(default=False, doc="zero a neuron cell's state inside its recurrence (every step), "
                                                     "not only its output; offered for cells in INSIDE_PROBES")

    def __init__(self, session, **params):
        super().__init__(**params)
        self.session = session
        self.bar_source = ColumnDataSource({"probe": [], "change": [], "text": []})
        self.logit_source = ColumnDataSource({k: [] for k in ("pos", "token", "before", "after", "p_before",
                                                              "p_after", "changed", "kl", "color")})
        self.bar_range = FactorRange(factors=["-"])
        # Value ranges set by the server with each result, and a left border wide enough for the y axis: with
        # Bokeh's auto-ranging the page computed new ranges after every toggle, re-laid out each figure (its tick
        # labels changed width, so its frame did) and sent start, end and inner_width back to the server, three
        # paints per figure per toggle (`benchmarks/dashboard_breakdown.py --events`).
        self.bar_y = Range1d(0, 1)
        self.bar_figure = figure(title="largest change per probe (after - before)", height=300,
                                 sizing_mode="stretch_width", x_range=self.bar_range, y_range=self.bar_y,
                                 tools="xwheel_zoom,reset,save", toolbar_location="above", min_border_left=AXIS_ROOM)
        self.bar_figure.vbar(x="probe", top="change", width=0.8, source=self.bar_source, color=BAR_COLOR)
        # short: under the rotated probe names the frame is ~90 px high, and a longer label was cut off (the
        # unit is said in the legend)
        self.bar_figure.yaxis.axis_label = "max |after - before|"
        fixed_width_y_axis(self.bar_figure)
        add_legend(self.bar_figure, [("max |change| of the statistic, in its units", BAR_COLOR)], glyph="square",
                   place="above")
        self.bar_figure.add_tools(HoverTool(tooltips=[("probe", "@probe"), ("max |change|", "@text")]))
        self.bar_figure.xaxis.major_label_orientation = 1.3
        self.kl_y = Range1d(0, 1)
        self.kl_figure = figure(title="KL(before || after) of the next-token distribution per position",
                                height=200, sizing_mode="stretch_width", x_range=Range1d(-0.5, 1.5), y_range=self.kl_y,
                                tools="xpan,xwheel_zoom,reset,save", toolbar_location="above",
                                min_border_left=AXIS_ROOM)
        self._changed_color = themed(PREDICTION_COLORS["changed"])  # the page's theme, read once
        self.kl_figure.vbar(x="pos", top="kl", width=0.8, source=self.logit_source, color="color")
        self.kl_figure.yaxis.axis_label = "KL (nats)"
        fixed_width_y_axis(self.kl_figure)
        self.kl_figure.xaxis.axis_label = "position"
        add_legend(self.kl_figure, [("top-1 prediction changed", PREDICTION_COLORS["changed"]),
                                    ("same top-1", PREDICTION_COLORS["same"])], glyph="square", place="right")
        self.kl_figure.add_tools(HoverTool(tooltips=[("position", "@pos{0}"), ("token", "@token"),
                                                     ("before", "@before (@p_before{0.00})"),
                                                     ("after", "@after (@p_after{0.00})"), ("KL", "@kl{0.0000}")]))
        self._summary = pn.pane.Markdown("_run the model, then toggle something_")
        self._ablations = pn.pane.Markdown("")
        session.param.watch(lambda *e: self.refresh(), ["result"])
        self.param.watch(lambda e: self.refresh(), ["stat"])
        self.refresh()

    def refresh(self):
        s = self.session
        r = s.result
        if r is None or r.trace is None or r.baseline is None:
            return
        if r.diff is None:
            self._summary.object = "_the prompt changed: the baseline was reset to the new run_"
            return
        bars = probe_change_table(r.diff, self.stat)
        source_updates.apply(self.bar_range, lambda: setattr(self.bar_range, "factors", list(bars["probe"]) or ["-"]))
        source_updates.replace_data(self.bar_source, bars)
        source_updates.set_props(self.bar_y, start=0.0, end=value_top(bars["change"]))
        logit = dict(r.logit_change)  # the result's table is shared: add the colour column to a copy
        logit["color"] = np.where(logit["changed"], self._changed_color, PREDICTION_COLORS["same"]).astype(object)
        source_updates.replace_data(self.logit_source, logit)
        S = len(logit["pos"])
        source_updates.set_props(self.kl_figure.x_range, start=-0.5, end=S - 0.5)
        source_updates.set_props(self.kl_y, start=0.0, end=value_top(logit["kl"]))
        changed = int(logit["changed"].sum())
        acc = ""
        if r.accuracy is not None and r.baseline_accuracy is not None:
            acc = f"recall accuracy **{r.baseline_accuracy:.3f} -> {r.accuracy:.3f}**; "
        total = float(bars["change"].max()) if len(bars["change"]) else 0.0
        self._summary.object = (f"{acc}top-1 prediction changed at **{changed} / {S}** positions; "
                                f"largest statistic change {total:.4g}; mean KL {float(np.mean(logit['kl'])):.4g}")
        self._ablations.object = "ablations: " + (", ".join(r.ablations) or "none")

    def accepts_inside(self) -> bool:
        """Whether the chosen cell is a neuron cell whose recurrence an ablation can act in (the checkbox shows)."""
        return accepts_inside(self.ablate_probe)

    def ablate(self):
        """Zero the chosen cell (its heads / positions when given; inside its recurrence when ticked and the cell
        takes it: the box is hidden for other cells) and re-run."""
        from xlstm_viz.dashboard.patching_view import parse_indices

        return self.session.ablate(self.ablate_probe.strip(), heads=parse_indices(self.ablate_heads, "heads"),
                                   tokens=parse_indices(self.ablate_positions, "positions"),
                                   inside=self.ablate_inside and self.accepts_inside())

    def diff_csv(self) -> str:
        """The per-position and per-probe change tables as one CSV (table, key, columns...)."""
        import pandas as pd

        r = self.session.result  # the result's diff and logit table: computed once on the model thread
        if r is None or r.diff is None or r.logit_change is None:
            raise ValueError("no diff yet: run the model, edit something, and the diff against the baseline appears")
        logit = {k: v for k, v in r.logit_change.items() if k != "color"}
        bars = probe_change_table(r.diff, self.stat)
        a = pd.DataFrame({k: list(v) for k, v in logit.items()}).assign(table="per position")
        b = pd.DataFrame({"probe": list(bars["probe"]), f"max_abs_change_{self.stat}": list(bars["change"])}).assign(
            table="per probe")
        return pd.concat([a, b], ignore_index=True).to_csv(index=False)

    def export_plot(self, fmt: str = "svg") -> bytes:
        """Both diff figures (change per probe, KL per position) of the current result as one file."""
        from xlstm_viz.dashboard.figure_export import diff_plot

        return diff_plot(self.session.result, self.stat, fmt=fmt)

    def __panel__(self):
        ablate = pn.widgets.Button(label="Ablate (zero output)", color="danger")
        ablate.on_click(guarded(lambda e: self.ablate()))
        clear = pn.widgets.Button(label="Clear ablations")
        clear.on_click(guarded(lambda e: self.session.clear_ablations()))
        inside = pn.widgets.Checkbox.from_param(self.param.ablate_inside, name="inside the recurrence",
                                                visible=self.accepts_inside())
        self.param.watch(lambda e: setattr(inside, "visible", accepts_inside(e.new)), ["ablate_probe"])
        base = pn.widgets.Button(label="Use current run as baseline")
        base.on_click(guarded(lambda e: self.session.set_baseline()))
        return pn.Column(
            pn.Row(pn.widgets.TextInput.from_param(self.param.ablate_probe, label="cell to ablate"),
                   pn.widgets.TextInput.from_param(self.param.ablate_heads, label="heads", width=100),
                   pn.widgets.TextInput.from_param(self.param.ablate_positions, label="positions", width=100),
                   inside, ablate, clear, base),
            pn.widgets.RadioButtonGroup.from_param(self.param.stat),
            pn.Row(pn.widgets.FileDownload(callback=guarded(lambda: io.StringIO(self.diff_csv())), filename="diff.csv",
                                           label="diff tables CSV"), self._summary), self._ablations,
            download_buttons("diff_plot", self.export_plot, "diff plot"),
            figure_pane(self.bar_figure, sizing_mode="stretch_width"),
            figure_pane(self.kl_figure, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
