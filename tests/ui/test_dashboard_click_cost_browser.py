"""What one click sends and draws: only the changed properties to its own page, nothing to other sessions' pages,
nothing back to the server, and no page redrawn every frame afterwards.

The load test (`benchmarks/dashboard_load.py`) found each of these as a cost per click that grew with the number of
open sessions or outlasted the update: a busy spinner shared by every session's page, stylesheets re-sent on a
pane's first update, auto-ranged figures sending their new ranges and widths back, a toast animating for 6 s.
"""

from __future__ import annotations

import json

from tests.ui.app_fixtures import open_app, script_errors, served_app  # noqa: F401 - the served app
from tests.ui.conftest import TRAFFIC, settle, wait_until

def on_diff_tab(page) -> None:
    page.get_by_text("Diff", exact=True).click()
    box = page.get_by_label("cell to ablate")
    box.fill("blocks.0.mlstm.igate")
    box.press("Enter")


# Every BokehJS view of the page, in `views` (the start of the snippets below).
ALL_VIEWS_JS = """
    const views = [];
    const walk = (v) => {
        views.push(v);
        for (const c of (v.children_views ? v.children_views() : [])) walk(c);
    };
    for (const v of Bokeh.index) walk(v);
"""
# For each figure id: the layout root BokehJS lays it out with (up through its parents while they are layouts), and
# whether it draws through WebGL.
LAYOUT_ROOTS_JS = """(ids) => {
    const {LayoutDOMView} = Bokeh.require("models/layouts/layout_dom");""" + ALL_VIEWS_JS + """    return ids.map((id) => {
        const view = views.find((v) => v.model.id === id);
        if (view == null) return null;
        let root = view;
        while (root.parent instanceof LayoutDOMView) root = root.parent;
        return {root: root.model.id, webgl: view.canvas_view.webgl != null};
    });
}"""


def test_a_toggle_patches_only_what_changed_on_its_own_page(page, served_app):  # noqa: F811
    served, apps = served_app
    page.context.add_init_script(TRAFFIC)
    app, errors = open_app(page, served, apps)
    other = page.context.new_page()
    app_b, errors_b = open_app(other, served, apps)
    assert app_b is not app
    on_diff_tab(page)
    settle(page, other)
    for p in (page, other):
        p.evaluate("window.__in = []; window.__out = []")

    page.get_by_role("button", name="Ablate (zero output)", exact=True).click()
    page.get_by_text("ablations: #1 zero blocks.0.mlstm.igate").first.wait_for(timeout=30000)
    wait_until(lambda: not app.session.busy, timeout=60, page=page)
    settle(page, other)
    got, sent = page.evaluate("window.__in"), page.evaluate("window.__out")
    flat = [e for message in got for e in message]
    # another session's page hears nothing of this session's click (a process-wide busy spinner was patched on
    # every open page, twice per click in any session)
    assert other.evaluate("window.__in") == [], json.dumps(other.evaluate("window.__in"))[:2000]
    # no stylesheet or CSS class patch: the design gives an update the stylesheets of the first render, and
    # there is no busy spinner to spin
    assert not [e for e in flat if e.endswith((" stylesheets", " css_classes"))], json.dumps(got)[:3000]
    # the figures' new data in one message (the result), with their value ranges
    with_data = [m for m in got if any(e.startswith("ColumnDataChanged") for e in m)]
    assert len(with_data) == 1, json.dumps(got)[:3000]
    # the page computes nothing the server must hear of: no auto-ranged start/end, no new frame width
    changes_back = [e for m in sent for e in m if e.startswith("ModelChanged")]
    assert not changes_back, json.dumps(sent)[:2000]
    assert not script_errors(errors) and not script_errors(errors_b), (errors, errors_b)


def test_after_an_edit_the_page_is_not_redrawn_every_frame_while_the_toast_waits(page, served_app):  # noqa: F811
    served, apps = served_app
    app, errors = open_app(page, served, apps)
    on_diff_tab(page)
    page.wait_for_timeout(500)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")

    def style_recalcs() -> float:
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        return metrics["RecalcStyleCount"]

    page.get_by_role("button", name="Ablate (zero output)", exact=True).click()
    toast = page.locator(".xv-toast")
    toast.first.wait_for(timeout=30000)
    wait_until(lambda: not app.session.busy, timeout=60, page=page)
    page.wait_for_timeout(800)  # the update's own layout and paints are done
    before = style_recalcs()
    page.wait_for_timeout(2000)
    recalcs = style_recalcs() - before
    # an animation of `visibility` restyles the page every frame (~60 a second); waiting to fade, it does not
    assert recalcs < 20, f"{recalcs:.0f} style recalculations in 2 s while the toast was shown"
    assert toast.first.is_visible()
    # and the toast still goes away by itself
    wait_until(lambda: not toast.first.is_visible(), timeout=15, page=page)
    assert not script_errors(errors), errors


def test_each_diff_figure_lays_out_as_a_root_of_its_own(page, served_app):  # noqa: F811
    served, apps = served_app
    app, errors = open_app(page, served, apps)
    on_diff_tab(page)
    page.wait_for_timeout(500)
    # the layout root BokehJS lays a figure out with: up through its parents while they are layouts
    roots = [f and f["root"] for f in page.evaluate(LAYOUT_ROOTS_JS, [app.diff_view.bar_figure.id,
                                                                        app.diff_view.kl_figure.id])]
    # a figure whose axis changes re-lays out itself, not the tabs with every tab's views in them
    assert roots == [app.diff_view.bar_figure.id, app.diff_view.kl_figure.id], roots
    assert not script_errors(errors), errors


def test_the_debuggers_figures_lay_out_alone_and_its_graphs_draw_without_webgl(page, served_app):  # noqa: F811
    served, apps = served_app
    app, errors = open_app(page, served, apps)
    page.get_by_text("Debugger", exact=True).click()
    page.get_by_role("button", name="Step", exact=True).first.wait_for(timeout=30000)
    page.wait_for_timeout(500)
    dbg = app.debugger_view
    heatmaps = [f.id for f in dbg.inspector.figures]
    graphs = [dbg.block_graph.figure.id, dbg.cell_graph.figure.id]
    found = page.evaluate(
        LAYOUT_ROOTS_JS,
        heatmaps + graphs,
    )
    assert None not in found, found
    # a stop changes a heatmap's tick labels (its colour bar's range, the output's row names): that re-lays out the
    # heatmap alone, not the grid of four (~160 ms of the renderer's main thread a time in software chromium)
    assert [f["root"] for f in found[:len(heatmaps)]] == heatmaps, found
    # a graph of a few dozen nodes draws on the 2D canvas: a WebGL canvas is copied into it on every paint
    # (blit_webgl, ~40 ms per step with chromium drawing in software)
    assert [f["webgl"] for f in found[len(heatmaps):]] == [False, False], found
    assert not script_errors(errors), errors


# Counts writes of a <style> element's text, and those that wrote the text it already had (each one re-parses the
# sheet and makes the next getComputedStyle recalculate the styles of its scope).
STYLE_WRITES_JS = """() => {
    const text = Object.getOwnPropertyDescriptor(Node.prototype, "textContent");
    window.__styleWrites = {all: 0, same: 0};
    Object.defineProperty(HTMLStyleElement.prototype, "textContent", {
        configurable: true,
        get() { return text.get.call(this); },
        set(css) {
            window.__styleWrites.all++;
            if (text.get.call(this) === css) window.__styleWrites.same++;
            text.set.call(this, css);
        },
    });
}"""


def test_a_debugger_step_rewrites_no_stylesheet_with_the_text_it_has(page, served_app):  # noqa: F811
    from xlstm_viz.dashboard import page_patches

    served, apps = served_app
    app, errors = open_app(page, served, apps)
    assert page.evaluate("window.__xlstm_viz_page_patches") == [page_patches.STYLE_TEXT]
    page.get_by_text("Debugger", exact=True).click()
    step = page.get_by_role("button", name="Step", exact=True).first
    step.wait_for(timeout=30000)
    page.wait_for_timeout(500)
    page.evaluate(STYLE_WRITES_JS)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")

    def style_recalcs() -> float:
        return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}["RecalcStyleCount"]

    before = style_recalcs()
    steps = 4
    for n in range(1, steps + 1):
        step.click()
        page.get_by_text(f"{n} cells run").first.wait_for(timeout=30000)
        page.wait_for_timeout(300)  # the step's figure paints are done
    writes = page.evaluate("window.__styleWrites")
    recalcs = style_recalcs() - before
    # every renderer's paint wrote its `:host { position }` rule again, changed or not (~34 style recalculations
    # per step, ~2 ms each, forced by the next visual's getComputedStyle)
    assert writes["same"] == 0, (writes, recalcs)
    assert writes["all"] > 0  # the hook saw the paints' writes: a heatmap's axis moved at some stop
    assert recalcs < 15 * steps, f"{recalcs:.0f} style recalculations in {steps} steps ({writes})"
    assert not script_errors(errors), errors


# Counts BokehJS layouts per layout root (model id) from now on.
COUNT_LAYOUTS_JS = """() => {
    const {LayoutDOMView} = Bokeh.require("models/layouts/layout_dom");
    window.__layouts = [];
    if (window.__layoutsHooked) return;
    window.__layoutsHooked = true;
    const layout = LayoutDOMView.prototype.compute_layout;
    LayoutDOMView.prototype.compute_layout = function () {
        if (!(this.parent instanceof LayoutDOMView)) window.__layouts.push(this.model.id);
        return layout.call(this);
    };
}"""

# For each figure id, its left axis as drawn: ticks + tick labels (px from the axis line), where its label starts
# (the standoff from the axis line), the axis's width and left edge in the canvas.
Y_AXIS_JS = """(ids) => {""" + ALL_VIEWS_JS + """    return ids.map((id) => {
        const plot = views.find((v) => v.model.id === id);
        const axis = plot.renderer_views.get(plot.model.left[0]);
        const {tick, tick_label} = axis.extents;
        return {ticks: tick + tick_label, standoff: axis.model.axis_label_standoff, mode:
                axis.model.axis_label_standoff_mode, width: axis.bbox.width, left: axis.bbox.left};
    });
}"""


def test_a_toggle_lays_out_no_diff_figure_and_their_axis_labels_stay_clear(page, served_app):  # noqa: F811
    served, apps = served_app
    page.context.add_init_script(TRAFFIC)  # settle() waits on it
    app, errors = open_app(page, served, apps)
    on_diff_tab(page)
    settle(page)
    ids = [app.diff_view.bar_figure.id, app.diff_view.kl_figure.id]
    page.evaluate(COUNT_LAYOUTS_JS)
    axes = [page.evaluate(Y_AXIS_JS, ids)]
    # two re-runs whose value ranges differ (no change -> an ablation's -> none): the tick labels change width
    for button, shown in (("Ablate (zero output)", "ablations: #1 zero blocks.0.mlstm.igate"),
                          ("Clear ablations", "ablations: none")):
        page.get_by_role("button", name=button, exact=True).click()
        page.get_by_text(shown).first.wait_for(timeout=30000)
        wait_until(lambda: not app.session.busy, timeout=60, page=page)
        settle(page)
        axes.append(page.evaluate(Y_AXIS_JS, ids))
    laid_out = [i for i in page.evaluate("window.__layouts") if i in ids]
    # the y axes keep their width, so BokehJS lays out neither figure again (it did once per figure per toggle)
    assert laid_out == [], (laid_out, axes)
    for drawn in axes:
        for a in drawn:
            # the axis label is placed from the axis line, past the widest tick labels, and is not cut off
            assert a["mode"] == "axis" and a["ticks"] <= a["standoff"] and a["left"] >= 0, axes
    assert len({a["width"] for drawn in axes for a in drawn}) == 1, axes
    assert not script_errors(errors), errors
