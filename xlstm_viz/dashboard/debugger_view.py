"""Debugger view: step controls, breakpoints, the current cell highlighted on the graph, its inputs/outputs."""

from __future__ import annotations

import numpy as np
import panel as pn

from xlstm_viz.dashboard import offline as _offline  # noqa: F401  (notebook comm updates link no CDN stylesheet)
import param

from xlstm_viz.dashboard import debug_commands, model_graph
from xlstm_viz.dashboard.dag_figure import DagFigure
from xlstm_viz.dashboard.figure_pane import figure_pane
from xlstm_viz.dashboard.inputs import int_input
from xlstm_viz.dashboard.notifications import guarded
from xlstm_viz.dashboard.tensor_inspector import TensorInspector
from xlstm_viz.dashboard.tensor_tables import stop_tables, stop_title, token_label

ACTIONS = ("step", "step_over", "step_token", "continue", "reset")
DEBUG_COLUMNS = 6  # graph columns the debugger's narrow figures show at once (~55 px each)


def summarize(name: str, a: np.ndarray) -> str:
    a = np.asarray(a)
    finite = np.isfinite(a)
    vals = a[finite]
    if vals.size == 0:
        return f"| {name} | {tuple(a.shape)} | - | - | - | {a.size} |"
    return (f"| {name} | {tuple(a.shape)} | {vals.mean():.4g} | {vals.std():.4g} | {np.abs(vals).max():.4g} | "
            f"{int(a.size - finite.sum())} |")


def event_markdown(ev, label: str | None = None, finished: bool = False) -> str:
    if ev is None:
        # no stop either before the first cell or after the last one: say which
        return "_finished: every cell has run (Reset to step again)_" if finished else "_not started: press Step_"
    tok = "" if ev.token is None else f", token **{ev.token}**" + (f" `{label}`" if label else "")
    lines = [f"**{ev.name}** ({ev.cell_type}{tok}, step #{ev.index})", "",
             "| tensor | shape | mean | std | absmax | non-finite |", "|---|---|---|---|---|---|"]
    for src, a in ev.inputs.items():
        lines.append(summarize(f"in: {src}", a))
    lines.append(summarize("out", ev.output))
    for k, a in (ev.state or {}).items():
        lines.append(summarize(f"state {k}", a))
    return "\n".join(lines)


class _DirectDriver:
    """Drive a Debugger on the caller's thread (notebooks); the app uses the session's model thread."""

    def __init__(self, dbg):
        self.dbg = dbg

    def graph(self, scope, block=None):
        w = self.dbg.model.block_wiring if scope == "block" else self.dbg.model.cell_wirings[block]
        return model_graph.connections(w)

    def act(self, action, **kw):
        ev = debug_commands.run_command(self.dbg, action, **kw)  # the same dispatch as the app's model thread
        return ev, debug_commands.summary(self.dbg)


class DebuggerView(pn.viewable.Viewer):
    """Step through a forward pass. `DebuggerView(dbg)` in a notebook, `DebuggerView(session=...)` in the app."""

    event = param.Parameter(default=None, doc="StepEvent where the debugger stopped")
    state = param.Dict(default={})
    bp_probe = param.String(default="blocks.0.mlstm.memory", doc="probe name or pattern")
    bp_condition = param.String(default="", doc="'', 'nonfinite', 'absmax>50', 'saturated'")
    bp_remove = param.Integer(default=1, bounds=(1, None))
    shared_scale = param.Boolean(default=False, doc="one colour scale for all heatmaps of the stop")

    def __init__(self, dbg=None, session=None, **params):
        super().__init__(**params)
        if (dbg is None) == (session is None):
            raise ValueError("give exactly one of dbg (an xlstm_viz.execution.Debugger) or session")
        self.session = session
        self.driver = _DirectDriver(dbg) if dbg is not None else None
        config = dbg.model.config if dbg is not None else session.config
        self.num_blocks, self.num_heads = config.num_blocks, config.num_heads
        self._layer_types = config.layer_types()
        self.inspector = TensorInspector()
        # These figures share a column with the tensor grid (~330 px wide): DEBUG_COLUMNS columns at a time, the
        # stop pans the strip (DagFigure.scroll_to), so the labels of a 13-column mLSTM block do not overlap;
        # names only (shapes are in the tooltips and the tensor table).
        self.block_graph = DagFigure("blocks (current one ringed)", height=200, color_bar=False, legend_place="below",
                                     max_columns=DEBUG_COLUMNS, info_labels=False)
        self.cell_graph = DagFigure("cells (current one ringed)", height=360, color_bar=False, legend_place="below",
                                    max_columns=DEBUG_COLUMNS, info_labels=False)
        self._shown_block = None
        self._details = pn.pane.Markdown(event_markdown(None))
        self._status = pn.pane.Alert("ready", alert_type="secondary")
        self._breaks = pn.pane.Markdown("")
        self._draw_block_graph()
        self._draw_cell_graph(0)
        if session is not None:
            session.param.watch(self._from_session, ["step_event", "debugger_state"])
            session.param.watch(lambda e: self._redraw_graphs(), ["graph_version"])

    # -- graph --------------------------------------------------------------------------------------------
    def _graph(self, scope, block=None):
        if self.session is not None:
            return self.session.result.graphs.of(scope, block)  # tables of the latest result, no worker call
        return self.driver.graph(scope, block)

    def _info(self):
        if self.session is not None:
            return self.session.result.graphs.info
        from xlstm_viz.dashboard.model_graph import node_info

        return node_info(self.driver.dbg.model)

    def _draw_block_graph(self):
        self.block_graph.set_graph(*self._graph("block"), layer_types=self._layer_types, info=self._info())

    def _draw_cell_graph(self, block):
        self.cell_graph.set_graph(*self._graph("cell", block), info=self._info())
        self._shown_block = block

    def _redraw_graphs(self):
        self._draw_block_graph()
        self._draw_cell_graph(self._shown_block or 0)
        self._show(self.event)

    # -- actions ------------------------------------------------------------------------------------------
    def do(self, action: str, **kw):
        """Run a debugger action; in the app the result arrives through the session."""
        if self.session is not None:
            return self.session.debug(action, **kw)
        ev, state = self.driver.act(action, **kw)
        self.param.update(event=ev, state=state)
        return ev

    def step(self):
        return self.do("step")

    def _from_session(self, *events):
        self.param.update(event=self.session.step_event, state=self.session.debugger_state)

    @param.depends("event", "state", watch=True)
    def _on_event(self):
        self._show(self.event)

    def _token_label(self, ev):
        """(decode, tokens) of the prompt being stepped, for the stop's token label."""
        if self.session is not None:
            return self.session.decode_one, self.session.tokens
        model = self.driver.dbg.model
        task = getattr(model, "task", None)
        decode = (lambda i: task.decode([i])[0]) if task is not None else str
        return decode, np.asarray(self.driver.dbg.input_ids)[0]

    @param.depends("shared_scale", watch=True)
    def _on_shared(self):
        self.inspector.set_shared(self.shared_scale)

    def _show(self, ev):
        decode, tokens = self._token_label(ev)
        title = stop_title(ev, decode, tokens)
        self._details.object = event_markdown(ev, token_label(ev, decode, tokens),
                                              finished=bool((self.state or {}).get("finished")))
        self.inspector.shared = self.shared_scale
        self.inspector.show(stop_tables(ev, self.num_heads), title if ev is not None else None)
        if ev is not None:
            node = f"blocks.{ev.block}" if ev.block is not None else ("lm_head" if ev.name == "logits" else ev.name)
            self.block_graph.highlight(node)
            if ev.block is not None:
                if ev.block != self._shown_block:
                    self._draw_cell_graph(ev.block)
                self.cell_graph.highlight(ev.name)
            else:
                self.cell_graph.highlight(None)
        else:
            self.block_graph.highlight(None)
            self.cell_graph.highlight(None)
        st = self.state or {}
        reason = st.get("stop_reason", "start")
        if reason.startswith("nonfinite"):
            self._status.param.update(object=f"Stopped: first non-finite value {reason[len('nonfinite'):].strip()} "
                                             "(the cell ringed on the graph produced it)", alert_type="danger")
        elif reason.startswith("restarted:"):
            self._status.param.update(object=f"The model or prompt changed ({reason[len('restarted:'):].strip()}): the "
                                             "debugger starts again before the first cell; breakpoints are kept",
                                      alert_type="warning")
        elif st.get("finished"):
            self._status.param.update(object="finished: logits ready", alert_type="success")
        else:
            self._status.param.update(object=f"stopped ({reason}), {st.get('steps', 0)} cells run",
                                      alert_type="info" if reason.startswith("breakpoint") else "secondary")
        bps = st.get("breakpoints", [])
        self._breaks.object = "\n".join(f"- {d} (hits {h})" for _, d, h in bps) or "_no breakpoints_"

    # -- layout -------------------------------------------------------------------------------------------
    def __panel__(self):
        buttons = []
        for action, label in zip(ACTIONS, ("Step", "Step over", "Step token", "Continue", "Reset")):
            b = pn.widgets.Button(label=label, color="primary" if action == "step" else "default", width=95)
            b.on_click(lambda e, a=action: self._safe(self.do, a))
            buttons.append(b)
        add = pn.widgets.Button(label="Add breakpoint", width=120)
        add.on_click(lambda e: self._safe(self.do, "add_breakpoint", probe=self.bp_probe or None,
                                          condition=self.bp_condition or None))
        remove = pn.widgets.Button(label="Remove #", width=90)
        remove.on_click(lambda e: self._safe(self.do, "remove_breakpoint", id=self.bp_remove))
        bp_form = pn.Column(
            pn.pane.Markdown("#### Breakpoints"),
            pn.widgets.TextInput.from_param(self.param.bp_probe, label="probe (name or pattern, empty = any)"),
            pn.widgets.TextInput.from_param(self.param.bp_condition, label="condition (nonfinite, absmax>50, saturated)"),
            pn.Row(add, int_input(self, "bp_remove", "breakpoint #", width=90), remove),
            self._breaks, width=320,
        )
        return pn.Column(
            pn.Row(*buttons), self._status,
            pn.Row(figure_pane(self.block_graph.figure, self.cell_graph.figure, sizing_mode="stretch_width"),
                   pn.Column(bp_form, self._details, width=520), sizing_mode="stretch_width"),
            pn.pane.Markdown("#### Tensors at the stop (batch 0, the stop's token; diverging colours around 0)"),
            pn.widgets.Checkbox.from_param(self.param.shared_scale, name="one colour scale for all heatmaps"),
            # each heatmap a layout root of its own: a stop that changes one's tick labels (its colour bar's
            # range, the output's row names) re-lays out that figure, not the grid of four (~160 ms a time)
            pn.GridBox(*[figure_pane(f, sizing_mode="stretch_width") for f in self.inspector.figures], ncols=2,
                       sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    @staticmethod
    def _safe(fn, *a, **kw):
        guarded(fn)(*a, **kw)
