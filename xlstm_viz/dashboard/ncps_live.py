"""The NCPS tab on the loaded model: the wiring of a neuron block (cfc, ltc, ncp_slstm), its neurons' activity,
toggles that re-run it.

Data flows one way: a click is a message to the model thread (`ModelSession.edit_synapse`), which edits the block's
AutoNCP and re-runs the prompt; the new trace (`session.trace`) and the task score computed after it come back as
results, and the view redraws from them. The overlays read the per-neuron probe `blocks.{j}.ncp.neurons` (one
value per neuron and token); the diff figure is that probe after minus the baseline run.
"""

from __future__ import annotations

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.plotting import figure

from xlstm_viz.dashboard import source_updates
from xlstm_viz.dashboard.colors import ROLE_COLORS
from xlstm_viz.dashboard.figure_pane import figure_pane
from xlstm_viz.dashboard.inputs import int_input
from xlstm_viz.dashboard.notifications import guarded, page_text
from xlstm_viz.dashboard.wiring_tables import neuron_roles
from xlstm_viz.dashboard.wiring_view import WiringView

OVERLAYS = ("activity at token", "change vs baseline at token", "mean |activity| over tokens")
SCORE_SAMPLES = 128  # fresh sequences the task score is measured on after every run
SCORE_SEED = 4242


def cfc_click(polarity: int) -> int:
    """A click on a CfC synapse: remove it (a CfC's masks use |polarity|, so flipping the sign would change
    nothing), or add a missing one as +1."""
    return 0 if int(polarity) != 0 else 1


def neuron_blocks(model) -> list[int]:
    return [j for j, b in enumerate(model.blocks) if getattr(b, "wiring", None) is not None]


def neuron_activity(trace, block: int) -> np.ndarray:
    """[S, units]: every neuron's activity per token in `trace` (batch 0), by neuron id."""
    probe = f"blocks.{block}.ncp.neurons"
    if trace is None or probe not in trace.stats:
        raise ValueError(f"the trace has no probe {probe!r} (is block {block} a neuron (cfc / ltc / ncp_slstm) block?)")
    return np.asarray(trace.stats[probe]["value"][0], dtype=float)


def task_score(model, task, num_pairs: int, samples: int = SCORE_SAMPLES, seed: int = SCORE_SEED) -> float:
    """Recall accuracy over `samples` fresh seeded sequences of the model's task (the demo's evaluation)."""
    from xlstm_viz.training import evaluate

    return evaluate(model, task, num_pairs, num_samples=samples, seed=seed,
                    num_queries=max(1, int(round(num_pairs * 0.5))))


class LiveNCPSView(pn.viewable.Viewer):
    """Layered graph + adjacency of the loaded model's neuron block, activity overlaid, clicks re-run the model."""

    block = param.Integer(default=0, doc="the neuron (cfc / ltc / ncp_slstm) block shown")
    token = param.Integer(default=-1, bounds=(-1, None), doc="token of the overlay (-1: the last)")
    overlay = param.Selector(default=OVERLAYS[0], objects=list(OVERLAYS))
    score = param.Number(default=None, allow_None=True, doc="task score after the latest run")
    baseline_score = param.Number(default=None, allow_None=True, doc="task score of the baseline run")
    score_pairs = param.Integer(default=8, bounds=(1, None), doc="key-value pairs of the scored sequences")

    def __init__(self, session, **params):
        blocks = neuron_blocks(session.model)
        if not blocks:
            raise ValueError("the model has no neuron (cfc / ltc / ncp_slstm) block: the live NCPS view needs one")
        super().__init__(block=blocks[0], **params)
        self.session = session
        self._blocks = blocks
        wiring = session.neuron_wiring(self.block)
        neuron_block = session.model.blocks[self.block]
        # a block whose neurons ignore the sign gets no sign edit (clicks remove / restore); the rest cycle the sign
        signed = bool(neuron_block.uses_polarity)
        rule = neuron_block.synapse_rule + (" A click cycles +1 -> -1 -> 0 -> +1." if signed else
                                            " A click removes a synapse, or restores a removed one as excitatory.")
        self.wiring_view = WiringView(
            wiring, apply_synapse=self._apply_synapse, polarity_cycle=None if signed else cfc_click,
            title=f"#### blocks.{self.block}: the loaded model's NCP wiring (live: a click edits the model and "
                  f"re-runs it). {rule}")
        self.diff_source = ColumnDataSource({"x": [], "change": [], "label": [], "color": []})
        self.diff_figure = self._make_diff_figure()
        self._score_pane = pn.pane.Markdown("", margin=(0, 10))
        self._diff_text = pn.pane.Markdown("", margin=(0, 10))
        session.param.watch(self._on_run, ["trace"])
        session.param.watch(self._on_baseline, ["baseline"])
        self._scored = None  # the trace whose model `score` was measured after
        self.param.watch(lambda *_: self._redraw(), ["token", "overlay"])
        if session.trace is not None:
            self._on_run()

    # -- figures -----------------------------------------------------------------------------------
    def _make_diff_figure(self):
        fig = figure(title="what the last toggle did: activity change per neuron (after - baseline, at the token)",
                     height=220, sizing_mode="stretch_width", tools="pan,wheel_zoom,reset,save",
                     toolbar_location="above")
        fig.vbar(x="x", top="change", width=0.8, source=self.diff_source, fill_color="color", line_color=None)
        fig.add_tools(HoverTool(tooltips=[("neuron", "@label"), ("change", "@change{0.0000}")]))
        fig.xaxis.axis_label = "neuron (display order: inter | command | motor; bar colour = role)"
        fig.yaxis.axis_label = "activity change"
        from xlstm_viz.dashboard.colors import add_legend

        add_legend(fig, [(r, "square", c) for r, c in ROLE_COLORS.items() if r != "sensory"], title="role")
        return fig

    # -- commands (messages to the model thread) ---------------------------------------------------
    def _apply_synapse(self, kind, src, dst, polarity, text):
        self.session.edit_synapse(self.block, kind, src, dst, polarity, announce=text,
                                  done=lambda said: self.wiring_view.edited(said))

    def undo(self, event=None):
        """Undo the latest edit action (the session's edit log, the same as the sidebar's Undo) and re-run."""
        self.wiring_view.edited("undid the last edit")
        return self.session.undo()

    # -- results -> views --------------------------------------------------------------------------
    def _on_run(self, *_):
        """A run finished: redraw the overlays now, then measure the task score on the model thread."""
        self._redraw()
        task = self.session.task
        if task is None:
            self._score_pane.object = "the model has no task attached: no task score"
            return
        trace = self.session.trace
        is_baseline = trace is self.session.baseline
        pairs = self.score_pairs

        def done(score):
            self._scored = trace
            updates = {"score": score}
            if is_baseline:  # only the baseline run's model scores the baseline (after a reload with edits, the
                updates["baseline_score"] = score  # first run is the edited one: its score is no baseline)
            self.param.update(**updates)
            self._show_score()

        self.session.submit(lambda: task_score(self.session.model, task, pairs), done)

    def _on_baseline(self, *_):
        """'Use current run as baseline': the run already scored is the baseline now, and so is its score."""
        if self.session.baseline is not None and self.session.baseline is self._scored:
            self.baseline_score = self.score
            self._show_score()

    def _show_score(self):
        before, after = self.baseline_score, self.score
        acc = self.session.accuracy
        prompt = "" if acc is None else f"; this prompt {acc:.1%}"
        if before is None:
            change = " (the baseline run was not scored in this page: edit after a new prompt to compare)"
        else:
            change = "" if after is None or before == after else f" (baseline {before:.1%})"
        self._score_pane.object = (f"**task score** (recall over {SCORE_SAMPLES} fresh {self.score_pairs}-pair "
                                   f"sequences, seed {SCORE_SEED}): **{after:.1%}**{change}{prompt}")

    def _redraw(self):
        trace, base = self.session.trace, self.session.baseline
        if trace is None:
            return
        act = neuron_activity(trace, self.block)
        t = act.shape[0] - 1 if self.token < 0 else min(self.token, act.shape[0] - 1)
        label = f"token {t} ({self.session.decode_one(int(trace.tokens[0, t]))})"
        before = neuron_activity(base, self.block) if base is not None and base.tokens.shape == trace.tokens.shape \
            else act
        if self.overlay == OVERLAYS[0]:
            self.wiring_view.set_overlay(act[t], f"activity, {label}")
        elif self.overlay == OVERLAYS[1]:
            self.wiring_view.set_overlay(act[t] - before[t], f"change vs baseline, {label}")
        else:
            self.wiring_view.set_overlay(np.abs(act).mean(axis=0), "mean |activity| over tokens", symmetric=False)
        wiring = self.wiring_view.wiring
        order = self.wiring_view._image["col_id"]
        roles = neuron_roles(wiring)[order]
        change = (act[t] - before[t])[order]
        source_updates.replace_data(self.diff_source, {
            "x": np.arange(len(order)), "change": change,
            "label": [f"n{i} ({r})" for i, r in zip(order, roles)],
            "color": [ROLE_COLORS[r] for r in roles]})
        moved = np.abs(act - before).max()
        self._diff_text.object = (f"{page_text(self.session.last_action or 'no edit yet')} — largest activity change over all "
                                  f"tokens and neurons: {moved:.4f}")

    # -- layout ------------------------------------------------------------------------------------
    def __panel__(self):
        undo = pn.widgets.Button(label="Undo last edit", color="default")
        undo.on_click(guarded(self.undo))
        controls = pn.Row(
            pn.widgets.Select.from_param(self.param.overlay, name="overlay", width=260),
            int_input(self, "token", "overlay token (-1 = last)", width=180), undo)
        return pn.Column(self._score_pane, controls, self.wiring_view, self._diff_text, figure_pane(self.diff_figure),
                         sizing_mode="stretch_width")
