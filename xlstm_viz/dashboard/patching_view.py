"""Patching tab: a clean and a corrupted prompt, patch a cell / heads / positions from one run into the other, see
the logit difference and KL per position, sweep a probe over positions or heads; and the task score of the model
as edited over N fresh MQAR sequences with a confidence interval.

The work runs on the session's model thread (`session.submit`); the view draws the numpy results it gets back
(`PatchResult`, `SweepResult`, `Score`), it never reads the model itself.
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
from xlstm_viz.dashboard.colors import add_legend, map_to_palette, update_color_bar, value_color_bar
from xlstm_viz.dashboard.figure_pane import figure_pane
from xlstm_viz.dashboard.inputs import int_input
from xlstm_viz.dashboard.notifications import guarded
from xlstm_viz.execution.patching import DIRECTIONS, Patcher, corrupt_mqar
from xlstm_viz.tasks.scoring import MAX_SEQUENCES, score_difference, task_score

RUN_COLORS = {"clean": "#1f77b4", "corrupted": "#ff7f0e", "patched": "#2ca02c"}
MAX_SWEEP_CELLS = 4096  # patches one sweep may run (each is a forward)


def parse_indices(text: str, what: str) -> list[int] | None:
    """'' or 'all' -> None; '1, 3' -> [1, 3]; anything else is refused naming the field and the piece."""
    text = (text or "").strip()
    if text.lower() in ("", "all"):
        return None
    out = []
    for piece in text.replace(",", " ").split():
        if not piece.isdecimal():  # isdigit() also passes '²', which int() refuses with no field named
            raise ValueError(f"{what}: {piece!r} is not an index (give numbers like 0, 2 or 'all')")
        out.append(int(piece))
    return out


def result_csv(table: dict) -> str:
    import pandas as pd

    return pd.DataFrame({k: list(v) for k, v in table.items()}).to_csv(index=False)


class PatchingView(pn.viewable.Viewer):
    clean = param.String(default="", doc="clean prompt (labels or ids)")
    corrupted = param.String(default="", doc="corrupted prompt, same length")
    query = param.Integer(default=0, bounds=(0, None), doc="which MQAR query the corruption targets")
    probe = param.String(default="blocks.0.mlstm.memory", doc="cell (or pattern) to patch")
    heads = param.String(default="all", doc="heads to patch: 'all' or e.g. '0, 2'")
    positions = param.String(default="all", doc="positions to patch: 'all' or e.g. '17'")
    direction = param.Selector(default="denoise", objects=list(DIRECTIONS))
    sweep_probes = param.String(default="blocks.*.out", doc="probes (pattern) a sweep patches one at a time")
    sweep_over = param.Selector(default="position", objects=["position", "head"])
    result = param.Parameter(default=None, doc="latest PatchResult")
    sweep = param.Parameter(default=None, doc="latest SweepResult")
    score_n = param.Integer(default=512, bounds=(1, MAX_SEQUENCES), doc="fresh sequences per score")
    score_pairs = param.Integer(default=8, bounds=(1, 64))
    score_seed = param.Integer(default=0, bounds=(0, None))
    score = param.Parameter(default=None, doc="latest Score")
    reference_score = param.Parameter(default=None, doc="Score the next ones are compared with")

    def __init__(self, session, **params):
        super().__init__(**params)
        self.session = session
        self._ids = None  # (clean, corrupted) token ids of the latest patch
        self.ld_source = ColumnDataSource({k: [] for k in ("position", "token", "clean", "corrupted", "patched",
                                                           "kl_corrupted", "kl_patched", "recovered")})
        self.ld_figure = self._line_figure()
        self.kl_figure = self._kl_figure()
        self.sweep_source = ColumnDataSource({k: [] for k in ("probe", "col", "value", "color", "value_text",
                                                              "token")})
        self.sweep_rows, self.sweep_cols = FactorRange(factors=["-"]), FactorRange(factors=["-"])
        self.sweep_figure, self.sweep_mapper, self.sweep_bar = self._sweep_figure()
        self._summary = pn.pane.Markdown("_set a clean and a corrupted prompt, then Patch_")
        self._score = pn.pane.Markdown("_no score yet_")
        # an HTML table: a Tabulator widget doubled the page's build time (measured 1.0 s -> 0.4 s for this tab)
        self.table = pn.pane.DataFrame(None, index=False, float_format="{:.4g}".format, max_rows=400, height=260,
                                       sizing_mode="stretch_width", styles={"overflow-y": "auto"})

    # -- figures ------------------------------------------------------------------------------------
    def _line_figure(self):
        fig = figure(title="logit difference per position: logit[answer] - logit[wrong]", height=240,
                     sizing_mode="stretch_width", x_range=Range1d(-0.5, 1.5), tools="xpan,xwheel_zoom,reset,save",
                     toolbar_location="above")
        for run, color in RUN_COLORS.items():
            fig.line("position", run, source=self.ld_source, line_color=color, line_width=2, legend_label=run)
            fig.scatter("position", run, source=self.ld_source, color=color, size=5)
        fig.legend.location, fig.legend.title = "top_left", "run"
        fig.xaxis.axis_label, fig.yaxis.axis_label = "position", "logit difference (logits)"
        fig.add_tools(HoverTool(tooltips=[("position", "@position"), ("token", "@token"), ("clean", "@clean{0.000}"),
                                          ("corrupted", "@corrupted{0.000}"), ("patched", "@patched{0.000}"),
                                          ("recovered", "@recovered{0.000}")], mode="vline"))
        return fig

    def _kl_figure(self):
        fig = figure(title="KL(p_clean || p_run) per position", height=200, sizing_mode="stretch_width",
                     x_range=self.ld_figure.x_range, tools="xpan,xwheel_zoom,reset,save", toolbar_location="above")
        fig.vbar(x="position", top="kl_corrupted", width=0.8, source=self.ld_source, color=RUN_COLORS["corrupted"],
                 alpha=0.5)
        fig.vbar(x="position", top="kl_patched", width=0.45, source=self.ld_source, color=RUN_COLORS["patched"])
        add_legend(fig, [("corrupted run", RUN_COLORS["corrupted"]), ("patched run", RUN_COLORS["patched"])],
                   glyph="square", place="right")
        fig.xaxis.axis_label, fig.yaxis.axis_label = "position", "KL (nats)"
        fig.add_tools(HoverTool(tooltips=[("position", "@position"), ("token", "@token"),
                                          ("KL corrupted", "@kl_corrupted{0.0000}"),
                                          ("KL patched", "@kl_patched{0.0000}")]))
        return fig

    def _sweep_figure(self):
        fig = figure(title="sweep: each probe patched alone at each column", height=260, sizing_mode="stretch_width",
                     x_range=self.sweep_cols, y_range=self.sweep_rows, tools="hover,save", toolbar_location="above",
                     tooltips=[("probe", "@probe"), ("column", "@col"), ("token", "@token"),
                               ("value", "@value_text")])
        fig.rect("col", "probe", 1, 1, source=self.sweep_source, fill_color="color", line_color=None)
        mapper, bar = value_color_bar("recovered fraction")
        fig.add_layout(bar, "right")
        fig.xaxis.major_label_orientation = 1.2
        fig.grid.visible = False
        return fig, mapper, bar

    # -- prompts ------------------------------------------------------------------------------------
    def use_current(self) -> None:
        """Clean = the session's prompt; corrupted = its MQAR value swap at `query` (when the prompt is MQAR)."""
        s = self.session
        if s.tokens is None:
            raise ValueError("no prompt yet: run one first")
        self.clean = " ".join(s.decode(s.tokens))
        if s.loss_mask is not None and s.task is not None:
            ids, _ = corrupt_mqar(s.task, s.tokens, s.loss_mask, query=self.query)
            self.corrupted = " ".join(s.decode(ids))

    def _prompts(self):
        if not self.clean.strip() or not self.corrupted.strip():
            raise ValueError("patching needs both prompts: fill 'clean' and 'corrupted' (or press 'Use current "
                             "prompt')")
        return self.session.parse_prompt(self.clean), self.session.parse_prompt(self.corrupted)

    # -- actions ------------------------------------------------------------------------------------
    def run_patch(self):
        clean, corrupted = self._prompts()
        heads, positions = parse_indices(self.heads, "heads"), parse_indices(self.positions, "positions")
        probe, direction, model = self.probe.strip(), self.direction, self.session.model

        def work():
            return Patcher(model, clean, corrupted).patch(probe, heads=heads, positions=positions,
                                                          direction=direction)

        def done(result):
            self._ids = (clean, corrupted)
            self.result = result

        return self.session.submit(work, done)

    def run_sweep(self):
        clean, corrupted = self._prompts()
        probes, over, direction, model = self.sweep_probes.strip(), self.sweep_over, self.direction, self.session.model
        from xlstm_viz.execution.probes import select_probes

        names = self.session.on_worker(lambda: select_probes(model, probes))
        cols = len(clean) if over == "position" else self.session.config.num_heads
        if len(names) * cols > MAX_SWEEP_CELLS:
            raise ValueError(f"a sweep of {len(names)} probes x {cols} {over}s is {len(names) * cols} forwards, over "
                             f"the limit of {MAX_SWEEP_CELLS}: choose fewer probes")

        def work():
            return Patcher(model, clean, corrupted).sweep(probes, over=over, direction=direction)

        def done(result):
            self._ids = (clean, corrupted)
            self.sweep = result

        return self.session.submit(work, done)

    def run_score(self, as_reference: bool = False):
        s = self.session
        n, pairs, seed, model = self.score_n, self.score_pairs, self.score_seed, s.model
        if getattr(model, "task", None) is None:
            raise ValueError("this model has no MQAR task attached: the score over sequences needs one")

        def done(score):
            if as_reference or self.reference_score is None:
                self.reference_score = score
            self.score = score

        return s.submit(lambda: task_score(model, n=n, num_pairs=pairs, seed=seed), done)

    # -- drawing ------------------------------------------------------------------------------------
    def _labels(self, ids):
        decode = trace_tables.safe_decode(self.session.decode_one)
        return [decode(int(i)) for i in ids]

    @param.depends("result", watch=True)
    def _draw_result(self):
        r = self.result
        if r is None:
            return
        clean, corrupted = self._ids
        tokens = self._labels(clean)
        S = len(r.answer)
        data = {"position": np.arange(S), "token": np.array(tokens, dtype=object),
                "clean": r.logit_diff["clean"], "corrupted": r.logit_diff["corrupted"],
                "patched": r.logit_diff["patched"], "kl_corrupted": r.kl["corrupted"], "kl_patched": r.kl["patched"],
                "recovered": r.recovered}
        source_updates.replace_data(self.ld_source, data)
        source_updates.set_props(self.ld_figure.x_range, start=-0.5, end=S - 0.5)
        self.table.object = self.result_frame()
        at = int(np.nanargmax(np.abs(r.logit_diff["clean"] - r.logit_diff["corrupted"])))
        self._summary.object = (
            f"**{r.describe()}**. Where the corruption matters most (position {at}, `{tokens[at]}`): logit "
            f"difference clean {r.logit_diff['clean'][at]:.3f}, corrupted {r.logit_diff['corrupted'][at]:.3f}, "
            f"patched {r.logit_diff['patched'][at]:.3f}; recovered **{r.recovered[at]:.3f}**; "
            f"KL(clean || patched) {r.kl['patched'][at]:.4f} nats (corrupted {r.kl['corrupted'][at]:.4f})")

    def result_frame(self):
        import pandas as pd

        clean, corrupted = self._ids
        return pd.DataFrame(self.result.table(self.session.decode_one, clean, corrupted))

    @param.depends("sweep", watch=True)
    def _draw_sweep(self):
        sw = self.sweep
        if sw is None:
            return
        clean = self._ids[0]
        tokens = self._labels(clean)
        cols = [f"{c}:{tokens[c]}" if sw.over == "position" else f"head {c}" for c in sw.columns]
        rows = list(sw.probes)
        vals = sw.values
        flat = vals.reshape(-1)
        data = {"probe": np.repeat(np.array(rows, dtype=object), len(cols)),
                "col": np.tile(np.array(cols, dtype=object), len(rows)), "value": flat,
                "value_text": np.array(["not patched (after the read-out)" if not np.isfinite(v) else f"{v:.4g}"
                                        for v in flat], dtype=object),
                "token": np.tile(np.array([tokens[c] if sw.over == "position" else "-" for c in sw.columns],
                                          dtype=object), len(rows))}
        data["color"] = map_to_palette(flat, _palette(), symmetric=True)

        def apply():
            self.sweep_rows.factors = rows[::-1]
            self.sweep_cols.factors = cols
        source_updates.apply(self.sweep_rows, apply)
        source_updates.replace_data(self.sweep_source, data)
        source_updates.apply(self.sweep_mapper, lambda: update_color_bar(
            self.sweep_mapper, self.sweep_bar, flat, symmetric=True,
            title=f"{sw.metric} at position {sw.at} ({tokens[sw.at]})"))
        source_updates.set_props(self.sweep_figure.title, text=f"sweep over {sw.over}s ({self.direction}): "
                                 f"{sw.metric} read at position {sw.at} `{tokens[sw.at]}`")

    @param.depends("score", watch=True)
    def _draw_score(self):
        sc, ref = self.score, self.reference_score
        if sc is None:
            return
        text = f"**{sc}**"
        if ref is not None and ref is not sc:
            try:
                mean, low, high = score_difference(ref, sc)
                text += (f"  \nchange against the reference ({ref.mean:.3f}): **{mean:+.3f}** "
                         f"({sc.confidence:.0%} CI {low:+.3f} to {high:+.3f}, paired over the same sequences)")
            except ValueError as exc:
                text += f"  \n_not compared with the reference: {exc}_"
        self._score.object = text

    # -- layout -------------------------------------------------------------------------------------
    def __panel__(self):
        current = pn.widgets.Button(label="Use current prompt (+ MQAR corruption)")
        current.on_click(guarded(lambda e: self.use_current()))
        patch = pn.widgets.Button(label="Patch", color="primary")
        patch.on_click(guarded(lambda e: self.run_patch()))
        sweep = pn.widgets.Button(label="Sweep")
        sweep.on_click(guarded(lambda e: self.run_sweep()))
        csv = pn.widgets.FileDownload(callback=guarded(lambda: io.StringIO(result_csv(self.result.table(
            self.session.decode_one, *self._ids)))), filename="patching.csv", label="patching table CSV")
        score = pn.widgets.Button(label="Score the model as edited", color="primary")
        score.on_click(guarded(lambda e: self.run_score()))
        ref = pn.widgets.Button(label="Score and use as reference")
        ref.on_click(guarded(lambda e: self.run_score(as_reference=True)))
        return pn.Column(
            pn.pane.Markdown("Activation patching: copy one cell's output (or some heads / positions) from the clean "
                             "run into the corrupted run (denoise) or back (noise). Answer / wrong token per "
                             "position: the top token of the clean / corrupted run."),
            pn.Row(pn.widgets.TextAreaInput.from_param(self.param.clean, height=70, sizing_mode="stretch_width"),
                   pn.widgets.TextAreaInput.from_param(self.param.corrupted, height=70, sizing_mode="stretch_width"),
                   sizing_mode="stretch_width"),
            pn.Row(int_input(self, "query", "MQAR query to corrupt", width=150), current),
            pn.Row(pn.widgets.TextInput.from_param(self.param.probe, name="cell to patch", width=230),
                   pn.widgets.TextInput.from_param(self.param.heads, name="heads to patch", width=110),
                   pn.widgets.TextInput.from_param(self.param.positions, name="positions to patch", width=120),
                   pn.widgets.Select.from_param(self.param.direction, width=110), patch, csv),
            self._summary,
            figure_pane(self.ld_figure, sizing_mode="stretch_width"),
            figure_pane(self.kl_figure, sizing_mode="stretch_width"),
            self.table,
            pn.Row(pn.widgets.TextInput.from_param(self.param.sweep_probes, name="sweep: cells (pattern)", width=230),
                   pn.widgets.Select.from_param(self.param.sweep_over, width=120), sweep),
            figure_pane(self.sweep_figure, sizing_mode="stretch_width"),
            pn.pane.Markdown("#### Task score over fresh MQAR sequences (the model with its current edits)"),
            pn.Row(int_input(self, "score_n", "sequences", width=110), int_input(self, "score_pairs", "pairs", width=90),
                   int_input(self, "score_seed", "seed", width=90), score, ref),
            self._score,
            sizing_mode="stretch_width",
        )


def _palette():
    from xlstm_viz.dashboard.colors import diverging

    return diverging()
